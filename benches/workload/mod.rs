//! The events the CPU benchmarks replay, shared by `benches/router.rs` (criterion) and
//! `examples/callgrind_router.rs` (instruction counts), so both measure the same work.
//!
//! Every event is a sample from `events/`, with the configuration of `events/env.json`, against
//! the in-memory store and a notifier that accepts every post without recording it: what is
//! measured is our CPU (parsing, classification, auth, routing, fan-out), never I/O. The world
//! the events meet: 100 live connections; `alice` owns 10 of them (the samples' connection
//! among them) and 10 subscribe to `news`; a broadcast reaches all 100.

#![allow(dead_code)] // each user takes its own subset

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use serde_json::{json, Value};
use wshub::notify::{Notifier, NotifyError};
use wshub::store::memory::MemoryStore;
use wshub::store::{Connection, ConnectionStore};
use wshub::{Config, Hub};

pub const CONNECTIONS: usize = 100;
/// The samples' connection (`requestContext.connectionId`, and the `sqs-connection` target).
pub const SAMPLE_CONNECTION: &str = "Tq8ZsdsyIAMCJyA=";

/// Accepts every post; counts them so a case can be checked before it is measured.
#[derive(Default)]
pub struct AcceptAll {
    pub posts: AtomicUsize,
}

#[async_trait]
impl Notifier for AcceptAll {
    async fn send(&self, _endpoint: &str, _connection_id: &str, _frame: &[u8]) -> Result<(), NotifyError> {
        self.posts.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

/// What an event needs from the store before it runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Needs {
    /// The shared world; running the event leaves it as it was.
    World,
    /// An empty store (`$connect` registers the connection).
    Empty,
    /// A store holding just the sample connection (`$disconnect` removes it).
    Registered,
}

pub struct Case {
    pub name: &'static str,
    /// The raw event, as the Lambda runtime hands it over.
    pub json: String,
    pub needs: Needs,
    /// Posts the notifier must see per run (a push's audience, sendmessage's subscribers).
    pub posts: usize,
}

impl Case {
    pub fn event(&self) -> Value {
        serde_json::from_str(&self.json).expect("sample events are JSON")
    }
}

fn sample(name: &str) -> Value {
    let path = format!("{}/events/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Every event type the router handles, in the order the tables list them.
pub fn cases() -> Vec<Case> {
    let case = |name, file: &str, needs, posts| Case {
        name,
        json: sample(file).to_string(),
        needs,
        posts,
    };
    vec![
        case("authorizer-token", "authorizer-token-header.json", Needs::World, 0),
        case("authorizer-jwt-hs256", "authorizer-jwt.json", Needs::World, 0),
        case("connect", "connect.json", Needs::Empty, 0),
        case("disconnect", "disconnect.json", Needs::Registered, 0),
        case("ping", "ping.json", Needs::World, 0),
        case("whoami", "whoami.json", Needs::World, 0),
        case("subscribe", "subscribe.json", Needs::World, 0),
        // To the other 9 subscribers of `news`; the sender is skipped.
        case("sendmessage", "sendmessage.json", Needs::World, 9),
        case("push-connection", "sqs-connection.json", Needs::World, 1),
        case("push-user", "sqs-user.json", Needs::World, 10),
        case("push-topic", "sqs-topic.json", Needs::World, 10),
        case("push-broadcast", "sqs-broadcast.json", Needs::World, CONNECTIONS),
    ]
}

pub fn config() -> Config {
    let params = sample("env.json")["Parameters"]
        .as_object()
        .cloned()
        .expect("env.json Parameters");
    Config::from_lookup(|name| params.get(name).and_then(Value::as_str).map(str::to_owned)).expect("env.json is valid")
}

/// Far in the future, so no row expires while a benchmark runs.
const TTL: i64 = 4_102_444_800;

fn connection(id: &str, user: &str) -> Connection {
    Connection {
        connection_id: id.to_owned(),
        user_id: user.to_owned(),
        connected_at: 1_795_244_400_000,
        source_ip: Some("203.0.113.10".to_owned()),
        path: None,
        ttl: TTL,
    }
}

pub struct Bench {
    pub rt: tokio::runtime::Runtime,
    pub config: Config,
    pub notifier: Arc<AcceptAll>,
    /// The shared world.
    pub world: Hub,
}

impl Bench {
    pub fn new() -> Bench {
        // One thread, as a Lambda invocation runs: no work-stealing noise in the figures.
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime");
        let config = config();
        let notifier = Arc::new(AcceptAll::default());
        let store = MemoryStore::new();
        rt.block_on(async {
            for i in 0..CONNECTIONS {
                let id = if i == 0 {
                    SAMPLE_CONNECTION.to_owned()
                } else {
                    format!("conn-{i:03}")
                };
                let user = if i < 10 {
                    "alice".to_owned()
                } else {
                    format!("user-{i:03}")
                };
                store.put_connection(&connection(&id, &user)).await.unwrap();
                if i % 10 == 0 {
                    store.subscribe(&id, "news", TTL, 0, usize::MAX).await.unwrap();
                }
            }
        });
        let world = Hub::new(config.clone(), Arc::new(store), notifier.clone());
        Bench {
            rt,
            config,
            notifier,
            world,
        }
    }

    /// A hub for one run of a case that changes its store; the shared world otherwise.
    pub fn fresh_hub(&self, needs: Needs) -> Option<Hub> {
        let store = MemoryStore::new();
        match needs {
            Needs::World => return None,
            Needs::Empty => {}
            Needs::Registered => {
                self.rt
                    .block_on(store.put_connection(&connection(SAMPLE_CONNECTION, "alice")))
                    .unwrap();
            }
        }
        Some(Hub::new(self.config.clone(), Arc::new(store), self.notifier.clone()))
    }

    /// Classifies and applies one event, as the Lambda bootstrap does.
    pub fn run(&self, hub: &Hub, event: Value) -> Value {
        self.rt
            .block_on(wshub::handle(hub, event, None))
            .expect("sample events are handled")
    }

    /// Runs `case` once and checks it did what it is meant to (allowed, 200, every post made),
    /// so no benchmark measures an error path by mistake.
    pub fn check(&self, case: &Case) {
        let fresh = self.fresh_hub(case.needs);
        let hub = fresh.as_ref().unwrap_or(&self.world);
        let before = self.notifier.posts.load(Ordering::Relaxed);
        let response = self.run(hub, case.event());
        let posts = self.notifier.posts.load(Ordering::Relaxed) - before;
        let ok = match case.name {
            n if n.starts_with("authorizer") => response["policyDocument"]["Statement"][0]["Effect"] == json!("Allow"),
            n if n.starts_with("push") => response["batchItemFailures"].as_array().is_some_and(Vec::is_empty),
            _ => {
                let reply: Value = response["body"]
                    .as_str()
                    .map_or(Value::Null, |b| serde_json::from_str(b).unwrap_or(Value::Null));
                response["statusCode"] == json!(200) && reply["action"] != json!("error")
            }
        };
        assert!(ok, "{}: unexpected response {response}", case.name);
        assert_eq!(posts, case.posts, "{}: posts", case.name);
    }
}

impl Default for Bench {
    fn default() -> Self {
        Self::new()
    }
}
