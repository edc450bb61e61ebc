//! What each push asks of DynamoDB, read from the store's capacity meter against moto server
//! (started by `scripts/test.sh`): targeted pushes never Scan, and reads ask for their consumed
//! capacity. Costs themselves are measured by `scripts/bench-dynamodb-cost.sh` (BENCHMARKS.md).

mod common;

use std::sync::Arc;

use serde_json::{json, Value};
use wshub::notify::memory::MemoryNotifier;
use wshub::store::capacity::Usage;
use wshub::store::dynamo::DynamoStore;
use wshub::store::table::create_table;
use wshub::store::{Connection, ConnectionStore};
use wshub::{Config, Hub};

const TTL: i64 = 4_102_444_800;

async fn fresh_table() -> DynamoStore {
    assert!(
        std::env::var("AWS_ENDPOINT_URL_DYNAMODB").is_ok(),
        "needs a DynamoDB endpoint in AWS_ENDPOINT_URL_DYNAMODB: run scripts/test.sh"
    );
    let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let client = aws_sdk_dynamodb::Client::new(&sdk);
    let name = format!("wshub-test-{:016x}", fastrand::u64(..));
    create_table(&client, &name).await.expect("create table");
    DynamoStore::new(client, name)
}

async fn connect(store: &DynamoStore, id: &str, user: &str, topic: Option<&str>) {
    let connection = Connection {
        connection_id: id.into(),
        user_id: user.into(),
        connected_at: 1_795_244_400_000,
        source_ip: None,
        path: None,
        ttl: TTL,
    };
    store.put_connection(&connection).await.unwrap();
    if let Some(topic) = topic {
        store.subscribe(id, topic, TTL, 0, usize::MAX).await.unwrap();
    }
}

#[tokio::test]
#[ignore = "needs a DynamoDB endpoint in AWS_ENDPOINT_URL_DYNAMODB: run scripts/test.sh"]
async fn targeted_pushes_never_scan() {
    let store = Arc::new(fresh_table().await);
    connect(&store, "a1", "alice", Some("news")).await;
    connect(&store, "a2", "alice", None).await;
    connect(&store, "b1", "bob", Some("news")).await;
    connect(&store, "c1", "carol", None).await;
    let notifier = Arc::new(MemoryNotifier::new());
    let table = store.table().to_owned();
    let config = Config::from_lookup(|name| match name {
        "CONNECTIONS_TABLE" => Some(table.clone()),
        "APIGW_MANAGEMENT_ENDPOINT" => Some("http://127.0.0.1:9/prod".into()),
        "AUTH_TOKENS" => Some("alice=alice-token".into()),
        _ => None,
    })
    .unwrap();
    let hub = Hub::new(config, store.clone(), notifier.clone());

    // (body, members reached, Query calls; Scans are asserted separately below)
    let push = |body: Value| {
        let (hub, store, notifier) = (&hub, &store, &notifier);
        async move {
            let (usage_before, sent_before) = (store.capacity().usage(), notifier.sent().len());
            let response = wshub::handle(hub, common::sqs_batch(&[("m", body.clone())]), None)
                .await
                .unwrap();
            assert_eq!(response["batchItemFailures"], json!([]), "{body}");
            let usage: Usage = store.capacity().usage().since(&usage_before);
            (notifier.sent().len() - sent_before, usage)
        }
    };

    let (reached, usage) = push(json!({"userId": "alice", "data": 1})).await;
    assert_eq!(
        (reached, usage.calls("Scan"), usage.calls("Query")),
        (2, 0, 1),
        "{usage:?}"
    );
    // moto answers ReturnConsumedCapacity with a fixed figure; any figure proves it was asked for.
    assert!(usage.read_units() > 0.0, "{usage:?}");

    let (reached, usage) = push(json!({"topic": "news", "data": 1})).await;
    assert_eq!(
        (reached, usage.calls("Scan"), usage.calls("Query")),
        (2, 0, 1),
        "{usage:?}"
    );
    assert!(usage.read_units() > 0.0, "{usage:?}");

    // A connection push posts directly: no read at all.
    let (reached, usage) = push(json!({"connectionId": "c1", "data": 1})).await;
    assert_eq!((reached, usage.clone()), (1, Usage::default()), "{usage:?}");

    // The meter does see Scans: a broadcast is one Scan per segment.
    let (reached, usage) = push(json!({"data": 1})).await;
    assert_eq!((reached, usage.calls("Query")), (4, 0), "{usage:?}");
    assert!(usage.calls("Scan") >= 1, "{usage:?}");
}
