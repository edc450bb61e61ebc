//! DynamoDB implementation of the connection store. Table layout: [`super::table`].

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::error::{DisplayErrorContext, SdkError};
use aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{
    AttributeValue, ConditionCheck, Delete, DeleteRequest, KeysAndAttributes, Put, ReturnValuesOnConditionCheckFailure,
    TransactWriteItem, Update, WriteRequest,
};
use aws_sdk_dynamodb::Client;
use aws_smithy_async::future::pagination_stream::PaginationStream;
use futures::stream::{self, StreamExt, TryStreamExt};

mod presence;
mod streams;

use super::capacity::{CapacityMeter, MeterInterceptor};
use super::table::*;
use super::{
    is_live, Connection, ConnectionStore, ConnectionView, Cursor, Group, History, NewPublication, OnlineCursor,
    OnlinePage, Page, Pages, Presence, Recorded, Segment, StoreError,
};

/// BatchWriteItem's limit.
const BATCH_WRITE_MAX: usize = 25;
const UNPROCESSED_RETRIES: u32 = 8;
/// Parallel Scan segments for a broadcast.
const DEFAULT_SCAN_SEGMENTS: i32 = 4;
/// BatchGetItem's limit.
const BATCH_GET_MAX: usize = 100;
/// `byUser` Queries in flight for one presence request.
const PRESENCE_CONCURRENCY: usize = 16;
/// Items per Query/Scan page. DynamoDB's own cap is 1 MB, some 10,000 of these small index
/// items: held as SDK attribute maps that is several MB per page and segment, and the first
/// post waits for the whole first page. 1,000 keeps a fan-out's memory flat and starts it sooner.
const DEFAULT_PAGE_SIZE: i32 = 1000;

type Item = HashMap<String, AttributeValue>;

/// A DynamoDB client whose requests give up in seconds when the endpoint is unreachable or
/// stalls, so a route answers an error frame instead of hanging until the Lambda times out.
/// The SDK's standard retries (3 attempts, throttling included) stay on.
pub fn client(sdk: &aws_config::SdkConfig) -> Client {
    Client::from_conf(client_config(sdk).build())
}

fn client_config(sdk: &aws_config::SdkConfig) -> aws_sdk_dynamodb::config::Builder {
    let timeouts = aws_config::timeout::TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(2))
        .operation_attempt_timeout(Duration::from_secs(3))
        .operation_timeout(Duration::from_secs(10))
        .build();
    aws_sdk_dynamodb::config::Builder::from(sdk).timeout_config(timeouts)
}

#[derive(Clone)]
pub struct DynamoStore {
    client: Client,
    table: String,
    page_size: Option<i32>,
    scan_segments: i32,
    meter: Arc<CapacityMeter>,
}

impl DynamoStore {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        // The same client (connections, credentials, retries) with the meter's hook added.
        Self::with_config(client.config().to_builder(), table)
    }

    /// The Lambda's store: [`client`]'s settings, built into a client once (each build costs
    /// about half a million instructions of cold start).
    pub fn from_sdk(sdk: &aws_config::SdkConfig, table: impl Into<String>) -> Self {
        Self::with_config(client_config(sdk), table)
    }

    fn with_config(config: aws_sdk_dynamodb::config::Builder, table: impl Into<String>) -> Self {
        let meter = Arc::new(CapacityMeter::default());
        let client = Client::from_conf(config.interceptor(MeterInterceptor(meter.clone())).build());
        DynamoStore {
            client,
            meter,
            table: table.into(),
            page_size: Some(DEFAULT_PAGE_SIZE),
            scan_segments: DEFAULT_SCAN_SEGMENTS,
        }
    }

    /// Caps items per Query/Scan page (DynamoDB's own cap is 1 MB); tests use it to force many pages.
    pub fn with_page_size(mut self, page_size: i32) -> Self {
        self.page_size = Some(page_size);
        self
    }

    pub fn with_scan_segments(mut self, segments: i32) -> Self {
        self.scan_segments = segments.max(1);
        self
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    /// Calls and consumed read and write capacity of this store (and its clones) so far.
    pub fn capacity(&self) -> &CapacityMeter {
        &self.meter
    }

    async fn delete_keys(&self, keys: Vec<Item>) -> Result<(), StoreError> {
        let requests = keys
            .into_iter()
            .map(|key| {
                WriteRequest::builder()
                    .delete_request(DeleteRequest::builder().set_key(Some(key)).build().expect("key is set"))
                    .build()
            })
            .collect();
        self.batch_write(requests).await
    }

    /// `BatchWriteItem` in chunks of 25, unprocessed items retried with back-off.
    async fn batch_write(&self, requests: Vec<WriteRequest>) -> Result<(), StoreError> {
        for chunk in requests.chunks(BATCH_WRITE_MAX) {
            let mut pending: Vec<WriteRequest> = chunk.to_vec();
            let mut attempt = 0;
            while !pending.is_empty() {
                if attempt > 0 {
                    // Unprocessed items mean throttling: back off before asking again.
                    tokio::time::sleep(Duration::from_millis(25 << attempt.min(6))).await;
                }
                if attempt == UNPROCESSED_RETRIES {
                    return Err(StoreError::Backend {
                        op: "BatchWriteItem",
                        message: format!("{} writes still unprocessed after {attempt} attempts", pending.len()),
                    });
                }
                let out = self
                    .client
                    .batch_write_item()
                    .request_items(&self.table, pending)
                    .send()
                    .await
                    .map_err(|e| backend("BatchWriteItem", e))?;
                pending = out
                    .unprocessed_items
                    .and_then(|mut m| m.remove(&self.table))
                    .unwrap_or_default();
                attempt += 1;
            }
        }
        Ok(())
    }

    /// Deletes the connection row first (conditionally on `connectedAt` when `connected_before`
    /// is given), then every item left under its key. In that order a `subscribe` committing
    /// meanwhile either precedes the row's delete (its item is then found by the Query after)
    /// or fails its transaction's condition check on the row: no subscription outlives it.
    /// `Ok(false)`: the row was younger and kept.
    async fn remove_where(&self, connection_id: &str, connected_before: Option<i64>) -> Result<bool, StoreError> {
        let mut delete = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key(PK, s(connection_pk(connection_id)))
            .key(SK, s(META));
        if let Some(before) = connected_before {
            delete = delete
                .condition_expression("attribute_not_exists(#pk) OR #at < :before")
                .expression_attribute_names("#pk", PK)
                .expression_attribute_names("#at", CONNECTED_AT)
                .expression_attribute_values(":before", n(before));
        }
        match delete.send().await {
            Ok(_) => {}
            Err(e)
                if e.as_service_error()
                    .is_some_and(|se| se.is_conditional_check_failed_exception()) =>
            {
                return Ok(false)
            }
            Err(e) => return Err(backend("DeleteItem", e)),
        }
        let keys = self
            .connection_items(connection_id)
            .await?
            .into_iter()
            .map(|item| item.into_iter().filter(|(k, _)| k == PK || k == SK).collect())
            .collect();
        self.delete_keys(keys).await?;
        Ok(true)
    }

    /// All items of one connection (its META row and its subscriptions).
    async fn connection_items(&self, connection_id: &str) -> Result<Vec<Item>, StoreError> {
        let mut items = Vec::new();
        let mut pages = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("#pk = :pk")
            .expression_attribute_names("#pk", PK)
            .expression_attribute_values(":pk", s(connection_pk(connection_id)))
            .consistent_read(true)
            .set_limit(self.page_size)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            items.extend(page.map_err(|e| backend("Query", e))?.items.unwrap_or_default());
        }
        Ok(items)
    }

    /// The members of one index partition (a user's connections, a topic's subscribers): only
    /// the connection id and ttl of each entry.
    fn index_query(&self, index: &'static str, hash: &'static str, value: String) -> QueryFluentBuilder {
        self.client
            .query()
            .table_name(&self.table)
            .index_name(index)
            .key_condition_expression("#h = :h")
            .expression_attribute_names("#h", hash)
            .expression_attribute_names("#c", CONNECTION_ID)
            .expression_attribute_names("#ttl", TTL)
            .expression_attribute_values(":h", s(value))
            .projection_expression("#c, #ttl")
    }

    fn query_index(&self, index: &'static str, hash: &'static str, value: String, now: i64) -> Pages {
        let pages = self
            .index_query(index, hash, value)
            .set_limit(self.page_size)
            .into_paginator()
            .send();
        id_pages(pages, "Query", now, |page| page.items)
    }

    /// Whether `user_id` has a live connection: stops at the first page holding one.
    async fn has_live_connection(&self, user_id: &str, now: i64) -> Result<bool, StoreError> {
        let mut pages = self.query_index(BY_USER, USER_ID, user_id.to_owned(), now);
        while let Some(page) = pages.try_next().await? {
            if !page.is_empty() {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// `lastActiveAt` of the users whose live presence item exists, by BatchGetItem.
    async fn last_active(&self, user_ids: &[String], now: i64) -> Result<HashMap<String, i64>, StoreError> {
        let mut found = HashMap::new();
        for chunk in user_ids.chunks(BATCH_GET_MAX) {
            let keys: Vec<Item> = chunk
                .iter()
                .map(|u| HashMap::from([(PK.to_owned(), s(user_pk(u))), (SK.to_owned(), s(PRESENCE))]))
                .collect();
            let mut pending = Some(
                KeysAndAttributes::builder()
                    .set_keys(Some(keys))
                    .projection_expression("#pk, #la, #ttl")
                    .expression_attribute_names("#pk", PK)
                    .expression_attribute_names("#la", LAST_ACTIVE_AT)
                    .expression_attribute_names("#ttl", TTL)
                    .build()
                    .expect("keys are set"),
            );
            let mut attempt = 0;
            while let Some(request) = pending.take() {
                if attempt > 0 {
                    // Unprocessed keys mean throttling: back off before asking again.
                    tokio::time::sleep(Duration::from_millis(25 << attempt.min(6))).await;
                }
                if attempt == UNPROCESSED_RETRIES {
                    return Err(StoreError::Backend {
                        op: "BatchGetItem",
                        message: format!(
                            "{} keys still unprocessed after {attempt} attempts",
                            request.keys().len()
                        ),
                    });
                }
                let out = self
                    .client
                    .batch_get_item()
                    .request_items(&self.table, request)
                    .send()
                    .await
                    .map_err(|e| backend("BatchGetItem", e))?;
                for item in out
                    .responses
                    .and_then(|mut r| r.remove(&self.table))
                    .unwrap_or_default()
                {
                    let at = item
                        .get(LAST_ACTIVE_AT)
                        .and_then(|v| v.as_n().ok())
                        .and_then(|n| n.parse().ok());
                    let user = get_s(&item, PK).and_then(|pk| user_of_pk(&pk).map(str::to_owned));
                    if let (Some(user), Some(at), true) = (user, at, is_live(get_ttl(&item), now)) {
                        found.insert(user, at);
                    }
                }
                pending = out
                    .unprocessed_keys
                    .and_then(|mut m| m.remove(&self.table))
                    .filter(|k| !k.keys().is_empty());
                attempt += 1;
            }
        }
        Ok(found)
    }

    /// Broadcast audience: a parallel segmented Scan of the sparse `byUser` index, which holds
    /// exactly one small item per connection.
    fn scan_everyone(&self, now: i64) -> Pages {
        let segments = (0..self.scan_segments).map(|segment| {
            let pages = self
                .client
                .scan()
                .table_name(&self.table)
                .index_name(BY_USER)
                .segment(segment)
                .total_segments(self.scan_segments)
                .expression_attribute_names("#c", CONNECTION_ID)
                .expression_attribute_names("#ttl", TTL)
                .projection_expression("#c, #ttl")
                .set_limit(self.page_size)
                .into_paginator()
                .send();
            id_pages(pages, "Scan", now, |page| page.items)
        });
        stream::select_all(segments).boxed()
    }
}

/// A cursor's resume key as DynamoDB's `ExclusiveStartKey`.
fn start_key(cursor: &Cursor) -> Option<Item> {
    cursor
        .after
        .as_ref()
        .map(|key| key.iter().map(|(k, v)| (k.clone(), s(v))).collect())
}

/// DynamoDB's `LastEvaluatedKey` as the next cursor; every key attribute of the table is a string.
fn next_cursor(segment: Option<Segment>, last: Option<Item>, op: &'static str) -> Result<Option<Cursor>, StoreError> {
    let Some(last) = last.filter(|k| !k.is_empty()) else {
        return Ok(None);
    };
    let after = last
        .into_iter()
        .map(|(k, v)| match v {
            AttributeValue::S(v) => Ok((k, v)),
            _ => Err(StoreError::Backend {
                op,
                message: format!("LastEvaluatedKey attribute {k} is not a string"),
            }),
        })
        .collect::<Result<_, _>>()?;
    Ok(Some(Cursor {
        segment,
        after: Some(after),
    }))
}

/// A paginator's pages as pages of live connection ids.
fn id_pages<O, E, R>(
    pages: PaginationStream<Result<O, SdkError<E, R>>>,
    op: &'static str,
    now: i64,
    items: fn(O) -> Option<Vec<Item>>,
) -> Pages
where
    O: Send + 'static,
    E: std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + 'static,
{
    stream::unfold(pages, move |mut pages| async move {
        let page = pages.next().await?;
        let ids = page
            .map(|p| live_ids(items(p).unwrap_or_default(), now))
            .map_err(|e| backend(op, e));
        Some((ids, pages))
    })
    .boxed()
}

/// For a transaction cancelled by conditions: per item, whether its condition failed.
/// `None` for any other error (throttling, a conflict with another transaction, …).
fn condition_failures<R>(e: &SdkError<TransactWriteItemsError, R>) -> Option<Vec<bool>> {
    match e.as_service_error() {
        Some(TransactWriteItemsError::TransactionCanceledException(t)) => {
            let failed: Vec<bool> = t
                .cancellation_reasons()
                .iter()
                .map(|r| r.code() == Some("ConditionalCheckFailed"))
                .collect();
            failed.contains(&true).then_some(failed)
        }
        _ => None,
    }
}

fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

fn n(value: i64) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

fn get_s(item: &Item, name: &str) -> Option<String> {
    item.get(name).and_then(|v| v.as_s().ok()).cloned()
}

/// A row without a readable ttl is treated as live: losing a push is worse than one wasted post.
fn get_ttl(item: &Item) -> i64 {
    item.get(TTL)
        .and_then(|v| v.as_n().ok())
        .and_then(|n| n.parse().ok())
        .unwrap_or(i64::MAX)
}

fn live_ids(items: Vec<Item>, now: i64) -> Vec<String> {
    items
        .iter()
        .filter(|item| is_live(get_ttl(item), now))
        .filter_map(|item| get_s(item, CONNECTION_ID))
        .collect()
}

fn backend<E, R>(op: &'static str, err: SdkError<E, R>) -> StoreError
where
    E: std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug,
{
    StoreError::Backend {
        op,
        message: DisplayErrorContext(&err).to_string(),
    }
}

/// How a subscription's put is conditioned.
#[derive(Clone, Copy)]
enum Condition {
    /// Not subscribed yet (counted against the cap).
    New,
    /// Subscribed already (a membership: a membership already).
    Renew,
    /// Subscribed already, whatever it holds.
    Exists,
}

impl DynamoStore {
    /// A subscription, or with `member` (the connection's user) a membership of a presence
    /// topic ([`crate::presence`]): `true` when it is new (for a membership: when the connection
    /// held no membership of the topic before, a plain subscription included).
    pub(super) async fn subscribe_item(
        &self,
        connection_id: &str,
        topic: &str,
        member_of: Option<&str>,
        ttl: i64,
        now: i64,
        max_topics: usize,
    ) -> Result<bool, StoreError> {
        let max = i64::try_from(max_topics).unwrap_or(i64::MAX);
        let count = Update::builder()
            .table_name(&self.table)
            .key(PK, s(connection_pk(connection_id)))
            .key(SK, s(META))
            .update_expression("SET #count = if_not_exists(#count, :zero) + :one")
            .condition_expression(
                "attribute_exists(#pk) AND #ttl > :now AND (attribute_not_exists(#count) OR #count < :max)",
            )
            .expression_attribute_names("#pk", PK)
            .expression_attribute_names("#ttl", TTL)
            .expression_attribute_names("#count", TOPIC_COUNT)
            .expression_attribute_values(":now", n(now))
            .expression_attribute_values(":zero", n(0))
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":max", n(max))
            .build()
            .expect("table, key, update and condition are set");
        // `Condition::Renew` of a membership also requires the item to be one already, so a
        // plain subscription turned into a membership is told apart (it counts as new).
        let put = |condition: Condition| {
            let mut put = Put::builder()
                .table_name(&self.table)
                .item(PK, s(connection_pk(connection_id)))
                .item(SK, s(topic_sk(topic)))
                .item(CONNECTION_ID, s(connection_id))
                .item(TOPIC, s(topic))
                .item(TTL, n(ttl))
                .expression_attribute_names("#pk", PK);
            if let Some(user) = member_of {
                put = put.item(MEMBER, s(member(user, connection_id)));
            }
            let put = match condition {
                Condition::New => put.condition_expression("attribute_not_exists(#pk)"),
                Condition::Renew if member_of.is_some() => put
                    .condition_expression("attribute_exists(#pk) AND attribute_exists(#m)")
                    .expression_attribute_names("#m", MEMBER),
                Condition::Renew | Condition::Exists => put.condition_expression("attribute_exists(#pk)"),
            };
            put.build().expect("table and item are set")
        };
        let first = self
            .client
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().update(count).build())
            .transact_items(TransactWriteItem::builder().put(put(Condition::New)).build())
            .send()
            .await;
        match first {
            Ok(_) => return Ok(true),
            Err(e) if condition_failures(&e).is_none() => return Err(backend("TransactWriteItems", e)),
            Err(_) => {}
        }
        // Not connected, at the cap, or already subscribed: renew only an existing subscription
        // of a live connection (a subscription never outlives a connection that vanished).
        let live = ConditionCheck::builder()
            .table_name(&self.table)
            .key(PK, s(connection_pk(connection_id)))
            .key(SK, s(META))
            .condition_expression("attribute_exists(#pk) AND #ttl > :now")
            .expression_attribute_names("#pk", PK)
            .expression_attribute_names("#ttl", TTL)
            .expression_attribute_values(":now", n(now))
            .build()
            .expect("table, key and condition are set");
        let renew = |condition: Condition| {
            self.client
                .transact_write_items()
                .transact_items(TransactWriteItem::builder().condition_check(live.clone()).build())
                .transact_items(TransactWriteItem::builder().put(put(condition)).build())
                .send()
        };
        let refused = |e| match condition_failures(&e) {
            Some(failed) if failed.first() == Some(&true) => StoreError::NotConnected(connection_id.to_owned()),
            Some(_) => StoreError::TooManyTopics {
                connection_id: connection_id.to_owned(),
                limit: max_topics,
            },
            None => backend("TransactWriteItems", e),
        };
        match renew(Condition::Renew).await {
            Ok(_) => Ok(false),
            Err(e) => match (member_of, refused(e)) {
                // A membership whose item was a plain subscription (PRESENCE_TOPICS changed
                // while connected): renewed into a membership, a new one.
                (Some(_), StoreError::TooManyTopics { .. }) => {
                    renew(Condition::Exists).await.map_err(refused)?;
                    Ok(true)
                }
                (_, err) => Err(err),
            },
        }
    }

    /// Deletes the subscription and lowers the connection's count in one transaction, each on
    /// condition that there is something to take away; when the connection item is gone or
    /// never counted (written before the cap existed) the subscription is deleted alone.
    /// `true` when a subscription (plain or a membership) was removed.
    pub(super) async fn unsubscribe_item(&self, connection_id: &str, topic: &str) -> Result<bool, StoreError> {
        let delete = Delete::builder()
            .table_name(&self.table)
            .key(PK, s(connection_pk(connection_id)))
            .key(SK, s(topic_sk(topic)))
            .condition_expression("attribute_exists(#pk)")
            .expression_attribute_names("#pk", PK)
            .build()
            .expect("table, key and condition are set");
        let count = Update::builder()
            .table_name(&self.table)
            .key(PK, s(connection_pk(connection_id)))
            .key(SK, s(META))
            .update_expression("SET #count = #count - :one")
            .condition_expression("attribute_exists(#pk) AND #count > :zero")
            .expression_attribute_names("#pk", PK)
            .expression_attribute_names("#count", TOPIC_COUNT)
            .expression_attribute_values(":zero", n(0))
            .expression_attribute_values(":one", n(1))
            .build()
            .expect("table, key, update and condition are set");
        let result = self
            .client
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().delete(delete).build())
            .transact_items(TransactWriteItem::builder().update(count).build())
            .send()
            .await;
        let failed = match result {
            Ok(_) => return Ok(true),
            Err(e) => condition_failures(&e).ok_or_else(|| backend("TransactWriteItems", e))?,
        };
        if failed.first() == Some(&true) {
            // Not subscribed: nothing to do (idempotent).
            return Ok(false);
        }
        // "DeleteItem": ReturnValues ALL_OLD returns the deleted item, at no extra capacity.
        let out = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key(PK, s(connection_pk(connection_id)))
            .key(SK, s(topic_sk(topic)))
            .return_values(aws_sdk_dynamodb::types::ReturnValue::AllOld)
            .send()
            .await
            .map_err(|e| backend("DeleteItem", e))?;
        Ok(out.attributes.is_some_and(|a| !a.is_empty()))
    }
}

#[async_trait]
impl ConnectionStore for DynamoStore {
    async fn put_connection(&self, c: &Connection) -> Result<(), StoreError> {
        let mut item: Item = HashMap::from([
            (PK.to_owned(), s(connection_pk(&c.connection_id))),
            (SK.to_owned(), s(META)),
            (CONNECTION_ID.to_owned(), s(&c.connection_id)),
            (USER_ID.to_owned(), s(&c.user_id)),
            (CONNECTED_AT.to_owned(), n(c.connected_at)),
            (TTL.to_owned(), n(c.ttl)),
        ]);
        if let Some(ip) = &c.source_ip {
            item.insert(SOURCE_IP.to_owned(), s(ip));
        }
        if let Some(path) = &c.path {
            item.insert(PATH.to_owned(), s(path));
        }
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(#pk)")
            .expression_attribute_names("#pk", PK)
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|se| se.is_conditional_check_failed_exception()) =>
            {
                Err(StoreError::AlreadyExists(c.connection_id.clone()))
            }
            Err(e) => Err(backend("PutItem", e)),
        }
    }

    async fn get_connection(&self, connection_id: &str, now: i64) -> Result<Option<ConnectionView>, StoreError> {
        let items = self.connection_items(connection_id).await?;
        let Some(meta) = items.iter().find(|i| get_s(i, SK).as_deref() == Some(META)) else {
            return Ok(None);
        };
        let ttl = get_ttl(meta);
        if !is_live(ttl, now) {
            return Ok(None);
        }
        let connection = Connection {
            connection_id: connection_id.to_owned(),
            user_id: get_s(meta, USER_ID).unwrap_or_default(),
            connected_at: meta
                .get(CONNECTED_AT)
                .and_then(|v| v.as_n().ok())
                .and_then(|n| n.parse().ok())
                .unwrap_or(0),
            source_ip: get_s(meta, SOURCE_IP),
            path: get_s(meta, PATH),
            ttl,
        };
        let topics = items
            .iter()
            .filter(|i| get_s(i, SK).is_some_and(|sk| sk.starts_with("TOPIC#")) && is_live(get_ttl(i), now))
            .filter_map(|i| get_s(i, TOPIC))
            .collect();
        Ok(Some(ConnectionView { connection, topics }))
    }

    async fn remove_connection(&self, connection_id: &str) -> Result<(), StoreError> {
        self.remove_where(connection_id, None).await.map(|_| ())
    }

    async fn remove_connection_older_than(
        &self,
        connection_id: &str,
        connected_before: i64,
    ) -> Result<bool, StoreError> {
        self.remove_where(connection_id, Some(connected_before)).await
    }

    async fn claim_job(&self, job_key: &str, claimer: &str, ttl: i64) -> Result<bool, StoreError> {
        // Only pk, sk, claimedBy and ttl: the claim must never enter an index.
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .item(PK, s(job_pk(job_key)))
            .item(SK, s(CLAIM))
            .item(CLAIMED_BY, s(claimer))
            .item(TTL, n(ttl))
            .condition_expression("attribute_not_exists(#pk) OR #by = :by")
            .expression_attribute_names("#pk", PK)
            .expression_attribute_names("#by", CLAIMED_BY)
            .expression_attribute_values(":by", s(claimer))
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|se| se.is_conditional_check_failed_exception()) =>
            {
                Ok(false)
            }
            Err(e) => Err(backend("PutItem", e)),
        }
    }

    async fn take_send_token(
        &self,
        connection_id: &str,
        now_ms: i64,
        interval_ms: i64,
        burst: u32,
    ) -> Result<bool, StoreError> {
        // GCRA on one attribute, without a read: an idle bucket restarts at now + interval;
        // a busy one moves its arrival time on by one interval while that stays within the
        // burst. DynamoDB cannot compute max() in an update, hence two conditional variants.
        let tolerance = interval_ms.saturating_mul(i64::from(burst.max(1)) - 1);
        let update = |expression: &str, condition: &str| {
            self.client
                .update_item()
                .table_name(&self.table)
                .key(PK, s(connection_pk(connection_id)))
                .key(SK, s(META))
                .update_expression(expression.to_owned())
                .condition_expression(condition.to_owned())
                .expression_attribute_names("#pk", PK)
                .expression_attribute_names("#tat", SEND_TAT)
        };
        let idle = update(
            "SET #tat = :next",
            "attribute_exists(#pk) AND (attribute_not_exists(#tat) OR #tat < :now)",
        )
        .expression_attribute_values(":now", n(now_ms))
        .expression_attribute_values(":next", n(now_ms.saturating_add(interval_ms)))
        .send()
        .await;
        match idle {
            Ok(_) => return Ok(true),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|se| se.is_conditional_check_failed_exception()) => {}
            Err(e) => return Err(backend("UpdateItem", e)),
        }
        let busy = update(
            "SET #tat = #tat + :interval",
            "attribute_exists(#pk) AND #tat <= :limit",
        )
        .expression_attribute_values(":interval", n(interval_ms))
        .expression_attribute_values(":limit", n(now_ms.saturating_add(tolerance)))
        .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
        .send()
        .await;
        match busy {
            Ok(_) => Ok(true),
            Err(SdkError::ServiceError(e)) if e.err().is_conditional_check_failed_exception() => {
                // With ALL_OLD the failure carries the row when there is one.
                match e.err() {
                    UpdateItemError::ConditionalCheckFailedException(c) if c.item().is_none() => {
                        Err(StoreError::NotConnected(connection_id.to_owned()))
                    }
                    _ => Ok(false),
                }
            }
            Err(e) => Err(backend("UpdateItem", e)),
        }
    }

    /// The cap holds under concurrency without a read: the connection item counts its
    /// subscriptions (`topicCount`), and one transaction raises the count, on condition that
    /// the connection is live and under the cap, and puts the subscription, on condition that
    /// it is new. Either condition failing cancels both (DynamoDB API Reference,
    /// "TransactWriteItems": all or nothing, with one cancellation reason per item, in order).
    /// Only then, to tell a renewal from a refusal, a second transaction renews an existing
    /// subscription (the same condition check and put as before the cap existed).
    async fn subscribe(
        &self,
        connection_id: &str,
        topic: &str,
        ttl: i64,
        now: i64,
        max_topics: usize,
    ) -> Result<(), StoreError> {
        self.subscribe_item(connection_id, topic, None, ttl, now, max_topics)
            .await
            .map(|_| ())
    }

    async fn unsubscribe(&self, connection_id: &str, topic: &str) -> Result<(), StoreError> {
        self.unsubscribe_item(connection_id, topic).await.map(|_| ())
    }

    fn members(&self, group: Group, now: i64) -> Pages {
        match group {
            Group::Everyone => self.scan_everyone(now),
            Group::User(user) => self.query_index(BY_USER, USER_ID, user, now),
            Group::Topic(topic) => self.query_index(BY_TOPIC, TOPIC, topic, now),
        }
    }

    async fn touch_user(&self, user_id: &str, at: i64, ttl: i64) -> Result<(), StoreError> {
        // Only lastActiveAt and ttl: a userId attribute would put this item in `byUser`.
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(PK, s(user_pk(user_id)))
            .key(SK, s(PRESENCE))
            .update_expression("SET #la = :at, #ttl = :ttl")
            .condition_expression("attribute_not_exists(#la) OR #la <= :at")
            .expression_attribute_names("#la", LAST_ACTIVE_AT)
            .expression_attribute_names("#ttl", TTL)
            .expression_attribute_values(":at", n(at))
            .expression_attribute_values(":ttl", n(ttl))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            // A later time is already stored: keep it.
            Err(e)
                if e.as_service_error()
                    .is_some_and(|se| se.is_conditional_check_failed_exception()) =>
            {
                Ok(())
            }
            Err(e) => Err(backend("UpdateItem", e)),
        }
    }

    async fn presence(&self, user_ids: &[String], now: i64) -> Result<Vec<Presence>, StoreError> {
        // Futures built before the stream, not by a closure in it: see push.rs (rust-lang/rust#102211).
        let lookups: Vec<_> = user_ids.iter().map(|u| self.has_live_connection(u, now)).collect();
        let online = stream::iter(lookups)
            .buffered(PRESENCE_CONCURRENCY)
            .try_collect::<Vec<bool>>();
        let (last_active, online) = tokio::try_join!(self.last_active(user_ids, now), online)?;
        Ok(user_ids
            .iter()
            .zip(online)
            .map(|(user, online)| Presence {
                user_id: user.clone(),
                online,
                last_active_at: last_active.get(user).copied(),
            })
            .collect())
    }

    fn start(&self, group: &Group) -> Vec<Cursor> {
        match group {
            Group::Everyone => (0..self.scan_segments as u32)
                .map(|index| Cursor {
                    segment: Some(Segment {
                        index,
                        total: self.scan_segments as u32,
                    }),
                    after: None,
                })
                .collect(),
            _ => vec![Cursor::default()],
        }
    }

    async fn record(&self, publication: &NewPublication<'_>, now: i64) -> Result<Recorded, StoreError> {
        self.record_publication(publication, now).await
    }

    async fn history(
        &self,
        stream: &str,
        after: u64,
        limit: usize,
        keep: u64,
        ttl: i64,
        now: i64,
    ) -> Result<History, StoreError> {
        self.read_history(stream, after, limit, keep, ttl, now).await
    }

    async fn subscribe_member(
        &self,
        connection_id: &str,
        user_id: &str,
        topic: &str,
        ttl: i64,
        now: i64,
        max_topics: usize,
    ) -> Result<bool, StoreError> {
        self.subscribe_item(connection_id, topic, Some(user_id), ttl, now, max_topics)
            .await
    }

    async fn unsubscribe_member(&self, connection_id: &str, topic: &str) -> Result<bool, StoreError> {
        self.unsubscribe_item(connection_id, topic).await
    }

    async fn member_connections(&self, topic: &str, user_id: &str, now: i64) -> Result<Vec<String>, StoreError> {
        self.connections_of_member(topic, user_id, now).await
    }

    fn topic_members(&self, topic: &str, now: i64) -> Pages {
        self.member_pages(topic, now)
    }

    async fn online_users(&self, cursor: &OnlineCursor, limit: usize, now: i64) -> Result<OnlinePage, StoreError> {
        self.online_page(cursor, limit, now).await
    }

    async fn page(&self, group: &Group, cursor: &Cursor, limit: usize, now: i64) -> Result<Page, StoreError> {
        let limit = i32::try_from(limit).unwrap_or(i32::MAX).max(1);
        let limit = self.page_size.map_or(limit, |cap| cap.min(limit));
        let (index, hash, value) = match group {
            Group::Everyone => {
                let mut scan = self
                    .client
                    .scan()
                    .table_name(&self.table)
                    .index_name(BY_USER)
                    .expression_attribute_names("#c", CONNECTION_ID)
                    .expression_attribute_names("#ttl", TTL)
                    .projection_expression("#c, #ttl")
                    .set_exclusive_start_key(start_key(cursor))
                    .limit(limit);
                if let Some(segment) = cursor.segment {
                    scan = scan.segment(segment.index as i32).total_segments(segment.total as i32);
                }
                let out = scan.send().await.map_err(|e| backend("Scan", e))?;
                return Ok(Page {
                    ids: live_ids(out.items.unwrap_or_default(), now),
                    next: next_cursor(cursor.segment, out.last_evaluated_key, "Scan")?,
                });
            }
            Group::User(user) => (BY_USER, USER_ID, user),
            Group::Topic(topic) => (BY_TOPIC, TOPIC, topic),
        };
        let out = self
            .index_query(index, hash, value.clone())
            .set_exclusive_start_key(start_key(cursor))
            .limit(limit)
            .send()
            .await
            .map_err(|e| backend("Query", e))?;
        Ok(Page {
            ids: live_ids(out.items.unwrap_or_default(), now),
            next: next_cursor(None, out.last_evaluated_key, "Query")?,
        })
    }
}
