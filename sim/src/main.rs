//! burrow-sim: run, sweep, minimize and replay simulations. `cargo xtask sim ...` picks the right build for the
//! mode (full needs `--cfg madsim`); see `burrow-sim --help` and `burrow-sim <command> --help`.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::Instant;

use burrow_model::progress::Progress;
use burrow_model::scenario;
use burrow_sim::cli::{Cli, Command, ModeArg, PlanArgs};
use burrow_sim::core::{defect_name, parse_defect, replay_core, replay_core_narrated, run_core, scenario_actions};
use burrow_sim::full::{FullDefect, run_full, run_seed, this_mode};
use burrow_sim::minimize::{minimize_core_watched, minimize_full_watched};
use burrow_sim::scenario::Scenario;
use burrow_sim::{Mode, Run, Verdict};
use clap::Parser;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// What a seed runs under: the mode and, for teeth, a planted defect.
#[derive(Clone, Copy)]
struct Plan {
    mode: Mode,
    core_defect: Option<burrow_model::session::Defect>,
    full_defect: Option<FullDefect>,
    /// The store's planted mistake in fleet mode, by name (parsed where the mode exists: a madsim build).
    fleet_defect: Option<&'static str>,
}

impl Plan {
    fn from(args: &PlanArgs) -> Result<Plan, String> {
        let mode = args.mode.mode();
        if !mode.available() {
            return Err(format!(
                "mode {} is not in this build ({} build); run it with `cargo xtask sim ... --mode {}`",
                mode.name(),
                if burrow_env::runtime::SIMULATED { "a --cfg madsim" } else { "a normal" },
                mode.name()
            ));
        }
        let mut plan = Plan { mode, core_defect: None, full_defect: None, fleet_defect: None };
        if let Some(name) = &args.defect {
            match mode {
                Mode::Core => plan.core_defect = Some(core_defect(name)?),
                Mode::Fleet => plan.fleet_defect = Some(fleet_defect(name)?),
                _ => plan.full_defect = Some(full_defect(name)?),
            }
        }
        Ok(plan)
    }

    fn run(self, seed: u64) -> Run {
        let attempt = catch_unwind(AssertUnwindSafe(|| match self.mode {
            Mode::Core => run_core(seed, self.core_defect),
            Mode::Full | Mode::Tokio => run_seed(seed, self.full_defect),
            Mode::Fleet => run_fleet(seed, self.fleet_defect),
        }));
        attempt.unwrap_or_else(|panic| {
            let message = burrow_sim::panic_text(panic.as_ref()).unwrap_or_else(|| "a panic".into());
            Run {
                mode: self.mode,
                seed,
                defect: self
                    .core_defect
                    .map(defect_name)
                    .or(self.full_defect.map(FullDefect::name))
                    .or(self.fleet_defect),
                verdict: Verdict::Safety { property: format!("the run panicked: {message}"), step: 0 },
                trace: Vec::new(),
                events: 0,
            }
        })
    }
}

fn core_defect(name: &str) -> Result<burrow_model::session::Defect, String> {
    parse_defect(name).ok_or_else(|| format!("unknown core defect {name:?}; see burrow-sim --help"))
}

/// The fleet mode's defect by name: `store-ignores-epoch` or `clock-past-margin` (a host that ignores its lease is
/// planted in the shell, which only the teeth tests can do).
fn fleet_defect(name: &str) -> Result<&'static str, String> {
    match name {
        "store-ignores-epoch" => Ok("store-ignores-epoch"),
        "clock-past-margin" => Ok("clock-past-margin"),
        _ => Err(format!("unknown fleet defect {name:?}; see burrow-sim --help")),
    }
}

/// Runs seed `seed` in fleet mode (a madsim build).
#[cfg(madsim)]
fn run_fleet(seed: u64, defect: Option<&'static str>) -> Run {
    let defect = defect.and_then(burrow_sim::fleet::FleetDefect::parse);
    burrow_sim::fleet::run_fleet(seed, defect)
}

/// Fleet mode is not in a normal build ([`Plan::from`] refuses it first).
#[cfg(not(madsim))]
fn run_fleet(seed: u64, _: Option<&'static str>) -> Run {
    Run {
        mode: Mode::Fleet,
        seed,
        defect: None,
        verdict: Verdict::Safety { property: "fleet mode needs a --cfg madsim build".into(), step: 0 },
        trace: Vec::new(),
        events: 0,
    }
}

fn full_defect(name: &str) -> Result<FullDefect, String> {
    FullDefect::parse(name).ok_or_else(|| format!("unknown full or tokio defect {name:?}; see burrow-sim --help"))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let out = cli.out.as_path();
    let result = match &cli.command {
        Command::Run { seed, plan, trace, html } => run(*seed, plan, *trace, *html, out),
        Command::Sweep { seeds, start, jobs, shard, recheck, plan } => {
            let shard = shard.unwrap_or((0, 1));
            sweep(&Sweep { seeds: *seeds, start: *start, jobs: *jobs, shard, recheck: *recheck }, plan, out)
        }
        Command::Minimize { seed, plan } => minimize(*seed, plan, out),
        Command::Replay { file, mode, defect, html } => replay(file, *mode, defect.as_deref(), *html, out),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::from(2)
        }
    }
}

fn report_failure(run: &Run, out: &Path) {
    println!("seed {}: {:?}", run.seed, run.verdict);
    println!("  reproduce: {}", run.repro());
    match run.write_trace(out) {
        Ok(files) => println!(
            "  trace: {} and {}; picture: {}",
            files.json.display(),
            files.timeline.display(),
            files.html.display()
        ),
        Err(error) => println!("  trace not written: {error}"),
    }
}

/// Writes `run`'s picture to `out` and says where.
fn write_picture(run: &Run, out: &Path) -> Result<(), String> {
    let file = run.write_html(out).map_err(|e| format!("cannot write the picture in {}: {e}", out.display()))?;
    println!("picture: {}", file.display());
    Ok(())
}

fn run(seed: u64, plan: &PlanArgs, trace: bool, html: bool, out: &Path) -> Result<bool, String> {
    let plan = Plan::from(plan)?;
    let run = plan.run(seed);
    if trace {
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
    } else if html {
        write_picture(&run, out)?;
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

/// A sweep's seeds and workers.
struct Sweep {
    seeds: u64,
    start: u64,
    jobs: u64,
    shard: (u64, u64),
    recheck: f64,
}

fn sweep(options: &Sweep, plan: &PlanArgs, out: &Path) -> Result<bool, String> {
    let plan = Plan::from(plan)?;
    let Sweep { seeds, start, jobs, shard: (k, n), recheck } = *options;
    let mine: Vec<u64> = (start..start + seeds).filter(|s| s % n == k).collect();
    // Every `every`-th seed is run twice (all of them at the default share of 1, none at 0).
    let every = (recheck > 0.0).then(|| (1.0 / recheck.min(1.0)).round().max(1.0) as u64);
    let started = Instant::now();
    let next = AtomicU64::new(0);
    let (tx, rx) = mpsc::channel::<Report>();
    let total = mine.len() as u64;
    let (mut ran, mut events, mut failures, mut rechecked, mut differ) = (0u64, 0u64, 0u64, 0u64, 0u64);
    let mut failed: Vec<Run> = Vec::new();
    let progress = Progress::new(Some(total), "seeds");
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
                    progress.set(ran, Some(failures));
                    continue;
                }
                Report::Notable(done) => done,
            };
            if let Some(again) = &done.differs {
                differ += 1;
                let first = done.run.write_trace(&out.join("first")).map(|f| f.timeline.display().to_string());
                let second = again.write_trace(&out.join("second")).map(|f| f.timeline.display().to_string());
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

fn minimize(seed: u64, plan: &PlanArgs, out: &Path) -> Result<bool, String> {
    let plan = Plan::from(plan)?;
    let progress = Progress::new(None, "runs tried");
    let mut tried = 0u64;
    let mut watch = |steps: usize| {
        tried += 1;
        progress.set(tried, None);
        if tried == 1 {
            progress.note(&format!("shrinking seed {seed} from {steps} steps"));
        }
    };
    std::fs::create_dir_all(out).map_err(|e| format!("cannot create {}: {e}", out.display()))?;
    match plan.mode {
        Mode::Fleet => {
            println!(
                "fleet mode does not minimize; replay the seed with `cargo xtask sim run --mode fleet --seed {seed}`"
            );
        }
        Mode::Core => {
            let before = run_core(seed, plan.core_defect);
            let Some((actions, run)) = minimize_core_watched(seed, plan.core_defect, &mut watch) else {
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
            let Some((small, run)) = minimize_full_watched(&scenario, plan.full_defect, &mut watch) else {
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

fn replay(file: &Path, mode: Option<ModeArg>, defect: Option<&str>, html: bool, out: &Path) -> Result<bool, String> {
    let path = file.display();
    let text = std::fs::read_to_string(file).map_err(|e| format!("cannot read {path}: {e}"))?;
    let run = if text.starts_with(scenario::HEADER) {
        let (bounds, actions) = scenario_actions(&text)?;
        let defect = defect.map(core_defect).transpose()?;
        // The picture needs the session told step by step; the verdict and the steps are the same either way.
        if html { replay_core_narrated(0, bounds, defect, &actions) } else { replay_core(0, bounds, defect, &actions) }
    } else {
        let scenario = Scenario::from_json(&text)?;
        let this = this_mode();
        if mode.is_some_and(|m| m.mode() != this) {
            return Err(format!("this build runs JSON scenarios in {} mode; use cargo xtask sim", this.name()));
        }
        let defect = defect.map(full_defect).transpose()?;
        run_full(&scenario, defect)
    };
    print!("{}", run.timeline());
    println!("replay of {path}: {:?}", run.verdict);
    if html {
        write_picture(&run, out)?;
    }
    Ok(run.verdict.is_clean())
}
