use serde_json::Value;

use crate::protocol::Frame;

/// `ping` → `pong`, echoing the client's `id`. Touches no backend: it is the cheap liveness probe.
pub fn handle(id: Option<Value>) -> Frame {
    Frame::Pong { id }
}
