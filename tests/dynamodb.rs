//! The DynamoDB store against a real DynamoDB-compatible server (moto server, started by
//! `scripts/test.sh`, which points `AWS_ENDPOINT_URL_DYNAMODB` at it). Each test makes its own table.

mod common;

use std::sync::Arc;

use serde_json::{json, Value};
use wshub::notify::memory::MemoryNotifier;
use wshub::store::dynamo::DynamoStore;
use wshub::store::table::{self, create_table};
use wshub::store::ConnectionStore;
use wshub::{Config, Hub};

const NEEDS: &str = "needs a DynamoDB endpoint in AWS_ENDPOINT_URL_DYNAMODB: run scripts/test.sh";

async fn fresh_table() -> DynamoStore {
    assert!(std::env::var("AWS_ENDPOINT_URL_DYNAMODB").is_ok(), "{NEEDS}");
    // The standard configuration chain: this is what proves AWS_ENDPOINT_URL_DYNAMODB is honoured.
    let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let client = aws_sdk_dynamodb::Client::new(&sdk);
    let name = format!("wshub-test-{:016x}", fastrand::u64(..));
    create_table(&client, &name).await.expect("create table");
    DynamoStore::new(client, name)
}

#[tokio::test]
#[ignore = "needs a DynamoDB endpoint in AWS_ENDPOINT_URL_DYNAMODB: run scripts/test.sh"]
async fn dynamodb_store_meets_the_contract() {
    let store = fresh_table().await.with_page_size(10);
    wshub::store::contract::run(&store, "c-").await;
}

#[tokio::test]
#[ignore = "needs a DynamoDB endpoint in AWS_ENDPOINT_URL_DYNAMODB: run scripts/test.sh"]
async fn dynamodb_store_keeps_streams() {
    let store = fresh_table().await;
    wshub::store::contract::history::run(&store, "h-").await;
}

#[tokio::test]
#[ignore = "needs a DynamoDB endpoint in AWS_ENDPOINT_URL_DYNAMODB: run scripts/test.sh"]
async fn table_has_the_defined_keys_indexes_and_ttl() {
    let store = fresh_table().await;
    let client = store.client();
    let described = client
        .describe_table()
        .table_name(store.table())
        .send()
        .await
        .unwrap()
        .table
        .unwrap();
    let gsis = described.global_secondary_indexes();
    for spec in table::INDEXES {
        let gsi = gsis
            .iter()
            .find(|g| g.index_name() == Some(spec.name))
            .unwrap_or_else(|| panic!("{} missing", spec.name));
        let keys: Vec<&str> = gsi.key_schema().iter().map(|k| k.attribute_name()).collect();
        assert_eq!(keys, [spec.hash, spec.range]);
    }
    let ttl = client
        .describe_time_to_live()
        .table_name(store.table())
        .send()
        .await
        .unwrap();
    let ttl = ttl.time_to_live_description().unwrap();
    assert_eq!(ttl.attribute_name(), Some(table::TTL));
}

#[tokio::test]
#[ignore = "needs a DynamoDB endpoint in AWS_ENDPOINT_URL_DYNAMODB: run scripts/test.sh"]
async fn connect_subscribe_push_disconnect() {
    let store = Arc::new(fresh_table().await);
    let notifier = Arc::new(MemoryNotifier::new());
    let config = Config::from_lookup(|name| match name {
        "CONNECTIONS_TABLE" => Some(store.table().to_owned()),
        "APIGW_MANAGEMENT_ENDPOINT" => Some("http://127.0.0.1:9/prod".into()),
        "AUTH_TOKENS" => Some("alice=alice-token".into()),
        _ => None,
    })
    .unwrap();
    let hub = Hub::new(config, store.clone(), notifier.clone());
    let route = |route: &str, event_type: &str, body: Option<serde_json::Value>| {
        json!({
            "requestContext": {"routeKey": route, "eventType": event_type, "connectionId": "L0SM9cOFvHcCIhw=",
                "connectedAt": 1795244400000i64, "requestTimeEpoch": 1795244400000i64, "messageId": "m1",
                "stage": "prod", "apiId": "abcdef1234", "identity": {"sourceIp": "198.51.100.7"},
                "authorizer": {"principalId": "alice", "userId": "alice", "integrationLatency": 3}},
            "headers": {"Host": "abcdef1234.execute-api.us-east-1.amazonaws.com"},
            "body": body.map(|b| b.to_string()),
            "isBase64Encoded": false
        })
    };
    let send = |event| wshub::handle(&hub, event, None);
    assert_eq!(
        send(route("$connect", "CONNECT", None)).await.unwrap()["statusCode"],
        200
    );
    let r = send(route(
        "subscribe",
        "MESSAGE",
        Some(json!({"action": "subscribe", "topic": "jobs/42"})),
    ))
    .await
    .unwrap();
    let reply: Value = serde_json::from_str(r["body"].as_str().unwrap()).unwrap();
    assert_eq!(
        reply,
        json!({"action": "subscribed", "topic": "jobs/42", "seq": 0, "epoch": reply["epoch"]})
    );
    common::asyncapi::reply_frame(&r);
    let r = send(route("whoami", "MESSAGE", Some(json!({"action": "whoami"}))))
        .await
        .unwrap();
    let whoami = common::asyncapi::reply_frame(&r);
    assert_eq!(whoami["topics"], json!(["jobs/42"]));

    let sqs = |id: &str, body: serde_json::Value| common::sqs_batch(&[(id, body)]);
    for (id, body) in [
        ("p-topic", json!({"topic": "jobs/42", "data": {"progress": 50}})),
        ("p-user", json!({"userId": "alice", "data": "for alice"})),
        ("p-all", json!({"data": "for everyone"})),
    ] {
        assert_eq!(
            send(sqs(id, body)).await.unwrap(),
            json!({"batchItemFailures": []}),
            "{id}"
        );
    }
    let ids: Vec<String> = common::asyncapi::memory_pushes(&notifier, "L0SM9cOFvHcCIhw=")
        .iter()
        .map(|f| f["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids, ["p-topic", "p-user", "p-all"]);

    assert_eq!(
        send(route("$disconnect", "DISCONNECT", None)).await.unwrap()["statusCode"],
        200
    );
    let left = store.client().scan().table_name(store.table()).send().await.unwrap();
    // The connection and its subscriptions are gone; alice's presence item stays, with no
    // attribute that could put it in an index (and so in a broadcast). So do the streams'
    // history items (heads, publications, keys), and no index sees them either.
    let (streams, items): (Vec<_>, Vec<_>) = left
        .items()
        .iter()
        .partition(|item| item[table::PK].as_s().unwrap().starts_with("STREAM#"));
    assert!(!streams.is_empty(), "the pushes were recorded");
    assert_eq!(
        items.len(),
        1,
        "disconnect removes the connection and its subscriptions"
    );
    let mut attributes: Vec<&str> = items[0].keys().map(String::as_str).collect();
    attributes.sort();
    assert_eq!(attributes, [table::LAST_ACTIVE_AT, table::PK, table::SK, table::TTL]);
    assert_eq!(items[0][table::PK].as_s().unwrap(), &table::user_pk("alice"));
    for index in table::INDEXES {
        let scanned = store
            .client()
            .scan()
            .table_name(store.table())
            .index_name(index.name)
            .send()
            .await
            .unwrap();
        assert_eq!(scanned.count(), 0, "{} must not index the presence item", index.name);
    }
    let presence = store.presence(&["alice".to_owned()], wshub_now()).await.unwrap();
    assert!(
        !presence[0].online && presence[0].last_active_at.is_some(),
        "{presence:?}"
    );
    // A push to the departed user now reaches nobody and still succeeds.
    assert_eq!(
        send(sqs("p-late", json!({"userId": "alice", "data": 1})))
            .await
            .unwrap(),
        json!({"batchItemFailures": []})
    );
    assert_eq!(notifier.sent().len(), 3);
}

fn wshub_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Sharded fan-out on the real parts: DynamoDB cursor reads (a segmented Scan) and shard jobs
/// sent through SQS (both moto), invocations played by draining the queue. Every connection
/// gets the push exactly once.
#[tokio::test]
#[ignore = "needs DynamoDB and SQS endpoints (AWS_ENDPOINT_URL_DYNAMODB, _SQS): run scripts/test.sh"]
async fn sharded_broadcast_through_sqs_reaches_everyone_once() {
    use wshub::queue::SqsQueue;
    use wshub::store::{Connection, ConnectionStore};
    assert!(std::env::var("AWS_ENDPOINT_URL_SQS").is_ok(), "{NEEDS}");
    let store = Arc::new(fresh_table().await.with_page_size(9).with_scan_segments(3));
    for i in 0..120 {
        let c = Connection {
            connection_id: format!("conn-{i:03}"),
            user_id: "u".into(),
            connected_at: 0,
            source_ip: None,
            ttl: i64::MAX / 2,
        };
        store.put_connection(&c).await.unwrap();
    }
    let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let url = sqs
        .create_queue()
        .queue_name(format!("wshub-shard-{:08x}", fastrand::u32(..)))
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    let config = Config::from_lookup(|name| match name {
        "CONNECTIONS_TABLE" => Some(store.table().to_owned()),
        "APIGW_MANAGEMENT_ENDPOINT" => Some("http://127.0.0.1:9/prod".into()),
        "PUSH_QUEUE_URL" => Some(url.clone()),
        "SHARD_THRESHOLD" => Some("20".into()),
        _ => None,
    })
    .unwrap();
    let notifier = Arc::new(MemoryNotifier::new());
    let hub = Hub::new(config, store.clone(), notifier.clone()).with_queue(Arc::new(SqsQueue::new(&sdk, &url)));
    let push = common::sqs_batch(&[("push-42", json!({"data": "all"}))]);
    assert_eq!(
        wshub::handle(&hub, push, None).await.unwrap(),
        json!({"batchItemFailures": []})
    );
    let mut jobs = 0;
    loop {
        let received = sqs
            .receive_message()
            .queue_url(&url)
            .max_number_of_messages(10)
            .send()
            .await
            .unwrap();
        let messages = received.messages.unwrap_or_default();
        if messages.is_empty() {
            break;
        }
        for m in messages {
            jobs += 1;
            let body = m.body.clone().unwrap();
            assert!(body.contains("\"shard\":1"), "only shard jobs are enqueued: {body}");
            let event = common::sqs_batch(&[(m.message_id.as_deref().unwrap(), serde_json::from_str(&body).unwrap())]);
            assert_eq!(
                wshub::handle(&hub, event, None).await.unwrap(),
                json!({"batchItemFailures": []})
            );
            sqs.delete_message()
                .queue_url(&url)
                .receipt_handle(m.receipt_handle.unwrap())
                .send()
                .await
                .unwrap();
        }
    }
    assert!(
        jobs >= 3,
        "120 connections at 20 per listing take several jobs, got {jobs}"
    );
    let mut seen = std::collections::BTreeMap::<String, usize>::new();
    for (id, frame) in notifier.sent() {
        let frame: serde_json::Value = serde_json::from_str(&frame).unwrap();
        assert_eq!(frame["id"], "push-42", "every frame keeps the push's id");
        *seen.entry(id).or_default() += 1;
    }
    assert_eq!(seen.len(), 120);
    assert!(seen.values().all(|n| *n == 1), "exactly once each");
}
