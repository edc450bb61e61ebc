//! CPU per event: criterion benchmarks of classification alone (`Event::from_json`) and of
//! classification plus handling (`wshub::handle`) for every event type, against the in-memory
//! store and a notifier that accepts everything (benches/workload). Run by
//! `scripts/bench-cpu.sh`, which also counts instructions under callgrind; figures in BENCHMARKS.md.
//!
//! Under `cargo test --all-targets` criterion runs each benchmark once, untimed, after the
//! workload checked every case does what it claims.

use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use wshub::Event;

mod workload;

fn classify(c: &mut Criterion) {
    let mut group = c.benchmark_group("classify");
    for case in workload::cases() {
        // The event's clone is made in setup, outside the timing: the runtime hands over an owned Value.
        group.bench_function(case.name, |b| {
            b.iter_batched(|| case.event(), Event::from_json, BatchSize::SmallInput)
        });
    }
    group.finish();
}

fn route(c: &mut Criterion) {
    let bench = workload::Bench::new();
    let mut group = c.benchmark_group("route");
    for case in workload::cases() {
        bench.check(&case);
        group.bench_function(case.name, |b| {
            b.iter_batched(
                || (bench.fresh_hub(case.needs), case.event()),
                |(fresh, event)| {
                    let response = bench.run(fresh.as_ref().unwrap_or(&bench.world), event);
                    // Returned, so dropping the fresh store is not timed either.
                    (fresh, response)
                },
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    // Shorter than the defaults (3 s warm-up, 5 s, 100 samples): 24 benchmarks in about 2 minutes.
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(50);
    targets = classify, route
}
criterion_main!(benches);
