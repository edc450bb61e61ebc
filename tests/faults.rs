//! Faults, and nothing lost: @connections storms across SQS redelivery, DynamoDB throttling
//! mid-batch, and a DynamoDB that stops answering while clients talk.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{sdk_config, sqs_batch, FakeConnections};
use serde_json::{json, Value};
use wshub::fanout::RetryPolicy;
use wshub::notify::apigw::ApiGatewayNotifier;
use wshub::store::dynamo::DynamoStore;
use wshub::store::memory::MemoryStore;
use wshub::store::{Connection, ConnectionStore};
use wshub::{Config, Hub};

fn config(endpoint: &str, table: &str) -> Config {
    Config::from_lookup(|name| match name {
        "CONNECTIONS_TABLE" => Some(table.into()),
        "APIGW_MANAGEMENT_ENDPOINT" => Some(endpoint.into()),
        _ => None,
    })
    .unwrap()
}

fn fast_retry() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 4,
        base: Duration::from_millis(2),
        cap: Duration::from_millis(10),
    }
}

fn epoch() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

async fn register(store: &dyn ConnectionStore, id: &str, user: &str, topics: &[&str]) {
    let c = Connection {
        connection_id: id.into(),
        user_id: user.into(),
        connected_at: 0,
        source_ip: None,
        path: None,
        ttl: epoch() + 600,
    };
    store.put_connection(&c).await.unwrap();
    for t in topics {
        store
            .subscribe(id, t, epoch() + 600, epoch(), usize::MAX)
            .await
            .unwrap();
    }
}

/// Plays SQS: delivers the batch, then redelivers exactly the reported records, until none
/// fail. Returns the ids reported as failed at least once.
async fn deliver_like_sqs(hub: &Hub, mut records: Vec<(String, Value)>) -> BTreeSet<String> {
    let mut ever_failed = BTreeSet::new();
    for round in 0..10 {
        let batch: Vec<(&str, Value)> = records.iter().map(|(id, b)| (id.as_str(), b.clone())).collect();
        let response = wshub::handle(hub, sqs_batch(&batch), None).await.unwrap();
        let failed: BTreeSet<String> = response["batchItemFailures"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["itemIdentifier"].as_str().unwrap().to_owned())
            .collect();
        if failed.is_empty() {
            return ever_failed;
        }
        assert!(round < 9, "still failing after 10 receives: {failed:?}");
        ever_failed.extend(failed.iter().cloned());
        records.retain(|(id, _)| failed.contains(id));
    }
    ever_failed
}

#[tokio::test]
async fn connections_storms_lose_nothing_across_redelivery() {
    let fake = FakeConnections::default();
    // 429 storms and 5xx runs longer than one invocation's retries (4 attempts per message,
    // several messages per connection), and a closed socket.
    let storm = |n: usize, statuses: &[u16]| {
        statuses
            .iter()
            .copied()
            .cycle()
            .take(n)
            .chain([200])
            .collect::<Vec<u16>>()
    };
    fake.script("storm-1", &storm(14, &[429]));
    fake.script("storm-2", &storm(11, &[429, 503, 429, 502]));
    fake.script("flaky", &storm(10, &[500]));
    fake.script("closed", &[410]);
    let endpoint = fake.start().await;
    let store = Arc::new(MemoryStore::with_page_size(3));
    let mut hub = Hub::new(
        config(&endpoint, "t"),
        store.clone(),
        Arc::new(ApiGatewayNotifier::new(sdk_config().await)),
    );
    hub.retry = fast_retry();
    let mut members: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (id, user, topics) in [
        ("storm-1", "ann", vec!["alerts"]),
        ("storm-2", "ann", vec![]),
        ("flaky", "ben", vec!["alerts"]),
        ("steady-1", "ben", vec!["alerts"]),
        ("steady-2", "cy", vec![]),
        ("closed", "cy", vec!["alerts"]),
    ] {
        register(store.as_ref(), id, user, &topics).await;
        members.insert(id, topics);
    }
    let records = vec![
        ("to-all".to_owned(), json!({"data": "everyone"})),
        ("to-ann".to_owned(), json!({"userId": "ann", "data": "ann"})),
        ("to-alerts".to_owned(), json!({"topic": "alerts", "data": "alert"})),
        (
            "to-steady".to_owned(),
            json!({"connectionId": "steady-2", "data": "direct"}),
        ),
    ];
    let ever_failed = deliver_like_sqs(&hub, records).await;

    // Who should have each message, and how many times each got it.
    let audience = |message: &str| -> Vec<&str> {
        match message {
            "to-all" => vec!["storm-1", "storm-2", "flaky", "steady-1", "steady-2"],
            "to-ann" => vec!["storm-1", "storm-2"],
            "to-alerts" => vec!["storm-1", "flaky", "steady-1"],
            _ => vec!["steady-2"],
        }
    };
    for message in ["to-all", "to-ann", "to-alerts", "to-steady"] {
        for id in audience(message) {
            let copies = fake.frames_for(id).iter().filter(|f| f["id"] == message).count();
            assert!(copies >= 1, "{id} never got {message}");
            assert!(
                copies == 1 || ever_failed.contains(message),
                "{id} got {message} {copies} times without a reported failure"
            );
        }
    }
    assert!(
        ever_failed.contains("to-all") && !ever_failed.contains("to-steady"),
        "{ever_failed:?}"
    );
    assert!(fake.frames_for("closed").is_empty());
    assert!(
        store.get_connection("closed", epoch()).await.unwrap().is_none(),
        "410 removed the closed socket's rows"
    );
}

#[tokio::test]
async fn a_stalled_connections_endpoint_fails_the_record_not_the_batch() {
    let fake = FakeConnections::default();
    fake.script("stalled", &[0]);
    let endpoint = fake.start().await;
    let store = Arc::new(MemoryStore::new());
    let notifier = ApiGatewayNotifier::new(sdk_config().await).with_attempt_timeout(Duration::from_millis(200));
    let mut hub = Hub::new(config(&endpoint, "t"), store.clone(), Arc::new(notifier));
    hub.retry = fast_retry();
    register(store.as_ref(), "stalled", "sam", &[]).await;
    register(store.as_ref(), "fine", "fay", &[]).await;
    let batch = sqs_batch(&[
        ("to-sam", json!({"userId": "sam", "data": 1})),
        ("to-fay", json!({"userId": "fay", "data": 2})),
    ]);
    let response = wshub::handle(&hub, batch, None).await.unwrap();
    assert_eq!(response, json!({"batchItemFailures": [{"itemIdentifier": "to-sam"}]}));
    let attempts = fake.received().iter().filter(|p| p.connection_id == "stalled").count();
    assert_eq!(
        attempts, 4,
        "each timed-out attempt is retried up to the policy's limit"
    );
    assert_eq!(fake.frames_for("fine").len(), 1);
    assert!(
        store.get_connection("stalled", epoch()).await.unwrap().is_some(),
        "a timeout is not a 410"
    );
}

/// A DynamoDB front that answers `ProvisionedThroughputExceededException` to the next N calls
/// and forwards the rest to the real server behind it.
#[derive(Clone)]
struct ThrottlingProxy {
    upstream: String,
    throttle_next: Arc<AtomicUsize>,
    throttled: Arc<AtomicUsize>,
    client: hyper_util::client::legacy::Client<hyper_util::client::legacy::connect::HttpConnector, axum::body::Body>,
}

async fn proxy(
    axum::extract::State(p): axum::extract::State<ThrottlingProxy>,
    request: axum::extract::Request,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let take = p
        .throttle_next
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok();
    if take {
        p.throttled.fetch_add(1, Ordering::SeqCst);
        let body = r#"{"__type":"com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException","message":"The level of configured provisioned throughput for the table was exceeded."}"#;
        return (
            axum::http::StatusCode::BAD_REQUEST,
            [("content-type", "application/x-amz-json-1.0")],
            body,
        )
            .into_response();
    }
    let (mut parts, body) = request.into_parts();
    parts.uri = format!(
        "{}{}",
        p.upstream,
        parts.uri.path_and_query().map(|x| x.as_str()).unwrap_or("/")
    )
    .parse()
    .unwrap();
    match p.client.request(axum::http::Request::from_parts(parts, body)).await {
        Ok(response) => response.map(axum::body::Body::new).into_response(),
        Err(e) => (axum::http::StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
    }
}

#[tokio::test]
#[ignore = "needs a DynamoDB endpoint in AWS_ENDPOINT_URL_DYNAMODB: run scripts/test.sh"]
async fn dynamodb_throttling_mid_batch_is_reported_then_delivered() {
    let upstream = std::env::var("AWS_ENDPOINT_URL_DYNAMODB").expect("run scripts/test.sh");
    let proxy_state = ThrottlingProxy {
        upstream,
        throttle_next: Arc::default(),
        throttled: Arc::default(),
        client: hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build_http(),
    };
    let app = axum::Router::new().fallback(proxy).with_state(proxy_state.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let proxy_url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    // Few SDK retries with short pauses, so throttling surfaces quickly instead of being absorbed.
    let sdk = sdk_config().await;
    let dynamo = aws_sdk_dynamodb::config::Builder::from(&sdk)
        .endpoint_url(&proxy_url)
        .retry_config(
            aws_config::retry::RetryConfig::standard()
                .with_max_attempts(2)
                .with_initial_backoff(Duration::from_millis(5)),
        )
        .build();
    let client = aws_sdk_dynamodb::Client::from_conf(dynamo);
    let table = format!("wshub-faults-{:08x}", fastrand::u32(..));
    wshub::store::table::create_table(&client, &table).await.unwrap();
    let store = Arc::new(DynamoStore::new(client, table.clone()));
    for (i, user) in ["u0", "u1", "u2", "u3", "u4", "u5"].iter().enumerate() {
        register(store.as_ref(), &format!("c{i}"), user, &["t"]).await;
    }
    let fake = FakeConnections::default();
    let endpoint = fake.start().await;
    let mut hub = Hub::new(
        config(&endpoint, &table),
        store.clone(),
        Arc::new(ApiGatewayNotifier::new(sdk)),
    );
    hub.retry = fast_retry();

    // Enough throttled answers that some audience reads fail even after the SDK's retry.
    proxy_state.throttle_next.store(8, Ordering::SeqCst);
    let records: Vec<(String, Value)> = (0..6)
        .map(|i| (format!("m{i}"), json!({"userId": format!("u{i}"), "data": i})))
        .collect();
    let ever_failed = deliver_like_sqs(&hub, records).await;
    assert!(proxy_state.throttled.load(Ordering::SeqCst) == 8);
    assert!(
        !ever_failed.is_empty(),
        "the throttling must have failed at least one record"
    );
    for i in 0..6 {
        let frames = fake.frames_for(&format!("c{i}"));
        assert_eq!(
            frames.len(),
            1,
            "c{i}: a failed audience read posts nothing, so no duplicates: {frames:?}"
        );
        assert_eq!(frames[0]["id"], format!("m{i}"));
    }
}

/// A TCP endpoint that accepts connections and never answers: the worst kind of outage.
async fn black_hole() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    format!("http://{addr}")
}

#[tokio::test]
async fn routes_answer_an_error_frame_while_dynamodb_is_unreachable() {
    let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
            "AKIDTEST", "secret", None, None, "test",
        ))
        .endpoint_url(black_hole().await)
        .load()
        .await;
    // The production client: bounded attempts and operation time.
    let store = Arc::new(DynamoStore::new(wshub::store::dynamo::client(&sdk), "t"));
    let hub = Hub::new(
        config("http://127.0.0.1:9/prod", "t"),
        store,
        Arc::new(wshub::notify::memory::MemoryNotifier::new()),
    );
    let event = |route: &str, body: Option<Value>| {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/events/ping.json");
        let mut e: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        e["requestContext"]["routeKey"] = json!(route);
        e["requestContext"]["eventType"] = json!(if route == "$connect" { "CONNECT" } else { "MESSAGE" });
        e["body"] = body.map(|b| json!(b.to_string())).unwrap_or(Value::Null);
        e
    };
    // A safety net for the test itself, not a timing assertion: without bounded timeouts these
    // calls would hang until the Lambda was killed.
    let guard = Duration::from_secs(60);
    let (connect, subscribe, whoami) = tokio::time::timeout(
        guard,
        futures::future::join3(
            wshub::handle(&hub, event("$connect", None), None),
            wshub::handle(
                &hub,
                event("subscribe", Some(json!({"action": "subscribe", "topic": "t", "id": 5}))),
                None,
            ),
            wshub::handle(&hub, event("whoami", Some(json!({"action": "whoami"}))), None),
        ),
    )
    .await
    .expect("routes must not hang on a dead DynamoDB");
    assert_eq!(
        connect.unwrap()["statusCode"],
        500,
        "$connect fails, so the client is not left half-connected"
    );
    for response in [subscribe.unwrap(), whoami.unwrap()] {
        let frame = common::asyncapi::reply_frame(&response);
        assert_eq!(frame["code"], "internal", "{frame}");
        assert_eq!(frame["message"], "temporary failure; retry");
    }
}

/// Issue 11 item 9, with the production timeouts (a 5 s attempt, the default retry policy) and
/// a real deadline: a post to an endpoint that never answers is cut off at the deadline, no
/// retry starts that could not finish before it, and the handler returns before Lambda's
/// deadline with the undelivered record reported failed (never silently lost).
#[tokio::test]
async fn a_stalled_endpoint_cannot_hold_an_invocation_past_its_deadline() {
    let fake = FakeConnections::default();
    fake.script("stalled", &[0]);
    let endpoint = fake.start().await;
    let store = Arc::new(MemoryStore::new());
    let notifier = ApiGatewayNotifier::new(sdk_config().await);
    let hub = Hub::new(config(&endpoint, "t"), store.clone(), Arc::new(notifier));
    register(store.as_ref(), "stalled", "sam", &[]).await;
    register(store.as_ref(), "fine", "fay", &[]).await;
    let batch = sqs_batch(&[
        ("to-sam", json!({"userId": "sam", "data": 1})),
        ("to-fay", json!({"userId": "fay", "data": 2})),
    ]);
    // As src/main.rs: Lambda's deadline less a 1 s margin to report in.
    let lambda_deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    let deadline = lambda_deadline - Duration::from_secs(1);
    let response = wshub::handle(&hub, batch, Some(deadline)).await.unwrap();
    assert!(
        tokio::time::Instant::now() < lambda_deadline,
        "the handler outlived Lambda's deadline"
    );
    assert_eq!(response, json!({"batchItemFailures": [{"itemIdentifier": "to-sam"}]}));
    assert_eq!(fake.frames_for("fine").len(), 1);
}
