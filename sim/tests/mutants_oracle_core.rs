//! The oracle a mutant of burrow-core must get past (`cargo xtask mutants core`), besides the core's own tests: the
//! model's ci profile, every configuration to its end, and a core-mode sweep. A mutant is caught when any property
//! fails or a witness is never found, exactly as `burrow-model check --profile ci` and `burrow-sim sweep` judge.
//! Built only with the `oracle-core` feature.

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::hash::Hash;

use burrow_model::profile::Profile;
use burrow_sim::{Verdict, run_core};
use stateright::{Checker, Expectation, HasDiscoveries, Model};

/// Seeds of the core-mode sweep: a few seconds in the optimised build.
const CORE_SEEDS: u64 = 20_000;

/// Checks `model` to its end or its first counterexample. Returns the broken safety properties, with the reason
/// `explain` gives for the last state of each counterexample, and which witnesses were found.
fn check<M>(model: M, explain: fn(&M::State) -> Option<String>) -> (Vec<String>, Vec<(&'static str, bool)>)
where
    M: Model + Send + Sync + 'static,
    M::State: Clone + Debug + Hash + Eq + Send + Sync,
    M::Action: Clone + Debug + PartialEq + Send + Sync,
{
    let properties: Vec<(&'static str, Expectation)> =
        model.properties().iter().map(|p| (p.name, p.expectation.clone())).collect();
    let checker = model.checker().threads(2).finish_when(HasDiscoveries::AnyFailures).spawn_bfs().join();
    let mut broken = Vec::new();
    let mut witnesses = Vec::new();
    for (name, expectation) in properties {
        let found = checker.discovery(name);
        match expectation {
            Expectation::Always | Expectation::Eventually => {
                if let Some(path) = found {
                    let why = explain(path.last_state()).unwrap_or_default();
                    broken.push(format!("{name}: {why}\n  path: {:?}", path.into_actions()));
                }
            }
            Expectation::Sometimes => witnesses.push((name, found.is_some())),
        }
    }
    (broken, witnesses)
}

#[test]
fn the_model_ci_profile_holds_with_every_witness() {
    let mut broken = Vec::new();
    let mut witnessed: BTreeMap<&'static str, bool> = BTreeMap::new();
    for (name, model) in Profile::Ci.sessions() {
        let (b, w) = check(model, burrow_model::session::explain);
        broken.extend(b.into_iter().map(|b| format!("session/{name}: {b}")));
        for (property, found) in w {
            *witnessed.entry(property).or_default() |= found;
        }
    }
    for (name, (b, w)) in [
        ("operations", check(Profile::Ci.operations(), |_| None)),
        ("registration", check(Profile::Ci.race(), |_| None)),
        ("fleet", check(Profile::Ci.fleet(), |_| None)),
    ] {
        // These models' witnesses are their own: each must be found in its model.
        broken.extend(b.into_iter().map(|b| format!("{name}: {b}")));
        broken.extend(w.into_iter().filter(|(_, found)| !found).map(|(p, _)| format!("{name}: never witnessed {p}")));
    }
    let never: Vec<&str> = witnessed.iter().filter(|(_, found)| !**found).map(|(p, _)| *p).collect();
    assert!(broken.is_empty() && never.is_empty(), "broken: {broken:#?}\nnever witnessed: {never:?}");
}

#[test]
fn a_core_mode_sweep_is_clean() {
    for seed in 0..CORE_SEEDS {
        let run = run_core(seed, None);
        assert_eq!(run.verdict, Verdict::Clean, "seed {seed}; reproduce: {}", run.repro());
    }
}
