//! `asyncapi.yaml` against the code: the same actions, error codes, limits and topic rules as
//! `src/protocol.rs`; request schemas that accept exactly what the parser accepts; security
//! schemes that are the authorizer's token sources in its order; and every message of the
//! document produced by the handlers (so it carries no dead message). The other integration
//! tests validate every frame they see through `common::asyncapi::assert_frame`.

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;

use common::asyncapi::{self, assert_frame, document};
use serde_json::{json, Value};
use wshub::notify::memory::MemoryNotifier;
use wshub::notify::NotifyError;
use wshub::protocol::{validate_topic, ErrorCode, Request, ACTIONS, MAX_FRAME_BYTES, MAX_TOPIC_CHARS};
use wshub::store::memory::MemoryStore;
use wshub::{Config, Hub};

/// Every error code. The match makes a new variant a compile error here until it is listed.
const ERROR_CODES: [ErrorCode; 13] = [
    ErrorCode::BadJson,
    ErrorCode::MissingAction,
    ErrorCode::UnknownAction,
    ErrorCode::BadRequest,
    ErrorCode::InvalidTopic,
    ErrorCode::BroadcastDisabled,
    ErrorCode::ForbiddenTopic,
    ErrorCode::PayloadTooLarge,
    ErrorCode::NotConnected,
    ErrorCode::RateLimited,
    ErrorCode::NotPresenceTopic,
    ErrorCode::TooManyTopics,
    ErrorCode::Internal,
];

fn wire_name(code: ErrorCode) -> String {
    match code {
        ErrorCode::BadJson
        | ErrorCode::MissingAction
        | ErrorCode::UnknownAction
        | ErrorCode::BadRequest
        | ErrorCode::InvalidTopic
        | ErrorCode::BroadcastDisabled
        | ErrorCode::ForbiddenTopic
        | ErrorCode::PayloadTooLarge
        | ErrorCode::NotConnected
        | ErrorCode::RateLimited
        | ErrorCode::NotPresenceTopic
        | ErrorCode::TooManyTopics
        | ErrorCode::Internal => serde_json::to_value(code).unwrap().as_str().unwrap().to_owned(),
    }
}

fn doc() -> &'static Value {
    &document().doc
}

fn strings(value: &Value) -> BTreeSet<String> {
    value
        .as_array()
        .unwrap_or_else(|| panic!("not a list: {value}"))
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn the_document_has_every_action_and_error_code_of_the_code_and_no_other() {
    let d = document();
    let documented: BTreeSet<String> = d.requests.values().filter_map(|m| m.action.clone()).collect();
    let actions: BTreeSet<String> = ACTIONS.iter().map(|a| a.to_string()).collect();
    assert_eq!(documented, actions, "request messages vs protocol::ACTIONS");
    // Each action is a `receive` operation of its own name with its own request message.
    for action in ACTIONS {
        let (request, replies) = &d.operations[action];
        assert_eq!(d.requests[request].action.as_deref(), Some(action));
        assert!(replies.contains("error"), "{action} can fail");
    }

    let codes: BTreeSet<String> = ERROR_CODES.into_iter().map(wire_name).collect();
    let enum_ = &doc()["components"]["schemas"]["ErrorCode"];
    assert_eq!(strings(&enum_["enum"]), codes, "ErrorCode enum vs protocol::ErrorCode");
    let described = enum_["description"].as_str().unwrap();
    for code in &codes {
        assert!(described.contains(&format!("`{code}`:")), "{code} is described");
    }
}

#[test]
fn the_document_states_the_codes_limits() {
    assert_eq!(doc()["info"]["x-wshub-max-frame-bytes"], json!(MAX_FRAME_BYTES));
    assert_eq!(
        doc()["components"]["schemas"]["Topic"]["maxLength"],
        json!(MAX_TOPIC_CHARS)
    );
}

#[test]
fn the_topic_schema_accepts_exactly_what_the_code_accepts() {
    let topic = asyncapi::validator(doc(), "#/components/schemas/Topic");
    let mut samples: Vec<String> = (0u8..128).map(|b| format!("a{}", b as char)).collect();
    samples.extend(
        ["", "a", "user:alice", "jobs/42", "a.b-c_d@e", "café", "TOPIC#x", "a b"]
            .into_iter()
            .map(str::to_owned),
    );
    for n in [MAX_TOPIC_CHARS - 1, MAX_TOPIC_CHARS, MAX_TOPIC_CHARS + 1] {
        samples.push("t".repeat(n));
    }
    for sample in samples {
        assert_eq!(
            topic.is_valid(&json!(sample)),
            validate_topic(&sample).is_ok(),
            "topic {sample:?}"
        );
    }
}

#[test]
fn request_schemas_accept_exactly_what_the_parser_accepts() {
    let d = document();
    let long_id = "i".repeat(129);
    let bodies = [
        json!({"action": "ping"}),
        json!({"action": "ping", "id": 7}),
        json!({"action": "ping", "id": 1.5}),
        json!({"action": "ping", "id": "abc"}),
        json!({"action": "ping", "id": null}),
        json!({"action": "ping", "id": long_id}),
        json!({"action": "ping", "id": true}),
        json!({"action": "ping", "id": {"x": 1}}),
        json!({"action": "ping", "extra": [1]}),
        json!({"action": "whoami"}),
        json!({"action": "whoami", "id": []}),
        json!({"action": "subscribe", "topic": "news"}),
        json!({"action": "subscribe"}),
        json!({"action": "subscribe", "topic": null}),
        json!({"action": "subscribe", "topic": 3}),
        json!({"action": "subscribe", "topic": ""}),
        json!({"action": "subscribe", "topic": "a b"}),
        json!({"action": "unsubscribe", "topic": "user:alice", "id": "u"}),
        json!({"action": "unsubscribe", "topic": ["a"]}),
        json!({"action": "sendmessage", "topic": "t", "data": {"x": 1}}),
        json!({"action": "sendmessage", "topic": "t", "message": "hi"}),
        json!({"action": "sendmessage", "data": null}),
        json!({"action": "sendmessage", "topic": null, "data": 1}),
        json!({"action": "sendmessage", "topic": "t"}),
        json!({"action": "sendmessage", "topic": "news!", "data": 1}),
        json!({"action": "sendmessage", "topic": 5, "data": 1}),
    ];
    for body in bodies {
        let action = body["action"].as_str().unwrap();
        let message = d
            .requests
            .values()
            .find(|m| m.action.as_deref() == Some(action))
            .unwrap();
        assert_eq!(
            message.validator.is_valid(&body),
            Request::parse(&body.to_string()).is_ok(),
            "{body}: schema {} vs Request::parse",
            message.schema_ref
        );
    }
}

#[test]
fn the_forwarded_request_schema_accepts_exactly_what_is_forwarded() {
    let d = document();
    let schema = &d.requests["forwarded"].validator;
    let config = wshub::forward::ForwardConfig {
        actions: wshub::forward::parse_actions("order.*,job").unwrap(),
        bus: "b".into(),
    };
    for body in [
        json!({"action": "job"}),
        json!({"action": "job", "id": 1, "data": {"x": 1}}),
        json!({"action": "order.create", "data": null}),
        json!({"action": "job", "token": "t"}),
        json!({"action": "job", "message": "m"}),
    ] {
        let forwarded = wshub::forward::parse_frame(&body.to_string(), &config, &None);
        assert_eq!(schema.is_valid(&body), forwarded.is_some_and(|f| f.is_ok()), "{body}");
    }
    // The hub's own actions are never forwarded, and the schema says so.
    for action in ACTIONS {
        assert!(!schema.is_valid(&json!({"action": action})), "{action}");
        assert!(wshub::forward::parse_actions(action).is_err());
    }
}

#[test]
fn every_example_matches_its_message() {
    let d = document();
    for message in d.requests.values().chain(d.frames.values()) {
        let object = asyncapi::resolve(doc(), &format!("#/components/messages/{}", message.key));
        let examples = object["examples"].as_array();
        assert!(
            examples.is_some_and(|e| !e.is_empty()),
            "{} has an example",
            message.key
        );
        for example in examples.unwrap() {
            let payload = &example["payload"];
            asyncapi::check(message, payload);
            match &message.action {
                // A documented request is one the parser takes (and the catch-all one it refuses).
                Some(action) if d.requests.contains_key(&message.key) => {
                    let parsed = Request::parse(&payload.to_string());
                    assert!(parsed.is_ok(), "{action} example {payload}: {parsed:?}");
                }
                None => assert!(Request::parse(&payload.to_string()).is_err(), "{payload}"),
                Some(_) => {
                    assert_frame(payload);
                }
            }
        }
    }
}

fn event(name: &str) -> Value {
    let path = format!("{}/events/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

struct Fixture {
    hub: Hub,
    notifier: Arc<MemoryNotifier>,
}

fn fixture(overrides: &[(&str, &str)]) -> Fixture {
    let mut params = event("env.json")["Parameters"].as_object().unwrap().clone();
    for (k, v) in overrides {
        params.insert(k.to_string(), json!(v));
    }
    let config = Config::from_lookup(|name| params.get(name).and_then(Value::as_str).map(str::to_owned)).unwrap();
    let notifier = Arc::new(MemoryNotifier::new());
    let hub = Hub::new(config, Arc::new(MemoryStore::new()), notifier.clone());
    Fixture { hub, notifier }
}

/// What the handlers produced, as messages of the document.
#[derive(Default)]
struct Exercised {
    messages: BTreeSet<String>,
    codes: BTreeSet<String>,
}

impl Fixture {
    async fn connect(&self, connection_id: &str, user: &str) {
        let mut e = event("connect.json");
        e["requestContext"]["connectionId"] = json!(connection_id);
        e["requestContext"]["authorizer"]["userId"] = json!(user);
        let response = wshub::handle(&self.hub, e, None).await.unwrap();
        assert_eq!(response["statusCode"], 200);
    }

    /// Sends `body` as a text frame and checks the reply: it matches its message's schema and is
    /// one the operation for the request (the catch-all one for an invalid request) may reply.
    async fn request(&self, seen: &mut Exercised, connection_id: &str, body: &str) -> Value {
        self.request_as(seen, connection_id, None, body).await
    }

    /// As [`Self::request`], with the authorizer's `userId` set to `user` (else ping.json's).
    async fn request_as(&self, seen: &mut Exercised, connection_id: &str, user: Option<&str>, body: &str) -> Value {
        let d = document();
        let mut e = event("ping.json");
        e["requestContext"]["connectionId"] = json!(connection_id);
        if let Some(user) = user {
            e["requestContext"]["authorizer"]["userId"] = json!(user);
        }
        e["body"] = json!(body);
        let reply = asyncapi::reply_frame(&wshub::handle(&self.hub, e, None).await.unwrap());
        let key = assert_frame(&reply);
        let parsed = Request::parse(body);
        let forwarded = self
            .hub
            .config
            .forward
            .as_ref()
            .is_some_and(|c| wshub::forward::parse_frame(body, c, &None).is_some_and(|f| f.is_ok()));
        let operation = match &parsed {
            Ok(_) => serde_json::from_str::<Value>(body).unwrap()["action"]
                .as_str()
                .unwrap()
                .to_owned(),
            Err(_) if forwarded => "forward".to_owned(),
            Err(_) => "unrecognized".to_owned(),
        };
        let (request, replies) = &d.operations[&operation];
        if parsed.is_ok() || forwarded {
            asyncapi::check(&d.requests[request], &serde_json::from_str(body).unwrap());
        }
        assert!(
            replies.contains(key),
            "{body}: reply {reply} is not among operation {operation}'s replies {replies:?}"
        );
        seen.messages.insert(request.clone());
        seen.messages.insert(key.to_owned());
        if let Some(code) = reply["code"].as_str() {
            seen.codes.insert(code.to_owned());
        }
        reply
    }

    fn pushes(&self, seen: &mut Exercised, connection_id: &str) -> Vec<Value> {
        let frames = asyncapi::memory_pushes(&self.notifier, connection_id);
        for frame in &frames {
            seen.messages.insert(assert_frame(frame).to_owned());
        }
        frames
    }
}

#[tokio::test]
async fn the_handlers_produce_every_message_and_error_code_of_the_document() {
    let mut seen = Exercised::default();
    let f = fixture(&[]);
    f.connect("A", "alice").await;
    f.connect("B", "bob").await;
    let s = &mut seen;

    assert_eq!(f.request(s, "A", r#"{"action":"ping","id":1}"#).await["action"], "pong");
    for id in ["A", "B"] {
        let reply = f.request(s, id, r#"{"action":"subscribe","topic":"news"}"#).await;
        assert_eq!(reply["action"], "subscribed");
    }
    let me = f.request(s, "A", r#"{"action":"whoami","id":"w"}"#).await;
    assert_eq!(me["topics"], json!(["news"]));
    let sent = f
        .request(s, "A", r#"{"action":"sendmessage","topic":"news","data":{"x":1}}"#)
        .await;
    assert_eq!(sent["recipients"], 1);
    assert_eq!(f.pushes(s, "B")[0]["from"], "alice");
    // A delivery that keeps failing shows up as `failed`.
    let refused = NotifyError::Rejected {
        status: 403,
        message: "forbidden".into(),
    };
    f.notifier.fail_next("B", vec![refused]);
    let sent = f
        .request(s, "A", r#"{"action":"sendmessage","topic":"news","message":2}"#)
        .await;
    assert_eq!(
        (sent["recipients"].as_u64(), sent["failed"].as_u64()),
        (Some(0), Some(1))
    );
    // Recovery: B subscribes again from before A's two messages and gets both back.
    let recovered = f
        .request(
            s,
            "B",
            &json!({"action": "subscribe", "topic": "news", "since": {"seq": 0, "epoch": sent["epoch"]}}).to_string(),
        )
        .await;
    assert_eq!(
        (recovered["recovered"].as_bool(), recovered["seq"].as_u64()),
        (Some(true), Some(2))
    );
    let page = f
        .request(s, "B", r#"{"action":"history","topic":"news","limit":1}"#)
        .await;
    assert_eq!(
        (page["action"].as_str(), page["more"].as_bool()),
        (Some("history"), Some(true))
    );
    let unsubscribed = f.request(s, "A", r#"{"action":"unsubscribe","topic":"news"}"#).await;
    assert_eq!(unsubscribed["action"], "unsubscribed");

    // A push from SQS (no `from`).
    let batch = common::sqs_batch(&[("m-1", json!({"topic": "news", "data": "headline"}))]);
    let response = wshub::handle(&f.hub, batch, None).await.unwrap();
    assert_eq!(response, json!({"batchItemFailures": []}));
    assert_eq!(f.pushes(s, "B").last().unwrap()["id"], "m-1");

    let big = json!({"action": "sendmessage", "topic": "news", "data": "x".repeat(MAX_FRAME_BYTES)});
    for (body, code) in [
        ("not json".to_owned(), "bad_json"),
        (r#"{"id":3}"#.to_owned(), "missing_action"),
        (r#"{"action":"dance","id":4}"#.to_owned(), "unknown_action"),
        (r#"{"action":"subscribe"}"#.to_owned(), "bad_request"),
        (r#"{"action":"subscribe","topic":"a b"}"#.to_owned(), "invalid_topic"),
        (r#"{"action":"sendmessage","data":1}"#.to_owned(), "broadcast_disabled"),
        (big.to_string(), "payload_too_large"),
    ] {
        assert_eq!(f.request(s, "A", &body).await["code"], code, "{body}");
    }
    assert_eq!(
        f.request(s, "ghost", r#"{"action":"whoami"}"#).await["code"],
        "not_connected"
    );

    // A forwarded action: accepted once on the bus, `internal` when the put fails.
    let bus = Arc::new(wshub::forward::MemoryBus::new());
    let forwarding = fixture(&[("FORWARD_ACTIONS", "order.*"), ("FORWARD_EVENT_BUS", "b")]);
    let forwarding = Fixture {
        hub: forwarding.hub.with_events(bus.clone()),
        notifier: forwarding.notifier,
    };
    forwarding.connect("A", "alice").await;
    let body = r#"{"action":"order.create","id":"o-1","data":{"n":1}}"#;
    assert_eq!(
        forwarding.request(s, "A", body).await,
        json!({"action": "accepted", "id": "o-1"})
    );
    bus.set_failing(true);
    assert_eq!(forwarding.request(s, "A", body).await["code"], "internal");

    let restricted = fixture(&[("TOPIC_ACCESS", "restricted")]);
    restricted.connect("A", "alice").await;
    let reply = restricted
        .request(s, "A", r#"{"action":"subscribe","topic":"user:bob"}"#)
        .await;
    assert_eq!(reply["code"], "forbidden_topic");

    // Presence: join, the presence reply, leave; and a topic that does not track presence.
    let room = fixture(&[("PRESENCE_TOPICS", "room")]);
    room.connect("A", "alice").await;
    room.connect("B", "bob").await;
    for (id, user) in [("A", "alice"), ("B", "bob")] {
        room.request_as(s, id, Some(user), r#"{"action":"subscribe","topic":"room"}"#)
            .await;
    }
    assert_eq!(room.pushes(s, "A").last().unwrap()["action"], "join");
    let members = room.request(s, "A", r#"{"action":"presence","topic":"room"}"#).await;
    assert_eq!(members["count"], 2);
    room.request_as(s, "B", Some("bob"), r#"{"action":"unsubscribe","topic":"room"}"#)
        .await;
    assert_eq!(room.pushes(s, "A").last().unwrap()["action"], "leave");
    let reply = room.request(s, "A", r#"{"action":"presence","topic":"news"}"#).await;
    assert_eq!(reply["code"], "not_presence_topic");

    let limited = fixture(&[("SEND_RATE_PER_SECOND", "1"), ("SEND_RATE_BURST", "1")]);
    limited.connect("A", "alice").await;
    let send = r#"{"action":"sendmessage","topic":"t","data":1}"#;
    limited.request(s, "A", send).await;
    assert_eq!(limited.request(s, "A", send).await["code"], "rate_limited");
    let capped = fixture(&[("MAX_TOPICS_PER_CONNECTION", "1")]);
    capped.connect("A", "alice").await;
    assert_eq!(
        capped.request(s, "A", r#"{"action":"subscribe","topic":"one"}"#).await["action"],
        "subscribed"
    );
    let reply = capped
        .request(s, "A", r#"{"action":"subscribe","topic":"two","id":5}"#)
        .await;
    assert_eq!(reply["code"], "too_many_topics");

    // No @connections endpoint can be derived: the backend side is broken, not the request.
    let unconfigured = fixture(&[("APIGW_MANAGEMENT_ENDPOINT", "")]);
    unconfigured.connect("A", "alice").await;
    let reply = unconfigured
        .request(s, "A", r#"{"action":"sendmessage","topic":"t","data":1}"#)
        .await;
    assert_eq!(reply["code"], "internal");

    let d = document();
    let every_message: BTreeSet<String> = d.requests.keys().chain(d.frames.keys()).cloned().collect();
    let channel_messages: BTreeSet<String> = doc()["channels"][asyncapi::CHANNEL]["messages"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    assert_eq!(
        every_message, channel_messages,
        "every channel message is in an operation"
    );
    let components: BTreeSet<String> = doc()["components"]["messages"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    assert_eq!(
        components, channel_messages,
        "every message component is on the channel"
    );
    assert_eq!(seen.messages, every_message, "messages produced vs documented");
    let codes: BTreeSet<String> = ERROR_CODES.into_iter().map(wire_name).collect();
    assert_eq!(seen.codes, codes, "error codes produced vs documented");
}

/// An authorizer event carrying `token` only where the security scheme says.
fn authorizer_event(scheme: &Value, token: &str, mut e: Value) -> Value {
    let name = scheme["name"].as_str().unwrap_or_default();
    match (scheme["type"].as_str(), scheme["in"].as_str()) {
        (Some("httpApiKey"), Some("header")) if name.eq_ignore_ascii_case("sec-websocket-protocol") => {
            e["headers"][name] = json!(format!("websocket, {token}"))
        }
        (Some("httpApiKey"), Some("header")) => e["headers"][name] = json!(token),
        (Some("httpApiKey"), Some("query")) => e["queryStringParameters"][name] = json!(token),
        (Some("http"), _) => {
            assert_eq!(scheme["scheme"], "bearer");
            e["headers"]["Authorization"] = json!(format!("Bearer {token}"))
        }
        other => panic!("security scheme {scheme} ({other:?}) is not one the authorizer reads"),
    }
    e
}

#[tokio::test]
async fn every_security_scheme_admits_in_the_documented_order() {
    let f = fixture(&[]);
    let mut blank = event("authorizer-token-header.json");
    blank["headers"] = json!({"Host": "abcdef1234.execute-api.us-east-1.amazonaws.com"});
    blank["queryStringParameters"] = json!({});
    for e in ["multiValueHeaders", "multiValueQueryStringParameters"] {
        blank.as_object_mut().unwrap().remove(e);
    }
    let authorize = |e: Value| async {
        let r = wshub::handle(&f.hub, e, None).await.unwrap();
        let effect = r["policyDocument"]["Statement"][0]["Effect"]
            .as_str()
            .unwrap()
            .to_owned();
        (effect, r["principalId"].as_str().unwrap().to_owned())
    };
    let allowed = ("Allow".to_owned(), "alice".to_owned());
    let denied = ("Deny".to_owned(), "unauthorized".to_owned());
    assert_eq!(authorize(blank.clone()).await, denied, "no token");
    for server in ["aws", "local"] {
        let schemes: Vec<&Value> = doc()["servers"][server]["security"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| asyncapi::resolve(doc(), s["$ref"].as_str().unwrap()))
            .collect();
        assert_eq!(schemes.len(), 5, "{server}: the five token sources");
        for (i, scheme) in schemes.iter().enumerate() {
            let alone = authorizer_event(scheme, "alice-token", blank.clone());
            assert_eq!(authorize(alone).await, allowed, "{scheme}");
            assert_eq!(
                authorize(authorizer_event(scheme, "wrong", blank.clone())).await,
                denied,
                "{scheme}"
            );
            // The first source found decides: a right token further down does not rescue it.
            for later in &schemes[i + 1..] {
                let both = authorizer_event(later, "alice-token", authorizer_event(scheme, "wrong", blank.clone()));
                assert_eq!(authorize(both).await, denied, "{scheme} before {later}");
            }
        }
    }
}
