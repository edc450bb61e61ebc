//! The hub's open sockets, and the [`Notifier`] that posts to them in-process.
//!
//! The handlers' notifier and the external `/@connections` routes share one [`Registry`], so
//! a push from a route, from `/_local/sqs` or from an SDK reaches the same socket, and a
//! closed or unknown id is a 410 for all of them. No AWS credentials are involved.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use tokio::sync::mpsc;

use crate::notify::{Notifier, NotifyError};

/// What a socket's loop is told to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outbound {
    Text(String),
    Binary(Vec<u8>),
    /// Close with this code and reason, then run `$disconnect`.
    Close(u16, String),
}

/// One open socket as the Management API sees it.
#[derive(Debug)]
pub struct Socket {
    outbound: mpsc::UnboundedSender<Outbound>,
    /// Epoch milliseconds.
    pub connected_at: i64,
    last_active_at: AtomicI64,
    pub source_ip: String,
    pub user_agent: Option<String>,
}

impl Socket {
    /// A socket and the receiving end its loop reads commands from.
    pub fn new(
        connected_at: i64,
        source_ip: String,
        user_agent: Option<String>,
    ) -> (Arc<Socket>, mpsc::UnboundedReceiver<Outbound>) {
        // Unbounded, like API Gateway's side: a post never waits for a slow client, and the
        // handlers never wait on a socket loop that may be waiting on them.
        let (outbound, receiver) = mpsc::unbounded_channel();
        let socket = Socket {
            outbound,
            connected_at,
            last_active_at: AtomicI64::new(connected_at),
            source_ip,
            user_agent,
        };
        (Arc::new(socket), receiver)
    }

    pub fn last_active_at(&self) -> i64 {
        self.last_active_at.load(Ordering::Relaxed)
    }

    pub fn touch(&self, now_ms: i64) {
        self.last_active_at.store(now_ms, Ordering::Relaxed);
    }

    /// False once the socket's loop has ended.
    pub fn send(&self, message: Outbound) -> bool {
        self.outbound.send(message).is_ok()
    }
}

#[derive(Default)]
pub struct Registry {
    sockets: Mutex<HashMap<String, Arc<Socket>>>,
}

impl Registry {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, Arc<Socket>>> {
        // A panic elsewhere must not make every later post fail.
        self.sockets.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn insert(&self, connection_id: &str, socket: Arc<Socket>) {
        self.lock().insert(connection_id.to_owned(), socket);
    }

    pub fn remove(&self, connection_id: &str) {
        self.lock().remove(connection_id);
    }

    pub fn get(&self, connection_id: &str) -> Option<Arc<Socket>> {
        self.lock().get(connection_id).cloned()
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Queues a frame: text when it is UTF-8 (every frame the handlers send), else binary.
    pub fn post(&self, connection_id: &str, data: &[u8]) -> Result<(), NotifyError> {
        let socket = self.get(connection_id).ok_or(NotifyError::Gone)?;
        let message = match std::str::from_utf8(data) {
            Ok(text) => Outbound::Text(text.to_owned()),
            Err(_) => Outbound::Binary(data.to_vec()),
        };
        if socket.send(message) {
            Ok(())
        } else {
            Err(NotifyError::Gone)
        }
    }

    /// Asks one socket to close; false when it is not open.
    pub fn close(&self, connection_id: &str, code: u16, reason: &str) -> bool {
        self.get(connection_id)
            .is_some_and(|s| s.send(Outbound::Close(code, reason.to_owned())))
    }

    pub fn close_all(&self, code: u16, reason: &str) {
        let sockets: Vec<Arc<Socket>> = self.lock().values().cloned().collect();
        for socket in sockets {
            socket.send(Outbound::Close(code, reason.to_owned()));
        }
    }
}

/// The handlers' notifier inside the local hub.
pub struct LocalNotifier {
    registry: Arc<Registry>,
}

impl LocalNotifier {
    pub fn new(registry: Arc<Registry>) -> Self {
        LocalNotifier { registry }
    }
}

#[async_trait]
impl Notifier for LocalNotifier {
    /// Every endpoint the handlers compute in this process is this hub's own, so the endpoint
    /// is not looked at.
    async fn send(&self, _endpoint: &str, connection_id: &str, frame: &[u8]) -> Result<(), NotifyError> {
        self.registry.post(connection_id, frame)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn posts_reach_open_sockets_and_gone_ones_answer_410() {
        let registry = Arc::new(Registry::default());
        let notifier = LocalNotifier::new(registry.clone());
        assert_eq!(notifier.send("e", "nobody", b"x").await, Err(NotifyError::Gone));
        let (socket, mut rx) = Socket::new(1, "127.0.0.1".into(), None);
        registry.insert("c", socket);
        notifier.send("e", "c", b"{}").await.unwrap();
        registry.post("c", &[0xff]).unwrap();
        assert_eq!(rx.recv().await, Some(Outbound::Text("{}".into())));
        assert_eq!(rx.recv().await, Some(Outbound::Binary(vec![0xff])));
        drop(rx);
        assert_eq!(
            notifier.send("e", "c", b"x").await,
            Err(NotifyError::Gone),
            "loop ended"
        );
        registry.remove("c");
        assert!(registry.is_empty());
        assert!(!registry.close("c", 1000, ""));
    }
}
