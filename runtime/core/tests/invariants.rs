//! Every Violation variant of invariants::check is triggered by a state built to
//! break exactly that rule, and reached states stay clean.

#![allow(unused_must_use)]

mod support;

use burrow_core::completion::WaiterBook;
use burrow_core::drain::{DrainIncarnation, DrainMachine, DrainPhase};
use burrow_core::ids::{InputId, Millis, RunId, WaiterId};
use burrow_core::input::{InputKind, InputRecord, InputSpec, InputState, Ledger};
use burrow_core::invariants::{Violation, check};
use burrow_core::phase::{PhaseMachine, RuntimePhase};
use burrow_core::session::{BoundaryReceipt, CurrentRun, SessionEvent};
use support::{H, prompt};

fn rec(id: u64, state: InputState, attempts: u32) -> InputRecord {
    InputRecord { id: InputId(id), spec: InputSpec::new(InputKind::Prompt), state, attempts, accepted_at: Millis(0) }
}

fn run(id: u64, inputs: &[u64]) -> CurrentRun {
    CurrentRun {
        id: RunId(id),
        inputs: inputs.iter().map(|i| InputId(*i)).collect(),
        started_at: Millis(0),
        deadline_at: Millis(1_000),
        notice_at: Millis(500),
        notice_sent: false,
        inline: false,
        cancel_after_boundary: false,
        report: None,
    }
}

/// A clean attached session holding one queued input (id 1) with one waiter.
fn base() -> H {
    let mut h = H::attached();
    h.ok(SessionEvent::Accept { spec: prompt(), waiter: true, wake: false });
    check(&h.m).expect("the base state is clean");
    h
}

/// Puts the session into Running with run 1 staging input 1.
fn running(h: &mut H) {
    let i = h.m.internals_mut();
    *i.ledger = Ledger::from_parts_unchecked(vec![rec(1, InputState::Staged { run: RunId(1) }, 1)], vec![], vec![], 3);
    *i.phase = PhaseMachine::from_parts_unchecked(RuntimePhase::Running, Some(RuntimePhase::Attached), false, true);
    *i.run = Some(run(1, &[1]));
    *i.loop_parked = false;
}

fn expect(h: &H, pred: impl Fn(&Violation) -> bool, what: &str) {
    match check(&h.m) {
        Err(v) if pred(&v) => {}
        other => panic!("expected {what}, got {other:?}"),
    }
}

#[test]
fn reached_states_are_clean() {
    let mut h = base();
    let run = h.poll_run();
    h.succeed(run, "x");
    check(&h.m).unwrap();
}

#[test]
fn waiter_of_settled_input() {
    let mut h = base();
    h.m.internals_mut().waiters.insert_unchecked(InputId(42), WaiterId(9));
    expect(&h, |v| matches!(v, Violation::WaiterOfSettledInput { input: InputId(42), .. }), "WaiterOfSettledInput");
}

#[test]
fn waiter_of_an_input_that_ended() {
    // The input left the live ledger when it ended: its caller was answered, so no waiter may remain.
    let mut h = base();
    let run = h.poll_run();
    h.succeed(run, "x");
    h.m.internals_mut().waiters.insert_unchecked(InputId(1), WaiterId(9));
    expect(&h, |v| matches!(v, Violation::WaiterOfSettledInput { input: InputId(1), .. }), "WaiterOfSettledInput");
}

#[test]
fn waiter_of_a_terminal_record_still_in_the_live_ledger() {
    // A terminal record left among the live ones with its waiter: the waiter is the first thing wrong (the waiters
    // are checked before the accounting, which would call the record itself TerminalInLiveState).
    let mut h = base();
    *h.m.internals_mut().ledger =
        Ledger::from_parts_unchecked(vec![rec(1, InputState::Consumed, 1)], vec![], vec![], 3);
    let mut book = WaiterBook::new();
    book.insert_unchecked(InputId(1), WaiterId(9));
    *h.m.internals_mut().waiters = book;
    expect(&h, |v| matches!(v, Violation::WaiterOfSettledInput { input: InputId(1), .. }), "WaiterOfSettledInput");
}

#[test]
fn waiter_after_termination() {
    let mut h = base();
    *h.m.internals_mut().phase = PhaseMachine::from_parts_unchecked(RuntimePhase::Stopped, None, false, false);
    expect(&h, |v| matches!(v, Violation::WaiterAfterTermination { why: "stopped", .. }), "WaiterAfterTermination");
}

#[test]
fn waiter_count_mismatch() {
    let mut h = base();
    let mut book = WaiterBook::new();
    book.insert_unchecked(InputId(1), WaiterId(1));
    book.insert_unchecked(InputId(1), WaiterId(1)); // a set ignores the repeat, the count does not
    *h.m.internals_mut().waiters = book;
    expect(&h, |v| matches!(v, Violation::WaiterCountMismatch), "WaiterCountMismatch");
}

#[test]
fn input_lost() {
    let mut h = base();
    h.m.internals_mut().ledger.set_totals_unchecked(5, 0);
    expect(&h, |v| matches!(v, Violation::InputLost { accepted: 5, .. }), "InputLost");
}

#[test]
fn terminal_in_live_state() {
    let mut h = base();
    *h.m.internals_mut().ledger =
        Ledger::from_parts_unchecked(vec![rec(1, InputState::Consumed, 1)], vec![], vec![], 3);
    *h.m.internals_mut().waiters = WaiterBook::new();
    expect(&h, |v| matches!(v, Violation::TerminalInLiveState { .. }), "TerminalInLiveState");
}

#[test]
fn applied_again() {
    let mut h = base();
    h.m.internals_mut().receipts.push_back(BoundaryReceipt {
        run: RunId(3),
        boundary: 1,
        contributors: vec![InputId(1)],
        sequence: 1,
    });
    expect(&h, |v| matches!(v, Violation::AppliedAgain { run: RunId(3), .. }), "AppliedAgain");
}

#[test]
fn run_phase_mismatch() {
    let mut h = base();
    *h.m.internals_mut().run = Some(run(1, &[1]));
    expect(&h, |v| matches!(v, Violation::RunPhaseMismatch { .. }), "RunPhaseMismatch");
}

#[test]
fn bad_return_phase() {
    let mut h = base();
    running(&mut h);
    *h.m.internals_mut().phase =
        PhaseMachine::from_parts_unchecked(RuntimePhase::Running, Some(RuntimePhase::Stopped), false, true);
    expect(&h, |v| matches!(v, Violation::BadReturnPhase { .. }), "BadReturnPhase");
}

#[test]
fn run_after_retire() {
    let mut h = base();
    running(&mut h);
    let i = h.m.internals_mut();
    *i.phase = PhaseMachine::from_parts_unchecked(RuntimePhase::Running, Some(RuntimePhase::Retired), false, true);
    *i.retire_watermark = Some(InputId(1));
    expect(&h, |v| matches!(v, Violation::RunAfterRetire { .. }), "RunAfterRetire");
}

#[test]
fn run_after_unregister() {
    let mut h = base();
    running(&mut h);
    *h.m.internals_mut().unregister_watermark = Some(RunId(1));
    expect(&h, |v| matches!(v, Violation::RunAfterUnregister { .. }), "RunAfterUnregister");
}

#[test]
fn run_in_dead_phase() {
    // A run recorded in a Stopped phase; the phase/run pairing check comes first,
    // so the mismatch is reported; this pins that a run never survives a stop.
    let mut h = base();
    running(&mut h);
    *h.m.internals_mut().phase = PhaseMachine::from_parts_unchecked(RuntimePhase::Stopped, None, false, false);
    *h.m.internals_mut().waiters = WaiterBook::new();
    expect(
        &h,
        |v| matches!(v, Violation::RunPhaseMismatch { phase: RuntimePhase::Stopped, .. }),
        "a run outside Running",
    );
}

#[test]
fn run_past_deadline() {
    let mut h = base();
    running(&mut h);
    *h.m.internals_mut().clock = Millis(5_000);
    expect(&h, |v| matches!(v, Violation::RunPastDeadline { .. }), "RunPastDeadline");
}

#[test]
fn contributors_mismatch() {
    let mut h = base();
    running(&mut h);
    *h.m.internals_mut().run = Some(run(1, &[1, 2]));
    expect(&h, |v| matches!(v, Violation::ContributorsMismatch { .. }), "ContributorsMismatch");
}

#[test]
fn attempts_exceeded() {
    let mut h = base();
    running(&mut h);
    *h.m.internals_mut().ledger =
        Ledger::from_parts_unchecked(vec![rec(1, InputState::Staged { run: RunId(1) }, 4)], vec![], vec![], 3);
    expect(&h, |v| matches!(v, Violation::AttemptsExceeded { attempts: 4, max: 3, .. }), "AttemptsExceeded");
}

#[test]
fn exhausted_input_queued() {
    let mut h = base();
    *h.m.internals_mut().ledger =
        Ledger::from_parts_unchecked(vec![rec(1, InputState::Queued, 3)], vec![InputId(1)], vec![], 3);
    expect(&h, |v| matches!(v, Violation::ExhaustedInputQueued { .. }), "ExhaustedInputQueued");
}

#[test]
fn parked_with_work() {
    let mut h = base();
    // Input 1 was accepted quietly; forgetting that makes the parked loop a stranded backlog.
    h.m.internals_mut().quiet.clear();
    expect(&h, |v| matches!(v, Violation::ParkedWithWork { input: InputId(1) }), "ParkedWithWork");
}

#[test]
fn staged_in_queue() {
    let mut h = base();
    running(&mut h);
    *h.m.internals_mut().ledger = Ledger::from_parts_unchecked(
        vec![rec(1, InputState::Staged { run: RunId(1) }, 1)],
        vec![InputId(1)],
        vec![],
        3,
    );
    expect(&h, |v| matches!(v, Violation::StagedInQueue { .. }), "StagedInQueue");
}

#[test]
fn staged_for_other_run() {
    let mut h = base();
    *h.m.internals_mut().ledger =
        Ledger::from_parts_unchecked(vec![rec(1, InputState::Staged { run: RunId(7) }, 1)], vec![], vec![], 3);
    expect(&h, |v| matches!(v, Violation::StagedForOtherRun { run: RunId(7), current: None, .. }), "StagedForOtherRun");
}

#[test]
fn queued_not_in_lane() {
    let mut h = base();
    *h.m.internals_mut().ledger = Ledger::from_parts_unchecked(vec![rec(1, InputState::Queued, 0)], vec![], vec![], 3);
    expect(&h, |v| matches!(v, Violation::QueuedNotInLane { .. }), "QueuedNotInLane");
}

#[test]
fn queued_in_the_wrong_lane() {
    let mut h = base();
    *h.m.internals_mut().ledger =
        Ledger::from_parts_unchecked(vec![rec(1, InputState::Queued, 0)], vec![], vec![InputId(1)], 3);
    expect(&h, |v| matches!(v, Violation::LaneHoldsNonQueued { .. }), "a queue-lane input in the steer lane");
}

#[test]
fn lane_holds_non_queued() {
    let mut h = base();
    *h.m.internals_mut().ledger =
        Ledger::from_parts_unchecked(vec![rec(1, InputState::Queued, 0)], vec![InputId(1), InputId(8)], vec![], 3);
    expect(&h, |v| matches!(v, Violation::LaneHoldsNonQueued { input: InputId(8) }), "LaneHoldsNonQueued");
}

#[test]
fn lanes_overlap() {
    let mut h = base();
    *h.m.internals_mut().ledger =
        Ledger::from_parts_unchecked(vec![rec(1, InputState::Queued, 0)], vec![InputId(1), InputId(1)], vec![], 3);
    expect(&h, |v| matches!(v, Violation::LanesOverlap { .. }), "LanesOverlap");
}

#[test]
fn drain_violation_is_reported() {
    let mut h = base();
    *h.m.internals_mut().drain =
        DrainMachine::from_parts(DrainPhase::Inactive, None, DrainIncarnation(0), 0, true, true);
    expect(&h, |v| matches!(v, Violation::Drain(_)), "Drain");
}

#[test]
fn registration_violation_is_reported() {
    let mut h = base();
    let r = h.m.registration().clone();
    *h.m.internals_mut().registration = burrow_core::registration::RegistrationMachine::from_parts(
        burrow_core::registration::RegistrationPhase::Unprepared,
        r.binding(),
        r.generation_issued(),
        burrow_core::registration::ObligationSet::none(),
        None,
        r.grace_ms(),
    );
    expect(&h, |v| matches!(v, Violation::Registration(_)), "Registration");
}

#[test]
fn operations_violation_is_reported() {
    let mut h = base();
    // A terminated registry still holding a record listed as retained twice is
    // one the registry could never reach; any OpViolation must surface here.
    h.m.internals_mut().operations.tamper().set_terminated();
    h.m.internals_mut().operations.tamper().push_retained(burrow_core::OperationId(77));
    expect(&h, |v| matches!(v, Violation::Operations(_)), "Operations");
}
