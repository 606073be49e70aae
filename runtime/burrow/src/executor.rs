//! The executor: the user's code that performs a run (an LLM turn), and the inputs it is handed.

use burrow_core::completion::{CALLBACKS_PER_BATCH_MAX, PendingCallback, RunResult};
use burrow_core::ids::{InputId, RunId, SessionId};
use burrow_core::input::{Durability, InputKind, InputSpec};
use burrow_core::session::{RunReport, StopReason};

use crate::BoxFuture;

/// An input as a caller submits it: what the machine needs to know ([`InputSpec`]) and the payload, which only the
/// shell, the store and the executor see.
///
/// # Examples
///
/// ```
/// use burrow::{Durability, Input, InputKind};
/// let input = Input::prompt("summarise the thread").idempotency_key("message-42").ephemeral();
/// assert_eq!(input.spec.kind, InputKind::Prompt);
/// assert_eq!(input.spec.durability, Durability::Ephemeral);
/// assert_eq!(input.spec.idempotency_key.as_deref(), Some("message-42"));
/// assert_eq!(input.payload, "summarise the thread");
///
/// let event = Input::new(InputKind::ExternalEvent, "price: 12").supersession_key("price");
/// assert_eq!(event.spec.durability, Durability::Durable, "durable unless asked otherwise");
/// ```
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

    /// A prompt carrying `text`, durable and without keys.
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

    /// Makes the input ephemeral: it is never written to the store, and recovery drops it (resolving its waiters).
    #[must_use]
    pub fn ephemeral(self) -> Input {
        self.durability(Durability::Ephemeral)
    }

    /// Sets the idempotency key: an accept whose key names a known input is deduplicated to that input.
    #[must_use]
    pub fn idempotency_key(mut self, key: impl Into<String>) -> Input {
        self.spec = self.spec.idempotency_key(key);
        self
    }

    /// Sets the supersession key: the input replaces a pending input of the same kind and key, whose waiters move to
    /// it.
    #[must_use]
    pub fn supersession_key(mut self, key: impl Into<String>) -> Input {
        self.spec = self.spec.supersession_key(key);
        self
    }

    /// Puts the input in the steer lane: pending steer inputs are batched into the next run, ahead of the queue lane.
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
///
/// A run of the queue lane carries one input; a run of the steer lane carries every pending steer input (up to a
/// bound).
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
///
/// The report decides the outcome class of the run's inputs: [`ExecutorOutput::result`] gives Completed,
/// [`ExecutorOutput::no_result`] CompletedWithoutResult, [`ExecutorOutput::callback`] CallbackPending,
/// [`ExecutorOutput::callbacks`] CallbackBatchPending.
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
/// use burrow::{BoxFuture, Executor, ExecutorError, ExecutorOutput, Input, Outcome, RunRequest, Runtime, SessionId};
///
/// /// Stops every turn at a tool call.
/// struct Tool;
/// impl Executor for Tool {
///     fn apply(&self, _: RunRequest) -> BoxFuture<'_, Result<ExecutorOutput, ExecutorError>> {
///         Box::pin(async { Ok(ExecutorOutput::callback("forecast", r#"{"city":"Oslo"}"#)) })
///     }
/// }
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # burrow_env::runtime::block_on_current_thread(async {
/// let runtime = Runtime::ephemeral();
/// let session = SessionId(1);
/// runtime.attach_executor(session, Arc::new(Tool)).await?;
/// let (_, handle) = runtime.accept_input_with_completion(session, Input::prompt("weather?")).await?.into_parts();
/// let outcome = handle.expect("a handle").wait().await?;
/// assert_eq!(outcome, Outcome::CallbackPending { tool: "forecast".into(), args: "{\"city\":\"Oslo\"}".into() });
/// # Ok(())
/// # })
/// # }
/// ```
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

    /// A turn that stopped with several tool calls pending at once; its waiters get
    /// [`Outcome::CallbackBatchPending`](crate::Outcome::CallbackBatchPending) with the calls in this order.
    ///
    /// # Errors
    ///
    /// [`CallbackBatchError`] if `calls` is empty or holds more than
    /// [`CALLBACKS_PER_BATCH_MAX`] calls. (A report built
    /// by hand with such a batch fails its run.)
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::Arc;
    /// use burrow::burrow_core::completion::PendingCallback;
    /// use burrow::{BoxFuture, Executor, ExecutorError, ExecutorOutput, Input, Outcome, RunRequest, Runtime, SessionId};
    ///
    /// fn call(tool: &str) -> PendingCallback {
    ///     PendingCallback { tool: tool.into(), args: "{}".into() }
    /// }
    /// /// Asks for two tools at once.
    /// struct Tools;
    /// impl Executor for Tools {
    ///     fn apply(&self, _: RunRequest) -> BoxFuture<'_, Result<ExecutorOutput, ExecutorError>> {
    ///         let output = ExecutorOutput::callbacks(vec![call("forecast"), call("calendar")]);
    ///         Box::pin(async move { Ok(output.expect("two calls fit the bound")) })
    ///     }
    /// }
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # burrow_env::runtime::block_on_current_thread(async {
    /// let runtime = Runtime::ephemeral();
    /// let session = SessionId(1);
    /// runtime.attach_executor(session, Arc::new(Tools)).await?;
    /// let (_, handle) = runtime.accept_input_with_completion(session, Input::prompt("plan my day")).await?.into_parts();
    /// let outcome = handle.expect("a handle").wait().await?;
    /// assert_eq!(outcome, Outcome::CallbackBatchPending { calls: vec![call("forecast"), call("calendar")] });
    /// assert!(ExecutorOutput::callbacks(Vec::new()).is_err(), "an empty batch is refused");
    /// # Ok(())
    /// # })
    /// # }
    /// ```
    pub fn callbacks(calls: Vec<PendingCallback>) -> Result<ExecutorOutput, CallbackBatchError> {
        let output = ExecutorOutput { report: RunReport::CallbackBatchPending { calls }, snapshot: None };
        match output.report.malformed() {
            None => Ok(output),
            Some(_) => {
                let RunReport::CallbackBatchPending { calls } = output.report else { unreachable!("built above") };
                Err(CallbackBatchError { len: calls.len(), max: CALLBACKS_PER_BATCH_MAX })
            }
        }
    }

    /// Attaches a snapshot to persist with the boundary.
    #[must_use]
    pub fn with_snapshot(mut self, snapshot: Vec<u8>) -> ExecutorOutput {
        self.snapshot = Some(snapshot);
        self
    }
}

/// A callback batch outside its bound (see [`ExecutorOutput::callbacks`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("a callback batch holds 1 to {max} calls, not {len}")]
pub struct CallbackBatchError {
    /// The calls given.
    pub len: usize,
    /// The bound.
    pub max: usize,
}

/// An executor's failure; the run fails and its inputs follow the attempt rule.
///
/// A failed input goes back to the queue while it has attempts left
/// ([`SessionConfig::max_attempts`](crate::SessionConfig::max_attempts)), and is abandoned with the error once it has
/// none.
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
/// use burrow::{BoxFuture, Executor, ExecutorError, ExecutorOutput, Input, OutcomeClass, RunRequest, Runtime};
/// use burrow::{SessionConfig, SessionId};
///
/// struct Broken;
/// impl Executor for Broken {
///     fn apply(&self, _: RunRequest) -> BoxFuture<'_, Result<ExecutorOutput, ExecutorError>> {
///         Box::pin(async { Err(ExecutorError::new("the model is unreachable")) })
///     }
/// }
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # burrow_env::runtime::block_on_current_thread(async {
/// let runtime = Runtime::ephemeral();
/// let session = SessionId(1);
/// runtime.prepare_with(session, SessionConfig { max_attempts: 1, ..SessionConfig::default() }).await?;
/// runtime.attach_executor(session, Arc::new(Broken)).await?;
/// let (_, handle) = runtime.accept_input_with_completion(session, Input::prompt("hi")).await?.into_parts();
/// let outcome = handle.expect("a handle").wait().await?;
/// assert_eq!(outcome.class(), OutcomeClass::AbandonedWithError);
/// # Ok(())
/// # })
/// # }
/// ```
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
///
/// Only [`Executor::apply`] is required; the other methods default to doing nothing.
///
/// # Examples
///
/// ```
/// use std::sync::atomic::{AtomicUsize, Ordering};
/// use std::sync::{Arc, Mutex};
/// use burrow::{BoxFuture, Executor, ExecutorError, ExecutorOutput, Input, Outcome, RunRequest, RunResult, Runtime};
/// use burrow::{SessionId, StopReason};
///
/// #[derive(Default)]
/// struct Turn {
///     stops: Mutex<Vec<StopReason>>,
///     cleanups: AtomicUsize,
/// }
///
/// impl Executor for Turn {
///     fn apply(&self, request: RunRequest) -> BoxFuture<'_, Result<ExecutorOutput, ExecutorError>> {
///         Box::pin(async move {
///             let bytes: usize = request.inputs.iter().map(|input| input.payload.len()).sum();
///             Ok(ExecutorOutput::result(format!("{bytes} bytes")))
///         })
///     }
///
///     fn stop(&self, reason: StopReason) -> BoxFuture<'_, ()> {
///         self.stops.lock().unwrap().push(reason);
///         Box::pin(async {})
///     }
///
///     fn cleanup_after_stop(&self) -> BoxFuture<'_, ()> {
///         self.cleanups.fetch_add(1, Ordering::SeqCst);
///         Box::pin(async {})
///     }
/// }
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # burrow_env::runtime::block_on_current_thread(async {
/// let turn = Arc::new(Turn::default());
/// let runtime = Runtime::ephemeral();
/// let session = SessionId(1);
/// runtime.attach_executor(session, turn.clone()).await?;
/// let (_, handle) = runtime.accept_input_with_completion(session, Input::prompt("hello")).await?.into_parts();
/// let outcome = handle.expect("a handle").wait().await?;
/// assert_eq!(outcome, Outcome::Completed(RunResult { output: "5 bytes".into() }));
///
/// runtime.stop_executor(session).await?;
/// assert_eq!(*turn.stops.lock().unwrap(), vec![StopReason::Requested]);
/// assert_eq!(turn.cleanups.load(Ordering::SeqCst), 1, "cleanup ran before stop_executor returned");
/// # Ok(())
/// # })
/// # }
/// ```
pub trait Executor: Send + Sync + 'static {
    /// Performs one run. Dropping the returned future cancels the run (interrupt, deadline, destroy).
    ///
    /// Returns what the run produced; the runtime commits it at the run's boundary.
    ///
    /// # Errors
    ///
    /// An error fails the run: its inputs follow the attempt rule (see [`ExecutorError`]).
    fn apply(&self, request: RunRequest) -> BoxFuture<'_, Result<ExecutorOutput, ExecutorError>>;

    /// Asks the run in flight to stop at its next boundary. An error fails closed: the runtime cannot count on
    /// the boundary, so it interrupts the run instead of letting it go on unbounded.
    ///
    /// # Errors
    ///
    /// Return an error when the run cannot be made to stop at its next boundary. The default accepts every request.
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
