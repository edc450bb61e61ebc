//! Operational metrics as CloudWatch Embedded Metric Format (EMF) documents on stdout.
//!
//! Lambda sends everything the function writes to stdout to its log group, and CloudWatch Logs
//! extracts metrics from any log event that follows the embedded metric format, with no agent
//! and no `cloudwatch:PutMetricData` permission (AWS: "Using the embedded metric format with
//! Lambda"). The document shape follows AWS's "Specification: Embedded metric format": a root
//! `_aws` object with `Timestamp` (epoch milliseconds) and `CloudWatchMetrics`, an array of
//! metric directives, each with a `Namespace`, `Dimensions` (an array of dimension sets, each an
//! array of member names) and `Metrics` (`Name` and `Unit`); every name a directive references is
//! a member of the root, a dimension's value a string, a metric's value a number or an array of
//! at most 100 numbers.
//!
//! How it is used: every handler reaches the per-invocation accumulator through a task-local,
//! so the hooks are one line where the thing happens ([`add`], [`record`]) and nothing needs to
//! be threaded through signatures. The Lambda bootstrap runs each invocation inside [`measure`]
//! and prints one document per invocation ([`Accumulator::to_emf`]), never one per recipient.
//! Outside [`measure`] (the local hub, most tests) the hooks do nothing.
//!
//! The documents carry only counts, durations and the two dimensions: no token, user id,
//! connection id, topic or message body.

use std::cell::RefCell;
use std::future::Future;
use std::time::Duration;

use serde_json::{json, Map, Value};

/// The CloudWatch namespace (public: alarms and dashboards name it).
pub const NAMESPACE: &str = "wshub";
/// Dimension names: the API Gateway stage (`STAGE_NAME`) and the Lambda function.
pub const STAGE_DIMENSION: &str = "stage";
pub const FUNCTION_DIMENSION: &str = "function";
/// The spec's limit on the values of one metric in one document.
pub const MAX_VALUES: usize = 100;

/// Every metric the binary emits. The names are public (README, template alarms and dashboard;
/// tests/template.rs checks the template names only these).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Metric {
    /// `$connect` routes that stored their connection.
    Connects,
    /// Authorizer denials (the upgrade fails with 403).
    ConnectsDenied,
    /// `$disconnect` routes.
    Disconnects,
    /// Frames posted to a connection (@connections 200).
    Delivered,
    /// Connections found closed (@connections 410) and removed.
    Gone,
    /// @connections answers 429, every attempt counted (retries included).
    Throttled,
    /// Recipients not delivered after the retries (or cut at the deadline).
    FailedPosts,
    /// Shard jobs handed to the push queue (a large push's rest, or undelivered ids).
    ShardHandOffs,
    /// Messages recorded in a topic's history (counted by the publish path).
    Publications,
    /// Recipients one fan-out tried (one value per push, or per shard job of a large push).
    FanoutRecipients,
    /// Wall time of one fan-out (one value per push or shard job).
    FanoutDuration,
    /// Wall time of one authorizer decision, secrets included.
    AuthorizerLatency,
}

/// The units used (names as in CloudWatch's `StandardUnit`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Count,
    Milliseconds,
}

impl Unit {
    pub const fn as_str(self) -> &'static str {
        match self {
            Unit::Count => "Count",
            Unit::Milliseconds => "Milliseconds",
        }
    }
}

impl Metric {
    /// In emission order.
    pub const ALL: [Metric; 12] = [
        Metric::Connects,
        Metric::ConnectsDenied,
        Metric::Disconnects,
        Metric::Delivered,
        Metric::Gone,
        Metric::Throttled,
        Metric::FailedPosts,
        Metric::ShardHandOffs,
        Metric::Publications,
        Metric::FanoutRecipients,
        Metric::FanoutDuration,
        Metric::AuthorizerLatency,
    ];

    pub const fn name(self) -> &'static str {
        match self {
            Metric::Connects => "Connects",
            Metric::ConnectsDenied => "ConnectsDenied",
            Metric::Disconnects => "Disconnects",
            Metric::Delivered => "Delivered",
            Metric::Gone => "Gone",
            Metric::Throttled => "Throttled",
            Metric::FailedPosts => "FailedPosts",
            Metric::ShardHandOffs => "ShardHandOffs",
            Metric::Publications => "Publications",
            Metric::FanoutRecipients => "FanoutRecipients",
            Metric::FanoutDuration => "FanoutDuration",
            Metric::AuthorizerLatency => "AuthorizerLatency",
        }
    }

    pub const fn unit(self) -> Unit {
        match self {
            Metric::FanoutDuration | Metric::AuthorizerLatency => Unit::Milliseconds,
            _ => Unit::Count,
        }
    }

    /// Counters are summed over the invocation; the others keep one value per event, so
    /// CloudWatch's percentiles (p50/p99 of fan-out duration) see each push.
    pub const fn is_counter(self) -> bool {
        !matches!(
            self,
            Metric::FanoutRecipients | Metric::FanoutDuration | Metric::AuthorizerLatency
        )
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Every public metric name, for tests and tooling.
pub fn names() -> impl Iterator<Item = &'static str> {
    Metric::ALL.iter().map(|m| m.name())
}

/// What one invocation recorded.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Accumulator {
    counts: [u64; Metric::ALL.len()],
    values: [Vec<f64>; Metric::ALL.len()],
}

impl Accumulator {
    pub fn add(&mut self, metric: Metric, n: u64) {
        if metric.is_counter() {
            self.counts[metric.index()] = self.counts[metric.index()].saturating_add(n);
        } else {
            self.record(metric, n as f64);
        }
    }

    pub fn record(&mut self, metric: Metric, value: f64) {
        if metric.is_counter() {
            self.add(metric, value.max(0.0) as u64);
            return;
        }
        let values = &mut self.values[metric.index()];
        if values.len() < MAX_VALUES {
            values.push(value);
        } else {
            // More events than one document may carry (a batch above 100 records, which the
            // template's PushBatchSize range rules out): the excess is folded into the largest
            // kept value, so a maximum and the high percentiles are never understated.
            if let Some(max) = values.iter_mut().max_by(|a, b| a.total_cmp(b)) {
                *max = max.max(value);
            }
        }
    }

    /// The summed count of a counter.
    pub fn count(&self, metric: Metric) -> u64 {
        self.counts[metric.index()]
    }

    /// The recorded values of a per-event metric.
    pub fn values(&self, metric: Metric) -> &[f64] {
        &self.values[metric.index()]
    }

    pub fn is_empty(&self) -> bool {
        self.counts.iter().all(|c| *c == 0) && self.values.iter().all(Vec::is_empty)
    }

    /// The invocation's EMF document, with the metrics it recorded (zero counters left out:
    /// CloudWatch treats a missing point as missing data, which the alarms fill with 0), or
    /// `None` when it recorded nothing.
    ///
    /// Two dimension sets: stage and function, and stage alone, so alarms and the dashboard can
    /// read a stage's totals whichever function (or how many) did the work.
    pub fn to_emf(&self, dimensions: &Dimensions, timestamp_ms: u64) -> Option<Value> {
        let mut root = Map::new();
        let mut definitions = Vec::new();
        for metric in Metric::ALL {
            let value = if metric.is_counter() {
                match self.count(metric) {
                    0 => continue,
                    n => json!(n),
                }
            } else {
                match self.values(metric) {
                    [] => continue,
                    [one] => json!(one),
                    many => json!(many),
                }
            };
            root.insert(metric.name().into(), value);
            definitions.push(json!({"Name": metric.name(), "Unit": metric.unit().as_str()}));
        }
        if definitions.is_empty() {
            return None;
        }
        root.insert("level".into(), dimensions.level.clone().into());
        root.insert(STAGE_DIMENSION.into(), dimensions.stage.clone().into());
        root.insert(FUNCTION_DIMENSION.into(), dimensions.function.clone().into());
        root.insert(
            "_aws".into(),
            json!({
                "Timestamp": timestamp_ms,
                "CloudWatchMetrics": [{
                    "Namespace": NAMESPACE,
                    "Dimensions": [[STAGE_DIMENSION, FUNCTION_DIMENSION], [STAGE_DIMENSION]],
                    "Metrics": definitions,
                }],
            }),
        );
        Some(Value::Object(root))
    }
}

/// The dimension values of every document this process writes, and its log level.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dimensions {
    pub stage: String,
    pub function: String,
    /// Not a dimension: the document's `level` member. With the JSON log format Lambda filters
    /// application logs by their `level`, and gives a line without one the level INFO (AWS Lambda
    /// Developer Guide, "Log-level filtering"): a function configured for WARN would drop every
    /// metric. Documents carry the configured level (`AWS_LAMBDA_LOG_LEVEL`), so they always pass.
    pub level: String,
}

impl Dimensions {
    /// `STAGE_NAME` (set by the template) and `AWS_LAMBDA_FUNCTION_NAME` (set by Lambda).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Dimensions {
        let get = |name: &str, default: &str| {
            lookup(name)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
                // CloudWatch dimension values are at most 1024 characters.
                .map(|v| v.chars().take(1024).collect())
                .unwrap_or_else(|| default.to_owned())
        };
        Dimensions {
            stage: get("STAGE_NAME", "default"),
            function: get("AWS_LAMBDA_FUNCTION_NAME", "wshub"),
            level: get("AWS_LAMBDA_LOG_LEVEL", "INFO").to_ascii_uppercase(),
        }
    }
}

tokio::task_local! {
    static CURRENT: RefCell<Accumulator>;
}

/// Adds `n` to a counter of the running invocation (or one value, for a per-event metric).
/// Does nothing outside [`measure`].
pub fn add(metric: Metric, n: u64) {
    let _ = CURRENT.try_with(|m| m.borrow_mut().add(metric, n));
}

/// Records one value of a per-event metric (a duration in milliseconds, a recipient count).
pub fn record(metric: Metric, value: f64) {
    let _ = CURRENT.try_with(|m| m.borrow_mut().record(metric, value));
}

/// Records a duration in milliseconds.
pub fn record_duration(metric: Metric, elapsed: Duration) {
    record(metric, elapsed.as_secs_f64() * 1000.0);
}

/// The outcome counters of one fan-out, plus its recipients and duration (one value each).
pub fn record_fanout(delivered: usize, gone: usize, failed: usize, elapsed: Duration) {
    let _ = CURRENT.try_with(|m| {
        let mut m = m.borrow_mut();
        m.add(Metric::Delivered, delivered as u64);
        m.add(Metric::Gone, gone as u64);
        m.add(Metric::FailedPosts, failed as u64);
        m.record(Metric::FanoutRecipients, (delivered + gone + failed) as f64);
        m.record(Metric::FanoutDuration, elapsed.as_secs_f64() * 1000.0);
    });
}

/// Runs `work` with a fresh accumulator and returns what it recorded. Work spawned onto other
/// tasks records nothing (the hooks sit on the invocation's own task).
pub async fn measure<F: Future>(work: F) -> (F::Output, Accumulator) {
    CURRENT
        .scope(RefCell::new(Accumulator::default()), async move {
            let output = work.await;
            let recorded = CURRENT.with(|m| std::mem::take(&mut *m.borrow_mut()));
            (output, recorded)
        })
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dims() -> Dimensions {
        Dimensions {
            stage: "prod".into(),
            function: "hub".into(),
            level: "WARN".into(),
        }
    }

    #[tokio::test]
    async fn hooks_record_inside_measure_and_do_nothing_outside() {
        add(Metric::Connects, 1);
        let ((), m) = measure(async {
            add(Metric::Delivered, 2);
            add(Metric::Delivered, 3);
            record_duration(Metric::AuthorizerLatency, Duration::from_micros(1500));
            record_fanout(4, 1, 0, Duration::from_millis(7));
        })
        .await;
        assert_eq!(m.count(Metric::Connects), 0, "outside measure nothing is kept");
        assert_eq!(m.count(Metric::Delivered), 9);
        assert_eq!(m.count(Metric::Gone), 1);
        assert_eq!(m.values(Metric::AuthorizerLatency), [1.5]);
        assert_eq!(m.values(Metric::FanoutRecipients), [5.0]);
        assert_eq!(m.values(Metric::FanoutDuration), [7.0]);
    }

    #[test]
    fn a_document_has_the_spec_shape_and_only_recorded_metrics() {
        assert_eq!(Accumulator::default().to_emf(&dims(), 1), None);
        let mut m = Accumulator::default();
        m.add(Metric::Throttled, 2);
        m.record(Metric::FanoutDuration, 3.0);
        m.record(Metric::FanoutDuration, 5.0);
        let doc = m.to_emf(&dims(), 1_700_000_000_000).unwrap();
        assert_eq!(
            doc,
            json!({
                "_aws": {
                    "Timestamp": 1_700_000_000_000u64,
                    "CloudWatchMetrics": [{
                        "Namespace": "wshub",
                        "Dimensions": [["stage", "function"], ["stage"]],
                        "Metrics": [
                            {"Name": "Throttled", "Unit": "Count"},
                            {"Name": "FanoutDuration", "Unit": "Milliseconds"},
                        ],
                    }],
                },
                "level": "WARN",
                "stage": "prod",
                "function": "hub",
                "Throttled": 2,
                "FanoutDuration": [3.0, 5.0],
            })
        );
    }

    #[test]
    fn values_past_the_spec_limit_fold_into_the_maximum() {
        let mut m = Accumulator::default();
        for v in 0..MAX_VALUES + 5 {
            m.record(Metric::FanoutDuration, v as f64);
        }
        let kept = m.values(Metric::FanoutDuration);
        assert_eq!(kept.len(), MAX_VALUES);
        assert_eq!(kept.iter().cloned().fold(0.0, f64::max), (MAX_VALUES + 4) as f64);
    }

    #[test]
    fn names_are_unique_and_dimensions_default() {
        let mut names: Vec<_> = names().collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), Metric::ALL.len());
        for (i, m) in Metric::ALL.iter().enumerate() {
            assert_eq!(m.index(), i, "ALL is in declaration order");
        }
        let d = Dimensions::from_lookup(|_| None);
        assert_eq!(
            (d.stage.as_str(), d.function.as_str(), d.level.as_str()),
            ("default", "wshub", "INFO")
        );
        let d = Dimensions::from_lookup(|name| (name == "AWS_LAMBDA_LOG_LEVEL").then(|| "warn".into()));
        assert_eq!(
            d.level, "WARN",
            "the configured level, so Lambda's filter keeps the document"
        );
    }
}
