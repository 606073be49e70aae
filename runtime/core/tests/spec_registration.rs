//! Renders the registration machine's (state x event) table into
//! specs/registration.md.
//!
//! spec: specs/registration.md

mod common;

use burrow_core::registration::{Obligation, RegistrationEvent, RegistrationMachine, RegistrationPhase};
use burrow_core::{EpochId, Generation, Millis};

/// Every row is built at this time; with the default 2 s grace an unregister
/// begun here has its deadline at 3000 ms.
const NOW: Millis = Millis(1_000);
const DEADLINE: Millis = Millis(3_000);

/// A table column: an event (and the time it arrives), resolved against the
/// row's state so that "current" and "stale" name the right loop generation.
#[derive(Clone, Copy)]
enum Column {
    /// Builds rows: the first prepare, in epoch 7.
    PrepareRow,
    Prepare,
    BeginAttach,
    AttachCompletedCurrent,
    AttachCompletedStale,
    AttachFailedCurrent,
    LoopExitedCurrent,
    LoopExitedStale,
    Rebind,
    BeginUnregister,
    CloseStopLoop,
    CloseStopDrain,
    CloseResolveWaiters,
    TickBeforeDeadline,
    TickAtDeadline,
    CommitUnregister,
}

/// The generation a loop report from "the current loop" would carry.
fn current_loop(machine: &RegistrationMachine) -> Generation {
    match machine.phase() {
        RegistrationPhase::Attaching { generation } | RegistrationPhase::Active { generation } => generation,
        _ => machine
            .open_obligations()
            .iter()
            .find_map(|o| match o {
                Obligation::StopLoop { generation } => Some(*generation),
                _ => None,
            })
            .unwrap_or(machine.generation_issued()),
    }
}

impl Column {
    fn event(self, machine: &RegistrationMachine) -> (Millis, RegistrationEvent) {
        use RegistrationEvent as E;
        let current = current_loop(machine);
        let stale = Generation(current.0.saturating_sub(1));
        match self {
            Column::PrepareRow => (NOW, E::Prepare { epoch: EpochId(7) }),
            Column::Prepare => (NOW, E::Prepare { epoch: EpochId(9) }),
            Column::BeginAttach => (NOW, E::BeginAttach),
            Column::AttachCompletedCurrent => (NOW, E::AttachCompleted { generation: current }),
            Column::AttachCompletedStale => (NOW, E::AttachCompleted { generation: stale }),
            Column::AttachFailedCurrent => (NOW, E::AttachFailed { generation: current }),
            Column::LoopExitedCurrent => (NOW, E::LoopExited { generation: current }),
            Column::LoopExitedStale => (NOW, E::LoopExited { generation: stale }),
            Column::Rebind => (NOW, E::Rebind),
            Column::BeginUnregister => (NOW, E::BeginUnregister),
            Column::CloseStopLoop => (NOW, E::ObligationClosed(Obligation::StopLoop { generation: current })),
            Column::CloseStopDrain => (NOW, E::ObligationClosed(Obligation::StopDrain)),
            Column::CloseResolveWaiters => (NOW, E::ObligationClosed(Obligation::ResolveWaiters)),
            Column::TickBeforeDeadline => (Millis(DEADLINE.0 - 1), E::Tick),
            Column::TickAtDeadline => (DEADLINE, E::Tick),
            Column::CommitUnregister => (NOW, E::CommitUnregister),
        }
    }
}

fn from(steps: &[Column]) -> RegistrationMachine {
    let mut machine = RegistrationMachine::new();
    for column in steps {
        let (now, event) = column.event(&machine);
        machine.apply(now, event).unwrap_or_else(|r| panic!("building a row: {event:?} refused: {r}"));
    }
    assert_eq!(machine.check(), Ok(()));
    machine
}

fn states() -> Vec<(&'static str, RegistrationMachine)> {
    use Column as C;
    let active = [C::PrepareRow, C::BeginAttach, C::AttachCompletedCurrent];
    let unregistering = [&active[..], &[C::BeginUnregister]].concat();
    vec![
        ("Unprepared", from(&[])),
        ("Queuing", from(&[C::PrepareRow])),
        ("Attaching(g1)", from(&[C::PrepareRow, C::BeginAttach])),
        ("Active(g1)", from(&active)),
        ("Active(g1) rebound to g2", from(&[&active[..], &[C::Rebind]].concat())),
        ("Queuing after a dead loop", from(&[&active[..], &[C::LoopExitedCurrent]].concat())),
        ("Unregistering from Active, all open", from(&unregistering)),
        ("Unregistering from Queuing (no loop)", from(&[C::PrepareRow, C::BeginUnregister])),
        (
            "Unregistering, only the loop open",
            from(&[&unregistering[..], &[C::CloseStopDrain, C::CloseResolveWaiters]].concat()),
        ),
        (
            "Unregistering, all closed",
            from(&[&unregistering[..], &[C::CloseStopLoop, C::CloseStopDrain, C::CloseResolveWaiters]].concat()),
        ),
        ("Unregistered", from(&[C::PrepareRow, C::BeginUnregister, C::TickAtDeadline, C::CommitUnregister])),
    ]
}

fn events() -> Vec<(&'static str, Column)> {
    use Column as C;
    vec![
        ("Prepare(e9)", C::Prepare),
        ("BeginAttach", C::BeginAttach),
        ("AttachCompleted(current)", C::AttachCompletedCurrent),
        ("AttachCompleted(stale)", C::AttachCompletedStale),
        ("AttachFailed(current)", C::AttachFailedCurrent),
        ("LoopExited(current)", C::LoopExitedCurrent),
        ("LoopExited(stale)", C::LoopExitedStale),
        ("Rebind", C::Rebind),
        ("BeginUnregister", C::BeginUnregister),
        ("ObligationClosed(StopLoop current)", C::CloseStopLoop),
        ("ObligationClosed(StopDrain)", C::CloseStopDrain),
        ("ObligationClosed(ResolveWaiters)", C::CloseResolveWaiters),
        ("Tick at 2999ms (before the deadline)", C::TickBeforeDeadline),
        ("Tick at 3000ms (the deadline)", C::TickAtDeadline),
        ("CommitUnregister", C::CommitUnregister),
    ]
}

fn outcome(state: &RegistrationMachine, column: &Column) -> String {
    let mut machine = state.clone();
    let (now, event) = column.event(state);
    match machine.apply(now, event) {
        Err(refusal) => {
            assert_eq!(&machine, state, "a refusal changed the machine");
            format!("refused: {refusal}")
        }
        Ok(effects) => {
            assert_eq!(machine.check(), Ok(()));
            let after = if &machine == state { "unchanged".to_owned() } else { machine.to_string() };
            if effects.is_empty() {
                after
            } else {
                let names: Vec<_> = effects.iter().map(|e| e.name()).collect();
                format!("{after}; {}", names.join(", "))
            }
        }
    }
}

#[test]
fn registration_table_matches_the_spec_page() {
    let table = burrow_core::table::render("Registration transitions", &states(), &events(), outcome);
    common::check_spec_page("registration", &table);
}
