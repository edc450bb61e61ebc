//! The Management API notifier against a small local HTTP server playing @connections.

mod common;

use std::sync::Arc;

use common::{sdk_config, sqs_batch, FakeConnections};
use serde_json::json;
use wshub::notify::apigw::ApiGatewayNotifier;
use wshub::notify::{Notifier, NotifyError};
use wshub::store::memory::MemoryStore;
use wshub::store::{Connection, ConnectionStore};
use wshub::{Config, Hub};

#[tokio::test]
async fn statuses_are_classified() {
    let fake = FakeConnections::default();
    for (id, status) in [
        ("gone", 410),
        ("gone-bare", 410),
        ("throttled", 429),
        ("boom", 500),
        ("forbidden", 403),
    ] {
        fake.script(id, &[status]);
    }
    let endpoint = fake.start().await;
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
    let received = fake.received();
    assert_eq!(
        (received[0].stage.as_str(), received[0].connection_id.as_str()),
        ("prod", "ok=")
    );
    assert_eq!(received[0].body, "{\"a\":1}");
    assert!(received.iter().all(|p| p.signed), "every post is SigV4-signed");
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
    let fake = FakeConnections::default();
    fake.script("flaky", &[429, 429, 503, 200]);
    fake.script("stale", &[410]);
    fake.script("down", &[500]);
    let endpoint = fake.start().await;
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
            path: None,
            ttl: now + 600,
        };
        store.put_connection(&c).await.unwrap();
    }
    let batch = sqs_batch(&[
        ("m-u1", json!({"userId": "u1", "data": 1})),
        ("m-u2", json!({"userId": "u2", "data": 2})),
    ]);
    let response = wshub::handle(&hub, batch, None).await.unwrap();
    assert_eq!(response, json!({"batchItemFailures": [{"itemIdentifier": "m-u2"}]}));
    let attempts = |id: &str| fake.received().iter().filter(|p| p.connection_id == id).count();
    assert_eq!((attempts("flaky"), attempts("stale"), attempts("down")), (4, 1, 5));
    assert!(
        store.get_connection("stale", now).await.unwrap().is_none(),
        "410 removed the stale row"
    );
    assert!(store.get_connection("flaky", now).await.unwrap().is_some());
    let frame = fake.frames_for("flaky").last().unwrap().clone();
    assert_eq!(
        frame,
        json!({"action": "message", "topic": "user:u1", "data": 1, "id": "m-u1", "seq": 1, "epoch": frame["epoch"]})
    );
}
