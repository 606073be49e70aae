#![allow(unused_must_use)]
//! The session machine's transitions and refusals (SPEC 2 composed, SPEC 3's
//! decisions). Every accepted event is followed by invariants::check and every
//! refusal by a check that nothing changed (see support/mod.rs).

mod support;

use burrow_core::completion::{ErrorInfo, FailureCause, Outcome, OutcomeClass, RunResult};
use burrow_core::ids::{EpochId, Generation, InputId, Millis, RunId};
use burrow_core::input::{AbandonReason, Durability, InputKind, InputSpec, InputState, InputValidation};
use burrow_core::phase::{PhaseRefusal, RuntimePhase};
use burrow_core::registration::{Obligation, RegistrationEffect, RegistrationPhase};
use burrow_core::session::{
    Effect, Notice, RecoveryImage, RecoverySource, Refusal, Reply, RunReport, RuntimeEvent, SessionConfig,
    SessionEvent, StopReason,
};
use support::{H, class_of, ephemeral, has, prompt, resolutions};

fn state(h: &H, id: InputId) -> InputState {
    h.m.input_state(id).expect("known input").state
}

// ----- admission ---------------------------------------------------------

#[test]
fn accept_queues_and_wakes_a_parked_loop() {
    let mut h = H::attached();
    assert!(h.m.loop_parked());
    let fx = h.ok(SessionEvent::Accept { spec: prompt(), waiter: true, wake: true });
    assert!(has(&fx, "PersistInput"), "durable inputs are written before the ack");
    assert!(has(&fx, "WakeLoop"));
    let Reply::Accepted { input, waiter, terminal } = fx.reply else { panic!() };
    assert!(waiter.is_some());
    assert!(!terminal);
    assert_eq!(state(&h, input), InputState::Queued);
}

#[test]
fn ephemeral_inputs_are_not_persisted() {
    let mut h = H::attached();
    let fx = h.ok(SessionEvent::Accept { spec: ephemeral(InputKind::Prompt), waiter: false, wake: true });
    assert!(!has(&fx, "PersistInput"));
}

#[test]
fn persist_input_precedes_the_wake() {
    let mut h = H::attached();
    let fx = h.ok(SessionEvent::Accept { spec: prompt(), waiter: false, wake: true });
    // The notice of the admission comes once the write is durable, before the wake.
    assert_eq!(fx.names(), vec!["PersistInput", "Notify", "WakeLoop"]);
}

#[test]
fn apply_into_appends_and_a_refusal_leaves_the_buffer_as_it_was() {
    let mut h = H::attached();
    let mut twin = h.m.clone();
    let mut buffer = vec![Effect::WakeLoop];
    let event = SessionEvent::Accept { spec: ephemeral(InputKind::Prompt), waiter: true, wake: true };
    let reply = twin.apply_into(Millis(0), event.clone(), &mut buffer).expect("accepted");
    let fx = h.ok(event);
    assert_eq!(reply, fx.reply, "the same reply as apply");
    assert_eq!(buffer[0], Effect::WakeLoop, "what was there stays first");
    assert_eq!(buffer[1..], fx.effects[..], "the event's effects are appended in order");
    assert_eq!(twin, h.m);
    // A refusal in the middle of a transition (the deadline expiry pushed effects before the event was refused)
    // leaves both the machine and the buffer unchanged.
    let run = h.poll_run();
    let mut twin = h.m.clone();
    let before = twin.clone();
    let len = buffer.len();
    let deadline = SessionConfig::default().run_deadline_ms;
    let late = Millis(h.now + deadline + 1);
    let refused = twin.apply_into(late, SessionEvent::RunNotExecuted { run: RunId(run.0 + 5) }, &mut buffer);
    assert!(matches!(refused, Err(Refusal::StaleRun { .. })), "{refused:?}");
    assert_eq!(buffer.len(), len);
    assert_eq!(twin, before);
}

#[test]
fn accept_without_wake_does_not_wake_and_parks_legitimately() {
    let mut h = H::attached();
    let fx = h.ok(SessionEvent::Accept { spec: prompt(), waiter: false, wake: false });
    assert!(!has(&fx, "WakeLoop"));
    assert!(h.m.loop_parked());
    // An explicit wake makes the quiet input selectable.
    let fx = h.ok(SessionEvent::Wake);
    assert!(has(&fx, "WakeLoop"));
    h.poll_run();
}

#[test]
fn silent_intent_requests_queue_without_wake() {
    let mut h = H::attached();
    h.ok(SessionEvent::SetSilentIntents(vec!["ping".into()]));
    let silent = InputSpec::new(InputKind::PeerRequest { intent: "ping".into() });
    let fx = h.ok(SessionEvent::Accept { spec: silent, waiter: false, wake: true });
    assert!(!has(&fx, "WakeLoop"));
    let loud = InputSpec::new(InputKind::PeerRequest { intent: "ask".into() });
    let fx = h.ok(SessionEvent::Accept { spec: loud, waiter: false, wake: true });
    assert!(has(&fx, "WakeLoop"));
}

#[test]
fn too_many_silent_intents_are_refused() {
    let mut h = H::attached();
    let intents = (0..=burrow_core::session::SILENT_INTENTS_MAX).map(|i| format!("i{i}")).collect();
    assert!(matches!(h.refused(SessionEvent::SetSilentIntents(intents)), Refusal::TooManySilentIntents { .. }));
}

#[test]
fn every_kind_is_admitted_by_its_policy() {
    for kind in InputKind::representatives() {
        let mut h = H::attached();
        let fx = h.ok(SessionEvent::Accept { spec: InputSpec::new(kind.clone()), waiter: true, wake: true });
        let Reply::Accepted { input, waiter, terminal } = fx.reply else { panic!() };
        if kind == InputKind::Operation {
            assert!(terminal, "operations are consumed on accept");
            assert_eq!(waiter, None, "no handle for an input terminal at admission");
            assert_eq!(state(&h, input), InputState::Consumed);
        } else {
            assert!(!terminal);
            assert_eq!(state(&h, input), InputState::Queued);
            assert!(has(&fx, "WakeLoop"), "{kind:?} wakes");
        }
    }
}

#[test]
fn invalid_specs_are_refused_with_typed_errors() {
    let mut h = H::attached();
    let cases = [
        (InputSpec::new(InputKind::Prompt).idempotency_key(""), "empty key"),
        (InputSpec::new(InputKind::Prompt).idempotency_key("k".repeat(300)), "long key"),
        (InputSpec::new(InputKind::PeerRequest { intent: String::new() }), "empty intent"),
        (InputSpec::new(InputKind::Continuation).supersession_key("k"), "supersession on continuation"),
        (InputSpec::new(InputKind::Operation).steer(), "steer on operation"),
    ];
    for (spec, what) in cases {
        let refusal = h.refused(SessionEvent::Accept { spec, waiter: true, wake: true });
        assert!(matches!(refusal, Refusal::Invalid(_)), "{what}: {refusal:?}");
    }
    let r = h.refused(SessionEvent::Accept {
        spec: InputSpec::new(InputKind::Prompt).supersession_key(""),
        waiter: false,
        wake: true,
    });
    assert_eq!(r, Refusal::Invalid(InputValidation::EmptyKey { field: "supersession key" }));
}

#[test]
fn admission_is_refused_before_prepare() {
    let mut h =
        H { m: burrow_core::session::SessionMachine::new(burrow_core::SessionId(1), SessionConfig::default()), now: 0 };
    assert_eq!(h.refused(SessionEvent::Accept { spec: prompt(), waiter: false, wake: true }), Refusal::NotRegistered);
}

#[test]
fn admission_is_closed_in_retired_stopped_destroyed() {
    for close in [SessionEvent::Retire, SessionEvent::Stop, SessionEvent::Destroy] {
        let mut h = H::attached();
        h.ok(close.clone());
        let r = h.refused(SessionEvent::Accept { spec: prompt(), waiter: true, wake: true });
        assert!(matches!(r, Refusal::AdmissionClosed { .. }), "{close:?}: {r:?}");
    }
}

#[test]
fn admission_stays_open_during_a_run() {
    let mut h = H::attached();
    h.prompt();
    h.poll_run();
    let (second, _) = h.prompt();
    assert_eq!(state(&h, second), InputState::Queued);
}

// ----- idempotency ---------------------------------------------------------

#[test]
fn dedup_of_an_in_flight_input_joins_its_waiters() {
    let mut h = H::attached();
    let (first, w1) = h.accept(prompt().idempotency_key("k"));
    let fx = h.ok(SessionEvent::Accept { spec: prompt().idempotency_key("k"), waiter: true, wake: true });
    let Reply::Deduplicated { existing, waiter: Some(w2) } = fx.reply else { panic!("{:?}", fx.reply) };
    assert_eq!(existing, first);
    let run = h.poll_run();
    let fx = h.succeed(run, "done");
    let res = resolutions(&fx);
    assert_eq!(res.len(), 1);
    assert_eq!(res[0].1, vec![w1.unwrap(), w2], "both callers get the same outcome");
    assert_eq!(res[0].2, Some(OutcomeClass::Completed));
}

#[test]
fn dedup_of_a_terminal_input_has_no_handle() {
    let mut h = H::attached();
    let (first, _) = h.accept(prompt().idempotency_key("k"));
    let run = h.poll_run();
    h.succeed(run, "done");
    let fx = h.ok(SessionEvent::Accept { spec: prompt().idempotency_key("k"), waiter: true, wake: true });
    assert_eq!(fx.reply, Reply::Deduplicated { existing: first, waiter: None });
    assert!(fx.effects.is_empty());
}

#[test]
fn dedup_does_not_admit_a_second_input() {
    let mut h = H::attached();
    h.accept(prompt().idempotency_key("k"));
    h.ok(SessionEvent::Accept { spec: prompt().idempotency_key("k"), waiter: false, wake: true });
    assert_eq!(h.m.list_active_inputs().len(), 1);
}

// ----- recall of forgotten keys (specs/input.md#recall) ---------------------------

/// A session that keeps one terminal input: `k1` runs and ends, then `k2` does, which pushes `k1` out of memory.
fn forgetting() -> (H, InputId) {
    let mut h = H::attached_with(SessionConfig { history_max: 1, ..SessionConfig::default() });
    let (first, _) = h.accept(prompt().idempotency_key("k1"));
    let run = h.poll_run();
    h.succeed(run, "one");
    assert!(h.m.key_to_recall(&prompt().idempotency_key("k1")).is_none(), "the history still holds k1");
    h.accept(prompt().idempotency_key("k2"));
    let run = h.poll_run();
    h.succeed(run, "two");
    (h, first)
}

fn row(id: InputId, key: &str, state: InputState) -> burrow_core::input::InputRecord {
    burrow_core::input::InputRecord {
        id,
        spec: prompt().idempotency_key(key),
        state,
        attempts: 1,
        accepted_at: Millis(0),
    }
}

#[test]
fn a_forgotten_key_is_recalled_and_deduplicates_with_no_handle() {
    let (mut h, first) = forgetting();
    let spec = prompt().idempotency_key("k1");
    assert_eq!(h.m.key_to_recall(&spec), Some("k1"), "k1 left the history; the store may hold it");
    assert!(h.m.input_state_by_key("k1").is_none());
    assert!(h.m.key_to_recall(&prompt().idempotency_key("k2")).is_none(), "k2 is still known");
    assert!(h.m.key_to_recall(&prompt()).is_none(), "no key, nothing to recall");
    let fx = h.ok(SessionEvent::KeyRecalled { key: "k1".into(), found: Some(row(first, "k1", InputState::Consumed)) });
    assert!(fx.effects.is_empty(), "a recall writes nothing");
    assert!(h.m.key_to_recall(&spec).is_none(), "recalled once, the key is known");
    let fx = h.ok(SessionEvent::Accept { spec: spec.clone(), waiter: true, wake: true });
    assert_eq!(fx.reply, Reply::Deduplicated { existing: first, waiter: None });
    assert!(fx.effects.is_empty(), "never admitted, never run again");
    let r = h.refused(SessionEvent::AcceptAndRun { spec });
    assert_eq!(r, Refusal::DedupRefused { existing: first });
}

#[test]
fn a_recalled_row_that_never_recorded_its_end_still_means_the_input_ended() {
    let (mut h, first) = forgetting();
    // The row still says Queued (its end was carried by a row that failed), but the input is not live here.
    let stale = row(first, "k1", InputState::Queued);
    h.ok(SessionEvent::KeyRecalled { key: "k1".into(), found: Some(stale) });
    let fx = h.ok(SessionEvent::Accept { spec: prompt().idempotency_key("k1"), waiter: true, wake: true });
    assert_eq!(fx.reply, Reply::Deduplicated { existing: first, waiter: None });
}

#[test]
fn a_key_the_store_does_not_hold_is_admitted_after_its_recall() {
    let (mut h, _) = forgetting();
    let fx = h.ok(SessionEvent::KeyRecalled { key: "k9".into(), found: None });
    assert_eq!(fx.reply, Reply::NoOp);
    let (input, waiter) = h.accept(prompt().idempotency_key("k9"));
    assert!(waiter.is_some());
    assert_eq!(h.m.input_state_by_key("k9").expect("live").id, input);
}

#[test]
fn a_recalled_row_for_another_key_or_an_unknown_id_is_refused() {
    let (mut h, first) = forgetting();
    let r =
        h.refused(SessionEvent::KeyRecalled { key: "k1".into(), found: Some(row(first, "zz", InputState::Consumed)) });
    assert!(matches!(r, Refusal::RecallMismatch { why: "holds another key", .. }), "{r:?}");
    let r = h.refused(SessionEvent::KeyRecalled {
        key: "k1".into(),
        found: Some(row(InputId(99), "k1", InputState::Consumed)),
    });
    assert!(matches!(r, Refusal::RecallMismatch { why: "this session never gave", .. }), "{r:?}");
}

/// The input rows every lifecycle row in `effects` carries, in order, as (input, state).
fn carried_rows(effects: &[Effect]) -> Vec<(InputId, InputState)> {
    lifecycle_rows(effects)
        .into_iter()
        .flat_map(|(_, rows)| rows.into_iter().map(|(id, state, _)| (id, state)))
        .collect()
}

#[test]
fn a_step_that_ends_more_inputs_than_the_history_keeps_writes_every_row() {
    // Found by the model (control configuration with a history of one: Accept keyed, Accept, Reset, Recover brought
    // the first input back): the history evicted as the reset went, so the row of the first input was not found
    // when the lifecycle row was built, and the store kept it Queued.
    let mut h = H::attached_with(SessionConfig { history_max: 2, ..SessionConfig::default() });
    let inputs: Vec<InputId> = (0..5).map(|_| h.prompt().0).collect();
    let fx = h.ok(SessionEvent::Reset);
    let rows = carried_rows(&fx.effects);
    let ended = InputState::Abandoned(AbandonReason::Reset);
    assert_eq!(rows, inputs.iter().map(|i| (*i, ended)).collect::<Vec<_>>(), "one row per ended input");
    assert_eq!(h.m.ledger().history().count(), 2, "the history is back to its bound after the step");
}

#[test]
fn the_rows_a_failed_lifecycle_row_carried_are_written_again_even_after_they_left_the_history() {
    // Found by the full simulator with a history of one to three: a stop ended three queued inputs, its row failed,
    // and the history had already let two of them go, so the row written again did not carry their ends; the store
    // kept them Queued and a later restart would have run them again.
    let mut h = H::attached_with(SessionConfig { history_max: 1, ..SessionConfig::default() });
    let inputs: Vec<InputId> = (0..3).map(|_| h.prompt().0).collect();
    h.ok(SessionEvent::Stop);
    assert_eq!(h.m.ledger().history().count(), 1, "the step is over: two ends left the history");
    let error = ErrorInfo::new(FailureCause::TerminalPersistFailed, "disk full");
    h.ok(SessionEvent::LifecyclePersistFailed { error });
    // The loop exits, a new executor attaches: whichever of these builds the next row carries the failed one's.
    let generation = h.m.binding().expect("prepared").generation;
    let mut effects = h.ok(SessionEvent::Poll).effects;
    effects.extend(h.ok(SessionEvent::LoopExited { generation }).effects);
    effects.extend(h.ok(SessionEvent::BeginAttach).effects);
    effects.extend(h.ok(SessionEvent::AttachCompleted).effects);
    let rows = carried_rows(&effects);
    let stopped = InputState::Abandoned(AbandonReason::Stopped);
    for input in inputs {
        assert!(rows.contains(&(input, stopped)), "the end of {input} is written again: {rows:?}");
    }
}

#[test]
fn a_recovery_from_the_store_after_a_failed_row_does_not_write_the_old_ends_over_what_it_brought_back() {
    // Found by the full simulator (seed 90700, a history of one): the ends a failed row carried were written again
    // after a recover had brought those inputs back live from the store, so memory and store disagreed.
    let mut h = H::attached_with(SessionConfig { history_max: 1, ..SessionConfig::default() });
    let inputs: Vec<InputId> = (0..3).map(|_| h.prompt().0).collect();
    let queued: Vec<burrow_core::input::InputRecord> =
        inputs.iter().map(|id| h.m.ledger().get(*id).expect("queued").clone()).collect();
    h.ok(SessionEvent::Stop);
    let error = ErrorInfo::new(FailureCause::TerminalPersistFailed, "disk full");
    h.ok(SessionEvent::LifecyclePersistFailed { error });
    // The store still holds the three rows Queued: a recover brings them back.
    let image = RecoveryImage::from_store(queued, &[], None);
    let fx = h.ok(SessionEvent::Recover(RecoverySource::Image(Box::new(image))));
    let rows = carried_rows(&fx.effects);
    for input in &inputs {
        assert_eq!(state(&h, *input), InputState::Queued, "brought back");
        assert!(!rows.contains(&(*input, InputState::Abandoned(AbandonReason::Stopped))), "{rows:?}");
    }
}

#[test]
fn a_session_without_a_store_never_asks_for_a_recall() {
    use burrow_core::ids::SessionId;
    use burrow_core::session::SessionMachine;
    let config = SessionConfig { history_max: 1, ..SessionConfig::default() };
    let mut m = SessionMachine::without_store(SessionId(1), config);
    m.apply(Millis(0), SessionEvent::Prepare { epoch: EpochId(1) }).unwrap();
    for key in ["a", "b", "c"] {
        m.apply(
            Millis(0),
            SessionEvent::Accept {
                spec: InputSpec::new(InputKind::Operation).idempotency_key(key),
                waiter: false,
                wake: true,
            },
        )
        .unwrap();
    }
    assert!(m.ledger().keys_forgotten(), "two operation records left the one-input history");
    assert!(m.key_to_recall(&prompt().idempotency_key("a")).is_none(), "no store to ask");
}

// ----- supersession and coalescing --------------------------------------------

#[test]
fn supersession_replaces_a_pending_input_of_the_same_kind_and_key() {
    let mut h = H::prepared();
    let (old, w_old) = h.accept(InputSpec::new(InputKind::ExternalEvent).supersession_key("cfg"));
    let (new, _) = h.accept(InputSpec::new(InputKind::ExternalEvent).supersession_key("cfg"));
    assert_eq!(state(&h, old), InputState::Superseded { by: new });
    let view = h.m.input_state(new).unwrap();
    assert_eq!(view.waiters, 2, "the superseded caller now waits on the newer input");
    assert!(w_old.is_some());
}

#[test]
fn supersession_never_crosses_kinds() {
    let mut h = H::prepared();
    let (a, _) = h.accept(InputSpec::new(InputKind::ExternalEvent).supersession_key("k"));
    let (b, _) = h.accept(InputSpec::new(InputKind::Prompt).supersession_key("k"));
    assert_eq!(state(&h, a), InputState::Queued);
    assert_eq!(state(&h, b), InputState::Queued);
}

#[test]
fn supersession_spares_a_staged_input() {
    let mut h = H::attached();
    let (a, _) = h.accept(InputSpec::new(InputKind::ExternalEvent).supersession_key("k"));
    let run = h.poll_run();
    let (b, _) = h.accept(InputSpec::new(InputKind::ExternalEvent).supersession_key("k"));
    assert_eq!(state(&h, a), InputState::Staged { run });
    assert_eq!(state(&h, b), InputState::Queued);
}

fn progress(request: &str) -> InputSpec {
    InputSpec::new(InputKind::PeerResponseProgress { request: request.into() })
}

fn terminal(request: &str) -> InputSpec {
    InputSpec::new(InputKind::PeerResponseTerminal { request: request.into() })
}

#[test]
fn peer_response_progress_coalesces_within_its_request() {
    let mut h = H::prepared();
    let (a, _) = h.accept(progress("r1"));
    let (other, _) = h.accept(progress("r2"));
    let (b, _) = h.accept(progress("r1"));
    assert_eq!(state(&h, a), InputState::Coalesced { into: b });
    assert_eq!(state(&h, other), InputState::Queued, "another request's progress stays");
    assert_eq!(h.m.list_active_inputs().len(), 2);
}

#[test]
fn a_terminal_peer_response_supersedes_the_pending_progress_of_its_request_and_takes_its_waiters() {
    let mut h = H::prepared();
    let (a, _) = h.accept(progress("r1"));
    let (other, _) = h.accept(progress("r2"));
    let fx = h.ok(SessionEvent::Accept { spec: terminal("r1"), waiter: true, wake: true });
    let Reply::Accepted { input: done, .. } = fx.reply else { panic!("{:?}", fx.reply) };
    assert_eq!(state(&h, a), InputState::Superseded { by: done });
    assert_eq!(state(&h, other), InputState::Queued, "another request's progress stays");
    assert_eq!(h.m.input_state(done).expect("live").waiters, 2, "the progress's caller now waits on the reply");
    // A terminal reply is not coalesced by a later one, nor by progress.
    let (late, _) = h.accept(progress("r1"));
    assert_eq!(state(&h, done), InputState::Queued);
    assert_eq!(state(&h, late), InputState::Queued);
    for bad in [progress(""), terminal(""), terminal(&"x".repeat(burrow_core::input::REQUEST_LEN_MAX + 1))] {
        let refused = h.refused(SessionEvent::Accept { spec: bad, waiter: false, wake: true });
        assert!(matches!(refused, Refusal::Invalid(_)), "{refused}");
    }
}

// ----- runs ----------------------------------------------------------------------

#[test]
fn a_run_consumes_its_input_and_resolves_completed() {
    let mut h = H::attached();
    let (input, waiter) = h.prompt();
    let run = h.poll_run();
    assert_eq!(h.m.phase(), RuntimePhase::Running);
    assert_eq!(state(&h, input), InputState::Staged { run });
    let fx = h.ok(SessionEvent::RunReported {
        run,
        report: RunReport::Result(RunResult { output: "hi".into() }),
        snapshot: None,
    });
    assert_eq!(state(&h, input), InputState::Applied { run });
    let Some(Effect::PersistBoundary { receipt, inputs, .. }) = fx.effects.first() else { panic!() };
    assert_eq!(receipt.contributors, vec![input]);
    // The row lands with the receipt, so it is written as it will be read: consumed (specs/session.md#writes-per-input).
    assert_eq!(inputs[0].state, InputState::Consumed);
    let fx = h.ok(SessionEvent::BoundaryCommitted { run });
    assert_eq!(state(&h, input), InputState::Consumed);
    assert_eq!(h.m.phase(), RuntimePhase::Attached);
    // The run's end changes nothing a recovery reads: no lifecycle row follows the boundary row.
    assert!(!fx.effects.iter().any(|e| matches!(e, Effect::PersistLifecycle { .. })), "{:?}", fx.effects);
    let res = resolutions(&fx);
    assert_eq!(res, vec![(input, vec![waiter], Some(OutcomeClass::Completed))]);
    assert_eq!(h.m.boundary_receipt(run).unwrap().sequence, 1);
}

#[test]
fn receipt_sequences_are_monotonic() {
    let mut h = H::attached();
    let mut last = 0;
    for _ in 0..5 {
        h.prompt();
        let run = h.poll_run();
        h.succeed(run, "x");
        let seq = h.m.boundary_receipt(run).unwrap().sequence;
        assert!(seq > last);
        last = seq;
    }
}

#[test]
fn no_result_and_callback_pending_reach_their_classes() {
    for (report, class) in [
        (RunReport::NoResult, OutcomeClass::CompletedWithoutResult),
        (RunReport::CallbackPending { tool: "t".into(), args: "{}".into() }, OutcomeClass::CallbackPending),
    ] {
        let mut h = H::attached();
        let (input, _) = h.prompt();
        let run = h.poll_run();
        h.ok(SessionEvent::RunReported { run, report, snapshot: None });
        let fx = h.ok(SessionEvent::BoundaryCommitted { run });
        assert_eq!(class_of(&fx, input), Some(class));
    }
}

#[test]
fn steer_inputs_run_first_and_together() {
    let mut h = H::attached();
    let (q, _) = h.prompt();
    let (s1, _) = h.accept(prompt().steer());
    let (s2, _) = h.accept(InputSpec::new(InputKind::Continuation));
    let fx = h.ok(SessionEvent::Poll);
    let primitive =
        fx.effects.iter().find_map(|e| if let Effect::StartRun(p) = e { Some(p) } else { None }).expect("a run starts");
    let ids: Vec<InputId> = primitive.inputs.iter().map(|(i, _)| *i).collect();
    assert_eq!(ids, vec![s1, s2], "the steer lane is batched ahead of the queue");
    assert_eq!(state(&h, q), InputState::Queued);
}

#[test]
fn the_queue_lane_is_fifo() {
    let mut h = H::attached();
    let (a, _) = h.prompt();
    let (b, _) = h.prompt();
    let run = h.poll_run();
    assert_eq!(state(&h, a), InputState::Staged { run });
    assert_eq!(state(&h, b), InputState::Queued);
    h.succeed(run, "a");
    let run2 = h.poll_run();
    assert_eq!(state(&h, b), InputState::Staged { run: run2 });
}

#[test]
fn poll_parks_only_when_nothing_is_selectable() {
    let mut h = H::attached();
    h.prompt();
    assert_eq!(h.ok(SessionEvent::Poll).reply, Reply::Run(RunId(1)));
}

#[test]
fn poll_during_a_loop_run_is_refused() {
    let mut h = H::attached();
    h.prompt();
    let run = h.poll_run();
    assert_eq!(h.refused(SessionEvent::Poll), Refusal::RunInFlight(run));
}

#[test]
fn poll_without_executor_tells_the_loop_to_exit() {
    let mut h = H::attached();
    h.ok(SessionEvent::Detach);
    assert_eq!(h.ok(SessionEvent::Poll).reply, Reply::Exit { reason: StopReason::Requested });
}

#[test]
fn events_for_another_run_are_refused() {
    let mut h = H::attached();
    h.prompt();
    let run = h.poll_run();
    let other = RunId(run.0 + 10);
    for ev in [
        SessionEvent::RunReported { run: other, report: RunReport::NoResult, snapshot: None },
        SessionEvent::RunFailed { run: other, error: ErrorInfo::new(FailureCause::ExecutorFailed, "x") },
        SessionEvent::BoundaryCommitted { run: other },
        SessionEvent::RunNotExecuted { run: other },
        SessionEvent::Interrupt { run: Some(other) },
    ] {
        assert!(matches!(h.refused(ev), Refusal::StaleRun { .. }));
    }
}

#[test]
fn commit_before_report_is_refused() {
    let mut h = H::attached();
    h.prompt();
    let run = h.poll_run();
    assert_eq!(h.refused(SessionEvent::BoundaryCommitted { run }), Refusal::RunNotReported(run));
    let err = ErrorInfo::new(FailureCause::BoundaryCommitFailed, "x");
    assert_eq!(h.refused(SessionEvent::BoundaryCommitFailed { run, error: err }), Refusal::RunNotReported(run));
}

#[test]
fn a_second_report_is_refused() {
    let mut h = H::attached();
    h.prompt();
    let run = h.poll_run();
    h.ok(SessionEvent::RunReported { run, report: RunReport::NoResult, snapshot: None });
    assert_eq!(
        h.refused(SessionEvent::RunReported { run, report: RunReport::NoResult, snapshot: None }),
        Refusal::RunFinalizing(run)
    );
    let err = ErrorInfo::new(FailureCause::ExecutorFailed, "x");
    assert_eq!(h.refused(SessionEvent::RunFailed { run, error: err }), Refusal::RunFinalizing(run));
    assert_eq!(h.refused(SessionEvent::Interrupt { run: None }), Refusal::RunFinalizing(run));
}

// ----- failures and attempts ------------------------------------------------------

#[test]
fn a_failed_run_requeues_and_the_backlog_keeps_draining() {
    let mut h = H::attached();
    let (a, _) = h.prompt();
    let (b, _) = h.prompt();
    let run = h.poll_run();
    let fx = h.fail(run);
    assert!(resolutions(&fx).is_empty(), "a requeued input's waiter keeps waiting");
    assert_eq!(state(&h, a), InputState::Queued);
    assert_eq!(h.m.input_state(a).unwrap().attempts, 1);
    // The failed input goes back to the front; the loop picks it up again.
    let run2 = h.poll_run();
    assert_eq!(state(&h, a), InputState::Staged { run: run2 });
    h.succeed(run2, "ok");
    let run3 = h.poll_run();
    assert_eq!(state(&h, b), InputState::Staged { run: run3 });
}

#[test]
fn a_poison_input_is_abandoned_at_max_attempts() {
    let mut h = H::attached();
    let (a, w) = h.prompt();
    for attempt in 1..=3 {
        let run = h.poll_run();
        let fx = h.fail(run);
        if attempt < 3 {
            assert_eq!(state(&h, a), InputState::Queued);
        } else {
            assert_eq!(state(&h, a), InputState::Abandoned(AbandonReason::MaxAttemptsExhausted { attempts: 3 }));
            assert_eq!(resolutions(&fx), vec![(a, vec![w], Some(OutcomeClass::AbandonedWithError))]);
        }
    }
    assert_eq!(h.ok(SessionEvent::Poll).reply, Reply::Park);
}

#[test]
fn max_attempts_is_configurable() {
    let mut h = H::attached_with(SessionConfig { max_attempts: 1, ..SessionConfig::default() });
    let (a, _) = h.prompt();
    let run = h.poll_run();
    h.fail(run);
    assert!(matches!(state(&h, a), InputState::Abandoned(AbandonReason::MaxAttemptsExhausted { attempts: 1 })));
}

#[test]
fn a_run_never_handed_to_the_executor_requeues_without_spending_an_attempt() {
    let mut h = H::attached();
    let (a, _) = h.prompt();
    let run = h.poll_run();
    h.ok(SessionEvent::RunNotExecuted { run });
    assert_eq!(state(&h, a), InputState::Queued);
    assert_eq!(h.m.input_state(a).unwrap().attempts, 0);
}

#[test]
fn a_never_executed_run_during_a_stop_abandons_as_never_executed() {
    let mut h = H::attached();
    let (a, w) = h.prompt();
    let run = h.poll_run();
    h.ok(SessionEvent::Stop);
    let fx = h.ok(SessionEvent::RunNotExecuted { run });
    assert_eq!(state(&h, a), InputState::Abandoned(AbandonReason::NeverExecuted));
    assert_eq!(class_of(&fx, a), Some(OutcomeClass::Abandoned));
    assert!(resolutions(&fx).iter().any(|(_, ws, _)| ws.contains(&w)));
    assert_eq!(h.m.phase(), RuntimePhase::Stopped);
}

#[test]
fn boundary_commit_failure_withholds_the_result_and_stops_the_executor() {
    let mut h = H::attached();
    let (a, _) = h.prompt();
    let (b, _) = h.prompt();
    let run = h.poll_run();
    h.ok(SessionEvent::RunReported {
        run,
        report: RunReport::Result(RunResult { output: "x".into() }),
        snapshot: None,
    });
    let fx = h.ok(SessionEvent::BoundaryCommitFailed {
        run,
        error: ErrorInfo::new(FailureCause::BoundaryCommitFailed, "disk"),
    });
    assert_eq!(class_of(&fx, a), Some(OutcomeClass::CompletedWithFinalizationFailure));
    assert_eq!(class_of(&fx, b), Some(OutcomeClass::RuntimeTerminated));
    assert!(has(&fx, "StopExecutor"));
    assert_eq!(h.m.phase(), RuntimePhase::Stopped);
    assert!(h.m.boundary_receipt(run).is_none(), "nothing was committed");
}

#[test]
fn terminal_persist_failure_fail_stops_and_resolves_everything() {
    let mut h = H::attached();
    let (a, _) = h.prompt();
    let (b, _) = h.prompt();
    let run = h.poll_run();
    let fx = h.ok(SessionEvent::LifecyclePersistFailed {
        error: ErrorInfo::new(FailureCause::TerminalPersistFailed, "disk"),
    });
    assert!(fx.effects.iter().any(|e| matches!(e, Effect::CancelRun { run: r, .. } if *r == run)));
    assert!(has(&fx, "StopExecutor"));
    assert_eq!(h.m.phase(), RuntimePhase::Stopped);
    assert_eq!(class_of(&fx, a), Some(OutcomeClass::RuntimeTerminated));
    assert_eq!(class_of(&fx, b), Some(OutcomeClass::RuntimeTerminated));
    assert_eq!(h.m.waiters().pending(), 0);
    // A second failure report changes nothing.
    let fx = h.ok(SessionEvent::LifecyclePersistFailed {
        error: ErrorInfo::new(FailureCause::TerminalPersistFailed, "disk"),
    });
    assert_eq!(fx.reply, Reply::NoOp);
}

// ----- deadlines --------------------------------------------------------------

#[test]
fn a_slow_run_is_noticed_once() {
    let mut h = H::attached();
    h.prompt();
    let run = h.poll_run();
    h.advance(burrow_core::session::RUN_NOTICE_MS_DEFAULT);
    let fx = h.ok(SessionEvent::Tick);
    assert!(fx.effects.iter().any(|e| matches!(e, Effect::RunNotice { run: r, .. } if *r == run)));
    let fx = h.ok(SessionEvent::Tick);
    assert!(!has(&fx, "RunNotice"));
}

#[test]
fn a_run_past_its_deadline_is_cancelled_and_counts_as_a_failed_attempt() {
    let mut h = H::attached_with(SessionConfig { run_deadline_ms: 1_000, ..SessionConfig::default() });
    let (a, _) = h.prompt();
    let run = h.poll_run();
    h.advance(1_000);
    let fx = h.ok(SessionEvent::Tick);
    assert!(fx.effects.iter().any(|e| matches!(e, Effect::CancelRun { run: r, .. } if *r == run)));
    assert_eq!(state(&h, a), InputState::Queued);
    assert_eq!(h.m.input_state(a).unwrap().attempts, 1);
    // The late report of the cancelled run is refused as stale.
    assert!(matches!(
        h.refused(SessionEvent::RunReported { run, report: RunReport::NoResult, snapshot: None }),
        Refusal::StaleRun { .. }
    ));
}

#[test]
fn expiry_is_undone_when_the_event_after_it_is_refused() {
    let mut h = H::attached_with(SessionConfig { run_deadline_ms: 10, ..SessionConfig::default() });
    h.prompt();
    h.poll_run();
    h.advance(50);
    // Detach is refused while Running... but the run expired first; after expiry
    // the session is Attached so detach would be accepted. Use an event that is
    // refused either way instead.
    let r = h.refused(SessionEvent::BoundaryCommitted { run: RunId(99) });
    assert!(matches!(r, Refusal::StaleRun { .. }));
    assert!(h.m.current_run().is_some(), "the refused event left the run in place");
}

// ----- interrupt and cancel-after-boundary ---------------------------------------

#[test]
fn interrupt_cancels_exactly_the_current_run() {
    let mut h = H::attached();
    let (a, w) = h.prompt();
    let (b, _) = h.prompt();
    let run = h.poll_run();
    let fx = h.ok(SessionEvent::Interrupt { run: Some(run) });
    assert_eq!(fx.reply, Reply::Interrupted(run));
    assert_eq!(resolutions(&fx), vec![(a, vec![w], Some(OutcomeClass::Cancelled))]);
    assert_eq!(state(&h, b), InputState::Queued, "queued work is untouched");
    assert_eq!(h.m.phase(), RuntimePhase::Attached);
}

#[test]
fn interrupt_without_a_run_is_refused() {
    let mut h = H::attached();
    assert_eq!(h.refused(SessionEvent::Interrupt { run: None }), Refusal::NoRunInFlight);
}

#[test]
fn cancel_after_boundary_reaches_the_executor_once() {
    let mut h = H::attached();
    assert_eq!(h.refused(SessionEvent::CancelAfterBoundary), Refusal::NoRunInFlight);
    h.prompt();
    let run = h.poll_run();
    let fx = h.ok(SessionEvent::CancelAfterBoundary);
    assert!(fx.effects.iter().any(|e| matches!(e, Effect::CancelAfterBoundary { run: r } if *r == run)));
    assert_eq!(h.ok(SessionEvent::CancelAfterBoundary).reply, Reply::NoOp);
}

// ----- stop -----------------------------------------------------------------------

#[test]
fn stop_when_idle_abandons_and_resolves_runtime_terminated() {
    let mut h = H::attached();
    h.ok(SessionEvent::Accept { spec: prompt(), waiter: true, wake: false });
    let fx = h.ok(SessionEvent::Stop);
    assert_eq!(fx.reply, Reply::Stopped { deferred: false, abandoned: 1 });
    assert!(has(&fx, "StopExecutor"));
    assert_eq!(resolutions(&fx)[0].2, Some(OutcomeClass::RuntimeTerminated));
    assert_eq!(h.m.phase(), RuntimePhase::Stopped);
}

#[test]
fn stop_during_a_run_is_deferred_then_takes_effect() {
    let mut h = H::attached();
    let (a, _) = h.prompt();
    let (b, _) = h.prompt();
    let run = h.poll_run();
    let fx = h.ok(SessionEvent::Stop);
    assert_eq!(fx.reply, Reply::Stopped { deferred: true, abandoned: 0 });
    assert!(!has(&fx, "StopExecutor"));
    assert_eq!(h.ok(SessionEvent::Stop).reply, Reply::NoOp);
    let fx = h.succeed(run, "done");
    assert_eq!(class_of(&fx, a), Some(OutcomeClass::Completed), "the run in flight finishes");
    assert_eq!(class_of(&fx, b), Some(OutcomeClass::RuntimeTerminated));
    assert!(has(&fx, "StopExecutor"));
    assert_eq!(h.m.phase(), RuntimePhase::Stopped);
}

#[test]
fn admission_closes_while_a_stop_is_deferred() {
    let mut h = H::attached();
    h.prompt();
    h.poll_run();
    h.ok(SessionEvent::Stop);
    assert!(matches!(
        h.refused(SessionEvent::Accept { spec: prompt(), waiter: false, wake: true }),
        Refusal::AdmissionClosed { .. }
    ));
}

#[test]
fn a_stopped_session_is_revived_by_attaching() {
    let mut h = H::attached();
    h.ok(SessionEvent::Stop);
    h.ok(SessionEvent::LoopExited { generation: current_generation(&h) });
    h.attach();
    assert_eq!(h.m.phase(), RuntimePhase::Attached);
    h.prompt();
    h.poll_run();
}

fn current_generation(h: &H) -> Generation {
    h.m.binding().unwrap().generation
}

// ----- retire -----------------------------------------------------------------------

#[test]
fn retire_with_an_executor_drains_queued_work() {
    let mut h = H::attached();
    h.ok(SessionEvent::Accept { spec: prompt(), waiter: false, wake: false });
    h.ok(SessionEvent::Accept { spec: prompt(), waiter: false, wake: false });
    let fx = h.ok(SessionEvent::Retire);
    assert_eq!(fx.reply, Reply::Retired { pending_drain: 2, abandoned: 0 });
    assert!(has(&fx, "WakeLoop"));
    let run = h.poll_run();
    h.succeed(run, "a");
    assert_eq!(h.m.phase(), RuntimePhase::Retired);
    let run = h.poll_run();
    h.succeed(run, "b");
    assert_eq!(h.ok(SessionEvent::Poll).reply, Reply::Park);
}

#[test]
fn retire_without_an_executor_abandons_queued_work() {
    let mut h = H::prepared();
    let (a, w) = h.prompt();
    let fx = h.ok(SessionEvent::Retire);
    assert_eq!(fx.reply, Reply::Retired { pending_drain: 0, abandoned: 1 });
    assert_eq!(state(&h, a), InputState::Abandoned(AbandonReason::Retired));
    assert_eq!(resolutions(&fx), vec![(a, vec![w], Some(OutcomeClass::Abandoned))]);
}

#[test]
fn retire_during_a_run_is_sticky() {
    let mut h = H::attached();
    h.prompt();
    let run = h.poll_run();
    h.ok(SessionEvent::Retire);
    assert!(matches!(
        h.refused(SessionEvent::Accept { spec: prompt(), waiter: false, wake: true }),
        Refusal::AdmissionClosed { .. }
    ));
    assert_eq!(h.ok(SessionEvent::Retire).reply, Reply::NoOp);
    h.succeed(run, "x");
    assert_eq!(h.m.phase(), RuntimePhase::Retired, "the run returns to Retired, never reopens admission");
}

#[test]
fn retire_twice_is_a_no_op_and_retire_after_stop_is_refused() {
    let mut h = H::attached();
    h.ok(SessionEvent::Retire);
    assert_eq!(h.ok(SessionEvent::Retire).reply, Reply::NoOp);
    let mut h = H::attached();
    h.ok(SessionEvent::Stop);
    assert!(matches!(h.refused(SessionEvent::Retire), Refusal::Phase(PhaseRefusal::NotAllowed { .. })));
}

// ----- reset, recycle, recover, destroy -----------------------------------------------------

#[test]
fn reset_abandons_everything_and_resolves_waiters() {
    let mut h = H::attached();
    let (a, w1) = h.prompt();
    let fx = h.ok(SessionEvent::Accept { spec: prompt().idempotency_key("k"), waiter: true, wake: true });
    let Reply::Accepted { input: b, .. } = fx.reply else { panic!() };
    let fx = h.ok(SessionEvent::Reset);
    assert_eq!(fx.reply, Reply::Reset { abandoned: 2 });
    assert_eq!(state(&h, a), InputState::Abandoned(AbandonReason::Reset));
    assert_eq!(state(&h, b), InputState::Abandoned(AbandonReason::Reset));
    let res = resolutions(&fx);
    assert!(res.iter().all(|(_, _, c)| *c == Some(OutcomeClass::RuntimeTerminated)));
    assert!(res.iter().any(|(_, ws, _)| ws.contains(&w1)));
    assert_eq!(h.m.phase(), RuntimePhase::Attached);
}

#[test]
fn reset_recycle_recover_are_refused_while_running() {
    for ev in [SessionEvent::Reset, SessionEvent::Recycle, SessionEvent::Recover(RecoverySource::InMemory)] {
        let mut h = H::attached();
        h.prompt();
        h.poll_run();
        assert!(matches!(h.refused(ev), Refusal::Phase(PhaseRefusal::RunInFlight { .. })));
    }
}

#[test]
fn recycle_keeps_pending_work_and_waiters_and_bumps_the_generation() {
    let mut h = H::attached();
    let before = h.m.binding().unwrap();
    let (a, w) = h.accept(ephemeral(InputKind::Prompt));
    h.ok(SessionEvent::Accept { spec: prompt(), waiter: false, wake: false });
    let fx = h.ok(SessionEvent::Recycle);
    assert_eq!(fx.reply, Reply::Recycled { transferred: 2 });
    assert!(resolutions(&fx).is_empty(), "waiters of pending inputs keep waiting");
    assert_eq!(state(&h, a), InputState::Queued);
    assert_eq!(h.m.waiters().waiters_of(a), vec![w.unwrap()]);
    assert!(h.m.binding().unwrap().generation > before.generation);
    assert_eq!(h.m.phase(), RuntimePhase::Attached);
}

#[test]
fn recycle_reopens_a_retired_session() {
    let mut h = H::prepared();
    h.ok(SessionEvent::Retire);
    h.ok(SessionEvent::Recycle);
    assert_eq!(h.m.phase(), RuntimePhase::Idle);
    h.prompt();
}

#[test]
fn recover_in_memory_drops_ephemeral_inputs_and_keeps_durable_ones() {
    let mut h = H::prepared();
    let (e, w) = h.accept(ephemeral(InputKind::Prompt));
    let (d, _) = h.prompt();
    let fx = h.ok(SessionEvent::Recover(RecoverySource::InMemory));
    assert_eq!(fx.reply, Reply::Recovered { recovered: 1, requeued: 0, abandoned: 0, consumed: 0, dropped: 1 });
    assert_eq!(class_of(&fx, e), Some(OutcomeClass::RuntimeTerminated));
    assert!(resolutions(&fx).iter().any(|(_, ws, _)| ws.contains(&w.unwrap())));
    assert_eq!(state(&h, d), InputState::Queued);
}

fn record(id: u64, state: InputState, attempts: u32) -> burrow_core::input::InputRecord {
    burrow_core::input::InputRecord {
        id: InputId(id),
        spec: InputSpec::new(InputKind::Prompt).idempotency_key(format!("k{id}")),
        state,
        attempts,
        accepted_at: Millis(0),
    }
}

#[test]
fn recover_from_an_image_applies_the_recovery_table() {
    let mut h = H::prepared();
    let committed = RunId(5);
    let lost = RunId(6);
    let image = RecoveryImage {
        inputs: vec![
            record(1, InputState::Queued, 0),
            record(2, InputState::Staged { run: lost }, 1),
            record(3, InputState::AppliedPendingConsumption { run: committed }, 1),
            record(4, InputState::Applied { run: lost }, 2),
            record(5, InputState::Consumed, 1),
            record(6, InputState::Staged { run: lost }, 3),
        ],
        committed_runs: [committed].into_iter().collect(),
        last_input: 6,
        last_run: 6,
        last_receipt_sequence: 9,
        operations: None,
    };
    let fx = h.ok(SessionEvent::Recover(RecoverySource::Image(Box::new(image))));
    assert_eq!(fx.reply, Reply::Recovered { recovered: 3, requeued: 2, abandoned: 1, consumed: 1, dropped: 0 });
    assert_eq!(state(&h, InputId(1)), InputState::Queued);
    assert_eq!(state(&h, InputId(2)), InputState::Queued);
    assert_eq!(h.m.input_state(InputId(2)).unwrap().attempts, 1, "attempts survive recovery");
    assert_eq!(state(&h, InputId(3)), InputState::Consumed, "a committed receipt is never re-run");
    assert_eq!(state(&h, InputId(4)), InputState::Queued);
    assert_eq!(state(&h, InputId(5)), InputState::Consumed);
    assert_eq!(state(&h, InputId(6)), InputState::Abandoned(AbandonReason::MaxAttemptsExhausted { attempts: 3 }));
    // Dedup still holds for a terminal input restored from the image.
    let fx = h.ok(SessionEvent::Accept { spec: prompt().idempotency_key("k5"), waiter: true, wake: true });
    assert_eq!(fx.reply, Reply::Deduplicated { existing: InputId(5), waiter: None });
    // New ids continue after the image's.
    let (next, _) = h.prompt();
    assert_eq!(next, InputId(7));
}

#[test]
fn destroy_is_terminal_and_resolves_everything() {
    let mut h = H::attached();
    let (a, _) = h.prompt();
    let (b, _) = h.prompt();
    let run = h.poll_run();
    let fx = h.ok(SessionEvent::Destroy);
    assert_eq!(fx.reply, Reply::Destroyed { abandoned: 2 });
    assert!(fx.effects.iter().any(|e| matches!(e, Effect::CancelRun { run: r, .. } if *r == run)));
    assert_eq!(class_of(&fx, a), Some(OutcomeClass::RuntimeTerminated));
    assert_eq!(class_of(&fx, b), Some(OutcomeClass::RuntimeTerminated));
    assert_eq!(h.m.phase(), RuntimePhase::Destroyed);
    assert_eq!(h.ok(SessionEvent::Destroy).reply, Reply::NoOp);
    for ev in [
        SessionEvent::Stop,
        SessionEvent::Retire,
        SessionEvent::Reset,
        SessionEvent::Recycle,
        SessionEvent::BeginAttach,
    ] {
        assert_eq!(h.refused(ev), Refusal::Phase(PhaseRefusal::Destroyed));
    }
}

// ----- accept_and_run ----------------------------------------------------------------

#[test]
fn accept_and_run_starts_an_inline_run() {
    let mut h = H::prepared();
    let fx = h.ok(SessionEvent::AcceptAndRun { spec: prompt() });
    assert!(matches!(fx.reply, Reply::Accepted { waiter: None, terminal: false, .. }), "{:?}", fx.reply);
    let run = h.m.current_run().expect("an inline run").id;
    assert_eq!(
        fx.names(),
        vec!["PersistInput", "Notify", "Notify", "PersistLifecycle", "StartRun", "Notify"],
        "the input is durable (and noticed), then the attempt (the phase's change noticed), then the run is handed out \
         (and noticed)"
    );
    assert!(h.m.current_run().unwrap().inline);
    h.succeed(run, "x");
    assert_eq!(h.m.phase(), RuntimePhase::Idle, "an inline run returns to its pre-run phase");
}

#[test]
fn accept_and_run_refuses_when_not_idle_or_busy() {
    let mut h = H::attached();
    h.ok(SessionEvent::Accept { spec: prompt(), waiter: false, wake: false });
    assert!(matches!(h.refused(SessionEvent::AcceptAndRun { spec: prompt() }), Refusal::NotIdle { active: 1, .. }));
    let mut h = H::attached();
    h.ok(SessionEvent::Retire);
    assert!(matches!(h.refused(SessionEvent::AcceptAndRun { spec: prompt() }), Refusal::AdmissionClosed { .. }));
}

#[test]
fn accept_and_run_refuses_dedup() {
    let mut h = H::attached();
    h.accept(prompt().idempotency_key("k"));
    let run = h.poll_run();
    h.succeed(run, "x");
    let r = h.refused(SessionEvent::AcceptAndRun { spec: prompt().idempotency_key("k") });
    assert!(matches!(r, Refusal::DedupRefused { .. }));
}

#[test]
fn accept_and_run_commit_failure_unwinds_without_stopping() {
    let mut h = H::attached();
    h.ok(SessionEvent::AcceptAndRun { spec: prompt() });
    let run = h.m.current_run().expect("an inline run").id;
    h.ok(SessionEvent::RunReported { run, report: RunReport::NoResult, snapshot: None });
    h.ok(SessionEvent::BoundaryCommitFailed { run, error: ErrorInfo::new(FailureCause::BoundaryCommitFailed, "x") });
    assert_eq!(h.m.phase(), RuntimePhase::Attached, "the session lives");
    let input = h.m.list_active_inputs()[0].id;
    assert_eq!(state(&h, input), InputState::Queued, "the input rolled back");
}

#[test]
fn a_failed_input_write_admits_nothing_and_frees_the_key() {
    let mut h = H::attached();
    let spec = prompt().idempotency_key("k");
    let fx = h.apply_checked("Accept", SessionEvent::Accept { spec, waiter: true, wake: true });
    assert_eq!(fx.names(), vec!["PersistInput"], "the write comes first and alone");
    let Reply::Accepted { input: a, waiter: Some(_), .. } = fx.reply else { panic!("{:?}", fx.reply) };
    assert_eq!(h.m.admitting(), Some(a));
    assert!(h.m.input_state(a).is_none(), "not in the ledger before its write lands");
    // Nothing else happens while the write is in flight; a refusal changes nothing.
    assert_eq!(h.refused(SessionEvent::Poll), Refusal::AdmissionInFlight { input: a });
    assert_eq!(h.refused(SessionEvent::Reset), Refusal::AdmissionInFlight { input: a });
    let error = ErrorInfo::new(FailureCause::TerminalPersistFailed, "disk full");
    let fx = h.apply_checked("InputPersistFailed", SessionEvent::InputPersistFailed { input: a, error: error.clone() });
    assert_eq!(resolutions(&fx).len(), 1, "the caller's waiter learns it");
    // With the store's error and why, not a bare class.
    let told = fx.effects.iter().find_map(|e| match e {
        Effect::ResolveWaiters { resolution, .. } => Some(resolution.clone()),
        _ => None,
    });
    let Some(Ok(Outcome::RuntimeTerminated { reason, error: told })) = told else { panic!("{told:?}") };
    assert_eq!(told, error);
    assert!(reason.contains("durable write"), "{reason}");
    assert!(h.m.input_state(a).is_none());
    assert_eq!(h.m.admitting(), None);
    // The key is free again: the caller may retry, under a new id.
    let (b, _) = h.accept(prompt().idempotency_key("k"));
    assert_ne!(a, b);
}

#[test]
fn a_superseding_input_whose_write_fails_leaves_the_older_one_queued_with_its_waiters() {
    let mut h = H::attached();
    let (older, waiter) = h.accept(InputSpec::new(InputKind::ExternalEvent).supersession_key("s"));
    let waiter = waiter.expect("a waiter");
    let spec = InputSpec::new(InputKind::ExternalEvent).supersession_key("s");
    let fx = h.apply_checked("Accept", SessionEvent::Accept { spec, waiter: true, wake: true });
    let Reply::Accepted { input: newer, .. } = fx.reply else { panic!("{:?}", fx.reply) };
    assert_eq!(state(&h, older), InputState::Queued, "nothing is superseded before the write lands");
    let error = ErrorInfo::new(FailureCause::TerminalPersistFailed, "disk full");
    h.apply_checked("InputPersistFailed", SessionEvent::InputPersistFailed { input: newer, error });
    assert_eq!(state(&h, older), InputState::Queued);
    assert!(h.m.ledger().queue_lane().any(|i| i == older), "still in its lane");
    assert!(h.m.waiters().waiters_of(older).contains(&waiter), "its waiter stayed with it");
}

#[test]
fn a_superseding_input_ends_every_pending_input_of_its_kind_and_key() {
    // specs/input.md#supersession: the first was staged when the second took the key; its run failed and put it
    // back, so two are pending. A third ends both, and every waiter moves to it. Superseding only one (the core took
    // the first of the queue lane, the specification the lowest id) left the other to run: full seed 464553.
    let mut h = H::attached();
    let keyed = || InputSpec::new(InputKind::ExternalEvent).supersession_key("s");
    let (first, w1) = h.accept(keyed());
    let run = h.poll_run();
    let (second, w2) = h.accept(keyed());
    h.fail(run);
    assert_eq!((state(&h, first), state(&h, second)), (InputState::Queued, InputState::Queued));
    let fx = h.ok(SessionEvent::Accept { spec: keyed(), waiter: true, wake: true });
    let Reply::Accepted { input: third, .. } = fx.reply else { panic!("{:?}", fx.reply) };
    assert_eq!(state(&h, first), InputState::Superseded { by: third });
    assert_eq!(state(&h, second), InputState::Superseded { by: third });
    let waiting = h.m.waiters().waiters_of(third);
    assert!([w1, w2].iter().flatten().all(|w| waiting.contains(w)), "{waiting:?}");
    let rows = lifecycle_rows(&fx.effects);
    assert_eq!(rows.len(), 1, "one row ends both: {rows:?}");
}

#[test]
fn a_failed_inline_input_write_starts_no_run() {
    let mut h = H::prepared();
    let fx = h.apply_checked("AcceptAndRun", SessionEvent::AcceptAndRun { spec: prompt() });
    assert_eq!(fx.names(), vec!["PersistInput"]);
    let Reply::Accepted { input, .. } = fx.reply else { panic!("{:?}", fx.reply) };
    assert!(h.m.current_run().is_none(), "no run before the input is durable");
    let error = ErrorInfo::new(FailureCause::TerminalPersistFailed, "disk full");
    let fx = h.apply_checked("InputPersistFailed", SessionEvent::InputPersistFailed { input, error });
    assert!(!has(&fx, "StartRun"));
    assert!(h.m.current_run().is_none());
    assert_eq!(h.m.phase(), RuntimePhase::Idle);
    assert!(h.m.input_state(input).is_none(), "as if never admitted");
}

#[test]
fn a_run_is_handed_out_only_once_its_start_is_durable() {
    let mut h = H::attached();
    h.prompt();
    let fx = h.apply_checked("Poll", SessionEvent::Poll);
    let Reply::Run(run) = fx.reply else { panic!("{:?}", fx.reply) };
    // The attempt is recorded before the run is handed out; the notice is the phase's change to Running.
    assert_eq!(fx.names(), vec!["Notify", "PersistLifecycle"], "the attempt is recorded first");
    // The record failed: the session fail-stops and the run is never handed out.
    let error = ErrorInfo::new(FailureCause::TerminalPersistFailed, "disk full");
    let fx = h.ok(SessionEvent::LifecyclePersistFailed { error });
    assert!(!has(&fx, "StartRun"));
    assert_eq!(h.m.phase(), RuntimePhase::Stopped);
    assert!(matches!(h.refused(SessionEvent::RunStartRecorded { run }), Refusal::StaleRun { .. }));
}

#[test]
fn a_fenced_event_with_a_stale_binding_changes_nothing() {
    let mut h = H::attached();
    h.prompt();
    let old = h.m.binding().expect("prepared");
    h.ok(SessionEvent::Recycle);
    let current = h.m.binding().expect("prepared");
    assert_ne!(old, current, "a recycle issues a new binding");
    let stale = SessionEvent::Fenced { binding: old, event: Box::new(SessionEvent::Retire) };
    assert!(matches!(h.refused(stale), Refusal::Registration(_)));
    assert_eq!(h.m.phase(), RuntimePhase::Attached);
    h.ok(SessionEvent::Fenced { binding: current, event: Box::new(SessionEvent::Retire) });
    assert_eq!(h.m.phase(), RuntimePhase::Retired);
    let nested = SessionEvent::Fenced {
        binding: current,
        event: Box::new(SessionEvent::Fenced { binding: current, event: Box::new(SessionEvent::Wake) }),
    };
    assert_eq!(h.refused(nested), Refusal::NestedFence);
}

#[test]
fn unregister_cancels_an_inline_run_so_its_late_report_is_refused() {
    let mut h = H::prepared();
    h.ok(SessionEvent::AcceptAndRun { spec: prompt() });
    let run = h.m.current_run().expect("an inline run").id;
    let input = h.m.current_run().expect("in flight").inputs[0];
    let fx = h.ok(SessionEvent::BeginUnregister);
    assert!(
        fx.effects
            .iter()
            .any(|e| matches!(e, Effect::CancelRun { run: r, reason: StopReason::Unregistering } if *r == run)),
        "{:?}",
        fx.names()
    );
    assert!(h.m.current_run().is_none());
    assert_eq!(state(&h, input), InputState::Queued, "back by the attempt rule, for the next registration");
    let late = SessionEvent::RunReported { run, report: RunReport::NoResult, snapshot: None };
    assert!(matches!(h.refused(late), Refusal::StaleRun { .. }), "the old run can never commit");
}

#[test]
fn a_loop_that_polls_during_an_inline_run_parks_and_the_runs_end_wakes_it() {
    let mut h = H::attached();
    h.ok(SessionEvent::AcceptAndRun { spec: prompt() });
    let run = h.m.current_run().expect("an inline run").id;
    // A loop woken for another reason polls while the caller's run is in flight.
    assert_eq!(h.ok(SessionEvent::Poll).reply, Reply::Park);
    assert!(h.m.loop_parked());
    h.prompt();
    let fx = h.succeed(run, "x");
    assert!(has(&fx, "WakeLoop"), "the queued prompt wakes the loop that parked: {:?}", fx.names());
}

#[test]
fn a_failed_cancel_after_boundary_interrupts_the_run_and_a_late_one_is_a_no_op() {
    let mut h = H::attached();
    h.prompt();
    let run = h.poll_run();
    h.ok(SessionEvent::CancelAfterBoundary);
    let error = ErrorInfo::new(FailureCause::ExecutorFailed, "cannot");
    let fx = h.ok(SessionEvent::CancelAfterBoundaryFailed { run, error: error.clone() });
    assert_eq!(fx.reply, Reply::Interrupted(run));
    assert_eq!(h.ok(SessionEvent::CancelAfterBoundaryFailed { run, error }).reply, Reply::NoOp);
}

#[test]
fn the_feedback_table_has_one_event_per_row_and_refuses_impossible_pairs() {
    use burrow_core::protocol::{Observed, Subject, feedback, feedback_rows};
    for (subject, observed) in feedback_rows() {
        assert!(feedback(subject, observed.clone()).is_ok(), "{subject:?} {observed:?}");
    }
    assert!(feedback(Subject::Other, Observed::Written).is_err());
    assert!(feedback(Subject::InputWrite(InputId(1)), Observed::Spawned).is_err());
}

// ----- registration ----------------------------------------------------------------------

#[test]
fn prepare_is_idempotent() {
    let mut h = H::prepared();
    let first = h.m.binding().unwrap();
    let fx = h.ok(SessionEvent::Prepare { epoch: burrow_core::EpochId(99) });
    assert_eq!(fx.reply, Reply::Prepared(first), "the epoch is stable across calls");
}

#[test]
fn attach_is_single_flight() {
    let mut h = H::prepared();
    h.ok(SessionEvent::BeginAttach);
    assert!(matches!(h.refused(SessionEvent::BeginAttach), Refusal::Registration(_)));
    h.ok(SessionEvent::AttachCompleted);
    assert!(matches!(h.refused(SessionEvent::BeginAttach), Refusal::Registration(_)));
}

#[test]
fn attach_upgrades_a_queued_only_session_and_drains_at_once() {
    let mut h = H::prepared();
    let (a, _) = h.prompt();
    h.ok(SessionEvent::BeginAttach);
    h.ok(SessionEvent::AttachCompleted);
    let run = h.poll_run();
    assert_eq!(state(&h, a), InputState::Staged { run });
}

#[test]
fn a_dead_attachment_is_repaired() {
    let mut h = H::attached();
    let generation = current_generation(&h);
    h.ok(SessionEvent::LoopExited { generation });
    assert_eq!(h.m.phase(), RuntimePhase::Idle);
    h.attach();
    assert!(current_generation(&h) > generation);
}

#[test]
fn a_loop_exit_during_a_run_rolls_the_run_back() {
    let mut h = H::attached();
    let (a, _) = h.prompt();
    h.poll_run();
    let generation = current_generation(&h);
    h.ok(SessionEvent::LoopExited { generation });
    assert_eq!(state(&h, a), InputState::Queued, "never left Staged");
    assert!(h.m.current_run().is_none());
}

/// A lifecycle row as a test reads it: the phase, and each input with its state and attempts.
type Row = (RuntimePhase, Vec<(InputId, InputState, u32)>);

/// The lifecycle rows among `effects`.
fn lifecycle_rows(effects: &[Effect]) -> Vec<Row> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::PersistLifecycle { phase, inputs, .. } => {
                Some((*phase, inputs.iter().map(|r| (r.id, r.state, r.attempts)).collect()))
            }
            _ => None,
        })
        .collect()
}

#[test]
fn a_loop_exit_during_a_run_builds_one_lifecycle_row_and_a_failed_write_of_it_is_the_last_word() {
    // spec: specs/session.md#one-lifecycle-row: the exit fails the run (a row) and falls back to Idle (another
    // row). Built as two, the second was performed after the first one's failure feedback and overwrote the
    // fail-stop's row: the input came back Queued after a restart although its waiter was told RuntimeTerminated.
    let mut h = H::attached();
    let (a, _) = h.prompt();
    h.poll_run();
    let generation = current_generation(&h);
    let fx = h.ok(SessionEvent::LoopExited { generation });
    assert_eq!(
        lifecycle_rows(&fx.effects),
        vec![(RuntimePhase::Idle, vec![(a, InputState::Queued, 1)])],
        "{:?}",
        fx.names()
    );
    let error = ErrorInfo::new(FailureCause::TerminalPersistFailed, "down");
    let stop = h.ok(SessionEvent::LifecyclePersistFailed { error });
    assert_eq!(
        lifecycle_rows(&stop.effects),
        vec![(RuntimePhase::Stopped, vec![(a, InputState::Abandoned(AbandonReason::Stopped), 1)])],
        "{:?}",
        stop.names()
    );
}

#[test]
fn the_merged_row_stands_where_the_first_stood_in_a_buffer_the_driver_reuses() {
    // A driver appends an event's effects to a buffer that may hold earlier ones (the shell's stack does): the merge
    // looks only at this event's effects and replaces the first row in place. With one attempt, the exit's failed
    // run resolves the input's waiter before its first row, so that row is not the event's first effect.
    let mut h = H::attached_with(SessionConfig { max_attempts: 1, ..SessionConfig::default() });
    let (a, _) = h.prompt();
    h.poll_run();
    let generation = current_generation(&h);
    let mut buffer = vec![Effect::WakeLoop, Effect::WakeLoop];
    h.m.apply_into(Millis(h.now), SessionEvent::LoopExited { generation }, &mut buffer).expect("taken");
    assert!(matches!(buffer[..2], [Effect::WakeLoop, Effect::WakeLoop]), "earlier effects stay as they were");
    let rows: Vec<usize> = buffer
        .iter()
        .enumerate()
        .filter(|(_, e)| matches!(e, Effect::PersistLifecycle { .. }))
        .map(|(i, _)| i)
        .collect();
    let resolved = buffer.iter().position(|e| matches!(e, Effect::ResolveWaiters { .. })).expect("a's waiter");
    assert_eq!(rows.len(), 1, "one row: {buffer:?}");
    assert!(resolved == 2 && rows[0] > resolved, "the row stands after the resolution, as built: {buffer:?}");
    let Effect::PersistLifecycle { inputs, .. } = &buffer[rows[0]] else { unreachable!() };
    let exhausted = InputState::Abandoned(AbandonReason::MaxAttemptsExhausted { attempts: 1 });
    assert_eq!(inputs.iter().map(|r| (r.id, r.state)).collect::<Vec<_>>(), vec![(a, exhausted)]);
}

#[test]
fn rows_a_failed_lifecycle_write_carried_are_carried_by_the_next_row() {
    // spec: specs/session.md#a-failed-row-is-written-again: the retire's row (a Retired) fails, so does the
    // fail-stop's; the next row the session builds (an attach) must carry a's end, or a later restart brings a back.
    let mut h = H::prepared();
    let (a, _) = h.prompt();
    let retire = h.ok(SessionEvent::Retire);
    let retired = InputState::Abandoned(AbandonReason::Retired);
    assert_eq!(lifecycle_rows(&retire.effects), vec![(RuntimePhase::Retired, vec![(a, retired, 0)])]);
    let error = || ErrorInfo::new(FailureCause::TerminalPersistFailed, "down");
    h.ok(SessionEvent::LifecyclePersistFailed { error: error() });
    assert_eq!(h.ok(SessionEvent::LifecyclePersistFailed { error: error() }).reply, Reply::NoOp);
    h.ok(SessionEvent::BeginAttach);
    let attach = h.ok(SessionEvent::AttachCompleted);
    assert_eq!(
        lifecycle_rows(&attach.effects),
        vec![(RuntimePhase::Idle, vec![(a, retired, 0)])],
        "{:?}",
        attach.names()
    );
    // Once written again, rows go back to the ones that changed.
    let poll = h.ok(SessionEvent::Poll);
    assert!(
        lifecycle_rows(&poll.effects).iter().all(|(_, rows)| rows.is_empty()),
        "{:?}",
        lifecycle_rows(&poll.effects)
    );
}

#[test]
fn unregister_closes_admission_resolves_waiters_and_needs_obligations() {
    let mut h = H::attached();
    let (a, w) = h.prompt();
    let fx = h.ok(SessionEvent::BeginUnregister);
    assert!(
        resolutions(&fx)
            .iter()
            .any(|(i, ws, c)| *i == a && ws.contains(&w) && *c == Some(OutcomeClass::RuntimeTerminated))
    );
    assert_eq!(h.refused(SessionEvent::Accept { spec: prompt(), waiter: false, wake: true }), Refusal::NotRegistered);
    assert!(matches!(h.refused(SessionEvent::CommitUnregister), Refusal::Registration(_)));
    assert!(matches!(h.refused(SessionEvent::BeginAttach), Refusal::Registration(_)));
    let open = h.m.registration().open_obligations();
    for obligation in open {
        h.ok(SessionEvent::ObligationMet(obligation));
    }
    h.ok(SessionEvent::CommitUnregister);
    assert_eq!(h.m.registration().phase(), RegistrationPhase::Unregistered);
}

#[test]
fn no_run_starts_after_unregister_began() {
    let mut h = H::attached();
    h.prompt();
    h.ok(SessionEvent::BeginUnregister);
    assert_eq!(h.ok(SessionEvent::Poll).reply, Reply::Exit { reason: StopReason::Unregistering });
}

#[test]
fn unregister_grace_expiry_aborts_the_loop() {
    let mut h = H::attached();
    h.prompt();
    h.poll_run();
    h.ok(SessionEvent::BeginUnregister);
    h.advance(burrow_core::registration::UNREGISTER_GRACE_MS_DEFAULT + 1);
    let fx = h.ok(SessionEvent::Tick);
    assert!(
        fx.effects.iter().any(|e| matches!(
            e,
            Effect::Registration(burrow_core::registration::RegistrationEffect::AbortLoop { .. })
        ))
    );
    assert!(!h.m.registration().open_obligations().iter().any(|o| matches!(o, Obligation::StopLoop { .. })));
}

#[test]
fn cleanup_observations_are_fenced_by_session_and_binding() {
    let mut h = H::attached();
    let (a, _) = h.prompt();
    let run = h.poll_run();
    let fx = h.succeed(run, "x");
    let observation = fx
        .effects
        .iter()
        .find_map(|e| match e {
            Effect::ResolveWaiters { input, observation, .. } if *input == a => Some(*observation),
            _ => None,
        })
        .unwrap();
    h.m.validate_cleanup(&observation).expect("same session, same binding");
    let mut foreign = observation;
    foreign.session = burrow_core::SessionId(2);
    assert!(matches!(h.m.validate_cleanup(&foreign), Err(Refusal::Cleanup(_))));
    h.ok(SessionEvent::Recycle);
    assert!(matches!(h.m.validate_cleanup(&observation), Err(Refusal::Cleanup(_))), "an earlier binding is stale");
}

#[test]
fn stale_bindings_are_refused() {
    let mut h = H::attached();
    let old = h.m.binding().unwrap();
    h.m.check_binding(old).unwrap();
    h.ok(SessionEvent::Recycle);
    assert!(h.m.check_binding(old).is_err());
}

// ----- operations and drain ------------------------------------------------------

#[test]
fn keep_alive_with_comms_hosts_a_drain_while_idle() {
    let config = SessionConfig { comms_enabled: true, keep_alive: true, ..SessionConfig::default() };
    let mut h = H::prepared_with(config);
    assert!(h.m.drain().phase().is_running(), "PersistentHost while idle");
    let fx = h.ok(SessionEvent::SetKeepAlive(false));
    assert!(fx.names().contains(&"Drain"));
    assert!(!h.m.drain().phase().is_running());
}

#[test]
fn durability_flag_reaches_the_store_rows() {
    let mut h = H::attached();
    let (a, _) = h.accept(InputSpec::new(InputKind::Prompt).durability(Durability::Durable));
    let run = h.poll_run();
    let fx = h.ok(SessionEvent::RunReported { run, report: RunReport::NoResult, snapshot: None });
    let Some(Effect::PersistBoundary { inputs, .. }) = fx.effects.first() else { panic!() };
    assert_eq!(inputs.iter().map(|r| r.id).collect::<Vec<_>>(), vec![a]);
}

#[test]
fn a_background_operation_ending_wakes_its_idle_session() {
    use burrow_core::operations::{OpEvent, OpResult, OperationKind, OperationSpec};
    let mut h = H::attached();
    let op = running_op(&mut h, OperationSpec::new(OperationKind::BackgroundTool, "fetch"));
    let result = OpResult { content: "done".into(), is_error: false };
    let fx = h.ok(SessionEvent::Operation(OpEvent::Complete { op, result }));
    assert!(has(&fx, "WakeLoop"), "the continuation wakes the parked loop");
    let active = h.m.list_active_inputs();
    assert_eq!(active.len(), 1);
    assert_eq!(active[0].kind, "Continuation");
    h.poll_run();
}

/// The lifecycle row a store would hold for `h`'s session.
fn persisted_of(h: &H) -> burrow_core::session::PersistedLifecycle {
    burrow_core::session::PersistedLifecycle {
        phase: h.m.phase_machine().persisted_phase(),
        registration: h.m.registration().phase(),
        binding: h.m.binding(),
        marks: Default::default(),
    }
}

fn running_op(h: &mut H, spec: burrow_core::operations::OperationSpec) -> burrow_core::ids::OperationId {
    use burrow_core::operations::{OpEffect, OpEvent};
    let fx = h.ok(SessionEvent::Operation(OpEvent::Register { spec }));
    let op = fx
        .effects
        .iter()
        .find_map(|e| match e {
            Effect::Operation(OpEffect::Registered { op }) => Some(*op),
            _ => None,
        })
        .expect("registered");
    h.ok(SessionEvent::Operation(OpEvent::ProvisioningSucceeded { op }));
    op
}

fn continuations(h: &H) -> usize {
    h.m.list_active_inputs().iter().filter(|i| i.kind == "Continuation").count()
}

#[test]
fn an_operation_ending_during_a_run_wakes_the_session_once_the_run_is_over() {
    use burrow_core::operations::{OpEvent, OpResult, OperationKind, OperationSpec};
    let mut h = H::attached();
    let op = running_op(&mut h, OperationSpec::new(OperationKind::BackgroundTool, "fetch"));
    h.prompt();
    let run = h.poll_run();
    let result = OpResult { content: "done".into(), is_error: false };
    h.ok(SessionEvent::Operation(OpEvent::Complete { op, result }));
    assert_eq!(h.m.list_active_inputs().len(), 1, "only the running prompt: nothing is injected during a run");
    let cursors = h.m.operations().cursors();
    assert_eq!((cursors.applied.0, cursors.observed.0, cursors.injected.0), (0, 1, 0), "seen, not dealt with");
    h.succeed(run, "ok");
    assert_eq!(continuations(&h), 1, "the run is over and the end was not applied: the session is woken");
    assert_eq!(h.m.operations().cursors().injected.0, 1);
    let run = h.poll_run();
    h.succeed(run, "ok");
    assert_eq!(continuations(&h), 0, "one continuation per end, not one per quiescence");
}

#[test]
fn an_end_the_agent_applied_during_the_run_wakes_nobody() {
    use burrow_core::operations::{CompletionSeq, OpEvent, OpResult, OperationKind, OperationSpec};
    let mut h = H::attached();
    let op = running_op(&mut h, OperationSpec::new(OperationKind::DetachedJob, "build"));
    h.prompt();
    let run = h.poll_run();
    h.ok(SessionEvent::Operation(OpEvent::Complete { op, result: OpResult { content: "ok".into(), is_error: false } }));
    // The agent read the feed at a boundary and applied the end.
    h.ok(SessionEvent::Operation(OpEvent::AcknowledgeFeed { through: CompletionSeq(1) }));
    h.succeed(run, "ok");
    assert_eq!(continuations(&h), 0);
    let cursors = h.m.operations().cursors();
    assert_eq!(
        (cursors.applied.0, cursors.observed.0, cursors.injected.0),
        (1, 1, 1),
        "each cursor passed the end once"
    );
}

#[test]
fn only_background_tools_and_detached_jobs_wake_their_owner() {
    use burrow_core::operations::{OpEvent, OpResult, OperationKind, OperationSpec};
    for kind in OperationKind::ALL {
        let mut h = H::attached();
        let op = running_op(&mut h, OperationSpec::new(kind, "job"));
        let result =
            if kind.carries_result() { OpResult { content: "r".into(), is_error: false } } else { OpResult::empty() };
        h.ok(SessionEvent::Operation(OpEvent::Complete { op, result }));
        let woken = matches!(kind, OperationKind::BackgroundTool | OperationKind::DetachedJob);
        assert_eq!(continuations(&h), usize::from(woken), "{kind}");
        assert_eq!(h.m.operations().cursors().injected.0, 1, "{kind}: the end was dealt with either way");
    }
}

#[test]
fn an_operation_names_its_owner_and_only_a_child_session_names_a_child() {
    use burrow_core::ids::SessionId;
    use burrow_core::operations::{OpEvent, OpRefusal, OperationKind, OperationSpec};
    let mut h = H::attached();
    let op = running_op(
        &mut h,
        OperationSpec::new(OperationKind::ChildSession, "helper").child(SessionId(7)).source("delegate"),
    );
    let snap = h.m.operations().snapshot(op, Millis(0)).expect("held");
    assert_eq!(
        (snap.owner, snap.child_session, snap.source_label.as_str()),
        (Some(SessionId(1)), Some(SessionId(7)), "delegate")
    );
    let foreign = OperationSpec::new(OperationKind::BackgroundTool, "x").owned_by(SessionId(2));
    let refusal = h.refused(SessionEvent::Operation(OpEvent::Register { spec: foreign }));
    assert_eq!(refusal, Refusal::Operations(OpRefusal::OwnerMismatch { owner: SessionId(2), session: SessionId(1) }));
    let stray = OperationSpec::new(OperationKind::DetachedJob, "x").child(SessionId(7));
    let refusal = h.refused(SessionEvent::Operation(OpEvent::Register { spec: stray }));
    assert_eq!(refusal, Refusal::Operations(OpRefusal::ChildSessionUnsupported { kind: OperationKind::DetachedJob }));
    let own_child = OperationSpec::new(OperationKind::ChildSession, "x").child(SessionId(1));
    assert!(matches!(
        h.refused(SessionEvent::Operation(OpEvent::Register { spec: own_child })),
        Refusal::Operations(OpRefusal::OwnerMismatch { .. })
    ));
}

#[test]
fn a_stranded_background_end_is_a_violation() {
    use burrow_core::invariants::Violation;
    use burrow_core::operations::{CompletionSeq, OpEvent, OpResult, OperationKind, OperationSpec};
    let mut h = H::attached();
    let op = running_op(&mut h, OperationSpec::new(OperationKind::BackgroundTool, "fetch"));
    h.ok(SessionEvent::Operation(OpEvent::Complete { op, result: OpResult { content: "r".into(), is_error: false } }));
    let run = h.poll_run();
    h.succeed(run, "ok");
    burrow_core::invariants::check(&h.m).expect("the continuation ran: nothing is owed");
    // The mistake planted here: a session that forgets it dealt with the end (its injected cursor never moved, as
    // when the cursor is not advanced with the injection): quiescent, the end unapplied, and no continuation coming.
    let mut bent = h.m.clone();
    bent.internals_mut().operations.tamper().set_feed_injected(CompletionSeq(0));
    assert!(matches!(burrow_core::invariants::check(&bent), Err(Violation::WakeStranded { .. })));
    // Once the agent applied the end, nothing is owed even with the cursor behind.
    let mut applied = bent.clone();
    applied.internals_mut().operations.tamper().set_feed_acknowledged(CompletionSeq(1));
    assert!(!matches!(burrow_core::invariants::check(&applied), Err(Violation::WakeStranded { .. })));
}

#[test]
fn a_restored_session_keeps_its_binding_and_recovers_ended_operations_only() {
    use burrow_core::ids::SessionId;
    use burrow_core::operations::{OpEvent, OpResult, OperationKind, OperationSpec};
    use burrow_core::session::{SessionConfig, SessionMachine};
    let mut h = H::attached();
    let ids: Vec<_> = ["done", "live"]
        .into_iter()
        .map(|name| running_op(&mut h, OperationSpec::new(OperationKind::BackgroundTool, name)))
        .collect();
    h.ok(SessionEvent::Operation(OpEvent::Complete {
        op: ids[0],
        result: OpResult { content: "ok".into(), is_error: false },
    }));
    let persisted = persisted_of(&h);
    let operations = h.m.operations().clone();

    let image = RecoveryImage {
        inputs: vec![record(1, InputState::Queued, 2), record(2, InputState::Staged { run: RunId(9) }, 1)],
        committed_runs: Default::default(),
        last_input: 2,
        last_run: 9,
        last_receipt_sequence: 0,
        operations: Some(operations),
    };
    let (restored, fx) =
        SessionMachine::restored(SessionId(1), SessionConfig::default(), &persisted, image, Millis(50))
            .expect("restores");
    assert_eq!(restored.phase(), RuntimePhase::Idle, "no executor survives a restart");
    assert_eq!(restored.registration().phase(), RegistrationPhase::Queuing);
    assert_eq!(restored.binding(), persisted.binding);
    assert_eq!(fx.reply, Reply::Recovered { recovered: 2, requeued: 1, abandoned: 0, consumed: 0, dropped: 0 });
    assert_eq!(restored.input_state(InputId(1)).unwrap().attempts, 2, "attempts survive");
    assert!(restored.operations().snapshot(ids[0], Millis(50)).is_some(), "an ended record survives");
    assert!(restored.operations().snapshot(ids[1], Millis(50)).is_none(), "a live job died with the process");
    burrow_core::invariants::check(&restored).expect("restored state is consistent");
}

#[test]
fn a_restored_stopped_session_stays_stopped() {
    use burrow_core::ids::SessionId;
    use burrow_core::session::{SessionConfig, SessionMachine};
    let mut h = H::prepared();
    h.ok(SessionEvent::Stop);
    let persisted = persisted_of(&h);
    let image = RecoveryImage {
        inputs: Vec::new(),
        committed_runs: Default::default(),
        last_input: 0,
        last_run: 0,
        last_receipt_sequence: 0,
        operations: None,
    };
    let (restored, _) =
        SessionMachine::restored(SessionId(1), SessionConfig::default(), &persisted, image, Millis(5)).unwrap();
    assert_eq!(restored.phase(), RuntimePhase::Stopped);
}

#[test]
fn a_destroy_whose_row_failed_after_the_registry_was_saved_can_be_repeated_after_a_restart() {
    use burrow_core::ids::SessionId;
    use burrow_core::session::SessionMachine;
    // The destroy's registry save landed, its lifecycle row did not: the store holds a live phase and an ended
    // registry. A second destroy after the restart must go through, not trip over the ended registry.
    let h = H::attached();
    let persisted = burrow_core::session::PersistedLifecycle { phase: RuntimePhase::Idle, ..persisted_of(&h) };
    let mut ended = burrow_core::operations::OperationsRegistry::default();
    let _ = ended
        .apply(Millis(0), burrow_core::operations::OpEvent::TerminateOwner { reason: "destroyed".into() })
        .expect("a live registry ends");
    let image = RecoveryImage {
        inputs: Vec::new(),
        committed_runs: Default::default(),
        last_input: 0,
        last_run: 0,
        last_receipt_sequence: 0,
        operations: Some(ended),
    };
    let (restored, _) =
        SessionMachine::restored(SessionId(1), SessionConfig::default(), &persisted, image, Millis(5)).unwrap();
    let mut h = H { m: restored, now: 5 };
    let fx = h.ok(SessionEvent::Destroy);
    assert!(matches!(fx.reply, Reply::Destroyed { .. }), "{:?}", fx.reply);
    assert_eq!(h.m.phase(), RuntimePhase::Destroyed);
}

#[test]
fn the_first_prepare_persists_the_binding_and_a_repeat_does_not() {
    let mut h =
        H { m: burrow_core::session::SessionMachine::new(burrow_core::ids::SessionId(1), Default::default()), now: 0 };
    let fx = h.ok(SessionEvent::Prepare { epoch: burrow_core::ids::EpochId(3) });
    assert!(has(&fx, "PersistLifecycle"));
    let fx = h.ok(SessionEvent::Prepare { epoch: burrow_core::ids::EpochId(4) });
    assert!(!has(&fx, "PersistLifecycle"));
}

#[test]
fn a_new_registration_lifts_the_run_ban_of_the_last_unregister() {
    // Found by the session_events fuzz target: the watermark of runs an unregister forbade outlived the next
    // registration, so the first run of the re-registered session broke RunAfterUnregister.
    let mut h = H::prepared();
    h.ok(SessionEvent::BeginUnregister);
    h.ok(SessionEvent::ObligationMet(Obligation::StopDrain));
    h.ok(SessionEvent::CommitUnregister);
    assert_eq!(h.m.registration().phase(), RegistrationPhase::Unregistered);
    h.ok(SessionEvent::Prepare { epoch: burrow_core::ids::EpochId(2) });
    assert_eq!(h.m.unregister_watermark(), None);
    // `ok` checks every invariant after the event: the inline run of the new registration is allowed.
    h.ok(SessionEvent::AcceptAndRun { spec: prompt() });
    assert!(h.m.current_run().is_some());
}

#[test]
fn commit_ready_comes_after_the_rows_of_its_event() {
    // The loop's exit closes the unregister's last obligation and also falls back to Idle, which writes a row. The
    // commit's own row (Unregistered) is written by its feedback; it must come after, not be overwritten by the
    // older one.
    let mut h = H::attached();
    let generation = h.m.registration().binding().expect("bound").generation;
    h.ok(SessionEvent::BeginUnregister);
    h.ok(SessionEvent::ObligationMet(Obligation::StopDrain));
    assert_eq!(h.m.registration().open_obligations(), vec![Obligation::StopLoop { generation }]);
    let fx = h.ok(SessionEvent::LoopExited { generation });
    let names = fx.names();
    let ready = fx
        .effects
        .iter()
        .position(|e| matches!(e, Effect::Registration(RegistrationEffect::CommitReady)))
        .unwrap_or_else(|| panic!("the exit readies the commit: {names:?}"));
    assert_eq!(ready, fx.effects.len() - 1, "CommitReady is last: {names:?}");
    assert!(has(&fx, "PersistLifecycle"), "the exit writes its row first: {names:?}");
    let commit = h.ok(SessionEvent::CommitUnregister);
    let last_row = commit.effects.iter().rev().find_map(|e| match e {
        Effect::PersistLifecycle { registration, .. } => Some(*registration),
        _ => None,
    });
    assert_eq!(last_row, Some(RegistrationPhase::Unregistered));
}

#[test]
fn a_released_session_refuses_operation_events_and_writes_nothing() {
    use burrow_core::operations::{OpEvent, OperationKind, OperationSpec};
    let mut h = H::prepared();
    h.ok(SessionEvent::BeginUnregister);
    for obligation in h.m.registration().open_obligations() {
        h.ok(SessionEvent::ObligationMet(obligation));
    }
    h.ok(SessionEvent::CommitUnregister);
    assert_eq!(h.m.registration().phase(), RegistrationPhase::Unregistered);
    let spec = OperationSpec::new(OperationKind::BackgroundTool, "late");
    assert_eq!(h.refused(SessionEvent::Operation(OpEvent::Register { spec })), Refusal::NotRegistered);
    h.ok(SessionEvent::Prepare { epoch: EpochId(7) });
    let spec = OperationSpec::new(OperationKind::BackgroundTool, "again");
    h.ok(SessionEvent::Operation(OpEvent::Register { spec }));
}

// ----- callback batches (specs/completion.md#callback-batch) ---------------------------------------------------

fn calls(n: usize) -> Vec<burrow_core::completion::PendingCallback> {
    (0..n).map(|i| burrow_core::completion::PendingCallback { tool: format!("t{i}"), args: String::new() }).collect()
}

#[test]
fn a_callback_batch_consumes_the_inputs_and_hands_every_call_to_the_waiters() {
    let mut h = H::attached();
    let (input, _) = h.prompt();
    let run = h.poll_run();
    h.ok(SessionEvent::RunReported {
        run,
        report: RunReport::CallbackBatchPending { calls: calls(3) },
        snapshot: None,
    });
    let fx = h.ok(SessionEvent::BoundaryCommitted { run });
    let outcome = fx.effects.iter().find_map(|e| match e {
        Effect::ResolveWaiters { input: i, resolution, .. } if *i == input => Some(resolution.clone()),
        _ => None,
    });
    assert_eq!(outcome, Some(Ok(Outcome::CallbackBatchPending { calls: calls(3) })));
    assert_eq!(state(&h, input), InputState::Consumed);
}

#[test]
fn a_callback_batch_outside_its_bound_fails_the_run() {
    for n in [0, burrow_core::completion::CALLBACKS_PER_BATCH_MAX + 1] {
        let mut h = H::attached_with(SessionConfig { max_attempts: 1, ..SessionConfig::default() });
        let (input, _) = h.prompt();
        let run = h.poll_run();
        let report = RunReport::CallbackBatchPending { calls: calls(n) };
        let fx = h.ok(SessionEvent::RunReported { run, report, snapshot: None });
        assert!(!has(&fx, "PersistBoundary"), "{n} calls: nothing is committed");
        assert_eq!(class_of(&fx, input), Some(OutcomeClass::AbandonedWithError), "{n} calls: the run failed");
        assert!(h.m.current_run().is_none());
    }
    let mut h = H::attached();
    h.prompt();
    let run = h.poll_run();
    let most = burrow_core::completion::CALLBACKS_PER_BATCH_MAX;
    let fx = h.ok(SessionEvent::RunReported {
        run,
        report: RunReport::CallbackBatchPending { calls: calls(most) },
        snapshot: None,
    });
    assert!(has(&fx, "PersistBoundary"), "a full batch is taken");
}

// ----- notices (specs/session.md#notices) ----------------------------------------

fn notices(fx: &burrow_core::session::Effects) -> Vec<Notice> {
    fx.effects
        .iter()
        .filter_map(|e| match e {
            Effect::Notify(notice) => Some(notice.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn notices_follow_an_input_from_its_admission_to_its_end() {
    let mut h = H::attached();
    let fx = h.ok(SessionEvent::Accept { spec: prompt(), waiter: true, wake: true });
    let Reply::Accepted { input, .. } = fx.reply else { panic!("{:?}", fx.reply) };
    assert_eq!(notices(&fx), [Notice::InputAccepted { input, kind: "Prompt" }]);
    let fx = h.ok(SessionEvent::Poll);
    let Reply::Run(run) = fx.reply else { panic!("{:?}", fx.reply) };
    assert_eq!(
        notices(&fx),
        [
            Notice::PhaseChanged { from: RuntimePhase::Attached, to: RuntimePhase::Running },
            Notice::RunStarted { run, inputs: vec![input] },
        ],
        "the start is noticed once the attempt is durable and the run is handed out"
    );
    let report = RunReport::Result(RunResult { output: "x".into() });
    let fx = h.ok(SessionEvent::RunReported { run, report, snapshot: None });
    assert_eq!(notices(&fx), [], "nothing is told before the boundary commits");
    let fx = h.ok(SessionEvent::BoundaryCommitted { run });
    assert_eq!(
        notices(&fx),
        [
            Notice::InputEnded { input, class: Some(OutcomeClass::Completed) },
            Notice::RunEnded { run },
            Notice::PhaseChanged { from: RuntimePhase::Running, to: RuntimePhase::Attached },
        ]
    );
}

#[test]
fn a_fail_stop_notices_each_end_once_with_the_class_its_waiters_got() {
    let mut h = H::attached();
    let (a, _) = h.prompt();
    let (b, _) = h.prompt();
    let c = h.accept(InputSpec { kind: InputKind::Prompt, ..prompt() }).0;
    let run = h.poll_run();
    let fx = h.ok(SessionEvent::LifecyclePersistFailed {
        error: ErrorInfo::new(FailureCause::TerminalPersistFailed, "disk"),
    });
    let ended: Vec<(InputId, Option<OutcomeClass>)> = notices(&fx)
        .into_iter()
        .filter_map(|n| match n {
            Notice::InputEnded { input, class } => Some((input, class)),
            _ => None,
        })
        .collect();
    let terminated = Some(OutcomeClass::RuntimeTerminated);
    assert_eq!(ended, [(a, terminated), (b, terminated), (c, terminated)], "one end each: {fx:?}");
    for (input, class) in ended {
        if let Some(got) = class_of(&fx, input) {
            assert_eq!(Some(got), class, "input {input}: the notice and the waiter agree");
        }
    }
    assert!(notices(&fx).contains(&Notice::RunEnded { run }));
    assert!(notices(&fx).contains(&Notice::PhaseChanged { from: RuntimePhase::Running, to: RuntimePhase::Stopped }));
}

#[test]
fn a_replaced_input_ends_with_no_class_of_its_own() {
    let mut h = H::prepared();
    let keyed = InputSpec { kind: InputKind::ExternalEvent, supersession_key: Some("k".into()), ..prompt() };
    let (older, _) = h.accept(keyed.clone());
    let fx = h.ok(SessionEvent::Accept { spec: keyed, waiter: true, wake: true });
    let Reply::Accepted { input: newer, .. } = fx.reply else { panic!("{:?}", fx.reply) };
    assert_eq!(
        notices(&fx),
        [
            Notice::InputAccepted { input: newer, kind: "ExternalEvent" },
            Notice::InputEnded { input: older, class: None },
        ],
        "its waiters moved to the newer input, whose outcome they will get"
    );
}

#[test]
fn a_published_event_is_a_notice_and_never_an_input() {
    let mut h = H::prepared();
    let event = RuntimeEvent::new("deploy", "v2");
    let fx = h.ok(SessionEvent::Publish(event.clone()));
    assert_eq!(fx.names(), ["Notify"]);
    assert_eq!(notices(&fx), [Notice::Published(event)]);
    assert!(h.m.list_active_inputs().is_empty(), "nothing was queued");
    let refused = h.refused(SessionEvent::Publish(RuntimeEvent::new("", "x")));
    assert!(matches!(refused, Refusal::InvalidEvent { .. }), "{refused}");
    let big = "x".repeat(burrow_core::protocol::EVENT_PAYLOAD_LEN_MAX + 1);
    let refused = h.refused(SessionEvent::Publish(RuntimeEvent::new("big", big)));
    assert!(matches!(refused, Refusal::InvalidEvent { .. }), "{refused}");
}

// ----- Derived durability (specs/input.md#derived) ---------------------------------------------------------------

#[test]
fn only_kinds_a_source_can_make_again_may_be_derived() {
    let mut h = H::attached();
    let authored = [
        InputKind::Prompt,
        InputKind::FlowStep,
        InputKind::PeerMessage,
        InputKind::PeerRequest { intent: "ask".into() },
        InputKind::PeerResponseTerminal { request: "r1".into() },
    ];
    for kind in authored {
        let name = kind.name();
        let spec = InputSpec::new(kind).durability(Durability::Derived);
        let refusal = h.refused(SessionEvent::Accept { spec, waiter: true, wake: true });
        assert_eq!(refusal, Refusal::Invalid(InputValidation::DerivedNotAllowed { kind: name }));
    }
    let derivable = [
        InputKind::ExternalEvent,
        InputKind::Continuation,
        InputKind::Operation,
        InputKind::PeerResponseProgress { request: "r1".into() },
    ];
    for kind in derivable {
        let fx = h.ok(SessionEvent::Accept {
            spec: InputSpec::new(kind).durability(Durability::Derived),
            waiter: false,
            wake: false,
        });
        assert_eq!(fx.names().first(), Some(&"PersistInput"), "written before it is admitted, like a durable input");
    }
}

#[test]
fn recovery_ends_a_live_derived_input_with_its_reason_and_replays_a_durable_one() {
    let mut h = H::prepared();
    let (durable, _) = h.accept(prompt());
    let derived = InputSpec::new(InputKind::ExternalEvent).durability(Durability::Derived).idempotency_key("ev-1");
    let (derived, waiter) = h.accept(derived);
    assert!(waiter.is_some());
    let fx = h.ok(SessionEvent::Recover(RecoverySource::InMemory));
    assert_eq!(class_of(&fx, derived), Some(OutcomeClass::Abandoned), "its waiter learns it will not run");
    let Reply::Recovered { recovered, abandoned, dropped, .. } = fx.reply else { panic!("{:?}", fx.reply) };
    assert_eq!((recovered, abandoned, dropped), (1, 1, 0));
    assert_eq!(state(&h, durable), InputState::Queued);
    assert_eq!(state(&h, derived), InputState::Abandoned(AbandonReason::Rederived), "not replayed, and not lost");
    let Some(Effect::PersistLifecycle { inputs, .. }) =
        fx.effects.iter().find(|e| matches!(e, Effect::PersistLifecycle { .. }))
    else {
        panic!("the end is written")
    };
    assert!(inputs.iter().any(|r| r.id == derived && r.state == InputState::Abandoned(AbandonReason::Rederived)));
    // Its key is known: the source makes it again under a key of its own.
    let again = InputSpec::new(InputKind::ExternalEvent).durability(Durability::Derived).idempotency_key("ev-1");
    let fx = h.ok(SessionEvent::Accept { spec: again, waiter: true, wake: true });
    assert_eq!(fx.reply, Reply::Deduplicated { existing: derived, waiter: None });
}

#[test]
fn recycle_keeps_a_derived_input() {
    let mut h = H::prepared();
    let (derived, _) = h.accept(InputSpec::new(InputKind::ExternalEvent).durability(Durability::Derived));
    h.ok(SessionEvent::Recycle);
    assert_eq!(state(&h, derived), InputState::Queued, "a rebuild of a living session loses nothing");
}

#[test]
fn a_derived_input_whose_boundary_committed_is_consumed() {
    let mut h = H::attached();
    let spec = InputSpec::new(InputKind::ExternalEvent).durability(Durability::Derived);
    let (derived, _) = h.accept(spec);
    let run = h.poll_run();
    h.succeed(run, "done");
    assert_eq!(state(&h, derived), InputState::Consumed, "it ran once, like any input");
    // A recovery that finds it applied with the receipt committed consumes it, as SPEC 5 says of every input.
    let rule = burrow_core::input::recovery_rule(InputState::Applied { run }, 1, 3, |r| r == run);
    assert_eq!(rule, burrow_core::input::RecoveryRule::Consume);
}

#[test]
fn a_restored_session_is_woken_for_a_background_end_the_agent_had_not_applied() {
    use burrow_core::ids::SessionId;
    use burrow_core::operations::{OpEvent, OpResult, OperationKind, OperationSpec};
    use burrow_core::session::SessionMachine;
    let mut h = H::attached();
    let op = running_op(&mut h, OperationSpec::new(OperationKind::BackgroundTool, "fetch"));
    h.ok(SessionEvent::Operation(OpEvent::Complete { op, result: OpResult { content: "r".into(), is_error: false } }));
    assert_eq!(continuations(&h), 1, "woken before the crash");
    assert_eq!(h.m.operations().cursors().injected.0, 1);
    // The process dies before the (ephemeral) continuation runs.
    let persisted = persisted_of(&h);
    let image = RecoveryImage {
        inputs: Vec::new(),
        committed_runs: Default::default(),
        last_input: 1,
        last_run: 0,
        last_receipt_sequence: 0,
        operations: Some(h.m.operations().clone()),
    };
    let (restored, _) = SessionMachine::restored(SessionId(1), SessionConfig::default(), &persisted, image, Millis(50))
        .expect("restores");
    let woken = restored.list_active_inputs().iter().filter(|i| i.kind == "Continuation").count();
    assert_eq!(woken, 1, "the end is looked at again and wakes the session once");
    let cursors = restored.operations().cursors();
    assert_eq!((cursors.applied.0, cursors.observed.0, cursors.injected.0), (0, 1, 1));
}

#[test]
fn a_recover_that_drops_the_continuation_wakes_the_session_again_and_one_after_it_ran_does_not() {
    use burrow_core::operations::{OpEvent, OpResult, OperationKind, OperationSpec};
    let mut h = H::attached();
    let op = running_op(&mut h, OperationSpec::new(OperationKind::BackgroundTool, "fetch"));
    h.ok(SessionEvent::Operation(OpEvent::Complete { op, result: OpResult { content: "r".into(), is_error: false } }));
    assert_eq!(continuations(&h), 1);
    // The recover drops the ephemeral continuation; the end was not applied, so a new one is made.
    h.ok(SessionEvent::Recover(RecoverySource::InMemory));
    let active = h.m.list_active_inputs();
    assert_eq!(active.len(), 1);
    assert_eq!((active[0].kind, active[0].id), ("Continuation", InputId(2)), "a new continuation, not the old one");
    // Once it ran, a recover drops nothing and wakes nobody, though the agent never applied the end.
    let run = h.poll_run();
    h.succeed(run, "seen");
    h.ok(SessionEvent::Recover(RecoverySource::InMemory));
    assert_eq!(continuations(&h), 0);
}
