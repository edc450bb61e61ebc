//! `$disconnect`: forget the connection and its subscriptions; the user's last activity stays.
//! With `PRESENCE_TOPICS`, the connection's topics are read first, and each presence topic it
//! leaves gets a `leave` when no other connection of the user is subscribed to it.

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
    let presence_topics = presence_topics(ctx).await;
    let (removed, ()) = tokio::join!(ctx.hub.store.remove_connection(ctx.connection_id), touch);
    match removed {
        Ok(()) => {
            tracing::info!(status = ?rc.disconnect_status_code, reason = ?rc.disconnect_reason, "disconnected");
            for topic in &presence_topics {
                if let Some(change) = ctx.presence_change(topic) {
                    change.left().await;
                }
            }
            status(200)
        }
        Err(e) => {
            // API Gateway ignores this response; the rows expire by TTL and a later 410 removes them.
            tracing::error!(error = %e, "could not remove connection");
            status(500)
        }
    }
}

/// The presence topics the connection subscribes to, read before it is removed (one Query of
/// its rows; none without `PRESENCE_TOPICS`). A failed read is logged: no `leave` is sent, and
/// `presence` reads are right once the rows are gone.
async fn presence_topics(ctx: &RouteContext<'_>) -> Vec<String> {
    if ctx.hub.config.presence_topics.is_empty() || ctx.user_id.is_none() {
        return Vec::new();
    }
    match ctx.hub.store.get_connection(ctx.connection_id, ctx.now).await {
        Ok(view) => view
            .map(|v| v.topics)
            .unwrap_or_default()
            .into_iter()
            .filter(|t| crate::presence::tracks(&ctx.hub.config, t))
            .collect(),
        Err(e) => {
            tracing::error!(error = %e, "could not read the connection's topics: no leave announced");
            Vec::new()
        }
    }
}
