//! `asyncapi.yaml` as the oracle for every frame the tests see: [`assert_frame`] validates a
//! frame the hub sent against the schema of the document's message with that `action`, so the
//! document cannot drift from what the handlers emit. `tests/asyncapi.rs` checks the document
//! itself against the code.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::OnceLock;

use serde_json::{json, Value};

/// The channel every frame travels on.
pub const CHANNEL: &str = "hub";

/// A channel message: its key in `channels.hub.messages` and its payload's validator.
pub struct Message {
    pub key: String,
    pub schema_ref: String,
    /// The payload's `properties.action.const`, if it pins one.
    pub action: Option<String>,
    pub validator: jsonschema::Validator,
}

pub struct Document {
    pub doc: Value,
    /// Messages the hub receives (`receive` operations), by key.
    pub requests: BTreeMap<String, Message>,
    /// Messages the hub sends (`send` operations and every reply), by key.
    pub frames: BTreeMap<String, Message>,
    /// Per `receive` operation: its request message key and the keys its reply may be.
    pub operations: BTreeMap<String, (String, BTreeSet<String>)>,
}

/// The parsed document, loaded once per test process.
pub fn document() -> &'static Document {
    static DOCUMENT: OnceLock<Document> = OnceLock::new();
    DOCUMENT.get_or_init(load)
}

/// Validates a frame the hub sent (a reply or a push) and returns the message it is. Panics,
/// naming every violation, when no message of the document has its `action` or its schema
/// refuses it.
pub fn assert_frame(frame: &Value) -> &'static str {
    let doc = document();
    let action = frame["action"]
        .as_str()
        .unwrap_or_else(|| panic!("asyncapi.yaml: a frame without an action string: {frame}"));
    let message = doc
        .frames
        .values()
        .find(|m| m.action.as_deref() == Some(action))
        .unwrap_or_else(|| panic!("asyncapi.yaml has no message the hub sends with action {action:?}: {frame}"));
    check(message, frame);
    &message.key
}

/// Every frame of a list, as [`assert_frame`]; returns them unchanged for the caller's asserts.
pub fn assert_frames(frames: Vec<Value>) -> Vec<Value> {
    for frame in &frames {
        assert_frame(frame);
    }
    frames
}

/// Validates `value` against the message's payload schema, panicking with every violation.
pub fn check(message: &Message, value: &Value) {
    let errors: Vec<String> = message
        .validator
        .iter_errors(value)
        .map(|e| format!("  at {:?}: {e}", e.instance_path().as_str()))
        .collect();
    assert!(
        errors.is_empty(),
        "frame does not match asyncapi.yaml message {:?} ({}):\n{value}\n{}",
        message.key,
        message.schema_ref,
        errors.join("\n")
    );
}

/// The value a local reference (`#/a/b`) points to.
pub fn resolve<'a>(doc: &'a Value, reference: &str) -> &'a Value {
    let pointer = reference
        .strip_prefix('#')
        .unwrap_or_else(|| panic!("asyncapi.yaml: only local references are used, not {reference}"));
    doc.pointer(pointer)
        .unwrap_or_else(|| panic!("asyncapi.yaml: {reference} points nowhere"))
}

/// A validator for a schema under `components/schemas`, with its references resolved inside
/// the document. Draft 7: AsyncAPI's schema format is a superset of it.
pub fn validator(doc: &Value, schema_ref: &str) -> jsonschema::Validator {
    // `$ref`'s siblings are ignored by draft 7, but its pointers still resolve into them.
    let schema = json!({"$ref": schema_ref, "components": {"schemas": doc["components"]["schemas"]}});
    jsonschema::options()
        .with_draft(jsonschema::Draft::Draft7)
        .build(&schema)
        .unwrap_or_else(|e| panic!("asyncapi.yaml: {schema_ref} is not a valid schema: {e}"))
}

fn load() -> Document {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/asyncapi.yaml");
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let doc: Value = serde_norway::from_str(&text).unwrap_or_else(|e| panic!("{path} is not YAML: {e}"));
    let channel_ref = format!("#/channels/{CHANNEL}");
    let message_key = |reference: &Value| -> String {
        let reference = reference["$ref"].as_str().expect("messages are referenced");
        let key = reference
            .strip_prefix(&format!("{channel_ref}/messages/"))
            .unwrap_or_else(|| panic!("asyncapi.yaml: {reference} is not a message of {channel_ref}"));
        key.to_owned()
    };
    let message = |key: &str| -> Message {
        let object = &doc["channels"][CHANNEL]["messages"][key];
        let object = match object["$ref"].as_str() {
            Some(reference) => resolve(&doc, reference),
            None => object,
        };
        let schema_ref = object["payload"]["$ref"]
            .as_str()
            .unwrap_or_else(|| panic!("asyncapi.yaml: message {key}'s payload is not a $ref to a schema"))
            .to_owned();
        let action = resolve(&doc, &schema_ref)["properties"]["action"]["const"]
            .as_str()
            .map(str::to_owned);
        let validator = validator(&doc, &schema_ref);
        Message {
            key: key.to_owned(),
            schema_ref,
            action,
            validator,
        }
    };

    let mut requests = BTreeMap::new();
    let mut frames = BTreeMap::new();
    let mut operations = BTreeMap::new();
    let ops = doc["operations"].as_object().expect("asyncapi.yaml has operations");
    for (name, op) in ops {
        assert_eq!(
            op["channel"]["$ref"],
            channel_ref.as_str(),
            "operation {name}'s channel"
        );
        let keys: Vec<String> = op["messages"].as_array().unwrap().iter().map(message_key).collect();
        let replies: BTreeSet<String> = op["reply"]["messages"]
            .as_array()
            .map(|m| m.iter().map(message_key).collect())
            .unwrap_or_default();
        match op["action"].as_str() {
            Some("receive") => {
                assert_eq!(keys.len(), 1, "operation {name}: one request message");
                assert!(!replies.is_empty(), "operation {name}: every request gets a reply");
                operations.insert(name.clone(), (keys[0].clone(), replies.clone()));
                requests.insert(keys[0].clone(), message(&keys[0]));
            }
            Some("send") => {
                assert!(replies.is_empty(), "operation {name}: a push expects no reply");
                for key in &keys {
                    frames.insert(key.clone(), message(key));
                }
            }
            other => panic!("operation {name}: action {other:?}"),
        }
        for key in replies {
            frames.entry(key.clone()).or_insert_with(|| message(&key));
        }
    }
    // One frame action, one message: `assert_frame` picks the schema by it.
    let mut seen = BTreeSet::new();
    for m in frames.values() {
        let action = m
            .action
            .as_deref()
            .unwrap_or_else(|| panic!("asyncapi.yaml: sent message {} pins no action", m.key));
        assert!(
            seen.insert(action),
            "asyncapi.yaml: two sent messages with action {action:?}"
        );
    }
    Document {
        doc,
        requests,
        frames,
        operations,
    }
}

/// Pushes the in-memory notifier delivered to one connection, parsed (every one must be JSON)
/// and checked as [`assert_frame`].
pub fn memory_pushes(notifier: &wshub::notify::memory::MemoryNotifier, connection_id: &str) -> Vec<Value> {
    assert_frames(
        notifier
            .sent()
            .into_iter()
            .filter(|(id, _)| id == connection_id)
            .map(|(_, text)| serde_json::from_str(&text).unwrap_or_else(|e| panic!("push is not JSON ({e}): {text}")))
            .collect(),
    )
}

/// A route response's reply frame (status 200, a JSON body), checked as [`assert_frame`].
pub fn reply_frame(response: &Value) -> Value {
    assert_eq!(response["statusCode"], 200, "{response}");
    let body = response["body"]
        .as_str()
        .unwrap_or_else(|| panic!("no reply body in {response}"));
    let frame: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("reply is not JSON ({e}): {body}"));
    assert_frame(&frame);
    frame
}
