//! Behaviour of the operations registry (SPEC 2.4, specs/operations.md).
//!
//! Every accepted event is followed by `check()`; every refusal is asserted to
//! leave the registry exactly as it was.

use burrow_core::ids::{Millis, OperationId, RunId};
use burrow_core::operations::{
    COMPLETED_RETAINED_MAX_DEFAULT, CompletionSeq, DISPLAY_NAME_BYTES_MAX, FeedEntry, OPERATIONS_ACTIVE_MAX_DEFAULT,
    OpConfigError, OpEffect, OpEvent, OpOutcome, OpRefusal, OpResult, OpStatus, OpViolation, OperationKind,
    OperationSpec, OperationsRegistry, OpsConfig, PEER_HANDLE_BYTES_MAX, Progress, WAIT_ALL_IDS_MAX,
    WATCHERS_PER_OPERATION_MAX, WaitId, WatcherId,
};

const RUN: RunId = RunId(7);

fn background(name: &str) -> OperationSpec {
    OperationSpec::new(OperationKind::BackgroundTool, name)
}

fn child(name: &str) -> OperationSpec {
    OperationSpec::new(OperationKind::ChildSession, name).expecting_peer()
}

fn result(text: &str) -> OpResult {
    OpResult { content: text.into(), is_error: false }
}

fn registry(max_concurrent: usize, max_completed: usize) -> OperationsRegistry {
    OperationsRegistry::new(OpsConfig { max_concurrent, max_completed, ..OpsConfig::default() })
}

/// Applies an event that must be accepted, then checks every invariant.
fn ok(registry: &mut OperationsRegistry, now: u64, event: OpEvent) -> Vec<OpEffect> {
    let effects =
        registry.apply(Millis(now), event.clone()).unwrap_or_else(|refusal| panic!("{event:?} refused: {refusal}"));
    registry.check().expect("invariants hold after an accepted event");
    effects
}

/// Applies an event that must be refused and asserts nothing changed.
fn refused(registry: &mut OperationsRegistry, event: OpEvent) -> OpRefusal {
    let before = registry.clone();
    let refusal = registry.apply(Millis(999), event.clone()).expect_err(&format!("{event:?} should be refused"));
    assert_eq!(*registry, before, "refused {event:?} changed the registry");
    refusal
}

fn register(registry: &mut OperationsRegistry, now: u64, spec: OperationSpec) -> OperationId {
    match ok(registry, now, OpEvent::Register { spec }).as_slice() {
        [OpEffect::Registered { op }] => *op,
        other => panic!("unexpected register effects {other:?}"),
    }
}

fn running(registry: &mut OperationsRegistry, spec: OperationSpec) -> OperationId {
    let op = register(registry, 0, spec);
    ok(registry, 0, OpEvent::ProvisioningSucceeded { op });
    op
}

fn complete(registry: &mut OperationsRegistry, op: OperationId, text: &str) -> Vec<OpEffect> {
    ok(registry, 0, OpEvent::Complete { op, result: result(text) })
}

fn status(registry: &OperationsRegistry, op: OperationId) -> Option<OpStatus> {
    registry.snapshot(op, Millis(0)).map(|snapshot| snapshot.status)
}

fn names(effects: &[OpEffect]) -> Vec<&'static str> {
    effects.iter().map(OpEffect::name).collect()
}

fn watch(registry: &mut OperationsRegistry, op: OperationId) -> (WatcherId, Vec<OpEffect>) {
    let effects = ok(registry, 0, OpEvent::RegisterWatcher { op });
    match effects.first() {
        Some(OpEffect::WatcherRegistered { watcher, .. }) => (*watcher, effects),
        other => panic!("unexpected watcher effects {other:?}"),
    }
}

/// Every event that names one operation, for sweeping refusals.
fn op_events(op: OperationId) -> Vec<OpEvent> {
    vec![
        OpEvent::ProvisioningSucceeded { op },
        OpEvent::ProvisioningFailed { op, error: "e".into() },
        OpEvent::PeerReady { op, peer: "p".into() },
        OpEvent::ReportProgress { op, progress: Progress::default() },
        OpEvent::Complete { op, result: result("r") },
        OpEvent::Fail { op, error: "e".into() },
        OpEvent::Cancel { op, reason: None },
        OpEvent::AbortProvisioning { op, reason: None },
        OpEvent::RequestRetire { op },
        OpEvent::MarkRetired { op },
    ]
}

// ---- registration -------------------------------------------------------

#[test]
fn register_allocates_ids_in_order_and_starts_provisioning() {
    let mut reg = OperationsRegistry::default();
    let first = register(&mut reg, 5, background("a"));
    let second = register(&mut reg, 6, background("b"));
    assert!(first < second);
    assert_eq!(status(&reg, first), Some(OpStatus::Provisioning));
    assert_eq!(reg.active_count(), 2);
    assert_eq!(reg.config().max_concurrent, OPERATIONS_ACTIVE_MAX_DEFAULT);
    assert_eq!(reg.config().max_completed, COMPLETED_RETAINED_MAX_DEFAULT);
}

#[test]
fn the_same_event_sequence_yields_the_same_ids() {
    let script = |reg: &mut OperationsRegistry| {
        let a = running(reg, background("a"));
        let (w, _) = watch(reg, a);
        (a, w)
    };
    let mut left = OperationsRegistry::default();
    let mut right = OperationsRegistry::default();
    assert_eq!(script(&mut left), script(&mut right));
    assert_eq!(left, right);
}

#[test]
fn register_is_refused_at_the_concurrency_limit_with_limit_and_count() {
    let mut reg = registry(2, 8);
    register(&mut reg, 0, background("a"));
    register(&mut reg, 0, background("b"));
    let refusal = refused(&mut reg, OpEvent::Register { spec: background("c") });
    assert_eq!(refusal, OpRefusal::LimitReached { limit: 2, active: 2 });
}

#[test]
fn an_ended_operation_frees_its_concurrency_slot() {
    let mut reg = registry(2, 8);
    let a = running(&mut reg, background("a"));
    register(&mut reg, 0, background("b"));
    complete(&mut reg, a, "done");
    register(&mut reg, 0, background("d"));
    assert_eq!(reg.active_count(), 2);
}

#[test]
fn register_is_refused_for_an_overlong_display_name() {
    let mut reg = OperationsRegistry::default();
    let name = "x".repeat(DISPLAY_NAME_BYTES_MAX + 1);
    let refusal = refused(&mut reg, OpEvent::Register { spec: background(&name) });
    assert_eq!(
        refusal,
        OpRefusal::TextTooLong { field: "display name", len: DISPLAY_NAME_BYTES_MAX + 1, max: DISPLAY_NAME_BYTES_MAX }
    );
}

#[test]
fn only_child_sessions_may_expect_a_peer() {
    let mut reg = OperationsRegistry::default();
    let spec = OperationSpec { expects_peer: true, ..background("a") };
    let refusal = refused(&mut reg, OpEvent::Register { spec });
    assert_eq!(refusal, OpRefusal::PeerChannelUnsupported { kind: OperationKind::BackgroundTool });
}

#[test]
fn register_is_refused_when_the_feed_has_no_room_until_acknowledged() {
    let config = OpsConfig { max_concurrent: 2, max_completed: 8, feed_max: 3 };
    let mut reg = OperationsRegistry::new(config);
    let a = running(&mut reg, background("a"));
    let b = running(&mut reg, background("b"));
    complete(&mut reg, a, "a");
    complete(&mut reg, b, "b");
    register(&mut reg, 0, background("c"));
    // Two unacknowledged ends plus one reserved slot fill the feed.
    let refusal = refused(&mut reg, OpEvent::Register { spec: background("d") });
    assert_eq!(refusal, OpRefusal::FeedFull { max: 3, unacknowledged: 2, active: 1 });
    ok(&mut reg, 0, OpEvent::AcknowledgeFeed { through: CompletionSeq(1) });
    register(&mut reg, 0, background("d"));
}

// ---- provisioning --------------------------------------------------------

#[test]
fn provisioning_succeeded_runs_the_job_and_stamps_its_start() {
    let mut reg = OperationsRegistry::default();
    let op = register(&mut reg, 10, background("a"));
    let effects = ok(&mut reg, 25, OpEvent::ProvisioningSucceeded { op });
    assert!(effects.is_empty());
    let snapshot = reg.snapshot(op, Millis(30)).unwrap();
    assert_eq!(snapshot.status, OpStatus::Running);
    assert_eq!(snapshot.started_at, Some(Millis(25)));
}

#[test]
fn provisioning_only_events_are_refused_once_provisioning_is_over() {
    for retiring in [false, true] {
        let mut reg = OperationsRegistry::default();
        let op = running(&mut reg, background("a"));
        let status = if retiring {
            ok(&mut reg, 0, OpEvent::RequestRetire { op });
            OpStatus::Retiring
        } else {
            OpStatus::Running
        };
        for event in [
            OpEvent::ProvisioningSucceeded { op },
            OpEvent::ProvisioningFailed { op, error: "e".into() },
            OpEvent::AbortProvisioning { op, reason: None },
        ] {
            assert_eq!(refused(&mut reg, event), OpRefusal::NotProvisioning { id: op, status });
        }
    }
}

#[test]
fn provisioning_failure_ends_the_operation_failed() {
    let mut reg = OperationsRegistry::default();
    let op = register(&mut reg, 0, background("a"));
    let effects = ok(&mut reg, 4, OpEvent::ProvisioningFailed { op, error: "no sandbox".into() });
    assert_eq!(names(&effects), ["OperationEnded"]);
    let snapshot = reg.snapshot(op, Millis(9)).unwrap();
    assert_eq!(snapshot.outcome, Some(OpOutcome::Failed { error: "no sandbox".into() }));
    assert_eq!(snapshot.started_at, None);
    assert_eq!(snapshot.completed_at, Some(Millis(4)));
}

#[test]
fn abort_provisioning_ends_the_operation_aborted_with_its_reason() {
    let mut reg = OperationsRegistry::default();
    let op = register(&mut reg, 0, background("a"));
    ok(&mut reg, 0, OpEvent::AbortProvisioning { op, reason: Some("user left".into()) });
    let snapshot = reg.snapshot(op, Millis(0)).unwrap();
    assert_eq!(snapshot.outcome, Some(OpOutcome::Aborted { reason: Some("user left".into()) }));
}

// ---- peer channel --------------------------------------------------------

#[test]
fn peer_ready_is_refused_for_an_operation_that_expects_no_peer() {
    let mut reg = OperationsRegistry::default();
    let op = running(&mut reg, background("a"));
    let refusal = refused(&mut reg, OpEvent::PeerReady { op, peer: "peer".into() });
    assert_eq!(refusal, OpRefusal::PeerReadyNotExpected { id: op, kind: OperationKind::BackgroundTool });
}

#[test]
fn peer_ready_exposes_the_handle_and_shows_it_in_the_snapshot() {
    let mut reg = OperationsRegistry::default();
    let op = running(&mut reg, child("c"));
    assert_eq!(reg.snapshot(op, Millis(0)).unwrap().peer_handle, None);
    let effects = ok(&mut reg, 0, OpEvent::PeerReady { op, peer: "member-x".into() });
    assert_eq!(effects, [OpEffect::PeerExposed { op, peer: "member-x".into() }]);
    assert_eq!(reg.snapshot(op, Millis(0)).unwrap().peer_handle.as_deref(), Some("member-x"));
}

#[test]
fn peer_ready_is_accepted_once_only() {
    let mut reg = OperationsRegistry::default();
    let op = running(&mut reg, child("c"));
    ok(&mut reg, 0, OpEvent::PeerReady { op, peer: "one".into() });
    let refusal = refused(&mut reg, OpEvent::PeerReady { op, peer: "two".into() });
    assert_eq!(refusal, OpRefusal::PeerAlreadyReady { id: op });
}

#[test]
fn peer_ready_may_arrive_while_still_provisioning() {
    let mut reg = OperationsRegistry::default();
    let op = register(&mut reg, 0, child("c"));
    ok(&mut reg, 0, OpEvent::PeerReady { op, peer: "early".into() });
    assert_eq!(status(&reg, op), Some(OpStatus::Provisioning));
}

#[test]
fn peer_ready_is_refused_for_an_overlong_handle() {
    let mut reg = OperationsRegistry::default();
    let op = running(&mut reg, child("c"));
    let peer = "p".repeat(PEER_HANDLE_BYTES_MAX + 1);
    let refusal = refused(&mut reg, OpEvent::PeerReady { op, peer });
    assert!(matches!(refusal, OpRefusal::TextTooLong { field: "peer handle", .. }));
}

// ---- progress ------------------------------------------------------------

#[test]
fn progress_reports_are_counted_in_every_live_status() {
    let mut reg = OperationsRegistry::default();
    let op = register(&mut reg, 0, background("a"));
    ok(&mut reg, 0, OpEvent::ReportProgress { op, progress: Progress::default() });
    ok(&mut reg, 0, OpEvent::ProvisioningSucceeded { op });
    ok(&mut reg, 0, OpEvent::ReportProgress { op, progress: Progress::default() });
    ok(&mut reg, 0, OpEvent::RequestRetire { op });
    let effects = ok(&mut reg, 0, OpEvent::ReportProgress { op, progress: Progress::default() });
    assert!(effects.is_empty());
    assert_eq!(reg.snapshot(op, Millis(0)).unwrap().progress_count, 3);
}

// ---- finishing -----------------------------------------------------------

#[test]
fn complete_ends_a_running_operation_with_its_result() {
    let mut reg = OperationsRegistry::default();
    let op = running(&mut reg, background("a"));
    let effects = complete(&mut reg, op, "done");
    assert_eq!(
        effects,
        [OpEffect::OperationEnded { op, seq: CompletionSeq(1), owner_wake: true, status: OpStatus::Completed }]
    );
    assert_eq!(reg.snapshot(op, Millis(0)).unwrap().outcome, Some(OpOutcome::Completed(result("done"))));
    assert_eq!(reg.active_count(), 0);
    assert_eq!(reg.retained_count(), 1);
}

#[test]
fn an_operation_cannot_finish_fail_or_retire_before_it_starts() {
    let mut reg = OperationsRegistry::default();
    let op = register(&mut reg, 0, background("a"));
    for event in [
        OpEvent::Complete { op, result: result("r") },
        OpEvent::Fail { op, error: "e".into() },
        OpEvent::RequestRetire { op },
    ] {
        assert_eq!(refused(&mut reg, event), OpRefusal::StillProvisioning { id: op });
    }
}

#[test]
fn a_retiring_operation_may_still_complete_or_fail() {
    for fail in [false, true] {
        let mut reg = OperationsRegistry::default();
        let op = running(&mut reg, background("a"));
        ok(&mut reg, 0, OpEvent::RequestRetire { op });
        let event = if fail {
            OpEvent::Fail { op, error: "crashed while winding down".into() }
        } else {
            OpEvent::Complete { op, result: result("final") }
        };
        ok(&mut reg, 0, event);
        let expected = if fail { OpStatus::Failed } else { OpStatus::Completed };
        assert_eq!(status(&reg, op), Some(expected));
    }
}

#[test]
fn fail_ends_a_running_operation_failed() {
    let mut reg = OperationsRegistry::default();
    let op = running(&mut reg, background("a"));
    ok(&mut reg, 0, OpEvent::Fail { op, error: "boom".into() });
    assert_eq!(reg.snapshot(op, Millis(0)).unwrap().outcome, Some(OpOutcome::Failed { error: "boom".into() }));
}

#[test]
fn cancel_ends_an_operation_from_every_live_status() {
    for start in [OpStatus::Provisioning, OpStatus::Running, OpStatus::Retiring] {
        let mut reg = OperationsRegistry::default();
        let op = register(&mut reg, 0, background("a"));
        if start != OpStatus::Provisioning {
            ok(&mut reg, 0, OpEvent::ProvisioningSucceeded { op });
        }
        if start == OpStatus::Retiring {
            ok(&mut reg, 0, OpEvent::RequestRetire { op });
        }
        assert_eq!(status(&reg, op), Some(start));
        ok(&mut reg, 0, OpEvent::Cancel { op, reason: Some("stop".into()) });
        assert_eq!(status(&reg, op), Some(OpStatus::Cancelled), "cancel from {start}");
    }
}

// ---- retirement ----------------------------------------------------------

#[test]
fn request_retire_then_mark_retired_ends_the_operation_retired() {
    let mut reg = OperationsRegistry::default();
    let op = running(&mut reg, background("a"));
    assert!(ok(&mut reg, 0, OpEvent::RequestRetire { op }).is_empty());
    assert_eq!(status(&reg, op), Some(OpStatus::Retiring));
    ok(&mut reg, 0, OpEvent::MarkRetired { op });
    assert_eq!(reg.snapshot(op, Millis(0)).unwrap().outcome, Some(OpOutcome::Retired));
}

#[test]
fn retirement_is_requested_only_once() {
    let mut reg = OperationsRegistry::default();
    let op = running(&mut reg, background("a"));
    ok(&mut reg, 0, OpEvent::RequestRetire { op });
    assert_eq!(refused(&mut reg, OpEvent::RequestRetire { op }), OpRefusal::AlreadyRetiring { id: op });
}

#[test]
fn mark_retired_needs_a_retiring_operation() {
    let mut reg = OperationsRegistry::default();
    let op = register(&mut reg, 0, background("a"));
    let expect = |status| OpRefusal::NotRetiring { id: op, status };
    assert_eq!(refused(&mut reg, OpEvent::MarkRetired { op }), expect(OpStatus::Provisioning));
    ok(&mut reg, 0, OpEvent::ProvisioningSucceeded { op });
    assert_eq!(refused(&mut reg, OpEvent::MarkRetired { op }), expect(OpStatus::Running));
}

// ---- terminal only once --------------------------------------------------

#[test]
fn an_ended_operation_refuses_every_lifecycle_event() {
    // One way to reach each terminal status.
    type Step = fn(OperationId) -> OpEvent;
    let endings: Vec<(OpStatus, Vec<Step>)> = vec![
        (
            OpStatus::Completed,
            vec![|op| OpEvent::ProvisioningSucceeded { op }, |op| OpEvent::Complete { op, result: result("r") }],
        ),
        (OpStatus::Failed, vec![|op| OpEvent::ProvisioningFailed { op, error: "e".into() }]),
        (OpStatus::Cancelled, vec![|op| OpEvent::Cancel { op, reason: None }]),
        (OpStatus::Aborted, vec![|op| OpEvent::AbortProvisioning { op, reason: None }]),
        (
            OpStatus::Retired,
            vec![|op| OpEvent::ProvisioningSucceeded { op }, |op| OpEvent::RequestRetire { op }, |op| {
                OpEvent::MarkRetired { op }
            }],
        ),
    ];
    for (terminal, steps) in endings {
        let mut reg = OperationsRegistry::default();
        let op = register(&mut reg, 0, child("c"));
        for step in steps {
            ok(&mut reg, 0, step(op));
        }
        assert_eq!(status(&reg, op), Some(terminal));
        for event in op_events(op) {
            let refusal = refused(&mut reg, event);
            assert_eq!(refusal, OpRefusal::AlreadyTerminal { id: op, status: terminal });
        }
        assert_eq!(reg.completion_seq_last(), CompletionSeq(1), "{terminal} ended more than once");
    }
}

#[test]
fn unknown_operations_are_refused_by_every_operation_event() {
    let mut reg = OperationsRegistry::default();
    running(&mut reg, background("a"));
    let ghost = OperationId(404);
    let mut events = op_events(ghost);
    events.push(OpEvent::RegisterWatcher { op: ghost });
    events.push(OpEvent::WaitAll { run: RUN, ids: vec![ghost] });
    for event in events {
        assert_eq!(refused(&mut reg, event), OpRefusal::UnknownOperation { id: ghost });
    }
}

// ---- owner termination ---------------------------------------------------

#[test]
fn terminate_owner_ends_every_live_operation_and_keeps_ended_ones() {
    let mut reg = OperationsRegistry::default();
    let done = running(&mut reg, background("done"));
    complete(&mut reg, done, "ok");
    let provisioning = register(&mut reg, 0, background("p"));
    let retiring = running(&mut reg, background("r"));
    ok(&mut reg, 0, OpEvent::RequestRetire { op: retiring });
    let effects = ok(&mut reg, 50, OpEvent::TerminateOwner { reason: "session destroyed".into() });
    assert_eq!(names(&effects), ["OperationEnded", "OperationEnded"]);
    for effect in &effects {
        assert!(matches!(effect, OpEffect::OperationEnded { owner_wake: false, .. }));
    }
    let terminated = OpOutcome::Terminated { reason: "session destroyed".into() };
    assert_eq!(reg.snapshot(provisioning, Millis(0)).unwrap().outcome, Some(terminated.clone()));
    assert_eq!(reg.snapshot(retiring, Millis(0)).unwrap().outcome, Some(terminated));
    assert_eq!(status(&reg, done), Some(OpStatus::Completed));
    assert!(reg.is_terminated());
}

#[test]
fn a_terminated_registry_refuses_every_event() {
    let mut reg = OperationsRegistry::default();
    let op = running(&mut reg, child("a"));
    ok(&mut reg, 0, OpEvent::TerminateOwner { reason: "gone".into() });
    let mut events = op_events(op);
    events.extend([
        OpEvent::Register { spec: background("late") },
        OpEvent::RegisterWatcher { op },
        OpEvent::WaitAll { run: RUN, ids: vec![op] },
        OpEvent::CancelWait { wait: WaitId(1) },
        OpEvent::CollectCompleted,
        OpEvent::AcknowledgeFeed { through: CompletionSeq(1) },
        OpEvent::TerminateOwner { reason: "again".into() },
    ]);
    for event in events {
        assert_eq!(refused(&mut reg, event), OpRefusal::Terminated);
    }
    // Reading is still allowed: the shell can report what happened.
    assert_eq!(status(&reg, op), Some(OpStatus::Terminated));
}

#[test]
fn terminate_owner_resolves_pending_watchers_and_the_active_wait() {
    let mut reg = OperationsRegistry::default();
    let a = running(&mut reg, background("a"));
    let b = running(&mut reg, background("b"));
    complete(&mut reg, a, "a");
    let (watcher, _) = watch(&mut reg, b);
    ok(&mut reg, 0, OpEvent::WaitAll { run: RUN, ids: vec![a, b] });
    let effects = ok(&mut reg, 0, OpEvent::TerminateOwner { reason: "bye".into() });
    let terminated = OpOutcome::Terminated { reason: "bye".into() };
    assert!(effects.contains(&OpEffect::ResolveWatchers {
        op: b,
        watchers: vec![watcher],
        outcome: terminated.clone()
    }));
    assert!(effects.contains(&OpEffect::ResolveWaitAll {
        wait: WaitId(1),
        outcomes: vec![(a, OpOutcome::Completed(result("a"))), (b, terminated)],
    }));
    assert_eq!(reg.active_wait(), None);
}

// ---- watchers ------------------------------------------------------------

#[test]
fn every_watcher_of_an_operation_resolves_together_at_its_end() {
    let mut reg = OperationsRegistry::default();
    let op = running(&mut reg, background("a"));
    let watchers: Vec<WatcherId> = (0..3).map(|_| watch(&mut reg, op).0).collect();
    assert_eq!(reg.snapshot(op, Millis(0)).unwrap().watcher_count, 3);
    let effects = complete(&mut reg, op, "multi");
    assert_eq!(
        effects[0],
        OpEffect::ResolveWatchers { op, watchers: watchers.clone(), outcome: OpOutcome::Completed(result("multi")) }
    );
    assert_eq!(reg.snapshot(op, Millis(0)).unwrap().watcher_count, 0);
}

#[test]
fn a_watcher_registered_after_the_end_resolves_in_the_same_apply() {
    let mut reg = OperationsRegistry::default();
    let op = running(&mut reg, background("a"));
    complete(&mut reg, op, "done");
    let (watcher, effects) = watch(&mut reg, op);
    assert_eq!(
        effects,
        [
            OpEffect::WatcherRegistered { op, watcher },
            OpEffect::ResolveWatchers { op, watchers: vec![watcher], outcome: OpOutcome::Completed(result("done")) },
        ]
    );
    assert_eq!(reg.snapshot(op, Millis(0)).unwrap().watcher_count, 0);
}

#[test]
fn watcher_ids_are_never_reused_across_operations() {
    let mut reg = OperationsRegistry::default();
    let a = running(&mut reg, background("a"));
    let b = running(&mut reg, background("b"));
    let first = watch(&mut reg, a).0;
    let second = watch(&mut reg, b).0;
    complete(&mut reg, a, "a");
    let third = watch(&mut reg, a).0;
    assert!(first < second && second < third);
}

#[test]
fn watchers_per_operation_are_bounded() {
    let mut reg = OperationsRegistry::default();
    let op = running(&mut reg, background("a"));
    for _ in 0..WATCHERS_PER_OPERATION_MAX {
        watch(&mut reg, op);
    }
    let refusal = refused(&mut reg, OpEvent::RegisterWatcher { op });
    assert_eq!(refusal, OpRefusal::WatcherLimitReached { id: op, max: WATCHERS_PER_OPERATION_MAX });
}

// ---- retention -----------------------------------------------------------

#[test]
fn retention_evicts_the_oldest_ended_records_first() {
    let mut reg = registry(8, 3);
    let ids: Vec<OperationId> = (0..5).map(|i| running(&mut reg, background(&format!("op-{i}")))).collect();
    let mut evicted = Vec::new();
    for op in &ids {
        for effect in complete(&mut reg, *op, "done") {
            if let OpEffect::Evicted { op } = effect {
                evicted.push(op);
            }
        }
    }
    assert_eq!(evicted, [ids[0], ids[1]]);
    assert!(reg.snapshot(ids[0], Millis(0)).is_none());
    assert!(reg.snapshot(ids[1], Millis(0)).is_none());
    assert!(ids[2..].iter().all(|op| reg.snapshot(*op, Millis(0)).is_some()));
    assert_eq!(reg.retained_count(), 3);
}

#[test]
fn eviction_never_drops_a_live_operation() {
    let mut reg = registry(8, 1);
    let live = register(&mut reg, 0, background("live"));
    let a = running(&mut reg, background("a"));
    let b = running(&mut reg, background("b"));
    complete(&mut reg, a, "a");
    let effects = complete(&mut reg, b, "b");
    assert_eq!(effects.last(), Some(&OpEffect::Evicted { op: a }));
    assert_eq!(status(&reg, live), Some(OpStatus::Provisioning));
}

#[test]
fn with_no_retention_an_end_still_reaches_its_watchers_then_is_evicted() {
    let mut reg = registry(8, 0);
    let op = running(&mut reg, background("a"));
    let (watcher, _) = watch(&mut reg, op);
    let effects = complete(&mut reg, op, "done");
    assert_eq!(names(&effects), ["ResolveWatchers", "OperationEnded", "Evicted"]);
    assert!(matches!(&effects[0], OpEffect::ResolveWatchers { watchers, .. } if *watchers == [watcher]));
    assert_eq!(refused(&mut reg, OpEvent::RegisterWatcher { op }), OpRefusal::UnknownOperation { id: op });
}

#[test]
fn collect_completed_drains_only_ended_records() {
    let mut reg = OperationsRegistry::default();
    let a = running(&mut reg, background("a"));
    complete(&mut reg, a, "done");
    let b = register(&mut reg, 0, background("b"));
    let effects = ok(&mut reg, 0, OpEvent::CollectCompleted);
    assert_eq!(effects, [OpEffect::Collected { operations: vec![(a, OpOutcome::Completed(result("done")))] }]);
    assert!(reg.snapshot(a, Millis(0)).is_none());
    assert!(reg.snapshot(b, Millis(0)).is_some());
    let again = ok(&mut reg, 0, OpEvent::CollectCompleted);
    assert_eq!(again, [OpEffect::Collected { operations: vec![] }]);
}

#[test]
fn collect_completed_reports_in_end_order_not_id_order() {
    let mut reg = OperationsRegistry::default();
    let a = running(&mut reg, background("a"));
    let b = running(&mut reg, background("b"));
    complete(&mut reg, b, "b");
    ok(&mut reg, 0, OpEvent::Cancel { op: a, reason: None });
    let effects = ok(&mut reg, 0, OpEvent::CollectCompleted);
    let OpEffect::Collected { operations } = &effects[0] else { panic!("{effects:?}") };
    let order: Vec<OperationId> = operations.iter().map(|(op, _)| *op).collect();
    assert_eq!(order, [b, a]);
}

// ---- wait_all ------------------------------------------------------------

#[test]
fn wait_all_over_ended_operations_resolves_at_once_in_the_given_order() {
    let mut reg = OperationsRegistry::default();
    let a = running(&mut reg, background("a"));
    let b = running(&mut reg, background("b"));
    complete(&mut reg, a, "a-done");
    ok(&mut reg, 0, OpEvent::Fail { op: b, error: "b-error".into() });
    let effects = ok(&mut reg, 0, OpEvent::WaitAll { run: RUN, ids: vec![b, a] });
    let wait = WaitId(1);
    assert_eq!(
        effects,
        [
            OpEffect::WaitStarted { wait, run: RUN },
            OpEffect::ResolveWaitAll {
                wait,
                outcomes: vec![
                    (b, OpOutcome::Failed { error: "b-error".into() }),
                    (a, OpOutcome::Completed(result("a-done"))),
                ],
            },
        ]
    );
    assert_eq!(reg.active_wait(), None);
}

#[test]
fn wait_all_resolves_when_its_last_member_ends() {
    let mut reg = OperationsRegistry::default();
    let a = running(&mut reg, background("a"));
    let b = running(&mut reg, background("b"));
    ok(&mut reg, 0, OpEvent::WaitAll { run: RUN, ids: vec![a, b] });
    assert_eq!(reg.active_wait(), Some((WaitId(1), RUN)));
    let first = complete(&mut reg, a, "a");
    assert_eq!(names(&first), ["OperationEnded"]);
    let last = complete(&mut reg, b, "b");
    assert_eq!(names(&last), ["OperationEnded", "ResolveWaitAll"]);
    assert_eq!(reg.active_wait(), None);
}

#[test]
fn only_one_wait_is_active_at_a_time() {
    let mut reg = OperationsRegistry::default();
    let a = running(&mut reg, background("a"));
    ok(&mut reg, 0, OpEvent::WaitAll { run: RUN, ids: vec![a] });
    let refusal = refused(&mut reg, OpEvent::WaitAll { run: RunId(8), ids: vec![a] });
    assert_eq!(refusal, OpRefusal::WaitAlreadyActive { wait: WaitId(1) });
}

#[test]
fn wait_all_refuses_duplicate_ids() {
    let mut reg = OperationsRegistry::default();
    let a = running(&mut reg, background("a"));
    let b = running(&mut reg, background("b"));
    let refusal = refused(&mut reg, OpEvent::WaitAll { run: RUN, ids: vec![a, b, a] });
    assert_eq!(refusal, OpRefusal::DuplicateIdInWait { id: a });
}

#[test]
fn wait_all_refuses_more_ids_than_its_bound() {
    let mut reg = OperationsRegistry::default();
    let ids = (0..=WAIT_ALL_IDS_MAX as u64).map(OperationId).collect();
    let refusal = refused(&mut reg, OpEvent::WaitAll { run: RUN, ids });
    assert_eq!(refusal, OpRefusal::WaitTooLarge { len: WAIT_ALL_IDS_MAX + 1, max: WAIT_ALL_IDS_MAX });
}

#[test]
fn an_empty_wait_resolves_at_once_with_no_outcomes() {
    let mut reg = OperationsRegistry::default();
    let effects = ok(&mut reg, 0, OpEvent::WaitAll { run: RUN, ids: vec![] });
    assert_eq!(effects[1], OpEffect::ResolveWaitAll { wait: WaitId(1), outcomes: vec![] });
}

#[test]
fn cancelling_the_wait_frees_the_slot_and_a_stale_cancel_is_refused() {
    let mut reg = OperationsRegistry::default();
    let a = running(&mut reg, background("a"));
    ok(&mut reg, 0, OpEvent::WaitAll { run: RUN, ids: vec![a] });
    let effects = ok(&mut reg, 0, OpEvent::CancelWait { wait: WaitId(1) });
    assert_eq!(effects, [OpEffect::WaitCancelled { wait: WaitId(1) }]);
    assert_eq!(reg.active_wait(), None);
    assert_eq!(
        refused(&mut reg, OpEvent::CancelWait { wait: WaitId(1) }),
        OpRefusal::WaitNotActive { wait: WaitId(1) }
    );
    // The member's end no longer resolves anything, and a new wait may start.
    assert_eq!(names(&complete(&mut reg, a, "a")), ["OperationEnded"]);
    ok(&mut reg, 0, OpEvent::WaitAll { run: RUN, ids: vec![a] });
}

#[test]
fn cancel_wait_is_refused_for_a_wait_that_is_not_the_active_one() {
    let mut reg = OperationsRegistry::default();
    let a = running(&mut reg, background("a"));
    ok(&mut reg, 0, OpEvent::WaitAll { run: RUN, ids: vec![a] });
    assert_eq!(
        refused(&mut reg, OpEvent::CancelWait { wait: WaitId(9) }),
        OpRefusal::WaitNotActive { wait: WaitId(9) }
    );
}

#[test]
fn a_wait_keeps_the_outcome_of_a_member_evicted_before_the_wait_resolves() {
    let mut reg = registry(8, 1);
    let a = running(&mut reg, background("a"));
    let b = running(&mut reg, background("b"));
    let c = running(&mut reg, background("c"));
    ok(&mut reg, 0, OpEvent::WaitAll { run: RUN, ids: vec![a, c] });
    complete(&mut reg, a, "a");
    let effects = complete(&mut reg, b, "b");
    assert!(effects.contains(&OpEffect::Evicted { op: a }));
    ok(&mut reg, 0, OpEvent::CollectCompleted);
    let effects = complete(&mut reg, c, "c");
    assert!(effects.contains(&OpEffect::ResolveWaitAll {
        wait: WaitId(1),
        outcomes: vec![(a, OpOutcome::Completed(result("a"))), (c, OpOutcome::Completed(result("c")))],
    }));
}

// ---- snapshots -----------------------------------------------------------

#[test]
fn snapshot_times_follow_the_injected_clock() {
    let mut reg = OperationsRegistry::default();
    let op = register(&mut reg, 100, background("timed"));
    let first = reg.snapshot(op, Millis(130)).unwrap();
    assert_eq!((first.created_at, first.started_at, first.completed_at), (Millis(100), None, None));
    assert_eq!(first.elapsed_ms, 30, "a live operation's elapsed time runs to now");
    ok(&mut reg, 140, OpEvent::ProvisioningSucceeded { op });
    ok(&mut reg, 175, OpEvent::Complete { op, result: result("done") });
    let last = reg.snapshot(op, Millis(10_000)).unwrap();
    assert_eq!(last.started_at, Some(Millis(140)));
    assert_eq!(last.completed_at, Some(Millis(175)));
    assert_eq!(last.elapsed_ms, 75, "an ended operation's elapsed time stops at its end");
    assert_eq!(last.completion_seq, Some(CompletionSeq(1)));
    assert_eq!(last.kind, OperationKind::BackgroundTool);
    assert_eq!(last.display_name, "timed");
}

#[test]
fn list_orders_operations_by_display_name() {
    let mut reg = OperationsRegistry::default();
    let c = register(&mut reg, 0, background("charlie"));
    let a = register(&mut reg, 0, background("alpha"));
    let b = register(&mut reg, 0, background("bravo"));
    let order: Vec<OperationId> = reg.list(Millis(0)).into_iter().map(|s| s.id).collect();
    assert_eq!(order, [a, b, c]);
}

// ---- completion feed -----------------------------------------------------

#[test]
fn every_end_gets_the_next_sequence_number_and_enters_the_feed() {
    let mut reg = OperationsRegistry::default();
    let a = running(&mut reg, background("a"));
    let b = register(&mut reg, 0, background("b"));
    complete(&mut reg, a, "a");
    ok(&mut reg, 0, OpEvent::AbortProvisioning { op: b, reason: None });
    let feed: Vec<(CompletionSeq, OperationId)> = reg.feed_since(CompletionSeq(0)).map(|e| (e.seq, e.op)).collect();
    assert_eq!(feed, [(CompletionSeq(1), a), (CompletionSeq(2), b)]);
    let after_first: Vec<&FeedEntry> = reg.feed_since(CompletionSeq(1)).collect();
    assert_eq!(after_first.len(), 1);
    assert_eq!(after_first[0].outcome, OpOutcome::Aborted { reason: None });
}

#[test]
fn acknowledging_the_feed_consumes_each_end_exactly_once() {
    let mut reg = OperationsRegistry::default();
    let ops: Vec<OperationId> = (0..3).map(|i| running(&mut reg, background(&format!("{i}")))).collect();
    let mut consumed = Vec::new();
    for op in &ops {
        complete(&mut reg, *op, "x");
        // The session reads from its acknowledged cursor, consumes, acknowledges.
        let cursor = reg.feed_acknowledged();
        let fresh: Vec<FeedEntry> = reg.feed_since(cursor).cloned().collect();
        let through = fresh.last().unwrap().seq;
        consumed.extend(fresh.iter().map(|e| e.op));
        let effects = ok(&mut reg, 0, OpEvent::AcknowledgeFeed { through });
        assert_eq!(effects, [OpEffect::FeedAcknowledged { through, dropped: 1 }]);
    }
    assert_eq!(consumed, ops);
    assert_eq!(reg.feed_since(CompletionSeq(0)).count(), 0);
}

#[test]
fn acknowledging_refuses_a_cursor_ahead_of_the_last_end_or_behind_the_last_ack() {
    let mut reg = OperationsRegistry::default();
    let a = running(&mut reg, background("a"));
    let b = running(&mut reg, background("b"));
    complete(&mut reg, a, "a");
    complete(&mut reg, b, "b");
    let ahead = refused(&mut reg, OpEvent::AcknowledgeFeed { through: CompletionSeq(3) });
    assert_eq!(ahead, OpRefusal::CursorAhead { cursor: CompletionSeq(3), last: CompletionSeq(2) });
    ok(&mut reg, 0, OpEvent::AcknowledgeFeed { through: CompletionSeq(2) });
    let behind = refused(&mut reg, OpEvent::AcknowledgeFeed { through: CompletionSeq(1) });
    assert_eq!(behind, OpRefusal::CursorBehind { cursor: CompletionSeq(1), acknowledged: CompletionSeq(2) });
    // Repeating the current cursor is harmless (a retried acknowledgement).
    let again = ok(&mut reg, 0, OpEvent::AcknowledgeFeed { through: CompletionSeq(2) });
    assert_eq!(again, [OpEffect::FeedAcknowledged { through: CompletionSeq(2), dropped: 0 }]);
}

#[test]
fn the_feed_is_independent_of_retention_and_collection() {
    let mut reg = registry(8, 0);
    let a = running(&mut reg, background("a"));
    complete(&mut reg, a, "a");
    assert!(reg.snapshot(a, Millis(0)).is_none(), "evicted at once");
    assert_eq!(reg.feed_since(CompletionSeq(0)).map(|e| e.op).collect::<Vec<_>>(), [a]);
}

#[test]
fn recovery_keeps_ended_records_feed_and_counters_and_drops_live_work() {
    let mut reg = OperationsRegistry::default();
    let a = running(&mut reg, background("a"));
    let live = running(&mut reg, background("live"));
    watch(&mut reg, live);
    ok(&mut reg, 0, OpEvent::WaitAll { run: RUN, ids: vec![live] });
    complete(&mut reg, a, "a");
    let mut recovered = reg.recovered();
    recovered.check().unwrap();
    assert_eq!(recovered.active_count(), 0);
    assert_eq!(recovered.active_wait(), None);
    assert_eq!(status(&recovered, a), Some(OpStatus::Completed));
    assert!(recovered.snapshot(live, Millis(0)).is_none());
    assert_eq!(recovered.completion_seq_last(), CompletionSeq(1));
    assert_eq!(recovered.feed_since(CompletionSeq(0)).count(), 1);
    // Counters carry on, so no id or sequence number is reused after restart.
    let next = running(&mut recovered, background("next"));
    assert!(next > live);
    assert_eq!(names(&complete(&mut recovered, next, "n")), ["OperationEnded"]);
    assert_eq!(recovered.completion_seq_last(), CompletionSeq(2));
}

// ---- configuration -------------------------------------------------------

#[test]
fn configuration_is_validated() {
    let base = OpsConfig::default();
    let cases = [
        (OpsConfig { max_concurrent: 0, ..base }, OpConfigError::ConcurrentZero),
        (
            OpsConfig { max_concurrent: 5000, feed_max: 10_000, ..base },
            OpConfigError::ConcurrentAboveLimit { value: 5000, limit: 1024 },
        ),
        (OpsConfig { max_completed: 5000, ..base }, OpConfigError::CompletedAboveLimit { value: 5000, limit: 4096 }),
        (
            OpsConfig { max_concurrent: 10, feed_max: 9, ..base },
            OpConfigError::FeedBelowConcurrent { feed_max: 9, max_concurrent: 10 },
        ),
        (OpsConfig { feed_max: 20_000, ..base }, OpConfigError::FeedAboveLimit { value: 20_000, limit: 16384 }),
    ];
    for (config, expected) in cases {
        assert_eq!(OperationsRegistry::try_new(config).unwrap_err(), expected);
    }
    assert!(OperationsRegistry::try_new(base).is_ok());
}

// ---- invariants ----------------------------------------------------------

#[test]
fn check_catches_each_violation() {
    type Breaker = fn(&mut OperationsRegistry) -> OpViolation;
    // Base state: op1 completed (seq 1), op2 completed (seq 2), op3 running,
    // op4 a child session running; retention 8, concurrency 4.
    let base = || {
        let mut reg = registry(4, 8);
        let a = running(&mut reg, background("a"));
        let b = running(&mut reg, background("b"));
        complete(&mut reg, a, "a");
        complete(&mut reg, b, "b");
        running(&mut reg, background("c"));
        running(&mut reg, child("d"));
        reg
    };
    let (op1, op2, op3, op4) = (OperationId(1), OperationId(2), OperationId(3), OperationId(4));
    let cases: Vec<(&str, Breaker)> = vec![
        ("watcher on ended op", |r| {
            r.tamper().push_watcher(OperationId(1), WatcherId(50));
            OpViolation::TerminalWithPendingWatchers { id: OperationId(1), pending: 1 }
        }),
        ("watcher pending twice", |r| {
            r.tamper().push_watcher(OperationId(3), WatcherId(50));
            r.tamper().push_watcher(OperationId(4), WatcherId(50));
            OpViolation::WatcherDuplicated { watcher: WatcherId(50) }
        }),
        ("too many watchers", |r| {
            for w in 0..=WATCHERS_PER_OPERATION_MAX as u64 {
                r.tamper().push_watcher(OperationId(3), WatcherId(100 + w));
            }
            OpViolation::WatchersOverBound {
                id: OperationId(3),
                count: WATCHERS_PER_OPERATION_MAX + 1,
                max: WATCHERS_PER_OPERATION_MAX,
            }
        }),
        ("live op queued for eviction", |r| {
            r.tamper().push_retained(OperationId(3));
            OpViolation::RetainedNotTerminal { id: OperationId(3) }
        }),
        ("ended op not queued for eviction", |r| {
            r.tamper().remove_retained(OperationId(2));
            OpViolation::TerminalNotRetained { id: OperationId(2) }
        }),
        ("ended op queued twice", |r| {
            r.tamper().push_retained(OperationId(1));
            OpViolation::TerminalNotRetained { id: OperationId(1) }
        }),
        ("retention over bound", |r| {
            r.tamper().set_config(OpsConfig { max_concurrent: 4, max_completed: 1, ..OpsConfig::default() });
            OpViolation::RetainedOverBound { retained: 2, max: 1 }
        }),
        ("active over bound", |r| {
            r.tamper().set_config(OpsConfig { max_concurrent: 1, max_completed: 8, ..OpsConfig::default() });
            OpViolation::ActiveOverBound { active: 2, max: 1 }
        }),
        ("terminated with live op", |r| {
            r.tamper().set_terminated();
            OpViolation::TerminatedWithLiveOperation { id: OperationId(3) }
        }),
        ("peer handle without expectation", |r| {
            r.tamper().set_peer_handle(OperationId(3), "rogue");
            OpViolation::PeerHandleUnexpected { id: OperationId(3) }
        }),
        ("two ends share a sequence number", |r| {
            r.tamper().set_completion_seq(OperationId(2), CompletionSeq(1));
            OpViolation::CompletionSeqDuplicated {
                seq: CompletionSeq(1),
                first: OperationId(1),
                second: OperationId(2),
            }
        }),
        ("end ahead of the counter", |r| {
            r.tamper().set_completion_seq(OperationId(2), CompletionSeq(9));
            OpViolation::CompletionSeqAhead { id: OperationId(2), seq: CompletionSeq(9), last: CompletionSeq(2) }
        }),
        ("wait missed a member's end", |r| {
            r.tamper().install_wait(WaitId(5), RUN, vec![(OperationId(1), None), (OperationId(3), None)]);
            OpViolation::WaitMissedEnd { wait: WaitId(5), id: OperationId(1) }
        }),
        ("wait captured a live member", |r| {
            let fake = Some(OpOutcome::Retired);
            r.tamper().install_wait(WaitId(5), RUN, vec![(OperationId(3), fake)]);
            OpViolation::WaitOutcomeForLiveOperation { wait: WaitId(5), id: OperationId(3) }
        }),
        ("wait with every member ended still active", |r| {
            let outcome = Some(OpOutcome::Completed(result("a")));
            r.tamper().install_wait(WaitId(5), RUN, vec![(OperationId(1), outcome)]);
            OpViolation::WaitUnresolved { wait: WaitId(5) }
        }),
        ("feed goes backwards", |r| {
            r.tamper().push_feed(FeedEntry {
                seq: CompletionSeq(1),
                op: OperationId(1),
                kind: OperationKind::BackgroundTool,
                outcome: OpOutcome::Retired,
            });
            OpViolation::FeedNotMonotonic { previous: CompletionSeq(2), next: CompletionSeq(1) }
        }),
        ("feed ahead of the counter", |r| {
            r.tamper().push_feed(FeedEntry {
                seq: CompletionSeq(3),
                op: OperationId(3),
                kind: OperationKind::BackgroundTool,
                outcome: OpOutcome::Retired,
            });
            OpViolation::FeedAheadOfCounter { seq: CompletionSeq(3), last: CompletionSeq(2) }
        }),
        ("acknowledged entry still held", |r| {
            r.tamper().set_feed_acknowledged(CompletionSeq(1));
            OpViolation::FeedEntryAcknowledged { seq: CompletionSeq(1), acknowledged: CompletionSeq(1) }
        }),
        ("feed over bound", |r| {
            r.tamper().set_config(OpsConfig { max_concurrent: 4, max_completed: 8, feed_max: 3 });
            OpViolation::FeedOverBound { unacknowledged: 2, active: 2, max: 3 }
        }),
    ];
    let clean = base();
    assert_eq!(clean.check(), Ok(()));
    assert_eq!(
        [op1, op2, op3, op4].map(|op| status(&clean, op)),
        [Some(OpStatus::Completed), Some(OpStatus::Completed), Some(OpStatus::Running), Some(OpStatus::Running)]
    );
    for (label, breaker) in cases {
        let mut reg = base();
        let expected = breaker(&mut reg);
        assert_eq!(reg.check(), Err(expected), "{label}");
    }
}

/// A long deterministic walk over every event kind: invariants hold after
/// each accepted event and every refusal leaves the registry untouched.
#[test]
fn a_pseudo_random_walk_keeps_every_invariant() {
    let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move |bound: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % bound
    };
    let mut reg = OperationsRegistry::new(OpsConfig { max_concurrent: 4, max_completed: 3, feed_max: 6 });
    let (mut accepted, mut refusals) = (0, 0);
    let mut latest: u64 = 0;
    let mut seen = std::collections::BTreeSet::new();
    for step in 0..5000u64 {
        // Aim at recently registered operations so most events can matter.
        let mut recent = || OperationId(latest.saturating_sub(next(5)).max(1));
        let op = recent();
        let other = recent();
        let event = match next(18) {
            0 | 1 => OpEvent::Register { spec: if next(2) == 0 { background("b") } else { child("c") } },
            2 => OpEvent::ProvisioningSucceeded { op },
            3 => OpEvent::ProvisioningFailed { op, error: "e".into() },
            4 => OpEvent::PeerReady { op, peer: "p".into() },
            5 => OpEvent::ReportProgress { op, progress: Progress::default() },
            6 => OpEvent::Complete { op, result: result("r") },
            7 => OpEvent::Fail { op, error: "e".into() },
            8 => OpEvent::Cancel { op, reason: None },
            9 => OpEvent::AbortProvisioning { op, reason: None },
            10 => OpEvent::RequestRetire { op },
            11 => OpEvent::MarkRetired { op },
            12 => OpEvent::RegisterWatcher { op },
            13 => OpEvent::WaitAll { run: RUN, ids: vec![op, other] },
            14 => OpEvent::CancelWait {
                wait: match reg.active_wait() {
                    Some((wait, _)) if next(4) > 0 => wait,
                    _ => WaitId(1 + next(4)),
                },
            },
            15 => OpEvent::CollectCompleted,
            16 => {
                OpEvent::AcknowledgeFeed { through: CompletionSeq(reg.completion_seq_last().0.saturating_sub(next(2))) }
            }
            _ if next(400) == 0 => OpEvent::TerminateOwner { reason: "end".into() },
            _ => OpEvent::ReportProgress { op, progress: Progress::default() },
        };
        let before = reg.clone();
        match reg.apply(Millis(step), event.clone()) {
            Ok(effects) => {
                accepted += 1;
                for effect in &effects {
                    seen.insert(effect.name());
                    if let OpEffect::Registered { op } = effect {
                        latest = op.0;
                    }
                }
                assert_eq!(reg.check(), Ok(()), "after {event:?} at step {step}");
            }
            Err(_) => {
                refusals += 1;
                assert_eq!(reg, before, "refused {event:?} changed the registry");
            }
        }
        if reg.is_terminated() {
            reg = OperationsRegistry::new(reg.config());
            latest = 0;
        }
    }
    assert!(accepted > 1000 && refusals > 1000, "walk too one-sided: {accepted} / {refusals}");
    assert_eq!(seen.len(), 11, "every effect kind should appear, saw {seen:?}");
}

// ----- kinds, progress and the feed's cursors (specs/operations.md#kinds, #progress, #cursors) ------------------

#[test]
fn a_capacity_slot_counts_against_the_limit_and_carries_no_result() {
    let mut reg = registry(1, 4);
    let slot = running(&mut reg, OperationSpec::new(OperationKind::CapacitySlot, "gpu"));
    assert!(matches!(refused(&mut reg, OpEvent::Register { spec: background("b") }), OpRefusal::LimitReached { .. }));
    assert_eq!(
        refused(&mut reg, OpEvent::Complete { op: slot, result: result("x") }),
        OpRefusal::ResultNotCarried { id: slot }
    );
    let error = OpResult { content: String::new(), is_error: true };
    assert_eq!(
        refused(&mut reg, OpEvent::Complete { op: slot, result: error }),
        OpRefusal::ResultNotCarried { id: slot }
    );
    let effects = ok(&mut reg, 0, OpEvent::Complete { op: slot, result: OpResult::empty() });
    assert!(effects.iter().any(|e| matches!(e, OpEffect::OperationEnded { owner_wake: false, .. })), "wakes nobody");
    running(&mut reg, background("b"));
}

#[test]
fn each_kind_says_whether_its_end_wakes_the_owner() {
    for kind in OperationKind::ALL {
        let mut reg = registry(4, 4);
        let op = running(&mut reg, OperationSpec::new(kind, "job"));
        let result = if kind.carries_result() { result("r") } else { OpResult::empty() };
        let effects = ok(&mut reg, 0, OpEvent::Complete { op, result });
        let wake = effects.iter().find_map(|e| match e {
            OpEffect::OperationEnded { owner_wake, .. } => Some(*owner_wake),
            _ => None,
        });
        assert_eq!(wake, Some(kind.wakes_owner()), "{kind}");
        assert_eq!(reg.feed_since(CompletionSeq(0)).next().map(|e| e.kind), Some(kind), "the feed names the kind");
    }
    // The owner's own termination wakes nobody, whatever the kind.
    let mut reg = registry(4, 4);
    running(&mut reg, OperationSpec::new(OperationKind::DetachedJob, "job"));
    let effects = ok(&mut reg, 0, OpEvent::TerminateOwner { reason: "gone".into() });
    assert!(effects.iter().any(|e| matches!(e, OpEffect::OperationEnded { owner_wake: false, .. })));
}

#[test]
fn progress_carries_a_bounded_payload() {
    let mut reg = registry(4, 4);
    let op = running(&mut reg, background("a"));
    let long = Progress::message("x".repeat(burrow_core::operations::PROGRESS_MESSAGE_BYTES_MAX + 1));
    assert!(matches!(refused(&mut reg, OpEvent::ReportProgress { op, progress: long }), OpRefusal::TextTooLong { .. }));
    let over = Progress { message: String::new(), percent: Some(101) };
    assert_eq!(
        refused(&mut reg, OpEvent::ReportProgress { op, progress: over }),
        OpRefusal::ProgressOutOfRange { percent: 101 }
    );
    let report = Progress { message: "3 of 4".into(), percent: Some(75) };
    ok(&mut reg, 0, OpEvent::ReportProgress { op, progress: report.clone() });
    let snap = reg.snapshot(op, Millis(0)).unwrap();
    assert_eq!((snap.progress_count, snap.progress_last), (1, Some(report)));
}

#[test]
fn a_source_label_is_bounded_and_a_child_session_belongs_to_child_kinds() {
    let mut reg = registry(4, 4);
    let long = background("a").source("s".repeat(burrow_core::operations::SOURCE_LABEL_BYTES_MAX + 1));
    assert!(matches!(refused(&mut reg, OpEvent::Register { spec: long }), OpRefusal::TextTooLong { .. }));
    let stray = background("a").child(burrow_core::ids::SessionId(3));
    assert_eq!(
        refused(&mut reg, OpEvent::Register { spec: stray }),
        OpRefusal::ChildSessionUnsupported { kind: OperationKind::BackgroundTool }
    );
    let op = running(&mut reg, child("c").child(burrow_core::ids::SessionId(3)).source("delegate"));
    let snap = reg.snapshot(op, Millis(0)).unwrap();
    assert_eq!((snap.child_session, snap.source_label.as_str()), (Some(burrow_core::ids::SessionId(3)), "delegate"));
}

#[test]
fn a_restart_keeps_a_running_detached_job_and_drops_every_other_live_operation() {
    let mut reg = registry(8, 8);
    let tool = running(&mut reg, background("tool"));
    let job = running(&mut reg, OperationSpec::new(OperationKind::DetachedJob, "job"));
    let pending = register(&mut reg, 0, OperationSpec::new(OperationKind::DetachedJob, "pending"));
    ok(&mut reg, 0, OpEvent::RegisterWatcher { op: job });
    let recovered = reg.recovered();
    recovered.check().expect("a recovered registry keeps its invariants");
    assert!(recovered.snapshot(tool, Millis(0)).is_none(), "its job died with the process");
    assert!(recovered.snapshot(pending, Millis(0)).is_none(), "never confirmed started");
    let kept = recovered.snapshot(job, Millis(0)).expect("re-bound");
    assert_eq!((kept.status, kept.watcher_count), (OpStatus::Running, 0), "its watchers died with the process");
    let mut recovered = recovered;
    let effects = ok(&mut recovered, 5, OpEvent::Complete { op: job, result: result("built") });
    assert!(effects.iter().any(|e| matches!(e, OpEffect::OperationEnded { owner_wake: true, .. })));
}

#[test]
fn the_cursors_survive_a_restart_and_stay_in_order() {
    let mut reg = registry(8, 8);
    for name in ["a", "b", "c"] {
        let op = running(&mut reg, background(name));
        complete(&mut reg, op, name);
    }
    ok(&mut reg, 0, OpEvent::AcknowledgeFeed { through: CompletionSeq(1) });
    // A registry on its own has no session to observe its ends (the session machine moves the other two cursors).
    let cursors = reg.cursors();
    assert_eq!(
        (cursors.applied, cursors.observed, cursors.injected),
        (CompletionSeq(1), CompletionSeq(0), CompletionSeq(0))
    );
    let recovered = reg.recovered();
    assert_eq!(recovered.cursors(), cursors, "every cursor survives");
    recovered.check().expect("cursors in order");
    let mut bent = recovered.clone();
    bent.tamper().set_feed_injected(CompletionSeq(3));
    assert!(matches!(bent.check(), Err(OpViolation::CursorsOutOfOrder { .. })), "injected past observed");
}
