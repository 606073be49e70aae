//! Teeth: the real machine wrapped with one planted defect at a time. The checker must report the named property
//! with a counterexample, or the property (or the model) could not catch the bug it exists for. The same
//! configurations without a defect report none of these properties (model_check.rs asserts no safety property is
//! discovered at all).

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::collections::BTreeSet;

use burrow_model::profile::Profile;
use burrow_model::session::{Defect, SessionModel};
use stateright::{Checker, HasDiscoveries, Model};

fn lane(name: &str) -> SessionModel {
    Profile::Ci.sessions().into_iter().find(|(n, _)| *n == name).expect("a ci configuration").1
}

/// Checks `model` until `property` is discovered; returns the counterexample's actions.
fn counterexample(model: SessionModel, property: &'static str) -> Vec<String> {
    let checker =
        model.checker().threads(2).finish_when(HasDiscoveries::AnyOf(BTreeSet::from([property]))).spawn_bfs().join();
    let path = checker.discovery(property).unwrap_or_else(|| panic!("the checker did not report {property:?}"));
    path.into_actions().iter().map(|a| format!("{a:?}")).collect()
}

#[test]
fn forgetting_waiters_on_reset_is_caught() {
    let model = lane("control").with_defect(Defect::ForgetWaitersOnReset);
    let trace = counterexample(model, "at quiescence the specification's liveness holds");
    assert!(trace.iter().any(|a| a == "Control(Reset)"), "{trace:?}");
}

#[test]
fn resetting_attempts_on_recovery_is_caught() {
    let model = lane("durability").with_defect(Defect::ResetAttemptsOnRecovery);
    let trace = counterexample(model, "no input staged more than max_attempts times");
    assert!(trace.iter().any(|a| a == "Crash" || a == "Control(Recover)"), "{trace:?}");
}

#[test]
fn a_run_after_retire_is_caught() {
    let model = lane("control").with_defect(Defect::AdmitAfterRetire);
    let trace = counterexample(model, "every observation is allowed by the specification");
    assert!(trace.iter().any(|a| a == "Control(Retire)"), "{trace:?}");
}

#[test]
fn reapplying_a_committed_input_is_caught() {
    let model = lane("kinds").with_defect(Defect::ReapplyCommitted);
    let trace = counterexample(model, "no input applied again after its boundary committed");
    assert!(trace.iter().any(|a| a == "Executor(Ok)"), "{trace:?}");
}

#[test]
fn a_driver_reporting_a_write_twice_is_caught() {
    let model = lane("kinds").with_defect(Defect::ReportWriteTwice);
    let trace = counterexample(model, "the machine takes every result of its own effects");
    assert!(trace.iter().any(|a| a.starts_with("Accept")), "{trace:?}");
}
