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
    // The WebSocket API's routes (the HTTP API's POST /publish is checked below).
    let routes: Vec<_> = resources_of_type(&t, "AWS::ApiGatewayV2::Route")
        .into_iter()
        .filter(|(_, p)| ref_target(&p["ApiId"]) == Some("WebSocketApi"))
        .collect();
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
        "ALLOW_CLIENT_BROADCAST",
        "CONNECTION_TTL_SECONDS",
        "PUSH_CONCURRENCY",
        "PRESENCE_TTL_SECONDS",
        "PUSH_QUEUE_URL",
        "SHARD_THRESHOLD",
        "AUTH_TOKENS_PARAMETER",
        "JWT_SECRET_PARAMETER",
        "PUBLISH_KEYS_PARAMETER",
        "SECRETS_MANAGER_SECRET_ID",
        "SECRETS_MAX_AGE_SECONDS",
        "STAGE_NAME",
        "SEND_RATE_PER_SECOND",
        "SEND_RATE_BURST",
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

/// `POST /publish` is its own route on the HTTP API, IAM-authorized unless the operator chose
/// publisher keys, and then only with keys (a Rule refuses the deploy otherwise).
#[test]
fn the_publish_route_is_iam_authorized_by_default() {
    let t = template();
    let routes = resources_of_type(&t, "AWS::ApiGatewayV2::Route");
    let (_, route) = routes
        .iter()
        .find(|(_, r)| r["RouteKey"].as_str() == Some("POST /publish"))
        .expect("a POST /publish route");
    assert_eq!(ref_target(&route["ApiId"]), Some("HttpApi"));
    assert_eq!(ref_target(&route["AuthorizationType"]), Some("PublishAuthorization"));
    let parameter = &t["Parameters"]["PublishAuthorization"];
    assert_eq!(parameter["Default"].as_str(), Some("AWS_IAM"));
    assert_eq!(strings(&parameter["AllowedValues"]), ["AWS_IAM", "NONE"]);
    assert_eq!(t["Parameters"]["PublishKeys"]["NoEcho"].as_bool(), Some(true));
    let rule = &t["Rules"]["PublishWithoutIamNeedsKeys"];
    assert!(matches!(rule["Assertions"][0]["Assert"], Value::Tagged(_)), "{rule:?}");
    // The invoke permission covers this route only.
    let permissions = resources_of_type(&t, "AWS::Lambda::Permission");
    let (_, permission) = permissions
        .iter()
        .find(|(name, _)| *name == "PublishInvokePermission")
        .unwrap();
    let source = serde_norway::to_string(&permission["SourceArn"]).unwrap();
    assert!(source.contains("${HttpApi}/*/POST/publish"), "{source}");
}

/// The branch taken when `condition` holds, for `!If [condition, value, !Ref AWS::NoValue]`.
fn if_branch<'a>(v: &'a Value, condition: &str) -> &'a Value {
    match v {
        Value::Tagged(t) if t.tag == "If" => {
            let parts = t.value.as_sequence().unwrap();
            assert_eq!(parts[0].as_str(), Some(condition), "{v:?}");
            assert_eq!(ref_target(&parts[2]), Some("AWS::NoValue"), "{v:?}");
            &parts[1]
        }
        other => panic!("expected !If [{condition}, ..., !Ref AWS::NoValue], got {other:?}"),
    }
}

/// The template of `!Sub "..."`.
fn sub_text(v: &Value) -> &str {
    match v {
        Value::Tagged(t) if t.tag == "Sub" => t.value.as_str().unwrap(),
        other => panic!("expected !Sub, got {other:?}"),
    }
}

#[test]
fn secrets_are_readable_exactly_and_only_as_configured() {
    let t = template();
    let env = t["Resources"]["HubFunction"]["Properties"]["Environment"]["Variables"]
        .as_mapping()
        .unwrap();
    for (variable, parameter) in [
        ("AUTH_TOKENS_PARAMETER", "AuthTokensParameter"),
        ("JWT_SECRET_PARAMETER", "JwtSecretParameter"),
        ("PUBLISH_KEYS_PARAMETER", "PublishKeysParameter"),
        ("SECRETS_MANAGER_SECRET_ID", "SecretsManagerSecretArn"),
        ("SECRETS_MAX_AGE_SECONDS", "SecretsMaxAgeSeconds"),
    ] {
        assert_eq!(ref_target(&env[variable]), Some(parameter), "{variable}");
        assert!(t["Parameters"].get(parameter).is_some(), "{parameter}");
    }
    assert_eq!(
        wshub::secrets::PARAMETER_VARIABLES,
        [
            "AUTH_TOKENS_PARAMETER",
            "JWT_SECRET_PARAMETER",
            "PUBLISH_KEYS_PARAMETER"
        ]
    );
    let policy = &t["Resources"]["SecretsReadPolicy"];
    assert_eq!(policy["Type"].as_str(), Some("AWS::IAM::Policy"));
    assert_eq!(policy["Condition"].as_str(), Some("ReadsSecrets"));
    let roles = policy["Properties"]["Roles"].as_sequence().unwrap();
    assert_eq!(roles.len(), 1);
    assert_eq!(
        ref_target(&roles[0]),
        Some("HubFunctionRole"),
        "the hub function's role only"
    );
    let statements = policy["Properties"]["PolicyDocument"]["Statement"]
        .as_sequence()
        .unwrap();
    assert_eq!(statements.len(), 3);

    // Parameter Store: GetParameters (the one call src/secrets.rs makes) on the named parameters.
    let ssm = if_branch(&statements[0], "HasSecretParameters");
    assert_eq!(ssm["Effect"].as_str(), Some("Allow"));
    assert_eq!(ssm["Action"].as_str(), Some("ssm:GetParameters"));
    let resources = ssm["Resource"].as_sequence().unwrap();
    let expected = [
        ("HasAuthTokensParameter", "AuthTokensParameter"),
        ("HasJwtSecretParameter", "JwtSecretParameter"),
        ("HasPublishKeysParameter", "PublishKeysParameter"),
    ];
    assert_eq!(resources.len(), expected.len());
    for (resource, (condition, parameter)) in resources.iter().zip(expected) {
        assert_eq!(
            sub_text(if_branch(resource, condition)),
            format!("arn:${{AWS::Partition}}:ssm:${{AWS::Region}}:${{AWS::AccountId}}:parameter${{{parameter}}}")
        );
        // A path name (leading /) makes that ARN exact; nothing else is accepted.
        let pattern = t["Parameters"][parameter]["AllowedPattern"].as_str().unwrap();
        assert_eq!(pattern, "^((/[A-Za-z0-9_.-]+)+)?$", "{parameter}");
    }

    // Secrets Manager: GetSecretValue on the one secret, by its full ARN.
    let sm = if_branch(&statements[1], "HasSecretsManagerSecret");
    assert_eq!(sm["Action"].as_str(), Some("secretsmanager:GetSecretValue"));
    assert_eq!(ref_target(&sm["Resource"]), Some("SecretsManagerSecretArn"));
    assert!(t["Parameters"]["SecretsManagerSecretArn"]["AllowedPattern"]
        .as_str()
        .unwrap()
        .contains(":secretsmanager:"));

    // KMS: Decrypt with the given key, only through Parameter Store and Secrets Manager.
    let kms = if_branch(&statements[2], "DecryptsSecrets");
    assert_eq!(kms["Action"].as_str(), Some("kms:Decrypt"));
    assert_eq!(ref_target(&kms["Resource"]), Some("SecretsKmsKeyArn"));
    let via: Vec<&str> = kms["Condition"]["StringEquals"]["kms:ViaService"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(sub_text)
        .collect();
    assert_eq!(
        via,
        [
            "ssm.${AWS::Region}.${AWS::URLSuffix}",
            "secretsmanager.${AWS::Region}.${AWS::URLSuffix}"
        ]
    );
    // Nothing else anywhere grants these services.
    let text = format!("{:?}", t["Resources"]);
    assert_eq!(text.matches("\"ssm:").count(), 1, "one Parameter Store action");
    assert_eq!(
        text.matches("\"secretsmanager:").count(),
        1,
        "one Secrets Manager action"
    );
    assert_eq!(text.matches("\"kms:Decrypt").count(), 1, "one KMS action");
}

/// Every (namespace, metric name) a CloudWatch alarm names, directly or in metric math.
fn alarm_metrics(t: &Value) -> Vec<(String, &str, String)> {
    let mut found = Vec::new();
    for (name, props) in resources_of_type(t, "AWS::CloudWatch::Alarm") {
        if let Some(metric) = props.get("MetricName") {
            found.push((
                name.to_owned(),
                props["Namespace"].as_str().unwrap(),
                metric.as_str().unwrap().to_owned(),
            ));
        }
        for query in props.get("Metrics").and_then(Value::as_sequence).into_iter().flatten() {
            if let Some(stat) = query.get("MetricStat") {
                found.push((
                    name.to_owned(),
                    stat["Metric"]["Namespace"].as_str().unwrap(),
                    stat["Metric"]["MetricName"].as_str().unwrap().to_owned(),
                ));
            }
        }
    }
    found
}

/// The dashboard's widgets as JSON, with every `${...}` of its `!Sub` replaced.
fn dashboard(t: &Value) -> serde_json::Value {
    let body = sub_text(&t["Resources"]["Dashboard"]["Properties"]["DashboardBody"]);
    let mut text = String::new();
    let mut rest = body;
    while let Some(start) = rest.find("${") {
        text.push_str(&rest[..start]);
        let end = rest[start..].find('}').unwrap() + start;
        text.push_str("SUBSTITUTED");
        rest = &rest[end + 1..];
    }
    text.push_str(rest);
    serde_json::from_str(&text).expect("the dashboard body is JSON once substituted")
}

/// (namespace, metric, stat) of every line of every dashboard widget.
fn dashboard_metrics(body: &serde_json::Value) -> Vec<(String, String, String)> {
    let mut found = Vec::new();
    for widget in body["widgets"].as_array().unwrap() {
        let props = &widget["properties"];
        for line in props["metrics"].as_array().unwrap() {
            let line = line.as_array().unwrap();
            let options = line.last().filter(|o| o.is_object());
            let stat = options
                .and_then(|o| o["stat"].as_str())
                .or(props["stat"].as_str())
                .expect("every line has a stat")
                .to_owned();
            found.push((
                line[0].as_str().unwrap().to_owned(),
                line[1].as_str().unwrap().to_owned(),
                stat,
            ));
        }
    }
    found
}

#[test]
fn every_metric_an_alarm_or_widget_names_is_one_the_code_emits() {
    let t = template();
    let emitted: BTreeSet<&str> = wshub::metrics::names().collect();
    let alarms = alarm_metrics(&t);
    let widgets = dashboard_metrics(&dashboard(&t));
    let ours = alarms
        .iter()
        .map(|(_, ns, m)| (*ns, m.as_str()))
        .chain(widgets.iter().map(|(ns, m, _)| (ns.as_str(), m.as_str())))
        .filter(|(ns, _)| *ns == wshub::metrics::NAMESPACE);
    let mut named = BTreeSet::new();
    for (_, metric) in ours {
        assert!(
            emitted.contains(metric),
            "{metric} is named in the template but never emitted"
        );
        named.insert(metric);
    }
    assert!(named.len() >= 10, "the template uses the metrics: {named:?}");
    // The alarms the README promises, each behind the operator's switch.
    let has =
        |alarm: &str, ns: &str, metric: &str| alarms.iter().any(|(a, n, m)| a == alarm && *n == ns && m == metric);
    assert!(has(
        "DeadLetterQueueAlarm",
        "AWS/SQS",
        "ApproximateNumberOfMessagesVisible"
    ));
    assert!(has("FunctionErrorsAlarm", "AWS/Lambda", "Errors"));
    assert!(has("FunctionThrottlesAlarm", "AWS/Lambda", "Throttles"));
    for m in ["Delivered", "Gone", "Throttled", "FailedPosts"] {
        assert!(
            has("ThrottledPostsAlarm", "wshub", m) && has("FailedPostsAlarm", "wshub", m),
            "{m}"
        );
    }
    assert!(has("DeniedConnectsAlarm", "wshub", "ConnectsDenied"));
    for (name, props) in resources_of_type(&t, "AWS::CloudWatch::Alarm") {
        let condition = t["Resources"][name]["Condition"].as_str();
        assert!(
            matches!(condition, Some("AlarmsEnabled" | "DeniedConnectsAlarmEnabled")),
            "{name} must follow CreateAlarms"
        );
        assert!(props.get("AlarmActions").is_some(), "{name} notifies");
        // Our metrics are read by the stage-only dimension set the code emits.
        let text = format!("{props:?}");
        if text.contains("\"wshub\"") {
            assert!(text.contains(wshub::metrics::STAGE_DIMENSION), "{name}");
        }
    }
    // The dashboard: connects, pushes, post outcomes, fan-out p50/p99, DLQ depth, function
    // duration and errors.
    let widget =
        |ns: &str, metric: &str, stat: &str| widgets.iter().any(|w| w == &(ns.into(), metric.into(), stat.into()));
    assert!(widget("wshub", "Connects", "Sum"));
    assert!(widget("wshub", "FanoutRecipients", "SampleCount"), "pushes");
    for m in ["Delivered", "Gone", "Throttled", "FailedPosts"] {
        assert!(widget("wshub", m, "Sum"), "{m}");
    }
    assert!(widget("wshub", "FanoutDuration", "p50") && widget("wshub", "FanoutDuration", "p99"));
    assert!(widget("AWS/SQS", "ApproximateNumberOfMessagesVisible", "Maximum"));
    assert!(widget("AWS/Lambda", "Duration", "p99") && widget("AWS/Lambda", "Errors", "Sum"));
    // One topic for notifications, created only with an e-mail address.
    let topics = resources_of_type(&t, "AWS::SNS::Topic");
    assert_eq!(topics.len(), 1);
    assert_eq!(
        t["Resources"]["AlarmTopic"]["Condition"].as_str(),
        Some("CreateAlarmTopic")
    );
}
