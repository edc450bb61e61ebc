//! Streams through the router: seq and epoch on pushes, recovery on `subscribe`, `history`
//! paging, user streams, idempotent publish. Every test runs on the in-memory store and, with
//! `--include-ignored` under scripts/test.sh, on DynamoDB (moto server). Every frame is checked
//! against asyncapi.yaml.

mod common;

use common::router::{self, event, Backend, Client};
use serde_json::{json, Value};

type Fixture = Client;

async fn fixture(backend: Backend, overrides: &[(&str, &str)]) -> Fixture {
    Client::new(router::config(overrides), router::store(backend, None).await)
}

/// `n` SQS pushes to `topic`, data `{"n": i}`, ids `{prefix}-{i}`.
async fn push_n(f: &Fixture, topic: &str, n: usize, prefix: &str) {
    for i in 1..=n {
        f.push(&[(&format!("{prefix}-{i}"), json!({"topic": topic, "data": {"n": i}}))])
            .await;
    }
}

fn seqs(messages: &Value) -> Vec<u64> {
    messages
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["seq"].as_u64().unwrap())
        .collect()
}

fn since(seq: u64, epoch: &Value) -> Value {
    json!({"seq": seq, "epoch": epoch})
}

async fn recovery_after_a_reconnect(backend: Backend) {
    let f = fixture(backend, &[]).await;
    f.connect("A", "alice").await;
    let first = f.request("A", json!({"action": "subscribe", "topic": "news"})).await;
    assert_eq!(first["seq"], 0, "a new stream starts at 0: {first}");
    let epoch = first["epoch"].clone();
    assert!(epoch.as_str().is_some_and(|e| !e.is_empty()));
    push_n(&f, "news", 10, "m").await;
    let live = f.pushes("A");
    assert_eq!(seqs(&json!(live)), (1..=10).collect::<Vec<_>>());
    assert!(live.iter().all(|m| m["epoch"] == epoch && m["topic"] == "news"));

    // Back on a new connection with the position of the 4th: 5..10 in order, recovered.
    f.connect("A2", "alice").await;
    let reply = f
        .request(
            "A2",
            json!({"action": "subscribe", "topic": "news", "since": since(4, &epoch)}),
        )
        .await;
    assert_eq!(
        (reply["recovered"].as_bool(), reply["seq"].as_u64()),
        (Some(true), Some(10))
    );
    assert_eq!(reply["more"], false);
    assert_eq!(seqs(&reply["messages"]), (5..=10).collect::<Vec<_>>());
    assert_eq!(reply["messages"][0]["data"], json!({"n": 5}));
    assert_eq!(reply["messages"][0]["id"], "m-5");
    // Caught up: nothing missed.
    let current = f
        .request(
            "A2",
            json!({"action": "subscribe", "topic": "news", "since": since(10, &epoch)}),
        )
        .await;
    assert_eq!(
        (current["recovered"].as_bool(), seqs(&current["messages"]).len()),
        (Some(true), 0)
    );

    // A wrong epoch: not recovered, and what is left from the start.
    let wrong = f
        .request(
            "A2",
            json!({"action": "subscribe", "topic": "news", "since": since(4, &json!("other"))}),
        )
        .await;
    assert_eq!(wrong["recovered"], false);
    assert_eq!(seqs(&wrong["messages"]), (1..=10).collect::<Vec<_>>());
    // A position ahead of the stream is no position in it.
    let ahead = f
        .request(
            "A2",
            json!({"action": "subscribe", "topic": "news", "since": since(11, &epoch)}),
        )
        .await;
    assert_eq!(ahead["recovered"], false);

    // Paging with `history` until `more` is false.
    let mut got: Vec<u64> = Vec::new();
    let mut at = 0;
    loop {
        let page = f
            .request(
                "A2",
                json!({"action": "history", "topic": "news", "since": since(at, &epoch), "limit": 3}),
            )
            .await;
        assert_eq!(page["recovered"], true, "{page}");
        let page_seqs = seqs(&page["messages"]);
        assert!(page_seqs.len() <= 3);
        got.extend(page_seqs.iter().copied());
        at = *page_seqs.last().unwrap_or(&at);
        if page["more"] == false {
            break;
        }
    }
    assert_eq!(got, (1..=10).collect::<Vec<_>>());
    let bad = f
        .request("A2", json!({"action": "history", "topic": "news", "limit": 0}))
        .await;
    assert_eq!(bad["code"], "bad_request");
    let bad = f
        .request(
            "A2",
            json!({"action": "subscribe", "topic": "news", "since": {"seq": "4"}}),
        )
        .await;
    assert_eq!(bad["code"], "bad_request");
}

#[tokio::test]
async fn recovery_after_a_reconnect_in_memory() {
    recovery_after_a_reconnect(Backend::Memory).await;
}

#[tokio::test]
#[ignore = "needs a DynamoDB endpoint in AWS_ENDPOINT_URL_DYNAMODB: run scripts/test.sh"]
async fn recovery_after_a_reconnect_on_dynamodb() {
    recovery_after_a_reconnect(Backend::Dynamo).await;
}

async fn only_the_kept_window_is_served(backend: Backend) {
    let f = fixture(backend, &[("HISTORY_SIZE", "5")]).await;
    f.connect("A", "alice").await;
    let epoch = f.request("A", json!({"action": "subscribe", "topic": "t"})).await["epoch"].clone();
    push_n(&f, "t", 10, "k").await;
    let reply = f
        .request(
            "A",
            json!({"action": "subscribe", "topic": "t", "since": since(2, &epoch)}),
        )
        .await;
    assert_eq!(reply["recovered"], false, "3-5 are gone: {reply}");
    assert_eq!(seqs(&reply["messages"]), (6..=10).collect::<Vec<_>>(), "what is left");
    let within = f
        .request(
            "A",
            json!({"action": "subscribe", "topic": "t", "since": since(5, &epoch)}),
        )
        .await;
    assert_eq!(within["recovered"], true);
}

#[tokio::test]
async fn only_the_kept_window_is_served_in_memory() {
    only_the_kept_window_is_served(Backend::Memory).await;
}

#[tokio::test]
#[ignore = "needs a DynamoDB endpoint in AWS_ENDPOINT_URL_DYNAMODB: run scripts/test.sh"]
async fn only_the_kept_window_is_served_on_dynamodb() {
    only_the_kept_window_is_served(Backend::Dynamo).await;
}

async fn user_streams_are_private_and_one(backend: Backend) {
    let f = fixture(backend, &[]).await;
    f.connect("A", "alice").await;
    f.connect("B", "bob").await;
    // A user push and a topic push to `user:alice` are one stream, delivered once each.
    f.push(&[("u-1", json!({"userId": "alice", "data": 1}))]).await;
    f.push(&[("u-2", json!({"topic": "user:alice", "data": 2}))]).await;
    let got = f.pushes("A");
    assert_eq!(seqs(&json!(got)), [1, 2]);
    assert!(got.iter().all(|m| m["topic"] == "user:alice"));
    assert!(f.pushes("B").is_empty());
    // Alice recovers her own stream without a subscription row.
    let epoch = got[0]["epoch"].clone();
    let mine = f
        .request(
            "A",
            json!({"action": "subscribe", "topic": "user:alice", "since": since(1, &epoch)}),
        )
        .await;
    assert_eq!(
        (mine["recovered"].as_bool(), seqs(&mine["messages"])),
        (Some(true), vec![2])
    );
    // Bob may neither subscribe to it nor read it, though topic access is open.
    for action in ["subscribe", "history"] {
        let reply = f.request("B", json!({"action": action, "topic": "user:alice"})).await;
        assert_eq!(reply["code"], "forbidden_topic", "{action}");
    }
    let reply = f
        .request(
            "B",
            json!({"action": "sendmessage", "topic": "user:alice", "data": "hi"}),
        )
        .await;
    assert_eq!(reply["code"], "forbidden_topic");
    // Broadcasts and connection pushes are not recorded.
    f.push(&[
        ("b-1", json!({"data": "all"})),
        ("c-1", json!({"connectionId": "A", "data": "you"})),
    ])
    .await;
    let last = f.pushes("A");
    assert!(last[2..]
        .iter()
        .all(|m| m.get("seq").is_none() && m.get("topic").is_none()));
}

#[tokio::test]
async fn user_streams_are_private_and_one_in_memory() {
    user_streams_are_private_and_one(Backend::Memory).await;
}

#[tokio::test]
#[ignore = "needs a DynamoDB endpoint in AWS_ENDPOINT_URL_DYNAMODB: run scripts/test.sh"]
async fn user_streams_are_private_and_one_on_dynamodb() {
    user_streams_are_private_and_one(Backend::Dynamo).await;
}

async fn publishing_is_idempotent(backend: Backend) {
    let f = fixture(backend, &[]).await;
    f.connect("A", "alice").await;
    f.request("A", json!({"action": "subscribe", "topic": "orders"})).await;
    let order = json!({"topic": "orders", "data": "shipped", "idempotencyKey": "order-7"});
    f.push(&[("m-1", order.clone())]).await;
    // The same SQS record again (a redelivery): delivered again with its first seq.
    f.push(&[("m-1", order.clone())]).await;
    // Another message with the same key: not delivered, no seq consumed.
    f.push(&[("m-2", order.clone())]).await;
    f.push(&[("m-3", json!({"topic": "orders", "data": "next"}))]).await;
    let got = f.pushes("A");
    assert_eq!(seqs(&json!(got)), [1, 1, 2]);
    assert_eq!(got[2]["data"], "next");
    // An EventBridge event delivered twice keeps its seq: its id is the key.
    let mut eb = event("eventbridge-topic.json");
    eb["detail"] = json!({"topic": "orders", "data": "from events"});
    for _ in 0..2 {
        let answer = wshub::handle(&f.hub, eb.clone(), None).await.unwrap();
        assert_eq!(answer["seq"], 3, "{answer}");
    }
    assert_eq!(seqs(&json!(f.pushes("A")[3..])), [3, 3]);
    // Only a new publication counts in the Publications metric: not a redelivery, not a duplicate.
    let counted = |record: (&'static str, Value)| {
        let f = &f;
        async move {
            let batch = common::sqs_batch(&[record]);
            let (_, recorded) = wshub::metrics::measure(wshub::handle(&f.hub, batch, None)).await;
            recorded.count(wshub::metrics::Metric::Publications)
        }
    };
    let fresh = json!({"topic": "orders", "data": "counted", "idempotencyKey": "order-8"});
    assert_eq!(counted(("m-8", fresh.clone())).await, 1);
    assert_eq!(
        counted(("m-8", fresh.clone())).await,
        0,
        "a redelivery is not a new publication"
    );
    assert_eq!(counted(("m-9", fresh)).await, 0, "a duplicate is not one either");
    // Stored once each.
    let epoch = got[0]["epoch"].clone();
    let all = f
        .request(
            "A",
            json!({"action": "history", "topic": "orders", "since": since(0, &epoch)}),
        )
        .await;
    assert_eq!(seqs(&all["messages"]), [1, 2, 3, 4]);
}

#[tokio::test]
async fn publishing_is_idempotent_in_memory() {
    publishing_is_idempotent(Backend::Memory).await;
}

#[tokio::test]
#[ignore = "needs a DynamoDB endpoint in AWS_ENDPOINT_URL_DYNAMODB: run scripts/test.sh"]
async fn publishing_is_idempotent_on_dynamodb() {
    publishing_is_idempotent(Backend::Dynamo).await;
}

#[tokio::test]
async fn client_messages_are_recorded_and_recording_can_be_off() {
    let f = fixture(Backend::Memory, &[]).await;
    f.connect("A", "alice").await;
    f.connect("B", "bob").await;
    let epoch = f.request("B", json!({"action": "subscribe", "topic": "chat"})).await["epoch"].clone();
    let sent = f
        .request("A", json!({"action": "sendmessage", "topic": "chat", "data": "hi"}))
        .await;
    assert_eq!((sent["seq"].as_u64(), &sent["epoch"]), (Some(1), &epoch));
    assert_eq!(f.pushes("B")[0]["seq"], 1);
    assert_eq!(f.pushes("B")[0]["from"], "alice");
    let missed = f
        .request(
            "B",
            json!({"action": "subscribe", "topic": "chat", "since": since(0, &epoch)}),
        )
        .await;
    assert_eq!(missed["messages"][0]["from"], "alice");

    let off = fixture(Backend::Memory, &[("HISTORY_TTL_SECONDS", "0")]).await;
    off.connect("A", "alice").await;
    let reply = off.request("A", json!({"action": "subscribe", "topic": "chat"})).await;
    assert!(reply.get("seq").is_none() && reply.get("epoch").is_none(), "{reply}");
    off.push(&[("m-1", json!({"topic": "chat", "data": 1}))]).await;
    assert!(off.pushes("A")[0].get("seq").is_none());
    let reply = off
        .request(
            "A",
            json!({"action": "subscribe", "topic": "chat", "since": since(0, &json!("e"))}),
        )
        .await;
    assert_eq!(
        (reply["recovered"].as_bool(), seqs(&reply["messages"]).len()),
        (Some(false), 0)
    );
    let page = off.request("A", json!({"action": "history", "topic": "chat"})).await;
    assert_eq!(page["recovered"], false);
}

#[tokio::test]
async fn a_recovery_reply_stays_within_128_kb() {
    let f = fixture(Backend::Memory, &[]).await;
    f.connect("A", "alice").await;
    let epoch = f.request("A", json!({"action": "subscribe", "topic": "big"})).await["epoch"].clone();
    let chunk = "x".repeat(30_000);
    for i in 0..6 {
        f.push(&[(&format!("b-{i}"), json!({"topic": "big", "data": chunk}))])
            .await;
    }
    let reply = f
        .request(
            "A",
            json!({"action": "subscribe", "topic": "big", "since": since(0, &epoch)}),
        )
        .await;
    assert!(reply.to_string().len() <= 128 * 1024);
    let first = seqs(&reply["messages"]);
    assert_eq!(
        (first.len(), reply["more"].as_bool()),
        (4, Some(true)),
        "4 of 30 KB fit"
    );
    let rest = f
        .request(
            "A",
            json!({"action": "history", "topic": "big", "since": since(4, &epoch)}),
        )
        .await;
    assert_eq!(
        (seqs(&rest["messages"]), rest["more"].as_bool()),
        (vec![5, 6], Some(false))
    );
}
