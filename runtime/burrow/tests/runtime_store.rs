//! Durability across a process restart (SPEC 5), played by a second runtime over the first one's store.

mod support;

use std::sync::atomic::Ordering;

use burrow::store::StoredInput;
use burrow::{AcceptOutcome, Input, InputState, MemoryStore, OutcomeClass, Runtime, RuntimePhase, SessionId, Store};
use burrow_core::operations::{OpOutcome, OpResult, OpStatus, OperationKind, OperationSpec};
use support::{FlakyStore, Scripted, submit, within};

fn bg(name: &str) -> OperationSpec {
    OperationSpec::new(OperationKind::BackgroundTool, name)
}

#[burrow_env::test]
async fn queued_durable_inputs_survive_a_restart_and_ephemeral_ones_do_not() {
    let store = MemoryStore::new();
    let id = SessionId(1);
    {
        let first = Runtime::with_store(std::sync::Arc::new(store.clone()));
        first.prepare(id).await.unwrap();
        first.accept_input(id, Input::prompt("ok:durable")).await.unwrap();
        first.accept_input(id, Input::prompt("ok:ephemeral").ephemeral()).await.unwrap();
        // The first process dies here: nothing ran.
        std::mem::forget(first);
    }
    let second = Runtime::with_store(std::sync::Arc::new(store.clone()));
    let exec = Scripted::new();
    second.prepare(id).await.unwrap();
    assert_eq!(second.list_active_inputs(id).await.unwrap().len(), 1);
    second.attach_executor(id, exec.arc()).await.unwrap();
    support::settle(&second, id).await;
    assert_eq!(exec.payloads(), vec!["ok:durable"]);
}

/// Fails its first two runs, then hangs: the process dies during the third attempt.
#[derive(Default)]
struct FailTwiceThenHang {
    calls: std::sync::atomic::AtomicUsize,
}

impl burrow::Executor for FailTwiceThenHang {
    fn apply(
        &self,
        _request: burrow::RunRequest,
    ) -> burrow::BoxFuture<'_, Result<burrow::ExecutorOutput, burrow::ExecutorError>> {
        let call = self.calls.fetch_add(1, Ordering::SeqCst);
        Box::pin(async move {
            if call < 2 {
                return Err(burrow::ExecutorError::new("transient"));
            }
            std::future::pending().await
        })
    }
}

#[burrow_env::test]
async fn a_poison_input_that_crashes_the_process_is_abandoned_at_the_attempt_bound() {
    let store = MemoryStore::new();
    let id = SessionId(2);
    let first = Runtime::with_store(std::sync::Arc::new(store.clone()));
    let exec = std::sync::Arc::new(FailTwiceThenHang::default());
    first.attach_executor(id, exec.clone()).await.unwrap();
    let input = first.accept_input(id, Input::prompt("flaky")).await.unwrap().input();
    within(async {
        while exec.calls.load(Ordering::SeqCst) < 3 {
            burrow_env::task::yield_now().await;
        }
    })
    .await;
    let stored = store.load(id).await.unwrap().unwrap();
    let row: &StoredInput = stored.inputs.iter().find(|i| i.record.id == input).unwrap();
    assert_eq!(row.record.attempts, 3, "the attempt cut short by the crash was persisted when it started");
    std::mem::forget(first);

    let second = Runtime::with_store(std::sync::Arc::new(store.clone()));
    second.prepare(id).await.unwrap();
    let view = second.input_state(id, input).await.unwrap().unwrap();
    assert_eq!(view.attempts, 3, "attempts survive the restart");
    assert!(
        matches!(view.state, InputState::Abandoned(burrow_core::input::AbandonReason::MaxAttemptsExhausted { .. })),
        "a poison input that kills the process cannot spin forever: {view:?}"
    );
    let next = Scripted::new();
    second.attach_executor(id, next.arc()).await.unwrap();
    support::parked(&second, id).await;
    assert!(next.runs().is_empty());
}

#[burrow_env::test]
async fn an_input_staged_at_a_crash_with_attempts_left_is_requeued_and_runs_again() {
    let store = MemoryStore::new();
    let id = SessionId(12);
    let first = Runtime::with_store(std::sync::Arc::new(store.clone()));
    let exec = Scripted::new();
    let mut starts = exec.watch_starts();
    first.attach_executor(id, exec.arc()).await.unwrap();
    let input = first.accept_input(id, Input::prompt("block")).await.unwrap().input();
    within(starts.recv()).await.unwrap();
    std::mem::forget(first);

    let second = Runtime::with_store(std::sync::Arc::new(store.clone()));
    second.prepare(id).await.unwrap();
    let view = second.input_state(id, input).await.unwrap().unwrap();
    assert_eq!((view.state, view.attempts), (InputState::Queued, 1), "Staged comes back Queued, attempt kept");
    let next = Scripted::new();
    let mut next_starts = next.watch_starts();
    second.attach_executor(id, next.arc()).await.unwrap();
    within(next_starts.recv()).await.unwrap();
    next.release();
    support::settle(&second, id).await;
    assert_eq!(second.input_state(id, input).await.unwrap().unwrap().state, InputState::Consumed);
}

#[burrow_env::test]
async fn an_input_whose_boundary_committed_is_never_run_again_after_a_crash() {
    let store = FlakyStore::new();
    let id = SessionId(3);
    let first = Runtime::with_store(store.arc());
    let exec = Scripted::new();
    first.attach_executor(id, exec.arc()).await.unwrap();
    let mut starts = exec.watch_starts();
    store.hang_after_boundary.store(true, Ordering::SeqCst);
    let accepted = first.accept_input(id, Input::prompt("ok:once").idempotency_key("pay-42")).await.unwrap();
    within(starts.recv()).await.unwrap();
    // The boundary commit lands; the process dies in the lifecycle commit that follows it.
    within(async {
        while store.memory.load(id).await.unwrap().unwrap().receipts.is_empty() {
            burrow_env::task::yield_now().await;
        }
    })
    .await;
    std::mem::forget(first);

    let second = Runtime::with_store(std::sync::Arc::new(store.memory.clone()));
    second.prepare(id).await.unwrap();
    let view = second.input_state(id, accepted.input()).await.unwrap().unwrap();
    assert_eq!(view.state, InputState::Consumed, "a committed receipt makes it Consumed");
    let again = second.accept_input_with_completion(id, Input::prompt("ok:twice").idempotency_key("pay-42")).await;
    assert!(matches!(again.unwrap(), AcceptOutcome::Deduplicated { handle: None, .. }), "dedup survives the restart");
    let next = Scripted::new();
    second.attach_executor(id, next.arc()).await.unwrap();
    support::parked(&second, id).await;
    assert!(next.runs().is_empty(), "nothing is applied twice");
    let run = exec.runs()[0].run;
    let receipt = second.load_boundary_receipt(id, run).await.unwrap().expect("the receipt is in the store");
    assert_eq!(receipt.contributors, vec![accepted.input()]);
}

#[burrow_env::test]
async fn recover_reads_the_store_and_reports_its_counts() {
    let store = MemoryStore::new();
    let id = SessionId(4);
    let rt = Runtime::with_store(std::sync::Arc::new(store.clone()));
    rt.prepare(id).await.unwrap();
    let durable = submit(&rt, id, Input::prompt("a")).await;
    let ephemeral = submit(&rt, id, Input::prompt("b").ephemeral()).await;
    let report = rt.recover(id).await.unwrap();
    assert_eq!((report.recovered, report.requeued, report.abandoned), (1, 0, 0));
    assert_eq!(report.dropped, 1, "the ephemeral input is not in the store");
    assert_eq!(within(ephemeral.wait()).await.unwrap().class(), OutcomeClass::RuntimeTerminated);
    let exec = Scripted::new();
    rt.attach_executor(id, exec.arc()).await.unwrap();
    assert_eq!(within(durable.wait()).await.unwrap().class(), OutcomeClass::Completed, "its waiter was kept");
}

#[burrow_env::test]
async fn operations_ended_before_a_restart_are_recovered_in_the_same_epoch() {
    let store = MemoryStore::new();
    let id = SessionId(5);
    let first = Runtime::with_store(std::sync::Arc::new(store.clone()));
    let bindings = first.prepare(id).await.unwrap();
    let ops = bindings.operations.clone();
    let done = ops.register(bg("done")).await.unwrap();
    ops.provisioning_succeeded(done).await.unwrap();
    ops.complete(done, OpResult { content: "42".into(), is_error: false }).await.unwrap();
    let live = ops.register(bg("live")).await.unwrap();
    std::mem::forget(first);

    let second = Runtime::with_store(std::sync::Arc::new(store.clone()));
    let again = second.prepare(id).await.unwrap();
    assert_eq!(again.binding.epoch, bindings.binding.epoch, "same epoch");
    let snapshot = again.operations.snapshot(done).await.expect("the ended record survives");
    assert_eq!(snapshot.outcome, Some(OpOutcome::Completed(OpResult { content: "42".into(), is_error: false })));
    assert!(again.operations.snapshot(live).await.is_none(), "the live job died with the process");
    assert_eq!(
        again.cursors.1,
        bindings.operations.feed_since(burrow_core::operations::CompletionSeq(0)).await.last().unwrap().seq
    );
}

#[burrow_env::test]
async fn a_stopped_session_comes_back_stopped_and_a_destroyed_one_destroyed() {
    let store = MemoryStore::new();
    let first = Runtime::with_store(std::sync::Arc::new(store.clone()));
    first.prepare(SessionId(6)).await.unwrap();
    first.stop_executor(SessionId(6)).await.unwrap();
    first.prepare(SessionId(7)).await.unwrap();
    first.destroy(SessionId(7)).await.unwrap();
    drop(first);
    let second = Runtime::with_store(std::sync::Arc::new(store.clone()));
    second.prepare(SessionId(6)).await.unwrap();
    assert_eq!(second.runtime_state(SessionId(6)).await.unwrap().phase, RuntimePhase::Stopped);
    second.prepare(SessionId(7)).await.unwrap();
    assert_eq!(second.runtime_state(SessionId(7)).await.unwrap().phase, RuntimePhase::Destroyed);
    assert_eq!(store.sessions().await.unwrap(), vec![SessionId(6), SessionId(7)]);
}

#[burrow_env::test]
async fn a_reset_of_more_inputs_than_memory_keeps_writes_every_end_and_a_restart_brings_none_back() {
    // The default history keeps 1,024 ended inputs; a reset of a longer queue ends them all in one step, and every
    // row must say so (before the fix, the oldest ones left memory before their row was built and came back).
    let store = MemoryStore::new();
    let id = SessionId(1);
    let queued = burrow_core::input::TERMINAL_HISTORY_MAX + 40;
    {
        let first = Runtime::with_store(std::sync::Arc::new(store.clone()));
        first.prepare(id).await.unwrap();
        for n in 0..queued {
            first.accept_input(id, Input::prompt(format!("ok:{n}"))).await.unwrap();
        }
        let report = first.reset(id).await.unwrap();
        assert_eq!(report.abandoned, queued);
        std::mem::forget(first);
    }
    let image = store.load(id).await.unwrap().expect("stored");
    let live = image.inputs.iter().filter(|i| !i.record.state.is_terminal()).count();
    assert_eq!(live, 0, "every row records its end");
    let second = Runtime::with_store(std::sync::Arc::new(store.clone()));
    let exec = Scripted::new();
    second.attach_executor(id, exec.arc()).await.unwrap();
    assert_eq!(second.runtime_state(id).await.unwrap().active_inputs, 0);
    assert!(exec.runs().is_empty(), "nothing reset runs after the restart");
}

#[burrow_env::test]
async fn a_running_detached_job_and_the_feed_cursors_survive_a_restart_and_an_unapplied_end_wakes_it() {
    use burrow::ops::Progress;
    let store = MemoryStore::new();
    let id = SessionId(8);
    let first = Runtime::with_store(std::sync::Arc::new(store.clone()));
    let ops = first.prepare(id).await.unwrap().operations;
    let job = ops.register(OperationSpec::new(OperationKind::DetachedJob, "export")).await.unwrap();
    ops.provisioning_succeeded(job).await.unwrap();
    ops.report_progress(job, Progress::message("half")).await.unwrap();
    let tool = ops.register(bg("fetch")).await.unwrap();
    ops.provisioning_succeeded(tool).await.unwrap();
    ops.complete(tool, OpResult { content: "rows".into(), is_error: false }).await.unwrap();
    let before = ops.cursors().await;
    assert_eq!((before.applied.0, before.observed.0, before.injected.0), (0, 1, 1), "a continuation was injected");
    std::mem::forget(first);

    // The continuation died with the process; the end was never applied.
    let second = Runtime::with_store(std::sync::Arc::new(store.clone()));
    let again = second.prepare(id).await.unwrap();
    let kept = again.operations.snapshot(job).await.expect("a running detached job is re-bound");
    assert_eq!(kept.status, OpStatus::Running);
    assert_eq!(kept.progress_last, Some(Progress::message("half")), "its last report is kept too");
    assert!(again.operations.snapshot(tool).await.is_some(), "the ended record is kept");
    let active = second.list_active_inputs(id).await.unwrap();
    assert_eq!(active.iter().filter(|i| i.kind == "Continuation").count(), 1, "the unapplied end wakes it again");
    let after = again.operations.cursors().await;
    assert_eq!((after.applied.0, after.observed.0, after.injected.0), (0, 1, 1));
    // The job may still end after the restart, and its end wakes the session in turn.
    again.operations.complete(job, OpResult { content: "exported".into(), is_error: false }).await.unwrap();
    assert_eq!(again.operations.cursors().await.observed.0, 2);
}

#[burrow_env::test]
async fn a_derived_input_is_written_like_a_durable_one_and_ended_not_replayed_by_a_restart() {
    let store = MemoryStore::new();
    let id = SessionId(9);
    let first = Runtime::with_store(std::sync::Arc::new(store.clone()));
    first.prepare(id).await.unwrap();
    let derived = Input::new(burrow::InputKind::ExternalEvent, "webhook 7").durability(burrow::Durability::Derived);
    let derived = first.accept_input(id, derived.idempotency_key("ev-7")).await.unwrap().input();
    let durable = first.accept_input(id, Input::prompt("keep me")).await.unwrap().input();
    let err =
        first.accept_input(id, Input::prompt("typed once").durability(burrow::Durability::Derived)).await.unwrap_err();
    assert!(err.to_string().contains("cannot be derived"), "{err}");
    std::mem::forget(first);

    let second = Runtime::with_store(std::sync::Arc::new(store.clone()));
    second.prepare(id).await.unwrap();
    let state = second.input_state(id, derived).await.unwrap().expect("known after the restart");
    assert_eq!(state.state, burrow::InputState::Abandoned(burrow::burrow_core::input::AbandonReason::Rederived));
    assert_eq!(second.input_state(id, durable).await.unwrap().unwrap().state, burrow::InputState::Queued);
    let by_key = second.input_state_by_key(id, "ev-7").await.unwrap().expect("its key is known");
    assert_eq!(by_key.id, derived);
    let again = Input::new(burrow::InputKind::ExternalEvent, "webhook 7").durability(burrow::Durability::Derived);
    let outcome = second.accept_input(id, again.idempotency_key("ev-7")).await.unwrap();
    assert!(outcome.is_deduplicated(), "made again, it needs a key of its own");
}

/// specs/session.md#writes-per-input: an input run alone costs three writes (its row, its run's start row, the
/// boundary that ends it); inputs queued behind a run share the next run's start row and boundary.
#[burrow_env::test]
async fn an_input_costs_its_row_its_runs_start_and_its_boundary_and_nothing_more() {
    let store = FlakyStore::new();
    let runtime = Runtime::with_store(store.arc());
    let exec = Scripted::new();
    let id = SessionId(1);
    runtime.attach_executor(id, exec.arc()).await.unwrap();
    let counts =
        || [&store.input_writes, &store.lifecycle_writes, &store.boundary_writes].map(|n| n.load(Ordering::SeqCst));
    let before = counts();
    for i in 0..50 {
        let handle = submit(&runtime, id, Input::prompt(format!("ok:{i}"))).await;
        within(handle.wait()).await.unwrap();
    }
    let after = counts();
    let per_input: Vec<usize> = after.iter().zip(before).map(|(a, b)| a - b).collect();
    assert_eq!(per_input, vec![50, 50, 50], "one input row, one start row, one boundary each");
    assert_eq!(store.operations_writes.load(Ordering::SeqCst), 0);

    // Steer inputs that queue behind a run are staged together into the next one, and share its rows.
    let mut starts = exec.watch_starts();
    let blocker = submit(&runtime, id, Input::prompt("block")).await;
    within(starts.recv()).await.unwrap();
    let before = counts();
    let mut handles = Vec::new();
    for i in 0..48 {
        handles.push(submit(&runtime, id, Input::prompt(format!("ok:p{i}")).steer()).await);
    }
    exec.release();
    within(blocker.wait()).await.unwrap();
    for handle in handles {
        within(handle.wait()).await.unwrap();
    }
    let after = counts();
    let [inputs, starts, boundaries] = [0, 1, 2].map(|k| after[k] - before[k]);
    assert_eq!(inputs, 48);
    // The blocked run's boundary, then 48 steer inputs in runs of 16 (BATCH_INPUTS_MAX): each run one start row and
    // one boundary, no row at its end.
    assert_eq!((starts, boundaries), (3, 4));
    let image = store.memory.load(id).await.unwrap().unwrap();
    assert!(image.inputs.iter().all(|i| i.record.state == InputState::Consumed), "every end is in the store");
}
