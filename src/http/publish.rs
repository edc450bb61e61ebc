//! `POST /publish`: a backend publishes over HTTP, with the queue's push bodies.
//!
//! The body is one push body exactly as on the queue (target keys, `data`, `idempotencyKey`), or
//! `{"pushes":[…]}` with 1 to 10 of them. Every push is validated before any is delivered: one
//! bad push refuses the whole request with 400 and the queue's refusal message.
//!
//! Each push is a publication ([`crate::publish`]): topic and user pushes get their stream's
//! `seq` and `epoch`, and an `idempotencyKey` makes a retried request safe. A push whose
//! audience is larger than `SHARD_THRESHOLD`, with a push queue configured, is not delivered
//! within the request (API Gateway's HTTP API gives an integration 30 seconds): it goes to the
//! push queue as an SQS push would, through sharded fan-out, and its result is
//! `{"queued":true,"id":…}` with status 202.
//!
//! **Who may publish.** Client tokens never do. On AWS the route uses IAM authorization: API
//! Gateway verifies the caller's SigV4 signature before the function runs and puts the caller in
//! `requestContext.authorizer.iam` ("Controlling access to HTTP APIs with IAM authorization",
//! API Gateway Developer Guide), so that context is the proof. Otherwise (a route without IAM
//! authorization, the local hub) `Authorization: Bearer <key>` must be one of `PUBLISH_KEYS`,
//! compared in constant time. Neither: refused (401 without credentials, 403 with wrong ones or
//! when no publisher key is configured).

use aws_lambda_events::apigw::ApiGatewayV2httpRequest;
use serde_json::{json, Value};
use subtle::ConstantTimeEq;
use tokio::time::Instant;

use super::{error, Reply};
use crate::fanout::{Audience, RecordError};
use crate::hub::{now_secs, Hub};
use crate::publish::{self, Delivered, PushRequest};

pub const PUBLISH_PATH: &str = "/publish";
/// Pushes per request: as many as an SQS batch.
pub const MAX_PUSHES: usize = 10;

pub(super) async fn handle(hub: &Hub, request: &ApiGatewayV2httpRequest, deadline: Option<Instant>) -> Reply {
    if let Err(reply) = authorize(hub, request).await {
        return reply;
    }
    let pushes = match parse(request) {
        Ok(pushes) => pushes,
        Err(message) => return error(400, "bad_request", message),
    };
    let request_id = request
        .request_context
        .request_id
        .clone()
        .filter(|id| crate::shard::valid_connection_id(id) && id.len() <= 100)
        .unwrap_or_else(|| format!("{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..)));
    // Validated whole before anything is delivered: a frame too large for API Gateway is known now.
    let ids: Vec<String> = (0..pushes.len()).map(|i| format!("{request_id}-{i}")).collect();
    for (i, (push, id)) in pushes.iter().zip(&ids).enumerate() {
        if !publish::Publication::from_request(push.clone(), Some(id.clone())).fits() {
            return error(
                413,
                "payload_too_large",
                format!(
                    "pushes[{i}]: a message frame would exceed {} bytes",
                    crate::protocol::MAX_FRAME_BYTES
                ),
            );
        }
    }
    let mut results = Vec::with_capacity(pushes.len());
    let mut queued_any = false;
    // One id per push: the frame's `id`, and the idempotency key when the caller gave none.
    for (push, id) in pushes.into_iter().zip(ids) {
        let result = if should_queue(hub, &push).await {
            queued_any = true;
            enqueue(hub, push, &id).await
        } else {
            deliver(hub, push, id, deadline).await
        };
        match result {
            Ok(value) => results.push(value),
            Err(reply) => return reply,
        }
    }
    Reply {
        status: if queued_any { 202 } else { 200 },
        body: json!({ "results": results }),
        header: None,
    }
}

/// The IAM context API Gateway sets after verifying SigV4, or a publisher key.
async fn authorize(hub: &Hub, request: &ApiGatewayV2httpRequest) -> Result<(), Reply> {
    let iam = request.request_context.authorizer.as_ref().and_then(|a| a.iam.as_ref());
    if let Some(iam) = iam {
        tracing::info!(caller = iam.user_arn.as_deref().unwrap_or("-"), "publisher (IAM)");
        return Ok(());
    }
    let bearer = request
        .headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, key)| key.trim())
        .filter(|key| !key.is_empty());
    let Some(key) = bearer else {
        return Err(Reply {
            header: Some(("www-authenticate", "Bearer realm=\"wshub-publish\"")),
            ..error(
                401,
                "missing_credentials",
                "sign the request (IAM) or send a publisher key in Authorization: Bearer",
            )
        });
    };
    // The keys in force: the environment's, or those fetched from Parameter Store / Secrets
    // Manager; when those cannot be read, nobody publishes (fail closed).
    let credentials = hub.credentials().await.map_err(|e| {
        tracing::error!(reason = %e, "POST /publish refused: the secrets are unavailable");
        error(403, "forbidden", "credentials refused")
    })?;
    let keys = credentials.publish_keys();
    if keys.is_empty() {
        tracing::error!("POST /publish refused: no publisher key is configured (PUBLISH_KEYS) and the request is not IAM-authorized");
        return Err(error(403, "forbidden", "publishing is not configured"));
    }
    let digest = crate::auth::sha256(key.as_bytes());
    // Every key is compared, so timing does not tell which one came close.
    let matched = keys
        .iter()
        .fold(subtle::Choice::from(0), |found, k| found | k.ct_eq(&digest));
    if bool::from(matched) {
        Ok(())
    } else {
        tracing::warn!("POST /publish refused: unknown publisher key");
        Err(error(403, "forbidden", "credentials refused"))
    }
}

/// Every push of the request, or the first refusal (named by its index in a batch).
fn parse(request: &ApiGatewayV2httpRequest) -> Result<Vec<PushRequest>, String> {
    let body = request.body.as_deref().unwrap_or("");
    let body = if request.is_base64_encoded {
        use base64::Engine;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(body)
            .map_err(|_| "body is not valid base64".to_owned())?;
        String::from_utf8(bytes).map_err(|_| "body is not UTF-8".to_owned())?
    } else {
        body.to_owned()
    };
    let value: Value = serde_json::from_str(&body).map_err(|e| format!("not JSON: {e}"))?;
    let is_batch = value.as_object().is_some_and(|o| o.contains_key("pushes"));
    if !is_batch {
        return PushRequest::from_value(value).map(|push| vec![push]);
    }
    let Value::Object(mut obj) = value else {
        unreachable!("checked above")
    };
    if obj.len() != 1 {
        return Err("a batch has only the key pushes".into());
    }
    let Some(Value::Array(pushes)) = obj.remove("pushes") else {
        return Err("pushes must be an array".into());
    };
    if pushes.is_empty() || pushes.len() > MAX_PUSHES {
        return Err(format!("pushes must hold 1-{MAX_PUSHES} push bodies"));
    }
    pushes
        .into_iter()
        .enumerate()
        .map(|(i, push)| PushRequest::from_value(push).map_err(|e| format!("pushes[{i}]: {e}")))
        .collect()
}

/// Whether a push is too large to finish within the request: a group whose first listing
/// reaches `SHARD_THRESHOLD` members, with a queue to hand it to.
async fn should_queue(hub: &Hub, push: &PushRequest) -> bool {
    let (Some(_), Audience::Group(group)) = (&hub.queue, &push.audience) else {
        return false;
    };
    let threshold = hub.config.shard_threshold.max(1);
    let now = now_secs();
    let mut counted = 0;
    for cursor in hub.store.start(group) {
        match hub.store.page(group, &cursor, threshold, now).await {
            Ok(page) => {
                counted += page.ids.len();
                if page.next.is_some() || counted >= threshold {
                    return true;
                }
            }
            // Unknown size: the queue's retries and DLQ are the safer path.
            Err(e) => {
                tracing::warn!(error = %e, "could not size the audience; queueing the push");
                return true;
            }
        }
    }
    false
}

async fn enqueue(hub: &Hub, push: PushRequest, id: &str) -> Result<Value, Reply> {
    let Some(queue) = &hub.queue else {
        return Err(error(500, "internal", "no push queue"));
    };
    let mut body = push.to_value();
    // The queue's redeliveries then keep one seq, and a retried request is not published twice.
    if body.get("idempotencyKey").is_none() && push.topic.is_some() {
        body["idempotencyKey"] = json!(id);
    }
    match queue.send(vec![body.to_string()]).await {
        Ok(()) => Ok(json!({"queued": true, "id": id})),
        Err(e) => {
            tracing::error!(error = %e, "could not queue a push");
            Err(error(503, "unavailable", "could not queue the push; retry"))
        }
    }
}

async fn deliver(hub: &Hub, push: PushRequest, id: String, deadline: Option<Instant>) -> Result<Value, Reply> {
    let topic = push.topic.clone();
    match publish::publish_here(hub, push, Some(id), deadline).await {
        Ok(published) => {
            let mut result = match published.delivered {
                Delivered::Here(report) => json!({"delivered": report.delivered, "failed": report.failed}),
                Delivered::Sharded => json!({"delivered": 0, "failed": 0, "sharded": true}),
                Delivered::Duplicate => json!({"delivered": 0, "failed": 0, "duplicate": true}),
            };
            if let Some(topic) = topic {
                result["topic"] = json!(topic);
            }
            if let Some(pos) = published.stamp.pos() {
                result["seq"] = json!(pos.seq);
                result["epoch"] = json!(pos.epoch);
            }
            Ok(result)
        }
        // Delivered to some, not all: the caller learns how many; recipients who missed it
        // recover it from history (topic and user pushes).
        Err(RecordError::Incomplete { delivered, failed, .. }) => {
            let mut result = json!({"delivered": delivered, "failed": failed});
            if let Some(topic) = topic {
                result["topic"] = json!(topic);
            }
            Ok(result)
        }
        Err(RecordError::TooLarge) => Err(error(
            413,
            "payload_too_large",
            format!(
                "a message frame would exceed {} bytes",
                crate::protocol::MAX_FRAME_BYTES
            ),
        )),
        Err(e) => {
            tracing::error!(error = %e, "publish failed");
            Err(error(
                500,
                "internal",
                "temporary failure; retry with the same idempotencyKey",
            ))
        }
    }
}
