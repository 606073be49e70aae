//! Admission (SPEC 3): the accept paths, dedup, validation, wake policy, lanes and durability.

mod support;

use std::sync::atomic::Ordering;

use burrow::{
    AcceptOutcome, Durability, Input, InputKind, InputState, Outcome, OutcomeClass, Runtime, RuntimeError, SessionId,
};
use burrow_core::input::InputValidation;
use support::{FlakyStore, Scripted, attached, parked, settle, submit, within};

#[burrow_env::test]
async fn an_accepted_prompt_runs_and_its_handle_gets_the_result() {
    let exec = Scripted::new();
    let (rt, id) = attached(&exec).await;
    let handle = submit(&rt, id, Input::prompt("ok:hello")).await;
    let outcome = within(handle.wait()).await.expect("resolves");
    assert_eq!(outcome, Outcome::Completed(burrow::RunResult { output: "hello".into() }));
    assert_eq!(exec.payloads(), vec!["ok:hello"]);
}

#[burrow_env::test]
async fn accept_without_completion_returns_no_handle_and_still_runs() {
    let exec = Scripted::new();
    let (rt, id) = attached(&exec).await;
    let outcome = rt.accept_input(id, Input::prompt("ok:x")).await.unwrap();
    assert!(matches!(outcome, AcceptOutcome::Accepted { handle: None, .. }));
    settle(&rt, id).await;
    assert_eq!(exec.payloads(), vec!["ok:x"]);
    let view = rt.input_state(id, outcome.input()).await.unwrap().expect("kept in history");
    assert_eq!(view.state, InputState::Consumed);
}

#[burrow_env::test]
async fn inputs_queue_before_an_executor_and_drain_once_one_attaches() {
    let rt = Runtime::ephemeral();
    let id = SessionId(3);
    rt.prepare(id).await.unwrap();
    let first = submit(&rt, id, Input::prompt("ok:1")).await;
    let second = submit(&rt, id, Input::prompt("ok:2")).await;
    assert_eq!(rt.list_active_inputs(id).await.unwrap().len(), 2);
    let exec = Scripted::new();
    rt.attach_executor(id, exec.arc()).await.unwrap();
    assert_eq!(within(first.wait()).await.unwrap().class(), OutcomeClass::Completed);
    assert_eq!(within(second.wait()).await.unwrap().class(), OutcomeClass::Completed);
    assert_eq!(exec.payloads(), vec!["ok:1", "ok:2"], "FIFO");
}

#[burrow_env::test]
async fn an_invalid_input_is_rejected_with_its_typed_error_and_nothing_is_admitted() {
    let exec = Scripted::new();
    let (rt, id) = attached(&exec).await;
    let long = "k".repeat(burrow_core::input::KEY_LEN_MAX + 1);
    let err = rt.accept_input_with_completion(id, Input::prompt("x").idempotency_key(long)).await.unwrap_err();
    assert!(matches!(err, RuntimeError::Rejected(InputValidation::KeyTooLong { .. })), "{err:?}");
    assert!(rt.list_active_inputs(id).await.unwrap().is_empty());
    assert_eq!(rt.runtime_state(id).await.unwrap().pending_waiters, 0);
}

#[burrow_env::test]
async fn an_unknown_session_is_not_found() {
    let rt = Runtime::ephemeral();
    let err = rt.accept_input(SessionId(9), Input::prompt("x")).await.unwrap_err();
    assert_eq!(err, RuntimeError::NotFound(SessionId(9)));
    assert_eq!(rt.runtime_state(SessionId(9)).await.unwrap_err(), RuntimeError::NotFound(SessionId(9)));
}

#[burrow_env::test]
async fn a_dedup_join_in_flight_gets_the_same_outcome_as_the_original() {
    let exec = Scripted::new();
    let (rt, id) = attached(&exec).await;
    let mut starts = exec.watch_starts();
    let first = rt.accept_input_with_completion(id, Input::prompt("block:shared").idempotency_key("k")).await.unwrap();
    within(starts.recv()).await.unwrap();
    let second = rt.accept_input_with_completion(id, Input::prompt("other").idempotency_key("k")).await.unwrap();
    assert!(second.is_deduplicated());
    assert_eq!(second.input(), first.input());
    let (_, a) = first.into_parts();
    let (_, b) = second.into_parts();
    exec.release();
    let a = within(a.unwrap().wait()).await.unwrap();
    let b = within(b.unwrap().wait()).await.unwrap();
    assert_eq!(a, b);
    assert_eq!(a, Outcome::Completed(burrow::RunResult { output: "shared".into() }));
    assert_eq!(exec.runs().len(), 1, "the duplicate never ran");
}

#[burrow_env::test]
async fn a_dedup_of_a_terminal_input_has_no_handle() {
    let exec = Scripted::new();
    let (rt, id) = attached(&exec).await;
    let first = submit(&rt, id, Input::prompt("ok:a").idempotency_key("k")).await;
    within(first.wait()).await.unwrap();
    let again = rt.accept_input_with_completion(id, Input::prompt("ok:b").idempotency_key("k")).await.unwrap();
    assert!(matches!(again, AcceptOutcome::Deduplicated { handle: None, .. }));
    assert_eq!(exec.runs().len(), 1);
}

#[burrow_env::test]
async fn an_operation_input_is_terminal_during_admission_and_has_no_handle() {
    let exec = Scripted::new();
    let (rt, id) = attached(&exec).await;
    let outcome = rt.accept_input_with_completion(id, Input::new(InputKind::Operation, "op")).await.unwrap();
    let AcceptOutcome::Accepted { input, handle: None } = outcome else { panic!("{outcome:?}") };
    assert_eq!(rt.input_state(id, input).await.unwrap().unwrap().state, InputState::Consumed);
    assert!(exec.runs().is_empty());
}

#[burrow_env::test]
async fn accept_without_wake_queues_until_the_next_wake() {
    let exec = Scripted::new();
    let (rt, id) = attached(&exec).await;
    parked(&rt, id).await;
    let quiet = rt.accept_input_without_wake(id, Input::prompt("ok:quiet")).await.unwrap();
    for _ in 0..20 {
        burrow_env::task::yield_now().await;
    }
    assert!(exec.runs().is_empty(), "a quiet input does not wake a parked loop");
    rt.wake(id).await.unwrap();
    let outcome = within(quiet.into_parts().1.unwrap().wait()).await.unwrap();
    assert_eq!(outcome.class(), OutcomeClass::Completed);
}

#[burrow_env::test]
async fn a_silent_intent_queues_quietly_and_rides_along_with_the_next_wake() {
    let exec = Scripted::new();
    let (rt, id) = attached(&exec).await;
    rt.set_silent_intents(id, vec!["fyi".into()]).await.unwrap();
    parked(&rt, id).await;
    let silent = submit(&rt, id, Input::new(InputKind::PeerRequest { intent: "fyi".into() }, "ok:silent")).await;
    for _ in 0..20 {
        burrow_env::task::yield_now().await;
    }
    assert!(exec.runs().is_empty());
    let loud = submit(&rt, id, Input::prompt("ok:loud")).await;
    within(loud.wait()).await.unwrap();
    assert_eq!(within(silent.wait()).await.unwrap().class(), OutcomeClass::Completed);
}

#[burrow_env::test]
async fn too_many_silent_intents_are_refused() {
    let rt = Runtime::ephemeral();
    rt.prepare(SessionId(1)).await.unwrap();
    let many = (0..=burrow_core::session::SILENT_INTENTS_MAX).map(|i| i.to_string()).collect();
    let err = rt.set_silent_intents(SessionId(1), many).await.unwrap_err();
    assert!(matches!(err.refusal(), Some(burrow_core::session::Refusal::TooManySilentIntents { .. })));
}

#[burrow_env::test]
async fn a_superseding_event_replaces_a_pending_one_and_its_waiter_moves_over() {
    let exec = Scripted::new();
    let (rt, id) = attached(&exec).await;
    let mut starts = exec.watch_starts();
    let blocker = submit(&rt, id, Input::prompt("block:first")).await;
    within(starts.recv()).await.unwrap();
    let old = submit(&rt, id, Input::new(InputKind::ExternalEvent, "ok:old").supersession_key("price")).await;
    let new = submit(&rt, id, Input::new(InputKind::ExternalEvent, "ok:new").supersession_key("price")).await;
    let old_id = old.input();
    exec.release();
    within(blocker.wait()).await.unwrap();
    let old_outcome = within(old.wait()).await.unwrap();
    let new_outcome = within(new.wait()).await.unwrap();
    assert_eq!(old_outcome, new_outcome, "the replaced input's waiter follows its replacement");
    assert_eq!(new_outcome, Outcome::Completed(burrow::RunResult { output: "new".into() }));
    assert!(matches!(rt.input_state(id, old_id).await.unwrap().unwrap().state, InputState::Superseded { .. }));
    assert_eq!(exec.payloads(), vec!["block:first", "ok:new"]);
}

#[burrow_env::test]
async fn response_progress_coalesces_with_a_pending_one() {
    let exec = Scripted::new();
    let (rt, id) = attached(&exec).await;
    let mut starts = exec.watch_starts();
    let blocker = submit(&rt, id, Input::prompt("block")).await;
    within(starts.recv()).await.unwrap();
    let progress = || InputKind::PeerResponseProgress { request: "r1".into() };
    let a = submit(&rt, id, Input::new(progress(), "ok:10%")).await;
    let a_id = a.input();
    let b = submit(&rt, id, Input::new(progress(), "ok:50%")).await;
    exec.release();
    within(blocker.wait()).await.unwrap();
    assert_eq!(within(a.wait()).await.unwrap(), within(b.wait()).await.unwrap());
    assert!(matches!(rt.input_state(id, a_id).await.unwrap().unwrap().state, InputState::Coalesced { .. }));
    assert_eq!(exec.payloads(), vec!["block", "ok:50%"]);
}

#[burrow_env::test]
async fn a_terminal_peer_response_supersedes_the_progress_of_its_request_and_answers_its_callers() {
    let exec = Scripted::new();
    let (rt, id) = attached(&exec).await;
    let mut starts = exec.watch_starts();
    let blocker = submit(&rt, id, Input::prompt("block")).await;
    within(starts.recv()).await.unwrap();
    let progress = |request: &str| InputKind::PeerResponseProgress { request: request.into() };
    let a = submit(&rt, id, Input::new(progress("r1"), "ok:10%")).await;
    let other = submit(&rt, id, Input::new(progress("r2"), "ok:r2 at 10%")).await;
    let done = submit(&rt, id, Input::new(InputKind::PeerResponseTerminal { request: "r1".into() }, "ok:done")).await;
    let a_id = a.input();
    exec.release();
    within(blocker.wait()).await.unwrap();
    // The progress's caller learns the terminal reply's outcome: its input was superseded by it.
    assert_eq!(within(a.wait()).await.unwrap(), within(done.wait()).await.unwrap());
    within(other.wait()).await.unwrap();
    let state = rt.input_state(id, a_id).await.unwrap().unwrap().state;
    assert!(matches!(state, InputState::Superseded { .. }), "{state:?}");
    assert_eq!(exec.payloads(), vec!["block", "ok:r2 at 10%", "ok:done"], "the other request's progress still runs");
    let refused = rt.accept_input(id, Input::new(progress(""), "x")).await.unwrap_err();
    assert!(matches!(refused, burrow::RuntimeError::Rejected(burrow::InputValidation::EmptyRequest)), "{refused}");
}

#[burrow_env::test]
async fn steer_inputs_run_before_the_queue_lane_and_together() {
    let exec = Scripted::new();
    let (rt, id) = attached(&exec).await;
    let mut starts = exec.watch_starts();
    let blocker = submit(&rt, id, Input::prompt("block")).await;
    within(starts.recv()).await.unwrap();
    let queued = submit(&rt, id, Input::prompt("ok:queued")).await;
    let s1 = submit(&rt, id, Input::prompt("ok:steer1").steer()).await;
    let s2 = submit(&rt, id, Input::prompt("ok:steer2").steer()).await;
    exec.release();
    for handle in [blocker, s1, s2, queued] {
        within(handle.wait()).await.unwrap();
    }
    let runs = exec.runs();
    assert_eq!(runs.len(), 3);
    let second: Vec<_> = runs[1].inputs.iter().map(|i| i.payload.as_str()).collect();
    assert_eq!(second, vec!["ok:steer1", "ok:steer2"], "steer inputs are batched into one run, ahead of the queue");
    assert_eq!(runs[2].inputs[0].payload, "ok:queued");
}

#[burrow_env::test]
async fn a_durable_input_is_in_the_store_before_the_accept_returns() {
    let store = FlakyStore::new();
    let rt = Runtime::with_store(store.arc());
    let id = SessionId(4);
    rt.prepare(id).await.unwrap();
    let accepted = rt.accept_input(id, Input::prompt("remember me")).await.unwrap();
    let image = burrow::Store::load(&store.memory, id).await.unwrap().expect("stored");
    assert_eq!(image.payload(accepted.input()), Some("remember me"));
    let ephemeral = rt.accept_input(id, Input::prompt("forget me").durability(Durability::Ephemeral)).await.unwrap();
    let image = burrow::Store::load(&store.memory, id).await.unwrap().unwrap();
    assert_eq!(image.payload(ephemeral.input()), None, "ephemeral inputs are never written");
}

#[burrow_env::test]
async fn a_failed_input_write_undoes_the_admission_and_reports_the_store_error() {
    let store = FlakyStore::new();
    let rt = Runtime::with_store(store.arc());
    let id = SessionId(5);
    rt.prepare(id).await.unwrap();
    store.fail_inputs.store(1, Ordering::SeqCst);
    let err = rt.accept_input_with_completion(id, Input::prompt("x").idempotency_key("k")).await.unwrap_err();
    assert!(matches!(err, RuntimeError::Store { .. }), "{err:?}");
    assert!(rt.list_active_inputs(id).await.unwrap().is_empty(), "nothing half-admitted");
    assert_eq!(rt.runtime_state(id).await.unwrap().pending_waiters, 0);
    // The key is free again: the retry is a fresh admission, not a dedup.
    let retry = rt.accept_input(id, Input::prompt("x").idempotency_key("k")).await.unwrap();
    assert!(!retry.is_deduplicated());
    rt.check_invariants(id).await.unwrap();
}

#[burrow_env::test]
async fn admission_is_refused_once_retired_and_names_the_phase() {
    let rt = Runtime::ephemeral();
    let id = SessionId(6);
    rt.prepare(id).await.unwrap();
    rt.retire(id).await.unwrap();
    let err = rt.accept_input(id, Input::prompt("late")).await.unwrap_err();
    assert!(matches!(err.refusal(), Some(burrow_core::session::Refusal::AdmissionClosed { .. })), "{err:?}");
}

#[burrow_env::test]
async fn an_oversized_payload_is_a_typed_error_and_admits_nothing() {
    let rt = Runtime::ephemeral();
    let id = SessionId(8);
    rt.prepare(id).await.unwrap();
    let huge = "x".repeat(burrow::PAYLOAD_BYTES_MAX + 1);
    let err = rt.accept_input(id, Input::prompt(huge)).await.unwrap_err();
    assert!(matches!(err, RuntimeError::PayloadTooLarge { .. }), "{err:?}");
    assert!(rt.list_active_inputs(id).await.unwrap().is_empty());
}
