//! A client action listed in `FORWARD_ACTIONS`: put on the event bus, answered `accepted`.

use serde_json::Value;

use super::RouteContext;
use crate::forward::{self, Detail};
use crate::hub::now_secs;
use crate::protocol::{ErrorCode, Frame, Rejection};

/// Handles a frame that the protocol refused as an unknown action: forwarded when the
/// configuration says so, else the refusal stands.
pub async fn handle(ctx: &RouteContext<'_>, body: &str, unknown: Rejection) -> Frame {
    let Some(config) = &ctx.hub.config.forward else {
        return unknown.into_frame();
    };
    let forwarded = match forward::parse_frame(body, config, &unknown.id) {
        None => return unknown.into_frame(),
        Some(Err(rejection)) => return rejection.into_frame(),
        Some(Ok(forwarded)) => forwarded,
    };
    let Some(user_id) = ctx.user_id else {
        // Fail closed, as `$connect` does: nobody vouched for this connection.
        tracing::error!("no userId in requestContext.authorizer; not forwarding");
        return Frame::error(
            ErrorCode::NotConnected,
            "this connection has no user; reconnect",
            unknown.id,
        );
    };
    let rc = &ctx.request.request_context;
    // The client's id, else API Gateway's message id, so the client can always correlate the
    // backend's later answer with its request.
    let id = unknown
        .id
        .clone()
        .or_else(|| rc.message_id.clone().map(Value::String))
        .unwrap_or_else(|| Value::String(crate::local::events::message_id()));
    let detail = Detail {
        connection_id: ctx.connection_id.to_owned(),
        user_id: user_id.to_owned(),
        action: forwarded.action,
        data: forwarded.data,
        id: id.clone(),
        request_time: if rc.request_time_epoch > 0 {
            rc.request_time_epoch
        } else {
            now_secs() * 1000
        },
    };
    let Some(bus) = &ctx.hub.events else {
        tracing::error!("FORWARD_ACTIONS is set but the hub has no event bus");
        return Frame::error(ErrorCode::Internal, "could not forward the action; retry", Some(id));
    };
    match bus.put(&config.bus, &detail).await {
        Ok(()) => {
            tracing::info!(action = %detail.action, "forwarded");
            Frame::Accepted { id }
        }
        Err(e) => {
            tracing::error!(action = %detail.action, error = %e, "could not forward");
            Frame::error(ErrorCode::Internal, "could not forward the action; retry", Some(id))
        }
    }
}
