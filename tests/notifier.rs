//! The Management API notifier against a small local HTTP server playing @connections.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use serde_json::json;
use wshub::notify::apigw::ApiGatewayNotifier;
use wshub::notify::{Notifier, NotifyError};
use wshub::store::memory::MemoryStore;
use wshub::store::{Connection, ConnectionStore};
use wshub::{Config, Hub};

/// Per connection id, the statuses to answer in order (the last one repeats); records bodies.
#[derive(Clone, Default)]
struct Fake {
    script: Arc<Mutex<HashMap<String, Vec<u16>>>>,
    received: Arc<Mutex<Vec<(String, String, String)>>>,
}

async fn post_to_connection(
    State(fake): State<Fake>,
    Path((stage, id)): Path<(String, String)>,
    headers: HeaderMap,
    body: String,
) -> Response {
    fake.received.lock().unwrap().push((stage, id.clone(), body));
    assert!(headers.contains_key("authorization"), "requests are SigV4-signed");
    let status = {
        let mut script = fake.script.lock().unwrap();
        let statuses = script.entry(id.clone()).or_insert_with(|| vec![200]);
        if statuses.len() > 1 {
            statuses.remove(0)
        } else {
            statuses[0]
        }
    };
    match (status, id.as_str()) {
        // The plain 410, with no error type: the SDK cannot name it, the status must decide.
        (410, "gone-bare") => StatusCode::GONE.into_response(),
        (410, _) => (
            StatusCode::GONE,
            [("x-amzn-ErrorType", "GoneException")],
            r#"{"message":null}"#,
        )
            .into_response(),
        (429, _) => (
            StatusCode::TOO_MANY_REQUESTS,
            [("x-amzn-ErrorType", "LimitExceededException")],
            r#"{"message":"Rate exceeded"}"#,
        )
            .into_response(),
        (s, _) => (StatusCode::from_u16(s).unwrap(), "").into_response(),
    }
}

async fn start(fake: Fake) -> String {
    let app = Router::new()
        .route("/{stage}/@connections/{id}", post(post_to_connection))
        .with_state(fake);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}/prod")
}

async fn sdk_config() -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_apigatewaymanagement::config::Credentials::new(
            "AKIDTEST", "secret", None, None, "test",
        ))
        .load()
        .await
}

#[tokio::test]
async fn statuses_are_classified() {
    let fake = Fake::default();
    for (id, status) in [
        ("gone", 410),
        ("gone-bare", 410),
        ("throttled", 429),
        ("boom", 500),
        ("forbidden", 403),
    ] {
        fake.script.lock().unwrap().insert(id.into(), vec![status]);
    }
    let endpoint = start(fake.clone()).await;
    let notifier = ApiGatewayNotifier::new(sdk_config().await);
    assert_eq!(notifier.send(&endpoint, "ok=", b"{\"a\":1}").await, Ok(()));
    assert_eq!(notifier.send(&endpoint, "gone", b"x").await, Err(NotifyError::Gone));
    assert_eq!(
        notifier.send(&endpoint, "gone-bare", b"x").await,
        Err(NotifyError::Gone)
    );
    assert_eq!(
        notifier.send(&endpoint, "throttled", b"x").await,
        Err(NotifyError::Throttled)
    );
    assert_eq!(
        notifier.send(&endpoint, "boom", b"x").await,
        Err(NotifyError::Server(500))
    );
    assert!(matches!(
        notifier.send(&endpoint, "forbidden", b"x").await,
        Err(NotifyError::Rejected { status: 403, .. })
    ));
    let received = fake.received.lock().unwrap().clone();
    assert_eq!(received[0], ("prod".into(), "ok=".into(), "{\"a\":1}".into()));
    // One request per send: the SDK's own retries are off, the fan-out owns retrying.
    assert_eq!(received.len(), 6);
}

#[tokio::test]
async fn unreachable_endpoint_is_a_transport_failure() {
    // Bind then drop a listener to get a port with nothing behind it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let notifier = ApiGatewayNotifier::new(sdk_config().await);
    let err = notifier
        .send(&format!("http://127.0.0.1:{port}/prod"), "c", b"x")
        .await
        .unwrap_err();
    assert!(matches!(err, NotifyError::Transport(_)), "{err:?}");
    assert!(err.is_retryable());
}

/// The SQS push path over real HTTP: back-off through 429s, 410 cleanup, and a record that
/// cannot be delivered reported for redelivery.
#[tokio::test]
async fn sqs_push_retries_cleans_up_and_reports() {
    let fake = Fake::default();
    fake.script
        .lock()
        .unwrap()
        .insert("flaky".into(), vec![429, 429, 503, 200]);
    fake.script.lock().unwrap().insert("stale".into(), vec![410]);
    fake.script.lock().unwrap().insert("down".into(), vec![500]);
    let endpoint = start(fake.clone()).await;
    let config = Config::from_lookup(|name| match name {
        "CONNECTIONS_TABLE" => Some("t".into()),
        "APIGW_MANAGEMENT_ENDPOINT" => Some(endpoint.clone()),
        _ => None,
    })
    .unwrap();
    let store = Arc::new(MemoryStore::new());
    let mut hub = Hub::new(
        config,
        store.clone(),
        Arc::new(ApiGatewayNotifier::new(sdk_config().await)),
    );
    hub.retry = wshub::fanout::RetryPolicy {
        max_attempts: 5,
        base: std::time::Duration::from_millis(5),
        cap: std::time::Duration::from_millis(20),
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    for (id, user) in [("flaky", "u1"), ("stale", "u1"), ("down", "u2")] {
        let c = Connection {
            connection_id: id.into(),
            user_id: user.into(),
            connected_at: 0,
            source_ip: None,
            ttl: now + 600,
        };
        store.put_connection(&c).await.unwrap();
    }
    let record = |id: &str, body: serde_json::Value| {
        json!({"messageId": id, "receiptHandle": "r", "body": body.to_string(), "attributes": {}, "messageAttributes": {},
               "md5OfBody": "", "eventSource": "aws:sqs", "eventSourceARN": "arn:aws:sqs:us-east-1:1:q", "awsRegion": "us-east-1"})
    };
    let batch = json!({"Records": [record("m-u1", json!({"userId": "u1", "data": 1})), record("m-u2", json!({"userId": "u2", "data": 2}))]});
    let response = wshub::handle(&hub, batch, None).await.unwrap();
    assert_eq!(response, json!({"batchItemFailures": [{"itemIdentifier": "m-u2"}]}));
    let received = fake.received.lock().unwrap().clone();
    let attempts = |id: &str| received.iter().filter(|(_, c, _)| c == id).count();
    assert_eq!((attempts("flaky"), attempts("stale"), attempts("down")), (4, 1, 5));
    assert!(
        store.get_connection("stale", now).await.unwrap().is_none(),
        "410 removed the stale row"
    );
    assert!(store.get_connection("flaky", now).await.unwrap().is_some());
    let delivered: serde_json::Value =
        serde_json::from_str(&received.iter().rfind(|(_, c, _)| c == "flaky").unwrap().2).unwrap();
    assert_eq!(delivered, json!({"action": "message", "data": 1, "id": "m-u1"}));
}
