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
use serde_json::Value;
use tokio::time::Instant;
use tracing::Instrument;

use crate::eventbridge;
pub use crate::fanout::RecordError;
use crate::hub::Hub;
pub use crate::publish::PushRequest;
use crate::publish::{self, Published};
use crate::shard::{self, Job};

/// Records of one batch in flight at once; each fans out with `PUSH_CONCURRENCY` posts.
const RECORD_CONCURRENCY: usize = 10;

/// A failed record that cannot be named in `batchItemFailures` (no messageId): only failing
/// the whole invocation gets it redelivered.
#[derive(Debug, thiserror::Error)]
#[error("an SQS record without a messageId failed ({0}); failing the batch so it is redelivered")]
pub struct UnreportableFailure(pub String);

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
        let endpoint = hub
            .config
            .management_endpoint
            .as_deref()
            .ok_or(RecordError::NoEndpoint)?;
        // A job enqueued twice (a hand-off that failed part-way, then redelivered) runs once.
        if let Some(message_id) = record.message_id.as_deref().filter(|m| !m.is_empty()) {
            if !shard::claim(hub, &job, message_id).await? {
                return Ok(());
            }
        }
        return shard::deliver_job(hub, endpoint, job, deadline).await;
    }
    let (request, event_id) = parse_body(body).map_err(RecordError::Malformed)?;
    let _: Published = publish::publish(hub, request, event_id.or_else(|| record.message_id.clone()), deadline).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fanout::Audience;
    use crate::store::Group;
    use serde_json::json;

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
}
