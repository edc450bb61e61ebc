//! `cargo run`: the WebSocket API, its Management API and an SQS inbox on one local port,
//! all served by the Lambda's router. See `wshub::local`.

use std::net::IpAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;
use wshub::local::{self, LocalHub, Settings};
use wshub::store::memory::MemoryStore;
use wshub::store::ConnectionStore;

/// Local WebSocket hub: API Gateway's WebSocket and Management APIs plus SQS injection,
/// driving the same router as the Lambda. Handler configuration (AUTH_TOKENS, JWT_SECRET, …)
/// comes from the same environment variables as the Lambda's.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// Address to listen on.
    #[arg(long, env = "WSHUB_HOST", default_value = "127.0.0.1")]
    host: IpAddr,
    /// Port to listen on; 0 picks a free one.
    #[arg(long, env = "WSHUB_PORT", default_value_t = 3001)]
    port: u16,
    /// Stage name: sockets are also served at /{stage}, @connections at /{stage}/@connections.
    #[arg(long, env = "WSHUB_STAGE", default_value = local::DEFAULT_STAGE, value_parser = stage_name)]
    stage: String,
    /// Seconds without a frame from the client before the socket closes (API Gateway: 600).
    #[arg(long, env = "WSHUB_IDLE_TIMEOUT_SECONDS", default_value_t = 600, value_parser = clap::value_parser!(u64).range(1..))]
    idle_timeout_seconds: u64,
    /// Maximum seconds a socket stays open (API Gateway: 7200).
    #[arg(long, env = "WSHUB_MAX_DURATION_SECONDS", default_value_t = 7200, value_parser = clap::value_parser!(u64).range(1..))]
    max_duration_seconds: u64,
    /// Bytes queued per socket for a client that is slow to read; a post that does not fit
    /// answers 429 LimitExceededException (at least 131072: one largest message).
    #[arg(long, env = "WSHUB_OUTBOUND_QUEUE_BYTES", default_value_t = 1024 * 1024, value_parser = clap::value_parser!(u64).range(131_072..))]
    outbound_queue_bytes: u64,
    /// Use this DynamoDB (DynamoDB Local, moto, …) instead of the in-memory store, creating the
    /// table CONNECTIONS_TABLE if missing. Also taken from AWS_ENDPOINT_URL_DYNAMODB when
    /// CONNECTIONS_TABLE is set too.
    #[arg(long, value_name = "URL")]
    dynamodb_endpoint: Option<String>,
    /// POST every forwarded client action (FORWARD_ACTIONS) to this http:// URL, as the
    /// EventBridge event a rule's target would receive; they are listed at /_local/events too.
    #[arg(long, env = "WSHUB_FORWARD_URL", value_name = "URL")]
    forward_url: Option<String>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Print an HS256 JWT signed with JWT_SECRET (iss/aud from JWT_ISSUER/JWT_AUDIENCE when
    /// set), for `wscat -H "Authorization: Bearer …"` or `?token=…`.
    Token {
        /// The user id (the `sub` claim).
        #[arg(long)]
        user: String,
        /// Lifetime: 90s, 15m, 1h, 7d (at most 30d).
        #[arg(long, default_value = "1h", value_parser = wshub::token::parse_ttl)]
        ttl: Duration,
        /// Topics or prefixes ending in *, comma-separated (the `topics` claim).
        #[arg(long, value_delimiter = ',')]
        topics: Vec<String>,
    },
}

fn stage_name(s: &str) -> Result<String, String> {
    let valid = !s.is_empty()
        && s.len() <= 128
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        && s != "_local";
    if valid {
        Ok(s.to_owned())
    } else {
        Err("letters, digits, '-' and '_' only (and not _local)".into())
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    if let Some(Command::Token { user, ttl, topics }) = &args.command {
        return token(user, *ttl, topics);
    }
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")))
        // stdout carries only the ready lines, so scripts can wait for them.
        .with_writer(std::io::stderr)
        .init();
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            ExitCode::FAILURE
        }
    }
}

/// `token`: the JWT on stdout, nothing else; refusals on stderr with a failing exit code.
fn token(user: &str, ttl: Duration, topics: &[String]) -> ExitCode {
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
    let request = wshub::token::TokenRequest {
        user: user.to_owned(),
        ttl,
        topics: topics
            .iter()
            .map(|t| t.trim().to_owned())
            .filter(|t| !t.is_empty())
            .collect(),
        issuer: env("JWT_ISSUER"),
        audience: env("JWT_AUDIENCE"),
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    match wshub::token::mint(env("JWT_SECRET").as_deref(), &request, now) {
        Ok(jwt) => {
            println!("{jwt}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("wshub token: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
    let local = local::local_config(env).map_err(|e| format!("invalid configuration: {e}"))?;
    if local.default_token {
        tracing::warn!(
            "neither AUTH_TOKENS nor JWT_SECRET is set: accepting the local-only token {:?} (the Lambda would deny everyone)",
            local::DEFAULT_TOKEN
        );
    }
    let config = local.config;
    let dynamodb_endpoint = args.dynamodb_endpoint.clone().or_else(|| {
        env("CONNECTIONS_TABLE")
            .is_some()
            .then(|| env("AWS_ENDPOINT_URL_DYNAMODB"))
            .flatten()
    });
    let store: Arc<dyn ConnectionStore> = match &dynamodb_endpoint {
        Some(endpoint) => Arc::new(local::dynamodb_store(endpoint, &config.table).await?),
        None => Arc::new(MemoryStore::new()),
    };
    let settings = Settings {
        stage: args.stage.clone(),
        idle_timeout: Duration::from_secs(args.idle_timeout_seconds),
        max_duration: Duration::from_secs(args.max_duration_seconds),
        outbound_queue_bytes: usize::try_from(args.outbound_queue_bytes).unwrap_or(usize::MAX),
        forward_url: args.forward_url.clone(),
    };
    let hub = LocalHub::bind((args.host, args.port), settings, config, store)
        .await
        .map_err(|e| format!("cannot listen on {}:{}: {e}", args.host, args.port))?;
    let ws = hub.ws_url();
    let http = hub.http_url();
    let backend = match &dynamodb_endpoint {
        Some(endpoint) => format!("DynamoDB at {endpoint}, table {}", hub.config().table),
        None => "in-memory store".to_owned(),
    };
    let token = if local.default_token {
        local::DEFAULT_TOKEN
    } else {
        "YOUR_TOKEN"
    };
    println!("wshub-local ready on {ws} (also {ws}/{}), {backend}", args.stage);
    println!("  connect:  wscat --header token:{token} -c {ws}");
    println!("  push:     curl -X POST --data '{{\"data\":\"hi\"}}' {http}/_local/sqs");
    println!("  manage:   {http}/@connections/{{id}} (POST, GET, DELETE)");
    println!("  events:   {http}/_local/events (forwarded client actions)");
    println!("  demo:     {http}/");
    hub.serve(shutdown_signal()).await?;
    tracing::info!("stopped");
    Ok(())
}

/// Ctrl-C, or SIGTERM from a process manager or a test script.
async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(signal) => signal,
            Err(_) => {
                let _ = interrupt.await;
                return;
            }
        };
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
    tracing::info!("shutting down: closing every socket with 1001");
}
