//! SQS push: each record names an audience and data; every member gets a `message` frame.
//!
//! Bodies (exactly one target key, or none for everyone):
//! `{"data":X}` · `{"userId":U,"data":X}` · `{"topic":T,"data":X}` · `{"connectionId":C,"data":X}`,
//! and `{"UserId":U,"Body":X}`. Unknown keys are refused: a misspelt target must not turn
//! into a broadcast. A record that cannot be fully delivered is reported in
//! `batchItemFailures`, so SQS redelivers it (and finally moves it to the DLQ); the frame's `id`
//! is the SQS messageId, so clients can drop the duplicates a redelivery causes.
//!
//! A body may also be a whole EventBridge event (what a rule with this queue as its target
//! sends): its `detail` is then read as above, and the frame's `id` is the event's id
//! ([`crate::eventbridge`]).

use aws_lambda_events::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};
use futures::stream::{self, StreamExt};
use serde_json::{Map, Value};
use tokio::time::Instant;
use tracing::Instrument;

use crate::auth::valid_user_id;
use crate::eventbridge;
use crate::fanout::{Audience, Report};
use crate::hub::{now_secs, Hub};
use crate::protocol::{validate_topic, Frame, MAX_FRAME_BYTES};
use crate::shard::{self, Job};
use crate::store::Group;

/// Records of one batch in flight at once; each fans out with `PUSH_CONCURRENCY` posts.
const RECORD_CONCURRENCY: usize = 10;

#[derive(Debug, Clone, PartialEq)]
pub struct PushRequest {
    pub audience: Audience,
    pub topic: Option<String>,
    pub data: Value,
}

/// Why a record was not (fully) delivered.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("malformed body: {0}")]
    Malformed(String),
    #[error("APIGW_MANAGEMENT_ENDPOINT is not set; SQS pushes have no request context to derive it from")]
    NoEndpoint,
    #[error("frame would exceed {MAX_FRAME_BYTES} bytes")]
    TooLarge,
    #[error("could not hand work on to the queue: {0}")]
    Enqueue(String),
    #[error("delivery incomplete: {delivered} delivered, {failed} failed{}", store.as_ref().map(|e| format!(", audience read failed: {e}")).unwrap_or_default())]
    Incomplete {
        delivered: usize,
        failed: usize,
        store: Option<crate::store::StoreError>,
    },
}

/// A failed record that cannot be named in `batchItemFailures` (no messageId): only failing
/// the whole invocation gets it redelivered.
#[derive(Debug, thiserror::Error)]
#[error("an SQS record without a messageId failed ({0}); failing the batch so it is redelivered")]
pub struct UnreportableFailure(pub String);

impl PushRequest {
    pub fn parse(body: &str) -> Result<PushRequest, String> {
        let value: Value = serde_json::from_str(body).map_err(|e| format!("not JSON: {e}"))?;
        Self::from_value(value)
    }

    /// As [`Self::parse`], from JSON already parsed (an EventBridge event's `detail`).
    pub fn from_value(value: Value) -> Result<PushRequest, String> {
        let Value::Object(mut obj) = value else {
            return Err("body must be a JSON object".into());
        };
        const KNOWN: [&str; 6] = ["data", "topic", "userId", "connectionId", "UserId", "Body"];
        if let Some(unknown) = obj.keys().find(|k| !KNOWN.contains(&k.as_str())) {
            let shown: String = unknown.chars().take(64).collect();
            return Err(format!(
                "unknown key {shown:?}; expected data with at most one of connectionId, userId, topic"
            ));
        }
        let data = match (obj.remove("data"), obj.remove("Body")) {
            (Some(_), Some(_)) => return Err("give data or Body, not both".into()),
            (Some(d), None) | (None, Some(d)) => d,
            (None, None) => return Err("data is required".into()),
        };
        let user = match (string_field(&mut obj, "userId")?, string_field(&mut obj, "UserId")?) {
            (Some(_), Some(_)) => return Err("give userId or UserId, not both".into()),
            (u, v) => u.or(v),
        };
        let topic = string_field(&mut obj, "topic")?;
        let connection = string_field(&mut obj, "connectionId")?;
        let audience = match (connection, user, topic.clone()) {
            (None, None, None) => Audience::Group(Group::Everyone),
            (Some(c), None, None) => {
                if c.is_empty() || c.len() > 128 || c.chars().any(|ch| ch.is_whitespace() || ch.is_control()) {
                    return Err("connectionId must be 1-128 characters without spaces".into());
                }
                Audience::Connection(c)
            }
            (None, Some(u), None) => {
                if !valid_user_id(&u) {
                    return Err("userId must be 1-128 printable characters".into());
                }
                Audience::Group(Group::User(u))
            }
            (None, None, Some(t)) => {
                validate_topic(&t)?;
                Audience::Group(Group::Topic(t))
            }
            _ => return Err("give at most one of connectionId, userId, topic".into()),
        };
        Ok(PushRequest { audience, topic, data })
    }
}

fn string_field(obj: &mut Map<String, Value>, key: &str) -> Result<Option<String>, String> {
    match obj.remove(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(format!("{key} must be a string")),
    }
}

pub async fn handle(
    hub: &Hub,
    event: &SqsEvent,
    deadline: Option<Instant>,
) -> Result<SqsBatchResponse, UnreportableFailure> {
    // The futures are built before the stream rather than by a closure inside it: a closure
    // returning an async block makes this future's `Send` unprovable in generic contexts
    // (rust-lang/rust#102211), and the local hub runs it in spawned tasks.
    let deliveries: Vec<_> = event
        .records
        .iter()
        .map(|record| identified_delivery(hub, record, deadline))
        .collect();
    let results: Vec<(Option<String>, Result<(), RecordError>)> = stream::iter(deliveries)
        .buffer_unordered(RECORD_CONCURRENCY)
        .collect()
        .await;
    let mut response = SqsBatchResponse::default();
    for (message_id, result) in results {
        let Err(error) = result else { continue };
        match message_id.filter(|id| !id.is_empty()) {
            Some(id) => {
                let mut failure = BatchItemFailure::default();
                failure.item_identifier = id;
                response.batch_item_failures.push(failure);
            }
            // An empty itemIdentifier would fail the whole batch anyway; say so plainly instead.
            None => return Err(UnreportableFailure(error.to_string())),
        }
    }
    Ok(response)
}

async fn identified_delivery(
    hub: &Hub,
    record: &SqsMessage,
    deadline: Option<Instant>,
) -> (Option<String>, Result<(), RecordError>) {
    (record.message_id.clone(), deliver_record(hub, record, deadline).await)
}

async fn deliver_record(hub: &Hub, record: &SqsMessage, deadline: Option<Instant>) -> Result<(), RecordError> {
    let message_id = record.message_id.as_deref().unwrap_or("-");
    let work = async {
        let result = try_deliver(hub, record, deadline).await;
        match &result {
            Ok(()) => {}
            Err(e @ RecordError::Malformed(_)) => tracing::warn!(error = %e, "record refused; it will reach the DLQ"),
            Err(e) => tracing::error!(error = %e, "record failed; SQS will redeliver it"),
        }
        result
    };
    // Every log line of the record, fan-out included, carries its messageId.
    work.instrument(tracing::info_span!("push", message_id)).await
}

/// An SQS body: a push request, or an EventBridge event carrying one in `detail`, whose id
/// then becomes the frame's.
fn parse_body(body: &str) -> Result<(PushRequest, Option<String>), String> {
    let value: Value = serde_json::from_str(body).map_err(|e| format!("not JSON: {e}"))?;
    if eventbridge::is_event(&value) {
        let event = eventbridge::Envelope::from_value(value)?;
        event.log();
        return Ok((event.request, event.id));
    }
    PushRequest::from_value(value).map(|request| (request, None))
}

async fn try_deliver(hub: &Hub, record: &SqsMessage, deadline: Option<Instant>) -> Result<(), RecordError> {
    let body = record.body.as_deref().unwrap_or("");
    // Shard jobs: a part of a large push that another invocation handed on.
    if let Some(job) = Job::from_body(body).map_err(RecordError::Malformed)? {
        let endpoint = endpoint(hub)?;
        // A job enqueued twice (a hand-off that failed part-way, then redelivered) runs once.
        if let Some(message_id) = record.message_id.as_deref().filter(|m| !m.is_empty()) {
            if !shard::claim(hub, &job, message_id).await? {
                return Ok(());
            }
        }
        return shard::deliver_job(hub, endpoint, job, deadline).await;
    }
    let (request, event_id) = parse_body(body).map_err(RecordError::Malformed)?;
    deliver(hub, request, event_id.or_else(|| record.message_id.clone()), deadline)
        .await
        .map(|_| ())
}

fn endpoint(hub: &Hub) -> Result<&str, RecordError> {
    hub.config.management_endpoint.as_deref().ok_or(RecordError::NoEndpoint)
}

/// How a push was delivered.
#[derive(Debug)]
pub(crate) enum Delivered {
    /// By this invocation, completely.
    Here(Report),
    /// Through the queue as shard jobs (its listing and hand-offs succeeded; see [`shard`]).
    Sharded,
}

/// Delivers one push request as a `message` frame with this `id`; `Ok` only when complete
/// (or, for a sharded push, when every part not delivered here was handed on).
pub(crate) async fn deliver(
    hub: &Hub,
    request: PushRequest,
    id: Option<String>,
    deadline: Option<Instant>,
) -> Result<Delivered, RecordError> {
    let endpoint = endpoint(hub)?;
    // With a queue, a group push may be split into shard jobs.
    let shard_id = id.as_deref().filter(|id| shard::valid_connection_id(id));
    if let (Some(_), Audience::Group(group), Some(shard_id)) = (&hub.queue, &request.audience, shard_id) {
        shard::deliver_push(hub, endpoint, shard_id, group.clone(), request.data, deadline).await?;
        return Ok(Delivered::Sharded);
    }
    let frame = Frame::Message {
        topic: request.topic,
        data: request.data,
        from: None,
        id,
    }
    .to_json();
    if frame.len() > MAX_FRAME_BYTES {
        return Err(RecordError::TooLarge);
    }
    let report = hub
        .fanout(deadline)
        .deliver(endpoint, request.audience, frame.as_bytes(), None, now_secs())
        .await;
    tracing::info!(
        delivered = report.delivered,
        gone = report.gone,
        failed = report.failed,
        "pushed"
    );
    if report.is_complete() {
        Ok(Delivered::Here(report))
    } else {
        Err(RecordError::Incomplete {
            delivered: report.delivered,
            failed: report.failed,
            store: report.store_error,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn audience(body: &str) -> Audience {
        PushRequest::parse(body).unwrap().audience
    }

    #[test]
    fn every_body_shape() {
        assert_eq!(audience(r#"{"data":1}"#), Audience::Group(Group::Everyone));
        assert_eq!(
            audience(r#"{"userId":"u","data":1}"#),
            Audience::Group(Group::User("u".into()))
        );
        assert_eq!(
            audience(r#"{"UserId":"u","Body":"hi"}"#),
            Audience::Group(Group::User("u".into()))
        );
        assert_eq!(
            audience(r#"{"topic":"t","data":1}"#),
            Audience::Group(Group::Topic("t".into()))
        );
        assert_eq!(
            audience(r#"{"connectionId":"c=","data":null}"#),
            Audience::Connection("c=".into())
        );
        let p = PushRequest::parse(r#"{"topic":"t","data":{"a":[1]}}"#).unwrap();
        assert_eq!((p.topic.as_deref(), p.data), (Some("t"), json!({"a":[1]})));
    }

    #[test]
    fn an_eventbridge_event_is_read_by_its_detail_with_its_id() {
        let event = |detail: Value| {
            json!({"version": "0", "id": "ev-1", "detail-type": "Anything", "source": "billing",
                "detail": detail})
            .to_string()
        };
        let (request, id) = parse_body(&event(json!({"topic": "t", "data": 1}))).unwrap();
        assert_eq!(request.audience, Audience::Group(Group::Topic("t".into())));
        assert_eq!(id.as_deref(), Some("ev-1"));
        // The envelope's own keys are EventBridge's; the detail keeps the strict key rule.
        let err = parse_body(&event(json!({"topik": "t", "data": 1}))).unwrap_err();
        assert!(err.contains("unknown key"), "{err}");
        // A plain body has no id of its own: the messageId stays the frame id.
        assert_eq!(parse_body(r#"{"data":1}"#).unwrap().1, None);
    }

    #[test]
    fn malformed_bodies_are_named() {
        for (body, why) in [
            ("", "not JSON"),
            ("[1]", "JSON object"),
            (r#"{"topic":"t"}"#, "data is required"),
            (r#"{"topik":"t","data":1}"#, "unknown key"),
            (r#"{"topic":"t","userId":"u","data":1}"#, "at most one"),
            (r#"{"topic":"bad topic","data":1}"#, "topic"),
            (r#"{"userId":5,"data":1}"#, "userId must be a string"),
            (r#"{"connectionId":"","data":1}"#, "connectionId"),
            (r#"{"data":1,"Body":2}"#, "not both"),
        ] {
            let err = PushRequest::parse(body).unwrap_err();
            assert!(err.contains(why), "{body}: {err}");
        }
    }
}
