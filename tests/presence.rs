//! Topic presence through the router and the HTTP API: `presence`, `join`/`leave` frames on
//! `PRESENCE_TOPICS` topics, `GET /topics/{topic}/presence` and the online list. Every test runs
//! on the in-memory store and, with `--include-ignored` under scripts/test.sh, on DynamoDB (moto
//! server). Every frame is checked against asyncapi.yaml.

mod common;

use common::asyncapi;
use common::router::{self, event, Backend, Client};
use serde_json::{json, Value};

/// A [`Client`] that also remembers which frames [`Fixture::changes`] has looked at.
struct Fixture {
    client: Client,
    /// Frames per connection already looked at by [`Fixture::changes`].
    seen: std::sync::Mutex<std::collections::HashMap<String, usize>>,
}

impl std::ops::Deref for Fixture {
    type Target = Client;
    fn deref(&self) -> &Client {
        &self.client
    }
}

async fn fixture(backend: Backend, overrides: &[(&str, &str)]) -> Fixture {
    let mut params = vec![
        ("PRESENCE_TOPICS", "room,doc/*"),
        ("AUTH_TOKENS", "alice=alice-token,bob=bob-token,carol=carol-token"),
    ];
    params.extend_from_slice(overrides);
    // Pages of 2 rows: members and the online list span several Query/Scan pages.
    Fixture {
        client: Client::new(router::config(&params), router::store(backend, Some(2)).await),
        seen: Default::default(),
    }
}

impl Fixture {
    async fn subscribe(&self, connection_id: &str, topic: &str) {
        let reply = self
            .request(connection_id, json!({"action": "subscribe", "topic": topic}))
            .await;
        assert_eq!(reply["action"], "subscribed", "{reply}");
    }

    async fn presence(&self, connection_id: &str, topic: &str) -> Value {
        self.request(connection_id, json!({"action": "presence", "topic": topic, "id": 7}))
            .await
    }

    /// The join and leave frames a connection got since the last call, as (action, userId).
    fn changes(&self, connection_id: &str) -> Vec<(String, String)> {
        let frames = asyncapi::memory_pushes(&self.notifier, connection_id);
        let mut seen = self.seen.lock().unwrap();
        let from = seen.insert(connection_id.to_owned(), frames.len()).unwrap_or(0);
        frames
            .into_iter()
            .skip(from)
            .filter(|f| f["action"] == "join" || f["action"] == "leave")
            .map(|f| {
                (
                    f["action"].as_str().unwrap().to_owned(),
                    f["userId"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    }

    async fn http(&self, path: &str, query: &[(&str, &str)], token: &str) -> (u16, Value) {
        let mut e = event("http-online.json");
        e["routeKey"] = json!("$default");
        e["requestContext"]["routeKey"] = json!("$default");
        e["rawPath"] = json!(path);
        e["requestContext"]["http"]["path"] = json!(path);
        e["headers"]["token"] = json!(token);
        let q: serde_json::Map<String, Value> = query.iter().map(|(k, v)| (k.to_string(), json!(v))).collect();
        e["rawQueryString"] = json!(query
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("&"));
        e["queryStringParameters"] = Value::Object(q);
        let response = wshub::handle(&self.hub, e, None).await.unwrap();
        let body: Value = serde_json::from_str(response["body"].as_str().unwrap()).unwrap();
        (response["statusCode"].as_u64().unwrap() as u16, body)
    }
}

fn change(action: &str, user: &str) -> (String, String) {
    (action.to_owned(), user.to_owned())
}

async fn members_counts_joins_and_leaves(backend: Backend) {
    let f = fixture(backend, &[("HISTORY_TTL_SECONDS", "600")]).await;
    for (c, u) in [("A1", "alice"), ("A2", "alice"), ("B1", "bob"), ("C1", "carol")] {
        f.connect(c, u).await;
    }
    f.subscribe("C1", "room").await;
    assert_eq!(
        f.changes("C1"),
        vec![change("join", "carol")],
        "her own join reaches her too"
    );
    f.subscribe("A1", "room").await;
    assert_eq!(f.changes("C1"), vec![change("join", "alice")]);
    f.subscribe("A2", "room").await;
    assert_eq!(f.changes("C1"), vec![], "alice's second connection: no second join");
    f.subscribe("A2", "room").await;
    assert_eq!(f.changes("C1"), vec![], "a repeated subscribe: nothing");
    f.subscribe("B1", "room").await;
    let joined = asyncapi::memory_pushes(&f.notifier, "A1");
    assert_eq!(f.changes("A2"), vec![change("join", "bob")], "every subscriber gets it");
    assert_eq!(f.changes("B1"), vec![change("join", "bob")]);
    let bob = joined
        .iter()
        .find(|j| j["action"] == "join" && j["userId"] == "bob")
        .unwrap();
    assert_eq!(bob["topic"], "room");
    // The third publication on the room's stream (carol's join, alice's, bob's).
    assert!(bob["seq"] == 3 && bob["epoch"].is_string(), "a publication: {bob}");

    let p = f.presence("B1", "room").await;
    assert_eq!(
        p,
        json!({"action": "presence", "topic": "room", "count": 3, "more": false, "id": 7, "members": [
            {"userId": "alice", "connections": 2},
            {"userId": "bob", "connections": 1},
            {"userId": "carol", "connections": 1},
        ]})
    );

    // Alice leaves only when her last connection does: unsubscribe one, disconnect the other.
    f.request("A1", json!({"action": "unsubscribe", "topic": "room"})).await;
    assert_eq!(f.changes("B1"), vec![]);
    f.disconnect("A2").await;
    assert_eq!(f.changes("B1"), vec![change("leave", "alice")]);
    // Carol unsubscribes: the others see her leave.
    f.request("C1", json!({"action": "unsubscribe", "topic": "room"})).await;
    assert_eq!(f.changes("B1"), vec![change("leave", "carol")]);
    let p = f.presence("B1", "room").await;
    assert_eq!(
        (p["count"].clone(), p["members"].clone()),
        (json!(1), json!([{"userId": "bob", "connections": 1}]))
    );

    // The stream keeps join and leave in seq order: history replays them.
    let h = f.request("B1", json!({"action": "history", "topic": "room"})).await;
    let kinds: Vec<(String, String)> = h["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["action"].as_str().unwrap().to_owned(),
                m["userId"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        vec![
            change("join", "carol"),
            change("join", "alice"),
            change("join", "bob"),
            change("leave", "alice"),
            change("leave", "carol"),
        ]
    );

    // A prefix pattern tracks too.
    f.connect("A3", "alice").await;
    f.subscribe("A3", "doc/1").await;
    assert_eq!(f.changes("A3"), vec![change("join", "alice")]);
    assert_eq!(f.presence("A3", "doc/1").await["count"], 1);
}

async fn nothing_outside_presence_topics_and_refusals(backend: Backend) {
    let f = fixture(
        backend,
        &[("TOPIC_ACCESS", "restricted"), ("PUBLIC_TOPICS", "room,lobby")],
    )
    .await;
    f.connect("A1", "alice").await;
    f.connect("B1", "bob").await;
    f.subscribe("A1", "lobby").await;
    f.subscribe("B1", "lobby").await;
    f.request("B1", json!({"action": "unsubscribe", "topic": "lobby"}))
        .await;
    f.disconnect("A1").await;
    assert_eq!(f.changes("B1"), vec![], "lobby is not a presence topic");
    let p = f.presence("B1", "lobby").await;
    assert_eq!(
        (p["action"].clone(), p["code"].clone(), p["id"].clone()),
        (json!("error"), json!("not_presence_topic"), json!(7))
    );
    // doc/1 tracks presence but is not granted to bob: refused as subscribe is.
    let p = f.presence("B1", "doc/1").await;
    assert_eq!(p["code"], "forbidden_topic");
    let p = f.request("B1", json!({"action": "presence"})).await;
    assert_eq!(p["code"], "bad_request", "a topic is required: {p}");
    // Over HTTP, the same.
    let (status, body) = f.http("/topics/doc/1/presence", &[], "bob-token").await;
    assert_eq!((status, body["code"].clone()), (403, json!("forbidden_topic")));
    let (status, body) = f.http("/topics/lobby/presence", &[], "bob-token").await;
    assert_eq!((status, body["code"].clone()), (404, json!("not_presence_topic")));
    let (status, body) = f.http("/topics/a%20b/presence", &[], "bob-token").await;
    assert_eq!((status, body["code"].clone()), (400, json!("invalid_topic")));
    let (status, _) = f.http("/topics/room/presence", &[], "wrong").await;
    assert_eq!(status, 403);
    let (status, body) = f.http("/topics/room/presence", &[], "bob-token").await;
    assert_eq!(
        (status, body),
        (
            200,
            json!({"action": "presence", "topic": "room", "count": 0, "members": [], "more": false})
        )
    );
}

async fn http_presence_and_the_online_list(backend: Backend) {
    let f = fixture(backend, &[]).await;
    // 7 users, one to three connections each, and an eighth whose connection has expired.
    for u in 0..7 {
        for k in 0..=(u % 3) {
            let c = format!("C{u}-{k}");
            f.connect(&c, &format!("user{u}")).await;
            f.subscribe(&c, "doc/x").await;
        }
    }
    f.hub
        .store
        .put_connection(&wshub::store::Connection {
            connection_id: "gone".into(),
            user_id: "ghost".into(),
            connected_at: 0,
            source_ip: None,
            path: None,
            ttl: 1,
        })
        .await
        .unwrap();
    let (status, body) = f.http("/topics/doc%2Fx/presence", &[], "alice-token").await;
    assert_eq!(status, 200);
    let ws = f.presence("C0-0", "doc/x").await;
    assert_eq!(body["count"], 7);
    assert_eq!(body["members"], ws["members"], "HTTP and the action agree");
    assert_eq!(body["members"][2], json!({"userId": "user2", "connections": 3}));

    // The online list, 3 at a time, walked to the end through the opaque cursor.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut query = vec![("limit", "3")];
        if let Some(c) = &cursor {
            query.push(("cursor", c.as_str()));
        }
        let (status, body) = f.http("/users/online", &query, "alice-token").await;
        assert_eq!(status, 200, "{body} {cursor:?}");
        pages += 1;
        let users = body["users"].as_array().unwrap();
        assert!(users.len() <= 3);
        for u in users {
            assert_eq!(u["online"], true);
            assert!(u["lastActiveAt"].is_i64(), "connect records activity: {u}");
            seen.push((
                u["userId"].as_str().unwrap().to_owned(),
                u["connections"].as_u64().unwrap(),
            ));
        }
        match body["next"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    seen.sort();
    let expected: Vec<(String, u64)> = (0..7).map(|u| (format!("user{u}"), 1 + u % 3)).collect();
    assert_eq!(seen, expected, "everyone live once, the expired ghost skipped");
    assert!(pages >= 3);
    // Without a limit: 100 per page, all of them at once.
    let (_, body) = f.http("/users/online", &[], "alice-token").await;
    assert_eq!(body["users"].as_array().unwrap().len(), 7);
    assert_eq!(body["next"], Value::Null);
    // Bad input: documented codes.
    for (query, code) in [
        (vec![("limit", "0")], "invalid_limit"),
        (vec![("limit", "1001")], "invalid_limit"),
        (vec![("limit", "x")], "invalid_limit"),
        (vec![("cursor", "bm9wZQ")], "invalid_cursor"),
        (vec![("userIds", "alice"), ("limit", "3")], "invalid_query"),
        (vec![("userIds", "")], "missing_user_ids"),
    ] {
        let (status, body) = f.http("/users/online", &query, "alice-token").await;
        assert_eq!((status, body["code"].as_str().unwrap()), (400, code), "{query:?}");
    }
    // With userIds, as before.
    let (_, body) = f
        .http("/users/online", &[("userIds", "user1,ghost")], "alice-token")
        .await;
    assert_eq!(body["users"][0]["online"], true);
    assert_eq!(body["users"][1]["online"], false);
}

#[tokio::test]
async fn memory_members_counts_joins_and_leaves() {
    members_counts_joins_and_leaves(Backend::Memory).await;
}

#[tokio::test]
#[ignore = "needs a DynamoDB endpoint in AWS_ENDPOINT_URL_DYNAMODB: run scripts/test.sh"]
async fn dynamodb_members_counts_joins_and_leaves() {
    members_counts_joins_and_leaves(Backend::Dynamo).await;
}

#[tokio::test]
async fn memory_nothing_outside_presence_topics_and_refusals() {
    nothing_outside_presence_topics_and_refusals(Backend::Memory).await;
}

#[tokio::test]
#[ignore = "needs a DynamoDB endpoint in AWS_ENDPOINT_URL_DYNAMODB: run scripts/test.sh"]
async fn dynamodb_nothing_outside_presence_topics_and_refusals() {
    nothing_outside_presence_topics_and_refusals(Backend::Dynamo).await;
}

#[tokio::test]
async fn memory_http_presence_and_the_online_list() {
    http_presence_and_the_online_list(Backend::Memory).await;
}

#[tokio::test]
#[ignore = "needs a DynamoDB endpoint in AWS_ENDPOINT_URL_DYNAMODB: run scripts/test.sh"]
async fn dynamodb_http_presence_and_the_online_list() {
    http_presence_and_the_online_list(Backend::Dynamo).await;
}
