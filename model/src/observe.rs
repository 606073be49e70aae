//! Translation of what the model's callers, executor and store saw into the observable specification's vocabulary
//! (`burrow-spec`). Only replies, effects and results cross here, never the machine's own fields: the
//! specification judges the outside.

use burrow_core::completion::{NoOutcome, Outcome as CoreOutcome, OutcomeClass};
use burrow_core::input::{Durability, InputKind, InputSpec};
use burrow_core::operations::{OpEffect, OpEvent, OpOutcome, OpRefusal};
use burrow_core::protocol::Refusal;
use burrow_core::session::{Effect, Reply, RunReport};
use burrow_spec::{
    AcceptAnswer, Answer, Call, Class, End, Kind as SpecKind, Observation, OpAnswer, OpCall, OpObservation, OpRefused,
    Refused, Report, Submission,
};

use crate::session::{Control, Kind};

/// The bounds the runtime documents, in the specification's terms.
#[must_use]
pub fn bounds() -> burrow_spec::Bounds {
    burrow_spec::Bounds {
        waiters_per_input: burrow_core::completion::WAITERS_PER_INPUT_MAX,
        waiters_per_session: burrow_core::completion::WAITERS_PER_SESSION_MAX,
        active_inputs: burrow_core::input::INPUTS_ACTIVE_MAX,
        batch_inputs: burrow_core::input::BATCH_INPUTS_MAX,
        operations: burrow_spec::OpsBounds {
            live: burrow_core::operations::OPERATIONS_ACTIVE_MAX_DEFAULT,
            feed: burrow_core::operations::COMPLETION_FEED_MAX_DEFAULT,
            watchers: burrow_core::operations::WATCHERS_PER_OPERATION_MAX,
            wait_ids: burrow_core::operations::WAIT_ALL_IDS_MAX,
        },
    }
}

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

/// The answer an accept's caller reads in `reply`.
#[must_use]
pub fn accept_answer(reply: &Reply) -> AcceptAnswer {
    match reply {
        Reply::Accepted { input, waiter, .. } => AcceptAnswer::Accepted { input: input.0, waiter: waiter.map(|w| w.0) },
        Reply::Deduplicated { existing, waiter } => {
            AcceptAnswer::Deduplicated { existing: existing.0, waiter: waiter.map(|w| w.0) }
        }
        other => unreachable!("an accept answers Accepted or Deduplicated, not {other:?}"),
    }
}

/// The answer a control call's caller reads in `reply`.
#[must_use]
pub fn call_answer(reply: &Reply) -> Answer {
    match reply {
        Reply::NoOp => Answer::NoOp,
        Reply::Stopped { deferred: true, .. } => Answer::Deferred,
        Reply::Interrupted(run) => Answer::Interrupted(run.0),
        _ => Answer::Done,
    }
}

/// How a refusal reads to the caller.
#[must_use]
pub fn refused(refusal: &Refusal) -> Refused {
    use burrow_core::input::LedgerRefusal;
    match refusal {
        Refusal::AdmissionClosed { .. } | Refusal::NotRegistered => Refused::Closed,
        Refusal::Ledger(LedgerRefusal::Full { .. }) | Refusal::Waiter(_) => Refused::Full,
        Refusal::Invalid(_) => Refused::Invalid,
        Refusal::NotIdle { .. } => Refused::Busy,
        Refusal::DedupRefused { .. } => Refused::Duplicate,
        Refusal::NotOwner { .. } => Refused::NotOwner,
        _ => Refused::Other,
    }
}

/// The submission a model client makes for `kind`.
pub(crate) fn submission(kind: Kind, waiter: bool, wake: bool) -> Submission {
    submission_of(&kind.spec(), waiter, wake, kind == Kind::PeerRequestSilent)
}

/// The submission of an input of `spec`, as its caller made it: `waiter` when it asked for a handle, `wake` unless
/// it accepted without a wake, `silent` when a peer request's intent is in the session's silent list.
#[must_use]
pub fn submission_of(spec: &InputSpec, waiter: bool, wake: bool, silent: bool) -> Submission {
    let kind = match &spec.kind {
        InputKind::Prompt => SpecKind::Prompt,
        InputKind::ExternalEvent => SpecKind::ExternalEvent,
        InputKind::FlowStep => SpecKind::FlowStep,
        InputKind::PeerMessage => SpecKind::PeerMessage,
        InputKind::PeerRequest { .. } => SpecKind::PeerRequest { silent },
        InputKind::PeerResponseProgress { request } => SpecKind::PeerResponseProgress { request: request_ref(request) },
        InputKind::PeerResponseTerminal { request } => SpecKind::PeerResponseTerminal { request: request_ref(request) },
        InputKind::Continuation => SpecKind::Continuation,
        InputKind::Operation => SpecKind::Operation,
    };
    Submission {
        kind,
        durable: spec.durability.is_persisted(),
        derived: spec.durability == Durability::Derived,
        idempotency_key: spec.idempotency_key.clone(),
        supersession_key: spec.supersession_key.clone(),
        steer: spec.steer,
        wake,
        waiter,
    }
}

/// What the executor's report says, in the specification's terms.
#[must_use]
pub fn report_of(report: &RunReport) -> Report {
    match report {
        RunReport::Result(_) => Report::Result,
        RunReport::NoResult => Report::NoResult,
        RunReport::CallbackPending { .. } => Report::Callback,
        RunReport::CallbackBatchPending { .. } => Report::CallbackBatch,
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
        Control::KeepAlive | Control::CommsOff | Control::AbortDrain | Control::Publish => return None,
    })
}

/// What the specification judges of a notice: the admissions and ends of inputs (the rest it does not follow).
#[must_use]
pub fn notice(notice: &burrow_core::session::Notice) -> Option<Observation> {
    use burrow_core::session::Notice;
    match notice {
        Notice::InputAccepted { input, kind } => {
            Some(Observation::AdmissionTold { input: input.0, continuation: *kind == "Continuation" })
        }
        Notice::InputEnded { input, class } => {
            Some(Observation::EndTold { input: input.0, class: class.map(class_of) })
        }
        _ => None,
    }
}

/// The number the specification knows a peer request by: its id's FNV-1a hash.
fn request_ref(request: &str) -> u64 {
    request.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, byte| (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3))
}

/// The class a waiter received.
#[must_use]
pub fn class(resolution: &Result<CoreOutcome, NoOutcome>) -> Class {
    match resolution {
        Ok(outcome) => class_of(outcome.class()),
        Err(NoOutcome::Mismatch(_)) => Class::Mismatch,
        Err(NoOutcome::OwnershipMoved { .. }) => Class::Moved,
    }
}

/// The specification's name for an outcome class.
#[must_use]
pub fn class_of(class: OutcomeClass) -> Class {
    match class {
        OutcomeClass::Completed => Class::Completed,
        OutcomeClass::CompletedWithoutResult => Class::CompletedWithoutResult,
        OutcomeClass::CallbackPending => Class::CallbackPending,
        OutcomeClass::CallbackBatchPending => Class::CallbackBatchPending,
        OutcomeClass::Cancelled => Class::Cancelled,
        OutcomeClass::Abandoned => Class::Abandoned,
        OutcomeClass::AbandonedWithError => Class::AbandonedWithError,
        OutcomeClass::CompletedWithFinalizationFailure => Class::CompletedWithFinalizationFailure,
        OutcomeClass::RuntimeTerminated => Class::RuntimeTerminated,
    }
}

/// How an operation's end reads to its watchers and the feed's consumers.
#[must_use]
pub fn op_end(outcome: &OpOutcome) -> End {
    match outcome {
        OpOutcome::Completed(_) => End::Completed,
        OpOutcome::Failed { .. } => End::Failed,
        OpOutcome::Cancelled { .. } => End::Cancelled,
        OpOutcome::Aborted { .. } => End::Aborted,
        OpOutcome::Retired => End::Retired,
        OpOutcome::Terminated { .. } => End::Terminated,
    }
}

/// The specification's name for an operation kind.
#[must_use]
pub fn op_kind(kind: burrow_core::operations::OperationKind) -> burrow_spec::OpKind {
    use burrow_core::operations::OperationKind;
    match kind {
        OperationKind::BackgroundTool => burrow_spec::OpKind::Tool,
        OperationKind::ChildSession => burrow_spec::OpKind::Child,
        OperationKind::CapacitySlot => burrow_spec::OpKind::Slot,
        OperationKind::DetachedJob => burrow_spec::OpKind::Detached,
    }
}

/// A call on the operations registry and the answer its caller reads (the new operation's id from the
/// `Registered` effect).
#[must_use]
pub fn op_call(event: &OpEvent, answer: Result<&[Effect], &Refusal>) -> Observation {
    let call = match event {
        OpEvent::Register { spec } => OpCall::Register(op_kind(spec.kind)),
        OpEvent::ProvisioningSucceeded { op } => OpCall::ProvisionOk(op.0),
        OpEvent::ProvisioningFailed { op, .. } => OpCall::ProvisionFailed(op.0),
        OpEvent::AbortProvisioning { op, .. } => OpCall::Abort(op.0),
        OpEvent::PeerReady { op, .. } => OpCall::PeerReady(op.0),
        OpEvent::ReportProgress { op, .. } => OpCall::Progress(op.0),
        OpEvent::Complete { op, result } if result.is_empty() => OpCall::Release(op.0),
        OpEvent::Complete { op, .. } => OpCall::Complete(op.0),
        OpEvent::Fail { op, .. } => OpCall::Fail(op.0),
        OpEvent::Cancel { op, .. } => OpCall::Cancel(op.0),
        OpEvent::RequestRetire { op } => OpCall::RequestRetire(op.0),
        OpEvent::MarkRetired { op } => OpCall::MarkRetired(op.0),
        OpEvent::RegisterWatcher { op } => OpCall::Watch(op.0),
        OpEvent::WaitAll { ids, .. } => OpCall::WaitAll(ids.iter().map(|id| id.0).collect()),
        OpEvent::CancelWait { .. } => OpCall::CancelWait,
        OpEvent::CollectCompleted => OpCall::Collect,
        OpEvent::AcknowledgeFeed { through } => OpCall::Acknowledge(through.0),
        OpEvent::TerminateOwner { .. } => OpCall::TerminateOwner,
    };
    let answer = match answer {
        Ok(effects) => effects
            .iter()
            .find_map(|e| match e {
                Effect::Operation(OpEffect::Registered { op }) => Some(OpAnswer::Registered(op.0)),
                _ => None,
            })
            .unwrap_or(OpAnswer::Done),
        Err(Refusal::Operations(refusal)) => OpAnswer::Refused(match refusal {
            OpRefusal::Terminated => OpRefused::Terminated,
            OpRefusal::LimitReached { .. } => OpRefused::Limit,
            OpRefusal::FeedFull { .. } => OpRefused::FeedFull,
            _ => OpRefused::Invalid,
        }),
        Err(_) => OpAnswer::Refused(OpRefused::Session),
    };
    Observation::Op(OpObservation::Call { call, answer })
}
