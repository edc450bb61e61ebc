//! Topic presence (`PRESENCE_TOPICS`): who is subscribed to a topic, and `join`/`leave` frames
//! when that changes.
//!
//! - A subscription to a presence topic carries its user ([`ConnectionStore::subscribe_member`]);
//!   nothing else is kept per topic or per user, so no counter can drift.
//! - `join`: a connection's subscription is new and no *other* connection of its user is
//!   subscribed. `leave`: a connection's subscription was removed (`unsubscribe`, `$disconnect`)
//!   and no other connection of its user is left. The leaving or joining connection itself is
//!   left out of that check, because DynamoDB's index may not show its own write yet ("Using
//!   Global Secondary Indexes in DynamoDB": queries of a global secondary index are eventually
//!   consistent).
//! - Both are publications on the topic's stream ([`crate::publish::announce`]): recorded with
//!   seq and epoch, replayed by `subscribe` with `since` and by `history`, delivered to every
//!   subscriber of the topic (the joining connection included).
//!
//! What is not exact, and how it converges:
//! - A connection that vanishes without `$disconnect` ("$disconnect is a best-effort event":
//!   "Manage connected users and client apps: $connect and $disconnect routes") stays a member until its rows' TTL
//!   (`CONNECTION_TTL_SECONDS`) passes or a push to it gets a 410 that removes it; then
//!   `presence` no longer lists it, but no `leave` is sent (nothing runs when a row expires).
//! - Two connections of one user joining or leaving at the same moment can each see the other
//!   (no `join`, or no `leave`), or neither (two `join`s); a join racing a leave may send a
//!   `leave` for a user who is still there. Frames are hints in seq order; a `presence` read
//!   after them is right, because it reads the subscriptions themselves.
//! - A `join` or `leave` that cannot be recorded or delivered is logged and not retried: the
//!   subscription change itself has happened, and the next `presence` read shows it.

use serde_json::Value;
use tokio::time::Instant;

use crate::config::Config;
use crate::hub::Hub;
use crate::protocol::{Frame, Member, MAX_FRAME_BYTES};
use crate::publish::{self, PresenceEvent, PresenceKind};
use crate::store::{ConnectionStore, StoreError};
use crate::topics::user_of_stream;

/// Whether `topic` tracks presence: it matches `PRESENCE_TOPICS`. A user's own stream
/// `user:<id>` never does (it has no subscriptions).
pub fn tracks(config: &Config, topic: &str) -> bool {
    user_of_stream(topic).is_none() && config.presence_topics.iter().any(|p| p.matches(topic))
}

/// A topic's members as one `presence` reply holds them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// Distinct users with a live subscription, all of them.
    pub count: usize,
    /// Ordered by user id, as many as fit the reply.
    pub members: Vec<Member>,
    /// Members were left out to fit the reply.
    pub more: bool,
}

impl Snapshot {
    pub fn frame(self, topic: String, id: Option<Value>) -> Frame {
        Frame::Presence {
            topic,
            count: self.count,
            members: self.members,
            more: self.more,
            id,
        }
    }
}

/// Reads the members of `topic` (Queries of its subscriptions, page by page, holding at most
/// one frame's worth of members) and cuts the list to fit one frame with `id` echoed.
pub async fn snapshot(
    store: &dyn ConnectionStore,
    topic: &str,
    id: Option<&Value>,
    now: i64,
) -> Result<Snapshot, StoreError> {
    use futures::StreamExt;
    // What the frame costs without members, with the widest count; each member adds its JSON
    // and a comma.
    let empty = Frame::Presence {
        topic: topic.to_owned(),
        count: usize::MAX,
        members: Vec::new(),
        more: false,
        id: id.cloned(),
    };
    let mut budget = MAX_FRAME_BYTES.saturating_sub(empty.to_json().len());
    let mut snapshot = Snapshot {
        count: 0,
        members: Vec::new(),
        more: false,
    };
    // The member being counted: pages come ordered by user id, so a user's rows are adjacent.
    let mut current: Option<Member> = None;
    let mut close = |member: Member, snapshot: &mut Snapshot| {
        snapshot.count += 1;
        let size = serde_json::to_string(&member).map_or(usize::MAX, |s| s.len()) + 1;
        if !snapshot.more && size <= budget {
            budget -= size;
            snapshot.members.push(member);
        } else {
            snapshot.more = true;
        }
    };
    let mut pages = store.topic_members(topic, now);
    while let Some(page) = pages.next().await {
        for user in page? {
            match &mut current {
                Some(member) if member.user_id == user => member.connections += 1,
                _ => {
                    if let Some(done) = current.replace(Member {
                        user_id: user,
                        connections: 1,
                    }) {
                        close(done, &mut snapshot);
                    }
                }
            }
        }
    }
    if let Some(done) = current {
        close(done, &mut snapshot);
    }
    Ok(snapshot)
}

/// What the routes need to announce a change.
pub struct Change<'a> {
    pub hub: &'a Hub,
    /// The @connections endpoint; `None`: nothing can be delivered, the change is logged.
    pub endpoint: Option<String>,
    pub topic: &'a str,
    pub user_id: &'a str,
    pub connection_id: &'a str,
    pub deadline: Option<Instant>,
    pub now: i64,
}

impl Change<'_> {
    /// After `connection_id`'s subscription to the topic was created: `join` unless another
    /// connection of the user is subscribed.
    pub async fn joined(&self) {
        self.announce_if_alone(PresenceKind::Join).await;
    }

    /// After `connection_id`'s subscription to the topic was removed: `leave` unless another
    /// connection of the user is still subscribed.
    pub async fn left(&self) {
        self.announce_if_alone(PresenceKind::Leave).await;
    }

    async fn announce_if_alone(&self, kind: PresenceKind) {
        let (hub, topic) = (self.hub, self.topic);
        let others = match hub.store.member_connections(topic, self.user_id, self.now).await {
            Ok(ids) => ids.into_iter().filter(|c| c != self.connection_id).count(),
            Err(e) => {
                tracing::error!(topic, ?kind, error = %e, "presence change not announced: could not read members");
                return;
            }
        };
        if others > 0 {
            tracing::debug!(
                topic,
                ?kind,
                others,
                "presence unchanged: the user has other connections"
            );
            return;
        }
        let Some(endpoint) = &self.endpoint else {
            tracing::error!(topic, ?kind, "presence change not announced: no @connections endpoint");
            return;
        };
        let event = PresenceEvent {
            kind,
            user_id: self.user_id.to_owned(),
        };
        if let Err(e) = publish::announce(hub, endpoint, topic, &event, self.deadline, self.now).await {
            tracing::error!(topic, ?kind, error = %e, "presence change not recorded");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::memory::MemoryStore;
    use crate::store::{Connection, ConnectionStore};

    #[tokio::test]
    async fn snapshot_counts_connections_per_user_and_cuts_to_one_frame() {
        let store = MemoryStore::with_page_size(3);
        let now = 1_000;
        let long = |i: usize| format!("{i:03}{}", "u".repeat(125));
        // 1,200 users of 128 characters: about 150 KB of members, more than one frame.
        for i in 0..1200 {
            for k in 0..(1 + i % 2) {
                let c = format!("c{i}-{k}");
                store
                    .put_connection(&Connection {
                        connection_id: c.clone(),
                        user_id: long(i),
                        connected_at: 0,
                        source_ip: None,
                        path: None,
                        ttl: now + 100,
                    })
                    .await
                    .unwrap();
                store
                    .subscribe_member(&c, &long(i), "room", now + 100, now, 100)
                    .await
                    .unwrap();
            }
        }
        let snap = snapshot(&store, "room", Some(&Value::from("x")), now).await.unwrap();
        assert_eq!(snap.count, 1200);
        assert!(snap.more && snap.members.len() < 1200 && snap.members.len() > 800);
        assert_eq!(snap.members[0].connections, 1);
        assert_eq!(snap.members[1].connections, 2);
        assert!(snap.members.windows(2).all(|w| w[0].user_id < w[1].user_id));
        let json = snap.frame("room".into(), Some(Value::from("x"))).to_json();
        assert!(json.len() <= MAX_FRAME_BYTES, "{}", json.len());
    }
}
