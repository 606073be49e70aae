//! The executor: the user's code that performs a run (an LLM turn), and the inputs it is handed.

use burrow_core::completion::RunResult;
use burrow_core::ids::{InputId, RunId, SessionId};
use burrow_core::input::{Durability, InputKind, InputSpec};
use burrow_core::session::{RunReport, StopReason};

use crate::BoxFuture;

/// An input as a caller submits it: what the machine needs to know ([`InputSpec`]) and the payload, which only the
/// shell, the store and the executor see.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Input {
    /// Kind, durability and keys.
    pub spec: InputSpec,
    /// The content handed to the executor (a prompt's text, an event's body).
    pub payload: String,
}

impl Input {
    /// An input of `kind` carrying `payload`, durable and without keys.
    #[must_use]
    pub fn new(kind: InputKind, payload: impl Into<String>) -> Input {
        Input { spec: InputSpec::new(kind), payload: payload.into() }
    }

    /// A prompt.
    #[must_use]
    pub fn prompt(text: impl Into<String>) -> Input {
        Input::new(InputKind::Prompt, text)
    }

    /// Sets the durability.
    #[must_use]
    pub fn durability(mut self, durability: Durability) -> Input {
        self.spec = self.spec.durability(durability);
        self
    }

    /// Makes the input ephemeral (dropped by recovery).
    #[must_use]
    pub fn ephemeral(self) -> Input {
        self.durability(Durability::Ephemeral)
    }

    /// Sets the idempotency key.
    #[must_use]
    pub fn idempotency_key(mut self, key: impl Into<String>) -> Input {
        self.spec = self.spec.idempotency_key(key);
        self
    }

    /// Sets the supersession key.
    #[must_use]
    pub fn supersession_key(mut self, key: impl Into<String>) -> Input {
        self.spec = self.spec.supersession_key(key);
        self
    }

    /// Puts the input in the steer lane.
    #[must_use]
    pub fn steer(mut self) -> Input {
        self.spec = self.spec.steer();
        self
    }
}

/// One contributing input of a run, as the executor sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunInput {
    /// The input.
    pub id: InputId,
    /// Its kind.
    pub kind: InputKind,
    /// Its payload.
    pub payload: String,
}

/// What a run asks of the executor: the run primitive, naming its contributing inputs in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunRequest {
    /// The session.
    pub session: SessionId,
    /// The run.
    pub run: RunId,
    /// The contributing inputs, in the order they were staged.
    pub inputs: Vec<RunInput>,
}

/// What a run produced. The runtime mints the boundary receipt (run id, boundary, contributing inputs, sequence)
/// and commits it with the input updates and the snapshot in one atomic store write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExecutorOutput {
    /// Result, no result, or a pending callback.
    pub report: RunReport,
    /// An opaque session snapshot to persist with the boundary.
    pub snapshot: Option<Vec<u8>>,
}

impl ExecutorOutput {
    /// A turn that produced `output`.
    #[must_use]
    pub fn result(output: impl Into<String>) -> ExecutorOutput {
        ExecutorOutput { report: RunReport::Result(RunResult { output: output.into() }), snapshot: None }
    }

    /// A turn that finished without a result.
    #[must_use]
    pub fn no_result() -> ExecutorOutput {
        ExecutorOutput { report: RunReport::NoResult, snapshot: None }
    }

    /// A turn that stopped at a callback boundary.
    #[must_use]
    pub fn callback(tool: impl Into<String>, args: impl Into<String>) -> ExecutorOutput {
        ExecutorOutput { report: RunReport::CallbackPending { tool: tool.into(), args: args.into() }, snapshot: None }
    }

    /// Attaches a snapshot to persist with the boundary.
    #[must_use]
    pub fn with_snapshot(mut self, snapshot: Vec<u8>) -> ExecutorOutput {
        self.snapshot = Some(snapshot);
        self
    }
}

/// An executor's failure; the run fails and its inputs follow the attempt rule.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ExecutorError {
    /// What went wrong.
    pub message: String,
}

impl ExecutorError {
    /// An error with `message`.
    #[must_use]
    pub fn new(message: impl Into<String>) -> ExecutorError {
        ExecutorError { message: message.into() }
    }
}

/// The user's turn runner.
///
/// The runtime calls it without holding any session lock, so it may call back into the runtime during `apply`
/// (accept an input into its own or another session, read state, register operations). A panic in `apply` is
/// contained: the run fails and the session lives.
pub trait Executor: Send + Sync + 'static {
    /// Performs one run. Dropping the returned future cancels the run (interrupt, deadline, destroy).
    fn apply(&self, request: RunRequest) -> BoxFuture<'_, Result<ExecutorOutput, ExecutorError>>;

    /// Asks the run in flight to stop at its next boundary. An error fails closed: the runtime cannot count on
    /// the boundary, so it interrupts the run instead of letting it go on unbounded.
    fn cancel_after_boundary(&self, run: RunId) -> BoxFuture<'_, Result<(), ExecutorError>> {
        let _ = run;
        Box::pin(async { Ok(()) })
    }

    /// The session stops this executor; no run is in flight when this is called.
    fn stop(&self, reason: StopReason) -> BoxFuture<'_, ()> {
        let _ = reason;
        Box::pin(async {})
    }

    /// Runs after the stop took effect, before the loop exits (release resources here).
    fn cleanup_after_stop(&self) -> BoxFuture<'_, ()> {
        Box::pin(async {})
    }
}
