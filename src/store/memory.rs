//! In-memory store: unit tests and the local hub's embedded default.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Mutex;

use async_trait::async_trait;
use futures::stream::{self, StreamExt};

use super::stream::{first_kept, new_epoch};
use super::table::CONNECTION_ID;
use super::{
    is_live, Connection, ConnectionStore, ConnectionView, Cursor, Group, History, NewPublication, OnlineCursor,
    OnlinePage, OnlineUser, Page, Pages, Presence, Recorded, Segment, StoreError, StoredPublication, StreamPos,
};

/// Parallel segments of a broadcast, as the DynamoDB store's default.
const SCAN_SEGMENTS: u32 = 4;

/// A stable hash (FNV-1a) spreads ids over segments the same way in every process.
fn segment_of(id: &str, total: u32) -> u32 {
    let hash = id.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
    });
    (hash % total.max(1) as u64) as u32
}

#[derive(Default)]
struct State {
    connections: BTreeMap<String, Connection>,
    /// topic → (connection id → ttl)
    topics: HashMap<String, BTreeMap<String, i64>>,
    /// connection id → topics, so removal need not walk every topic.
    subscriptions: HashMap<String, BTreeSet<String>>,
    /// (connection id, topic) → user: the subscriptions that are memberships of a presence
    /// topic, as the DynamoDB store's `member` attribute marks them.
    members: HashMap<(String, String), String>,
    /// user id → (last active, epoch ms; ttl)
    presence: HashMap<String, (i64, i64)>,
    /// job key → (claiming message, ttl)
    claims: HashMap<String, (String, i64)>,
    /// connection id → the send bucket's theoretical arrival time (epoch ms)
    send_tat: HashMap<String, i64>,
    /// stream → its head and publications
    streams: HashMap<String, StreamState>,
    /// (stream, idempotency key) → who holds it, the seq it got, ttl
    keys: HashMap<(String, String), KeyState>,
}

struct StreamState {
    head: StreamPos,
    ttl: i64,
    /// seq → (body, ttl); only this epoch's.
    publications: BTreeMap<u64, (String, i64)>,
}

struct KeyState {
    owner: String,
    pos: StreamPos,
    ttl: i64,
}

impl State {
    /// The stream's live head, a new one (seq 0, new epoch) in place of a missing or expired one.
    fn stream(&mut self, stream: &str, ttl: i64, now: i64) -> &mut StreamState {
        let state = self.streams.entry(stream.to_owned()).or_insert_with(|| StreamState {
            head: StreamPos {
                seq: 0,
                epoch: new_epoch(),
            },
            ttl,
            publications: BTreeMap::new(),
        });
        if !is_live(state.ttl, now) {
            *state = StreamState {
                head: StreamPos {
                    seq: 0,
                    epoch: new_epoch(),
                },
                ttl,
                publications: BTreeMap::new(),
            };
        }
        state
    }
}

pub struct MemoryStore {
    state: Mutex<State>,
    page_size: usize,
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::with_page_size(1000)
    }
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// Small pages let tests exercise the same multi-page paths as DynamoDB.
    pub fn with_page_size(page_size: usize) -> Self {
        MemoryStore {
            state: Mutex::new(State::default()),
            page_size: page_size.max(1),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock leaves plain maps that are still consistent enough to read.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[async_trait]
impl ConnectionStore for MemoryStore {
    async fn put_connection(&self, connection: &Connection) -> Result<(), StoreError> {
        let mut state = self.lock();
        if state.connections.contains_key(&connection.connection_id) {
            return Err(StoreError::AlreadyExists(connection.connection_id.clone()));
        }
        state
            .connections
            .insert(connection.connection_id.clone(), connection.clone());
        Ok(())
    }

    async fn get_connection(&self, connection_id: &str, now: i64) -> Result<Option<ConnectionView>, StoreError> {
        let state = self.lock();
        let Some(connection) = state.connections.get(connection_id).filter(|c| is_live(c.ttl, now)) else {
            return Ok(None);
        };
        let topics = state
            .subscriptions
            .get(connection_id)
            .into_iter()
            .flatten()
            .filter(|t| {
                state
                    .topics
                    .get(*t)
                    .and_then(|m| m.get(connection_id))
                    .is_some_and(|ttl| is_live(*ttl, now))
            })
            .cloned()
            .collect();
        Ok(Some(ConnectionView {
            connection: connection.clone(),
            topics,
        }))
    }

    async fn remove_connection_older_than(
        &self,
        connection_id: &str,
        connected_before: i64,
    ) -> Result<bool, StoreError> {
        let young = self
            .lock()
            .connections
            .get(connection_id)
            .is_some_and(|c| c.connected_at >= connected_before);
        if young {
            return Ok(false);
        }
        self.remove_connection(connection_id).await?;
        Ok(true)
    }

    async fn claim_job(&self, job_key: &str, claimer: &str, ttl: i64) -> Result<bool, StoreError> {
        let mut state = self.lock();
        match state.claims.get(job_key) {
            Some((by, _)) if by != claimer => Ok(false),
            _ => {
                state.claims.insert(job_key.to_owned(), (claimer.to_owned(), ttl));
                Ok(true)
            }
        }
    }

    async fn take_send_token(
        &self,
        connection_id: &str,
        now_ms: i64,
        interval_ms: i64,
        burst: u32,
    ) -> Result<bool, StoreError> {
        let mut state = self.lock();
        if !state.connections.contains_key(connection_id) {
            return Err(StoreError::NotConnected(connection_id.to_owned()));
        }
        let tolerance = interval_ms.saturating_mul(i64::from(burst.max(1)) - 1);
        let tat = state
            .send_tat
            .get(connection_id)
            .copied()
            .unwrap_or(i64::MIN)
            .max(now_ms);
        if tat > now_ms.saturating_add(tolerance) {
            return Ok(false);
        }
        state
            .send_tat
            .insert(connection_id.to_owned(), tat.saturating_add(interval_ms));
        Ok(true)
    }

    async fn remove_connection(&self, connection_id: &str) -> Result<(), StoreError> {
        let mut state = self.lock();
        state.connections.remove(connection_id);
        state.send_tat.remove(connection_id);
        for topic in state.subscriptions.remove(connection_id).unwrap_or_default() {
            state.members.remove(&(connection_id.to_owned(), topic.clone()));
            if let Some(members) = state.topics.get_mut(&topic) {
                members.remove(connection_id);
                if members.is_empty() {
                    state.topics.remove(&topic);
                }
            }
        }
        Ok(())
    }

    async fn subscribe(
        &self,
        connection_id: &str,
        topic: &str,
        ttl: i64,
        now: i64,
        max_topics: usize,
    ) -> Result<(), StoreError> {
        let mut state = self.lock();
        if !state
            .connections
            .get(connection_id)
            .is_some_and(|c| is_live(c.ttl, now))
        {
            return Err(StoreError::NotConnected(connection_id.to_owned()));
        }
        // Counted under the same lock as the insert, so concurrent subscribes cannot race past.
        let held = state.subscriptions.get(connection_id);
        let renewal = held.is_some_and(|topics| topics.contains(topic));
        if !renewal && held.map_or(0, |topics| topics.len()) >= max_topics {
            return Err(StoreError::TooManyTopics {
                connection_id: connection_id.to_owned(),
                limit: max_topics,
            });
        }
        // A plain subscription replaces a member one, as the DynamoDB item is overwritten.
        state.members.remove(&(connection_id.to_owned(), topic.to_owned()));
        state
            .topics
            .entry(topic.to_owned())
            .or_default()
            .insert(connection_id.to_owned(), ttl);
        state
            .subscriptions
            .entry(connection_id.to_owned())
            .or_default()
            .insert(topic.to_owned());
        Ok(())
    }

    async fn unsubscribe(&self, connection_id: &str, topic: &str) -> Result<(), StoreError> {
        let mut state = self.lock();
        state.members.remove(&(connection_id.to_owned(), topic.to_owned()));
        if let Some(members) = state.topics.get_mut(topic) {
            members.remove(connection_id);
        }
        if let Some(topics) = state.subscriptions.get_mut(connection_id) {
            topics.remove(topic);
        }
        Ok(())
    }

    fn members(&self, group: Group, now: i64) -> Pages {
        let state = self.lock();
        let ids: Vec<String> = match &group {
            Group::Everyone => state
                .connections
                .values()
                .filter(|c| is_live(c.ttl, now))
                .map(|c| c.connection_id.clone())
                .collect(),
            Group::User(user) => state
                .connections
                .values()
                .filter(|c| &c.user_id == user && is_live(c.ttl, now))
                .map(|c| c.connection_id.clone())
                .collect(),
            Group::Topic(topic) => state
                .topics
                .get(topic)
                .into_iter()
                .flatten()
                .filter(|(_, ttl)| is_live(**ttl, now))
                .map(|(id, _)| id.clone())
                .collect(),
        };
        let pages: Vec<Result<Vec<String>, StoreError>> = ids.chunks(self.page_size).map(|c| Ok(c.to_vec())).collect();
        stream::iter(pages).boxed()
    }

    async fn touch_user(&self, user_id: &str, at: i64, ttl: i64) -> Result<(), StoreError> {
        let mut state = self.lock();
        let entry = state.presence.entry(user_id.to_owned()).or_insert((at, ttl));
        if at >= entry.0 {
            *entry = (at, ttl);
        }
        Ok(())
    }

    async fn presence(&self, user_ids: &[String], now: i64) -> Result<Vec<Presence>, StoreError> {
        let state = self.lock();
        Ok(user_ids
            .iter()
            .map(|user| Presence {
                user_id: user.clone(),
                online: state
                    .connections
                    .values()
                    .any(|c| &c.user_id == user && is_live(c.ttl, now)),
                last_active_at: state
                    .presence
                    .get(user)
                    .filter(|(_, ttl)| is_live(*ttl, now))
                    .map(|(at, _)| *at),
            })
            .collect())
    }

    fn start(&self, group: &Group) -> Vec<Cursor> {
        match group {
            Group::Everyone => (0..SCAN_SEGMENTS)
                .map(|index| Cursor {
                    segment: Some(Segment {
                        index,
                        total: SCAN_SEGMENTS,
                    }),
                    after: None,
                })
                .collect(),
            _ => vec![Cursor::default()],
        }
    }

    async fn record(&self, p: &NewPublication<'_>, now: i64) -> Result<Recorded, StoreError> {
        let mut state = self.lock();
        let key = p.key.map(|k| (p.stream.to_owned(), k.to_owned()));
        if let Some(held) = key
            .as_ref()
            .and_then(|k| state.keys.get(k))
            .filter(|k| is_live(k.ttl, now))
        {
            return Ok(if held.owner == p.owner {
                Recorded::Again(held.pos.clone())
            } else {
                Recorded::Duplicate(Some(held.pos.clone()))
            });
        }
        let stream = state.stream(p.stream, p.ttl, now);
        // Expired publications leave from the front (they are in ttl order too).
        while let Some(oldest) = stream.publications.first_entry() {
            if is_live(oldest.get().1, now) {
                break;
            }
            oldest.remove();
        }
        stream.head.seq += 1;
        stream.ttl = stream.ttl.max(p.ttl);
        stream.publications.insert(stream.head.seq, (p.body.to_owned(), p.ttl));
        let pos = stream.head.clone();
        if let Some(key) = key {
            let held = KeyState {
                owner: p.owner.to_owned(),
                pos: pos.clone(),
                ttl: p.ttl,
            };
            state.keys.insert(key, held);
        }
        Ok(Recorded::New(pos))
    }

    async fn history(
        &self,
        stream: &str,
        after: u64,
        limit: usize,
        keep: u64,
        ttl: i64,
        now: i64,
    ) -> Result<History, StoreError> {
        let mut state = self.lock();
        let stream = state.stream(stream, ttl, now);
        let head = stream.head.clone();
        let from = first_kept(head.seq, after, keep);
        let mut live = stream
            .publications
            .range(from..)
            .take_while(|(seq, _)| **seq <= head.seq)
            .filter(|(_, (_, ttl))| is_live(*ttl, now))
            .map(|(seq, (body, _))| StoredPublication {
                seq: *seq,
                body: body.clone(),
            });
        let publications: Vec<StoredPublication> = live.by_ref().take(limit).collect();
        let more = live.next().is_some();
        Ok(History {
            head,
            publications,
            more,
        })
    }

    async fn subscribe_member(
        &self,
        connection_id: &str,
        user_id: &str,
        topic: &str,
        ttl: i64,
        now: i64,
        max_topics: usize,
    ) -> Result<bool, StoreError> {
        let key = (connection_id.to_owned(), topic.to_owned());
        let new = !self.lock().members.contains_key(&key);
        self.subscribe(connection_id, topic, ttl, now, max_topics).await?;
        self.lock().members.insert(key, user_id.to_owned());
        Ok(new)
    }

    async fn unsubscribe_member(&self, connection_id: &str, topic: &str) -> Result<bool, StoreError> {
        let removed = {
            let state = self.lock();
            state.topics.get(topic).is_some_and(|m| m.contains_key(connection_id))
        };
        self.unsubscribe(connection_id, topic).await?;
        Ok(removed)
    }

    async fn member_connections(&self, topic: &str, user_id: &str, now: i64) -> Result<Vec<String>, StoreError> {
        let state = self.lock();
        Ok(state
            .topics
            .get(topic)
            .into_iter()
            .flatten()
            .filter(|(id, ttl)| {
                is_live(**ttl, now)
                    && state
                        .members
                        .get(&((*id).clone(), topic.to_owned()))
                        .map(String::as_str)
                        == Some(user_id)
            })
            .map(|(id, _)| id.clone())
            .collect())
    }

    fn topic_members(&self, topic: &str, now: i64) -> Pages {
        let state = self.lock();
        let mut users: Vec<String> = state
            .topics
            .get(topic)
            .into_iter()
            .flatten()
            .filter(|(_, ttl)| is_live(**ttl, now))
            .filter_map(|(id, _)| state.members.get(&(id.clone(), topic.to_owned())).cloned())
            .collect();
        users.sort();
        let pages: Vec<Result<Vec<String>, StoreError>> =
            users.chunks(self.page_size).map(|c| Ok(c.to_vec())).collect();
        stream::iter(pages).boxed()
    }

    async fn online_users(&self, cursor: &OnlineCursor, limit: usize, now: i64) -> Result<OnlinePage, StoreError> {
        let state = self.lock();
        let mut counts: BTreeMap<&str, u32> = BTreeMap::new();
        for c in state.connections.values().filter(|c| is_live(c.ttl, now)) {
            if cursor.done.as_deref().is_none_or(|done| c.user_id.as_str() > done) {
                *counts.entry(c.user_id.as_str()).or_default() += 1;
            }
        }
        let limit = limit.max(1);
        let more = counts.len() > limit;
        let users: Vec<OnlineUser> = counts
            .into_iter()
            .take(limit)
            .map(|(user, connections)| OnlineUser {
                user_id: user.to_owned(),
                connections,
                last_active_at: state
                    .presence
                    .get(user)
                    .filter(|(_, ttl)| is_live(*ttl, now))
                    .map(|(at, _)| *at),
            })
            .collect();
        let next = match users.last() {
            Some(last) if more => Some(OnlineCursor {
                after: None,
                done: Some(last.user_id.clone()),
            }),
            _ => None,
        };
        Ok(OnlinePage { users, next })
    }

    async fn page(&self, group: &Group, cursor: &Cursor, limit: usize, now: i64) -> Result<Page, StoreError> {
        let after = match &cursor.after {
            None => None,
            Some(key) => Some(key.get(CONNECTION_ID).cloned().ok_or_else(|| StoreError::Backend {
                op: "page",
                message: format!("cursor key lacks {CONNECTION_ID}"),
            })?),
        };
        let in_segment = |id: &str| cursor.segment.is_none_or(|s| segment_of(id, s.total) == s.index);
        let state = self.lock();
        // Like DynamoDB's Limit, `limit` counts rows read, live or not.
        let rows: Vec<(String, i64)> = match group {
            Group::Everyone | Group::User(_) => state
                .connections
                .range::<String, _>((
                    after
                        .as_ref()
                        .map_or(std::ops::Bound::Unbounded, std::ops::Bound::Excluded),
                    std::ops::Bound::Unbounded,
                ))
                .filter(|(id, c)| in_segment(id) && !matches!(group, Group::User(u) if &c.user_id != u))
                .take(limit.max(1) + 1)
                .map(|(id, c)| (id.clone(), c.ttl))
                .collect(),
            Group::Topic(topic) => state
                .topics
                .get(topic)
                .into_iter()
                .flat_map(|members| {
                    members.range::<String, _>((
                        after
                            .as_ref()
                            .map_or(std::ops::Bound::Unbounded, std::ops::Bound::Excluded),
                        std::ops::Bound::Unbounded,
                    ))
                })
                .filter(|(id, _)| in_segment(id))
                .take(limit.max(1) + 1)
                .map(|(id, ttl)| (id.clone(), *ttl))
                .collect(),
        };
        let more = rows.len() > limit.max(1);
        let rows = &rows[..rows.len().min(limit.max(1))];
        let next = match rows.last() {
            Some((last, _)) if more => Some(Cursor {
                segment: cursor.segment,
                after: Some([(CONNECTION_ID.to_owned(), last.clone())].into()),
            }),
            _ => None,
        };
        let ids = rows
            .iter()
            .filter(|(_, ttl)| is_live(*ttl, now))
            .map(|(id, _)| id.clone())
            .collect();
        Ok(Page { ids, next })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Subscribes racing a removal on threads of their own: whatever the interleaving, none
    /// outlives the connection (the store contract checks the sequential case on both backends).
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn subscribes_racing_a_removal_leave_no_orphan() {
        for round in 0..20 {
            let store = std::sync::Arc::new(MemoryStore::new());
            let id = format!("racing-{round}");
            let connection = Connection {
                connection_id: id.clone(),
                user_id: "u".into(),
                connected_at: 0,
                source_ip: None,
                path: None,
                ttl: i64::MAX,
            };
            store.put_connection(&connection).await.unwrap();
            let subscribes: Vec<_> = (0..8)
                .map(|i| {
                    let (store, id) = (store.clone(), id.clone());
                    tokio::spawn(async move { store.subscribe(&id, &format!("t{i}"), i64::MAX, 0, usize::MAX).await })
                })
                .collect();
            let removal = {
                let (store, id) = (store.clone(), id.clone());
                tokio::spawn(async move { store.remove_connection(&id).await })
            };
            removal.await.unwrap().unwrap();
            for task in subscribes {
                let result = task.await.unwrap();
                assert!(
                    matches!(result, Ok(()) | Err(StoreError::NotConnected(_))),
                    "{result:?}"
                );
            }
            for i in 0..8 {
                let (members, _) =
                    crate::store::contract::collect(store.as_ref(), Group::Topic(format!("t{i}")), 0).await;
                assert!(members.is_empty(), "orphan in t{i}: {members:?}");
            }
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn racing_subscribes_never_pass_the_cap() {
        let store = std::sync::Arc::new(MemoryStore::new());
        let connection = Connection {
            connection_id: "c".into(),
            user_id: "u".into(),
            connected_at: 0,
            source_ip: None,
            path: None,
            ttl: 100,
        };
        store.put_connection(&connection).await.unwrap();
        let tasks: Vec<_> = (0..50)
            .map(|i| {
                let store = store.clone();
                tokio::spawn(async move { store.subscribe("c", &format!("t{i}"), 100, 0, 7).await })
            })
            .collect();
        let mut admitted = 0;
        for task in tasks {
            match task.await.unwrap() {
                Ok(()) => admitted += 1,
                Err(e) => assert!(matches!(e, StoreError::TooManyTopics { limit: 7, .. }), "{e}"),
            }
        }
        assert_eq!(admitted, 7);
        assert_eq!(store.get_connection("c", 0).await.unwrap().unwrap().topics.len(), 7);
    }
}
