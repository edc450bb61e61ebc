//! Publication: what every way in (SQS, EventBridge, `sendmessage`, HTTP) does with a push.
//!
//! 1. **Record** it on its stream when it has one: a topic push on the topic's stream, a user
//!    push on `user:<userId>` (the topic `user:<id>` is that same stream and audience). The
//!    store gives it the stream's next `seq` and the stream's `epoch` and keeps it for
//!    `HISTORY_TTL_SECONDS` ([`crate::store::stream`]); an idempotency key already held gives
//!    the first publication's seq instead. Broadcasts and pushes to one connection have no
//!    stream and are not recorded.
//! 2. **Fan out** one `message` frame carrying `topic`, `seq` and `epoch`: here, or through the
//!    queue as shard jobs when the audience is large ([`crate::shard`]).
//!
//! [`read`] serves the other side: the publications after a client's position, for `subscribe`
//! with `since` and for `history`.
//!
//! This module sits beneath [`crate::push`], [`crate::eventbridge`] and the routes, and above
//! [`crate::shard`] and [`crate::fanout`]; nothing below it calls back up.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tokio::time::Instant;

use crate::auth::valid_user_id;
use crate::fanout::{Audience, RecordError, Report};
use crate::hub::{now_secs, Hub};
use crate::protocol::{validate_topic, Frame, Position, Recovery, MAX_FRAME_BYTES};
use crate::shard;
use crate::store::{Group, NewPublication, Recorded, StoreError, StreamPos};

pub use crate::topics::{user_of_stream, user_stream, USER_STREAM_PREFIX};

const MAX_KEY_CHARS: usize = 128;

/// A push as the queue, EventBridge and HTTP publish take it.
#[derive(Debug, Clone, PartialEq)]
pub struct PushRequest {
    pub audience: Audience,
    /// The frame's topic: the topic pushed to, or `user:<userId>` for a user push.
    pub topic: Option<String>,
    pub data: Value,
    /// `idempotencyKey`: a second push with it on the same stream is not delivered again.
    pub idempotency_key: Option<String>,
}

impl PushRequest {
    pub fn parse(body: &str) -> Result<PushRequest, String> {
        let value: Value = serde_json::from_str(body).map_err(|e| format!("not JSON: {e}"))?;
        Self::from_value(value)
    }

    /// As [`Self::parse`], from JSON already parsed (an EventBridge event's `detail`).
    pub fn from_value(value: Value) -> Result<PushRequest, String> {
        let Value::Object(mut obj) = value else {
            return Err("body must be a JSON object".into());
        };
        const KNOWN: [&str; 7] = [
            "data",
            "topic",
            "userId",
            "connectionId",
            "UserId",
            "Body",
            "idempotencyKey",
        ];
        if let Some(unknown) = obj.keys().find(|k| !KNOWN.contains(&k.as_str())) {
            let shown: String = unknown.chars().take(64).collect();
            return Err(format!(
                "unknown key {shown:?}; expected data with at most one of connectionId, userId, topic"
            ));
        }
        let data = match (obj.remove("data"), obj.remove("Body")) {
            (Some(_), Some(_)) => return Err("give data or Body, not both".into()),
            (Some(d), None) | (None, Some(d)) => d,
            (None, None) => return Err("data is required".into()),
        };
        let idempotency_key = string_field(&mut obj, "idempotencyKey")?;
        if let Some(key) = &idempotency_key {
            if !valid_key(key) {
                return Err(format!("idempotencyKey must be 1-{MAX_KEY_CHARS} printable characters"));
            }
        }
        let user = match (string_field(&mut obj, "userId")?, string_field(&mut obj, "UserId")?) {
            (Some(_), Some(_)) => return Err("give userId or UserId, not both".into()),
            (u, v) => u.or(v),
        };
        let topic = string_field(&mut obj, "topic")?;
        let connection = string_field(&mut obj, "connectionId")?;
        let (audience, topic) = match (connection, user, topic) {
            (None, None, None) => (Audience::Group(Group::Everyone), None),
            (Some(c), None, None) => {
                if !shard::valid_connection_id(&c) {
                    return Err("connectionId must be 1-128 characters without spaces".into());
                }
                (Audience::Connection(c), None)
            }
            (None, Some(u), None) => {
                if !valid_user_id(&u) {
                    return Err("userId must be 1-128 printable characters".into());
                }
                let stream = user_stream(&u);
                (Audience::Group(Group::User(u)), Some(stream))
            }
            (None, None, Some(t)) => {
                validate_topic(&t)?;
                (audience_of_topic(&t)?, Some(t))
            }
            _ => return Err("give at most one of connectionId, userId, topic".into()),
        };
        if idempotency_key.is_some() && topic.is_none() {
            return Err(
                "idempotencyKey needs a topic or userId: broadcasts and connection pushes are not recorded".into(),
            );
        }
        Ok(PushRequest {
            audience,
            topic,
            data,
            idempotency_key,
        })
    }
}

impl PushRequest {
    /// The push as a queue body again (what [`Self::from_value`] reads back unchanged).
    pub fn to_value(&self) -> Value {
        let mut body = Map::new();
        body.insert("data".into(), self.data.clone());
        match &self.audience {
            Audience::Connection(c) => {
                body.insert("connectionId".into(), Value::String(c.clone()));
            }
            Audience::Group(Group::Everyone) => {}
            Audience::Group(_) => {
                if let Some(topic) = &self.topic {
                    body.insert("topic".into(), Value::String(topic.clone()));
                }
            }
        }
        if let Some(key) = &self.idempotency_key {
            body.insert("idempotencyKey".into(), Value::String(key.clone()));
        }
        Value::Object(body)
    }
}

fn string_field(obj: &mut Map<String, Value>, key: &str) -> Result<Option<String>, String> {
    match obj.remove(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(format!("{key} must be a string")),
    }
}

fn valid_key(key: &str) -> bool {
    let chars = key.chars().count();
    (1..=MAX_KEY_CHARS).contains(&chars) && !key.chars().any(char::is_control)
}

/// Who a push to `topic` reaches: its subscribers, or for `user:<id>` that user's connections.
pub fn audience_of_topic(topic: &str) -> Result<Audience, String> {
    match user_of_stream(topic) {
        Some(user) if valid_user_id(user) => Ok(Audience::Group(Group::User(user.to_owned()))),
        Some(_) => Err("user:<id> needs a user id of 1-128 printable characters".into()),
        None => Ok(Audience::Group(Group::Topic(topic.to_owned()))),
    }
}

/// A publication as the store keeps it; rendered into a `message` frame on every read, or a
/// `join`/`leave` frame when it is a presence event ([`crate::presence`]).
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Stored {
    #[serde(default)]
    data: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    event: Option<PresenceEvent>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    from: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    id: Option<String>,
}

/// One publication on its way to its audience.
#[derive(Debug, Clone)]
pub struct Publication {
    /// The stream (and the frame's topic); `None` for broadcasts and connection pushes.
    pub stream: Option<String>,
    pub audience: Audience,
    pub data: Value,
    /// The sending user, for a client's `sendmessage`.
    pub from: Option<String>,
    /// The frame's `id`: the SQS messageId, EventBridge event id or API Gateway messageId.
    pub id: Option<String>,
    /// The idempotency key: a second publication with it on the stream gets the first one's
    /// seq, and is delivered again only when it comes from the same `id` (a redelivery).
    pub key: Option<String>,
}

impl Publication {
    /// A backend's push. Without an `idempotencyKey` its id (SQS messageId, EventBridge event
    /// id) is the key, so a redelivered record or a repeated event keeps its first seq.
    pub fn from_request(request: PushRequest, id: Option<String>) -> Publication {
        Publication {
            stream: request.topic,
            audience: request.audience,
            data: request.data,
            from: None,
            key: request.idempotency_key.or_else(|| id.clone()),
            id,
        }
    }

    /// The `message` frame at `pos` (none: unrecorded).
    pub fn frame(&self, pos: Option<&StreamPos>) -> String {
        Frame::Message {
            topic: self.stream.clone(),
            data: self.data.clone(),
            from: self.from.clone(),
            id: self.id.clone(),
            seq: pos.map(|p| p.seq),
            epoch: pos.map(|p| p.epoch.clone()),
        }
        .to_json()
    }

    /// Whether the frame fits API Gateway's message limit at any seq, checked before recording
    /// so a push that can never be delivered consumes no seq.
    pub fn fits(&self) -> bool {
        let widest = StreamPos {
            seq: u64::MAX,
            epoch: "E".repeat(8),
        };
        self.frame(Some(&widest)).len() <= MAX_FRAME_BYTES
    }
}

/// What recording decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stamp {
    /// No stream, or recording is off: delivered without seq.
    Unrecorded,
    /// Deliver at this place in the stream (new, or the same record again).
    At(StreamPos),
    /// Another publication holds the idempotency key: not delivered again.
    Duplicate(Option<StreamPos>),
}

impl Stamp {
    pub fn pos(&self) -> Option<&StreamPos> {
        match self {
            Stamp::At(pos) => Some(pos),
            Stamp::Duplicate(pos) => pos.as_ref(),
            Stamp::Unrecorded => None,
        }
    }
}

/// Records `publication` on its stream (step 1 of the module docs).
pub async fn record(hub: &Hub, publication: &Publication, now: i64) -> Result<Stamp, StoreError> {
    let Some(stream) = &publication.stream else {
        return Ok(Stamp::Unrecorded);
    };
    let stored = Stored {
        data: publication.data.clone(),
        event: None,
        from: publication.from.clone(),
        id: publication.id.clone(),
    };
    let owner = publication.id.as_deref().unwrap_or("");
    record_stored(hub, stream, &stored, publication.key.as_deref(), owner, now).await
}

/// Records one stored publication (a push, or a presence event) on `stream`: the one way onto
/// a stream, so every publication is counted and stamped alike.
async fn record_stored(
    hub: &Hub,
    stream: &str,
    stored: &Stored,
    key: Option<&str>,
    owner: &str,
    now: i64,
) -> Result<Stamp, StoreError> {
    let Some(ttl) = hub.config.history.ttl else {
        return Ok(Stamp::Unrecorded);
    };
    let body = serde_json::to_string(stored).unwrap_or_default();
    let recorded = hub
        .store
        .record(
            &NewPublication {
                stream,
                key,
                owner,
                body: &body,
                ttl: now + ttl.as_secs() as i64,
            },
            now,
        )
        .await?;
    Ok(match recorded {
        Recorded::New(pos) => {
            crate::metrics::add(crate::metrics::Metric::Publications, 1);
            Stamp::At(pos)
        }
        Recorded::Again(pos) => Stamp::At(pos),
        Recorded::Duplicate(pos) => {
            tracing::info!(stream, "duplicate publication not delivered again");
            Stamp::Duplicate(pos)
        }
    })
}

/// How a publication was delivered.
#[derive(Debug)]
pub enum Delivered {
    /// By this invocation, completely.
    Here(Report),
    /// Through the queue as shard jobs (its listing and hand-offs succeeded; see [`shard`]).
    Sharded,
    /// Not at all: a duplicate of an earlier publication.
    Duplicate,
}

/// What a push became: how it was delivered and where it stands in its stream.
#[derive(Debug)]
pub struct Published {
    pub delivered: Delivered,
    pub stamp: Stamp,
}

/// Records and delivers one push (the whole pipeline of the module docs); `Ok` only when
/// complete, or, for a sharded push, when every part not delivered here was handed on.
pub async fn publish(
    hub: &Hub,
    request: PushRequest,
    id: Option<String>,
    deadline: Option<Instant>,
) -> Result<Published, RecordError> {
    publish_with(hub, request, id, deadline, true).await
}

/// As [`publish`], never through the queue: for a caller that already knows the audience is
/// small and wants its delivery report (`POST /publish`).
pub async fn publish_here(
    hub: &Hub,
    request: PushRequest,
    id: Option<String>,
    deadline: Option<Instant>,
) -> Result<Published, RecordError> {
    publish_with(hub, request, id, deadline, false).await
}

async fn publish_with(
    hub: &Hub,
    request: PushRequest,
    id: Option<String>,
    deadline: Option<Instant>,
    may_shard: bool,
) -> Result<Published, RecordError> {
    let endpoint = hub
        .config
        .management_endpoint
        .as_deref()
        .ok_or(RecordError::NoEndpoint)?;
    let publication = Publication::from_request(request, id);
    if !publication.fits() {
        return Err(RecordError::TooLarge);
    }
    let stamp = record(hub, &publication, now_secs()).await.map_err(|e| {
        tracing::error!(error = %e, "could not record the publication");
        RecordError::Record(e)
    })?;
    if let Stamp::Duplicate(_) = stamp {
        return Ok(Published {
            delivered: Delivered::Duplicate,
            stamp,
        });
    }
    let frame = publication.frame(stamp.pos());
    // With a queue, a group push may be split into shard jobs.
    let shard_id = publication.id.as_deref().filter(|id| shard::valid_connection_id(id));
    let queue = hub.queue.as_ref().filter(|_| may_shard);
    if let (Some(_), Audience::Group(group), Some(shard_id)) = (queue, &publication.audience, shard_id) {
        let data = publication.data;
        shard::deliver_push(hub, endpoint, shard_id, group.clone(), data, stamp.pos(), deadline).await?;
        return Ok(Published {
            delivered: Delivered::Sharded,
            stamp,
        });
    }
    let report = hub
        .fanout(deadline)
        .deliver(endpoint, publication.audience, frame.as_bytes(), None, now_secs())
        .await;
    tracing::info!(
        delivered = report.delivered,
        gone = report.gone,
        failed = report.failed,
        seq = stamp.pos().map(|p| p.seq),
        "pushed"
    );
    if report.is_complete() {
        Ok(Published {
            delivered: Delivered::Here(report),
            stamp,
        })
    } else {
        Err(RecordError::Incomplete {
            delivered: report.delivered,
            failed: report.failed,
            store: report.store_error,
        })
    }
}

/// A presence event on a topic's stream: a user's first connection joined it, or their last left.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PresenceEvent {
    pub kind: PresenceKind,
    pub user_id: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PresenceKind {
    Join,
    Leave,
}

impl PresenceEvent {
    /// The `join` or `leave` frame at `pos` (none: unrecorded).
    pub fn frame(&self, topic: &str, pos: Option<&StreamPos>) -> Frame {
        let (topic, user_id) = (topic.to_owned(), self.user_id.clone());
        let (seq, epoch) = (pos.map(|p| p.seq), pos.map(|p| p.epoch.clone()));
        match self.kind {
            PresenceKind::Join => Frame::Join {
                topic,
                user_id,
                seq,
                epoch,
            },
            PresenceKind::Leave => Frame::Leave {
                topic,
                user_id,
                seq,
                epoch,
            },
        }
    }
}

/// Records a presence event on `topic`'s stream like any publication (so a client recovering
/// with `since` sees it among the messages, in seq order), then delivers its frame to every
/// subscriber of `topic`, the user's own connections included. `endpoint` is the @connections
/// endpoint. Returns the frame delivered; an incomplete delivery is logged, not returned: the
/// event is in history, and a `presence` read tells the truth.
pub async fn announce(
    hub: &Hub,
    endpoint: &str,
    topic: &str,
    event: &PresenceEvent,
    deadline: Option<Instant>,
    now: i64,
) -> Result<Frame, StoreError> {
    let stored = Stored {
        data: Value::Null,
        event: Some(event.clone()),
        from: None,
        id: None,
    };
    // No idempotency key: every join and leave is a new publication.
    let stamp = record_stored(hub, topic, &stored, None, "", now).await?;
    let pos = stamp.pos().cloned();
    let frame = event.frame(topic, pos.as_ref());
    let report = hub
        .fanout(deadline)
        .deliver(
            endpoint,
            Audience::Group(Group::Topic(topic.to_owned())),
            frame.to_json().as_bytes(),
            None,
            now_secs(),
        )
        .await;
    tracing::info!(
        topic,
        kind = ?event.kind,
        delivered = report.delivered,
        failed = report.failed,
        seq = pos.as_ref().map(|p| p.seq),
        "presence event"
    );
    if !report.is_complete() {
        tracing::error!(
            topic,
            failed = report.failed,
            "presence event not delivered to every subscriber"
        );
    }
    Ok(frame)
}

/// Where a stream stands and, with `since`, what came after it: `subscribe` and `history`.
/// `None` for the position when recording is off.
pub async fn read(
    hub: &Hub,
    stream: &str,
    since: Option<&Position>,
    limit: usize,
    now: i64,
) -> Result<(Option<StreamPos>, Option<Recovery>), StoreError> {
    let Some(ttl) = hub.config.history.ttl else {
        // Nothing is recorded: whatever the client missed is lost.
        let recovery = since.map(|_| Recovery {
            recovered: false,
            messages: Vec::new(),
            more: false,
        });
        return Ok((None, recovery));
    };
    let ttl = now + ttl.as_secs() as i64;
    let keep = hub.config.history.size;
    let Some(since) = since else {
        let history = hub.store.history(stream, 0, 0, keep, ttl, now).await?;
        return Ok((Some(history.head), None));
    };
    let mut history = hub.store.history(stream, since.seq, limit, keep, ttl, now).await?;
    let same_epoch = history.head.epoch == since.epoch;
    let mut recovered = same_epoch && since.seq <= history.head.seq;
    if !recovered {
        // The client's position means nothing in this epoch: give it all that is left.
        history = hub.store.history(stream, 0, limit, keep, ttl, now).await?;
    } else {
        // Every seq after the client's must be there, without a hole.
        let mut expected = since.seq + 1;
        for p in &history.publications {
            recovered &= p.seq == expected;
            expected = p.seq + 1;
        }
        recovered &= history.more || expected == history.head.seq + 1;
    }
    let mut messages = Vec::new();
    let mut more = history.more;
    // The reply is one frame: it must stay within API Gateway's 128 KB with its envelope.
    let mut budget = MAX_FRAME_BYTES.saturating_sub(512 + 2 * stream.len());
    for p in history.publications {
        let Ok(stored) = serde_json::from_str::<Stored>(&p.body) else {
            tracing::error!(stream, seq = p.seq, "unreadable stored publication");
            recovered = false;
            continue;
        };
        let pos = StreamPos {
            seq: p.seq,
            epoch: history.head.epoch.clone(),
        };
        let frame = match stored.event {
            Some(event) => event.frame(stream, Some(&pos)),
            None => Frame::Message {
                topic: Some(stream.to_owned()),
                data: stored.data,
                from: stored.from,
                id: stored.id,
                seq: Some(pos.seq),
                epoch: Some(pos.epoch),
            },
        };
        let size = frame.to_json().len() + 1;
        if size > budget {
            more = true;
            break;
        }
        budget -= size;
        messages.push(frame);
    }
    Ok((
        Some(history.head),
        Some(Recovery {
            recovered,
            messages,
            more,
        }),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn audience(body: &str) -> Audience {
        PushRequest::parse(body).unwrap().audience
    }

    #[test]
    fn every_body_shape() {
        assert_eq!(audience(r#"{"data":1}"#), Audience::Group(Group::Everyone));
        assert_eq!(
            audience(r#"{"userId":"u","data":1}"#),
            Audience::Group(Group::User("u".into()))
        );
        assert_eq!(
            audience(r#"{"UserId":"u","Body":"hi"}"#),
            Audience::Group(Group::User("u".into()))
        );
        assert_eq!(
            audience(r#"{"topic":"t","data":1}"#),
            Audience::Group(Group::Topic("t".into()))
        );
        assert_eq!(
            audience(r#"{"connectionId":"c=","data":null}"#),
            Audience::Connection("c=".into())
        );
        let p = PushRequest::parse(r#"{"topic":"t","data":{"a":[1]}}"#).unwrap();
        assert_eq!((p.topic.as_deref(), p.data), (Some("t"), json!({"a":[1]})));
    }

    #[test]
    fn a_user_push_and_the_user_topic_are_one_stream() {
        let by_user = PushRequest::parse(r#"{"userId":"alice","data":1}"#).unwrap();
        let by_topic = PushRequest::parse(r#"{"topic":"user:alice","data":1}"#).unwrap();
        assert_eq!(by_user, by_topic);
        assert_eq!(by_user.topic.as_deref(), Some("user:alice"));
        assert_eq!(by_user.audience, Audience::Group(Group::User("alice".into())));
    }

    #[test]
    fn a_push_reads_back_from_its_queue_body() {
        for body in [
            r#"{"data":1}"#,
            r#"{"userId":"alice","data":{"a":1}}"#,
            r#"{"topic":"news","data":"x","idempotencyKey":"k"}"#,
            r#"{"connectionId":"c=","data":null}"#,
        ] {
            let push = PushRequest::parse(body).unwrap();
            assert_eq!(PushRequest::from_value(push.to_value()).unwrap(), push, "{body}");
        }
    }

    #[test]
    fn idempotency_keys() {
        let p = PushRequest::parse(r#"{"topic":"t","data":1,"idempotencyKey":"order-7"}"#).unwrap();
        assert_eq!(p.idempotency_key.as_deref(), Some("order-7"));
        for (body, why) in [
            (
                r#"{"topic":"t","data":1,"idempotencyKey":""}"#,
                "idempotencyKey must be",
            ),
            (
                r#"{"topic":"t","data":1,"idempotencyKey":7}"#,
                "idempotencyKey must be a string",
            ),
            (
                r#"{"topic":"t","data":1,"idempotencyKey":"a\u0001"}"#,
                "idempotencyKey must be",
            ),
            (r#"{"data":1,"idempotencyKey":"k"}"#, "not recorded"),
            (r#"{"connectionId":"c","data":1,"idempotencyKey":"k"}"#, "not recorded"),
        ] {
            let err = PushRequest::parse(body).unwrap_err();
            assert!(err.contains(why), "{body}: {err}");
        }
        let long = format!(r#"{{"topic":"t","data":1,"idempotencyKey":"{}"}}"#, "k".repeat(129));
        assert!(PushRequest::parse(&long).is_err());
    }

    #[test]
    fn malformed_bodies_are_named() {
        for (body, why) in [
            ("", "not JSON"),
            ("[1]", "JSON object"),
            (r#"{"topic":"t"}"#, "data is required"),
            (r#"{"topik":"t","data":1}"#, "unknown key"),
            (r#"{"topic":"t","userId":"u","data":1}"#, "at most one"),
            (r#"{"topic":"bad topic","data":1}"#, "topic"),
            (r#"{"topic":"user:","data":1}"#, "user id"),
            (r#"{"userId":5,"data":1}"#, "userId must be a string"),
            (r#"{"connectionId":"","data":1}"#, "connectionId"),
            (r#"{"data":1,"Body":2}"#, "not both"),
        ] {
            let err = PushRequest::parse(body).unwrap_err();
            assert!(err.contains(why), "{body}: {err}");
        }
    }
}
