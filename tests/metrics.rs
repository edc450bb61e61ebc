//! The metrics each handler records, through the router with the in-memory backends, and the
//! EMF document one invocation turns into (validated against the specification:
//! tests/common/emf.rs). tests/lambda_binary.rs checks the documents the release binary prints.

mod common;

use std::sync::Arc;

use serde_json::{json, Value};
use wshub::metrics::{self, Accumulator, Dimensions, Metric};
use wshub::notify::memory::MemoryNotifier;
use wshub::notify::NotifyError;
use wshub::secrets::MemorySecretStore;
use wshub::store::memory::MemoryStore;
use wshub::{Config, Hub};

fn event(name: &str) -> Value {
    let path = format!("{}/events/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn config(overrides: &[(&str, &str)]) -> Config {
    let mut params = event("env.json")["Parameters"].as_object().unwrap().clone();
    for (k, v) in overrides {
        params.insert(k.to_string(), json!(v));
    }
    Config::from_lookup(|name| params.get(name).and_then(Value::as_str).map(str::to_owned)).unwrap()
}

fn hub() -> (Hub, Arc<MemoryNotifier>) {
    let notifier = Arc::new(MemoryNotifier::new());
    let hub = Hub::new(config(&[]), Arc::new(MemoryStore::new()), notifier.clone());
    (hub, notifier)
}

/// One invocation, measured as the Lambda bootstrap measures it.
async fn invoke(hub: &Hub, event: Value) -> (Value, Accumulator) {
    let (result, recorded) = metrics::measure(wshub::handle(hub, event, None)).await;
    (result.expect("handled"), recorded)
}

fn document(recorded: &Accumulator) -> Value {
    let dims = Dimensions {
        stage: "prod".into(),
        function: "wshub-hub".into(),
        level: "INFO".into(),
    };
    recorded.to_emf(&dims, 1_795_244_400_000).expect("a document")
}

fn connect_as(connection_id: &str, user: &str) -> Value {
    let mut e = event("connect.json");
    e["requestContext"]["connectionId"] = json!(connection_id);
    e["requestContext"]["authorizer"]["userId"] = json!(user);
    e
}

fn subscribe(connection_id: &str, topic: &str) -> Value {
    let mut e = event("subscribe.json");
    e["requestContext"]["connectionId"] = json!(connection_id);
    e["body"] = json!(json!({"action": "subscribe", "topic": topic}).to_string());
    e
}

#[tokio::test]
async fn authorizer_connect_and_disconnect_are_counted() {
    let (hub, _) = hub();
    let (_, allowed) = invoke(&hub, event("authorizer-token-header.json")).await;
    assert_eq!(allowed.count(Metric::ConnectsDenied), 0);
    assert_eq!(allowed.values(Metric::AuthorizerLatency).len(), 1);
    let (_, denied) = invoke(&hub, event("authorizer-bad-token-deny.json")).await;
    assert_eq!(denied.count(Metric::ConnectsDenied), 1);
    let (metrics, dims) = common::emf::validate(&document(&denied));
    assert_eq!(
        metrics.keys().collect::<Vec<_>>(),
        ["AuthorizerLatency", "ConnectsDenied"]
    );
    assert_eq!(dims["stage"], "prod");

    let (_, connected) = invoke(&hub, connect_as("c1", "alice")).await;
    assert_eq!(connected.count(Metric::Connects), 1);
    let (_, refused) = invoke(&hub, connect_as("c1", "alice")).await;
    assert_eq!(refused.count(Metric::Connects), 0, "a refused $connect is no connect");
    let (_, disconnected) = invoke(&hub, event("disconnect.json")).await;
    assert_eq!(disconnected.count(Metric::Disconnects), 1);
    // A ping records nothing, so no document is written for it.
    let (_, ping) = invoke(&hub, event("ping.json")).await;
    assert!(ping.is_empty());
}

#[tokio::test]
async fn a_push_counts_each_outcome_once_per_invocation() {
    let (hub, notifier) = hub();
    for (id, user) in [("a", "alice"), ("b", "bob"), ("c", "carol"), ("d", "dave")] {
        invoke(&hub, connect_as(id, user)).await;
        invoke(&hub, subscribe(id, "news")).await;
    }
    // b is throttled twice then delivered, c is gone, d fails for good (403 is not retried).
    notifier.fail_next("b", vec![NotifyError::Throttled, NotifyError::Throttled]);
    notifier.fail_next("c", vec![NotifyError::Gone]);
    notifier.fail_next(
        "d",
        vec![NotifyError::Rejected {
            status: 403,
            message: "forbidden".into(),
        }],
    );
    let batch = common::sqs_batch(&[
        ("m-1", json!({"topic": "news", "data": 1})),
        ("m-2", json!({"userId": "alice", "data": 2})),
    ]);
    let (_, recorded) = invoke(&hub, batch).await;
    assert_eq!(recorded.count(Metric::Delivered), 3, "a and b, then alice's own");
    assert_eq!(recorded.count(Metric::Throttled), 2);
    assert_eq!(recorded.count(Metric::Gone), 1);
    assert_eq!(recorded.count(Metric::FailedPosts), 1);
    let mut recipients = recorded.values(Metric::FanoutRecipients).to_vec();
    recipients.sort_by(f64::total_cmp);
    assert_eq!(recipients, [1.0, 4.0], "one value per push");
    assert_eq!(recorded.values(Metric::FanoutDuration).len(), 2);
    assert_eq!(
        recorded.count(Metric::Publications),
        2,
        "a topic push and a user push, each recorded"
    );

    let (metrics, _) = common::emf::validate(&document(&recorded));
    assert_eq!(metrics["Delivered"].values, [3.0]);
    assert_eq!(metrics["FanoutDuration"].unit, "Milliseconds");
    assert_eq!(metrics["FanoutDuration"].values.len(), 2);
    // Nothing but counts and dimensions: no ids, users, topics or bodies.
    let text = document(&recorded).to_string();
    for private in ["alice", "news", "\"a\"", "m-1"] {
        assert!(!text.contains(private), "{private} in {text}");
    }
}

#[tokio::test]
async fn the_publications_hook_is_one_call() {
    let ((), recorded) = metrics::measure(async { metrics::add(Metric::Publications, 2) }).await;
    assert_eq!(recorded.count(Metric::Publications), 2);
}

#[tokio::test]
async fn unreadable_secrets_deny_and_count_the_denial() {
    let store = Arc::new(MemorySecretStore::default());
    let config = config(&[("AUTH_TOKENS", ""), ("AUTH_TOKENS_PARAMETER", "/wshub/tokens")]);
    let hub = Hub::new(config, Arc::new(MemoryStore::new()), Arc::new(MemoryNotifier::new()))
        .with_secret_store(store.clone());
    // The parameter does not exist yet: fail closed.
    let (response, recorded) = invoke(&hub, event("authorizer-token-header.json")).await;
    assert_eq!(response["policyDocument"]["Statement"][0]["Effect"], "Deny");
    assert_eq!(recorded.count(Metric::ConnectsDenied), 1);
    assert_eq!(recorded.values(Metric::AuthorizerLatency).len(), 1);
    assert_eq!(store.calls(), 1);
}
