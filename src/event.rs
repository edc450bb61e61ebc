//! Classifies a raw Lambda event and applies it: the one router the Lambda binary and the
//! local hub share.

use aws_lambda_events::apigw::{ApiGatewayV2httpRequest, ApiGatewayWebsocketProxyRequest};
use aws_lambda_events::eventbridge::EventBridgeEvent;
use aws_lambda_events::sqs::SqsEvent;
use lambda_runtime::Diagnostic;
use serde_json::{Map, Value};
use tokio::time::Instant;

use crate::authorizer::{self, AuthorizerRequest};
use crate::eventbridge::{self, Undelivered};
use crate::http;
use crate::hub::Hub;
use crate::metrics::{self, Metric};
use crate::push::{self, UnreportableFailure};
use crate::routes;

/// Every event the binary accepts.
#[derive(Debug)]
pub enum Event {
    /// The `$connect` REQUEST authorizer.
    Authorize(Box<AuthorizerRequest>),
    /// A WebSocket route: `$connect`, `$disconnect` or a client message.
    Route(Box<ApiGatewayWebsocketProxyRequest>),
    /// An SQS batch of pushes.
    Push(SqsEvent),
    /// An EventBridge event whose rule targets the function: one push.
    EventBridge(Box<EventBridgeEvent>),
    /// An HTTP API request (payload format 2.0).
    Http(Box<ApiGatewayV2httpRequest>),
}

/// Invocation errors, with stable `errorType`s (see `From<RouterError> for Diagnostic`).
#[derive(Debug, thiserror::Error)]
pub enum RouterError {
    #[error("unrecognized event; top-level keys: [{0}]")]
    Unrecognized(String),
    #[error("event is {0}, not a JSON object")]
    NotAnObject(&'static str),
    #[error("malformed {kind} event: {reason}")]
    Malformed { kind: &'static str, reason: String },
    #[error(transparent)]
    Unreportable(#[from] UnreportableFailure),
    #[error(transparent)]
    Undelivered(#[from] Undelivered),
}

impl From<RouterError> for Diagnostic {
    fn from(err: RouterError) -> Diagnostic {
        let error_type = match err {
            RouterError::Unrecognized(_) | RouterError::NotAnObject(_) => "wshub.UnrecognizedEvent",
            RouterError::Malformed { .. } => "wshub.MalformedEvent",
            RouterError::Unreportable(_) => "wshub.BatchFailed",
            RouterError::Undelivered(ref u) if u.is_malformed() => "wshub.MalformedEvent",
            RouterError::Undelivered(_) => "wshub.DeliveryFailed",
        };
        Diagnostic {
            error_type: error_type.into(),
            error_message: err.to_string(),
        }
    }
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Names what arrived without echoing values (which may hold tokens): at most 20 keys, each cut to 40 characters.
fn key_list(obj: &Map<String, Value>) -> String {
    let mut keys: Vec<String> = obj.keys().take(20).map(|k| k.chars().take(40).collect()).collect();
    if obj.len() > 20 {
        keys.push(format!("… {} more", obj.len() - 20));
    }
    keys.join(", ")
}

fn malformed(kind: &'static str) -> impl FnOnce(serde_json::Error) -> RouterError {
    move |e| RouterError::Malformed {
        kind,
        reason: e.to_string(),
    }
}

impl Event {
    pub fn from_json(value: Value) -> Result<Event, RouterError> {
        let Value::Object(obj) = &value else {
            return Err(RouterError::NotAnObject(json_kind(&value)));
        };
        let context = obj.get("requestContext");
        let route_key = context.and_then(|c| c.get("routeKey")).and_then(Value::as_str);
        if obj.get("type").and_then(Value::as_str) == Some("REQUEST")
            && obj.contains_key("methodArn")
            && route_key == Some("$connect")
        {
            return serde_json::from_value(value)
                .map(|r| Event::Authorize(Box::new(r)))
                .map_err(malformed("authorizer"));
        }
        let has_connection = context
            .and_then(|c| c.get("connectionId"))
            .is_some_and(Value::is_string);
        let has_route = route_key.is_some() || context.and_then(|c| c.get("eventType")).is_some_and(Value::is_string);
        if has_connection && has_route {
            return serde_json::from_value(value)
                .map(|r| Event::Route(Box::new(r)))
                .map_err(malformed("WebSocket route"));
        }
        if obj.get("version").and_then(Value::as_str) == Some("2.0")
            && context.and_then(|c| c.get("http")).is_some_and(Value::is_object)
        {
            return serde_json::from_value(value)
                .map(|r| Event::Http(Box::new(r)))
                .map_err(malformed("HTTP API"));
        }
        if eventbridge::is_event(&value) {
            return serde_json::from_value(value)
                .map(|e| Event::EventBridge(Box::new(e)))
                .map_err(malformed("EventBridge"));
        }
        if let Some(Value::Array(records)) = obj.get("Records") {
            let from_sqs = |r: &Value| r.get("eventSource").and_then(Value::as_str) == Some("aws:sqs");
            if !records.is_empty() && records.iter().all(from_sqs) {
                return serde_json::from_value(value).map(Event::Push).map_err(malformed("SQS"));
            }
        }
        Err(RouterError::Unrecognized(key_list(obj)))
    }

    /// Runs the event's handler and returns the response Lambda sends back.
    pub async fn apply(self, hub: &Hub, deadline: Option<Instant>) -> Result<Value, RouterError> {
        let response = match self {
            Event::Authorize(request) => {
                let started = Instant::now();
                let response = match hub.credentials().await {
                    Ok(credentials) => authorizer::authorize(credentials.auth(), &request).await,
                    Err(e) => authorizer::deny_unavailable(&request, &e),
                };
                metrics::record_duration(Metric::AuthorizerLatency, started.elapsed());
                response
            }
            Event::Route(request) => to_value(routes::handle(hub, &request, deadline).await),
            Event::Push(batch) => to_value(push::handle(hub, &batch, deadline).await?),
            Event::EventBridge(event) => eventbridge::handle(hub, *event, deadline).await?,
            Event::Http(request) => to_value(http::handle(hub, &request, deadline).await),
        };
        Ok(response)
    }
}

fn to_value(response: impl serde::Serialize) -> Value {
    // These response types hold only strings, numbers and string maps: serializing cannot fail.
    serde_json::to_value(response).unwrap_or(Value::Null)
}

/// Classifies and applies one raw event: the entry point for the Lambda runtime and the local hub.
pub async fn handle(hub: &Hub, event: Value, deadline: Option<Instant>) -> Result<Value, RouterError> {
    let event = Event::from_json(event).inspect_err(|e| tracing::error!(error = %e, "event refused"))?;
    event
        .apply(hub, deadline)
        .await
        .inspect_err(|e| tracing::error!(error = %e, "event failed"))
}
