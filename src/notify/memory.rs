//! Records every frame instead of sending it; can play closed connections and failures.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use async_trait::async_trait;

use super::{Notifier, NotifyError};

#[derive(Default)]
struct State {
    sent: Vec<(String, String)>,
    gone: HashSet<String>,
    /// Scripted failures per connection, used up one per attempt.
    failures: HashMap<String, Vec<NotifyError>>,
}

#[derive(Default)]
pub struct MemoryNotifier {
    state: Mutex<State>,
}

impl MemoryNotifier {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// From now on, posts to `connection_id` answer 410.
    pub fn mark_gone(&self, connection_id: &str) {
        self.lock().gone.insert(connection_id.to_owned());
    }

    /// The next posts to `connection_id` fail with these errors, in order.
    pub fn fail_next(&self, connection_id: &str, errors: Vec<NotifyError>) {
        self.lock()
            .failures
            .insert(connection_id.to_owned(), errors.into_iter().rev().collect());
    }

    /// Every delivered frame as (connection id, frame text), in delivery order.
    pub fn sent(&self) -> Vec<(String, String)> {
        self.lock().sent.clone()
    }

    /// Frames delivered to one connection, parsed.
    pub fn frames_for(&self, connection_id: &str) -> Vec<serde_json::Value> {
        self.lock()
            .sent
            .iter()
            .filter(|(id, _)| id == connection_id)
            .filter_map(|(_, f)| serde_json::from_str(f).ok())
            .collect()
    }
}

#[async_trait]
impl Notifier for MemoryNotifier {
    async fn send(&self, _endpoint: &str, connection_id: &str, frame: &[u8]) -> Result<(), NotifyError> {
        let mut state = self.lock();
        if let Some(err) = state.failures.get_mut(connection_id).and_then(Vec::pop) {
            return Err(err);
        }
        if state.gone.contains(connection_id) {
            return Err(NotifyError::Gone);
        }
        state
            .sent
            .push((connection_id.to_owned(), String::from_utf8_lossy(frame).into_owned()));
        Ok(())
    }
}
