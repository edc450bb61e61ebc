//! Every sample event in `events/` drives the built `wshub` binary exactly as Lambda runs it:
//! the binary polls a Lambda Runtime API served here (`common::runtime_api`), stores in moto
//! (started by `scripts/test.sh`) and posts to a local @connections server.
//! `WSHUB_LAMBDA_BINARY` names the binary (the script builds the release one); without it,
//! cargo's build of the same binary.

mod common;

use std::collections::BTreeSet;
use std::process::Stdio;

use common::runtime_api::{Outcome, RuntimeApi};
use common::FakeConnections;
use serde_json::{json, Value};
use tokio::io::AsyncReadExt;

fn events_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("events")
}

fn event(name: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(events_dir().join(name)).unwrap()).unwrap()
}

fn effect(r: &Value) -> (&str, &str) {
    (
        r["policyDocument"]["Statement"][0]["Effect"].as_str().unwrap(),
        r["principalId"].as_str().unwrap(),
    )
}

/// An HTTP API response's JSON body, after checking its status and content type.
fn http_body(r: &Value, status: u16) -> Value {
    assert_eq!(r["statusCode"], status, "{r}");
    assert_eq!(r["headers"]["content-type"], "application/json", "{r}");
    serde_json::from_str(r["body"].as_str().expect("body")).unwrap()
}

fn body(r: &Value) -> Value {
    common::asyncapi::reply_frame(r)
}

#[tokio::test]
#[ignore = "needs a DynamoDB endpoint in AWS_ENDPOINT_URL_DYNAMODB: run scripts/test.sh"]
async fn every_sample_event_through_the_lambda_binary() {
    let dynamodb = std::env::var("AWS_ENDPOINT_URL_DYNAMODB").expect("run scripts/test.sh");
    let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let client = aws_sdk_dynamodb::Client::new(&sdk);
    let table = format!("wshub-binary-{:08x}", fastrand::u32(..));
    wshub::store::table::create_table(&client, &table).await.unwrap();
    let connections = FakeConnections::default();
    let endpoint = connections.start().await;
    let api = RuntimeApi::default();
    let runtime = api.start().await;

    let binary = std::env::var("WSHUB_LAMBDA_BINARY").unwrap_or_else(|_| env!("CARGO_BIN_EXE_wshub").to_owned());
    let mut command = tokio::process::Command::new(&binary);
    for (k, v) in event("env.json")["Parameters"].as_object().unwrap() {
        command.env(k, v.as_str().unwrap());
    }
    command
        .env("CONNECTIONS_TABLE", &table)
        .env("AWS_ENDPOINT_URL_DYNAMODB", &dynamodb)
        .env("APIGW_MANAGEMENT_ENDPOINT", &endpoint)
        .env("AWS_LAMBDA_RUNTIME_API", runtime.addr())
        .env("AWS_LAMBDA_FUNCTION_NAME", "wshub")
        .env("STAGE_NAME", "prod")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
        .env("AWS_LAMBDA_LOG_GROUP_NAME", "/aws/lambda/wshub")
        .env("AWS_LAMBDA_LOG_STREAM_NAME", "2026/11/21/[$LATEST]0123456789abcdef")
        .env("AWS_LAMBDA_LOG_LEVEL", "DEBUG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = command.spawn().unwrap_or_else(|e| panic!("{binary}: {e}"));
    // Drain both pipes as the binary writes: a full pipe would block its logging, and it with it.
    let drain = |mut pipe: Box<dyn tokio::io::AsyncRead + Unpin + Send>| {
        tokio::spawn(async move {
            let mut out = String::new();
            let _ = pipe.read_to_string(&mut out).await;
            out
        })
    };
    let stdout = drain(Box::new(child.stdout.take().unwrap()));
    let stderr = drain(Box::new(child.stderr.take().unwrap()));

    let mut seen = BTreeSet::new();
    let mut invocations = 0;
    let mut invoke = |name: &'static str| {
        seen.insert(name);
        invocations += 1;
        api.invoke(event(name))
    };
    let ok = |o: Outcome| o.unwrap_or_else(|e| panic!("function error: {e}"));

    // Authorizer.
    assert_eq!(
        effect(&ok(invoke("authorizer-token-header.json").await)),
        ("Allow", "alice")
    );
    assert_eq!(
        effect(&ok(invoke("authorizer-query-string.json").await)),
        ("Allow", "bob")
    );
    let sub = ok(invoke("authorizer-subprotocol.json").await);
    assert_eq!(
        (effect(&sub), &sub["context"]["subprotocol"]),
        (("Allow", "alice"), &json!("websocket"))
    );
    let jwt = ok(invoke("authorizer-jwt.json").await);
    assert_eq!(effect(&jwt), ("Allow", "carol"));
    assert_eq!(jwt["context"], json!({"userId": "carol", "authMethod": "jwt"}));
    assert_eq!(
        effect(&ok(invoke("authorizer-bad-token-deny.json").await)),
        ("Deny", "unauthorized")
    );
    assert_eq!(
        effect(&ok(invoke("authorizer-no-token-deny.json").await)),
        ("Deny", "unauthorized")
    );

    // Routes.
    let connect = ok(invoke("connect.json").await);
    assert_eq!(connect["statusCode"], 200);
    assert_eq!(connect["headers"]["sec-websocket-protocol"], "websocket");
    assert_eq!(body(&ok(invoke("ping.json").await)), json!({"action": "pong", "id": 1}));
    // A new stream: seq 0, in an epoch of its own.
    let subscribed = body(&ok(invoke("subscribe.json").await));
    let epoch = subscribed["epoch"].clone();
    assert_eq!(
        subscribed,
        json!({"action": "subscribed", "topic": "news", "id": "s1", "seq": 0, "epoch": epoch})
    );
    assert_eq!(
        body(&ok(invoke("whoami.json").await)),
        json!({"action": "whoami", "connectionId": "Tq8ZsdsyIAMCJyA=", "userId": "alice", "topics": ["news"]})
    );
    // The only subscriber is the sender, who is not sent its own message.
    assert_eq!(
        body(&ok(invoke("sendmessage.json").await)),
        json!({"action": "sent", "topic": "news", "recipients": 0, "seq": 1, "epoch": epoch})
    );
    assert_eq!(body(&ok(invoke("unknown-action.json").await))["code"], "unknown_action");
    assert_eq!(body(&ok(invoke("bad-json-body.json").await))["code"], "bad_json");

    // SQS pushes, all to the one connection (subscribed to news, owned by alice). The first
    // post is throttled once (429), which the metrics must count.
    connections.script("Tq8ZsdsyIAMCJyA=", &[429, 200]);
    let none = json!({"batchItemFailures": []});
    for name in [
        "sqs-topic.json",
        "sqs-user.json",
        "sqs-connection.json",
        "sqs-broadcast.json",
    ] {
        assert_eq!(ok(invoke(name).await), none, "{name}");
    }
    let malformed = ok(invoke("sqs-batch-with-malformed.json").await);
    assert_eq!(
        malformed,
        json!({"batchItemFailures": [{"itemIdentifier": "0e5c8a3b-7f3e-4c1a-9d2b-6a1f0c9e8d75"}]})
    );
    let data: Vec<Value> = connections
        .frames_for("Tq8ZsdsyIAMCJyA=")
        .into_iter()
        .map(|f| f["data"].clone())
        .collect();
    assert_eq!(
        data,
        [
            json!({"headline": "wshub 0.1"}),
            json!({"text": "your export is ready"}),
            json!({"progress": 42}),
            json!({"text": "maintenance at 22:00"}),
            json!("ok")
        ]
    );

    // EventBridge: the function as the rule's target, and the whole event through the queue.
    // Either way the frame's id is the EventBridge event id.
    // news so far: the client's message (1), the SQS topic push (2), the good record of the
    // malformed batch (3); this event is the fourth publication.
    assert_eq!(
        ok(invoke("eventbridge-topic.json").await),
        json!({"id": "6a7e8feb-b491-4cf7-a9f1-bf3703467718", "delivered": 1, "gone": 0, "seq": 4, "epoch": epoch})
    );
    let refused = invoke("eventbridge-bad-detail.json").await.unwrap_err();
    assert_eq!(refused["errorType"], "wshub.MalformedEvent", "{refused}");
    assert!(
        refused["errorMessage"]
            .as_str()
            .unwrap()
            .contains("unknown key \"topik\""),
        "{refused}"
    );
    assert_eq!(ok(invoke("sqs-eventbridge.json").await), none);
    let frames = connections.frames_for("Tq8ZsdsyIAMCJyA=");
    let tail: Vec<(Value, Value)> = frames[5..]
        .iter()
        .map(|f| (f["id"].clone(), f["data"].clone()))
        .collect();
    assert_eq!(
        tail,
        [
            (
                json!("6a7e8feb-b491-4cf7-a9f1-bf3703467718"),
                json!({"order": "o-1001", "status": "shipped"})
            ),
            (
                json!("1f2d3c4b-5a69-4788-97a6-b5c4d3e2f1a0"),
                json!({"export": "e-77", "status": "ready"})
            ),
        ]
    );
    assert_eq!(frames[5]["topic"], "news");

    // Recovery: from seq 1 in the right epoch, 2 to 4, in order, recovered.
    let with_epoch = |name: &str| {
        let mut e = event(name);
        let mut request: Value = serde_json::from_str(e["body"].as_str().unwrap()).unwrap();
        request["since"]["epoch"] = epoch.clone();
        e["body"] = json!(request.to_string());
        e
    };
    let since = body(&ok(api.invoke(with_epoch("subscribe-since.json")).await));
    let seqs = |frame: &Value| -> Vec<u64> {
        frame["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["seq"].as_u64().unwrap())
            .collect()
    };
    assert_eq!(
        (since["recovered"].as_bool(), since["seq"].as_u64()),
        (Some(true), Some(4))
    );
    assert_eq!(seqs(&since), [2, 3, 4]);
    assert_eq!(since["messages"][2]["id"], "6a7e8feb-b491-4cf7-a9f1-bf3703467718");
    let page = body(&ok(api.invoke(with_epoch("history.json")).await));
    assert_eq!((seqs(&page), page["more"].as_bool()), (vec![1, 2], Some(true)));
    // The samples as shipped name an epoch this stream never had: nothing can be recovered.
    let stale = body(&ok(invoke("subscribe-since.json").await));
    assert_eq!(
        (stale["recovered"].as_bool(), seqs(&stale)),
        (Some(false), vec![1, 2, 3, 4])
    );
    assert_eq!(body(&ok(invoke("history.json").await))["recovered"], false);
    assert!(connections.received().iter().all(|p| p.signed && p.stage == "prod"));

    // Online status over HTTP, while alice is connected: bob asks about alice and himself.
    let online = ok(invoke("http-online.json").await);
    let users = http_body(&online, 200)["users"].clone();
    let connected_at = users[0]["lastActiveAt"].as_i64().expect("alice's lastActiveAt");
    assert_eq!(
        users,
        json!([
            {"userId": "alice", "online": true, "lastActiveAt": connected_at},
            {"userId": "bob", "online": false, "lastActiveAt": null}
        ])
    );
    let missing = ok(invoke("http-online-no-token-deny.json").await);
    assert_eq!(http_body(&missing, 401)["code"], "missing_credentials");
    assert_eq!(missing["headers"]["www-authenticate"], "Bearer realm=\"wshub\"");
    let bad = ok(invoke("http-online-bad-token-deny.json").await);
    assert_eq!(http_body(&bad, 403)["code"], "forbidden");
    let no_ids = ok(invoke("http-online-bad-user-ids.json").await);
    assert_eq!(http_body(&no_ids, 400)["code"], "missing_user_ids");
    let elsewhere = ok(invoke("http-unknown-route.json").await);
    assert_eq!(http_body(&elsewhere, 404)["code"], "not_found");

    // HTTP publish, IAM-authorized (API Gateway verified the signature and says who called):
    // the fifth publication on news, delivered to alice's one connection.
    let published = ok(invoke("http-publish.json").await);
    let result = &http_body(&published, 200)["results"][0];
    assert_eq!(
        (
            result["topic"].as_str(),
            result["seq"].as_u64(),
            result["delivered"].as_u64()
        ),
        (Some("news"), Some(5), Some(1)),
        "{published}"
    );
    let last = connections.frames_for("Tq8ZsdsyIAMCJyA=").pop().unwrap();
    assert_eq!(last["data"], json!({"text": "published over HTTP"}));

    assert_eq!(
        body(&ok(invoke("unsubscribe.json").await)),
        json!({"action": "unsubscribed", "topic": "news"})
    );
    assert_eq!(ok(invoke("disconnect.json").await)["statusCode"], 200);
    // Only alice's presence item is left, and it keeps her last activity.
    let rows = client.scan().table_name(&table).send().await.unwrap();
    let keys: Vec<(String, String)> = rows
        .items()
        .iter()
        .map(|i| (i["pk"].as_s().unwrap().clone(), i["sk"].as_s().unwrap().clone()))
        .collect();
    assert_eq!(
        keys.iter()
            .filter(|(pk, _)| !pk.starts_with("STREAM#"))
            .collect::<Vec<_>>(),
        [&("USER#alice".to_owned(), "PRESENCE".to_owned())],
        "disconnect left rows behind (history stays: it outlives connections)"
    );
    // carol's JWT, as a bearer token: alice is offline now, last active at her disconnect.
    let after = ok(invoke("http-online-jwt.json").await);
    let alice = &http_body(&after, 200)["users"][0];
    assert_eq!((&alice["userId"], &alice["online"]), (&json!("alice"), &json!(false)));
    assert!(alice["lastActiveAt"].as_i64().unwrap() >= connected_at, "{alice}");

    let invocations = invocations + 2;
    // An event nobody sends is an error naming its keys, and the process keeps serving.
    let err = api.invoke(json!({"version": "0", "detail": {}})).await.unwrap_err();
    assert_eq!(err["errorType"], "wshub.UnrecognizedEvent");
    assert!(
        err["errorMessage"].as_str().unwrap().contains("detail, version"),
        "{err}"
    );
    assert_eq!(body(&ok(api.invoke(event("ping.json")).await))["action"], "pong");

    // No sample event is left untested.
    let files: BTreeSet<String> = std::fs::read_dir(events_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".json") && n != "env.json")
        .collect();
    let seen: BTreeSet<String> = seen.into_iter().map(str::to_owned).collect();
    assert_eq!(files, seen, "every events/*.json must be asserted here");

    // Nothing secret reached the logs, even at DEBUG (which includes the SDK's own lines).
    // Peak memory after serving every sample event, for BENCHMARKS.md (printed, never asserted).
    if let Some(pid) = child.id() {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        if let Some(line) = status.lines().find(|l| l.starts_with("VmHWM")) {
            eprintln!(
                "wshub binary peak RSS after all sample events: {}",
                line.trim_start_matches("VmHWM:").trim()
            );
        }
    }
    child.kill().await.unwrap();
    let stdout = stdout.await.unwrap();
    check_metric_documents(&stdout, invocations, &connections.received());
    let logs = stdout + &stderr.await.unwrap();
    assert!(
        logs.contains("connection allowed"),
        "expected JSON logs from the binary, got: {logs}"
    );
    let secrets = ["alice-token", "bob-token", "not-a-real-token", "local-dev-jwt-secret"];
    for secret in secrets {
        assert!(!logs.contains(secret), "{secret} leaked into the logs");
    }
    let jwt_token = event("authorizer-jwt.json")["headers"]["Authorization"]
        .as_str()
        .unwrap()
        .trim_start_matches("Bearer ")
        .to_owned();
    assert!(
        !logs.contains(&jwt_token[jwt_token.len() - 20..]),
        "the JWT leaked into the logs"
    );
}

/// The EMF documents on the binary's stdout: each valid by the specification, at most one per
/// invocation, and together equal to what the test caused.
fn check_metric_documents(stdout: &str, invocations: usize, posts: &[common::Post]) {
    let documents: Vec<Value> = stdout
        .lines()
        .filter(|l| l.contains("\"_aws\""))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("an EMF line is one JSON document ({e}): {l}")))
        .collect();
    assert!(
        !documents.is_empty() && documents.len() <= invocations,
        "{} documents for {invocations} invocations",
        documents.len()
    );
    let mut totals = common::emf::Totals::default();
    for doc in &documents {
        let (metrics, dimensions) = common::emf::validate(doc);
        assert_eq!(dimensions["stage"], "prod");
        assert_eq!(dimensions["function"], "wshub");
        // The configured level (AWS_LAMBDA_LOG_LEVEL), so Lambda's log-level filter keeps it.
        assert_eq!(doc["level"], "DEBUG");
        assert!(
            metrics.get("AuthorizerLatency").is_none_or(|d| d.values.len() == 1),
            "one authorizer decision per invocation"
        );
        totals.add(&metrics);
    }
    let with_status = |status: u16| posts.iter().filter(|p| p.status == status).count() as f64;
    assert_eq!(totals.sum("Connects"), 1.0);
    assert_eq!(totals.sum("Disconnects"), 1.0);
    assert_eq!(totals.sum("ConnectsDenied"), 2.0, "the two deny samples");
    assert_eq!(totals.samples("AuthorizerLatency"), 6, "one per authorizer event");
    assert_eq!(totals.sum("Delivered"), with_status(200));
    assert_eq!(totals.sum("Throttled"), with_status(429));
    assert_eq!(totals.sum("Throttled"), 1.0);
    assert_eq!(totals.sum("Gone"), with_status(410));
    assert_eq!(totals.sum("FailedPosts"), 0.0);
    // One value per fan-out: the pushes, the EventBridge events and the client sendmessage.
    assert_eq!(totals.samples("FanoutRecipients"), totals.samples("FanoutDuration"));
    assert!(totals.samples("FanoutDuration") >= 8, "{totals:?}");
    assert!(totals.sum("FanoutRecipients") >= with_status(200));
}
