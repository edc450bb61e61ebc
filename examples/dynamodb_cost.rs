//! DynamoDB cost of one push per target kind (`scripts/bench-dynamodb-cost.sh`, BENCHMARKS.md).
//!
//! Creates a table at `AWS_ENDPOINT_URL_DYNAMODB`, loads CONNECTIONS connections (10 per user,
//! each subscribed to one of 10 topics), then pushes one SQS message to each target kind through
//! the real router (`wshub::handle`) with the DynamoDB store and a notifier that accepts every
//! post. Per push it prints the operations the store's meter counted, the read capacity the
//! endpoint reported (`ReturnConsumedCapacity`), and the read capacity DynamoDB's documented
//! rules give for the same reads, since moto reports a fixed figure per request.
//!
//! Issue 12 (streams): per push kind (a `sendmessage` too) the write requests and write units
//! with recording on (the default) and off (`HISTORY_TTL_SECONDS=0`), reported and by
//! DynamoDB's rules; the reads of a `subscribe` with `since` that missed 10 publications and of
//! a `history` page (asserted: one GetItem and one Query each, never a read per publication);
//! and the latency recording adds to a topic push (LATENCY_PUSHES pushes per mode, interleaved,
//! to a topic with 3 subscribers; median and p99).
//!
//! Usage: `dynamodb_cost [CONNECTIONS] [LATENCY_PUSHES]` (defaults 1000, a multiple of 100, and 200).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::{AttributeValue, PutRequest, WriteRequest};

use futures::stream::{self, StreamExt};
use serde_json::{json, Value};
use wshub::notify::memory::MemoryNotifier;
use wshub::store::capacity::Usage;
use wshub::store::dynamo::DynamoStore;
use wshub::store::table::{
    connection_pk, create_table, key_sk, seq_sk, stream_pk, topic_sk, BODY, CONNECTION_ID, EPOCH, HEAD, META, OWNER,
    PK, SEQ, SK, TOPIC, TTL, USER_ID,
};
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

/// Standard writes: 1 WCU per started 1 KB of each item written ("DynamoDB read and write
/// operations", capacity unit consumption for write operations: a BatchWriteItem's items are
/// rounded one by one, an UpdateItem is charged for the larger of the item before and after;
/// a transactional write costs twice). Stream items carry no index key, so no index write.
fn wcu(item_bytes: usize) -> f64 {
    item_bytes.div_ceil(1024).max(1) as f64
}

/// A stream's epoch: 8 characters (`wshub::store::stream::new_epoch`).
const EPOCH_CHARS: usize = 8;
/// A publication's `ttl`: now + HISTORY_TTL_SECONDS, 10 digits for centuries to come.
const STREAM_TTL: i64 = 1_795_245_305;

/// Write units of recording one publication by DynamoDB's rules, item by item as
/// `src/store/dynamo/streams.rs` writes them on the happy path (the head already live).
fn recording_wcu(stream: &str, seq: u64, key: Option<&str>, owner: &str, body: &str) -> f64 {
    let pk = string_attr(PK, &stream_pk(stream));
    let head = pk
        + string_attr(SK, HEAD)
        + number_attr(SEQ, seq as i64)
        + string_attr(EPOCH, &"E".repeat(EPOCH_CHARS))
        + number_attr(TTL, STREAM_TTL);
    let publication = pk
        + string_attr(SK, &seq_sk(seq))
        + string_attr(EPOCH, &"E".repeat(EPOCH_CHARS))
        + string_attr(BODY, body)
        + number_attr(TTL, STREAM_TTL);
    let mut total = wcu(head) + wcu(publication);
    if let Some(key) = key {
        let claim = pk + string_attr(SK, &key_sk(key)) + string_attr(OWNER, owner) + number_attr(TTL, STREAM_TTL);
        let kept = claim + number_attr(SEQ, seq as i64) + string_attr(EPOCH, &"E".repeat(EPOCH_CHARS));
        total += wcu(claim) + wcu(kept);
    }
    total
}

/// The stored body of a publication (`publish::Stored`): data, from, id.
fn stored_body(data: &Value, from: Option<&str>, id: &str) -> String {
    let mut body = json!({"data": data, "id": id});
    if let Some(from) = from {
        body["from"] = json!(from);
    }
    body.to_string()
}

const WRITES: [&str; 5] = [
    "PutItem",
    "UpdateItem",
    "DeleteItem",
    "BatchWriteItem",
    "TransactWriteItems",
];

fn write_requests(usage: &Usage) -> u64 {
    WRITES.iter().map(|op| usage.calls(op)).sum()
}

fn operations(usage: &Usage) -> String {
    let operations: Vec<String> = usage.0.iter().map(|(op, u)| format!("{op} ×{}", u.calls)).collect();
    if operations.is_empty() {
        "none".into()
    } else {
        operations.join(", ")
    }
}

/// A WebSocket route event from `connection` of `user`, shaped as events/sendmessage.json.
fn route_event(route: &str, connection: &str, user: &str, message_id: &str, body: Value) -> Value {
    let mut event: Value = serde_json::from_str(include_str!("../events/sendmessage.json")).expect("sample event");
    event["requestContext"]["routeKey"] = json!(route);
    event["requestContext"]["connectionId"] = json!(connection);
    event["requestContext"]["authorizer"]["principalId"] = json!(user);
    event["requestContext"]["authorizer"]["userId"] = json!(user);
    event["requestContext"]["messageId"] = json!(message_id);
    event["body"] = json!(body.to_string());
    event
}

/// The reply frame of a route response.
fn reply(response: &Value) -> Result<Value, Box<dyn std::error::Error>> {
    let body = response["body"]
        .as_str()
        .ok_or_else(|| format!("no reply body: {response}"))?;
    let frame: Value = serde_json::from_str(body)?;
    if response["statusCode"] != 200 || frame["type"] == "error" {
        return Err(format!("route failed: {response}").into());
    }
    Ok(frame)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
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
    let latency_pushes: usize = std::env::args().nth(2).map(|a| a.parse()).transpose()?.unwrap_or(200);
    if latency_pushes == 0 {
        return Err("LATENCY_PUSHES must be positive".into());
    }
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
    // Recording on (the default HISTORY_TTL_SECONDS) and off, over the same table.
    let hub_with = |history_ttl: Option<&str>| -> Result<Hub, Box<dyn std::error::Error>> {
        let config = Config::from_lookup(|name| match name {
            "CONNECTIONS_TABLE" => Some(table.clone()),
            // Never reached: the notifier records posts instead of sending them.
            "APIGW_MANAGEMENT_ENDPOINT" => Some("http://127.0.0.1:9/prod".into()),
            "AUTH_TOKENS" => Some("bench-token".into()),
            "HISTORY_TTL_SECONDS" => history_ttl.map(str::to_owned),
            _ => None,
        })?;
        Ok(Hub::new(config, store.clone(), notifier.clone()))
    };
    let (hub_on, hub_off) = (hub_with(None)?, hub_with(Some("0"))?);

    let user = user_of(0);
    let topic = topic_of(0);
    let sender = connection_id(0);
    let in_user: Vec<usize> = (0..n).filter(|&i| user_of(i) == user).collect();
    let in_topic: Vec<usize> = (0..n).filter(|&i| topic_of(i) == topic).collect();
    // Segments split the index by hash: modelled as equal shares, each its own request.
    let per_segment = n.div_ceil(SCAN_SEGMENTS);
    let broadcast_model: f64 = (0..n)
        .collect::<Vec<_>>()
        .chunks(per_segment)
        .map(|segment| paged_rcu(segment.iter().map(|&i| by_user_entry(i))))
        .sum();
    let user_model = paged_rcu(in_user.iter().map(|&i| by_user_entry(i)));
    let topic_model = paged_rcu(in_topic.iter().map(|&i| by_topic_entry(i)));

    println!("{n} connections, {PER_USER} per user, each subscribed to one of {TOPICS} topics; table {table}");
    println!();

    // The first publication on a stream also creates its head (a failed conditional
    // UpdateItem, then a PutItem): done here so the rows below show the steady state.
    let mut first = Usage::default();
    for (id, body) in [
        ("bench-first-topic", json!({"topic": topic, "data": {"n": 0}})),
        ("bench-first-user", json!({"userId": user, "data": {"n": 0}})),
    ] {
        let before = store.capacity().usage();
        push(&hub_on, id, body).await?;
        if id == "bench-first-topic" {
            first = store.capacity().usage().since(&before);
        }
    }

    let data = json!({"n": 1});
    let mut reads = Vec::new();
    let mut writes = Vec::new();
    let mut scans_in_targeted = 0;
    for (mode, hub) in [("on", &hub_on), ("off", &hub_off)] {
        let kinds = [
            (
                "connection",
                Some(json!({"connectionId": connection_id(1), "data": data})),
                0.0,
                None,
            ),
            (
                "user",
                Some(json!({"userId": user, "data": data})),
                user_model,
                Some(format!("user:{user}")),
            ),
            (
                "topic",
                Some(json!({"topic": topic, "data": data})),
                topic_model,
                Some(topic.clone()),
            ),
            ("sendmessage", None, topic_model, Some(topic.clone())),
            ("broadcast", Some(json!({"data": data})), broadcast_model, None),
        ];
        for (kind, body, read_model, stream) in kinds {
            let id = format!("bench-{mode}-{kind}");
            let (before, sent_before) = (store.capacity().usage(), notifier.sent().len());
            let from = match body {
                Some(body) => {
                    push(hub, &id, body).await?;
                    None
                }
                None => {
                    let body = json!({"action": "sendmessage", "topic": topic, "data": data});
                    reply(&wshub::handle(hub, route_event("sendmessage", &sender, &user, &id, body), None).await?)?;
                    Some(user.as_str())
                }
            };
            let usage = store.capacity().usage().since(&before);
            let delivered = notifier.sent().len() - sent_before;
            if kind != "broadcast" {
                scans_in_targeted += usage.calls("Scan");
            }
            // A client's `sendmessage` also takes a token from its send bucket
            // (`SEND_RATE_PER_SECOND`): one conditional UpdateItem of its own connection row
            // (under 1 KB: 1 WCU), whether or not the stream records.
            let bucket = u64::from(from.is_some());
            let write_model = bucket as f64
                + match (&stream, mode) {
                    (Some(stream), "on") => {
                        // A backend push's key is its SQS messageId; a client's sendmessage has none.
                        let key = from.is_none().then_some(id.as_str());
                        recording_wcu(stream, 2, key, &id, &stored_body(&data, from, &id))
                    }
                    _ => 0.0,
                };
            let requests = write_requests(&usage);
            // At most three write requests per publication, nothing per recipient, and none at
            // all without a stream or with recording off (the send bucket aside).
            let allowed = bucket + if mode == "on" && stream.is_some() { 3 } else { 0 };
            if requests > allowed {
                return Err(
                    format!("{kind} push with recording {mode} made {requests} write requests: {usage:?}").into(),
                );
            }
            if mode == "on" {
                reads.push((kind, delivered, usage.clone(), read_model));
            }
            writes.push((kind, mode, usage, requests, write_model));
        }
    }

    println!("Reads per push (recording on; recording does not read on the happy path):");
    println!();
    println!(
        "| target | delivered | operations | RCU reported | per delivered | RCU by DynamoDB's rules | per delivered |"
    );
    println!("|---|---|---|---|---|---|---|");
    for (kind, delivered, usage, model) in &reads {
        println!(
            "| {kind} | {delivered} | {} | {:.1} | {:.4} | {model:.1} | {:.4} |",
            operations(usage),
            usage.read_units(),
            usage.read_units() / (*delivered).max(1) as f64,
            model / (*delivered).max(1) as f64
        );
    }
    println!();
    println!("Writes per push, recording on (default HISTORY_TTL_SECONDS) and off (HISTORY_TTL_SECONDS=0):");
    println!();
    println!("| target | recording | write operations | write requests | WCU reported | WCU by DynamoDB's rules |");
    println!("|---|---|---|---|---|---|");
    for (kind, mode, usage, requests, model) in &writes {
        let written: Usage = Usage(
            usage
                .0
                .iter()
                .filter(|(op, _)| WRITES.contains(&op.as_str()))
                .map(|(op, u)| (op.clone(), *u))
                .collect(),
        );
        println!(
            "| {kind} | {mode} | {} | {requests} | {:.1} | {model:.1} |",
            operations(&written),
            usage.write_units()
        );
    }
    println!();
    println!(
        "first publication on a stream (creates the head): {} ({} write requests)",
        operations(&first),
        write_requests(&first)
    );
    println!(
        "index entry sizes by DynamoDB's rules: byUser {} B, byTopic {} B",
        by_user_entry(0),
        by_topic_entry(0)
    );
    if scans_in_targeted > 0 {
        return Err(format!("targeted pushes issued {scans_in_targeted} Scan calls").into());
    }

    // Recovery: a subscriber at `pos` misses 10 publications, then subscribes with `since`
    // and reads the same page with `history`.
    let subscribed = reply(
        &wshub::handle(
            &hub_on,
            route_event(
                "subscribe",
                &sender,
                &user,
                "bench-sub-0",
                json!({"action": "subscribe", "topic": topic}),
            ),
            None,
        )
        .await?,
    )?;
    let since = json!({"seq": subscribed["seq"], "epoch": subscribed["epoch"]});
    let mut missed_bytes = Vec::new();
    for i in 0..10 {
        let (id, data) = (format!("bench-missed-{i}"), json!({"n": i}));
        missed_bytes.push(
            string_attr(PK, &stream_pk(&topic))
                + string_attr(SK, &seq_sk(0))
                + string_attr(EPOCH, &"E".repeat(EPOCH_CHARS))
                + string_attr(BODY, &stored_body(&data, None, &id))
                + number_attr(TTL, STREAM_TTL),
        );
        push(&hub_on, &id, json!({"topic": topic, "data": data})).await?;
    }
    // Consistent reads: 1 RCU per started 4 KB; a Query is charged on the sum of its items.
    let head_rcu = 1.0;
    let page_rcu = missed_bytes.iter().sum::<usize>().div_ceil(4096).max(1) as f64;
    println!();
    println!("Reads of a recovery after 10 missed publications (recording on):");
    println!();
    println!("| request | returned | operations | read requests | RCU reported | RCU by DynamoDB's rules |");
    println!("|---|---|---|---|---|---|");
    let requests = [
        (
            "subscribe with since",
            "subscribe",
            json!({"action": "subscribe", "topic": topic, "since": since}),
        ),
        (
            "history page (limit 10)",
            "history",
            json!({"action": "history", "topic": topic, "since": since, "limit": 10}),
        ),
    ];
    for (name, route, body) in requests {
        let before = store.capacity().usage();
        let frame = reply(
            &wshub::handle(
                &hub_on,
                route_event(route, &sender, &user, &format!("bench-{route}"), body),
                None,
            )
            .await?,
        )?;
        let usage = store.capacity().usage().since(&before);
        let returned = frame["messages"].as_array().map_or(0, Vec::len);
        if frame["recovered"] != true || returned != 10 {
            return Err(format!("{name}: expected 10 recovered messages, got {frame}").into());
        }
        let read_requests =
            usage.calls("GetItem") + usage.calls("Query") + usage.calls("Scan") + usage.calls("BatchGetItem");
        // One GetItem of the head and one Query of the page, never a read per publication.
        if (usage.calls("GetItem"), usage.calls("Query"), read_requests) != (1, 1, 2) {
            return Err(format!("{name} read more than one GetItem and one Query: {usage:?}").into());
        }
        println!(
            "| {name} | {returned} | {} | {read_requests} | {:.1} | {:.1} |",
            operations(&usage),
            usage.read_units(),
            head_rcu + page_rcu
        );
    }

    // Latency recording adds to a topic push with 3 subscribers, both modes interleaved so
    // drift in the machine's load falls on both alike.
    let latency_topic = "bench-latency";
    let subscriptions = (0..3)
        .map(|i| {
            let item = HashMap::from([
                (PK.to_owned(), AttributeValue::S(connection_pk(&connection_id(i)))),
                (SK.to_owned(), AttributeValue::S(topic_sk(latency_topic))),
                (CONNECTION_ID.to_owned(), AttributeValue::S(connection_id(i))),
                (TOPIC.to_owned(), AttributeValue::S(latency_topic.to_owned())),
                (TTL.to_owned(), AttributeValue::N(TTL_VALUE.to_string())),
            ]);
            let put = PutRequest::builder().set_item(Some(item)).build()?;
            Ok(WriteRequest::builder().put_request(put).build())
        })
        .collect::<Result<Vec<_>, aws_sdk_dynamodb::error::BuildError>>()?;
    store
        .client()
        .batch_write_item()
        .request_items(&table, subscriptions)
        .send()
        .await?;
    let hubs = [("on", &hub_on), ("off", &hub_off)];
    let mut times: [Vec<Duration>; 2] = [Vec::new(), Vec::new()];
    for i in 0..latency_pushes + 5 {
        for k in 0..2 {
            let which = (i + k) % 2;
            let (mode, hub) = hubs[which];
            let sent_before = notifier.sent().len();
            let started = Instant::now();
            push(
                hub,
                &format!("bench-latency-{mode}-{i}"),
                json!({"topic": latency_topic, "data": {"n": i}}),
            )
            .await?;
            let took = started.elapsed();
            if notifier.sent().len() - sent_before != 3 {
                return Err("a latency push did not reach its 3 subscribers".into());
            }
            // The first 5 of each mode warm up (the head, the connection pool).
            if i >= 5 {
                times[which].push(took);
            }
        }
    }
    println!();
    println!(
        "Latency of a topic push to 3 subscribers through the router, {latency_pushes} per mode (debug build, moto):"
    );
    println!();
    println!("| recording | median ms | p99 ms | mean ms |");
    println!("|---|---|---|---|");
    let mut medians = [Duration::ZERO; 2];
    for (which, (mode, _)) in hubs.iter().enumerate() {
        let sorted = &mut times[which];
        sorted.sort();
        medians[which] = percentile(sorted, 50.0);
        let mean = sorted.iter().sum::<Duration>() / sorted.len() as u32;
        println!(
            "| {mode} | {:.2} | {:.2} | {:.2} |",
            ms(medians[which]),
            ms(percentile(sorted, 99.0)),
            ms(mean)
        );
    }
    println!();
    println!(
        "added by recording (median on - median off): {:.2} ms",
        ms(medians[0]) - ms(medians[1])
    );
    Ok(())
}

/// One SQS record through the router; fails unless it was delivered completely.
async fn push(hub: &Hub, id: &str, body: Value) -> Result<(), Box<dyn std::error::Error>> {
    let response = wshub::handle(hub, sqs_event(id, body.clone()), None).await?;
    if response["batchItemFailures"] != json!([]) {
        return Err(format!("push {body} failed: {response}").into());
    }
    Ok(())
}
