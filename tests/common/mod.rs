//! Test doubles that speak real HTTP, shared by the integration tests.

#![allow(dead_code)] // each test crate uses its own subset

pub mod asyncapi;
pub mod emf;
pub mod router;
pub mod runtime_api;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;

/// Fixed region and fake credentials: nothing in the tests may reach AWS.
pub async fn sdk_config() -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_apigatewaymanagement::config::Credentials::new(
            "AKIDTEST", "secret", None, None, "test",
        ))
        .load()
        .await
}

/// One POST received by the fake @connections server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Post {
    pub stage: String,
    pub connection_id: String,
    pub body: String,
    /// Whether the request carried a SigV4 `Authorization` header.
    pub signed: bool,
    /// The status this server answered.
    pub status: u16,
}

/// A local server playing the API Gateway @connections endpoint. Per connection id it answers
/// the scripted statuses in order (the last repeats; 200 when unscripted; 0 never answers) and
/// records every post.
#[derive(Clone, Default)]
pub struct FakeConnections {
    script: Arc<Mutex<HashMap<String, Vec<u16>>>>,
    received: Arc<Mutex<Vec<Post>>>,
}

impl FakeConnections {
    pub fn script(&self, connection_id: &str, statuses: &[u16]) {
        self.script
            .lock()
            .unwrap()
            .insert(connection_id.into(), statuses.to_vec());
    }

    pub fn received(&self) -> Vec<Post> {
        self.received.lock().unwrap().clone()
    }

    /// Bodies accepted (200) for one connection, parsed and checked against asyncapi.yaml.
    pub fn frames_for(&self, connection_id: &str) -> Vec<serde_json::Value> {
        asyncapi::assert_frames(
            self.received()
                .iter()
                .filter(|p| p.connection_id == connection_id && p.status == 200)
                .map(|p| serde_json::from_str(&p.body).expect("frame is JSON"))
                .collect(),
        )
    }

    /// Serves on an ephemeral loopback port; returns the endpoint for stage `prod`.
    pub async fn start(&self) -> String {
        let app = Router::new()
            .route("/{stage}/@connections/{id}", post(answer))
            .with_state(self.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        format!("http://{addr}/prod")
    }
}

async fn answer(
    State(fake): State<FakeConnections>,
    Path((stage, id)): Path<(String, String)>,
    headers: HeaderMap,
    body: String,
) -> Response {
    let signed = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("AWS4-HMAC-SHA256"));
    let status = {
        let mut script = fake.script.lock().unwrap();
        let statuses = script.entry(id.clone()).or_insert_with(|| vec![200]);
        if statuses.len() > 1 {
            statuses.remove(0)
        } else {
            statuses[0]
        }
    };
    fake.received.lock().unwrap().push(Post {
        stage,
        connection_id: id.clone(),
        body,
        signed,
        status,
    });
    if status == 0 {
        // Scripted as 0: never answer, like an endpoint that stalls.
        std::future::pending::<()>().await;
    }
    match (status, id.as_str()) {
        // A bare 410 with no error type: the SDK cannot name it, the status code must decide.
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

/// An SQS event with one record per (messageId, body), shaped as Lambda delivers it.
pub fn sqs_batch(records: &[(&str, serde_json::Value)]) -> serde_json::Value {
    let records: Vec<serde_json::Value> = records
        .iter()
        .map(|(id, body)| {
            serde_json::json!({"messageId": id, "receiptHandle": "AQEB", "body": body.to_string(),
                "attributes": {"ApproximateReceiveCount": "1"}, "messageAttributes": {}, "md5OfBody": "",
                "eventSource": "aws:sqs", "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:wshub-push",
                "awsRegion": "us-east-1"})
        })
        .collect();
    serde_json::json!({ "Records": records })
}
