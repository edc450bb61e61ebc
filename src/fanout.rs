//! Delivery of one frame to an audience: resolves the audience page by page while posting,
//! with bounded concurrency, jittered back-off on 429/5xx and cleanup on 410.

use std::time::Duration;

use futures::stream::{self, StreamExt, TryStreamExt};
use tokio::time::Instant;

use crate::notify::{Notifier, NotifyError};
use crate::store::{ConnectionStore, Group, StoreError};

/// Retries of one post. Full jitter: each pause is uniform in [0, min(cap, base·2^attempt)],
/// so many invocations throttled together do not retry in lockstep.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    pub base: Duration,
    pub cap: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 5,
            base: Duration::from_millis(50),
            cap: Duration::from_secs(2),
        }
    }
}

impl RetryPolicy {
    fn pause(&self, attempt: u32) -> Duration {
        let ceiling = self.base.saturating_mul(1 << attempt.min(16)).min(self.cap);
        ceiling.mul_f64(fastrand::f64())
    }
}

/// Who a frame goes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Audience {
    Group(Group),
    /// One connection: posted directly, no store read.
    Connection(String),
}

/// What happened to one delivery.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Report {
    pub delivered: usize,
    /// Connections found closed (410) and removed from the store.
    pub gone: usize,
    /// Connections that did not get the frame: retries exhausted or a non-retryable error.
    pub failed: usize,
    /// The audience could not be read to the end: some members may not have been tried.
    pub store_error: Option<StoreError>,
}

impl Report {
    /// Every member was tried and none failed (closed connections are not failures).
    pub fn is_complete(&self) -> bool {
        self.failed == 0 && self.store_error.is_none()
    }
}

enum Outcome {
    Delivered,
    Gone,
    Failed,
    Skipped,
}

pub struct Fanout<'a> {
    pub store: &'a dyn ConnectionStore,
    pub notifier: &'a dyn Notifier,
    pub retry: &'a RetryPolicy,
    pub concurrency: usize,
    /// Retries that would sleep past this give up instead, so the invocation can report
    /// what failed before Lambda kills it.
    pub deadline: Option<Instant>,
}

impl Fanout<'_> {
    /// Delivers `frame` to every member of `audience` except `exclude`.
    pub async fn deliver(
        &self,
        endpoint: &str,
        audience: Audience,
        frame: &[u8],
        exclude: Option<&str>,
        now: i64,
    ) -> Report {
        let pages = match audience {
            Audience::Connection(id) => stream::iter([Ok(vec![id])]).boxed(),
            Audience::Group(group) => self.store.members(group, now),
        };
        let ids = pages
            .map_ok(|page| stream::iter(page.into_iter().map(Ok)))
            .try_flatten();
        let mut report = Report::default();
        let mut outcomes = ids
            .map(|id| async move {
                match id {
                    Ok(id) if Some(id.as_str()) == exclude => Ok(Outcome::Skipped),
                    Ok(id) => Ok(self.post(endpoint, &id, frame).await),
                    Err(e) => Err(e),
                }
            })
            .buffer_unordered(self.concurrency.max(1));
        while let Some(outcome) = outcomes.next().await {
            match outcome {
                Ok(Outcome::Delivered) => report.delivered += 1,
                Ok(Outcome::Gone) => report.gone += 1,
                Ok(Outcome::Failed) => report.failed += 1,
                Ok(Outcome::Skipped) => {}
                Err(e) => {
                    tracing::error!(error = %e, "could not read the audience to the end");
                    report.store_error = Some(e);
                }
            }
        }
        report
    }

    async fn post(&self, endpoint: &str, connection_id: &str, frame: &[u8]) -> Outcome {
        let mut attempt = 0;
        loop {
            let error = match self.notifier.send(endpoint, connection_id, frame).await {
                Ok(()) => return Outcome::Delivered,
                Err(NotifyError::Gone) => {
                    // A closed socket whose $disconnect never ran: remove its rows so nobody
                    // posts to it again. Failing to remove is logged; the TTL is the backstop.
                    if let Err(e) = self.store.remove_connection(connection_id).await {
                        tracing::warn!(connection_id, error = %e, "could not remove stale connection");
                    }
                    tracing::info!(connection_id, "connection gone (410); removed");
                    return Outcome::Gone;
                }
                Err(e) => e,
            };
            attempt += 1;
            let pause = self.retry.pause(attempt - 1);
            let out_of_time = self.deadline.is_some_and(|d| Instant::now() + pause >= d);
            if !error.is_retryable() || attempt >= self.retry.max_attempts || out_of_time {
                tracing::warn!(connection_id, attempts = attempt, error = %error, "delivery failed");
                return Outcome::Failed;
            }
            tracing::debug!(connection_id, attempt, error = %error, "retrying after {pause:?}");
            tokio::time::sleep(pause).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::memory::MemoryNotifier;
    use crate::store::memory::MemoryStore;
    use crate::store::Connection;

    fn fast_retry() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 4,
            base: Duration::from_millis(1),
            cap: Duration::from_millis(2),
        }
    }

    async fn store_with(ids: &[&str]) -> MemoryStore {
        let store = MemoryStore::with_page_size(2);
        for id in ids {
            let c = Connection {
                connection_id: id.to_string(),
                user_id: "u".into(),
                connected_at: 0,
                source_ip: None,
                ttl: 100,
            };
            store.put_connection(&c).await.unwrap();
        }
        store
    }

    #[tokio::test]
    async fn delivers_across_pages_retries_and_cleans_up() {
        let store = store_with(&["a", "b", "c", "d", "e"]).await;
        let notifier = MemoryNotifier::new();
        notifier.fail_next("b", vec![NotifyError::Throttled, NotifyError::Server(503)]);
        notifier.fail_next("c", vec![NotifyError::Throttled; 10]);
        notifier.mark_gone("d");
        let retry = fast_retry();
        let fanout = Fanout {
            store: &store,
            notifier: &notifier,
            retry: &retry,
            concurrency: 3,
            deadline: None,
        };
        let report = fanout
            .deliver("http://x", Audience::Group(Group::Everyone), b"hi", Some("e"), 0)
            .await;
        assert_eq!(
            report,
            Report {
                delivered: 2,
                gone: 1,
                failed: 1,
                store_error: None
            }
        );
        assert!(!report.is_complete());
        let mut got: Vec<String> = notifier.sent().into_iter().map(|(id, _)| id).collect();
        got.sort();
        assert_eq!(got, ["a", "b"]);
        assert!(
            store.get_connection("d", 0).await.unwrap().is_none(),
            "410 removes the stale connection"
        );
    }

    #[tokio::test]
    async fn non_retryable_errors_fail_at_once() {
        let store = store_with(&[]).await;
        let notifier = MemoryNotifier::new();
        notifier.fail_next(
            "x",
            vec![NotifyError::Rejected {
                status: 403,
                message: "forbidden".into(),
            }],
        );
        let retry = fast_retry();
        let fanout = Fanout {
            store: &store,
            notifier: &notifier,
            retry: &retry,
            concurrency: 1,
            deadline: None,
        };
        let report = fanout
            .deliver("http://x", Audience::Connection("x".into()), b"hi", None, 0)
            .await;
        assert_eq!(report.failed, 1);
        // The scripted 403 was the only failure; a retry would have delivered.
        assert!(notifier.sent().is_empty());
    }

    #[tokio::test]
    async fn deadline_stops_retrying() {
        let store = store_with(&[]).await;
        let notifier = MemoryNotifier::new();
        notifier.fail_next("x", vec![NotifyError::Throttled]);
        let retry = RetryPolicy {
            max_attempts: 5,
            base: Duration::from_secs(60),
            cap: Duration::from_secs(60),
        };
        // The deadline has already passed, so any pause overruns it: one attempt, then failure.
        let deadline = Some(Instant::now());
        let fanout = Fanout {
            store: &store,
            notifier: &notifier,
            retry: &retry,
            concurrency: 1,
            deadline,
        };
        let report = fanout
            .deliver("http://x", Audience::Connection("x".into()), b"hi", None, 0)
            .await;
        assert_eq!(report.failed, 1);
    }
}
