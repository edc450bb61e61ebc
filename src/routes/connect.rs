//! `$connect`: register the connection under the user the authorizer vouched for, and note
//! the user's last activity.

use aws_lambda_events::apigw::ApiGatewayProxyResponse;
use aws_lambda_events::http::HeaderValue;

use super::{status, RouteContext};
use crate::authorizer::offered_protocols;
use crate::store::{Connection, StoreError};

pub async fn handle(ctx: &RouteContext<'_>) -> ApiGatewayProxyResponse {
    let Some(user_id) = ctx.user_id else {
        // Fail closed: without an authorizer context nobody vouched for this client.
        tracing::error!("no userId in requestContext.authorizer; is the authorizer attached to $connect?");
        return status(403);
    };
    let rc = &ctx.request.request_context;
    let connection = Connection {
        connection_id: ctx.connection_id.to_owned(),
        user_id: user_id.to_owned(),
        connected_at: if rc.connected_at > 0 {
            rc.connected_at
        } else {
            ctx.now * 1000
        },
        source_ip: rc.identity.source_ip.clone(),
        // The authorizer read and checked it (crate::edge); stored so `whoami` can return it.
        path: ctx.authorizer_value("path").map(str::to_owned),
        ttl: ctx.hub.expiry(ctx.now),
    };
    // The two writes are independent, so the handshake waits for one round trip, not two (as
    // `$disconnect` does). A refused attempt still counts as the user's activity.
    let (registered, ()) = tokio::join!(
        ctx.hub.store.put_connection(&connection),
        ctx.hub.touch_user(user_id, ctx.now)
    );
    match registered {
        Ok(()) => {}
        Err(StoreError::AlreadyExists(_)) => {
            tracing::warn!("connection id already registered");
            return status(409);
        }
        Err(e) => {
            tracing::error!(error = %e, "could not register connection");
            return status(500);
        }
    }
    tracing::info!(user_id, "connected");
    crate::metrics::add(crate::metrics::Metric::Connects, 1);
    let mut response = status(200);
    // A browser that offered subprotocols drops the socket unless one is accepted. The
    // authorizer chose one that is not the token; accept it only if it was really offered.
    let offered = offered_protocols(
        ctx.request
            .headers
            .get("sec-websocket-protocol")
            .and_then(|v| v.to_str().ok()),
    );
    if let Some(chosen) = ctx.authorizer_value("subprotocol").filter(|p| offered.contains(p)) {
        if let Ok(value) = HeaderValue::from_str(chosen) {
            response.headers.insert("sec-websocket-protocol", value);
        }
    }
    response
}
