//! `POST /publish` through the router (API Gateway HTTP API events, payload 2.0), on the
//! in-memory store and, with `--include-ignored` under scripts/test.sh, on DynamoDB (moto).

mod common;

use std::sync::Arc;

use common::router::{self, event, Backend, Client};
use serde_json::{json, Value};
use wshub::queue::MemoryQueue;

const KEY: &str = "publisher-key-0123456789";

/// A [`Client`] with publisher key `KEY`, and the queue it hands large pushes to (when asked).
struct Fixture {
    client: Client,
    queue: Arc<MemoryQueue>,
}

impl std::ops::Deref for Fixture {
    type Target = Client;
    fn deref(&self) -> &Client {
        &self.client
    }
}

async fn fixture(dynamo: bool, overrides: &[(&str, &str)], with_queue: bool) -> Fixture {
    let mut params = vec![("PUBLISH_KEYS", KEY)];
    params.extend_from_slice(overrides);
    let backend = if dynamo { Backend::Dynamo } else { Backend::Memory };
    let mut client = Client::new(router::config(&params), router::store(backend, None).await);
    let queue = Arc::new(MemoryQueue::new());
    if with_queue {
        client = client.with_queue(queue.clone());
    }
    Fixture { client, queue }
}

/// A `POST /publish` as API Gateway's HTTP API sends it (the sample event), with this body and
/// these headers in place of the sample's.
fn publish_event(body: &Value, headers: &[(&str, &str)], iam: bool) -> Value {
    let mut e = event("http-publish.json");
    // Every request has its own id, as API Gateway gives it.
    e["requestContext"]["requestId"] = json!(format!("req{:016x}=", fastrand::u64(..)));
    e["body"] = json!(body.to_string());
    e["headers"]["authorization"] = Value::Null;
    let map = e["headers"].as_object_mut().unwrap();
    map.remove("authorization");
    for (k, v) in headers {
        map.insert(k.to_string(), json!(v));
    }
    if !iam {
        e["requestContext"].as_object_mut().unwrap().remove("authorizer");
    }
    e
}

impl Fixture {
    async fn subscribe(&self, connection_id: &str, topic: &str) {
        let reply = self
            .request(connection_id, json!({"action": "subscribe", "topic": topic}))
            .await;
        assert_eq!(reply["action"], "subscribed");
    }

    /// Status and JSON body of a publish with the publisher key.
    async fn publish(&self, body: Value) -> (u64, Value) {
        self.send(publish_event(
            &body,
            &[("authorization", &format!("Bearer {KEY}"))],
            false,
        ))
        .await
    }

    async fn send(&self, e: Value) -> (u64, Value) {
        let r = wshub::handle(&self.hub, e, None).await.unwrap();
        let body: Value = serde_json::from_str(r["body"].as_str().unwrap()).unwrap();
        (r["statusCode"].as_u64().unwrap(), body)
    }
}

async fn every_target_kind_and_batches(dynamo: bool) {
    let f = fixture(dynamo, &[], false).await;
    f.connect("A", "alice").await;
    f.connect("B", "bob").await;
    f.subscribe("B", "news").await;

    let (status, body) = f.publish(json!({"topic": "news", "data": {"n": 1}})).await;
    assert_eq!(status, 200, "{body}");
    let result = &body["results"][0];
    assert_eq!(
        result,
        &json!({"delivered": 1, "failed": 0, "topic": "news", "seq": 1, "epoch": result["epoch"]})
    );
    let frame = &f.pushes("B")[0];
    assert_eq!((frame["seq"].as_u64(), &frame["data"]), (Some(1), &json!({"n": 1})));
    assert!(frame["id"].as_str().is_some_and(|id| id.ends_with("-0")), "{frame}");

    // A batch of every kind; results in order.
    let (status, body) = f
        .publish(json!({"pushes": [
            {"userId": "alice", "data": "u"},
            {"connectionId": "B", "data": "c"},
            {"data": "all"},
            {"topic": "news", "data": "t"}
        ]}))
        .await;
    assert_eq!(status, 200, "{body}");
    let results = body["results"].as_array().unwrap();
    assert_eq!(results.len(), 4);
    assert_eq!(
        (results[0]["topic"].as_str(), results[0]["seq"].as_u64()),
        (Some("user:alice"), Some(1))
    );
    assert_eq!(
        (results[1]["delivered"].as_u64(), results[1].get("seq")),
        (Some(1), None)
    );
    assert_eq!(results[2]["delivered"], 2, "a broadcast reaches both");
    assert_eq!(results[3]["seq"], 2);
    let data = |id| f.pushes(id).iter().map(|m| m["data"].clone()).collect::<Vec<_>>();
    assert_eq!(data("A"), [json!("u"), json!("all")]);
    assert_eq!(data("B"), [json!({"n": 1}), json!("c"), json!("all"), json!("t")]);

    // One bad push refuses the whole batch: nothing is delivered.
    let before = f.pushes("B").len();
    let (status, body) = f
        .publish(json!({"pushes": [{"topic": "news", "data": 1}, {"topik": "news", "data": 2}]}))
        .await;
    assert_eq!(status, 400);
    assert_eq!(body["code"], "bad_request");
    assert!(
        body["message"].as_str().unwrap().starts_with("pushes[1]: unknown key"),
        "{body}"
    );
    assert_eq!(f.pushes("B").len(), before);
    for (bad, why) in [
        (json!({"pushes": []}), "1-10"),
        (json!({"pushes": vec![json!({"data": 1}); 11]}), "1-10"),
        (json!({"pushes": {"data": 1}}), "array"),
        (json!({"pushes": [], "data": 1}), "only the key"),
        (json!([1]), "JSON object"),
    ] {
        let (status, body) = f.publish(bad.clone()).await;
        assert_eq!(status, 400, "{bad}");
        assert!(body["message"].as_str().unwrap().contains(why), "{bad}: {body}");
    }
    let big = json!({"pushes": [{"topic": "news", "data": 1}, {"topic": "news", "data": "x".repeat(140_000)}]});
    let (status, body) = f.publish(big).await;
    assert_eq!((status, body["code"].as_str()), (413, Some("payload_too_large")));
    assert_eq!(f.pushes("B").len(), before, "validated whole before delivering");

    // Idempotency: a retried request with its key is not delivered again.
    let keyed = json!({"topic": "news", "data": "once", "idempotencyKey": "order-9"});
    let (_, first) = f.publish(keyed.clone()).await;
    let (status, again) = f.publish(keyed).await;
    assert_eq!(status, 200);
    assert_eq!(again["results"][0]["duplicate"], true);
    assert_eq!(again["results"][0]["seq"], first["results"][0]["seq"]);
    let onces = f.pushes("B").iter().filter(|m| m["data"] == "once").count();
    assert_eq!(onces, 1);
}

#[tokio::test]
async fn every_target_kind_and_batches_in_memory() {
    every_target_kind_and_batches(false).await;
}

#[tokio::test]
#[ignore = "needs a DynamoDB endpoint in AWS_ENDPOINT_URL_DYNAMODB: run scripts/test.sh"]
async fn every_target_kind_and_batches_on_dynamodb() {
    every_target_kind_and_batches(true).await;
}

#[tokio::test]
async fn only_publishers_publish() {
    let f = fixture(false, &[], false).await;
    f.connect("B", "bob").await;
    let body = json!({"data": "x"});
    // No credentials: 401 with a challenge.
    let r = wshub::handle(&f.hub, publish_event(&body, &[], false), None)
        .await
        .unwrap();
    assert_eq!(r["statusCode"], 401);
    assert_eq!(r["headers"]["www-authenticate"], "Bearer realm=\"wshub-publish\"");
    // A client token, as a bearer or in the token header, is no publisher key.
    for headers in [
        vec![("authorization", "Bearer bob-token")],
        vec![("token", "bob-token")],
        vec![("authorization", "Bearer publisher-key-0123456788")],
    ] {
        let (status, reply) = f.send(publish_event(&body, &headers, false)).await;
        assert!(status == 401 || status == 403, "{headers:?}: {status} {reply}");
    }
    assert!(f.pushes("B").is_empty());
    // IAM: API Gateway verified the signature and says who called.
    let (status, _) = f.send(publish_event(&body, &[], true)).await;
    assert_eq!(status, 200);
    // No publisher key configured and no IAM context: refused, whatever is sent.
    let closed = fixture(false, &[("PUBLISH_KEYS", "")], false).await;
    let (status, reply) = closed
        .send(publish_event(
            &body,
            &[("authorization", &format!("Bearer {KEY}"))],
            false,
        ))
        .await;
    assert_eq!((status, reply["code"].as_str()), (403, Some("forbidden")));
    // Only POST.
    let mut get = publish_event(&body, &[], true);
    get["requestContext"]["http"]["method"] = json!("GET");
    let r = wshub::handle(&f.hub, get, None).await.unwrap();
    assert_eq!(
        (r["statusCode"].as_u64(), r["headers"]["allow"].as_str()),
        (Some(405), Some("POST"))
    );
}

#[tokio::test]
async fn a_push_too_large_for_the_request_goes_through_the_queue() {
    let f = fixture(
        false,
        &[("SHARD_THRESHOLD", "3"), ("PUSH_QUEUE_URL", "http://127.0.0.1:9/q")],
        true,
    )
    .await;
    for i in 0..4 {
        let id = format!("C{i}");
        f.connect(&id, "u").await;
        f.subscribe(&id, "big").await;
    }
    f.connect("S", "solo").await;
    f.subscribe("S", "small").await;
    let (status, body) = f
        .publish(json!({"pushes": [{"topic": "big", "data": 1}, {"topic": "small", "data": 2}]}))
        .await;
    assert_eq!(status, 202, "{body}");
    let queued = &body["results"][0];
    assert_eq!(queued["queued"], true);
    assert_eq!(body["results"][1]["delivered"], 1, "the small one is delivered here");
    assert!(f.pushes("C0").is_empty(), "the big one waits for the queue");
    // What was queued is an ordinary push body, with the result's id as its idempotency key.
    let sent = f.queue.take(10);
    let pushed: Value = serde_json::from_str(&sent[0]).unwrap();
    assert_eq!(
        pushed,
        json!({"topic": "big", "data": 1, "idempotencyKey": queued["id"]})
    );
    // Delivered as an SQS push, sharded (the function plays the event source for the jobs it
    // hands on): every subscriber gets it once, with a seq.
    let mut batch = vec![("sqs-1".to_owned(), pushed)];
    let mut rounds = 0;
    while !batch.is_empty() {
        let records: Vec<(&str, Value)> = batch.iter().map(|(id, b)| (id.as_str(), b.clone())).collect();
        let answer = wshub::handle(&f.hub, common::sqs_batch(&records), None).await.unwrap();
        assert_eq!(answer, json!({"batchItemFailures": []}));
        rounds += 1;
        batch = f
            .queue
            .take(10)
            .into_iter()
            .enumerate()
            .map(|(i, body)| (format!("job-{rounds}-{i}"), serde_json::from_str(&body).unwrap()))
            .collect();
    }
    assert!(rounds > 1, "the push was sharded");
    for i in 0..4 {
        let got = f.pushes(&format!("C{i}"));
        assert_eq!((got.len(), got[0]["seq"].as_u64()), (1, Some(1)));
    }
}
