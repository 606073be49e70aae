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
use burrow_core::operations::{
    CompletionSeq, FeedEntry, OpEffect, OpEvent, OpOutcome, OpResult, OperationSnapshot, OperationSpec, WaitId,
};
use burrow_core::session::SessionEvent;
use burrow_env::sync::oneshot;

use crate::error::RuntimeError;
use crate::session::{Driven, Session};

/// The session's operations registry.
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

    /// Waits for the end. `None` if the session's state went away first.
    pub async fn wait(self) -> Option<OpOutcome> {
        self.rx.await.ok()
    }
}

/// A wait for every named operation to end. Resolves with each outcome in the order the ids were given; dropping it
/// cancels the wait, so another may start.
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

    /// The owning session.
    #[must_use]
    pub fn session(&self) -> SessionId {
        self.session.id
    }

    async fn apply(&self, call: &'static str, event: OpEvent) -> Result<Driven, RuntimeError> {
        let mut st = self.session.lock().await;
        self.session
            .drive(&mut st, SessionEvent::Operation(event), None)
            .await
            .map_err(|r| RuntimeError::refused(self.session.id, call, r))
    }

    /// Registers a new operation (it starts Provisioning). Refused past `max_concurrent` with the limit and the
    /// active count.
    pub async fn register(&self, spec: OperationSpec) -> Result<OperationId, RuntimeError> {
        let out = self.apply("register_operation", OpEvent::Register { spec }).await?;
        out.op_effects
            .iter()
            .find_map(|e| match e {
                OpEffect::Registered { op } => Some(*op),
                _ => None,
            })
            .ok_or_else(|| missing_effect("Registered"))
    }

    /// Provisioning finished; the job runs.
    pub async fn provisioning_succeeded(&self, op: OperationId) -> Result<(), RuntimeError> {
        self.apply("provisioning_succeeded", OpEvent::ProvisioningSucceeded { op }).await.map(drop)
    }

    /// Provisioning failed; the operation ends Failed.
    pub async fn provisioning_failed(&self, op: OperationId, error: impl Into<String>) -> Result<(), RuntimeError> {
        self.apply("provisioning_failed", OpEvent::ProvisioningFailed { op, error: error.into() }).await.map(drop)
    }

    /// The job's peer channel is ready (child sessions that expect one; once).
    pub async fn peer_ready(&self, op: OperationId, peer: impl Into<String>) -> Result<(), RuntimeError> {
        self.apply("peer_ready", OpEvent::PeerReady { op, peer: peer.into() }).await.map(drop)
    }

    /// Counts one progress report.
    pub async fn report_progress(&self, op: OperationId) -> Result<(), RuntimeError> {
        self.apply("report_progress", OpEvent::ReportProgress { op }).await.map(drop)
    }

    /// The job finished with a result. Ending a background operation while its session is idle wakes the session
    /// with a Continuation input.
    pub async fn complete(&self, op: OperationId, result: OpResult) -> Result<(), RuntimeError> {
        self.apply("complete_operation", OpEvent::Complete { op, result }).await.map(drop)
    }

    /// The job failed.
    pub async fn fail(&self, op: OperationId, error: impl Into<String>) -> Result<(), RuntimeError> {
        self.apply("fail_operation", OpEvent::Fail { op, error: error.into() }).await.map(drop)
    }

    /// Cancels a live operation.
    pub async fn cancel(&self, op: OperationId, reason: Option<String>) -> Result<(), RuntimeError> {
        self.apply("cancel_operation", OpEvent::Cancel { op, reason }).await.map(drop)
    }

    /// Abandons an operation still provisioning.
    pub async fn abort_provisioning(&self, op: OperationId, reason: Option<String>) -> Result<(), RuntimeError> {
        self.apply("abort_provisioning", OpEvent::AbortProvisioning { op, reason }).await.map(drop)
    }

    /// Asks a running operation to wind down.
    pub async fn request_retire(&self, op: OperationId) -> Result<(), RuntimeError> {
        self.apply("request_retire", OpEvent::RequestRetire { op }).await.map(drop)
    }

    /// A retiring operation finished winding down.
    pub async fn mark_retired(&self, op: OperationId) -> Result<(), RuntimeError> {
        self.apply("mark_retired", OpEvent::MarkRetired { op }).await.map(drop)
    }

    /// Ends every live operation and closes the registry for good.
    pub async fn terminate_owner(&self, reason: impl Into<String>) -> Result<(), RuntimeError> {
        self.apply("terminate_owner", OpEvent::TerminateOwner { reason: reason.into() }).await.map(drop)
    }

    /// A watcher of `op`. One registered after the end resolves at once.
    pub async fn register_watcher(&self, op: OperationId) -> Result<OperationWatcher, RuntimeError> {
        let mut out = self.apply("register_watcher", OpEvent::RegisterWatcher { op }).await?;
        let (op, rx) = out.watchers.pop().ok_or_else(|| missing_effect("WatcherRegistered"))?;
        Ok(OperationWatcher { op, rx })
    }

    /// Waits for every operation in `ids` to end (one wait at a time, no duplicates, all known).
    pub async fn wait_all(&self, run: RunId, ids: Vec<OperationId>) -> Result<WaitAll, RuntimeError> {
        let out = self.apply("wait_all", OpEvent::WaitAll { run, ids }).await?;
        let (wait, rx) = out.wait.ok_or_else(|| missing_effect("WaitStarted"))?;
        Ok(WaitAll { session: self.session.clone(), wait, rx, done: false })
    }

    /// Removes and returns every retained ended record, oldest end first.
    pub async fn collect_completed(&self) -> Result<Vec<(OperationId, OpOutcome)>, RuntimeError> {
        let out = self.apply("collect_completed", OpEvent::CollectCompleted).await?;
        Ok(out
            .op_effects
            .into_iter()
            .find_map(|e| match e {
                OpEffect::Collected { operations } => Some(operations),
                _ => None,
            })
            .unwrap_or_default())
    }

    /// The completion feed after `cursor`.
    pub async fn feed_since(&self, cursor: CompletionSeq) -> Vec<FeedEntry> {
        self.session.lock().await.machine.operations().feed_since(cursor).cloned().collect()
    }

    /// Marks the feed consumed through `through`; each end is consumed exactly once.
    pub async fn acknowledge(&self, through: CompletionSeq) -> Result<(), RuntimeError> {
        self.apply("acknowledge_feed", OpEvent::AcknowledgeFeed { through }).await.map(drop)
    }

    /// One operation's snapshot (times from the runtime's clock).
    pub async fn snapshot(&self, op: OperationId) -> Option<OperationSnapshot> {
        let now = self.session.clock.now();
        self.session.lock().await.machine.operations().snapshot(op, now)
    }

    /// Every retained operation's snapshot.
    pub async fn list(&self) -> Vec<OperationSnapshot> {
        let now = self.session.clock.now();
        self.session.lock().await.machine.operations().list(now)
    }
}

/// The registry emits the answering effect with every accepted event of its kind; its absence is a core bug.
fn missing_effect(which: &'static str) -> RuntimeError {
    panic!("the operations registry accepted the event but emitted no {which} effect")
}
