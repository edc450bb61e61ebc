//! The `$connect` REQUEST authorizer: finds the caller's token, asks [`crate::auth`] who it is,
//! and answers with an IAM policy.
//!
//! Denials are a `Deny` policy, so the client's upgrade fails with **403**; the invocation
//! itself succeeds (a bad token is not a function error and does not page anyone).

use std::collections::HashMap;

use aws_lambda_events::apigw::{ApiGatewayCustomAuthorizerPolicy, ApiGatewayCustomAuthorizerResponse};
use aws_lambda_events::iam::{IamPolicyEffect, IamPolicyStatement};
use serde::Deserialize;
use serde_json::Value;

use crate::auth::{AuthConfig, AuthError, Identity};
use crate::edge;
use crate::topics;

/// A WebSocket REQUEST authorizer event. Our own type: aws_lambda_events' drops the
/// WebSocket-only fields of `requestContext`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuthorizerRequest {
    pub method_arn: String,
    #[serde(default)]
    pub headers: Option<HashMap<String, String>>,
    #[serde(default)]
    pub multi_value_headers: Option<HashMap<String, Vec<String>>>,
    #[serde(default)]
    pub query_string_parameters: Option<HashMap<String, String>>,
    #[serde(default)]
    pub multi_value_query_string_parameters: Option<HashMap<String, Vec<String>>>,
    #[serde(default)]
    pub request_context: AuthorizerRequestContext,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuthorizerRequestContext {
    pub route_key: Option<String>,
    pub event_type: Option<String>,
    pub connection_id: Option<String>,
    pub domain_name: Option<String>,
    pub stage: Option<String>,
    pub api_id: Option<String>,
}

/// Where the token came from; logged (the token never is).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenSource {
    TokenHeader,
    AuthorizationHeader,
    TokenQuery,
    AccessTokenQuery,
    Subprotocol,
}

impl AuthorizerRequest {
    /// First value of a header, by case-insensitive name, from either header map.
    pub fn header(&self, name: &str) -> Option<&str> {
        let single = self
            .headers
            .iter()
            .flatten()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str());
        single.or_else(|| {
            self.multi_value_headers
                .iter()
                .flatten()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .and_then(|(_, v)| v.first())
                .map(String::as_str)
        })
    }

    pub fn query(&self, name: &str) -> Option<&str> {
        let single = self
            .query_string_parameters
            .as_ref()
            .and_then(|q| q.get(name))
            .map(String::as_str);
        single.or_else(|| {
            self.multi_value_query_string_parameters
                .as_ref()
                .and_then(|q| q.get(name))
                .and_then(|v| v.first())
                .map(String::as_str)
        })
    }

    /// The protocols the client offered in `Sec-WebSocket-Protocol`, in order.
    pub fn offered_protocols(&self) -> Vec<&str> {
        offered_protocols(self.header("sec-websocket-protocol"))
    }
}

/// Splits a `Sec-WebSocket-Protocol` header value into its entries.
pub fn offered_protocols(header: Option<&str>) -> Vec<&str> {
    header
        .map(|h| h.split(',').map(str::trim).filter(|p| !p.is_empty()).collect())
        .unwrap_or_default()
}

/// Outcome of authentication: who, how, and which offered subprotocol `$connect` should accept.
struct Verdict {
    identity: Identity,
    source: TokenSource,
    subprotocol: Option<String>,
}

async fn authenticate(auth: &AuthConfig, req: &AuthorizerRequest) -> Result<Verdict, (Option<TokenSource>, AuthError)> {
    let protocols = req.offered_protocols();
    let bearer = req.header("authorization").map(|v| match v.split_once(' ') {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("bearer") => rest.trim(),
        // Anything but a bearer credential is no token of ours.
        _ => "",
    });
    let found = [
        (TokenSource::TokenHeader, req.header("token")),
        (TokenSource::AuthorizationHeader, bearer),
        (TokenSource::TokenQuery, req.query("token")),
        (TokenSource::AccessTokenQuery, req.query("access_token")),
    ]
    .into_iter()
    .find_map(|(source, token)| token.map(|t| (source, t)));
    if let Some((source, token)) = found {
        let identity = auth.verify(token).await.map_err(|e| (Some(source), e))?;
        let subprotocol = protocols.first().map(|p| p.to_string());
        return Ok(Verdict {
            identity,
            source,
            subprotocol,
        });
    }
    // Browsers cannot set headers, so they offer the token as a subprotocol, e.g.
    // `new WebSocket(url, ["websocket", token])`. The entry that verifies is the token;
    // the first other entry is the protocol `$connect` accepts.
    if protocols.is_empty() {
        return Err((
            None,
            if auth.is_configured() {
                AuthError::NoToken
            } else {
                AuthError::NotConfigured
            },
        ));
    }
    let mut last_error = AuthError::NoToken;
    for (index, candidate) in protocols.iter().enumerate() {
        match auth.verify(candidate).await {
            Ok(identity) => {
                let subprotocol = protocols
                    .iter()
                    .enumerate()
                    .find(|(i, _)| *i != index)
                    .map(|(_, p)| p.to_string());
                return Ok(Verdict {
                    identity,
                    source: TokenSource::Subprotocol,
                    subprotocol,
                });
            }
            Err(AuthError::NotConfigured) => return Err((Some(TokenSource::Subprotocol), AuthError::NotConfigured)),
            Err(e) => last_error = e,
        }
    }
    Err((Some(TokenSource::Subprotocol), last_error))
}

/// Answers an authorizer event with an Allow or Deny policy.
pub async fn authorize(auth: &AuthConfig, req: &AuthorizerRequest) -> Value {
    let connection_id = req.request_context.connection_id.as_deref().unwrap_or("-");
    // The URL path (`EdgePath`): a name the client chose, checked for shape only and passed on;
    // a malformed one is refused rather than stored.
    let path = req.header(edge::PATH_HEADER);
    if path.is_some_and(|p| !edge::valid_path(p)) {
        tracing::warn!(connection_id, "connection denied: malformed {}", edge::PATH_HEADER);
        return policy(
            "unauthorized",
            IamPolicyEffect::Deny,
            &req.method_arn,
            Value::Object(Default::default()),
        );
    }
    match authenticate(auth, req).await {
        Ok(verdict) => {
            tracing::info!(connection_id, user_id = %verdict.identity.user_id, source = ?verdict.source, "connection allowed");
            let mut context = serde_json::Map::new();
            context.insert("userId".into(), verdict.identity.user_id.clone().into());
            context.insert("authMethod".into(), verdict.identity.method.as_str().into());
            if let Some(p) = verdict.subprotocol {
                context.insert("subprotocol".into(), p.into());
            }
            if let Some(path) = path {
                context.insert("path".into(), path.into());
            }
            if !verdict.identity.topics.is_empty() {
                // Context values must be strings: the granted patterns travel comma-joined.
                context.insert("topics".into(), topics::join(&verdict.identity.topics).into());
            }
            policy(
                &verdict.identity.user_id,
                IamPolicyEffect::Allow,
                &req.method_arn,
                Value::Object(context),
            )
        }
        Err((source, reason)) => {
            crate::metrics::add(crate::metrics::Metric::ConnectsDenied, 1);
            if reason == AuthError::NotConfigured {
                tracing::error!(connection_id, "{reason}");
            } else {
                tracing::warn!(connection_id, source = ?source, reason = %reason, "connection denied");
            }
            policy(
                "unauthorized",
                IamPolicyEffect::Deny,
                &req.method_arn,
                Value::Object(Default::default()),
            )
        }
    }
}

/// The Deny answer when the secrets could not be read (fail closed): `reason` is logged, and
/// carries no value.
pub fn deny_unavailable(req: &AuthorizerRequest, reason: &crate::secrets::SecretError) -> Value {
    let connection_id = req.request_context.connection_id.as_deref().unwrap_or("-");
    tracing::error!(connection_id, reason = %reason, "connection denied: the secrets are unavailable");
    crate::metrics::add(crate::metrics::Metric::ConnectsDenied, 1);
    policy(
        "unauthorized",
        IamPolicyEffect::Deny,
        &req.method_arn,
        Value::Object(Default::default()),
    )
}

fn policy(principal: &str, effect: IamPolicyEffect, method_arn: &str, context: Value) -> Value {
    let mut statement = IamPolicyStatement::default();
    statement.action = vec!["execute-api:Invoke".into()];
    statement.effect = effect;
    statement.resource = vec![method_arn.to_owned()];
    let mut document = ApiGatewayCustomAuthorizerPolicy::default();
    document.version = Some("2012-10-17".into());
    document.statement = vec![statement];
    let mut response: ApiGatewayCustomAuthorizerResponse = ApiGatewayCustomAuthorizerResponse::default();
    response.principal_id = Some(principal.to_owned());
    response.policy_document = document;
    response.context = context;
    serde_json::to_value(response).unwrap_or(Value::Null)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::tests::{jwt, now, SECRET};
    use serde_json::json;

    fn auth() -> AuthConfig {
        AuthConfig::from_parts(Some("alice=s3cret,plain"), Some(SECRET), None, None).unwrap()
    }

    /// The authorizer, awaited on a runtime of its own (JWKS-free configs never leave it).
    fn run(auth: &AuthConfig, req: &AuthorizerRequest) -> Value {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(authorize(auth, req))
    }

    fn request(event: Value) -> AuthorizerRequest {
        serde_json::from_value(event).unwrap()
    }

    fn base(headers: Value, query: Value) -> AuthorizerRequest {
        request(json!({
            "type": "REQUEST",
            "methodArn": "arn:aws:execute-api:us-east-1:123456789012:abcdef1234/prod/$connect",
            "headers": headers,
            "queryStringParameters": query,
            "requestContext": {"routeKey": "$connect", "eventType": "CONNECT", "connectionId": "c1"}
        }))
    }

    fn effect(resp: &Value) -> &str {
        resp["policyDocument"]["Statement"][0]["Effect"].as_str().unwrap()
    }

    #[test]
    fn each_token_source_in_order() {
        let a = auth();
        let r = run(&a, &base(json!({"Token": "s3cret"}), Value::Null));
        assert_eq!(
            (effect(&r), r["principalId"].as_str(), r["context"]["userId"].as_str()),
            ("Allow", Some("alice"), Some("alice"))
        );
        assert_eq!(r["policyDocument"]["Version"], "2012-10-17");
        assert_eq!(r["policyDocument"]["Statement"][0]["Action"][0], "execute-api:Invoke");
        assert_eq!(
            r["policyDocument"]["Statement"][0]["Resource"][0],
            "arn:aws:execute-api:us-east-1:123456789012:abcdef1234/prod/$connect"
        );
        let r = run(&a, &base(json!({"authorization": "Bearer plain"}), Value::Null));
        assert_eq!(r["context"]["userId"], "anonymous");
        let r = run(&a, &base(Value::Null, json!({"token": "s3cret"})));
        assert_eq!(r["context"]["userId"], "alice");
        let token = jwt(json!({"sub": "erin", "exp": now() + 60}));
        let r = run(&a, &base(json!({}), json!({"access_token": token})));
        assert_eq!(
            (r["context"]["userId"].as_str(), r["context"]["authMethod"].as_str()),
            (Some("erin"), Some("jwt"))
        );
        // The first source found decides, even when it is wrong and a later one is right.
        let r = run(&a, &base(json!({"token": "wrong"}), json!({"token": "s3cret"})));
        assert_eq!(effect(&r), "Deny");
    }

    #[test]
    fn subprotocol_token_is_found_and_never_chosen_as_protocol() {
        let a = auth();
        let r = run(
            &a,
            &base(json!({"Sec-WebSocket-Protocol": "websocket, s3cret"}), Value::Null),
        );
        assert_eq!(effect(&r), "Allow");
        assert_eq!(r["context"]["subprotocol"], "websocket");
        let r = run(
            &a,
            &base(json!({"sec-websocket-protocol": "s3cret, wshub.v1"}), Value::Null),
        );
        assert_eq!(r["context"]["subprotocol"], "wshub.v1");
        let r = run(
            &a,
            &base(json!({"Sec-WebSocket-Protocol": "websocket, nope"}), Value::Null),
        );
        assert_eq!(effect(&r), "Deny");
        assert!(!r.to_string().contains("nope"));
    }

    #[test]
    fn multi_value_headers_are_honoured() {
        let mut req = base(Value::Null, Value::Null);
        req.multi_value_headers = Some(HashMap::from([("TOKEN".into(), vec!["s3cret".into()])]));
        assert_eq!(effect(&run(&auth(), &req)), "Allow");
    }

    #[test]
    fn the_url_path_is_passed_on_and_a_malformed_one_denied() {
        let a = auth();
        let r = run(
            &a,
            &base(json!({"token": "s3cret", "X-Wshub-Path": "/ocpp/CP001"}), Value::Null),
        );
        assert_eq!(effect(&r), "Allow");
        assert_eq!(r["context"]["path"], "/ocpp/CP001");
        let r = run(&a, &base(json!({"token": "s3cret"}), Value::Null));
        assert!(r["context"].get("path").is_none());
        let r = run(
            &a,
            &base(json!({"token": "s3cret", "x-wshub-path": "no-slash"}), Value::Null),
        );
        assert_eq!(effect(&r), "Deny");
        // A path alone is no credential.
        let r = run(&a, &base(json!({"x-wshub-path": "/ocpp/CP001"}), Value::Null));
        assert_eq!(effect(&r), "Deny");
    }

    #[test]
    fn denials() {
        let a = auth();
        let r = run(&a, &base(json!({}), Value::Null));
        assert_eq!((effect(&r), r["principalId"].as_str()), ("Deny", Some("unauthorized")));
        assert_eq!(r["context"], json!({}));
        assert_eq!(
            effect(&run(&a, &base(json!({"Authorization": "Basic czNjcmV0"}), Value::Null))),
            "Deny"
        );
        let unconfigured = AuthConfig::from_parts(None, None, None, None).unwrap();
        assert_eq!(
            effect(&run(&unconfigured, &base(json!({"token": "s3cret"}), Value::Null))),
            "Deny"
        );
    }
}
