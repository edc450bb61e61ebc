//! AWS-shaped JSON events for the router, built the way API Gateway and the SQS event source
//! mapping build them (compare `events/*.json`), and the readings of the router's answers.

use axum::http::{HeaderMap, StatusCode};
use base64::Engine;
use serde_json::{json, Map, Value};

use crate::event::RouterError;

/// Account id in local ARNs: API Gateway and SQS always put one there.
const ACCOUNT: &str = "000000000000";
/// The routes of the deployed API; any other `action` goes to `$default`, as in API Gateway.
const ROUTES: [&str; 5] = ["ping", "subscribe", "unsubscribe", "sendmessage", "whoami"];

/// What every event of one connection repeats in `requestContext`.
#[derive(Debug, Clone)]
pub struct ConnectionInfo {
    pub connection_id: String,
    /// Epoch milliseconds.
    pub connected_at: i64,
    pub source_ip: String,
    pub user_agent: Option<String>,
    /// The `Host` the client used, as API Gateway reports its own domain.
    pub domain_name: String,
    pub stage: String,
    pub api_id: String,
}

/// Epoch milliseconds.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn random_base64(bytes: usize) -> String {
    let raw: Vec<u8> = std::iter::repeat_with(|| fastrand::u8(..)).take(bytes).collect();
    base64::engine::general_purpose::STANDARD.encode(raw)
}

/// An id shaped like API Gateway's: 16 base64 characters ending in `=` (`L0SM9cOFvHcCIhw=`).
/// Like API Gateway's, it may contain `+` and `/`, so clients must URL-encode it in paths.
pub fn connection_id() -> String {
    random_base64(11)
}

/// API Gateway's request and message ids have the connection id's shape.
pub fn request_id() -> String {
    random_base64(11)
}

/// A UUID v4, as SQS message ids are.
pub fn message_id() -> String {
    let bytes: [u8; 16] = std::array::from_fn(|_| fastrand::u8(..));
    uuid::Builder::from_random_bytes(bytes).into_uuid().to_string()
}

/// The route API Gateway selects with `$request.body.action`, falling back to `$default`.
pub fn route_key(body: &str) -> &'static str {
    let action = serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| v.get("action").and_then(Value::as_str).map(str::to_owned));
    action
        .and_then(|a| ROUTES.iter().find(|r| **r == a).copied())
        .unwrap_or("$default")
}

/// `headers` (last value wins, as API Gateway does) and `multiValueHeaders`.
fn header_maps(headers: &HeaderMap) -> (Value, Value) {
    let mut single = Map::new();
    let mut multi: Map<String, Value> = Map::new();
    for (name, value) in headers {
        // Non-UTF-8 header bytes cannot go into JSON; API Gateway would not pass them either.
        let Ok(value) = value.to_str() else { continue };
        single.insert(name.as_str().to_owned(), json!(value));
        match multi.get_mut(name.as_str()) {
            Some(Value::Array(values)) => values.push(json!(value)),
            _ => {
                multi.insert(name.as_str().to_owned(), json!([value]));
            }
        }
    }
    (Value::Object(single), Value::Object(multi))
}

/// `queryStringParameters` and `multiValueQueryStringParameters`: `null` without a query.
fn query_maps(query: &[(String, String)]) -> (Value, Value) {
    if query.is_empty() {
        return (Value::Null, Value::Null);
    }
    let mut single = Map::new();
    let mut multi: Map<String, Value> = Map::new();
    for (name, value) in query {
        single.insert(name.clone(), json!(value));
        match multi.get_mut(name) {
            Some(Value::Array(values)) => values.push(json!(value)),
            _ => {
                multi.insert(name.clone(), json!([value]));
            }
        }
    }
    (Value::Object(single), Value::Object(multi))
}

impl ConnectionInfo {
    fn request_context(&self, route_key: &str, event_type: &str, authorizer: Option<&Value>) -> Map<String, Value> {
        let request_id = request_id();
        let mut context = json!({
            "routeKey": route_key,
            "eventType": event_type,
            "extendedRequestId": request_id,
            "messageDirection": "IN",
            "stage": self.stage,
            "connectedAt": self.connected_at,
            "requestTimeEpoch": now_ms(),
            "identity": {"sourceIp": self.source_ip, "userAgent": self.user_agent},
            "requestId": request_id,
            "domainName": self.domain_name,
            "connectionId": self.connection_id,
            "apiId": self.api_id,
        });
        if let (Some(authorizer), Value::Object(map)) = (authorizer, &mut context) {
            map.insert("authorizer".into(), authorizer.clone());
        }
        match context {
            Value::Object(map) => map,
            _ => Map::new(),
        }
    }

    /// The `$connect` REQUEST authorizer event.
    pub fn authorizer_event(&self, headers: &HeaderMap, query: &[(String, String)]) -> Value {
        let (headers, multi_value_headers) = header_maps(headers);
        let (query, multi_value_query) = query_maps(query);
        json!({
            "type": "REQUEST",
            "methodArn": format!("arn:aws:execute-api:local:{ACCOUNT}:{}/{}/$connect", self.api_id, self.stage),
            "headers": headers,
            "multiValueHeaders": multi_value_headers,
            "queryStringParameters": query,
            "multiValueQueryStringParameters": multi_value_query,
            "stageVariables": {},
            "requestContext": self.request_context("$connect", "CONNECT", None),
        })
    }

    /// The `$connect` route event; `authorizer` is what [`authorizer_outcome`] allowed.
    pub fn connect_event(&self, headers: &HeaderMap, query: &[(String, String)], authorizer: &Value) -> Value {
        let (headers, multi_value_headers) = header_maps(headers);
        let (query, multi_value_query) = query_maps(query);
        json!({
            "headers": headers,
            "multiValueHeaders": multi_value_headers,
            "queryStringParameters": query,
            "multiValueQueryStringParameters": multi_value_query,
            "requestContext": self.request_context("$connect", "CONNECT", Some(authorizer)),
            "isBase64Encoded": false,
        })
    }

    /// A client message. Binary frames arrive base64-encoded, as API Gateway passes them.
    pub fn message_event(&self, authorizer: &Value, body: &[u8], binary: bool) -> Value {
        let (route_key, body) = if binary {
            ("$default", base64::engine::general_purpose::STANDARD.encode(body))
        } else {
            let text = String::from_utf8_lossy(body).into_owned();
            (route_key(&text), text)
        };
        let mut context = self.request_context(route_key, "MESSAGE", Some(authorizer));
        context.insert("messageId".into(), json!(request_id()));
        json!({
            "requestContext": context,
            "body": body,
            "isBase64Encoded": binary,
        })
    }

    /// `$disconnect`, with the close code and reason API Gateway reports.
    pub fn disconnect_event(&self, authorizer: &Value, code: u16, reason: &str) -> Value {
        let mut context = self.request_context("$disconnect", "DISCONNECT", Some(authorizer));
        context.insert("disconnectStatusCode".into(), json!(code));
        context.insert("disconnectReason".into(), json!(reason));
        json!({
            "headers": {"Host": self.domain_name},
            "multiValueHeaders": {"Host": [self.domain_name]},
            "requestContext": context,
            "isBase64Encoded": false,
        })
    }
}

/// An HTTP API request (payload format 2.0) on a `$default` stage and `$default` route, so the
/// function itself answers 404 and 405. Repeated headers and query parameters are joined with
/// commas, as API Gateway joins them.
pub fn http_event(method: &str, path: &str, raw_query: &str, headers: &HeaderMap, query: &[(String, String)]) -> Value {
    let mut joined_headers = Map::new();
    for (name, value) in headers {
        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
        append_joined(&mut joined_headers, name.as_str(), value);
    }
    let mut joined_query = Map::new();
    for (key, value) in query {
        append_joined(&mut joined_query, key, value.clone());
    }
    let user_agent = joined_headers.get("user-agent").cloned().unwrap_or(Value::Null);
    json!({
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": raw_query,
        "headers": joined_headers,
        "queryStringParameters": joined_query,
        "requestContext": {
            "accountId": ACCOUNT,
            "apiId": "local-http",
            "http": {"method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1", "userAgent": user_agent},
            "requestId": request_id(),
            "routeKey": "$default",
            "stage": "$default",
            "timeEpoch": now_ms(),
        },
        "isBase64Encoded": false,
    })
}

fn append_joined(map: &mut Map<String, Value>, key: &str, value: String) {
    match map.get_mut(key) {
        Some(Value::String(existing)) => {
            existing.push(',');
            existing.push_str(&value);
        }
        _ => {
            map.insert(key.to_owned(), Value::String(value));
        }
    }
}

/// An SQS batch holding one message, as the event source mapping delivers it.
pub fn sqs_event(message_id: &str, body: &str, queue: &str) -> Value {
    let now = now_ms().to_string();
    json!({
        "Records": [{
            "messageId": message_id,
            "receiptHandle": format!("local-{message_id}"),
            "body": body,
            "attributes": {
                "ApproximateReceiveCount": "1",
                "SentTimestamp": now,
                "SenderId": ACCOUNT,
                "ApproximateFirstReceiveTimestamp": now,
            },
            "messageAttributes": {},
            "eventSource": "aws:sqs",
            "eventSourceARN": format!("arn:aws:sqs:local:{ACCOUNT}:{queue}"),
            "awsRegion": "local",
        }]
    })
}

/// How API Gateway answers an upgrade after the authorizer ran.
#[derive(Debug, Clone, PartialEq)]
pub enum AuthorizerOutcome {
    /// The `requestContext.authorizer` of every later event: the policy's context plus `principalId`.
    Allow(Value),
    /// 401 or 403 (deny) or 500 (authorizer failure), with API Gateway's message.
    Refuse(StatusCode, &'static str),
}

/// Reads the authorizer's answer as API Gateway does: an `Allow` statement admits, a `Deny`
/// gives 403, the error `Unauthorized` gives 401, any other error or shape gives 500.
pub fn authorizer_outcome(result: &Result<Value, RouterError>, started_ms: i64) -> AuthorizerOutcome {
    let policy = match result {
        Ok(policy) => policy,
        Err(e) if e.to_string() == "Unauthorized" => {
            return AuthorizerOutcome::Refuse(StatusCode::UNAUTHORIZED, "Unauthorized")
        }
        Err(_) => return AuthorizerOutcome::Refuse(StatusCode::INTERNAL_SERVER_ERROR, "Internal server error"),
    };
    let statements = policy
        .pointer("/policyDocument/Statement")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let effect = |e: &str| {
        statements
            .iter()
            .any(|s| s.get("Effect").and_then(Value::as_str) == Some(e))
    };
    if statements.is_empty() {
        return AuthorizerOutcome::Refuse(StatusCode::INTERNAL_SERVER_ERROR, "Internal server error");
    }
    // An explicit Deny wins over any Allow, as in IAM.
    if effect("Deny") || !effect("Allow") {
        return AuthorizerOutcome::Refuse(StatusCode::FORBIDDEN, "Forbidden");
    }
    let mut context = match policy.get("context") {
        Some(Value::Object(map)) => map.clone(),
        _ => Map::new(),
    };
    if let Some(principal) = policy.get("principalId") {
        context.insert("principalId".into(), principal.clone());
    }
    context.insert("integrationLatency".into(), json!(now_ms() - started_ms));
    AuthorizerOutcome::Allow(Value::Object(context))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Event;

    fn info() -> ConnectionInfo {
        ConnectionInfo {
            connection_id: connection_id(),
            connected_at: now_ms(),
            source_ip: "127.0.0.1".into(),
            user_agent: Some("test".into()),
            domain_name: "127.0.0.1:3001".into(),
            stage: "local".into(),
            api_id: "local".into(),
        }
    }

    #[test]
    fn ids_look_like_aws_ones() {
        let id = connection_id();
        assert_eq!(id.len(), 16);
        assert!(id.ends_with('='), "{id}");
        let m = message_id();
        assert_eq!(m.len(), 36);
        assert_eq!(&m[14..15], "4", "a v4 UUID: {m}");
    }

    #[test]
    fn route_selection_falls_back_to_default() {
        assert_eq!(route_key(r#"{"action":"ping"}"#), "ping");
        assert_eq!(route_key(r#"{"action":"sendmessage","topic":"t"}"#), "sendmessage");
        assert_eq!(route_key(r#"{"action":"dance"}"#), "$default");
        assert_eq!(route_key(r#"{"action":1}"#), "$default");
        assert_eq!(route_key("not json"), "$default");
    }

    #[test]
    fn every_event_is_classified_as_aws_would_send_it() {
        let info = info();
        let mut headers = HeaderMap::new();
        headers.insert("token", "hello".parse().unwrap());
        let query = vec![("a".to_string(), "1".to_string()), ("a".to_string(), "2".to_string())];
        let auth = info.authorizer_event(&headers, &query);
        assert!(matches!(Event::from_json(auth.clone()), Ok(Event::Authorize(_))));
        assert_eq!(auth["multiValueQueryStringParameters"]["a"], json!(["1", "2"]));
        let authorizer = json!({"userId": "u", "principalId": "u"});
        for event in [
            info.connect_event(&headers, &[], &authorizer),
            info.message_event(&authorizer, br#"{"action":"ping"}"#, false),
            info.message_event(&authorizer, &[0, 159, 146, 150], true),
            info.disconnect_event(&authorizer, 1000, "bye"),
        ] {
            assert!(
                matches!(Event::from_json(event.clone()), Ok(Event::Route(_))),
                "{event}"
            );
            assert_eq!(event["requestContext"]["authorizer"]["userId"], "u");
        }
        let binary = info.message_event(&authorizer, &[0, 1], true);
        assert_eq!(binary["body"], "AAE=");
        assert_eq!(binary["isBase64Encoded"], true);
        let sqs = sqs_event(&message_id(), "{}", "q");
        assert!(matches!(Event::from_json(sqs), Ok(Event::Push(_))));
    }

    #[test]
    fn authorizer_answers_map_to_api_gateway_statuses() {
        let allow = json!({"principalId": "u", "policyDocument": {"Statement": [{"Effect": "Allow"}]}, "context": {"userId": "u"}});
        match authorizer_outcome(&Ok(allow), now_ms()) {
            AuthorizerOutcome::Allow(ctx) => {
                assert_eq!(ctx["userId"], "u");
                assert_eq!(ctx["principalId"], "u");
            }
            other => panic!("{other:?}"),
        }
        let deny = json!({"principalId": "x", "policyDocument": {"Statement": [{"Effect": "Deny"}]}});
        assert_eq!(
            authorizer_outcome(&Ok(deny), 0),
            AuthorizerOutcome::Refuse(StatusCode::FORBIDDEN, "Forbidden")
        );
        assert_eq!(
            authorizer_outcome(&Ok(json!({})), 0),
            AuthorizerOutcome::Refuse(StatusCode::INTERNAL_SERVER_ERROR, "Internal server error")
        );
        let err = Err(RouterError::Unrecognized("x".into()));
        assert_eq!(
            authorizer_outcome(&err, 0),
            AuthorizerOutcome::Refuse(StatusCode::INTERNAL_SERVER_ERROR, "Internal server error")
        );
    }
}
