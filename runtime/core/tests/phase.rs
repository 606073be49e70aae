//! The phase machine, rule by rule (SPEC 2.1).

use burrow_core::phase::{PhaseEvent as E, PhaseMachine, PhaseRefusal, RuntimePhase as P};

fn at(phase: P) -> PhaseMachine {
    let executor = matches!(phase, P::Attached | P::Running);
    let back = if phase == P::Running { Some(P::Attached) } else { None };
    PhaseMachine::from_parts_unchecked(phase, back, false, executor)
}

fn step(m: &mut PhaseMachine, e: E) -> burrow_core::phase::PhaseOutcome {
    m.apply(e).unwrap_or_else(|r| panic!("{e:?} refused in {}: {r}", m.phase()))
}

fn refuse(m: &mut PhaseMachine, e: E) -> PhaseRefusal {
    let before = m.clone();
    let r = m.apply(e).expect_err("expected a refusal");
    assert_eq!(*m, before, "a refusal changes nothing");
    r
}

#[test]
fn expected_transitions() {
    let cases = [
        (P::Initializing, E::Initialize, P::Idle),
        (P::Idle, E::Attach, P::Attached),
        (P::Stopped, E::Attach, P::Attached),
        (P::Attached, E::Detach, P::Idle),
        (P::Attached, E::StartRun, P::Running),
        (P::Idle, E::StartRun, P::Running),
        (P::Running, E::EndRun, P::Attached),
        (P::Idle, E::Retire, P::Retired),
        (P::Attached, E::Retire, P::Retired),
        (P::Idle, E::Stop, P::Stopped),
        (P::Attached, E::Stop, P::Stopped),
        (P::Retired, E::Stop, P::Stopped),
        (P::Initializing, E::Stop, P::Stopped),
        (P::Attached, E::Reset, P::Attached),
        (P::Idle, E::Reset, P::Idle),
        (P::Stopped, E::Reset, P::Idle),
        (P::Retired, E::Recycle, P::Idle),
        (P::Stopped, E::Recover, P::Idle),
        (P::Running, E::Destroy, P::Destroyed),
        (P::Idle, E::Destroy, P::Destroyed),
    ];
    for (from, event, to) in cases {
        let mut m = at(from);
        let _ = step(&mut m, event);
        assert_eq!(m.phase(), to, "{from} --{event:?}-->");
    }
}

#[test]
fn expected_refusals() {
    let cases = [
        (P::Idle, E::Initialize),
        (P::Initializing, E::Attach),
        (P::Running, E::Attach),
        (P::Attached, E::Attach),
        (P::Idle, E::Detach),
        (P::Running, E::Detach),
        (P::Stopped, E::StartRun),
        (P::Running, E::StartRun),
        (P::Idle, E::EndRun),
        (P::Stopped, E::Retire),
        (P::Initializing, E::Retire),
        (P::Running, E::Reset),
        (P::Running, E::Recycle),
        (P::Running, E::Recover),
        (P::Initializing, E::Reset),
        (P::Destroyed, E::Stop),
        (P::Destroyed, E::Attach),
    ];
    for (from, event) in cases {
        let mut m = at(from);
        let _ = refuse(&mut m, event);
    }
}

#[test]
fn refusal_reasons_are_typed() {
    assert_eq!(refuse(&mut at(P::Destroyed), E::Reset), PhaseRefusal::Destroyed);
    assert_eq!(refuse(&mut at(P::Running), E::Reset), PhaseRefusal::RunInFlight { event: E::Reset });
    assert_eq!(refuse(&mut at(P::Attached), E::Attach), PhaseRefusal::AlreadyAttached);
    assert_eq!(refuse(&mut at(P::Idle), E::Detach), PhaseRefusal::NoExecutor);
    assert_eq!(refuse(&mut at(P::Idle), E::EndRun), PhaseRefusal::NotAllowed { phase: P::Idle, event: E::EndRun });
}

#[test]
fn a_run_returns_to_its_pre_run_phase() {
    let mut m = at(P::Retired);
    let _ = step(&mut m, E::Attach);
    let _ = step(&mut m, E::StartRun);
    assert_eq!(m.run_returns_to(), Some(P::Retired));
    let _ = step(&mut m, E::EndRun);
    assert_eq!(m.phase(), P::Retired);
    assert!(m.executor_attached());
}

#[test]
fn retire_during_a_run_is_sticky_and_closes_admission() {
    let mut m = at(P::Running);
    assert!(m.admits_inputs());
    let o = step(&mut m, E::Retire);
    assert!(o.retire_deferred);
    assert!(!m.admits_inputs());
    assert!(step(&mut m, E::Retire).no_op);
    let _ = step(&mut m, E::EndRun);
    assert_eq!(m.phase(), P::Retired);
}

#[test]
fn stop_during_a_run_is_deferred() {
    let mut m = at(P::Running);
    let o = step(&mut m, E::Stop);
    assert!(o.stop_deferred && !o.stop_now);
    assert!(m.stop_deferred());
    assert!(!m.admits_inputs());
    assert!(step(&mut m, E::Stop).no_op);
    let o = step(&mut m, E::EndRun);
    assert!(o.stop_now);
    assert_eq!(m.phase(), P::Stopped);
    assert!(!m.executor_attached());
}

#[test]
fn stop_and_destroy_repeat_as_no_ops() {
    let mut m = at(P::Stopped);
    assert!(step(&mut m, E::Stop).no_op);
    let mut m = at(P::Destroyed);
    assert!(step(&mut m, E::Destroy).no_op);
}

#[test]
fn predicates_by_phase() {
    let expect = [
        (P::Initializing, false, false),
        (P::Idle, true, true),
        (P::Attached, true, true),
        (P::Running, true, false),
        (P::Retired, false, true),
        (P::Stopped, false, false),
        (P::Destroyed, false, false),
    ];
    for (phase, admits, processes) in expect {
        let m = at(phase);
        assert_eq!(m.admits_inputs(), admits, "{phase} admits");
        assert_eq!(m.processes_queue(), processes, "{phase} processes");
    }
    assert!(!at(P::Idle).can_start_run(), "the loop needs an executor");
    assert!(at(P::Attached).can_start_run());
}

#[test]
fn persisted_phase_follows_spec_5() {
    assert_eq!(P::Attached.persisted(None), P::Idle);
    assert_eq!(P::Running.persisted(Some(P::Attached)), P::Idle);
    assert_eq!(P::Running.persisted(Some(P::Retired)), P::Retired);
    assert_eq!(P::Stopped.persisted(None), P::Stopped);
    assert_eq!(PhaseMachine::from_persisted(P::Attached).phase(), P::Idle);
}

#[test]
fn every_phase_and_event_either_moves_or_refuses_without_change() {
    for phase in P::ALL {
        for event in E::ALL {
            let mut m = at(phase);
            let before = m.clone();
            if m.apply(event).is_err() {
                assert_eq!(m, before);
            }
        }
    }
}
