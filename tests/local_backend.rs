//! The local hub talking to a backend both ways (issue 15): client actions forwarded to
//! `--forward-url` and listed at `/_local/events`, sockets on URL paths handed over as the
//! `EdgePath` CloudFront Function does, and the `token` command's JWT accepted by the hub. A
//! real WebSocket client, a real HTTP receiver, and the real `wshub-local` binary for `token`.

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{Method, Request, StatusCode};
use futures::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use wshub::local::{local_config, LocalHub, Settings};
use wshub::store::memory::MemoryStore;
use wshub::store::ConnectionStore;

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

struct TestHub {
    ws: String,
    http: String,
    store: Arc<dyn ConnectionStore>,
    stop: Option<oneshot::Sender<()>>,
}

impl Drop for TestHub {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

async fn start(settings: Settings, vars: &[(&str, &str)]) -> TestHub {
    let vars: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let config = local_config(|name| vars.get(name).cloned()).unwrap().config;
    let store: Arc<dyn ConnectionStore> = Arc::new(MemoryStore::new());
    let hub = LocalHub::bind("127.0.0.1:0", settings, config, store.clone())
        .await
        .unwrap();
    let (ws, http) = (hub.ws_url(), hub.http_url());
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(hub.serve(async move {
        let _ = stopped.await;
    }));
    TestHub {
        ws,
        http,
        store,
        stop: Some(stop),
    }
}

async fn connect_to(url: &str, headers: &[(&str, &str)]) -> Result<Ws, tokio_tungstenite::tungstenite::Error> {
    let mut request = url.into_client_request().unwrap();
    for (k, v) in headers {
        let name: axum::http::HeaderName = k.parse().unwrap();
        request.headers_mut().insert(name, v.parse().unwrap());
    }
    tokio_tungstenite::connect_async(request).await.map(|(ws, _)| ws)
}

/// Sends `frame` and returns the reply, checked against asyncapi.yaml.
async fn request(ws: &mut Ws, frame: Value) -> Value {
    ws.send(Message::text(frame.to_string())).await.unwrap();
    loop {
        let message = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("a frame within 5 s")
            .expect("socket open")
            .expect("valid frame");
        if let Message::Text(text) = message {
            let frame: Value = serde_json::from_str(&text).unwrap();
            common::asyncapi::assert_frame(&frame);
            return frame;
        }
    }
}

async fn get_json(url: &str) -> (StatusCode, Value) {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let request = Request::builder()
        .method(Method::GET)
        .uri(url)
        .body(Full::new(Bytes::new()))
        .unwrap();
    let response = client.request(request).await.unwrap();
    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

/// A backend that records what is POSTed to it and answers `status`.
struct Receiver {
    url: String,
    received: Arc<Mutex<Vec<Value>>>,
    status: Arc<Mutex<StatusCode>>,
}

async fn receiver() -> Receiver {
    let received = Arc::new(Mutex::new(Vec::new()));
    let status = Arc::new(Mutex::new(StatusCode::OK));
    let (r, s) = (received.clone(), status.clone());
    let app = axum::Router::new().route(
        "/events",
        axum::routing::post(move |body: Bytes| {
            let (r, s) = (r.clone(), s.clone());
            async move {
                r.lock().unwrap().push(serde_json::from_slice::<Value>(&body).unwrap());
                *s.lock().unwrap()
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    Receiver {
        url: format!("http://{addr}/events"),
        received,
        status,
    }
}

#[tokio::test]
async fn forwarded_actions_reach_the_forward_url_and_the_events_list() {
    let backend = receiver().await;
    let settings = Settings {
        forward_url: Some(backend.url.clone()),
        ..Settings::default()
    };
    let hub = start(
        settings,
        &[("AUTH_TOKENS", "alice=alice-token"), ("FORWARD_ACTIONS", "order.*")],
    )
    .await;
    let (status, listed) = get_json(&format!("{}/_local/events", hub.http)).await;
    assert_eq!((status, listed), (StatusCode::OK, json!({"events": []})));

    let mut ws = connect_to(&hub.ws, &[("token", "alice-token")]).await.unwrap();
    let me = request(&mut ws, json!({"action": "whoami"})).await;
    let connection_id = me["connectionId"].as_str().unwrap().to_owned();
    let reply = request(
        &mut ws,
        json!({"action": "order.create", "id": "o-1", "data": {"sku": "A-42"}}),
    )
    .await;
    assert_eq!(reply, json!({"action": "accepted", "id": "o-1"}));

    // The backend got the event a rule's target would get; the hub lists the same.
    let posted = backend.received.lock().unwrap().clone();
    assert_eq!(posted.len(), 1);
    let event = &posted[0];
    assert_eq!(event["source"], "wshub.client");
    assert_eq!(event["detail-type"], "order.create");
    assert_eq!(event["version"], "0");
    let detail = &event["detail"];
    assert_eq!(detail["connectionId"], connection_id.as_str());
    assert_eq!(detail["userId"], "alice");
    assert_eq!(detail["data"], json!({"sku": "A-42"}));
    assert_eq!(detail["id"], "o-1");
    assert!(detail["requestTime"].as_i64().unwrap() > 0);
    let keys: Vec<&str> = detail.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(keys.len(), 6, "no token, no headers: {keys:?}");
    let (_, listed) = get_json(&format!("{}/_local/events", hub.http)).await;
    assert_eq!(listed["events"], json!([event]));

    // The backend refusing it is an error frame, and the event is not listed.
    *backend.status.lock().unwrap() = StatusCode::INTERNAL_SERVER_ERROR;
    let reply = request(&mut ws, json!({"action": "order.cancel", "id": 2})).await;
    assert_eq!(
        (reply["code"].as_str(), reply["id"].as_i64()),
        (Some("internal"), Some(2))
    );
    let (_, listed) = get_json(&format!("{}/_local/events", hub.http)).await;
    assert_eq!(listed["events"].as_array().unwrap().len(), 1);
    // Other unknown actions are still refused.
    let reply = request(&mut ws, json!({"action": "dance"})).await;
    assert_eq!(reply["code"], "unknown_action");
}

#[tokio::test]
async fn without_a_forward_url_events_are_listed_only() {
    let hub = start(Settings::default(), &[("FORWARD_ACTIONS", "job")]).await;
    let mut ws = connect_to(&hub.ws, &[("token", "hello")]).await.unwrap();
    let reply = request(&mut ws, json!({"action": "job", "data": 1})).await;
    assert_eq!(reply["action"], "accepted");
    let id = reply["id"].as_str().expect("an id even when the client gave none");
    let (_, listed) = get_json(&format!("{}/_local/events", hub.http)).await;
    assert_eq!(listed["events"][0]["detail"]["id"], id);
    assert_eq!(listed["events"][0]["detail"]["data"], 1);
}

#[tokio::test]
async fn a_forward_url_must_be_http() {
    let settings = Settings {
        forward_url: Some("ftp://example".into()),
        ..Settings::default()
    };
    let config = local_config(|_| None).unwrap().config;
    let bound = LocalHub::bind("127.0.0.1:0", settings, config, Arc::new(MemoryStore::new())).await;
    assert!(bound.err().unwrap().to_string().contains("http://"));
}

#[tokio::test]
async fn sockets_on_a_path_get_it_as_the_edge_function_hands_it_over() {
    let hub = start(Settings::default(), &[("AUTH_TOKENS", "alice=alice-token")]).await;
    // The client's own header is replaced, as the CloudFront Function replaces it.
    let mut ws = connect_to(
        &format!("{}/ocpp/CP001?x=1", hub.ws),
        &[("token", "alice-token"), ("x-wshub-path", "/forged")],
    )
    .await
    .unwrap();
    let me = request(&mut ws, json!({"action": "whoami"})).await;
    assert_eq!(me["path"], "/ocpp/CP001");
    let id = me["connectionId"].as_str().unwrap();
    let stored = hub.store.get_connection(id, 0).await.unwrap().unwrap();
    assert_eq!(stored.connection.path.as_deref(), Some("/ocpp/CP001"));
    // The root and the stage have no path; a path alone is no credential.
    let mut root = connect_to(&hub.ws, &[("token", "alice-token")]).await.unwrap();
    assert!(request(&mut root, json!({"action": "whoami"}))
        .await
        .get("path")
        .is_none());
    let mut stage = connect_to(&format!("{}/local", hub.ws), &[("token", "alice-token")])
        .await
        .unwrap();
    assert!(request(&mut stage, json!({"action": "whoami"}))
        .await
        .get("path")
        .is_none());
    let denied = connect_to(&format!("{}/ocpp/CP001", hub.ws), &[]).await;
    assert!(denied.is_err());
    // Too long for the edge: 414, as CloudFront answers.
    let long = format!("{}/{}", hub.ws, "a".repeat(1100));
    let refused = connect_to(&long, &[("token", "alice-token")]).await.unwrap_err();
    assert!(refused.to_string().contains("414"), "{refused}");
    // Not a socket: still a 404, and the hub's own routes are not paths.
    let (status, _) = get_json(&format!("{}/ocpp/CP001", hub.http)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let not_a_path = connect_to(&format!("{}/_local/anything", hub.ws), &[("token", "alice-token")]).await;
    assert!(not_a_path.unwrap_err().to_string().contains("404"));
}

/// `cargo run -- token …` (the `wshub-local` binary): its JWT opens a socket on a hub with the
/// same JWT_SECRET, and it refuses to run without one.
#[tokio::test]
async fn the_token_command_mints_a_jwt_the_hub_accepts() {
    let secret = "local-test-secret-0123456789";
    let run = |envs: &[(&str, &str)], args: &[&str]| {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_wshub-local"));
        command
            .env_remove("JWT_SECRET")
            .env_remove("JWT_ISSUER")
            .env_remove("JWT_AUDIENCE");
        command.envs(envs.iter().copied()).args(args);
        command.output().unwrap()
    };
    let out = run(
        &[("JWT_SECRET", secret)],
        &["token", "--user", "alice", "--ttl", "10m", "--topics", "news,room:1"],
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let token = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert_eq!(token.split('.').count(), 3, "one JWT on stdout: {token}");

    let hub = start(
        Settings::default(),
        &[("JWT_SECRET", secret), ("TOPIC_ACCESS", "restricted")],
    )
    .await;
    let mut ws = connect_to(&hub.ws, &[("authorization", &format!("Bearer {token}"))])
        .await
        .unwrap();
    let me = request(&mut ws, json!({"action": "whoami"})).await;
    assert_eq!(me["userId"], "alice");
    // The topics claim is honoured: granted topics only.
    let ok = request(&mut ws, json!({"action": "subscribe", "topic": "room:1"})).await;
    assert_eq!(ok["action"], "subscribed");
    let refused = request(&mut ws, json!({"action": "subscribe", "topic": "room:2"})).await;
    assert_eq!(refused["code"], "forbidden_topic");
    // Also in the query string.
    assert!(connect_to(&format!("{}/?token={token}", hub.ws), &[]).await.is_ok());

    let out = run(&[], &["token", "--user", "alice"]);
    assert!(!out.status.success());
    assert!(out.stdout.is_empty());
    assert!(String::from_utf8_lossy(&out.stderr).contains("JWT_SECRET is not set"));
    let out = run(&[("JWT_SECRET", secret)], &["token", "--user", "alice", "--ttl", "1y"]);
    assert!(!out.status.success());
}
