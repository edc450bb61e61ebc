//! DynamoDB cost of one push per target kind (`scripts/bench-dynamodb-cost.sh`, BENCHMARKS.md).
//!
//! Creates a table at `AWS_ENDPOINT_URL_DYNAMODB`, loads CONNECTIONS connections (10 per user,
//! each subscribed to one of 10 topics), then pushes one SQS message to each target kind through
//! the real router (`wshub::handle`) with the DynamoDB store and a notifier that accepts every
//! post. Per push it prints the operations the store's meter counted, the read capacity the
//! endpoint reported (`ReturnConsumedCapacity`), and the read capacity DynamoDB's documented
//! rules give for the same reads, since moto reports a fixed figure per request.
//!
//! Usage: `dynamodb_cost [CONNECTIONS]` (default 1000, a multiple of 100).

use std::collections::HashMap;
use std::sync::Arc;

use aws_sdk_dynamodb::types::{AttributeValue, PutRequest, WriteRequest};

use futures::stream::{self, StreamExt};
use serde_json::{json, Value};
use wshub::notify::memory::MemoryNotifier;
use wshub::store::dynamo::DynamoStore;
use wshub::store::table::{connection_pk, create_table, topic_sk, CONNECTION_ID, META, PK, SK, TOPIC, TTL, USER_ID};
use wshub::store::{Connection, ConnectionStore};
use wshub::{Config, Hub};

const TTL_VALUE: i64 = 4_102_444_800;
const PER_USER: usize = 10;
const TOPICS: usize = 10;
/// Parallel Scan segments of a broadcast (DynamoStore's default).
const SCAN_SEGMENTS: usize = 4;

fn connection_id(i: usize) -> String {
    // API Gateway's ids are 16 characters.
    format!("Conn{i:011}=")
}

fn user_of(i: usize) -> String {
    format!("user-{:05}", i / PER_USER)
}

fn topic_of(i: usize) -> String {
    format!("topic-{}", i % TOPICS)
}

/// DynamoDB's item-size rules: a string is its name plus its UTF-8 bytes; a number its name
/// plus one byte per two significant digits plus one.
fn string_attr(name: &str, value: &str) -> usize {
    name.len() + value.len()
}

fn number_attr(name: &str, value: i64) -> usize {
    let digits = value.unsigned_abs().to_string();
    let significant = digits.trim_end_matches('0').len().max(1);
    name.len() + significant.div_ceil(2) + 1
}

/// An index entry holds the table key, the index key and the projected `ttl`; a read is
/// charged for all of it, whatever the ProjectionExpression keeps.
fn by_user_entry(i: usize) -> usize {
    string_attr(PK, &connection_pk(&connection_id(i)))
        + string_attr(SK, META)
        + string_attr(USER_ID, &user_of(i))
        + string_attr(CONNECTION_ID, &connection_id(i))
        + number_attr(TTL, TTL_VALUE)
}

fn by_topic_entry(i: usize) -> usize {
    string_attr(PK, &connection_pk(&connection_id(i)))
        + string_attr(SK, &topic_sk(&topic_of(i)))
        + string_attr(TOPIC, &topic_of(i))
        + string_attr(CONNECTION_ID, &connection_id(i))
        + number_attr(TTL, TTL_VALUE)
}

/// GSI reads are eventually consistent: 0.5 RCU per started 4 KB of one response (a page of
/// at most 1 MB), and at least 0.5 per request.
fn eventually_consistent_rcu(bytes: usize) -> f64 {
    0.5 * bytes.div_ceil(4096).max(1) as f64
}

fn paged_rcu(entry_sizes: impl Iterator<Item = usize>) -> f64 {
    let mut total = 0.0;
    let mut page = 0;
    for size in entry_sizes {
        if page + size > 1024 * 1024 {
            total += eventually_consistent_rcu(page);
            page = 0;
        }
        page += size;
    }
    total + eventually_consistent_rcu(page)
}

fn sqs_event(message_id: &str, body: Value) -> Value {
    json!({"Records": [{
        "messageId": message_id, "receiptHandle": "AQEB", "body": body.to_string(),
        "attributes": {"ApproximateReceiveCount": "1"}, "messageAttributes": {}, "md5OfBody": "",
        "eventSource": "aws:sqs", "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:wshub-push",
        "awsRegion": "us-east-1"
    }]})
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let n: usize = std::env::args().nth(1).map(|a| a.parse()).transpose()?.unwrap_or(1000);
    if n == 0 || !n.is_multiple_of(PER_USER * TOPICS) {
        return Err("CONNECTIONS must be a positive multiple of 100".into());
    }
    if std::env::var("AWS_ENDPOINT_URL_DYNAMODB").is_err() {
        return Err("set AWS_ENDPOINT_URL_DYNAMODB (scripts/bench-dynamodb-cost.sh starts moto and does)".into());
    }
    let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let table = format!("wshub-bench-{:016x}", fastrand::u64(..));
    let client = wshub::store::dynamo::client(&sdk);
    create_table(&client, &table).await?;
    let store = Arc::new(DynamoStore::new(client, table.clone()));

    let puts: Vec<Result<(), wshub::store::StoreError>> = stream::iter(0..n)
        .map(|i| {
            let store = store.clone();
            async move {
                let connection = Connection {
                    connection_id: connection_id(i),
                    user_id: user_of(i),
                    connected_at: 1_795_244_400_000,
                    source_ip: Some("203.0.113.10".into()),
                    path: None,
                    ttl: TTL_VALUE,
                };
                store.put_connection(&connection).await
            }
        })
        .buffer_unordered(8)
        .collect()
        .await;
    puts.into_iter().collect::<Result<Vec<()>, _>>()?;
    // Subscriptions are written in batches, shaped as `subscribe` writes them: its transaction
    // makes moto copy every table per call, which takes minutes at this size.
    for chunk in (0..n).collect::<Vec<_>>().chunks(25) {
        let writes = chunk
            .iter()
            .map(|&i| {
                let item = HashMap::from([
                    (PK.to_owned(), AttributeValue::S(connection_pk(&connection_id(i)))),
                    (SK.to_owned(), AttributeValue::S(topic_sk(&topic_of(i)))),
                    (CONNECTION_ID.to_owned(), AttributeValue::S(connection_id(i))),
                    (TOPIC.to_owned(), AttributeValue::S(topic_of(i))),
                    (TTL.to_owned(), AttributeValue::N(TTL_VALUE.to_string())),
                ]);
                let put = PutRequest::builder().set_item(Some(item)).build()?;
                Ok(WriteRequest::builder().put_request(put).build())
            })
            .collect::<Result<Vec<_>, aws_sdk_dynamodb::error::BuildError>>()?;
        let out = store
            .client()
            .batch_write_item()
            .request_items(&table, writes)
            .send()
            .await?;
        if out.unprocessed_items.is_some_and(|u| !u.is_empty()) {
            return Err("moto left subscription writes unprocessed".into());
        }
    }

    let notifier = Arc::new(MemoryNotifier::new());
    let config = Config::from_lookup(|name| match name {
        "CONNECTIONS_TABLE" => Some(table.clone()),
        // Never reached: the notifier records posts instead of sending them.
        "APIGW_MANAGEMENT_ENDPOINT" => Some("http://127.0.0.1:9/prod".into()),
        "AUTH_TOKENS" => Some("bench-token".into()),
        _ => None,
    })?;
    let hub = Hub::new(config, store.clone(), notifier.clone());

    let user = user_of(0);
    let topic = topic_of(0);
    let in_user: Vec<usize> = (0..n).filter(|&i| user_of(i) == user).collect();
    let in_topic: Vec<usize> = (0..n).filter(|&i| topic_of(i) == topic).collect();
    // Segments split the index by hash: modelled as equal shares, each its own request.
    let per_segment = n.div_ceil(SCAN_SEGMENTS);
    let broadcast_model: f64 = (0..n)
        .collect::<Vec<_>>()
        .chunks(per_segment)
        .map(|segment| paged_rcu(segment.iter().map(|&i| by_user_entry(i))))
        .sum();
    let pushes = [
        (
            "connection",
            json!({"connectionId": connection_id(0), "data": {"n": 1}}),
            0.0,
        ),
        (
            "user",
            json!({"userId": user, "data": {"n": 1}}),
            paged_rcu(in_user.iter().map(|&i| by_user_entry(i))),
        ),
        (
            "topic",
            json!({"topic": topic, "data": {"n": 1}}),
            paged_rcu(in_topic.iter().map(|&i| by_topic_entry(i))),
        ),
        ("broadcast", json!({"data": {"n": 1}}), broadcast_model),
    ];

    println!("{n} connections, {PER_USER} per user, each subscribed to one of {TOPICS} topics; table {table}");
    println!();
    println!(
        "| target | delivered | operations | RCU reported | per delivered | RCU by DynamoDB's rules | per delivered |"
    );
    println!("|---|---|---|---|---|---|---|");
    let mut scans_in_targeted = 0;
    for (kind, body, model) in pushes {
        let (before, sent_before) = (store.capacity().usage(), notifier.sent().len());
        let response = wshub::handle(&hub, sqs_event(&format!("bench-{kind}"), body), None).await?;
        if response["batchItemFailures"] != json!([]) {
            return Err(format!("{kind} push failed: {response}").into());
        }
        let usage = store.capacity().usage().since(&before);
        let delivered = notifier.sent().len() - sent_before;
        if kind != "broadcast" {
            scans_in_targeted += usage.calls("Scan");
        }
        let operations: Vec<String> = usage.0.iter().map(|(op, u)| format!("{op} ×{}", u.calls)).collect();
        let operations = if operations.is_empty() {
            "none".into()
        } else {
            operations.join(", ")
        };
        println!(
            "| {kind} | {delivered} | {operations} | {:.1} | {:.4} | {model:.1} | {:.4} |",
            usage.read_units(),
            usage.read_units() / delivered.max(1) as f64,
            model / delivered.max(1) as f64
        );
    }
    println!();
    println!(
        "index entry sizes by DynamoDB's rules: byUser {} B, byTopic {} B",
        by_user_entry(0),
        by_topic_entry(0)
    );
    if scans_in_targeted > 0 {
        return Err(format!("targeted pushes issued {scans_in_targeted} Scan calls").into());
    }
    Ok(())
}
