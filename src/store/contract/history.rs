//! Streams: seq, epoch, history and idempotency, as every store must keep them.

use std::collections::BTreeSet;

use crate::store::{ConnectionStore, NewPublication, Recorded, StreamPos};

fn publication<'a>(stream: &'a str, body: &'a str, ttl: i64) -> NewPublication<'a> {
    NewPublication {
        stream,
        key: None,
        owner: "owner",
        body,
        ttl,
    }
}

async fn record(store: &dyn ConnectionStore, p: NewPublication<'_>, now: i64) -> Recorded {
    store.record(&p, now).await.expect("record")
}

fn new_pos(r: Recorded) -> StreamPos {
    match r {
        Recorded::New(pos) => pos,
        other => panic!("expected a new publication, got {other:?}"),
    }
}

pub async fn run(store: &dyn ConnectionStore, p: &str) {
    let now = 1_800_000_000;
    let ttl = now + 900;

    // Concurrent publishers on one stream: seqs 1..=400, each once, one epoch.
    let stream = format!("{p}busy");
    let tasks = (0..8).map(|task| {
        let stream = stream.clone();
        async move {
            let mut got = Vec::new();
            for i in 0..50 {
                let body = format!("{{\"t\":{task},\"i\":{i}}}");
                got.push(new_pos(record(store, publication(&stream, &body, ttl), now).await));
            }
            got
        }
    });
    let all: Vec<StreamPos> = futures::future::join_all(tasks).await.into_iter().flatten().collect();
    let seqs: BTreeSet<u64> = all.iter().map(|pos| pos.seq).collect();
    assert_eq!(seqs, (1..=400).collect(), "seqs are gap-free and each given once");
    assert!(all.iter().all(|pos| pos.epoch == all[0].epoch), "one epoch");
    let history = store.history(&stream, 390, 100, 200, ttl, now).await.unwrap();
    assert_eq!(
        history.head,
        StreamPos {
            seq: 400,
            epoch: all[0].epoch.clone()
        }
    );
    let read: Vec<u64> = history.publications.iter().map(|p| p.seq).collect();
    assert_eq!(read, (391..=400).collect::<Vec<_>>());
    assert!(!history.more);

    // A stream nobody published to has a head at seq 0 once read, with an epoch that stays.
    let quiet = format!("{p}quiet");
    let first = store.history(&quiet, 0, 10, 200, ttl, now).await.unwrap();
    assert_eq!(first.head.seq, 0);
    assert!(first.publications.is_empty() && !first.more);
    let again = store.history(&quiet, 0, 10, 200, ttl, now).await.unwrap();
    assert_eq!(again.head, first.head, "reading does not change the epoch");
    let one = new_pos(record(store, publication(&quiet, "1", ttl), now).await);
    assert_eq!(
        one,
        StreamPos {
            seq: 1,
            epoch: first.head.epoch.clone()
        }
    );

    // History keeps the last `keep`, pages by `limit`, and skips expired publications.
    let kept = format!("{p}kept");
    for i in 1..=10 {
        // Publications 1-3 expire early; the rest, and the head, live on.
        let ttl = if i <= 3 { now + 5 } else { ttl };
        record(store, publication(&kept, &format!("{i}"), ttl), now).await;
    }
    let window = store.history(&kept, 0, 100, 5, ttl, now).await.unwrap();
    let bodies: Vec<&str> = window.publications.iter().map(|p| p.body.as_str()).collect();
    assert_eq!(bodies, ["6", "7", "8", "9", "10"], "only the last 5 are kept");
    let page = store.history(&kept, 0, 3, 200, ttl, now).await.unwrap();
    assert_eq!(page.publications.iter().map(|p| p.seq).collect::<Vec<_>>(), [1, 2, 3]);
    assert!(page.more);
    let later = store.history(&kept, 0, 100, 200, ttl, now + 6).await.unwrap();
    assert_eq!(later.publications.first().map(|p| p.seq), Some(4), "1-3 expired");
    let rest = store.history(&kept, 8, 100, 200, ttl, now).await.unwrap();
    assert_eq!(rest.publications.iter().map(|p| p.seq).collect::<Vec<_>>(), [9, 10]);
    assert!(!rest.more);

    // Once the head has expired the history is gone: a new epoch, from seq 1 again.
    let short = format!("{p}short");
    let old = new_pos(record(store, publication(&short, "old", now + 10), now).await);
    assert_eq!(old.seq, 1);
    let after = now + 11;
    let gone = store.history(&short, 0, 10, 200, after + 900, after).await.unwrap();
    assert_eq!(gone.head.seq, 0);
    assert_ne!(gone.head.epoch, old.epoch, "lost history means a new epoch");
    assert!(
        gone.publications.is_empty(),
        "the old epoch's publications are not served"
    );
    let fresh = new_pos(record(store, publication(&short, "new", after + 900), after).await);
    assert_eq!(
        fresh,
        StreamPos {
            seq: 1,
            epoch: gone.head.epoch.clone()
        }
    );
    // A publication of an expired head that nobody read starts a new epoch too.
    let unread = format!("{p}unread");
    let e1 = new_pos(record(store, publication(&unread, "a", now + 10), now).await);
    let e2 = new_pos(record(store, publication(&unread, "b", after + 900), after).await);
    assert_eq!(e2.seq, 1);
    assert_ne!(e2.epoch, e1.epoch);

    // Idempotency: the same owner again keeps its seq; another owner is a duplicate.
    let keyed = format!("{p}keyed");
    let with_key = |key, owner| NewPublication {
        stream: &keyed,
        key: Some(key),
        owner,
        body: "{}",
        ttl,
    };
    let first = new_pos(record(store, with_key("k1", "msg-1"), now).await);
    assert_eq!(first.seq, 1);
    assert_eq!(
        record(store, with_key("k1", "msg-1"), now).await,
        Recorded::Again(first.clone())
    );
    assert_eq!(
        record(store, with_key("k1", "msg-2"), now).await,
        Recorded::Duplicate(Some(first.clone()))
    );
    let second = new_pos(record(store, with_key("k2", "msg-2"), now).await);
    assert_eq!(second.seq, 2, "a duplicate consumes no seq");
    let page = store.history(&keyed, 0, 10, 200, ttl, now).await.unwrap();
    assert_eq!(page.publications.len(), 2, "a duplicate is not stored twice");
    // An expired key is free again.
    let reused = new_pos(
        record(
            store,
            NewPublication {
                ttl: ttl + 900,
                ..with_key("k1", "msg-3")
            },
            ttl + 1,
        )
        .await,
    );
    assert_eq!(reused.seq, 1, "the head expired with the key: a new epoch");
}
