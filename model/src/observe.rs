//! Translation of what the model's callers, executor and store saw into the observable specification's vocabulary
//! (`burrow-spec`). Only replies, effects and results cross here, never the machine's own fields: the
//! specification judges the outside.

use burrow_core::completion::{Outcome as CoreOutcome, OutcomeClass, OutcomeMismatch};
use burrow_core::protocol::Refusal;
use burrow_core::session::Reply;
use burrow_spec::{AcceptAnswer, Answer, Call, Class, Kind as SpecKind, Observation, Refused, Submission};

use crate::session::{Control, Kind};

/// What a step said to its caller, so that the reply can be turned into an observation.
#[derive(Clone, Debug)]
pub(crate) enum Said {
    /// Nothing a caller sees (the loop, timers, feedback).
    Nothing,
    /// An accept of this submission.
    Accept(Submission),
    /// An accept_and_run of this submission.
    AcceptAndRun(Submission),
    /// A control call.
    Call(Call),
    /// Something the outside saw that the event reports (an executor's report, a deadline): observed once the
    /// machine takes the event, before its effects.
    Seen(Observation),
}

impl Said {
    /// The observation of the call answered by `reply`.
    pub(crate) fn answered(&self, reply: &Reply) -> Option<Observation> {
        match self {
            Said::Nothing => None,
            Said::Accept(submission) => {
                Some(Observation::Accept { submission: submission.clone(), answer: accept_answer(reply) })
            }
            Said::AcceptAndRun(submission) => {
                Some(Observation::AcceptAndRun { submission: submission.clone(), answer: accept_answer(reply) })
            }
            Said::Call(call) => Some(Observation::Call { call: *call, answer: call_answer(reply) }),
            Said::Seen(observation) => Some(observation.clone()),
        }
    }

    /// Whether the answer waits for the input's write (an accept's caller learns whether it was durable).
    pub(crate) fn waits_for_write(&self) -> bool {
        matches!(self, Said::Accept(_) | Said::AcceptAndRun(_))
    }

    /// The observation of the call refused with `refusal`.
    pub(crate) fn refused(&self, refusal: &Refusal) -> Option<Observation> {
        let why = refused(refusal);
        match self {
            Said::Nothing | Said::Seen(_) => None,
            Said::Accept(submission) => {
                Some(Observation::Accept { submission: submission.clone(), answer: AcceptAnswer::Refused(why) })
            }
            Said::AcceptAndRun(submission) => {
                Some(Observation::AcceptAndRun { submission: submission.clone(), answer: AcceptAnswer::Refused(why) })
            }
            Said::Call(call) => Some(Observation::Call { call: *call, answer: Answer::Refused(why) }),
        }
    }
}

fn accept_answer(reply: &Reply) -> AcceptAnswer {
    match reply {
        Reply::Accepted { input, waiter, .. } => AcceptAnswer::Accepted { input: input.0, waiter: waiter.map(|w| w.0) },
        Reply::Deduplicated { existing, waiter } => {
            AcceptAnswer::Deduplicated { existing: existing.0, waiter: waiter.map(|w| w.0) }
        }
        other => unreachable!("an accept answers Accepted or Deduplicated, not {other:?}"),
    }
}

fn call_answer(reply: &Reply) -> Answer {
    match reply {
        Reply::NoOp => Answer::NoOp,
        Reply::Stopped { deferred: true, .. } => Answer::Deferred,
        Reply::Interrupted(run) => Answer::Interrupted(run.0),
        _ => Answer::Done,
    }
}

/// How a refusal reads to the caller.
pub(crate) fn refused(refusal: &Refusal) -> Refused {
    use burrow_core::input::LedgerRefusal;
    match refusal {
        Refusal::AdmissionClosed { .. } | Refusal::NotRegistered => Refused::Closed,
        Refusal::Ledger(LedgerRefusal::Full { .. }) | Refusal::Waiter(_) => Refused::Full,
        Refusal::Invalid(_) => Refused::Invalid,
        Refusal::NotIdle { .. } => Refused::Busy,
        Refusal::DedupRefused { .. } => Refused::Duplicate,
        _ => Refused::Other,
    }
}

/// The submission a model client makes for `kind`.
pub(crate) fn submission(kind: Kind, waiter: bool, wake: bool) -> Submission {
    let of = |k| Submission { waiter, wake, ..Submission::of(k) };
    match kind {
        Kind::Prompt => of(SpecKind::Prompt),
        Kind::PromptKeyed => Submission { idempotency_key: Some("k".into()), ..of(SpecKind::Prompt) },
        Kind::PromptEphemeral => Submission { durable: false, ..of(SpecKind::Prompt) },
        Kind::PromptSteer => Submission { steer: true, ..of(SpecKind::Prompt) },
        Kind::ExternalEvent => Submission { supersession_key: Some("s".into()), ..of(SpecKind::ExternalEvent) },
        Kind::FlowStep => of(SpecKind::FlowStep),
        Kind::PeerMessage => of(SpecKind::PeerMessage),
        Kind::PeerRequestSilent => of(SpecKind::PeerRequest { silent: true }),
        Kind::PeerResponseProgress => of(SpecKind::PeerResponseProgress),
        Kind::Continuation => of(SpecKind::Continuation),
        Kind::Operation => of(SpecKind::Operation),
    }
}

/// The call a control action makes, if the specification knows it.
pub(crate) fn call(control: Control) -> Option<Call> {
    Some(match control {
        Control::Interrupt => Call::Interrupt,
        Control::CancelAfterBoundary => Call::CancelAfterBoundary,
        Control::Stop => Call::Stop,
        Control::Retire => Call::Retire,
        Control::Recycle => Call::Recycle,
        Control::Reset => Call::Reset,
        Control::Recover => Call::Recover,
        Control::Destroy => Call::Destroy,
        Control::Unregister => Call::Unregister,
        Control::Detach => Call::Detach,
        Control::KeepAlive => return None,
    })
}

/// The class a waiter received.
pub(crate) fn class(resolution: &Result<CoreOutcome, OutcomeMismatch>) -> Class {
    let Ok(outcome) = resolution else { return Class::Mismatch };
    match outcome.class() {
        OutcomeClass::Completed => Class::Completed,
        OutcomeClass::CompletedWithoutResult => Class::CompletedWithoutResult,
        OutcomeClass::CallbackPending => Class::CallbackPending,
        OutcomeClass::Cancelled => Class::Cancelled,
        OutcomeClass::Abandoned => Class::Abandoned,
        OutcomeClass::AbandonedWithError => Class::AbandonedWithError,
        OutcomeClass::CompletedWithFinalizationFailure => Class::CompletedWithFinalizationFailure,
        OutcomeClass::RuntimeTerminated => Class::RuntimeTerminated,
    }
}
