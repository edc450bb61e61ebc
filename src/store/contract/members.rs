//! Topic presence and the online list, as every store must keep them ([`crate::presence`],
//! [`crate::store::online`]).

use std::collections::{BTreeMap, BTreeSet};

use futures::TryStreamExt;

use super::connection;
use crate::store::{ConnectionStore, Group, OnlineCursor, StoreError};

async fn member_rows(store: &dyn ConnectionStore, topic: &str, now: i64) -> Vec<String> {
    let pages: Vec<Vec<String>> = store.topic_members(topic, now).try_collect().await.expect("members");
    pages.into_iter().flatten().collect()
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

/// Member subscriptions: `p` prefixes every id, user and topic so runs can share a table.
pub async fn run(store: &dyn ConnectionStore, p: &str) {
    let now = 1_800_000_000;
    let live = now + 3600;
    let room = format!("{p}room");
    let (ann, bob, cat) = (format!("{p}ann"), format!("{p}bob"), format!("{p}cat"));
    // ann has three connections, bob one, cat one whose subscription has expired.
    let conns = [
        (format!("{p}a1"), &ann, live),
        (format!("{p}a2"), &ann, live),
        (format!("{p}a3"), &ann, live),
        (format!("{p}b1"), &bob, live),
        (format!("{p}c1"), &cat, live),
    ];
    for (id, user, ttl) in &conns {
        store.put_connection(&connection(id, user, *ttl)).await.unwrap();
    }
    for (id, user, _) in &conns[..4] {
        assert!(
            store.subscribe_member(id, user, &room, live, now, 100).await.unwrap(),
            "first subscription"
        );
    }
    assert!(
        !store
            .subscribe_member(&conns[0].0, &ann, &room, live, now, 100)
            .await
            .unwrap(),
        "a repeat is not new"
    );
    assert!(store
        .subscribe_member(&conns[4].0, &cat, &room, now - 1, now, 100)
        .await
        .unwrap());
    assert_eq!(
        store
            .subscribe_member(&format!("{p}ghost"), &ann, &room, live, now, 100)
            .await,
        Err(StoreError::NotConnected(format!("{p}ghost"))),
        "only a live connection subscribes"
    );

    // The user of every live member row, ordered by user, so one user's rows are adjacent.
    let rows = member_rows(store, &room, now).await;
    assert_eq!(rows, vec![ann.clone(), ann.clone(), ann.clone(), bob.clone()]);
    assert_eq!(
        sorted(store.member_connections(&room, &ann, now).await.unwrap()),
        sorted(vec![conns[0].0.clone(), conns[1].0.clone(), conns[2].0.clone()])
    );
    assert_eq!(
        store.member_connections(&room, &cat, now).await.unwrap(),
        Vec::<String>::new(),
        "expired"
    );
    // A user id that is a prefix of another's is not confused with it.
    let an = format!("{p}an");
    assert_eq!(
        store.member_connections(&room, &an, now).await.unwrap(),
        Vec::<String>::new()
    );

    // Member subscriptions are subscriptions: the topic's fan-out reaches them, whoami lists them.
    let (fanout, _) = super::collect(store, Group::Topic(room.clone()), now).await;
    let expected: BTreeSet<String> = conns[..4].iter().map(|(id, _, _)| id.clone()).collect();
    assert_eq!(fanout, expected);
    let view = store.get_connection(&conns[3].0, now).await.unwrap().unwrap();
    assert_eq!(view.topics, vec![room.clone()]);

    // Unsubscribing tells whether there was a subscription.
    assert!(store.unsubscribe_member(&conns[0].0, &room).await.unwrap());
    assert!(!store.unsubscribe_member(&conns[0].0, &room).await.unwrap());
    assert_eq!(store.member_connections(&room, &ann, now).await.unwrap().len(), 2);
    // Removing a connection removes its member rows.
    store.remove_connection(&conns[1].0).await.unwrap();
    store.remove_connection(&conns[3].0).await.unwrap();
    assert_eq!(member_rows(store, &room, now).await, vec![ann.clone()]);
    assert_eq!(
        store.member_connections(&room, &ann, now).await.unwrap(),
        vec![conns[2].0.clone()]
    );
    // A plain subscription later made a member subscription counts as new.
    let other = format!("{p}other");
    store.subscribe(&conns[2].0, &other, live, now, 100).await.unwrap();
    assert!(
        member_rows(store, &other, now).await.is_empty(),
        "a plain subscription is no member"
    );
    assert!(store
        .subscribe_member(&conns[2].0, &ann, &other, live, now, 100)
        .await
        .unwrap());
    assert_eq!(member_rows(store, &other, now).await, vec![ann.clone()]);
    // Pages: many members come in several pages, still ordered by user.
    let big = format!("{p}big");
    let mut users = Vec::new();
    for i in 0..25 {
        let (id, user) = (format!("{p}m{i}"), format!("{p}u{:02}", 24 - i));
        store.put_connection(&connection(&id, &user, live)).await.unwrap();
        store.subscribe_member(&id, &user, &big, live, now, 100).await.unwrap();
        users.push(user);
    }
    users.sort();
    assert_eq!(member_rows(store, &big, now).await, users);
}

/// The online list. Needs a store with no connections yet: it lists the whole store.
pub async fn online(store: &dyn ConnectionStore) {
    let now = 1_800_000_000;
    let live = now + 3600;
    let mut expected: BTreeMap<String, u32> = BTreeMap::new();
    for u in 0..23u32 {
        let user = format!("user-{u:02}");
        // 1-3 live connections; every fourth user also has an expired one; every fifth has
        // only expired ones (offline).
        let count = 1 + u % 3;
        let offline = u % 5 == 4;
        for k in 0..count {
            let ttl = if offline { now - 10 } else { live };
            store
                .put_connection(&connection(&format!("c-{u}-{k}"), &user, ttl))
                .await
                .unwrap();
        }
        if u % 4 == 0 {
            store
                .put_connection(&connection(&format!("c-{u}-expired"), &user, now))
                .await
                .unwrap();
        }
        if u % 2 == 0 {
            store
                .touch_user(&user, 1_700_000_000_000 + i64::from(u), live)
                .await
                .unwrap();
        }
        if !offline {
            expected.insert(user, count);
        }
    }
    for limit in [1, 4, 7, 1000] {
        let mut seen: BTreeMap<String, (u32, Option<i64>)> = BTreeMap::new();
        let mut order = Vec::new();
        let mut cursor = OnlineCursor::default();
        let mut pages = 0;
        loop {
            let page = store.online_users(&cursor, limit, now).await.expect("online page");
            pages += 1;
            assert!(pages < 1000, "the cursor never ends");
            assert!(
                page.users.len() <= limit,
                "{} users on a page of {limit}",
                page.users.len()
            );
            for u in page.users {
                order.push(u.user_id.clone());
                let again = seen.insert(u.user_id.clone(), (u.connections, u.last_active_at));
                assert!(again.is_none(), "{} listed twice (limit {limit})", u.user_id);
            }
            match page.next {
                // Through JSON, as the HTTP API hands it out.
                Some(next) => cursor = serde_json::from_str(&serde_json::to_string(&next).unwrap()).unwrap(),
                None => break,
            }
        }
        let counts: BTreeMap<String, u32> = seen.iter().map(|(u, (c, _))| (u.clone(), *c)).collect();
        assert_eq!(counts, expected, "limit {limit}");
        if limit < expected.len() {
            assert!(pages > 1, "limit {limit}: more than one page");
        }
        for (user, (_, last)) in &seen {
            let u: i64 = user.trim_start_matches("user-").parse().unwrap();
            let touched = (u % 2 == 0).then_some(1_700_000_000_000 + u);
            assert_eq!(*last, touched, "{user}'s last activity");
        }
        // A stable order: the same walk again lists the users in the same order.
        let mut again = Vec::new();
        let mut cursor = OnlineCursor::default();
        loop {
            let page = store.online_users(&cursor, limit, now).await.unwrap();
            again.extend(page.users.into_iter().map(|u| u.user_id));
            match page.next {
                Some(next) => cursor = next,
                None => break,
            }
        }
        assert_eq!(again, order, "limit {limit}: the same order twice");
    }
}
