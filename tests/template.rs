//! template.yaml checked against the code it deploys: the table's keys and indexes, one route
//! with a reply for every client action, the authorizer wiring, and least-privilege IAM.

use std::collections::BTreeSet;

use serde_norway::Value;
use wshub::protocol::ACTIONS;
use wshub::store::table::{self, INDEXES, KEY_ATTRIBUTES};

fn template() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/template.yaml");
    serde_norway::from_str(&std::fs::read_to_string(path).unwrap()).expect("template.yaml parses")
}

fn resources_of_type<'a>(t: &'a Value, kind: &str) -> Vec<(&'a str, &'a Value)> {
    t["Resources"]
        .as_mapping()
        .unwrap()
        .iter()
        .filter(|(_, r)| r["Type"].as_str() == Some(kind))
        .map(|(name, r)| (name.as_str().unwrap(), &r["Properties"]))
        .collect()
}

fn strings(v: &Value) -> Vec<&str> {
    v.as_sequence().unwrap().iter().map(|s| s.as_str().unwrap()).collect()
}

/// The `X.Y` of `!GetAtt X.Y`.
fn get_att(v: &Value) -> Option<&str> {
    match v {
        Value::Tagged(t) if t.tag == "GetAtt" => t.value.as_str(),
        _ => None,
    }
}

/// The logical id named by `!Ref X`.
fn ref_target(v: &Value) -> Option<&str> {
    match v {
        Value::Tagged(t) if t.tag == "Ref" => t.value.as_str(),
        _ => None,
    }
}

fn key_schema(v: &Value) -> Vec<(&str, &str)> {
    v.as_sequence()
        .unwrap()
        .iter()
        .map(|k| (k["AttributeName"].as_str().unwrap(), k["KeyType"].as_str().unwrap()))
        .collect()
}

#[test]
fn table_matches_the_code() {
    let t = template();
    let tables = resources_of_type(&t, "AWS::DynamoDB::Table");
    assert_eq!(tables.len(), 1);
    let p = tables[0].1;
    assert_eq!(p["BillingMode"].as_str(), Some("PAY_PER_REQUEST"));
    assert_eq!(key_schema(&p["KeySchema"]), [(table::PK, "HASH"), (table::SK, "RANGE")]);
    let attributes: BTreeSet<(&str, &str)> = p["AttributeDefinitions"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["AttributeName"].as_str().unwrap(),
                a["AttributeType"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(attributes, KEY_ATTRIBUTES.iter().map(|a| (*a, "S")).collect());
    let gsis = p["GlobalSecondaryIndexes"].as_sequence().unwrap();
    assert_eq!(gsis.len(), INDEXES.len());
    for spec in INDEXES {
        let gsi = gsis
            .iter()
            .find(|g| g["IndexName"].as_str() == Some(spec.name))
            .expect(spec.name);
        assert_eq!(
            key_schema(&gsi["KeySchema"]),
            [(spec.hash, "HASH"), (spec.range, "RANGE")],
            "{}",
            spec.name
        );
        assert_eq!(gsi["Projection"]["ProjectionType"].as_str(), Some("INCLUDE"));
        assert_eq!(strings(&gsi["Projection"]["NonKeyAttributes"]), spec.projected);
    }
    assert_eq!(p["TimeToLiveSpecification"]["AttributeName"].as_str(), Some(table::TTL));
    assert_eq!(p["TimeToLiveSpecification"]["Enabled"].as_bool(), Some(true));
    assert_eq!(p["SSESpecification"]["SSEEnabled"].as_bool(), Some(true));
}

#[test]
fn every_action_has_a_route_with_a_reply() {
    let t = template();
    let routes = resources_of_type(&t, "AWS::ApiGatewayV2::Route");
    let keys: BTreeSet<&str> = routes.iter().map(|(_, p)| p["RouteKey"].as_str().unwrap()).collect();
    let mut expected: BTreeSet<&str> = ACTIONS.into_iter().collect();
    expected.extend(["$connect", "$disconnect", "$default"]);
    assert_eq!(keys, expected);
    let responses: BTreeSet<&str> = resources_of_type(&t, "AWS::ApiGatewayV2::RouteResponse")
        .iter()
        .inspect(|(_, p)| assert_eq!(p["RouteResponseKey"].as_str(), Some("$default")))
        .map(|(_, p)| ref_target(&p["RouteId"]).expect("RouteId: !Ref Route"))
        .collect();
    for (name, p) in &routes {
        let key = p["RouteKey"].as_str().unwrap();
        let two_way = key != "$connect" && key != "$disconnect";
        assert_eq!(
            responses.contains(name),
            two_way,
            "{key}: a reply needs a $default RouteResponse"
        );
        assert_eq!(
            p["RouteResponseSelectionExpression"].as_str().is_some(),
            two_way,
            "{key}"
        );
    }
    // The deployment waits for every route and response.
    let deployment = &t["Resources"]["Deployment"];
    let depends: BTreeSet<&str> = strings(&deployment["DependsOn"]).into_iter().collect();
    for (name, _) in &routes {
        assert!(depends.contains(name), "Deployment must depend on {name}");
    }
    assert!(responses.is_subset(&depends));
}

#[test]
fn connect_is_guarded_by_an_authorizer_without_identity_sources() {
    let t = template();
    let authorizers = resources_of_type(&t, "AWS::ApiGatewayV2::Authorizer");
    assert_eq!(authorizers.len(), 1);
    let (name, p) = authorizers[0];
    assert_eq!(p["AuthorizerType"].as_str(), Some("REQUEST"));
    assert!(
        p.get("IdentitySource").is_none(),
        "an IdentitySource would 401 every token from another source"
    );
    for (_, route) in resources_of_type(&t, "AWS::ApiGatewayV2::Route") {
        let is_connect = route["RouteKey"].as_str() == Some("$connect");
        assert_eq!(route["AuthorizationType"].as_str() == Some("CUSTOM"), is_connect);
        if is_connect {
            assert_eq!(ref_target(&route["AuthorizerId"]), Some(name));
        }
    }
}

#[test]
fn iam_grants_only_what_the_code_calls() {
    let t = template();
    let function = &t["Resources"]["HubFunction"];
    assert_eq!(function["Metadata"]["BuildMethod"].as_str(), Some("rust-cargolambda"));
    assert_eq!(
        function["Metadata"]["BuildProperties"]["Binary"].as_str(),
        Some("wshub")
    );
    let p = &function["Properties"];
    assert_eq!(strings(&p["Architectures"]), ["arm64"]);
    assert_eq!(p["Runtime"].as_str(), Some("provided.al2023"));
    let statements = p["Policies"][0]["Statement"].as_sequence().unwrap();
    let mut actions = BTreeSet::new();
    for s in statements {
        assert_eq!(s["Effect"].as_str(), Some("Allow"));
        match &s["Action"] {
            Value::String(a) => {
                actions.insert(a.as_str());
            }
            list => actions.extend(strings(list)),
        }
        let resources = match &s["Resource"] {
            Value::Sequence(r) => r.iter().collect::<Vec<_>>(),
            one => vec![one],
        };
        for r in resources {
            let text = format!("{r:?}");
            assert!(
                !text.contains("\"*\"") && !text.contains("table/*"),
                "no wildcard resources: {text}"
            );
        }
    }
    let expected: BTreeSet<&str> = [
        "dynamodb:PutItem",
        "dynamodb:UpdateItem",
        "dynamodb:DeleteItem",
        "dynamodb:BatchWriteItem",
        "dynamodb:BatchGetItem",
        "dynamodb:ConditionCheckItem",
        "dynamodb:Query",
        "dynamodb:Scan",
        "execute-api:ManageConnections",
        "sqs:SendMessage",
    ]
    .into_iter()
    .collect();
    assert_eq!(actions, expected);
    // Every environment variable the code reads for configuration is set.
    let env = p["Environment"]["Variables"].as_mapping().unwrap();
    for name in [
        "CONNECTIONS_TABLE",
        "APIGW_MANAGEMENT_ENDPOINT",
        "AUTH_TOKENS",
        "JWT_SECRET",
        "JWT_JWKS_URL",
        "TOPIC_ACCESS",
        "PUBLIC_TOPICS",
        "JWT_ISSUER",
        "JWT_AUDIENCE",
        "JWT_TOKEN_USE",
        "ALLOW_CLIENT_BROADCAST",
        "CONNECTION_TTL_SECONDS",
        "PUSH_CONCURRENCY",
        "PRESENCE_TTL_SECONDS",
        "PUSH_QUEUE_URL",
        "SHARD_THRESHOLD",
        "MAX_TOPICS_PER_CONNECTION",
    ] {
        assert!(env.contains_key(name), "{name} missing from the function environment");
    }
    // Shard jobs go back to the push queue and nowhere else; its URL is what the code sends to.
    let send = statements
        .iter()
        .find(|s| s["Action"].as_str() == Some("sqs:SendMessage"))
        .expect("a statement for sqs:SendMessage alone");
    assert_eq!(
        format!("{:?}", send["Resource"]),
        format!("{:?}", p["Events"]["Push"]["Properties"]["Queue"])
    );
    assert_eq!(ref_target(&env["PUSH_QUEUE_URL"]), Some("PushQueue"));
    let sqs = &p["Events"]["Push"]["Properties"];
    assert_eq!(strings(&sqs["FunctionResponseTypes"]), ["ReportBatchItemFailures"]);
    // Secrets are NoEcho and AuthTokens has no default, so `sam deploy --guided` asks for it.
    let params = &t["Parameters"];
    assert_eq!(params["AuthTokens"]["NoEcho"].as_bool(), Some(true));
    assert!(params["AuthTokens"].get("Default").is_none());
    assert_eq!(params["JwtSecret"]["NoEcho"].as_bool(), Some(true));
}

#[test]
fn queue_redrives_to_a_dlq_and_outlives_the_function_timeout() {
    let t = template();
    let queue = &t["Resources"]["PushQueue"]["Properties"];
    assert!(queue["RedrivePolicy"]["maxReceiveCount"].as_u64().unwrap() >= 5);
    for (timeout, visibility) in t["Mappings"]["VisibilityTimeout"].as_mapping().unwrap() {
        let timeout: u64 = timeout.as_str().unwrap().parse().unwrap();
        assert!(visibility["Seconds"].as_u64().unwrap() >= 6 * timeout);
    }
    let allowed: Vec<u64> = t["Parameters"]["Timeout"]["AllowedValues"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    let mapped = t["Mappings"]["VisibilityTimeout"].as_mapping().unwrap();
    for timeout in allowed {
        assert!(
            mapped.contains_key(timeout.to_string().as_str()),
            "no visibility timeout for {timeout}"
        );
    }
}

#[test]
fn eventbridge_rule_targets_the_queue_or_the_function_and_only_it_may_send() {
    let t = template();
    let params = &t["Parameters"];
    assert_eq!(params["EventBridgeTarget"]["Default"].as_str(), Some("queue"));
    assert_eq!(params["EventBusName"]["Default"].as_str(), Some("default"));
    assert_eq!(params["EventSources"]["Default"].as_str(), Some("wshub"));
    let r = &t["Resources"];
    let rule = &r["PushRule"];
    assert_eq!(rule["Condition"].as_str(), Some("EventBridgeEnabled"));
    let p = &rule["Properties"];
    assert_eq!(ref_target(&p["EventBusName"]), Some("EventBusName"));
    assert_eq!(ref_target(&p["EventPattern"]["source"]), Some("EventSources"));
    assert!(
        p["EventPattern"].get("detail-type").is_none(),
        "any detail-type is accepted"
    );
    // One target, chosen by condition: the queue, else the function; both dead-letter to the DLQ.
    let targets = p["Targets"].as_sequence().unwrap();
    assert_eq!(targets.len(), 1);
    let Value::Tagged(choice) = &targets[0] else {
        panic!("the target is an !If")
    };
    assert_eq!(choice.tag, "If");
    let branches = choice.value.as_sequence().unwrap();
    assert_eq!(branches[0].as_str(), Some("EventBridgeToQueue"));
    assert_eq!(get_att(&branches[1]["Arn"]), Some("PushQueue.Arn"));
    assert_eq!(get_att(&branches[2]["Arn"]), Some("HubFunction.Arn"));
    for target in &branches[1..] {
        assert_eq!(
            get_att(&target["DeadLetterConfig"]["Arn"]),
            Some("PushDeadLetterQueue.Arn")
        );
    }
    // Queue policies: events.amazonaws.com may send, from this rule only.
    for (name, queue) in [
        ("PushQueueEventsPolicy", "PushQueue"),
        ("DeadLetterQueueEventsPolicy", "PushDeadLetterQueue"),
    ] {
        let policy = &r[name]["Properties"];
        assert_eq!(ref_target(&policy["Queues"][0]), Some(queue));
        let statements = policy["PolicyDocument"]["Statement"].as_sequence().unwrap();
        assert_eq!(statements.len(), 1, "{name}");
        let s = &statements[0];
        assert_eq!(s["Principal"]["Service"].as_str(), Some("events.amazonaws.com"));
        assert_eq!(s["Action"].as_str(), Some("sqs:SendMessage"));
        assert_eq!(get_att(&s["Resource"]), Some(format!("{queue}.Arn").as_str()));
        assert_eq!(
            get_att(&s["Condition"]["ArnEquals"]["aws:SourceArn"]),
            Some("PushRule.Arn"),
            "{name}"
        );
    }
    assert_eq!(
        r["PushQueueEventsPolicy"]["Condition"].as_str(),
        Some("EventBridgeToQueue")
    );
    // The function target: invoke permission from the rule only, failures to the DLQ.
    let permission = &r["EventsInvokePermission"];
    assert_eq!(permission["Condition"].as_str(), Some("EventBridgeToFunction"));
    assert_eq!(
        permission["Properties"]["Principal"].as_str(),
        Some("events.amazonaws.com")
    );
    assert_eq!(get_att(&permission["Properties"]["SourceArn"]), Some("PushRule.Arn"));
    let invoke = &r["HubEventInvokeConfig"];
    assert_eq!(invoke["Condition"].as_str(), Some("EventBridgeToFunction"));
    assert_eq!(
        get_att(&invoke["Properties"]["DestinationConfig"]["OnFailure"]["Destination"]),
        Some("PushDeadLetterQueue.Arn")
    );
    let failures = &r["HubAsyncFailurePolicy"];
    assert_eq!(failures["Condition"].as_str(), Some("EventBridgeToFunction"));
    let statements = failures["Properties"]["PolicyDocument"]["Statement"]
        .as_sequence()
        .unwrap();
    assert_eq!(statements.len(), 1);
    assert_eq!(statements[0]["Action"].as_str(), Some("sqs:SendMessage"));
    assert_eq!(get_att(&statements[0]["Resource"]), Some("PushDeadLetterQueue.Arn"));
}

#[test]
fn online_status_route_reaches_the_function_without_an_authorizer() {
    let t = template();
    let event = &t["Resources"]["HubFunction"]["Properties"]["Events"]["OnlineStatus"];
    assert_eq!(event["Type"].as_str(), Some("HttpApi"));
    let p = &event["Properties"];
    assert_eq!(ref_target(&p["ApiId"]), Some("HttpApi"));
    assert_eq!(p["Method"].as_str(), Some("GET"));
    assert_eq!(p["Path"].as_str(), Some(wshub::http::ONLINE_PATH));
    assert_eq!(p["PayloadFormatVersion"].as_str(), Some("2.0"));
    // The function checks credentials itself; an authorizer would only answer 401s it cannot word.
    assert!(p.get("Auth").is_none());
    assert_eq!(
        t["Resources"]["HttpApi"]["Type"].as_str(),
        Some("AWS::Serverless::HttpApi")
    );
    assert!(t["Resources"]["HttpApi"]["Properties"].get("Auth").is_none());
    let url = format!("{:?}", t["Outputs"]["OnlineStatusUrl"]["Value"]);
    assert!(url.contains(wshub::http::ONLINE_PATH), "{url}");
}
