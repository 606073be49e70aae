//! The control plane (SPEC 3): the calls an outside controller makes, addressed by runtime id.
//!
//! A target names a session and, optionally, the binding the caller holds. A binding that is not the session's
//! current one is refused (fencing): a controller that missed a recycle or a re-registration cannot act on the
//! new instance by mistake. An unknown id is [`RuntimeError::NotFound`].

use burrow_core::ids::{Binding, RunId, SessionId};
use burrow_core::session::{BoundaryReceipt, RuntimeEvent};

use crate::BoxFuture;
use crate::completion::AcceptOutcome;
use crate::error::RuntimeError;
use crate::executor::Input;
use crate::runtime::{DestroyReport, RecoverReport, RecycleReport, ResetReport, RetireReport, Runtime, RuntimeState};

/// Which runtime instance a control call is for.
///
/// A bare [`SessionId`] converts into an unfenced target.
///
/// # Examples
///
/// ```
/// use burrow::{Binding, EpochId, Generation, SessionId, Target};
/// let session = SessionId(1);
/// let binding = Binding { epoch: EpochId(1), generation: Generation(0) };
/// assert_eq!(Target::from(session), Target { session, binding: None });
/// assert_eq!(Target::bound(session, binding).binding, Some(binding));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Target {
    /// The runtime id (the session).
    pub session: SessionId,
    /// The binding the caller holds; `None` skips fencing.
    pub binding: Option<Binding>,
}

impl From<SessionId> for Target {
    fn from(session: SessionId) -> Target {
        Target { session, binding: None }
    }
}

impl Target {
    /// A target fenced by `binding`.
    #[must_use]
    pub fn bound(session: SessionId, binding: Binding) -> Target {
        Target { session, binding: Some(binding) }
    }
}

/// What a controller may do to runtime instances. [`Runtime`] implements it.
///
/// Every call first checks its [`Target`]: an unknown session is [`RuntimeError::NotFound`], and a binding that is
/// not the session's current one is [`RuntimeError::Refused`] (a stale binding). Then it does what the runtime's
/// call of the same name does, and returns its answer or its error.
///
/// # Examples
///
/// ```
/// use burrow::{ControlPlane, Runtime, RuntimeError, RuntimePhase, SessionId, Target};
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # burrow_env::runtime::block_on_current_thread(async {
/// let runtime = Runtime::ephemeral();
/// let session = SessionId(1);
/// let old = runtime.prepare(session).await?.binding;
/// let plane: &dyn ControlPlane = &runtime;
/// plane.recycle(Target::bound(session, old)).await?;
/// let err = plane.retire(Target::bound(session, old)).await.unwrap_err();
/// assert!(matches!(err, RuntimeError::Refused { .. }), "the recycle made the old binding stale: {err}");
///
/// let current = plane.runtime_state(session.into()).await?.binding.expect("prepared");
/// plane.retire(Target::bound(session, current)).await?;
/// assert_eq!(plane.runtime_state(session.into()).await?.phase, RuntimePhase::Retired);
/// assert_eq!(plane.destroy(SessionId(9).into()).await.unwrap_err(), RuntimeError::NotFound(SessionId(9)));
/// # Ok(())
/// # })
/// # }
/// ```
pub trait ControlPlane: Send + Sync {
    /// Submits an input with a completion handle, as [`Runtime::accept_input_with_completion`].
    ///
    /// # Errors
    ///
    /// The target's errors (see [`ControlPlane`]), then those of [`Runtime::accept_input`].
    fn ingest(&self, target: Target, input: Input) -> BoxFuture<'_, Result<AcceptOutcome, RuntimeError>>;
    /// Tells the target session's subscribers `event`, as [`Runtime::publish_event`]: not an input (use
    /// [`ControlPlane::ingest`] with an ExternalEvent input for that).
    ///
    /// # Errors
    ///
    /// The target's errors (see [`ControlPlane`]), then those of [`Runtime::publish_event`].
    fn publish_event(&self, target: Target, event: RuntimeEvent) -> BoxFuture<'_, Result<(), RuntimeError>>;
    /// Retires the target session, as [`Runtime::retire`].
    ///
    /// # Errors
    ///
    /// The target's errors (see [`ControlPlane`]), then those of [`Runtime::retire`].
    fn retire(&self, target: Target) -> BoxFuture<'_, Result<RetireReport, RuntimeError>>;
    /// Recycles the target session, as [`Runtime::recycle`].
    ///
    /// # Errors
    ///
    /// The target's errors (see [`ControlPlane`]), then those of [`Runtime::recycle`].
    fn recycle(&self, target: Target) -> BoxFuture<'_, Result<RecycleReport, RuntimeError>>;
    /// Resets the target session, as [`Runtime::reset`].
    ///
    /// # Errors
    ///
    /// The target's errors (see [`ControlPlane`]), then those of [`Runtime::reset`].
    fn reset(&self, target: Target) -> BoxFuture<'_, Result<ResetReport, RuntimeError>>;
    /// Recovers the target session, as [`Runtime::recover`].
    ///
    /// # Errors
    ///
    /// The target's errors (see [`ControlPlane`]), then those of [`Runtime::recover`].
    fn recover(&self, target: Target) -> BoxFuture<'_, Result<RecoverReport, RuntimeError>>;
    /// Destroys the target session, as [`Runtime::destroy`].
    ///
    /// # Errors
    ///
    /// The target's errors (see [`ControlPlane`]), then those of [`Runtime::destroy`].
    fn destroy(&self, target: Target) -> BoxFuture<'_, Result<DestroyReport, RuntimeError>>;
    /// Reads the target session's state, as [`Runtime::runtime_state`].
    ///
    /// # Errors
    ///
    /// The target's errors (see [`ControlPlane`]).
    fn runtime_state(&self, target: Target) -> BoxFuture<'_, Result<RuntimeState, RuntimeError>>;
    /// Reads the committed receipt of `run`, as [`Runtime::load_boundary_receipt`].
    ///
    /// # Errors
    ///
    /// The target's errors (see [`ControlPlane`]), then those of [`Runtime::load_boundary_receipt`].
    fn load_boundary_receipt(
        &self,
        target: Target,
        run: RunId,
    ) -> BoxFuture<'_, Result<Option<BoundaryReceipt>, RuntimeError>>;
}

impl Runtime {
    /// An unknown id is NotFound before anything else; the binding, if any, is checked by the machine in the same
    /// transition that acts (see [`crate::session::fenced`]).
    async fn known(&self, target: Target) -> Result<Target, RuntimeError> {
        self.session(target.session).await?;
        Ok(target)
    }
}

impl ControlPlane for Runtime {
    fn ingest(&self, target: Target, input: Input) -> BoxFuture<'_, Result<AcceptOutcome, RuntimeError>> {
        Box::pin(async move {
            let target = self.known(target).await?;
            let session = self.session(target.session).await?;
            session.accept(input, true, true, target.binding).await
        })
    }

    fn publish_event(&self, target: Target, event: RuntimeEvent) -> BoxFuture<'_, Result<(), RuntimeError>> {
        Box::pin(async move { self.publish_event_as(self.known(target).await?, event).await })
    }

    fn retire(&self, target: Target) -> BoxFuture<'_, Result<RetireReport, RuntimeError>> {
        Box::pin(async move { self.retire_as(self.known(target).await?).await })
    }

    fn recycle(&self, target: Target) -> BoxFuture<'_, Result<RecycleReport, RuntimeError>> {
        Box::pin(async move { self.recycle_as(self.known(target).await?).await })
    }

    fn reset(&self, target: Target) -> BoxFuture<'_, Result<ResetReport, RuntimeError>> {
        Box::pin(async move { self.reset_as(self.known(target).await?).await })
    }

    fn recover(&self, target: Target) -> BoxFuture<'_, Result<RecoverReport, RuntimeError>> {
        Box::pin(async move { self.recover_as(self.known(target).await?).await })
    }

    fn destroy(&self, target: Target) -> BoxFuture<'_, Result<DestroyReport, RuntimeError>> {
        Box::pin(async move { self.destroy_as(self.known(target).await?).await })
    }

    fn runtime_state(&self, target: Target) -> BoxFuture<'_, Result<RuntimeState, RuntimeError>> {
        Box::pin(async move { self.runtime_state_as(self.known(target).await?).await })
    }

    fn load_boundary_receipt(
        &self,
        target: Target,
        run: RunId,
    ) -> BoxFuture<'_, Result<Option<BoundaryReceipt>, RuntimeError>> {
        Box::pin(async move { self.load_boundary_receipt_as(self.known(target).await?, run).await })
    }
}
