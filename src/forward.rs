//! Client actions forwarded to the backend (`FORWARD_ACTIONS`).
//!
//! A frame whose `action` is not one of the hub's own but matches a configured name or prefix
//! becomes an EventBridge event on `FORWARD_EVENT_BUS`: `source` [`SOURCE`], `detail-type` the
//! action, `detail` [`Detail`] (who sent what; never a token or a header). The client gets
//! `{"action":"accepted","id":…}` once the event is put, or an error frame when it was not. The
//! backend answers later with any push to the connection or the user.
//!
//! The [`EventBus`] port has an EventBridge implementation ([`EventBridgeBus`]), an in-memory
//! one ([`MemoryBus`]) for tests, and the local hub's (`crate::local::forward`).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use async_trait::async_trait;
use aws_sdk_eventbridge::primitives::{DateTime, DateTimeFormat};
use aws_sdk_eventbridge::types::PutEventsRequestEntry;
use serde::Serialize;
use serde_json::{json, Value};

use crate::config::ConfigError;
use crate::protocol::{ErrorCode, Rejection, ACTIONS};

/// The `source` of every forwarded event.
pub const SOURCE: &str = "wshub.client";
/// EventBridge's limit for `DetailType` ("PutEventsRequestEntry", EventBridge API reference).
pub const MAX_ACTION_CHARS: usize = 128;
/// Entries of `FORWARD_ACTIONS`, at most.
pub const MAX_PATTERNS: usize = 100;

/// One entry of `FORWARD_ACTIONS`: an action name, or a prefix (written with a trailing `*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ActionPattern {
    Exact(String),
    Prefix(String),
}

impl ActionPattern {
    pub fn matches(&self, action: &str) -> bool {
        match self {
            ActionPattern::Exact(name) => name == action,
            ActionPattern::Prefix(prefix) => action.starts_with(prefix.as_str()),
        }
    }
}

/// Forwarded action names: the characters a `detail-type` needs and a rule can match simply.
fn valid_action_name(name: &str) -> bool {
    name.chars().count() <= MAX_ACTION_CHARS && name.chars().all(|c| c.is_ascii_alphanumeric() || "_.:/-".contains(c))
}

/// Parses `FORWARD_ACTIONS`. Refuses an entry that would capture one of the hub's own actions
/// (`ping`, or `p*`, or `*`): those must keep their meaning whatever the configuration says.
pub fn parse_actions(list: &str) -> Result<Vec<ActionPattern>, String> {
    let mut patterns = Vec::new();
    for entry in list.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let pattern = match entry.strip_suffix('*') {
            Some(prefix) => ActionPattern::Prefix(prefix.to_owned()),
            None => ActionPattern::Exact(entry.to_owned()),
        };
        let (ActionPattern::Exact(name) | ActionPattern::Prefix(name)) = &pattern;
        if !valid_action_name(name) || (name.is_empty() && matches!(pattern, ActionPattern::Exact(_))) {
            return Err(format!(
                "{entry:?} is not an action name or a prefix ending in *: up to {MAX_ACTION_CHARS} characters from [A-Za-z0-9_.:/-]"
            ));
        }
        if let Some(builtin) = ACTIONS.iter().find(|a| pattern.matches(a)) {
            return Err(format!(
                "{entry:?} would forward the built-in action {builtin:?}; built-in actions cannot be forwarded"
            ));
        }
        patterns.push(pattern);
    }
    if patterns.len() > MAX_PATTERNS {
        return Err(format!("at most {MAX_PATTERNS} entries"));
    }
    Ok(patterns)
}

/// `FORWARD_ACTIONS` and `FORWARD_EVENT_BUS`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForwardConfig {
    pub actions: Vec<ActionPattern>,
    /// The event bus's name or ARN, as PutEvents takes it.
    pub bus: String,
}

impl ForwardConfig {
    /// `None` when `FORWARD_ACTIONS` is unset or empty: every unknown action is refused.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Option<Self>, ConfigError> {
        let Some(list) = get("FORWARD_ACTIONS") else {
            return Ok(None);
        };
        let actions = parse_actions(&list).map_err(|reason| ConfigError::Invalid {
            name: "FORWARD_ACTIONS",
            reason,
        })?;
        if actions.is_empty() {
            return Ok(None);
        }
        let bus = get("FORWARD_EVENT_BUS").ok_or(ConfigError::Missing("FORWARD_EVENT_BUS"))?;
        Ok(Some(ForwardConfig { actions, bus }))
    }

    pub fn forwards(&self, action: &str) -> bool {
        self.actions.iter().any(|p| p.matches(action))
    }
}

/// What a forwarded event's `detail` says. No token and no header ever goes in.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Detail {
    pub connection_id: String,
    pub user_id: String,
    pub action: String,
    pub data: Value,
    /// The client's `id`, or API Gateway's message id when it gave none; the reply carries it.
    pub id: Value,
    /// When API Gateway received the frame, epoch milliseconds.
    pub request_time: i64,
}

/// A client frame to forward, as the action's handler read it.
#[derive(Debug, Clone, PartialEq)]
pub struct Forwarded {
    pub action: String,
    pub data: Value,
}

/// Reads a frame that [`crate::protocol::Request::parse`] refused as an unknown action: `None`
/// when the action is not forwarded either (the refusal stands), else the frame or why it is
/// refused. A forwarded frame carries `action`, `id` and `data` only: a key the backend would
/// never see is refused rather than dropped.
pub fn parse_frame(body: &str, config: &ForwardConfig, id: &Option<Value>) -> Option<Result<Forwarded, Rejection>> {
    let Ok(Value::Object(mut obj)) = serde_json::from_str::<Value>(body) else {
        return None;
    };
    let action = match obj.remove("action") {
        Some(Value::String(a)) if config.forwards(&a) && valid_action_name(&a) => a,
        _ => return None,
    };
    obj.remove("id");
    let data = obj.remove("data").unwrap_or(Value::Null);
    if let Some(extra) = obj.keys().next() {
        let shown: String = extra.chars().take(64).collect();
        return Some(Err(Rejection {
            id: id.clone(),
            code: ErrorCode::BadRequest,
            message: format!("a forwarded action carries action, id and data only; found {shown:?}"),
        }));
    }
    Some(Ok(Forwarded { action, data }))
}

impl Detail {
    /// The event as an EventBridge rule's target receives it (and as the local hub posts and
    /// lists it).
    pub fn envelope(&self, event_id: &str, account: &str, region: &str) -> Value {
        json!({
            "version": "0",
            "id": event_id,
            "detail-type": self.action,
            "source": SOURCE,
            "account": account,
            "time": rfc3339(self.request_time),
            "region": region,
            "resources": [],
            "detail": self,
        })
    }
}

/// EventBridge's `time` format, second precision (`2026-12-02T03:11:01Z`).
pub fn rfc3339(epoch_ms: i64) -> String {
    DateTime::from_secs(epoch_ms.div_euclid(1000))
        .fmt(DateTimeFormat::DateTime)
        .unwrap_or_default()
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("could not put the event: {0}")]
pub struct BusError(pub String);

/// The port: puts one event on a bus.
#[async_trait]
pub trait EventBus: Send + Sync {
    async fn put(&self, bus: &str, detail: &Detail) -> Result<(), BusError>;
}

/// EventBridge `PutEvents`, one entry per frame.
pub struct EventBridgeBus {
    client: aws_sdk_eventbridge::Client,
}

impl EventBridgeBus {
    pub fn new(sdk: &aws_config::SdkConfig) -> Self {
        EventBridgeBus {
            client: aws_sdk_eventbridge::Client::new(sdk),
        }
    }
}

#[async_trait]
impl EventBus for EventBridgeBus {
    async fn put(&self, bus: &str, detail: &Detail) -> Result<(), BusError> {
        let body = serde_json::to_string(detail).map_err(|e| BusError(e.to_string()))?;
        let entry = PutEventsRequestEntry::builder()
            .event_bus_name(bus)
            .source(SOURCE)
            .detail_type(&detail.action)
            .detail(body)
            .time(DateTime::from_millis(detail.request_time))
            .build();
        let output = self
            .client
            .put_events()
            .entries(entry)
            .send()
            .await
            .map_err(|e| BusError(aws_sdk_eventbridge::Error::from(e).to_string()))?;
        // PutEvents answers 200 with per-entry failures ("PutEvents", EventBridge API reference).
        if output.failed_entry_count() > 0 {
            let failure = output.entries().first();
            return Err(BusError(format!(
                "{}: {}",
                failure.and_then(|e| e.error_code()).unwrap_or("unknown"),
                failure.and_then(|e| e.error_message()).unwrap_or("entry refused")
            )));
        }
        Ok(())
    }
}

/// Keeps what was put, in order; can be told to fail.
#[derive(Default)]
pub struct MemoryBus {
    events: Mutex<Vec<(String, Detail)>>,
    failing: AtomicBool,
}

impl MemoryBus {
    pub fn new() -> Self {
        Self::default()
    }

    /// Every `(bus, detail)` put so far.
    pub fn events(&self) -> Vec<(String, Detail)> {
        self.events.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn set_failing(&self, failing: bool) {
        self.failing.store(failing, Ordering::SeqCst);
    }
}

#[async_trait]
impl EventBus for MemoryBus {
    async fn put(&self, bus: &str, detail: &Detail) -> Result<(), BusError> {
        if self.failing.load(Ordering::SeqCst) {
            return Err(BusError("the bus is failing (test)".into()));
        }
        self.events
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((bus.to_owned(), detail.clone()));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(list: &str) -> ForwardConfig {
        ForwardConfig {
            actions: parse_actions(list).unwrap(),
            bus: "b".into(),
        }
    }

    #[test]
    fn names_and_prefixes() {
        let c = config("order.*, job,chat/");
        assert!(c.forwards("order.create"));
        assert!(c.forwards("order."));
        assert!(c.forwards("job"));
        assert!(!c.forwards("jobs"));
        assert!(!c.forwards("orders"));
        assert!(c.forwards("chat/"));
        assert!(parse_actions(" , ").unwrap().is_empty());
    }

    #[test]
    fn built_in_actions_cannot_be_forwarded() {
        for list in ["ping", "job,whoami", "*", "s*", "sendmessage*", "sub*", "w*"] {
            let err = parse_actions(list).unwrap_err();
            assert!(err.contains("built-in"), "{list}: {err}");
        }
        assert!(parse_actions("pings").is_ok(), "pings is not ping");
        assert!(parse_actions("bad name").unwrap_err().contains("not an action name"));
        assert!(parse_actions(&"x".repeat(129)).is_err());
    }

    #[test]
    fn config_needs_a_bus() {
        let get = |vars: &'static [(&'static str, &'static str)]| {
            move |name: &str| vars.iter().find(|(k, _)| *k == name).map(|(_, v)| v.to_string())
        };
        assert_eq!(ForwardConfig::from_lookup(get(&[])).unwrap(), None);
        assert!(matches!(
            ForwardConfig::from_lookup(get(&[("FORWARD_ACTIONS", "job")])),
            Err(ConfigError::Missing("FORWARD_EVENT_BUS"))
        ));
        assert!(matches!(
            ForwardConfig::from_lookup(get(&[("FORWARD_ACTIONS", "ping"), ("FORWARD_EVENT_BUS", "b")])),
            Err(ConfigError::Invalid {
                name: "FORWARD_ACTIONS",
                ..
            })
        ));
        let c = ForwardConfig::from_lookup(get(&[("FORWARD_ACTIONS", "job"), ("FORWARD_EVENT_BUS", "b")]))
            .unwrap()
            .unwrap();
        assert_eq!(c.bus, "b");
    }

    #[test]
    fn frames_carry_action_id_and_data_only() {
        let c = config("job");
        let none = None;
        assert_eq!(parse_frame(r#"{"action":"other"}"#, &c, &none), None);
        assert_eq!(
            parse_frame(r#"{"action":"job","id":1,"data":{"n":1}}"#, &c, &none),
            Some(Ok(Forwarded {
                action: "job".into(),
                data: json!({"n": 1})
            }))
        );
        assert_eq!(
            parse_frame(r#"{"action":"job"}"#, &c, &none).unwrap().unwrap().data,
            Value::Null
        );
        let refused = parse_frame(r#"{"action":"job","token":"x"}"#, &c, &none)
            .unwrap()
            .unwrap_err();
        assert_eq!(refused.code, ErrorCode::BadRequest);
        assert!(refused.message.contains("\"token\""));
    }

    #[test]
    fn envelope_is_an_eventbridge_event() {
        let d = Detail {
            connection_id: "c1".into(),
            user_id: "alice".into(),
            action: "job".into(),
            data: json!({"n": 1}),
            id: json!("m1"),
            request_time: 1_795_000_000_123,
        };
        let e = d.envelope("e1", "000000000000", "local");
        assert_eq!(e["source"], SOURCE);
        assert_eq!(e["detail-type"], "job");
        assert_eq!(e["time"], "2026-11-18T11:06:40Z");
        assert_eq!(
            e["detail"],
            json!({"connectionId":"c1","userId":"alice","action":"job","data":{"n":1},"id":"m1","requestTime":1_795_000_000_123_i64})
        );
    }
}
