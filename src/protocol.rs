//! The wire protocol: what clients send, what they get back, and what pushes look like.
//! Every frame is a JSON object with an `action`; error frames carry a stable `code`.

use serde::Serialize;
use serde_json::{Map, Value};

/// API Gateway refuses frames over 128 KB, so a larger one is an error here, not a silent drop there.
pub const MAX_FRAME_BYTES: usize = 128 * 1024;
pub const MAX_TOPIC_CHARS: usize = 128;
const MAX_ID_CHARS: usize = 128;
/// Every client action. The deployed API has a route (with a reply) for each; see template.yaml.
pub const ACTIONS: [&str; 7] = [
    "ping",
    "subscribe",
    "unsubscribe",
    "sendmessage",
    "whoami",
    "history",
    "presence",
];
/// `history` pages: 100 publications unless the client asks, at most 1,000.
pub const DEFAULT_HISTORY_LIMIT: usize = 100;
pub const MAX_HISTORY_LIMIT: usize = 1000;
/// An epoch as a client may echo it back; the hub's own are 8 characters.
const MAX_EPOCH_CHARS: usize = 64;

/// Stable error codes: clients switch on these, so renaming one is a breaking change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The body is not a JSON object (or is a binary frame).
    BadJson,
    /// The object has no `action` string.
    MissingAction,
    /// `action` names nothing this hub does.
    UnknownAction,
    /// A field is missing or has the wrong type.
    BadRequest,
    /// A topic name is empty, too long or has characters outside `[A-Za-z0-9_.:@/-]`.
    InvalidTopic,
    /// `sendmessage` without a topic while `ALLOW_CLIENT_BROADCAST` is off.
    BroadcastDisabled,
    /// `TOPIC_ACCESS=restricted` and the topic is not granted to this user.
    ForbiddenTopic,
    /// The frame to deliver would exceed 128 KB.
    PayloadTooLarge,
    /// The connection is not (or no longer) registered.
    NotConnected,
    /// `sendmessage` beyond `SEND_RATE_PER_SECOND` (after a burst of `SEND_RATE_BURST`).
    RateLimited,
    /// `presence` on a topic outside `PRESENCE_TOPICS`: its members are not tracked.
    NotPresenceTopic,
    /// `subscribe` would take the connection past `MAX_TOPICS_PER_CONNECTION` subscriptions.
    TooManyTopics,
    /// A backend failed; the request may be retried.
    Internal,
}

/// A frame sent to a client: a reply to its request or a push.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "action", rename_all = "lowercase", rename_all_fields = "camelCase")]
pub enum Frame {
    Pong {
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<Value>,
    },
    /// Reply to `subscribe`: where the stream stands (`seq`, `epoch`; absent when recording is
    /// off) and, when the client gave `since`, what it missed ([`Recovery`]).
    Subscribed {
        topic: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        seq: Option<u64>,
        #[serde(skip_serializing_if = "Option::is_none")]
        epoch: Option<String>,
        #[serde(flatten, skip_serializing_if = "Option::is_none")]
        recovery: Option<Recovery>,
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<Value>,
    },
    /// Reply to `history`: a page of a stream's publications.
    History {
        topic: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        seq: Option<u64>,
        #[serde(skip_serializing_if = "Option::is_none")]
        epoch: Option<String>,
        #[serde(flatten)]
        recovery: Recovery,
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<Value>,
    },
    Unsubscribed {
        topic: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<Value>,
    },
    /// Reply to `sendmessage`: how many connections the message reached.
    Sent {
        #[serde(skip_serializing_if = "Option::is_none")]
        topic: Option<String>,
        recipients: usize,
        /// Recipients whose delivery failed after retries; omitted when 0.
        #[serde(skip_serializing_if = "is_zero")]
        failed: usize,
        /// Where the message stands in the topic's stream (absent when not recorded).
        #[serde(skip_serializing_if = "Option::is_none")]
        seq: Option<u64>,
        #[serde(skip_serializing_if = "Option::is_none")]
        epoch: Option<String>,
        /// Handed to the push queue rather than delivered inline (a large audience): the
        /// counts then cover nothing yet; omitted when false.
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        queued: bool,
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<Value>,
    },
    Whoami {
        connection_id: String,
        user_id: String,
        /// The URL path the client connected to (`EdgePath`); omitted without one.
        #[serde(skip_serializing_if = "Option::is_none")]
        path: Option<String>,
        topics: Vec<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<Value>,
    },
    /// A push. `id` identifies the message (SQS messageId or the sender's API Gateway messageId),
    /// so a client can drop the duplicates that at-least-once delivery allows.
    Message {
        #[serde(skip_serializing_if = "Option::is_none")]
        topic: Option<String>,
        data: Value,
        #[serde(skip_serializing_if = "Option::is_none")]
        from: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<String>,
        /// The publication's place in its stream (topic or `user:<id>`); absent for broadcasts,
        /// pushes to one connection, and while recording is off.
        #[serde(skip_serializing_if = "Option::is_none")]
        seq: Option<u64>,
        #[serde(skip_serializing_if = "Option::is_none")]
        epoch: Option<String>,
    },
    /// On a presence topic ([`crate::presence`]): a user's first connection subscribed. A
    /// publication on the topic's stream, so it carries `seq` and `epoch` when recorded.
    Join {
        topic: String,
        user_id: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        seq: Option<u64>,
        #[serde(skip_serializing_if = "Option::is_none")]
        epoch: Option<String>,
    },
    /// On a presence topic: a user's last connection left it (unsubscribe or `$disconnect`).
    Leave {
        topic: String,
        user_id: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        seq: Option<u64>,
        #[serde(skip_serializing_if = "Option::is_none")]
        epoch: Option<String>,
    },
    /// Reply to `presence`: the distinct users subscribed to a presence topic.
    Presence {
        topic: String,
        /// Distinct users with a live subscription.
        count: usize,
        /// Ordered by user id; cut to fit one frame, then `more` is true.
        members: Vec<Member>,
        more: bool,
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<Value>,
    },
    /// Reply to a forwarded action (`FORWARD_ACTIONS`): the event is on the bus. `id` is the
    /// client's, or API Gateway's message id when it gave none; the detail carries the same.
    Accepted { id: Value },
    Error {
        code: ErrorCode,
        message: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<Value>,
    },
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// A user on a presence topic and how many of their connections are subscribed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Member {
    pub user_id: String,
    pub connections: u32,
}

/// What a client missed: the publications after its position, in seq order.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Recovery {
    /// Every publication after the client's position is in `messages` or the pages after it,
    /// in the same epoch. `false`: some are lost (history expired, epoch changed, recording off).
    pub recovered: bool,
    /// `message` frames (and `join`/`leave` frames on presence topics), ascending by seq.
    pub messages: Vec<Frame>,
    /// More follow: ask `history` with `since` at the last one's seq.
    pub more: bool,
}

/// A client's position in a stream: the last seq it has seen, and that seq's epoch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Position {
    pub seq: u64,
    pub epoch: String,
}

impl Frame {
    pub fn error(code: ErrorCode, message: impl Into<String>, id: Option<Value>) -> Frame {
        Frame::Error {
            code,
            message: message.into(),
            id,
        }
    }

    pub fn to_json(&self) -> String {
        // Serializing these types cannot fail: every map key is a string.
        serde_json::to_string(self)
            .unwrap_or_else(|_| r#"{"action":"error","code":"internal","message":"unserializable frame"}"#.into())
    }
}

/// What a client asked for.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    Ping,
    Subscribe {
        topic: String,
        since: Option<Position>,
    },
    Unsubscribe {
        topic: String,
    },
    History {
        topic: String,
        since: Option<Position>,
        limit: usize,
    },
    SendMessage {
        topic: Option<String>,
        data: Value,
    },
    Whoami,
    Presence {
        topic: String,
    },
}

/// A parsed client frame: the action and the client's correlation `id`, echoed in the reply.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub id: Option<Value>,
    pub action: Action,
}

/// A client frame that cannot be served, with what to tell the client.
#[derive(Debug, Clone, PartialEq)]
pub struct Rejection {
    pub id: Option<Value>,
    pub code: ErrorCode,
    pub message: String,
}

impl Rejection {
    fn new(id: &Option<Value>, code: ErrorCode, message: impl Into<String>) -> Self {
        Rejection {
            id: id.clone(),
            code,
            message: message.into(),
        }
    }

    pub fn into_frame(self) -> Frame {
        Frame::error(self.code, self.message, self.id)
    }
}

impl Request {
    /// Parses a client's text frame. `action` is read from the body, whatever route API Gateway
    /// picked, so a route missing from the API still lands in the right handler via `$default`.
    pub fn parse(body: &str) -> Result<Request, Rejection> {
        let none = None;
        let value: Value = serde_json::from_str(body)
            .map_err(|e| Rejection::new(&none, ErrorCode::BadJson, format!("body is not valid JSON: {e}")))?;
        let Value::Object(mut obj) = value else {
            return Err(Rejection::new(&none, ErrorCode::BadJson, "body must be a JSON object"));
        };
        let id = match obj.remove("id") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if s.chars().count() <= MAX_ID_CHARS => Some(Value::String(s)),
            Some(n @ Value::Number(_)) => Some(n),
            Some(_) => {
                return Err(Rejection::new(
                    &none,
                    ErrorCode::BadRequest,
                    "id must be a number or a string of at most 128 characters",
                ))
            }
        };
        let action = match obj.get("action") {
            None | Some(Value::Null) => {
                return Err(Rejection::new(&id, ErrorCode::MissingAction, "action is required"))
            }
            Some(Value::String(a)) => a.clone(),
            Some(_) => return Err(Rejection::new(&id, ErrorCode::MissingAction, "action must be a string")),
        };
        let action = match action.as_str() {
            "ping" => Action::Ping,
            "whoami" => Action::Whoami,
            "subscribe" => Action::Subscribe {
                topic: required_topic(&obj, &id)?,
                since: since(&obj, &id)?,
            },
            "history" => Action::History {
                topic: required_topic(&obj, &id)?,
                since: since(&obj, &id)?,
                limit: limit(&obj, &id)?,
            },
            "presence" => Action::Presence {
                topic: required_topic(&obj, &id)?,
            },
            "unsubscribe" => Action::Unsubscribe {
                topic: required_topic(&obj, &id)?,
            },
            "sendmessage" => {
                let topic = match obj.get("topic") {
                    None | Some(Value::Null) => None,
                    Some(_) => Some(required_topic(&obj, &id)?),
                };
                // `message` is accepted as an alias: several public samples use it.
                let data = match (obj.remove("data"), obj.remove("message")) {
                    (Some(d), _) => d,
                    (None, Some(m)) => m,
                    (None, None) => return Err(Rejection::new(&id, ErrorCode::BadRequest, "data is required")),
                };
                Action::SendMessage { topic, data }
            }
            other => {
                let shown: String = other.chars().take(64).collect();
                return Err(Rejection::new(
                    &id,
                    ErrorCode::UnknownAction,
                    format!("unknown action {shown:?}; expected one of {}", ACTIONS.join(", ")),
                ));
            }
        };
        Ok(Request { id, action })
    }
}

fn required_topic(obj: &Map<String, Value>, id: &Option<Value>) -> Result<String, Rejection> {
    match obj.get("topic") {
        None | Some(Value::Null) => Err(Rejection::new(id, ErrorCode::BadRequest, "topic is required")),
        Some(Value::String(t)) => {
            validate_topic(t).map_err(|m| Rejection::new(id, ErrorCode::InvalidTopic, m))?;
            Ok(t.clone())
        }
        Some(_) => Err(Rejection::new(id, ErrorCode::BadRequest, "topic must be a string")),
    }
}

/// `since`: absent, or `{"seq": whole number ≥ 0, "epoch": string}` and nothing else.
fn since(obj: &Map<String, Value>, id: &Option<Value>) -> Result<Option<Position>, Rejection> {
    let bad = || {
        Rejection::new(
            id,
            ErrorCode::BadRequest,
            format!(
                "since must be {{\"seq\": a whole number >= 0, \"epoch\": a string of at most {MAX_EPOCH_CHARS} characters}}"
            ),
        )
    };
    let since = match obj.get("since") {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Object(since)) => since,
        Some(_) => return Err(bad()),
    };
    if since.keys().any(|k| k != "seq" && k != "epoch") {
        return Err(bad());
    }
    let seq = since.get("seq").and_then(Value::as_u64).ok_or_else(bad)?;
    let epoch = match since.get("epoch") {
        Some(Value::String(e)) if e.chars().count() <= MAX_EPOCH_CHARS => e.clone(),
        _ => return Err(bad()),
    };
    Ok(Some(Position { seq, epoch }))
}

/// `limit`: absent (100), or a whole number from 1 to 1000.
fn limit(obj: &Map<String, Value>, id: &Option<Value>) -> Result<usize, Rejection> {
    match obj.get("limit") {
        None | Some(Value::Null) => Ok(DEFAULT_HISTORY_LIMIT),
        Some(v) => v
            .as_u64()
            .filter(|n| (1..=MAX_HISTORY_LIMIT as u64).contains(n))
            .map(|n| n as usize)
            .ok_or_else(|| {
                Rejection::new(
                    id,
                    ErrorCode::BadRequest,
                    format!("limit must be a whole number from 1 to {MAX_HISTORY_LIMIT}"),
                )
            }),
    }
}

/// Topic names: 1-128 characters from `[A-Za-z0-9_.:@/-]`. `:` allows namespaced names such as
/// `user:alice`; the charset keeps topics safe in logs, keys and URLs.
pub fn validate_topic(topic: &str) -> Result<(), String> {
    if topic.is_empty() {
        return Err("topic must not be empty".into());
    }
    if topic.len() > MAX_TOPIC_CHARS {
        return Err(format!("topic is longer than {MAX_TOPIC_CHARS} characters"));
    }
    if let Some(bad) = topic
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "_.:@/-".contains(*c)))
    {
        return Err(format!("topic has a character outside [A-Za-z0-9_.:@/-]: {bad:?}"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn reject(body: &str) -> Rejection {
        Request::parse(body).unwrap_err()
    }

    #[test]
    fn parses_every_action() {
        assert_eq!(
            Request::parse(r#"{"action":"ping","id":7}"#).unwrap(),
            Request {
                id: Some(json!(7)),
                action: Action::Ping
            }
        );
        assert_eq!(Request::parse(r#"{"action":"whoami"}"#).unwrap().action, Action::Whoami);
        assert_eq!(
            Request::parse(r#"{"action":"subscribe","topic":"user:alice"}"#)
                .unwrap()
                .action,
            Action::Subscribe {
                topic: "user:alice".into(),
                since: None
            }
        );
        assert_eq!(
            Request::parse(r#"{"action":"subscribe","topic":"t","since":{"seq":4,"epoch":"e"}}"#)
                .unwrap()
                .action,
            Action::Subscribe {
                topic: "t".into(),
                since: Some(Position {
                    seq: 4,
                    epoch: "e".into()
                })
            }
        );
        assert_eq!(
            Request::parse(r#"{"action":"history","topic":"t","since":{"seq":0,"epoch":""},"limit":1000}"#)
                .unwrap()
                .action,
            Action::History {
                topic: "t".into(),
                since: Some(Position {
                    seq: 0,
                    epoch: "".into()
                }),
                limit: 1000
            }
        );
        assert_eq!(
            Request::parse(r#"{"action":"history","topic":"t"}"#).unwrap().action,
            Action::History {
                topic: "t".into(),
                since: None,
                limit: DEFAULT_HISTORY_LIMIT
            }
        );
        assert_eq!(
            Request::parse(r#"{"action":"unsubscribe","topic":"a"}"#)
                .unwrap()
                .action,
            Action::Unsubscribe { topic: "a".into() }
        );
        assert_eq!(
            Request::parse(r#"{"action":"sendmessage","topic":"a","data":{"x":1}}"#)
                .unwrap()
                .action,
            Action::SendMessage {
                topic: Some("a".into()),
                data: json!({"x":1})
            }
        );
        assert_eq!(
            Request::parse(r#"{"action":"sendmessage","message":"hi"}"#)
                .unwrap()
                .action,
            Action::SendMessage {
                topic: None,
                data: json!("hi")
            }
        );
    }

    #[test]
    fn rejections_carry_codes_and_echo_id() {
        assert_eq!(reject("not json").code, ErrorCode::BadJson);
        assert_eq!(reject("[1,2]").code, ErrorCode::BadJson);
        assert_eq!(reject("{}").code, ErrorCode::MissingAction);
        assert_eq!(reject(r#"{"action":5}"#).code, ErrorCode::MissingAction);
        let r = reject(r#"{"action":"dance","id":"abc"}"#);
        assert_eq!((r.code, r.id), (ErrorCode::UnknownAction, Some(json!("abc"))));
        assert_eq!(reject(r#"{"action":"subscribe"}"#).code, ErrorCode::BadRequest);
        assert_eq!(
            reject(r#"{"action":"subscribe","topic":3}"#).code,
            ErrorCode::BadRequest
        );
        assert_eq!(
            reject(r#"{"action":"subscribe","topic":"has space"}"#).code,
            ErrorCode::InvalidTopic
        );
        assert_eq!(
            reject(r#"{"action":"subscribe","topic":""}"#).code,
            ErrorCode::InvalidTopic
        );
        let long = format!(r#"{{"action":"subscribe","topic":"{}"}}"#, "a".repeat(129));
        assert_eq!(reject(&long).code, ErrorCode::InvalidTopic);
        assert_eq!(
            reject(r#"{"action":"sendmessage","topic":"a"}"#).code,
            ErrorCode::BadRequest
        );
        assert_eq!(reject(r#"{"action":"ping","id":{"x":1}}"#).code, ErrorCode::BadRequest);
        for bad in [
            r#"{"action":"subscribe","topic":"t","since":4}"#,
            r#"{"action":"subscribe","topic":"t","since":{"seq":-1,"epoch":"e"}}"#,
            r#"{"action":"subscribe","topic":"t","since":{"seq":1.5,"epoch":"e"}}"#,
            r#"{"action":"subscribe","topic":"t","since":{"seq":"1","epoch":"e"}}"#,
            r#"{"action":"subscribe","topic":"t","since":{"seq":1}}"#,
            r#"{"action":"subscribe","topic":"t","since":{"seq":1,"epoch":7}}"#,
            r#"{"action":"history","topic":"t","since":{"seq":1,"epoch":"e","x":1}}"#,
            r#"{"action":"history","topic":"t","limit":0}"#,
            r#"{"action":"history","topic":"t","limit":1001}"#,
            r#"{"action":"history","topic":"t","limit":"5"}"#,
        ] {
            assert_eq!(reject(bad).code, ErrorCode::BadRequest, "{bad}");
        }
        let long_epoch = format!(
            r#"{{"action":"history","topic":"t","since":{{"seq":1,"epoch":"{}"}}}}"#,
            "e".repeat(65)
        );
        assert_eq!(reject(&long_epoch).code, ErrorCode::BadRequest);
    }

    #[test]
    fn frames_serialize_as_documented() {
        assert_eq!(Frame::Pong { id: None }.to_json(), r#"{"action":"pong"}"#);
        let whoami = Frame::Whoami {
            connection_id: "c".into(),
            user_id: "u".into(),
            path: None,
            topics: vec!["t".into()],
            id: Some(json!(1)),
        };
        assert_eq!(
            serde_json::to_value(&whoami).unwrap(),
            json!({"action":"whoami","connectionId":"c","userId":"u","topics":["t"],"id":1})
        );
        assert_eq!(
            Frame::Accepted { id: json!("m1") }.to_json(),
            r#"{"action":"accepted","id":"m1"}"#
        );
        let err = Frame::error(ErrorCode::InvalidTopic, "bad", None);
        assert_eq!(
            serde_json::to_value(&err).unwrap(),
            json!({"action":"error","code":"invalid_topic","message":"bad"})
        );
        let msg = Frame::Message {
            topic: None,
            data: json!(1),
            from: None,
            id: Some("m".into()),
            seq: None,
            epoch: None,
        };
        assert_eq!(msg.to_json(), r#"{"action":"message","data":1,"id":"m"}"#);
        let recorded = Frame::Message {
            topic: Some("t".into()),
            data: json!(1),
            from: None,
            id: Some("m".into()),
            seq: Some(5),
            epoch: Some("E".into()),
        };
        let subscribed = Frame::Subscribed {
            topic: "t".into(),
            seq: Some(5),
            epoch: Some("E".into()),
            recovery: Some(Recovery {
                recovered: true,
                messages: vec![recorded.clone()],
                more: false,
            }),
            id: None,
        };
        assert_eq!(
            serde_json::to_value(&subscribed).unwrap(),
            json!({"action":"subscribed","topic":"t","seq":5,"epoch":"E","recovered":true,
                "messages":[{"action":"message","topic":"t","data":1,"id":"m","seq":5,"epoch":"E"}],"more":false})
        );
        let plain = Frame::Subscribed {
            topic: "t".into(),
            seq: None,
            epoch: None,
            recovery: None,
            id: Some(json!(2)),
        };
        assert_eq!(plain.to_json(), r#"{"action":"subscribed","topic":"t","id":2}"#);
    }
}
