//! Topic presence and the online list in DynamoDB ([`crate::presence`], [`crate::store::online`]).
//!
//! - A presence subscription is the ordinary subscription item with one more attribute,
//!   `member` (`<userId>` U+001F `<connectionId>`), which puts it in the sparse `byMember` index
//!   ([`crate::store::table`]); it is written by the subscribe transaction (`subscribe_item`,
//!   with the topic cap) and removed by the unsubscribe one. Nothing per topic or per user is
//!   kept besides, so nothing drifts when rows expire by TTL.
//! - A user's connections on a topic: one `Query` of `byMember` with `begins_with` on the
//!   member prefix ("Query operations in DynamoDB": the sort key condition `begins_with`).
//! - A topic's members: `Query` pages of `byMember`, ascending by `member`, so one user's
//!   connections are adjacent and the reader counts them without holding more than one user.
//! - The online list: a `Scan` of the sparse `byUser` index (one small item per connection),
//!   read page by page, never more than one Scan page and one page of users held.
//!   "Partitions and data distribution in DynamoDB": items with the same partition key value
//!   are stored together, sorted by sort key, so a user's connections come out adjacent. A page
//!   of users ends before the first row of the user past `limit` (the cursor resumes from the
//!   row before it); a page that ends with a Scan page, possibly inside a user, finishes that
//!   user with one `Query` of `byUser`, and the cursor names the user as done, so the next
//!   page skips the rest of its rows. The order is the Scan's: stable while rows stay.

use futures::stream::{self, StreamExt, TryStreamExt};

use super::{backend, get_s, get_ttl, next_cursor, s, start_key, DynamoStore, Item};
use crate::store::table::*;
use crate::store::{is_live, OnlineCursor, OnlinePage, OnlineUser, Pages, StoreError};

impl DynamoStore {
    fn member_query(&self, topic: &str) -> aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder {
        self.client
            .query()
            .table_name(&self.table)
            .index_name(BY_MEMBER)
            .expression_attribute_names("#t", TOPIC)
            .expression_attribute_names("#m", MEMBER)
            .expression_attribute_names("#ttl", TTL)
            .expression_attribute_values(":t", s(topic))
            .projection_expression("#m, #ttl")
    }

    pub(super) async fn connections_of_member(
        &self,
        topic: &str,
        user_id: &str,
        now: i64,
    ) -> Result<Vec<String>, StoreError> {
        let mut pages = self
            .member_query(topic)
            .key_condition_expression("#t = :t AND begins_with(#m, :prefix)")
            .expression_attribute_values(":prefix", s(member_prefix(user_id)))
            .set_limit(self.page_size)
            .into_paginator()
            .send();
        let mut ids = Vec::new();
        while let Some(page) = pages.next().await {
            let items = page.map_err(|e| backend("Query", e))?.items.unwrap_or_default();
            ids.extend(items.iter().filter(|i| is_live(get_ttl(i), now)).filter_map(|i| {
                let member = get_s(i, MEMBER)?;
                let (_, connection) = member.split_once(MEMBER_SEPARATOR)?;
                Some(connection.to_owned())
            }));
        }
        Ok(ids)
    }

    pub(super) fn member_pages(&self, topic: &str, now: i64) -> Pages {
        let pages = self
            .member_query(topic)
            .key_condition_expression("#t = :t")
            .set_limit(self.page_size)
            .into_paginator()
            .send();
        stream::unfold(pages, move |mut pages| async move {
            let page = pages.next().await?;
            let users = page
                .map(|p| {
                    p.items
                        .unwrap_or_default()
                        .iter()
                        .filter(|i| is_live(get_ttl(i), now))
                        .filter_map(|i| get_s(i, MEMBER).and_then(|m| user_of_member(&m).map(str::to_owned)))
                        .collect()
                })
                .map_err(|e| backend("Query", e));
            Some((users, pages))
        })
        .boxed()
    }

    /// Live connections of one user, all pages of `byUser`.
    async fn count_connections(&self, user_id: &str, now: i64) -> Result<u32, StoreError> {
        let pages: Vec<Vec<String>> = self
            .query_index(BY_USER, USER_ID, user_id.to_owned(), now)
            .try_collect()
            .await?;
        Ok(pages.iter().map(Vec::len).sum::<usize>() as u32)
    }

    pub(super) async fn online_page(
        &self,
        cursor: &OnlineCursor,
        limit: usize,
        now: i64,
    ) -> Result<OnlinePage, StoreError> {
        let limit = limit.max(1);
        let mut users: Vec<(String, u32)> = Vec::new();
        let mut after = start_key_of(cursor);
        // Rows of the user the previous page ended with are skipped: it was counted whole.
        let mut done = cursor.done.clone();
        // Where the next page starts, and whether the last user may go on past it.
        let mut next: Option<(Item, bool)> = None;
        'pages: loop {
            let out = self
                .client
                .scan()
                .table_name(&self.table)
                .index_name(BY_USER)
                .expression_attribute_names("#pk", PK)
                .expression_attribute_names("#sk", SK)
                .expression_attribute_names("#u", USER_ID)
                .expression_attribute_names("#c", CONNECTION_ID)
                .expression_attribute_names("#ttl", TTL)
                .projection_expression("#pk, #sk, #u, #c, #ttl")
                .set_exclusive_start_key(after.take())
                .set_limit(self.page_size)
                .send()
                .await
                .map_err(|e| backend("Scan", e))?;
            let mut last_row: Option<Item> = None;
            for item in out.items.unwrap_or_default() {
                let Some(user) = get_s(&item, USER_ID) else { continue };
                if done.as_deref() == Some(user.as_str()) {
                    last_row = Some(item);
                    continue;
                }
                done = None;
                if is_live(get_ttl(&item), now) {
                    let full = users.len() == limit;
                    match users.last_mut() {
                        Some((last, count)) if *last == user => *count += 1,
                        // A new user past the limit: the page ends before it. The last user's
                        // rows are all behind (a user's rows are adjacent), so it is complete.
                        _ if full => {
                            next = last_row.map(|row| (index_key(&row), false));
                            break 'pages;
                        }
                        _ => users.push((user, 1)),
                    }
                }
                last_row = Some(item);
            }
            after = out.last_evaluated_key.filter(|k| !k.is_empty());
            match after {
                None => break,
                // The Scan page ended with the page full: the last user may go on past it.
                Some(ref key) if users.len() == limit => {
                    next = Some((key.clone(), true));
                    break;
                }
                Some(_) => {}
            }
        }
        let next = match next {
            None => None,
            Some((key, may_go_on)) => {
                if may_go_on {
                    // Count that user whole; the next page skips the rest of their rows.
                    if let Some((user, count)) = users.last_mut() {
                        *count = self.count_connections(user, now).await?;
                    }
                }
                let resume = next_cursor(None, Some(key), "Scan")?.and_then(|c| c.after);
                Some(OnlineCursor {
                    after: resume,
                    done: users.last().map(|(u, _)| u.clone()),
                })
            }
        };
        // A user counted whole may turn out to have no live connection left (it expired).
        users.retain(|(_, count)| *count > 0);
        let ids: Vec<String> = users.iter().map(|(u, _)| u.clone()).collect();
        let last_active = self.last_active(&ids, now).await?;
        Ok(OnlinePage {
            users: users
                .into_iter()
                .map(|(user_id, connections)| OnlineUser {
                    last_active_at: last_active.get(&user_id).copied(),
                    user_id,
                    connections,
                })
                .collect(),
            next,
        })
    }
}

/// The `byUser` index key of a row (the table's key and the index's), as a Scan resumes from:
/// "ExclusiveStartKey" may name any row the Scan returned.
fn index_key(row: &Item) -> Item {
    [PK, SK, USER_ID, CONNECTION_ID]
        .iter()
        .filter_map(|k| row.get(*k).map(|v| ((*k).to_owned(), v.clone())))
        .collect()
}

fn start_key_of(cursor: &OnlineCursor) -> Option<Item> {
    start_key(&crate::store::Cursor {
        segment: None,
        after: cursor.after.clone(),
    })
}
