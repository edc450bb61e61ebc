//! `subscribe`, `unsubscribe`, `history` and `presence`.
//!
//! `subscribe` writes the subscription before it reads the stream, so a publication racing it
//! arrives live, from history, or both (told apart by `seq`), never neither. A user's own
//! stream `user:<id>` needs no subscription row: its pushes reach every connection of the user.
//!
//! On a presence topic ([`crate::presence`]) the subscription carries the user, and a `join`
//! is announced before the stream is read, so the `subscribed` position covers it.

use serde_json::Value;

use super::{forbidden_topic, store_failure, RouteContext};
use crate::protocol::{ErrorCode, Frame, Position, DEFAULT_HISTORY_LIMIT};
use crate::publish;
use crate::topics::user_of_stream;

pub async fn subscribe(ctx: &RouteContext<'_>, topic: String, since: Option<Position>, id: Option<Value>) -> Frame {
    if !ctx.may_use_topic(&topic) {
        return forbidden_topic(&topic, id);
    }
    if user_of_stream(&topic).is_none() {
        let expiry = ctx.hub.expiry(ctx.now);
        let store = &ctx.hub.store;
        let max_topics = ctx.hub.config.max_topics_per_connection;
        match ctx.presence_change(&topic) {
            Some(change) => match store
                .subscribe_member(ctx.connection_id, change.user_id, &topic, expiry, ctx.now, max_topics)
                .await
            {
                Ok(true) => change.joined().await,
                Ok(false) => {}
                Err(e) => return store_failure(e, id),
            },
            None => {
                if let Err(e) = store
                    .subscribe(ctx.connection_id, &topic, expiry, ctx.now, max_topics)
                    .await
                {
                    return store_failure(e, id);
                }
            }
        }
    }
    match publish::read(ctx.hub, &topic, since.as_ref(), DEFAULT_HISTORY_LIMIT, ctx.now).await {
        Ok((pos, recovery)) => {
            tracing::info!(
                topic,
                seq = pos.as_ref().map(|p| p.seq),
                recovered = recovery.as_ref().map(|r| r.recovered),
                "subscribed"
            );
            Frame::Subscribed {
                topic,
                seq: pos.as_ref().map(|p| p.seq),
                epoch: pos.map(|p| p.epoch),
                recovery,
                id,
            }
        }
        Err(e) => store_failure(e, id),
    }
}

pub async fn unsubscribe(ctx: &RouteContext<'_>, topic: String, id: Option<Value>) -> Frame {
    if let Some(change) = ctx.presence_change(&topic) {
        return match ctx.hub.store.unsubscribe_member(ctx.connection_id, &topic).await {
            Ok(removed) => {
                if removed {
                    change.left().await;
                }
                Frame::Unsubscribed { topic, id }
            }
            Err(e) => store_failure(e, id),
        };
    }
    match ctx.hub.store.unsubscribe(ctx.connection_id, &topic).await {
        Ok(()) => Frame::Unsubscribed { topic, id },
        Err(e) => store_failure(e, id),
    }
}

/// Who is subscribed to a presence topic: authorized as `subscribe` is; read with Queries of
/// the topic's subscriptions, live rows only, cut to one frame.
pub async fn presence(ctx: &RouteContext<'_>, topic: String, id: Option<Value>) -> Frame {
    if !ctx.may_use_topic(&topic) {
        return forbidden_topic(&topic, id);
    }
    if !crate::presence::tracks(&ctx.hub.config, &topic) {
        return Frame::error(
            ErrorCode::NotPresenceTopic,
            format!("topic {topic:?} does not track presence (PRESENCE_TOPICS)"),
            id,
        );
    }
    match crate::presence::snapshot(ctx.hub.store.as_ref(), &topic, id.as_ref(), ctx.now).await {
        Ok(snapshot) => {
            tracing::info!(topic, count = snapshot.count, more = snapshot.more, "presence read");
            snapshot.frame(topic, id)
        }
        Err(e) => store_failure(e, id),
    }
}

/// A page of the stream after `since` (from the oldest kept publication without it).
pub async fn history(
    ctx: &RouteContext<'_>,
    topic: String,
    since: Option<Position>,
    limit: usize,
    id: Option<Value>,
) -> Frame {
    if !ctx.may_use_topic(&topic) {
        return forbidden_topic(&topic, id);
    }
    // Without `since` the client asks from the start of the epoch it does not know yet.
    let since = match since {
        Some(since) => since,
        None => match publish::read(ctx.hub, &topic, None, 0, ctx.now).await {
            Ok((pos, _)) => Position {
                seq: 0,
                epoch: pos.map(|p| p.epoch).unwrap_or_default(),
            },
            Err(e) => return store_failure(e, id),
        },
    };
    match publish::read(ctx.hub, &topic, Some(&since), limit, ctx.now).await {
        Ok((pos, recovery)) => Frame::History {
            topic,
            seq: pos.as_ref().map(|p| p.seq),
            epoch: pos.map(|p| p.epoch),
            recovery: recovery.unwrap_or(crate::protocol::Recovery {
                recovered: false,
                messages: Vec::new(),
                more: false,
            }),
            id,
        },
        Err(e) => store_failure(e, id),
    }
}
