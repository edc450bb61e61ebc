//! Malformed events, client frames and SQS bodies, one table: each row gets its documented
//! answer (an invocation error's `errorType`, an error frame's `code`, or a batch item failure),
//! nothing panics, and after a bad frame the connection is still registered and still answers
//! `ping`. What only a real socket can carry (invalid UTF-8, a frame over 128 KB) is tested
//! through the local hub in tests/local.rs.

mod common;

use std::sync::Arc;

use base64::Engine as _;
use serde_json::{json, Value};
use wshub::notify::memory::MemoryNotifier;
use wshub::store::memory::MemoryStore;
use wshub::store::ConnectionStore;
use wshub::{Config, Hub};

/// The connection every bad frame arrives on; `$connect`ed before the table runs.
const CONNECTION: &str = "bad-input-conn=";
/// A connection that never connected (or has gone): only `not_connected` rows use it.
const GHOST: &str = "ghost-conn=";
const MESSAGE_ID: &str = "bad-input-message";
const OVER_128_KB: usize = 128 * 1024 + 1;

fn event(name: &str) -> Value {
    let path = format!("{}/events/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))).unwrap()
}

/// What a row sends.
enum Input {
    /// A whole Lambda event, as the runtime hands it to `wshub::handle`.
    Event(Value),
    /// A text frame's body on [`CONNECTION`]; `None` is an event without `body`.
    Frame(Option<String>),
    /// A text frame on [`GHOST`].
    GhostFrame(String),
    /// A binary frame on [`CONNECTION`]: API Gateway passes it base64-encoded.
    Binary(Vec<u8>),
    /// An SQS message body (`None`: the record has no `body`).
    Push(Option<String>),
}

/// The documented answer.
enum Expected {
    /// An invocation error with this `errorType`.
    Invocation(&'static str),
    /// A status 200 reply carrying `{"action":"error","code":…}`.
    ErrorFrame(&'static str),
    /// The record is reported in `batchItemFailures`.
    BatchItemFailure,
    /// Handled normally (a valid event wrapped around something odd): this reply `action`.
    Reply(&'static str),
    /// An HTTP API response with this status and JSON error `code`.
    Http(u16, &'static str),
}

use Expected::*;
use Input::*;

fn frame(body: impl Into<String>) -> Input {
    Frame(Some(body.into()))
}

fn push(body: impl Into<String>) -> Input {
    Push(Some(body.into()))
}

/// `n` nested arrays, as text: far past serde_json's recursion limit of 128 when `n` is large.
fn nested(n: usize) -> String {
    format!("{}{}", "[".repeat(n), "]".repeat(n))
}

fn fits_but_push_does_not() -> String {
    let body = json!({"action": "sendmessage", "topic": "t", "data": "x".repeat(128 * 1024 - 50)}).to_string();
    assert!(
        body.len() <= 128 * 1024,
        "the frame itself must fit: {} bytes",
        body.len()
    );
    body
}

/// `ping.json` with `edit` applied.
fn ping_event(edit: impl FnOnce(&mut Value)) -> Input {
    let mut e = event("ping.json");
    edit(&mut e);
    Event(e)
}

/// `eventbridge-topic.json` with `edit` applied.
fn eventbridge_event(edit: impl FnOnce(&mut Value)) -> Input {
    let mut e = event("eventbridge-topic.json");
    edit(&mut e);
    Event(e)
}

/// An SQS body that is an EventBridge event with this `detail`.
fn eventbridge_push(detail: Value) -> Input {
    let mut e = event("eventbridge-topic.json");
    e["detail"] = detail;
    push(e.to_string())
}

/// `http-online.json` with `edit` applied.
fn http_event(edit: impl FnOnce(&mut Value)) -> Input {
    let mut e = event("http-online.json");
    edit(&mut e);
    Event(e)
}

fn sqs_event(edit: impl FnOnce(&mut Value)) -> Input {
    let mut e = event("sqs-topic.json");
    edit(&mut e);
    Event(e)
}

// One row a line where it fits: a table reads better than rustfmt's one field a line.
#[rustfmt::skip]
fn rows() -> Vec<(&'static str, Input, Expected)> {
    let big = "x".repeat(OVER_128_KB);
    // A valid event may hold JSON nested up to serde_json's limit: it is routed as usual.
    let mut deep = json!(1);
    for _ in 0..100 {
        deep = json!([deep]);
    }
    vec![
        // Events that are no event of ours.
        ("event: empty object", Event(json!({})), Invocation("wshub.UnrecognizedEvent")),
        ("event: null", Event(Value::Null), Invocation("wshub.UnrecognizedEvent")),
        ("event: array", Event(json!([event("ping.json")])), Invocation("wshub.UnrecognizedEvent")),
        ("event: string", Event(json!("{\"action\":\"ping\"}")), Invocation("wshub.UnrecognizedEvent")),
        ("event: number", Event(json!(42)), Invocation("wshub.UnrecognizedEvent")),
        (
            "event: 10 000 keys",
            Event(Value::Object((0..10_000).map(|i| (format!("k{i}"), json!(i))).collect())),
            Invocation("wshub.UnrecognizedEvent"),
        ),
        (
            "route: missing requestContext",
            ping_event(|e| drop(e.as_object_mut().unwrap().remove("requestContext"))),
            Invocation("wshub.UnrecognizedEvent"),
        ),
        (
            "route: requestContext is a string",
            ping_event(|e| e["requestContext"] = json!("ping")),
            Invocation("wshub.UnrecognizedEvent"),
        ),
        (
            "route: connectionId is a number",
            ping_event(|e| e["requestContext"]["connectionId"] = json!(7)),
            Invocation("wshub.UnrecognizedEvent"),
        ),
        (
            "route: no routeKey nor eventType",
            ping_event(|e| {
                let rc = e["requestContext"].as_object_mut().unwrap();
                rc.remove("routeKey");
                rc.remove("eventType");
            }),
            Invocation("wshub.UnrecognizedEvent"),
        ),
        // Recognised events whose fields have the wrong types.
        (
            "route: body is a number",
            ping_event(|e| e["body"] = json!(5)),
            Invocation("wshub.MalformedEvent"),
        ),
        (
            "route: body is an object",
            ping_event(|e| e["body"] = json!({"action": "ping"})),
            Invocation("wshub.MalformedEvent"),
        ),
        (
            "route: isBase64Encoded is a string",
            ping_event(|e| e["isBase64Encoded"] = json!("false")),
            Invocation("wshub.MalformedEvent"),
        ),
        (
            "route: routeKey is a number",
            ping_event(|e| e["requestContext"]["routeKey"] = json!(1)),
            Invocation("wshub.MalformedEvent"),
        ),
        (
            "authorizer: headers is an array",
            {
                let mut e = event("authorizer-token-header.json");
                e["headers"] = json!(["token", "alice-token"]);
                Event(e)
            },
            Invocation("wshub.MalformedEvent"),
        ),
        (
            "route: 100-deep JSON in an unused field",
            ping_event(|e| e["requestContext"]["extra"] = deep),
            Reply("pong"),
        ),
        // SQS batches that are not quite SQS batches.
        (
            "sqs: Records empty",
            sqs_event(|e| e["Records"] = json!([])),
            Invocation("wshub.UnrecognizedEvent"),
        ),
        (
            "sqs: a record from another source",
            sqs_event(|e| e["Records"][0]["eventSource"] = json!("aws:kinesis")),
            Invocation("wshub.UnrecognizedEvent"),
        ),
        (
            "sqs: body is a number",
            sqs_event(|e| e["Records"][0]["body"] = json!(1)),
            Invocation("wshub.MalformedEvent"),
        ),
        (
            "sqs: bad body without a messageId",
            sqs_event(|e| {
                let record = e["Records"][0].as_object_mut().unwrap();
                record.remove("messageId");
                record.insert("body".into(), json!("not json"));
            }),
            Invocation("wshub.BatchFailed"),
        ),
        // Client frames.
        ("frame: no body", Frame(None), ErrorFrame("bad_json")),
        ("frame: empty", frame(""), ErrorFrame("bad_json")),
        ("frame: whitespace", frame(" \n\t "), ErrorFrame("bad_json")),
        ("frame: not JSON", frame("this is not json"), ErrorFrame("bad_json")),
        ("frame: truncated JSON", frame("{\"action\":\"ping\""), ErrorFrame("bad_json")),
        ("frame: JSON array", frame("[{\"action\":\"ping\"}]"), ErrorFrame("bad_json")),
        ("frame: JSON string", frame("\"ping\""), ErrorFrame("bad_json")),
        ("frame: JSON null", frame("null"), ErrorFrame("bad_json")),
        ("frame: 100 000 nested arrays", frame(nested(100_000)), ErrorFrame("bad_json")),
        (
            "frame: 100 000 nested arrays inside a ping",
            frame(format!("{{\"action\":\"ping\",\"x\":{}}}", nested(100_000))),
            ErrorFrame("bad_json"),
        ),
        ("frame: over 128 KB of garbage", frame(big.clone()), ErrorFrame("bad_json")),
        ("frame: base64 binary frame", Binary(br#"{"action":"ping"}"#.to_vec()), ErrorFrame("bad_json")),
        ("frame: binary frame, invalid UTF-8", Binary(vec![0xff, 0xfe, 0x00, 0x80]), ErrorFrame("bad_json")),
        (
            "frame: isBase64Encoded with a body that is not base64",
            ping_event(|e| {
                e["requestContext"]["connectionId"] = json!(CONNECTION);
                e["isBase64Encoded"] = json!(true);
                e["body"] = json!("{\"action\":\"ping\"} not base64 %%%");
            }),
            ErrorFrame("bad_json"),
        ),
        ("frame: no action", frame("{}"), ErrorFrame("missing_action")),
        ("frame: action null", frame(r#"{"action":null}"#), ErrorFrame("missing_action")),
        ("frame: action is a number", frame(r#"{"action":1}"#), ErrorFrame("missing_action")),
        ("frame: action is an object", frame(r#"{"action":{"ping":1}}"#), ErrorFrame("missing_action")),
        ("frame: unknown action", frame(r#"{"action":"dance"}"#), ErrorFrame("unknown_action")),
        ("frame: action in capitals", frame(r#"{"action":"PING"}"#), ErrorFrame("unknown_action")),
        (
            "frame: 100 KB action name",
            frame(json!({"action": "x".repeat(100_000)}).to_string()),
            ErrorFrame("unknown_action"),
        ),
        ("frame: id is an object", frame(r#"{"action":"ping","id":{}}"#), ErrorFrame("bad_request")),
        ("frame: id is a boolean", frame(r#"{"action":"ping","id":true}"#), ErrorFrame("bad_request")),
        (
            "frame: id of 129 characters",
            frame(json!({"action": "ping", "id": "i".repeat(129)}).to_string()),
            ErrorFrame("bad_request"),
        ),
        ("frame: subscribe without topic", frame(r#"{"action":"subscribe"}"#), ErrorFrame("bad_request")),
        ("frame: topic is a number", frame(r#"{"action":"subscribe","topic":7}"#), ErrorFrame("bad_request")),
        ("frame: topic is a list", frame(r#"{"action":"unsubscribe","topic":["a"]}"#), ErrorFrame("bad_request")),
        ("frame: sendmessage without data", frame(r#"{"action":"sendmessage","topic":"t"}"#),
            ErrorFrame("bad_request")),
        ("frame: empty topic", frame(r#"{"action":"subscribe","topic":""}"#), ErrorFrame("invalid_topic")),
        ("frame: topic with a space", frame(r#"{"action":"subscribe","topic":"a b"}"#), ErrorFrame("invalid_topic")),
        ("frame: topic with a NUL", frame(r#"{"action":"subscribe","topic":"a\u0000"}"#), ErrorFrame("invalid_topic")),
        ("frame: topic with a non-ASCII letter", frame(r#"{"action":"subscribe","topic":"café"}"#),
            ErrorFrame("invalid_topic")),
        ("frame: topic with #", frame(r#"{"action":"unsubscribe","topic":"TOPIC#x"}"#), ErrorFrame("invalid_topic")),
        (
            "frame: topic of 129 characters",
            frame(json!({"action": "subscribe", "topic": "t".repeat(129)}).to_string()),
            ErrorFrame("invalid_topic"),
        ),
        (
            "frame: sendmessage to a bad topic",
            frame(r#"{"action":"sendmessage","topic":"news!","data":1}"#),
            ErrorFrame("invalid_topic"),
        ),
        (
            "frame: sendmessage without topic",
            frame(r#"{"action":"sendmessage","data":"to everyone"}"#),
            ErrorFrame("broadcast_disabled"),
        ),
        (
            "frame: data over 128 KB",
            frame(json!({"action": "sendmessage", "topic": "t", "data": big}).to_string()),
            ErrorFrame("payload_too_large"),
        ),
        (
            // The frame fits; the push adds `from` and `id` around the data and does not.
            "frame: fits in 128 KB, its push does not",
            frame(fits_but_push_does_not()),
            ErrorFrame("payload_too_large"),
        ),
        ("frame: subscribe while not connected", GhostFrame(r#"{"action":"subscribe","topic":"t"}"#.into()),
            ErrorFrame("not_connected")),
        ("frame: whoami while not connected", GhostFrame(r#"{"action":"whoami"}"#.into()), ErrorFrame("not_connected")),
        // SQS bodies: refused ones are reported, so SQS moves them to the DLQ.
        ("push: no body", Push(None), BatchItemFailure),
        ("push: empty body", push(""), BatchItemFailure),
        ("push: not JSON", push("{not json"), BatchItemFailure),
        ("push: JSON array", push(r#"[{"data":1}]"#), BatchItemFailure),
        ("push: 100 000 nested arrays", push(format!("{{\"data\":{}}}", nested(100_000))), BatchItemFailure),
        ("push: no data", push(r#"{"topic":"news"}"#), BatchItemFailure),
        ("push: data and Body", push(r#"{"data":1,"Body":2}"#), BatchItemFailure),
        ("push: misspelt target", push(r#"{"topik":"news","data":1}"#), BatchItemFailure),
        ("push: two targets", push(r#"{"topic":"news","userId":"alice","data":1}"#), BatchItemFailure),
        ("push: userId and UserId", push(r#"{"userId":"a","UserId":"b","data":1}"#), BatchItemFailure),
        ("push: topic is a number", push(r#"{"topic":1,"data":1}"#), BatchItemFailure),
        ("push: bad topic", push(r#"{"topic":"a b","data":1}"#), BatchItemFailure),
        ("push: empty userId", push(r#"{"userId":"","data":1}"#), BatchItemFailure),
        ("push: userId with a control character", push(r#"{"userId":"a\nb","data":1}"#), BatchItemFailure),
        ("push: connectionId with a space", push(r#"{"connectionId":"a b","data":1}"#), BatchItemFailure),
        (
            "push: connectionId of 129 characters",
            push(json!({"connectionId": "c".repeat(129), "data": 1}).to_string()),
            BatchItemFailure,
        ),
        ("push: data over 128 KB", push(json!({"data": big}).to_string()), BatchItemFailure),
        // EventBridge events, to the function and through the queue.
        ("eventbridge: detail is a string", eventbridge_event(|e| e["detail"] = json!("hi")), Invocation("wshub.MalformedEvent")),
        ("eventbridge: detail is null", eventbridge_event(|e| e["detail"] = Value::Null), Invocation("wshub.MalformedEvent")),
        ("eventbridge: misspelt target", eventbridge_event(|e| e["detail"] = json!({"topik": "news", "data": 1})), Invocation("wshub.MalformedEvent")),
        ("eventbridge: bad time", eventbridge_event(|e| e["time"] = json!("yesterday")), Invocation("wshub.MalformedEvent")),
        ("eventbridge: id is a number", eventbridge_event(|e| e["id"] = json!(7)), Invocation("wshub.MalformedEvent")),
        ("eventbridge: detail-type is a number", eventbridge_event(|e| e["detail-type"] = json!(7)), Invocation("wshub.UnrecognizedEvent")),
        ("eventbridge: data over 128 KB", eventbridge_event(|e| e["detail"] = json!({"data": big})), Invocation("wshub.MalformedEvent")),
        ("push: EventBridge event, misspelt target", eventbridge_push(json!({"topik": "news", "data": 1})), BatchItemFailure),
        ("push: EventBridge event, detail is an array", eventbridge_push(json!([1])), BatchItemFailure),
        ("push: EventBridge event, no data", eventbridge_push(json!({"topic": "news"})), BatchItemFailure),
        // HTTP API requests.
        ("http: headers is a string", http_event(|e| e["headers"] = json!("token: bob-token")), Invocation("wshub.MalformedEvent")),
        ("http: userIds is a number", http_event(|e| e["queryStringParameters"]["userIds"] = json!(5)), Invocation("wshub.MalformedEvent")),
        // Without userIds the request lists who is online: its paging parameters are checked.
        (
            "http: online list, limit 0",
            http_event(|e| e["queryStringParameters"] = json!({"limit": "0"})),
            Http(400, "invalid_limit"),
        ),
        (
            "http: online list, a forged cursor",
            http_event(|e| e["queryStringParameters"] = json!({"cursor": "eyJhZnRlciI6eyJ0b3BpYyI6IngifX0"})),
            Http(400, "invalid_cursor"),
        ),
        (
            "http: limit beside userIds",
            http_event(|e| e["queryStringParameters"]["limit"] = json!("5")),
            Http(400, "invalid_query"),
        ),
        ("http: only commas", http_event(|e| e["queryStringParameters"]["userIds"] = json!(",,,")), Http(400, "missing_user_ids")),
        ("http: control character in an id", http_event(|e| e["queryStringParameters"]["userIds"] = json!("a\u{0}b")), Http(400, "invalid_user_id")),
        (
            "http: 10 000 user ids",
            http_event(|e| e["queryStringParameters"]["userIds"] = json!((0..10_000).map(|i| i.to_string()).collect::<Vec<_>>().join(","))),
            Http(400, "too_many_user_ids"),
        ),
        ("http: empty token header", http_event(|e| e["headers"]["token"] = json!("")), Http(401, "missing_credentials")),
        (
            "http: Bearer without a token",
            http_event(|e| {
                e["headers"].as_object_mut().unwrap().remove("token");
                e["headers"]["authorization"] = json!("Bearer ");
            }),
            Http(401, "missing_credentials"),
        ),
        ("http: token over 8 KB", http_event(|e| e["headers"]["token"] = json!("t".repeat(9000))), Http(403, "forbidden")),
        ("http: forged JWT", http_event(|e| e["headers"]["token"] = json!("eyJhbGciOiJub25lIn0.eyJzdWIiOiJib2IifQ.")), Http(403, "forbidden")),
        ("http: DELETE", http_event(|e| e["requestContext"]["http"]["method"] = json!("DELETE")), Http(405, "method_not_allowed")),
        (
            "http: another path",
            http_event(|e| {
                e["routeKey"] = json!("$default");
                e["rawPath"] = json!(format!("/{}", "x/".repeat(5000)));
            }),
            Http(404, "not_found"),
        ),
    ]
}

struct Fixture {
    hub: Hub,
    store: Arc<MemoryStore>,
}

impl Fixture {
    fn new() -> Fixture {
        let params = event("env.json")["Parameters"].as_object().unwrap().clone();
        let config = Config::from_lookup(|name| params.get(name).and_then(Value::as_str).map(str::to_owned)).unwrap();
        let store = Arc::new(MemoryStore::new());
        let hub = Hub::new(config, store.clone(), Arc::new(MemoryNotifier::new()));
        Fixture { hub, store }
    }

    async fn send(&self, event: Value) -> Result<Value, wshub::RouterError> {
        wshub::handle(&self.hub, event, None).await
    }

    fn message(connection_id: &str, body: Option<String>, binary: bool) -> Value {
        let mut e = event("ping.json");
        e["requestContext"]["connectionId"] = json!(connection_id);
        e["requestContext"]["routeKey"] = json!("$default");
        e["isBase64Encoded"] = json!(binary);
        match body {
            Some(body) => e["body"] = json!(body),
            None => drop(e.as_object_mut().unwrap().remove("body")),
        }
        e
    }

    fn push_event(body: Option<String>) -> Value {
        let mut e = event("sqs-topic.json");
        let record = e["Records"][0].as_object_mut().unwrap();
        record.insert("messageId".into(), json!(MESSAGE_ID));
        match body {
            Some(body) => record.insert("body".into(), json!(body)),
            None => record.remove("body"),
        };
        e
    }

    async fn registered(&self, connection_id: &str) -> bool {
        self.store.get_connection(connection_id, 0).await.unwrap().is_some()
    }
}

/// The reply frame of a route response, which must be status 200 with a JSON body that
/// matches its message in asyncapi.yaml.
fn reply_frame(name: &str, response: &Value) -> Value {
    assert_eq!(response["statusCode"], 200, "{name}: {response}");
    let body = response["body"]
        .as_str()
        .unwrap_or_else(|| panic!("{name}: no body in {response}"));
    let frame = serde_json::from_str(body).unwrap_or_else(|e| panic!("{name}: reply is not JSON ({e}): {body}"));
    common::asyncapi::assert_frame(&frame);
    frame
}

#[tokio::test]
async fn every_malformed_input_gets_its_documented_answer_and_the_connection_stays_open() {
    let f = Fixture::new();
    let mut connect = event("connect.json");
    connect["requestContext"]["connectionId"] = json!(CONNECTION);
    assert_eq!(f.send(connect).await.unwrap()["statusCode"], 200);
    assert!(f.registered(CONNECTION).await);

    let rows = rows();
    let names: std::collections::HashSet<_> = rows.iter().map(|(name, ..)| *name).collect();
    assert_eq!(names.len(), rows.len(), "row names are unique");
    for (name, input, expected) in rows {
        let (event, on_connection) = match input {
            Event(e) => (e, None),
            Frame(body) => (Fixture::message(CONNECTION, body, false), Some(CONNECTION)),
            GhostFrame(body) => (Fixture::message(GHOST, Some(body), false), Some(GHOST)),
            Binary(bytes) => {
                let body = base64::engine::general_purpose::STANDARD.encode(bytes);
                (Fixture::message(CONNECTION, Some(body), true), Some(CONNECTION))
            }
            Push(body) => (Fixture::push_event(body), None),
        };
        let answer = f.send(event).await;
        match (expected, answer) {
            (Invocation(error_type), Err(err)) => {
                let message = err.to_string();
                // The message names what arrived, bounded, never echoing whole values.
                assert!(message.len() < 2048, "{name}: {} bytes of error message", message.len());
                let diagnostic: lambda_runtime::Diagnostic = err.into();
                assert_eq!(diagnostic.error_type, error_type, "{name}: {message}");
            }
            (ErrorFrame(code), Ok(response)) => {
                let reply = reply_frame(name, &response);
                assert_eq!(reply["action"], "error", "{name}: {reply}");
                assert_eq!(reply["code"], code, "{name}: {reply}");
                assert!(
                    reply["message"]
                        .as_str()
                        .is_some_and(|m| !m.is_empty() && m.len() < 1024),
                    "{name}: a short message says why: {reply}"
                );
            }
            (BatchItemFailure, Ok(response)) => assert_eq!(
                response,
                json!({"batchItemFailures": [{"itemIdentifier": MESSAGE_ID}]}),
                "{name}"
            ),
            (Reply(action), Ok(response)) => assert_eq!(reply_frame(name, &response)["action"], action, "{name}"),
            (Http(status, code), Ok(response)) => {
                assert_eq!(response["statusCode"], status, "{name}: {response}");
                let body: Value = serde_json::from_str(response["body"].as_str().unwrap()).unwrap();
                assert_eq!(body["code"], code, "{name}: {body}");
                assert!(
                    body["message"].as_str().is_some_and(|m| m.len() < 1024),
                    "{name}: {body}"
                );
            }
            (_, answer) => panic!("{name}: unexpected answer {answer:?}"),
        }
        // The connection a bad frame arrived on is still registered and still served.
        if on_connection == Some(CONNECTION) {
            assert!(f.registered(CONNECTION).await, "{name}: connection row gone");
            let pong = f
                .send(Fixture::message(
                    CONNECTION,
                    Some(r#"{"action":"ping","id":1}"#.into()),
                    false,
                ))
                .await
                .unwrap();
            assert_eq!(reply_frame(name, &pong), json!({"action": "pong", "id": 1}), "{name}");
        }
        // A refused request on an unknown connection must not register anything for it.
        if on_connection == Some(GHOST) {
            assert!(!f.registered(GHOST).await, "{name}: ghost connection registered");
        }
    }
    // Nothing above subscribed the connection to anything.
    let whoami = f
        .send(Fixture::message(
            CONNECTION,
            Some(r#"{"action":"whoami"}"#.into()),
            false,
        ))
        .await
        .unwrap();
    assert_eq!(reply_frame("whoami", &whoami)["topics"], json!([]));
}

#[test]
fn a_deeply_nested_event_is_refused_by_the_parser_not_by_the_stack() {
    // The Lambda runtime parses the invocation payload with serde_json before the router sees
    // it; its recursion limit (128) turns 100 000 open brackets into an error, not an overflow.
    let err = serde_json::from_str::<Value>(&nested(100_000)).unwrap_err();
    assert!(err.to_string().contains("recursion limit"), "{err}");
}
