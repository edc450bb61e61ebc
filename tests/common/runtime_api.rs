//! A Lambda Runtime API served on a loopback port, so a `lambda_runtime` binary (the release
//! `wshub`, or `examples/hello.rs`) runs here as Lambda runs it: it polls `invocation/next`,
//! answers on `invocation/{id}/response` or `invocation/{id}/error`, and reports a failed start on
//! `init/error`. The one emulator of the test suite and the benchmarks: `tests/lambda_binary.rs`
//! (through `mod common`), `examples/coldstart.rs` and `examples/bench_fanout.rs` (with
//! `#[path = "../tests/common/runtime_api.rs"] mod runtime_api;`).
//!
//! Each invocation is queued with a deadline (counted from when it is queued) and handed out, in
//! order, to whichever poll comes first, with the headers Lambda sends: request id, deadline,
//! function ARN and trace id. A poll with nothing queued waits until something is.

#![allow(dead_code)] // each user takes its own subset

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::Router;
use serde_json::{json, Value};
use tokio::sync::{oneshot, Notify};

/// What the function answered: its response, or the error it reported.
pub type Outcome = Result<Value, Value>;

/// The deadline `invoke` gives, and how long it waits for the answer.
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(30);

/// An answer, with when its invocation was handed to the function and when the answer came.
#[derive(Debug)]
pub struct Answer {
    pub outcome: Outcome,
    pub served: Instant,
    pub answered: Instant,
}

#[derive(Clone, Default)]
pub struct RuntimeApi {
    shared: Arc<Shared>,
}

#[derive(Default)]
struct Shared {
    queue: Mutex<VecDeque<Queued>>,
    queued: Notify,
    waiting: Mutex<HashMap<String, Waiting>>,
    init_error: Mutex<Option<Value>>,
    first_poll: Mutex<Option<Instant>>,
}

struct Queued {
    id: String,
    event: Value,
    deadline_ms: u128,
}

struct Waiting {
    tx: oneshot::Sender<Answer>,
    served: Option<Instant>,
}

/// The server of a started `RuntimeApi`; dropping it stops accepting connections.
pub struct Server {
    addr: String,
    task: tokio::task::JoinHandle<()>,
}

impl Server {
    /// `host:port`, as `AWS_LAMBDA_RUNTIME_API` takes it.
    pub fn addr(&self) -> &str {
        &self.addr
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// An invocation in the queue or with the function.
pub struct Pending {
    rx: oneshot::Receiver<Answer>,
}

impl Pending {
    /// Waits, as long as it takes, for the function's answer.
    pub async fn answer(self) -> Answer {
        self.rx.await.unwrap_or_else(|_| {
            let now = Instant::now();
            Answer {
                outcome: Err(json!("runtime API dropped the invocation")),
                served: now,
                answered: now,
            }
        })
    }
}

fn epoch_ms() -> u128 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis()
}

async fn next(State(api): State<RuntimeApi>) -> impl IntoResponse {
    let shared = &api.shared;
    shared.first_poll.lock().unwrap().get_or_insert_with(Instant::now);
    loop {
        let notified = shared.queued.notified();
        let popped = shared.queue.lock().unwrap().pop_front();
        if let Some(Queued { id, event, deadline_ms }) = popped {
            if let Some(waiting) = shared.waiting.lock().unwrap().get_mut(&id) {
                waiting.served = Some(Instant::now());
            }
            let headers = [
                ("lambda-runtime-aws-request-id", id),
                ("lambda-runtime-deadline-ms", deadline_ms.to_string()),
                (
                    "lambda-runtime-invoked-function-arn",
                    "arn:aws:lambda:us-east-1:123456789012:function:wshub".into(),
                ),
                (
                    "lambda-runtime-trace-id",
                    "Root=1-5f6b2a1e-3c1d2f0b4a5e6d7c8b9a0f1e;Sampled=0".into(),
                ),
            ];
            return (headers, event.to_string());
        }
        notified.await;
    }
}

/// A body that is not JSON is an error outcome, whichever endpoint it came to.
fn parse(body: &Bytes, what: &str) -> Outcome {
    serde_json::from_slice(body).map_err(|e| {
        json!({
            "errorType": "RuntimeApi.NotJson",
            "errorMessage": format!("the {what} is not JSON ({e}): {}", String::from_utf8_lossy(body)),
        })
    })
}

fn settle(api: &RuntimeApi, id: &str, outcome: Outcome) {
    let answered = Instant::now();
    if let Some(waiting) = api.shared.waiting.lock().unwrap().remove(id) {
        let served = waiting.served.unwrap_or(answered);
        let _ = waiting.tx.send(Answer {
            outcome,
            served,
            answered,
        });
    }
}

async fn response(State(api): State<RuntimeApi>, Path(id): Path<String>, body: Bytes) -> &'static str {
    settle(&api, &id, parse(&body, "response"));
    "{}"
}

async fn error(State(api): State<RuntimeApi>, Path(id): Path<String>, body: Bytes) -> &'static str {
    settle(&api, &id, Err(parse(&body, "error").unwrap_or_else(|e| e)));
    "{}"
}

async fn init_error(State(api): State<RuntimeApi>, body: Bytes) -> &'static str {
    let reported = serde_json::from_slice(&body).unwrap_or_else(|_| json!(String::from_utf8_lossy(&body)));
    *api.shared.init_error.lock().unwrap() = Some(reported);
    "{}"
}

impl RuntimeApi {
    /// Serves this API on a free loopback port until the returned server is dropped.
    pub async fn start(&self) -> Server {
        let app = Router::new()
            .route("/2018-06-01/runtime/invocation/next", get(next))
            .route("/2018-06-01/runtime/invocation/{id}/response", post(response))
            .route("/2018-06-01/runtime/invocation/{id}/error", post(error))
            .route("/2018-06-01/runtime/init/error", post(init_error))
            .with_state(self.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let task = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Server { addr, task }
    }

    /// Queues an invocation for the function's next poll, `deadline` from now.
    pub fn enqueue(&self, event: Value, deadline: Duration) -> Pending {
        let id = format!("req-{:016x}", fastrand::u64(..));
        let (tx, rx) = oneshot::channel();
        let waiting = Waiting { tx, served: None };
        self.shared.waiting.lock().unwrap().insert(id.clone(), waiting);
        let deadline_ms = epoch_ms() + deadline.as_millis();
        self.shared
            .queue
            .lock()
            .unwrap()
            .push_back(Queued { id, event, deadline_ms });
        self.shared.queued.notify_waiters();
        Pending { rx }
    }

    /// One invocation with `DEFAULT_DEADLINE`; panics, naming any init error, when the function
    /// has not answered by then.
    pub async fn invoke(&self, event: Value) -> Outcome {
        let pending = self.enqueue(event, DEFAULT_DEADLINE);
        match tokio::time::timeout(DEFAULT_DEADLINE, pending.answer()).await {
            Ok(answer) => answer.outcome,
            Err(_) => panic!(
                "no answer from the function in {} s; init error: {:?}",
                DEFAULT_DEADLINE.as_secs(),
                self.init_error()
            ),
        }
    }

    /// One invocation with the given deadline, waiting as long as the function takes to answer.
    pub async fn invoke_with_deadline(&self, event: Value, deadline: Duration) -> Outcome {
        self.enqueue(event, deadline).answer().await.outcome
    }

    /// What the function reported on `init/error`, if it did.
    pub fn init_error(&self) -> Option<Value> {
        self.shared.init_error.lock().unwrap().clone()
    }

    /// When the function first polled for an invocation (its init was done).
    pub fn first_poll(&self) -> Option<Instant> {
        *self.shared.first_poll.lock().unwrap()
    }
}
