//! The connection store port: connections, their users and their topic subscriptions.
//!
//! Handlers see only [`ConnectionStore`]; [`dynamo::DynamoStore`] and [`memory::MemoryStore`]
//! implement it; [`capacity`] meters the DynamoDB one's calls and consumed capacity. Reads
//! skip rows whose `ttl` has passed, because DynamoDB deletes expired items lazily (up to days
//! later).

pub mod capacity;
#[doc(hidden)]
pub mod contract;
pub mod dynamo;
pub mod memory;
pub mod online;
pub mod stream;
pub mod table;

use std::collections::BTreeMap;

use async_trait::async_trait;
use futures::stream::BoxStream;
use serde::{Deserialize, Serialize};

pub use online::{OnlineCursor, OnlinePage, OnlineUser};
pub use stream::{History, NewPublication, Recorded, StoredPublication, StreamPos};

/// A registered WebSocket connection. Holds no credentials, ever.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connection {
    pub connection_id: String,
    pub user_id: String,
    /// Epoch milliseconds, as API Gateway reports `connectedAt`.
    pub connected_at: i64,
    pub source_ip: Option<String>,
    /// The URL path the client connected to (`EdgePath`, see [`crate::edge`]); never a credential.
    pub path: Option<String>,
    /// Epoch seconds after which the row is dead even if still stored.
    pub ttl: i64,
}

/// A connection with the topics it subscribes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionView {
    pub connection: Connection,
    pub topics: Vec<String>,
}

/// A set of connections to resolve page by page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Group {
    Everyone,
    User(String),
    Topic(String),
}

/// Whether a user is online (at least one live connection) and when they were last seen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Presence {
    pub user_id: String,
    pub online: bool,
    /// Epoch milliseconds of the latest connect or disconnect; `None` when never seen or
    /// when the presence record has expired.
    pub last_active_at: Option<i64>,
}

/// Connection ids, one page per backend round trip; an error ends the stream.
pub type Pages = BoxStream<'static, Result<Vec<String>, StoreError>>;

/// Where a paged read of a group resumes. Serialisable, because a shard job carries it from
/// one invocation to the next (see [`crate::shard`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cursor {
    /// A broadcast reads one of several disjoint parallel Scan segments.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub segment: Option<Segment>,
    /// The backend's resume key (DynamoDB's `LastEvaluatedKey`; every key attribute is a
    /// string); `None` starts at the beginning.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Segment {
    pub index: u32,
    pub total: u32,
}

/// Largest segment count a cursor may name: DynamoDB's own limit for `TotalSegments`.
pub const MAX_SEGMENTS: u32 = 1_000_000;

/// One page of a cursor read: live ids, and where the next page starts (`None`: this was the last).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    pub ids: Vec<String>,
    pub next: Option<Cursor>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    #[error("connection {0} already exists")]
    AlreadyExists(String),
    #[error("connection {0} is not registered")]
    NotConnected(String),
    #[error("connection {connection_id} already subscribes to {limit} topics")]
    TooManyTopics { connection_id: String, limit: usize },
    #[error("store failed during {op}: {message}")]
    Backend { op: &'static str, message: String },
}

#[async_trait]
pub trait ConnectionStore: Send + Sync {
    /// Registers a connection; fails with `AlreadyExists` rather than overwrite one.
    async fn put_connection(&self, connection: &Connection) -> Result<(), StoreError>;

    /// The live connection and its topics, or `None`.
    async fn get_connection(&self, connection_id: &str, now: i64) -> Result<Option<ConnectionView>, StoreError>;

    /// Removes the connection and every subscription it holds. Idempotent. The connection
    /// row goes first, so a `subscribe` racing the removal fails instead of leaving an orphan.
    async fn remove_connection(&self, connection_id: &str) -> Result<(), StoreError>;

    /// As [`Self::remove_connection`], but only when the connection's `connectedAt` (epoch ms)
    /// is before `connected_before` (a conditional delete); `Ok(false)` when a younger row
    /// was kept. A 410 from a post racing `$connect` must not delete the new connection.
    async fn remove_connection_older_than(
        &self,
        connection_id: &str,
        connected_before: i64,
    ) -> Result<bool, StoreError>;

    /// Claims a shard job for the SQS message `claimer` until `ttl` (epoch seconds): `true`
    /// when the job was unclaimed or already claimed by the same message (a redelivery),
    /// `false` when another message (a duplicate enqueue) holds it.
    async fn claim_job(&self, job_key: &str, claimer: &str, ttl: i64) -> Result<bool, StoreError>;

    /// Takes one token from the connection's send bucket (GCRA: one token every `interval_ms`,
    /// at most `burst` at once) at `now_ms`; `false` when the bucket is empty. Fails with
    /// `NotConnected` when the connection row is absent.
    async fn take_send_token(
        &self,
        connection_id: &str,
        now_ms: i64,
        interval_ms: i64,
        burst: u32,
    ) -> Result<bool, StoreError>;

    /// Subscribes a live connection (`NotConnected` otherwise) until `ttl`, unless that would
    /// take it past `max_topics` subscriptions (`TooManyTopics`; concurrent subscribes cannot
    /// slip past the cap together). Idempotent: renewing a subscription is never refused.
    async fn subscribe(
        &self,
        connection_id: &str,
        topic: &str,
        ttl: i64,
        now: i64,
        max_topics: usize,
    ) -> Result<(), StoreError>;

    /// Idempotent; frees a place under the cap.
    async fn unsubscribe(&self, connection_id: &str, topic: &str) -> Result<(), StoreError>;

    /// The live members of `group`, paginated to the end.
    fn members(&self, group: Group, now: i64) -> Pages;

    /// Records that `user_id` was active at `at` (epoch ms), keeping the record until `ttl`
    /// (epoch seconds). An older `at` than the stored one changes nothing, so a late
    /// `$disconnect` cannot move the time backwards.
    async fn touch_user(&self, user_id: &str, at: i64, ttl: i64) -> Result<(), StoreError>;

    /// The presence of each user, in the order given. Callers pass distinct ids, at most
    /// [`MAX_PRESENCE_USERS`] of them.
    async fn presence(&self, user_ids: &[String], now: i64) -> Result<Vec<Presence>, StoreError>;

    /// Cursors that together read every member of `group` exactly once and can be read in
    /// parallel: one per Scan segment for a broadcast, one otherwise.
    fn start(&self, group: &Group) -> Vec<Cursor>;

    /// One page of at most about `limit` members of `group` from `cursor` (fewer when rows
    /// are expired; possibly none while `next` is still set).
    async fn page(&self, group: &Group, cursor: &Cursor, limit: usize, now: i64) -> Result<Page, StoreError>;

    /// Records a publication on its stream ([`stream`]): the stream's next seq, or, when its
    /// key is already held, the seq the key holds. Seqs of one epoch are consecutive from 1.
    async fn record(&self, publication: &NewPublication<'_>, now: i64) -> Result<Recorded, StoreError>;

    /// The stream's head and at most `limit` live publications with seq > `after` among its
    /// last `keep`, ascending. A stream without a live head gets one (seq 0, a new epoch, kept
    /// until `ttl`), so every reader learns the epoch its position belongs to.
    async fn history(
        &self,
        stream: &str,
        after: u64,
        limit: usize,
        keep: u64,
        ttl: i64,
        now: i64,
    ) -> Result<History, StoreError>;

    // Topic presence ([`crate::presence`]): subscriptions to presence topics carry their user.

    /// As [`Self::subscribe`] (the same cap), recording `user_id` as a member of `topic`.
    /// `Ok(true)` when the connection was no member of `topic` before (a plain subscription
    /// to it counts as none), `Ok(false)` when it already was.
    async fn subscribe_member(
        &self,
        connection_id: &str,
        user_id: &str,
        topic: &str,
        ttl: i64,
        now: i64,
        max_topics: usize,
    ) -> Result<bool, StoreError>;

    /// As [`Self::unsubscribe`]; `Ok(true)` when a subscription was removed.
    async fn unsubscribe_member(&self, connection_id: &str, topic: &str) -> Result<bool, StoreError>;

    /// The connections of `user_id` with a live member subscription to `topic`.
    async fn member_connections(&self, topic: &str, user_id: &str, now: i64) -> Result<Vec<String>, StoreError>;

    /// The user id of every live member subscription to `topic`, ordered by user id, so the
    /// connections of one user are adjacent; paged like [`Self::members`].
    fn topic_members(&self, topic: &str, now: i64) -> Pages;

    /// One page of at most `limit` users with a live connection, in a stable order, each with
    /// its count of live connections and last activity; a user is never split across pages.
    async fn online_users(&self, cursor: &OnlineCursor, limit: usize, now: i64) -> Result<OnlinePage, StoreError>;
}

/// Users per [`ConnectionStore::presence`] call: one DynamoDB BatchGetItem.
pub const MAX_PRESENCE_USERS: usize = 100;

/// Whether a row with this `ttl` (epoch seconds) is still alive at `now`.
pub fn is_live(ttl: i64, now: i64) -> bool {
    ttl > now
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn memory_store_meets_the_contract() {
        super::contract::run(&super::memory::MemoryStore::with_page_size(10), "t-").await;
    }

    #[tokio::test]
    async fn memory_store_keeps_members_and_lists_who_is_online() {
        super::contract::members::run(&super::memory::MemoryStore::with_page_size(10), "m-").await;
        super::contract::members::online(&super::memory::MemoryStore::with_page_size(10)).await;
    }

    #[tokio::test]
    async fn memory_store_keeps_streams() {
        super::contract::history::run(&super::memory::MemoryStore::new(), "h-").await;
    }
}
