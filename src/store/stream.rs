//! Streams: the recorded history of a topic or a user (see [`crate::publish`]).
//!
//! A stream has a head (its latest `seq` and its `epoch`) and its publications, each kept until
//! its `ttl`. The head lives as long as the latest publication; when it has expired the stream's
//! history is gone, and the next read or publication starts a new epoch at seq 0.

/// Where a stream stands: its latest seq (0 before the first publication of the epoch) and epoch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamPos {
    pub seq: u64,
    pub epoch: String,
}

/// A publication to record.
#[derive(Debug, Clone, Copy)]
pub struct NewPublication<'a> {
    /// The stream: a topic name, or `user:<userId>`.
    pub stream: &'a str,
    /// The publisher's idempotency key: while it is kept, a second publication with the same key
    /// gets the first one's seq instead of a new one.
    pub key: Option<&'a str>,
    /// Who publishes: an SQS messageId, an EventBridge event id, a request id. The same owner
    /// presenting the same key again is a redelivery of the same publication.
    pub owner: &'a str,
    /// The message as stored (JSON text; opaque to the store).
    pub body: &'a str,
    /// Epoch seconds until which the publication, its key and the stream head are kept.
    pub ttl: i64,
}

/// What recording a publication did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recorded {
    /// A new publication with its own seq.
    New(StreamPos),
    /// The same owner again (a redelivered SQS record, a repeated EventBridge event): the seq its
    /// first attempt got. Deliver it again; recipients drop the duplicate by seq.
    Again(StreamPos),
    /// Another publication already holds the key: nothing recorded, nothing to deliver. Its seq
    /// when known (it may still be being recorded).
    Duplicate(Option<StreamPos>),
}

/// One stored publication.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredPublication {
    pub seq: u64,
    pub body: String,
}

/// A read of a stream's history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct History {
    /// Where the stream stands now (created, at seq 0 with a new epoch, when it had no head).
    pub head: StreamPos,
    /// Live publications after the requested seq, ascending, within the kept window.
    pub publications: Vec<StoredPublication>,
    /// More publications follow the last one returned.
    pub more: bool,
}

/// A new epoch: 8 random base-62 characters. Only its inequality to earlier epochs matters.
pub fn new_epoch() -> String {
    const ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    (0..8)
        .map(|_| ALPHABET[fastrand::usize(..ALPHABET.len())] as char)
        .collect()
}

/// The lowest seq a read may return: after `after`, and within the last `keep` of `head`.
pub fn first_kept(head: u64, after: u64, keep: u64) -> u64 {
    after.max(head.saturating_sub(keep)).saturating_add(1)
}
