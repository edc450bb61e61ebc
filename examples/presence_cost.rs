//! DynamoDB cost of topic presence (`scripts/bench-presence-cost.sh`, BENCHMARKS.md): a join, a
//! leave, a `presence` read and a page of the online list, through the real router
//! (`wshub::handle`) with the DynamoDB store and a notifier that accepts every post.
//!
//! Creates a table at `AWS_ENDPOINT_URL_DYNAMODB`, connects USERS users with two connections
//! each, subscribes every user's first connection to the presence topic `room:1` (a room of
//! USERS), then measures each step with the store's meter (calls per operation, read capacity
//! the endpoint reported), and prints the read capacity DynamoDB's documented rules give for
//! the index reads, since moto reports a fixed figure per request.
//!
//! Usage: `presence_cost [USERS]` (default 100).

use std::sync::Arc;

use serde_json::{json, Value};
use wshub::notify::memory::MemoryNotifier;
use wshub::store::capacity::Usage;
use wshub::store::dynamo::DynamoStore;
use wshub::store::table::{
    connection_pk, create_table, member, topic_sk, CONNECTION_ID, META, PK, SK, TOPIC, TTL, USER_ID,
};
use wshub::{Config, Hub};

const ROOM: &str = "room:1";

fn event(name: &str) -> Value {
    let path = format!("{}/events/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(path).expect("events/ sample")).expect("JSON")
}

fn connection_id(user: usize, k: usize) -> String {
    // API Gateway's ids are 16 characters.
    format!("Conn{user:09}-{k}=")
}

fn user_of(user: usize) -> String {
    format!("user-{user:05}")
}

fn route(name: &str, connection: &str, user: &str, body: Option<Value>) -> Value {
    let mut e = event(name);
    e["requestContext"]["connectionId"] = json!(connection);
    e["requestContext"]["authorizer"]["userId"] = json!(user);
    if let Some(body) = body {
        e["body"] = json!(body.to_string());
    }
    e
}

/// DynamoDB's item-size rules: a string is its name plus its UTF-8 bytes, a number its name
/// plus one byte per two significant digits plus one.
fn string_attr(name: &str, value: &str) -> usize {
    name.len() + value.len()
}

fn number_attr(name: &str, value: i64) -> usize {
    let digits = value.unsigned_abs().to_string();
    let significant = digits.trim_end_matches('0').len().max(1);
    name.len() + significant.div_ceil(2) + 1
}

/// A `byMember` entry: the table key, the index key and the projected `ttl`.
fn by_member_entry(user: usize, ttl: i64) -> usize {
    let c = connection_id(user, 0);
    string_attr(PK, &connection_pk(&c))
        + string_attr(SK, &topic_sk(ROOM))
        + string_attr(TOPIC, ROOM)
        + string_attr("member", &member(&user_of(user), &c))
        + number_attr(TTL, ttl)
}

/// A `byUser` entry.
fn by_user_entry(user: usize, k: usize, ttl: i64) -> usize {
    let c = connection_id(user, k);
    string_attr(PK, &connection_pk(&c))
        + string_attr(SK, META)
        + string_attr(USER_ID, &user_of(user))
        + string_attr(CONNECTION_ID, &c)
        + number_attr(TTL, ttl)
}

/// GSI reads are eventually consistent: 0.5 RCU per started 4 KB of one response, at least 0.5.
fn eventually_consistent_rcu(bytes: usize) -> f64 {
    0.5 * bytes.div_ceil(4096).max(1) as f64
}

fn operations(usage: &Usage) -> String {
    let ops: Vec<String> = usage.0.iter().map(|(op, u)| format!("{op} ×{}", u.calls)).collect();
    if ops.is_empty() {
        "none".into()
    } else {
        ops.join(", ")
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let users: usize = std::env::args().nth(1).map(|a| a.parse()).transpose()?.unwrap_or(100);
    if users < 2 {
        return Err("USERS must be at least 2".into());
    }
    if std::env::var("AWS_ENDPOINT_URL_DYNAMODB").is_err() {
        return Err("set AWS_ENDPOINT_URL_DYNAMODB (scripts/bench-presence-cost.sh starts moto and does)".into());
    }
    let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let table = format!("wshub-bench-{:016x}", fastrand::u64(..));
    let client = wshub::store::dynamo::client(&sdk);
    create_table(&client, &table).await?;
    let store = Arc::new(DynamoStore::new(client, table.clone()));
    let notifier = Arc::new(MemoryNotifier::new());
    let config = Config::from_lookup(|name| match name {
        "CONNECTIONS_TABLE" => Some(table.clone()),
        // Never reached: the notifier records posts instead of sending them.
        "APIGW_MANAGEMENT_ENDPOINT" => Some("http://127.0.0.1:9/prod".into()),
        "AUTH_TOKENS" => Some("bench-token".into()),
        "PRESENCE_TOPICS" => Some("room:*".into()),
        _ => None,
    })?;
    let ttl = Config::from_lookup(|name| (name == "CONNECTIONS_TABLE").then(|| "t".to_owned()))?
        .connection_ttl
        .as_secs() as i64;
    let hub = Hub::new(config, store.clone(), notifier.clone());
    let send = |e: Value| {
        let hub = &hub;
        async move {
            let response = wshub::handle(hub, e, None).await?;
            if response["statusCode"] != 200 || response["body"].as_str().is_some_and(|b| b.contains("\"error\"")) {
                return Err(format!("route failed: {response}").into());
            }
            Ok::<Value, Box<dyn std::error::Error>>(response)
        }
    };
    let subscribe = json!({"action": "subscribe", "topic": ROOM});
    let unsubscribe = json!({"action": "unsubscribe", "topic": ROOM});
    // Everyone but the last user is in the room already; the last user is connected, not in it.
    for u in 0..users {
        for k in 0..2 {
            send(route("connect.json", &connection_id(u, k), &user_of(u), None)).await?;
        }
        if u + 1 < users {
            send(route(
                "ping.json",
                &connection_id(u, 0),
                &user_of(u),
                Some(subscribe.clone()),
            ))
            .await?;
        }
    }
    let last = users - 1;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs() as i64;
    let row_ttl = now + ttl;
    let member_bytes: usize = (0..users).map(|u| by_member_entry(u, row_ttl)).sum();
    let user_bytes: usize = (0..users)
        .flat_map(|u| [0, 1].map(|k| by_user_entry(u, k, row_ttl)))
        .sum();

    println!("a room of {users} users (room:1), each with 2 connections, 1 subscribed; table {table}");
    println!();
    println!("| step | posts | operations | RCU moto reports | WCU moto reports | index RCU by DynamoDB's rules |");
    println!("|---|---|---|---|---|---|");
    let steps: Vec<(&str, Value, String)> = vec![
        (
            "join: a user's first connection subscribes (subscribe route, whole)",
            route(
                "ping.json",
                &connection_id(last, 0),
                &user_of(last),
                Some(subscribe.clone()),
            ),
            format!(
                "byMember Query 0.5, byTopic Query {:.1}",
                eventually_consistent_rcu(member_bytes + 1)
            ),
        ),
        (
            "their second connection subscribes (no join)",
            route(
                "ping.json",
                &connection_id(last, 1),
                &user_of(last),
                Some(subscribe.clone()),
            ),
            "byMember Query 0.5".into(),
        ),
        (
            "presence read",
            route(
                "ping.json",
                &connection_id(0, 0),
                &user_of(0),
                Some(json!({"action": "presence", "topic": ROOM})),
            ),
            format!(
                "byMember Query {:.1} ({member_bytes} B)",
                eventually_consistent_rcu(member_bytes)
            ),
        ),
        (
            "unsubscribe, another connection stays (no leave)",
            route(
                "ping.json",
                &connection_id(last, 1),
                &user_of(last),
                Some(unsubscribe.clone()),
            ),
            "byMember Query 0.5".into(),
        ),
        (
            "leave: the last connection unsubscribes",
            route(
                "ping.json",
                &connection_id(last, 0),
                &user_of(last),
                Some(unsubscribe.clone()),
            ),
            format!(
                "byMember Query 0.5, byTopic Query {:.1}",
                eventually_consistent_rcu(member_bytes)
            ),
        ),
        (
            "leave: the last connection disconnects ($disconnect, whole)",
            route("disconnect.json", &connection_id(0, 0), &user_of(0), None),
            format!(
                "byMember Query 0.5, byTopic Query {:.1}",
                eventually_consistent_rcu(member_bytes)
            ),
        ),
    ];
    for (name, e, model) in steps {
        let (before, sent_before) = (store.capacity().usage(), notifier.sent().len());
        send(e).await?;
        let usage = store.capacity().usage().since(&before);
        let posts = notifier.sent().len() - sent_before;
        println!(
            "| {name} | {posts} | {} | {:.1} | {:.1} | {model} |",
            operations(&usage),
            usage.read_units(),
            usage.write_units()
        );
    }
    // A page of the online list: every user (one left the room but is still connected).
    let before = store.capacity().usage();
    let page = wshub::store::ConnectionStore::online_users(store.as_ref(), &Default::default(), 100, now).await?;
    let usage = store.capacity().usage().since(&before);
    let listed = page.users.len();
    let page_users = listed.min(100);
    let page_bytes: usize = (0..users)
        .take(page_users)
        .flat_map(|u| [0, 1].map(|k| by_user_entry(u, k, row_ttl)))
        .sum();
    println!(
        "| a page of the online list (limit 100; {listed} users) | 0 | {} | {:.1} | {:.1} | byUser Scan {:.1} ({page_bytes} B; one Query of byUser more, 0.5, when a Scan page ends inside the last user), BatchGetItem {:.1} |",
        operations(&usage),
        usage.read_units(),
        usage.write_units(),
        eventually_consistent_rcu(page_bytes),
        // BatchGetItem of the users' presence items: eventually consistent, 0.5 RCU per item (each < 4 KB).
        0.5 * page_users as f64
    );
    println!();
    println!(
        "entry sizes by DynamoDB's rules: byMember {} B, byUser {} B; all {users} byUser entries {user_bytes} B",
        by_member_entry(0, row_ttl),
        by_user_entry(0, 0, row_ttl)
    );
    Ok(())
}
