//! Completion handles (SPEC 2.3): one test per outcome class, plumbing errors, many waiters, cleanup relays and
//! cleanup-observation fencing.

mod support;

use std::sync::atomic::Ordering;

use burrow::{
    CompletionError, Input, Outcome, OutcomeClass, Runtime, RuntimeConfig, RuntimeError, SessionConfig, SessionId,
};
use burrow_core::completion::CleanupRefusal;
use burrow_core::session::Refusal;
use burrow_env::time::Duration;
use support::{FlakyStore, Scripted, attached, submit, within};

#[burrow_env::test]
async fn completed_carries_the_result() {
    let exec = Scripted::new();
    let (rt, id) = attached(&exec).await;
    let outcome = within(submit(&rt, id, Input::prompt("ok:answer")).await.wait()).await.unwrap();
    assert_eq!(outcome, Outcome::Completed(burrow::RunResult { output: "answer".into() }));
}

#[burrow_env::test]
async fn completed_without_result() {
    let exec = Scripted::new();
    let (rt, id) = attached(&exec).await;
    let outcome = within(submit(&rt, id, Input::prompt("none")).await.wait()).await.unwrap();
    assert_eq!(outcome, Outcome::CompletedWithoutResult);
}

#[burrow_env::test]
async fn callback_pending_names_the_tool_and_its_arguments() {
    let exec = Scripted::new();
    let (rt, id) = attached(&exec).await;
    let outcome = within(submit(&rt, id, Input::prompt("callback:search:{\"q\":1}")).await.wait()).await.unwrap();
    assert_eq!(outcome, Outcome::CallbackPending { tool: "search".into(), args: "{\"q\":1}".into() });
}

#[burrow_env::test]
async fn cancelled_by_an_interrupt() {
    let exec = Scripted::new();
    let (rt, id) = attached(&exec).await;
    let mut starts = exec.watch_starts();
    let handle = submit(&rt, id, Input::prompt("block")).await;
    let request = within(starts.recv()).await.unwrap();
    assert_eq!(rt.interrupt(id, Some(request.run)).await.unwrap(), request.run);
    assert_eq!(within(handle.wait()).await.unwrap(), Outcome::Cancelled);
}

#[burrow_env::test]
async fn abandoned_when_retired_without_an_executor() {
    let rt = Runtime::ephemeral();
    let id = SessionId(2);
    rt.prepare(id).await.unwrap();
    let handle = submit(&rt, id, Input::prompt("never")).await;
    let report = rt.retire(id).await.unwrap();
    assert_eq!((report.pending_drain, report.abandoned), (0, 1));
    let outcome = within(handle.wait()).await.unwrap();
    let Outcome::Abandoned { reason, error } = outcome else { panic!("{outcome:?}") };
    assert_eq!(reason, "retired");
    assert_eq!(error.cause, burrow::FailureCause::Abandoned);
}

#[burrow_env::test]
async fn abandoned_with_error_once_attempts_run_out() {
    let exec = Scripted::new();
    let (rt, id) = attached(&exec).await;
    let outcome = within(submit(&rt, id, Input::prompt("fail:boom")).await.wait()).await.unwrap();
    let Outcome::AbandonedWithError { error, .. } = outcome else { panic!("{outcome:?}") };
    assert_eq!(error.cause, burrow::FailureCause::ExecutorFailed);
    assert_eq!(error.message, "boom");
    assert_eq!(exec.runs().len(), burrow_core::input::MAX_ATTEMPTS_DEFAULT as usize, "tried max_attempts times");
}

#[burrow_env::test]
async fn completed_with_finalization_failure_withholds_the_result() {
    let store = FlakyStore::new();
    let rt = Runtime::with_store(store.arc());
    let id = SessionId(3);
    let exec = Scripted::new();
    rt.attach_executor(id, exec.arc()).await.unwrap();
    store.fail_boundaries.store(1, Ordering::SeqCst);
    let outcome = within(submit(&rt, id, Input::prompt("ok:secret")).await.wait()).await.unwrap();
    let Outcome::CompletedWithFinalizationFailure { error } = outcome else { panic!("{outcome:?}") };
    assert_eq!(error.cause, burrow::FailureCause::BoundaryCommitFailed);
    assert!(!format!("{error:?}").contains("secret"), "a failed commit is never a success");
}

#[burrow_env::test]
async fn runtime_terminated_by_a_stop() {
    let rt = Runtime::ephemeral();
    let id = SessionId(4);
    rt.prepare(id).await.unwrap();
    let handle = submit(&rt, id, Input::prompt("queued")).await;
    let report = rt.stop_executor(id).await.unwrap();
    assert_eq!((report.deferred, report.abandoned), (false, 1));
    let Outcome::RuntimeTerminated { error, .. } = within(handle.wait()).await.unwrap() else { panic!() };
    assert_eq!(error.cause, burrow::FailureCause::RuntimeTerminated);
}

#[burrow_env::test]
async fn many_waiters_on_one_input_all_resolve_once_with_the_same_outcome() {
    let exec = Scripted::new();
    let (rt, id) = attached(&exec).await;
    let mut starts = exec.watch_starts();
    let first = submit(&rt, id, Input::prompt("block:same").idempotency_key("job")).await;
    within(starts.recv()).await.unwrap();
    let mut joined = Vec::new();
    for _ in 0..5 {
        joined.push(submit(&rt, id, Input::prompt("ignored").idempotency_key("job")).await);
    }
    assert_eq!(rt.runtime_state(id).await.unwrap().pending_waiters, 6);
    exec.release();
    let expected = within(first.wait()).await.unwrap();
    for handle in joined {
        assert_eq!(within(handle.wait()).await.unwrap(), expected);
    }
    assert_eq!(rt.runtime_state(id).await.unwrap().pending_waiters, 0);
    rt.check_invariants(id).await.unwrap();
}

#[burrow_env::test]
async fn a_wait_with_a_bound_reports_timed_out_as_plumbing_not_outcome() {
    let rt = Runtime::ephemeral();
    let id = SessionId(5);
    rt.prepare(id).await.unwrap();
    let handle = submit(&rt, id, Input::prompt("nobody runs me")).await;
    let input = handle.input();
    let err = handle.wait_timeout(Duration::from_millis(5)).await.unwrap_err();
    assert_eq!(err, CompletionError::TimedOut { input, waited_ms: 5 });
}

#[burrow_env::test]
async fn dropping_the_runtime_with_an_idle_session_tells_its_waiters_why() {
    let rt = Runtime::ephemeral();
    let id = SessionId(6);
    rt.prepare(id).await.unwrap();
    let handle = submit(&rt, id, Input::prompt("orphan")).await;
    let input = handle.input();
    drop(rt);
    let (result, cleanup) = handle
        .wait_with_cleanup(|ctx| async move {
            assert_eq!(ctx.observation, None, "no observation after a plumbing error");
            ctx.input
        })
        .await;
    assert_eq!(result.unwrap_err(), CompletionError::Unresolved { input, reason: burrow::WaitFailure::RuntimeDropped });
    assert_eq!(cleanup, input, "cleanup ran on the plumbing error too");
}

#[burrow_env::test]
async fn cleanup_runs_after_resolution_with_the_sessions_observation() {
    let exec = Scripted::new();
    let (rt, id) = attached(&exec).await;
    let binding = rt.runtime_state(id).await.unwrap().binding.unwrap();
    let handle = submit(&rt, id, Input::prompt("ok:x")).await;
    let (result, observation) = handle.wait_with_cleanup(|ctx| async move { ctx.observation }).await;
    assert_eq!(result.unwrap().class(), OutcomeClass::Completed);
    let observation = observation.expect("an observation after resolution");
    assert_eq!(observation.session, id);
    assert_eq!(observation.binding, binding);
    assert_eq!(observation.class, Some(OutcomeClass::Completed));
    rt.validate_cleanup(id, &observation).await.expect("valid for its own session and binding");
}

#[burrow_env::test]
async fn cleanup_observations_are_refused_for_another_session_or_an_earlier_binding() {
    let exec = Scripted::new();
    let (rt, id) = attached(&exec).await;
    let other = SessionId(77);
    rt.prepare(other).await.unwrap();
    let (_, observation) = within(submit(&rt, id, Input::prompt("ok:x")).await.wait_with_observation()).await.unwrap();
    let err = rt.validate_cleanup(other, &observation).await.unwrap_err();
    assert!(matches!(err.refusal(), Some(Refusal::Cleanup(CleanupRefusal::OtherSession { .. }))), "{err:?}");
    rt.recycle(id).await.unwrap();
    let err = rt.validate_cleanup(id, &observation).await.unwrap_err();
    assert!(matches!(err.refusal(), Some(Refusal::Cleanup(CleanupRefusal::StaleBinding { .. }))), "{err:?}");
}

#[burrow_env::test]
async fn a_waiter_bound_per_input_is_a_typed_refusal() {
    let exec = Scripted::new();
    let (rt, id) = attached(&exec).await;
    let mut starts = exec.watch_starts();
    let _first = submit(&rt, id, Input::prompt("block").idempotency_key("hot")).await;
    within(starts.recv()).await.unwrap();
    let mut handles = Vec::new();
    let err = loop {
        match rt.accept_input_with_completion(id, Input::prompt("x").idempotency_key("hot")).await {
            Ok(outcome) => handles.push(outcome),
            Err(err) => break err,
        }
        assert!(handles.len() <= burrow_core::completion::WAITERS_PER_INPUT_MAX, "the bound holds");
    };
    assert!(matches!(err.refusal(), Some(Refusal::Waiter(_))), "{err:?}");
    assert_eq!(handles.len() + 1, burrow_core::completion::WAITERS_PER_INPUT_MAX);
    exec.release();
}

#[burrow_env::test]
async fn a_run_past_its_deadline_is_cancelled_and_counts_as_a_failed_attempt() {
    let config = RuntimeConfig {
        session: SessionConfig { run_deadline_ms: 30, run_notice_ms: 10, max_attempts: 2, ..SessionConfig::default() },
        ..RuntimeConfig::default()
    };
    let rt = Runtime::with_config(config, None);
    let id = SessionId(8);
    let exec = Scripted::new();
    rt.attach_executor(id, exec.arc()).await.unwrap();
    let outcome = within(submit(&rt, id, Input::prompt("sleep:100000")).await.wait()).await.unwrap();
    let Outcome::AbandonedWithError { error, .. } = outcome else { panic!("{outcome:?}") };
    assert_eq!(error.cause, burrow::FailureCause::DeadlineExceeded);
    assert_eq!(exec.runs().len(), 2, "each expiry is one attempt");
    rt.check_invariants(id).await.unwrap();
}

#[burrow_env::test]
async fn refusals_are_typed_and_leave_no_waiter_behind() {
    let rt = Runtime::ephemeral();
    let id = SessionId(9);
    rt.prepare(id).await.unwrap();
    rt.destroy(id).await.unwrap();
    let err = rt.accept_input_with_completion(id, Input::prompt("late")).await.unwrap_err();
    assert!(matches!(err, RuntimeError::Refused { call: "accept", .. }), "{err:?}");
    assert_eq!(rt.runtime_state(id).await.unwrap().pending_waiters, 0);
}

#[burrow_env::test]
async fn several_pending_callbacks_reach_the_waiter_as_one_batch_and_a_batch_past_its_bound_fails_the_run() {
    use burrow::{BoxFuture, CallbackBatchError, Executor, ExecutorError, ExecutorOutput, PendingCallback, RunRequest};
    struct Batch;
    impl Executor for Batch {
        fn apply(&self, request: RunRequest) -> BoxFuture<'_, Result<ExecutorOutput, ExecutorError>> {
            let n: usize = request.inputs[0].payload.parse().expect("a count");
            let calls = (0..n).map(|i| PendingCallback { tool: format!("t{i}"), args: "{}".into() }).collect();
            // Built by hand, past the constructor's check, as a careless executor might.
            let output = ExecutorOutput { report: burrow::RunReport::CallbackBatchPending { calls }, snapshot: None };
            Box::pin(async move { Ok(output) })
        }
    }
    let runtime = Runtime::ephemeral();
    let id = SessionId(9);
    runtime.attach_executor(id, std::sync::Arc::new(Batch)).await.unwrap();
    let outcome = within(submit(&runtime, id, Input::prompt("2")).await.wait()).await.unwrap();
    let expected = (0..2).map(|i| PendingCallback { tool: format!("t{i}"), args: "{}".into() }).collect();
    assert_eq!(outcome, Outcome::CallbackBatchPending { calls: expected });
    let too_many = (burrow::burrow_core::completion::CALLBACKS_PER_BATCH_MAX + 1).to_string();
    let outcome = within(submit(&runtime, id, Input::prompt(too_many)).await.wait()).await.unwrap();
    assert_eq!(outcome.class(), OutcomeClass::AbandonedWithError, "{outcome:?}");
    assert_eq!(ExecutorOutput::callbacks(Vec::new()).unwrap_err(), CallbackBatchError { len: 0, max: 64 });
}
