//! `$disconnect`: forget the connection and its subscriptions.

use aws_lambda_events::apigw::ApiGatewayProxyResponse;

use super::{status, RouteContext};

pub async fn handle(ctx: &RouteContext<'_>) -> ApiGatewayProxyResponse {
    let rc = &ctx.request.request_context;
    match ctx.hub.store.remove_connection(ctx.connection_id).await {
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
