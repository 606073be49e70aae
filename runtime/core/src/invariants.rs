//! The SPEC 6 invariants that are properties of one session's state.
//!
//! `check` is the one predicate set used by the unit tests, the model checker
//! and the simulator. Each invariant has its own [`Violation`] variant so a
//! report names exactly which rule broke. Invariants that need history (a
//! waiter resolved twice, an input applied again after a crash) are checked by
//! the model and the simulator on top of these, against what they observed.

use crate::drain::DrainViolation;
use crate::ids::{InputId, Millis, RunId, WaiterId};
use crate::input::{InputState, Lane};
use crate::operations::OpViolation;
use crate::phase::RuntimePhase;
use crate::registration::{RegistrationPhase, RegistrationViolation};
use crate::session::SessionMachine;

/// One broken invariant, with what shows it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, thiserror::Error)]
pub enum Violation {
    /// specs/session.md#ownership-moved: a session that moved to another host still holds something that would act.
    #[error("the session moved to another host and still holds {what}")]
    LeftAfterMove {
        /// What is left.
        what: &'static str,
    },
    /// SPEC 6.1: an unresolved waiter waits on an input that is terminal or unknown.
    #[error("waiter {waiter} still waits on input {input}, which is terminal or unknown")]
    WaiterOfSettledInput {
        /// The input.
        input: InputId,
        /// The waiter.
        waiter: WaiterId,
    },
    /// SPEC 6.1: after destroy, stop or unregister a waiter is unresolved.
    #[error("waiter {waiter} is unresolved after the session ended ({why})")]
    WaiterAfterTermination {
        /// The waiter.
        waiter: WaiterId,
        /// Which end.
        why: &'static str,
    },
    /// SPEC 6.1: the waiter book's count disagrees with its contents.
    #[error("the waiter count disagrees with the waiter sets")]
    WaiterCountMismatch,
    /// SPEC 6.2: accepted inputs are not all accounted for.
    #[error("{accepted} inputs accepted but {active} active + {terminal} terminal")]
    InputLost {
        /// Ever accepted.
        accepted: u64,
        /// Active now.
        active: u64,
        /// Ever terminal.
        terminal: u64,
    },
    /// SPEC 6.3: an input of a committed boundary is back in a queue or a run.
    #[error("input {input} contributed to committed run {run} but is {state} again")]
    AppliedAgain {
        /// The input.
        input: InputId,
        /// The committed run.
        run: RunId,
        /// Its state now.
        state: String,
    },
    /// SPEC 6.4: Running without a current run, or a current run outside Running.
    #[error("phase {phase} with current run {run:?}")]
    RunPhaseMismatch {
        /// The phase.
        phase: RuntimePhase,
        /// The current run.
        run: Option<RunId>,
    },
    /// SPEC 6.4: a run does not remember a valid phase to return to.
    #[error("the run returns to {to:?}, which is not a pre-run phase")]
    BadReturnPhase {
        /// The remembered phase.
        to: Option<RuntimePhase>,
    },
    /// SPEC 6.5: a run stages an input admitted after retirement.
    #[error("run {run} stages input {input}, admitted after retirement")]
    RunAfterRetire {
        /// The run.
        run: RunId,
        /// The input.
        input: InputId,
    },
    /// SPEC 6.5: a run started after unregister began.
    #[error("run {run} started after unregister began")]
    RunAfterUnregister {
        /// The run.
        run: RunId,
    },
    /// SPEC 6.6: an input was staged more times than allowed.
    #[error("input {input} has {attempts} attempts, the bound is {max}")]
    AttemptsExceeded {
        /// The input.
        input: InputId,
        /// Its attempts.
        attempts: u32,
        /// The bound.
        max: u32,
    },
    /// SPEC 6.6: a queued input has no attempt left (it would be staged again).
    #[error("input {input} is queued with no attempt left")]
    ExhaustedInputQueued {
        /// The input.
        input: InputId,
    },
    /// SPEC 6.7: the loop is parked while selectable work exists.
    #[error("the loop is parked while input {input} is selectable")]
    ParkedWithWork {
        /// A selectable input.
        input: InputId,
    },
    /// SPEC 6.7: a run outlived its deadline.
    #[error("run {run} passed its deadline {deadline} at {now}")]
    RunPastDeadline {
        /// The run.
        run: RunId,
        /// Its deadline.
        deadline: Millis,
        /// The clock.
        now: Millis,
    },
    /// SPEC 6.8: a staged input sits in a queue.
    #[error("input {input} is in a run and in a queue")]
    StagedInQueue {
        /// The input.
        input: InputId,
    },
    /// SPEC 6.8: a staged input names a run that is not current.
    #[error("input {input} names run {run}, the current run is {current:?}")]
    StagedForOtherRun {
        /// The input.
        input: InputId,
        /// The run it names.
        run: RunId,
        /// The current run.
        current: Option<RunId>,
    },
    /// SPEC 6.8: the current run's contributors differ from its staged inputs.
    #[error("run {run} lists {listed:?} but {staged:?} are in it")]
    ContributorsMismatch {
        /// The run.
        run: RunId,
        /// What the run lists.
        listed: Vec<InputId>,
        /// What the ledger has in it.
        staged: Vec<InputId>,
    },
    /// SPEC 6.8: a queued input is in no lane, or in the wrong one.
    #[error("input {input} is queued but not (only) in its lane")]
    QueuedNotInLane {
        /// The input.
        input: InputId,
    },
    /// SPEC 6.8: a lane holds an input that is not queued (terminal, staged or unknown).
    #[error("a lane holds input {input}, which is not queued")]
    LaneHoldsNonQueued {
        /// The input.
        input: InputId,
    },
    /// SPEC 6.8: the two lanes overlap or repeat an input.
    #[error("input {input} appears in the lanes more than once")]
    LanesOverlap {
        /// The input.
        input: InputId,
    },
    /// SPEC 6.8: a terminal state in live state (terminal states leave at once).
    #[error("input {input} is terminal but still active")]
    TerminalInLiveState {
        /// The input.
        input: InputId,
    },
    /// SPEC 6.9: an operations registry property.
    #[error("operations: {0}")]
    Operations(OpViolation),
    /// SPEC 2.5: a drain property (no lost wakeup).
    #[error("drain: {0}")]
    Drain(DrainViolation),
    /// SPEC 2.6: a registration property.
    #[error("registration: {0}")]
    Registration(RegistrationViolation),
    /// SPEC 2.4, SPEC 6.7: the session is quiescent and admits inputs, yet an observed end that wakes its owner and
    /// that the agent has not applied got no Continuation (a background result stranded until the next prompt).
    #[error("a background end is owed a wake on a quiescent session (injected cursor {injected}, observed {observed})")]
    WakeStranded {
        /// The injected cursor.
        injected: crate::operations::CompletionSeq,
        /// The observed cursor.
        observed: crate::operations::CompletionSeq,
    },
}

/// Every SPEC 6 state invariant, in one pass; returns the first broken one.
pub fn check(m: &SessionMachine) -> Result<(), Violation> {
    if m.moved.is_some() {
        // spec: specs/session.md#ownership-moved: the machine is done on this host. Its ledger stays as the move
        // found it (the run it cut off still names its inputs) and is never read again; what must hold is that
        // nothing is left running or waiting here.
        return check_moved(m);
    }
    check_waiters(m)?;
    check_accounting(m)?;
    check_runs(m)?;
    check_lanes(m)?;
    check_attempts(m)?;
    check_loop(m)?;
    check_feed_settled(m)?;
    m.operations().check().map_err(Violation::Operations)?;
    m.drain.check().map_err(Violation::Drain)?;
    m.registration.check().map_err(Violation::Registration)?;
    Ok(())
}

fn check_moved(m: &SessionMachine) -> Result<(), Violation> {
    let left = if m.run.is_some() {
        Some("a run")
    } else if m.waiters.pending() > 0 {
        Some("a waiter")
    } else if m.admitting.is_some() {
        Some("an admission")
    } else if m.phase.phase() != RuntimePhase::Stopped && m.phase.phase() != RuntimePhase::Destroyed {
        Some("a phase that runs")
    } else {
        None
    };
    match left {
        Some(what) => Err(Violation::LeftAfterMove { what }),
        None => Ok(()),
    }
}

fn check_waiters(m: &SessionMachine) -> Result<(), Violation> {
    if !m.waiters.count_is_consistent() {
        return Err(Violation::WaiterCountMismatch);
    }
    let ended = match (m.phase.phase(), m.registration.phase()) {
        (RuntimePhase::Destroyed, _) => Some("destroyed"),
        (RuntimePhase::Stopped, _) => Some("stopped"),
        (_, RegistrationPhase::Unregistering | RegistrationPhase::Unregistered) => Some("unregistered"),
        _ => None,
    };
    for (input, waiter) in m.waiters.iter() {
        if let Some(why) = ended {
            return Err(Violation::WaiterAfterTermination { waiter, why });
        }
        if m.admitting() == Some(input) {
            // The caller of an admission whose write is in flight waits for the write's result.
            continue;
        }
        match m.ledger.get(input) {
            Some(record) if !record.state.is_terminal() => {}
            _ => return Err(Violation::WaiterOfSettledInput { input, waiter }),
        }
    }
    Ok(())
}

fn check_accounting(m: &SessionMachine) -> Result<(), Violation> {
    let (accepted, terminal) = m.ledger.totals();
    let active = m.ledger.active_len() as u64;
    if accepted != active + terminal {
        return Err(Violation::InputLost { accepted, active, terminal });
    }
    for record in m.ledger.active() {
        if record.state.is_terminal() {
            return Err(Violation::TerminalInLiveState { input: record.id });
        }
    }
    // No input of a committed boundary is back in a lane or in a run.
    for receipt in m.receipts() {
        for input in &receipt.contributors {
            if let Some(record) = m.ledger.get(*input) {
                return Err(Violation::AppliedAgain { input: *input, run: receipt.run, state: record.state.label() });
            }
        }
    }
    Ok(())
}

fn check_runs(m: &SessionMachine) -> Result<(), Violation> {
    let phase = m.phase.phase();
    let run = m.run.as_ref();
    if (phase == RuntimePhase::Running) != run.is_some() {
        return Err(Violation::RunPhaseMismatch { phase, run: run.map(|r| r.id) });
    }
    let returns_to = m.phase.run_returns_to();
    let return_ok = match run {
        Some(_) => matches!(returns_to, Some(RuntimePhase::Idle | RuntimePhase::Attached | RuntimePhase::Retired)),
        None => returns_to.is_none(),
    };
    if !return_ok {
        return Err(Violation::BadReturnPhase { to: returns_to });
    }
    let Some(run) = run else { return Ok(()) };
    if let Some(mark) = m.unregister_watermark {
        if run.id >= mark {
            return Err(Violation::RunAfterUnregister { run: run.id });
        }
    }
    if let (Some(mark), Some(RuntimePhase::Retired)) = (m.retire_watermark, returns_to) {
        for input in &run.inputs {
            if *input >= mark {
                return Err(Violation::RunAfterRetire { run: run.id, input: *input });
            }
        }
    }
    if run.report.is_none() && m.clock > run.deadline_at {
        return Err(Violation::RunPastDeadline { run: run.id, deadline: run.deadline_at, now: m.clock });
    }
    let mut listed = run.inputs.clone();
    listed.sort();
    let staged = m.ledger.inputs_of_run(run.id);
    if listed != staged {
        return Err(Violation::ContributorsMismatch { run: run.id, listed, staged });
    }
    Ok(())
}

fn check_lanes(m: &SessionMachine) -> Result<(), Violation> {
    let current = m.run.as_ref().map(|r| r.id);
    // Every lane entry, sorted: one allocation finds a repeat and answers "is it in a lane" by binary search.
    let mut laned: Vec<InputId> = m.ledger.queue_lane().chain(m.ledger.steer_lane()).collect();
    laned.sort_unstable();
    if let Some(pair) = laned.windows(2).find(|pair| pair[0] == pair[1]) {
        return Err(Violation::LanesOverlap { input: pair[0] });
    }
    let queue = m.ledger.queue_lane().map(|id| (Lane::Queue, id));
    for (lane, id) in queue.chain(m.ledger.steer_lane().map(|id| (Lane::Steer, id))) {
        match m.ledger.get(id) {
            Some(r) if r.state == InputState::Queued && r.spec.lane() == Some(lane) => {}
            Some(r) if r.state.run().is_some() => return Err(Violation::StagedInQueue { input: id }),
            _ => return Err(Violation::LaneHoldsNonQueued { input: id }),
        }
    }
    for record in m.ledger.active() {
        match record.state {
            InputState::Queued if laned.binary_search(&record.id).is_err() => {
                return Err(Violation::QueuedNotInLane { input: record.id });
            }
            state => {
                if let Some(run) = state.run() {
                    if Some(run) != current {
                        return Err(Violation::StagedForOtherRun { input: record.id, run, current });
                    }
                }
            }
        }
    }
    Ok(())
}

fn check_attempts(m: &SessionMachine) -> Result<(), Violation> {
    let max = m.ledger.max_attempts();
    for record in m.ledger.active() {
        if record.attempts > max {
            return Err(Violation::AttemptsExceeded { input: record.id, attempts: record.attempts, max });
        }
        if record.state == InputState::Queued && record.attempts >= max {
            return Err(Violation::ExhaustedInputQueued { input: record.id });
        }
    }
    Ok(())
}

fn check_feed_settled(m: &SessionMachine) -> Result<(), Violation> {
    let ops = m.operations();
    // A continuation could be admitted now: the same quiescence, with admission open and room in the ledger.
    let quiescent = m.settles_feed()
        && m.phase.admits_inputs()
        && crate::session::registration_admits_inputs(m.registration.phase());
    if quiescent && ops.feed_injected < ops.feed_observed && ops.wake_owed() && m.ledger.check_room().is_ok() {
        return Err(Violation::WakeStranded { injected: ops.feed_injected, observed: ops.feed_observed });
    }
    Ok(())
}

fn check_loop(m: &SessionMachine) -> Result<(), Violation> {
    if !m.loop_parked || !m.ready_to_run() {
        return Ok(());
    }
    // Parked with queued work is allowed only for inputs admitted quietly
    // (accept without wake, silent intents) since the loop parked.
    let selectable = m.ledger.queue_lane().chain(m.ledger.steer_lane()).find(|i| !m.quiet.contains(i));
    match selectable {
        Some(input) => Err(Violation::ParkedWithWork { input }),
        None => Ok(()),
    }
}
