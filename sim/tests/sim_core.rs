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
