//! The operations registry of one session as a handle (SPEC 2.4).
//!
//! Each call applies one operations event to the session's machine and reads the answer from the effects it
//! returned. Watchers and waits are oneshot channels bound to the ids the registry allocated; times come from
//! burrow-env's clock.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use burrow_core::ids::{OperationId, RunId, SessionId};
use burrow_core::operations::OpEvent;
pub use burrow_core::operations::{
    CompletionSeq, FeedCursors, FeedEntry, OpOutcome, OpRefusal, OpResult, OpStatus, OperationKind, OperationSnapshot,
    OperationSpec, Progress, WaitId,
};
use burrow_core::session::SessionEvent;
use burrow_env::sync::oneshot;

use crate::error::RuntimeError;
use crate::session::{Driven, Session};

/// The session's operations registry (SPEC 2.4): background jobs and child sessions started on the session's behalf,
/// their lifecycle from Provisioning to an end, watchers, waits and the completion feed.
///
/// Get one from [`Bindings::operations`](crate::Bindings::operations) or
/// [`Runtime::operations`](crate::Runtime::operations). Clones share the registry. Every call that changes it
/// returns [`RuntimeError::Refused`] with the registry's typed reason when the registry refuses, and then changes
/// nothing.
#[derive(Clone)]
pub struct OperationsHandle {
    session: Arc<Session>,
}

impl std::fmt::Debug for OperationsHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OperationsHandle").field("session", &self.session.id).finish()
    }
}

/// Learns how one operation ended, exactly once.
#[derive(Debug)]
#[must_use = "a watcher does nothing unless awaited"]
pub struct OperationWatcher {
    op: OperationId,
    rx: oneshot::Receiver<OpOutcome>,
}

impl OperationWatcher {
    /// The watched operation.
    #[must_use]
    pub fn operation(&self) -> OperationId {
        self.op
    }

    /// Waits for the end and returns how the operation ended. `None` if the session's state went away first.
    pub async fn wait(self) -> Option<OpOutcome> {
        self.rx.await.ok()
    }
}

/// A wait for every named operation to end. Resolves with each outcome in the order the ids were given; dropping it
/// cancels the wait, so another may start.
///
/// Made by [`OperationsHandle::wait_all`]. As a future it yields `None` if the session's state went away first.
#[must_use = "a wait_all does nothing unless awaited"]
pub struct WaitAll {
    session: Arc<Session>,
    wait: WaitId,
    rx: oneshot::Receiver<Vec<(OperationId, OpOutcome)>>,
    done: bool,
}

impl std::fmt::Debug for WaitAll {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WaitAll").field("wait", &self.wait).field("done", &self.done).finish()
    }
}

impl Future for WaitAll {
    type Output = Option<Vec<(OperationId, OpOutcome)>>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match Pin::new(&mut self.rx).poll(cx) {
            Poll::Ready(result) => {
                self.done = true;
                Poll::Ready(result.ok())
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl Drop for WaitAll {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        // The registry must learn the wait is gone so a new one may start. Drop cannot await the session lock, so
        // a small task applies the cancel; if the wait resolved meanwhile the registry refuses it, harmlessly.
        let session = self.session.clone();
        let wait = self.wait;
        drop(burrow_env::task::spawn(async move {
            let mut st = session.lock().await;
            let _ = session.drive(&mut st, SessionEvent::Operation(OpEvent::CancelWait { wait }), None).await;
        }));
    }
}

impl OperationsHandle {
    pub(crate) fn new(session: Arc<Session>) -> OperationsHandle {
        OperationsHandle { session }
    }

    /// The session that owns the registry.
    #[must_use]
    pub fn session(&self) -> SessionId {
        self.session.id
    }

    async fn apply(&self, call: &'static str, event: OpEvent) -> Result<Driven, RuntimeError> {
        let mut st = self.session.lock().await;
        let mut out = Driven::default();
        match self.session.drive_out(&mut st, SessionEvent::Operation(event), None, &mut out).await {
            Ok(_) => Ok(out),
            Err(refusal) => Err(RuntimeError::refused(self.session.id, call, refusal)),
        }
    }

    /// Registers a new operation (it starts Provisioning). Refused past `max_concurrent` with the limit and the
    /// active count. Its kind decides its rules (specs/operations.md#kinds); the session is its owner.
    ///
    /// Returns the new operation's id.
    ///
    /// # Errors
    ///
    /// [`RuntimeError::Refused`] past `max_concurrent` live operations, when the completion feed has no room left
    /// (acknowledge entries first), when a text field is too long, when a kind that cannot have a peer channel
    /// expects one, when the specification names another session as its owner, or a child session for a kind other
    /// than a child session (or the owner as its own child), and once the registry is terminated
    /// ([`OperationsHandle::terminate_owner`], or the session destroyed).
    ///
    /// # Examples
    ///
    /// ```
    /// use burrow::{Runtime, SessionId};
    /// use burrow::ops::{OpStatus, OperationKind, OperationSpec};
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # burrow_env::runtime::block_on_current_thread(async {
    /// let runtime = Runtime::ephemeral();
    /// let ops = runtime.prepare(SessionId(1)).await?.operations;
    /// let spec = OperationSpec::new(OperationKind::BackgroundTool, "fetch");
    /// let op = ops.register(spec).await?;
    /// assert_eq!(ops.snapshot(op).await.expect("retained").status, OpStatus::Provisioning);
    /// ops.provisioning_succeeded(op).await?;
    /// assert_eq!(ops.snapshot(op).await.expect("retained").status, OpStatus::Running);
    /// # Ok(())
    /// # })
    /// # }
    /// ```
    pub async fn register(&self, spec: OperationSpec) -> Result<OperationId, RuntimeError> {
        let out = self.apply("register_operation", OpEvent::Register { spec }).await?;
        out.registered.ok_or_else(|| missing_effect("Registered"))
    }

    /// Provisioning finished; the job runs (Provisioning to Running).
    ///
    /// # Errors
    ///
    /// [`RuntimeError::Refused`] if `op` is unknown or not provisioning, and once the registry is terminated
    /// ([`OperationsHandle::terminate_owner`], or the session destroyed).
    pub async fn provisioning_succeeded(&self, op: OperationId) -> Result<(), RuntimeError> {
        self.apply("provisioning_succeeded", OpEvent::ProvisioningSucceeded { op }).await.map(drop)
    }

    /// Provisioning failed; the operation ends Failed with `error`.
    ///
    /// # Errors
    ///
    /// [`RuntimeError::Refused`] if `op` is unknown or not provisioning, and once the registry is terminated
    /// ([`OperationsHandle::terminate_owner`], or the session destroyed).
    pub async fn provisioning_failed(&self, op: OperationId, error: impl Into<String>) -> Result<(), RuntimeError> {
        self.apply("provisioning_failed", OpEvent::ProvisioningFailed { op, error: error.into() }).await.map(drop)
    }

    /// The job's peer channel is ready (child sessions that expect one; once). `peer` is the channel's handle, shown in
    /// the operation's snapshot.
    ///
    /// # Errors
    ///
    /// [`RuntimeError::Refused`] if `op` is unknown or ended, was registered without expecting a peer, or already
    /// announced one, and once the registry is terminated ([`OperationsHandle::terminate_owner`], or the session
    /// destroyed).
    pub async fn peer_ready(&self, op: OperationId, peer: impl Into<String>) -> Result<(), RuntimeError> {
        self.apply("peer_ready", OpEvent::PeerReady { op, peer: peer.into() }).await.map(drop)
    }

    /// Records one progress report: the snapshot counts it (`progress_count`) and shows it (`progress_last`).
    ///
    /// # Errors
    ///
    /// [`RuntimeError::Refused`] if `op` is unknown or ended, if the message is longer than
    /// [`burrow_core::operations::PROGRESS_MESSAGE_BYTES_MAX`] or the percentage above 100, and once the registry is
    /// terminated ([`OperationsHandle::terminate_owner`], or the session destroyed).
    ///
    /// # Examples
    ///
    /// ```
    /// use burrow::{Runtime, SessionId};
    /// use burrow::ops::{OperationKind, OperationSpec, Progress};
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # burrow_env::runtime::block_on_current_thread(async {
    /// let runtime = Runtime::ephemeral();
    /// let ops = runtime.prepare(SessionId(1)).await?.operations;
    /// let op = ops.register(OperationSpec::new(OperationKind::BackgroundTool, "index").source("indexer")).await?;
    /// ops.provisioning_succeeded(op).await?;
    /// ops.report_progress(op, Progress { message: "3 of 4 shards".into(), percent: Some(75) }).await?;
    /// let snapshot = ops.snapshot(op).await.expect("retained");
    /// assert_eq!(snapshot.progress_count, 1);
    /// assert_eq!(snapshot.progress_last.map(|p| p.percent), Some(Some(75)));
    /// assert_eq!(snapshot.owner, Some(SessionId(1)));
    /// assert_eq!(snapshot.source_label, "indexer");
    /// assert!(ops.report_progress(op, Progress { message: String::new(), percent: Some(101) }).await.is_err());
    /// # Ok(())
    /// # })
    /// # }
    /// ```
    pub async fn report_progress(&self, op: OperationId, progress: Progress) -> Result<(), RuntimeError> {
        self.apply("report_progress", OpEvent::ReportProgress { op, progress }).await.map(drop)
    }

    /// A capacity slot's work is done: the slot ends Completed with an empty result and frees its place under
    /// `max_concurrent`. The same as [`OperationsHandle::complete`] with [`OpResult::empty`]; the only end a capacity
    /// slot's `complete` takes.
    ///
    /// # Errors
    ///
    /// As [`OperationsHandle::complete`].
    ///
    /// # Examples
    ///
    /// ```
    /// use burrow::{Runtime, SessionId};
    /// use burrow::ops::{OpRefusal, OpResult, OperationKind, OperationSpec};
    /// use burrow::Refusal;
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # burrow_env::runtime::block_on_current_thread(async {
    /// let runtime = Runtime::ephemeral();
    /// let ops = runtime.prepare(SessionId(1)).await?.operations;
    /// let slot = ops.register(OperationSpec::new(OperationKind::CapacitySlot, "gpu")).await?;
    /// ops.provisioning_succeeded(slot).await?;
    /// let err = ops.complete(slot, OpResult { content: "x".into(), is_error: false }).await.unwrap_err();
    /// assert!(matches!(err.refusal(), Some(Refusal::Operations(OpRefusal::ResultNotCarried { .. }))));
    /// ops.release(slot).await?;
    /// # Ok(())
    /// # })
    /// # }
    /// ```
    pub async fn release(&self, op: OperationId) -> Result<(), RuntimeError> {
        self.complete(op, OpResult::empty()).await
    }

    /// The job finished with a result. The end of a background tool or a detached job wakes the session once it is
    /// quiescent, with a Continuation input, unless the agent acknowledged the end first
    /// (specs/operations.md#cursors). A capacity slot takes only [`OpResult::empty`] ([`OperationsHandle::release`]).
    ///
    /// # Errors
    ///
    /// [`RuntimeError::Refused`] if `op` is unknown, still provisioning, or already ended (an operation ends once), and
    /// once the registry is terminated ([`OperationsHandle::terminate_owner`], or the session destroyed).
    ///
    /// # Examples
    ///
    /// ```
    /// use burrow::{Runtime, SessionId};
    /// use burrow::ops::{OpOutcome, OpRefusal, OpResult, OperationKind, OperationSpec};
    /// use burrow::Refusal;
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # burrow_env::runtime::block_on_current_thread(async {
    /// let runtime = Runtime::ephemeral();
    /// let ops = runtime.prepare(SessionId(1)).await?.operations;
    /// let spec = OperationSpec::new(OperationKind::BackgroundTool, "fetch");
    /// let op = ops.register(spec).await?;
    /// ops.provisioning_succeeded(op).await?;
    /// let watcher = ops.register_watcher(op).await?;
    /// let result = OpResult { content: "42 rows".into(), is_error: false };
    /// ops.complete(op, result.clone()).await?;
    /// assert_eq!(watcher.wait().await, Some(OpOutcome::Completed(result)));
    ///
    /// let err = ops.fail(op, "too late").await.unwrap_err();
    /// assert!(matches!(err.refusal(), Some(Refusal::Operations(OpRefusal::AlreadyTerminal { .. }))));
    /// # Ok(())
    /// # })
    /// # }
    /// ```
    pub async fn complete(&self, op: OperationId, result: OpResult) -> Result<(), RuntimeError> {
        self.apply("complete_operation", OpEvent::Complete { op, result }).await.map(drop)
    }

    /// The job failed; the operation ends Failed with `error`.
    ///
    /// # Errors
    ///
    /// [`RuntimeError::Refused`] if `op` is unknown, still provisioning, or already ended, and once the registry is
    /// terminated ([`OperationsHandle::terminate_owner`], or the session destroyed).
    pub async fn fail(&self, op: OperationId, error: impl Into<String>) -> Result<(), RuntimeError> {
        self.apply("fail_operation", OpEvent::Fail { op, error: error.into() }).await.map(drop)
    }

    /// Cancels a live operation; it ends Cancelled with `reason`.
    ///
    /// # Errors
    ///
    /// [`RuntimeError::Refused`] if `op` is unknown or already ended, and once the registry is terminated
    /// ([`OperationsHandle::terminate_owner`], or the session destroyed).
    pub async fn cancel(&self, op: OperationId, reason: Option<String>) -> Result<(), RuntimeError> {
        self.apply("cancel_operation", OpEvent::Cancel { op, reason }).await.map(drop)
    }

    /// Abandons an operation still provisioning; it ends Aborted with `reason`.
    ///
    /// # Errors
    ///
    /// [`RuntimeError::Refused`] if `op` is unknown or not provisioning, and once the registry is terminated
    /// ([`OperationsHandle::terminate_owner`], or the session destroyed).
    pub async fn abort_provisioning(&self, op: OperationId, reason: Option<String>) -> Result<(), RuntimeError> {
        self.apply("abort_provisioning", OpEvent::AbortProvisioning { op, reason }).await.map(drop)
    }

    /// Asks a running operation to wind down (Running to Retiring); [`OperationsHandle::mark_retired`] ends it.
    ///
    /// # Errors
    ///
    /// [`RuntimeError::Refused`] if `op` is unknown, still provisioning, ended, or already
    /// retiring, and once the registry is terminated ([`OperationsHandle::terminate_owner`], or the session destroyed).
    pub async fn request_retire(&self, op: OperationId) -> Result<(), RuntimeError> {
        self.apply("request_retire", OpEvent::RequestRetire { op }).await.map(drop)
    }

    /// A retiring operation finished winding down; it ends Retired.
    ///
    /// # Errors
    ///
    /// [`RuntimeError::Refused`] if `op` is unknown or not retiring, and once the registry is terminated
    /// ([`OperationsHandle::terminate_owner`], or the session destroyed).
    pub async fn mark_retired(&self, op: OperationId) -> Result<(), RuntimeError> {
        self.apply("mark_retired", OpEvent::MarkRetired { op }).await.map(drop)
    }

    /// Ends every live operation (Terminated with `reason`) and closes the registry for good: every later call that
    /// would change it is refused. Destroying the session does the same.
    ///
    /// # Errors
    ///
    /// [`RuntimeError::Refused`] if the registry is already terminated.
    pub async fn terminate_owner(&self, reason: impl Into<String>) -> Result<(), RuntimeError> {
        self.apply("terminate_owner", OpEvent::TerminateOwner { reason: reason.into() }).await.map(drop)
    }

    /// A watcher of `op`, which learns how it ended. One registered after the end resolves at once.
    ///
    /// # Errors
    ///
    /// [`RuntimeError::Refused`] if `op` is unknown (never registered, or its record was evicted or collected) or holds
    /// as many watchers as allowed, and once the registry is terminated ([`OperationsHandle::terminate_owner`], or the
    /// session destroyed).
    ///
    /// # Examples
    ///
    /// ```
    /// use burrow::{Runtime, SessionId};
    /// use burrow::ops::{OpOutcome, OperationKind, OperationSpec};
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # burrow_env::runtime::block_on_current_thread(async {
    /// let runtime = Runtime::ephemeral();
    /// let ops = runtime.prepare(SessionId(1)).await?.operations;
    /// let spec = OperationSpec::new(OperationKind::BackgroundTool, "fetch");
    /// let op = ops.register(spec).await?;
    /// ops.provisioning_failed(op, "no worker").await?;
    /// let late = ops.register_watcher(op).await?;
    /// assert_eq!(late.operation(), op);
    /// assert_eq!(late.wait().await, Some(OpOutcome::Failed { error: "no worker".into() }));
    /// # Ok(())
    /// # })
    /// # }
    /// ```
    pub async fn register_watcher(&self, op: OperationId) -> Result<OperationWatcher, RuntimeError> {
        let out = self.apply("register_watcher", OpEvent::RegisterWatcher { op }).await?;
        let (op, rx) = out.watcher.ok_or_else(|| missing_effect("WatcherRegistered"))?;
        Ok(OperationWatcher { op, rx })
    }

    /// Waits for every operation in `ids` to end (one wait at a time, no duplicates, all known). `run` is the run on
    /// whose behalf the wait is made; it is recorded with the wait.
    ///
    /// Returns a [`WaitAll`] future. A wait whose operations have all ended already resolves at once.
    ///
    /// # Errors
    ///
    /// [`RuntimeError::Refused`] while another wait is active, when `ids` names an operation twice or an unknown one,
    /// or names more operations than allowed, and once the registry is terminated
    /// ([`OperationsHandle::terminate_owner`], or the session destroyed).
    ///
    /// # Examples
    ///
    /// ```
    /// use burrow::{RunId, Runtime, SessionId};
    /// use burrow::ops::{OpOutcome, OpResult, OperationKind, OperationSpec};
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # burrow_env::runtime::block_on_current_thread(async {
    /// let runtime = Runtime::ephemeral();
    /// let ops = runtime.prepare(SessionId(1)).await?.operations;
    /// let spec = |name: &str| OperationSpec::new(OperationKind::BackgroundTool, name);
    /// let (a, b) = (ops.register(spec("a")).await?, ops.register(spec("b")).await?);
    /// ops.provisioning_succeeded(a).await?;
    /// ops.provisioning_succeeded(b).await?;
    /// let wait = ops.wait_all(RunId(1), vec![b, a]).await?;
    /// let result = OpResult { content: "A".into(), is_error: false };
    /// ops.complete(a, result.clone()).await?;
    /// ops.cancel(b, None).await?;
    /// let outcomes = wait.await.expect("the session is alive");
    /// assert_eq!(outcomes, vec![(b, OpOutcome::Cancelled { reason: None }), (a, OpOutcome::Completed(result))]);
    /// # Ok(())
    /// # })
    /// # }
    /// ```
    pub async fn wait_all(&self, run: RunId, ids: Vec<OperationId>) -> Result<WaitAll, RuntimeError> {
        let out = self.apply("wait_all", OpEvent::WaitAll { run, ids }).await?;
        let (wait, rx) = out.wait.ok_or_else(|| missing_effect("WaitStarted"))?;
        Ok(WaitAll { session: self.session.clone(), wait, rx, done: false })
    }

    /// Removes and returns every retained ended record, oldest end first.
    ///
    /// # Errors
    ///
    /// [`RuntimeError::Refused`] once the registry is terminated ([`OperationsHandle::terminate_owner`], or the session
    /// destroyed).
    pub async fn collect_completed(&self) -> Result<Vec<(OperationId, OpOutcome)>, RuntimeError> {
        let out = self.apply("collect_completed", OpEvent::CollectCompleted).await?;
        Ok(out.collected.unwrap_or_default())
    }

    /// The entries of the completion feed after `cursor`, in order: one per operation end not yet acknowledged.
    pub async fn feed_since(&self, cursor: CompletionSeq) -> Vec<FeedEntry> {
        self.session.lock().await.machine.operations().feed_since(cursor).cloned().collect()
    }

    /// Marks the feed consumed through `through`; each end is consumed exactly once.
    ///
    /// # Errors
    ///
    /// [`RuntimeError::Refused`] if `through` is past the last entry or behind what was already acknowledged, and once
    /// the registry is terminated ([`OperationsHandle::terminate_owner`], or the session destroyed).
    ///
    /// # Examples
    ///
    /// ```
    /// use burrow::{Runtime, SessionId};
    /// use burrow::ops::{OperationKind, OperationSpec};
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # burrow_env::runtime::block_on_current_thread(async {
    /// let runtime = Runtime::ephemeral();
    /// let bindings = runtime.prepare(SessionId(1)).await?;
    /// let ops = bindings.operations;
    /// let spec = OperationSpec::new(OperationKind::BackgroundTool, "fetch");
    /// let op = ops.register(spec).await?;
    /// ops.provisioning_failed(op, "no worker").await?;
    /// let feed = ops.feed_since(bindings.cursors.0).await;
    /// assert_eq!(feed.len(), 1);
    /// assert_eq!(feed[0].op, op);
    /// ops.acknowledge(feed[0].seq).await?;
    /// assert!(ops.feed_since(feed[0].seq).await.is_empty());
    /// # Ok(())
    /// # })
    /// # }
    /// ```
    pub async fn acknowledge(&self, through: CompletionSeq) -> Result<(), RuntimeError> {
        let through = match self.session.planted {
            Some(crate::planted::ShellDefect::AcknowledgeExclusive) => CompletionSeq(through.0.saturating_sub(1)),
            _ => through,
        };
        self.apply("acknowledge_feed", OpEvent::AcknowledgeFeed { through }).await.map(drop)
    }

    /// The completion feed's three cursors: applied by the agent ([`OperationsHandle::acknowledge`]), observed by the
    /// runtime, and injected (ends a Continuation was made for, or that needed none). All three persist with a store
    /// (specs/operations.md#cursors).
    ///
    /// # Examples
    ///
    /// ```
    /// use burrow::{Runtime, SessionId};
    /// use burrow::ops::{CompletionSeq, OpResult, OperationKind, OperationSpec};
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # burrow_env::runtime::block_on_current_thread(async {
    /// let runtime = Runtime::ephemeral();
    /// let ops = runtime.prepare(SessionId(1)).await?.operations;
    /// let op = ops.register(OperationSpec::new(OperationKind::BackgroundTool, "fetch")).await?;
    /// ops.provisioning_succeeded(op).await?;
    /// ops.complete(op, OpResult { content: "rows".into(), is_error: false }).await?;
    /// // The idle session saw the end and injected a Continuation for it; the agent has not applied it yet.
    /// let cursors = ops.cursors().await;
    /// let (applied, observed, injected) = (cursors.applied, cursors.observed, cursors.injected);
    /// assert_eq!((applied, observed, injected), (CompletionSeq(0), CompletionSeq(1), CompletionSeq(1)));
    /// ops.acknowledge(CompletionSeq(1)).await?;
    /// assert_eq!(ops.cursors().await.applied, CompletionSeq(1));
    /// # Ok(())
    /// # })
    /// # }
    /// ```
    pub async fn cursors(&self) -> FeedCursors {
        self.session.lock().await.machine.operations().cursors()
    }

    /// One operation's snapshot (times from the runtime's clock); `None` if the registry holds no record of `op`.
    pub async fn snapshot(&self, op: OperationId) -> Option<OperationSnapshot> {
        let now = self.session.clock.now();
        self.session.lock().await.machine.operations().snapshot(op, now)
    }

    /// Every retained operation's snapshot, live and ended.
    pub async fn list(&self) -> Vec<OperationSnapshot> {
        let now = self.session.clock.now();
        self.session.lock().await.machine.operations().list(now)
    }
}

/// The registry emits the answering effect with every accepted event of its kind; its absence is a core bug.
fn missing_effect(which: &'static str) -> RuntimeError {
    panic!("the operations registry accepted the event but emitted no {which} effect")
}
