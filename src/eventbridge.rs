//! EventBridge push: an event whose `detail` is a push request, from a rule on the configured
//! bus and sources. Any `detail-type` is accepted; it is logged with the source and event id.
//!
//! The rule has two possible targets, and both read the event the same way:
//! - the push queue (the default): the whole event arrives as an SQS body and goes through
//!   [`crate::push`], with its batch item failures, redelivery and DLQ;
//! - this function, invoked asynchronously: [`handle`] delivers, and an incomplete delivery is
//!   an invocation error (`wshub.DeliveryFailed`), so Lambda's asynchronous retries and the
//!   on-failure destination apply. A bad `detail` is `wshub.MalformedEvent`.
//!
//! `detail` has exactly the SQS body's shape and its strict key rule (a misspelt target must
//! not become a broadcast). The frame's `id` is the EventBridge event id in both cases: the same
//! event then carries the same id whichever target delivered it, and EventBridge's own
//! at-least-once duplicates (which SQS would give fresh messageIds) can be dropped by clients.

use aws_lambda_events::eventbridge::EventBridgeEvent;
use serde_json::{json, Value};
use tokio::time::Instant;
use tracing::Instrument;

use crate::fanout::RecordError;
use crate::hub::Hub;
use crate::publish::{self, Delivered, PushRequest};

/// Whether `value` looks like an EventBridge event: `detail-type`, `source` and `detail`.
pub fn is_event(value: &Value) -> bool {
    value.as_object().is_some_and(|obj| {
        obj.get("detail-type").is_some_and(Value::is_string)
            && obj.get("source").is_some_and(Value::is_string)
            && obj.contains_key("detail")
    })
}

/// An EventBridge event read as a push.
#[derive(Debug, Clone, PartialEq)]
pub struct Envelope {
    pub id: Option<String>,
    pub detail_type: String,
    pub source: String,
    pub request: PushRequest,
}

impl Envelope {
    pub fn new(event: EventBridgeEvent) -> Result<Envelope, String> {
        let request = PushRequest::from_value(event.detail).map_err(|e| format!("detail: {e}"))?;
        Ok(Envelope {
            id: event.id.filter(|id| !id.is_empty()),
            detail_type: event.detail_type,
            source: event.source,
            request,
        })
    }

    /// From an SQS body already parsed as JSON.
    pub fn from_value(value: Value) -> Result<Envelope, String> {
        let event: EventBridgeEvent =
            serde_json::from_value(value).map_err(|e| format!("not an EventBridge event: {e}"))?;
        Self::new(event)
    }

    pub fn log(&self) {
        tracing::info!(
            event_id = self.id.as_deref().unwrap_or("-"),
            detail_type = %self.detail_type,
            source = %self.source,
            "EventBridge event"
        );
    }
}

/// Why an event invoking the function directly was not delivered; the invocation fails.
#[derive(Debug, thiserror::Error)]
#[error("EventBridge event {id} not delivered: {error}")]
pub struct Undelivered {
    pub id: String,
    pub error: RecordError,
}

impl Undelivered {
    /// Retrying cannot fix a bad detail or an oversized frame; it can fix the rest.
    pub fn is_malformed(&self) -> bool {
        matches!(self.error, RecordError::Malformed(_) | RecordError::TooLarge)
    }
}

/// The function as the rule's target: delivers, or fails the invocation.
pub async fn handle(hub: &Hub, event: EventBridgeEvent, deadline: Option<Instant>) -> Result<Value, Undelivered> {
    let event_id = event
        .id
        .clone()
        .filter(|id| !id.is_empty())
        .unwrap_or_else(|| "-".into());
    let work = async {
        let undelivered = |error| Undelivered {
            id: event_id.clone(),
            error,
        };
        let (detail_type, source) = (event.detail_type.clone(), event.source.clone());
        let envelope = Envelope::new(event).map_err(|e| {
            tracing::warn!(%detail_type, %source, error = %e, "EventBridge event refused");
            undelivered(RecordError::Malformed(e))
        })?;
        envelope.log();
        let id = envelope.id.clone();
        let published = publish::publish(hub, envelope.request, id.clone(), deadline)
            .await
            .map_err(undelivered)?;
        let mut answer = match published.delivered {
            Delivered::Here(report) => json!({"id": id, "delivered": report.delivered, "gone": report.gone}),
            Delivered::Sharded => json!({"id": id, "sharded": true}),
            Delivered::Duplicate => json!({"id": id, "duplicate": true}),
        };
        if let Some(pos) = published.stamp.pos() {
            answer["seq"] = json!(pos.seq);
            answer["epoch"] = json!(pos.epoch);
        }
        Ok(answer)
    };
    work.instrument(tracing::info_span!("eventbridge", event_id = %event_id))
        .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fanout::Audience;
    use crate::store::Group;

    fn event(detail: Value) -> Value {
        json!({
            "version": "0", "id": "6a7e8feb-b491-4cf7-a9f1-bf3703467718", "detail-type": "Order Shipped",
            "source": "wshub", "account": "123456789012", "time": "2026-11-21T07:00:00Z",
            "region": "us-east-1", "resources": [], "detail": detail
        })
    }

    #[test]
    fn detail_is_read_like_an_sqs_body() {
        let e = Envelope::from_value(event(json!({"userId": "alice", "data": {"n": 1}}))).unwrap();
        assert_eq!(e.request.audience, Audience::Group(Group::User("alice".into())));
        assert_eq!(e.request.data, json!({"n": 1}));
        assert_eq!(e.id.as_deref(), Some("6a7e8feb-b491-4cf7-a9f1-bf3703467718"));
        assert_eq!((e.detail_type.as_str(), e.source.as_str()), ("Order Shipped", "wshub"));
        let e = Envelope::from_value(event(json!({"data": 1}))).unwrap();
        assert_eq!(e.request.audience, Audience::Group(Group::Everyone));
    }

    #[test]
    fn bad_details_are_named() {
        for (detail, why) in [
            (json!({"topik": "t", "data": 1}), "unknown key"),
            (json!({"topic": "t"}), "data is required"),
            (json!("text"), "JSON object"),
            (json!({"userId": "u", "topic": "t", "data": 1}), "at most one"),
        ] {
            let err = Envelope::from_value(event(detail.clone())).unwrap_err();
            assert!(err.starts_with("detail: ") && err.contains(why), "{detail}: {err}");
        }
        let mut bad_time = event(json!({"data": 1}));
        bad_time["time"] = json!("yesterday");
        assert!(Envelope::from_value(bad_time)
            .unwrap_err()
            .contains("not an EventBridge event"));
    }

    #[test]
    fn recognises_events_only_with_all_three_keys() {
        assert!(is_event(&event(json!({}))));
        assert!(!is_event(&json!({"source": "wshub", "detail": {}})));
        assert!(!is_event(&json!({"detail-type": "x", "source": 1, "detail": {}})));
        assert!(!is_event(&json!({"topic": "t", "data": 1})));
    }
}
