//! What the DynamoDB store asks of the table: calls per operation and the read and write
//! capacity they consumed, measured on the SDK client by an interceptor so no query builder has
//! to know.
//!
//! Every Query, Scan, GetItem and BatchGetItem, and every PutItem, UpdateItem, DeleteItem,
//! BatchWriteItem and TransactWriteItems, asks for `ReturnConsumedCapacity=TOTAL` (a few bytes
//! more per response, no extra cost; "DynamoDB read and write operations" — the capacity a
//! write consumed comes back with it, as for reads) and adds the answer to a [`CapacityMeter`].
//! Each read is also logged at DEBUG with its operation and units, inside the caller's span: a
//! push's reads carry its SQS `message_id`, which gives an operator the cost of one push even
//! while a batch's records fan out concurrently (a per-push sum would need the handlers to
//! know the backend). Benchmarks and tests read the meter's totals: `scripts/bench-dynamodb-cost.sh`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use aws_sdk_dynamodb::config::interceptors::{
    BeforeSerializationInterceptorContextMut, FinalizerInterceptorContextRef,
};
use aws_sdk_dynamodb::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_dynamodb::operation::batch_get_item::{BatchGetItemInput, BatchGetItemOutput};
use aws_sdk_dynamodb::operation::batch_write_item::{BatchWriteItemInput, BatchWriteItemOutput};
use aws_sdk_dynamodb::operation::delete_item::{DeleteItemInput, DeleteItemOutput};
use aws_sdk_dynamodb::operation::get_item::{GetItemInput, GetItemOutput};
use aws_sdk_dynamodb::operation::put_item::{PutItemInput, PutItemOutput};
use aws_sdk_dynamodb::operation::query::{QueryInput, QueryOutput};
use aws_sdk_dynamodb::operation::scan::{ScanInput, ScanOutput};
use aws_sdk_dynamodb::operation::transact_write_items::{TransactWriteItemsInput, TransactWriteItemsOutput};
use aws_sdk_dynamodb::operation::update_item::{UpdateItemInput, UpdateItemOutput};
use aws_sdk_dynamodb::types::{ConsumedCapacity, ReturnConsumedCapacity};
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::orchestrator::Metadata;

/// One operation's use of the table.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct OperationUse {
    /// Completed calls, failed ones included (a paginated read is one call per page).
    pub calls: u64,
    /// Read capacity units the table reported for those calls.
    pub read_units: f64,
    /// Write capacity units the table reported for those calls.
    pub write_units: f64,
}

/// Totals per operation name (`Query`, `Scan`, `PutItem`, …).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Usage(pub BTreeMap<String, OperationUse>);

impl Usage {
    pub fn calls(&self, operation: &str) -> u64 {
        self.0.get(operation).map_or(0, |u| u.calls)
    }

    pub fn read_units(&self) -> f64 {
        // A fold from +0.0: an empty f64 sum is -0.0.
        self.0.values().fold(0.0, |total, u| total + u.read_units)
    }

    pub fn write_units(&self) -> f64 {
        self.0.values().fold(0.0, |total, u| total + u.write_units)
    }

    /// What happened between `earlier` and this snapshot.
    pub fn since(&self, earlier: &Usage) -> Usage {
        let mut delta = BTreeMap::new();
        for (op, now) in &self.0 {
            let before = earlier.0.get(op).copied().unwrap_or_default();
            if now.calls > before.calls {
                let used = OperationUse {
                    calls: now.calls - before.calls,
                    read_units: now.read_units - before.read_units,
                    write_units: now.write_units - before.write_units,
                };
                delta.insert(op.clone(), used);
            }
        }
        Usage(delta)
    }
}

/// Shared by every clone of one store; cheap enough to leave on in production.
#[derive(Debug, Default)]
pub struct CapacityMeter {
    totals: Mutex<BTreeMap<String, OperationUse>>,
}

impl CapacityMeter {
    pub fn usage(&self) -> Usage {
        Usage(self.lock().clone())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, OperationUse>> {
        self.totals.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn record(&self, operation: &str, read_units: f64, write_units: f64) {
        let mut totals = self.lock();
        // Looked up first so a known operation costs no allocation.
        if !totals.contains_key(operation) {
            totals.insert(operation.to_owned(), OperationUse::default());
        }
        if let Some(entry) = totals.get_mut(operation) {
            entry.calls += 1;
            entry.read_units += read_units;
            entry.write_units += write_units;
        }
    }
}

/// The client-side hook that fills a [`CapacityMeter`].
#[derive(Debug, Clone)]
pub(crate) struct MeterInterceptor(pub Arc<CapacityMeter>);

fn units(capacity: Option<&ConsumedCapacity>) -> f64 {
    capacity.and_then(|c| c.capacity_units()).unwrap_or(0.0)
}

impl Intercept for MeterInterceptor {
    fn name(&self) -> &'static str {
        "wshub::store::capacity"
    }

    fn modify_before_serialization(
        &self,
        context: &mut BeforeSerializationInterceptorContextMut<'_>,
        _runtime_components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let input = context.input_mut();
        let total = Some(ReturnConsumedCapacity::Total);
        if let Some(query) = input.downcast_mut::<QueryInput>() {
            query.return_consumed_capacity = total;
        } else if let Some(scan) = input.downcast_mut::<ScanInput>() {
            scan.return_consumed_capacity = total;
        } else if let Some(get) = input.downcast_mut::<GetItemInput>() {
            get.return_consumed_capacity = total;
        } else if let Some(batch) = input.downcast_mut::<BatchGetItemInput>() {
            batch.return_consumed_capacity = total;
        } else if let Some(put) = input.downcast_mut::<PutItemInput>() {
            put.return_consumed_capacity = total;
        } else if let Some(update) = input.downcast_mut::<UpdateItemInput>() {
            update.return_consumed_capacity = total;
        } else if let Some(delete) = input.downcast_mut::<DeleteItemInput>() {
            delete.return_consumed_capacity = total;
        } else if let Some(batch) = input.downcast_mut::<BatchWriteItemInput>() {
            batch.return_consumed_capacity = total;
        } else if let Some(transaction) = input.downcast_mut::<TransactWriteItemsInput>() {
            transaction.return_consumed_capacity = total;
        }
        Ok(())
    }

    fn read_after_execution(
        &self,
        context: &FinalizerInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let operation = cfg.load::<Metadata>().map_or("unknown", |m| m.name());
        // (read units, write units); a failed call reports none (a failed conditional write
        // is still charged, but its error carries no figure).
        let (read_units, write_units) = match context.output_or_error() {
            Some(Ok(output)) => {
                if let Some(o) = output.downcast_ref::<QueryOutput>() {
                    (units(o.consumed_capacity()), 0.0)
                } else if let Some(o) = output.downcast_ref::<ScanOutput>() {
                    (units(o.consumed_capacity()), 0.0)
                } else if let Some(o) = output.downcast_ref::<GetItemOutput>() {
                    (units(o.consumed_capacity()), 0.0)
                } else if let Some(o) = output.downcast_ref::<BatchGetItemOutput>() {
                    (o.consumed_capacity().iter().map(|c| units(Some(c))).sum(), 0.0)
                } else if let Some(o) = output.downcast_ref::<PutItemOutput>() {
                    (0.0, units(o.consumed_capacity()))
                } else if let Some(o) = output.downcast_ref::<UpdateItemOutput>() {
                    (0.0, units(o.consumed_capacity()))
                } else if let Some(o) = output.downcast_ref::<DeleteItemOutput>() {
                    (0.0, units(o.consumed_capacity()))
                } else if let Some(o) = output.downcast_ref::<BatchWriteItemOutput>() {
                    (0.0, o.consumed_capacity().iter().map(|c| units(Some(c))).sum())
                } else if let Some(o) = output.downcast_ref::<TransactWriteItemsOutput>() {
                    (0.0, o.consumed_capacity().iter().map(|c| units(Some(c))).sum())
                } else {
                    (0.0, 0.0)
                }
            }
            _ => (0.0, 0.0),
        };
        self.0.record(operation, read_units, write_units);
        if read_units > 0.0 {
            tracing::debug!(operation, read_units, "dynamodb read");
        }
        if write_units > 0.0 {
            tracing::debug!(operation, write_units, "dynamodb write");
        }
        Ok(())
    }
}
