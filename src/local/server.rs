//! The WebSocket side of API Gateway: the upgrade runs the authorizer and `$connect`, then one
//! loop per socket turns frames into route events and route replies back into frames.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::QueryRejection;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, Path, Query, State as Extract};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use base64::Engine;
use futures::stream::{SplitSink, SplitStream};
use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::sync::{mpsc, oneshot};
use tokio::time::{sleep_until, Instant};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::events::{self, authorizer_outcome, AuthorizerOutcome, ConnectionInfo};
use super::notifier::{Mailbox, Outbound, Socket};
use super::{error, route, Peer, State, MAX_FRAME_BYTES, MAX_MESSAGE_BYTES};

/// API Gateway's integration timeout, used as each handler call's deadline.
const INTEGRATION_TIMEOUT: Duration = Duration::from_secs(29);
/// How long a closing socket waits for the client's close frame.
const CLOSE_HANDSHAKE: Duration = Duration::from_secs(2);
/// Messages read but not yet handled; past this the loop stops reading (TCP back-pressure).
const INBOUND_QUEUE: usize = 32;
const READ_BUFFER_BYTES: usize = 4 * 1024;
const API_ID: &str = "local";
const DEMO_PAGE: &str = include_str!("demo.html");
/// The JavaScript client the demo page runs: the ES modules of clients/js's built package
/// (`dist/`), copied into `client/` so the hub needs no Node to build; scripts/test-js.sh fails
/// when the copies differ from a fresh build.
const CLIENT_FILES: [(&str, &str); 4] = [
    ("index.js", include_str!("client/index.js")),
    ("hub.js", include_str!("client/hub.js")),
    ("probe.js", include_str!("client/probe.js")),
    ("types.js", include_str!("client/types.js")),
];

type Upgrade = Result<WebSocketUpgrade, WebSocketUpgradeRejection>;
type QueryParams = Result<Query<Vec<(String, String)>>, QueryRejection>;

/// `GET /`: the WebSocket API, or the demo page for a browser that is not upgrading.
pub(crate) async fn upgrade_root(
    Extract(state): Extract<Arc<State>>,
    ConnectInfo(Peer(peer)): ConnectInfo<Peer>,
    headers: HeaderMap,
    query: QueryParams,
    ws: Upgrade,
) -> Response {
    if ws.is_err() && !headers.contains_key(header::UPGRADE) {
        return Html(DEMO_PAGE).into_response();
    }
    upgrade(state, peer, headers, query, ws).await
}

/// `GET /_local/wshub-client/{file}`: the client's modules, for the demo page.
pub(crate) async fn client_file(Path(file): Path<String>) -> Response {
    match CLIENT_FILES.iter().find(|(name, _)| *name == file) {
        Some((_, body)) => ([(header::CONTENT_TYPE, "text/javascript; charset=utf-8")], *body).into_response(),
        None => error(
            StatusCode::NOT_FOUND,
            "NotFoundException",
            format!("no client module {file:?}"),
        ),
    }
}

/// `GET /{stage}`: the same API under its stage name, as API Gateway's URL has it.
pub(crate) async fn upgrade_stage(
    Extract(state): Extract<Arc<State>>,
    Path(stage): Path<String>,
    ConnectInfo(Peer(peer)): ConnectInfo<Peer>,
    headers: HeaderMap,
    query: QueryParams,
    ws: Upgrade,
) -> Response {
    if stage != state.settings.stage {
        // Not the stage: a one-segment path, as behind the edge (`/ocpp`), if it is a socket.
        if headers.contains_key(header::UPGRADE) {
            return upgrade_on_path(state, peer, &format!("/{stage}"), headers, query, ws).await;
        }
        return error(
            StatusCode::NOT_FOUND,
            "NotFoundException",
            format!("no stage {stage:?}; this hub serves /{}", state.settings.stage),
        );
    }
    upgrade(state, peer, headers, query, ws).await
}

/// Any other path (the router's fallback): a WebSocket upgrade is served as the `EdgePath`
/// distribution serves it, its path handed over in `x-wshub-path` exactly as the CloudFront
/// Function does ([`crate::edge::viewer_request`]); anything else is API Gateway's 404.
pub(crate) async fn upgrade_any(
    Extract(state): Extract<Arc<State>>,
    ConnectInfo(Peer(peer)): ConnectInfo<Peer>,
    method: axum::http::Method,
    uri: axum::http::Uri,
    headers: HeaderMap,
    query: QueryParams,
    ws: Upgrade,
) -> Response {
    if method != axum::http::Method::GET || !headers.contains_key(header::UPGRADE) {
        return error(StatusCode::NOT_FOUND, "NotFoundException", "no such route");
    }
    upgrade_on_path(state, peer, uri.path(), headers, query, ws).await
}

async fn upgrade_on_path(
    state: Arc<State>,
    peer: SocketAddr,
    path: &str,
    mut headers: HeaderMap,
    query: QueryParams,
    ws: Upgrade,
) -> Response {
    // The hub's own routes are never paths of a socket.
    let own_route = path == "/_local" || path.starts_with("/_local/") || path.contains("/@connections");
    if own_route {
        return error(StatusCode::NOT_FOUND, "NotFoundException", "no such route");
    }
    headers.remove(crate::edge::PATH_HEADER);
    match crate::edge::viewer_request(path) {
        Ok(Some(path)) => {
            if let Ok(value) = axum::http::HeaderValue::from_str(&path) {
                headers.insert(crate::edge::PATH_HEADER, value);
            }
        }
        Ok(None) => {}
        Err(status) => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
            return error(status, "UriTooLong", "the URL path is too long");
        }
    }
    upgrade(state, peer, headers, query, ws).await
}

async fn upgrade(state: Arc<State>, peer: SocketAddr, headers: HeaderMap, query: QueryParams, ws: Upgrade) -> Response {
    let ws = match ws {
        Ok(ws) => ws,
        Err(rejection) => {
            let status = rejection.status();
            return error(status, "BadRequestException", rejection.body_text());
        }
    };
    let query = match query {
        Ok(Query(query)) => query,
        Err(rejection) => return error(rejection.status(), "BadRequestException", rejection.body_text()),
    };
    if state.shutdown.is_cancelled() {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "ServiceUnavailable",
            "the hub is shutting down",
        );
    }
    let info = ConnectionInfo {
        connection_id: events::connection_id(),
        connected_at: events::now_ms(),
        source_ip: peer.ip().to_string(),
        user_agent: header_str(&headers, header::USER_AGENT),
        domain_name: header_str(&headers, header::HOST).unwrap_or_else(|| peer.to_string()),
        stage: state.settings.stage.clone(),
        api_id: API_ID.into(),
    };
    let span = tracing::info_span!("socket", connection_id = %info.connection_id);
    async move {
        let started = events::now_ms();
        let verdict = route(&state.hub, info.authorizer_event(&headers, &query), Some(deadline())).await;
        let authorizer = match authorizer_outcome(&verdict, started) {
            AuthorizerOutcome::Allow(context) => context,
            AuthorizerOutcome::Refuse(status, message) => {
                tracing::info!(%status, "upgrade refused by the authorizer");
                return refusal(status, message);
            }
        };
        let connect = route(
            &state.hub,
            info.connect_event(&headers, &query, &authorizer),
            Some(deadline()),
        )
        .await;
        let Ok(response) = connect else {
            return refusal(StatusCode::INTERNAL_SERVER_ERROR, "Internal server error");
        };
        let status = response
            .get("statusCode")
            .and_then(Value::as_u64)
            .and_then(|s| StatusCode::from_u16(u16::try_from(s).ok()?).ok())
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        if !status.is_success() {
            tracing::info!(%status, "upgrade refused by $connect");
            return refusal(status, status.canonical_reason().unwrap_or("Refused"));
        }
        // tungstenite reads through a 128 KiB buffer per socket by default: 640 MB at 5k sockets.
        // Frames here are small JSON, and a larger one is still read, just in more calls.
        // API Gateway's limits: 32 KB a frame, 128 KB a message (in several frames); over
        // either, the socket closes with 1009.
        let mut ws = ws
            .max_message_size(MAX_MESSAGE_BYTES)
            .max_frame_size(MAX_FRAME_BYTES)
            .read_buffer_size(READ_BUFFER_BYTES);
        // A browser drops a socket whose offered subprotocol is not echoed in the 101.
        if let Some(protocol) = response_header(&response, "sec-websocket-protocol") {
            ws = ws.protocols([protocol]);
        }
        // Registered before the 101, so a push sent right after `$connect` waits in the queue
        // instead of answering 410 and getting the new connection's rows deleted.
        let (socket, outbound) = Socket::bounded(
            state.settings.outbound_queue_bytes,
            info.connected_at,
            info.source_ip.clone(),
            info.user_agent.clone(),
        );
        state.registry.insert(&info.connection_id, socket.clone());
        let connection = Arc::new(Connection {
            state: state.clone(),
            info,
            authorizer,
            socket,
        });
        let failed = connection.clone();
        let tracker = state.sockets.clone();
        let span = tracing::Span::current();
        ws.on_failed_upgrade(move |e| {
            tracing::warn!(error = %e, "upgrade failed after $connect");
            failed
                .state
                .sockets
                .spawn(failed.clone().finish(1006, "upgrade failed".into()));
        })
        .on_upgrade(move |ws| tracker.track_future(connection.run(ws, outbound).instrument(span)))
    }
    .instrument(span)
    .await
}

fn deadline() -> Instant {
    Instant::now() + INTEGRATION_TIMEOUT
}

fn header_str(headers: &HeaderMap, name: header::HeaderName) -> Option<String> {
    headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned)
}

/// A header of a Lambda proxy response, by case-insensitive name.
fn response_header(response: &Value, name: &str) -> Option<String> {
    response
        .get("headers")?
        .as_object()?
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))?
        .1
        .as_str()
        .map(str::to_owned)
}

/// API Gateway's answer to a refused upgrade: the status and `{"message": …}`.
fn refusal(status: StatusCode, message: &str) -> Response {
    (status, axum::Json(json!({"message": message}))).into_response()
}

/// One accepted connection: what its events repeat, and its entry in the registry.
struct Connection {
    state: Arc<State>,
    info: ConnectionInfo,
    /// `requestContext.authorizer` for every event after the authorizer.
    authorizer: Value,
    socket: Arc<Socket>,
}

/// How the socket ended, as `$disconnect` reports it.
type Ending = (u16, String);

impl Connection {
    /// Reads the client and runs the timers here; writes in a task of their own, so a client
    /// that stops reading (its frames stuck in a full TCP window) cannot hold up the idle and
    /// maximum-duration timers, `DELETE @connections` or shutdown: those close anyway, giving
    /// a stuck writer [`CLOSE_HANDSHAKE`] to get the close frame out before the connection is
    /// dropped.
    async fn run(self: Arc<Self>, ws: WebSocket, outbound: Mailbox) {
        tracing::info!(source_ip = %self.info.source_ip, "connected");
        let settings = &self.state.settings;
        let Mailbox { frames, mut close } = outbound;
        let (sink, mut stream) = ws.split();
        let (close_frame, close_rx) = oneshot::channel::<(u16, String)>();
        let mut writer = tokio::spawn(write(sink, frames, close_rx, self.socket.clone()).in_current_span());
        let (inbound, queue) = mpsc::channel(INBOUND_QUEUE);
        let stop = CancellationToken::new();
        // Handler calls run beside the loop, one at a time in arrival order, so a slow route
        // never holds up pushes to this socket or the timers.
        let worker = tokio::spawn(self.clone().handle_messages(queue, stop.clone()).in_current_span());
        let opened = Instant::now();
        let mut idle_until = opened + settings.idle_timeout;
        let ours = |code: u16, reason: &str| End::Ours(code, reason.to_owned());
        let end = loop {
            tokio::select! {
                _ = self.state.shutdown.cancelled() => break ours(1001, "Going away"),
                _ = sleep_until(opened + settings.max_duration) => {
                    tracing::info!("maximum connection duration reached");
                    break ours(1001, "Going away");
                }
                _ = sleep_until(idle_until) => {
                    tracing::info!("idle timeout");
                    break ours(1001, "Going away");
                }
                changed = close.changed() => {
                    let asked = changed.ok().and_then(|()| close.borrow_and_update().clone());
                    match asked {
                        Some((code, reason)) => break End::Ours(code, reason),
                        // The socket's sender lives as long as this loop; never reached.
                        None => break ours(1011, "Internal error"),
                    }
                }
                _ = &mut writer => break End::Lost,
                frame = stream.next() => {
                    let message = match frame {
                        Some(Ok(message)) => message,
                        Some(Err(e)) if is_too_big(&e) => {
                            tracing::info!("frame over {MAX_FRAME_BYTES} bytes or message over {MAX_MESSAGE_BYTES} bytes");
                            break ours(1009, "Message too big");
                        }
                        // RFC 6455 fails the connection on a text frame that is not UTF-8;
                        // 1007 tells the client why instead of a bare dropped socket.
                        Some(Err(e)) if is_invalid_utf8(&e) => {
                            tracing::info!("text message is not UTF-8");
                            break ours(1007, "Invalid frame payload data");
                        }
                        Some(Err(e)) => {
                            tracing::info!(error = %e, "socket failed");
                            break End::Lost;
                        }
                        None => break End::Lost,
                    };
                    let now = events::now_ms();
                    // Any frame from the client, ping included, counts as activity.
                    self.socket.touch(now);
                    idle_until = Instant::now() + settings.idle_timeout;
                    let queued = match message {
                        Message::Text(text) => inbound.send((text.as_bytes().to_vec(), false)).await,
                        Message::Binary(data) => inbound.send((data.to_vec(), true)).await,
                        Message::Close(frame) => {
                            break match frame {
                                Some(frame) => End::Theirs(frame.code, frame.reason.to_string()),
                                None => End::Theirs(1005, String::new()),
                            };
                        }
                        Message::Ping(_) | Message::Pong(_) => Ok(()),
                    };
                    if queued.is_err() {
                        break ours(1011, "Internal error");
                    }
                }
            }
        };
        let ending: Ending = match end {
            End::Ours(code, reason) => {
                let _ = close_frame.send((code, reason.clone()));
                // The writer sends the close frame, then reading on lets the client's answer in.
                let _ = tokio::time::timeout(CLOSE_HANDSHAKE, async {
                    let _ = (&mut writer).await;
                    drain(&mut stream).await;
                })
                .await;
                (code, reason)
            }
            End::Theirs(code, reason) => {
                drop(close_frame);
                // Reading on lets the automatic close reply go out.
                drain(&mut stream).await;
                (code, reason)
            }
            End::Lost => (1006, "Connection lost".into()),
        };
        // A writer still stuck on a client that stopped reading is dropped with the socket.
        writer.abort();
        stop.cancel();
        drop(inbound);
        // A message being handled finishes first; ones still queued are dropped with the socket.
        let _ = worker.await;
        self.finish(ending.0, ending.1).await;
    }

    /// After the socket is gone: posts now answer 410, then `$disconnect` removes the rows.
    async fn finish(self: Arc<Self>, code: u16, reason: String) {
        self.state.registry.remove(&self.info.connection_id);
        let event = self.info.disconnect_event(&self.authorizer, code, &reason);
        if let Err(e) = route(&self.state.hub, event, Some(deadline())).await {
            tracing::error!(error = %e, "$disconnect failed");
        }
        tracing::info!(code, reason, "disconnected");
    }

    async fn handle_messages(self: Arc<Self>, mut queue: mpsc::Receiver<(Vec<u8>, bool)>, stop: CancellationToken) {
        loop {
            let (body, binary) = tokio::select! {
                biased;
                _ = stop.cancelled() => return,
                next = queue.recv() => match next {
                    Some(message) => message,
                    None => return,
                },
            };
            let event = self.info.message_event(&self.authorizer, &body, binary);
            let request_id = event["requestContext"]["requestId"].clone();
            let reply = match route(&self.state.hub, event, Some(deadline())).await {
                Ok(response) => reply_frame(&response),
                // What API Gateway sends the client when the integration fails.
                Err(_) => Some(Outbound::Text(
                    json!({
                        "message": "Internal server error",
                        "connectionId": self.info.connection_id,
                        "requestId": request_id,
                    })
                    .to_string(),
                )),
            };
            if let Some(reply) = reply {
                // A closing socket, or a client whose queue is full (logged), misses the reply.
                let _ = self.socket.send(reply);
            }
        }
    }
}

/// The route's response body, sent back to the client as API Gateway's route response does.
fn reply_frame(response: &Value) -> Option<Outbound> {
    let body = response.get("body").and_then(Value::as_str).filter(|b| !b.is_empty())?;
    if response.get("isBase64Encoded").and_then(Value::as_bool) == Some(true) {
        let data = base64::engine::general_purpose::STANDARD.decode(body).ok()?;
        return Some(Outbound::Binary(data));
    }
    Some(Outbound::Text(body.to_owned()))
}

/// How a socket's loop ended.
enum End {
    /// The hub closes with this code and reason.
    Ours(u16, String),
    /// The client sent a close frame.
    Theirs(u16, String),
    /// The connection failed.
    Lost,
}

/// Sends the queued frames to the client until told to close (then sends the close frame) or
/// the connection fails. A close asked for while a frame is stuck waits behind it; the loop
/// gives it [`CLOSE_HANDSHAKE`], then drops the connection.
async fn write(
    mut sink: SplitSink<WebSocket, Message>,
    mut frames: mpsc::UnboundedReceiver<Outbound>,
    mut close: oneshot::Receiver<(u16, String)>,
    socket: Arc<Socket>,
) {
    loop {
        let next = tokio::select! {
            biased;
            asked = &mut close => {
                if let Ok((code, reason)) = asked {
                    let frame = CloseFrame { code, reason: reason.into() };
                    let _ = sink.send(Message::Close(Some(frame))).await;
                }
                return;
            }
            next = frames.recv() => next,
        };
        let Some(outbound) = next else { return };
        socket.taken(&outbound);
        let message = match outbound {
            Outbound::Text(text) => Message::Text(text.into()),
            Outbound::Binary(data) => Message::Binary(data.into()),
        };
        if sink.send(message).await.is_err() {
            return;
        }
    }
}

/// Reads until the client's side ends, for at most [`CLOSE_HANDSHAKE`].
async fn drain(stream: &mut SplitStream<WebSocket>) {
    let _ = tokio::time::timeout(CLOSE_HANDSHAKE, async {
        while let Some(Ok(_)) = stream.next().await {}
    })
    .await;
}

/// axum hides tungstenite's error type; only a message over the size limit closes with 1009.
fn is_too_big(e: &axum::Error) -> bool {
    tungstenite_error(e).is_some_and(|e| matches!(e, tungstenite::Error::Capacity(_)))
}

/// A text message that is not valid UTF-8 closes with 1007.
fn is_invalid_utf8(e: &axum::Error) -> bool {
    tungstenite_error(e).is_some_and(|e| matches!(e, tungstenite::Error::Utf8(_)))
}

fn tungstenite_error(e: &axum::Error) -> Option<&tungstenite::Error> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        if let Some(found) = err.downcast_ref::<tungstenite::Error>() {
            return Some(found);
        }
        source = err.source();
    }
    None
}
