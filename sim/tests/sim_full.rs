//! The full mode (a `--cfg madsim` build: the real shell on madsim's seeded scheduler) and the tokio mode (a normal
//! build: the same driver on real threads). `cargo xtask test` runs this file in both builds.

use burrow_sim::full::{FullDefect, run_seed};
use burrow_sim::{Mode, Verdict};

#[cfg(madsim)]
#[test]
fn a_seed_replays_its_trace_byte_for_byte() {
    for seed in [0, 7, 851, 4_242] {
        let a = run_seed(seed, None);
        let b = run_seed(seed, None);
        assert_eq!(a.mode, Mode::Full);
        assert_eq!(a.trace, b.trace, "seed {seed}");
        assert_eq!(a.trace_hash(), b.trace_hash());
    }
    assert_ne!(run_seed(1, None).trace, run_seed(2, None).trace, "different seeds take different paths");
}

#[cfg(madsim)]
#[test]
fn healthy_seeds_are_clean() {
    for seed in 0..400 {
        let run = run_seed(seed, None);
        assert_eq!(run.verdict, Verdict::Clean, "seed {seed}; reproduce: {}", run.repro());
    }
}

#[cfg(not(madsim))]
#[test]
fn the_tokio_mode_runs_scenarios_clean_on_real_threads() {
    for seed in 0..6 {
        let run = run_seed(seed, None);
        assert_eq!(run.mode, Mode::Tokio);
        assert!(run.events > 20, "seed {seed} did something");
        assert_eq!(run.verdict, Verdict::Clean, "seed {seed}; reproduce: {}", run.repro());
    }
}

/// The first seed below `bound` on which `defect` is caught, with its verdict.
fn first_caught(defect: FullDefect, bound: u64) -> Option<(u64, Verdict)> {
    (0..bound).map(|seed| (seed, run_seed(seed, Some(defect)).verdict)).find(|(_, v)| !v.is_clean())
}

#[test]
fn broken_collaborators_are_caught_and_their_line_reproduces_them() {
    // Under real tokio a seed's schedule is not its own, so the tokio build only checks that each is caught.
    let bound = if burrow_env::runtime::SIMULATED { 200 } else { 12 };
    for defect in FullDefect::ALL {
        let (seed, verdict) = first_caught(defect, bound).unwrap_or_else(|| panic!("{defect:?} was not caught"));
        let again = run_seed(seed, Some(defect));
        assert!(again.repro().ends_with(&format!("--seed {seed} --defect {}", defect.name())), "{}", again.repro());
        if burrow_env::runtime::SIMULATED {
            assert_eq!(again.verdict, verdict, "{defect:?}: seed {seed} replays its failure");
        }
    }
}

#[cfg(madsim)]
#[test]
fn what_each_broken_collaborator_breaks_is_named() {
    let what = |defect| match first_caught(defect, 200).expect("caught").1 {
        Verdict::Safety { property, .. } => property,
        Verdict::Liveness { what } => what,
        Verdict::Clean => unreachable!(),
    };
    assert!(what(FullDefect::DroppingStore).contains("acknowledged durable"), "{}", what(FullDefect::DroppingStore));
    assert!(what(FullDefect::LyingExecutor).contains("the executor reported success"));
    assert!(what(FullDefect::DroppedResolution).contains("never got an outcome"));
}

#[cfg(madsim)]
#[test]
fn minimize_shortens_a_failing_scenario_that_still_fails_and_replays_from_json() {
    use burrow_sim::full::run_full;
    use burrow_sim::minimize::minimize_full;
    use burrow_sim::scenario::Scenario;
    let (seed, _) = first_caught(FullDefect::DroppedResolution, 200).expect("caught");
    let scenario = Scenario::generate(seed);
    let (small, run) = minimize_full(&scenario, Some(FullDefect::DroppedResolution)).expect("it fails");
    assert!(!run.verdict.is_clean());
    assert!(small.steps.len() < scenario.steps.len(), "{} -> {}", scenario.steps.len(), small.steps.len());
    let replayed = run_full(&Scenario::from_json(&small.to_json()).unwrap(), Some(FullDefect::DroppedResolution));
    assert_eq!(replayed.verdict, run.verdict);
    assert_eq!(replayed.trace, run.trace);
    assert!(minimize_full(&Scenario::generate(seed), None).is_none(), "a clean scenario has nothing to shrink");
}
