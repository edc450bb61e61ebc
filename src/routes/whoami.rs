//! `whoami`: the connection as the hub sees it.

use serde_json::Value;

use super::{store_failure, RouteContext};
use crate::protocol::Frame;
use crate::store::StoreError;

pub async fn handle(ctx: &RouteContext<'_>, id: Option<Value>) -> Frame {
    match ctx.hub.store.get_connection(ctx.connection_id, ctx.now).await {
        Ok(Some(view)) => {
            let mut topics = view.topics;
            topics.sort();
            Frame::Whoami {
                connection_id: view.connection.connection_id,
                user_id: view.connection.user_id,
                path: view.connection.path,
                topics,
                id,
            }
        }
        Ok(None) => store_failure(StoreError::NotConnected(ctx.connection_id.to_owned()), id),
        Err(e) => store_failure(e, id),
    }
}
