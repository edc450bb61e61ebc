//! A validator for CloudWatch Embedded Metric Format documents, written from AWS's
//! "Specification: Embedded metric format": the root holds `_aws` (a metadata object with
//! `Timestamp`, epoch milliseconds, and `CloudWatchMetrics`, an array of metric directives); a
//! directive has exactly `Namespace`, `Dimensions` (an array of dimension sets, each an array of
//! at most 30 member names) and `Metrics` (at most 100 definitions, each a `Name` and optionally a
//! `Unit` from CloudWatch's list and a `StorageResolution` of 1 or 60); every referenced member
//! is present on the root: a dimension's value a string, a metric's value a number or an array of
//! at most 100 numbers.

use std::collections::BTreeMap;

use serde_json::Value;

const UNITS: [&str; 27] = [
    "Seconds",
    "Microseconds",
    "Milliseconds",
    "Bytes",
    "Kilobytes",
    "Megabytes",
    "Gigabytes",
    "Terabytes",
    "Bits",
    "Kilobits",
    "Megabits",
    "Gigabits",
    "Terabits",
    "Percent",
    "Count",
    "Bytes/Second",
    "Kilobytes/Second",
    "Megabytes/Second",
    "Gigabytes/Second",
    "Terabytes/Second",
    "Bits/Second",
    "Kilobits/Second",
    "Megabits/Second",
    "Gigabits/Second",
    "Terabits/Second",
    "Count/Second",
    "None",
];

/// One metric of a document: its unit and values.
#[derive(Debug, Clone, PartialEq)]
pub struct Datum {
    pub unit: String,
    pub values: Vec<f64>,
}

/// A valid document's metrics by name and dimensions by name; panics naming what is invalid.
pub fn validate(doc: &Value) -> (BTreeMap<String, Datum>, BTreeMap<String, String>) {
    let root = doc.as_object().unwrap_or_else(|| panic!("not a JSON object: {doc}"));
    let aws = root["_aws"]
        .as_object()
        .unwrap_or_else(|| panic!("no _aws object: {doc}"));
    for key in aws.keys() {
        assert!(
            ["Timestamp", "CloudWatchMetrics", "LogGroupName", "LogStreamName"].contains(&key.as_str()),
            "unknown _aws member {key}"
        );
    }
    let timestamp = aws["Timestamp"]
        .as_u64()
        .unwrap_or_else(|| panic!("Timestamp must be epoch ms: {doc}"));
    assert!(timestamp > 1_600_000_000_000, "Timestamp in milliseconds: {timestamp}");
    let directives = aws["CloudWatchMetrics"].as_array().expect("CloudWatchMetrics array");
    assert!(!directives.is_empty(), "no metric directive");
    let mut metrics = BTreeMap::new();
    let mut dimensions = BTreeMap::new();
    for directive in directives {
        let d = directive.as_object().expect("directive object");
        let mut keys: Vec<&str> = d.keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(keys, ["Dimensions", "Metrics", "Namespace"], "directive members");
        let namespace = d["Namespace"].as_str().expect("Namespace string");
        assert!((1..=255).contains(&namespace.len()), "Namespace length");
        for set in d["Dimensions"].as_array().expect("Dimensions array") {
            let set = set.as_array().expect("a dimension set is an array");
            assert!(set.len() <= 30, "at most 30 dimensions per set");
            for name in set {
                let name = name.as_str().expect("dimension names are strings");
                let value = root
                    .get(name)
                    .unwrap_or_else(|| panic!("dimension {name} is not a root member"))
                    .as_str()
                    .unwrap_or_else(|| panic!("dimension {name} must be a string"));
                assert!(
                    !value.is_empty() && value.len() <= 1024,
                    "dimension {name} value length"
                );
                dimensions.insert(name.to_owned(), value.to_owned());
            }
        }
        let definitions = d["Metrics"].as_array().expect("Metrics array");
        assert!(definitions.len() <= 100, "at most 100 metrics per directive");
        for def in definitions {
            let def = def.as_object().expect("metric definition object");
            for key in def.keys() {
                assert!(
                    ["Name", "Unit", "StorageResolution"].contains(&key.as_str()),
                    "unknown member {key}"
                );
            }
            let name = def["Name"].as_str().expect("Name string");
            assert!((1..=255).contains(&name.len()), "Name length");
            let unit = def.get("Unit").map_or("None", |u| u.as_str().expect("Unit string"));
            assert!(UNITS.contains(&unit), "unit {unit} is not a CloudWatch unit");
            if let Some(r) = def.get("StorageResolution") {
                assert!(r == 1 || r == 60, "StorageResolution 1 or 60");
            }
            let value = root
                .get(name)
                .unwrap_or_else(|| panic!("metric {name} is not a root member"));
            let values: Vec<f64> = match value {
                Value::Number(n) => vec![n.as_f64().unwrap()],
                Value::Array(items) => {
                    assert!(!items.is_empty() && items.len() <= 100, "{name}: 1 to 100 values");
                    items.iter().map(|v| v.as_f64().expect("numeric values")).collect()
                }
                other => panic!("metric {name} must be a number or an array of numbers, got {other}"),
            };
            metrics.insert(
                name.to_owned(),
                Datum {
                    unit: unit.to_owned(),
                    values,
                },
            );
        }
    }
    // wshub's own contract on top of the spec: its namespace, names and units.
    for directive in directives {
        assert_eq!(directive["Namespace"], wshub::metrics::NAMESPACE);
    }
    for (name, datum) in &metrics {
        let metric = wshub::metrics::Metric::ALL
            .into_iter()
            .find(|m| m.name() == name)
            .unwrap_or_else(|| panic!("{name} is not a metric the code declares"));
        assert_eq!(datum.unit, metric.unit().as_str(), "{name}");
    }
    (metrics, dimensions)
}

/// Totals over many documents: each metric's values summed and counted.
#[derive(Debug, Default)]
pub struct Totals {
    pub sums: BTreeMap<String, f64>,
    pub samples: BTreeMap<String, usize>,
}

impl Totals {
    pub fn add(&mut self, metrics: &BTreeMap<String, Datum>) {
        for (name, datum) in metrics {
            *self.sums.entry(name.clone()).or_default() += datum.values.iter().sum::<f64>();
            *self.samples.entry(name.clone()).or_default() += datum.values.len();
        }
    }

    pub fn sum(&self, name: &str) -> f64 {
        self.sums.get(name).copied().unwrap_or(0.0)
    }

    pub fn samples(&self, name: &str) -> usize {
        self.samples.get(name).copied().unwrap_or(0)
    }
}
