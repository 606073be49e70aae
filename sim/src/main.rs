//! `burrow-sim run --seed S [--mode core]` runs one seed and prints its verdict (the trace with `--trace`);
//! `burrow-sim sweep --seeds N [--start S] [--mode core] [--shard k/n]` runs many, re-runs each to compare trace
//! hashes, and prints a summary. A failing seed prints the one line that reproduces it.

use std::process::ExitCode;
use std::time::Instant;

use burrow_sim::{Verdict, run_core};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let value = |flag: &str| args.iter().position(|a| a == flag).and_then(|i| args.get(i + 1)).cloned();
    let mode = value("--mode").unwrap_or_else(|| "core".into());
    if mode != "core" {
        eprintln!("mode {mode}: only the core mode exists so far");
        return ExitCode::from(2);
    }
    match args.first().map(String::as_str) {
        Some("run") => {
            let Some(seed) = value("--seed").and_then(|s| s.parse().ok()) else {
                eprintln!("run needs --seed S");
                return ExitCode::from(2);
            };
            let run = run_core(seed, None);
            if args.iter().any(|a| a == "--trace") {
                for line in &run.trace {
                    println!("{line}");
                }
            }
            println!("seed {seed}: {:?} ({} events, trace hash {:016x})", run.verdict, run.events, run.trace_hash());
            if run.verdict == Verdict::Clean { ExitCode::SUCCESS } else { ExitCode::FAILURE }
        }
        Some("sweep") => {
            let seeds: u64 = value("--seeds").and_then(|s| s.parse().ok()).unwrap_or(1000);
            let start: u64 = value("--start").and_then(|s| s.parse().ok()).unwrap_or(0);
            let (k, n) = value("--shard")
                .and_then(|s| s.split_once('/').map(|(k, n)| (k.parse().ok(), n.parse().ok())))
                .and_then(|(k, n)| Some((k?, n?)))
                .unwrap_or((0u64, 1u64));
            let started = Instant::now();
            let (mut ran, mut events, mut failures, mut nondeterministic) = (0u64, 0u64, 0u64, 0u64);
            for seed in (start..start + seeds).filter(|s| s % n == k) {
                let run = run_core(seed, None);
                let again = run_core(seed, None);
                ran += 1;
                events += run.events + again.events;
                if run.trace_hash() != again.trace_hash() {
                    nondeterministic += 1;
                    println!("seed {seed}: the trace differs between two runs");
                }
                if run.verdict != Verdict::Clean {
                    failures += 1;
                    println!("seed {seed}: {:?}\n  reproduce: {}", run.verdict, run.repro());
                }
            }
            let secs = started.elapsed().as_secs_f64().max(1e-9);
            println!(
                "mode core | seeds {ran} | violations {failures} | determinism re-checks {ran} ({nondeterministic} \
                 differ) | {:.0} seeds/s | {:.0} events/s",
                ran as f64 / secs,
                events as f64 / secs
            );
            if failures == 0 && nondeterministic == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE }
        }
        _ => {
            eprintln!(
                "usage: burrow-sim run --seed S [--mode core] [--trace] | sweep --seeds N [--start S] [--shard k/n]"
            );
            ExitCode::from(2)
        }
    }
}
