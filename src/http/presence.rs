//! `GET /topics/{topic}/presence` and the online list (`GET /users/online` without `userIds`).
//!
//! Both are authenticated like `GET /users/online` ([`super::authenticate`]).
//!
//! **Topic presence** answers what the `presence` action answers, as JSON:
//! `{"action":"presence","topic":T,"count":C,"members":[{"userId":U,"connections":K}],"more":M}`.
//! The topic is the rest of the path between `/topics/` and `/presence`, percent-decoded, so a
//! topic with `/` (`doc/1`) is `GET /topics/doc/1/presence`: the template's route is
//! `GET /topics/{topic+}`, a greedy path variable ("Working with routes for HTTP APIs", API
//! Gateway Developer Guide: a greedy variable must be the last segment, hence the function
//! reads `/presence` off the end itself). The caller's topic grants apply as to `subscribe`.
//!
//! **The online list**: `{"users":[{"userId":U,"online":true,"lastActiveAt":…,"connections":K}],
//! "next":CURSOR}`: users with at least one live connection, `limit` per page (default 100, at
//! most 1,000), the next page with `cursor=<next>`; `next` is `null` on the last page. The
//! cursor is opaque (base64url of the store's resume position), checked before it is used.

use std::collections::BTreeMap;

use aws_lambda_events::apigw::ApiGatewayV2httpRequest;
use base64::Engine;
use serde_json::{json, Value};

use super::{error, Reply};
use crate::auth::{valid_user_id, Identity};
use crate::hub::{now_secs, Hub};
use crate::presence;
use crate::protocol::validate_topic;
use crate::store::online::{DEFAULT_ONLINE_LIMIT, MAX_ONLINE_LIMIT};
use crate::store::{OnlineCursor, OnlineUser};

pub const TOPICS_PREFIX: &str = "/topics/";
pub const PRESENCE_SUFFIX: &str = "/presence";

/// The topic of a `/topics/<topic>/presence` path (raw, percent-encoded), or why not.
pub(super) fn topic_of_path(path: &str) -> Option<Result<String, Reply>> {
    let rest = path.strip_prefix(TOPICS_PREFIX)?;
    let encoded = rest.strip_suffix(PRESENCE_SUFFIX)?;
    let topic = percent_decode(encoded).filter(|t| validate_topic(t).is_ok());
    Some(topic.ok_or_else(|| {
        error(
            400,
            "invalid_topic",
            "the topic must be 1-128 characters of [A-Za-z0-9_.:@/-], percent-encoded or not",
        )
    }))
}

fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

pub(super) async fn topic_presence(hub: &Hub, identity: &Identity, topic: &str) -> Reply {
    if !hub
        .config
        .topic_access
        .allows(Some(&identity.user_id), &identity.topics, topic)
    {
        return error(403, "forbidden_topic", format!("you may not use topic {topic:?}"));
    }
    if !presence::tracks(&hub.config, topic) {
        return error(
            404,
            "not_presence_topic",
            format!("topic {topic:?} does not track presence (PRESENCE_TOPICS)"),
        );
    }
    match presence::snapshot(hub.store.as_ref(), topic, None, now_secs()).await {
        Ok(snapshot) => {
            tracing::info!(caller = %identity.user_id, topic, count = snapshot.count, "topic presence read");
            let frame = snapshot.frame(topic.to_owned(), None);
            Reply {
                status: 200,
                body: serde_json::to_value(&frame).unwrap_or(Value::Null),
                header: None,
            }
        }
        Err(e) => {
            tracing::error!(error = %e, "store failure");
            error(500, "internal", "temporary failure; retry")
        }
    }
}

/// The online list's query: `limit` and `cursor`.
pub(super) fn list_query(request: &ApiGatewayV2httpRequest) -> Result<(usize, OnlineCursor), Reply> {
    let query = &request.query_string_parameters;
    let limit = match query.first("limit") {
        None => DEFAULT_ONLINE_LIMIT,
        Some(text) => match text.parse::<usize>() {
            Ok(n) if (1..=MAX_ONLINE_LIMIT).contains(&n) => n,
            _ => {
                return Err(error(
                    400,
                    "invalid_limit",
                    format!("limit must be a whole number from 1 to {MAX_ONLINE_LIMIT}"),
                ))
            }
        },
    };
    let cursor = match query.first("cursor") {
        None => OnlineCursor::default(),
        Some(text) => decode_cursor(text).ok_or_else(|| {
            error(
                400,
                "invalid_cursor",
                "cursor must be the next value of a previous answer, unchanged",
            )
        })?,
    };
    Ok((limit, cursor))
}

/// Whether the query names `limit` or `cursor` (refused beside `userIds`).
pub(super) fn has_list_parameters(request: &ApiGatewayV2httpRequest) -> bool {
    let query = &request.query_string_parameters;
    query.first("limit").is_some() || query.first("cursor").is_some()
}

/// Most characters an encoded cursor may have: a resume key of four key attributes, each at
/// most 1,024 bytes (DynamoDB's limits on partition and sort key values, "Quotas in Amazon
/// DynamoDB"), plus the done user, in base64.
const MAX_CURSOR_CHARS: usize = 8 * 1024;
const MAX_KEY_VALUE_BYTES: usize = 1024;

pub fn encode_cursor(cursor: &OnlineCursor) -> String {
    let json = serde_json::to_vec(cursor).unwrap_or_default();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json)
}

/// The cursor, when it has the shape the store hands out: a resume key of the `byUser` index's
/// key attributes only, each a bounded string, and a valid user id.
pub fn decode_cursor(text: &str) -> Option<OnlineCursor> {
    if text.len() > MAX_CURSOR_CHARS {
        return None;
    }
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(text).ok()?;
    let cursor: OnlineCursor = serde_json::from_slice(&bytes).ok()?;
    let key_ok = |key: &BTreeMap<String, String>| {
        use crate::store::table::{CONNECTION_ID, PK, SK, USER_ID};
        // The table's key and the `byUser` index's key (userId, connectionId).
        !key.is_empty()
            && key.iter().all(|(k, v)| {
                [PK, SK, USER_ID, CONNECTION_ID].contains(&k.as_str())
                    && !v.is_empty()
                    && v.len() <= MAX_KEY_VALUE_BYTES
            })
    };
    let after_ok = cursor.after.as_ref().is_none_or(key_ok);
    let done_ok = cursor.done.as_deref().is_none_or(valid_user_id);
    (after_ok && done_ok && (cursor.after.is_some() || cursor.done.is_some())).then_some(cursor)
}

pub(super) async fn online_list(hub: &Hub, identity: &Identity, limit: usize, cursor: &OnlineCursor) -> Reply {
    match hub.store.online_users(cursor, limit, now_secs()).await {
        Ok(page) => {
            tracing::info!(caller = %identity.user_id, users = page.users.len(), more = page.next.is_some(), "online list read");
            Reply {
                status: 200,
                body: json!({
                    "users": page.users.iter().map(online_json).collect::<Vec<_>>(),
                    "next": page.next.as_ref().map(encode_cursor),
                }),
                header: None,
            }
        }
        Err(e) => {
            tracing::error!(error = %e, "store failure");
            error(500, "internal", "temporary failure; retry")
        }
    }
}

fn online_json(u: &OnlineUser) -> Value {
    json!({"userId": u.user_id, "online": true, "lastActiveAt": u.last_active_at, "connections": u.connections})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_come_from_the_path_percent_decoded() {
        let topic = |p: &str| topic_of_path(p).map(|r| r.map_err(|e| e.body["code"].clone()));
        assert_eq!(topic("/topics/room/presence"), Some(Ok("room".into())));
        assert_eq!(topic("/topics/doc/1/presence"), Some(Ok("doc/1".into())));
        assert_eq!(topic("/topics/room%3A1/presence"), Some(Ok("room:1".into())));
        assert_eq!(topic("/topics/doc%2F1/presence"), Some(Ok("doc/1".into())));
        assert_eq!(topic("/topics//presence"), Some(Err("invalid_topic".into())));
        assert_eq!(topic("/topics/a%2/presence"), Some(Err("invalid_topic".into())));
        assert_eq!(topic("/topics/a%20b/presence"), Some(Err("invalid_topic".into())));
        assert_eq!(topic("/topics/room"), None);
        assert_eq!(topic("/users/online"), None);
    }

    #[test]
    fn cursors_round_trip_and_forged_ones_are_refused() {
        let cursor = OnlineCursor {
            after: Some(BTreeMap::from([
                ("pk".to_owned(), "CONN#x".to_owned()),
                ("sk".to_owned(), "META".to_owned()),
                ("userId".to_owned(), "alice".to_owned()),
                ("connectionId".to_owned(), "x".to_owned()),
            ])),
            done: Some("alice".into()),
        };
        assert_eq!(decode_cursor(&encode_cursor(&cursor)), Some(cursor));
        let only_done = OnlineCursor {
            after: None,
            done: Some("bob".into()),
        };
        assert_eq!(decode_cursor(&encode_cursor(&only_done)), Some(only_done));
        let b64 = |v: Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
        assert_eq!(decode_cursor("not base64!"), None);
        assert_eq!(decode_cursor(&b64(json!({}))), None, "an empty cursor is no cursor");
        assert_eq!(
            decode_cursor(&b64(json!({"after": {"topic": "x"}}))),
            None,
            "other keys"
        );
        assert_eq!(decode_cursor(&b64(json!({"after": {"pk": ""}}))), None);
        assert_eq!(decode_cursor(&b64(json!({"done": "a\u{7}"}))), None);
        assert_eq!(decode_cursor(&b64(json!({"done": "a", "extra": 1}))), None);
        assert_eq!(decode_cursor(&"A".repeat(MAX_CURSOR_CHARS + 1)), None);
    }
}
