//! `$disconnect`: forget the connection and its subscriptions; the user's last activity stays.

use aws_lambda_events::apigw::ApiGatewayProxyResponse;

use super::{status, RouteContext};

pub async fn handle(ctx: &RouteContext<'_>) -> ApiGatewayProxyResponse {
    let rc = &ctx.request.request_context;
    crate::metrics::add(crate::metrics::Metric::Disconnects, 1);
    let touch = async {
        if let Some(user_id) = ctx.user_id {
            ctx.hub.touch_user(user_id, ctx.now).await;
        }
    };
    let (removed, ()) = tokio::join!(ctx.hub.store.remove_connection(ctx.connection_id), touch);
    match removed {
        Ok(()) => {
            tracing::info!(status = ?rc.disconnect_status_code, reason = ?rc.disconnect_reason, "disconnected");
            status(200)
        }
        Err(e) => {
            // API Gateway ignores this response; the rows expire by TTL and a later 410 removes them.
            tracing::error!(error = %e, "could not remove connection");
            status(500)
        }
    }
}
