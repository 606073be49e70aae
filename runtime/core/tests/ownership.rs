//! A session that moves to another host of the fleet (specs/session.md#ownership-moved): the host stops at once,
//! writes nothing more, and tells each waiter the session moved, never an outcome.

mod support;

use burrow_core::completion::NoOutcome;
use burrow_core::ids::{EpochId, InputId, RunId};
use burrow_core::lease::HostId;
use burrow_core::protocol::{Observed, Subject, feedback};
use burrow_core::session::{
    Effect, Notice, PersistedLifecycle, RecoveryImage, Refusal, Reply, RunReport, SessionConfig, SessionEvent,
    SessionMachine, StopReason,
};
use support::{H, prompt};

const OWNER: Option<HostId> = Some(HostId(2));

fn lost() -> SessionEvent {
    SessionEvent::OwnershipLost { owner: OWNER }
}

fn writes(effects: &[Effect]) -> Vec<&'static str> {
    effects.iter().filter(|e| Subject::of(e).is_write()).map(|e| burrow_core::session::effect_name(e)).collect()
}

/// The waiters each `ResolveWaiters` answered, with what.
fn answers(effects: &[Effect]) -> Vec<(InputId, usize, Result<(), NoOutcome>)> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::ResolveWaiters { input, waiters, resolution, .. } => {
                Some((*input, waiters.len(), resolution.as_ref().map(|_| ()).map_err(Clone::clone)))
            }
            _ => None,
        })
        .collect()
}

#[test]
fn ownership_lost_mid_run_cancels_it_answers_every_waiter_moved_and_writes_nothing() {
    let mut h = H::attached();
    let (first, _) = h.prompt();
    let run = h.poll_run();
    let (second, _) = h.prompt();
    let fx = h.ok(lost());
    assert!(writes(&fx.effects).is_empty(), "a moved session writes nothing: {:?}", fx.names());
    assert!(fx.effects.contains(&Effect::CancelRun { run, reason: StopReason::OwnershipMoved }));
    assert!(fx.effects.contains(&Effect::StopExecutor { reason: StopReason::OwnershipMoved }));
    assert!(fx.effects.contains(&Effect::Notify(Notice::OwnershipMoved { owner: OWNER })));
    let moved = Err(NoOutcome::OwnershipMoved { owner: OWNER });
    assert_eq!(answers(&fx.effects), vec![(first, 1, moved.clone()), (second, 1, moved)]);
    // Nothing ended: the inputs are the new owner's now, and no notice says they ended.
    assert!(!fx.effects.iter().any(|e| matches!(e, Effect::Notify(Notice::InputEnded { .. }))), "{:?}", fx.effects);
    assert_eq!(h.m.moved().map(|m| m.owner), Some(OWNER));
    assert_eq!(h.m.waiters().pending(), 0);
}

#[test]
fn a_moved_session_refuses_every_call_naming_the_owner_and_takes_late_results_as_no_ops() {
    let mut h = H::attached();
    h.prompt();
    let run = h.poll_run();
    let _ = h.ok(lost());
    for call in [
        SessionEvent::Accept { spec: prompt(), waiter: true, wake: true },
        SessionEvent::Stop,
        SessionEvent::Retire,
        SessionEvent::Reset,
        SessionEvent::Destroy,
        SessionEvent::BeginAttach,
        SessionEvent::Prepare { epoch: EpochId(7) },
        SessionEvent::Interrupt { run: None },
    ] {
        assert_eq!(h.refused(call), Refusal::NotOwner { owner: OWNER });
    }
    // The executor's late report of the run the move cut off commits nothing.
    let report = SessionEvent::RunReported { run, report: RunReport::NoResult, snapshot: None };
    let fx = h.apply_checked("RunReported", report);
    assert_eq!((fx.reply, fx.effects.len()), (Reply::NoOp, 0));
    let fx = h.apply_checked("BoundaryCommitted", SessionEvent::BoundaryCommitted { run });
    assert_eq!((fx.reply, fx.effects.len()), (Reply::NoOp, 0));
    let fx = h.apply_checked("Poll", SessionEvent::Poll);
    assert_eq!(fx.reply, Reply::Exit { reason: StopReason::OwnershipMoved }, "the loop is told to exit");
    let fx = h.apply_checked("OwnershipLost", lost());
    assert_eq!((fx.reply, fx.effects.len()), (Reply::NoOp, 0), "a second loss changes nothing");
    // An unregister's commit point, reported after the move (the core simulator found it refused): a late result.
    let fx = h.apply_checked("CommitUnregister", SessionEvent::CommitUnregister);
    assert_eq!((fx.reply, fx.effects.len()), (Reply::NoOp, 0));
}

#[test]
fn a_fenced_write_of_any_kind_is_the_move_itself() {
    for subject in [
        Subject::InputWrite(InputId(1)),
        Subject::BoundaryWrite(RunId(1)),
        Subject::LifecycleWrite { starts_run: Some(RunId(1)) },
        Subject::OperationsWrite,
    ] {
        let event = feedback(subject, Observed::Fenced { owner: OWNER }).expect("a write may be fenced");
        assert_eq!(event, Some(lost()), "{subject:?}");
    }
    assert!(feedback(Subject::Run(RunId(1)), Observed::Fenced { owner: OWNER }).is_err(), "a run is not a write");
}

#[test]
fn an_admission_whose_write_is_fenced_admits_nothing_and_its_caller_learns_the_session_moved() {
    let mut h = H::attached();
    let fx = h.apply_checked("Accept", SessionEvent::Accept { spec: prompt(), waiter: true, wake: true });
    let Reply::Accepted { input, waiter: Some(_), .. } = fx.reply else { panic!("{:?}", fx.reply) };
    let event = feedback(Subject::InputWrite(input), Observed::Fenced { owner: OWNER }).unwrap().unwrap();
    let fx = h.apply_checked("OwnershipLost", event);
    assert_eq!(answers(&fx.effects), vec![(input, 1, Err(NoOutcome::OwnershipMoved { owner: OWNER }))]);
    assert!(h.m.admitting().is_none());
    assert!(writes(&fx.effects).is_empty());
}

#[test]
fn the_new_owner_restores_at_its_lease_epoch_and_old_handles_are_stale() {
    let mut h = H::attached();
    let (input, _) = h.prompt();
    let old = h.m.binding().expect("prepared");
    // What the store holds: the lifecycle row and the input row the first owner wrote.
    let lifecycle = PersistedLifecycle {
        phase: burrow_core::phase::RuntimePhase::Idle,
        registration: burrow_core::registration::RegistrationPhase::Queuing,
        binding: Some(old),
        marks: h.m.id_marks(),
    };
    let row = h.m.ledger().record(input).expect("admitted").clone();
    let taken = lifecycle.taken_over(EpochId(old.epoch.0 + 5));
    let marks = h.m.id_marks();
    let image = RecoveryImage {
        inputs: vec![row],
        committed_runs: Default::default(),
        last_input: marks.last_input,
        last_run: marks.last_run,
        last_receipt_sequence: 0,
        operations: None,
    };
    let (m, _) = SessionMachine::restored(h.m.session(), SessionConfig::default(), &taken, image, h.m.clock())
        .expect("restores");
    let new = m.binding().expect("bound");
    assert_eq!(new.epoch, EpochId(old.epoch.0 + 5), "every write of the new owner names its lease's epoch");
    assert!(new.generation > old.generation);
    assert!(m.check_binding(old).is_err(), "a handle of the old owner is stale");
    assert!(m.input_state(input).is_some(), "the acknowledged input is there");
}
