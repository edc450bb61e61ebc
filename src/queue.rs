//! The queue port: where sharded fan-out hands work to other invocations.
//!
//! [`SqsQueue`] sends to the push queue itself (`PUSH_QUEUE_URL`), so shard jobs reach the
//! same function through the same event source; [`MemoryQueue`] holds bodies for tests and
//! for the local benchmarks, which play the event source themselves.

use std::collections::VecDeque;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_sqs::error::DisplayErrorContext;
use futures::future::join_all;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("could not enqueue: {0}")]
pub struct QueueError(pub String);

#[async_trait]
pub trait Queue: Send + Sync {
    /// Enqueues every body, or fails. After a failure some bodies may have gone anyway.
    async fn send(&self, bodies: Vec<String>) -> Result<(), QueueError>;
}

/// SQS `SendMessage`, one call per body, concurrently (a sharded push enqueues a handful).
/// `SendMessageBatch` would save calls but caps the whole batch at the size of one message.
/// The client is built on the first send: only a push above `SHARD_THRESHOLD` needs one, and
/// building it costs ~0.75 M instructions of every cold start otherwise (BENCHMARKS.md).
pub struct SqsQueue {
    sdk: aws_config::SdkConfig,
    client: OnceLock<aws_sdk_sqs::Client>,
    url: String,
}

impl SqsQueue {
    pub fn new(sdk: &aws_config::SdkConfig, url: impl Into<String>) -> Self {
        SqsQueue {
            sdk: sdk.clone(),
            client: OnceLock::new(),
            url: url.into(),
        }
    }

    /// The SDK's standard retries (3 attempts, throttling included) stay on; the timeouts keep a
    /// stalled endpoint from eating the deadline the enqueue is meant to beat.
    fn client(&self) -> &aws_sdk_sqs::Client {
        self.client.get_or_init(|| {
            let timeouts = aws_config::timeout::TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(2))
                .operation_attempt_timeout(Duration::from_secs(3))
                .operation_timeout(Duration::from_secs(8))
                .build();
            let config = aws_sdk_sqs::config::Builder::from(&self.sdk)
                .timeout_config(timeouts)
                .build();
            aws_sdk_sqs::Client::from_conf(config)
        })
    }
}

#[async_trait]
impl Queue for SqsQueue {
    async fn send(&self, bodies: Vec<String>) -> Result<(), QueueError> {
        let client = self.client();
        let sends = bodies
            .into_iter()
            .map(|body| client.send_message().queue_url(&self.url).message_body(body).send());
        for result in join_all(sends).await {
            result.map_err(|e| QueueError(DisplayErrorContext(&e).to_string()))?;
        }
        Ok(())
    }
}

/// A FIFO of bodies in memory, each with a message id as SQS gives one (kept on redelivery).
#[derive(Default)]
pub struct MemoryQueue {
    bodies: Mutex<VecDeque<(String, String)>>,
    /// Sends still to fail, for tests of what a failed enqueue does.
    failures: Mutex<usize>,
    /// In the next send, the body at this index fails and the others are enqueued, as when
    /// one of SQS's concurrent SendMessage calls fails.
    partial: Mutex<Option<usize>>,
    /// The next send never completes, as a stalled endpoint.
    stall: std::sync::atomic::AtomicBool,
    next_id: std::sync::atomic::AtomicU64,
}

impl MemoryQueue {
    pub fn new() -> Self {
        Self::default()
    }

    /// The next `n` sends fail without enqueuing anything.
    pub fn fail_next(&self, n: usize) {
        *self.failures.lock().unwrap_or_else(|p| p.into_inner()) = n;
    }

    /// The next send never completes.
    pub fn stall_next(&self) {
        self.stall.store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// In the next send, only the body at index `k` fails; the others are enqueued.
    pub fn fail_body(&self, k: usize) {
        *self.partial.lock().unwrap_or_else(|p| p.into_inner()) = Some(k);
    }

    /// Takes up to `max` bodies, oldest first.
    pub fn take(&self, max: usize) -> Vec<String> {
        self.take_messages(max).into_iter().map(|(_, body)| body).collect()
    }

    /// Takes up to `max` messages (id, body), oldest first.
    pub fn take_messages(&self, max: usize) -> Vec<(String, String)> {
        let mut bodies = self.bodies.lock().unwrap_or_else(|p| p.into_inner());
        let n = max.min(bodies.len());
        bodies.drain(..n).collect()
    }

    /// Enqueues bodies as new messages.
    pub fn requeue(&self, bodies: impl IntoIterator<Item = String>) {
        let messages: Vec<(String, String)> = bodies
            .into_iter()
            .map(|body| {
                let n = self.next_id.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                (format!("msg-{n}"), body)
            })
            .collect();
        self.requeue_messages(messages);
    }

    /// Puts messages back with their ids, as SQS makes a failed record visible again.
    pub fn requeue_messages(&self, messages: impl IntoIterator<Item = (String, String)>) {
        self.bodies.lock().unwrap_or_else(|p| p.into_inner()).extend(messages);
    }

    pub fn len(&self) -> usize {
        self.bodies.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[async_trait]
impl Queue for MemoryQueue {
    async fn send(&self, mut bodies: Vec<String>) -> Result<(), QueueError> {
        if self.stall.swap(false, std::sync::atomic::Ordering::Relaxed) {
            std::future::pending::<()>().await;
        }
        {
            let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
            if *failures > 0 {
                *failures -= 1;
                return Err(QueueError("scripted failure".into()));
            }
        }
        let partial = self.partial.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(k) = partial.filter(|k| *k < bodies.len()) {
            bodies.remove(k);
            self.requeue(bodies);
            return Err(QueueError(format!("scripted failure of body {k}")));
        }
        self.requeue(bodies);
        Ok(())
    }
}
