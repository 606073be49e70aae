//! Completion waiters and the outcome a waiter receives (SPEC 2.3).
//!
//! Waiters are ids here: the core knows which waiters exist and which input each
//! waits on, so "every waiter resolves exactly once" is a property of core state
//! (a waiter is removed in the same transition that resolves it). The shell only
//! maps waiter ids to channels and fans the chosen outcome out.
//!
//! The public outcome class is a pure function of two observations: how the
//! input ended (terminal observation) and whether the runtime's finalization of
//! that end (the durable commit) succeeded. The class is chosen first, then the
//! outcome is assembled from the evidence; evidence that does not fit the class
//! fails the waiters closed with a typed error instead of inventing a result.
//!
//! spec: specs/completion.md

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::ids::{Binding, InputId, SessionId, WaiterId};
use crate::lease::HostId;

/// Most waiters one input may have (dedup joins add waiters to one input).
pub const WAITERS_PER_INPUT_MAX: usize = 64;
/// Most unresolved waiters one session may hold.
pub const WAITERS_PER_SESSION_MAX: usize = 8_192;

/// What an executor's turn produced, as the caller sees it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RunResult {
    /// The turn's output (for an LLM turn: the assistant's reply).
    pub output: String,
}

/// Most callbacks one turn may leave pending at once ([`Outcome::CallbackBatchPending`]).
pub const CALLBACKS_PER_BATCH_MAX: usize = 64;

/// One tool call a turn left for the outside to answer.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PendingCallback {
    /// The tool to call.
    pub tool: String,
    /// Its arguments (opaque to the runtime).
    pub args: String,
}

/// Why something failed, carried by failure outcomes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum FailureCause {
    /// The executor returned an error.
    ExecutorFailed,
    /// The executor panicked; the panic was contained.
    ExecutorPanicked,
    /// The run passed its deadline and was cancelled.
    DeadlineExceeded,
    /// The atomic boundary commit failed.
    BoundaryCommitFailed,
    /// Persisting the terminal state failed.
    TerminalPersistFailed,
    /// The session was stopped, destroyed, reset or unregistered.
    RuntimeTerminated,
    /// The input was abandoned by a control action or an attempt bound.
    Abandoned,
}

/// Typed failure metadata that every surface keys off.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ErrorInfo {
    /// The cause class.
    pub cause: FailureCause,
    /// A human-readable message.
    pub message: String,
}

impl ErrorInfo {
    /// Builds error metadata.
    #[must_use]
    pub fn new(cause: FailureCause, message: impl Into<String>) -> Self {
        ErrorInfo { cause, message: message.into() }
    }
}

/// How the input ended, without its data.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum TerminalObservation {
    /// The run produced a result.
    Completed,
    /// The run finished without a result.
    NoResult,
    /// The run stopped at a callback boundary (an external tool must answer).
    CallbackPending,
    /// The run stopped with several callbacks pending at once.
    CallbackBatchPending,
    /// The run was cancelled (interrupt).
    Cancelled,
    /// The input was abandoned by a control action or attempt bound.
    Abandoned,
    /// The input failed in the executor and was abandoned.
    Failed,
    /// The runtime was stopped, destroyed, reset or unregistered around it.
    RuntimeTerminated,
}

impl TerminalObservation {
    /// Every observation, in declaration order.
    pub const ALL: [TerminalObservation; 8] = [
        TerminalObservation::Completed,
        TerminalObservation::NoResult,
        TerminalObservation::CallbackPending,
        TerminalObservation::CallbackBatchPending,
        TerminalObservation::Cancelled,
        TerminalObservation::Abandoned,
        TerminalObservation::Failed,
        TerminalObservation::RuntimeTerminated,
    ];
}

/// Whether the runtime's finalization of the end succeeded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum FinalizationObservation {
    /// The durable commit (or its in-memory equivalent) succeeded.
    Succeeded,
    /// The durable commit failed.
    Failed,
}

/// The public outcome classes (SPEC 2.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum OutcomeClass {
    /// Consumed with a result.
    Completed,
    /// Consumed without a result.
    CompletedWithoutResult,
    /// Waiting on an external tool.
    CallbackPending,
    /// Waiting on several external tools at once.
    CallbackBatchPending,
    /// Cancelled.
    Cancelled,
    /// Abandoned by a control action.
    Abandoned,
    /// Abandoned after a failure.
    AbandonedWithError,
    /// The run produced output but its durable commit failed; the result is withheld.
    CompletedWithFinalizationFailure,
    /// The runtime ended around the input.
    RuntimeTerminated,
}

/// Chooses the public class from the two observations.
///
/// A failed finalization never yields a success: a completed or callback turn
/// whose commit failed becomes CompletedWithFinalizationFailure, a no-result
/// turn becomes AbandonedWithError. Cancellation and runtime termination are
/// final whatever the commit did.
#[must_use]
pub fn select_class(terminal: TerminalObservation, finalization: FinalizationObservation) -> OutcomeClass {
    use FinalizationObservation as F;
    use TerminalObservation as T;
    match (terminal, finalization) {
        (T::Completed, F::Succeeded) => OutcomeClass::Completed,
        (T::NoResult, F::Succeeded) => OutcomeClass::CompletedWithoutResult,
        (T::CallbackPending, F::Succeeded) => OutcomeClass::CallbackPending,
        (T::CallbackBatchPending, F::Succeeded) => OutcomeClass::CallbackBatchPending,
        (T::Completed | T::CallbackPending | T::CallbackBatchPending, F::Failed) => {
            OutcomeClass::CompletedWithFinalizationFailure
        }
        (T::NoResult | T::Failed, F::Failed) | (T::Failed, F::Succeeded) => OutcomeClass::AbandonedWithError,
        (T::Abandoned, F::Succeeded) => OutcomeClass::Abandoned,
        (T::Abandoned, F::Failed) => OutcomeClass::AbandonedWithError,
        (T::Cancelled, _) => OutcomeClass::Cancelled,
        (T::RuntimeTerminated, _) => OutcomeClass::RuntimeTerminated,
    }
}

/// What the runtime knows about an input's end, from which an outcome of the
/// chosen class is assembled.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Evidence {
    /// The run's result, if it produced one.
    pub result: Option<RunResult>,
    /// The pending callback's tool name and arguments, if any.
    pub callback: Option<(String, String)>,
    /// The pending callbacks of a batch, if any.
    pub callbacks: Option<Vec<PendingCallback>>,
    /// The abandonment or termination reason, if any.
    pub reason: Option<String>,
    /// Failure metadata, if any.
    pub error: Option<ErrorInfo>,
}

/// What a waiter receives.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Outcome {
    /// Consumed with a result.
    Completed(RunResult),
    /// Consumed without a result.
    CompletedWithoutResult,
    /// The run reached a callback boundary; an external tool must answer.
    CallbackPending {
        /// The tool to call.
        tool: String,
        /// Its arguments (opaque to the runtime).
        args: String,
    },
    /// The run stopped with several tool calls pending at once (at most [`CALLBACKS_PER_BATCH_MAX`]), in the order
    /// the executor gave them; the outside answers each.
    CallbackBatchPending {
        /// The pending calls.
        calls: Vec<PendingCallback>,
    },
    /// The run was cancelled.
    Cancelled,
    /// Abandoned by a control action or bound.
    Abandoned {
        /// Why (the abandon reason's name).
        reason: String,
        /// Typed metadata.
        error: ErrorInfo,
    },
    /// Abandoned after a failure.
    AbandonedWithError {
        /// Why.
        reason: String,
        /// Typed metadata.
        error: ErrorInfo,
    },
    /// The turn produced output but its durable commit failed; no result is given.
    CompletedWithFinalizationFailure {
        /// Typed metadata.
        error: ErrorInfo,
    },
    /// The runtime was stopped, destroyed, reset or unregistered.
    RuntimeTerminated {
        /// Why.
        reason: String,
        /// Typed metadata.
        error: ErrorInfo,
    },
}

/// The evidence did not fit the selected class.
#[derive(Clone, Debug, PartialEq, Eq, Hash, thiserror::Error)]
#[error("outcome class {class:?} needs {missing}, which the evidence lacks")]
pub struct OutcomeMismatch {
    /// The selected class.
    pub class: OutcomeClass,
    /// What was missing.
    pub missing: &'static str,
}

/// Why a waiter gets no outcome: the answer would not be true. Never an outcome itself: the input may still end,
/// here or elsewhere.
#[derive(Clone, Debug, PartialEq, Eq, Hash, thiserror::Error)]
pub enum NoOutcome {
    /// The evidence did not fit the selected class: the waiter fails closed instead of inventing a result.
    #[error(transparent)]
    Mismatch(#[from] OutcomeMismatch),
    /// The session moved to another host of the fleet (spec: specs/session.md#ownership-moved). The input is not
    /// ended: it is in the store, and the new owner drives it; ask `owner` for it by its idempotency key.
    #[error("the session moved to another host ({})", owner.map_or_else(|| "owner unknown".to_string(), |h| h.to_string()))]
    OwnershipMoved {
        /// The new owner, when the store named it.
        owner: Option<HostId>,
    },
}

impl Outcome {
    /// The outcome's class.
    #[must_use]
    pub fn class(&self) -> OutcomeClass {
        match self {
            Outcome::Completed(_) => OutcomeClass::Completed,
            Outcome::CompletedWithoutResult => OutcomeClass::CompletedWithoutResult,
            Outcome::CallbackPending { .. } => OutcomeClass::CallbackPending,
            Outcome::CallbackBatchPending { .. } => OutcomeClass::CallbackBatchPending,
            Outcome::Cancelled => OutcomeClass::Cancelled,
            Outcome::Abandoned { .. } => OutcomeClass::Abandoned,
            Outcome::AbandonedWithError { .. } => OutcomeClass::AbandonedWithError,
            Outcome::CompletedWithFinalizationFailure { .. } => OutcomeClass::CompletedWithFinalizationFailure,
            Outcome::RuntimeTerminated { .. } => OutcomeClass::RuntimeTerminated,
        }
    }

    /// Assembles the outcome of `class` from `evidence`, or says what is missing.
    pub fn assemble(class: OutcomeClass, evidence: &Evidence) -> Result<Outcome, OutcomeMismatch> {
        let missing = |what| OutcomeMismatch { class, missing: what };
        let reason = || evidence.reason.clone().ok_or(missing("a reason"));
        let error = || evidence.error.clone().ok_or(missing("error metadata"));
        let outcome = match class {
            OutcomeClass::Completed => Outcome::Completed(evidence.result.clone().ok_or(missing("a result"))?),
            OutcomeClass::CompletedWithoutResult => Outcome::CompletedWithoutResult,
            OutcomeClass::CallbackPending => {
                let (tool, args) = evidence.callback.clone().ok_or(missing("a callback"))?;
                Outcome::CallbackPending { tool, args }
            }
            OutcomeClass::CallbackBatchPending => {
                Outcome::CallbackBatchPending { calls: evidence.callbacks.clone().ok_or(missing("pending callbacks"))? }
            }
            OutcomeClass::Cancelled => Outcome::Cancelled,
            OutcomeClass::Abandoned => Outcome::Abandoned { reason: reason()?, error: error()? },
            OutcomeClass::AbandonedWithError => Outcome::AbandonedWithError { reason: reason()?, error: error()? },
            OutcomeClass::CompletedWithFinalizationFailure => {
                Outcome::CompletedWithFinalizationFailure { error: error()? }
            }
            OutcomeClass::RuntimeTerminated => Outcome::RuntimeTerminated { reason: reason()?, error: error()? },
        };
        debug_assert_eq!(outcome.class(), class);
        Ok(outcome)
    }
}

/// A runtime-minted observation handed to cleanup code after resolution. It
/// names the owning session and binding so cleanup cannot be replayed against
/// another session or a later binding of the same one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct CleanupObservation {
    /// The session that owned the input.
    pub session: SessionId,
    /// The binding at resolution time.
    pub binding: Binding,
    /// The class the waiters received (None if they failed closed).
    pub class: Option<OutcomeClass>,
}

/// Why a cleanup observation was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, thiserror::Error)]
pub enum CleanupRefusal {
    /// Minted by another session.
    #[error("cleanup observation belongs to session {owner}, not {presented_to}")]
    OtherSession {
        /// The observation's owner.
        owner: SessionId,
        /// The session it was presented to.
        presented_to: SessionId,
    },
    /// Minted for an earlier binding of this session.
    #[error("cleanup observation was minted for binding {minted}, the session is now at {current}")]
    StaleBinding {
        /// The binding it was minted for.
        minted: Binding,
        /// The session's binding now.
        current: Binding,
    },
}

/// Checks a cleanup observation against the session it is presented to.
pub fn validate_cleanup(
    observation: &CleanupObservation,
    session: SessionId,
    current: Binding,
) -> Result<(), CleanupRefusal> {
    if observation.session != session {
        return Err(CleanupRefusal::OtherSession { owner: observation.session, presented_to: session });
    }
    if observation.binding != current {
        return Err(CleanupRefusal::StaleBinding { minted: observation.binding, current });
    }
    Ok(())
}

/// Why a waiter could not be registered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, thiserror::Error)]
pub enum WaiterRefusal {
    /// The input already has the most waiters it may have.
    #[error("input {input} already has {limit} waiters")]
    PerInputLimit {
        /// The input.
        input: InputId,
        /// The bound.
        limit: usize,
    },
    /// The session holds the most unresolved waiters it may.
    #[error("the session already holds {limit} unresolved waiters")]
    SessionLimit {
        /// The bound.
        limit: usize,
    },
}

/// The unresolved waiters of one session, by input.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct WaiterBook {
    next_waiter: u64,
    /// Each input's waiters in id order (a new waiter has the highest id, so registering appends).
    by_input: BTreeMap<InputId, Vec<WaiterId>>,
    pending: usize,
    resolved_total: u64,
}

impl WaiterBook {
    /// An empty book.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether a waiter could be registered on `input` now.
    pub fn can_register(&self, input: InputId) -> Result<(), WaiterRefusal> {
        if self.pending >= WAITERS_PER_SESSION_MAX {
            return Err(WaiterRefusal::SessionLimit { limit: WAITERS_PER_SESSION_MAX });
        }
        let on_input = self.by_input.get(&input).map_or(0, Vec::len);
        if on_input >= WAITERS_PER_INPUT_MAX {
            return Err(WaiterRefusal::PerInputLimit { input, limit: WAITERS_PER_INPUT_MAX });
        }
        Ok(())
    }

    /// Registers a waiter on `input`.
    pub fn register(&mut self, input: InputId) -> Result<WaiterId, WaiterRefusal> {
        self.can_register(input)?;
        self.next_waiter += 1;
        let id = WaiterId(self.next_waiter);
        self.by_input.entry(input).or_default().push(id);
        self.pending += 1;
        Ok(id)
    }

    /// Removes and returns every waiter of `input`: they are resolved by the
    /// caller in the same transition.
    pub fn take(&mut self, input: InputId) -> Vec<WaiterId> {
        let taken = self.by_input.remove(&input).unwrap_or_default();
        assert!(self.pending >= taken.len());
        self.pending -= taken.len();
        self.resolved_total += taken.len() as u64;
        taken
    }

    /// Moves the waiters of `from` onto `to` (supersession and coalescing:
    /// the callers learn the outcome of the input that replaced theirs).
    pub fn transfer(&mut self, from: InputId, to: InputId) {
        assert_ne!(from, to);
        if let Some(moved) = self.by_input.remove(&from) {
            let waiters = self.by_input.entry(to).or_default();
            waiters.extend(moved);
            waiters.sort_unstable();
        }
    }

    /// The unresolved waiters of `input`.
    #[must_use]
    pub fn waiters_of(&self, input: InputId) -> Vec<WaiterId> {
        self.by_input.get(&input).cloned().unwrap_or_default()
    }

    /// Inputs that have unresolved waiters.
    pub fn inputs(&self) -> impl Iterator<Item = InputId> + '_ {
        self.by_input.keys().copied()
    }

    /// How many waiters are unresolved.
    #[must_use]
    pub fn pending(&self) -> usize {
        self.pending
    }

    /// How many waiters were ever resolved.
    #[must_use]
    pub fn resolved_total(&self) -> u64 {
        self.resolved_total
    }

    /// Every (input, waiter) pair, for invariant checks.
    pub fn iter(&self) -> impl Iterator<Item = (InputId, WaiterId)> + '_ {
        self.by_input.iter().flat_map(|(i, ws)| ws.iter().map(move |w| (*i, *w)))
    }

    /// Whether the recorded pending count matches the sets (an invariant).
    #[must_use]
    pub fn count_is_consistent(&self) -> bool {
        self.by_input.values().map(Vec::len).sum::<usize>() == self.pending
            && self.by_input.values().all(|s| !s.is_empty() && s.is_sorted_by(|a, b| a < b))
    }

    /// Inserts a waiter without bounds or counters, for invariant tests.
    #[doc(hidden)]
    pub fn insert_unchecked(&mut self, input: InputId, waiter: WaiterId) {
        let waiters = self.by_input.entry(input).or_default();
        if let Err(at) = waiters.binary_search(&waiter) {
            waiters.insert(at, waiter);
        }
        self.pending += 1;
    }
}
