//! accept_and_run (SPEC 3): a synchronous run of one input through a caller-supplied body.

mod support;

use std::sync::atomic::Ordering;

use burrow::{
    ExecutorError, ExecutorOutput, Input, InputState, OutcomeClass, RunRequest, Runtime, RuntimeError, RuntimePhase,
    SessionId,
};
use burrow_core::session::Refusal;
use support::{FlakyStore, Scripted, attached, submit, within};

async fn body(request: RunRequest) -> Result<(String, ExecutorOutput), ExecutorError> {
    let text = format!("ran {}", request.inputs[0].payload);
    Ok((text.clone(), ExecutorOutput::result(text)))
}

#[burrow_env::test]
async fn accept_and_run_returns_the_bodys_value_after_the_boundary_committed() {
    let store = FlakyStore::new();
    let rt = Runtime::with_store(store.arc());
    let id = SessionId(1);
    rt.prepare(id).await.unwrap();
    let value = rt.accept_and_run(id, Input::prompt("now"), body).await.unwrap();
    assert_eq!(value, "ran now");
    let image = burrow::Store::load(&store.memory, id).await.unwrap().unwrap();
    assert_eq!(image.receipts.len(), 1);
    let input = image.receipts[0].contributors[0];
    assert_eq!(rt.input_state(id, input).await.unwrap().unwrap().state, InputState::Consumed);
    assert_eq!(rt.runtime_state(id).await.unwrap().phase, RuntimePhase::Idle, "the run returns to Idle");
}

#[burrow_env::test]
async fn accept_and_run_is_refused_unless_idle_with_nothing_active() {
    let rt = Runtime::ephemeral();
    let id = SessionId(2);
    rt.prepare(id).await.unwrap();
    rt.accept_input(id, Input::prompt("pending")).await.unwrap();
    let err = rt.accept_and_run(id, Input::prompt("now"), body).await.unwrap_err();
    assert!(matches!(err.refusal(), Some(Refusal::NotIdle { active: 1, .. })), "{err:?}");
}

#[burrow_env::test]
async fn accept_and_run_is_refused_while_the_loop_runs() {
    let exec = Scripted::new();
    let (rt, id) = attached(&exec).await;
    let mut starts = exec.watch_starts();
    let running = submit(&rt, id, Input::prompt("block")).await;
    within(starts.recv()).await.unwrap();
    let err = rt.accept_and_run(id, Input::prompt("now"), body).await.unwrap_err();
    assert!(matches!(err.refusal(), Some(Refusal::NotIdle { .. })), "{err:?}");
    exec.release();
    within(running.wait()).await.unwrap();
}

#[burrow_env::test]
async fn accept_and_run_refuses_dedup() {
    let rt = Runtime::ephemeral();
    let id = SessionId(3);
    rt.prepare(id).await.unwrap();
    rt.accept_and_run(id, Input::prompt("a").idempotency_key("k"), body).await.unwrap();
    let err = rt.accept_and_run(id, Input::prompt("b").idempotency_key("k"), body).await.unwrap_err();
    assert!(matches!(err.refusal(), Some(Refusal::DedupRefused { .. })), "{err:?}");
}

#[burrow_env::test]
async fn a_boundary_commit_failure_unwinds_and_the_session_stays_usable() {
    let store = FlakyStore::new();
    let rt = Runtime::with_store(store.arc());
    let id = SessionId(4);
    rt.prepare(id).await.unwrap();
    store.fail_boundaries.store(1, Ordering::SeqCst);
    let err = rt.accept_and_run(id, Input::prompt("x"), body).await.unwrap_err();
    assert!(matches!(err, RuntimeError::BoundaryCommitFailed { .. }), "{err:?}");
    let state = rt.runtime_state(id).await.unwrap();
    assert_eq!((state.phase, state.current_run), (RuntimePhase::Idle, None));
    let active = rt.list_active_inputs(id).await.unwrap();
    assert_eq!(active.len(), 1, "rolled back, not lost");
    assert_eq!(active[0].state, InputState::Queued);
    rt.check_invariants(id).await.unwrap();
}

#[burrow_env::test]
async fn a_failed_input_write_unwinds_the_inline_run_before_the_body_runs() {
    let store = FlakyStore::new();
    let rt = Runtime::with_store(store.arc());
    let id = SessionId(5);
    rt.prepare(id).await.unwrap();
    store.fail_inputs.store(1, Ordering::SeqCst);
    let ran = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = ran.clone();
    let err = rt
        .accept_and_run(id, Input::prompt("x"), move |request| {
            flag.store(true, Ordering::SeqCst);
            body(request)
        })
        .await
        .unwrap_err();
    assert!(matches!(err, RuntimeError::Store { .. }), "{err:?}");
    assert!(!ran.load(Ordering::SeqCst), "the body never saw an input that was not durable");
    let state = rt.runtime_state(id).await.unwrap();
    assert_eq!((state.phase, state.active_inputs), (RuntimePhase::Idle, 0));
    rt.check_invariants(id).await.unwrap();
}

#[burrow_env::test]
async fn a_terminal_persist_failure_fail_stops_the_session_and_resolves_its_waiters() {
    let store = FlakyStore::new();
    let rt = Runtime::with_store(store.arc());
    let id = SessionId(6);
    rt.prepare(id).await.unwrap();
    let before = store.lifecycle_writes.load(Ordering::SeqCst);
    // The input's end lands with the receipt (specs/session.md#writes-per-input): a run whose end changes nothing
    // else writes no row after its boundary, so it has no terminal row to fail.
    let fail_next_row = {
        let store = store.clone();
        move |request: RunRequest| {
            store.fail_lifecycles.store(1, Ordering::SeqCst);
            body(request)
        }
    };
    let value = rt.accept_and_run(id, Input::prompt("x"), fail_next_row).await.unwrap();
    assert_eq!(value, "ran x");
    assert_eq!(store.lifecycle_writes.load(Ordering::SeqCst), before + 1, "only the run's start row");
    store.fail_lifecycles.store(0, Ordering::SeqCst);
    // A run whose end does change what recovery reads (a stop deferred to its end) writes a terminal row; when that
    // row fails, the session fail-stops and its waiters are resolved.
    let stop_then_break = {
        let (store, rt) = (store.clone(), rt.clone());
        move |request: RunRequest| async move {
            store.fail_lifecycles.store(1, Ordering::SeqCst);
            let report = rt.stop_executor(id).await;
            assert!(report.is_ok(), "a stop during the run is deferred: {report:?}");
            body(request).await
        }
    };
    let err = rt.accept_and_run(id, Input::prompt("y"), stop_then_break).await.unwrap_err();
    assert!(matches!(err, RuntimeError::FailStopped { .. }), "{err:?}");
    assert!(store.lifecycle_writes.load(Ordering::SeqCst) > before + 2);
    let state = rt.runtime_state(id).await.unwrap();
    assert_eq!((state.phase, state.pending_waiters), (RuntimePhase::Stopped, 0));
}

#[burrow_env::test]
async fn a_failing_or_panicking_body_fails_the_run_and_the_session_lives() {
    let rt = Runtime::ephemeral();
    let id = SessionId(7);
    rt.prepare(id).await.unwrap();
    let err = rt
        .accept_and_run(id, Input::prompt("x"), |_| async { Err::<(u8, ExecutorOutput), _>(ExecutorError::new("no")) })
        .await
        .unwrap_err();
    assert!(matches!(&err, RuntimeError::RunFailed { message, .. } if message == "no"), "{err:?}");
    rt.reset(id).await.unwrap();
    let err = rt
        .accept_and_run(id, Input::prompt("y"), |_| async {
            if true {
                panic!("inline panic");
            }
            Ok::<(u8, ExecutorOutput), ExecutorError>((0, ExecutorOutput::no_result()))
        })
        .await
        .unwrap_err();
    assert!(matches!(&err, RuntimeError::RunFailed { message, .. } if message.contains("inline panic")), "{err:?}");
    assert_eq!(rt.runtime_state(id).await.unwrap().phase, RuntimePhase::Idle);
}

#[burrow_env::test]
async fn an_inline_body_may_accept_into_its_own_session_while_it_runs() {
    let rt = Runtime::ephemeral();
    let id = SessionId(8);
    rt.prepare(id).await.unwrap();
    let inner = rt.clone();
    let follow_up = rt
        .accept_and_run(id, Input::prompt("first"), move |request| async move {
            let accepted = inner.accept_input_with_completion(request.session, Input::prompt("ok:follow-up")).await;
            let handle = accepted.map_err(|e| ExecutorError::new(e.to_string()))?.into_parts().1;
            Ok((handle, ExecutorOutput::no_result()))
        })
        .await
        .unwrap()
        .expect("a handle for the follow-up");
    let exec = Scripted::new();
    rt.attach_executor(id, exec.arc()).await.unwrap();
    assert_eq!(within(follow_up.wait()).await.unwrap().class(), OutcomeClass::Completed);
}

#[burrow_env::test]
async fn an_interrupt_cancels_an_inline_run() {
    let rt = Runtime::ephemeral();
    let id = SessionId(9);
    rt.prepare(id).await.unwrap();
    let runner = {
        let rt = rt.clone();
        burrow_env::task::spawn(async move {
            rt.accept_and_run(id, Input::prompt("slow"), |_| async {
                std::future::pending::<Result<((), ExecutorOutput), ExecutorError>>().await
            })
            .await
        })
    };
    within(async {
        while rt.runtime_state(id).await.unwrap().current_run.is_none() {
            burrow_env::task::yield_now().await;
        }
    })
    .await;
    rt.interrupt(id, None).await.unwrap();
    let err = within(runner).await.unwrap().unwrap_err();
    assert!(matches!(err, RuntimeError::RunCancelled { .. }), "{err:?}");
    assert_eq!(rt.runtime_state(id).await.unwrap().phase, RuntimePhase::Idle);
}

/// Found by the simulator: the start of an inline run marked a parked loop awake, so work accepted during the inline
/// run waited for a wake that never came.
#[burrow_env::test]
async fn work_accepted_during_an_inline_run_is_run_by_the_parked_loop_afterwards() {
    let exec = Scripted::new();
    let (rt, id) = attached(&exec).await;
    support::parked(&rt, id).await;
    let (gate_tx, gate_rx) = burrow_env::sync::oneshot::channel::<()>();
    let inline = {
        let rt = rt.clone();
        burrow_env::task::spawn(async move {
            rt.accept_and_run(id, Input::prompt("inline"), |request| async move {
                let _ = gate_rx.await;
                body(request).await
            })
            .await
        })
    };
    within(async {
        while rt.runtime_state(id).await.unwrap().current_run.is_none() {
            burrow_env::task::yield_now().await;
        }
    })
    .await;
    let queued = submit(&rt, id, Input::prompt("ok:after")).await;
    gate_tx.send(()).unwrap();
    assert_eq!(within(inline).await.unwrap().unwrap(), "ran inline");
    let outcome = within(queued.wait()).await.unwrap();
    assert_eq!(outcome, burrow::Outcome::Completed(burrow::RunResult { output: "after".into() }));
}
