//! Planted defects, for the teeth tests of the checkers (cargo feature `planted`, enabled only by the test
//! dependencies of the model): each is one small, realistic mistake in the session machine, of the kind a careless
//! change would make. A teeth test plants one through [`SessionConfig::planted`](crate::session::SessionConfig) and
//! asserts that the observable specification's property reports it. No normal build compiles them.

/// One planted mistake. Each names the rule family of the observable specification that must catch it.
#[cfg(feature = "planted")]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Planted {
    /// Admission by phase: a run that ends in a retired session returns it to Attached, reopening admission.
    RetireUndoneAtRunEnd,
    /// Revival after stop: attaching an executor to a stopped session is refused.
    StopNotRevivable,
    /// Lane order: the loop takes the newest queued input instead of the oldest.
    NewestFirst,
    /// Attempts: a failed run gives its inputs their attempt back, so a poison input runs forever.
    AttemptRefundedOnFailure,
    /// Abandonment reasons: a retire without an executor abandons the queue as if reset.
    RetireAbandonsAsReset,
    /// Outcome class: a failed boundary commit is reported as a success.
    FailedCommitReportedAsSuccess,
    /// Dedup: a caller joining a pending input gets no handle.
    DedupJoinWithoutHandle,
    /// Coalescing: the waiters of a coalesced input are not moved to the input that replaced it.
    CoalescingDropsWaiters,
    /// Operations: an operation record, consumed on accept, is given a handle nobody will resolve.
    RecordGetsHandle,
    /// Recovery: whether a lifecycle row is needed is judged by its head alone (phase, registration, binding,
    /// marks), so a run's end that ended inputs without changing the head writes nothing, and a restart brings the
    /// ended inputs back.
    RowJudgedByItsHeadOnly,
    /// Recovery: inputs that were staged when the process died are not brought back.
    StagedLostOnRecovery,
    /// Destroy: the waiters are left waiting.
    DestroyKeepsWaiters,
    /// A panic in the checked code: a retire with an executor reads the newest queued input with `expect`, as if a
    /// retire always had something to drain.
    RetireExpectsQueuedWork,
    /// Operations: a destroy leaves the session's operations registry open, so its background jobs go on reporting
    /// into a destroyed session.
    DestroyLeavesOperations,
    /// Notices: a run's inputs are told ended, with the class of the executor's report, as soon as it reports,
    /// before their boundary commits (a commit that then fails answers the waiters otherwise).
    NoticeEndAtReport,
    /// Notices: a fail-stop tells only the ends of the inputs whose waiters it answers, so an input whose waiters
    /// an unregister had answered ends untold.
    FailStopLeavesEndsUntold,
    /// Operations: a background end is looked at only in the step that makes it, as before the feed had cursors: an
    /// end that lands during a run never wakes the session once the run is over.
    WakeOnlyAtTheEnd,
    /// Ownership: losing the session is handled like a failed lifecycle commit: the host fail-stops, ending every
    /// input and writing its row, as if the session were still its own.
    MoveTreatedAsFailStop,
    /// Ownership: the waiters of a moved session are told their inputs were abandoned, an outcome, while the inputs
    /// go on at the new owner.
    MoveAbandonsWaiters,
}

#[cfg(feature = "planted")]
impl Planted {
    /// Every planted defect.
    pub const ALL: [Planted; 19] = [
        Planted::RetireUndoneAtRunEnd,
        Planted::StopNotRevivable,
        Planted::NewestFirst,
        Planted::AttemptRefundedOnFailure,
        Planted::RetireAbandonsAsReset,
        Planted::FailedCommitReportedAsSuccess,
        Planted::DedupJoinWithoutHandle,
        Planted::CoalescingDropsWaiters,
        Planted::RecordGetsHandle,
        Planted::RowJudgedByItsHeadOnly,
        Planted::StagedLostOnRecovery,
        Planted::DestroyKeepsWaiters,
        Planted::RetireExpectsQueuedWork,
        Planted::DestroyLeavesOperations,
        Planted::NoticeEndAtReport,
        Planted::FailStopLeavesEndsUntold,
        Planted::WakeOnlyAtTheEnd,
        Planted::MoveTreatedAsFailStop,
        Planted::MoveAbandonsWaiters,
    ];
}

/// `$planted` when the session's configuration plants `$defect`, else `$normal`. Without the `planted` feature only
/// `$normal` is compiled.
macro_rules! planted_or {
    ($config:expr, $defect:ident, $planted:expr, $normal:expr) => {{
        #[cfg(feature = "planted")]
        let chosen = if $config.planted == Some($crate::planted::Planted::$defect) { $planted } else { $normal };
        #[cfg(not(feature = "planted"))]
        let chosen = $normal;
        chosen
    }};
}
pub(crate) use planted_or;
