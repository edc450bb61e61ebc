//! The hub's open sockets, and the [`Notifier`] that posts to them in-process.
//!
//! The handlers' notifier and the external `/@connections` routes share one [`Registry`], so
//! a push from a route, from `/_local/sqs` or from an SDK reaches the same socket, and a
//! closed or unknown id is a 410 for all of them. No AWS credentials are involved.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use tokio::sync::{mpsc, watch};

use crate::notify::{Notifier, NotifyError};

/// A frame for a socket's client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outbound {
    Text(String),
    Binary(Vec<u8>),
}

/// Bytes a socket may hold queued for a client that is slow to read; see [`Socket::send`].
/// AWS documents no size for its buffer; 1 MiB is eight largest messages, room for a client
/// that is merely slow, while one that stopped reading is found out after a few.
pub const DEFAULT_OUTBOUND_QUEUE_BYTES: usize = 1024 * 1024;
/// What a queued frame costs beyond its bytes, so empty frames cannot queue without bound.
const FRAME_OVERHEAD: usize = 64;

impl Outbound {
    fn cost(&self) -> usize {
        FRAME_OVERHEAD
            + match self {
                Outbound::Text(text) => text.len(),
                Outbound::Binary(data) => data.len(),
            }
    }
}

/// One open socket as the Management API sees it.
#[derive(Debug)]
pub struct Socket {
    outbound: mpsc::UnboundedSender<Outbound>,
    /// Bytes (plus overhead) of frames queued and not yet taken by the socket's writer.
    queued: AtomicUsize,
    limit: usize,
    /// The close asked for (DELETE @connections, shutdown): apart from the frame queue, so the
    /// socket's loop sees it even while a frame is stuck on its way to a client that stopped
    /// reading.
    close: watch::Sender<Option<(u16, String)>>,
    /// Epoch milliseconds.
    pub connected_at: i64,
    last_active_at: AtomicI64,
    pub source_ip: String,
    pub user_agent: Option<String>,
}

/// The socket loop's side of a [`Socket`]: the frames to send, and the close to make.
pub struct Mailbox {
    pub frames: mpsc::UnboundedReceiver<Outbound>,
    pub close: watch::Receiver<Option<(u16, String)>>,
}

impl Mailbox {
    /// The next frame to send (close requests come through [`Mailbox::close`] instead).
    pub async fn recv(&mut self) -> Option<Outbound> {
        self.frames.recv().await
    }
}

impl Socket {
    /// A socket with the default outbound queue, and the receiving end its loop reads.
    pub fn new(connected_at: i64, source_ip: String, user_agent: Option<String>) -> (Arc<Socket>, Mailbox) {
        Self::bounded(DEFAULT_OUTBOUND_QUEUE_BYTES, connected_at, source_ip, user_agent)
    }

    /// A socket whose queue holds at most `limit` bytes (never less than one largest message,
    /// so any post the Management API accepts fits an empty queue).
    pub fn bounded(
        limit: usize,
        connected_at: i64,
        source_ip: String,
        user_agent: Option<String>,
    ) -> (Arc<Socket>, Mailbox) {
        // A post never waits for a slow client, and the handlers never wait on a socket loop
        // that may be waiting on them; the byte budget, not the channel, bounds the memory.
        let (outbound, frames) = mpsc::unbounded_channel();
        let (close, close_rx) = watch::channel(None);
        let socket = Socket {
            outbound,
            queued: AtomicUsize::new(0),
            limit: limit.max(super::MAX_MESSAGE_BYTES + FRAME_OVERHEAD),
            close,
            connected_at,
            last_active_at: AtomicI64::new(connected_at),
            source_ip,
            user_agent,
        };
        let mailbox = Mailbox {
            frames,
            close: close_rx,
        };
        (Arc::new(socket), mailbox)
    }

    pub fn last_active_at(&self) -> i64 {
        self.last_active_at.load(Ordering::Relaxed)
    }

    pub fn touch(&self, now_ms: i64) {
        self.last_active_at.store(now_ms, Ordering::Relaxed);
    }

    /// Bytes queued for the client and not yet handed to the connection.
    pub fn queued_bytes(&self) -> usize {
        self.queued.load(Ordering::Relaxed)
    }

    /// False once the socket is closing or its loop has ended: posts then answer 410.
    pub fn is_open(&self) -> bool {
        !self.outbound.is_closed() && self.close.borrow().is_none()
    }

    /// Queues a frame for the client.
    ///
    /// `Gone` once the socket is closing or closed. `Throttled` (429) when the frame does not
    /// fit the queue: the client is not reading what it is sent. That is the answer AWS
    /// documents for a post to a connection whose buffer is full: PostToConnection's
    /// `LimitExceededException` is "sending more than the allowed number of requests per unit
    /// of time or the WebSocket client side buffer is full" (AWS SDK reference pages
    /// "LimitExceededException" of ApiGatewayManagementApi). AWS documents neither the
    /// buffer's size nor any close of the connection, so this hub drops the frame, answers
    /// 429 and leaves the socket open: the idle and maximum-duration timers, DELETE and the
    /// client still end it, and a client that reads again gets what was queued and misses the
    /// refused frames, as it would behind API Gateway.
    pub fn send(&self, message: Outbound) -> Result<(), NotifyError> {
        if !self.is_open() {
            return Err(NotifyError::Gone);
        }
        let cost = message.cost();
        let fits = self
            .queued
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |queued| {
                (queued + cost <= self.limit).then_some(queued + cost)
            })
            .is_ok();
        if !fits {
            tracing::warn!(
                queued = self.queued_bytes(),
                limit = self.limit,
                frame = cost - FRAME_OVERHEAD,
                "client is not reading: outbound queue full, frame refused with 429"
            );
            return Err(NotifyError::Throttled);
        }
        if self.outbound.send(message).is_ok() {
            Ok(())
        } else {
            self.taken_bytes(cost);
            Err(NotifyError::Gone)
        }
    }

    /// The writer took `message` off the queue.
    pub fn taken(&self, message: &Outbound) {
        self.taken_bytes(message.cost());
    }

    fn taken_bytes(&self, cost: usize) {
        let _ = self
            .queued
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |q| Some(q.saturating_sub(cost)));
    }

    /// Asks the socket's loop to close with `code` (the first close asked for wins); false
    /// when it is not open.
    pub fn close(&self, code: u16, reason: &str) -> bool {
        if !self.is_open() {
            return false;
        }
        self.close.send_if_modified(|close| {
            if close.is_none() {
                *close = Some((code, reason.to_owned()));
                true
            } else {
                false
            }
        });
        true
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
        socket.send(message)
    }

    /// Asks one socket to close; false when it is not open.
    pub fn close(&self, connection_id: &str, code: u16, reason: &str) -> bool {
        self.get(connection_id).is_some_and(|s| s.close(code, reason))
    }

    pub fn close_all(&self, code: u16, reason: &str) {
        let sockets: Vec<Arc<Socket>> = self.lock().values().cloned().collect();
        for socket in sockets {
            socket.close(code, reason);
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
    async fn posts_reach_open_sockets_full_queues_answer_429_and_gone_ones_410() {
        let registry = Arc::new(Registry::default());
        let notifier = LocalNotifier::new(registry.clone());
        assert_eq!(notifier.send("e", "nobody", b"x").await, Err(NotifyError::Gone));
        let (socket, mut rx) = Socket::new(1, "127.0.0.1".into(), None);
        let overflow = socket.clone();
        registry.insert("c", socket);
        notifier.send("e", "c", b"{}").await.unwrap();
        registry.post("c", &[0xff]).unwrap();
        assert_eq!(rx.recv().await, Some(Outbound::Text("{}".into())));
        assert_eq!(rx.recv().await, Some(Outbound::Binary(vec![0xff])));
        // A client that does not read: the queue fills to its bound, then posts answer 429 (the
        // frame is dropped) and the socket stays open.
        let big = "x".repeat(100 * 1024);
        let mut accepted = 0;
        while overflow.send(Outbound::Text(big.clone())).is_ok() {
            accepted += 1;
            assert!(accepted < 100, "the queue is bounded");
        }
        assert!(overflow.queued_bytes() <= DEFAULT_OUTBOUND_QUEUE_BYTES);
        assert_eq!(accepted, DEFAULT_OUTBOUND_QUEUE_BYTES / (100 * 1024 + FRAME_OVERHEAD));
        assert_eq!(
            notifier.send("e", "c", big.as_bytes()).await,
            Err(NotifyError::Throttled)
        );
        assert!(overflow.is_open());
        assert_eq!(*rx.close.borrow(), None, "a full queue does not close the socket");
        // What the writer takes is no longer counted, and makes room again.
        let before = overflow.queued_bytes();
        let taken = rx.recv().await.unwrap();
        overflow.taken(&taken);
        assert_eq!(overflow.queued_bytes(), before - taken.cost());
        notifier.send("e", "c", big.as_bytes()).await.unwrap();
        // A close asked for: posts answer 410 from then on, before the loop has ended.
        assert!(registry.close("c", 1000, ""));
        assert_eq!(rx.close.borrow().as_ref().map(|c| c.0), Some(1000));
        assert_eq!(notifier.send("e", "c", b"x").await, Err(NotifyError::Gone));
        assert!(!registry.close("c", 1001, ""), "closing already");
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
