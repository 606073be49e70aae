//! The contract between the session machine and every driver (the shell, the model, the simulator): the events
//! [`SessionMachine::apply`](crate::session::SessionMachine::apply) accepts, the effects it asks for, its replies and
//! refusals, and [`feedback`], the one table that says which event reports how a performed effect went.
//!
//! A driver performs effects; it never decides what a result means. It tells the table what it observed
//! ([`Observed`]) and applies the event the table returns, if any.
//!
//! spec: specs/session.md#the-protocol

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::completion::{CleanupObservation, CleanupRefusal, ErrorInfo, FailureCause, NoOutcome, Outcome};
use crate::completion::{OutcomeClass, WaiterRefusal};
use crate::drain::{DrainEffect, DrainEvent, DrainExitReason, DrainIncarnation, DrainRefusal};
use crate::ids::{Binding, EpochId, Generation, InputId, OperationId, RunId, WaiterId};
use crate::input::{InputRecord, InputSpec, InputValidation, LedgerRefusal};
use crate::lease::HostId;
use crate::operations::{OpEffect, OpEvent, OpRefusal, OpStatus, OperationsRegistry};
use crate::phase::{PhaseRefusal, RuntimePhase};
use crate::registration::{Obligation, RegistrationEffect, RegistrationPhase, RegistrationRefusal};
use crate::session::{BoundaryReceipt, IdMarks, RecoverySource, RunPrimitive, RunReport};

/// Everything the session machine accepts.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum SessionEvent {
    /// Initializing -> Idle.
    Initialize,
    /// Prepare the session's bindings (idempotent).
    Prepare {
        /// The epoch to use if the session has none yet.
        epoch: EpochId,
    },
    /// Begin attaching an executor (single flight).
    BeginAttach,
    /// The loop for the attach was spawned.
    AttachCompleted,
    /// The attach failed before the loop started.
    AttachFailed,
    /// The loop task of `generation` exited (a dead attachment).
    LoopExited {
        /// The generation whose loop exited.
        generation: Generation,
    },
    /// Detach the executor (no run may be in flight).
    Detach,
    /// Accept an input.
    Accept {
        /// The input.
        spec: InputSpec,
        /// Register a completion waiter.
        waiter: bool,
        /// Wake the loop if the kind's policy says so (false for accept_input_without_wake).
        wake: bool,
    },
    /// What the store holds for an idempotency key the ledger has forgotten, read before the accept that carries
    /// the key (see [`SessionMachine::key_to_recall`](crate::session::SessionMachine::key_to_recall)).
    KeyRecalled {
        /// The key.
        key: String,
        /// The store's row with that key, if it has one.
        found: Option<InputRecord>,
    },
    /// Accept an input and start it as an inline run at once (accept_and_run).
    AcceptAndRun {
        /// The input.
        spec: InputSpec,
    },
    /// The durable write of an admitted input succeeded: the admission's consequences (supersession, coalescing,
    /// the wake, an inline run's start) take effect now.
    InputPersisted {
        /// The input.
        input: InputId,
    },
    /// The durable write of an admitted input failed: the admission never took effect.
    InputPersistFailed {
        /// The input.
        input: InputId,
        /// Why.
        error: ErrorInfo,
    },
    /// Replace the silent-intent list.
    SetSilentIntents(Vec<String>),
    /// Change keep-alive.
    SetKeepAlive(bool),
    /// Turn peer ingress on or off after prepare (`SessionConfig::comms_enabled`).
    SetCommsEnabled(bool),
    /// Wake the loop explicitly (queued quiet inputs become selectable).
    Wake,
    /// The loop asks for its next unit of work.
    Poll,
    /// A run was prepared but never handed to the executor.
    RunNotExecuted {
        /// The run.
        run: RunId,
    },
    /// The lifecycle row that records a run's start (its attempts) is durable: the run may be handed out.
    RunStartRecorded {
        /// The run.
        run: RunId,
    },
    /// The executor reported a run's boundary.
    RunReported {
        /// The run.
        run: RunId,
        /// What it produced.
        report: RunReport,
        /// The session snapshot the executor returned, committed with the boundary.
        snapshot: Option<Vec<u8>>,
    },
    /// The executor failed (error or contained panic).
    RunFailed {
        /// The run.
        run: RunId,
        /// Why.
        error: ErrorInfo,
    },
    /// The atomic boundary commit succeeded.
    BoundaryCommitted {
        /// The run.
        run: RunId,
    },
    /// The atomic boundary commit failed.
    BoundaryCommitFailed {
        /// The run.
        run: RunId,
        /// Why.
        error: ErrorInfo,
    },
    /// A lifecycle commit (terminal state) failed: fail-stop the session.
    LifecyclePersistFailed {
        /// Why.
        error: ErrorInfo,
    },
    /// Cancel the current run (exactly that run, when named).
    Interrupt {
        /// The run the caller means, if it names one.
        run: Option<RunId>,
    },
    /// Ask the executor to stop at its next boundary.
    CancelAfterBoundary,
    /// The executor could not take a cancel-after-boundary request.
    CancelAfterBoundaryFailed {
        /// The run it was for.
        run: RunId,
        /// Why.
        error: ErrorInfo,
    },
    /// Stop the executor (deferred while a run is in flight).
    Stop,
    /// Close admission; drain or abandon what is queued.
    Retire,
    /// Rebuild the runtime instance, keeping non-terminal work.
    Recycle,
    /// Abandon all non-terminal work.
    Reset,
    /// Replay durable state.
    Recover(RecoverySource),
    /// Terminal.
    Destroy,
    /// Begin the two-phase unregister.
    BeginUnregister,
    /// An unregister obligation was met by the shell.
    ObligationMet(Obligation),
    /// Commit the unregister (all obligations closed).
    CommitUnregister,
    /// Time passed: deadlines, notices, grace periods.
    Tick,
    /// An event for the operations registry.
    Operation(OpEvent),
    /// An event for the peer ingress drain.
    Drain(DrainEvent),
    /// The saved operations registry could not be written.
    OperationsPersistFailed {
        /// Why.
        error: ErrorInfo,
    },
    /// A (new) peer source was set: a drain that ended for want of one may start.
    PeerSourceSet,
    /// Publish a runtime event to the session's subscribers (`publish_event`): it becomes a
    /// [`Notice::Published`], never an input.
    Publish(RuntimeEvent),
    /// `event`, on behalf of a caller that holds `binding`: refused, changing nothing, unless `binding` is the
    /// session's current one. The check and the act are one transition, so no recycle can land between them.
    Fenced {
        /// The binding the caller holds.
        binding: Binding,
        /// What it asks for.
        event: Box<SessionEvent>,
    },
    /// This host no longer owns the session: the store fenced one of its writes, or its lease ended or was refused
    /// (spec: specs/session.md#ownership-moved). Accepted in every state, even while an input's write is in flight
    /// (a fenced write is that write's result).
    OwnershipLost {
        /// The new owner, when the store named it.
        owner: Option<HostId>,
    },
}

impl SessionEvent {
    /// A short stable name (tables, traces).
    #[must_use]
    pub fn name(&self) -> &'static str {
        match self {
            SessionEvent::Initialize => "Initialize",
            SessionEvent::Prepare { .. } => "Prepare",
            SessionEvent::BeginAttach => "BeginAttach",
            SessionEvent::AttachCompleted => "AttachCompleted",
            SessionEvent::AttachFailed => "AttachFailed",
            SessionEvent::LoopExited { .. } => "LoopExited",
            SessionEvent::Detach => "Detach",
            SessionEvent::Accept { .. } => "Accept",
            SessionEvent::KeyRecalled { .. } => "KeyRecalled",
            SessionEvent::AcceptAndRun { .. } => "AcceptAndRun",
            SessionEvent::InputPersisted { .. } => "InputPersisted",
            SessionEvent::InputPersistFailed { .. } => "InputPersistFailed",
            SessionEvent::SetSilentIntents(_) => "SetSilentIntents",
            SessionEvent::SetKeepAlive(_) => "SetKeepAlive",
            SessionEvent::SetCommsEnabled(_) => "SetCommsEnabled",
            SessionEvent::Wake => "Wake",
            SessionEvent::Poll => "Poll",
            SessionEvent::RunNotExecuted { .. } => "RunNotExecuted",
            SessionEvent::RunStartRecorded { .. } => "RunStartRecorded",
            SessionEvent::RunReported { .. } => "RunReported",
            SessionEvent::RunFailed { .. } => "RunFailed",
            SessionEvent::BoundaryCommitted { .. } => "BoundaryCommitted",
            SessionEvent::BoundaryCommitFailed { .. } => "BoundaryCommitFailed",
            SessionEvent::LifecyclePersistFailed { .. } => "LifecyclePersistFailed",
            SessionEvent::Interrupt { .. } => "Interrupt",
            SessionEvent::CancelAfterBoundary => "CancelAfterBoundary",
            SessionEvent::CancelAfterBoundaryFailed { .. } => "CancelAfterBoundaryFailed",
            SessionEvent::Stop => "Stop",
            SessionEvent::Retire => "Retire",
            SessionEvent::Recycle => "Recycle",
            SessionEvent::Reset => "Reset",
            SessionEvent::Recover(_) => "Recover",
            SessionEvent::Destroy => "Destroy",
            SessionEvent::BeginUnregister => "BeginUnregister",
            SessionEvent::ObligationMet(_) => "ObligationMet",
            SessionEvent::CommitUnregister => "CommitUnregister",
            SessionEvent::Tick => "Tick",
            SessionEvent::Operation(_) => "Operation",
            SessionEvent::Drain(_) => "Drain",
            SessionEvent::OperationsPersistFailed { .. } => "OperationsPersistFailed",
            SessionEvent::PeerSourceSet => "PeerSourceSet",
            SessionEvent::Publish(_) => "Publish",
            SessionEvent::Fenced { .. } => "Fenced",
            SessionEvent::OwnershipLost { .. } => "OwnershipLost",
        }
    }
}

/// Why a run or the loop is being stopped or cancelled.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum StopReason {
    /// An explicit stop.
    Requested,
    /// The session was destroyed.
    Destroyed,
    /// The session is unregistering.
    Unregistering,
    /// A boundary commit failed.
    BoundaryCommitFailed,
    /// A lifecycle commit failed.
    PersistFailed,
    /// An interrupt.
    Interrupted,
    /// The run passed its deadline.
    DeadlineExceeded,
    /// The session moved to another host of the fleet.
    OwnershipMoved,
}

/// An effect for the shell to perform, in order.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Effect {
    /// Write a durable input before acknowledging the accept.
    PersistInput(InputRecord),
    /// The atomic boundary commit: receipt, input rows and the run's snapshot together.
    PersistBoundary {
        /// The receipt.
        receipt: BoundaryReceipt,
        /// The durable input rows in their new state.
        inputs: Vec<InputRecord>,
        /// The session snapshot the executor returned, if any.
        snapshot: Option<Vec<u8>>,
    },
    /// The lifecycle commit: phase, registration, binding, id marks and changed durable input rows.
    PersistLifecycle {
        /// The phase to persist (SPEC 5 mapping applied).
        phase: RuntimePhase,
        /// The registration phase to persist, as of this commit.
        registration: RegistrationPhase,
        /// The binding, if prepared.
        binding: Option<Binding>,
        /// The highest ids allocated so far, so a restart never reuses one.
        marks: IdMarks,
        /// Changed durable input rows.
        inputs: Vec<InputRecord>,
        /// The run whose start this commit records: it is handed out once the commit is durable.
        starts_run: Option<RunId>,
    },
    /// Save the operations registry (its ended records, feed and cursors survive a restart).
    PersistOperations(Box<OperationsRegistry>),
    /// Resolve waiters of an input (each exactly once).
    ResolveWaiters {
        /// The input.
        input: InputId,
        /// The waiters, removed from the core in this same transition.
        waiters: Vec<WaiterId>,
        /// The outcome, or the typed reason the evidence did not fit its class.
        resolution: Result<Outcome, NoOutcome>,
        /// What cleanup code receives.
        observation: CleanupObservation,
    },
    /// Hand a run to the executor (the loop does; an inline run's caller does).
    StartRun(RunPrimitive),
    /// Cancel a run in flight.
    CancelRun {
        /// The run.
        run: RunId,
        /// Why.
        reason: StopReason,
    },
    /// Ask the executor to stop at its next boundary.
    CancelAfterBoundary {
        /// The run.
        run: RunId,
    },
    /// Stop the executor, then run its cleanup, then let the loop exit.
    StopExecutor {
        /// Why.
        reason: StopReason,
    },
    /// A parked loop has work.
    WakeLoop,
    /// A run passed its notice threshold.
    RunNotice {
        /// The run.
        run: RunId,
        /// Its inputs.
        inputs: Vec<InputId>,
        /// How long it has run.
        elapsed_ms: u64,
    },
    /// The registration machine's effect.
    Registration(RegistrationEffect),
    /// The drain machine's effect.
    Drain(DrainEffect),
    /// The operations registry's effect.
    Operation(OpEffect),
    /// Tell the session's subscribers a fact (spec: specs/session.md#notices). Nothing comes back.
    Notify(Notice),
}

/// The longest name a published [`RuntimeEvent`] may have, in bytes.
pub const EVENT_NAME_LEN_MAX: usize = 128;
/// The largest payload a published [`RuntimeEvent`] may carry, in bytes.
pub const EVENT_PAYLOAD_LEN_MAX: usize = 64 * 1024;

/// An event a caller publishes to a session's subscribers (`publish_event`). It is not an input: nothing runs it,
/// nothing stores it, and a session with no subscriber drops it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RuntimeEvent {
    /// What kind of event it is (non-empty, at most [`EVENT_NAME_LEN_MAX`] bytes).
    pub name: String,
    /// Its body (at most [`EVENT_PAYLOAD_LEN_MAX`] bytes).
    pub payload: String,
}

impl RuntimeEvent {
    /// An event named `name` carrying `payload`.
    pub fn new(name: impl Into<String>, payload: impl Into<String>) -> RuntimeEvent {
        RuntimeEvent { name: name.into(), payload: payload.into() }
    }

    /// Checks the bounds; a published event outside them is refused with [`Refusal::InvalidEvent`].
    ///
    /// # Errors
    ///
    /// The first bound the event breaks.
    pub fn validate(&self) -> Result<(), Refusal> {
        let why = if self.name.is_empty() {
            "its name is empty"
        } else if self.name.len() > EVENT_NAME_LEN_MAX {
            "its name is longer than EVENT_NAME_LEN_MAX bytes"
        } else if self.payload.len() > EVENT_PAYLOAD_LEN_MAX {
            "its payload is larger than EVENT_PAYLOAD_LEN_MAX bytes"
        } else {
            return Ok(());
        };
        Err(Refusal::InvalidEvent { why })
    }
}

/// A fact a session tells its subscribers, in the order the session made it (spec: specs/session.md#notices).
///
/// The core decides every notice: the shell only delivers it. Notices are not durable; a subscriber that falls
/// behind learns how many it missed.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Notice {
    /// An input was admitted (for a durable input: its write is durable).
    InputAccepted {
        /// The input.
        input: InputId,
        /// Its kind's name.
        kind: &'static str,
    },
    /// An input ended. Each admitted input ends once.
    InputEnded {
        /// The input.
        input: InputId,
        /// The class its waiters received, or would have: `None` when the input has no outcome of its own (it was
        /// superseded or coalesced, and its waiters moved to the newer input; or it was consumed on accept).
        class: Option<OutcomeClass>,
    },
    /// A run was handed to the executor (or to an accept_and_run caller).
    RunStarted {
        /// The run.
        run: RunId,
        /// Its inputs, in order.
        inputs: Vec<InputId>,
    },
    /// The run in flight is over (committed, failed, cancelled, or ended by a stop).
    RunEnded {
        /// The run.
        run: RunId,
    },
    /// The session's phase changed.
    PhaseChanged {
        /// The phase before.
        from: RuntimePhase,
        /// The phase now.
        to: RuntimePhase,
    },
    /// A background operation ended.
    OperationEnded {
        /// The operation.
        op: OperationId,
        /// How it ended.
        status: OpStatus,
    },
    /// The peer drain task ended.
    DrainExited {
        /// Why.
        reason: DrainExitReason,
    },
    /// A caller published this event.
    Published(RuntimeEvent),
    /// The session moved to another host: this host drives it no more, and its inputs go on there.
    OwnershipMoved {
        /// The new owner, when the store named it.
        owner: Option<HostId>,
    },
}

impl Notice {
    /// A short stable name (traces).
    #[must_use]
    pub fn name(&self) -> &'static str {
        match self {
            Notice::InputAccepted { .. } => "InputAccepted",
            Notice::InputEnded { .. } => "InputEnded",
            Notice::RunStarted { .. } => "RunStarted",
            Notice::RunEnded { .. } => "RunEnded",
            Notice::PhaseChanged { .. } => "PhaseChanged",
            Notice::OperationEnded { .. } => "OperationEnded",
            Notice::DrainExited { .. } => "DrainExited",
            Notice::Published(_) => "Published",
            Notice::OwnershipMoved { .. } => "OwnershipMoved",
        }
    }
}

/// What an event answers, besides its effects.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub enum Reply {
    /// Nothing particular.
    #[default]
    Done,
    /// The event was already in effect and changed nothing.
    NoOp,
    /// Bindings after Prepare.
    Prepared(Binding),
    /// A new input was admitted.
    Accepted {
        /// The input.
        input: InputId,
        /// Its waiter, if one was registered and the input is not already terminal.
        waiter: Option<WaiterId>,
        /// Whether the input went terminal during admission (Operation kind).
        terminal: bool,
    },
    /// The key matched a known input.
    Deduplicated {
        /// The existing input.
        existing: InputId,
        /// A waiter joined to it, when it is still in flight.
        waiter: Option<WaiterId>,
    },
    /// The loop has a run to perform (its StartRun effect is in the effects).
    Run(RunId),
    /// The loop may park: nothing is selectable.
    Park,
    /// The loop must exit (stopped, destroyed, unregistering, detached); `reason` is what the executor is told.
    Exit {
        /// Why.
        reason: StopReason,
    },
    /// Retire's report.
    Retired {
        /// Queued inputs that will still be drained.
        pending_drain: usize,
        /// Queued inputs abandoned (no executor to drain them).
        abandoned: usize,
    },
    /// Stop's report.
    Stopped {
        /// The stop waits for the current run.
        deferred: bool,
        /// Inputs abandoned now.
        abandoned: usize,
    },
    /// Recycle's report.
    Recycled {
        /// Non-terminal inputs carried into the new instance.
        transferred: usize,
    },
    /// Reset's report.
    Reset {
        /// Inputs abandoned.
        abandoned: usize,
    },
    /// Recover's report.
    Recovered {
        /// Inputs active after recovery.
        recovered: usize,
        /// Inputs that were in a run and went back to Queued.
        requeued: usize,
        /// Inputs abandoned (no attempt left).
        abandoned: usize,
        /// Inputs made Consumed by a committed receipt.
        consumed: usize,
        /// Ephemeral inputs dropped.
        dropped: usize,
    },
    /// Destroy's report.
    Destroyed {
        /// Inputs abandoned.
        abandoned: usize,
    },
    /// Interrupt cancelled this run.
    Interrupted(RunId),
}

/// Effects and the reply of one accepted event.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
#[must_use]
pub struct Effects {
    /// The effects, in the order the shell performs them.
    pub effects: Vec<Effect>,
    /// The answer to the caller.
    pub reply: Reply,
    /// Where this event's effects begin in `effects` (a buffer the shell reuses may hold earlier ones).
    pub(crate) start: usize,
    /// The inputs whose end this event already noticed (a fail-stop resolves an input's waiters before the stop
    /// ends the rest): each input's end is noticed once.
    pub(crate) ended: BTreeSet<InputId>,
    /// The inputs whose waiters this event answered while the input was still live, with the class they received:
    /// if the input ends later in the same event, its end is told with that class.
    pub(crate) answered: Vec<(InputId, OutcomeClass)>,
}

impl Effects {
    pub(crate) fn push(&mut self, effect: Effect) {
        self.effects.push(effect);
    }

    /// The names of the effects (tables, traces).
    #[must_use]
    pub fn names(&self) -> Vec<&'static str> {
        self.effects.iter().map(effect_name).collect()
    }
}

/// A short stable name for an effect.
#[must_use]
pub fn effect_name(effect: &Effect) -> &'static str {
    match effect {
        Effect::PersistInput(_) => "PersistInput",
        Effect::PersistBoundary { .. } => "PersistBoundary",
        Effect::PersistLifecycle { .. } => "PersistLifecycle",
        Effect::PersistOperations(_) => "PersistOperations",
        Effect::ResolveWaiters { .. } => "ResolveWaiters",
        Effect::StartRun(_) => "StartRun",
        Effect::CancelRun { .. } => "CancelRun",
        Effect::CancelAfterBoundary { .. } => "CancelAfterBoundary",
        Effect::StopExecutor { .. } => "StopExecutor",
        Effect::WakeLoop => "WakeLoop",
        Effect::RunNotice { .. } => "RunNotice",
        Effect::Registration(_) => "Registration",
        Effect::Drain(_) => "Drain",
        Effect::Operation(_) => "Operation",
        Effect::Notify(_) => "Notify",
    }
}

/// Why the session machine refused an event. A refused event changed nothing.
#[derive(Clone, Debug, PartialEq, Eq, Hash, thiserror::Error)]
pub enum Refusal {
    /// The input can never be admitted.
    #[error("invalid input: {0}")]
    Invalid(#[from] InputValidation),
    /// The phase does not admit inputs.
    #[error("admission is closed in phase {phase}")]
    AdmissionClosed {
        /// The phase.
        phase: RuntimePhase,
    },
    /// The session is not prepared (or was unregistered).
    #[error("the session is not registered")]
    NotRegistered,
    /// The phase machine refused.
    #[error(transparent)]
    Phase(#[from] PhaseRefusal),
    /// The ledger refused.
    #[error(transparent)]
    Ledger(#[from] LedgerRefusal),
    /// A waiter bound was hit.
    #[error(transparent)]
    Waiter(#[from] WaiterRefusal),
    /// The registration machine refused.
    #[error(transparent)]
    Registration(#[from] RegistrationRefusal),
    /// The operations registry refused.
    #[error(transparent)]
    Operations(#[from] OpRefusal),
    /// The drain machine refused.
    #[error(transparent)]
    Drain(#[from] DrainRefusal),
    /// The event names a run that is not the current one.
    #[error("run {presented} is not the current run ({current:?})")]
    StaleRun {
        /// The run named.
        presented: RunId,
        /// The current run.
        current: Option<RunId>,
    },
    /// The event needs a run in flight.
    #[error("no run is in flight")]
    NoRunInFlight,
    /// The event needs no run in flight.
    #[error("run {0} is in flight")]
    RunInFlight(RunId),
    /// The run already reported and its commit is in flight.
    #[error("run {0} already reported; its boundary commit is in flight")]
    RunFinalizing(RunId),
    /// The run has not reported yet.
    #[error("run {0} has not reported")]
    RunNotReported(RunId),
    /// accept_and_run needs an idle session with nothing active.
    #[error("accept_and_run needs an idle session with nothing active ({active} active inputs, phase {phase})")]
    NotIdle {
        /// The phase.
        phase: RuntimePhase,
        /// Active inputs.
        active: usize,
    },
    /// accept_and_run refuses deduplicated admission.
    #[error("accept_and_run refuses deduplicated admission: input {existing} owns the key")]
    DedupRefused {
        /// The input that owns the key.
        existing: InputId,
    },
    /// Too many silent intents.
    #[error("at most {max} silent intents, not {len}")]
    TooManySilentIntents {
        /// Given.
        len: usize,
        /// The bound.
        max: usize,
    },
    /// A cleanup observation was refused.
    #[error(transparent)]
    Cleanup(#[from] CleanupRefusal),
    /// An input's durable write is in flight: its result is the only event the machine takes until it arrives.
    #[error("the durable write of input {input} is in flight")]
    AdmissionInFlight {
        /// The input being written.
        input: InputId,
    },
    /// A write's result names an input whose write is not in flight.
    #[error("no durable write of input {input} is in flight")]
    NotAdmitting {
        /// The input named.
        input: InputId,
    },
    /// A recovery image cannot be what a store wrote.
    #[error("the recovery image is corrupt at input {input}: {why}")]
    CorruptImage {
        /// The input where it shows.
        input: InputId,
        /// What is wrong.
        why: &'static str,
    },
    /// A fenced event was nested in another.
    #[error("a fenced event may not hold another fenced event")]
    NestedFence,
    /// A published event breaks a bound ([`RuntimeEvent::validate`]).
    #[error("the event cannot be published: {why}")]
    InvalidEvent {
        /// Which bound.
        why: &'static str,
    },
    /// The session moved to another host of the fleet: this host takes no call for it any more.
    #[error("the session is owned by another host ({})", owner.map_or_else(|| "owner unknown".to_string(), |h| h.to_string()))]
    NotOwner {
        /// The new owner, when the store named it.
        owner: Option<HostId>,
    },
    /// A recalled row cannot be the store's answer for the key: another key, or an id this session never gave.
    #[error("the row recalled for key {key:?} is input {input}, which {why}")]
    RecallMismatch {
        /// The key asked for.
        key: String,
        /// The row's input.
        input: InputId,
        /// What is wrong.
        why: &'static str,
    },
}

impl Refusal {
    /// Whether the same event may be accepted later: the refusal is about the session's state now (a bound
    /// reached, admission closed for the moment, a write in flight, a waiter bound), not about the event itself.
    /// A peer drain holds a message refused this way and offers it again instead of dropping it.
    #[must_use]
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Refusal::Ledger(LedgerRefusal::Full { .. })
                | Refusal::AdmissionClosed { .. }
                | Refusal::NotRegistered
                | Refusal::Waiter(_)
                | Refusal::AdmissionInFlight { .. }
        )
    }
}

/// Which effect a driver performed, reduced to what its result is about. Taken with [`Subject::of`] before the
/// effect is performed (performing consumes it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Subject {
    /// An input's durable write ([`Effect::PersistInput`]).
    InputWrite(InputId),
    /// A run's boundary commit ([`Effect::PersistBoundary`]).
    BoundaryWrite(RunId),
    /// A lifecycle commit ([`Effect::PersistLifecycle`]), possibly recording a run's start.
    LifecycleWrite {
        /// The run whose start it records.
        starts_run: Option<RunId>,
    },
    /// The operations registry's save ([`Effect::PersistOperations`]).
    OperationsWrite,
    /// A run handed to the executor ([`Effect::StartRun`]); its end is what the executor reports.
    Run(RunId),
    /// A cancel-after-boundary request ([`Effect::CancelAfterBoundary`]), which the loop passes to the executor.
    CancelAfterBoundary(RunId),
    /// The loop's spawn ([`RegistrationEffect::SpawnLoop`]).
    LoopSpawn,
    /// A drain task's spawn ([`DrainEffect::SpawnDrain`]).
    DrainSpawn(DrainIncarnation),
    /// The drain's stop for an unregister ([`RegistrationEffect::StopDrain`]).
    DrainStop,
    /// The unregister is ready to commit ([`RegistrationEffect::CommitReady`]).
    CommitReady,
    /// Any other effect: performed in memory, it has nothing to report.
    Other,
}

impl Subject {
    /// Whether the effect is a store write.
    #[must_use]
    pub fn is_write(self) -> bool {
        matches!(
            self,
            Subject::InputWrite(_)
                | Subject::BoundaryWrite(_)
                | Subject::LifecycleWrite { .. }
                | Subject::OperationsWrite
        )
    }

    /// What `effect`'s result will be about.
    #[must_use]
    pub fn of(effect: &Effect) -> Subject {
        match effect {
            Effect::PersistInput(record) => Subject::InputWrite(record.id),
            Effect::PersistBoundary { receipt, .. } => Subject::BoundaryWrite(receipt.run),
            Effect::PersistLifecycle { starts_run, .. } => Subject::LifecycleWrite { starts_run: *starts_run },
            Effect::PersistOperations(_) => Subject::OperationsWrite,
            Effect::StartRun(primitive) => Subject::Run(primitive.run),
            Effect::CancelAfterBoundary { run } => Subject::CancelAfterBoundary(*run),
            Effect::Registration(RegistrationEffect::SpawnLoop { .. }) => Subject::LoopSpawn,
            Effect::Registration(RegistrationEffect::StopDrain) => Subject::DrainStop,
            Effect::Registration(RegistrationEffect::CommitReady) => Subject::CommitReady,
            Effect::Drain(DrainEffect::SpawnDrain { incarnation, .. }) => Subject::DrainSpawn(*incarnation),
            _ => Subject::Other,
        }
    }
}

/// What a driver observed when it performed an effect: facts, with no meaning attached.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Observed {
    /// Performed; nothing came back (memory, a channel, a timer).
    Done,
    /// The store write is durable.
    Written,
    /// The store write failed, with the store's message.
    WriteFailed(String),
    /// The task was spawned.
    Spawned,
    /// The task could not be spawned: what it needs is not there (an attach's executor, a peer source).
    Missing,
    /// The executor reported the run's boundary.
    Reported {
        /// What it produced.
        report: RunReport,
        /// Its snapshot.
        snapshot: Option<Vec<u8>>,
    },
    /// The executor returned an error, with its message.
    ExecutorFailed(String),
    /// The executor panicked (the panic was contained), with its message.
    ExecutorPanicked(String),
    /// The store refused the write for its epoch: another host owns the session (or owned it later).
    Fenced {
        /// The owner the store named.
        owner: Option<HostId>,
    },
}

/// A driver reported a result that its effect cannot have: a bug in the driver.
#[derive(Clone, Debug, PartialEq, Eq, Hash, thiserror::Error)]
#[error("{observed:?} is not a result of {subject:?}")]
pub struct UnexpectedResult {
    /// The effect.
    pub subject: Subject,
    /// What was reported.
    pub observed: Observed,
}

/// The one table from (effect, observed result) to the event that reports it to the machine, used alike by the
/// shell and by the model's environment. `None`: the result needs no event (a lifecycle row written, a message
/// sent). A pair no effect can produce is an [`UnexpectedResult`].
///
/// spec: specs/session.md#the-protocol
pub fn feedback(subject: Subject, observed: Observed) -> Result<Option<SessionEvent>, UnexpectedResult> {
    use DrainExitReason::Dismissed;
    use FailureCause::{BoundaryCommitFailed, ExecutorFailed, ExecutorPanicked, TerminalPersistFailed};
    let event = match (subject, observed) {
        (Subject::InputWrite(input), Observed::Written) => Some(SessionEvent::InputPersisted { input }),
        (Subject::InputWrite(input), Observed::WriteFailed(message)) => {
            Some(SessionEvent::InputPersistFailed { input, error: ErrorInfo::new(TerminalPersistFailed, message) })
        }
        (Subject::BoundaryWrite(run), Observed::Written) => Some(SessionEvent::BoundaryCommitted { run }),
        (Subject::BoundaryWrite(run), Observed::WriteFailed(message)) => {
            Some(SessionEvent::BoundaryCommitFailed { run, error: ErrorInfo::new(BoundaryCommitFailed, message) })
        }
        (Subject::LifecycleWrite { starts_run }, Observed::Written) => {
            starts_run.map(|run| SessionEvent::RunStartRecorded { run })
        }
        (Subject::LifecycleWrite { .. }, Observed::WriteFailed(message)) => {
            Some(SessionEvent::LifecyclePersistFailed { error: ErrorInfo::new(TerminalPersistFailed, message) })
        }
        // spec: specs/session.md#ownership-moved: whichever write it was, a fenced one means the session moved.
        (
            Subject::InputWrite(_)
            | Subject::BoundaryWrite(_)
            | Subject::LifecycleWrite { .. }
            | Subject::OperationsWrite,
            Observed::Fenced { owner },
        ) => Some(SessionEvent::OwnershipLost { owner }),
        (Subject::OperationsWrite, Observed::Written) => None,
        (Subject::OperationsWrite, Observed::WriteFailed(message)) => {
            Some(SessionEvent::OperationsPersistFailed { error: ErrorInfo::new(TerminalPersistFailed, message) })
        }
        (Subject::Run(_), Observed::Done) => None,
        (Subject::Run(run), Observed::Reported { report, snapshot }) => {
            Some(SessionEvent::RunReported { run, report, snapshot })
        }
        (Subject::Run(run), Observed::ExecutorFailed(message)) => {
            Some(SessionEvent::RunFailed { run, error: ErrorInfo::new(ExecutorFailed, message) })
        }
        (Subject::Run(run), Observed::ExecutorPanicked(message)) => {
            Some(SessionEvent::RunFailed { run, error: ErrorInfo::new(ExecutorPanicked, message) })
        }
        (Subject::CancelAfterBoundary(_), Observed::Done) => None,
        (
            Subject::CancelAfterBoundary(run),
            Observed::ExecutorFailed(message) | Observed::ExecutorPanicked(message),
        ) => Some(SessionEvent::CancelAfterBoundaryFailed { run, error: ErrorInfo::new(ExecutorFailed, message) }),
        (Subject::LoopSpawn, Observed::Spawned) => Some(SessionEvent::AttachCompleted),
        (Subject::LoopSpawn, Observed::Missing) => Some(SessionEvent::AttachFailed),
        (Subject::DrainSpawn(_), Observed::Spawned) => None,
        (Subject::DrainSpawn(incarnation), Observed::Missing) => {
            Some(SessionEvent::Drain(DrainEvent::Exited { incarnation, reason: Dismissed }))
        }
        (Subject::DrainStop, Observed::Done) => Some(SessionEvent::ObligationMet(Obligation::StopDrain)),
        (Subject::CommitReady, Observed::Done) => Some(SessionEvent::CommitUnregister),
        (Subject::Other, Observed::Done) => None,
        (subject, observed) => return Err(UnexpectedResult { subject, observed }),
    };
    Ok(event)
}

/// Every (effect, result) pair [`feedback`] accepts, with a representative of each: the rows of the table on
/// specs/session.md#the-protocol.
#[must_use]
pub fn feedback_rows() -> Vec<(Subject, Observed)> {
    let error = String::from("failed");
    let run = RunId(1);
    let report = Observed::Reported { report: RunReport::NoResult, snapshot: None };
    let fenced = Observed::Fenced { owner: Some(HostId(2)) };
    vec![
        (Subject::InputWrite(InputId(1)), Observed::Written),
        (Subject::InputWrite(InputId(1)), Observed::WriteFailed(error.clone())),
        (Subject::BoundaryWrite(run), Observed::Written),
        (Subject::BoundaryWrite(run), Observed::WriteFailed(error.clone())),
        (Subject::LifecycleWrite { starts_run: None }, Observed::Written),
        (Subject::LifecycleWrite { starts_run: Some(run) }, Observed::Written),
        (Subject::LifecycleWrite { starts_run: None }, Observed::WriteFailed(error.clone())),
        (Subject::OperationsWrite, Observed::Written),
        (Subject::OperationsWrite, Observed::WriteFailed(error.clone())),
        (Subject::InputWrite(InputId(1)), fenced.clone()),
        (Subject::BoundaryWrite(run), fenced.clone()),
        (Subject::LifecycleWrite { starts_run: None }, fenced.clone()),
        (Subject::OperationsWrite, fenced),
        (Subject::Run(run), Observed::Done),
        (Subject::Run(run), report),
        (Subject::Run(run), Observed::ExecutorFailed(error.clone())),
        (Subject::Run(run), Observed::ExecutorPanicked(error.clone())),
        (Subject::CancelAfterBoundary(run), Observed::Done),
        (Subject::CancelAfterBoundary(run), Observed::ExecutorFailed(error.clone())),
        (Subject::CancelAfterBoundary(run), Observed::ExecutorPanicked(error)),
        (Subject::LoopSpawn, Observed::Spawned),
        (Subject::LoopSpawn, Observed::Missing),
        (Subject::DrainSpawn(DrainIncarnation(1)), Observed::Spawned),
        (Subject::DrainSpawn(DrainIncarnation(1)), Observed::Missing),
        (Subject::DrainStop, Observed::Done),
        (Subject::CommitReady, Observed::Done),
        (Subject::Other, Observed::Done),
    ]
}
