//! Completion waiters, outcome classes and cleanup observations (SPEC 2.3).

use burrow_core::completion::{
    CleanupObservation, CleanupRefusal, ErrorInfo, Evidence, FailureCause, FinalizationObservation as F, Outcome,
    OutcomeClass as C, RunResult, TerminalObservation as T, WAITERS_PER_INPUT_MAX, WaiterBook, WaiterRefusal,
    select_class, validate_cleanup,
};
use burrow_core::ids::{Binding, EpochId, Generation, InputId, SessionId};

#[test]
fn class_selection_matrix() {
    let expect = [
        (T::Completed, F::Succeeded, C::Completed),
        (T::Completed, F::Failed, C::CompletedWithFinalizationFailure),
        (T::NoResult, F::Succeeded, C::CompletedWithoutResult),
        (T::NoResult, F::Failed, C::AbandonedWithError),
        (T::CallbackPending, F::Succeeded, C::CallbackPending),
        (T::CallbackPending, F::Failed, C::CompletedWithFinalizationFailure),
        (T::Cancelled, F::Succeeded, C::Cancelled),
        (T::Cancelled, F::Failed, C::Cancelled),
        (T::Abandoned, F::Succeeded, C::Abandoned),
        (T::Abandoned, F::Failed, C::AbandonedWithError),
        (T::Failed, F::Succeeded, C::AbandonedWithError),
        (T::RuntimeTerminated, F::Succeeded, C::RuntimeTerminated),
        (T::RuntimeTerminated, F::Failed, C::RuntimeTerminated),
    ];
    for (t, f, c) in expect {
        assert_eq!(select_class(t, f), c, "{t:?} x {f:?}");
    }
}

#[test]
fn a_failed_finalization_is_never_a_success() {
    for t in T::ALL {
        let c = select_class(t, F::Failed);
        assert!(!matches!(c, C::Completed | C::CompletedWithoutResult | C::CallbackPending), "{t:?} -> {c:?}");
    }
}

#[test]
fn assembly_carries_the_evidence() {
    let ev = Evidence { result: Some(RunResult { output: "hi".into() }), ..Evidence::default() };
    assert_eq!(Outcome::assemble(C::Completed, &ev).unwrap(), Outcome::Completed(RunResult { output: "hi".into() }));
    let ev = Evidence { callback: Some(("tool".into(), "{}".into())), ..Evidence::default() };
    assert_eq!(Outcome::assemble(C::CallbackPending, &ev).unwrap().class(), C::CallbackPending);
    let err = ErrorInfo::new(FailureCause::BoundaryCommitFailed, "disk");
    let ev = Evidence {
        result: Some(RunResult { output: "secret".into() }),
        error: Some(err.clone()),
        ..Evidence::default()
    };
    assert_eq!(
        Outcome::assemble(C::CompletedWithFinalizationFailure, &ev).unwrap(),
        Outcome::CompletedWithFinalizationFailure { error: err },
        "the result is withheld"
    );
}

#[test]
fn evidence_that_does_not_fit_fails_closed() {
    for (class, missing) in [
        (C::Completed, "a result"),
        (C::CallbackPending, "a callback"),
        (C::Abandoned, "a reason"),
        (C::RuntimeTerminated, "a reason"),
        (C::CompletedWithFinalizationFailure, "error metadata"),
    ] {
        let e = Outcome::assemble(class, &Evidence::default()).unwrap_err();
        assert_eq!(e.class, class);
        assert_eq!(e.missing, missing);
    }
    let only_reason = Evidence { reason: Some("r".into()), ..Evidence::default() };
    assert_eq!(Outcome::assemble(C::AbandonedWithError, &only_reason).unwrap_err().missing, "error metadata");
}

#[test]
fn waiters_register_and_resolve_once() {
    let mut book = WaiterBook::new();
    let a = book.register(InputId(1)).unwrap();
    let b = book.register(InputId(1)).unwrap();
    assert_ne!(a, b);
    assert_eq!(book.pending(), 2);
    assert_eq!(book.take(InputId(1)), vec![a, b]);
    assert!(book.take(InputId(1)).is_empty(), "a second resolution finds nobody");
    assert_eq!(book.resolved_total(), 2);
    assert!(book.count_is_consistent());
}

#[test]
fn transfer_moves_waiters_to_the_replacing_input() {
    let mut book = WaiterBook::new();
    let a = book.register(InputId(1)).unwrap();
    let b = book.register(InputId(2)).unwrap();
    book.transfer(InputId(1), InputId(2));
    assert!(book.waiters_of(InputId(1)).is_empty());
    assert_eq!(book.waiters_of(InputId(2)), vec![a, b]);
    assert_eq!(book.pending(), 2);
}

#[test]
fn per_input_bound_is_a_typed_refusal() {
    let mut book = WaiterBook::new();
    for _ in 0..WAITERS_PER_INPUT_MAX {
        book.register(InputId(1)).unwrap();
    }
    let before = book.clone();
    assert_eq!(
        book.register(InputId(1)),
        Err(WaiterRefusal::PerInputLimit { input: InputId(1), limit: WAITERS_PER_INPUT_MAX })
    );
    assert_eq!(book, before);
}

#[test]
fn cleanup_observations_are_refused_for_another_session_or_binding() {
    let binding = Binding { epoch: EpochId(1), generation: Generation(2) };
    let obs = CleanupObservation { session: SessionId(5), binding, class: Some(C::Completed) };
    assert!(validate_cleanup(&obs, SessionId(5), binding).is_ok());
    assert_eq!(
        validate_cleanup(&obs, SessionId(6), binding),
        Err(CleanupRefusal::OtherSession { owner: SessionId(5), presented_to: SessionId(6) })
    );
    let later = Binding { epoch: EpochId(1), generation: Generation(3) };
    assert_eq!(
        validate_cleanup(&obs, SessionId(5), later),
        Err(CleanupRefusal::StaleBinding { minted: binding, current: later })
    );
    let other_epoch = Binding { epoch: EpochId(2), generation: Generation(2) };
    assert!(validate_cleanup(&obs, SessionId(5), other_epoch).is_err());
}
