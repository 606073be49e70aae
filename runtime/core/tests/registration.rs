//! The registration machine: every transition and every refusal.
//!
//! spec: specs/registration.md

use burrow_core::registration::{
    OBLIGATIONS_MAX, Obligation, ObligationSet, RegistrationEffect, RegistrationEvent, RegistrationMachine,
    RegistrationPhase, RegistrationRefusal, RegistrationViolation, UNREGISTER_GRACE_MS_DEFAULT,
    UNREGISTER_GRACE_MS_MAX,
};
use burrow_core::{Binding, EpochId, Generation, Millis};

const NOW: Millis = Millis(1_000);
const EPOCH: EpochId = EpochId(7);
const G0: Generation = Generation(0);
const G1: Generation = Generation(1);
const G2: Generation = Generation(2);
const G3: Generation = Generation(3);

type Phase = RegistrationPhase;
type Event = RegistrationEvent;
type Effect = RegistrationEffect;
type Refusal = RegistrationRefusal;

fn bound(generation: Generation) -> Binding {
    Binding { epoch: EPOCH, generation }
}

fn accept_at(machine: &mut RegistrationMachine, now: Millis, event: Event) -> Vec<Effect> {
    let effects = machine.apply(now, event).unwrap_or_else(|r| panic!("{event:?} refused: {r}"));
    assert_eq!(machine.check(), Ok(()), "invariant broken after {event:?}");
    effects
}

fn accept(machine: &mut RegistrationMachine, event: Event) -> Vec<Effect> {
    accept_at(machine, NOW, event)
}

/// Applies an event that must be refused and asserts that nothing changed.
fn refuse(machine: &RegistrationMachine, event: Event) -> Refusal {
    let mut after = machine.clone();
    let refusal = after.apply(NOW, event).expect_err("event should be refused");
    assert_eq!(&after, machine, "refused {event:?} changed the machine");
    refusal
}

fn names(effects: &[Effect]) -> Vec<&'static str> {
    effects.iter().map(Effect::name).collect()
}

fn queuing() -> RegistrationMachine {
    let mut machine = RegistrationMachine::new();
    accept(&mut machine, Event::Prepare { epoch: EPOCH });
    machine
}

fn attaching() -> RegistrationMachine {
    let mut machine = queuing();
    accept(&mut machine, Event::BeginAttach);
    machine
}

fn active() -> RegistrationMachine {
    let mut machine = attaching();
    accept(&mut machine, Event::AttachCompleted { generation: G1 });
    machine
}

fn unregistering_from_active() -> RegistrationMachine {
    let mut machine = active();
    accept(&mut machine, Event::BeginUnregister);
    machine
}

fn unregistered() -> RegistrationMachine {
    let mut machine = queuing();
    accept(&mut machine, Event::BeginUnregister);
    accept(&mut machine, Event::ObligationClosed(Obligation::StopDrain));
    accept(&mut machine, Event::ObligationClosed(Obligation::ResolveWaiters));
    accept(&mut machine, Event::CommitUnregister);
    machine
}

const STOP_LOOP_G1: Obligation = Obligation::StopLoop { generation: G1 };

#[test]
fn a_new_machine_is_unprepared_with_the_default_grace() {
    let machine = RegistrationMachine::new();
    assert_eq!(machine.phase(), Phase::Unprepared);
    assert_eq!(machine.binding(), None);
    assert_eq!(machine.grace_ms(), UNREGISTER_GRACE_MS_DEFAULT);
    assert_eq!(UNREGISTER_GRACE_MS_DEFAULT, 2_000);
    assert_eq!(machine.check(), Ok(()));
    assert_eq!(RegistrationMachine::default(), machine);
}

#[test]
fn prepare_fixes_the_epoch_and_issues_the_first_binding() {
    let mut machine = RegistrationMachine::new();
    let effects = accept(&mut machine, Event::Prepare { epoch: EPOCH });
    assert_eq!(effects, vec![Effect::BindingIssued { binding: bound(G0) }]);
    assert_eq!(machine.phase(), Phase::Queuing);
    assert_eq!(machine.binding(), Some(bound(G0)));
}

#[test]
fn prepare_is_idempotent_and_keeps_the_epoch() {
    for mut machine in [queuing(), attaching(), active()] {
        let before = machine.clone();
        let current = machine.binding().expect("prepared");
        let effects = accept(&mut machine, Event::Prepare { epoch: EpochId(99) });
        assert_eq!(effects, vec![Effect::BindingIssued { binding: current }]);
        assert_eq!(machine, before, "prepare changed {}", before.phase());
    }
}

#[test]
fn begin_attach_reserves_a_generation_and_spawns_one_loop() {
    let mut machine = queuing();
    let effects = accept(&mut machine, Event::BeginAttach);
    assert_eq!(effects, vec![Effect::SpawnLoop { binding: bound(G1) }]);
    assert_eq!(machine.phase(), Phase::Attaching { generation: G1 });
    // Handles minted before the attach stay valid until it completes.
    assert_eq!(machine.binding(), Some(bound(G0)));
}

#[test]
fn a_second_attach_is_refused_while_one_is_in_flight() {
    let machine = attaching();
    assert_eq!(refuse(&machine, Event::BeginAttach), Refusal::AttachInFlight { generation: G1 });
}

#[test]
fn attach_is_refused_while_a_live_loop_is_attached() {
    let machine = active();
    assert_eq!(refuse(&machine, Event::BeginAttach), Refusal::AlreadyAttached { generation: G1 });
}

#[test]
fn attach_needs_a_registered_session() {
    for machine in [RegistrationMachine::new(), unregistered()] {
        let phase = machine.phase();
        assert_eq!(refuse(&machine, Event::BeginAttach), Refusal::NotPrepared { phase });
    }
}

#[test]
fn attach_completed_activates_the_loop_and_wakes_it() {
    let mut machine = attaching();
    let effects = accept(&mut machine, Event::AttachCompleted { generation: G1 });
    assert_eq!(effects, vec![Effect::WakeLoop { binding: bound(G1) }]);
    assert_eq!(machine.phase(), Phase::Active { generation: G1 });
    assert_eq!(machine.binding(), Some(bound(G1)));
}

#[test]
fn attach_reports_are_fenced_by_generation() {
    let machine = attaching();
    for event in [Event::AttachCompleted { generation: G2 }, Event::AttachFailed { generation: G0 }] {
        let presented = match event {
            Event::AttachCompleted { generation } | Event::AttachFailed { generation } => generation,
            _ => unreachable!(),
        };
        assert_eq!(refuse(&machine, event), Refusal::StaleLoop { presented, current: G1 });
    }
}

#[test]
fn attach_reports_need_an_attach_in_flight() {
    for machine in [RegistrationMachine::new(), queuing(), active(), unregistered()] {
        let phase = machine.phase();
        for event in [Event::AttachCompleted { generation: G1 }, Event::AttachFailed { generation: G1 }] {
            assert_eq!(refuse(&machine, event), Refusal::NoAttachInFlight { phase });
        }
    }
}

#[test]
fn a_failed_attach_returns_to_queuing_and_burns_its_generation() {
    let mut machine = attaching();
    assert!(accept(&mut machine, Event::AttachFailed { generation: G1 }).is_empty());
    assert_eq!(machine.phase(), Phase::Queuing);
    assert_eq!(machine.binding(), Some(bound(G0)));
    let effects = accept(&mut machine, Event::BeginAttach);
    assert_eq!(effects, vec![Effect::SpawnLoop { binding: bound(G2) }]);
    // A zombie loop of the failed attach can neither complete nor kill the new one.
    assert_eq!(
        refuse(&machine, Event::AttachCompleted { generation: G1 }),
        Refusal::StaleLoop { presented: G1, current: G2 }
    );
    assert_eq!(
        refuse(&machine, Event::LoopExited { generation: G1 }),
        Refusal::StaleLoop { presented: G1, current: G2 }
    );
}

#[test]
fn a_dead_attachment_goes_back_to_queuing_and_the_next_attach_repairs_it() {
    let mut machine = active();
    assert!(accept(&mut machine, Event::LoopExited { generation: G1 }).is_empty());
    assert_eq!(machine.phase(), Phase::Queuing);
    assert_eq!(accept(&mut machine, Event::BeginAttach), vec![Effect::SpawnLoop { binding: bound(G2) }]);
    assert_eq!(
        accept(&mut machine, Event::AttachCompleted { generation: G2 }),
        vec![Effect::WakeLoop { binding: bound(G2) }]
    );
}

#[test]
fn a_loop_dying_during_its_attach_counts_as_a_failed_attach() {
    let mut machine = attaching();
    assert!(accept(&mut machine, Event::LoopExited { generation: G1 }).is_empty());
    assert_eq!(machine.phase(), Phase::Queuing);
}

#[test]
fn loop_exits_are_fenced_and_need_a_loop() {
    let machine = active();
    assert_eq!(
        refuse(&machine, Event::LoopExited { generation: G0 }),
        Refusal::StaleLoop { presented: G0, current: G1 }
    );
    let mut after_exit = active();
    accept(&mut after_exit, Event::LoopExited { generation: G1 });
    for machine in [RegistrationMachine::new(), queuing(), after_exit, unregistered()] {
        let phase = machine.phase();
        assert_eq!(refuse(&machine, Event::LoopExited { generation: G1 }), Refusal::NoLiveLoop { phase });
    }
}

#[test]
fn rebind_mints_a_new_generation_and_stales_old_handles() {
    let mut machine = queuing();
    assert_eq!(accept(&mut machine, Event::Rebind), vec![Effect::BindingIssued { binding: bound(G1) }]);
    assert_eq!(machine.phase(), Phase::Queuing);
    assert_eq!(
        machine.check_binding(bound(G0)),
        Err(Refusal::StaleBinding { presented: bound(G0), current: bound(G1) })
    );

    // While a loop is live it keeps its own generation for exit fencing.
    let mut machine = active();
    assert_eq!(accept(&mut machine, Event::Rebind), vec![Effect::BindingIssued { binding: bound(G2) }]);
    assert_eq!(machine.phase(), Phase::Active { generation: G1 });
    assert!(accept(&mut machine, Event::LoopExited { generation: G1 }).is_empty());
    assert_eq!(accept(&mut machine, Event::BeginAttach), vec![Effect::SpawnLoop { binding: bound(G3) }]);
}

#[test]
fn rebind_is_refused_during_an_attach_and_without_registration() {
    assert_eq!(refuse(&attaching(), Event::Rebind), Refusal::AttachInFlight { generation: G1 });
    for machine in [RegistrationMachine::new(), unregistered()] {
        let phase = machine.phase();
        assert_eq!(refuse(&machine, Event::Rebind), Refusal::NotPrepared { phase });
    }
}

#[test]
fn begin_unregister_from_active_opens_all_three_obligations() {
    let mut machine = active();
    let effects = accept(&mut machine, Event::BeginUnregister);
    let deadline = NOW.saturating_add(UNREGISTER_GRACE_MS_DEFAULT);
    assert_eq!(
        effects,
        vec![
            Effect::CloseAdmission,
            Effect::StopLoop { generation: G1 },
            Effect::StopDrain,
            Effect::ResolveAllWaiters,
            Effect::ArmGraceTimer { deadline },
        ]
    );
    assert_eq!(machine.phase(), Phase::Unregistering);
    assert_eq!(machine.open_obligations(), vec![STOP_LOOP_G1, Obligation::StopDrain, Obligation::ResolveWaiters]);
    assert_eq!(machine.grace_deadline(), Some(deadline));
}

#[test]
fn begin_unregister_without_a_loop_opens_no_loop_obligation() {
    let mut machine = queuing();
    let effects = accept(&mut machine, Event::BeginUnregister);
    assert_eq!(names(&effects), ["CloseAdmission", "StopDrain", "ResolveAllWaiters", "ArmGraceTimer"]);
    assert_eq!(machine.open_obligations(), vec![Obligation::StopDrain, Obligation::ResolveWaiters]);
}

#[test]
fn begin_unregister_during_an_attach_covers_the_loop_being_spawned() {
    let mut machine = attaching();
    let effects = accept(&mut machine, Event::BeginUnregister);
    assert!(effects.contains(&Effect::StopLoop { generation: G1 }));
    assert_eq!(machine.open_obligations()[0], STOP_LOOP_G1);
    // The attach's own report is then refused, telling its task to stand down.
    assert!(matches!(
        refuse(&machine, Event::AttachCompleted { generation: G1 }),
        Refusal::UnregisterInProgress { .. }
    ));
}

#[test]
fn begin_unregister_needs_a_registration_and_is_idempotent_after_commit() {
    let machine = RegistrationMachine::new();
    assert_eq!(refuse(&machine, Event::BeginUnregister), Refusal::NotPrepared { phase: Phase::Unprepared });
    let mut machine = unregistered();
    let before = machine.clone();
    assert!(accept(&mut machine, Event::BeginUnregister).is_empty());
    assert_eq!(machine, before);
}

#[test]
fn begin_unregister_again_reissues_the_open_work_under_the_same_deadline() {
    let mut machine = unregistering_from_active();
    accept(&mut machine, Event::ObligationClosed(Obligation::StopDrain));
    let deadline = machine.grace_deadline();
    let later = NOW.saturating_add(500);
    let effects = accept_at(&mut machine, later, Event::BeginUnregister);
    assert_eq!(
        effects,
        vec![
            Effect::CloseAdmission,
            Effect::StopLoop { generation: G1 },
            Effect::ResolveAllWaiters,
            Effect::ArmGraceTimer { deadline: deadline.expect("armed") },
        ]
    );
    assert_eq!(machine.grace_deadline(), deadline, "a retry never extends the grace");
}

#[test]
fn registering_during_an_unregister_is_refused_naming_the_open_obligations() {
    let mut machine = unregistering_from_active();
    accept(&mut machine, Event::ObligationClosed(Obligation::ResolveWaiters));
    let open = vec![STOP_LOOP_G1, Obligation::StopDrain];
    let events = [
        Event::Prepare { epoch: EPOCH },
        Event::BeginAttach,
        Event::AttachCompleted { generation: G1 },
        Event::AttachFailed { generation: G1 },
        Event::Rebind,
    ];
    for event in events {
        assert_eq!(refuse(&machine, event), Refusal::UnregisterInProgress { open: open.clone() }, "{event:?}");
    }
    let refusal = refuse(&machine, Event::Prepare { epoch: EPOCH });
    assert_eq!(refusal.to_string(), "unregister in progress; open obligations: stop loop g1, stop drain");
}

#[test]
fn obligations_close_in_any_order_and_the_last_one_reports_commit_ready() {
    let all = [STOP_LOOP_G1, Obligation::StopDrain, Obligation::ResolveWaiters];
    let orders = [[0, 1, 2], [0, 2, 1], [1, 0, 2], [1, 2, 0], [2, 0, 1], [2, 1, 0]];
    for order in orders {
        let mut machine = unregistering_from_active();
        for (step, index) in order.iter().enumerate() {
            let effects = accept(&mut machine, Event::ObligationClosed(all[*index]));
            let last = step == OBLIGATIONS_MAX - 1;
            assert_eq!(effects, if last { vec![Effect::CommitReady] } else { vec![] }, "{order:?}");
        }
        assert!(machine.open_obligations().is_empty());
    }
}

#[test]
fn closing_an_obligation_that_is_not_open_is_refused() {
    let mut machine = unregistering_from_active();
    accept(&mut machine, Event::ObligationClosed(Obligation::StopDrain));
    for obligation in [Obligation::StopDrain, Obligation::StopLoop { generation: G2 }] {
        let event = Event::ObligationClosed(obligation);
        assert_eq!(refuse(&machine, event), Refusal::ObligationNotOpen { obligation });
    }
    let without_loop = {
        let mut machine = queuing();
        accept(&mut machine, Event::BeginUnregister);
        machine
    };
    let event = Event::ObligationClosed(STOP_LOOP_G1);
    assert_eq!(refuse(&without_loop, event), Refusal::ObligationNotOpen { obligation: STOP_LOOP_G1 });
}

#[test]
fn obligation_and_commit_events_need_an_unregister() {
    for machine in [RegistrationMachine::new(), queuing(), attaching(), active(), unregistered()] {
        let phase = machine.phase();
        let event = Event::ObligationClosed(Obligation::StopDrain);
        assert_eq!(refuse(&machine, event), Refusal::NotUnregistering { phase });
        assert_eq!(refuse(&machine, Event::CommitUnregister), Refusal::NotUnregistering { phase });
    }
}

#[test]
fn a_loop_exit_during_unregister_closes_the_loop_obligation() {
    let mut machine = unregistering_from_active();
    assert_eq!(
        refuse(&machine, Event::LoopExited { generation: G0 }),
        Refusal::StaleLoop { presented: G0, current: G1 }
    );
    assert!(accept(&mut machine, Event::LoopExited { generation: G1 }).is_empty());
    assert_eq!(machine.open_obligations(), vec![Obligation::StopDrain, Obligation::ResolveWaiters]);
    let phase = Phase::Unregistering;
    assert_eq!(refuse(&machine, Event::LoopExited { generation: G1 }), Refusal::NoLiveLoop { phase });
}

#[test]
fn commit_is_refused_while_obligations_are_open() {
    let mut machine = unregistering_from_active();
    accept(&mut machine, Event::ObligationClosed(Obligation::ResolveWaiters));
    let refusal = refuse(&machine, Event::CommitUnregister);
    assert_eq!(refusal, Refusal::ObligationsOpen { open: vec![STOP_LOOP_G1, Obligation::StopDrain] });
    assert_eq!(refusal.to_string(), "cannot commit unregister; open obligations: stop loop g1, stop drain");
}

#[test]
fn commit_after_every_obligation_closed_unregisters() {
    let mut machine = unregistering_from_active();
    for obligation in [STOP_LOOP_G1, Obligation::StopDrain, Obligation::ResolveWaiters] {
        accept(&mut machine, Event::ObligationClosed(obligation));
    }
    let effects = accept(&mut machine, Event::CommitUnregister);
    assert_eq!(effects, vec![Effect::Released { binding: bound(G1) }]);
    assert_eq!(machine.phase(), Phase::Unregistered);
    assert_eq!(machine.grace_deadline(), None);
}

#[test]
fn ticks_before_the_deadline_or_outside_an_unregister_do_nothing() {
    let mut machine = unregistering_from_active();
    let before = machine.clone();
    let just_before = NOW.saturating_add(UNREGISTER_GRACE_MS_DEFAULT - 1);
    assert!(accept_at(&mut machine, just_before, Event::Tick).is_empty());
    assert_eq!(machine, before);
    for mut machine in [RegistrationMachine::new(), queuing(), active(), unregistered()] {
        let before = machine.clone();
        assert!(accept_at(&mut machine, Millis(u64::MAX), Event::Tick).is_empty());
        assert_eq!(machine, before);
    }
}

#[test]
fn a_tick_at_the_deadline_forces_every_open_obligation() {
    let mut machine = unregistering_from_active();
    let deadline = machine.grace_deadline().expect("armed");
    let effects = accept_at(&mut machine, deadline, Event::Tick);
    assert_eq!(
        effects,
        vec![
            Effect::AbortLoop { generation: G1 },
            Effect::AbortDrain,
            Effect::ForceResolveWaiters,
            Effect::CommitReady,
        ]
    );
    assert!(machine.open_obligations().is_empty());
    assert_eq!(names(&accept(&mut machine, Event::CommitUnregister)), ["Released"]);
}

#[test]
fn a_tick_forces_only_what_is_still_open() {
    let mut machine = unregistering_from_active();
    accept(&mut machine, Event::ObligationClosed(Obligation::StopDrain));
    accept(&mut machine, Event::ObligationClosed(Obligation::ResolveWaiters));
    let effects = accept_at(&mut machine, Millis(u64::MAX), Event::Tick);
    assert_eq!(names(&effects), ["AbortLoop", "CommitReady"]);
    // A late join report after the abort is refused harmlessly.
    let phase = Phase::Unregistering;
    assert_eq!(refuse(&machine, Event::LoopExited { generation: G1 }), Refusal::NoLiveLoop { phase });
}

#[test]
fn the_grace_is_configurable_within_its_bound() {
    let mut machine = RegistrationMachine::with_grace_ms(50);
    accept(&mut machine, Event::Prepare { epoch: EPOCH });
    accept(&mut machine, Event::BeginUnregister);
    assert_eq!(machine.grace_deadline(), Some(NOW.saturating_add(50)));
    let too_long = std::panic::catch_unwind(|| RegistrationMachine::with_grace_ms(UNREGISTER_GRACE_MS_MAX + 1));
    assert!(too_long.is_err());
}

#[test]
fn prepare_after_unregister_re_registers_under_a_new_generation() {
    let mut machine = unregistered();
    let old = machine.binding().expect("kept");
    let effects = accept(&mut machine, Event::Prepare { epoch: EpochId(99) });
    let fresh = Binding { epoch: EPOCH, generation: Generation(old.generation.0 + 1) };
    assert_eq!(effects, vec![Effect::BindingIssued { binding: fresh }]);
    assert_eq!(machine.phase(), Phase::Queuing);
    assert_eq!(machine.check_binding(old), Err(Refusal::StaleBinding { presented: old, current: fresh }));
}

#[test]
fn check_binding_accepts_only_the_current_binding() {
    let machine = active();
    assert_eq!(machine.check_binding(bound(G1)), Ok(()));
    let other_epoch = Binding { epoch: EpochId(8), generation: G1 };
    for presented in [bound(G0), bound(G2), other_epoch] {
        assert_eq!(machine.check_binding(presented), Err(Refusal::StaleBinding { presented, current: bound(G1) }));
    }
    // Waiter cleanup still runs while an unregister drains.
    assert_eq!(unregistering_from_active().check_binding(bound(G1)), Ok(()));
    for machine in [RegistrationMachine::new(), unregistered()] {
        let phase = machine.phase();
        assert_eq!(machine.check_binding(bound(G0)), Err(Refusal::NotPrepared { phase }));
    }
}

#[test]
fn recovery_rebuilds_each_persisted_phase() {
    let cases = [
        (Phase::Unprepared, None, Phase::Unprepared),
        (Phase::Queuing, Some(bound(G0)), Phase::Queuing),
        (Phase::Attaching { generation: G2 }, Some(bound(G1)), Phase::Queuing),
        (Phase::Active { generation: G1 }, Some(bound(G1)), Phase::Queuing),
        (Phase::Unregistering, Some(bound(G1)), Phase::Unregistering),
        (Phase::Unregistered, Some(bound(G1)), Phase::Unregistered),
    ];
    for (persisted, binding, expected) in cases {
        let machine = RegistrationMachine::recover_from(persisted, binding, NOW, UNREGISTER_GRACE_MS_DEFAULT)
            .unwrap_or_else(|v| panic!("{persisted} did not recover: {v}"));
        assert_eq!(machine.phase(), expected, "{persisted}");
        assert_eq!(machine.binding(), binding);
        assert!(machine.open_obligations().is_empty());
    }
    // The dead in-flight attach keeps its generation burnt.
    let machine = RegistrationMachine::recover_from(Phase::Attaching { generation: G2 }, Some(bound(G1)), NOW, 2_000)
        .expect("recovers");
    assert_eq!(machine.generation_issued(), G2);
}

#[test]
fn a_crash_mid_unregister_never_leaves_the_session_stuck() {
    let mut live = unregistering_from_active();
    accept(&mut live, Event::ObligationClosed(Obligation::StopDrain));
    // The process dies; the store kept the phase and the binding.
    let (phase, binding) = (live.phase(), live.binding());
    let restart = Millis(50_000);
    let mut machine = RegistrationMachine::recover_from(phase, binding, restart, 2_000).expect("recovers");
    let effects = accept_at(&mut machine, restart, Event::BeginUnregister);
    assert_eq!(effects, vec![Effect::CloseAdmission, Effect::CommitReady]);
    assert_eq!(names(&accept_at(&mut machine, restart, Event::CommitUnregister)), ["Released"]);
    assert_eq!(machine.phase(), Phase::Unregistered);
}

#[test]
fn recovery_names_a_corrupt_persisted_pair() {
    let cases = [
        (
            Phase::Active { generation: G1 },
            None,
            RegistrationViolation::UnboundWhilePrepared { phase: Phase::Active { generation: G1 } },
        ),
        (Phase::Unprepared, Some(bound(G0)), RegistrationViolation::BoundWhileUnprepared { binding: bound(G0) }),
        (
            Phase::Active { generation: G2 },
            Some(bound(G1)),
            RegistrationViolation::LoopAheadOfBinding { loop_generation: G2, binding: bound(G1) },
        ),
    ];
    for (phase, binding, violation) in cases {
        assert_eq!(RegistrationMachine::recover_from(phase, binding, NOW, 2_000), Err(violation));
    }
    assert_eq!(
        RegistrationMachine::recover_from(Phase::Queuing, Some(bound(G0)), NOW, UNREGISTER_GRACE_MS_MAX + 1),
        Err(RegistrationViolation::GraceTooLong { grace_ms: UNREGISTER_GRACE_MS_MAX + 1 })
    );
}

#[test]
fn check_names_each_violation() {
    use RegistrationViolation as V;
    let some_open = ObligationSet::from_open(&[Obligation::StopDrain]);
    let none = ObligationSet::none();
    let b1 = Some(bound(G1));
    let parts = |phase, binding, issued, open, deadline| {
        RegistrationMachine::from_parts(phase, binding, issued, open, deadline, UNREGISTER_GRACE_MS_DEFAULT)
    };
    let cases = [
        (
            parts(Phase::Active { generation: G1 }, None, G1, none, None),
            V::UnboundWhilePrepared { phase: Phase::Active { generation: G1 } },
        ),
        (parts(Phase::Unprepared, b1, G1, none, None), V::BoundWhileUnprepared { binding: bound(G1) }),
        (
            parts(Phase::Queuing, Some(bound(G2)), G1, none, None),
            V::BindingAheadOfIssued { binding: bound(G2), issued: G1 },
        ),
        (
            parts(Phase::Attaching { generation: G1 }, b1, G2, none, None),
            V::AttachNotNewest { attaching: G1, issued: G2, binding: bound(G1) },
        ),
        // Each half of the rule on its own: the newest generation, but not past the binding; past the binding, but
        // not the newest.
        (
            parts(Phase::Attaching { generation: G2 }, Some(bound(G2)), G2, none, None),
            V::AttachNotNewest { attaching: G2, issued: G2, binding: bound(G2) },
        ),
        (
            parts(Phase::Attaching { generation: G1 }, Some(bound(G0)), G2, none, None),
            V::AttachNotNewest { attaching: G1, issued: G2, binding: bound(G0) },
        ),
        (
            parts(Phase::Active { generation: G2 }, b1, G2, none, None),
            V::LoopAheadOfBinding { loop_generation: G2, binding: bound(G1) },
        ),
        (
            parts(Phase::Unregistered, b1, G1, some_open, None),
            V::CommittedWithOpenObligations { open: vec![Obligation::StopDrain] },
        ),
        (
            parts(Phase::Queuing, b1, G1, some_open, None),
            V::ObligationsOutsideUnregistering { phase: Phase::Queuing, open: vec![Obligation::StopDrain] },
        ),
        (parts(Phase::Unregistering, b1, G1, some_open, None), V::UnregisteringWithoutDeadline),
        (parts(Phase::Queuing, b1, G1, none, Some(NOW)), V::DeadlineOutsideUnregistering { phase: Phase::Queuing }),
        (
            RegistrationMachine::from_parts(Phase::Unprepared, None, G0, none, None, UNREGISTER_GRACE_MS_MAX + 1),
            V::GraceTooLong { grace_ms: UNREGISTER_GRACE_MS_MAX + 1 },
        ),
    ];
    for (machine, violation) in cases {
        assert!(!violation.to_string().is_empty());
        assert_eq!(machine.check(), Err(violation), "{machine:?}");
    }
}

#[test]
fn obligation_sets_are_bounded_and_ordered() {
    let set = ObligationSet::from_open(&[Obligation::ResolveWaiters, STOP_LOOP_G1, Obligation::StopDrain]);
    assert_eq!(set.open(), vec![STOP_LOOP_G1, Obligation::StopDrain, Obligation::ResolveWaiters]);
    assert_eq!(set.open().len(), OBLIGATIONS_MAX);
    assert!(set.contains(STOP_LOOP_G1) && !set.contains(Obligation::StopLoop { generation: G2 }));
    assert_eq!(set.loop_generation(), Some(G1));
    assert!(ObligationSet::none().is_empty());
}

#[test]
fn persisted_types_are_serialisable() {
    fn persisted<T: serde::Serialize + serde::de::DeserializeOwned>() {}
    persisted::<RegistrationPhase>();
    persisted::<Binding>();
}

/// Explores every event sequence up to a depth from a fresh machine: every
/// reached state satisfies `check`, at most one loop spawn is ever in flight,
/// and a refused event never changes the machine.
#[test]
fn every_reachable_state_is_valid() {
    const DEPTH: usize = 6;
    let far = Millis(NOW.0 + UNREGISTER_GRACE_MS_DEFAULT);
    let events = |machine: &RegistrationMachine| {
        let loop_generation = match machine.phase() {
            Phase::Attaching { generation } | Phase::Active { generation } => generation,
            _ => machine.generation_issued(),
        };
        vec![
            (NOW, Event::Prepare { epoch: EPOCH }),
            (NOW, Event::BeginAttach),
            (NOW, Event::AttachCompleted { generation: loop_generation }),
            (NOW, Event::AttachFailed { generation: loop_generation }),
            (NOW, Event::LoopExited { generation: loop_generation }),
            (NOW, Event::Rebind),
            (NOW, Event::BeginUnregister),
            (NOW, Event::ObligationClosed(Obligation::StopLoop { generation: loop_generation })),
            (NOW, Event::ObligationClosed(Obligation::StopDrain)),
            (NOW, Event::ObligationClosed(Obligation::ResolveWaiters)),
            (far, Event::Tick),
            (NOW, Event::CommitUnregister),
        ]
    };
    let mut seen = std::collections::BTreeSet::new();
    let mut stack = vec![(RegistrationMachine::new(), 0_usize)];
    while let Some((machine, depth)) = stack.pop() {
        assert_eq!(machine.check(), Ok(()), "{machine}");
        seen.insert(machine.to_string());
        if depth == DEPTH {
            continue;
        }
        for (now, event) in events(&machine) {
            let mut next = machine.clone();
            match next.apply(now, event) {
                Ok(effects) => {
                    let spawns = effects.iter().filter(|e| matches!(e, Effect::SpawnLoop { .. })).count();
                    assert!(spawns <= 1);
                    if spawns == 1 {
                        assert!(matches!(next.phase(), Phase::Attaching { .. }), "single flight");
                    }
                    stack.push((next, depth + 1));
                }
                Err(_) => assert_eq!(next, machine, "refused {event:?} changed {machine}"),
            }
        }
    }
    assert!(seen.len() > 20, "reached only {} distinct states", seen.len());
}
