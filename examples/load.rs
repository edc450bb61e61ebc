//! Load against a running local hub: many concurrent sockets, many pushed messages, every
//! delivery counted. Prints one JSON line of figures; exits non-zero if anything was lost.
//!
//! `scripts/bench-local-load.sh` builds the release hub, starts it, runs this and stops it.
//! Only loopback: the URL must name 127.0.0.1 or localhost.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use futures::StreamExt;
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{json, Value};
use tokio::sync::Semaphore;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

#[derive(Parser)]
struct Args {
    /// The hub, e.g. ws://127.0.0.1:3001
    #[arg(long)]
    url: String,
    #[arg(long, default_value_t = 5000)]
    sockets: usize,
    /// Broadcasts to push; each reaches every socket.
    #[arg(long, default_value_t = 20)]
    broadcasts: usize,
    #[arg(long, default_value = "hello")]
    token: String,
    /// The hub's process id, to read its memory from /proc.
    #[arg(long)]
    hub_pid: Option<u32>,
    /// Sockets opening at once.
    #[arg(long, default_value_t = 200)]
    connect_concurrency: usize,
    /// Give up waiting for deliveries after this many seconds.
    #[arg(long, default_value_t = 300)]
    timeout_seconds: u64,
}

fn memory_kib(pid: Option<u32>, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{}/status", pid?)).ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let host = args
        .url
        .trim_start_matches("ws://")
        .split(['/', ':'])
        .next()
        .unwrap_or("");
    assert!(
        host == "127.0.0.1" || host == "localhost",
        "loopback only: {}",
        args.url
    );
    let http_base = format!("http{}", args.url.trim_end_matches('/').trim_start_matches("ws"));
    let rss_idle = memory_kib(args.hub_pid, "VmRSS");

    let received = Arc::new(AtomicUsize::new(0));
    let duplicates = Arc::new(AtomicUsize::new(0));
    let connected = Arc::new(AtomicUsize::new(0));
    let closed_early = Arc::new(AtomicUsize::new(0));
    let gate = Arc::new(Semaphore::new(args.connect_concurrency));
    let started = Instant::now();
    let mut sockets = Vec::with_capacity(args.sockets);
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel::<()>(args.sockets);
    for _ in 0..args.sockets {
        let (url, token, gate) = (args.url.clone(), args.token.clone(), gate.clone());
        let (received, duplicates, connected, closed_early) = (
            received.clone(),
            duplicates.clone(),
            connected.clone(),
            closed_early.clone(),
        );
        let ready = ready_tx.clone();
        let expected = args.broadcasts;
        sockets.push(tokio::spawn(async move {
            let permit = gate.acquire_owned().await.expect("semaphore open");
            let mut request = url.into_client_request().expect("valid URL");
            request
                .headers_mut()
                .insert("token", token.parse().expect("header value"));
            let (mut ws, _) = match tokio_tungstenite::connect_async(request).await {
                Ok(ok) => ok,
                Err(e) => {
                    eprintln!("connect failed: {e}");
                    closed_early.fetch_add(1, Ordering::Relaxed);
                    let _ = ready.send(()).await;
                    return;
                }
            };
            drop(permit);
            connected.fetch_add(1, Ordering::Relaxed);
            let _ = ready.send(()).await;
            let mut seen = std::collections::HashSet::new();
            while seen.len() < expected {
                match ws.next().await {
                    Some(Ok(Message::Text(text))) => {
                        let frame: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
                        if frame["action"] == "message" {
                            received.fetch_add(1, Ordering::Relaxed);
                            if !seen.insert(frame["id"].as_str().unwrap_or("").to_owned()) {
                                duplicates.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                    Some(Ok(_)) => {}
                    _ => {
                        closed_early.fetch_add(1, Ordering::Relaxed);
                        return;
                    }
                }
            }
            let _ = ws.close(None).await;
        }));
    }
    drop(ready_tx);
    for _ in 0..args.sockets {
        ready_rx.recv().await;
    }
    let connect_time = started.elapsed();
    let rss_connected = memory_kib(args.hub_pid, "VmRSS");

    let client: Client<_, Full<bytes::Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let push_started = Instant::now();
    for i in 0..args.broadcasts {
        let body = json!({"data": {"n": i, "pad": "x".repeat(64)}}).to_string();
        let request = hyper::Request::post(format!("{http_base}/_local/sqs"))
            .body(Full::new(bytes::Bytes::from(body)))
            .expect("request");
        let response = client.request(request).await.expect("push accepted");
        assert!(response.status().is_success(), "push {i}: {}", response.status());
    }
    let expected = args.sockets * args.broadcasts;
    let deadline = Instant::now() + Duration::from_secs(args.timeout_seconds);
    while received.load(Ordering::Relaxed) < expected
        && closed_early.load(Ordering::Relaxed) == 0
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let push_time = push_started.elapsed();
    let rss_pushed = memory_kib(args.hub_pid, "VmRSS");
    let peak = memory_kib(args.hub_pid, "VmHWM");
    for s in sockets {
        let _ = tokio::time::timeout(Duration::from_secs(5), s).await;
    }
    let got = received.load(Ordering::Relaxed);
    let report = json!({
        "sockets": args.sockets,
        "connected": connected.load(Ordering::Relaxed),
        "broadcasts": args.broadcasts,
        "expected_deliveries": expected,
        "delivered": got,
        "lost": expected.saturating_sub(got),
        "duplicates": duplicates.load(Ordering::Relaxed),
        "closed_early": closed_early.load(Ordering::Relaxed),
        "connect_seconds": connect_time.as_secs_f64(),
        "connects_per_second": args.sockets as f64 / connect_time.as_secs_f64(),
        "push_seconds": push_time.as_secs_f64(),
        "deliveries_per_second": got as f64 / push_time.as_secs_f64(),
        "hub_rss_kib": {"idle": rss_idle, "connected": rss_connected, "after_pushes": rss_pushed, "peak": peak},
    });
    println!("{report}");
    if got < expected {
        std::process::exit(1);
    }
}
