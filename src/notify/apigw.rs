//! API Gateway Management API notifier.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_apigatewaymanagement::error::{DisplayErrorContext, SdkError};
use aws_sdk_apigatewaymanagement::operation::post_to_connection::PostToConnectionError;
use aws_sdk_apigatewaymanagement::primitives::Blob;
use aws_sdk_apigatewaymanagement::Client;

use super::{Notifier, NotifyError};

/// One attempt may take this long before it counts as a transport failure.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);

/// Holds one client per endpoint: route events may name several stages, and a client's
/// endpoint is fixed when it is built.
pub struct ApiGatewayNotifier {
    config: aws_config::SdkConfig,
    clients: Mutex<HashMap<String, Client>>,
    attempt_timeout: Duration,
}

impl ApiGatewayNotifier {
    pub fn new(config: aws_config::SdkConfig) -> Self {
        ApiGatewayNotifier {
            config,
            clients: Mutex::new(HashMap::new()),
            attempt_timeout: ATTEMPT_TIMEOUT,
        }
    }

    /// How long one post may take before it counts as a (retryable) transport failure.
    pub fn with_attempt_timeout(mut self, timeout: Duration) -> Self {
        self.attempt_timeout = timeout;
        self
    }

    fn client(&self, endpoint: &str) -> Client {
        let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        clients
            .entry(endpoint.to_owned())
            .or_insert_with(|| {
                let config = aws_sdk_apigatewaymanagement::config::Builder::from(&self.config)
                    .endpoint_url(endpoint)
                    // The fan-out retries with its own jittered back-off and counts attempts;
                    // SDK retries underneath would multiply them invisibly.
                    .retry_config(aws_config::retry::RetryConfig::disabled())
                    .timeout_config(
                        aws_config::timeout::TimeoutConfig::builder()
                            .operation_attempt_timeout(self.attempt_timeout)
                            .build(),
                    )
                    .build();
                Client::from_conf(config)
            })
            .clone()
    }
}

#[async_trait]
impl Notifier for ApiGatewayNotifier {
    async fn send(&self, endpoint: &str, connection_id: &str, frame: &[u8]) -> Result<(), NotifyError> {
        self.client(endpoint)
            .post_to_connection()
            .connection_id(connection_id)
            .data(Blob::new(frame))
            .send()
            .await
            .map(|_| ())
            .map_err(classify)
    }

    fn attempt_timeout(&self) -> Option<Duration> {
        Some(self.attempt_timeout)
    }
}

/// The SDK names a 410 `GoneException` only when the response says so in `x-amzn-ErrorType`
/// or a `__type` body; the status code is the ground truth, so it decides first.
fn classify(
    err: SdkError<PostToConnectionError, aws_sdk_apigatewaymanagement::config::http::HttpResponse>,
) -> NotifyError {
    if let Some(PostToConnectionError::GoneException(_)) = err.as_service_error() {
        return NotifyError::Gone;
    }
    if let Some(PostToConnectionError::LimitExceededException(_)) = err.as_service_error() {
        return NotifyError::Throttled;
    }
    let status = err.raw_response().map(|r| r.status().as_u16());
    let message = DisplayErrorContext(&err).to_string();
    match status {
        Some(status) => NotifyError::from_status(status, message),
        None => NotifyError::Transport(message),
    }
}
