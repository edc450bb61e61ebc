//! Every sample event in `events/` through the router, against the in-memory backends, with
//! the configuration in `events/env.json`. The same files drive the release binary in CI.

mod common;

use std::sync::Arc;

use serde_json::{json, Value};
use wshub::notify::memory::MemoryNotifier;
use wshub::notify::NotifyError;
use wshub::store::memory::MemoryStore;
use wshub::store::ConnectionStore;
use wshub::{Config, Hub};

use common::asyncapi::memory_pushes;

fn event(name: &str) -> Value {
    let path = format!("{}/events/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))).unwrap()
}

fn env_params() -> serde_json::Map<String, Value> {
    event("env.json")["Parameters"].as_object().unwrap().clone()
}

struct Fixture {
    hub: Hub,
    store: Arc<MemoryStore>,
    notifier: Arc<MemoryNotifier>,
}

fn fixture_with(overrides: &[(&str, &str)]) -> Fixture {
    let mut params = env_params();
    for (k, v) in overrides {
        params.insert(k.to_string(), json!(v));
    }
    let config = Config::from_lookup(|name| params.get(name).and_then(Value::as_str).map(str::to_owned)).unwrap();
    let store = Arc::new(MemoryStore::with_page_size(3));
    let notifier = Arc::new(MemoryNotifier::new());
    let hub = Hub::new(config, store.clone(), notifier.clone());
    Fixture { hub, store, notifier }
}

fn fixture() -> Fixture {
    fixture_with(&[])
}

impl Fixture {
    async fn send(&self, event: Value) -> Value {
        wshub::handle(&self.hub, event, None).await.expect("event handled")
    }

    /// `$connect` for `connection_id` as `user`, then the reply body of each message.
    async fn connect(&self, connection_id: &str, user: &str) {
        let mut e = event("connect.json");
        e["requestContext"]["connectionId"] = json!(connection_id);
        e["requestContext"]["authorizer"]["userId"] = json!(user);
        assert_eq!(self.send(e).await["statusCode"], 200);
    }

    async fn message(&self, connection_id: &str, user: &str, body: Value) -> Value {
        let mut e = event("ping.json");
        e["requestContext"]["connectionId"] = json!(connection_id);
        e["requestContext"]["authorizer"]["userId"] = json!(user);
        e["requestContext"]["routeKey"] = json!(body["action"].as_str().unwrap_or("$default"));
        e["body"] = json!(body.to_string());
        reply(&self.send(e).await)
    }
}

fn reply(response: &Value) -> Value {
    common::asyncapi::reply_frame(response)
}

fn effect(response: &Value) -> (&str, &str) {
    (
        response["policyDocument"]["Statement"][0]["Effect"].as_str().unwrap(),
        response["principalId"].as_str().unwrap(),
    )
}

#[tokio::test]
async fn authorizer_events() {
    let f = fixture();
    assert_eq!(
        effect(&f.send(event("authorizer-token-header.json")).await),
        ("Allow", "alice")
    );
    assert_eq!(
        effect(&f.send(event("authorizer-query-string.json")).await),
        ("Allow", "bob")
    );
    assert_eq!(effect(&f.send(event("authorizer-jwt.json")).await), ("Allow", "carol"));
    let sub = f.send(event("authorizer-subprotocol.json")).await;
    assert_eq!(effect(&sub), ("Allow", "alice"));
    assert_eq!(
        sub["context"],
        json!({"userId": "alice", "authMethod": "token", "subprotocol": "websocket"})
    );
    assert_eq!(
        effect(&f.send(event("authorizer-bad-token-deny.json")).await),
        ("Deny", "unauthorized")
    );
    assert_eq!(
        effect(&f.send(event("authorizer-no-token-deny.json")).await),
        ("Deny", "unauthorized")
    );
}

#[tokio::test]
async fn authorizer_fails_closed_without_credentials() {
    let f = fixture_with(&[("AUTH_TOKENS", ""), ("JWT_SECRET", "")]);
    for name in [
        "authorizer-token-header.json",
        "authorizer-jwt.json",
        "authorizer-subprotocol.json",
    ] {
        assert_eq!(effect(&f.send(event(name)).await).0, "Deny", "{name}");
    }
}

#[tokio::test]
async fn connect_stores_the_connection_and_accepts_the_non_token_subprotocol() {
    let f = fixture();
    let response = f.send(event("connect.json")).await;
    assert_eq!(response["statusCode"], 200);
    assert_eq!(response["headers"]["sec-websocket-protocol"], "websocket");
    assert!(
        !response.to_string().contains("alice-token"),
        "the token is never echoed"
    );
    let view = f
        .store
        .get_connection("Tq8ZsdsyIAMCJyA=", 1_795_244_400)
        .await
        .unwrap()
        .expect("stored");
    assert_eq!(view.connection.user_id, "alice");
    assert_eq!(view.connection.source_ip.as_deref(), Some("203.0.113.10"));
    assert_eq!(view.connection.connected_at, 1_795_244_400_000);
    // A second $connect with the same id is refused, not overwritten.
    assert_eq!(f.send(event("connect.json")).await["statusCode"], 409);
}

#[tokio::test]
async fn connect_without_authorizer_context_is_refused() {
    let f = fixture();
    let mut e = event("connect.json");
    e["requestContext"].as_object_mut().unwrap().remove("authorizer");
    assert_eq!(f.send(e).await["statusCode"], 403);
    assert!(f.store.get_connection("Tq8ZsdsyIAMCJyA=", 0).await.unwrap().is_none());
}

#[tokio::test]
async fn route_events_reply_with_frames() {
    let f = fixture();
    f.send(event("connect.json")).await;
    assert_eq!(
        reply(&f.send(event("ping.json")).await),
        json!({"action": "pong", "id": 1})
    );
    // A new stream: seq 0 in a fresh epoch.
    let subscribed = reply(&f.send(event("subscribe.json")).await);
    assert_eq!(
        subscribed,
        json!({"action": "subscribed", "topic": "news", "id": "s1", "seq": 0, "epoch": subscribed["epoch"]})
    );
    assert!(subscribed["epoch"].as_str().is_some_and(|e| e.len() == 8));
    assert_eq!(
        reply(&f.send(event("whoami.json")).await),
        json!({"action": "whoami", "connectionId": "Tq8ZsdsyIAMCJyA=", "userId": "alice", "topics": ["news"]})
    );
    let sent = reply(&f.send(event("sendmessage.json")).await);
    assert_eq!(
        sent,
        json!({"action": "sent", "topic": "news", "recipients": 0, "seq": 1, "epoch": subscribed["epoch"]})
    );
    assert_eq!(
        reply(&f.send(event("unsubscribe.json")).await),
        json!({"action": "unsubscribed", "topic": "news"})
    );
    let unknown = reply(&f.send(event("unknown-action.json")).await);
    assert_eq!(
        (unknown["action"].as_str(), unknown["code"].as_str()),
        (Some("error"), Some("unknown_action"))
    );
    let bad = reply(&f.send(event("bad-json-body.json")).await);
    assert_eq!(bad["code"], "bad_json");
    assert_eq!(f.send(event("disconnect.json")).await["statusCode"], 200);
    assert!(f.store.get_connection("Tq8ZsdsyIAMCJyA=", 0).await.unwrap().is_none());
    // After disconnect, a message from the stale connection gets a clear error.
    assert_eq!(reply(&f.send(event("whoami.json")).await)["code"], "not_connected");
    assert_eq!(reply(&f.send(event("subscribe.json")).await)["code"], "not_connected");
}

#[tokio::test]
async fn binary_frames_get_an_error() {
    let f = fixture();
    let mut e = event("ping.json");
    e["isBase64Encoded"] = json!(true);
    assert_eq!(reply(&f.send(e).await)["code"], "bad_json");
}

#[tokio::test]
async fn sendmessage_reaches_subscribers_but_not_the_sender() {
    let f = fixture();
    f.connect("A", "alice").await;
    f.connect("B", "bob").await;
    f.connect("C", "carol").await;
    for id in ["A", "B"] {
        f.message(id, "x", json!({"action": "subscribe", "topic": "room"}))
            .await;
    }
    let sent = f
        .message(
            "A",
            "alice",
            json!({"action": "sendmessage", "topic": "room", "message": "hi", "id": 9}),
        )
        .await;
    assert_eq!(
        sent,
        json!({"action": "sent", "topic": "room", "recipients": 1, "id": 9, "seq": 1, "epoch": sent["epoch"]})
    );
    assert_eq!(
        memory_pushes(&f.notifier, "B"),
        vec![
            json!({"action": "message", "topic": "room", "data": "hi", "from": "alice", "id": "Tq8bLcnjoAMCJyA=",
            "seq": 1, "epoch": sent["epoch"]})
        ]
    );
    assert!(memory_pushes(&f.notifier, "A").is_empty() && memory_pushes(&f.notifier, "C").is_empty());
}

#[tokio::test]
async fn client_broadcast_is_off_by_default() {
    let f = fixture();
    f.connect("A", "alice").await;
    f.connect("B", "bob").await;
    let refused = f
        .message("A", "alice", json!({"action": "sendmessage", "data": "all"}))
        .await;
    assert_eq!(refused["code"], "broadcast_disabled");
    assert!(f.notifier.sent().is_empty());

    let f = fixture_with(&[("ALLOW_CLIENT_BROADCAST", "true")]);
    f.connect("A", "alice").await;
    f.connect("B", "bob").await;
    f.connect("C", "carol").await;
    let sent = f
        .message("A", "alice", json!({"action": "sendmessage", "data": "all"}))
        .await;
    assert_eq!(sent["recipients"], 2);
}

#[tokio::test]
async fn oversized_message_is_refused() {
    let f = fixture();
    f.connect("A", "alice").await;
    let big = "x".repeat(130 * 1024);
    let r = f
        .message(
            "A",
            "alice",
            json!({"action": "sendmessage", "topic": "t", "data": big}),
        )
        .await;
    assert_eq!(r["code"], "payload_too_large");
}

#[tokio::test]
async fn sqs_pushes_reach_their_audience() {
    let f = fixture();
    f.connect("Tq8ZsdsyIAMCJyA=", "alice").await;
    f.connect("A2", "alice").await;
    f.connect("B", "bob").await;
    f.message("B", "bob", json!({"action": "subscribe", "topic": "news"}))
        .await;
    let no_failures = json!({"batchItemFailures": []});
    assert_eq!(f.send(event("sqs-user.json")).await, no_failures);
    assert_eq!(f.send(event("sqs-topic.json")).await, no_failures);
    assert_eq!(f.send(event("sqs-connection.json")).await, no_failures);
    assert_eq!(f.send(event("sqs-broadcast.json")).await, no_failures);
    let actions = |id: &str| {
        memory_pushes(&f.notifier, id)
            .iter()
            .map(|m| m["data"].clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        actions("Tq8ZsdsyIAMCJyA="),
        vec![
            json!({"text": "your export is ready"}),
            json!({"progress": 42}),
            json!({"text": "maintenance at 22:00"})
        ]
    );
    assert_eq!(
        actions("A2"),
        vec![
            json!({"text": "your export is ready"}),
            json!({"text": "maintenance at 22:00"})
        ]
    );
    assert_eq!(
        actions("B"),
        vec![
            json!({"headline": "wshub 0.1"}),
            json!({"text": "maintenance at 22:00"})
        ]
    );
    // The push frame carries the topic, the SQS messageId and its place in the topic's stream.
    let frame = &memory_pushes(&f.notifier, "B")[0];
    assert_eq!(
        frame,
        &json!({"action": "message", "topic": "news", "data": {"headline": "wshub 0.1"}, "id": "0e5c8a3b-7f3e-4c1a-9d2b-6a1f0c9e8d72", "seq": 1, "epoch": frame["epoch"]})
    );
}

#[tokio::test]
async fn malformed_record_is_reported_and_the_rest_delivered() {
    let f = fixture();
    f.connect("B", "bob").await;
    f.message("B", "bob", json!({"action": "subscribe", "topic": "news"}))
        .await;
    let response = f.send(event("sqs-batch-with-malformed.json")).await;
    assert_eq!(
        response,
        json!({"batchItemFailures": [{"itemIdentifier": "0e5c8a3b-7f3e-4c1a-9d2b-6a1f0c9e8d75"}]})
    );
    assert_eq!(memory_pushes(&f.notifier, "B").len(), 1);
}

#[tokio::test]
async fn sqs_without_endpoint_fails_every_record() {
    let f = fixture_with(&[("APIGW_MANAGEMENT_ENDPOINT", "")]);
    let response = f.send(event("sqs-batch-with-malformed.json")).await;
    assert_eq!(response["batchItemFailures"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn stale_connection_is_cleaned_up_on_410() {
    let f = fixture();
    f.connect("A", "alice").await;
    f.message("A", "alice", json!({"action": "subscribe", "topic": "news"}))
        .await;
    f.notifier.mark_gone("A");
    // 410 is cleanup, not failure: the record succeeds.
    assert_eq!(f.send(event("sqs-topic.json")).await, json!({"batchItemFailures": []}));
    assert!(f.store.get_connection("A", 0).await.unwrap().is_none());
}

#[tokio::test]
async fn unrecognized_events_are_errors_that_name_the_keys() {
    let f = fixture();
    let err = wshub::handle(&f.hub, json!({"detail-type": "x", "source": "y"}), None)
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "unrecognized event; top-level keys: [detail-type, source]"
    );
    let diagnostic: lambda_runtime::Diagnostic = err.into();
    assert_eq!(diagnostic.error_type, "wshub.UnrecognizedEvent");
    let err = wshub::handle(&f.hub, json!([1, 2]), None).await.unwrap_err();
    assert_eq!(err.to_string(), "event is an array, not a JSON object");
    // Records from another source are not SQS.
    let err = wshub::handle(&f.hub, json!({"Records": [{"eventSource": "aws:s3"}]}), None)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("Records"), "{err}");
    // A route event of the wrong shape is malformed, not a panic.
    let mut e = event("ping.json");
    e["requestContext"]["connectedAt"] = json!("yesterday");
    let err = wshub::handle(&f.hub, e, None).await.unwrap_err();
    let diagnostic: lambda_runtime::Diagnostic = err.into();
    assert_eq!(diagnostic.error_type, "wshub.MalformedEvent");
    // The hub still serves after errors.
    f.connect("A", "alice").await;
}

#[tokio::test]
async fn sqs_record_without_message_id_fails_the_batch() {
    let f = fixture();
    let mut e = event("sqs-batch-with-malformed.json");
    e["Records"][1].as_object_mut().unwrap().remove("messageId");
    let err = wshub::handle(&f.hub, e, None).await.unwrap_err();
    let diagnostic: lambda_runtime::Diagnostic = err.into();
    assert_eq!(diagnostic.error_type, "wshub.BatchFailed");
}

#[tokio::test]
async fn restricted_topics_allow_own_public_and_granted_only() {
    let f = fixture_with(&[("TOPIC_ACCESS", "restricted"), ("PUBLIC_TOPICS", "news,public/*")]);
    f.connect("A", "alice").await;
    let subscribe = |topic: &str| json!({"action": "subscribe", "topic": topic});
    for (topic, allowed) in [
        ("user:alice", true),
        ("user:bob", false),
        ("news", true),
        ("public/lobby", true),
        ("team-7/plans", false),
    ] {
        let reply = f.message("A", "alice", subscribe(topic)).await;
        let expected = if allowed { "subscribed" } else { "error" };
        assert_eq!(reply["action"], expected, "{topic}: {reply}");
        if !allowed {
            assert_eq!(reply["code"], "forbidden_topic");
        }
    }
    // Bob's JWT granted team-7/*: the authorizer passes it on in its context.
    let mut e = event("connect.json");
    e["requestContext"]["connectionId"] = json!("B");
    e["requestContext"]["authorizer"] = json!({"principalId": "bob", "userId": "bob", "topics": "team-7/*"});
    f.send(e.clone()).await;
    let mut msg = event("ping.json");
    msg["requestContext"]["connectionId"] = json!("B");
    msg["requestContext"]["authorizer"] = e["requestContext"]["authorizer"].clone();
    msg["body"] = json!(subscribe("team-7/plans").to_string());
    assert_eq!(reply(&f.send(msg.clone()).await)["action"], "subscribed");
    msg["body"] = json!(json!({"action": "sendmessage", "topic": "team-7/plans", "data": 1}).to_string());
    assert_eq!(reply(&f.send(msg).await)["action"], "sent");
    // Alice may not send there either, and nothing reaches Bob.
    let refused = f
        .message(
            "A",
            "alice",
            json!({"action": "sendmessage", "topic": "team-7/plans", "data": 2}),
        )
        .await;
    assert_eq!(refused["code"], "forbidden_topic");
    assert!(memory_pushes(&f.notifier, "B").is_empty());
    // Unsubscribing is never refused.
    let r = f
        .message("A", "alice", json!({"action": "unsubscribe", "topic": "team-7/plans"}))
        .await;
    assert_eq!(r["action"], "unsubscribed");
}

#[tokio::test]
async fn eventbridge_events_push_with_the_event_id() {
    let f = fixture();
    f.connect("A", "alice").await;
    f.connect("B", "bob").await;
    f.message("B", "bob", json!({"action": "subscribe", "topic": "news"}))
        .await;
    // The function as the rule's target.
    let direct = f.send(event("eventbridge-topic.json")).await;
    assert_eq!(
        direct,
        json!({"id": "6a7e8feb-b491-4cf7-a9f1-bf3703467718", "delivered": 1, "gone": 0, "seq": 1, "epoch": direct["epoch"]})
    );
    assert_eq!(
        f.notifier.frames_for("B"),
        [
            json!({"action": "message", "topic": "news", "data": {"order": "o-1001", "status": "shipped"},
            "id": "6a7e8feb-b491-4cf7-a9f1-bf3703467718", "seq": 1, "epoch": direct["epoch"]})
        ]
    );
    // The queue as the target: the SQS body is the whole event.
    assert_eq!(
        f.send(event("sqs-eventbridge.json")).await,
        json!({"batchItemFailures": []})
    );
    let frames = f.notifier.frames_for("A");
    assert_eq!(
        frames,
        [
            json!({"action": "message", "topic": "user:alice", "data": {"export": "e-77", "status": "ready"},
            "id": "1f2d3c4b-5a69-4788-97a6-b5c4d3e2f1a0", "seq": 1, "epoch": frames[0]["epoch"]})
        ]
    );
    // An event without an id (sent by hand) falls back to the SQS messageId.
    let mut queued = event("sqs-eventbridge.json");
    let mut body: Value = serde_json::from_str(queued["Records"][0]["body"].as_str().unwrap()).unwrap();
    body.as_object_mut().unwrap().remove("id");
    queued["Records"][0]["body"] = json!(body.to_string());
    assert_eq!(f.send(queued).await, json!({"batchItemFailures": []}));
    assert_eq!(
        f.notifier.frames_for("A")[1]["id"],
        "0e5c8a3b-7f3e-4c1a-9d2b-6a1f0c9e8d80"
    );
    // A bad detail through the queue is a batch item failure, so it reaches the DLQ.
    let mut queued = event("sqs-eventbridge.json");
    body["detail"] = json!({"userId": "alice", "data": 1, "extra": true});
    queued["Records"][0]["body"] = json!(body.to_string());
    assert_eq!(
        f.send(queued).await,
        json!({"batchItemFailures": [{"itemIdentifier": "0e5c8a3b-7f3e-4c1a-9d2b-6a1f0c9e8d80"}]})
    );
}

#[tokio::test]
async fn eventbridge_failures_are_invocation_errors_with_stable_types() {
    let f = fixture();
    f.connect("B", "bob").await;
    f.message("B", "bob", json!({"action": "subscribe", "topic": "news"}))
        .await;
    let error_type = |err: wshub::RouterError| lambda_runtime::Diagnostic::from(err).error_type;
    let err = wshub::handle(&f.hub, event("eventbridge-bad-detail.json"), None)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("unknown key"), "{err}");
    assert_eq!(error_type(err), "wshub.MalformedEvent");
    // A delivery that fails: the invocation fails, so Lambda's async retries apply.
    f.notifier.fail_next(
        "B",
        vec![NotifyError::Rejected {
            status: 403,
            message: "forbidden".into(),
        }],
    );
    let err = wshub::handle(&f.hub, event("eventbridge-topic.json"), None)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("1 failed"), "{err}");
    assert_eq!(error_type(err), "wshub.DeliveryFailed");
    // The retry succeeds.
    assert_eq!(f.send(event("eventbridge-topic.json")).await["delivered"], 1);
    // A malformed envelope is malformed, not unrecognized.
    let mut e = event("eventbridge-topic.json");
    e["time"] = json!("yesterday");
    let err = wshub::handle(&f.hub, e, None).await.unwrap_err();
    assert_eq!(error_type(err), "wshub.MalformedEvent");
    let f = fixture_with(&[("APIGW_MANAGEMENT_ENDPOINT", "")]);
    let err = wshub::handle(&f.hub, event("eventbridge-topic.json"), None)
        .await
        .unwrap_err();
    assert_eq!(error_type(err), "wshub.DeliveryFailed");
}

fn http_reply(response: &Value, status: u16) -> Value {
    assert_eq!(response["statusCode"], status, "{response}");
    assert_eq!(response["headers"]["cache-control"], "no-store");
    serde_json::from_str(response["body"].as_str().expect("body")).expect("JSON body")
}

#[tokio::test]
async fn online_status_over_http() {
    let f = fixture();
    let ask = |ids: &str| {
        let mut e = event("http-online.json");
        e["queryStringParameters"] = json!({"userIds": ids});
        e
    };
    let users = http_reply(&f.send(ask("alice,bob")).await, 200)["users"].clone();
    assert_eq!(
        users,
        json!([{"userId": "alice", "online": false, "lastActiveAt": null},
               {"userId": "bob", "online": false, "lastActiveAt": null}])
    );
    f.connect("A1", "alice").await;
    f.connect("A2", "alice").await;
    let alice = http_reply(&f.send(ask("alice")).await, 200)["users"][0].clone();
    assert_eq!(alice["online"], true);
    let connected = alice["lastActiveAt"].as_i64().unwrap();
    // One of two connections closes: still online.
    let mut bye = event("disconnect.json");
    bye["requestContext"]["connectionId"] = json!("A1");
    assert_eq!(f.send(bye.clone()).await["statusCode"], 200);
    assert_eq!(http_reply(&f.send(ask("alice")).await, 200)["users"][0]["online"], true);
    bye["requestContext"]["connectionId"] = json!("A2");
    f.send(bye).await;
    let alice = http_reply(&f.send(ask("alice")).await, 200)["users"][0].clone();
    assert_eq!(alice["online"], false);
    assert!(
        alice["lastActiveAt"].as_i64().unwrap() >= connected,
        "kept on disconnect: {alice}"
    );

    // A JWT as a bearer token; a function URL's shape ($default route, the path in rawPath).
    let mut e = event("http-online-jwt.json");
    e["routeKey"] = json!("$default");
    e["requestContext"]["routeKey"] = json!("$default");
    assert_eq!(http_reply(&f.send(e.clone()).await, 200)["users"][0]["userId"], "alice");
    // Another method on the route: 405 with Allow.
    e["requestContext"]["http"]["method"] = json!("POST");
    let r = f.send(e).await;
    assert_eq!(http_reply(&r, 405)["code"], "method_not_allowed");
    assert_eq!(r["headers"]["allow"], "GET");
    // Not a bearer credential: no credentials at all.
    let mut e = event("http-online.json");
    e["headers"].as_object_mut().unwrap().remove("token");
    e["headers"]["authorization"] = json!("Basic Ym9iOmJvYi10b2tlbg==");
    assert_eq!(http_reply(&f.send(e).await, 401)["code"], "missing_credentials");
    // Bad ids.
    assert_eq!(
        http_reply(&f.send(ask("a\u{1}b")).await, 400)["code"],
        "invalid_user_id"
    );
    let many: Vec<String> = (0..101).map(|i| format!("u{i}")).collect();
    assert_eq!(
        http_reply(&f.send(ask(&many.join(","))).await, 400)["code"],
        "too_many_user_ids"
    );
}

#[tokio::test]
async fn online_status_fails_closed_without_auth_configuration() {
    let f = fixture_with(&[("AUTH_TOKENS", ""), ("JWT_SECRET", "")]);
    let r = f.send(event("http-online.json")).await;
    assert_eq!(http_reply(&r, 403)["code"], "forbidden");
    let r = f.send(event("http-online-no-token-deny.json")).await;
    assert_eq!(http_reply(&r, 401)["code"], "missing_credentials");
}

/// Issue 11 item 10: each connection may send `SEND_RATE_PER_SECOND` messages a second after a
/// burst of `SEND_RATE_BURST`; beyond it `rate_limited`, and nothing is posted. The bucket is
/// the sender's own (the exact token arithmetic is in the store contract, on both backends).
#[tokio::test]
async fn sendmessage_beyond_the_rate_limit_is_refused() {
    let f = fixture_with(&[("SEND_RATE_PER_SECOND", "1"), ("SEND_RATE_BURST", "2")]);
    f.connect("A", "alice").await;
    f.connect("B", "bob").await;
    f.message("B", "bob", json!({"action": "subscribe", "topic": "room"}))
        .await;
    let send = || json!({"action": "sendmessage", "topic": "room", "data": "hi"});
    assert_eq!(f.message("A", "alice", send()).await["recipients"], 1);
    assert_eq!(f.message("A", "alice", send()).await["recipients"], 1);
    let refused = f.message("A", "alice", send()).await;
    assert_eq!(refused["code"], "rate_limited", "{refused}");
    assert_eq!(memory_pushes(&f.notifier, "B").len(), 2);
    // Another connection has a bucket of its own.
    assert_eq!(f.message("B", "bob", send()).await["recipients"], 0);
}

/// Issue 11 item 10: with a push queue, a `sendmessage` whose audience exceeds `SHARD_THRESHOLD`
/// is handed to the queue like any push (`sent` says `queued: true`) and every subscriber but
/// the sender gets it once, from the queue's invocations, with `from` and the message's id; a
/// small audience is still posted inline and counted.
#[tokio::test]
async fn a_large_sendmessage_goes_to_the_push_queue() {
    let mut f = fixture_with(&[("SHARD_THRESHOLD", "3")]);
    let queue = Arc::new(wshub::queue::MemoryQueue::new());
    f.hub = Hub::new(f.hub.config.clone(), f.store.clone(), f.notifier.clone()).with_queue(queue.clone());
    let ids: Vec<String> = (0..8).map(|i| format!("C{i}")).collect();
    for id in &ids {
        f.connect(id, "u").await;
        f.message(id, "u", json!({"action": "subscribe", "topic": "big"})).await;
    }
    f.connect("S", "sam").await;
    f.message("S", "sam", json!({"action": "subscribe", "topic": "big"}))
        .await;
    f.message("C0", "u", json!({"action": "subscribe", "topic": "small"}))
        .await;
    let sent = f
        .message(
            "S",
            "sam",
            json!({"action": "sendmessage", "topic": "big", "data": "hi", "id": 1}),
        )
        .await;
    // Recorded before it was queued: seq 1 of the topic's stream, carried by every shard job.
    assert_eq!(
        sent,
        json!({"action": "sent", "topic": "big", "recipients": 0, "queued": true, "id": 1, "seq": 1, "epoch": sent["epoch"]})
    );
    assert!(f.notifier.sent().is_empty(), "nothing posted inline");
    let mut n = 0;
    while !queue.is_empty() {
        n += 1;
        assert!(n < 100, "the queue never drains");
        let batch: Vec<(String, Value)> = queue
            .take_messages(10)
            .into_iter()
            .map(|(id, body)| (id, serde_json::from_str(&body).unwrap()))
            .collect();
        let batch: Vec<(&str, Value)> = batch.iter().map(|(id, b)| (id.as_str(), b.clone())).collect();
        let response = f.send(common::sqs_batch(&batch)).await;
        assert_eq!(response, json!({"batchItemFailures": []}));
    }
    for id in &ids {
        let frames = memory_pushes(&f.notifier, id);
        assert_eq!(frames.len(), 1, "{id}: {frames:?}");
        assert_eq!(
            frames[0],
            json!({"action": "message", "topic": "big", "data": "hi", "from": "sam", "id": "Tq8bLcnjoAMCJyA=",
                "seq": 1, "epoch": sent["epoch"]})
        );
    }
    assert!(memory_pushes(&f.notifier, "S").is_empty(), "not to the sender");
    let small = f
        .message(
            "S",
            "sam",
            json!({"action": "sendmessage", "topic": "small", "data": 2}),
        )
        .await;
    assert_eq!(
        small,
        json!({"action": "sent", "topic": "small", "recipients": 1, "seq": 1, "epoch": small["epoch"]})
    );
    assert!(queue.is_empty());
}

// Issue 15: client actions forwarded to the backend, and URL paths on connections.

#[tokio::test]
async fn a_forwarded_action_is_put_on_the_bus_and_accepted() {
    let f = fixture_with(&[("FORWARD_ACTIONS", "order.*,job"), ("FORWARD_EVENT_BUS", "orders-bus")]);
    let bus = Arc::new(wshub::forward::MemoryBus::new());
    let f = Fixture {
        hub: f.hub.with_events(bus.clone()),
        ..f
    };
    f.connect("A", "alice").await;
    let reply = f
        .message(
            "A",
            "alice",
            json!({"action": "order.create", "id": 7, "data": {"sku": "A-42"}}),
        )
        .await;
    assert_eq!(reply, json!({"action": "accepted", "id": 7}));
    // Without an id, API Gateway's message id correlates the reply with the event.
    let reply = f.message("A", "alice", json!({"action": "job"})).await;
    assert_eq!(reply, json!({"action": "accepted", "id": "Tq8bLcnjoAMCJyA="}));
    let events = bus.events();
    assert_eq!(events.len(), 2);
    assert_eq!(events[0].0, "orders-bus");
    let detail = serde_json::to_value(&events[0].1).unwrap();
    assert_eq!(
        detail,
        json!({"connectionId": "A", "userId": "alice", "action": "order.create",
               "data": {"sku": "A-42"}, "id": 7, "requestTime": 1_795_244_405_321_i64})
    );
    assert_eq!(serde_json::to_value(&events[1].1).unwrap()["data"], Value::Null);
    // Nothing but action, id and data: a token in the frame is refused, not forwarded.
    let reply = f
        .message("A", "alice", json!({"action": "job", "token": "secret"}))
        .await;
    assert_eq!(reply["code"], "bad_request");
    // Not listed, or built in: unchanged.
    assert_eq!(
        f.message("A", "alice", json!({"action": "jobs"})).await["code"],
        "unknown_action"
    );
    assert_eq!(
        f.message("A", "alice", json!({"action": "ping"})).await["action"],
        "pong"
    );
    assert_eq!(bus.events().len(), 2);
    // A failed put is an error frame with the id, never a silent drop.
    bus.set_failing(true);
    let reply = f.message("A", "alice", json!({"action": "job", "id": "j"})).await;
    assert_eq!(
        (reply["code"].as_str(), reply["id"].as_str()),
        (Some("internal"), Some("j"))
    );
}

#[tokio::test]
async fn without_forward_actions_unknown_actions_are_refused() {
    let f = fixture();
    f.connect("A", "alice").await;
    assert_eq!(
        f.message("A", "alice", json!({"action": "job"})).await["code"],
        "unknown_action"
    );
    // Built-in names cannot be configured for forwarding at all.
    let mut params = env_params();
    params.insert("FORWARD_ACTIONS".into(), json!("whoami"));
    params.insert("FORWARD_EVENT_BUS".into(), json!("b"));
    let err = Config::from_lookup(|name| params.get(name).and_then(Value::as_str).map(str::to_owned)).unwrap_err();
    assert!(err.to_string().contains("built-in"), "{err}");
}

#[tokio::test]
async fn the_url_path_goes_from_the_authorizer_to_connect_and_whoami() {
    let f = fixture();
    let mut e = event("authorizer-token-header.json");
    e["headers"]["x-wshub-path"] = json!("/ocpp/CP001");
    let verdict = f.send(e.clone()).await;
    assert_eq!(effect(&verdict).0, "Allow");
    assert_eq!(verdict["context"]["path"], "/ocpp/CP001");
    e["headers"]["x-wshub-path"] = json!("/has space");
    assert_eq!(effect(&f.send(e).await).0, "Deny");

    // API Gateway hands the authorizer's context to $connect and every later route.
    let mut connect = event("connect.json");
    connect["requestContext"]["connectionId"] = json!("P");
    connect["requestContext"]["authorizer"] = verdict["context"].clone();
    assert_eq!(f.send(connect).await["statusCode"], 200);
    let stored = f.store.get_connection("P", 0).await.unwrap().unwrap();
    assert_eq!(stored.connection.path.as_deref(), Some("/ocpp/CP001"));
    let me = f.message("P", "alice", json!({"action": "whoami"})).await;
    assert_eq!(me["path"], "/ocpp/CP001");
    // Without a path, none is stored or shown.
    f.connect("Q", "bob").await;
    let me = f.message("Q", "bob", json!({"action": "whoami"})).await;
    assert!(me.get("path").is_none(), "{me}");
}
