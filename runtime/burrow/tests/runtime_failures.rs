//! Failure paths of SPEC 3: boundary-commit failure, terminal-persist failure, a closed effect channel, executor
//! panics, a failed run with a backlog, an executor that calls back into the runtime.

mod support;

use std::sync::Arc;
use std::sync::atomic::Ordering;

use burrow::{
    BoxFuture, Executor, ExecutorError, ExecutorOutput, Input, Outcome, OutcomeClass, RunRequest, Runtime,
    RuntimePhase, SessionId, StopReason,
};
use support::{FlakyStore, Scripted, attached, settle, submit, within};

#[burrow_env::test]
async fn a_boundary_commit_failure_rolls_the_input_back_and_stops_the_executor() {
    let store = FlakyStore::new();
    let rt = Runtime::with_store(store.arc());
    let id = SessionId(1);
    let exec = Scripted::new();
    rt.attach_executor(id, exec.arc()).await.unwrap();
    store.fail_boundaries.store(1, Ordering::SeqCst);
    let failing = submit(&rt, id, Input::prompt("ok:lost")).await;
    let outcome = within(failing.wait()).await.unwrap();
    assert_eq!(outcome.class(), OutcomeClass::CompletedWithFinalizationFailure);
    within(async {
        while rt.runtime_state(id).await.unwrap().loop_live {
            burrow_env::task::yield_now().await;
        }
    })
    .await;
    assert_eq!(rt.runtime_state(id).await.unwrap().phase, RuntimePhase::Stopped);
    assert_eq!(exec.stops(), vec![StopReason::Requested]);
    let image = burrow::Store::load(&store.memory, id).await.unwrap().unwrap();
    assert!(image.receipts.is_empty(), "nothing of the failed boundary was committed");
    rt.check_invariants(id).await.unwrap();
}

#[burrow_env::test]
async fn a_terminal_persist_failure_fail_stops_the_session_with_every_waiter_resolved() {
    let store = FlakyStore::new();
    let rt = Runtime::with_store(store.arc());
    let id = SessionId(2);
    let exec = Scripted::new();
    rt.attach_executor(id, exec.arc()).await.unwrap();
    let mut starts = exec.watch_starts();
    let running = submit(&rt, id, Input::prompt("block:finished")).await;
    let queued = submit(&rt, id, Input::prompt("ok:queued")).await;
    within(starts.recv()).await.unwrap();
    store.fail_lifecycles.store(1, Ordering::SeqCst);
    exec.release();
    // The run's boundary committed, so its waiter has its result; the lifecycle write after it failed.
    assert_eq!(within(running.wait()).await.unwrap().class(), OutcomeClass::Completed);
    assert_eq!(within(queued.wait()).await.unwrap().class(), OutcomeClass::RuntimeTerminated);
    let state = rt.runtime_state(id).await.unwrap();
    assert_eq!((state.phase, state.pending_waiters), (RuntimePhase::Stopped, 0));
    assert_eq!(exec.stops(), vec![StopReason::PersistFailed]);
    rt.check_invariants(id).await.unwrap();
}

#[burrow_env::test]
async fn a_loop_found_dead_during_a_run_whose_row_fails_stays_fail_stopped_across_a_restart() {
    // specs/session.md#one-lifecycle-row: the repair of a dead loop fails its run and falls back to Idle. When that
    // row's write failed, the fail-stop's row (the input Abandoned) was overwritten by a second, older row of the
    // same event (the input Queued), and a restart brought back an input whose waiter was told RuntimeTerminated.
    let store = FlakyStore::new();
    let rt = Runtime::with_store(store.arc());
    let id = SessionId(7);
    let exec = Scripted::new();
    rt.attach_executor(id, exec.arc()).await.unwrap();
    let mut starts = exec.watch_starts();
    let running = submit(&rt, id, Input::prompt("block:never")).await;
    let input = within(starts.recv()).await.unwrap().inputs[0].id;
    rt.kill_loop(id).await.unwrap();
    store.fail_lifecycles.store(1, Ordering::SeqCst);
    let _ = rt.attach_executor(id, Scripted::new().arc()).await;
    assert_eq!(within(running.wait()).await.unwrap().class(), OutcomeClass::RuntimeTerminated);
    let image = burrow::Store::load(&store.memory, id).await.unwrap().unwrap();
    let row = image.inputs.iter().find(|row| row.record.id == input).expect("the input's row");
    let stopped = burrow::InputState::Abandoned(burrow_core::input::AbandonReason::Stopped);
    assert_eq!(row.record.state, stopped, "the last row to land is the fail-stop's");
    drop(rt);
    let restarted = Runtime::with_store(Arc::new(store.memory.clone()));
    restarted.prepare(id).await.unwrap();
    assert!(restarted.list_active_inputs(id).await.unwrap().is_empty(), "an input told it ended does not come back");
}

#[burrow_env::test]
async fn an_end_whose_rows_failed_twice_is_written_by_the_next_row_and_stays_ended_across_a_restart() {
    // specs/session.md#a-failed-row-is-written-again: the retire's row and the fail-stop's row both fail; the attach
    // that revives the session writes the input's end, so a restart does not bring the input back.
    let store = FlakyStore::new();
    let rt = Runtime::with_store(store.arc());
    let id = SessionId(8);
    rt.prepare(id).await.unwrap();
    let input = rt.accept_input(id, Input::prompt("queued")).await.unwrap().input();
    store.fail_lifecycles.store(2, Ordering::SeqCst);
    let _ = rt.retire(id).await;
    assert_eq!(store.fail_lifecycles.load(Ordering::SeqCst), 0, "both rows failed");
    assert_eq!(rt.runtime_state(id).await.unwrap().phase, RuntimePhase::Stopped);
    rt.attach_executor(id, Scripted::new().arc()).await.unwrap();
    drop(rt);
    let restarted = Runtime::with_store(Arc::new(store.memory.clone()));
    restarted.prepare(id).await.unwrap();
    assert!(restarted.list_active_inputs(id).await.unwrap().is_empty(), "the retired input stays ended");
    let view = restarted.input_state(id, input).await.unwrap().expect("its row");
    assert!(matches!(view.state, burrow::InputState::Abandoned(_)), "{:?}", view.state);
}

#[burrow_env::test]
async fn dropping_the_runtime_closes_the_effect_channel_and_the_loop_takes_the_stop_path() {
    let exec = Scripted::new();
    let (rt, id) = attached(&exec).await;
    let mut starts = exec.watch_starts();
    let running = submit(&rt, id, Input::prompt("block:kept")).await;
    let queued = submit(&rt, id, Input::prompt("ok:never")).await;
    within(starts.recv()).await.unwrap();
    drop(rt);
    exec.release();
    assert_eq!(within(running.wait()).await.unwrap().class(), OutcomeClass::Completed, "the run in flight finishes");
    let outcome = within(queued.wait()).await.unwrap();
    assert_eq!(outcome.class(), OutcomeClass::RuntimeTerminated, "not a bare exit: queued work is resolved");
    within(async {
        while exec.cleanups() == 0 {
            burrow_env::task::yield_now().await;
        }
    })
    .await;
    assert_eq!(exec.stops(), vec![StopReason::Requested]);
    assert_eq!(exec.payloads(), vec!["block:kept"]);
}

#[burrow_env::test]
async fn an_executor_panic_fails_the_run_and_the_session_lives_on() {
    let exec = Scripted::new();
    let (rt, id) = attached(&exec).await;
    let poison = submit(&rt, id, Input::prompt("panic")).await;
    let healthy = submit(&rt, id, Input::prompt("ok:fine")).await;
    let outcome = within(poison.wait()).await.unwrap();
    let Outcome::AbandonedWithError { error, .. } = outcome else { panic!("{outcome:?}") };
    assert_eq!(error.cause, burrow::FailureCause::ExecutorPanicked);
    assert!(error.message.contains("scripted panic"), "{}", error.message);
    assert_eq!(within(healthy.wait()).await.unwrap().class(), OutcomeClass::Completed);
    let state = rt.runtime_state(id).await.unwrap();
    assert_eq!(state.phase, RuntimePhase::Attached);
    assert!(state.loop_live);
}

#[burrow_env::test]
async fn the_backlog_keeps_draining_after_a_failed_run() {
    let exec = Scripted::new();
    let (rt, id) = attached(&exec).await;
    let handles = vec![
        submit(&rt, id, Input::prompt("fail:once")).await,
        submit(&rt, id, Input::prompt("ok:2")).await,
        submit(&rt, id, Input::prompt("ok:3")).await,
    ];
    let classes: Vec<OutcomeClass> = {
        let mut v = Vec::new();
        for h in handles {
            v.push(within(h.wait()).await.unwrap().class());
        }
        v
    };
    assert_eq!(classes, vec![OutcomeClass::AbandonedWithError, OutcomeClass::Completed, OutcomeClass::Completed]);
    assert_eq!(exec.in_flight_max(), 1, "one run at a time");
}

#[burrow_env::test]
async fn a_failing_input_is_retried_up_to_max_attempts_then_abandoned() {
    let exec = Scripted::new();
    let (rt, id) = attached(&exec).await;
    let mut starts = exec.watch_starts();
    let blocker = submit(&rt, id, Input::prompt("block")).await;
    within(starts.recv()).await.unwrap();
    let flaky = submit(&rt, id, Input::prompt("fail:again")).await;
    let input = flaky.input();
    exec.release();
    within(blocker.wait()).await.unwrap();
    let outcome = within(flaky.wait()).await.unwrap();
    assert_eq!(outcome.class(), OutcomeClass::AbandonedWithError);
    assert_eq!(rt.input_state(id, input).await.unwrap().unwrap().attempts, 3);
    assert_eq!(exec.payloads().iter().filter(|p| *p == "fail:again").count(), 3, "never more than max_attempts");
}

/// An executor that, during its run, accepts into its own session and into another one and reads state.
struct CallsBack {
    runtime: Runtime,
    other: SessionId,
}

impl Executor for CallsBack {
    fn apply(&self, request: RunRequest) -> BoxFuture<'_, Result<ExecutorOutput, ExecutorError>> {
        Box::pin(async move {
            let payload = request.inputs[0].payload.clone();
            if payload == "spawn" {
                let own = self.runtime.accept_input(request.session, Input::prompt("child")).await;
                let other = self.runtime.accept_input(self.other, Input::prompt("to other")).await;
                let state = self.runtime.runtime_state(request.session).await;
                let ok = own.is_ok() && other.is_ok() && state.is_ok_and(|s| s.current_run == Some(request.run));
                return Ok(ExecutorOutput::result(if ok { "called back" } else { "refused" }));
            }
            Ok(ExecutorOutput::result(payload))
        })
    }
}

#[burrow_env::test]
async fn an_executor_may_call_back_into_the_runtime_during_apply() {
    let rt = Runtime::ephemeral();
    let (id, other) = (SessionId(1), SessionId(2));
    rt.prepare(other).await.unwrap();
    rt.attach_executor(id, Arc::new(CallsBack { runtime: rt.clone(), other })).await.unwrap();
    let outcome = within(submit(&rt, id, Input::prompt("spawn")).await.wait()).await.unwrap();
    assert_eq!(outcome, Outcome::Completed(burrow::RunResult { output: "called back".into() }));
    settle(&rt, id).await;
    assert_eq!(rt.list_active_inputs(other).await.unwrap().len(), 1);
    // The executor holds a clone of its runtime: stop it explicitly to end the loop.
    rt.stop_executor(id).await.unwrap();
}

#[burrow_env::test]
async fn a_broken_store_refuses_durable_admission_without_losing_what_was_accepted() {
    let store = FlakyStore::new();
    let rt = Runtime::with_store(store.arc());
    let id = SessionId(3);
    rt.prepare(id).await.unwrap();
    let kept = rt.accept_input(id, Input::prompt("kept")).await.unwrap();
    store.broken.store(true, Ordering::SeqCst);
    assert!(rt.accept_input(id, Input::prompt("refused")).await.is_err());
    let active: Vec<_> = rt.list_active_inputs(id).await.unwrap().iter().map(|v| v.id).collect();
    assert_eq!(active, vec![kept.input()]);
}

/// Found by the simulator: when an input's durable write failed, the wake emitted with its admission was dropped
/// although the machine already counted the loop as awake; later work then waited for a wake that never came.
#[burrow_env::test]
async fn a_failed_input_write_does_not_leave_the_loop_asleep() {
    let store = support::FlakyStore::new();
    let rt = burrow::Runtime::with_store(store.arc());
    let exec = support::Scripted::new();
    let id = burrow::SessionId(4);
    rt.attach_executor(id, exec.arc()).await.unwrap();
    support::parked(&rt, id).await;
    store.fail_inputs.store(1, std::sync::atomic::Ordering::SeqCst);
    assert!(rt.accept_input(id, burrow::Input::prompt("lost")).await.is_err());
    let (_, handle) = rt.accept_input_without_wake(id, burrow::Input::prompt("ok:quiet")).await.unwrap().into_parts();
    rt.wake(id).await.unwrap();
    let outcome = support::within(handle.expect("a handle").wait()).await.unwrap();
    assert_eq!(outcome, burrow::Outcome::Completed(burrow::RunResult { output: "quiet".into() }));
}
