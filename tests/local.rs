//! The local hub in-process on an ephemeral loopback port, driven by a real WebSocket client,
//! the AWS SDK's Management API client and plain HTTP.

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{Method, Request, StatusCode};
use common::sdk_config;
use futures::{SinkExt, StreamExt, TryStreamExt};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
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
    served: tokio::task::JoinHandle<std::io::Result<()>>,
}

fn config(vars: &[(&str, &str)]) -> wshub::Config {
    let vars: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    local_config(|name| vars.get(name).cloned()).unwrap().config
}

async fn start_on(settings: Settings, config: wshub::Config, store: Arc<dyn ConnectionStore>) -> TestHub {
    let hub = LocalHub::bind("127.0.0.1:0", settings, config, store.clone())
        .await
        .unwrap();
    let (ws, http) = (hub.ws_url(), hub.http_url());
    let (stop, stopped) = oneshot::channel::<()>();
    let served = tokio::spawn(hub.serve(async move {
        let _ = stopped.await;
    }));
    TestHub {
        ws,
        http,
        store,
        stop: Some(stop),
        served,
    }
}

async fn start_with(settings: Settings, vars: &[(&str, &str)]) -> TestHub {
    start_on(settings, config(vars), Arc::new(MemoryStore::new())).await
}

async fn start() -> TestHub {
    start_with(
        Settings::default(),
        &[("AUTH_TOKENS", "alice=alice-token,bob=bob-token")],
    )
    .await
}

impl TestHub {
    async fn shutdown(mut self) {
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(Duration::from_secs(15), self.served)
            .await
            .expect("serve returns after shutdown")
            .unwrap()
            .unwrap();
    }

    async fn stored(&self, id: &str) -> bool {
        self.store.get_connection(id, 0).await.unwrap().is_some()
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

async fn connect(hub: &TestHub, token: &str) -> Ws {
    connect_to(&hub.ws, &[("token", token)]).await.unwrap()
}

/// The next text frame, as JSON (pings and pongs skipped), checked against asyncapi.yaml: it is
/// a frame of the hub's protocol.
async fn next_json(ws: &mut Ws) -> Value {
    let frame = next_posted(ws).await;
    common::asyncapi::assert_frame(&frame);
    frame
}

/// The next text frame, as JSON, whatever it is: what a backend posts through @connections
/// reaches the client as posted, outside the protocol.
async fn next_posted(ws: &mut Ws) -> Value {
    loop {
        let message = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("a frame within 5 s")
            .expect("socket open")
            .expect("valid frame");
        match message {
            Message::Text(text) => return serde_json::from_str(&text).unwrap(),
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("expected a text frame, got {other:?}"),
        }
    }
}

async fn request(ws: &mut Ws, frame: Value) -> Value {
    ws.send(Message::text(frame.to_string())).await.unwrap();
    next_json(ws).await
}

async fn connection_id(ws: &mut Ws) -> String {
    let me = request(ws, json!({"action": "whoami"})).await;
    me["connectionId"].as_str().unwrap().to_owned()
}

/// The close frame the server sends, reading past anything else.
async fn close_code(ws: &mut Ws) -> Option<CloseCode> {
    loop {
        match tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("the server closes within 5 s")
        {
            Some(Ok(Message::Close(frame))) => return frame.map(|f| f.code),
            Some(Ok(_)) => continue,
            Some(Err(_)) | None => return None,
        }
    }
}

/// Path-encodes a connection id, which may hold `+`, `/` and `=` like API Gateway's.
fn encode(id: &str) -> String {
    id.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

async fn http(method: Method, url: &str, body: &str) -> (StatusCode, axum::http::HeaderMap, String) {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let request = Request::builder()
        .method(method)
        .uri(url)
        .body(Full::new(Bytes::from(body.to_owned())))
        .unwrap();
    let response = client.request(request).await.unwrap();
    let (parts, body) = response.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    (parts.status, parts.headers, String::from_utf8_lossy(&body).into_owned())
}

async fn push(hub: &TestHub, body: &str) -> Value {
    let (status, _, text) = http(Method::POST, &format!("{}/_local/sqs", hub.http), body).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    serde_json::from_str(&text).unwrap()
}

/// Waits until `$disconnect` has removed the rows.
async fn wait_removed(hub: &TestHub, id: &str) {
    for _ in 0..100 {
        if !hub.stored(id).await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("connection {id} still stored");
}

async fn sdk_client(endpoint: &str) -> aws_sdk_apigatewaymanagement::Client {
    let config = aws_sdk_apigatewaymanagement::config::Builder::from(&sdk_config().await)
        .endpoint_url(endpoint)
        .build();
    aws_sdk_apigatewaymanagement::Client::from_conf(config)
}

#[tokio::test]
async fn token_header_connects_and_ping_gets_pong() {
    let hub = start().await;
    let mut ws = connect(&hub, "alice-token").await;
    assert_eq!(
        request(&mut ws, json!({"action": "ping", "id": 7})).await,
        json!({"action": "pong", "id": 7})
    );
    let me = request(&mut ws, json!({"action": "whoami"})).await;
    assert_eq!(me["userId"], "alice");
    let id = me["connectionId"].as_str().unwrap();
    assert_eq!(id.len(), 16, "API Gateway-shaped id: {id}");
    assert!(hub.stored(id).await);
    hub.shutdown().await;
}

#[tokio::test]
async fn missing_or_bad_tokens_get_403_and_nothing_is_stored() {
    let hub = start().await;
    for headers in [
        vec![],
        vec![("token", "wrong")],
        vec![("authorization", "Bearer wrong")],
    ] {
        match connect_to(&hub.ws, &headers).await {
            Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
                assert_eq!(response.status(), StatusCode::FORBIDDEN, "{headers:?}");
                let body = String::from_utf8_lossy(response.body().as_deref().unwrap_or_default()).into_owned();
                assert!(body.contains("Forbidden"), "{body}");
            }
            other => panic!("expected 403 for {headers:?}, got {other:?}"),
        }
    }
    hub.shutdown().await;
}

#[tokio::test]
async fn default_token_hello_is_accepted_only_when_nothing_is_configured() {
    let hub = start_with(Settings::default(), &[]).await;
    let mut ws = connect(&hub, "hello").await;
    assert_eq!(
        request(&mut ws, json!({"action": "whoami"})).await["userId"],
        "anonymous"
    );
    hub.shutdown().await;
    let hub = start().await;
    assert!(connect_to(&hub.ws, &[("token", "hello")]).await.is_err());
    hub.shutdown().await;
}

#[tokio::test]
async fn browser_subprotocol_token_is_accepted_and_echoed() {
    let hub = start().await;
    let mut request = format!("{}/local", hub.ws).into_client_request().unwrap();
    request
        .headers_mut()
        .insert("sec-websocket-protocol", "websocket, bob-token".parse().unwrap());
    let (mut ws, response) = tokio_tungstenite::connect_async(request).await.unwrap();
    assert_eq!(
        response.headers()["sec-websocket-protocol"],
        "websocket",
        "the token is never echoed"
    );
    assert_eq!(request_whoami_user(&mut ws).await, "bob");
    // A stage this hub does not serve is a URL path, as behind the EdgePath distribution.
    let mut other = connect_to(&format!("{}/prod", hub.ws), &[("token", "bob-token")])
        .await
        .unwrap();
    let me = next_whoami(&mut other).await;
    assert_eq!(me["path"], "/prod");
    hub.shutdown().await;
}

async fn next_whoami(ws: &mut Ws) -> Value {
    request(ws, json!({"action": "whoami"})).await
}

async fn request_whoami_user(ws: &mut Ws) -> String {
    request(ws, json!({"action": "whoami"})).await["userId"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn sendmessage_reaches_the_other_subscriber_and_errors_keep_the_socket() {
    let hub = start().await;
    let mut alice = connect(&hub, "alice-token").await;
    let mut bob = connect(&hub, "bob-token").await;
    for ws in [&mut alice, &mut bob] {
        let reply = request(ws, json!({"action": "subscribe", "topic": "room"})).await;
        assert_eq!(
            reply,
            json!({"action": "subscribed", "topic": "room", "seq": 0, "epoch": reply["epoch"]})
        );
    }
    let sent = request(
        &mut alice,
        json!({"action": "sendmessage", "topic": "room", "data": {"text": "hi"}}),
    )
    .await;
    assert_eq!(sent["recipients"], 1, "{sent}");
    let got = next_json(&mut bob).await;
    assert_eq!(got["action"], "message");
    assert_eq!(got["data"], json!({"text": "hi"}));
    assert_eq!(got["from"], "alice");
    assert_eq!(got["topic"], "room");
    assert!(got["id"].is_string(), "API Gateway messageId: {got}");

    // Bad frames answer error frames; the socket stays usable.
    assert_eq!(
        request(&mut alice, json!({"action": "dance"})).await["code"],
        "unknown_action"
    );
    alice.send(Message::text("not json")).await.unwrap();
    assert_eq!(next_json(&mut alice).await["code"], "bad_json");
    alice.send(Message::binary(vec![0u8, 1, 2])).await.unwrap();
    let binary = next_json(&mut alice).await;
    assert_eq!(binary["code"], "bad_json");
    assert!(binary["message"].as_str().unwrap().contains("binary"), "{binary}");
    assert_eq!(request(&mut alice, json!({"action": "ping"})).await["action"], "pong");
    hub.shutdown().await;
}

#[tokio::test]
async fn subscribing_past_max_topics_per_connection_answers_too_many_topics() {
    let hub = start_with(
        Settings::default(),
        &[("AUTH_TOKENS", "t"), ("MAX_TOPICS_PER_CONNECTION", "2")],
    )
    .await;
    let mut ws = connect(&hub, "t").await;
    let subscribe = |topic: &str| json!({"action": "subscribe", "topic": topic});
    assert_eq!(request(&mut ws, subscribe("a")).await["action"], "subscribed");
    assert_eq!(request(&mut ws, subscribe("b")).await["action"], "subscribed");
    assert_eq!(
        request(&mut ws, subscribe("b")).await["action"],
        "subscribed",
        "a renewal"
    );
    let refused = request(&mut ws, subscribe("c")).await;
    assert_eq!(refused["code"], "too_many_topics", "{refused}");
    let whoami = request(&mut ws, json!({"action": "whoami"})).await;
    assert_eq!(whoami["topics"].as_array().unwrap().len(), 2, "{whoami}");
    request(&mut ws, json!({"action": "unsubscribe", "topic": "a"})).await;
    assert_eq!(request(&mut ws, subscribe("c")).await["action"], "subscribed");
    hub.shutdown().await;
}

#[tokio::test]
async fn sqs_injection_delivers_broadcast_user_topic_and_connection_pushes() {
    let hub = start().await;
    let mut alice = connect(&hub, "alice-token").await;
    let mut bob = connect(&hub, "bob-token").await;
    request(&mut bob, json!({"action": "subscribe", "topic": "news"})).await;
    let alice_id = connection_id(&mut alice).await;

    assert_eq!(push(&hub, r#"{"data":"all"}"#).await, json!({"batchItemFailures": []}));
    assert_eq!(next_json(&mut alice).await["data"], "all");
    assert_eq!(next_json(&mut bob).await["data"], "all");

    push(&hub, r#"{"userId":"bob","data":"to bob"}"#).await;
    assert_eq!(next_json(&mut bob).await["data"], "to bob");

    push(&hub, r#"{"topic":"news","data":"headline"}"#).await;
    let news = next_json(&mut bob).await;
    assert_eq!(
        (news["topic"].as_str(), news["data"].as_str()),
        (Some("news"), Some("headline"))
    );

    push(&hub, &json!({"connectionId": alice_id, "data": "direct"}).to_string()).await;
    let direct = next_json(&mut alice).await;
    assert_eq!(direct["data"], "direct");
    assert_eq!(direct["id"].as_str().map(str::len), Some(36), "SQS messageId: {direct}");

    // Alice got neither the user push nor the topic push: her next frame is her own reply.
    assert_eq!(request(&mut alice, json!({"action": "ping"})).await["action"], "pong");

    let (status, headers, text) = http(Method::POST, &format!("{}/_local/sqs", hub.http), r#"{"topik":"x"}"#).await;
    assert_eq!(status, StatusCode::OK);
    let id = headers["x-wshub-message-id"].to_str().unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(&text).unwrap(),
        json!({"batchItemFailures": [{"itemIdentifier": id}]}),
        "a malformed push is reported, as the DLQ would get it"
    );
    hub.shutdown().await;
}

#[tokio::test]
async fn bad_requests_to_local_routes_get_json_errors() {
    let hub = start().await;
    let cases = [
        (Method::POST, "/_local/sqs", String::new(), StatusCode::BAD_REQUEST),
        (
            Method::POST,
            "/_local/sqs",
            "x".repeat(1024 * 1024 + 1),
            StatusCode::PAYLOAD_TOO_LARGE,
        ),
        (
            Method::GET,
            "/_local/sqs",
            String::new(),
            StatusCode::METHOD_NOT_ALLOWED,
        ),
        (
            Method::PUT,
            "/@connections/abc",
            String::new(),
            StatusCode::METHOD_NOT_ALLOWED,
        ),
        (Method::GET, "/nope/deeper/path", String::new(), StatusCode::NOT_FOUND),
        (
            Method::GET,
            "/prod/@connections/abc",
            String::new(),
            StatusCode::NOT_FOUND,
        ),
        (Method::GET, "/local", String::new(), StatusCode::BAD_REQUEST),
        (
            Method::GET,
            "/_local/connections/abc",
            String::new(),
            StatusCode::NOT_FOUND,
        ),
    ];
    for (method, path, body, expected) in cases {
        let (status, headers, text) = http(method.clone(), &format!("{}{path}", hub.http), &body).await;
        assert_eq!(status, expected, "{method} {path}: {text}");
        let error: Value = serde_json::from_str(&text).unwrap_or_else(|_| panic!("{method} {path}: not JSON: {text}"));
        assert!(error["message"].as_str().is_some_and(|m| !m.is_empty()), "{text}");
        assert!(headers.contains_key("x-amzn-errortype"), "{method} {path}");
    }
    // The demo page is for browsers at /.
    let (status, _, page) = http(Method::GET, &format!("{}/", hub.http), "").await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("Sec-WebSocket-Protocol"));
    // It runs the JavaScript client, served by the hub.
    assert!(page.contains("/_local/wshub-client/index.js"));
    let (status, headers, module) = http(Method::GET, &format!("{}/_local/wshub-client/index.js", hub.http), "").await;
    assert_eq!(status, StatusCode::OK);
    assert!(headers["content-type"].to_str().unwrap().starts_with("text/javascript"));
    assert!(module.contains("export { Hub"), "{module}");
    let (status, _, _) = http(Method::GET, &format!("{}/_local/wshub-client/nope.js", hub.http), "").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    hub.shutdown().await;
}

#[tokio::test]
async fn management_api_works_with_the_aws_sdk_and_closed_ids_answer_410() {
    let hub = start().await;
    let sdk = sdk_client(&format!("{}/local", hub.http)).await;
    let mut alice = connect(&hub, "alice-token").await;
    let id = connection_id(&mut alice).await;
    request(&mut alice, json!({"action": "subscribe", "topic": "t"})).await;

    sdk.post_to_connection()
        .connection_id(&id)
        .data(aws_sdk_apigatewaymanagement::primitives::Blob::new(
            b"{\"hello\":1}".to_vec(),
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(next_posted(&mut alice).await, json!({"hello": 1}));

    let info = sdk.get_connection().connection_id(&id).send().await.unwrap();
    assert_eq!(info.identity().and_then(|i| i.source_ip()), Some("127.0.0.1"));
    let connected = info.connected_at().unwrap().to_millis().unwrap();
    let active = info.last_active_at().unwrap().to_millis().unwrap();
    assert!(active >= connected && connected > 0, "{connected} {active}");

    // Without the stage prefix and with plain HTTP too.
    let (status, _, text) = http(Method::GET, &format!("{}/@connections/{}", hub.http, encode(&id)), "").await;
    assert_eq!(status, StatusCode::OK, "{text}");
    let (status, _, row) = http(
        Method::GET,
        &format!("{}/_local/connections/{}", hub.http, encode(&id)),
        "",
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(serde_json::from_str::<Value>(&row).unwrap()["topics"], json!(["t"]));

    // DeleteConnection closes the socket and `$disconnect` removes the rows.
    sdk.delete_connection().connection_id(&id).send().await.unwrap();
    assert_eq!(close_code(&mut alice).await, Some(CloseCode::Normal));
    wait_removed(&hub, &id).await;

    let err = sdk
        .post_to_connection()
        .connection_id(&id)
        .data(aws_sdk_apigatewaymanagement::primitives::Blob::new(b"x".to_vec()))
        .send()
        .await
        .unwrap_err();
    assert!(
        matches!(
            err.into_service_error(),
            aws_sdk_apigatewaymanagement::operation::post_to_connection::PostToConnectionError::GoneException(_)
        ),
        "410 GoneException"
    );
    let (status, headers, _) = http(Method::POST, &format!("{}/@connections/{}", hub.http, encode(&id)), "x").await;
    assert_eq!(status, StatusCode::GONE);
    assert_eq!(headers["x-amzn-errortype"], "GoneException");
    let (status, _, _) = http(Method::DELETE, &format!("{}/@connections/unknown", hub.http), "").await;
    assert_eq!(status, StatusCode::GONE);
    hub.shutdown().await;
}

#[tokio::test]
async fn the_handlers_notifier_posts_through_this_hub_and_an_sdk_notifier_can_too() {
    use wshub::notify::apigw::ApiGatewayNotifier;
    use wshub::notify::{Notifier, NotifyError};
    let hub = start().await;
    let mut bob = connect(&hub, "bob-token").await;
    let id = connection_id(&mut bob).await;
    let notifier = ApiGatewayNotifier::new(sdk_config().await);
    let endpoint = format!("{}/local", hub.http);
    notifier.send(&endpoint, &id, br#"{"via":"sdk"}"#).await.unwrap();
    assert_eq!(next_posted(&mut bob).await, json!({"via": "sdk"}));
    assert_eq!(
        notifier.send(&endpoint, "L0SM9cOFvHcCIhw=", b"x").await,
        Err(NotifyError::Gone)
    );
    let big = vec![b'x'; 128 * 1024 + 1];
    assert!(matches!(
        notifier.send(&endpoint, &id, &big).await,
        Err(NotifyError::Rejected { status: 413, .. })
    ));
    hub.shutdown().await;
}

#[tokio::test]
async fn a_closed_client_is_gone_and_its_rows_are_removed() {
    let hub = start().await;
    let mut alice = connect(&hub, "alice-token").await;
    let id = connection_id(&mut alice).await;
    request(&mut alice, json!({"action": "subscribe", "topic": "t"})).await;
    alice.close(None).await.unwrap();
    wait_removed(&hub, &id).await;
    let (status, _, _) = http(
        Method::POST,
        &format!("{}/local/@connections/{}", hub.http, encode(&id)),
        "x",
    )
    .await;
    assert_eq!(status, StatusCode::GONE);
    let mut bob = connect(&hub, "bob-token").await;
    let sent = request(&mut bob, json!({"action": "sendmessage", "topic": "t", "data": 1})).await;
    assert_eq!(
        sent["recipients"], 0,
        "the subscription went with the connection: {sent}"
    );
    hub.shutdown().await;
}

/// Sends `text` as one message in frames of at most `frame` bytes, as a client must for a
/// message over API Gateway's 32 KB frame size. False when the connection failed under it.
async fn send_fragmented(ws: &mut Ws, text: &str, frame: usize) -> bool {
    use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
    use tokio_tungstenite::tungstenite::protocol::frame::Frame;
    let chunks: Vec<&[u8]> = text.as_bytes().chunks(frame).collect();
    for (i, chunk) in chunks.iter().enumerate() {
        let opcode = if i == 0 {
            OpCode::Data(Data::Text)
        } else {
            OpCode::Data(Data::Continue)
        };
        let frame = Frame::message(chunk.to_vec(), opcode, i + 1 == chunks.len());
        if ws.feed(Message::Frame(frame)).await.is_err() {
            return false;
        }
    }
    ws.flush().await.is_ok()
}

#[tokio::test]
async fn a_message_of_128_kb_in_32_kb_frames_is_served() {
    let hub = start().await;
    let mut ws = connect(&hub, "alice-token").await;
    for size in [100 * 1024, 128 * 1024] {
        let fits = json!({"action": "ping", "pad": "x".repeat(size - 40)}).to_string();
        assert!(fits.len() <= size);
        assert!(send_fragmented(&mut ws, &fits, 32 * 1024).await);
        assert_eq!(next_json(&mut ws).await["action"], "pong", "{size} bytes");
    }
    hub.shutdown().await;
}

/// API Gateway's frame size quota is 32 KB: a 40 KB message in one frame (as a browser sends
/// it) closes with 1009, even though the message itself is under 128 KB.
#[tokio::test]
async fn a_single_frame_over_32_kb_closes_with_1009() {
    let hub = start().await;
    let mut ws = connect(&hub, "alice-token").await;
    let id = connection_id(&mut ws).await;
    let one_frame = json!({"action": "ping", "pad": "x".repeat(40 * 1024)}).to_string();
    ws.send(Message::text(one_frame)).await.unwrap();
    assert_eq!(close_code(&mut ws).await, Some(CloseCode::Size));
    wait_removed(&hub, &id).await;
    hub.shutdown().await;
}

/// A message over 128 KB in 32 KB frames, with megabytes still coming after the limit is
/// passed (more than the socket buffers hold, so the client is still writing when the hub
/// closes): the upload is not reset under the client, and it reads the 1009 close frame (the
/// hub reads on and discards what is still in flight instead of closing with unread data).
#[tokio::test]
async fn a_fragmented_message_over_128_kb_ends_in_a_1009_close_the_client_receives() {
    let hub = start().await;
    for _ in 0..3 {
        let mut ws = connect(&hub, "alice-token").await;
        let id = connection_id(&mut ws).await;
        let too_big = "x".repeat(8 * 1024 * 1024);
        assert!(
            send_fragmented(&mut ws, &too_big, 30 * 1024).await,
            "the connection was reset under the upload"
        );
        assert_eq!(close_code(&mut ws).await, Some(CloseCode::Size));
        wait_removed(&hub, &id).await;
    }
    hub.shutdown().await;
}

#[tokio::test]
async fn idle_and_maximum_duration_close_with_1001() {
    let settings = Settings {
        idle_timeout: Duration::from_millis(300),
        ..Settings::default()
    };
    let hub = start_with(settings, &[("AUTH_TOKENS", "t")]).await;
    let mut ws = connect(&hub, "t").await;
    let id = connection_id(&mut ws).await;
    // Activity keeps it open past the idle timeout.
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(150)).await;
        assert_eq!(request(&mut ws, json!({"action": "ping"})).await["action"], "pong");
    }
    assert_eq!(close_code(&mut ws).await, Some(CloseCode::Away));
    wait_removed(&hub, &id).await;
    hub.shutdown().await;

    let settings = Settings {
        max_duration: Duration::from_millis(400),
        ..Settings::default()
    };
    let hub = start_with(settings, &[("AUTH_TOKENS", "t")]).await;
    let mut ws = connect(&hub, "t").await;
    let started = std::time::Instant::now();
    loop {
        ws.send(Message::text(r#"{"action":"ping"}"#)).await.ok();
        match tokio::time::timeout(Duration::from_secs(5), ws.next()).await.unwrap() {
            Some(Ok(Message::Close(frame))) => {
                assert_eq!(frame.map(|f| f.code), Some(CloseCode::Away));
                break;
            }
            Some(Ok(_)) => tokio::time::sleep(Duration::from_millis(50)).await,
            other => panic!("{other:?}"),
        }
    }
    assert!(
        started.elapsed() >= Duration::from_millis(350),
        "busy sockets still end"
    );
    hub.shutdown().await;
}

#[tokio::test]
async fn shutdown_closes_every_socket_with_1001_and_runs_disconnect() {
    let hub = start().await;
    let mut alice = connect(&hub, "alice-token").await;
    let mut bob = connect(&hub, "bob-token").await;
    let ids = [connection_id(&mut alice).await, connection_id(&mut bob).await];
    let store = hub.store.clone();
    let closing = tokio::spawn(async move { (close_code(&mut alice).await, close_code(&mut bob).await) });
    tokio::time::sleep(Duration::from_millis(50)).await;
    hub.shutdown().await;
    assert_eq!(closing.await.unwrap(), (Some(CloseCode::Away), Some(CloseCode::Away)));
    for id in ids {
        assert!(
            store.get_connection(&id, 0).await.unwrap().is_none(),
            "$disconnect ran before exit"
        );
    }
}

#[tokio::test]
#[ignore = "needs a DynamoDB endpoint in AWS_ENDPOINT_URL_DYNAMODB: run scripts/test.sh"]
async fn dynamodb_backend_creates_its_table_and_serves_a_connection() {
    let endpoint = std::env::var("AWS_ENDPOINT_URL_DYNAMODB").expect("run scripts/test.sh");
    let table = format!("wshub-local-{:016x}", fastrand::u64(..));
    let store = Arc::new(wshub::local::dynamodb_store(&endpoint, &table).await.unwrap());
    // A second start finds the table and uses it.
    wshub::local::dynamodb_store(&endpoint, &table).await.unwrap();
    let hub = start_on(Settings::default(), config(&[("AUTH_TOKENS", "t")]), store).await;
    let mut ws = connect(&hub, "t").await;
    let id = connection_id(&mut ws).await;
    request(&mut ws, json!({"action": "subscribe", "topic": "d"})).await;
    assert_eq!(
        push(&hub, r#"{"topic":"d","data":"x"}"#).await,
        json!({"batchItemFailures": []})
    );
    assert_eq!(next_json(&mut ws).await["data"], "x");
    assert!(hub.stored(&id).await);
    ws.close(None).await.unwrap();
    wait_removed(&hub, &id).await;
    hub.shutdown().await;
}

/// Implements the store port for `$t` by forwarding every method to its memory store
/// `self.$inner`, except `put_connection`, which is `$t`'s own `put` (where these test stores
/// differ).
macro_rules! forward_all_but_put {
    ($t:ty, $inner:tt) => {
        #[async_trait::async_trait]
        impl ConnectionStore for $t {
            async fn put_connection(&self, c: &wshub::store::Connection) -> Result<(), wshub::store::StoreError> {
                self.put(c).await
            }
            async fn get_connection(
                &self,
                id: &str,
                now: i64,
            ) -> Result<Option<wshub::store::ConnectionView>, wshub::store::StoreError> {
                self.$inner.get_connection(id, now).await
            }
            async fn remove_connection(&self, id: &str) -> Result<(), wshub::store::StoreError> {
                self.$inner.remove_connection(id).await
            }
            async fn remove_connection_older_than(
                &self,
                id: &str,
                before: i64,
            ) -> Result<bool, wshub::store::StoreError> {
                self.$inner.remove_connection_older_than(id, before).await
            }
            async fn claim_job(&self, key: &str, by: &str, ttl: i64) -> Result<bool, wshub::store::StoreError> {
                self.$inner.claim_job(key, by, ttl).await
            }
            async fn take_send_token(
                &self,
                id: &str,
                now_ms: i64,
                interval_ms: i64,
                burst: u32,
            ) -> Result<bool, wshub::store::StoreError> {
                self.$inner.take_send_token(id, now_ms, interval_ms, burst).await
            }
            async fn subscribe(
                &self,
                id: &str,
                topic: &str,
                ttl: i64,
                now: i64,
                max: usize,
            ) -> Result<(), wshub::store::StoreError> {
                self.$inner.subscribe(id, topic, ttl, now, max).await
            }
            async fn unsubscribe(&self, id: &str, topic: &str) -> Result<(), wshub::store::StoreError> {
                self.$inner.unsubscribe(id, topic).await
            }
            fn members(&self, group: wshub::store::Group, now: i64) -> wshub::store::Pages {
                self.$inner.members(group, now)
            }
            async fn touch_user(&self, user: &str, at: i64, ttl: i64) -> Result<(), wshub::store::StoreError> {
                self.$inner.touch_user(user, at, ttl).await
            }
            async fn presence(
                &self,
                users: &[String],
                now: i64,
            ) -> Result<Vec<wshub::store::Presence>, wshub::store::StoreError> {
                self.$inner.presence(users, now).await
            }
            fn start(&self, group: &wshub::store::Group) -> Vec<wshub::store::Cursor> {
                self.$inner.start(group)
            }
            async fn page(
                &self,
                group: &wshub::store::Group,
                cursor: &wshub::store::Cursor,
                limit: usize,
                now: i64,
            ) -> Result<wshub::store::Page, wshub::store::StoreError> {
                self.$inner.page(group, cursor, limit, now).await
            }
            async fn record(
                &self,
                publication: &wshub::store::NewPublication<'_>,
                now: i64,
            ) -> Result<wshub::store::Recorded, wshub::store::StoreError> {
                self.$inner.record(publication, now).await
            }
            async fn history(
                &self,
                stream: &str,
                after: u64,
                limit: usize,
                keep: u64,
                ttl: i64,
                now: i64,
            ) -> Result<wshub::store::History, wshub::store::StoreError> {
                self.$inner.history(stream, after, limit, keep, ttl, now).await
            }
            async fn subscribe_member(
                &self,
                id: &str,
                user: &str,
                topic: &str,
                ttl: i64,
                now: i64,
                max_topics: usize,
            ) -> Result<bool, wshub::store::StoreError> {
                self.$inner
                    .subscribe_member(id, user, topic, ttl, now, max_topics)
                    .await
            }
            async fn unsubscribe_member(&self, id: &str, topic: &str) -> Result<bool, wshub::store::StoreError> {
                self.$inner.unsubscribe_member(id, topic).await
            }
            async fn member_connections(
                &self,
                topic: &str,
                user: &str,
                now: i64,
            ) -> Result<Vec<String>, wshub::store::StoreError> {
                self.$inner.member_connections(topic, user, now).await
            }
            fn topic_members(&self, topic: &str, now: i64) -> wshub::store::Pages {
                self.$inner.topic_members(topic, now)
            }
            async fn online_users(
                &self,
                cursor: &wshub::store::OnlineCursor,
                limit: usize,
                now: i64,
            ) -> Result<wshub::store::OnlinePage, wshub::store::StoreError> {
                self.$inner.online_users(cursor, limit, now).await
            }
        }
    };
}

/// A store whose writes fail, so `$connect` answers 500.
struct BrokenStore(MemoryStore);

impl BrokenStore {
    async fn put(&self, _: &wshub::store::Connection) -> Result<(), wshub::store::StoreError> {
        Err(wshub::store::StoreError::Backend {
            op: "put",
            message: "down".into(),
        })
    }
}

forward_all_but_put!(BrokenStore, 0);

#[tokio::test]
async fn a_failing_connect_route_refuses_the_upgrade_with_its_status() {
    let store = Arc::new(BrokenStore(MemoryStore::new()));
    let hub = start_on(Settings::default(), config(&[("AUTH_TOKENS", "t")]), store).await;
    match connect_to(&hub.ws, &[("token", "t")]).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR)
        }
        other => panic!("expected the upgrade refused with 500, got {other:?}"),
    }
    hub.shutdown().await;
}

// Bad input only a real socket can carry; the table of malformed events is tests/bad_input.rs.

#[tokio::test]
async fn an_invalid_utf8_binary_frame_gets_bad_json_and_the_socket_stays_open() {
    let hub = start().await;
    let mut ws = connect(&hub, "alice-token").await;
    let id = connection_id(&mut ws).await;
    ws.send(Message::binary(vec![0xff, 0xfe, 0x00, 0x80, b'{']))
        .await
        .unwrap();
    let reply = next_json(&mut ws).await;
    assert_eq!(
        (reply["action"].as_str(), reply["code"].as_str()),
        (Some("error"), Some("bad_json")),
        "{reply}"
    );
    assert_eq!(
        request(&mut ws, json!({"action": "ping"})).await,
        json!({"action": "pong"})
    );
    assert!(hub.stored(&id).await);
    hub.shutdown().await;
}

#[tokio::test]
async fn a_text_frame_that_is_not_utf8_closes_with_1007_and_the_others_are_served() {
    use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
    use tokio_tungstenite::tungstenite::protocol::frame::Frame;

    let hub = start().await;
    let mut bystander = connect(&hub, "bob-token").await;
    let mut ws = connect(&hub, "alice-token").await;
    let id = connection_id(&mut ws).await;
    // A client library refuses to build such a text message; a raw frame gets it on the wire.
    let frame = Frame::message(vec![b'{', 0xff, 0xfe, b'}'], OpCode::Data(Data::Text), true);
    ws.send(Message::Frame(frame)).await.unwrap();
    assert_eq!(close_code(&mut ws).await, Some(CloseCode::Invalid));
    wait_removed(&hub, &id).await;
    assert_eq!(
        request(&mut bystander, json!({"action": "ping"})).await,
        json!({"action": "pong"})
    );
    hub.shutdown().await;
}

/// GET with headers, answering status, headers and the JSON body.
async fn get_json(url: &str, headers: &[(&str, &str)]) -> (StatusCode, axum::http::HeaderMap, Value) {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let mut request = Request::builder().method(Method::GET).uri(url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = client
        .request(request.body(Full::new(Bytes::new())).unwrap())
        .await
        .unwrap();
    let (parts, body) = response.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    (parts.status, parts.headers, serde_json::from_slice(&body).unwrap())
}

#[tokio::test]
async fn online_status_is_served_over_http_like_the_http_api() {
    let hub = start().await;
    let url = format!("{}/users/online?userIds=alice,bob", hub.http);
    let (status, headers, body) = get_json(&url, &[]).await;
    assert_eq!(
        (status, &body["code"]),
        (StatusCode::UNAUTHORIZED, &json!("missing_credentials"))
    );
    assert_eq!(headers["www-authenticate"], "Bearer realm=\"wshub\"");
    let (status, _, body) = get_json(&url, &[("authorization", "Bearer wrong")]).await;
    assert_eq!((status, &body["code"]), (StatusCode::FORBIDDEN, &json!("forbidden")));

    let mut alice = connect(&hub, "alice-token").await;
    let id = connection_id(&mut alice).await;
    let (status, headers, body) = get_json(&url, &[("token", "bob-token")]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(headers["content-type"], "application/json");
    assert_eq!(body["users"][0]["online"], true);
    assert_eq!(
        body["users"][1],
        json!({"userId": "bob", "online": false, "lastActiveAt": null})
    );

    alice.close(None).await.unwrap();
    wait_removed(&hub, &id).await;
    // The repeated-parameter form, as API Gateway joins it.
    let url = format!("{}/users/online?userIds=alice&userIds=alice", hub.http);
    let (_, _, body) = get_json(&url, &[("authorization", "Bearer bob-token")]).await;
    let users = body["users"].as_array().unwrap();
    assert_eq!(users.len(), 1);
    assert_eq!(users[0]["online"], false);
    assert!(users[0]["lastActiveAt"].is_i64(), "kept after the disconnect: {body}");
    hub.shutdown().await;
}

/// A client that completes the WebSocket handshake and then never reads: what the hub sends
/// it piles up in the TCP buffers, then in the hub's queue for it. Its receive buffer is made
/// small so that happens after little data.
async fn stalled_client(hub: &TestHub) -> (TcpStream, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr: std::net::SocketAddr = hub.http.trim_start_matches("http://").parse().unwrap();
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut tcp = socket.connect(addr).await.unwrap();
    let handshake = format!(
        "GET / HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\ntoken: t\r\n\r\n"
    );
    tcp.write_all(handshake.as_bytes()).await.unwrap();
    // Byte by byte, so nothing after the 101's head is taken off the socket.
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        tcp.read_exact(&mut byte).await.unwrap();
        head.push(byte[0]);
    }
    assert!(head.starts_with(b"HTTP/1.1 101"), "{}", String::from_utf8_lossy(&head));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let ids: Vec<String> = hub
        .store
        .members(wshub::store::Group::Everyone, now)
        .try_concat()
        .await
        .unwrap();
    assert_eq!(ids.len(), 1, "one client on this hub");
    (tcp, ids[0].clone())
}

/// What [`fill`] found.
struct Filled {
    /// Posts answered 200, all before any other answer.
    delivered: usize,
    /// A post answered 429: the socket's queue was full, so its writer was stuck on the client.
    full: bool,
}

const FILL_FRAME: usize = 100 * 1024;

/// Posts 100 KB frames to a client that does not read until one answers 429, for at most
/// 20 MB: far more than loopback TCP holds for a 4 KB reader (the sender's buffer is at most
/// `tcp_wmem`'s 4 MB by default), so the hub's writer is stuck on the client by then whatever
/// bounds its queue. Every answer before the 429 is a 200: the socket was open all along.
async fn fill(hub: &TestHub, id: &str) -> Filled {
    let url = format!("{}/@connections/{}", hub.http, encode(id));
    let body = "x".repeat(FILL_FRAME);
    let mut delivered = 0;
    while delivered < 200 {
        match http(Method::POST, &url, &body).await {
            (StatusCode::OK, ..) => delivered += 1,
            (StatusCode::TOO_MANY_REQUESTS, headers, _) => {
                assert_eq!(headers["x-amzn-errortype"], "LimitExceededException");
                return Filled { delivered, full: true };
            }
            (status, _, text) => panic!("post {delivered}: {status} {text}: the socket closed before its queue filled"),
        }
    }
    Filled { delivered, full: false }
}

/// Like [`wait_removed`], with room for a close that waits out a stuck send (2 s) first.
async fn wait_removed_slowly(hub: &TestHub, id: &str) {
    for _ in 0..500 {
        if !hub.stored(id).await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("connection {id} still stored");
}

#[tokio::test]
async fn a_client_that_stops_reading_fills_a_bounded_queue_then_posts_answer_429() {
    let hub = start_with(Settings::default(), &[("AUTH_TOKENS", "t")]).await;
    let (tcp, id) = stalled_client(&hub).await;
    let filled = fill(&hub, &id).await;
    assert!(
        filled.full,
        "posts to a client that does not read end in 429: the queue is bounded"
    );
    // The SDK reads the 429 as API Gateway's LimitExceededException.
    let sdk = sdk_client(&format!("{}/local", hub.http)).await;
    let err = sdk
        .post_to_connection()
        .connection_id(&id)
        .data(aws_sdk_apigatewaymanagement::primitives::Blob::new(vec![
            b'x';
            FILL_FRAME
        ]))
        .send()
        .await
        .unwrap_err();
    assert!(
        matches!(
            err.into_service_error(),
            aws_sdk_apigatewaymanagement::operation::post_to_connection::PostToConnectionError::LimitExceededException(
                _
            )
        ),
        "429 LimitExceededException"
    );
    // The socket stays open, as AWS documents no close for a full buffer.
    let url = format!("{}/@connections/{}", hub.http, encode(&id));
    assert_eq!(http(Method::GET, &url, "").await.0, StatusCode::OK);

    // The client reads again: it gets every frame that was accepted, then what is posted once
    // there is room; the refused ones are gone.
    let mut ws =
        WebSocketStream::from_raw_socket(tcp, tokio_tungstenite::tungstenite::protocol::Role::Client, None).await;
    let reader = tokio::spawn(async move {
        let mut frames = 0;
        while let Some(message) = ws.next().await {
            match message.unwrap() {
                Message::Text(text) if text.as_str() == "after" => return (frames, ws),
                Message::Text(text) => {
                    assert_eq!(text.len(), FILL_FRAME);
                    frames += 1;
                }
                _ => {}
            }
        }
        panic!("the socket closed before the frame posted after the 429s");
    });
    let mut posted = false;
    for _ in 0..500 {
        match http(Method::POST, &url, "after").await.0 {
            StatusCode::OK => {
                posted = true;
                break;
            }
            StatusCode::TOO_MANY_REQUESTS => tokio::time::sleep(Duration::from_millis(20)).await,
            other => panic!("{other}"),
        }
    }
    assert!(posted, "the queue drains once the client reads");
    let (frames, mut ws) = reader.await.unwrap();
    assert_eq!(frames, filled.delivered, "every 200 was delivered, no 429 was");
    ws.close(None).await.unwrap();
    wait_removed(&hub, &id).await;
    hub.shutdown().await;
}

#[tokio::test]
async fn delete_connection_closes_a_socket_whose_send_is_blocked() {
    let hub = start_with(Settings::default(), &[("AUTH_TOKENS", "t")]).await;
    let (_tcp, id) = stalled_client(&hub).await;
    let filled = fill(&hub, &id).await;
    let url = format!("{}/@connections/{}", hub.http, encode(&id));
    assert_eq!(http(Method::DELETE, &url, "").await.0, StatusCode::NO_CONTENT);
    // Closing: posts answer 410 at once, though the close frame is stuck behind the queue.
    let at_once = http(Method::POST, &url, "x").await.0;
    wait_removed_slowly(&hub, &id).await;
    assert_eq!(at_once, StatusCode::GONE);
    assert!(filled.full, "the writer was stuck when DELETE came");
    hub.shutdown().await;
}

#[tokio::test]
async fn the_idle_timeout_closes_a_socket_whose_send_is_blocked() {
    // Long enough for `fill` to finish first: it asserts so.
    let settings = Settings {
        idle_timeout: Duration::from_secs(3),
        ..Settings::default()
    };
    let hub = start_with(settings, &[("AUTH_TOKENS", "t")]).await;
    let (_tcp, id) = stalled_client(&hub).await;
    let filled = fill(&hub, &id).await;
    wait_removed_slowly(&hub, &id).await;
    assert!(filled.full, "the writer was stuck when the idle timeout came");
    hub.shutdown().await;
}

#[tokio::test]
async fn the_maximum_duration_closes_a_socket_whose_send_is_blocked() {
    let settings = Settings {
        max_duration: Duration::from_secs(3),
        ..Settings::default()
    };
    let hub = start_with(settings, &[("AUTH_TOKENS", "t")]).await;
    let (_tcp, id) = stalled_client(&hub).await;
    let filled = fill(&hub, &id).await;
    wait_removed_slowly(&hub, &id).await;
    assert!(filled.full, "the writer was stuck when the maximum duration came");
    hub.shutdown().await;
}

#[tokio::test]
async fn shutdown_closes_a_socket_whose_send_is_blocked_and_runs_disconnect() {
    let hub = start_with(Settings::default(), &[("AUTH_TOKENS", "t")]).await;
    let (_tcp, id) = stalled_client(&hub).await;
    let filled = fill(&hub, &id).await;
    let store = hub.store.clone();
    // Waits for every socket's `$disconnect`, up to the hub's 10 s grace.
    hub.shutdown().await;
    assert!(store.get_connection(&id, 0).await.unwrap().is_none(), "$disconnect ran");
    assert!(filled.full, "the writer was stuck when shutdown came");
}

/// Issue "no message lost across a reconnect", end to end with a real client: the backend drops
/// the socket, 50 pushes happen while the client is away, and its next subscribe with `since`
/// gets all 50, in order, once.
#[tokio::test]
async fn a_client_that_reconnects_with_since_misses_nothing() {
    let hub = start().await;
    let mut alice = connect(&hub, "alice-token").await;
    let id = connection_id(&mut alice).await;
    let first = request(&mut alice, json!({"action": "subscribe", "topic": "feed"})).await;
    let epoch = first["epoch"].clone();
    push(&hub, r#"{"topic":"feed","data":0}"#).await;
    let live = next_json(&mut alice).await;
    assert_eq!((live["seq"].as_u64(), &live["epoch"]), (Some(1), &epoch));
    // The backend closes the connection, as API Gateway does after 2 hours.
    let (status, _, _) = http(
        Method::DELETE,
        &format!("{}/@connections/{}", hub.http, encode(&id)),
        "",
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(close_code(&mut alice).await, Some(CloseCode::Normal));
    wait_removed(&hub, &id).await;
    for n in 1..=50 {
        let answer = push(&hub, &json!({"topic": "feed", "data": n}).to_string()).await;
        assert_eq!(answer, json!({"batchItemFailures": []}));
    }
    // Back, with the position of the last message seen.
    let mut again = connect(&hub, "alice-token").await;
    let reply = request(
        &mut again,
        json!({"action": "subscribe", "topic": "feed", "since": {"seq": 1, "epoch": epoch}}),
    )
    .await;
    assert_eq!(
        (reply["recovered"].as_bool(), reply["more"].as_bool()),
        (Some(true), Some(false))
    );
    let messages = reply["messages"].as_array().unwrap();
    let data: Vec<i64> = messages.iter().map(|m| m["data"].as_i64().unwrap()).collect();
    assert_eq!(data, (1..=50).collect::<Vec<_>>(), "all 50, in order, once");
    let seqs: Vec<u64> = messages.iter().map(|m| m["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, (2..=51).collect::<Vec<_>>());
    // And live again from there.
    push(&hub, r#"{"topic":"feed","data":51}"#).await;
    let next = next_json(&mut again).await;
    assert_eq!((next["seq"].as_u64(), next["data"].as_i64()), (Some(52), Some(51)));
    hub.shutdown().await;
}

/// `POST /publish` on the local hub: a publisher key publishes, a client token does not.
#[tokio::test]
async fn the_local_hub_serves_post_publish_with_a_publisher_key() {
    let key = "local-publisher-key-0123";
    let hub = start_with(
        Settings::default(),
        &[("AUTH_TOKENS", "alice=alice-token"), ("PUBLISH_KEYS", key)],
    )
    .await;
    let mut alice = connect(&hub, "alice-token").await;
    request(&mut alice, json!({"action": "subscribe", "topic": "room"})).await;
    let url = format!("{}/publish", hub.http);
    let post = |auth: String, body: Value| {
        let url = url.clone();
        async move {
            let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
            let request = Request::builder()
                .method(Method::POST)
                .uri(&url)
                .header("authorization", auth)
                .header("content-type", "application/json")
                .body(Full::new(Bytes::from(body.to_string())))
                .unwrap();
            let response = client.request(request).await.unwrap();
            let status = response.status();
            let body = response.into_body().collect().await.unwrap().to_bytes();
            (status, serde_json::from_slice::<Value>(&body).unwrap())
        }
    };
    let (status, body) = post(format!("Bearer {key}"), json!({"topic": "room", "data": "hi"})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        (
            body["results"][0]["delivered"].as_u64(),
            body["results"][0]["seq"].as_u64()
        ),
        (Some(1), Some(1))
    );
    let got = next_json(&mut alice).await;
    assert_eq!((got["data"].as_str(), got["seq"].as_u64()), (Some("hi"), Some(1)));
    let (status, body) = post("Bearer alice-token".into(), json!({"topic": "room", "data": "no"})).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("forbidden"))
    );
    hub.shutdown().await;
}

/// A memory store that, once told the hub's URL, posts to each new connection from inside
/// `$connect` (right after its row is written, before the handler returns): through the
/// Management API and as an SQS push, recording the answers.
#[derive(Default)]
struct PostsDuringConnect {
    inner: MemoryStore,
    http: std::sync::OnceLock<String>,
    answers: std::sync::Mutex<Vec<(StatusCode, Value)>>,
}

impl PostsDuringConnect {
    async fn put(&self, c: &wshub::store::Connection) -> Result<(), wshub::store::StoreError> {
        self.inner.put_connection(c).await?;
        if let Some(http) = self.http.get() {
            let url = format!("{http}/local/@connections/{}", encode(&c.connection_id));
            let (status, _, _) = http_request(Method::POST, &url, "early").await;
            let body = json!({"connectionId": c.connection_id, "data": "early"}).to_string();
            let (_, _, pushed) = http_request(Method::POST, &format!("{http}/_local/sqs"), &body).await;
            let pushed = serde_json::from_str(&pushed).unwrap_or(Value::Null);
            self.answers.lock().unwrap().push((status, pushed));
        }
        Ok(())
    }
}

forward_all_but_put!(PostsDuringConnect, inner);

/// `http` under another name, so the store above can call it from a trait method.
async fn http_request(method: Method, url: &str, body: &str) -> (StatusCode, axum::http::HeaderMap, String) {
    http(method, url, body).await
}

/// Issue 11 item 11: as API Gateway, the hub answers 410 to a post made while `$connect` runs
/// (it is not queued), and the push that met that 410 keeps the new connection's row: the
/// socket stays reachable once the handshake completes.
#[tokio::test]
async fn a_410_during_connect_does_not_delete_the_new_connection() {
    let store = Arc::new(PostsDuringConnect::default());
    let hub = start_on(
        Settings::default(),
        config(&[("AUTH_TOKENS", "alice=alice-token")]),
        store.clone(),
    )
    .await;
    store.http.set(hub.http.clone()).unwrap();
    let mut ws = connect(&hub, "alice-token").await;
    let id = connection_id(&mut ws).await;
    let answers = store.answers.lock().unwrap().clone();
    assert_eq!(
        answers,
        [(StatusCode::GONE, json!({"batchItemFailures": []}))],
        "a post during $connect answers 410; the push counts it as gone, not failed"
    );
    assert!(
        hub.stored(&id).await,
        "the 410 must not delete a connection still in $connect"
    );
    push(&hub, &json!({"connectionId": id, "data": "later"}).to_string()).await;
    assert_eq!(next_posted(&mut ws).await["data"], "later");
    hub.shutdown().await;
}

/// Frames until one with `action`: that one, and the ones before it (joins and leaves arrive
/// between a request and its reply).
async fn until(ws: &mut Ws, action: &str) -> (Value, Vec<Value>) {
    let mut before = Vec::new();
    loop {
        let frame = next_json(ws).await;
        if frame["action"] == action {
            return (frame, before);
        }
        before.push(frame);
    }
}

/// Issue "who is in the room", with real clients: three in a room, one closes its socket, the
/// others get `leave`, and `presence` and `GET /topics/room/presence` list the rest.
#[tokio::test]
async fn three_in_a_room_one_closes_and_the_others_see_the_leave() {
    let hub = start_with(
        Settings::default(),
        &[
            ("AUTH_TOKENS", "alice=alice-token,bob=bob-token,carol=carol-token"),
            ("PRESENCE_TOPICS", "room"),
        ],
    )
    .await;
    let mut clients = Vec::new();
    for token in ["alice-token", "bob-token", "carol-token"] {
        let mut ws = connect(&hub, token).await;
        ws.send(Message::text(
            json!({"action": "subscribe", "topic": "room"}).to_string(),
        ))
        .await
        .unwrap();
        let (reply, before) = until(&mut ws, "subscribed").await;
        let user = token.trim_end_matches("-token");
        assert_eq!(before.len(), 1, "its own join: {before:?}");
        assert_eq!(
            (&before[0]["action"], &before[0]["userId"]),
            (&json!("join"), &json!(user))
        );
        assert_eq!(reply["seq"], before[0]["seq"], "the reply's position covers the join");
        clients.push(ws);
    }
    // Alice saw bob and carol join, bob saw carol.
    for (i, joined) in [(0, vec!["bob", "carol"]), (1, vec!["carol"])] {
        for user in joined {
            let frame = next_json(&mut clients[i]).await;
            assert_eq!((&frame["action"], &frame["userId"]), (&json!("join"), &json!(user)));
        }
    }
    let mut carol = clients.pop().unwrap();
    let carol_id = connection_id(&mut carol).await;
    carol.close(None).await.unwrap();
    for ws in clients.iter_mut() {
        let leave = next_json(ws).await;
        assert_eq!(
            (&leave["action"], &leave["topic"], &leave["userId"]),
            (&json!("leave"), &json!("room"), &json!("carol"))
        );
    }
    wait_removed(&hub, &carol_id).await;
    let reply = request(&mut clients[0], json!({"action": "presence", "topic": "room"})).await;
    let expected = json!([{"userId": "alice", "connections": 1}, {"userId": "bob", "connections": 1}]);
    assert_eq!(
        (&reply["count"], &reply["members"], &reply["more"]),
        (&json!(2), &expected, &json!(false))
    );
    let url = format!("{}/topics/room/presence", hub.http);
    let (status, _, body) = get_json(&url, &[("token", "bob-token")]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body,
        json!({"action": "presence", "topic": "room", "count": 2, "members": expected, "more": false})
    );
    let (status, _, _) = get_json(&url, &[]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // The online list, without userIds.
    let (status, _, body) = get_json(&format!("{}/users/online?limit=1", hub.http), &[("token", "bob-token")]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["users"].as_array().unwrap().len(), 1);
    let next = body["next"].as_str().expect("a second page").to_owned();
    let (_, _, body) = get_json(
        &format!("{}/users/online?limit=1&cursor={next}", hub.http),
        &[("token", "bob-token")],
    )
    .await;
    assert_eq!(body["users"][0]["userId"], "bob");
    for ws in clients.iter_mut() {
        ws.close(None).await.unwrap();
    }
    hub.shutdown().await;
}
