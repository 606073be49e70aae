//! Test doubles for the runtime: an executor scripted by each input's payload, and a store whose writes can be
//! made to fail.

#![allow(dead_code, unreachable_pub)]

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use burrow::store::{BoundaryCommit, LifecycleCommit, SessionImage};
use burrow::{
    BoxFuture, Executor, ExecutorError, ExecutorOutput, MemoryStore, RunId, RunRequest, SessionId, StopReason, Store,
    StoreError,
};
use burrow_core::ids::EpochId;
use burrow_core::input::InputRecord;
use burrow_core::operations::OperationsRegistry;
use burrow_env::sync::{Notify, mpsc};
use burrow_env::time::{Duration, sleep, timeout};

/// The bound on every wait in these tests: a hang fails the test instead of stalling the suite.
pub const WAIT: Duration = Duration::from_secs(10);

/// Awaits `future` at most [`WAIT`].
pub async fn within<F: std::future::Future>(future: F) -> F::Output {
    timeout(WAIT, future).await.expect("the test waited too long")
}

/// An executor that does what the first input's payload says:
/// `ok:<text>` result, `none` no result, `callback:<tool>:<args>`, `fail:<message>`, `panic`,
/// `block` (waits for [`Scripted::release`]), `sleep:<ms>`; anything else echoes the payload as the result.
#[derive(Clone, Default)]
pub struct Scripted {
    inner: Arc<ScriptedInner>,
}

#[derive(Default)]
struct ScriptedInner {
    runs: Mutex<Vec<RunRequest>>,
    started: Mutex<Option<mpsc::UnboundedSender<RunRequest>>>,
    gate: Notify,
    stops: Mutex<Vec<StopReason>>,
    cleanups: AtomicUsize,
    boundary_cancels: Mutex<Vec<RunId>>,
    in_flight: AtomicUsize,
    in_flight_max: AtomicUsize,
    refuse_boundary_cancel: AtomicBool,
}

impl Scripted {
    pub fn new() -> Scripted {
        Scripted::default()
    }

    pub fn arc(&self) -> Arc<dyn Executor> {
        Arc::new(self.clone())
    }

    /// A receiver of every run as it starts.
    pub fn watch_starts(&self) -> mpsc::UnboundedReceiver<RunRequest> {
        let (tx, rx) = mpsc::unbounded_channel();
        *self.inner.started.lock().unwrap() = Some(tx);
        rx
    }

    /// Lets one blocked run finish.
    pub fn release(&self) {
        self.inner.gate.notify_one();
    }

    pub fn runs(&self) -> Vec<RunRequest> {
        self.inner.runs.lock().unwrap().clone()
    }

    /// Every input payload run so far, in order.
    pub fn payloads(&self) -> Vec<String> {
        self.runs().iter().flat_map(|r| r.inputs.iter().map(|i| i.payload.clone())).collect()
    }

    pub fn stops(&self) -> Vec<StopReason> {
        self.inner.stops.lock().unwrap().clone()
    }

    pub fn cleanups(&self) -> usize {
        self.inner.cleanups.load(Ordering::SeqCst)
    }

    pub fn boundary_cancels(&self) -> Vec<RunId> {
        self.inner.boundary_cancels.lock().unwrap().clone()
    }

    /// Makes cancel_after_boundary fail from now on.
    pub fn refuse_boundary_cancels(&self) {
        self.inner.refuse_boundary_cancel.store(true, Ordering::SeqCst);
    }

    /// The most runs that were ever in flight at once.
    pub fn in_flight_max(&self) -> usize {
        self.inner.in_flight_max.load(Ordering::SeqCst)
    }

    /// Runs the script of `request` (also usable as an accept_and_run body).
    pub async fn perform(&self, request: RunRequest) -> Result<ExecutorOutput, ExecutorError> {
        self.inner.runs.lock().unwrap().push(request.clone());
        if let Some(tx) = self.inner.started.lock().unwrap().as_ref() {
            let _ = tx.send(request.clone());
        }
        let now = self.inner.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.inner.in_flight_max.fetch_max(now, Ordering::SeqCst);
        let _guard = InFlight(self.inner.clone());
        let payload = request.inputs.first().map(|i| i.payload.clone()).unwrap_or_default();
        let mut parts = payload.splitn(3, ':');
        match (parts.next().unwrap_or(""), parts.next(), parts.next()) {
            ("ok", Some(text), _) => Ok(ExecutorOutput::result(text)),
            ("none", _, _) => Ok(ExecutorOutput::no_result()),
            ("callback", Some(tool), args) => Ok(ExecutorOutput::callback(tool, args.unwrap_or(""))),
            ("fail", message, _) => Err(ExecutorError::new(message.unwrap_or("failed"))),
            ("panic", _, _) => panic!("scripted panic"),
            ("block", text, _) => {
                self.inner.gate.notified().await;
                Ok(ExecutorOutput::result(text.unwrap_or("released")))
            }
            ("sleep", Some(ms), _) => {
                sleep(Duration::from_millis(ms.parse().expect("sleep:<ms>"))).await;
                Ok(ExecutorOutput::result("slept"))
            }
            _ => Ok(ExecutorOutput::result(payload)),
        }
    }
}

struct InFlight(Arc<ScriptedInner>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Executor for Scripted {
    fn apply(&self, request: RunRequest) -> BoxFuture<'_, Result<ExecutorOutput, ExecutorError>> {
        Box::pin(self.perform(request))
    }

    fn cancel_after_boundary(&self, run: RunId) -> BoxFuture<'_, Result<(), ExecutorError>> {
        self.inner.boundary_cancels.lock().unwrap().push(run);
        let refuse = self.inner.refuse_boundary_cancel.load(Ordering::SeqCst);
        Box::pin(async move { if refuse { Err(ExecutorError::new("cannot stop at a boundary")) } else { Ok(()) } })
    }

    fn stop(&self, reason: StopReason) -> BoxFuture<'_, ()> {
        self.inner.stops.lock().unwrap().push(reason);
        Box::pin(async {})
    }

    fn cleanup_after_stop(&self) -> BoxFuture<'_, ()> {
        self.inner.cleanups.fetch_add(1, Ordering::SeqCst);
        Box::pin(async {})
    }
}

/// A memory store whose writes fail on demand: each counter is the number of upcoming writes of that kind to fail.
#[derive(Clone, Default)]
pub struct FlakyStore {
    pub memory: MemoryStore,
    pub fail_inputs: Arc<AtomicU32>,
    pub fail_boundaries: Arc<AtomicU32>,
    pub fail_lifecycles: Arc<AtomicU32>,
    pub lifecycle_writes: Arc<AtomicUsize>,
    /// Input, boundary and operations writes asked for (lifecycle ones are `lifecycle_writes`).
    pub input_writes: Arc<AtomicUsize>,
    pub boundary_writes: Arc<AtomicUsize>,
    pub operations_writes: Arc<AtomicUsize>,
    pub broken: Arc<AtomicBool>,
    /// Lifecycle commits never return: the process "dies" in the middle of one.
    pub hang_lifecycles: Arc<AtomicBool>,
    /// Once a boundary commit lands, every later lifecycle commit hangs.
    pub hang_after_boundary: Arc<AtomicBool>,
    /// While set, each input write waits for [`FlakyStore::release_inputs`] before it lands.
    pub hold_inputs: Arc<AtomicBool>,
    /// Input writes that started waiting.
    pub inputs_held: Arc<AtomicUsize>,
    input_release: Arc<Notify>,
}

impl FlakyStore {
    pub fn new() -> FlakyStore {
        FlakyStore::default()
    }

    pub fn arc(&self) -> Arc<dyn Store> {
        Arc::new(self.clone())
    }

    /// Lets every held input write land (and later ones pass).
    pub fn release_inputs(&self) {
        self.hold_inputs.store(false, Ordering::SeqCst);
        self.input_release.notify_waiters();
    }

    /// Waits until `n` input writes are being held.
    pub async fn held_inputs(&self, n: usize) {
        within(async {
            while self.inputs_held.load(Ordering::SeqCst) < n {
                sleep(Duration::from_millis(1)).await;
            }
        })
        .await;
    }

    fn take(counter: &AtomicU32) -> bool {
        counter.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok()
    }

    fn fail<'a>(what: &str) -> BoxFuture<'a, Result<(), StoreError>> {
        let error = StoreError::unavailable(format!("injected {what} failure"));
        Box::pin(async move { Err(error) })
    }
}

impl Store for FlakyStore {
    fn persist_input<'a>(
        &'a self,
        session: SessionId,
        epoch: EpochId,
        input: &'a InputRecord,
        payload: &'a str,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        self.input_writes.fetch_add(1, Ordering::SeqCst);
        if Self::take(&self.fail_inputs) || self.broken.load(Ordering::SeqCst) {
            return Self::fail("input");
        }
        if self.hold_inputs.load(Ordering::SeqCst) {
            let release = self.input_release.clone();
            let hold = self.hold_inputs.clone();
            self.inputs_held.fetch_add(1, Ordering::SeqCst);
            return Box::pin(async move {
                while hold.load(Ordering::SeqCst) {
                    let released = release.notified();
                    if !hold.load(Ordering::SeqCst) {
                        break;
                    }
                    released.await;
                }
                self.memory.persist_input(session, epoch, input, payload).await
            });
        }
        self.memory.persist_input(session, epoch, input, payload)
    }

    fn commit_boundary<'a>(
        &'a self,
        session: SessionId,
        epoch: EpochId,
        commit: &'a BoundaryCommit,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        self.boundary_writes.fetch_add(1, Ordering::SeqCst);
        if Self::take(&self.fail_boundaries) || self.broken.load(Ordering::SeqCst) {
            return Self::fail("boundary");
        }
        if self.hang_after_boundary.load(Ordering::SeqCst) {
            self.hang_lifecycles.store(true, Ordering::SeqCst);
        }
        self.memory.commit_boundary(session, epoch, commit)
    }

    fn commit_lifecycle<'a>(
        &'a self,
        session: SessionId,
        epoch: EpochId,
        commit: &'a LifecycleCommit,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        self.lifecycle_writes.fetch_add(1, Ordering::SeqCst);
        if self.hang_lifecycles.load(Ordering::SeqCst) {
            return Box::pin(std::future::pending());
        }
        if Self::take(&self.fail_lifecycles) || self.broken.load(Ordering::SeqCst) {
            return Self::fail("lifecycle");
        }
        self.memory.commit_lifecycle(session, epoch, commit)
    }

    fn save_operations<'a>(
        &'a self,
        session: SessionId,
        epoch: EpochId,
        operations: &'a OperationsRegistry,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        self.operations_writes.fetch_add(1, Ordering::SeqCst);
        self.memory.save_operations(session, epoch, operations)
    }

    fn load(&self, session: SessionId) -> BoxFuture<'_, Result<Option<SessionImage>, StoreError>> {
        self.memory.load(session)
    }

    fn input_by_key<'a>(
        &'a self,
        session: SessionId,
        key: &'a str,
    ) -> BoxFuture<'a, Result<Option<burrow_core::input::InputRecord>, StoreError>> {
        self.memory.input_by_key(session, key)
    }

    fn load_boundary_receipt(
        &self,
        session: SessionId,
        run: RunId,
    ) -> BoxFuture<'_, Result<Option<burrow::BoundaryReceipt>, StoreError>> {
        self.memory.load_boundary_receipt(session, run)
    }

    fn sessions(&self) -> BoxFuture<'_, Result<Vec<SessionId>, StoreError>> {
        self.memory.sessions()
    }
}

/// Session 1 of a fresh ephemeral runtime, with `exec` attached.
pub async fn attached(exec: &Scripted) -> (burrow::Runtime, SessionId) {
    let runtime = burrow::Runtime::ephemeral();
    let id = SessionId(1);
    runtime.attach_executor(id, exec.arc()).await.expect("attach");
    (runtime, id)
}

/// Accepts `payload` as a prompt with a completion handle and returns the handle.
pub async fn submit(runtime: &burrow::Runtime, id: SessionId, input: burrow::Input) -> burrow::CompletionHandle {
    let outcome = runtime.accept_input_with_completion(id, input).await.expect("accepted");
    outcome.into_parts().1.expect("a handle")
}

/// Waits until the session has no run and nothing selectable.
pub async fn settle(runtime: &burrow::Runtime, id: SessionId) {
    within(async {
        loop {
            let state = runtime.runtime_state(id).await.expect("state");
            if state.current_run.is_none() && state.active_inputs == 0 {
                return;
            }
            sleep(Duration::from_millis(1)).await;
        }
    })
    .await;
}

/// Waits until the session's loop has parked.
pub async fn parked(runtime: &burrow::Runtime, id: SessionId) {
    within(async {
        while !runtime.runtime_state(id).await.expect("state").loop_parked {
            sleep(Duration::from_millis(1)).await;
        }
    })
    .await;
}
