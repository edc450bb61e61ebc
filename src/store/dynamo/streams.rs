//! Streams in DynamoDB: the head, the publications and the idempotency keys of a stream share
//! its partition `STREAM#<stream>` ([`crate::store::table`]).
//!
//! Recording a publication costs at most three write requests and no read on the happy path:
//! 1. with a key only: a conditional `PutItem` claims `KEY#<key>` (a held key is read back with
//!    one `GetItem` instead, and nothing new is written);
//! 2. `UpdateItem ADD seq :1` on the head, which returns the new seq and the epoch; a missing
//!    or expired head is first replaced by a conditional `PutItem` (seq 0, a new epoch), so
//!    `ADD` never creates the item (and concurrent creators cannot both start at 1);
//! 3. one `BatchWriteItem` with the publication and the key's seq.
//!
//! Reads take one consistent `GetItem` of the head and one `Query` of the seq range, whatever
//! the number of publications read ("Query operations in DynamoDB" — a Query reads items of one
//! partition in sort-key order, up to 1 MB per call).

use std::collections::HashMap;

use aws_sdk_dynamodb::types::{PutRequest, ReturnValue, WriteRequest};

use super::{backend, get_s, get_ttl, n, s, DynamoStore, Item};
use crate::store::stream::{first_kept, new_epoch};
use crate::store::table::*;
use crate::store::{is_live, History, NewPublication, Recorded, StoreError, StoredPublication, StreamPos};

/// Tries of `ADD` when the head had to be (re)created in between.
const HEAD_TRIES: usize = 3;

fn get_n(item: &Item, name: &str) -> Option<u64> {
    item.get(name).and_then(|v| v.as_n().ok()).and_then(|v| v.parse().ok())
}

fn pos_of(item: &Item) -> Option<StreamPos> {
    Some(StreamPos {
        seq: get_n(item, SEQ)?,
        epoch: get_s(item, EPOCH)?,
    })
}

fn is_condition_failure<E: aws_sdk_dynamodb::error::ProvideErrorMetadata>(e: &E) -> bool {
    e.code() == Some("ConditionalCheckFailedException")
}

impl DynamoStore {
    /// Puts a new head (seq 0, new epoch) unless a live one exists; either way the caller
    /// reads or updates the live one next.
    async fn create_head(&self, stream: &str, ttl: i64, now: i64) -> Result<(), StoreError> {
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .item(PK, s(stream_pk(stream)))
            .item(SK, s(HEAD))
            .item(SEQ, n(0))
            .item(EPOCH, s(new_epoch()))
            .item(TTL, n(ttl))
            .condition_expression("attribute_not_exists(#pk) OR #ttl <= :now")
            .expression_attribute_names("#pk", PK)
            .expression_attribute_names("#ttl", TTL)
            .expression_attribute_values(":now", n(now))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) if e.as_service_error().is_some_and(is_condition_failure) => Ok(()),
            Err(e) => Err(backend("PutItem", e)),
        }
    }

    /// The next seq of the live head, extending its life to `ttl`.
    async fn next_seq(&self, stream: &str, ttl: i64, now: i64) -> Result<StreamPos, StoreError> {
        for _ in 0..HEAD_TRIES {
            let result = self
                .client
                .update_item()
                .table_name(&self.table)
                .key(PK, s(stream_pk(stream)))
                .key(SK, s(HEAD))
                .update_expression("ADD #seq :one SET #ttl = :ttl")
                .condition_expression("attribute_exists(#pk) AND #ttl > :now")
                .expression_attribute_names("#pk", PK)
                .expression_attribute_names("#seq", SEQ)
                .expression_attribute_names("#ttl", TTL)
                .expression_attribute_values(":one", n(1))
                .expression_attribute_values(":ttl", n(ttl))
                .expression_attribute_values(":now", n(now))
                .return_values(ReturnValue::AllNew)
                .send()
                .await;
            match result {
                Ok(out) => {
                    return out
                        .attributes
                        .as_ref()
                        .and_then(pos_of)
                        .ok_or_else(|| StoreError::Backend {
                            op: "UpdateItem",
                            message: "the stream head came back without seq and epoch".into(),
                        })
                }
                Err(e) if e.as_service_error().is_some_and(is_condition_failure) => {
                    self.create_head(stream, ttl, now).await?;
                }
                Err(e) => return Err(backend("UpdateItem", e)),
            }
        }
        Err(StoreError::Backend {
            op: "UpdateItem",
            message: format!("the head of stream {stream:?} kept expiring"),
        })
    }

    /// Claims an idempotency key. `None`: claimed (or taken over from the same owner's earlier
    /// attempt that never got a seq); `Some`: the key is held, and what that means here.
    async fn claim_key(&self, p: &NewPublication<'_>, key: &str, now: i64) -> Result<Option<Recorded>, StoreError> {
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .item(PK, s(stream_pk(p.stream)))
            .item(SK, s(key_sk(key)))
            .item(OWNER, s(p.owner))
            .item(TTL, n(p.ttl))
            .condition_expression("attribute_not_exists(#pk) OR #ttl <= :now")
            .expression_attribute_names("#pk", PK)
            .expression_attribute_names("#ttl", TTL)
            .expression_attribute_values(":now", n(now))
            .send()
            .await;
        match result {
            Ok(_) => return Ok(None),
            Err(e) if e.as_service_error().is_some_and(is_condition_failure) => {}
            Err(e) => return Err(backend("PutItem", e)),
        }
        let held = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(PK, s(stream_pk(p.stream)))
            .key(SK, s(key_sk(key)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| backend("GetItem", e))?
            .item
            .unwrap_or_default();
        let pos = pos_of(&held);
        let same_owner = get_s(&held, OWNER).as_deref() == Some(p.owner);
        Ok(match (same_owner, pos) {
            (true, Some(pos)) => Some(Recorded::Again(pos)),
            // The same owner's earlier attempt stopped before it got a seq: go on as new.
            (true, None) => None,
            (false, pos) => Some(Recorded::Duplicate(pos)),
        })
    }

    pub(super) async fn record_publication(&self, p: &NewPublication<'_>, now: i64) -> Result<Recorded, StoreError> {
        if let Some(key) = p.key {
            if let Some(held) = self.claim_key(p, key, now).await? {
                return Ok(held);
            }
        }
        let pos = self.next_seq(p.stream, p.ttl, now).await?;
        let mut puts = vec![HashMap::from([
            (PK.to_owned(), s(stream_pk(p.stream))),
            (SK.to_owned(), s(seq_sk(pos.seq))),
            (EPOCH.to_owned(), s(&pos.epoch)),
            (BODY.to_owned(), s(p.body)),
            (TTL.to_owned(), n(p.ttl)),
        ])];
        if let Some(key) = p.key {
            puts.push(HashMap::from([
                (PK.to_owned(), s(stream_pk(p.stream))),
                (SK.to_owned(), s(key_sk(key))),
                (OWNER.to_owned(), s(p.owner)),
                (SEQ.to_owned(), n(pos.seq as i64)),
                (EPOCH.to_owned(), s(&pos.epoch)),
                (TTL.to_owned(), n(p.ttl)),
            ]));
        }
        self.put_items(puts).await?;
        Ok(Recorded::New(pos))
    }

    /// `BatchWriteItem` puts, unprocessed items retried with back-off.
    async fn put_items(&self, items: Vec<Item>) -> Result<(), StoreError> {
        let requests = items
            .into_iter()
            .map(|item| {
                WriteRequest::builder()
                    .put_request(PutRequest::builder().set_item(Some(item)).build().expect("item is set"))
                    .build()
            })
            .collect();
        self.batch_write(requests).await
    }

    pub(super) async fn read_history(
        &self,
        stream: &str,
        after: u64,
        limit: usize,
        keep: u64,
        ttl: i64,
        now: i64,
    ) -> Result<History, StoreError> {
        let head = self.live_head(stream, ttl, now).await?;
        let from = first_kept(head.seq, after, keep);
        if limit == 0 || from > head.seq {
            return Ok(History {
                head,
                publications: Vec::new(),
                more: false,
            });
        }
        let mut publications = Vec::new();
        let mut more = false;
        let mut start: Option<Item> = None;
        // One Query reads the whole page (a second only when DynamoDB's 1 MB page cap cuts it).
        loop {
            let out = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("#pk = :pk AND #sk BETWEEN :from AND :to")
                .expression_attribute_names("#pk", PK)
                .expression_attribute_names("#sk", SK)
                .expression_attribute_values(":pk", s(stream_pk(stream)))
                .expression_attribute_values(":from", s(seq_sk(from)))
                .expression_attribute_values(":to", s(seq_sk(head.seq)))
                .consistent_read(true)
                .limit(i32::try_from(limit + 1 - publications.len()).unwrap_or(i32::MAX))
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| backend("Query", e))?;
            for item in out.items.unwrap_or_default() {
                let seq = get_s(&item, SK).and_then(|sk| sk.strip_prefix("SEQ#").and_then(|n| n.parse::<u64>().ok()));
                let current = get_s(&item, EPOCH).as_deref() == Some(head.epoch.as_str());
                let (Some(seq), Some(body), true, true) =
                    (seq, get_s(&item, BODY), current, is_live(get_ttl(&item), now))
                else {
                    continue;
                };
                if publications.len() == limit {
                    more = true;
                    break;
                }
                publications.push(StoredPublication { seq, body });
            }
            start = out.last_evaluated_key.filter(|k| !k.is_empty());
            if more || start.is_none() {
                break;
            }
        }
        Ok(History {
            head,
            publications,
            more,
        })
    }

    /// The live head, created first when missing or expired.
    async fn live_head(&self, stream: &str, ttl: i64, now: i64) -> Result<StreamPos, StoreError> {
        for _ in 0..HEAD_TRIES {
            let item = self
                .client
                .get_item()
                .table_name(&self.table)
                .key(PK, s(stream_pk(stream)))
                .key(SK, s(HEAD))
                .consistent_read(true)
                .send()
                .await
                .map_err(|e| backend("GetItem", e))?
                .item;
            if let Some(item) = item.filter(|i| is_live(get_ttl(i), now)) {
                if let Some(pos) = pos_of(&item) {
                    return Ok(pos);
                }
            }
            self.create_head(stream, ttl, now).await?;
        }
        Err(StoreError::Backend {
            op: "GetItem",
            message: format!("the head of stream {stream:?} kept expiring"),
        })
    }
}
