//! WebSocket route events: `$connect`, `$disconnect`, and every client message. One module per
//! job; each returns the frame (or status) API Gateway hands back to the client.
//!
//! Client messages are dispatched on the body's `action`, whatever route API Gateway picked:
//! a route missing from a deployed API then still reaches its handler through `$default`.
//! Every reply is status 200 with a JSON frame body; failures are `{"action":"error",…}` frames
//! and the connection stays open.

mod connect;
mod disconnect;
mod forward;
mod ping;
mod sendmessage;
mod subscription;
mod whoami;

use aws_lambda_events::apigw::{ApiGatewayProxyResponse, ApiGatewayWebsocketProxyRequest};
use aws_lambda_events::encodings::Body;
use tokio::time::Instant;
use tracing::Instrument;

use crate::hub::{now_secs, Hub};
use crate::protocol::{Action, ErrorCode, Frame, Request};
use crate::store::StoreError;
use crate::topics;

/// What every route handler knows about the event, taken from `requestContext`.
pub struct RouteContext<'a> {
    pub hub: &'a Hub,
    pub request: &'a ApiGatewayWebsocketProxyRequest,
    pub connection_id: &'a str,
    /// From the authorizer's context; `None` only if the API has no authorizer on `$connect`.
    pub user_id: Option<&'a str>,
    pub now: i64,
    pub deadline: Option<Instant>,
}

impl<'a> RouteContext<'a> {
    /// A value from the authorizer's context (`requestContext.authorizer`).
    pub fn authorizer_value(&self, key: &str) -> Option<&'a str> {
        self.request
            .request_context
            .authorizer
            .fields
            .get(key)
            .and_then(|v| v.as_str())
    }

    /// Whether this connection's user may subscribe or send to `topic` (see [`crate::topics`]).
    pub fn may_use_topic(&self, topic: &str) -> bool {
        let granted = topics::parse_list(self.authorizer_value("topics").unwrap_or("").split(','));
        self.hub.config.topic_access.allows(self.user_id, &granted, topic)
    }

    /// A presence change of this connection's user on `topic`, when `topic` tracks presence
    /// and the connection has a user ([`crate::presence`]).
    pub fn presence_change<'t>(&'t self, topic: &'t str) -> Option<crate::presence::Change<'t>> {
        let user_id = self.user_id?;
        crate::presence::tracks(&self.hub.config, topic).then(|| crate::presence::Change {
            hub: self.hub,
            endpoint: self.management_endpoint(),
            topic,
            user_id,
            connection_id: self.connection_id,
            deadline: self.deadline,
            now: self.now,
        })
    }

    /// The @connections endpoint: the configured override, else derived from the event.
    pub fn management_endpoint(&self) -> Option<String> {
        if let Some(endpoint) = &self.hub.config.management_endpoint {
            return Some(endpoint.clone());
        }
        let rc = &self.request.request_context;
        match (
            rc.apiid.as_deref(),
            self.hub.config.region.as_deref(),
            rc.stage.as_deref(),
        ) {
            (Some(api), Some(region), Some(stage)) => {
                Some(format!("https://{api}.execute-api.{region}.amazonaws.com/{stage}"))
            }
            _ => None,
        }
    }
}

pub async fn handle(
    hub: &Hub,
    request: &ApiGatewayWebsocketProxyRequest,
    deadline: Option<Instant>,
) -> ApiGatewayProxyResponse {
    let rc = &request.request_context;
    // The classifier only lets events with a connectionId through.
    let connection_id = rc.connection_id.as_deref().unwrap_or_default();
    let route_key = rc.route_key.as_deref().unwrap_or("$default");
    let mut ctx = RouteContext {
        hub,
        request,
        connection_id,
        user_id: None,
        now: now_secs(),
        deadline,
    };
    ctx.user_id = ctx.authorizer_value("userId");
    let work = async {
        match route_key {
            "$connect" => connect::handle(&ctx).await,
            "$disconnect" => disconnect::handle(&ctx).await,
            _ => reply(message(&ctx).await),
        }
    };
    // Every log line of the route carries the connection id.
    work.instrument(tracing::info_span!("route", connection_id, route_key))
        .await
}

async fn message(ctx: &RouteContext<'_>) -> Frame {
    if ctx.request.is_base64_encoded {
        return Frame::error(
            ErrorCode::BadJson,
            "binary frames are not supported; send a JSON text frame",
            None,
        );
    }
    let body = ctx.request.body.as_deref().unwrap_or("");
    let request = match Request::parse(body) {
        Ok(request) => request,
        Err(rejection) if rejection.code == ErrorCode::UnknownAction => {
            return forward::handle(ctx, body, rejection).await;
        }
        Err(rejection) => {
            tracing::info!(code = ?rejection.code, "rejected client frame");
            return rejection.into_frame();
        }
    };
    let id = request.id;
    match request.action {
        Action::Ping => ping::handle(id),
        Action::Subscribe { topic, since } => subscription::subscribe(ctx, topic, since, id).await,
        Action::History { topic, since, limit } => subscription::history(ctx, topic, since, limit, id).await,
        Action::Unsubscribe { topic } => subscription::unsubscribe(ctx, topic, id).await,
        Action::SendMessage { topic, data } => sendmessage::handle(ctx, topic, data, id).await,
        Action::Whoami => whoami::handle(ctx, id).await,
        Action::Presence { topic } => subscription::presence(ctx, topic, id).await,
    }
}

fn forbidden_topic(topic: &str, id: Option<serde_json::Value>) -> Frame {
    tracing::info!(topic, "topic refused");
    Frame::error(
        ErrorCode::ForbiddenTopic,
        format!("you may not use topic {topic:?}"),
        id,
    )
}

/// The error frame for a store failure, logged here so handlers need not.
fn store_failure(err: StoreError, id: Option<serde_json::Value>) -> Frame {
    match err {
        StoreError::NotConnected(_) => Frame::error(
            ErrorCode::NotConnected,
            "this connection is not registered; reconnect",
            id,
        ),
        StoreError::TooManyTopics { limit, .. } => Frame::error(
            ErrorCode::TooManyTopics,
            format!(
                "this connection already subscribes to {limit} topics, the most allowed; unsubscribe from one first"
            ),
            id,
        ),
        other => {
            tracing::error!(error = %other, "store failure");
            Frame::error(ErrorCode::Internal, "temporary failure; retry", id)
        }
    }
}

fn reply(frame: Frame) -> ApiGatewayProxyResponse {
    let mut response = status(200);
    response.body = Some(Body::Text(frame.to_json()));
    response
}

fn status(code: i64) -> ApiGatewayProxyResponse {
    let mut response = ApiGatewayProxyResponse::default();
    response.status_code = code;
    response
}
