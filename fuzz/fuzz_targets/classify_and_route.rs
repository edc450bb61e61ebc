//! Arbitrary bytes through `wshub::handle` on an in-memory hub, three ways: as a whole event (if
//! they are JSON: the classifier and every handler behind it), as the body of a client message
//! on a registered connection, and as the body of an SQS record (so the bytes that are not a
//! valid event still reach the routes, the store and the fan-out). The property: no panic; an
//! `Ok` answer has the shape of its event family (a route reply body is a JSON frame with an
//! `action`); an error has a stable `wshub.*` errorType; every pushed frame is a JSON `message`
//! within 128 KB.
#![no_main]

use std::cell::RefCell;
use std::sync::Arc;

use async_trait::async_trait;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use wshub::notify::{Notifier, NotifyError};
use wshub::protocol::MAX_FRAME_BYTES;
use wshub::store::memory::MemoryStore;
use wshub::{Config, Hub};

/// A fresh store every this many inputs: state from earlier inputs (connections, subscriptions)
/// is what lets `subscribe` or a topic push reach deeper code, but unbounded it would turn every
/// broadcast into a scan of everything the fuzzer ever connected and slow the run to a crawl.
const INPUTS_PER_HUB: u32 = 10_000;

/// Checks every pushed frame, then drops it (a recording notifier would grow without bound).
struct CheckingNotifier;

#[async_trait]
impl Notifier for CheckingNotifier {
    async fn send(&self, _endpoint: &str, _connection_id: &str, frame: &[u8]) -> Result<(), NotifyError> {
        assert!(frame.len() <= MAX_FRAME_BYTES, "pushed a frame over 128 KB");
        let frame: Value = serde_json::from_slice(frame).expect("pushed frame is JSON");
        assert_eq!(frame["action"], "message", "pushed frame is a message: {frame}");
        Ok(())
    }
}

/// The sender of the wrapped client messages, and a second subscriber to receive them.
const SENDER: &str = "fuzz-sender=";
const RECEIVER: &str = "fuzz-receiver=";

fn sample(json: &str) -> Value {
    serde_json::from_str(json).unwrap()
}

/// A client message event (`events/ping.json`'s shape) from `connection_id` with `body`.
fn message(connection_id: &str, body: &str) -> Value {
    let mut event = sample(include_str!("../../events/ping.json"));
    event["requestContext"]["connectionId"] = connection_id.into();
    event["requestContext"]["routeKey"] = "$default".into();
    event["body"] = body.into();
    event
}

/// An SQS batch of one record with `body` (`events/sqs-topic.json`'s shape).
fn push(body: &str) -> Value {
    let mut event = sample(include_str!("../../events/sqs-topic.json"));
    event["Records"][0]["body"] = body.into();
    event
}

/// A hub with the sample events' configuration (`events/env.json`, so seeds from `events/`
/// authorize), and two connections subscribed to topic `news`.
fn hub(runtime: &tokio::runtime::Runtime) -> Hub {
    let env = sample(include_str!("../../events/env.json"));
    let params = env["Parameters"].clone();
    let config = Config::from_lookup(|name| params.get(name).and_then(Value::as_str).map(str::to_owned)).unwrap();
    // Page size 3, as tests/events.rs: pagination runs even with the few rows a fuzz run has.
    let hub = Hub::new(
        config,
        Arc::new(MemoryStore::with_page_size(3)),
        Arc::new(CheckingNotifier),
    );
    for (connection_id, user) in [(SENDER, "alice"), (RECEIVER, "bob")] {
        let mut connect = sample(include_str!("../../events/connect.json"));
        connect["requestContext"]["connectionId"] = connection_id.into();
        connect["requestContext"]["authorizer"]["userId"] = user.into();
        let subscribe = message(connection_id, r#"{"action":"subscribe","topic":"news"}"#);
        for event in [connect, subscribe] {
            let answer = runtime.block_on(wshub::handle(&hub, event, None)).unwrap();
            assert_eq!(answer["statusCode"], 200, "fuzz hub setup: {answer}");
        }
    }
    hub
}

struct State {
    runtime: tokio::runtime::Runtime,
    hub: Hub,
    inputs: u32,
}

thread_local! {
    static STATE: RefCell<State> = RefCell::new({
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let hub = hub(&runtime);
        State { runtime, hub, inputs: 0 }
    });
}

fn check_answer(answer: &Value) {
    if let Some(failures) = answer.get("batchItemFailures") {
        for failure in failures.as_array().expect("batchItemFailures is an array") {
            let id = failure["itemIdentifier"].as_str().expect("itemIdentifier is a string");
            assert!(!id.is_empty(), "empty itemIdentifier fails the whole batch");
        }
    } else if let Some(policy) = answer.get("policyDocument") {
        let effect = policy["Statement"][0]["Effect"].as_str().expect("policy has an Effect");
        assert!(effect == "Allow" || effect == "Deny", "{answer}");
        assert!(answer["principalId"].is_string(), "{answer}");
    } else if answer.get("cookies").is_some() {
        // An HTTP API (payload 2.0) response: a JSON body, the users or an error code.
        let status = answer["statusCode"].as_i64().expect("statusCode is a number");
        assert!((200..600).contains(&status), "{answer}");
        assert_eq!(answer["headers"]["content-type"], "application/json", "{answer}");
        let body: Value =
            serde_json::from_str(answer["body"].as_str().expect("HTTP body is a string")).expect("HTTP body is JSON");
        if status == 200 {
            assert!(body["users"].is_array(), "{body}");
        } else {
            assert!(body["code"].is_string() && body["message"].is_string(), "{body}");
            assert!(body.to_string().len() < 1024, "HTTP error body stays short");
        }
    } else if let Some(delivered) = answer.get("delivered") {
        // An EventBridge event delivered by the function itself.
        assert!(delivered.is_u64() && answer["gone"].is_u64(), "{answer}");
        assert!(answer["id"].is_string() || answer["id"].is_null(), "{answer}");
    } else if let Some(status) = answer.get("statusCode") {
        assert!(status.is_i64(), "{answer}");
        if let Some(body) = answer.get("body").filter(|b| !b.is_null()) {
            let body = body.as_str().expect("route body is a string");
            let frame: Value = serde_json::from_str(body).expect("route reply is JSON");
            assert!(frame["action"].is_string(), "route reply has an action: {frame}");
            assert!(body.len() <= MAX_FRAME_BYTES, "route reply over 128 KB");
        }
    } else {
        panic!("answer of no known shape: {answer}");
    }
}

fn route(state: &State, event: Value) {
    match state.runtime.block_on(wshub::handle(&state.hub, event, None)) {
        Ok(answer) => check_answer(&answer),
        Err(err) => {
            let diagnostic: lambda_runtime::Diagnostic = err.into();
            assert!(diagnostic.error_type.starts_with("wshub."), "{}", diagnostic.error_type);
        }
    }
}

fuzz_target!(|data: &[u8]| {
    STATE.with_borrow_mut(|state| {
        state.inputs += 1;
        if state.inputs % INPUTS_PER_HUB == 0 {
            state.hub = hub(&state.runtime);
        }
        if let Ok(event) = serde_json::from_slice::<Value>(data) {
            route(state, event);
        }
        // As API Gateway and SQS deliver them: UTF-8 text (the local hub decodes lossily too).
        let text = String::from_utf8_lossy(data);
        route(state, message(SENDER, &text));
        route(state, push(&text));
    });
});
