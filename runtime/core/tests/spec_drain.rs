//! Renders the drain machine's (state x event) table into specs/drain.md.
//!
//! spec: specs/drain.md

mod common;

use burrow_core::Millis;
use burrow_core::drain::{DrainEvent, DrainExitReason, DrainIncarnation, DrainMachine, DrainMode};

const NOW: Millis = Millis(1_000);
const AS: DrainMode = DrainMode::AttachedSession;
const PH: DrainMode = DrainMode::PersistentHost;

/// A table column: an event, resolved against the row's state so that
/// "current" and "stale" name the right drain incarnation.
#[derive(Clone, Copy)]
enum Column {
    Reconcile(Option<DrainMode>),
    ExitedCurrent(DrainExitReason),
    ExitedStale,
    Respawn,
    Shutdown,
    Abort,
    SourceChanged,
    InboxNotified,
    ParkCurrent,
    ParkStale,
}

impl Column {
    fn event(self, machine: &DrainMachine) -> DrainEvent {
        let current = machine.incarnation();
        let stale = DrainIncarnation(current.0.saturating_sub(1));
        match self {
            Column::Reconcile(desired) => DrainEvent::Reconcile { desired },
            Column::ExitedCurrent(reason) => DrainEvent::Exited { incarnation: current, reason },
            Column::ExitedStale => DrainEvent::Exited { incarnation: stale, reason: DrainExitReason::Failed },
            Column::Respawn => DrainEvent::Respawn,
            Column::Shutdown => DrainEvent::Shutdown,
            Column::Abort => DrainEvent::Abort,
            Column::SourceChanged => DrainEvent::SourceChanged,
            Column::InboxNotified => DrainEvent::InboxNotified,
            Column::ParkCurrent => DrainEvent::ParkRequested { incarnation: current },
            Column::ParkStale => DrainEvent::ParkRequested { incarnation: stale },
        }
    }
}

fn step(machine: &mut DrainMachine, column: Column) {
    let event = column.event(machine);
    machine.apply(NOW, event).unwrap_or_else(|r| panic!("building a row: {event:?} refused: {r}"));
}

fn from(steps: &[Column]) -> DrainMachine {
    let mut machine = DrainMachine::new();
    for column in steps {
        step(&mut machine, *column);
    }
    assert_eq!(machine.check(), Ok(()));
    machine
}

fn states() -> Vec<(&'static str, DrainMachine)> {
    use Column as C;
    use DrainExitReason as R;
    let mut budget_spent = vec![C::Reconcile(Some(PH))];
    for _ in 0..burrow_core::drain::DRAIN_RESPAWNS_MAX {
        budget_spent.extend([C::ExitedCurrent(R::Failed), C::Respawn]);
    }
    vec![
        ("Inactive", from(&[])),
        ("Inactive, +signal", from(&[C::InboxNotified])),
        ("Running(AttachedSession)", from(&[C::Reconcile(Some(AS))])),
        ("Running(PersistentHost)", from(&[C::Reconcile(Some(PH))])),
        ("Running(PersistentHost), parked", from(&[C::Reconcile(Some(PH)), C::ParkCurrent])),
        ("Running(PersistentHost), +signal", from(&[C::Reconcile(Some(PH)), C::InboxNotified])),
        ("Running(PersistentHost), respawn budget spent", from(&budget_spent)),
        ("Stopped(Aborted) after PersistentHost", from(&[C::Reconcile(Some(PH)), C::Reconcile(None)])),
        ("Stopped(SessionShutdown) after AttachedSession", from(&[C::Reconcile(Some(AS)), C::Shutdown])),
        ("Stopped(Dismissed) after AttachedSession", from(&[C::Reconcile(Some(AS)), C::ExitedCurrent(R::Dismissed)])),
        (
            "Stopped(Dismissed) after AttachedSession, then detached",
            from(&[C::Reconcile(Some(AS)), C::ExitedCurrent(R::Dismissed), C::Reconcile(None)]),
        ),
        (
            "Stopped(IdleTimeout) after PersistentHost",
            from(&[C::Reconcile(Some(PH)), C::ExitedCurrent(R::IdleTimeout)]),
        ),
        ("Stopped(Failed) after AttachedSession", from(&[C::Reconcile(Some(AS)), C::ExitedCurrent(R::Failed)])),
        ("ExitedRespawnable", from(&[C::Reconcile(Some(PH)), C::ExitedCurrent(R::Failed)])),
    ]
}

fn events() -> Vec<(&'static str, Column)> {
    use Column as C;
    use DrainExitReason as R;
    vec![
        ("Reconcile(None)", C::Reconcile(None)),
        ("Reconcile(AttachedSession)", C::Reconcile(Some(AS))),
        ("Reconcile(PersistentHost)", C::Reconcile(Some(PH))),
        ("Exited(current, IdleTimeout)", C::ExitedCurrent(R::IdleTimeout)),
        ("Exited(current, Dismissed)", C::ExitedCurrent(R::Dismissed)),
        ("Exited(current, Failed)", C::ExitedCurrent(R::Failed)),
        ("Exited(current, Aborted)", C::ExitedCurrent(R::Aborted)),
        ("Exited(current, SessionShutdown)", C::ExitedCurrent(R::SessionShutdown)),
        ("Exited(stale, Failed)", C::ExitedStale),
        ("Respawn", C::Respawn),
        ("Shutdown", C::Shutdown),
        ("Abort", C::Abort),
        ("SourceChanged", C::SourceChanged),
        ("InboxNotified", C::InboxNotified),
        ("ParkRequested(current)", C::ParkCurrent),
        ("ParkRequested(stale)", C::ParkStale),
    ]
}

fn outcome(state: &DrainMachine, column: &Column) -> String {
    let mut machine = state.clone();
    let event = column.event(state);
    match machine.apply(NOW, event) {
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
fn drain_table_matches_the_spec_page() {
    let table = burrow_core::table::render("Drain transitions", &states(), &events(), outcome);
    common::check_spec_page("drain", &table);
}
