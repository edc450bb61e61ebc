//! template.yaml checked against the code it deploys: the table's keys and indexes, one route
//! with a reply for every client action, the authorizer wiring, and least-privilege IAM; and
//! against what CloudFormation and the services do with it: the parameters and rules evaluated
//! for sample parameter sets, the conditions for the defaults, the deployment's renaming.

use std::collections::{BTreeMap, BTreeSet};

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
    let (deployment_name, _) = only_deployment(&t);
    let deployment = &t["Resources"][deployment_name];
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
        "AUTH_TOKENS_PARAMETER",
        "JWT_SECRET_PARAMETER",
        "PUBLISH_KEYS_PARAMETER",
        "SECRETS_MANAGER_SECRET_ID",
        "SECRETS_MAX_AGE_SECONDS",
        "STAGE_NAME",
        "SEND_RATE_PER_SECOND",
        "SEND_RATE_BURST",
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
    // GET /topics/{topic}/presence: a greedy route, so topics with "/" reach the function too.
    let event = &t["Resources"]["HubFunction"]["Properties"]["Events"]["TopicPresence"];
    assert_eq!(event["Type"].as_str(), Some("HttpApi"));
    let p = &event["Properties"];
    assert_eq!(ref_target(&p["ApiId"]), Some("HttpApi"));
    assert_eq!(p["Method"].as_str(), Some("GET"));
    let path = p["Path"].as_str().unwrap();
    assert_eq!(path, format!("{}{{topic+}}", wshub::http::presence::TOPICS_PREFIX));
    assert_eq!(p["PayloadFormatVersion"].as_str(), Some("2.0"));
    assert!(p.get("Auth").is_none());
    // PRESENCE_TOPICS comes from its parameter, empty by default.
    let env = &t["Resources"]["HubFunction"]["Properties"]["Environment"]["Variables"];
    assert_eq!(ref_target(&env["PRESENCE_TOPICS"]), Some("PresenceTopics"));
    assert_eq!(t["Parameters"]["PresenceTopics"]["Default"].as_str(), Some(""));
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

// ---------------------------------------------------------------------------------------------
// A small evaluator of the template's parameters, conditions and rules, so that tests can ask
// what CloudFormation would do with a given parameter set. It knows the intrinsic functions this
// template uses in Conditions and Rules and panics on any other, so a new one cannot be
// silently misread.

type Params = BTreeMap<String, String>;

/// The parameter values of a deployment: each parameter's default, then `overrides`.
fn params(t: &Value, overrides: &[(&str, &str)]) -> Params {
    let mut p = Params::new();
    for (name, spec) in t["Parameters"].as_mapping().unwrap() {
        if let Some(default) = spec.get("Default") {
            p.insert(name.as_str().unwrap().to_owned(), scalar(default));
        }
    }
    for (name, value) in overrides {
        assert!(t["Parameters"].get(*name).is_some(), "no parameter {name}");
        p.insert((*name).to_owned(), (*value).to_owned());
    }
    p
}

/// A scalar as CloudFormation passes it around: a string.
fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        other => panic!("not a scalar: {other:?}"),
    }
}

#[derive(Debug, PartialEq)]
enum Evaluated {
    Text(String),
    List(Vec<String>),
    Bool(bool),
}

fn eval(t: &Value, p: &Params, v: &Value) -> Evaluated {
    let Value::Tagged(tagged) = v else {
        return match v {
            Value::Sequence(items) => Evaluated::List(items.iter().map(scalar).collect()),
            other => Evaluated::Text(scalar(other)),
        };
    };
    let args = || tagged.value.as_sequence().expect("a list of arguments");
    let truth = |v: &Value| match eval(t, p, v) {
        Evaluated::Bool(b) => b,
        other => panic!("not a condition: {other:?}"),
    };
    let tag = tagged.tag.to_string();
    match tag.trim_start_matches('!') {
        "Ref" => {
            let name = tagged.value.as_str().unwrap();
            let value = p
                .get(name)
                .unwrap_or_else(|| panic!("parameter {name} has no value"))
                .clone();
            if t["Parameters"][name]["Type"].as_str() == Some("CommaDelimitedList") {
                Evaluated::List(value.split(',').map(str::to_owned).collect())
            } else {
                Evaluated::Text(value)
            }
        }
        "Equals" => Evaluated::Bool(eval(t, p, &args()[0]) == eval(t, p, &args()[1])),
        "Not" => Evaluated::Bool(!truth(&args()[0])),
        "And" => Evaluated::Bool(args().iter().all(truth)),
        "Or" => Evaluated::Bool(args().iter().any(truth)),
        "Condition" => Evaluated::Bool(condition(t, p, tagged.value.as_str().unwrap())),
        "Contains" => {
            let (Evaluated::List(list), Evaluated::Text(item)) = (eval(t, p, &args()[0]), eval(t, p, &args()[1]))
            else {
                panic!("Contains takes a list and a string")
            };
            Evaluated::Bool(list.contains(&item))
        }
        other => panic!("the test evaluator does not know !{other}"),
    }
}

fn condition(t: &Value, p: &Params, name: &str) -> bool {
    let definition = t["Conditions"]
        .get(name)
        .unwrap_or_else(|| panic!("no condition {name}"));
    eval(t, p, definition) == Evaluated::Bool(true)
}

/// What `sam deploy` checks before it creates anything: each value against its parameter's
/// AllowedValues and MinValue/MaxValue, then every rule whose RuleCondition holds.
/// (AllowedPattern is not evaluated here; cfn-lint checks defaults against it.)
fn deploy_time_check(t: &Value, p: &Params) -> Result<(), String> {
    for (name, spec) in t["Parameters"].as_mapping().unwrap() {
        let name = name.as_str().unwrap();
        let value = p.get(name).ok_or_else(|| format!("{name}: a value is required"))?;
        if let Some(allowed) = spec.get("AllowedValues") {
            if !allowed.as_sequence().unwrap().iter().any(|a| &scalar(a) == value) {
                return Err(format!("{name}: {value} is not an allowed value"));
            }
        }
        if spec["Type"].as_str() == Some("Number") {
            let number: f64 = value.parse().map_err(|_| format!("{name}: {value} is not a number"))?;
            if let Some(min) = spec.get("MinValue").and_then(Value::as_f64) {
                if number < min {
                    return Err(format!("{name}: {value} is below MinValue {min}"));
                }
            }
            if let Some(max) = spec.get("MaxValue").and_then(Value::as_f64) {
                if number > max {
                    return Err(format!("{name}: {value} is above MaxValue {max}"));
                }
            }
        }
    }
    for (name, rule) in t["Rules"].as_mapping().unwrap() {
        let applies = rule
            .get("RuleCondition")
            .is_none_or(|c| eval(t, p, c) == Evaluated::Bool(true));
        if !applies {
            continue;
        }
        for assertion in rule["Assertions"].as_sequence().unwrap() {
            if eval(t, p, &assertion["Assert"]) != Evaluated::Bool(true) {
                return Err(format!(
                    "rule {}: {}",
                    name.as_str().unwrap(),
                    assertion["AssertDescription"].as_str().unwrap_or("")
                ));
            }
        }
    }
    Ok(())
}

/// Whether a resource exists for these parameters (its Condition, if any, holds).
fn exists(t: &Value, p: &Params, resource: &Value) -> bool {
    resource
        .get("Condition")
        .is_none_or(|c| condition(t, p, c.as_str().unwrap()))
}

/// The value of a property that may be an `!If [cond, a, b]`: `None` for `AWS::NoValue`.
fn resolve_if<'a>(t: &Value, p: &Params, v: &'a Value) -> Option<&'a Value> {
    match v {
        Value::Tagged(tagged) if tagged.tag == "If" => {
            let branches = tagged.value.as_sequence().unwrap();
            let chosen = if condition(t, p, branches[0].as_str().unwrap()) {
                &branches[1]
            } else {
                &branches[2]
            };
            resolve_if(t, p, chosen)
        }
        Value::Tagged(tagged) if tagged.tag == "Ref" && tagged.value.as_str() == Some("AWS::NoValue") => None,
        Value::Null => None,
        other => Some(other),
    }
}

/// Deployment parameters a guided deploy cannot leave empty.
const REQUIRED: &[(&str, &str)] = &[("AuthTokens", "alice=secret-token")];

fn with_required<'a>(extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    REQUIRED.iter().chain(extra).copied().collect()
}

// ---------------------------------------------------------------------------------------------
// Issue 11, item 1: a fresh account deploys with the defaults.

#[test]
fn a_fresh_account_deploys_with_the_defaults() {
    let t = template();
    let defaults = params(&t, &with_required(&[]));
    deploy_time_check(&t, &defaults).expect("the defaults pass the deploy-time checks");
    let resources = t["Resources"].as_mapping().unwrap();
    let account_settings = |p: &Params| {
        resources
            .iter()
            .filter(|(_, r)| r["Type"].as_str() == Some("AWS::ApiGateway::Account") && exists(&t, p, r))
            .count()
    };
    // A WebSocket (or REST) stage with access logs needs the account's CloudWatch Logs role,
    // which a fresh account does not have: with the defaults, no such stage logs, and nothing
    // account-wide is changed either.
    let logging_stages = |p: &Params| -> Vec<String> {
        resources
            .iter()
            .filter(|(_, r)| {
                matches!(
                    r["Type"].as_str(),
                    Some("AWS::ApiGatewayV2::Stage" | "AWS::ApiGateway::Stage")
                ) && exists(&t, p, r)
            })
            .filter(|(_, r)| {
                r["Properties"]
                    .get("AccessLogSettings")
                    .and_then(|a| resolve_if(&t, p, a))
                    .is_some()
            })
            .map(|(name, _)| name.as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(
        logging_stages(&defaults),
        Vec::<String>::new(),
        "with the defaults, no stage may need the account's API Gateway CloudWatch role"
    );
    assert_eq!(account_settings(&defaults), 0, "account-wide settings are opt-in");

    // Opting in: WebSocket access logs, and the account setting with its role.
    let opted_in = params(
        &t,
        &with_required(&[
            ("WebSocketAccessLogging", "true"),
            ("ApiGatewayCloudWatchRole", "create"),
        ]),
    );
    deploy_time_check(&t, &opted_in).unwrap();
    assert_eq!(logging_stages(&opted_in), ["Stage"]);
    assert_eq!(account_settings(&opted_in), 1);
    let r = &t["Resources"];
    assert_eq!(
        get_att(&r["ApiGatewayAccount"]["Properties"]["CloudWatchRoleArn"]),
        Some("ApiGatewayCloudWatchLogsRole.Arn")
    );
    let role = &r["ApiGatewayCloudWatchLogsRole"];
    assert!(exists(&t, &opted_in, role));
    let trust = &role["Properties"]["AssumeRolePolicyDocument"]["Statement"][0];
    assert_eq!(trust["Principal"]["Service"].as_str(), Some("apigateway.amazonaws.com"));
    let policies = format!("{:?}", role["Properties"]["ManagedPolicyArns"]);
    assert!(
        policies.contains("policy/service-role/AmazonAPIGatewayPushToCloudWatchLogs"),
        "{policies}"
    );
    // The stage waits for the account setting (a reference in the branch taken when it exists).
    let description = resolve_if(&t, &opted_in, &r["Stage"]["Properties"]["Description"]).unwrap();
    assert!(format!("{description:?}").contains("${ApiGatewayAccount}"));
    // The log group exists exactly when the stage logs.
    for p in [&defaults, &opted_in] {
        assert_eq!(exists(&t, p, &r["AccessLogGroup"]), !logging_stages(p).is_empty());
    }
    // Logs without creating the role: the operator says the account already has one.
    let existing_role = params(&t, &with_required(&[("WebSocketAccessLogging", "true")]));
    assert_eq!(logging_stages(&existing_role), ["Stage"]);
    assert_eq!(account_settings(&existing_role), 0);
}

// ---------------------------------------------------------------------------------------------
// Issue 11, item 2: every change to the WebSocket API reaches the stage.

/// Resource types whose changes only reach clients through a new deployment.
const DEPLOYED_TYPES: &[&str] = &[
    "AWS::ApiGatewayV2::Api",
    "AWS::ApiGatewayV2::Route",
    "AWS::ApiGatewayV2::RouteResponse",
    "AWS::ApiGatewayV2::Integration",
    "AWS::ApiGatewayV2::IntegrationResponse",
    "AWS::ApiGatewayV2::Authorizer",
    "AWS::ApiGatewayV2::Model",
];

/// Whether a resource is part of what the WebSocket stage's deployment snapshots: the WebSocket
/// API itself and its routes, responses, integrations and authorizer. The HTTP API's own routes
/// (`POST /publish`, `GET /users/online`) live on its `$default` stage, which deploys them
/// automatically, so they neither rename the WebSocket deployment nor are bound by its rule
/// that no parameter may shape them.
fn deployed_to_the_websocket_stage(name: &Value, r: &Value) -> bool {
    DEPLOYED_TYPES.contains(&r["Type"].as_str().unwrap())
        && (name.as_str() == Some("WebSocketApi") || ref_target(&r["Properties"]["ApiId"]) == Some("WebSocketApi"))
}

/// The logical id the deployment must have: `Deployment` and 8 hex digits of the SHA-256 of
/// every deployed resource, by logical id, as parsed (comments and layout do not count).
fn expected_deployment_id(t: &Value) -> String {
    use sha2::{Digest, Sha256};
    let deployed: BTreeMap<&str, &Value> = t["Resources"]
        .as_mapping()
        .unwrap()
        .iter()
        .filter(|(name, r)| deployed_to_the_websocket_stage(name, r))
        .map(|(name, r)| (name.as_str().unwrap(), r))
        .collect();
    let mut hash = Sha256::new();
    for (name, resource) in deployed {
        hash.update(name.as_bytes());
        hash.update(b"\n");
        hash.update(serde_norway::to_string(resource).unwrap().as_bytes());
        hash.update(b"\n");
    }
    let digest = hash.finalize();
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("Deployment{}", &hex[..8])
}

fn only_deployment(t: &Value) -> (&str, &Value) {
    let deployments = resources_of_type(t, "AWS::ApiGatewayV2::Deployment");
    assert_eq!(deployments.len(), 1, "one WebSocket deployment");
    deployments[0]
}

/// Every parameter named by a `!Ref` or a `${…}` in `v`.
fn parameters_used(t: &Value, v: &Value, found: &mut BTreeSet<String>) {
    let names: Vec<&str> = t["Parameters"]
        .as_mapping()
        .unwrap()
        .keys()
        .map(|k| k.as_str().unwrap())
        .collect();
    match v {
        Value::Tagged(tagged) => {
            if tagged.tag == "Ref" {
                if let Some(name) = tagged.value.as_str().filter(|n| names.contains(n)) {
                    found.insert(name.to_owned());
                }
            }
            if tagged.tag == "Sub" {
                let text = format!("{:?}", tagged.value);
                for name in &names {
                    if text.contains(&format!("${{{name}}}")) {
                        found.insert((*name).to_owned());
                    }
                }
            }
            parameters_used(t, &tagged.value, found);
        }
        Value::Sequence(items) => items.iter().for_each(|i| parameters_used(t, i, found)),
        Value::Mapping(m) => m.values().for_each(|i| parameters_used(t, i, found)),
        _ => {}
    }
}

#[test]
fn a_change_to_the_websocket_api_renames_the_deployment_the_stage_serves() {
    let t = template();
    let (name, _) = only_deployment(&t);
    let expected = expected_deployment_id(&t);
    assert_eq!(
        name, expected,
        "a route, route response, integration, authorizer or the API changed: rename the \
         Deployment resource (and the Stage's DeploymentId) to {expected}, so that the next \
         deploy creates a new deployment and the stage serves the change"
    );
    let stage = resources_of_type(&t, "AWS::ApiGatewayV2::Stage");
    assert_eq!(stage.len(), 1);
    assert_eq!(ref_target(&stage[0].1["DeploymentId"]), Some(name));
    assert!(
        stage[0].1.get("AutoDeploy").is_none(),
        "deployments come from the template, not from API Gateway"
    );

    // Edit a copy: each kind of change gives another logical id, that is, a new deployment.
    let edits: [(&str, &str, Value); 5] = [
        ("PingRoute", "RouteKey", Value::from("ping2")),
        ("WhoamiRoute", "OperationName", Value::from("WhoAmI")),
        ("SubscribeRouteResponse", "RouteResponseKey", Value::from("$other")),
        ("ConnectAuthorizer", "AuthorizerResultTtlInSeconds", Value::from(0)),
        ("HubIntegration", "TimeoutInMillis", Value::from(10_000)),
    ];
    let mut seen = BTreeSet::from([expected.clone()]);
    for (resource, property, value) in edits {
        let mut copy = t.clone();
        copy["Resources"][resource]["Properties"][property] = value;
        let renamed = expected_deployment_id(&copy);
        assert!(
            seen.insert(renamed.clone()),
            "editing {resource}.{property} must change the deployment id ({renamed})"
        );
    }
    // A new route too.
    let mut copy = t.clone();
    let mut route = copy["Resources"]["PingRoute"].clone();
    route["Properties"]["RouteKey"] = Value::from("status");
    copy["Resources"]
        .as_mapping_mut()
        .unwrap()
        .insert(Value::from("StatusRoute"), route);
    assert!(seen.insert(expected_deployment_id(&copy)));
    // Changes elsewhere (the function, a queue) keep the deployment: no needless redeploys.
    let mut copy = t.clone();
    copy["Resources"]["HubFunction"]["Properties"]["MemorySize"] = Value::from(512);
    assert_eq!(expected_deployment_id(&copy), expected);

    // The hash sees the template only, so no deployed resource may depend on a parameter: a
    // parameter change would alter the API without renaming the deployment.
    for (resource, value) in t["Resources"].as_mapping().unwrap() {
        if deployed_to_the_websocket_stage(resource, value) {
            let mut used = BTreeSet::new();
            parameters_used(&t, value, &mut used);
            assert!(
                used.is_empty(),
                "{} uses parameters {used:?}",
                resource.as_str().unwrap()
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Issue 11, item 3: parameter values the services would reject are refused before the stack is
// touched.

#[test]
fn values_the_services_reject_are_refused_at_deploy_time() {
    let t = template();
    let check = |extra: &[(&str, &str)]| deploy_time_check(&t, &params(&t, &with_required(extra)));
    check(&[]).unwrap();
    // Lambda: a BatchSize above 10 needs MaximumBatchingWindowInSeconds >= 1.
    for (size, window, accepted) in [
        ("10", "0", true),
        ("11", "0", false),
        ("100", "0", false),
        ("11", "1", true),
        ("100", "300", true),
        ("1", "0", true),
    ] {
        let result = check(&[("PushBatchSize", size), ("PushBatchWindowSeconds", window)]);
        assert_eq!(result.is_ok(), accepted, "batch {size}, window {window}: {result:?}");
        if !accepted {
            assert!(result.unwrap_err().contains("PushBatchOverTenNeedsWindow"));
        }
    }
    // Lambda: ScalingConfig.MaximumConcurrency is 2 to 1000.
    for (value, accepted) in [("1", false), ("2", true), ("1000", true), ("1001", false)] {
        assert_eq!(check(&[("PushMaxConcurrency", value)]).is_ok(), accepted, "{value}");
    }
    // Lambda: memory 128 MB to 10,240 MB.
    for (value, accepted) in [("127", false), ("128", true), ("10240", true), ("10241", false)] {
        assert_eq!(check(&[("MemorySize", value)]).is_ok(), accepted, "{value}");
    }
    for (value, accepted) in [("900", true), ("901", false), ("0", false)] {
        assert_eq!(check(&[("Timeout", value)]).is_ok(), accepted, "{value}");
    }
    // A zero throttling limit refuses every request.
    assert!(check(&[("ThrottlingRateLimit", "0")]).is_err());
    assert!(check(&[("ThrottlingBurstLimit", "0")]).is_err());
    // Custom domain: a name needs its certificate; a hosted zone needs the name.
    assert!(check(&[("DomainName", "ws.example.com")]).is_err());
    let certificate = "arn:aws:acm:us-east-1:123456789012:certificate/abc";
    check(&[("DomainName", "ws.example.com"), ("CertificateArn", certificate)]).unwrap();
    assert!(check(&[("HostedZoneId", "Z123")]).is_err());

    // Every range against the services' documented limits (Lambda API reference:
    // CreateEventSourceMapping, ScalingConfig, CreateFunction; CloudWatch Logs PutRetentionPolicy).
    let params = &t["Parameters"];
    for (name, min, max) in [
        ("MemorySize", 128.0, 10240.0),
        ("PushBatchSize", 1.0, 10000.0),
        ("PushBatchWindowSeconds", 0.0, 300.0),
        ("PushMaxConcurrency", 2.0, 1000.0),
    ] {
        let p = &params[name];
        assert!(p["MinValue"].as_f64().unwrap() >= min, "{name}");
        assert!(p["MaxValue"].as_f64().unwrap() <= max, "{name}");
    }
    for timeout in params["Timeout"]["AllowedValues"].as_sequence().unwrap() {
        assert!((1..=900).contains(&timeout.as_u64().unwrap()));
    }
    let retention: BTreeSet<u64> = [
        1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653,
    ]
    .into();
    for days in params["LogRetentionDays"]["AllowedValues"].as_sequence().unwrap() {
        assert!(retention.contains(&days.as_u64().unwrap()));
    }
}

// ---------------------------------------------------------------------------------------------
// Issue 11, item 4: a big push cannot starve $connect and the authorizer.

#[test]
fn the_push_path_has_bounded_concurrency() {
    let t = template();
    let function = &t["Resources"]["HubFunction"]["Properties"];
    let events = function["Events"].as_mapping().unwrap();
    let queues: Vec<&Value> = events.values().filter(|e| e["Type"].as_str() == Some("SQS")).collect();
    assert_eq!(queues.len(), 1, "one queue consumer");
    let scaling = &queues[0]["Properties"]["ScalingConfig"]["MaximumConcurrency"];
    assert_eq!(ref_target(scaling), Some("PushMaxConcurrency"));
    let p = &t["Parameters"]["PushMaxConcurrency"];
    assert_eq!(p["MinValue"].as_u64(), Some(2), "Lambda's minimum");
    assert_eq!(p["MaxValue"].as_u64(), Some(1000), "Lambda's maximum");
    let default = p["Default"].as_u64().unwrap();
    // Small enough to leave most of even a small account's concurrency to $connect and the
    // routes; at least the minimum Lambda accepts.
    assert!((2..=10).contains(&default), "{default}");
    // Reserved concurrency would also cap $connect and fail on accounts with a low quota.
    assert!(function.get("ReservedConcurrentExecutions").is_none());
    // The default EventBridge path goes through the same bounded queue.
    assert_eq!(t["Parameters"]["EventBridgeTarget"]["Default"].as_str(), Some("queue"));
}

// ---------------------------------------------------------------------------------------------
// Issue 15: forwarded client actions and URL paths.

#[test]
fn forwarded_actions_may_be_put_on_their_bus_only_and_paths_come_through_the_edge() {
    let t = template();
    let r = &t["Resources"];
    let env = &r["HubFunction"]["Properties"]["Environment"]["Variables"];
    assert_eq!(ref_target(&env["FORWARD_ACTIONS"]), Some("ForwardActions"));
    assert_eq!(ref_target(&env["FORWARD_EVENT_BUS"]), Some("ForwardEventBusName"));
    assert_eq!(t["Parameters"]["ForwardActions"]["Default"].as_str(), Some(""));
    // events:PutEvents on the configured bus, and only while forwarding is on.
    let policy = &r["ForwardPutEventsPolicy"];
    assert_eq!(policy["Condition"].as_str(), Some("ForwardingEnabled"));
    let statements = policy["Properties"]["PolicyDocument"]["Statement"]
        .as_sequence()
        .unwrap();
    assert_eq!(statements.len(), 1);
    assert_eq!(statements[0]["Action"].as_str(), Some("events:PutEvents"));
    let resource = format!("{:?}", statements[0]["Resource"]);
    assert!(resource.contains(":event-bus/${ForwardEventBusName}"), "{resource}");
    let defaults = params(&t, &with_required(&[]));
    assert!(!exists(&t, &defaults, policy));
    let forwarding = params(&t, &with_required(&[("ForwardActions", "order.*")]));
    assert!(exists(&t, &forwarding, policy));
    // The push rule must not pick forwarded client events up again.
    let looping = params(&t, &with_required(&[("EventSources", "wshub,wshub.client")]));
    assert!(deploy_time_check(&t, &looping)
        .unwrap_err()
        .contains("ForwardedEventsAreNotPushes"));

    // EdgePath: off by default; on, a distribution whose viewer requests run the function.
    let edge = params(&t, &with_required(&[("EdgePath", "true")]));
    deploy_time_check(&t, &edge).unwrap();
    for name in ["EdgePathFunction", "EdgeDistribution"] {
        assert!(!exists(&t, &defaults, &r[name]), "{name}");
        assert!(exists(&t, &edge, &r[name]), "{name}");
    }
    let config = &r["EdgeDistribution"]["Properties"]["DistributionConfig"];
    let association = &config["DefaultCacheBehavior"]["FunctionAssociations"][0];
    assert_eq!(association["EventType"].as_str(), Some("viewer-request"));
    assert_eq!(
        get_att(&association["FunctionARN"]),
        Some("EdgePathFunction.FunctionMetadata.FunctionARN")
    );
    let origin = &config["Origins"][0];
    assert!(format!("{:?}", origin["OriginPath"]).contains("/${StageName}"));
    assert_eq!(
        origin["CustomOriginConfig"]["OriginProtocolPolicy"].as_str(),
        Some("https-only")
    );
}
