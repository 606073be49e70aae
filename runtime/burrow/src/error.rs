//! The error type of every runtime call.

use burrow_core::ids::SessionId;
use burrow_core::input::InputValidation;
use burrow_core::invariants::Violation;
use burrow_core::session::Refusal;

use crate::store::StoreError;

/// Why a runtime call did not do what it was asked.
///
/// A call that returns an error changed nothing in the session, except where a variant says otherwise
/// ([`RuntimeError::FailStopped`]).
///
/// # Examples
///
/// ```
/// use burrow::burrow_core::input::KEY_LEN_MAX;
/// use burrow::{Input, InputValidation, Runtime, RuntimeError, SessionId};
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # burrow_env::runtime::block_on_current_thread(async {
/// let runtime = Runtime::ephemeral();
/// let session = SessionId(1);
/// runtime.prepare(session).await?;
///
/// let key = "k".repeat(KEY_LEN_MAX + 1);
/// let err = runtime.accept_input(session, Input::prompt("x").idempotency_key(key)).await.unwrap_err();
/// assert!(matches!(err, RuntimeError::Rejected(InputValidation::KeyTooLong { .. })), "{err}");
///
/// let err = runtime.interrupt(session, None).await.unwrap_err();
/// assert!(matches!(err, RuntimeError::Refused { call: "interrupt", .. }));
/// assert_eq!(runtime.list_active_inputs(session).await?.len(), 0, "the refused calls changed nothing");
/// # Ok(())
/// # })
/// # }
/// ```
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RuntimeError {
    /// The session's settings cannot be used ([`SessionConfig::validate`](crate::SessionConfig::validate)); nothing
    /// was made from them.
    #[error("session {session}: invalid settings: {error}")]
    InvalidConfig {
        /// The session.
        session: SessionId,
        /// What is wrong.
        error: burrow_core::session::ConfigError,
    },
    /// The call needs an input with an idempotency key ([`Runtime::submit`](crate::Runtime::submit)); nothing was
    /// admitted.
    #[error("session {session}: {call} needs an input with an idempotency key")]
    KeyRequired {
        /// The session.
        session: SessionId,
        /// The call.
        call: &'static str,
    },
    /// The input was admitted, but waiting for its outcome failed for a reason outside the input (see
    /// [`CompletionError`](crate::CompletionError)).
    #[error("session {session}: {error}")]
    Completion {
        /// The session.
        session: SessionId,
        /// Why the wait failed.
        error: crate::completion::CompletionError,
    },
    /// Another host of the fleet owns the session: this one stopped driving it (its lease ended or the store fenced
    /// its write) and takes no call for it. Nothing changed here; send the call to `owner`.
    #[error("session {session} is owned by another host ({})", owner.map_or_else(|| "owner unknown".to_string(), |h| h.to_string()))]
    NotOwner {
        /// The session.
        session: SessionId,
        /// The owner, when the store named it.
        owner: Option<burrow_core::lease::HostId>,
    },
    /// No session with this id is held by the runtime.
    #[error("session {0} not found")]
    NotFound(SessionId),
    /// The input can never be admitted (the typed validation error of SPEC 3's Rejected).
    #[error("input rejected: {0}")]
    Rejected(InputValidation),
    /// The session's machine refused the call; nothing changed.
    #[error("session {session} refused {call}: {refusal}")]
    Refused {
        /// The session.
        session: SessionId,
        /// The call that was refused.
        call: &'static str,
        /// The machine's typed reason.
        refusal: Refusal,
    },
    /// A durable write failed before the call took effect; the call was undone.
    #[error("session {session}: store failed: {error}")]
    Store {
        /// The session.
        session: SessionId,
        /// The store's error.
        error: StoreError,
    },
    /// The run's output was produced but its boundary commit failed; the inputs were rolled back.
    #[error("session {session}: boundary commit failed: {error}")]
    BoundaryCommitFailed {
        /// The session.
        session: SessionId,
        /// The store's error.
        error: StoreError,
    },
    /// The terminal state could not be persisted: the session was fail-stopped and its waiters resolved.
    #[error("session {session} was fail-stopped: {error}")]
    FailStopped {
        /// The session.
        session: SessionId,
        /// The store's error.
        error: StoreError,
    },
    /// The executor failed or panicked during an inline run.
    #[error("session {session}: the run failed: {message}")]
    RunFailed {
        /// The session.
        session: SessionId,
        /// What the executor said, or the panic message.
        message: String,
    },
    /// The inline run was cancelled (interrupted, destroyed or past its deadline).
    #[error("session {session}: the run was cancelled")]
    RunCancelled {
        /// The session.
        session: SessionId,
    },
    /// A bounded wait ran out.
    #[error("session {session}: {what} did not finish within {waited_ms} ms")]
    TimedOut {
        /// The session.
        session: SessionId,
        /// What was awaited.
        what: &'static str,
        /// How long the call waited.
        waited_ms: u64,
    },
    /// The input's payload is larger than the runtime accepts; nothing was admitted.
    #[error("payload of {len} bytes exceeds the limit of {max}")]
    PayloadTooLarge {
        /// The payload's size.
        len: usize,
        /// The bound.
        max: usize,
    },
    /// The runtime holds as many sessions as it may.
    #[error("the runtime already holds {max} sessions")]
    TooManySessions {
        /// The bound.
        max: usize,
    },
    /// A stored session could not be loaded.
    #[error("session {session}: the stored state could not be restored: {message}")]
    Corrupt {
        /// The session.
        session: SessionId,
        /// What was wrong.
        message: String,
    },
}

impl RuntimeError {
    /// Whether the same call may succeed later unchanged: a transient refusal ([`Refusal::is_transient`]) or a
    /// store write that failed (the call was undone).
    #[must_use]
    pub fn is_transient(&self) -> bool {
        match self {
            RuntimeError::Refused { refusal, .. } => refusal.is_transient(),
            RuntimeError::Store { .. } => true,
            _ => false,
        }
    }

    /// Wraps a machine refusal, lifting input validation to [`RuntimeError::Rejected`].
    /// The error of a store write that failed: the store's own, or [`RuntimeError::NotOwner`] when it fenced the
    /// write (another host owns the session).
    pub(crate) fn store(session: SessionId, error: StoreError) -> RuntimeError {
        match error {
            StoreError::Fenced(fenced) => RuntimeError::NotOwner { session, owner: fenced.owner },
            error => RuntimeError::Store { session, error },
        }
    }

    pub(crate) fn refused(session: SessionId, call: &'static str, refusal: Refusal) -> RuntimeError {
        match refusal {
            Refusal::Invalid(validation) => RuntimeError::Rejected(validation),
            Refusal::NotOwner { owner } => RuntimeError::NotOwner { session, owner },
            refusal => RuntimeError::Refused { session, call, refusal },
        }
    }

    /// The machine's refusal, if this error is one ([`RuntimeError::Refused`]); `None` for every other variant.
    ///
    /// # Examples
    ///
    /// ```
    /// use burrow::{Runtime, RuntimeError, SessionId};
    /// use burrow::Refusal;
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # burrow_env::runtime::block_on_current_thread(async {
    /// let runtime = Runtime::ephemeral();
    /// let session = SessionId(1);
    /// runtime.prepare(session).await?;
    /// let err = runtime.cancel_after_boundary(session).await.unwrap_err();
    /// assert_eq!(err.refusal(), Some(&Refusal::NoRunInFlight));
    /// assert_eq!(RuntimeError::NotFound(session).refusal(), None);
    /// # Ok(())
    /// # })
    /// # }
    /// ```
    #[must_use]
    pub fn refusal(&self) -> Option<&Refusal> {
        match self {
            RuntimeError::Refused { refusal, .. } => Some(refusal),
            _ => None,
        }
    }
}

/// Why [`Runtime::check_invariants`](crate::Runtime::check_invariants) found a session unsound, or could not look.
///
/// # Examples
///
/// ```
/// use burrow::{InvariantError, Runtime, SessionId};
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # burrow_env::runtime::block_on_current_thread(async {
/// let runtime = Runtime::ephemeral();
/// assert_eq!(runtime.check_invariants(SessionId(9)).await, Err(InvariantError::NotFound(SessionId(9))));
/// # Ok(())
/// # })
/// # }
/// ```
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum InvariantError {
    /// The runtime holds no session with this id.
    #[error("no session {0}")]
    NotFound(SessionId),
    /// A rule of the session's machine is broken (SPEC 6): the first one found.
    #[error("session {session}: {violation}")]
    Machine {
        /// The session.
        session: SessionId,
        /// The broken rule, with what shows it.
        violation: Violation,
    },
    /// The shell holds a different number of waiter channels than the machine has unresolved waiters.
    #[error("session {session}: {channels} waiter channels for {pending} unresolved waiters")]
    WaiterChannels {
        /// The session.
        session: SessionId,
        /// Channels the shell holds.
        channels: usize,
        /// Waiters the machine has not resolved.
        pending: usize,
    },
}
