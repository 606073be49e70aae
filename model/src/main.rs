//! `burrow-model check [--profile ci|deep] [--model session|operations|registration|all|session/NAME]
//! [--scenarios DIR] [--max-states N]` runs the checker and prints, per model, unique states, states per second, depth and each property's verdict; a
//! violated property prints its counterexample as a numbered event trace and is written as a scenario file.
//! `burrow-model explore [--model NAME] [--profile NAME] [--addr HOST:PORT]` serves stateright's explorer.

use std::fmt::Debug;
use std::hash::Hash;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use burrow_model::cli::{Cli, Command};
use burrow_model::profile::Profile;
use burrow_model::progress::Progress;
use burrow_model::scenario;
use clap::Parser;
use stateright::{Checker, Expectation, Model};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// What a check was asked for.
struct Args {
    profile: Profile,
    model: String,
    scenarios: Option<PathBuf>,
    max_states: Option<usize>,
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Check { choice, scenarios, max_states } => {
            check(&Args { profile: choice.profile.profile(), model: choice.model, scenarios, max_states })
        }
        Command::Explore { choice, addr } => explore(choice.profile.profile(), &choice.model, &addr),
    }
}

/// The model names `--model` takes under `profile`.
fn model_names(profile: Profile) -> Vec<String> {
    let mut names: Vec<String> =
        ["all", "session", "operations", "registration", "fleet", "handover"].map(String::from).to_vec();
    names.extend(profile.sessions().into_iter().map(|(config, _)| format!("session/{config}")));
    names
}

fn threads() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

fn check(args: &Args) -> ExitCode {
    let p = args.profile;
    let names = model_names(p);
    if !names.contains(&args.model) {
        eprintln!("error: unknown model {:?}; the models are {}", args.model, names.join(", "));
        return ExitCode::from(2);
    }
    let wanted = |name: &str| args.model == "all" || args.model == name;
    let mut ok = true;
    let mut ran = false;
    // The session configurations explore one space between them, so a witness found in any of them counts.
    let mut witnessed: Vec<(&'static str, bool)> = Vec::new();
    for (config, model) in p.sessions() {
        let name = format!("session/{config}");
        if wanted("session") || wanted(&name) {
            let report = run(&name, model, args, burrow_model::session::explain);
            ok &= report.always_hold;
            for (property, found) in report.sometimes {
                match witnessed.iter_mut().find(|(p, _)| *p == property) {
                    Some((_, seen)) => *seen |= found,
                    None => witnessed.push((property, found)),
                }
            }
            ran = true;
        }
    }
    // Witnesses are judged over the union of the configurations, so only when all of them ran.
    if wanted("session") && !witnessed.is_empty() {
        println!("== session witnesses, over every configuration");
        for (property, found) in &witnessed {
            println!("  {:<15} {property}", if *found { "witnessed" } else { "NEVER WITNESSED" });
            ok &= *found;
        }
    }
    for (name, report) in [
        ("operations", wanted("operations").then(|| run("operations", p.operations(), args, |_| None))),
        ("registration", wanted("registration").then(|| run("registration", p.race(), args, |_| None))),
        ("fleet", wanted("fleet").then(|| run("fleet", p.fleet(), args, |_| None))),
        ("handover", wanted("handover").then(|| run("handover", p.handover(), args, |_| None))),
    ] {
        let Some(report) = report else { continue };
        ran = true;
        ok &= report.always_hold;
        for (property, found) in report.sometimes {
            if !found {
                println!("  NEVER WITNESSED {property} ({name})");
                ok = false;
            }
        }
    }
    if !ran {
        unreachable!("check only runs with a known model name");
    }
    println!("{}", if ok { "all properties hold and every witness was found" } else { "FAILED" });
    if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}

/// What one model's run found.
struct Report {
    always_hold: bool,
    sometimes: Vec<(&'static str, bool)>,
}

/// Checks one model and prints its report: unique states, rate, depth, each safety property's verdict (with the
/// counterexample of a violated one) and which witnesses this model found.
fn run<M>(name: &str, model: M, args: &Args, explain: fn(&M::State) -> Option<String>) -> Report
where
    M: Model + Send + Sync + 'static,
    M::State: Clone + Debug + Hash + Eq + Send + Sync,
    M::Action: Clone + Debug + PartialEq + Send + Sync,
{
    let properties: Vec<(&'static str, Expectation)> =
        model.properties().iter().map(|p| (p.name, p.expectation.clone())).collect();
    let started = Instant::now();
    // The first counterexample of a safety property ends the check: its verdict is known, and a model whose bug
    // lets a state grow without bound would otherwise keep filling memory.
    let mut builder = model.checker().threads(threads()).finish_when(stateright::HasDiscoveries::AnyFailures);
    if let Some(max) = args.max_states {
        // A partial run, for sizing bounds: verdicts then cover only the states reached.
        builder = builder.target_state_count(max);
    }
    let checker = builder.spawn_bfs();
    let progress = Progress::new(None, format!("states of {name}"));
    while !checker.is_done() {
        progress.set(checker.unique_state_count() as u64, None);
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    progress.finish();
    let checker = checker.join();
    let seconds = started.elapsed().as_secs_f64();
    let unique = checker.unique_state_count();
    println!("== model {name}");
    println!(
        "unique states {unique}, states generated {}, depth {}, {:.1} s, {:.0} unique states/s on {} threads",
        checker.state_count(),
        checker.max_depth(),
        seconds,
        unique as f64 / seconds.max(1e-9),
        threads()
    );
    let discoveries = checker.discoveries();
    let mut report = Report { always_hold: true, sometimes: Vec::new() };
    for (property, expectation) in properties {
        let found = discoveries.get(property);
        if expectation == Expectation::Sometimes {
            println!("  {:<15} {property}", if found.is_some() { "witnessed" } else { "not here" });
            report.sometimes.push((property, found.is_some()));
            continue;
        }
        let Some(path) = found else {
            println!("  {:<15} {property}", "holds");
            continue;
        };
        report.always_hold = false;
        println!("  {:<15} {property}", "VIOLATED");
        let actions = path.clone().into_actions();
        println!("    counterexample ({} steps):", actions.len());
        for (i, action) in actions.iter().enumerate() {
            println!("    {:>3}. {action:?}", i + 1);
        }
        if let Some(why) = explain(path.last_state()) {
            println!("    why: {why}");
        }
        if let Some(dir) = &args.scenarios {
            let file = dir.join(format!("{}-{}.scenario", name.replace('/', "-"), property.replace(' ', "-")));
            match std::fs::create_dir_all(dir).and_then(|()| scenario::write(&file, name, property, &actions)) {
                Ok(()) => println!("    scenario written to {}", file.display()),
                Err(error) => println!("    scenario not written: {error}"),
            }
        }
    }
    report
}

fn explore(p: Profile, model: &str, addr: &str) -> ExitCode {
    println!("serving the explorer on http://{addr}");
    match model {
        "session" | "all" => {
            let (_, model) = p.sessions().into_iter().next().expect("a session configuration");
            drop(model.checker().threads(threads()).serve(addr));
        }
        "operations" => drop(p.operations().checker().threads(threads()).serve(addr)),
        "registration" => drop(p.race().checker().threads(threads()).serve(addr)),
        "fleet" => drop(p.fleet().checker().threads(threads()).serve(addr)),
        "handover" => drop(p.handover().checker().threads(threads()).serve(addr)),
        other => {
            eprintln!("error: the explorer serves session, operations, registration, fleet or handover, not {other:?}");
            return ExitCode::from(2);
        }
    }
    ExitCode::SUCCESS
}
