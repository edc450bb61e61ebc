//! The local hub: plays API Gateway's WebSocket API, its Management API and the SQS event
//! source on one port, and hands every event to [`crate::handle`] with the JSON shapes AWS
//! sends, so the Lambda's router runs unchanged on a laptop without an AWS account.
//!
//! - [`server`]: the upgrade (authorizer, `$connect`) and each socket's loop.
//! - [`management`]: `/@connections/{id}` and the hub's own `/_local/…` routes.
//! - [`events`]: AWS-shaped events in, API Gateway's readings of the answers out.
//! - [`notifier`]: the open sockets, and the handlers' in-process notifier posting to them.

pub mod events;
pub mod forward;
pub mod management;
pub mod notifier;
pub mod server;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use axum::{Json, Router};
use serde_json::json;
use tokio::net::{TcpListener, ToSocketAddrs};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{Config, ConfigError};
use crate::hub::Hub;
use crate::store::dynamo::DynamoStore;
use crate::store::table::create_table;
use crate::store::ConnectionStore;
use notifier::{LocalNotifier, Registry};

/// `CONNECTIONS_TABLE` when unset, for the local hub only (the Lambda requires it).
pub const DEFAULT_TABLE: &str = "wshub-connections";
/// The static token the local hub accepts when no credentials are configured.
pub const DEFAULT_TOKEN: &str = "hello";
pub const DEFAULT_STAGE: &str = "local";
/// API Gateway's limits.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(10 * 60);
pub const DEFAULT_MAX_DURATION: Duration = Duration::from_secs(2 * 3600);
pub const MAX_MESSAGE_BYTES: usize = 128 * 1024;
/// API Gateway's WebSocket frame size quota: a larger message must arrive in several frames,
/// and a larger frame (or message) closes the connection with 1009 ("Quotas for configuring
/// and running a WebSocket in API Gateway", in "Amazon API Gateway quotas").
pub const MAX_FRAME_BYTES: usize = 32 * 1024;
/// How long a closed connection keeps reading (and discarding) what the client still sends.
const LINGER: Duration = Duration::from_secs(2);
/// The most a closed connection reads and discards before it gives up on the client.
const LINGER_BYTES: usize = 16 * 1024 * 1024;
/// How long Ctrl-C waits for sockets to close and run `$disconnect`.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// What the local hub plays, beyond the handlers' own [`Config`].
#[derive(Debug, Clone)]
pub struct Settings {
    pub stage: String,
    pub idle_timeout: Duration,
    pub max_duration: Duration,
    /// Bytes a socket may hold queued for a client that is slow to read; a post that does not
    /// fit answers 429 LimitExceededException and the socket stays open (see
    /// [`notifier::Socket::send`]).
    pub outbound_queue_bytes: usize,
    /// `--forward-url`: where forwarded client actions are POSTed (an `http://` URL).
    pub forward_url: Option<String>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            stage: DEFAULT_STAGE.into(),
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            max_duration: DEFAULT_MAX_DURATION,
            outbound_queue_bytes: notifier::DEFAULT_OUTBOUND_QUEUE_BYTES,
            forward_url: None,
        }
    }
}

/// The handlers' configuration for the local hub, and whether [`DEFAULT_TOKEN`] was added.
#[derive(Debug)]
pub struct LocalConfig {
    pub config: Config,
    pub default_token: bool,
}

/// The Lambda's environment contract with two local-only defaults: `CONNECTIONS_TABLE` is
/// [`DEFAULT_TABLE`], and with neither `AUTH_TOKENS` nor `JWT_SECRET` the token `hello` is
/// accepted, so `cargo run` works as it is. The Lambda itself stays fail-closed.
pub fn local_config(lookup: impl Fn(&str) -> Option<String>) -> Result<LocalConfig, ConfigError> {
    let set = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
    let default_token = ["AUTH_TOKENS", "JWT_SECRET", "JWT_JWKS_URL"]
        .iter()
        .all(|name| set(name).is_none());
    let config = Config::from_lookup(|name| match name {
        "CONNECTIONS_TABLE" => set(name).or_else(|| Some(DEFAULT_TABLE.into())),
        "AUTH_TOKENS" if default_token => Some(DEFAULT_TOKEN.into()),
        // No EventBridge here: forwarded actions go to the local bus whatever its name.
        "FORWARD_EVENT_BUS" => set(name).or_else(|| Some("local".into())),
        _ => lookup(name),
    })?;
    Ok(LocalConfig { config, default_token })
}

#[derive(Debug, thiserror::Error)]
#[error("cannot create table {table} at {endpoint}: {source}")]
pub struct TableError {
    table: String,
    endpoint: String,
    source: aws_sdk_dynamodb::Error,
}

/// A DynamoDB store on `endpoint` (DynamoDB Local, moto, …), creating the table when missing.
/// A local DynamoDB accepts any credentials, so dummy ones (and `us-east-1`) are used when the
/// environment names none; that also spares a fresh machine the slow instance-metadata probe.
pub async fn dynamodb_store(endpoint: &str, table: &str) -> Result<DynamoStore, TableError> {
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest()).endpoint_url(endpoint);
    if std::env::var_os("AWS_REGION").is_none() && std::env::var_os("AWS_DEFAULT_REGION").is_none() {
        loader = loader.region(aws_config::Region::new("us-east-1"));
    }
    if std::env::var_os("AWS_ACCESS_KEY_ID").is_none() && std::env::var_os("AWS_PROFILE").is_none() {
        loader = loader.credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
            "local",
            "local",
            None,
            None,
            "wshub-local",
        ));
    }
    let client = crate::store::dynamo::client(&loader.load().await);
    match create_table(&client, table).await {
        Ok(()) => tracing::info!(table, "created the table"),
        Err(aws_sdk_dynamodb::Error::ResourceInUseException(_)) => tracing::info!(table, "using the existing table"),
        Err(source) => {
            return Err(TableError {
                table: table.to_owned(),
                endpoint: endpoint.to_owned(),
                source,
            })
        }
    }
    Ok(DynamoStore::new(client, table))
}

/// Shared by every request and socket of one hub.
pub(crate) struct State {
    pub hub: Hub,
    pub registry: Arc<Registry>,
    pub settings: Settings,
    /// Cancelled on shutdown: every socket closes with 1001.
    pub shutdown: CancellationToken,
    /// Every socket loop, so shutdown can wait for their `$disconnect`s.
    pub sockets: TaskTracker,
    /// Forwarded client actions, listed at `GET /_local/events`.
    pub events: Arc<forward::LocalBus>,
}

/// A bound, not yet serving, local hub.
pub struct LocalHub {
    listener: TcpListener,
    addr: SocketAddr,
    state: Arc<State>,
}

impl LocalHub {
    /// Binds `addr` (port 0 picks a free one) and points the handlers' @connections endpoint
    /// at this hub, replacing any `APIGW_MANAGEMENT_ENDPOINT`: pushes must reach these sockets.
    pub async fn bind(
        addr: impl ToSocketAddrs,
        settings: Settings,
        mut config: Config,
        store: Arc<dyn ConnectionStore>,
    ) -> std::io::Result<LocalHub> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        config.management_endpoint = Some(format!("http://{addr}/{}", settings.stage));
        config.auth.warm_up().await;
        let registry = Arc::new(Registry::default());
        let events = Arc::new(
            forward::LocalBus::new(config.region.clone(), settings.forward_url.as_deref())
                .map_err(std::io::Error::other)?,
        );
        let forwarding = config.forward.is_some();
        let mut hub = Hub::new(config, store, Arc::new(LocalNotifier::new(registry.clone())));
        if forwarding {
            hub = hub.with_events(events.clone());
        }
        let state = Arc::new(State {
            hub,
            registry,
            settings,
            shutdown: CancellationToken::new(),
            sockets: TaskTracker::new(),
            events,
        });
        Ok(LocalHub { listener, addr, state })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn ws_url(&self) -> String {
        format!("ws://{}", self.addr)
    }

    pub fn http_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The handlers' configuration as the hub completed it.
    pub fn config(&self) -> &Config {
        &self.state.hub.config
    }

    /// Serves until `shutdown` completes, then closes every socket with 1001 and waits (up to
    /// 10 s) for their `$disconnect` events.
    pub async fn serve(self, shutdown: impl Future<Output = ()> + Send + 'static) -> std::io::Result<()> {
        let state = self.state.clone();
        let token = state.shutdown.clone();
        let app = router(state.clone()).into_make_service_with_connect_info::<Peer>();
        axum::serve(Lingering(self.listener), app)
            .with_graceful_shutdown(async move {
                shutdown.await;
                token.cancel();
            })
            .await?;
        // Upgraded sockets are no longer the server's connections: wait for them here.
        state.sockets.close();
        if tokio::time::timeout(SHUTDOWN_GRACE, state.sockets.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                open = state.registry.len(),
                "sockets still closing after {SHUTDOWN_GRACE:?}; exiting anyway"
            );
        }
        Ok(())
    }
}

/// The hub's listener: TCP connections that close gracefully (see [`LingeringStream`]).
struct Lingering(TcpListener);

impl axum::serve::Listener for Lingering {
    type Io = LingeringStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let (stream, addr) = axum::serve::Listener::accept(&mut self.0).await;
        (LingeringStream(Some(stream)), addr)
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.0.local_addr()
    }
}

/// The client's address, as the handlers see it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Peer(pub SocketAddr);

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, Lingering>> for Peer {
    fn connect_info(stream: axum::serve::IncomingStream<'_, Lingering>) -> Self {
        Peer(*stream.remote_addr())
    }
}

/// A TCP connection that, once the hub is done with it, shuts down its sending side and reads
/// and discards what the client still sends (for at most [`LINGER`] and [`LINGER_BYTES`])
/// before closing. Closing a socket with unread data makes the kernel answer with a reset,
/// which can destroy the close frame just sent before the client reads it: a client still
/// uploading a message over the limit would see a reset instead of the 1009 close.
pub(crate) struct LingeringStream(Option<tokio::net::TcpStream>);

impl LingeringStream {
    fn inner(&mut self) -> std::pin::Pin<&mut tokio::net::TcpStream> {
        std::pin::Pin::new(self.0.as_mut().expect("present until dropped"))
    }
}

impl tokio::io::AsyncRead for LingeringStream {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        self.inner().poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for LingeringStream {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        self.inner().poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        self.inner().poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        self.inner().poll_shutdown(cx)
    }
}

impl Drop for LingeringStream {
    fn drop(&mut self) {
        let Some(stream) = self.0.take() else { return };
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(linger(stream));
        }
    }
}

async fn linger(mut stream: tokio::net::TcpStream) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // FIN after whatever was written (the close frame): the client reads it, then its end.
    let _ = stream.shutdown().await;
    let mut buffer = [0u8; 16 * 1024];
    let mut read = 0;
    let _ = tokio::time::timeout(LINGER, async {
        while read < LINGER_BYTES {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(n) => read += n,
            }
        }
    })
    .await;
}

fn router(state: Arc<State>) -> Router {
    let connections = || {
        post(management::post_to_connection)
            .get(management::get_connection)
            .delete(management::delete_connection)
    };
    Router::new()
        .route("/", get(server::upgrade_root))
        .route("/{stage}", get(server::upgrade_stage))
        .route("/@connections/{*id}", connections())
        .route("/{stage}/@connections/{*id}", connections())
        .route("/_local/sqs", post(management::inject_sqs))
        .route("/_local/wshub-client/{file}", get(server::client_file))
        .route(crate::http::ONLINE_PATH, any(management::online_status))
        .route(crate::http::PUBLISH_PATH, any(management::http_api))
        // `GET /topics/{topic}/presence` (the template's `GET /topics/{topic+}`).
        .route("/topics/{*rest}", any(management::online_status))
        .route("/_local/connections/{*id}", get(management::stored_connection))
        .route("/_local/events", get(forwarded_events))
        // Sockets on any other path, as behind the EdgePath distribution; else 404.
        .fallback(server::upgrade_any)
        .method_not_allowed_fallback(|| async {
            error(
                StatusCode::METHOD_NOT_ALLOWED,
                "MethodNotAllowedException",
                "method not allowed on this route",
            )
        })
        // Above every limit the routes check themselves, so those answer with their own errors.
        .layer(DefaultBodyLimit::max(2 * 1024 * 1024))
        .with_state(state)
}

/// `GET /_local/events`: every forwarded client action, oldest first, as EventBridge events.
async fn forwarded_events(axum::extract::State(state): axum::extract::State<Arc<State>>) -> Response {
    Json(json!({"events": state.events.events()})).into_response()
}

/// [`crate::handle`], with its future's `Send` stated where the lifetimes are concrete: the
/// compiler cannot prove it inside a spawned task's higher-ranked context by itself.
pub(crate) fn route(
    hub: &Hub,
    event: serde_json::Value,
    deadline: Option<tokio::time::Instant>,
) -> impl Future<Output = Result<serde_json::Value, crate::RouterError>> + Send + '_ {
    crate::handle(hub, event, deadline)
}

/// A JSON error shaped like AWS's REST errors: `x-amzn-ErrorType` names it (the SDKs read
/// that header), the body says what to do.
pub(crate) fn error(status: StatusCode, error_type: &str, message: impl Into<String>) -> Response {
    let mut response = (status, Json(json!({"message": message.into()}))).into_response();
    if let Ok(value) = HeaderValue::from_str(error_type) {
        response
            .headers_mut()
            .insert(HeaderName::from_static("x-amzn-errortype"), value);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(vars: &[(&str, &str)]) -> LocalConfig {
        let map: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        local_config(|name| map.get(name).cloned()).unwrap()
    }

    #[tokio::test]
    async fn local_defaults_apply_only_when_unset() {
        let c = config(&[]);
        assert!(c.default_token);
        assert_eq!(c.config.table, DEFAULT_TABLE);
        assert!(c.config.auth.verify(DEFAULT_TOKEN).await.is_ok());
        let c = config(&[("AUTH_TOKENS", "alice=secret"), ("CONNECTIONS_TABLE", "t")]);
        assert!(!c.default_token);
        assert_eq!(c.config.table, "t");
        assert!(
            c.config.auth.verify(DEFAULT_TOKEN).await.is_err(),
            "configured auth replaces the default"
        );
        let c = config(&[("JWT_SECRET", "s"), ("AUTH_TOKENS", " ")]);
        assert!(!c.default_token);
        assert!(c.config.auth.verify(DEFAULT_TOKEN).await.is_err());
    }
}
