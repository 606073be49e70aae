//! burrow-sim: run, sweep, minimize and replay simulations. `cargo xtask sim ...` picks the right build for the
//! mode (full needs `--cfg madsim`); see `burrow-sim help`.

use std::io::{IsTerminal, Write};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::Instant;

use burrow_model::scenario;
use burrow_sim::core::{defect_name, parse_defect, replay_core, run_core, scenario_actions};
use burrow_sim::full::{FullDefect, run_full, run_seed, this_mode};
use burrow_sim::minimize::{minimize_core, minimize_full};
use burrow_sim::scenario::Scenario;
use burrow_sim::{Mode, Run, Verdict};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const USAGE: &str = "\
usage: burrow-sim <command> [options]

commands:
  run --seed S [--mode M] [--defect D] [--trace]   one seed; --trace prints its timeline
  sweep --seeds N [--start S] [--mode M] [--jobs J] [--shard k/n] [--recheck F] [--defect D]
                                                   many seeds, a share F (default 1: all) run twice to compare
                                                   trace hashes; prints a summary table
  minimize --seed S [--mode M] [--defect D]        shrinks a failing seed and writes the smaller scenario
  replay FILE [--defect D]                         runs a scenario file: a model checker counterexample or a
                                                   minimized core run (core mode), or a JSON scenario (full/tokio)
  help

modes: core (default), full (a --cfg madsim build), tokio (a normal build)
defects (teeth): core: forget-waiters-on-reset, reset-attempts-on-recovery, admit-after-retire, reapply-committed;
                 full/tokio: dropping-store, lying-executor, dropped-resolution
options: --out DIR (default target/sim) is where failing traces and minimized scenarios are written
environment: BURROW_SIM_ECHO=1 prints a full or tokio run's timeline on stderr as it happens (for a run that dies
             before its trace is written)";

struct Args {
    words: Vec<String>,
}

impl Args {
    fn value(&self, flag: &str) -> Option<&str> {
        self.words.iter().position(|a| a == flag).and_then(|i| self.words.get(i + 1)).map(String::as_str)
    }

    fn number(&self, flag: &str) -> Result<Option<u64>, String> {
        self.value(flag).map(|v| v.parse().map_err(|_| format!("{flag} wants a number, not {v:?}"))).transpose()
    }

    fn has(&self, flag: &str) -> bool {
        self.words.iter().any(|a| a == flag)
    }
}

/// What a seed runs under: the mode and, for teeth, a planted defect.
#[derive(Clone, Copy)]
struct Plan {
    mode: Mode,
    core_defect: Option<burrow_model::session::Defect>,
    full_defect: Option<FullDefect>,
}

impl Plan {
    fn from(args: &Args) -> Result<Plan, String> {
        let mode = match args.value("--mode") {
            None => Mode::Core,
            Some(name) => Mode::parse(name).ok_or_else(|| format!("unknown mode {name:?}"))?,
        };
        if !mode.available() {
            return Err(format!(
                "mode {} is not in this build ({} build); run it with `cargo xtask sim ... --mode {}`",
                mode.name(),
                if burrow_env::runtime::SIMULATED { "a --cfg madsim" } else { "a normal" },
                mode.name()
            ));
        }
        let mut plan = Plan { mode, core_defect: None, full_defect: None };
        if let Some(name) = args.value("--defect") {
            match mode {
                Mode::Core => {
                    plan.core_defect = Some(parse_defect(name).ok_or_else(|| format!("unknown defect {name:?}"))?)
                }
                _ => {
                    plan.full_defect = Some(FullDefect::parse(name).ok_or_else(|| format!("unknown defect {name:?}"))?)
                }
            }
        }
        Ok(plan)
    }

    fn run(self, seed: u64) -> Run {
        let attempt = catch_unwind(AssertUnwindSafe(|| match self.mode {
            Mode::Core => run_core(seed, self.core_defect),
            Mode::Full | Mode::Tokio => run_seed(seed, self.full_defect),
        }));
        attempt.unwrap_or_else(|panic| {
            let message = burrow_sim::panic_text(panic.as_ref()).unwrap_or_else(|| "a panic".into());
            Run {
                mode: self.mode,
                seed,
                defect: self.core_defect.map(defect_name).or(self.full_defect.map(FullDefect::name)),
                verdict: Verdict::Safety { property: format!("the run panicked: {message}"), step: 0 },
                trace: Vec::new(),
                events: 0,
            }
        })
    }
}

fn main() -> ExitCode {
    let args = Args { words: std::env::args().skip(1).collect() };
    let out = PathBuf::from(args.value("--out").unwrap_or("target/sim"));
    let result = match args.words.first().map(String::as_str) {
        Some("run") => run(&args, &out),
        Some("sweep") => sweep(&args, &out),
        Some("minimize") => minimize(&args, &out),
        Some("replay") => replay(&args),
        Some("help" | "-h" | "--help") => {
            println!("{USAGE}");
            Ok(true)
        }
        _ => Err(USAGE.to_owned()),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(message) => {
            eprintln!("{message}");
            ExitCode::from(2)
        }
    }
}

fn report_failure(run: &Run, out: &std::path::Path) {
    println!("seed {}: {:?}", run.seed, run.verdict);
    println!("  reproduce: {}", run.repro());
    match run.write_trace(out) {
        Ok((json, timeline)) => println!("  trace: {} and {}", json.display(), timeline.display()),
        Err(error) => println!("  trace not written: {error}"),
    }
}

fn run(args: &Args, out: &std::path::Path) -> Result<bool, String> {
    let plan = Plan::from(args)?;
    let seed = args.number("--seed")?.ok_or("run needs --seed S")?;
    let run = plan.run(seed);
    if args.has("--trace") {
        print!("{}", run.timeline());
    }
    println!(
        "mode {} seed {seed}: {:?} ({} events, trace hash {:016x})",
        run.mode.name(),
        run.verdict,
        run.events,
        run.trace_hash()
    );
    if !run.verdict.is_clean() {
        report_failure(&run, out);
    }
    Ok(run.verdict.is_clean())
}

/// What a worker reports for one seed.
struct Done {
    run: Run,
    /// The second run, when its trace differs from the first.
    differs: Option<Run>,
}

/// What a worker reports: counts in batches (a message per seed would cost more than a core seed), and each run
/// worth a look (a violation or a differing re-run) on its own.
enum Report {
    Counts { ran: u64, events: u64, rechecked: u64, failures: u64 },
    Notable(Box<Done>),
}

/// A worker reports its counts after this many seeds, or sooner when a report is this old.
const BATCH: u64 = 64;
const BATCH_AGE: std::time::Duration = std::time::Duration::from_millis(100);

fn sweep(args: &Args, out: &std::path::Path) -> Result<bool, String> {
    let plan = Plan::from(args)?;
    let seeds = args.number("--seeds")?.unwrap_or(1_000);
    let start = args.number("--start")?.unwrap_or(0);
    let jobs = args.number("--jobs")?.unwrap_or(1).max(1);
    let recheck: f64 = args.value("--recheck").map_or(Ok(1.0), |v| v.parse().map_err(|_| "--recheck wants 0..1"))?;
    let (k, n) = match args.value("--shard") {
        None => (0, 1),
        Some(text) => text
            .split_once('/')
            .and_then(|(k, n)| Some((k.parse::<u64>().ok()?, n.parse::<u64>().ok()?)))
            .filter(|(k, n)| *n > 0 && k < n)
            .ok_or_else(|| format!("--shard wants k/n with k < n, not {text:?}"))?,
    };
    let mine: Vec<u64> = (start..start + seeds).filter(|s| s % n == k).collect();
    // Every `every`-th seed is run twice (all of them at the default share of 1, none at 0).
    let every = (recheck > 0.0).then(|| (1.0 / recheck.min(1.0)).round().max(1.0) as u64);
    let started = Instant::now();
    let next = AtomicU64::new(0);
    let (tx, rx) = mpsc::channel::<Report>();
    let total = mine.len() as u64;
    let (mut ran, mut events, mut failures, mut rechecked, mut differ) = (0u64, 0u64, 0u64, 0u64, 0u64);
    let mut failed: Vec<Run> = Vec::new();
    let progress = Progress::new(total);
    std::thread::scope(|scope| {
        for _ in 0..jobs {
            let tx = tx.clone();
            let (mine, next) = (&mine, &next);
            scope.spawn(move || {
                let (mut ran, mut events, mut rechecked, mut failures) = (0u64, 0u64, 0u64, 0u64);
                let mut reported = Instant::now();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let seed = mine.get(i as usize).copied();
                    if let Some(seed) = seed {
                        let run = plan.run(seed);
                        let recheck = plan.mode.deterministic() && every.is_some_and(|every| seed % every == 0);
                        let again = recheck.then(|| plan.run(seed));
                        ran += 1;
                        events += run.events + again.as_ref().map_or(0, |a| a.events);
                        rechecked += u64::from(recheck);
                        let differs = again.filter(|a| a.trace_hash() != run.trace_hash());
                        if !run.verdict.is_clean() || differs.is_some() {
                            failures += u64::from(!run.verdict.is_clean());
                            if tx.send(Report::Notable(Box::new(Done { run, differs }))).is_err() {
                                break;
                            }
                        }
                    }
                    if seed.is_none() || ran == BATCH || reported.elapsed() >= BATCH_AGE {
                        let counts = Report::Counts { ran, events, rechecked, failures };
                        (ran, events, rechecked, failures) = (0, 0, 0, 0);
                        reported = Instant::now();
                        if tx.send(counts).is_err() || seed.is_none() {
                            break;
                        }
                    }
                }
            });
        }
        drop(tx);
        for report in rx {
            let done = match report {
                Report::Counts { ran: r, events: e, rechecked: c, failures: f } => {
                    ran += r;
                    events += e;
                    rechecked += c;
                    failures += f;
                    progress.tick(ran, failures);
                    continue;
                }
                Report::Notable(done) => done,
            };
            if let Some(again) = &done.differs {
                differ += 1;
                let first = done.run.write_trace(&out.join("first")).map(|p| p.1.display().to_string());
                let second = again.write_trace(&out.join("second")).map(|p| p.1.display().to_string());
                progress.note(&format!(
                    "seed {}: the trace differs between two runs ({} and {})",
                    done.run.seed,
                    first.unwrap_or_default(),
                    second.unwrap_or_default()
                ));
            }
            if !done.run.verdict.is_clean() {
                progress.note(&format!(
                    "seed {}: {:?}\n  reproduce: {}",
                    done.run.seed,
                    done.run.verdict,
                    done.run.repro()
                ));
                if failed.len() < 10 {
                    failed.push(done.run);
                }
            }
        }
    });
    progress.finish();
    let secs = started.elapsed().as_secs_f64().max(1e-9);
    failed.sort_by_key(|r| r.seed);
    for run in &failed {
        report_failure(run, out);
    }
    let shard = if n > 1 { format!(" (shard {k}/{n})") } else { String::new() };
    println!("mode      seeds  violations  rechecked  differ      seeds/s      events/s  jobs  time");
    println!(
        "{:<6} {:>8} {:>11} {:>10} {:>7} {:>12.0} {:>13.0} {:>5} {:>5.1}s{shard}",
        plan.mode.name(),
        ran,
        failures,
        rechecked,
        differ,
        ran as f64 / secs,
        events as f64 / secs,
        jobs,
        secs
    );
    Ok(failures == 0 && differ == 0)
}

/// A progress bar on a terminal; a line per tenth otherwise (a CI log).
struct Progress {
    total: u64,
    terminal: bool,
    started: Instant,
    /// The last tenth a line was printed for (`u64::MAX` once the total was).
    printed: std::cell::Cell<u64>,
}

impl Progress {
    fn new(total: u64) -> Progress {
        Progress {
            total,
            terminal: std::io::stderr().is_terminal(),
            started: Instant::now(),
            printed: std::cell::Cell::new(0),
        }
    }

    fn tick(&self, done: u64, failures: u64) {
        let tenth = (self.total / 10).max(1);
        if self.terminal {
            let width = 40;
            let filled = (done * width / self.total.max(1)) as usize;
            eprint!(
                "\r[{}{}] {done}/{} seeds, {failures} violations, {:.0} seeds/s ",
                "#".repeat(filled),
                ".".repeat(width as usize - filled),
                self.total,
                done as f64 / self.started.elapsed().as_secs_f64().max(1e-9)
            );
            let _ = std::io::stderr().flush();
        } else if done / tenth > self.printed.get() || (done == self.total && self.printed.get() < u64::MAX) {
            self.printed.set(if done == self.total { u64::MAX } else { done / tenth });
            eprintln!("  {done}/{} seeds, {failures} violations", self.total);
        }
    }

    fn note(&self, text: &str) {
        if self.terminal {
            eprint!("\r\x1b[K");
        }
        println!("{text}");
    }

    fn finish(&self) {
        if self.terminal {
            eprintln!();
        }
    }
}

fn minimize(args: &Args, out: &std::path::Path) -> Result<bool, String> {
    let plan = Plan::from(args)?;
    let seed = args.number("--seed")?.ok_or("minimize needs --seed S")?;
    std::fs::create_dir_all(out).map_err(|e| format!("cannot create {}: {e}", out.display()))?;
    match plan.mode {
        Mode::Core => {
            let before = run_core(seed, plan.core_defect);
            let Some((actions, run)) = minimize_core(seed, plan.core_defect) else {
                println!("seed {seed} does not fail in core mode; nothing to minimize");
                return Ok(true);
            };
            let property = match &run.verdict {
                Verdict::Safety { property, .. } => property.clone(),
                Verdict::Liveness { what } => format!("liveness: {what}"),
                Verdict::Clean => "none".into(),
            };
            let file = out.join(format!("core-seed-{seed}.min.scenario"));
            scenario::write(&file, &format!("core-seed/{seed}"), &property, &actions)
                .map_err(|e| format!("cannot write {}: {e}", file.display()))?;
            println!(
                "seed {seed}: {} steps -> {} steps, still failing: {:?}",
                before.trace.len(),
                actions.len(),
                run.verdict
            );
            println!("  written to {}; replay: cargo xtask sim replay {}", file.display(), file.display());
        }
        Mode::Full | Mode::Tokio => {
            let scenario = Scenario::generate(seed);
            let Some((small, run)) = minimize_full(&scenario, plan.full_defect) else {
                println!("seed {seed} does not fail in {} mode; nothing to minimize", plan.mode.name());
                return Ok(true);
            };
            let file = out.join(format!("{}-seed-{seed}.min.json", plan.mode.name()));
            std::fs::write(&file, small.to_json()).map_err(|e| format!("cannot write {}: {e}", file.display()))?;
            println!(
                "seed {seed}: {} steps over {} sessions -> {} steps over {}, still failing: {:?}",
                scenario.steps.len(),
                scenario.sessions,
                small.steps.len(),
                small.sessions,
                run.verdict
            );
            let defect = plan.full_defect.map(|d| format!(" --defect {}", d.name())).unwrap_or_default();
            println!(
                "  written to {}; replay: cargo xtask sim replay {} --mode {}{defect}",
                file.display(),
                file.display(),
                plan.mode.name()
            );
        }
    }
    Ok(true)
}

fn replay(args: &Args) -> Result<bool, String> {
    let path = args.words.get(1).filter(|w| !w.starts_with("--")).ok_or("replay needs a FILE")?;
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {path}: {e}"))?;
    let run = if text.starts_with(scenario::HEADER) {
        let (bounds, actions) = scenario_actions(&text)?;
        let defect = args
            .value("--defect")
            .map(|d| parse_defect(d).ok_or_else(|| format!("unknown defect {d:?}")))
            .transpose()?;
        replay_core(0, bounds, defect, &actions)
    } else {
        let scenario = Scenario::from_json(&text)?;
        let mode = this_mode();
        if args.value("--mode").is_some_and(|m| m != mode.name()) {
            return Err(format!("this build runs JSON scenarios in {} mode; use cargo xtask sim", mode.name()));
        }
        let defect = args
            .value("--defect")
            .map(|d| FullDefect::parse(d).ok_or_else(|| format!("unknown defect {d:?}")))
            .transpose()?;
        run_full(&scenario, defect)
    };
    print!("{}", run.timeline());
    println!("replay of {path}: {:?}", run.verdict);
    Ok(run.verdict.is_clean())
}
