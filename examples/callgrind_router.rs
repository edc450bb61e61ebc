//! Instructions per event, for callgrind (`scripts/bench-cpu.sh`): replays one event type of
//! benches/workload `K` times, either through classification alone or through
//! classification and handling.
//!
//! Usage: `callgrind_router CASE classify|route K apply|skip`. Both modes prepare the same
//! K inputs (event clones, fresh stores where the event needs one); only `apply` runs them.
//! The difference of the two runs' instruction counts, over K, is the cost of one event, with
//! start-up and preparation cancelled out and no symbol names needed (the release build is
//! stripped). It includes dropping the event and the response, as an invocation does.

#[path = "../benches/workload/mod.rs"]
mod workload;

use std::process::ExitCode;

use wshub::Event;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [case, stage, k, mode] = args.as_slice() else {
        let names: Vec<&str> = workload::cases().iter().map(|c| c.name).collect();
        eprintln!(
            "usage: callgrind_router CASE classify|route K apply|skip\ncases: {}",
            names.join(" ")
        );
        return ExitCode::from(2);
    };
    let Some(case) = workload::cases().into_iter().find(|c| c.name == case.as_str()) else {
        eprintln!("unknown case {case}");
        return ExitCode::from(2);
    };
    let Ok(k) = k.parse::<usize>() else {
        eprintln!("K must be a number");
        return ExitCode::from(2);
    };
    let apply = mode == "apply";
    let bench = workload::Bench::new();
    // Once, in both modes: checks the case and warms whatever is initialised on first use.
    bench.check(&case);
    let inputs: Vec<_> = (0..k).map(|_| (bench.fresh_hub(case.needs), case.event())).collect();
    let mut kept = Vec::with_capacity(k);
    match (stage.as_str(), apply) {
        (_, false) => kept.extend(inputs.into_iter().map(|(hub, _)| hub)),
        ("classify", true) => {
            for (hub, event) in inputs {
                std::hint::black_box(Event::from_json(event).is_ok());
                kept.push(hub);
            }
        }
        ("route", true) => {
            for (hub, event) in inputs {
                std::hint::black_box(bench.run(hub.as_ref().unwrap_or(&bench.world), event));
                kept.push(hub);
            }
        }
        (other, _) => {
            eprintln!("unknown stage {other}");
            return ExitCode::from(2);
        }
    }
    // Fresh stores are dropped here in both modes, so their teardown cancels out too.
    drop(kept);
    ExitCode::SUCCESS
}
