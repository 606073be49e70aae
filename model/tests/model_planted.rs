//! Teeth of the observable specification: burrow-core's planted defects (its `planted` feature), one small and
//! realistic mistake at a time inside the real session machine, each reported by the model checker through one of
//! the specification's two properties. Every rule family of the specification has at least one. The same
//! configurations without a defect report no property at all (model_check.rs).

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::collections::BTreeSet;

use burrow_core::planted::Planted;
use burrow_core::session::SessionConfig;
use burrow_model::NO_PANIC;
use burrow_model::profile::Profile;
use burrow_model::session::{SessionModel, World, explain};
use stateright::{Checker, HasDiscoveries, Model};

const OBSERVATION: &str = "every observation is allowed by the specification";
const LIVENESS: &str = "at quiescence the specification's liveness holds";

/// The ci configuration `name` with `defect` planted in every machine it makes.
fn planted(name: &str, configure: fn(&mut SessionConfig)) -> SessionModel {
    let mut model = Profile::Ci.sessions().into_iter().find(|(n, _)| *n == name).expect("a ci configuration").1;
    model.configure = Some(configure);
    model
}

/// Checks `model` until `property` fails (the machine's own invariants may fail first: this is about the
/// specification); returns the counterexample's actions and the specification's reason.
fn caught(model: SessionModel, property: &'static str) -> (Vec<String>, String) {
    let until = HasDiscoveries::AnyOf(BTreeSet::from([property]));
    let checker = model.checker().threads(2).finish_when(until).spawn_bfs().join();
    let found: BTreeSet<&str> = checker.discoveries().keys().copied().collect();
    let path = checker.discovery(property).unwrap_or_else(|| panic!("{property:?} not reported; found {found:?}"));
    let last: &World = path.last_state();
    let why = explain(last).unwrap_or_default();
    (path.into_actions().iter().map(|a| format!("{a:?}")).collect(), why)
}

macro_rules! teeth {
    ($(#[$doc:meta] $test:ident: $defect:ident in $config:literal, $property:ident, rule $rule:literal;)*) => {
        /// Every defect the list below tests, in its order.
        const TESTED: &[Planted] = &[$(Planted::$defect),*];
        $(
        #[$doc]
        #[test]
        fn $test() {
            fn configure(config: &mut SessionConfig) {
                config.planted = Some(Planted::$defect);
            }
            let (trace, why) = caught(planted($config, configure), $property);
            assert!(why.contains($rule), "{} was caught by another rule: {why}\n{trace:?}", stringify!($defect));
        }
    )*
    };
}

teeth! {
    /// Admission by phase: a retire undone by the end of the run in flight lets a new input in.
    retire_undone_at_run_end: RetireUndoneAtRunEnd in "control", OBSERVATION, rule "admission by phase";
    /// Revival after stop: a stopped session refuses a new executor.
    stop_not_revivable: StopNotRevivable in "control", OBSERVATION, rule "refused only where SPEC refuses";
    /// Lane order: the newest queued input runs first.
    newest_first: NewestFirst in "kinds", OBSERVATION, rule "in the order it was accepted";
    /// Attempts: a failed run refunds the attempt, so the input is handed out again after its last attempt.
    attempt_refunded_on_failure: AttemptRefundedOnFailure in "kinds", OBSERVATION,
        rule "a run holds only queued inputs";
    /// Abandonment reasons: a retire without an executor tells its callers the runtime terminated.
    retire_abandons_as_reset: RetireAbandonsAsReset in "control", OBSERVATION, rule "an outcome follows from";
    /// Outcome class: a failed boundary commit is reported as a completion.
    failed_commit_reported_as_success: FailedCommitReportedAsSuccess in "durability", OBSERVATION,
        rule "an outcome follows from";
    /// Dedup: a caller joining a pending input gets no handle.
    dedup_join_without_handle: DedupJoinWithoutHandle in "control", OBSERVATION, rule "dedup join gets a handle";
    /// Coalescing: the caller of a coalesced input is never told.
    coalescing_drops_waiters: CoalescingDropsWaiters in "kinds", LIVENESS, rule "settled waiters resolved";
    /// Operations: an operation record hands out a handle.
    record_gets_handle: RecordGetsHandle in "kinds", OBSERVATION, rule "a handle exactly when asked for";
    /// Recovery: a run's end that ended inputs but kept the head writes no row; the input comes back.
    row_judged_by_its_head_only: RowJudgedByItsHeadOnly in "durability", OBSERVATION,
        rule "each admission and end is told once";
    /// Recovery: a staged input is lost by a restart.
    staged_lost_on_recovery: StagedLostOnRecovery in "durability", OBSERVATION,
        rule "no accepted durable input is lost";
    /// Destroy: callers are left waiting.
    destroy_keeps_waiters: DestroyKeepsWaiters in "control", LIVENESS, rule "settled waiters resolved";
    /// A panic in the machine is reported with its action and the path to it, not lost with the checker's thread.
    retire_expects_queued_work: RetireExpectsQueuedWork in "control", NO_PANIC,
        rule "Control(Retire) panicked: a retire has queued work to drain";
    /// Operations: a destroyed session's registry still takes an operation's end.
    destroy_leaves_operations: DestroyLeavesOperations in "ambient", OBSERVATION,
        rule "a terminated registry refuses every call";
    /// Notices: a run's inputs are told ended when the executor reports, before their boundary commits.
    notice_end_at_report: NoticeEndAtReport in "kinds", OBSERVATION, rule "an end is told only for an input that ended";
    /// Notices: a fail-stop after an unregister ends a queued input and never tells its subscribers.
    fail_stop_leaves_ends_untold: FailStopLeavesEndsUntold in "teardown", LIVENESS, rule "every end told";
    /// Operations: an end during a run is never looked at again, so the quiescent session is not woken for it.
    wake_only_at_the_end: WakeOnlyAtTheEnd in "ambient", LIVENESS, rule "a background end wakes its quiescent session";
    /// Ownership: a host that loses the session fail-stops as if it were still its own, writing its row.
    move_treated_as_fail_stop: MoveTreatedAsFailStop in "moves", OBSERVATION, rule "moved session";
    /// Ownership: the waiters of a moved session are told their inputs were abandoned, while they go on elsewhere.
    move_abandons_waiters: MoveAbandonsWaiters in "moves", OBSERVATION, rule "an outcome follows from what happened";
}

#[test]
fn every_planted_defect_has_a_teeth_test() {
    // The teeth! list names each defect once (TESTED, made by the macro); this keeps it complete when a defect is
    // added.
    assert_eq!(TESTED.to_vec(), Planted::ALL.to_vec());
}
