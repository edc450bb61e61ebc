//! Delivery of one frame to an audience: resolves the audience page by page while posting,
//! with bounded concurrency, jittered back-off on 429/5xx and cleanup on 410.
//!
//! In-flight posts adapt to the @connections rate limit ([`Window`]): a 429 means the account's
//! budget is spent, and more posts at once would only turn into more 429s and burnt retries.

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::Duration;

use futures::stream::{self, FuturesUnordered, StreamExt, TryStreamExt};
use tokio::sync::Notify;
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

/// The in-flight limit of one fan-out, additive-increase / multiplicative-decrease as in TCP
/// congestion control: every success widens it by 1/size (one post per round trip), a 429 cuts
/// it by a quarter, at most once per round trip (429s of posts started before the last cut are
/// the same congestion signal). It never exceeds `PUSH_CONCURRENCY` nor falls below 1.
struct Window {
    state: Mutex<WindowState>,
    freed: Notify,
    max: f64,
}

struct WindowState {
    size: f64,
    in_flight: usize,
    started: u64,
    cut_at: u64,
}

/// One attempt's slot in the window, given back when dropped (a post cut off at the deadline too).
struct Slot<'a> {
    window: &'a Window,
    seq: u64,
    throttled: Option<bool>,
}

impl Window {
    fn new(max: usize) -> Self {
        let max = max.max(1) as f64;
        Window {
            state: Mutex::new(WindowState {
                size: max,
                in_flight: 0,
                started: 0,
                cut_at: 0,
            }),
            freed: Notify::new(),
            max,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, WindowState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn acquire(&self) -> Slot<'_> {
        loop {
            let freed = self.freed.notified();
            {
                let mut state = self.lock();
                if (state.in_flight as f64) < state.size.floor() {
                    state.in_flight += 1;
                    state.started += 1;
                    return Slot {
                        window: self,
                        seq: state.started,
                        throttled: None,
                    };
                }
            }
            freed.await;
        }
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        let mut state = self.window.lock();
        state.in_flight -= 1;
        match self.throttled {
            Some(true) if self.seq > state.cut_at => {
                state.size = (state.size * 0.75).max(1.0);
                state.cut_at = state.started;
            }
            Some(false) => state.size = (state.size + 1.0 / state.size).min(self.window.max),
            _ => {}
        }
        drop(state);
        self.window.freed.notify_waiters();
    }
}

/// Why a push (an SQS record, an EventBridge event, a shard job) was not (fully) delivered.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("malformed body: {0}")]
    Malformed(String),
    #[error("APIGW_MANAGEMENT_ENDPOINT is not set; SQS pushes have no request context to derive it from")]
    NoEndpoint,
    #[error("frame would exceed {} bytes", crate::protocol::MAX_FRAME_BYTES)]
    TooLarge,
    #[error("could not record the publication: {0}")]
    Record(StoreError),
    #[error("could not hand work on to the queue: {0}")]
    Enqueue(String),
    #[error("delivery incomplete: {delivered} delivered, {failed} failed{}", store.as_ref().map(|e| format!(", audience read failed: {e}")).unwrap_or_default())]
    Incomplete {
        delivered: usize,
        failed: usize,
        store: Option<StoreError>,
    },
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

/// What [`Fanout::deliver_ids`] left undone, for a shard job to hand on.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Leftover {
    /// Never posted: the deadline came first.
    pub unsent: Vec<String>,
    /// Posted without success: retries exhausted, a non-retryable answer, or still in flight
    /// when the deadline cut it off (so it may have arrived).
    pub failed: Vec<String>,
}

impl Leftover {
    pub fn is_empty(&self) -> bool {
        self.unsent.is_empty() && self.failed.is_empty()
    }
}

/// Pages read ahead of the posts: the audience read runs in its own task, so the next pages
/// arrive while the current one is posted instead of after it.
const PREFETCH_PAGES: usize = 4;

fn prefetched(mut pages: crate::store::Pages) -> crate::store::Pages {
    let (tx, rx) = tokio::sync::mpsc::channel(PREFETCH_PAGES);
    let reader = tokio::spawn(async move {
        while let Some(page) = pages.next().await {
            if tx.send(page).await.is_err() {
                break;
            }
        }
    });
    // The reader stops with the stream that reads it (a fan-out dropped at the deadline too).
    let reader = tokio_util::task::AbortOnDropHandle::new(reader);
    stream::unfold((rx, reader), |(mut rx, reader)| async move {
        let page = rx.recv().await?;
        Some((page, (rx, reader)))
    })
    .boxed()
}

/// A 410 removes a connection only if it connected longer ago than this: API Gateway answers
/// 410 while `$connect` runs, and its integration may take up to the 29 s integration timeout.
pub const GONE_GRACE: Duration = Duration::from_secs(30);

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Stop starting posts this long before the deadline, so the posts in flight can finish and
/// the rest be handed on; a fifth of the time left when that is shorter.
const STOP_MARGIN: Duration = Duration::from_secs(2);

enum Outcome {
    Delivered,
    Gone,
    Failed,
    Skipped,
    /// Waited for a slot in the window until the deadline was near: never sent.
    Unsent,
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
        let started = Instant::now();
        let pages = match audience {
            Audience::Connection(id) => stream::iter([Ok(vec![id])]).boxed(),
            Audience::Group(group) => prefetched(self.store.members(group, now)),
        };
        let ids = pages
            .map_ok(|page| stream::iter(page.into_iter().map(Ok)))
            .try_flatten();
        let mut report = Report::default();
        let window = &Window::new(self.concurrency);
        let stop = self.stop_at();
        // Posts started and not yet finished, to count as failed if the deadline cuts them off.
        let pending = &std::sync::atomic::AtomicUsize::new(0);
        let mut outcomes = ids
            .map(|id| async move {
                match id {
                    Ok(id) if Some(id.as_str()) == exclude => Ok(Outcome::Skipped),
                    Ok(id) => {
                        pending.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let outcome = self.post(window, stop, endpoint, &id, frame).await;
                        pending.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
                        Ok(outcome)
                    }
                    Err(e) => Err(e),
                }
            })
            .buffer_unordered(self.concurrency.max(1));
        loop {
            let next = match self.deadline {
                Some(deadline) => tokio::select! {
                    biased;
                    next = outcomes.next() => next,
                    // A stalled audience read or post must not hold the invocation past its
                    // deadline: what is cut off fails the delivery (at least one member).
                    () = tokio::time::sleep_until(deadline) => {
                        let cut = pending.load(std::sync::atomic::Ordering::Relaxed).max(1);
                        tracing::warn!(cut, "deadline reached before the audience was done");
                        report.failed += cut;
                        break;
                    }
                },
                None => outcomes.next().await,
            };
            let Some(outcome) = next else { break };
            match outcome {
                Ok(Outcome::Delivered) => report.delivered += 1,
                Ok(Outcome::Gone) => report.gone += 1,
                // Past the deadline nothing new starts: the record fails and is redelivered.
                Ok(Outcome::Failed | Outcome::Unsent) => report.failed += 1,
                Ok(Outcome::Skipped) => {}
                Err(e) => {
                    tracing::error!(error = %e, "could not read the audience to the end");
                    report.store_error = Some(e);
                }
            }
        }
        crate::metrics::record_fanout(report.delivered, report.gone, report.failed, started.elapsed());
        report
    }

    fn stop_at(&self) -> Option<Instant> {
        self.deadline.map(|d| {
            let left = d.saturating_duration_since(Instant::now());
            d - STOP_MARGIN.min(left / 5)
        })
    }

    /// Delivers `frame` to these connections until done or the deadline is near, and returns
    /// who did not get it. Nothing new starts once the deadline is near; posts in flight may
    /// finish until the deadline itself.
    pub async fn deliver_ids(&self, endpoint: &str, ids: Vec<String>, frame: &[u8]) -> (Report, Leftover) {
        let started = Instant::now();
        let window = &Window::new(self.concurrency);
        let stop = self.stop_at();
        let mut report = Report::default();
        let mut leftover = Leftover::default();
        let mut pending = ids.into_iter();
        let mut posting: HashSet<String> = HashSet::new();
        let mut in_flight = FuturesUnordered::new();
        loop {
            let open = stop.is_none_or(|s| Instant::now() < s);
            while open && in_flight.len() < self.concurrency.max(1) {
                let Some(id) = pending.next() else { break };
                posting.insert(id.clone());
                in_flight.push(async move {
                    let outcome = self.post(window, stop, endpoint, &id, frame).await;
                    (id, outcome)
                });
            }
            if in_flight.is_empty() {
                break;
            }
            let done = match self.deadline {
                Some(deadline) => tokio::select! {
                    done = in_flight.next() => done,
                    () = tokio::time::sleep_until(deadline) => None,
                },
                None => in_flight.next().await,
            };
            let Some((id, outcome)) = done else {
                tracing::warn!(cut = posting.len(), "deadline reached with posts in flight");
                report.failed += posting.len();
                leftover.failed.extend(posting.drain());
                break;
            };
            posting.remove(&id);
            match outcome {
                Outcome::Delivered => report.delivered += 1,
                Outcome::Gone => report.gone += 1,
                Outcome::Failed => {
                    report.failed += 1;
                    leftover.failed.push(id);
                }
                Outcome::Unsent => leftover.unsent.push(id),
                Outcome::Skipped => {}
            }
        }
        leftover.unsent.extend(pending);
        crate::metrics::record_fanout(report.delivered, report.gone, report.failed, started.elapsed());
        (report, leftover)
    }

    async fn post(
        &self,
        window: &Window,
        stop: Option<Instant>,
        endpoint: &str,
        connection_id: &str,
        frame: &[u8],
    ) -> Outcome {
        let mut attempt = 0;
        loop {
            let mut slot = window.acquire().await;
            if attempt == 0 && stop.is_some_and(|s| Instant::now() >= s) {
                return Outcome::Unsent;
            }
            // No post outlives the deadline: one still in flight then is cut off and counts as
            // failed (it may have arrived; the record is redelivered or the id handed on).
            let sent = match self.deadline {
                Some(deadline) => tokio::time::timeout_at(deadline, self.notifier.send(endpoint, connection_id, frame))
                    .await
                    .unwrap_or_else(|_| Err(NotifyError::Transport("cut off at the invocation's deadline".into()))),
                None => self.notifier.send(endpoint, connection_id, frame).await,
            };
            let cut_off = self.deadline.is_some_and(|d| Instant::now() >= d);
            slot.throttled = Some(matches!(sent, Err(NotifyError::Throttled)));
            if slot.throttled == Some(true) {
                crate::metrics::add(crate::metrics::Metric::Throttled, 1);
            }
            drop(slot);
            let error = match sent {
                Ok(()) => return Outcome::Delivered,
                Err(NotifyError::Gone) => {
                    // A closed socket whose $disconnect never ran: remove its rows so nobody
                    // posts to it again. Failing to remove is logged; the TTL is the backstop.
                    // API Gateway also answers 410 until the `$connect` integration has
                    // returned (AWS Knowledge Center, "How do I troubleshoot 410 GoneException
                    // errors...": "a message was posted ... before the connection was
                    // established"; API Gateway Developer Guide, "$connect and $disconnect
                    // routes": until the $connect integration completes "the upgrade request
                    // is pending"), so a row younger than that grace is a connection still
                    // being established: it is kept (a conditional delete on `connectedAt`).
                    let cut_off = now_ms() - GONE_GRACE.as_millis() as i64;
                    match self.store.remove_connection_older_than(connection_id, cut_off).await {
                        Ok(true) => tracing::info!(connection_id, "connection gone (410); removed"),
                        Ok(false) => tracing::info!(connection_id, "410 from a connection still in $connect; kept"),
                        Err(e) => tracing::warn!(connection_id, error = %e, "could not remove stale connection"),
                    }
                    return Outcome::Gone;
                }
                Err(e) => e,
            };
            attempt += 1;
            let pause = self.retry.pause(attempt - 1);
            // A retry must fit its pause and its own attempt before the deadline.
            let attempt_time = self.notifier.attempt_timeout().unwrap_or_default();
            let out_of_time = cut_off
                || self
                    .deadline
                    .is_some_and(|d| Instant::now() + pause + attempt_time >= d);
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
                path: None,
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

    /// Issue 11 item 11: a 410 from a connection whose `$connect` is still running (its row is
    /// seconds old) must not delete it; an old row answering 410 is stale and goes.
    #[tokio::test]
    async fn a_410_keeps_a_connection_younger_than_the_grace_and_removes_an_old_one() {
        let store = MemoryStore::new();
        for (id, connected_at) in [
            ("young", now_ms()),
            ("old", now_ms() - GONE_GRACE.as_millis() as i64 - 1),
        ] {
            let c = Connection {
                connection_id: id.into(),
                user_id: "u".into(),
                connected_at,
                source_ip: None,
                path: None,
                ttl: i64::MAX,
            };
            store.put_connection(&c).await.unwrap();
            store.subscribe(id, "t", i64::MAX, 0, usize::MAX).await.unwrap();
        }
        let notifier = MemoryNotifier::new();
        notifier.mark_gone("young");
        notifier.mark_gone("old");
        let retry = fast_retry();
        let fanout = Fanout {
            store: &store,
            notifier: &notifier,
            retry: &retry,
            concurrency: 2,
            deadline: None,
        };
        let report = fanout
            .deliver("http://x", Audience::Group(Group::Topic("t".into())), b"hi", None, 0)
            .await;
        assert_eq!((report.gone, report.failed), (2, 0));
        let young = store
            .get_connection("young", 0)
            .await
            .unwrap()
            .expect("the young row is kept");
        assert_eq!(young.topics, ["t"]);
        assert!(
            store.get_connection("old", 0).await.unwrap().is_none(),
            "the stale row goes"
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

    #[tokio::test]
    async fn near_the_deadline_nothing_starts_and_everything_is_handed_back() {
        let store = store_with(&[]).await;
        let notifier = MemoryNotifier::new();
        notifier.fail_next("b", vec![NotifyError::Throttled]);
        let retry = fast_retry();
        let fanout = Fanout {
            store: &store,
            notifier: &notifier,
            retry: &retry,
            concurrency: 2,
            deadline: None,
        };
        let ids = || vec!["a".to_string(), "b".to_string(), "c".to_string()];
        let (report, leftover) = fanout.deliver_ids("http://x", ids(), b"hi").await;
        assert_eq!((report.delivered, leftover), (3, Leftover::default()));
        let fanout = Fanout {
            deadline: Some(Instant::now()),
            ..fanout
        };
        let (report, leftover) = fanout.deliver_ids("http://x", ids(), b"hi").await;
        assert_eq!(report.delivered, 0);
        let mut unsent = leftover.unsent;
        unsent.sort();
        assert_eq!((unsent, leftover.failed.len()), (ids(), 0));
    }

    #[tokio::test]
    async fn the_window_narrows_on_429_once_per_round_trip_and_widens_on_success() {
        let window = Window::new(8);
        let size = |w: &Window| w.lock().size;
        // Two posts throttled in the same round trip: one cut.
        let mut a = window.acquire().await;
        let mut b = window.acquire().await;
        a.throttled = Some(true);
        b.throttled = Some(true);
        drop(a);
        drop(b);
        assert_eq!(size(&window), 6.0);
        // A post started after the cut and throttled: a second cut.
        let mut c = window.acquire().await;
        c.throttled = Some(true);
        drop(c);
        assert_eq!(size(&window), 4.5);
        let mut d = window.acquire().await;
        d.throttled = Some(false);
        drop(d);
        assert!(size(&window) > 4.5 && size(&window) < 5.0);
        // Never below one slot.
        for _ in 0..20 {
            let mut e = window.acquire().await;
            e.throttled = Some(true);
            drop(e);
        }
        assert_eq!(size(&window), 1.0);
        assert_eq!(window.lock().in_flight, 0);
    }
}
