//! Fan-out benchmarks (BENCHMARKS.md, issue 5 items 3 and 4). The release `wshub` binary runs
//! as Lambda runs it, behind a fake Lambda Runtime API served here; DynamoDB (and SQS) are a
//! moto server; the @connections endpoint is played here with a fixed latency and a token-bucket
//! rate limit that answers 429 above R posts per second. Every accepted post is counted per
//! connection id, so losses and duplicates show. Prints one JSON line per measurement.
//!
//! `scripts/bench-fanout.sh` starts moto, builds the binary and this example, and runs both
//! modes. The Runtime API is `tests/common/runtime_api.rs`, the one the tests drive the binary
//! through.
//! - `single`: one invocation broadcasts to N connections (no queue): wall time against the
//!   bound max(N·L/C, N/R), delivered, 429s, the binary's peak RSS (`VmHWM`).
//! - `sharded`: one broadcast with `PUSH_QUEUE_URL` set, its shard jobs in an SQS queue (moto),
//!   played as Lambda's SQS event source with at most M invocations at once over M binaries,
//!   each invocation given a short deadline so jobs hand work on; delivered rate against R.

#[path = "../tests/common/runtime_api.rs"]
mod runtime_api;

use std::collections::HashMap;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_dynamodb::types::{AttributeValue, PutRequest, WriteRequest};
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use clap::{Parser, Subcommand};
use futures::StreamExt;
use runtime_api::RuntimeApi;
use serde_json::{json, Value};
use tokio::sync::Semaphore;
use tokio::time::Instant;

#[derive(Parser)]
struct Args {
    #[command(subcommand)]
    mode: Mode,
    /// The Lambda binary.
    #[arg(long, default_value = "target/release/wshub")]
    binary: String,
    /// Latency of every accepted post (L), in milliseconds.
    #[arg(long, default_value_t = 20)]
    latency_ms: u64,
    /// Posts per second the endpoint accepts (R); above it, 429.
    #[arg(long, default_value_t = 10_000.0)]
    rate: f64,
    /// Token-bucket depth, in seconds of R.
    #[arg(long, default_value_t = 0.05)]
    burst_seconds: f64,
    /// Where the connection rows live: `moto` (AWS_ENDPOINT_URL_DYNAMODB), or `wire`: this
    /// harness answers the function's Scans itself over the DynamoDB JSON protocol, from memory.
    /// moto re-sorts the whole index on every Scan call (seconds per page at 10k rows here).
    #[arg(long, default_value = "wire")]
    store: String,
}

#[derive(Subcommand)]
enum Mode {
    /// Item 3: one invocation, no queue.
    Single {
        #[arg(long, value_delimiter = ',', default_value = "1000,10000,50000")]
        n: Vec<usize>,
        /// PUSH_CONCURRENCY (C).
        #[arg(long, default_value_t = 64)]
        concurrency: usize,
    },
    /// Item 4: sharded over M concurrent invocations.
    Sharded {
        #[arg(long, default_value_t = 20_000)]
        n: usize,
        #[arg(long, value_delimiter = ',', default_value = "1,2,4,8,16")]
        m: Vec<usize>,
        /// PUSH_CONCURRENCY of each invocation.
        #[arg(long, default_value_t = 8)]
        concurrency: usize,
        /// SHARD_THRESHOLD.
        #[arg(long, default_value_t = 2000)]
        threshold: usize,
        /// Each invocation's deadline (the binary keeps 1 s of it as margin, and 3 s for a shard
        /// hand-off). 10 s, the template's shortest `Timeout`: with less than the hand-off's
        /// budget a job can only pass its cursor on, and the chain never delivers.
        #[arg(long, default_value_t = 10_000)]
        deadline_ms: u64,
        /// SQS records per invocation (the event source's BatchSize).
        #[arg(long, default_value_t = 1)]
        batch: i32,
    },
}

// ---------------------------------------------------------------- fake @connections endpoint

struct Bucket {
    tokens: f64,
    last: Instant,
}

struct Endpoint {
    latency: Duration,
    rate: f64,
    burst: f64,
    bucket: Mutex<Bucket>,
    /// Accepted posts per connection id.
    counts: Mutex<HashMap<String, u32>>,
    unique: AtomicUsize,
    accepted: AtomicU64,
    throttled: AtomicU64,
    /// When the last connection got its first frame.
    last_new: Mutex<Option<Instant>>,
    /// When the first post arrived (the listing's first page came before it).
    first_post: Mutex<Option<Instant>>,
}

impl Endpoint {
    fn reset(&self) {
        self.counts.lock().unwrap().clear();
        self.unique.store(0, Ordering::SeqCst);
        self.accepted.store(0, Ordering::SeqCst);
        self.throttled.store(0, Ordering::SeqCst);
        *self.last_new.lock().unwrap() = None;
        *self.first_post.lock().unwrap() = None;
    }

    fn take_token(&self) -> bool {
        let mut b = self.bucket.lock().unwrap();
        let now = Instant::now();
        b.tokens = (b.tokens + now.duration_since(b.last).as_secs_f64() * self.rate).min(self.burst);
        b.last = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// (distinct ids, ids received more than once)
    fn tally(&self) -> (usize, usize) {
        let counts = self.counts.lock().unwrap();
        (counts.len(), counts.values().filter(|n| **n > 1).count())
    }
}

async fn post_to_connection(State(ep): State<Arc<Endpoint>>, Path((_stage, id)): Path<(String, String)>) -> Response {
    ep.first_post.lock().unwrap().get_or_insert_with(Instant::now);
    if !ep.take_token() {
        ep.throttled.fetch_add(1, Ordering::Relaxed);
        return (
            StatusCode::TOO_MANY_REQUESTS,
            [("x-amzn-ErrorType", "LimitExceededException")],
            r#"{"message":"Rate exceeded"}"#,
        )
            .into_response();
    }
    tokio::time::sleep(ep.latency).await;
    ep.accepted.fetch_add(1, Ordering::Relaxed);
    let first = {
        let mut counts = ep.counts.lock().unwrap();
        let n = counts.entry(id).or_insert(0);
        *n += 1;
        *n == 1
    };
    if first {
        ep.unique.fetch_add(1, Ordering::SeqCst);
        *ep.last_new.lock().unwrap() = Some(Instant::now());
    }
    StatusCode::OK.into_response()
}

// ---------------------------------------------------------------- DynamoDB Scan over the wire

/// Connection ids of the current table, sorted: each Scan segment is every `total`-th of them.
#[derive(Clone, Default)]
struct WireTable {
    ids: Arc<Mutex<Arc<Vec<String>>>>,
    scans: Arc<AtomicU64>,
    /// Shard job claims (`JOB#<key>` → the SQS message holding it), as the conditional PutItem
    /// of `ConnectionStore::claim_job` leaves them.
    claims: Arc<Mutex<HashMap<String, String>>>,
}

/// The one write a sharded fan-out makes: a shard job's claim, `PutItem` on condition
/// `attribute_not_exists(pk) OR claimedBy = :by`, answered as DynamoDB answers it.
fn wire_claim(table: &WireTable, request: &Value) -> Response {
    let key = request["Item"]["pk"]["S"].as_str();
    let by = request["ExpressionAttributeValues"][":by"]["S"].as_str();
    let (Some(key), Some(by)) = (key, by) else {
        let msg = json!({"__type": "com.amazon.coral.validate#ValidationException", "message": "only shard job claims are played here"});
        return (StatusCode::BAD_REQUEST, msg.to_string()).into_response();
    };
    let mut claims = table.claims.lock().unwrap();
    match claims.get(key) {
        Some(holder) if holder != by => {
            let msg = json!({"__type": "com.amazonaws.dynamodb.v20120810#ConditionalCheckFailedException", "message": "The conditional request failed"});
            (
                StatusCode::BAD_REQUEST,
                [("content-type", "application/x-amz-json-1.0")],
                msg.to_string(),
            )
                .into_response()
        }
        _ => {
            claims.insert(key.to_owned(), by.to_owned());
            (StatusCode::OK, [("content-type", "application/x-amz-json-1.0")], "{}").into_response()
        }
    }
}

async fn wire_dynamodb(State(table): State<WireTable>, headers: axum::http::HeaderMap, body: Bytes) -> Response {
    let target = headers.get("x-amz-target").and_then(|v| v.to_str().ok()).unwrap_or("");
    if target == "DynamoDB_20120810.PutItem" {
        return wire_claim(&table, &serde_json::from_slice(&body).unwrap_or(Value::Null));
    }
    if target != "DynamoDB_20120810.Scan" {
        let msg = json!({"__type": "com.amazon.coral.validate#ValidationException", "message": format!("{target} is not played here")});
        return (StatusCode::BAD_REQUEST, msg.to_string()).into_response();
    }
    table.scans.fetch_add(1, Ordering::Relaxed);
    let request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let ids = table.ids.lock().unwrap().clone();
    let limit = request["Limit"].as_u64().unwrap_or(10_000) as usize;
    let total = request["TotalSegments"].as_u64().unwrap_or(1) as usize;
    let segment = request["Segment"].as_u64().unwrap_or(0) as usize;
    let from = match request["ExclusiveStartKey"]["connectionId"]["S"].as_str() {
        Some(after) => ids.partition_point(|id| id.as_str() <= after),
        None => 0,
    };
    let picked: Vec<&String> = ids[from..]
        .iter()
        .enumerate()
        .filter(|(i, _)| (from + i) % total == segment)
        .map(|(_, id)| id)
        .take(limit + 1)
        .collect();
    let more = picked.len() > limit;
    let page = &picked[..picked.len().min(limit)];
    let items: Vec<Value> = page
        .iter()
        .map(|id| json!({"connectionId": {"S": id}, "ttl": {"N": "4102444800"}}))
        .collect();
    let mut out = json!({"Items": items, "Count": page.len(), "ScannedCount": page.len()});
    if let (true, Some(last)) = (more, page.last()) {
        out["LastEvaluatedKey"] = json!({"connectionId": {"S": last}, "userId": {"S": "bench"},
            "pk": {"S": format!("CONN#{last}")}, "sk": {"S": "META"}});
    }
    ([("content-type", "application/x-amz-json-1.0")], out.to_string()).into_response()
}

// ---------------------------------------------------------------- setup helpers

async fn serve(app: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr.to_string()
}

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

/// A fresh table with `n` live connections, written with BatchWriteItem.
async fn load_table(client: &aws_sdk_dynamodb::Client, n: usize) -> String {
    let table = format!("wshub-bench-{:08x}", fastrand::u32(..));
    wshub::store::table::create_table(client, &table).await.unwrap();
    let ids: Vec<String> = (0..n).map(|i| format!("c{i:07}")).collect();
    let chunks: Vec<Vec<String>> = ids.chunks(25).map(|c| c.to_vec()).collect();
    futures::stream::iter(chunks)
        .map(|chunk| {
            let (client, table) = (client.clone(), table.clone());
            async move {
                let mut pending: Vec<WriteRequest> = chunk
                    .iter()
                    .map(|id| {
                        let put = PutRequest::builder()
                            .item("pk", s(format!("CONN#{id}")))
                            .item("sk", s("META"))
                            .item("connectionId", s(id))
                            .item("userId", s(format!("user-{}", &id[id.len() - 2..])))
                            .item("connectedAt", AttributeValue::N("1795244400000".into()))
                            .item("ttl", AttributeValue::N("4102444800".into()))
                            .build()
                            .unwrap();
                        WriteRequest::builder().put_request(put).build()
                    })
                    .collect();
                while !pending.is_empty() {
                    let out = client
                        .batch_write_item()
                        .request_items(&table, pending)
                        .send()
                        .await
                        .unwrap();
                    pending = out
                        .unprocessed_items
                        .and_then(|mut m| m.remove(&table))
                        .unwrap_or_default();
                }
            }
        })
        .buffer_unordered(4)
        .collect::<Vec<()>>()
        .await;
    table
}

fn spawn_binary(args: &Args, runtime: &str, env: &[(&str, String)], log: &str) -> std::process::Child {
    let mut command = std::process::Command::new(&args.binary);
    command
        .env("AWS_LAMBDA_RUNTIME_API", runtime)
        .env("AWS_LAMBDA_FUNCTION_NAME", "wshub")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
        .env("AWS_LAMBDA_LOG_GROUP_NAME", "/aws/lambda/wshub")
        .env("AWS_LAMBDA_LOG_STREAM_NAME", "bench")
        .env("AWS_LAMBDA_LOG_LEVEL", "WARN")
        .env("AUTH_TOKENS", "bench=bench-token");
    for (k, v) in env {
        command.env(k, v);
    }
    let file = std::fs::File::create(log).unwrap();
    command
        .stdout(Stdio::from(file.try_clone().unwrap()))
        .stderr(Stdio::from(file));
    command
        .spawn()
        .unwrap_or_else(|e| panic!("{}: {e} (build it first)", args.binary))
}

fn peak_rss_kib(pid: Option<u32>) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{}/status", pid?)).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// User plus system CPU seconds of a process so far (clock ticks of 1/100 s).
fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command name; utime and stime are the 14th and 15th.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 / 100.0)
}

fn sqs_record(id: &str, receipt: &str, body: &str) -> Value {
    json!({"messageId": id, "receiptHandle": receipt, "body": body,
        "attributes": {"ApproximateReceiveCount": "1"}, "messageAttributes": {}, "md5OfBody": "",
        "eventSource": "aws:sqs", "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:wshub-push",
        "awsRegion": "us-east-1"})
}

// ---------------------------------------------------------------- the two modes

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let dynamodb = std::env::var("AWS_ENDPOINT_URL_DYNAMODB").unwrap_or_default();
    let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let ddb = aws_sdk_dynamodb::Client::new(&sdk);
    let endpoint = Arc::new(Endpoint {
        latency: Duration::from_millis(args.latency_ms),
        rate: args.rate,
        burst: (args.rate * args.burst_seconds).max(1.0),
        bucket: Mutex::new(Bucket {
            tokens: 0.0,
            last: Instant::now(),
        }),
        counts: Mutex::new(HashMap::new()),
        unique: AtomicUsize::new(0),
        accepted: AtomicU64::new(0),
        throttled: AtomicU64::new(0),
        last_new: Mutex::new(None),
        first_post: Mutex::new(None),
    });
    let connections = format!(
        "http://{}/prod",
        serve(
            Router::new()
                .route("/{stage}/@connections/{id}", post(post_to_connection))
                .with_state(endpoint.clone())
        )
        .await
    );
    let api = RuntimeApi::default();
    let runtime = api.start().await;
    std::fs::create_dir_all("target/bench").unwrap();
    let wire = WireTable::default();
    let wire_url = format!(
        "http://{}",
        serve(Router::new().route("/", post(wire_dynamodb)).with_state(wire.clone())).await
    );
    let (dynamodb, use_moto) = match args.store.as_str() {
        "moto" => (dynamodb, true),
        "wire" => (wire_url, false),
        other => panic!("--store moto or wire, not {other}"),
    };
    let new_table = |n: usize| {
        let (ddb, wire) = (ddb.clone(), wire.clone());
        async move {
            if use_moto {
                load_table(&ddb, n).await
            } else {
                *wire.ids.lock().unwrap() = Arc::new((0..n).map(|i| format!("c{i:07}")).collect());
                "wire".to_owned()
            }
        }
    };
    let latency = args.latency_ms as f64 / 1000.0;

    match &args.mode {
        Mode::Single { n, concurrency } => {
            for &n in n {
                let table = new_table(n).await;
                endpoint.reset();
                let env = [
                    ("CONNECTIONS_TABLE", table.clone()),
                    ("AWS_ENDPOINT_URL_DYNAMODB", dynamodb.clone()),
                    ("APIGW_MANAGEMENT_ENDPOINT", connections.clone()),
                    ("PUSH_CONCURRENCY", concurrency.to_string()),
                ];
                let mut child = spawn_binary(&args, runtime.addr(), &env, &format!("target/bench/single-{n}.log"));
                let rss_idle = {
                    // Let the runtime client start; its first `next` marks it ready.
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    peak_rss_kib(Some(child.id()))
                };
                let push = json!({"Records": [sqs_record(&format!("bench-{n}"), "r", r#"{"data":{"bench":true}}"#)]});
                let cpu_before = cpu_seconds(child.id());
                let started = Instant::now();
                let outcome = api.invoke_with_deadline(push, Duration::from_secs(900)).await;
                let cpu = cpu_seconds(child.id()).zip(cpu_before).map(|(a, b)| round(a - b));
                let wall = started.elapsed().as_secs_f64();
                let first_post = endpoint
                    .first_post
                    .lock()
                    .unwrap()
                    .map(|t| t.duration_since(started).as_secs_f64());
                let rss = peak_rss_kib(Some(child.id()));
                let _ = child.kill();
                let _ = child.wait();
                let (distinct, duplicated) = endpoint.tally();
                let bound = (n as f64 * latency / *concurrency as f64).max(n as f64 / args.rate);
                println!(
                    "{}",
                    json!({"mode": "single", "store": args.store, "n": n, "latency_ms": args.latency_ms, "rate": args.rate,
                        "concurrency": concurrency, "wall_s": round(wall), "bound_s": round(bound),
                        "ratio": round(wall / bound), "function_cpu_s": cpu,
                        "first_post_s": first_post.map(round), "delivered_distinct": distinct, "duplicated": duplicated,
                        "accepted_posts": endpoint.accepted.load(Ordering::SeqCst),
                        "throttled_429": endpoint.throttled.load(Ordering::SeqCst),
                        "peak_rss_mib": rss.map(|k| round(k as f64 / 1024.0)),
                        "idle_rss_mib": rss_idle.map(|k| round(k as f64 / 1024.0)),
                        "response": outcome.unwrap_or_else(|e| json!({"error": e}))})
                );
            }
        }
        Mode::Sharded {
            n,
            m,
            concurrency,
            threshold,
            deadline_ms,
            batch,
        } => {
            let n = *n;
            let table = new_table(n).await;
            let sqs = aws_sdk_sqs::Client::new(&sdk);
            let queue = sqs
                .create_queue()
                .queue_name(format!("wshub-bench-{:08x}", fastrand::u32(..)))
                .attributes(aws_sdk_sqs::types::QueueAttributeName::VisibilityTimeout, "60")
                .send()
                .await
                .unwrap()
                .queue_url
                .unwrap();
            let env = [
                ("CONNECTIONS_TABLE", table.clone()),
                ("AWS_ENDPOINT_URL_DYNAMODB", dynamodb.clone()),
                (
                    "AWS_ENDPOINT_URL_SQS",
                    std::env::var("AWS_ENDPOINT_URL_SQS").expect("AWS_ENDPOINT_URL_SQS (moto)"),
                ),
                ("APIGW_MANAGEMENT_ENDPOINT", connections.clone()),
                ("PUSH_CONCURRENCY", concurrency.to_string()),
                ("PUSH_QUEUE_URL", queue.clone()),
                ("SHARD_THRESHOLD", threshold.to_string()),
            ];
            let instances = m.iter().copied().max().unwrap_or(1);
            let mut children: Vec<_> = (0..instances)
                .map(|i| spawn_binary(&args, runtime.addr(), &env, &format!("target/bench/sharded-{i}.log")))
                .collect();
            tokio::time::sleep(Duration::from_millis(500)).await;
            for &m in m {
                endpoint.reset();
                let stats = event_source(
                    &api,
                    &sqs,
                    &queue,
                    &endpoint,
                    n,
                    m,
                    *batch,
                    Duration::from_millis(*deadline_ms),
                )
                .await;
                let (distinct, duplicated) = endpoint.tally();
                let ideal = (m as f64 * *concurrency as f64 / latency).min(args.rate);
                println!(
                    "{}",
                    json!({"mode": "sharded", "store": args.store, "n": n, "m": m, "latency_ms": args.latency_ms, "rate": args.rate,
                        "concurrency": concurrency, "threshold": threshold, "deadline_ms": deadline_ms,
                        "seconds": round(stats.seconds), "delivered_per_s": round(n as f64 / stats.seconds),
                        "of_r": round(n as f64 / stats.seconds / args.rate), "ideal_per_s": round(ideal),
                        "delivered_distinct": distinct, "duplicated": duplicated,
                        "throttled_429": endpoint.throttled.load(Ordering::SeqCst),
                        "invocations": stats.invocations, "cursor_jobs": stats.cursor_jobs, "ids_jobs": stats.ids_jobs,
                        "failed_records": stats.failed_records})
                );
            }
            for child in &mut children {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

fn round(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

#[derive(Default)]
struct SourceStats {
    seconds: f64,
    invocations: usize,
    cursor_jobs: usize,
    ids_jobs: usize,
    failed_records: usize,
}

/// Plays Lambda's SQS event source: at most `m` invocations at once, each with up to `batch`
/// records and a deadline; records reported in `batchItemFailures` become visible again.
#[allow(clippy::too_many_arguments)]
async fn event_source(
    api: &RuntimeApi,
    sqs: &aws_sdk_sqs::Client,
    queue: &str,
    endpoint: &Endpoint,
    n: usize,
    m: usize,
    batch: i32,
    deadline: Duration,
) -> SourceStats {
    let started = Instant::now();
    sqs.send_message()
        .queue_url(queue)
        .message_body(json!({"data": {"bench": m}}).to_string())
        .send()
        .await
        .unwrap();
    let slots = Arc::new(Semaphore::new(m));
    let stats = Arc::new(Mutex::new(SourceStats::default()));
    loop {
        if started.elapsed() > Duration::from_secs(600) {
            eprintln!("gave up after 600 s");
            break;
        }
        let slot = slots.clone().acquire_owned().await.unwrap();
        let received = sqs
            .receive_message()
            .queue_url(queue)
            .max_number_of_messages(batch)
            .send()
            .await
            .unwrap();
        let messages = received.messages.unwrap_or_default();
        if messages.is_empty() {
            drop(slot);
            let idle = slots.available_permits() == m;
            if idle && endpoint.unique.load(Ordering::SeqCst) >= n {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        }
        let records: Vec<Value> = messages
            .iter()
            .map(|msg| {
                sqs_record(
                    msg.message_id().unwrap_or("-"),
                    msg.receipt_handle().unwrap_or("-"),
                    msg.body().unwrap_or(""),
                )
            })
            .collect();
        {
            let mut st = stats.lock().unwrap();
            st.invocations += 1;
            for msg in &messages {
                let body = msg.body().unwrap_or("");
                if body.contains("\"cursor\"") {
                    st.cursor_jobs += 1;
                } else if body.contains("\"ids\"") {
                    st.ids_jobs += 1;
                }
            }
        }
        let (api, sqs, queue, stats) = (api.clone(), sqs.clone(), queue.to_owned(), stats.clone());
        tokio::spawn(async move {
            let outcome = api.invoke_with_deadline(json!({ "Records": records }), deadline).await;
            let failed: Vec<String> = match &outcome {
                Ok(v) => v["batchItemFailures"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|f| f["itemIdentifier"].as_str().map(str::to_owned))
                    .collect(),
                Err(e) => {
                    eprintln!("invocation failed: {e}");
                    messages.iter().filter_map(|m| m.message_id.clone()).collect()
                }
            };
            for msg in messages {
                let receipt = msg.receipt_handle.clone().unwrap_or_default();
                if msg.message_id.as_ref().is_some_and(|id| failed.contains(id)) {
                    stats.lock().unwrap().failed_records += 1;
                    let _ = sqs
                        .change_message_visibility()
                        .queue_url(&queue)
                        .receipt_handle(receipt)
                        .visibility_timeout(0)
                        .send()
                        .await;
                } else {
                    let _ = sqs
                        .delete_message()
                        .queue_url(&queue)
                        .receipt_handle(receipt)
                        .send()
                        .await;
                }
            }
            drop(slot);
        });
    }
    let last = endpoint.last_new.lock().unwrap().unwrap_or_else(Instant::now);
    let mut stats = std::mem::take(&mut *stats.lock().unwrap());
    stats.seconds = last.duration_since(started).as_secs_f64();
    stats
}
