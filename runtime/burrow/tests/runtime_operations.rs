//! The operations registry handle (SPEC 2.4): lifecycle, watchers, wait_all, limits, retention, snapshots, the
//! completion feed, owner termination and the detached wake.

mod support;

use burrow::{RunId, Runtime, SessionId};
use burrow_core::operations::{
    CompletionSeq, OpOutcome, OpRefusal, OpResult, OpStatus, OperationKind, OperationSpec, Progress,
};
use burrow_core::session::Refusal;
use burrow_env::time::{Duration, sleep};
use support::{Scripted, attached, parked, within};

fn bg(name: &str) -> OperationSpec {
    OperationSpec::new(OperationKind::BackgroundTool, name)
}

fn child(name: &str) -> OperationSpec {
    OperationSpec::new(OperationKind::ChildSession, name).expecting_peer()
}

fn result(text: &str) -> OpResult {
    OpResult { content: text.into(), is_error: false }
}

async fn prepared() -> (Runtime, burrow::OperationsHandle) {
    let rt = Runtime::ephemeral();
    let ops = rt.prepare(SessionId(1)).await.unwrap().operations;
    (rt, ops)
}

#[burrow_env::test]
async fn an_operation_goes_from_provisioning_to_running_to_completed() {
    let (_rt, ops) = prepared().await;
    let op = ops.register(bg("fetch")).await.unwrap();
    assert_eq!(ops.snapshot(op).await.unwrap().status, OpStatus::Provisioning);
    ops.provisioning_succeeded(op).await.unwrap();
    ops.report_progress(op, Progress::message("connecting")).await.unwrap();
    ops.report_progress(op, Progress { message: "half".into(), percent: Some(50) }).await.unwrap();
    let snap = ops.snapshot(op).await.unwrap();
    assert_eq!((snap.status, snap.progress_count), (OpStatus::Running, 2));
    assert_eq!(snap.progress_last, Some(Progress { message: "half".into(), percent: Some(50) }), "the last report");
    ops.complete(op, result("done")).await.unwrap();
    let snap = ops.snapshot(op).await.unwrap();
    assert_eq!(snap.outcome, Some(OpOutcome::Completed(result("done"))));
    let err = ops.fail(op, "late").await.unwrap_err();
    assert!(matches!(err.refusal(), Some(Refusal::Operations(OpRefusal::AlreadyTerminal { .. }))), "ends once");
}

#[burrow_env::test]
async fn provisioning_can_fail_or_be_aborted_and_only_then() {
    let (_rt, ops) = prepared().await;
    let a = ops.register(bg("a")).await.unwrap();
    ops.provisioning_failed(a, "no slot").await.unwrap();
    assert_eq!(ops.snapshot(a).await.unwrap().status, OpStatus::Failed);
    let b = ops.register(bg("b")).await.unwrap();
    ops.abort_provisioning(b, Some("changed my mind".into())).await.unwrap();
    assert_eq!(ops.snapshot(b).await.unwrap().status, OpStatus::Aborted);
    let c = ops.register(bg("c")).await.unwrap();
    ops.provisioning_succeeded(c).await.unwrap();
    let err = ops.abort_provisioning(c, None).await.unwrap_err();
    assert!(matches!(err.refusal(), Some(Refusal::Operations(OpRefusal::NotProvisioning { .. }))));
}

#[burrow_env::test]
async fn cancel_and_graceful_retirement() {
    let (_rt, ops) = prepared().await;
    let a = ops.register(bg("a")).await.unwrap();
    ops.provisioning_succeeded(a).await.unwrap();
    ops.cancel(a, Some("user".into())).await.unwrap();
    assert_eq!(ops.snapshot(a).await.unwrap().status, OpStatus::Cancelled);
    let b = ops.register(bg("b")).await.unwrap();
    ops.provisioning_succeeded(b).await.unwrap();
    ops.request_retire(b).await.unwrap();
    assert_eq!(ops.snapshot(b).await.unwrap().status, OpStatus::Retiring);
    ops.mark_retired(b).await.unwrap();
    assert_eq!(ops.snapshot(b).await.unwrap().status, OpStatus::Retired);
}

#[burrow_env::test]
async fn peer_ready_only_for_kinds_that_expect_a_peer_and_only_once() {
    let (_rt, ops) = prepared().await;
    let kid = ops.register(child("kid")).await.unwrap();
    ops.provisioning_succeeded(kid).await.unwrap();
    ops.peer_ready(kid, "peer://kid").await.unwrap();
    assert_eq!(ops.snapshot(kid).await.unwrap().peer_handle.as_deref(), Some("peer://kid"));
    let err = ops.peer_ready(kid, "again").await.unwrap_err();
    assert!(matches!(err.refusal(), Some(Refusal::Operations(OpRefusal::PeerAlreadyReady { .. }))));
    let tool = ops.register(bg("tool")).await.unwrap();
    ops.provisioning_succeeded(tool).await.unwrap();
    let err = ops.peer_ready(tool, "x").await.unwrap_err();
    assert!(matches!(err.refusal(), Some(Refusal::Operations(OpRefusal::PeerReadyNotExpected { .. }))));
}

#[burrow_env::test]
async fn watchers_resolve_once_and_a_late_watcher_resolves_at_once() {
    let (_rt, ops) = prepared().await;
    let op = ops.register(bg("w")).await.unwrap();
    ops.provisioning_succeeded(op).await.unwrap();
    let early = [ops.register_watcher(op).await.unwrap(), ops.register_watcher(op).await.unwrap()];
    assert_eq!(ops.snapshot(op).await.unwrap().watcher_count, 2);
    ops.fail(op, "broke").await.unwrap();
    for watcher in early {
        assert_eq!(within(watcher.wait()).await, Some(OpOutcome::Failed { error: "broke".into() }));
    }
    let late = ops.register_watcher(op).await.unwrap();
    assert_eq!(within(late.wait()).await, Some(OpOutcome::Failed { error: "broke".into() }));
}

#[burrow_env::test]
async fn wait_all_resolves_with_every_outcome_in_the_order_given() {
    let (_rt, ops) = prepared().await;
    let a = ops.register(bg("a")).await.unwrap();
    let b = ops.register(bg("b")).await.unwrap();
    for op in [a, b] {
        ops.provisioning_succeeded(op).await.unwrap();
    }
    let wait = ops.wait_all(RunId(1), vec![b, a]).await.unwrap();
    ops.complete(a, result("A")).await.unwrap();
    ops.cancel(b, None).await.unwrap();
    let outcomes = within(wait).await.unwrap();
    assert_eq!(outcomes, vec![(b, OpOutcome::Cancelled { reason: None }), (a, OpOutcome::Completed(result("A")))]);
}

#[burrow_env::test]
async fn wait_all_refuses_a_second_wait_duplicates_and_unknown_ids_and_dropping_cancels() {
    let (_rt, ops) = prepared().await;
    let a = ops.register(bg("a")).await.unwrap();
    let err = ops.wait_all(RunId(1), vec![a, a]).await.unwrap_err();
    assert!(matches!(err.refusal(), Some(Refusal::Operations(OpRefusal::DuplicateIdInWait { .. }))));
    let unknown = burrow::OperationId(999);
    let err = ops.wait_all(RunId(1), vec![unknown]).await.unwrap_err();
    assert!(matches!(err.refusal(), Some(Refusal::Operations(OpRefusal::UnknownOperation { .. }))));
    let first = ops.wait_all(RunId(1), vec![a]).await.unwrap();
    let err = ops.wait_all(RunId(2), vec![a]).await.unwrap_err();
    assert!(matches!(err.refusal(), Some(Refusal::Operations(OpRefusal::WaitAlreadyActive { .. }))));
    drop(first);
    within(async {
        loop {
            match ops.wait_all(RunId(3), vec![a]).await {
                Ok(_) => return,
                Err(_) => sleep(Duration::from_millis(1)).await,
            }
        }
    })
    .await;
}

#[burrow_env::test]
async fn max_concurrent_is_a_typed_refusal_naming_the_limit_and_the_count() {
    let (_rt, ops) = prepared().await;
    let limit = burrow_core::operations::OPERATIONS_ACTIVE_MAX_DEFAULT;
    for i in 0..limit {
        ops.register(bg(&format!("op{i}"))).await.unwrap();
    }
    let err = ops.register(bg("one too many")).await.unwrap_err();
    assert!(
        matches!(err.refusal(), Some(Refusal::Operations(OpRefusal::LimitReached { limit: l, active: a })) if *l == limit && *a == limit),
        "{err:?}"
    );
}

#[burrow_env::test]
async fn collect_completed_drains_ended_records_only() {
    let (_rt, ops) = prepared().await;
    let done = ops.register(bg("done")).await.unwrap();
    ops.provisioning_succeeded(done).await.unwrap();
    ops.complete(done, result("x")).await.unwrap();
    let live = ops.register(bg("live")).await.unwrap();
    let collected = ops.collect_completed().await.unwrap();
    assert_eq!(collected, vec![(done, OpOutcome::Completed(result("x")))]);
    assert!(ops.snapshot(done).await.is_none());
    assert!(ops.snapshot(live).await.is_some());
    assert!(ops.collect_completed().await.unwrap().is_empty());
}

#[burrow_env::test]
async fn the_feed_hands_each_end_out_once_by_cursor() {
    let (_rt, ops) = prepared().await;
    let mut ends = Vec::new();
    for name in ["a", "b", "c"] {
        let op = ops.register(bg(name)).await.unwrap();
        ops.provisioning_succeeded(op).await.unwrap();
        ops.complete(op, result(name)).await.unwrap();
        ends.push(op);
    }
    let feed = ops.feed_since(CompletionSeq(0)).await;
    assert_eq!(feed.iter().map(|e| e.op).collect::<Vec<_>>(), ends);
    assert!(feed.windows(2).all(|w| w[0].seq < w[1].seq), "sequence numbers are monotonic");
    ops.acknowledge(feed[1].seq).await.unwrap();
    let rest = ops.feed_since(feed[1].seq).await;
    assert_eq!(rest.iter().map(|e| e.op).collect::<Vec<_>>(), vec![ends[2]]);
    let err = ops.acknowledge(CompletionSeq(99)).await.unwrap_err();
    assert!(matches!(err.refusal(), Some(Refusal::Operations(OpRefusal::CursorAhead { .. }))));
}

#[burrow_env::test]
async fn snapshots_carry_times_from_the_runtime_clock() {
    let (_rt, ops) = prepared().await;
    let op = ops.register(bg("timed")).await.unwrap();
    sleep(Duration::from_millis(20)).await;
    ops.provisioning_succeeded(op).await.unwrap();
    sleep(Duration::from_millis(20)).await;
    ops.complete(op, result("t")).await.unwrap();
    let snap = ops.snapshot(op).await.unwrap();
    let started = snap.started_at.unwrap();
    let completed = snap.completed_at.unwrap();
    assert!(started.since(snap.created_at) >= 20);
    assert!(completed.since(started) >= 20);
    assert_eq!(snap.elapsed_ms, completed.since(snap.created_at));
    assert_eq!(ops.list().await.len(), 1);
}

#[burrow_env::test]
async fn terminate_owner_ends_live_operations_and_refuses_everything_after() {
    let (_rt, ops) = prepared().await;
    let op = ops.register(bg("live")).await.unwrap();
    let watcher = ops.register_watcher(op).await.unwrap();
    ops.terminate_owner("shutting down").await.unwrap();
    assert_eq!(within(watcher.wait()).await, Some(OpOutcome::Terminated { reason: "shutting down".into() }));
    let err = ops.register(bg("after")).await.unwrap_err();
    assert!(matches!(err.refusal(), Some(Refusal::Operations(OpRefusal::Terminated))));
}

#[burrow_env::test]
async fn destroying_the_session_terminates_its_operations() {
    let (rt, ops) = prepared().await;
    let op = ops.register(bg("live")).await.unwrap();
    let watcher = ops.register_watcher(op).await.unwrap();
    rt.destroy(SessionId(1)).await.unwrap();
    assert!(matches!(within(watcher.wait()).await, Some(OpOutcome::Terminated { .. })));
}

#[burrow_env::test]
async fn a_background_operation_ending_wakes_its_idle_session_with_a_continuation() {
    let exec = Scripted::new();
    let (rt, id) = attached(&exec).await;
    let ops = rt.operations(id).await.unwrap();
    let op = ops.register(bg("long job")).await.unwrap();
    ops.provisioning_succeeded(op).await.unwrap();
    parked(&rt, id).await;
    assert!(exec.runs().is_empty());
    ops.complete(op, result("finished")).await.unwrap();
    within(async {
        while exec.runs().is_empty() {
            sleep(Duration::from_millis(1)).await;
        }
    })
    .await;
    assert_eq!(exec.runs()[0].inputs[0].kind, burrow::InputKind::Continuation);
    support::settle(&rt, id).await;
}

#[burrow_env::test]
async fn retention_is_bounded_and_evicts_the_oldest_ended_record_first() {
    let (_rt, ops) = prepared().await;
    let retained = burrow_core::operations::COMPLETED_RETAINED_MAX_DEFAULT;
    let mut ids = Vec::new();
    for i in 0..=retained {
        let op = ops.register(bg(&format!("op{i}"))).await.unwrap();
        ops.provisioning_succeeded(op).await.unwrap();
        ops.complete(op, result("x")).await.unwrap();
        ops.acknowledge(ops.snapshot(op).await.unwrap().completion_seq.unwrap()).await.unwrap();
        ids.push(op);
    }
    assert!(ops.snapshot(ids[0]).await.is_none(), "the oldest ended record was evicted");
    assert!(ops.snapshot(ids[1]).await.is_some());
    assert_eq!(ops.list().await.len(), retained);
}

/// Issue 18 item 8: the registry's limits are settings, for every session of a runtime (`RuntimeConfig::session`)
/// and for one session (`prepare_with`); a setting past a ceiling is a typed error and makes no session.
#[burrow_env::test]
async fn operations_limits_are_settings_per_runtime_and_per_session() {
    use burrow::{RuntimeConfig, RuntimeError, SessionConfig};
    use burrow_core::operations::{OPERATIONS_ACTIVE_MAX_LIMIT, OpConfigError, OpsConfig};
    assert_eq!(OpsConfig::default().max_concurrent, OPERATIONS_ACTIVE_MAX_LIMIT, "unlimited means the core's ceiling");
    assert_eq!(OpsConfig::default().max_completed, 256);
    let runtime_wide = OpsConfig { max_concurrent: 2, max_completed: 1, feed_max: 8 };
    let config = RuntimeConfig {
        session: SessionConfig { operations: runtime_wide, ..SessionConfig::default() },
        ..RuntimeConfig::default()
    };
    let rt = Runtime::with_config(config, None);
    let ops = rt.prepare(SessionId(1)).await.unwrap().operations;
    let first = ops.register(bg("a")).await.unwrap();
    let second = ops.register(bg("b")).await.unwrap();
    let err = ops.register(bg("c")).await.unwrap_err();
    let limit = Some(&Refusal::Operations(OpRefusal::LimitReached { limit: 2, active: 2 }));
    assert_eq!(err.refusal(), limit, "{err:?}");
    for op in [first, second] {
        ops.provisioning_succeeded(op).await.unwrap();
        ops.complete(op, result("done")).await.unwrap();
    }
    assert!(ops.snapshot(first).await.is_none(), "one ended record is retained: the older one was evicted");
    assert!(ops.snapshot(second).await.is_some());

    let own = SessionConfig { operations: OpsConfig { max_concurrent: 3, ..runtime_wide }, ..SessionConfig::default() };
    let ops = rt.prepare_with(SessionId(2), own).await.unwrap().operations;
    for name in ["a", "b", "c"] {
        ops.register(bg(name)).await.unwrap();
    }
    assert!(ops.register(bg("d")).await.is_err(), "this session's own limit is three");

    let zero =
        SessionConfig { operations: OpsConfig { max_concurrent: 0, ..runtime_wide }, ..SessionConfig::default() };
    let err = rt.prepare_with(SessionId(3), zero).await.unwrap_err();
    let expected = burrow_core::session::ConfigError::Operations(OpConfigError::ConcurrentZero);
    assert_eq!(err, RuntimeError::InvalidConfig { session: SessionId(3), error: expected });
    assert!(!rt.sessions().await.contains(&SessionId(3)), "nothing was made");
    let no_history = SessionConfig { history_max: 0, ..SessionConfig::default() };
    assert!(matches!(rt.prepare_with(SessionId(4), no_history).await, Err(RuntimeError::InvalidConfig { .. })));
}

async fn runs_at_least(exec: &Scripted, n: usize) {
    within(async {
        while exec.runs().len() < n {
            sleep(Duration::from_millis(1)).await;
        }
    })
    .await;
}

#[burrow_env::test]
async fn an_end_during_a_run_wakes_the_session_once_the_run_is_over() {
    let exec = Scripted::new();
    let (rt, id) = attached(&exec).await;
    let ops = rt.operations(id).await.unwrap();
    let op = ops.register(bg("fetch")).await.unwrap();
    ops.provisioning_succeeded(op).await.unwrap();
    rt.accept_input(id, burrow::Input::prompt("block")).await.unwrap();
    runs_at_least(&exec, 1).await;
    ops.complete(op, result("rows")).await.unwrap();
    let cursors = ops.cursors().await;
    assert_eq!((cursors.applied.0, cursors.observed.0, cursors.injected.0), (0, 1, 0), "seen during the run");
    exec.release();
    runs_at_least(&exec, 2).await;
    assert_eq!(exec.runs()[1].inputs[0].kind, burrow::InputKind::Continuation, "woken once the run was over");
    support::settle(&rt, id).await;
    assert_eq!(exec.runs().len(), 2, "one continuation for one end");
    assert_eq!(ops.cursors().await.injected.0, 1);
}

#[burrow_env::test]
async fn each_operation_kind_keeps_its_own_rules() {
    let exec = Scripted::new();
    let (rt, id) = attached(&exec).await;
    let ops = rt.operations(id).await.unwrap();
    parked(&rt, id).await;
    // A child session and a capacity slot end without waking the session.
    let child_op = ops.register(child("helper").child(SessionId(9)).source("delegate")).await.unwrap();
    let slot = ops.register(OperationSpec::new(OperationKind::CapacitySlot, "gpu")).await.unwrap();
    for op in [child_op, slot] {
        ops.provisioning_succeeded(op).await.unwrap();
    }
    ops.peer_ready(child_op, "peer://helper").await.unwrap();
    let err = ops.peer_ready(slot, "peer://x").await.unwrap_err();
    assert!(matches!(err.refusal(), Some(Refusal::Operations(OpRefusal::PeerReadyNotExpected { .. }))));
    let err = ops.complete(slot, result("x")).await.unwrap_err();
    assert!(matches!(err.refusal(), Some(Refusal::Operations(OpRefusal::ResultNotCarried { .. }))), "no result");
    ops.release(slot).await.unwrap();
    ops.complete(child_op, result("done")).await.unwrap();
    let snapshot = ops.snapshot(child_op).await.unwrap();
    assert_eq!((snapshot.owner, snapshot.child_session), (Some(id), Some(SessionId(9))));
    assert_eq!(snapshot.source_label, "delegate");
    parked(&rt, id).await;
    assert!(exec.runs().is_empty(), "neither a child's nor a slot's end wakes the session");
    // A detached job's end wakes it, though nothing waits on the job.
    let job = ops.register(OperationSpec::new(OperationKind::DetachedJob, "nightly build")).await.unwrap();
    ops.provisioning_succeeded(job).await.unwrap();
    ops.complete(job, result("built")).await.unwrap();
    runs_at_least(&exec, 1).await;
    assert_eq!(exec.runs()[0].inputs[0].kind, burrow::InputKind::Continuation);
    // An owner other than the session is refused.
    let foreign = bg("x").owned_by(SessionId(2));
    let err = ops.register(foreign).await.unwrap_err();
    assert!(matches!(err.refusal(), Some(Refusal::Operations(OpRefusal::OwnerMismatch { .. }))));
    support::settle(&rt, id).await;
}
