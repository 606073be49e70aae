//! Completion handles: how a caller learns the terminal outcome of an input it submitted (SPEC 2.3).
//!
//! The session machine decides when an input's waiters resolve and which outcome class they get; the shell keeps
//! one oneshot sender per waiter id and fans the chosen outcome out. Every registered waiter is sent to exactly
//! once, because the machine removes a waiter in the same transition that resolves it.

use std::future::Future;

use burrow_core::completion::{CleanupObservation, Outcome, OutcomeMismatch};
use burrow_core::ids::{InputId, SessionId};
use burrow_env::sync::oneshot;
use burrow_env::time::{Duration, timeout};

/// What the shell sends to one waiter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Resolution {
    pub(crate) outcome: Result<Outcome, OutcomeMismatch>,
    pub(crate) observation: CleanupObservation,
}

/// Plumbing failures of a completion handle. These are never outcomes: an outcome says what happened to the input,
/// these say the answer could not be delivered.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CompletionError {
    /// The sending side went away without resolving (the session's state was dropped).
    #[error("the completion channel closed before input {input} resolved")]
    ChannelClosed {
        /// The input.
        input: InputId,
    },
    /// The evidence did not fit the chosen class; the waiter fails closed instead of inventing an outcome.
    #[error("input {input}: {mismatch}")]
    FailedClosed {
        /// The input.
        input: InputId,
        /// What the evidence lacked.
        mismatch: OutcomeMismatch,
    },
    /// [`CompletionHandle::wait_timeout`] ran out; the input may still resolve later.
    #[error("input {input} did not resolve within {waited_ms} ms")]
    TimedOut {
        /// The input.
        input: InputId,
        /// How long the caller waited.
        waited_ms: u64,
    },
}

/// What cleanup code receives after a waiter resolved (or failed to).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CleanupContext {
    /// The input.
    pub input: InputId,
    /// The outcome, or the plumbing error.
    pub result: Result<Outcome, CompletionError>,
    /// The runtime-minted observation naming the session and binding; `None` after a plumbing error.
    pub observation: Option<CleanupObservation>,
}

/// Awaits the terminal outcome of one input. Several handles may wait on one input (dedup joins); each gets the
/// same outcome.
#[derive(Debug)]
#[must_use = "a completion handle does nothing unless awaited"]
pub struct CompletionHandle {
    session: SessionId,
    input: InputId,
    rx: oneshot::Receiver<Resolution>,
}

impl CompletionHandle {
    pub(crate) fn new(session: SessionId, input: InputId, rx: oneshot::Receiver<Resolution>) -> CompletionHandle {
        CompletionHandle { session, input, rx }
    }

    /// The input this handle waits on.
    #[must_use]
    pub fn input(&self) -> InputId {
        self.input
    }

    /// The session the input belongs to.
    #[must_use]
    pub fn session(&self) -> SessionId {
        self.session
    }

    /// Waits for the outcome.
    pub async fn wait(self) -> Result<Outcome, CompletionError> {
        self.wait_with_observation().await.map(|(outcome, _)| outcome)
    }

    /// Waits for the outcome and the cleanup observation minted with it.
    pub async fn wait_with_observation(self) -> Result<(Outcome, CleanupObservation), CompletionError> {
        let input = self.input;
        let resolution = self.rx.await.map_err(|_| CompletionError::ChannelClosed { input })?;
        match resolution.outcome {
            Ok(outcome) => Ok((outcome, resolution.observation)),
            Err(mismatch) => Err(CompletionError::FailedClosed { input, mismatch }),
        }
    }

    /// Waits at most `limit`. On [`CompletionError::TimedOut`] the handle is consumed; the input keeps running.
    pub async fn wait_timeout(self, limit: Duration) -> Result<Outcome, CompletionError> {
        let input = self.input;
        match timeout(limit, self.wait()).await {
            Ok(result) => result,
            Err(_) => Err(CompletionError::TimedOut { input, waited_ms: limit.as_millis() as u64 }),
        }
    }

    /// Waits, then runs `cleanup` with what happened: the outcome and its observation, or the plumbing error with
    /// no observation. Cleanup runs in every case, after resolution; its own result is returned alongside.
    pub async fn wait_with_cleanup<F, Fut, T>(self, cleanup: F) -> (Result<Outcome, CompletionError>, T)
    where
        F: FnOnce(CleanupContext) -> Fut,
        Fut: Future<Output = T>,
    {
        let input = self.input;
        let (result, observation) = match self.wait_with_observation().await {
            Ok((outcome, observation)) => (Ok(outcome), Some(observation)),
            Err(error) => (Err(error), None),
        };
        let cleaned = cleanup(CleanupContext { input, result: result.clone(), observation }).await;
        (result, cleaned)
    }
}

/// The answer to an accept with completion (SPEC 3).
#[derive(Debug)]
pub enum AcceptOutcome {
    /// A new input was admitted. `handle` is `None` when no handle was asked for, or when the input went terminal
    /// during admission (an Operation input is consumed on accept).
    Accepted {
        /// The new input.
        input: InputId,
        /// Its completion handle.
        handle: Option<CompletionHandle>,
    },
    /// The idempotency key matched a known input. `handle` joins it while it is in flight, and is `None` when it
    /// is already terminal (or no handle was asked for).
    Deduplicated {
        /// The input that owns the key.
        existing: InputId,
        /// A handle joined to it.
        handle: Option<CompletionHandle>,
    },
}

impl AcceptOutcome {
    /// The input the accept resolved to (new or existing).
    #[must_use]
    pub fn input(&self) -> InputId {
        match self {
            AcceptOutcome::Accepted { input, .. } => *input,
            AcceptOutcome::Deduplicated { existing, .. } => *existing,
        }
    }

    /// Whether the key matched a known input.
    #[must_use]
    pub fn is_deduplicated(&self) -> bool {
        matches!(self, AcceptOutcome::Deduplicated { .. })
    }

    /// The input and the handle, whichever variant this is.
    #[must_use]
    pub fn into_parts(self) -> (InputId, Option<CompletionHandle>) {
        match self {
            AcceptOutcome::Accepted { input, handle } => (input, handle),
            AcceptOutcome::Deduplicated { existing, handle } => (existing, handle),
        }
    }
}
