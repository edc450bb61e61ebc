//! HTTP API requests (API Gateway HTTP API, payload format 2.0): `GET /users/online` (the
//! presence of given users, or without `userIds` the list of who is online),
//! `GET /topics/{topic}/presence` ([`presence`]) and `POST /publish` ([`publish`]).
//!
//! The function checks credentials itself, with the same configuration as the `$connect`
//! authorizer, so the route is safe behind any front door (an HTTP API without an authorizer,
//! a function URL): header `token`, else `Authorization: Bearer …`, verified by
//! [`AuthConfig::verify`](crate::auth::AuthConfig::verify). No credentials: **401** with
//! `WWW-Authenticate`; bad ones, or no credentials configured at all: **403**. The query string
//! is never read for a token: query strings end up in access logs.
//!
//! Every error is `{"code": C, "message": M}` with a stable code:
//!
//! | status | code                   | when |
//! |--------|------------------------|------|
//! | 400    | `missing_user_ids`     | `userIds` given with only empty entries |
//! | 400    | `invalid_user_id`      | an id longer than 128 characters or with control characters |
//! | 400    | `too_many_user_ids`    | more than 100 distinct ids |
//! | 400    | `invalid_query`        | `limit` or `cursor` beside `userIds` (they page the list only) |
//! | 400    | `invalid_limit`        | `limit` not a whole number from 1 to 1000 |
//! | 400    | `invalid_cursor`       | `cursor` not a `next` of an earlier answer |
//! | 400    | `invalid_topic`        | `/topics/{topic}/presence` with an invalid topic |
//! | 401    | `missing_credentials`  | neither header |
//! | 403    | `forbidden`            | the credential is refused, or auth is not configured |
//! | 403    | `forbidden_topic`      | `TOPIC_ACCESS=restricted` and the topic is not granted to the caller |
//! | 404    | `not_found`            | another path |
//! | 404    | `not_presence_topic`   | the topic is not in `PRESENCE_TOPICS` |
//! | 405    | `method_not_allowed`   | `/users/online` or a presence path with another method (`Allow: GET`) |
//! | 500    | `internal`             | the store failed; retrying may succeed |

use aws_lambda_events::apigw::{ApiGatewayV2httpRequest, ApiGatewayV2httpResponse};
use aws_lambda_events::encodings::Body;
use aws_lambda_events::http::{HeaderMap, HeaderValue};
use serde_json::{json, Value};

pub mod presence;
mod publish;

use tokio::time::Instant;

use crate::auth::{valid_user_id, AuthError, Identity};
use crate::hub::{now_secs, Hub};
use crate::store::{Presence, MAX_PRESENCE_USERS};

pub use publish::{MAX_PUSHES, PUBLISH_PATH};

pub const ONLINE_PATH: &str = "/users/online";

/// An answer: status, body and any extra header.
struct Reply {
    status: u16,
    body: Value,
    header: Option<(&'static str, &'static str)>,
}

fn error(status: u16, code: &str, message: impl Into<String>) -> Reply {
    Reply {
        status,
        body: json!({"code": code, "message": message.into()}),
        header: None,
    }
}

pub async fn handle(
    hub: &Hub,
    request: &ApiGatewayV2httpRequest,
    deadline: Option<Instant>,
) -> ApiGatewayV2httpResponse {
    let method = request.request_context.http.method.as_str();
    let path = route_path(request);
    let reply = if path == PUBLISH_PATH {
        if method == "POST" {
            publish::handle(hub, request, deadline).await
        } else {
            let mut reply = error(405, "method_not_allowed", format!("{PUBLISH_PATH} answers POST only"));
            reply.header = Some(("allow", "POST"));
            reply
        }
    } else {
        route(hub, request, method, &path).await
    };
    tracing::info!(method, path = %shown(&path), status = reply.status, "http request");
    respond(reply)
}

async fn route(hub: &Hub, request: &ApiGatewayV2httpRequest, method: &str, path: &str) -> Reply {
    // `GET /topics/{topic+}` in the template: the topic is read off the raw path.
    let topic = if path.starts_with(presence::TOPICS_PREFIX) {
        presence::topic_of_path(&raw_path(request))
    } else {
        None
    };
    if path != ONLINE_PATH && topic.is_none() {
        return error(
            404,
            "not_found",
            format!(
                "no route for {}; try GET {ONLINE_PATH} or GET /topics/{{topic}}/presence",
                shown(path)
            ),
        );
    }
    if method != "GET" {
        let mut reply = error(405, "method_not_allowed", format!("{} answers GET only", shown(path)));
        reply.header = Some(("allow", "GET"));
        return reply;
    }
    let identity = match authenticate(hub, &request.headers).await {
        Ok(identity) => identity,
        Err(reply) => return reply,
    };
    if let Some(topic) = topic {
        return match topic {
            Ok(topic) => presence::topic_presence(hub, &identity, &topic).await,
            Err(reply) => reply,
        };
    }
    let Some(raw_ids) = request.query_string_parameters.all("userIds") else {
        // No `userIds`: the list of who is online, page by page.
        return match presence::list_query(request) {
            Ok((limit, cursor)) => presence::online_list(hub, &identity, limit, &cursor).await,
            Err(reply) => reply,
        };
    };
    if presence::has_list_parameters(request) {
        return error(
            400,
            "invalid_query",
            "limit and cursor page the online list; leave them out with userIds",
        );
    }
    let users = match user_ids(raw_ids) {
        Ok(users) => users,
        Err(reply) => return reply,
    };
    match hub.store.presence(&users, now_secs()).await {
        Ok(presence) => {
            tracing::info!(caller = %identity.user_id, users = users.len(), "presence read");
            Reply {
                status: 200,
                body: json!({"users": presence.iter().map(presence_json).collect::<Vec<_>>()}),
                header: None,
            }
        }
        Err(e) => {
            tracing::error!(error = %e, "store failure");
            error(500, "internal", "temporary failure; retry")
        }
    }
}

/// A path as logged and echoed: at most 64 characters, so a huge one cannot flood either.
fn shown(path: &str) -> String {
    let mut shown: String = path.chars().take(64).collect();
    if shown.len() < path.len() {
        shown.push('…');
    }
    shown
}

/// The path the request is for: the route API Gateway matched, else the raw path without the
/// stage prefix (a `$default` route or a function URL).
fn route_path(request: &ApiGatewayV2httpRequest) -> String {
    let route_key = request
        .route_key
        .as_deref()
        .or(request.request_context.route_key.as_deref());
    if let Some((_, path)) = route_key.and_then(|k| k.split_once(' ')) {
        return path.to_owned();
    }
    raw_path(request)
}

/// The raw path without the stage prefix.
fn raw_path(request: &ApiGatewayV2httpRequest) -> String {
    let raw = request
        .raw_path
        .as_deref()
        .or(request.request_context.http.path.as_deref())
        .unwrap_or("/");
    let stage = request.request_context.stage.as_deref().filter(|s| *s != "$default");
    match stage.and_then(|s| raw.strip_prefix('/')?.strip_prefix(s)) {
        Some(rest) if rest.starts_with('/') => rest.to_owned(),
        _ => raw.to_owned(),
    }
}

async fn authenticate(hub: &Hub, headers: &HeaderMap) -> Result<Identity, Reply> {
    let header = |name: &str| headers.get(name).map(|v| v.to_str().unwrap_or(""));
    let bearer = header("authorization").and_then(|v| match v.split_once(' ') {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("bearer") => Some(rest.trim()),
        _ => None,
    });
    let Some(token) = header("token").or(bearer).filter(|t| !t.is_empty()) else {
        return Err(Reply {
            header: Some(("www-authenticate", "Bearer realm=\"wshub\"")),
            ..error(
                401,
                "missing_credentials",
                "send a token in the token header or Authorization: Bearer",
            )
        });
    };
    let credentials = hub.credentials().await.map_err(|e| {
        tracing::error!(reason = %e, "http request denied: the secrets are unavailable");
        error(403, "forbidden", "credentials refused")
    })?;
    credentials.auth().verify(token).await.map_err(|e| {
        if e == AuthError::NotConfigured {
            tracing::error!("{e}");
        } else {
            tracing::warn!(reason = %e, "http request denied");
        }
        error(403, "forbidden", "credentials refused")
    })
}

/// Distinct ids in the order given; empty entries (`a,,b`, a trailing comma) are skipped.
fn user_ids(raw: Vec<&str>) -> Result<Vec<String>, Reply> {
    let mut users: Vec<String> = Vec::new();
    for id in raw.into_iter().filter(|id| !id.is_empty()) {
        if !valid_user_id(id) {
            return Err(error(
                400,
                "invalid_user_id",
                "each user id must be 1-128 characters without control characters",
            ));
        }
        if !users.iter().any(|u| u == id) {
            users.push(id.to_owned());
        }
        if users.len() > MAX_PRESENCE_USERS {
            return Err(error(
                400,
                "too_many_user_ids",
                format!("at most {MAX_PRESENCE_USERS} user ids per request"),
            ));
        }
    }
    if users.is_empty() {
        return Err(error(
            400,
            "missing_user_ids",
            "give userIds, comma-separated: ?userIds=alice,bob (or none for the online list)",
        ));
    }
    Ok(users)
}

fn presence_json(p: &Presence) -> Value {
    json!({"userId": p.user_id, "online": p.online, "lastActiveAt": p.last_active_at})
}

fn respond(reply: Reply) -> ApiGatewayV2httpResponse {
    let mut response = ApiGatewayV2httpResponse::default();
    response.status_code = reply.status.into();
    response
        .headers
        .insert("content-type", HeaderValue::from_static("application/json"));
    // Presence changes by the second and answers are per caller: nobody should cache them.
    response
        .headers
        .insert("cache-control", HeaderValue::from_static("no-store"));
    if let Some((name, value)) = reply.header {
        response.headers.insert(name, HeaderValue::from_static(value));
    }
    response.body = Some(Body::Text(reply.body.to_string()));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(v: Value) -> ApiGatewayV2httpRequest {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn path_from_route_key_or_raw_path() {
        let r = request(
            json!({"version": "2.0", "routeKey": "GET /users/online", "rawPath": "/prod/users/online",
            "requestContext": {"stage": "prod", "http": {"method": "GET", "path": "/prod/users/online"}}}),
        );
        assert_eq!(route_path(&r), "/users/online");
        let r = request(
            json!({"version": "2.0", "routeKey": "$default", "rawPath": "/prod/users/online",
            "requestContext": {"stage": "prod", "http": {"method": "GET"}}}),
        );
        assert_eq!(route_path(&r), "/users/online");
        let r = request(
            json!({"version": "2.0", "routeKey": "$default", "rawPath": "/production/x",
            "requestContext": {"stage": "prod", "http": {"method": "GET"}}}),
        );
        assert_eq!(route_path(&r), "/production/x");
        let r = request(
            json!({"version": "2.0", "routeKey": "$default", "rawPath": "/users/online",
            "requestContext": {"stage": "$default", "http": {"method": "GET"}}}),
        );
        assert_eq!(route_path(&r), "/users/online");
    }

    #[test]
    fn user_ids_are_deduplicated_capped_and_checked() {
        assert_eq!(user_ids(vec!["b", "a", "b", ""]).ok().unwrap(), ["b", "a"]);
        assert_eq!(user_ids(vec![]).err().unwrap().body["code"], "missing_user_ids");
        assert_eq!(user_ids(vec!["", ""]).err().unwrap().body["code"], "missing_user_ids");
        assert_eq!(user_ids(vec!["a\u{7}"]).err().unwrap().body["code"], "invalid_user_id");
        let long = "x".repeat(129);
        assert_eq!(user_ids(vec![&long]).err().unwrap().body["code"], "invalid_user_id");
        let ids: Vec<String> = (0..=MAX_PRESENCE_USERS).map(|i| i.to_string()).collect();
        let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
        assert_eq!(user_ids(refs[..MAX_PRESENCE_USERS].to_vec()).ok().unwrap().len(), 100);
        assert_eq!(user_ids(refs).err().unwrap().body["code"], "too_many_user_ids");
        // Duplicates do not count towards the cap.
        let same = vec!["a"; 500];
        assert_eq!(user_ids(same).ok().unwrap(), ["a"]);
    }
}
