//! Sharded fan-out: a push too large for one invocation travels on as shard jobs.
//!
//! With a queue configured (`PUSH_QUEUE_URL`), a push to a group lists at most
//! `SHARD_THRESHOLD` members. If the listing ends there, the invocation delivers it all itself.
//! Otherwise it first enqueues the unread rest as jobs (one per cursor: a broadcast is several
//! parallel Scan segments, a topic or user one Query), then delivers what it listed. Each job
//! does the same from its cursor, so the audience is listed in a chain of hand-offs while many
//! invocations post at once.
//!
//! Every job ends by handing on what it did not deliver as explicit connection ids: those never
//! posted because its deadline came (same attempt) and those whose posts failed (next attempt).
//! It reports its record as failed only when its listing failed (before anything was enqueued
//! or posted, so a redelivery repeats nothing), when an enqueue failed, or when an ids-only job
//! runs out of attempts (then only its own ids see duplicates, and SQS moves it on to the DLQ).
//!
//! A job body is `{"shard":1, "id", "data", "topic"|"userId"?, "cursor"|"ids", "attempt"?}`.
//! It can do no more than a push body can: it names a group or connection ids and the data
//! of a `message` frame; `id` keeps the original push's id, so clients see one id per push.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::time::Instant;

use crate::auth::valid_user_id;
use crate::fanout::RecordError;
use crate::fanout::Report;
use crate::hub::{now_secs, Hub};
use crate::protocol::{validate_topic, Frame, MAX_FRAME_BYTES};
use crate::store::table::KEY_ATTRIBUTES;
use crate::store::{Cursor, Group, StoreError, StreamPos, MAX_SEGMENTS};
use crate::topics;

pub const VERSION: u32 = 1;
/// Failed posts are handed on this many times as new jobs; after that the job's record fails
/// and SQS redelivery (then the DLQ) takes over.
pub const MAX_ATTEMPTS: u32 = 3;
/// Connection ids one job may carry.
pub const MAX_JOB_IDS: usize = 10_000;
/// A job body stays under SQS's default 256 KiB message size.
const MAX_JOB_BYTES: usize = 240_000;
/// Rows per store read: about 60 KB of ids and ttls from DynamoDB.
const PAGE_LIMIT: usize = 1000;

/// A shard job as it travels through the queue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Job {
    /// The body kind and its version; a push body never has this key.
    pub shard: u32,
    /// The original push's id: every frame of the push carries it.
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    pub data: Value,
    /// Read the group from here to its end…
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<Cursor>,
    /// …or post to exactly these connections.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ids: Option<Vec<String>>,
    /// How many times these ids were handed on after failed posts.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub attempt: u32,
    /// The publication's place in its stream, so every shard's frames carry the same.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epoch: Option<String>,
    /// A client `sendmessage` handed to the queue: the sender's user id (the frame's `from`)…
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// …and its connection, which is not posted to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub except: Option<String>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

pub(crate) fn valid_connection_id(c: &str) -> bool {
    !c.is_empty() && c.len() <= 128 && !c.chars().any(|ch| ch.is_whitespace() || ch.is_control())
}

impl Job {
    /// A job if the body is one (`Ok(None)`: not a job, parse it as a push).
    pub fn from_body(body: &str) -> Result<Option<Job>, String> {
        // Cheap test first: a push body without the word cannot be a job.
        if !body.contains("\"shard\"") {
            return Ok(None);
        }
        let value: Value = match serde_json::from_str(body) {
            Ok(v) => v,
            Err(_) => return Ok(None),
        };
        if value.get("shard").is_none() {
            return Ok(None);
        }
        let job: Job = serde_json::from_value(value).map_err(|e| format!("shard job: {e}"))?;
        job.validate().map_err(|e| format!("shard job: {e}"))?;
        Ok(Some(job))
    }

    fn validate(&self) -> Result<(), String> {
        if self.shard != VERSION {
            return Err(format!("unsupported version {}", self.shard));
        }
        if !valid_connection_id(&self.id) {
            return Err("id must be 1-128 characters without spaces".into());
        }
        match (&self.topic, &self.user_id) {
            (Some(_), Some(_)) => return Err("give topic or userId, not both".into()),
            (Some(t), None) => validate_topic(t)?,
            (None, Some(u)) if !valid_user_id(u) => return Err("userId must be 1-128 printable characters".into()),
            _ => {}
        }
        match (&self.cursor, &self.ids) {
            (Some(cursor), None) => {
                if let Some(s) = cursor.segment {
                    if self.topic.is_some() || self.user_id.is_some() {
                        return Err("only a broadcast reads Scan segments".into());
                    }
                    if !(1..=MAX_SEGMENTS).contains(&s.total) || s.index >= s.total {
                        return Err("segment must be index < total ≤ 1000000".into());
                    }
                }
                if let Some(after) = &cursor.after {
                    let known = after
                        .iter()
                        .all(|(k, v)| KEY_ATTRIBUTES.contains(&k.as_str()) && !v.is_empty() && v.len() <= 1024);
                    if after.is_empty() || !known {
                        return Err("cursor names unknown key attributes".into());
                    }
                }
            }
            (None, Some(ids)) => {
                if ids.is_empty() || ids.len() > MAX_JOB_IDS {
                    return Err(format!("ids must list 1-{MAX_JOB_IDS} connections"));
                }
                if !ids.iter().all(|c| valid_connection_id(c)) {
                    return Err("every id must be 1-128 characters without spaces".into());
                }
            }
            _ => return Err("give cursor or ids, exactly one".into()),
        }
        match (&self.seq, &self.epoch) {
            (None, None) => {}
            (Some(_), Some(epoch)) if epoch.len() <= 64 && !epoch.chars().any(char::is_control) => {
                if self.topic.is_none() && self.user_id.is_none() {
                    return Err("a broadcast has no seq".into());
                }
            }
            _ => return Err("give seq and epoch together (an epoch of at most 64 characters)".into()),
        }
        if self.from.as_deref().is_some_and(|u| !valid_user_id(u)) {
            return Err("from must be 1-128 printable characters".into());
        }
        if self.except.as_deref().is_some_and(|c| !valid_connection_id(c)) {
            return Err("except must be 1-128 characters without spaces".into());
        }
        if self.attempt > MAX_ATTEMPTS {
            return Err(format!("attempt must be at most {MAX_ATTEMPTS}"));
        }
        Ok(())
    }

    fn group(&self) -> Group {
        match (&self.topic, &self.user_id) {
            (Some(t), _) => Group::Topic(t.clone()),
            (None, Some(u)) => Group::User(u.clone()),
            (None, None) => Group::Everyone,
        }
    }

    fn with_cursor(&self, cursor: Cursor) -> Job {
        Job {
            cursor: Some(cursor),
            ids: None,
            attempt: 0,
            ..self.clone()
        }
    }

    /// Jobs for these ids, as many as keep each body under the size limit.
    fn with_ids(&self, ids: Vec<String>, attempt: u32) -> Vec<String> {
        let base = Job {
            cursor: None,
            ids: Some(Vec::new()),
            attempt,
            ..self.clone()
        };
        let base_len = serde_json::to_string(&base).map_or(0, |b| b.len());
        let mut bodies = Vec::new();
        let mut chunk: Vec<String> = Vec::new();
        let mut len = base_len;
        let flush = |chunk: Vec<String>, bodies: &mut Vec<String>| {
            let job = Job {
                ids: Some(chunk),
                ..base.clone()
            };
            bodies.push(serde_json::to_string(&job).unwrap_or_default());
        };
        for id in ids {
            let cost = id.len() + 3;
            if !chunk.is_empty() && (len + cost > MAX_JOB_BYTES || chunk.len() == MAX_JOB_IDS) {
                flush(std::mem::take(&mut chunk), &mut bodies);
                len = base_len;
            }
            len += cost;
            chunk.push(id);
        }
        if !chunk.is_empty() {
            flush(chunk, &mut bodies);
        }
        bodies
    }
}

/// How long a job's claim is kept: SQS's longest message retention (14 days), so no copy of
/// a job can still be on the queue when its claim expires.
const CLAIM_TTL_SECONDS: i64 = 14 * 86_400;

/// A job's identity: a hash of its canonical body. A hand-off repeated after a partial failure
/// enqueues byte-identical bodies, so the copies share it; two different jobs never do (each
/// cursor and each connection id of a push belongs to exactly one job of it).
pub fn job_key(job: &Job) -> String {
    use sha2::{Digest, Sha256};
    let body = serde_json::to_string(job).unwrap_or_default();
    let digest = Sha256::digest(body.as_bytes());
    digest[..16].iter().map(|b| format!("{b:02x}")).collect()
}

/// Claims `job` for the SQS message `message_id` before it runs: `false` when another message
/// (a copy enqueued again by a hand-off that failed part-way and was redelivered) holds it,
/// so the copy is dropped instead of forking the chain. The same message may claim again: that
/// is SQS redelivering a job that failed. Costs one conditional PutItem per job.
pub async fn claim(hub: &Hub, job: &Job, message_id: &str) -> Result<bool, RecordError> {
    let key = job_key(job);
    let claimed = hub
        .store
        .claim_job(&key, message_id, now_secs() + CLAIM_TTL_SECONDS)
        .await
        .map_err(|e| RecordError::Incomplete {
            delivered: 0,
            failed: 0,
            store: Some(e),
        })?;
    if !claimed {
        tracing::warn!(job = key, "a copy of this shard job already ran or runs; dropped");
    }
    Ok(claimed)
}

/// The job that starts a sharded push: the whole group, from its start cursors.
pub fn root(id: &str, group: &Group, data: Value, pos: Option<&StreamPos>) -> Job {
    let (topic, user_id) = match group {
        Group::Everyone => (None, None),
        Group::User(u) => (None, Some(u.clone())),
        Group::Topic(t) => (Some(t.clone()), None),
    };
    Job {
        shard: VERSION,
        id: id.to_owned(),
        topic,
        user_id,
        data,
        cursor: None,
        ids: None,
        attempt: 0,
        seq: pos.map(|p| p.seq),
        epoch: pos.map(|p| p.epoch.clone()),
        from: None,
        except: None,
    }
}

/// What [`client_send`] did with a client's `sendmessage`.
#[derive(Debug)]
pub enum ClientSend {
    /// The whole audience (the sender excluded), small enough to post inline.
    Small(Vec<String>),
    /// Larger than `SHARD_THRESHOLD`: handed to the queue as jobs, like any large push.
    Queued,
}

/// A client `sendmessage` runs inline only while its audience is small: it is answered within
/// API Gateway's 29 s integration timeout and never retried, so a large one would deliver
/// partly in silence. Lists up to `SHARD_THRESHOLD` members; if there are more, enqueues the
/// listed ones as an ids job and every unread cursor as a cursor job, with the sender as
/// `from` and left out.
///
/// `job` is the push's [`root`] job with the sender in `from` and `except`.
pub async fn client_send(hub: &Hub, job: Job, deadline: Option<Instant>) -> Result<ClientSend, RecordError> {
    let group = job.group();
    let sender = job.except.clone().unwrap_or_default();
    let sender = sender.as_str();
    let threshold = hub.config.shard_threshold.max(1);
    let mut cursors = hub.store.start(&group);
    let mut ids: Vec<String> = Vec::new();
    let Some(queue) = &hub.queue else {
        return Err(RecordError::Enqueue("no push queue is configured".into()));
    };
    while ids.len() <= threshold && !cursors.is_empty() {
        let want = (threshold + 1 - ids.len()).div_ceil(cursors.len()).clamp(1, PAGE_LIMIT);
        let now = now_secs();
        let pages = futures::future::join_all(cursors.iter().map(|c| hub.store.page(&group, c, want, now))).await;
        cursors.clear();
        for page in pages {
            let page = page.map_err(|e| incomplete(&Report::default(), 0, Some(e)))?;
            ids.extend(page.ids.into_iter().filter(|c| c != sender));
            cursors.extend(page.next);
        }
    }
    if cursors.is_empty() && ids.len() <= threshold {
        return Ok(ClientSend::Small(ids));
    }
    let mut bodies = if ids.is_empty() {
        Vec::new()
    } else {
        job.with_ids(ids, 0)
    };
    bodies.extend(
        cursors
            .into_iter()
            .map(|c| serde_json::to_string(&job.with_cursor(c)).unwrap_or_default()),
    );
    bounded(deadline, queue.send(bodies))
        .await
        .map_err(|e| RecordError::Enqueue(e.to_string()))?;
    Ok(ClientSend::Queued)
}

/// Delivers a push to `group` through the queue when it is large: see the module docs.
pub async fn deliver_push(
    hub: &Hub,
    endpoint: &str,
    id: &str,
    group: Group,
    data: Value,
    pos: Option<&StreamPos>,
    deadline: Option<Instant>,
) -> Result<(), RecordError> {
    let job = root(id, &group, data, pos);
    let cursors = hub.store.start(&group);
    run(hub, endpoint, &job, cursors, Vec::new(), deadline).await
}

/// Runs one job received from the queue.
pub async fn deliver_job(hub: &Hub, endpoint: &str, job: Job, deadline: Option<Instant>) -> Result<(), RecordError> {
    let cursors = job.cursor.clone().into_iter().collect();
    let ids = job.ids.clone().unwrap_or_default();
    run(hub, endpoint, &job, cursors, ids, deadline).await
}

async fn run(
    hub: &Hub,
    endpoint: &str,
    job: &Job,
    mut cursors: Vec<Cursor>,
    mut ids: Vec<String>,
    deadline: Option<Instant>,
) -> Result<(), RecordError> {
    // A user's pushes are the stream `user:<id>`, and their frames say so.
    let topic = (job.topic.clone()).or_else(|| job.user_id.as_deref().map(topics::user_stream));
    let frame = Frame::Message {
        topic,
        data: job.data.clone(),
        from: job.from.clone(),
        id: Some(job.id.clone()),
        seq: job.seq,
        epoch: job.epoch.clone(),
    }
    .to_json();
    if frame.len() > MAX_FRAME_BYTES {
        return Err(RecordError::TooLarge);
    }
    let group = job.group();
    let threshold = hub.config.shard_threshold.max(1);
    // Posts stop HANDOFF_BUDGET before the deadline, so handing on what was not delivered fits
    // before it too; the hand-offs themselves are cut off at the deadline.
    let post_deadline = deadline.map(|d| d.checked_sub(HANDOFF_BUDGET).unwrap_or(d).max(Instant::now().min(d)));
    let fanout = hub.fanout(post_deadline);
    let mut total = Report::default();
    loop {
        // 1. List up to the threshold, one page per cursor at a time (segments in parallel).
        while ids.len() < threshold && !cursors.is_empty() {
            let want = (threshold - ids.len()).div_ceil(cursors.len()).clamp(1, PAGE_LIMIT);
            let now = now_secs();
            let reads = cursors.iter().map(|c| hub.store.page(&group, c, want, now));
            let pages = futures::future::join_all(reads).await;
            cursors.clear();
            for page in pages {
                // Nothing was posted or enqueued yet with a queue (listing comes first), so a
                // redelivery repeats nothing; without one, the record fails as any failed push.
                let page = page.map_err(|e| incomplete(&total, 0, Some(e)))?;
                ids.extend(page.ids.into_iter().filter(|c| job.except.as_ref() != Some(c)));
                cursors.extend(page.next);
            }
        }
        // 2. Hand the unread rest to other invocations before posting, so they start now.
        if let (Some(queue), false) = (&hub.queue, cursors.is_empty()) {
            let bodies: Vec<String> = cursors
                .drain(..)
                .map(|c| serde_json::to_string(&job.with_cursor(c)).unwrap_or_default())
                .collect();
            let jobs = bodies.len();
            if let Err(e) = bounded(deadline, queue.send(bodies)).await {
                tracing::error!(error = %e, "could not enqueue the rest of the audience");
                // Before anything was posted a redelivery repeats nothing; after, it is the
                // reported failure that duplicates may follow.
                return Err(RecordError::Enqueue(e.to_string()));
            }
            tracing::info!(jobs, "rest of the audience handed to the queue");
            crate::metrics::add(crate::metrics::Metric::ShardHandOffs, jobs as u64);
        }
        // 3. Post what was listed.
        let batch = std::mem::take(&mut ids);
        let (report, leftover) = fanout.deliver_ids(endpoint, batch, frame.as_bytes()).await;
        total.delivered += report.delivered;
        total.gone += report.gone;
        total.failed += report.failed;
        // 4. Hand on what was not delivered.
        if !leftover.is_empty() {
            let Some(queue) = &hub.queue else {
                return Err(incomplete(&total, leftover.unsent.len(), None));
            };
            let retry_attempt = job.attempt + 1;
            if !leftover.failed.is_empty() && retry_attempt > MAX_ATTEMPTS {
                tracing::error!(
                    failed = leftover.failed.len(),
                    "posts still failing after {MAX_ATTEMPTS} hand-offs"
                );
                return Err(incomplete(&total, 0, None));
            }
            let mut bodies = Vec::new();
            if !leftover.unsent.is_empty() {
                bodies.extend(job.with_ids(leftover.unsent.clone(), job.attempt));
            }
            if !leftover.failed.is_empty() {
                bodies.extend(job.with_ids(leftover.failed.clone(), retry_attempt));
            }
            let jobs = bodies.len();
            bounded(deadline, queue.send(bodies)).await.map_err(|e| {
                tracing::error!(error = %e, "could not hand on undelivered connections");
                RecordError::Enqueue(e.to_string())
            })?;
            crate::metrics::add(crate::metrics::Metric::ShardHandOffs, jobs as u64);
            tracing::info!(
                unsent = leftover.unsent.len(),
                failed = leftover.failed.len(),
                "undelivered connections handed to the queue"
            );
            // Whatever cursors remain (no queue case excluded above) were enqueued in step 2.
            break;
        }
        if cursors.is_empty() {
            break;
        }
        // No queue: this invocation lists on; near the deadline it gives up and fails the record.
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return Err(incomplete(&total, 0, None));
        }
    }
    tracing::info!(
        delivered = total.delivered,
        gone = total.gone,
        failed = total.failed,
        "pushed"
    );
    Ok(())
}

/// Time kept for the hand-off after posting: one SQS SendMessage attempt (3 s, [`crate::queue`]).
const HANDOFF_BUDGET: std::time::Duration = std::time::Duration::from_secs(3);

/// A hand-off that cannot finish by the deadline fails (the record is redelivered, and the
/// job claims make the repeated hand-off harmless) instead of outliving the invocation.
async fn bounded(
    deadline: Option<Instant>,
    send: impl std::future::Future<Output = Result<(), crate::queue::QueueError>>,
) -> Result<(), crate::queue::QueueError> {
    match deadline {
        Some(d) => tokio::time::timeout_at(d, send)
            .await
            .unwrap_or_else(|_| Err(crate::queue::QueueError("cut off at the invocation's deadline".into()))),
        None => send.await,
    }
}

fn incomplete(report: &Report, unsent: usize, store: Option<StoreError>) -> RecordError {
    RecordError::Incomplete {
        delivered: report.delivered,
        failed: report.failed + unsent,
        store,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::Arc;
    use std::time::Duration;

    use serde_json::json;

    use super::*;
    use crate::config::Config;
    use crate::fanout::RetryPolicy;
    use crate::notify::memory::MemoryNotifier;
    use crate::notify::NotifyError;
    use crate::queue::MemoryQueue;
    use crate::store::memory::MemoryStore;
    use crate::store::{Connection, ConnectionStore};

    struct Setup {
        hub: Arc<Hub>,
        store: Arc<MemoryStore>,
        notifier: Arc<MemoryNotifier>,
        queue: Arc<MemoryQueue>,
    }

    async fn setup(connections: usize, threshold: usize, with_queue: bool) -> Setup {
        let store = Arc::new(MemoryStore::with_page_size(7));
        for i in 0..connections {
            let c = Connection {
                connection_id: format!("c{i:05}"),
                user_id: format!("u{}", i % 3),
                connected_at: 0,
                source_ip: None,
                path: None,
                ttl: i64::MAX,
            };
            store.put_connection(&c).await.unwrap();
            if i % 2 == 0 {
                store
                    .subscribe(&c.connection_id, "news", i64::MAX, 0, usize::MAX)
                    .await
                    .unwrap();
            }
        }
        let threshold = threshold.to_string();
        let config = Config::from_lookup(|name| match name {
            "CONNECTIONS_TABLE" => Some("t".into()),
            "APIGW_MANAGEMENT_ENDPOINT" => Some("http://127.0.0.1:9/prod".into()),
            "SHARD_THRESHOLD" => Some(threshold.clone()),
            "PUSH_CONCURRENCY" => Some("8".into()),
            _ => None,
        })
        .unwrap();
        let notifier = Arc::new(MemoryNotifier::new());
        let queue = Arc::new(MemoryQueue::new());
        let mut hub = Hub::new(config, store.clone(), notifier.clone());
        if with_queue {
            hub = hub.with_queue(queue.clone());
        }
        hub.retry = RetryPolicy {
            max_attempts: 3,
            base: Duration::from_millis(1),
            cap: Duration::from_millis(2),
        };
        Setup {
            hub: Arc::new(hub),
            store,
            notifier,
            queue,
        }
    }

    fn batch(records: &[(String, String)]) -> aws_lambda_events::sqs::SqsEvent {
        let records: Vec<Value> = records
            .iter()
            .map(|(id, body)| json!({"messageId": id, "body": body, "eventSource": "aws:sqs"}))
            .collect();
        serde_json::from_value(json!({ "Records": records })).unwrap()
    }

    /// One invocation on these records; returns the bodies it reported as failed.
    async fn invoke(hub: &Hub, records: Vec<(String, String)>, deadline: Option<Instant>) -> Vec<String> {
        invoke_messages(hub, records, deadline)
            .await
            .into_iter()
            .map(|(_, body)| body)
            .collect()
    }

    /// As [`invoke`], returning the failed records with their message ids.
    async fn invoke_messages(
        hub: &Hub,
        records: Vec<(String, String)>,
        deadline: Option<Instant>,
    ) -> Vec<(String, String)> {
        let response = crate::push::handle(hub, &batch(&records), deadline).await.unwrap();
        let failed: Vec<&str> = response
            .batch_item_failures
            .iter()
            .map(|f| f.item_identifier.as_str())
            .collect();
        records
            .into_iter()
            .filter(|(id, _)| failed.contains(&id.as_str()))
            .collect()
    }

    /// Plays the SQS event source: rounds of `m` concurrent invocations of up to two records
    /// each, until the queue is empty. Every third round the first invocation starts with its
    /// deadline already past. Failed records go back on the queue.
    async fn drain(s: &Setup, m: usize) -> usize {
        let mut round = 0;
        while !s.queue.is_empty() {
            round += 1;
            assert!(round < 1000, "the queue never drains");
            let mut invocations = Vec::new();
            for i in 0..m {
                let records = s.queue.take_messages(2);
                if records.is_empty() {
                    break;
                }
                let deadline = (round % 3 == 0 && i == 0).then(Instant::now);
                invocations.push(invoke_messages(&s.hub, records, deadline));
            }
            // SQS redelivers a failed record under its own message id.
            for failed in futures::future::join_all(invocations).await {
                s.queue.requeue_messages(failed);
            }
        }
        round
    }

    /// Per connection id, the frames it received.
    fn received(notifier: &MemoryNotifier) -> HashMap<String, Vec<Value>> {
        let mut by_id: HashMap<String, Vec<Value>> = HashMap::new();
        for (id, frame) in notifier.sent() {
            by_id.entry(id).or_default().push(serde_json::from_str(&frame).unwrap());
        }
        by_id
    }

    #[tokio::test]
    async fn a_large_broadcast_reaches_everyone_once_across_invocations() {
        let s = setup(600, 40, true).await;
        // Throttled more often than one job retries: the connection is handed on, twice.
        s.notifier.fail_next("c00123", vec![NotifyError::Throttled; 7]);
        s.notifier.mark_gone("c00007");
        let failed = invoke(&s.hub, vec![("push-1".into(), r#"{"data":{"n":1}}"#.into())], None).await;
        assert!(failed.is_empty());
        assert!(s.queue.len() >= 2, "the rest of the broadcast was handed on");
        assert!(
            s.notifier.sent().len() <= 40 + 7 * 4,
            "the first invocation delivers about one listing"
        );
        let rounds = drain(&s, 4).await;
        assert!(rounds > 3);
        let got = received(&s.notifier);
        assert_eq!(got.len(), 599, "everyone but the closed connection");
        for (id, frames) in &got {
            assert_eq!(frames.len(), 1, "{id} got the push {} times", frames.len());
            assert_eq!(
                frames[0],
                json!({"action": "message", "data": {"n": 1}, "id": "push-1"})
            );
        }
        assert!(
            s.store.get_connection("c00007", 0).await.unwrap().is_none(),
            "410 cleaned up"
        );
    }

    #[tokio::test]
    async fn a_large_topic_push_is_a_chain_of_cursor_jobs() {
        let s = setup(300, 25, true).await;
        let failed = invoke(
            &s.hub,
            vec![("push-t".into(), r#"{"topic":"news","data":"hi"}"#.into())],
            None,
        )
        .await;
        assert!(failed.is_empty());
        let jobs: Vec<Job> = s
            .queue
            .take(10)
            .iter()
            .map(|b| Job::from_body(b).unwrap().unwrap())
            .collect();
        assert_eq!(jobs.len(), 1, "a Query has one cursor to hand on");
        assert_eq!(jobs[0].topic.as_deref(), Some("news"));
        assert!(jobs[0]
            .cursor
            .as_ref()
            .is_some_and(|c| c.segment.is_none() && c.after.is_some()));
        s.queue.requeue(jobs.iter().map(|j| serde_json::to_string(j).unwrap()));
        drain(&s, 3).await;
        let got = received(&s.notifier);
        assert_eq!(got.len(), 150, "every subscriber (the even ids)");
        assert!(got
            .values()
            .all(|f| f.len() == 1 && f[0]["topic"] == "news" && f[0]["id"] == "push-t"));
    }

    #[tokio::test]
    async fn below_the_threshold_one_invocation_delivers_everything() {
        let s = setup(30, 40, true).await;
        let failed = invoke(&s.hub, vec![("p".into(), r#"{"userId":"u1","data":1}"#.into())], None).await;
        assert!(failed.is_empty());
        assert!(s.queue.is_empty(), "no job for a small push");
        assert_eq!(received(&s.notifier).len(), 10);
    }

    #[tokio::test]
    async fn without_a_queue_a_job_is_delivered_in_full_by_one_invocation() {
        let s = setup(200, 30, false).await;
        let job =
            serde_json::to_string(&root("p", &Group::Everyone, json!(2), None).with_cursor(Cursor::default())).unwrap();
        let failed = invoke(&s.hub, vec![("j".into(), job.clone())], None).await;
        assert!(failed.is_empty());
        let got = received(&s.notifier);
        assert_eq!(got.len(), 200);
        assert!(got.values().all(|f| f.len() == 1));
        // Without a queue nothing can be handed on: past its deadline the record fails.
        let s = setup(200, 30, false).await;
        let failed = invoke(&s.hub, vec![("j".into(), job.clone())], Some(Instant::now())).await;
        assert_eq!(failed, [job]);
    }

    #[tokio::test]
    async fn a_failed_hand_off_fails_the_record_before_anything_is_posted() {
        let s = setup(100, 10, true).await;
        s.queue.fail_next(1);
        let body = r#"{"data":"x"}"#.to_string();
        let failed = invoke(&s.hub, vec![("p".into(), body.clone())], None).await;
        assert_eq!(failed, std::slice::from_ref(&body));
        assert!(s.notifier.sent().is_empty(), "a redelivery must not duplicate anything");
        assert!(s.queue.is_empty());
        // SQS redelivers it; now it goes through, once for everyone.
        s.queue.requeue([body]);
        drain(&s, 2).await;
        let got = received(&s.notifier);
        assert_eq!(got.len(), 100);
        assert!(got.values().all(|f| f.len() == 1));
    }

    /// Issue 11 item 8: the root enqueues one cursor job per Scan segment; when the k-th send
    /// fails the others are on the queue already, and the redelivered push enqueues them all
    /// again. Each copy must not start a chain of its own: everyone still gets the push once.
    #[tokio::test]
    async fn a_hand_off_failing_at_the_kth_send_does_not_fork_the_chain() {
        for k in 0..4 {
            let s = setup(600, 40, true).await;
            s.queue.fail_body(k);
            let push = ("push-1".to_string(), r#"{"data":{"n":1}}"#.to_string());
            let failed = invoke_messages(&s.hub, vec![push.clone()], None).await;
            assert_eq!(failed, std::slice::from_ref(&push), "k={k}: the record fails");
            assert_eq!(s.queue.len(), 3, "k={k}: the other jobs went anyway");
            assert!(
                s.notifier.sent().is_empty(),
                "k={k}: nothing posted before the hand-off"
            );
            // Some of the jobs run before SQS redelivers the push.
            let early = s.queue.take_messages(2);
            s.queue.requeue_messages(invoke_messages(&s.hub, early, None).await);
            s.queue.requeue_messages([push]);
            drain(&s, 3).await;
            let got = received(&s.notifier);
            assert_eq!(got.len(), 600, "k={k}");
            for (id, frames) in &got {
                assert_eq!(frames.len(), 1, "k={k}: {id} got the push {} times", frames.len());
            }
        }
    }

    /// Issue 11 item 9: a hand-off to a queue that never answers must not hold the invocation
    /// past its deadline: the record fails by then (paused time: the test itself is instant).
    #[tokio::test(start_paused = true)]
    async fn a_stalled_hand_off_fails_the_record_by_the_deadline() {
        let s = setup(600, 40, true).await;
        s.queue.stall_next();
        let deadline = Instant::now() + Duration::from_secs(10);
        let body = r#"{"data":"x"}"#.to_string();
        let failed = tokio::time::timeout(
            Duration::from_secs(60),
            invoke(&s.hub, vec![("p".into(), body.clone())], Some(deadline)),
        )
        .await
        .expect("the invocation ends");
        assert!(Instant::now() <= deadline, "returned after the deadline");
        assert_eq!(failed, [body], "the record is reported failed, to be redelivered");
    }

    #[test]
    fn copies_of_a_job_share_its_key_and_other_jobs_do_not() {
        let job = root("m", &Group::Everyone, json!(1), None);
        let a = job.with_cursor(Cursor::default());
        let copy = Job::from_body(&serde_json::to_string(&a).unwrap()).unwrap().unwrap();
        assert_eq!(job_key(&a), job_key(&copy));
        let other_segment = job.with_cursor(Cursor {
            segment: Some(crate::store::Segment { index: 1, total: 4 }),
            after: None,
        });
        assert_ne!(job_key(&a), job_key(&other_segment));
        let retry = &job.with_ids(vec!["c1".into()], 1)[0];
        let first = &job.with_ids(vec!["c1".into()], 0)[0];
        let (retry, first) = (
            Job::from_body(retry).unwrap().unwrap(),
            Job::from_body(first).unwrap().unwrap(),
        );
        assert_ne!(job_key(&retry), job_key(&first), "each attempt is a job of its own");
        assert_eq!(job_key(&a).len(), 32);
    }

    #[tokio::test]
    async fn posts_failing_past_the_attempts_fail_only_their_ids_job() {
        let s = setup(20, 50, true).await;
        s.notifier.fail_next(
            "c00003",
            vec![
                NotifyError::Rejected {
                    status: 403,
                    message: "no".into()
                };
                100
            ],
        );
        let failed = invoke(&s.hub, vec![("p".into(), r#"{"data":0}"#.into())], None).await;
        assert!(failed.is_empty(), "the failed connection was handed on instead");
        for attempt in 1..=MAX_ATTEMPTS {
            let body = s.queue.take(1).pop().expect("handed on");
            let job = Job::from_body(&body).unwrap().unwrap();
            assert_eq!(
                (job.ids.as_deref(), job.attempt),
                (Some(&["c00003".to_string()][..]), attempt)
            );
            let failed = invoke(&s.hub, vec![("r".into(), body.clone())], None).await;
            let last = attempt == MAX_ATTEMPTS;
            assert_eq!(failed.len(), usize::from(last), "attempt {attempt}");
        }
        assert!(s.queue.is_empty());
        assert_eq!(received(&s.notifier).len(), 19);
    }

    #[test]
    fn jobs_parse_strictly() {
        let ok = r#"{"shard":1,"id":"m-1","topic":"news","data":{"a":1},"cursor":{"after":{"connectionId":"c1","topic":"news","pk":"CONN#c1","sk":"TOPIC#news"}}}"#;
        let job = Job::from_body(ok).unwrap().unwrap();
        assert_eq!(job.group(), Group::Topic("news".into()));
        assert_eq!(
            Job::from_body(&serde_json::to_string(&job).unwrap()).unwrap(),
            Some(job)
        );
        assert_eq!(
            Job::from_body(r#"{"data":1}"#).unwrap(),
            None,
            "a push body is not a job"
        );
        for (body, why) in [
            (r#"{"shard":2,"id":"m","data":1,"ids":["c"]}"#, "version"),
            (
                r#"{"shard":1,"id":"m","data":1,"ids":["c"],"extra":1}"#,
                "unknown field",
            ),
            (r#"{"shard":1,"id":"m","data":1}"#, "exactly one"),
            (
                r#"{"shard":1,"id":"m","data":1,"ids":["c"],"cursor":{}}"#,
                "exactly one",
            ),
            (r#"{"shard":1,"id":"m","data":1,"ids":[]}"#, "ids must list"),
            (r#"{"shard":1,"id":"m","data":1,"ids":["a b"]}"#, "every id"),
            (r#"{"shard":1,"id":"","data":1,"ids":["c"]}"#, "id must be"),
            (r#"{"shard":1,"id":"m","data":1,"ids":["c"],"attempt":9}"#, "attempt"),
            (
                r#"{"shard":1,"id":"m","topic":"bad topic","data":1,"ids":["c"]}"#,
                "topic",
            ),
            (
                r#"{"shard":1,"id":"m","topic":"t","userId":"u","data":1,"ids":["c"]}"#,
                "not both",
            ),
            (
                r#"{"shard":1,"id":"m","topic":"t","data":1,"cursor":{"segment":{"index":0,"total":2}}}"#,
                "only a broadcast",
            ),
            (
                r#"{"shard":1,"id":"m","data":1,"cursor":{"segment":{"index":2,"total":2}}}"#,
                "segment",
            ),
            (
                r#"{"shard":1,"id":"m","data":1,"cursor":{"after":{"secret":"x"}}}"#,
                "unknown key",
            ),
            (r#"{"shard":1,"id":"m","data":1,"cursor":{"after":{}}}"#, "unknown key"),
            (r#"{"shard":"1","id":"m","data":1,"ids":["c"]}"#, "shard job"),
        ] {
            let err = Job::from_body(body).unwrap_err();
            assert!(err.contains(why), "{body}: {err}");
        }
        let too_many: Vec<String> = (0..=MAX_JOB_IDS).map(|i| format!("c{i}")).collect();
        let body = json!({"shard": 1, "id": "m", "data": 1, "ids": too_many}).to_string();
        assert!(Job::from_body(&body).unwrap_err().contains("ids must list"));
    }

    #[test]
    fn handed_on_ids_are_split_under_the_message_size() {
        let job = root("m", &Group::Everyone, json!("x".repeat(100_000)), None);
        let ids: Vec<String> = (0..3000).map(|i| format!("{i:0>100}")).collect();
        let bodies = job.with_ids(ids.clone(), 1);
        assert!(bodies.len() > 1);
        let mut back = Vec::new();
        for body in &bodies {
            assert!(body.len() <= MAX_JOB_BYTES, "{}", body.len());
            let job = Job::from_body(body).unwrap().unwrap();
            assert_eq!(job.attempt, 1);
            back.extend(job.ids.unwrap());
        }
        assert_eq!(back, ids);
    }
}
