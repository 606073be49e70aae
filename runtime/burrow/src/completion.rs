//! Completion handles: how a caller learns the terminal outcome of an input it submitted (SPEC 2.3).
//!
//! The session machine decides when an input's waiters resolve and which outcome class they get; the shell keeps
//! one oneshot sender per waiter id and fans the chosen outcome out. Every registered waiter is sent to exactly
//! once, because the machine removes a waiter in the same transition that resolves it.

use std::future::Future;

use burrow_core::completion::{CleanupObservation, NoOutcome, Outcome, OutcomeMismatch};
use burrow_core::ids::{InputId, SessionId};
use burrow_core::input::InputState;
use burrow_core::lease::HostId;
use burrow_env::sync::oneshot;
use burrow_env::time::{Duration, timeout};

/// What the shell sends to one waiter: the resolution the machine chose, or why none can come.
pub(crate) type Delivery = Result<Resolution, WaitFailure>;

/// A resolution the machine chose for one waiter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Resolution {
    pub(crate) outcome: Result<Outcome, NoOutcome>,
    pub(crate) observation: CleanupObservation,
}

/// Why a wait failed for a reason outside its input: the input may still be in the store, but nothing in this
/// process will resolve its waiters.
///
/// An unregistered session is not one of these: its unregister resolves every waiter with an outcome
/// (RuntimeTerminated) before it lets the session go.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, thiserror::Error)]
#[non_exhaustive]
pub enum WaitFailure {
    /// The last clone of the runtime was dropped while the session held no live loop (a live loop stops the session
    /// and resolves its waiters RuntimeTerminated instead).
    #[error("the runtime was dropped")]
    RuntimeDropped,
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
    /// Nothing in this process will resolve the input's waiters any more, for the reason given (the runtime was
    /// dropped, say). Not an outcome: the input itself may still be pending in the store.
    #[error("input {input} will not resolve here: {reason}")]
    Unresolved {
        /// The input.
        input: InputId,
        /// Why.
        reason: WaitFailure,
    },
    /// The evidence did not fit the chosen class; the waiter fails closed instead of inventing an outcome.
    #[error("input {input}: {mismatch}")]
    FailedClosed {
        /// The input.
        input: InputId,
        /// What the evidence lacked.
        mismatch: OutcomeMismatch,
    },
    /// The session moved to another host of the fleet before the input ended here. Not an outcome. A durable input
    /// is in the store and goes on at the new owner: ask it there (submit again with the same idempotency key). An
    /// ephemeral input was only in this host's memory and is gone; a derived one is ended by the new owner's
    /// recovery, as after a restart.
    #[error("input {input}: the session moved to another host ({})", owner.map_or_else(|| "owner unknown".to_string(), |h| h.to_string()))]
    OwnershipMoved {
        /// The input.
        input: InputId,
        /// The new owner, when the store named it.
        owner: Option<HostId>,
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

/// What [`Runtime::submit`](crate::Runtime::submit) answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Submitted {
    /// The input reached its outcome within the wait.
    Finished {
        /// The input (an earlier one with the key, when `joined`).
        input: InputId,
        /// Its outcome.
        outcome: Outcome,
        /// The key named an input already in flight, and this call waited on it.
        joined: bool,
    },
    /// The wait passed first. The input goes on; submit again with the same key to wait for it again.
    StillRunning {
        /// The input.
        input: InputId,
        /// How long this call waited, in milliseconds.
        waited_ms: u64,
        /// The key named an input already in flight (this call admitted nothing).
        joined: bool,
    },
    /// There was nothing to wait for: the key's input had already ended (before this call, or before a restart), or
    /// the input ended at its admission (an operation record). Its outcome went to the callers that waited on it
    /// then; the runtime keeps no run's result. Its terminal state is given while the session or its store still
    /// holds it.
    Ended {
        /// The input.
        input: InputId,
        /// Its terminal state, if known.
        state: Option<InputState>,
        /// The key named an earlier input (false: this call's input ended at its admission).
        joined: bool,
    },
}

impl Submitted {
    /// The input the answer is about.
    #[must_use]
    pub fn input(&self) -> InputId {
        match self {
            Submitted::Finished { input, .. }
            | Submitted::StillRunning { input, .. }
            | Submitted::Ended { input, .. } => *input,
        }
    }
}

/// Awaits the terminal outcome of one input. Several handles may wait on one input (dedup joins); each gets the
/// same outcome.
///
/// A handle comes from [`Runtime::accept_input_with_completion`](crate::Runtime::accept_input_with_completion) and
/// its siblings, through [`AcceptOutcome::into_parts`]. Dropping it does not affect the input.
#[derive(Debug)]
#[must_use = "a completion handle does nothing unless awaited"]
pub struct CompletionHandle {
    session: SessionId,
    input: InputId,
    rx: oneshot::Receiver<Delivery>,
}

impl CompletionHandle {
    pub(crate) fn new(session: SessionId, input: InputId, rx: oneshot::Receiver<Delivery>) -> CompletionHandle {
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

    /// Waits for the terminal outcome of the input: one of the outcome classes of [`Outcome`].
    ///
    /// # Errors
    ///
    /// - [`CompletionError::Unresolved`] if nothing will resolve the input here any more (the runtime was dropped);
    /// - [`CompletionError::ChannelClosed`] if the session's state went away without a word (never expected);
    /// - [`CompletionError::FailedClosed`] if the evidence did not fit the chosen outcome class.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::Arc;
    /// use burrow::{Input, Outcome, RunResult, Runtime, SessionId};
    /// # use burrow::{BoxFuture, Executor, ExecutorError, ExecutorOutput, RunRequest};
    /// # struct Echo;
    /// # impl Executor for Echo {
    /// #     fn apply(&self, request: RunRequest) -> BoxFuture<'_, Result<ExecutorOutput, ExecutorError>> {
    /// #         Box::pin(async move { Ok(ExecutorOutput::result(request.inputs[0].payload.clone())) })
    /// #     }
    /// # }
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # burrow_env::runtime::block_on_current_thread(async {
    /// let runtime = Runtime::ephemeral();
    /// let session = SessionId(1);
    /// runtime.attach_executor(session, Arc::new(Echo)).await?;
    /// let accepted = runtime.accept_input_with_completion(session, Input::prompt("hello")).await?;
    /// let handle = accepted.into_parts().1.expect("a new input has a handle");
    /// assert_eq!(handle.session(), session);
    /// assert_eq!(handle.wait().await?, Outcome::Completed(RunResult { output: "hello".into() }));
    /// # Ok(())
    /// # })
    /// # }
    /// ```
    pub async fn wait(self) -> Result<Outcome, CompletionError> {
        self.wait_with_observation().await.map(|(outcome, _)| outcome)
    }

    /// Waits for the outcome and the cleanup observation minted with it. The observation names the session, its
    /// binding at resolution time and the class; [`Runtime::validate_cleanup`](crate::Runtime::validate_cleanup) checks
    /// it later.
    ///
    /// # Errors
    ///
    /// - [`CompletionError::Unresolved`] if nothing will resolve the input here any more (the runtime was dropped);
    /// - [`CompletionError::ChannelClosed`] if the session's state went away without a word (never expected);
    /// - [`CompletionError::FailedClosed`] if the evidence did not fit the chosen outcome class;
    /// - [`CompletionError::OwnershipMoved`] if the session moved to another host first.
    pub async fn wait_with_observation(self) -> Result<(Outcome, CleanupObservation), CompletionError> {
        let input = self.input;
        let delivery = self.rx.await.map_err(|_| CompletionError::ChannelClosed { input })?;
        let resolution = delivery.map_err(|reason| CompletionError::Unresolved { input, reason })?;
        match resolution.outcome {
            Ok(outcome) => Ok((outcome, resolution.observation)),
            Err(NoOutcome::Mismatch(mismatch)) => Err(CompletionError::FailedClosed { input, mismatch }),
            Err(NoOutcome::OwnershipMoved { owner }) => Err(CompletionError::OwnershipMoved { input, owner }),
        }
    }

    /// Waits at most `limit`. On [`CompletionError::TimedOut`] the handle is consumed; the input keeps running.
    ///
    /// # Errors
    ///
    /// - [`CompletionError::TimedOut`] if the input did not resolve within `limit`;
    /// - the errors of [`CompletionHandle::wait`].
    ///
    /// # Examples
    ///
    /// ```
    /// use burrow::{CompletionError, Input, Runtime, SessionId};
    /// use burrow_env::time::Duration;
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # burrow_env::runtime::block_on_current_thread(async {
    /// let runtime = Runtime::ephemeral();
    /// let session = SessionId(1);
    /// runtime.prepare(session).await?; // no executor: the input stays queued
    /// let (input, handle) = runtime.accept_input_with_completion(session, Input::prompt("hi")).await?.into_parts();
    /// let err = handle.expect("a handle").wait_timeout(Duration::from_millis(5)).await.unwrap_err();
    /// assert_eq!(err, CompletionError::TimedOut { input, waited_ms: 5 });
    /// assert!(runtime.input_state(session, input).await?.is_some(), "the input is still there");
    /// # Ok(())
    /// # })
    /// # }
    /// ```
    pub async fn wait_timeout(self, limit: Duration) -> Result<Outcome, CompletionError> {
        let input = self.input;
        match timeout(limit, self.wait()).await {
            Ok(result) => result,
            Err(_) => Err(CompletionError::TimedOut { input, waited_ms: limit.as_millis() as u64 }),
        }
    }

    /// Waits, then runs `cleanup` with what happened: the outcome and its observation, or the plumbing error with
    /// no observation. Cleanup runs in every case, after resolution; its own result is returned alongside.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::Arc;
    /// use burrow::{Input, OutcomeClass, Runtime, SessionId};
    /// # use burrow::{BoxFuture, Executor, ExecutorError, ExecutorOutput, RunRequest};
    /// # struct Echo;
    /// # impl Executor for Echo {
    /// #     fn apply(&self, request: RunRequest) -> BoxFuture<'_, Result<ExecutorOutput, ExecutorError>> {
    /// #         Box::pin(async move { Ok(ExecutorOutput::result(request.inputs[0].payload.clone())) })
    /// #     }
    /// # }
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # burrow_env::runtime::block_on_current_thread(async {
    /// let runtime = Runtime::ephemeral();
    /// let session = SessionId(1);
    /// runtime.attach_executor(session, Arc::new(Echo)).await?;
    /// let (input, handle) = runtime.accept_input_with_completion(session, Input::prompt("hi")).await?.into_parts();
    /// let (result, cleaned) = handle
    ///     .expect("a handle")
    ///     .wait_with_cleanup(|context| async move { (context.input, context.observation.is_some()) })
    ///     .await;
    /// assert_eq!(result?.class(), OutcomeClass::Completed);
    /// assert_eq!(cleaned, (input, true));
    /// # Ok(())
    /// # })
    /// # }
    /// ```
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
///
/// # Examples
///
/// ```
/// use burrow::{AcceptOutcome, Input, InputKind, Runtime, SessionId};
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # burrow_env::runtime::block_on_current_thread(async {
/// let runtime = Runtime::ephemeral();
/// let session = SessionId(1);
/// runtime.prepare(session).await?;
/// let prompt = runtime.accept_input_with_completion(session, Input::prompt("hi")).await?;
/// assert!(matches!(prompt, AcceptOutcome::Accepted { handle: Some(_), .. }));
/// let op = runtime.accept_input_with_completion(session, Input::new(InputKind::Operation, "done")).await?;
/// assert!(!op.is_deduplicated());
/// assert!(op.into_parts().1.is_none(), "an Operation input is consumed on accept: nothing to wait for");
/// # Ok(())
/// # })
/// # }
/// ```
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
