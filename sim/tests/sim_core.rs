//! The core mode: seeds replay exactly, a sweep of healthy seeds is clean, and planted defects are found.

use burrow_model::session::Defect;
use burrow_sim::{Verdict, run_core};

#[test]
fn a_seed_replays_its_trace_byte_for_byte() {
    for seed in [0, 1, 42, 9_999] {
        let a = run_core(seed, None);
        let b = run_core(seed, None);
        assert_eq!(a.trace, b.trace);
        assert_eq!(a.trace_hash(), b.trace_hash());
    }
    assert_ne!(run_core(1, None).trace, run_core(2, None).trace, "different seeds take different paths");
}

#[test]
fn healthy_seeds_are_clean() {
    for seed in 0..300 {
        let run = run_core(seed, None);
        assert_eq!(run.verdict, Verdict::Clean, "seed {seed}; reproduce: {}", run.repro());
    }
}

fn first_failing_seed(defect: Defect) -> Option<(u64, Verdict)> {
    (0..3_000).map(|seed| (seed, run_core(seed, Some(defect)).verdict)).find(|(_, v)| *v != Verdict::Clean)
}

#[test]
fn planted_defects_are_found_and_replay() {
    for defect in [
        Defect::ForgetWaitersOnReset,
        Defect::ResetAttemptsOnRecovery,
        Defect::AdmitAfterRetire,
        Defect::ReapplyCommitted,
    ] {
        let (seed, verdict) = first_failing_seed(defect).unwrap_or_else(|| panic!("{defect:?} was not found"));
        assert_eq!(run_core(seed, Some(defect)).verdict, verdict, "{defect:?}: seed {seed} replays its failure");
    }
}

#[test]
fn minimize_shortens_a_failing_seed_and_its_scenario_file_replays() {
    use burrow_sim::core::{replay_core, scenario_actions};
    use burrow_sim::minimize::minimize_core;
    let (seed, _) = first_failing_seed(Defect::ForgetWaitersOnReset).expect("found");
    let (_, before) = burrow_sim::core::run_core_with_actions(seed, Some(Defect::ForgetWaitersOnReset));
    let (actions, run) = minimize_core(seed, Some(Defect::ForgetWaitersOnReset)).expect("it fails");
    assert!(actions.len() < before.len(), "{} -> {}", before.len(), actions.len());
    assert_ne!(run.verdict, Verdict::Clean);
    let text = burrow_model::scenario::render(&format!("core-seed/{seed}"), "p", &actions);
    let (bounds, parsed) = scenario_actions(&text).unwrap();
    assert_eq!(parsed, actions);
    assert_eq!(replay_core(seed, bounds, Some(Defect::ForgetWaitersOnReset), &parsed).verdict, run.verdict);
    assert!(minimize_core(0, None).is_none(), "a clean seed has nothing to shrink");
}

#[test]
fn a_model_checker_counterexample_replays_on_the_machine() {
    use burrow_sim::core::{replay_core, scenario_actions};
    // A counterexample in the checker's format: forgetting waiters on reset leaves the caller hanging.
    let text = "burrow-scenario v1\nmodel session/control\nproperty p\nstep Accept(Prompt)\nstep Control(Reset)\n";
    let (bounds, actions) = scenario_actions(text).unwrap();
    assert_eq!(actions.len(), 2);
    assert_eq!(replay_core(0, bounds.clone(), None, &actions).verdict, Verdict::Clean);
    assert_ne!(replay_core(0, bounds, Some(Defect::ForgetWaitersOnReset), &actions).verdict, Verdict::Clean);
    assert!(scenario_actions("burrow-scenario v1\nmodel operations\n").is_err());
    assert!(scenario_actions("burrow-scenario v1\nmodel session/control\nstep Fly\n").is_err());
}
