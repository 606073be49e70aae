//! burrow: the runtime control plane for long-lived agent sessions, as users embed it.
//!
//! A [`Runtime`] holds sessions. Each session queues inputs, runs them through the user's [`Executor`] one run at a
//! time, tells every caller the outcome of the input it submitted, tracks background operations, and can be stopped,
//! retired, recycled, reset, recovered, destroyed or unregistered without losing work or leaving a caller waiting.
//!
//! Every decision is made by `burrow-core`'s pure `SessionMachine`. This crate is the shell around it: for each call
//! it locks the session, applies one event, performs the effects the machine returns in order (store commits,
//! waking the loop, resolving waiters, spawning tasks) and feeds each effect's result back as another event. It
//! reaches time, tasks and channels only through `burrow-env`, so the same code runs on tokio and, built with
//! `--cfg madsim`, inside the deterministic simulator.
//!
//! ```
//! use std::sync::Arc;
//! use burrow::{BoxFuture, Executor, ExecutorError, ExecutorOutput, Input, Outcome, RunRequest, RunResult, Runtime};
//! use burrow::SessionId;
//!
//! struct Echo;
//! impl Executor for Echo {
//!     fn apply(&self, request: RunRequest) -> BoxFuture<'_, Result<ExecutorOutput, ExecutorError>> {
//!         Box::pin(async move { Ok(ExecutorOutput::result(request.inputs[0].payload.clone())) })
//!     }
//! }
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! burrow_env::runtime::block_on_current_thread(async {
//!     let runtime = Runtime::ephemeral();
//!     let session = SessionId(1);
//!     runtime.attach_executor(session, Arc::new(Echo)).await?;
//!     let (_, handle) = runtime.accept_input_with_completion(session, Input::prompt("hello")).await?.into_parts();
//!     let outcome = handle.expect("a handle for a new input").wait().await?;
//!     assert_eq!(outcome, Outcome::Completed(RunResult { output: "hello".into() }));
//!     Ok(())
//! })
//! # }
//! ```
//!
//! Inside a tokio service the calls are simply awaited. The examples in these docs drive them with
//! `burrow_env::runtime::block_on_current_thread`, which runs the same code on tokio or, built with `--cfg madsim`,
//! on the simulator.

#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub)]

pub mod completion;
pub mod control;
mod error;
pub mod executor;
pub mod fleet;
pub mod metrics;
pub mod notices;
pub mod ops;
pub mod peer;
#[doc(hidden)]
pub mod planted;
mod runloop;
mod runtime;
mod session;
pub mod store;
pub mod tap;

use std::future::Future;
use std::pin::Pin;

pub use completion::{AcceptOutcome, CompletionError, CompletionHandle, Submitted, WaitFailure};
pub use control::{ControlPlane, Target};
pub use error::{InvariantError, RuntimeError};
pub use executor::{CallbackBatchError, Executor, ExecutorError, ExecutorOutput, Input, RunInput, RunRequest};
pub use fleet::{FleetConfig, FleetError};
pub use notices::{NOTICE_CAPACITY_DEFAULT, Subscription, SubscriptionError};
pub use ops::OperationsHandle;
pub use runtime::{
    AttachReport, Bindings, DestroyReport, EXECUTOR_HOOK_BOUND_DEFAULT, RecoverReport, RecycleReport, ResetReport,
    RetireReport, Runtime, RuntimeConfig, RuntimeState, SESSIONS_MAX_DEFAULT, STOP_WAIT_DEFAULT, SUBMIT_WAIT_DEFAULT,
    StopReport, UnregisterReport,
};
pub use session::PAYLOAD_BYTES_MAX;
pub use store::{MemoryStore, SimStore, SqliteStore, Store, StoreError, SyncMode};

pub use burrow_core::completion::{
    CleanupObservation, ErrorInfo, FailureCause, Outcome, OutcomeClass, PendingCallback, RunResult,
};
pub use burrow_core::drain::{DrainExitReason, DrainPhase};
pub use burrow_core::ids::{Binding, EpochId, Generation, InputId, OperationId, RunId, SessionId};
pub use burrow_core::input::{Durability, InputKind, InputSpec, InputState, InputValidation, LedgerRefusal};
pub use burrow_core::invariants::Violation;
pub use burrow_core::lease::{Fenced, HostId, LeaseConfig, LeaseConfigError, LeaseRow};
pub use burrow_core::operations::OpStatus;
pub use burrow_core::phase::RuntimePhase;
pub use burrow_core::registration::{Obligation, RegistrationPhase};
pub use burrow_core::session::{
    BoundaryReceipt, InputView, Notice, Refusal, RunReport, RuntimeEvent, SessionConfig, StopReason,
};

/// The pure machines this crate drives, for the rarer types not re-exported above (the transition functions, the
/// invariant checker, every refusal's detail), at the very version this crate was built with.
pub use burrow_core;

/// A boxed, sendable future: what the [`Executor`], [`Store`] and [`peer::PeerSource`] traits return, so they can be
/// used as trait objects.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;
