//! Behaviour every [`ConnectionStore`] must have. The in-memory store runs it in unit tests;
//! the DynamoDB store runs it against a real DynamoDB-compatible server in `tests/dynamodb.rs`.
//! Pass a store whose pages hold at most 10 ids, so pagination is exercised.

pub mod history;
pub mod members;

use std::collections::BTreeSet;

use futures::TryStreamExt;

use super::{Connection, ConnectionStore, Cursor, Group, Presence, StoreError};

fn connection(id: &str, user: &str, ttl: i64) -> Connection {
    Connection {
        connection_id: id.into(),
        user_id: user.into(),
        connected_at: 1_700_000_000_000,
        source_ip: Some("203.0.113.10".into()),
        path: Some("/ocpp/CP001".into()),
        ttl,
    }
}

/// All ids of a group, and how many pages they came in. Fails on a duplicate: each member
/// must be delivered to once (a Scan whose segments overlap would break that).
pub async fn collect(store: &dyn ConnectionStore, group: Group, now: i64) -> (BTreeSet<String>, usize) {
    let pages: Vec<Vec<String>> = store
        .members(group.clone(), now)
        .try_collect()
        .await
        .expect("members readable");
    let count = pages.len();
    let all: Vec<String> = pages.into_iter().flatten().collect();
    let unique: BTreeSet<String> = all.iter().cloned().collect();
    assert_eq!(unique.len(), all.len(), "{group:?} listed a member twice");
    (unique, count)
}

/// All ids of a group read through [`ConnectionStore::page`] from every start cursor, each
/// cursor passed through JSON as a shard job carries it; and how many pages that took.
/// Fails on a duplicate, like [`collect`].
pub async fn collect_by_cursor(
    store: &dyn ConnectionStore,
    group: Group,
    limit: usize,
    now: i64,
) -> (BTreeSet<String>, usize) {
    let mut all = Vec::new();
    let mut pages = 0;
    for start in store.start(&group) {
        let mut cursor = Some(start);
        while let Some(at) = cursor {
            let page = store.page(&group, &at, limit, now).await.expect("page readable");
            pages += 1;
            assert!(pages < 10_000, "{group:?}: cursor never ends");
            all.extend(page.ids);
            cursor = page.next.map(|c| {
                let json = serde_json::to_string(&c).unwrap();
                serde_json::from_str::<Cursor>(&json).unwrap()
            });
        }
    }
    let unique: BTreeSet<String> = all.iter().cloned().collect();
    assert_eq!(unique.len(), all.len(), "{group:?} paged a member twice");
    (unique, pages)
}

fn set(ids: &[&str]) -> BTreeSet<String> {
    ids.iter().map(|s| s.to_string()).collect()
}

/// `p` prefixes every id, user and topic so runs can share a table. Everyone-scans are only
/// checked for inclusion, for the same reason.
pub async fn run(store: &dyn ConnectionStore, p: &str) {
    let now = 1_800_000_000;
    let live = now + 3600;
    let (a, b, old) = (format!("{p}a"), format!("{p}b"), format!("{p}old"));
    let (user, topic, other_topic) = (format!("{p}user"), format!("{p}news"), format!("{p}sport"));

    // Register; a second registration of the same id is refused, not overwritten.
    store.put_connection(&connection(&a, &user, live)).await.unwrap();
    store.put_connection(&connection(&b, &user, live)).await.unwrap();
    let dup = store.put_connection(&connection(&a, "intruder", live)).await;
    assert_eq!(dup, Err(StoreError::AlreadyExists(a.clone())));
    let view = store.get_connection(&a, now).await.unwrap().expect("a is registered");
    assert_eq!(view.connection, connection(&a, &user, live));
    assert!(view.topics.is_empty());

    // Subscriptions.
    store.subscribe(&a, &topic, live, now, usize::MAX).await.unwrap();
    store.subscribe(&a, &topic, live, now, usize::MAX).await.unwrap(); // idempotent
    store.subscribe(&a, &other_topic, live, now, usize::MAX).await.unwrap();
    store.subscribe(&b, &topic, live, now, usize::MAX).await.unwrap();
    let mut topics = store.get_connection(&a, now).await.unwrap().unwrap().topics;
    topics.sort();
    assert_eq!(topics, vec![topic.clone(), other_topic.clone()]);
    assert_eq!(collect(store, Group::Topic(topic.clone()), now).await.0, set(&[&a, &b]));
    assert_eq!(collect(store, Group::User(user.clone()), now).await.0, set(&[&a, &b]));
    let everyone = collect(store, Group::Everyone, now).await.0;
    assert!(everyone.contains(&a) && everyone.contains(&b));
    let ghost = format!("{p}ghost");
    assert_eq!(
        store.subscribe(&ghost, &topic, live, now, usize::MAX).await,
        Err(StoreError::NotConnected(ghost.clone()))
    );

    // Expired rows are invisible even while still stored (DynamoDB deletes them lazily).
    store.put_connection(&connection(&old, &user, now - 1)).await.unwrap();
    assert_eq!(store.get_connection(&old, now).await.unwrap(), None);
    assert_eq!(
        store.subscribe(&old, &topic, live, now, usize::MAX).await,
        Err(StoreError::NotConnected(old.clone()))
    );
    assert!(!collect(store, Group::User(user.clone()), now).await.0.contains(&old));
    assert!(!collect(store, Group::Everyone, now).await.0.contains(&old));
    store
        .subscribe(&b, &other_topic, now - 1, now, usize::MAX)
        .await
        .unwrap(); // a subscription already expired
    assert_eq!(
        collect(store, Group::Topic(other_topic.clone()), now).await.0,
        set(&[&a])
    );
    assert_eq!(
        store.get_connection(&b, now).await.unwrap().unwrap().topics,
        vec![topic.clone()]
    );

    // Unsubscribe, then remove: the connection and all its subscriptions go.
    store.unsubscribe(&b, &topic).await.unwrap();
    store.unsubscribe(&b, &topic).await.unwrap(); // idempotent
    assert_eq!(collect(store, Group::Topic(topic.clone()), now).await.0, set(&[&a]));
    store.remove_connection(&a).await.unwrap();
    store.remove_connection(&a).await.unwrap(); // idempotent
    assert_eq!(store.get_connection(&a, now).await.unwrap(), None);
    assert!(collect(store, Group::Topic(topic.clone()), now).await.0.is_empty());
    assert!(collect(store, Group::Topic(other_topic.clone()), now)
        .await
        .0
        .is_empty());
    assert_eq!(collect(store, Group::User(user.clone()), now).await.0, set(&[&b]));

    // Pagination to the end: more members than fit in a page.
    let many_user = format!("{p}many");
    let many_topic = format!("{p}crowd");
    let ids: Vec<String> = (0..57).map(|i| format!("{p}m{i:02}")).collect();
    for id in &ids {
        store.put_connection(&connection(id, &many_user, live)).await.unwrap();
        store.subscribe(id, &many_topic, live, now, usize::MAX).await.unwrap();
    }
    let expected: BTreeSet<String> = ids.iter().cloned().collect();
    let (by_user, pages) = collect(store, Group::User(many_user.clone()), now).await;
    assert_eq!(by_user, expected);
    assert!(pages > 1, "57 members should take several pages, got {pages}");
    let (by_topic, pages) = collect(store, Group::Topic(many_topic.clone()), now).await;
    assert_eq!(by_topic, expected);
    assert!(pages > 1, "57 subscribers should take several pages, got {pages}");
    let everyone = collect(store, Group::Everyone, now).await.0;
    assert!(expected.is_subset(&everyone), "broadcast scan must reach every page");

    // Cursor reads (sharded fan-out): the same members, page by page, resumable anywhere.
    for group in [Group::User(many_user.clone()), Group::Topic(many_topic.clone())] {
        let (ids, pages) = collect_by_cursor(store, group.clone(), 7, now).await;
        assert_eq!(ids, expected, "{group:?}");
        assert!(
            pages >= 57 / 7,
            "{group:?}: a page holds at most about the limit, got {pages} pages"
        );
    }
    let starts = store.start(&Group::Everyone);
    assert!(starts.len() > 1, "a broadcast starts as parallel segments");
    let (everyone, _) = collect_by_cursor(store, Group::Everyone, 7, now).await;
    assert!(
        expected.is_subset(&everyone),
        "cursor reads reach every segment's every page"
    );
    assert!(!everyone.contains(&old), "expired rows stay invisible to cursor reads");
    assert!(collect_by_cursor(store, Group::Topic(format!("{p}nobody")), 7, now)
        .await
        .0
        .is_empty());
    presence(store, p, now).await;
    removal_races_and_claims(store, p, now).await;
    topic_cap(store, p, now).await;
}

/// Conditional removal on a 410, removal racing subscribes, shard job claims, the send bucket.
async fn removal_races_and_claims(store: &dyn ConnectionStore, p: &str, now: i64) {
    let live = now + 3600;
    let connected_at = connection("x", "u", 0).connected_at;
    let (young, old, topic) = (format!("{p}r-young"), format!("{p}r-old"), format!("{p}r-topic"));
    for id in [&young, &old] {
        store
            .put_connection(&connection(id, &format!("{p}r-user"), live))
            .await
            .unwrap();
        store.subscribe(id, &topic, live, now, usize::MAX).await.unwrap();
    }
    // A 410 racing `$connect`: a row connected at or after the cut-off stays, with its topics.
    assert!(!store.remove_connection_older_than(&young, connected_at).await.unwrap());
    assert!(store.get_connection(&young, now).await.unwrap().is_some());
    assert!(store
        .remove_connection_older_than(&old, connected_at + 1)
        .await
        .unwrap());
    assert_eq!(store.get_connection(&old, now).await.unwrap(), None);
    assert_eq!(collect(store, Group::Topic(topic.clone()), now).await.0, set(&[&young]));
    assert!(store
        .remove_connection_older_than(&old, connected_at + 1)
        .await
        .unwrap()); // idempotent

    // Subscriptions go with their connection, and none can be added after it. (Subscribes
    // racing the removal are tested where the interleaving is real: concurrently on the memory
    // store, and at the exact point inside the removal on DynamoDB, tests/dynamodb.rs; moto
    // server does not isolate a transaction from a concurrent delete, so a free race against it
    // would test moto.)
    let racing = format!("{p}r-racing");
    store.put_connection(&connection(&racing, "u", live)).await.unwrap();
    let topics: Vec<String> = (0..8).map(|i| format!("{p}r-t{i}")).collect();
    for t in &topics {
        store.subscribe(&racing, t, live, now, usize::MAX).await.unwrap();
    }
    store.remove_connection(&racing).await.unwrap();
    for t in &topics {
        assert!(
            collect(store, Group::Topic(t.clone()), now).await.0.is_empty(),
            "orphan in {t}"
        );
    }
    assert_eq!(
        store.subscribe(&racing, &topics[0], live, now, usize::MAX).await,
        Err(StoreError::NotConnected(racing.clone()))
    );

    // Shard job claims: the first message holds the job; its redelivery may run it again, a
    // duplicate enqueue (another message) may not.
    let job = format!("{p}job-1");
    assert!(store.claim_job(&job, "m-1", live).await.unwrap());
    assert!(store.claim_job(&job, "m-1", live).await.unwrap());
    assert!(!store.claim_job(&job, "m-2", live).await.unwrap());
    assert!(store.claim_job(&format!("{p}job-2"), "m-2", live).await.unwrap());

    // The send bucket: a burst of 3, then one token per second.
    let sender = format!("{p}sender");
    store.put_connection(&connection(&sender, "u", live)).await.unwrap();
    let t0 = 1_800_000_000_000;
    let mut taken = Vec::new();
    for at in [
        t0,
        t0,
        t0,
        t0,
        t0 + 999,
        t0 + 1000,
        t0 + 1001,
        t0 + 10_000,
        t0 + 10_000,
        t0 + 10_000,
        t0 + 10_000,
    ] {
        taken.push(store.take_send_token(&sender, at, 1000, 3).await.unwrap());
    }
    assert_eq!(
        taken,
        [true, true, true, false, false, true, false, true, true, true, false]
    );
    let ghost = format!("{p}r-ghost");
    assert_eq!(
        store.take_send_token(&ghost, t0, 1000, 3).await,
        Err(StoreError::NotConnected(ghost.clone()))
    );
}

/// `max_topics` holds even for subscribes racing each other; renewals and unsubscribes work
/// at the cap.
async fn topic_cap(store: &dyn ConnectionStore, p: &str, now: i64) {
    let live = now + 600;
    let (id, user) = (format!("{p}capped"), format!("{p}cap-user"));
    store.put_connection(&connection(&id, &user, live)).await.unwrap();
    let too_many = || StoreError::TooManyTopics {
        connection_id: id.clone(),
        limit: 3,
    };
    // Ten distinct topics against a cap of three: exactly three get in. (In sequence: moto
    // server applies concurrent conditional writes without isolation, so racing ones are
    // tested on the memory store and, for DynamoDB, by the count the condition reads.)
    let topics: Vec<String> = (0..10).map(|i| format!("{p}cap{i}")).collect();
    let mut results = Vec::new();
    for topic in &topics {
        results.push(store.subscribe(&id, topic, live, now, 3).await);
    }
    let admitted: Vec<&String> = topics
        .iter()
        .zip(&results)
        .filter(|(_, r)| r.is_ok())
        .map(|(t, _)| t)
        .collect();
    assert_eq!(admitted.len(), 3, "{results:?}");
    for result in &results {
        assert!(result.is_ok() || *result == Err(too_many()), "{result:?}");
    }
    let mut held = store.get_connection(&id, now).await.unwrap().unwrap().topics;
    held.sort();
    let mut expected: Vec<String> = admitted.iter().map(|t| (*t).clone()).collect();
    expected.sort();
    assert_eq!(held, expected);
    // At the cap: renewing a held topic is fine, a new one is refused.
    store.subscribe(&id, admitted[0], live, now, 3).await.unwrap();
    let outside = topics.iter().find(|t| !admitted.contains(t)).unwrap();
    assert_eq!(store.subscribe(&id, outside, live, now, 3).await, Err(too_many()));
    // Unsubscribing (twice: the second changes nothing) frees exactly one place.
    store.unsubscribe(&id, admitted[0]).await.unwrap();
    store.unsubscribe(&id, admitted[0]).await.unwrap();
    store.unsubscribe(&id, outside).await.unwrap(); // never held: frees nothing
    store.subscribe(&id, outside, live, now, 3).await.unwrap();
    assert_eq!(store.subscribe(&id, admitted[0], live, now, 3).await, Err(too_many()));
    // A gone connection is not connected, whatever the cap.
    store.remove_connection(&id).await.unwrap();
    assert_eq!(
        store.subscribe(&id, outside, live, now, 3).await,
        Err(StoreError::NotConnected(id.clone()))
    );
    assert_eq!(
        store.subscribe(&id, &format!("{p}fresh"), live, now, 3).await,
        Err(StoreError::NotConnected(id.clone()))
    );
}

fn presence_of(user: &str, online: bool, last_active_at: Option<i64>) -> Presence {
    Presence {
        user_id: user.into(),
        online,
        last_active_at,
    }
}

/// Presence: online is "has a live connection"; last activity survives the connection, only
/// moves forward, and expires with its own ttl.
async fn presence(store: &dyn ConnectionStore, p: &str, now: i64) {
    let live = now + 30 * 86_400;
    let (here, gone, never, lapsed) = (
        format!("{p}p-here"),
        format!("{p}p-gone"),
        format!("{p}p-never"),
        format!("{p}p-lapsed"),
    );
    let (here_conn, gone_conn, stale_conn) = (format!("{p}pc1"), format!("{p}pc2"), format!("{p}pc3"));
    let before = collect(store, Group::Everyone, now).await.0;

    store
        .put_connection(&connection(&here_conn, &here, now + 60))
        .await
        .unwrap();
    store.touch_user(&here, 1_800_000_000_000, live).await.unwrap();
    store
        .put_connection(&connection(&gone_conn, &gone, now + 60))
        .await
        .unwrap();
    store.touch_user(&gone, 1_800_000_000_000, live).await.unwrap();
    store.remove_connection(&gone_conn).await.unwrap();
    store.touch_user(&gone, 1_800_000_005_000, live).await.unwrap();
    store.touch_user(&gone, 1_799_999_999_000, live).await.unwrap(); // older: ignored
                                                                     // An expired connection row still stored does not make its user online.
    store
        .put_connection(&connection(&stale_conn, &lapsed, now - 1))
        .await
        .unwrap();
    store.touch_user(&lapsed, 1_700_000_000_000, now - 1).await.unwrap(); // presence expired too

    let users = [never.clone(), here.clone(), gone.clone(), lapsed.clone()];
    assert_eq!(
        store.presence(&users, now).await.unwrap(),
        [
            presence_of(&never, false, None),
            presence_of(&here, true, Some(1_800_000_000_000)),
            presence_of(&gone, false, Some(1_800_000_005_000)),
            presence_of(&lapsed, false, None),
        ]
    );
    assert_eq!(store.presence(&[], now).await.unwrap(), []);

    // Presence records are never audience members: not in a broadcast, not in a user's group.
    let everyone = collect(store, Group::Everyone, now).await.0;
    let added: BTreeSet<String> = everyone.difference(&before).cloned().collect();
    assert_eq!(added, set(&[&here_conn]));
    assert_eq!(collect(store, Group::User(gone.clone()), now).await.0, set(&[]));

    // A full request's worth of users, most never seen.
    let many: Vec<String> = (0..super::MAX_PRESENCE_USERS).map(|i| format!("{p}pu{i:03}")).collect();
    store.touch_user(&many[99], 5, live).await.unwrap();
    let got = store.presence(&many, now).await.unwrap();
    assert_eq!(got.len(), many.len());
    assert!(got.iter().zip(&many).all(|(g, u)| &g.user_id == u && !g.online));
    assert_eq!(got.iter().filter(|g| g.last_active_at.is_some()).count(), 1);
    assert_eq!(got[99].last_active_at, Some(5));
}
