//! The peer ingress drain machine: every transition and every refusal.
//!
//! spec: specs/drain.md

use burrow_core::Millis;
use burrow_core::drain::{
    DRAIN_RESPAWNS_MAX, DrainEffect, DrainEvent, DrainExitReason, DrainIncarnation, DrainMachine, DrainMode,
    DrainPhase, DrainRefusal, DrainViolation, desired_mode,
};

const NOW: Millis = Millis(1_000);
const AS: DrainMode = DrainMode::AttachedSession;
const PH: DrainMode = DrainMode::PersistentHost;

fn accept(machine: &mut DrainMachine, event: DrainEvent) -> Vec<DrainEffect> {
    let effects = machine.apply(NOW, event).unwrap_or_else(|r| panic!("{event:?} refused: {r}"));
    assert_eq!(machine.check(), Ok(()), "invariant broken after {event:?}");
    effects
}

/// Applies an event that must be refused and asserts that nothing changed.
fn refuse(machine: &DrainMachine, event: DrainEvent) -> DrainRefusal {
    let mut after = machine.clone();
    let refusal = after.apply(NOW, event).expect_err("event should be refused");
    assert_eq!(&after, machine, "refused {event:?} changed the machine");
    refusal
}

fn reconcile(desired: Option<DrainMode>) -> DrainEvent {
    DrainEvent::Reconcile { desired }
}

fn exited(machine: &DrainMachine, reason: DrainExitReason) -> DrainEvent {
    DrainEvent::Exited { incarnation: machine.incarnation(), reason }
}

fn park(machine: &DrainMachine) -> DrainEvent {
    DrainEvent::ParkRequested { incarnation: machine.incarnation() }
}

fn accept_park(machine: &mut DrainMachine) -> Vec<DrainEffect> {
    let event = park(machine);
    accept(machine, event)
}

fn accept_exit(machine: &mut DrainMachine, reason: DrainExitReason) -> Vec<DrainEffect> {
    let event = exited(machine, reason);
    accept(machine, event)
}

fn running(mode: DrainMode) -> DrainMachine {
    let mut machine = DrainMachine::new();
    accept(&mut machine, reconcile(Some(mode)));
    machine
}

fn stopped_by(mode: DrainMode, reason: DrainExitReason) -> DrainMachine {
    let mut machine = running(mode);
    accept_exit(&mut machine, reason);
    machine
}

fn names(effects: &[DrainEffect]) -> Vec<&'static str> {
    effects.iter().map(DrainEffect::name).collect()
}

#[test]
fn desired_mode_follows_phase_comms_and_keep_alive() {
    use burrow_core::phase::RuntimePhase as P;
    let cases = [
        (P::Initializing, None, None),
        (P::Idle, None, Some(PH)),
        (P::Attached, Some(AS), Some(AS)),
        (P::Running, Some(AS), Some(AS)),
        (P::Retired, None, None),
        (P::Stopped, None, None),
        (P::Destroyed, None, None),
    ];
    assert_eq!(cases.len(), P::ALL.len());
    for (phase, without_keep_alive, with_keep_alive) in cases {
        assert_eq!(desired_mode(phase, true, false), without_keep_alive, "{phase:?}");
        assert_eq!(desired_mode(phase, true, true), with_keep_alive, "{phase:?} keep_alive");
        assert_eq!(desired_mode(phase, false, false), None, "{phase:?} without comms");
        assert_eq!(desired_mode(phase, false, true), None, "{phase:?} without comms, keep_alive");
    }
}

#[test]
fn a_new_machine_is_inactive_and_valid() {
    let machine = DrainMachine::new();
    assert_eq!(machine.phase(), DrainPhase::Inactive);
    assert_eq!(machine.incarnation(), DrainIncarnation(0));
    assert_eq!(machine.last_mode(), None);
    assert_eq!(machine.desired(), None);
    assert!(!machine.parked() && !machine.signal_pending());
    assert_eq!(machine.check(), Ok(()));
    assert_eq!(DrainMachine::default(), machine);
}

#[test]
fn reconcile_spawns_from_inactive_in_either_mode() {
    for mode in [AS, PH] {
        let mut machine = DrainMachine::new();
        let effects = accept(&mut machine, reconcile(Some(mode)));
        assert_eq!(effects, vec![DrainEffect::SpawnDrain { mode, incarnation: DrainIncarnation(1) }]);
        assert_eq!(machine.phase(), DrainPhase::Running { mode });
        assert_eq!(machine.last_mode(), Some(mode));
    }
}

#[test]
fn reconcile_without_desire_leaves_inactive_alone() {
    let mut machine = DrainMachine::new();
    assert!(accept(&mut machine, reconcile(None)).is_empty());
    assert_eq!(machine, DrainMachine::new());
}

#[test]
fn reconcile_to_the_running_mode_is_a_no_op() {
    for mode in [AS, PH] {
        let mut machine = running(mode);
        let before = machine.clone();
        assert!(accept(&mut machine, reconcile(Some(mode))).is_empty());
        assert_eq!(machine, before);
    }
}

#[test]
fn reconcile_without_desire_aborts_a_running_drain() {
    let mut machine = running(PH);
    let effects = accept(&mut machine, reconcile(None));
    assert_eq!(effects, vec![DrainEffect::AbortDrain { incarnation: DrainIncarnation(1) }]);
    assert_eq!(machine.phase(), DrainPhase::Stopped { reason: DrainExitReason::Aborted });
}

#[test]
fn a_mode_change_aborts_the_old_drain_then_spawns_the_new_one() {
    let mut machine = running(PH);
    let effects = accept(&mut machine, reconcile(Some(AS)));
    assert_eq!(
        effects,
        vec![
            DrainEffect::AbortDrain { incarnation: DrainIncarnation(1) },
            DrainEffect::SpawnDrain { mode: AS, incarnation: DrainIncarnation(2) },
        ]
    );
    assert_eq!(machine.phase(), DrainPhase::Running { mode: AS });
    assert_eq!(machine.incarnation(), DrainIncarnation(2));
}

#[test]
fn control_plane_stops_restart_on_the_next_desire() {
    for reason in [DrainExitReason::Aborted, DrainExitReason::SessionShutdown] {
        for mode in [AS, PH] {
            let mut machine = running(mode);
            let stop = if reason == DrainExitReason::Aborted { reconcile(None) } else { DrainEvent::Shutdown };
            accept(&mut machine, stop);
            assert_eq!(machine.phase(), DrainPhase::Stopped { reason });
            // A second "no drain" keeps the reason: there is no latch to spend.
            assert!(accept(&mut machine, reconcile(None)).is_empty());
            assert_eq!(machine.phase(), DrainPhase::Stopped { reason });
            let effects = accept(&mut machine, reconcile(Some(mode)));
            assert_eq!(names(&effects), ["SpawnDrain"], "{reason} {mode}");
            assert_eq!(machine.phase(), DrainPhase::Running { mode });
        }
    }
}

#[test]
fn a_self_ended_stop_is_latched_against_the_same_mode() {
    let latched = [
        (AS, DrainExitReason::Dismissed),
        (PH, DrainExitReason::Dismissed),
        (AS, DrainExitReason::IdleTimeout),
        (PH, DrainExitReason::IdleTimeout),
        (AS, DrainExitReason::Failed),
    ];
    for (mode, reason) in latched {
        let mut machine = stopped_by(mode, reason);
        assert_eq!(machine.phase(), DrainPhase::Stopped { reason });
        let before = machine.clone();
        assert!(accept(&mut machine, reconcile(Some(mode))).is_empty(), "{mode} {reason}");
        assert_eq!(machine, before);
    }
}

#[test]
fn a_new_attach_after_a_dismissal_gets_a_new_drain() {
    // Dismissed while attached; the session detaches (no drain wanted) and
    // attaches again: the new attach gets a new drain.
    let mut machine = stopped_by(AS, DrainExitReason::Dismissed);
    assert!(accept(&mut machine, reconcile(None)).is_empty());
    assert_eq!(machine.phase(), DrainPhase::Stopped { reason: DrainExitReason::Dismissed });
    assert_eq!(machine.desired(), None);
    let effects = accept(&mut machine, reconcile(Some(AS)));
    assert_eq!(effects, vec![DrainEffect::SpawnDrain { mode: AS, incarnation: DrainIncarnation(2) }]);
}

#[test]
fn a_dismissal_holds_against_persistent_host() {
    // Dismissed while attached, then detached with keep-alive: no host drain.
    let mut machine = stopped_by(AS, DrainExitReason::Dismissed);
    assert!(accept(&mut machine, reconcile(Some(PH))).is_empty());
    assert_eq!(machine.phase(), DrainPhase::Stopped { reason: DrainExitReason::Dismissed });
    assert_eq!(machine.desired(), Some(PH));
    // Even after the desire lapses and returns, only an attach reopens it.
    assert!(accept(&mut machine, reconcile(None)).is_empty());
    assert!(accept(&mut machine, reconcile(Some(PH))).is_empty());
    assert_eq!(machine.phase(), DrainPhase::Stopped { reason: DrainExitReason::Dismissed });
    // The attach after the detach is a new attach.
    assert_eq!(names(&accept(&mut machine, reconcile(Some(AS)))), ["SpawnDrain"]);
    // A host drain dismissed while idle is likewise reopened by an attach.
    let mut machine = stopped_by(PH, DrainExitReason::Dismissed);
    assert_eq!(names(&accept(&mut machine, reconcile(Some(AS)))), ["SpawnDrain"]);
}

#[test]
fn a_change_of_desire_releases_an_idle_timeout_or_failure() {
    let mut machine = stopped_by(PH, DrainExitReason::IdleTimeout);
    let effects = accept(&mut machine, reconcile(Some(AS)));
    assert_eq!(names(&effects), ["SpawnDrain"]);
    assert_eq!(machine.phase(), DrainPhase::Running { mode: AS });
    // A failed attached drain: the detach to keep-alive hosting spawns anew.
    let mut machine = stopped_by(AS, DrainExitReason::Failed);
    assert_eq!(names(&accept(&mut machine, reconcile(Some(PH)))), ["SpawnDrain"]);
    // An idle timeout under PersistentHost: lapse then return of the desire.
    let mut machine = stopped_by(PH, DrainExitReason::IdleTimeout);
    assert!(accept(&mut machine, reconcile(None)).is_empty());
    assert_eq!(names(&accept(&mut machine, reconcile(Some(PH)))), ["SpawnDrain"]);
}

#[test]
fn exit_outcome_for_every_mode_and_reason() {
    for mode in [AS, PH] {
        for reason in DrainExitReason::ALL {
            let mut machine = running(mode);
            let effects = accept_exit(&mut machine, reason);
            if mode == PH && reason == DrainExitReason::Failed {
                assert_eq!(machine.phase(), DrainPhase::ExitedRespawnable);
                assert_eq!(effects, vec![DrainEffect::ScheduleRespawn]);
            } else {
                assert_eq!(machine.phase(), DrainPhase::Stopped { reason }, "{mode} {reason}");
                assert!(effects.is_empty());
            }
        }
    }
}

#[test]
fn an_exit_clears_the_parked_flag() {
    let mut machine = running(PH);
    accept_park(&mut machine);
    assert!(machine.parked());
    accept_exit(&mut machine, DrainExitReason::IdleTimeout);
    assert!(!machine.parked());
    assert_eq!(machine.phase(), DrainPhase::Stopped { reason: DrainExitReason::IdleTimeout });
}

#[test]
fn respawn_spawns_a_new_persistent_host_drain() {
    let mut machine = stopped_by(PH, DrainExitReason::Failed);
    let effects = accept(&mut machine, DrainEvent::Respawn);
    assert_eq!(effects, vec![DrainEffect::SpawnDrain { mode: PH, incarnation: DrainIncarnation(2) }]);
    assert_eq!(machine.phase(), DrainPhase::Running { mode: PH });
    assert_eq!(machine.respawns(), 1);
}

#[test]
fn respawn_is_refused_unless_exited_respawnable() {
    let states = [
        DrainMachine::new(),
        running(AS),
        running(PH),
        stopped_by(AS, DrainExitReason::Failed),
        stopped_by(PH, DrainExitReason::Dismissed),
        stopped_by(PH, DrainExitReason::Aborted),
    ];
    for machine in states {
        let refusal = refuse(&machine, DrainEvent::Respawn);
        assert_eq!(refusal, DrainRefusal::NotRespawnable { phase: machine.phase() });
    }
}

#[test]
fn consecutive_failures_stop_after_the_respawn_budget() {
    let mut machine = running(PH);
    for round in 0..DRAIN_RESPAWNS_MAX {
        let effects = accept_exit(&mut machine, DrainExitReason::Failed);
        assert_eq!(effects, vec![DrainEffect::ScheduleRespawn], "round {round}");
        accept(&mut machine, DrainEvent::Respawn);
    }
    assert_eq!(machine.respawns(), DRAIN_RESPAWNS_MAX);
    let effects = accept_exit(&mut machine, DrainExitReason::Failed);
    assert!(effects.is_empty());
    assert_eq!(machine.phase(), DrainPhase::Stopped { reason: DrainExitReason::Failed });
}

#[test]
fn reaching_the_park_point_refills_the_respawn_budget() {
    let mut machine = stopped_by(PH, DrainExitReason::Failed);
    accept(&mut machine, DrainEvent::Respawn);
    assert_eq!(machine.respawns(), 1);
    accept_park(&mut machine);
    assert_eq!(machine.respawns(), 0);
}

#[test]
fn reconcile_while_respawnable() {
    // The same mode waits for the shell's respawn delay.
    let mut machine = stopped_by(PH, DrainExitReason::Failed);
    let before = machine.clone();
    assert!(accept(&mut machine, reconcile(Some(PH))).is_empty());
    assert_eq!(machine, before);
    // Another mode is a fresh desire and spawns at once.
    let effects = accept(&mut machine, reconcile(Some(AS)));
    assert_eq!(names(&effects), ["SpawnDrain"]);
    assert_eq!(machine.phase(), DrainPhase::Running { mode: AS });
    // No desire cancels the pending respawn.
    let mut machine = stopped_by(PH, DrainExitReason::Failed);
    assert!(accept(&mut machine, reconcile(None)).is_empty());
    assert_eq!(machine.phase(), DrainPhase::Stopped { reason: DrainExitReason::Failed });
    assert!(matches!(refuse(&machine, DrainEvent::Respawn), DrainRefusal::NotRespawnable { .. }));
}

#[test]
fn task_reports_are_refused_when_no_drain_runs() {
    let states =
        [DrainMachine::new(), stopped_by(AS, DrainExitReason::Dismissed), stopped_by(PH, DrainExitReason::Failed)];
    for machine in states {
        let phase = machine.phase();
        let report = DrainEvent::Exited { incarnation: machine.incarnation(), reason: DrainExitReason::Failed };
        assert_eq!(refuse(&machine, report), DrainRefusal::NotRunning { phase });
        assert_eq!(refuse(&machine, park(&machine)), DrainRefusal::NotRunning { phase });
    }
}

#[test]
fn reports_from_a_replaced_drain_are_refused() {
    let mut machine = running(PH);
    let old = machine.incarnation();
    accept(&mut machine, reconcile(Some(AS)));
    let current = machine.incarnation();
    let late_exit = DrainEvent::Exited { incarnation: old, reason: DrainExitReason::Failed };
    assert_eq!(refuse(&machine, late_exit), DrainRefusal::StaleIncarnation { presented: old, current });
    let late_park = DrainEvent::ParkRequested { incarnation: old };
    assert_eq!(refuse(&machine, late_park), DrainRefusal::StaleIncarnation { presented: old, current });
}

#[test]
fn shutdown_aborts_a_running_drain() {
    for mode in [AS, PH] {
        let mut machine = running(mode);
        let effects = accept(&mut machine, DrainEvent::Shutdown);
        assert_eq!(effects, vec![DrainEffect::AbortDrain { incarnation: DrainIncarnation(1) }]);
        assert_eq!(machine.phase(), DrainPhase::Stopped { reason: DrainExitReason::SessionShutdown });
    }
}

#[test]
fn shutdown_always_succeeds_and_is_idempotent() {
    let states = [
        DrainMachine::new(),
        stopped_by(AS, DrainExitReason::Dismissed),
        stopped_by(PH, DrainExitReason::Failed),
        stopped_by(PH, DrainExitReason::Aborted),
    ];
    for mut machine in states {
        assert!(accept(&mut machine, DrainEvent::Shutdown).is_empty());
        assert_eq!(machine.phase(), DrainPhase::Stopped { reason: DrainExitReason::SessionShutdown });
        assert_eq!(machine.desired(), None, "a session going away wants no drain");
        let before = machine.clone();
        assert!(accept(&mut machine, DrainEvent::Shutdown).is_empty());
        assert_eq!(machine, before);
    }
}

#[test]
fn a_notification_while_busy_is_kept_for_the_park_decision() {
    let mut machine = running(AS);
    assert!(accept(&mut machine, DrainEvent::InboxNotified).is_empty());
    assert!(machine.signal_pending());
    // A second notification coalesces with the first.
    assert!(accept(&mut machine, DrainEvent::InboxNotified).is_empty());
    let effects = accept_park(&mut machine);
    assert_eq!(effects, vec![DrainEffect::ContinueDraining]);
    assert!(!machine.signal_pending() && !machine.parked());
}

#[test]
fn an_empty_inbox_parks_and_a_notification_wakes() {
    let mut machine = running(PH);
    assert_eq!(accept_park(&mut machine), vec![DrainEffect::Park]);
    assert!(machine.parked());
    let effects = accept(&mut machine, DrainEvent::InboxNotified);
    assert_eq!(effects, vec![DrainEffect::WakeDrain { incarnation: DrainIncarnation(1) }]);
    assert!(!machine.parked() && !machine.signal_pending());
}

#[test]
fn a_parked_drain_cannot_park_again() {
    let mut machine = running(PH);
    accept_park(&mut machine);
    let refusal = refuse(&machine, park(&machine));
    assert_eq!(refusal, DrainRefusal::AlreadyParked { incarnation: DrainIncarnation(1) });
}

#[test]
fn a_notification_without_a_drain_is_seen_by_the_next_one() {
    let mut machine = DrainMachine::new();
    assert!(accept(&mut machine, DrainEvent::InboxNotified).is_empty());
    accept(&mut machine, reconcile(Some(AS)));
    assert_eq!(accept_park(&mut machine), vec![DrainEffect::ContinueDraining]);
}

#[test]
fn aborting_a_parked_drain_leaves_nothing_parked() {
    let mut machine = running(PH);
    accept_park(&mut machine);
    accept(&mut machine, reconcile(Some(AS)));
    assert!(!machine.parked());
    assert_eq!(accept_park(&mut machine), vec![DrainEffect::Park]);
}

/// Every interleaving of notifications, park requests, reconciles, exits,
/// respawns and shutdowns (up to a length) is explored: a notification is
/// always delivered (by ContinueDraining or by WakeDrain) before any task can
/// sleep on it, every reached state passes `check`, and at most one task runs.
#[test]
fn no_interleaving_loses_a_wakeup() {
    const DEPTH: usize = 7;
    let mut explored = 0_u32;
    let mut stack = vec![(running(PH), false, 0_usize)];
    while let Some((machine, undelivered, depth)) = stack.pop() {
        explored += 1;
        assert!(!(machine.parked() && undelivered), "lost wakeup: {machine}");
        assert_eq!(machine.check(), Ok(()));
        if depth == DEPTH {
            continue;
        }
        let events = [
            DrainEvent::InboxNotified,
            park(&machine),
            reconcile(None),
            reconcile(Some(AS)),
            reconcile(Some(PH)),
            exited(&machine, DrainExitReason::Failed),
            exited(&machine, DrainExitReason::Dismissed),
            DrainEvent::Respawn,
            DrainEvent::Shutdown,
        ];
        for event in events {
            let mut next = machine.clone();
            let Ok(effects) = next.apply(NOW, event) else { continue };
            let delivered =
                effects.iter().any(|e| matches!(e, DrainEffect::ContinueDraining | DrainEffect::WakeDrain { .. }));
            let spawns = effects.iter().filter(|e| matches!(e, DrainEffect::SpawnDrain { .. })).count();
            let aborts = effects.iter().filter(|e| matches!(e, DrainEffect::AbortDrain { .. })).count();
            assert!(spawns <= 1 && (spawns == 0 || !machine.phase().is_running() || aborts == 1), "two tasks");
            let notified = event == DrainEvent::InboxNotified;
            stack.push((next, (undelivered || notified) && !delivered, depth + 1));
        }
    }
    assert!(explored > 100, "explored only {explored} states");
}

#[test]
fn check_names_each_violation() {
    use DrainPhase as P;
    let i1 = DrainIncarnation(1);
    let cases = [
        (
            DrainMachine::from_parts(P::Running { mode: PH }, Some(PH), i1, 0, true, true),
            DrainViolation::LostWakeup { incarnation: i1 },
        ),
        (
            DrainMachine::from_parts(P::Inactive, Some(PH), i1, 0, false, true),
            DrainViolation::ParkedWhileNotRunning { phase: P::Inactive },
        ),
        (
            DrainMachine::from_parts(P::ExitedRespawnable, Some(AS), i1, 0, false, false),
            DrainViolation::RespawnableWithoutPersistentHost { last_mode: Some(AS) },
        ),
        (
            DrainMachine::from_parts(P::Running { mode: AS }, Some(PH), i1, 0, false, false),
            DrainViolation::RunningModeMismatch { running: AS, last_mode: Some(PH) },
        ),
        (
            DrainMachine::from_parts(P::Running { mode: AS }, Some(AS), DrainIncarnation(0), 0, false, false),
            DrainViolation::RunningWithoutSpawn { mode: AS },
        ),
        (
            DrainMachine::from_parts(P::Running { mode: PH }, Some(PH), i1, DRAIN_RESPAWNS_MAX + 1, false, false),
            DrainViolation::RespawnBudgetExceeded { respawns: DRAIN_RESPAWNS_MAX + 1 },
        ),
        (
            DrainMachine::from_parts(P::Running { mode: PH }, Some(PH), i1, 0, false, false).with_desired(Some(AS)),
            DrainViolation::RunningUndesired { running: PH, desired: Some(AS) },
        ),
    ];
    for (machine, violation) in cases {
        assert_eq!(machine.check(), Err(violation), "{machine:?}");
        assert!(!violation.to_string().is_empty());
    }
}

#[test]
fn refusals_explain_themselves() {
    let stale = DrainRefusal::StaleIncarnation { presented: DrainIncarnation(1), current: DrainIncarnation(2) };
    assert_eq!(stale.to_string(), "report from drain d1, but the current drain is d2");
    let not_running = DrainRefusal::NotRunning { phase: DrainPhase::Stopped { reason: DrainExitReason::Dismissed } };
    assert_eq!(not_running.to_string(), "no drain task is running (phase Stopped(Dismissed))");
}
