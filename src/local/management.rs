//! The HTTP side of the hub: API Gateway's Management API (`/@connections/{id}`, with or
//! without the stage prefix, as the SDKs and `aws apigatewaymanagementapi` call it), and the
//! hub's own `/_local/…` routes, which play SQS and let tests look into the store, and the
//! HTTP API's `/users/online`.
//!
//! Request signatures are not checked: any credentials do, as with other local emulators.

use std::sync::Arc;

use aws_sdk_apigatewaymanagement::primitives::{DateTime, DateTimeFormat};
use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Path, Query, State as Extract};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use lambda_runtime::Diagnostic;
use serde::Deserialize;
use serde_json::json;

use super::events;
use super::{error, route, State, MAX_MESSAGE_BYTES};
use crate::hub::now_secs;
use crate::notify::NotifyError;

/// SQS's largest message body.
const MAX_SQS_BODY_BYTES: usize = 1024 * 1024;
/// What a DeleteConnection closes the socket with.
const DELETE_CLOSE_CODE: u16 = 1000;
/// Queue name in the injected records' `eventSourceARN`.
const QUEUE: &str = "wshub-local";

#[derive(Deserialize)]
pub(crate) struct ConnectionPath {
    stage: Option<String>,
    id: String,
}

type PathParams = Result<Path<ConnectionPath>, PathRejection>;

/// An error answer, small enough to return by value (a `Response` is not).
pub(crate) struct Refusal(StatusCode, &'static str, String);

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        error(self.0, self.1, self.2)
    }
}

/// The connection id, or the error for a bad path or a stage this hub does not serve.
fn connection_id(state: &State, path: PathParams) -> Result<String, Refusal> {
    let Path(path) = path.map_err(|r| Refusal(r.status(), "BadRequestException", r.body_text()))?;
    match path.stage {
        Some(stage) if stage != state.settings.stage => Err(Refusal(
            StatusCode::NOT_FOUND,
            "NotFoundException",
            format!("no stage {stage:?}; this hub serves /{}", state.settings.stage),
        )),
        _ => Ok(path.id),
    }
}

fn gone(id: &str) -> Refusal {
    Refusal(
        StatusCode::GONE,
        "GoneException",
        format!("connection {id} is not open"),
    )
}

fn body(body: Result<Bytes, BytesRejection>) -> Result<Bytes, Refusal> {
    body.map_err(|r| Refusal(r.status(), "BadRequestException", r.body_text()))
}

/// PostToConnection.
pub(crate) async fn post_to_connection(
    Extract(state): Extract<Arc<State>>,
    path: PathParams,
    data: Result<Bytes, BytesRejection>,
) -> Result<StatusCode, Refusal> {
    let id = connection_id(&state, path)?;
    let data = body(data)?;
    if data.len() > MAX_MESSAGE_BYTES {
        return Err(Refusal(
            StatusCode::PAYLOAD_TOO_LARGE,
            "PayloadTooLargeException",
            format!("data is {} bytes; the limit is {MAX_MESSAGE_BYTES}", data.len()),
        ));
    }
    match state.registry.post(&id, &data) {
        Ok(()) => Ok(StatusCode::OK),
        // The client is not reading and its queue is full: see `notifier::Socket::send`.
        Err(NotifyError::Throttled) => Err(Refusal(
            StatusCode::TOO_MANY_REQUESTS,
            "LimitExceededException",
            format!("the client side buffer of connection {id} is full"),
        )),
        Err(_) => Err(gone(&id)),
    }
}

/// GetConnection: times as ISO 8601, as the SDKs parse them.
pub(crate) async fn get_connection(
    Extract(state): Extract<Arc<State>>,
    path: PathParams,
) -> Result<Json<serde_json::Value>, Refusal> {
    let id = connection_id(&state, path)?;
    let socket = state
        .registry
        .get(&id)
        .filter(|s| s.is_open())
        .ok_or_else(|| gone(&id))?;
    let iso = |ms: i64| DateTime::from_millis(ms).fmt(DateTimeFormat::DateTime).ok();
    Ok(Json(json!({
        "connectedAt": iso(socket.connected_at),
        "lastActiveAt": iso(socket.last_active_at()),
        "identity": {"sourceIp": socket.source_ip, "userAgent": socket.user_agent},
    })))
}

/// DeleteConnection: the socket closes and `$disconnect` runs, as in API Gateway.
pub(crate) async fn delete_connection(
    Extract(state): Extract<Arc<State>>,
    path: PathParams,
) -> Result<StatusCode, Refusal> {
    let id = connection_id(&state, path)?;
    if state.registry.close(&id, DELETE_CLOSE_CODE, "") {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(gone(&id))
    }
}

/// `/users/online`: the HTTP API's route, handed to the router as API Gateway's payload 2.0;
/// the function's status, headers and body come back unchanged.
pub(crate) async fn online_status(
    state: Extract<Arc<State>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Response {
    http_api(state, method, uri, headers, query, axum::body::Bytes::new()).await
}

/// An HTTP API route with a body (`POST /publish`), handed over like [`online_status`].
pub(crate) async fn http_api(
    Extract(state): Extract<Arc<State>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
    body: axum::body::Bytes,
) -> Response {
    let query = query.map(|Query(q)| q).unwrap_or_default();
    let mut event = events::http_event(method.as_str(), uri.path(), uri.query().unwrap_or(""), &headers, &query);
    if !body.is_empty() {
        // API Gateway passes a text body as is and anything else base64-encoded.
        match std::str::from_utf8(&body) {
            Ok(text) => event["body"] = serde_json::Value::String(text.to_owned()),
            Err(_) => {
                use base64::Engine;
                event["body"] = base64::engine::general_purpose::STANDARD.encode(&body).into();
                event["isBase64Encoded"] = true.into();
            }
        }
    }
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(29);
    let answer = match route(&state.hub, event, Some(deadline)).await {
        Ok(answer) => answer,
        Err(e) => {
            let diagnostic = Diagnostic::from(e);
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalServerErrorException",
                diagnostic.error_message,
            );
        }
    };
    let status = answer["statusCode"]
        .as_u64()
        .and_then(|s| StatusCode::from_u16(s as u16).ok())
        .unwrap_or(StatusCode::BAD_GATEWAY);
    let mut response = (status, answer["body"].as_str().unwrap_or("").to_owned()).into_response();
    for (name, value) in answer["headers"].as_object().into_iter().flatten() {
        if let (Ok(name), Some(Ok(value))) = (
            HeaderName::from_bytes(name.as_bytes()),
            value.as_str().map(HeaderValue::from_str),
        ) {
            response.headers_mut().insert(name, value);
        }
    }
    response
}

/// `POST /_local/sqs`: the body becomes one SQS record, delivered as the event source mapping
/// would; the answer is the handler's `{"batchItemFailures": […]}` once delivery is done.
pub(crate) async fn inject_sqs(
    Extract(state): Extract<Arc<State>>,
    message: Result<Bytes, BytesRejection>,
) -> Result<Response, Refusal> {
    let message = body(message)?;
    if message.is_empty() {
        return Err(Refusal(
            StatusCode::BAD_REQUEST,
            "MissingParameter",
            "empty body: send the SQS message body, e.g. {\"data\":\"hi\"}".into(),
        ));
    }
    if message.len() > MAX_SQS_BODY_BYTES {
        return Err(Refusal(
            StatusCode::PAYLOAD_TOO_LARGE,
            "InvalidParameterValue",
            format!("message is {} bytes; SQS allows {MAX_SQS_BODY_BYTES}", message.len()),
        ));
    }
    let text = std::str::from_utf8(&message).map_err(|_| {
        Refusal(
            StatusCode::BAD_REQUEST,
            "InvalidMessageContents",
            "the message body must be UTF-8 text, as SQS requires".into(),
        )
    })?;
    let message_id = events::message_id();
    let event = events::sqs_event(&message_id, text, QUEUE);
    // Lambda's default timeout for an SQS consumer is the visibility timeout's scale: 30 s.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    let mut response = match route(&state.hub, event, Some(deadline)).await {
        Ok(batch) => Json(batch).into_response(),
        Err(e) => {
            // What Lambda reports for a failed invocation.
            let diagnostic = Diagnostic::from(e);
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                Json(json!({"errorType": diagnostic.error_type, "errorMessage": diagnostic.error_message})),
            )
                .into_response()
        }
    };
    if let Ok(value) = message_id.parse() {
        response.headers_mut().insert("x-wshub-message-id", value);
    }
    Ok(response)
}

/// `GET /_local/connections/{id}`: the connection's rows as the store holds them, so tests and
/// people can see that `$disconnect` or a 410 removed them.
pub(crate) async fn stored_connection(Extract(state): Extract<Arc<State>>, Path(id): Path<String>) -> Response {
    match state.hub.store.get_connection(&id, now_secs()).await {
        Ok(Some(view)) => Json(json!({
            "connectionId": view.connection.connection_id,
            "userId": view.connection.user_id,
            "connectedAt": view.connection.connected_at,
            "sourceIp": view.connection.source_ip,
            "ttl": view.connection.ttl,
            "topics": view.topics,
            "open": state.registry.get(&id).is_some(),
        }))
        .into_response(),
        Ok(None) => error(
            StatusCode::NOT_FOUND,
            "NotFoundException",
            format!("connection {id} is not in the store"),
        ),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, "StoreError", e.to_string()),
    }
}
