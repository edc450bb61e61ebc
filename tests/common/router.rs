//! A hub driven through `wshub::handle` with the sample events in `events/`, as API Gateway
//! would call the function, on the in-memory store or on DynamoDB (moto server).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde_json::{json, Value};
use wshub::notify::memory::MemoryNotifier;
use wshub::store::memory::MemoryStore;
use wshub::store::ConnectionStore;
use wshub::{Config, Hub};

use super::asyncapi;

/// A sample event from `events/`.
pub fn event(name: &str) -> Value {
    let path = format!("{}/events/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

#[derive(Clone, Copy)]
pub enum Backend {
    Memory,
    /// A fresh table on `AWS_ENDPOINT_URL_DYNAMODB` (moto under scripts/test.sh).
    Dynamo,
}

/// A store of `backend`; `page_size` rows per Query/Scan page when given, so reads span pages.
pub async fn store(backend: Backend, page_size: Option<usize>) -> Arc<dyn ConnectionStore> {
    match backend {
        Backend::Memory => match page_size {
            Some(n) => Arc::new(MemoryStore::with_page_size(n)),
            None => Arc::new(MemoryStore::new()),
        },
        Backend::Dynamo => {
            assert!(
                std::env::var("AWS_ENDPOINT_URL_DYNAMODB").is_ok(),
                "needs a DynamoDB endpoint: run scripts/test.sh"
            );
            let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
            let client = aws_sdk_dynamodb::Client::new(&sdk);
            let name = format!("wshub-router-{:016x}", fastrand::u64(..));
            wshub::store::table::create_table(&client, &name).await.unwrap();
            let store = wshub::store::dynamo::DynamoStore::new(client, name);
            Arc::new(match page_size {
                Some(n) => store.with_page_size(i32::try_from(n).unwrap()),
                None => store,
            })
        }
    }
}

/// The configuration of `events/env.json` with `overrides`.
pub fn config(overrides: &[(&str, &str)]) -> Config {
    let mut params = event("env.json")["Parameters"].as_object().unwrap().clone();
    for (k, v) in overrides {
        params.insert(k.to_string(), json!(v));
    }
    Config::from_lookup(|name| params.get(name).and_then(Value::as_str).map(str::to_owned)).unwrap()
}

/// Connections of known users talking to a hub whose posts land in a memory notifier.
pub struct Client {
    pub hub: Hub,
    pub notifier: Arc<MemoryNotifier>,
    users: Mutex<HashMap<String, String>>,
}

impl Client {
    pub fn new(config: Config, store: Arc<dyn ConnectionStore>) -> Client {
        let notifier = Arc::new(MemoryNotifier::new());
        Client {
            hub: Hub::new(config, store, notifier.clone()),
            notifier,
            users: Mutex::default(),
        }
    }

    /// Large pushes hand shard jobs to `queue` (`PUSH_QUEUE_URL`'s part).
    pub fn with_queue(self, queue: Arc<dyn wshub::queue::Queue>) -> Client {
        Client {
            hub: self.hub.with_queue(queue),
            ..self
        }
    }

    pub async fn connect(&self, connection_id: &str, user: &str) {
        let mut e = event("connect.json");
        e["requestContext"]["connectionId"] = json!(connection_id);
        e["requestContext"]["authorizer"]["userId"] = json!(user);
        let response = wshub::handle(&self.hub, e, None).await.unwrap();
        assert_eq!(response["statusCode"], 200);
        self.users.lock().unwrap().insert(connection_id.into(), user.into());
    }

    pub async fn disconnect(&self, connection_id: &str) {
        let mut e = event("disconnect.json");
        e["requestContext"]["connectionId"] = json!(connection_id);
        e["requestContext"]["authorizer"]["userId"] = json!(self.users.lock().unwrap()[connection_id]);
        let response = wshub::handle(&self.hub, e, None).await.unwrap();
        assert_eq!(response["statusCode"], 200);
    }

    /// A client frame from `connection_id`; its reply, checked against asyncapi.yaml.
    pub async fn request(&self, connection_id: &str, body: Value) -> Value {
        let mut e = event("ping.json");
        e["requestContext"]["connectionId"] = json!(connection_id);
        // Every message event carries the authorizer's context, as API Gateway sends it.
        e["requestContext"]["authorizer"]["userId"] = json!(self.users.lock().unwrap()[connection_id]);
        e["body"] = json!(body.to_string());
        let reply = asyncapi::reply_frame(&wshub::handle(&self.hub, e, None).await.unwrap());
        asyncapi::assert_frame(&reply);
        reply
    }

    /// SQS pushes, one record each; every record must succeed.
    pub async fn push(&self, records: &[(&str, Value)]) {
        let response = wshub::handle(&self.hub, super::sqs_batch(records), None).await.unwrap();
        assert_eq!(response, json!({"batchItemFailures": []}));
    }

    /// The frames posted to `connection_id`, checked against asyncapi.yaml.
    pub fn pushes(&self, connection_id: &str) -> Vec<Value> {
        asyncapi::memory_pushes(&self.notifier, connection_id)
    }
}
