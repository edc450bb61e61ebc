//! `subscribe` and `unsubscribe`.

use serde_json::Value;

use super::{forbidden_topic, store_failure, RouteContext};
use crate::protocol::Frame;

pub async fn subscribe(ctx: &RouteContext<'_>, topic: String, id: Option<Value>) -> Frame {
    if !ctx.may_use_topic(&topic) {
        return forbidden_topic(&topic, id);
    }
    let expiry = ctx.hub.expiry(ctx.now);
    match ctx
        .hub
        .store
        .subscribe(
            ctx.connection_id,
            &topic,
            expiry,
            ctx.now,
            ctx.hub.config.max_topics_per_connection,
        )
        .await
    {
        Ok(()) => {
            tracing::info!(topic, "subscribed");
            Frame::Subscribed { topic, id }
        }
        Err(e) => store_failure(e, id),
    }
}

pub async fn unsubscribe(ctx: &RouteContext<'_>, topic: String, id: Option<Value>) -> Frame {
    match ctx.hub.store.unsubscribe(ctx.connection_id, &topic).await {
        Ok(()) => Frame::Unsubscribed { topic, id },
        Err(e) => store_failure(e, id),
    }
}
