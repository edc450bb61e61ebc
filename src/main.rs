//! The Lambda bootstrap: init tracing, build the hub once, serve events until the sandbox ends.

use lambda_runtime::{service_fn, Error, LambdaEvent};
use serde_json::Value;
use tokio::time::Instant;
use wshub::metrics::{self, Dimensions};
use wshub::{Config, Hub};

#[tokio::main]
async fn main() -> Result<(), Error> {
    // JSON lines when the function's log format is JSON (AWS_LAMBDA_LOG_FORMAT).
    lambda_runtime::tracing::init_default_subscriber();
    let config = Config::from_env().inspect_err(|e| tracing::error!("invalid configuration: {e}"))?;
    if !config.auth.is_configured() && !config.secrets.is_configured() {
        tracing::warn!("neither AUTH_TOKENS nor JWT_SECRET is set: every connection will be denied");
    }
    let dimensions = Dimensions::from_lookup(|name| std::env::var(name).ok());
    let hub = Hub::from_aws(config).await;
    let (hub, dimensions) = (&hub, &dimensions);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        let deadline = deadline(event.context.deadline);
        let started_ms = epoch_ms();
        let (result, recorded) = metrics::measure(wshub::handle(hub, event.payload, Some(deadline))).await;
        // One EMF document per invocation, on stdout, before the response is returned (a
        // document written after could land in the next invocation's logs, or never).
        if let Some(document) = recorded.to_emf(dimensions, started_ms) {
            // One write of one line; a failed write loses a metric, never the invocation.
            use std::io::Write;
            let _ = writeln!(std::io::stdout().lock(), "{document}");
        }
        result
    }))
    .await
}

fn epoch_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Lambda's deadline (epoch ms) as an Instant, less a margin to report failures in.
fn deadline(deadline_ms: u64) -> Instant {
    const MARGIN_MS: u64 = 1_000;
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    Instant::now() + std::time::Duration::from_millis(deadline_ms.saturating_sub(now_ms).saturating_sub(MARGIN_MS))
}
