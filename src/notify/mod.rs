//! The notifier port: post one frame to one connection through an @connections endpoint.
//!
//! [`apigw::ApiGatewayNotifier`] talks to the API Gateway Management API (or anything that
//! plays it, such as the local hub); [`memory::MemoryNotifier`] records frames for tests.

pub mod apigw;
pub mod memory;

use async_trait::async_trait;

/// How a post failed. The fan-out decides from this whether to clean up, retry or give up.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotifyError {
    /// 410: the connection is closed; its rows are stale.
    #[error("connection is gone (410)")]
    Gone,
    /// 429: the account's @connections rate limit, or the client's buffer is full.
    #[error("throttled (429)")]
    Throttled,
    /// 5xx.
    #[error("server error ({0})")]
    Server(u16),
    /// Any other status (403 forbidden, 413 too large, …): retrying will not help.
    #[error("rejected ({status}): {message}")]
    Rejected { status: u16, message: String },
    /// No response: connect failure, timeout.
    #[error("transport failure: {0}")]
    Transport(String),
}

impl NotifyError {
    /// Worth another try after a pause.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            NotifyError::Throttled | NotifyError::Server(_) | NotifyError::Transport(_)
        )
    }

    /// Classifies an HTTP status from an @connections response.
    pub fn from_status(status: u16, message: impl Into<String>) -> NotifyError {
        match status {
            410 => NotifyError::Gone,
            429 => NotifyError::Throttled,
            500..=599 => NotifyError::Server(status),
            _ => NotifyError::Rejected {
                status,
                message: message.into(),
            },
        }
    }
}

#[async_trait]
pub trait Notifier: Send + Sync {
    /// Posts `frame` to `connection_id` through the @connections API at `endpoint`
    /// (`https://{apiId}.execute-api.{region}.amazonaws.com/{stage}` or an override).
    async fn send(&self, endpoint: &str, connection_id: &str, frame: &[u8]) -> Result<(), NotifyError>;

    /// How long one `send` may take at most, when the notifier bounds it: the fan-out starts
    /// no retry that could not finish before its deadline.
    fn attempt_timeout(&self) -> Option<std::time::Duration> {
        None
    }
}
