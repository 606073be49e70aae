//! The runtime: the session table and the public API of SPEC 3.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use burrow_core::completion::CleanupObservation;
use burrow_core::drain::DrainPhase;
use burrow_core::ids::{Binding, EpochId, Generation, InputId, RunId, SessionId};
use burrow_core::invariants;
use burrow_core::operations::CompletionSeq;
use burrow_core::protocol::{Observed, Subject, feedback};
use burrow_core::registration::{Obligation, RegistrationPhase, RegistrationRefusal};
use burrow_core::session::{
    BoundaryReceipt, InputView, RecoverySource, Refusal, Reply, RuntimeEvent, SessionConfig, SessionEvent,
    SessionMachine,
};
use burrow_env::sync::{Notify, watch};
use burrow_env::task::catch_panic;
use burrow_env::time::{Duration, timeout};

use crate::completion::{AcceptOutcome, CompletionError, Submitted};
use crate::control::Target;
use crate::error::{InvariantError, RuntimeError};
use crate::executor::{Executor, ExecutorError, ExecutorOutput, Input, RunRequest};
use crate::notices::Subscription;
use crate::ops::OperationsHandle;
use crate::peer::{PEER_IDLE_TIMEOUT_DEFAULT, PeerSource};
use crate::session::{Clock, Driven, Session, SessionBounds, State, TaskStarters, fenced};
use crate::store::{SessionImage, Store, StoreError};

/// Default bound on sessions one runtime holds.
pub const SESSIONS_MAX_DEFAULT: usize = 65_536;
/// Default extra time a stop, detach or destroy waits for the loop beyond what the run in flight may take.
pub const STOP_WAIT_DEFAULT: Duration = Duration::from_secs(5);
/// How often [`Runtime::wait_drain`] looks at the drain's phase.
const DRAIN_POLL: Duration = Duration::from_millis(1);
/// How long [`Runtime::submit`] waits for an outcome before it answers [`Submitted::StillRunning`].
pub const SUBMIT_WAIT_DEFAULT: Duration = Duration::from_secs(30);
/// Default time the runtime gives an executor's `stop` or `cleanup_after_stop` before it goes on without it.
pub const EXECUTOR_HOOK_BOUND_DEFAULT: Duration = Duration::from_secs(2);

/// Settings of a runtime.
///
/// The default holds up to [`SESSIONS_MAX_DEFAULT`] sessions, gives a loop [`STOP_WAIT_DEFAULT`] to exit and an
/// executor's stop or cleanup [`EXECUTOR_HOOK_BOUND_DEFAULT`], lets an idle PersistentHost peer drain wait
/// [`PEER_IDLE_TIMEOUT_DEFAULT`] and uses [`SessionConfig::default`] for every session.
/// Pass it to [`Runtime::with_config`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuntimeConfig {
    /// Settings of each new session (override per session with [`Runtime::prepare_with`]).
    pub session: SessionConfig,
    /// Most sessions held at once.
    pub sessions_max: usize,
    /// How long stop, detach and destroy wait for the loop to exit once no run is in flight.
    pub stop_wait: Duration,
    /// How long a PersistentHost peer drain waits for a message before it exits.
    pub peer_idle_timeout: Duration,
    /// How long the loop waits for the executor's [`stop`](Executor::stop) or
    /// [`cleanup_after_stop`](Executor::cleanup_after_stop). Past it the loop goes on as if the call had returned
    /// (and logs an error): an executor that never answers cannot hold its session, its run's deadline or its
    /// callers. Keep it below `stop_wait`, so that a stop's caller hears the loop exit.
    pub executor_hook_bound: Duration,
    /// How long [`Runtime::submit`] waits for an input's outcome before it answers that the input is still running.
    pub submit_wait: Duration,
    /// How many unread notices a [`Subscription`] holds before it misses the oldest (at least 1).
    pub notice_capacity: usize,
    /// A planted mistake of the shell, for the simulator's teeth tests.
    #[cfg(feature = "planted")]
    #[doc(hidden)]
    pub planted: Option<crate::planted::ShellDefect>,
    /// Fault injection for the simulator: this runtime's clock runs this many parts per million fast (positive) or
    /// slow (negative) against the world's (a fleet host whose clock drifts).
    #[cfg(feature = "clock-drift")]
    #[doc(hidden)]
    pub clock_drift_ppm: i32,
}

impl RuntimeConfig {
    /// How far this runtime's clock drifts, in parts per million: only the simulator sets it.
    fn clock_drift_ppm(&self) -> i32 {
        #[cfg(feature = "clock-drift")]
        return self.clock_drift_ppm;
        #[cfg(not(feature = "clock-drift"))]
        0
    }
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            session: SessionConfig::default(),
            sessions_max: SESSIONS_MAX_DEFAULT,
            stop_wait: STOP_WAIT_DEFAULT,
            peer_idle_timeout: PEER_IDLE_TIMEOUT_DEFAULT,
            executor_hook_bound: EXECUTOR_HOOK_BOUND_DEFAULT,
            submit_wait: SUBMIT_WAIT_DEFAULT,
            notice_capacity: crate::notices::NOTICE_CAPACITY_DEFAULT,
            #[cfg(feature = "planted")]
            planted: None,
            #[cfg(feature = "clock-drift")]
            clock_drift_ppm: 0,
        }
    }
}

/// What [`Runtime::prepare`] hands back: the session's binding, its operations registry and the cursors of its
/// completion feed.
#[derive(Clone, Debug)]
pub struct Bindings {
    /// Epoch and generation; calls presenting an older binding are refused.
    pub binding: Binding,
    /// The session's operations registry.
    pub operations: OperationsHandle,
    /// The completion feed's cursors: acknowledged so far, and the last end recorded.
    pub cursors: (CompletionSeq, CompletionSeq),
}

/// What [`Runtime::attach_executor`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttachReport {
    /// A loop was spawned for this generation.
    Attached {
        /// The loop's generation.
        generation: Generation,
    },
    /// A live loop already serves the session; the executor offered was not used.
    AlreadyAttached {
        /// The live loop's generation.
        generation: Generation,
    },
}

/// What [`Runtime::stop_executor`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StopReport {
    /// The stop waited for the run in flight to end.
    pub deferred: bool,
    /// Inputs abandoned by the stop when it took effect immediately.
    pub abandoned: usize,
}

/// What [`Runtime::retire`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetireReport {
    /// Queued inputs that will still be drained by the attached executor.
    pub pending_drain: usize,
    /// Queued inputs abandoned because no executor can drain them.
    pub abandoned: usize,
}

/// What [`Runtime::recycle`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecycleReport {
    /// Non-terminal inputs carried into the rebuilt instance.
    pub transferred: usize,
}

/// What [`Runtime::reset`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResetReport {
    /// Inputs abandoned.
    pub abandoned: usize,
}

/// What [`Runtime::recover`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecoverReport {
    /// Inputs active after recovery.
    pub recovered: usize,
    /// Inputs that were in a run and went back to the queue.
    pub requeued: usize,
    /// Inputs abandoned (out of attempts).
    pub abandoned: usize,
    /// Inputs made Consumed by a committed receipt (never re-run).
    pub consumed: usize,
    /// Ephemeral inputs dropped.
    pub dropped: usize,
}

/// What [`Runtime::destroy`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DestroyReport {
    /// Inputs abandoned.
    pub abandoned: usize,
}

/// What [`Runtime::unregister`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UnregisterReport {
    /// The binding that is now dead.
    pub released: Binding,
}

/// A read of one session's state, as [`Runtime::runtime_state`] returns it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuntimeState {
    /// The runtime phase.
    pub phase: burrow_core::phase::RuntimePhase,
    /// The registration phase.
    pub registration: RegistrationPhase,
    /// The binding, once prepared.
    pub binding: Option<Binding>,
    /// Non-terminal inputs.
    pub active_inputs: usize,
    /// The run in flight.
    pub current_run: Option<RunId>,
    /// Unresolved waiters.
    pub pending_waiters: usize,
    /// Whether a loop task is live.
    pub loop_live: bool,
    /// Whether the loop polled, found nothing selectable, and sleeps until woken.
    pub loop_parked: bool,
    /// The peer-ingress drain's phase.
    pub drain: DrainPhase,
}

pub(crate) struct Inner {
    sessions: std::sync::RwLock<BTreeMap<SessionId, Arc<Session>>>,
    pub(crate) store: Option<Arc<dyn Store>>,
    config: RuntimeConfig,
    pub(crate) clock: Clock,
    /// This runtime is one host of a fleet: the sessions it holds leases on.
    pub(crate) fleet: Option<crate::fleet::Fleet>,
    pub(crate) next_epoch: AtomicU64,
    tap: Option<Arc<dyn crate::tap::Tap>>,
    /// Session objects made so far (a tap names each one).
    instances: AtomicU64,
    /// Held while a session object is made: restoring one performs store writes, so two callers racing to make the
    /// same session must not both restore it (the loser's writes would land beside the winner's).
    creating: burrow_env::sync::Mutex<()>,
}

impl Inner {
    /// The tap for a new session object of `session`, if the runtime has one.
    fn tap_for(&self, session: SessionId) -> Option<(Arc<dyn crate::tap::Tap>, crate::tap::Teller)> {
        let tap = self.tap.clone()?;
        let instance = self.instances.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Some((tap, crate::tap::Teller { session, instance }))
    }

    /// The session table for reading. A plain lock: it is never held across an await.
    pub(crate) fn sessions(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<SessionId, Arc<Session>>> {
        self.sessions.read().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(crate) fn sessions_mut(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<SessionId, Arc<Session>>> {
        self.sessions.write().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        // The runtime is the control side of every loop: dropping it closes their effect channels, and each loop
        // takes the stop path (abandon, resolve, persist) instead of running on unowned. Peer drains end too.
        for session in self.sessions.get_mut().unwrap_or_else(std::sync::PoisonError::into_inner).values() {
            if session.planted == Some(crate::planted::ShellDefect::DropForgetsSessions) {
                continue;
            }
            session.close_effects();
        }
    }
}

/// The runtime users embed. Cheap to clone; clones share the sessions.
///
/// Dropping the last clone stops every session whose loop is live: their effect channels close, which the loops
/// treat as a stop. An executor that holds a clone of its own runtime keeps it alive; stop or destroy its session
/// explicitly.
///
/// # Examples
///
/// ```
/// use burrow::{Runtime, SessionId};
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # burrow_env::runtime::block_on_current_thread(async {
/// let runtime = Runtime::ephemeral();
/// let clone = runtime.clone();
/// clone.prepare(SessionId(7)).await?;
/// assert_eq!(runtime.sessions().await, vec![SessionId(7)], "clones share the sessions");
/// # Ok(())
/// # })
/// # }
/// ```
#[derive(Clone)]
pub struct Runtime {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime").field("durable", &self.inner.store.is_some()).finish_non_exhaustive()
    }
}

impl Runtime {
    /// A runtime without a store: nothing survives the process. It uses [`RuntimeConfig::default`].
    ///
    /// Call it inside a burrow-env runtime, as [`Runtime::with_config`] says.
    ///
    /// # Examples
    ///
    /// ```
    /// use burrow::{Runtime, RuntimePhase, SessionId};
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # burrow_env::runtime::block_on_current_thread(async {
    /// let runtime = Runtime::ephemeral();
    /// let session = SessionId(1);
    /// let bindings = runtime.prepare(session).await?;
    /// let state = runtime.runtime_state(session).await?;
    /// assert_eq!(state.phase, RuntimePhase::Idle);
    /// assert_eq!(state.binding, Some(bindings.binding));
    /// # Ok(())
    /// # })
    /// # }
    /// ```
    #[must_use]
    pub fn ephemeral() -> Runtime {
        Runtime::with_config(RuntimeConfig::default(), None)
    }

    /// A runtime whose durable facts go to `store`, with [`RuntimeConfig::default`].
    ///
    /// Durable inputs are written before their accept returns, each run's boundary is committed atomically, and a
    /// runtime built later over the same store restores a session when it is prepared. Call it inside a burrow-env
    /// runtime, as [`Runtime::with_config`] says.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::Arc;
    /// use burrow::{Input, InputState, MemoryStore, Runtime, SessionId};
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # burrow_env::runtime::block_on_current_thread(async {
    /// let store = MemoryStore::new();
    /// let session = SessionId(1);
    /// let first = Runtime::with_store(Arc::new(store.clone()));
    /// let epoch = first.prepare(session).await?.binding.epoch;
    /// let input = first.accept_input(session, Input::prompt("survives")).await?.input();
    /// drop(first); // the process ends
    ///
    /// let second = Runtime::with_store(Arc::new(store));
    /// assert_eq!(second.prepare(session).await?.binding.epoch, epoch, "restored in the same epoch");
    /// let view = second.input_state(session, input).await?.expect("restored from the store");
    /// assert_eq!(view.state, InputState::Queued);
    /// # Ok(())
    /// # })
    /// # }
    /// ```
    #[must_use]
    pub fn with_store(store: Arc<dyn Store>) -> Runtime {
        Runtime::with_config(RuntimeConfig::default(), Some(store))
    }

    /// A runtime with explicit settings, writing durable facts to `store` if one is given.
    ///
    /// Must be called inside a runtime of burrow-env (tokio, or madsim's simulator under `--cfg madsim`): the runtime's
    /// clock starts here.
    ///
    /// # Panics
    ///
    /// In a `--cfg madsim` build, if called outside a simulated runtime (reading the clock needs one).
    ///
    /// # Examples
    ///
    /// ```
    /// use burrow::{Runtime, RuntimeConfig, SessionConfig};
    /// use burrow_env::time::Duration;
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # burrow_env::runtime::block_on_current_thread(async {
    /// let config = RuntimeConfig {
    ///     session: SessionConfig { max_attempts: 5, ..SessionConfig::default() },
    ///     stop_wait: Duration::from_secs(1),
    ///     ..RuntimeConfig::default()
    /// };
    /// let runtime = Runtime::with_config(config.clone(), None);
    /// assert_eq!(runtime.config(), &config);
    /// # Ok(())
    /// # })
    /// # }
    /// ```
    #[must_use]
    pub fn with_config(config: RuntimeConfig, store: Option<Arc<dyn Store>>) -> Runtime {
        Runtime::build(config, store, None)
    }

    /// As [`Runtime::with_config`], with every session telling `tap` what it does, in order (for conformance checks;
    /// see [`crate::tap`]).
    #[must_use]
    pub fn with_tap(config: RuntimeConfig, store: Option<Arc<dyn Store>>, tap: Arc<dyn crate::tap::Tap>) -> Runtime {
        Runtime::build(config, store, Some(tap))
    }

    fn build(config: RuntimeConfig, store: Option<Arc<dyn Store>>, tap: Option<Arc<dyn crate::tap::Tap>>) -> Runtime {
        Runtime::assemble(config, store, tap, None)
    }

    pub(crate) fn assemble(
        config: RuntimeConfig,
        store: Option<Arc<dyn Store>>,
        tap: Option<Arc<dyn crate::tap::Tap>>,
        fleet: Option<crate::fleet::Fleet>,
    ) -> Runtime {
        let clock = Clock::start(config.clock_drift_ppm());
        Runtime {
            inner: Arc::new(Inner {
                sessions: std::sync::RwLock::new(BTreeMap::new()),
                store,
                config,
                clock,
                fleet,
                next_epoch: AtomicU64::new(1),
                tap,
                instances: AtomicU64::new(0),
                creating: burrow_env::sync::Mutex::new(()),
            }),
        }
    }

    /// The shell's planted mistake, if the runtime runs one (never without the `planted` feature).
    pub(crate) fn planted(&self) -> Option<crate::planted::ShellDefect> {
        #[cfg(feature = "planted")]
        return self.inner.config.planted;
        #[cfg(not(feature = "planted"))]
        None
    }

    /// The settings the runtime was built with.
    #[must_use]
    pub fn config(&self) -> &RuntimeConfig {
        &self.inner.config
    }

    pub(crate) async fn session(&self, id: SessionId) -> Result<Arc<Session>, RuntimeError> {
        let found = self.inner.sessions().get(&id).cloned();
        match found {
            // spec: specs/session.md#ownership-moved: a session that moved is dropped here and its calls name the
            // owner.
            Some(session) => match session.moved.get() {
                Some(owner) => {
                    self.forget_moved(id, &session);
                    Err(RuntimeError::NotOwner { session: id, owner: *owner })
                }
                None => Ok(session),
            },
            None => Err(self.not_here(id).await),
        }
    }

    /// Applies one event to session `id` and performs what follows; a refusal becomes a typed error naming `call`.
    async fn call(&self, id: SessionId, call: &'static str, event: SessionEvent) -> Result<Reply, RuntimeError> {
        self.call_as(Target::from(id), call, event).await
    }

    /// As [`Runtime::call`], on behalf of a caller that holds `target`'s binding, if it names one: the binding is
    /// checked by the machine in the same transition that acts (see [`fence`]).
    async fn call_as(&self, target: Target, call: &'static str, event: SessionEvent) -> Result<Reply, RuntimeError> {
        let id = target.session;
        let session = self.session(id).await?;
        let mut st = session.lock().await;
        session
            .drive(&mut st, fenced(target.binding, event), None)
            .await
            .map_err(|r| RuntimeError::refused(id, call, r))
    }

    /// Every session the runtime holds (prepared and not unregistered since), in id order.
    pub async fn sessions(&self) -> Vec<SessionId> {
        self.inner.sessions().keys().copied().collect()
    }

    // ----- registration ------------------------------------------------------------------------------------

    /// Prepares `session` with the runtime's session settings ([`RuntimeConfig::session`]) and returns its
    /// [`Bindings`]; see [`Runtime::prepare_with`].
    ///
    /// # Errors
    ///
    /// As [`Runtime::prepare_with`].
    ///
    /// # Examples
    ///
    /// ```
    /// use burrow::{Runtime, SessionId};
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # burrow_env::runtime::block_on_current_thread(async {
    /// let runtime = Runtime::ephemeral();
    /// let session = SessionId(1);
    /// let first = runtime.prepare(session).await?;
    /// let again = runtime.prepare(session).await?;
    /// assert_eq!(first.binding, again.binding, "idempotent: the same binding");
    /// assert_eq!(first.operations.session(), session);
    /// # Ok(())
    /// # })
    /// # }
    /// ```
    pub async fn prepare(&self, session: SessionId) -> Result<Bindings, RuntimeError> {
        self.prepare_with(session, self.inner.config.session.clone()).await
    }

    /// Prepares `session`: creates it (restoring it from the store if the store knows it: same epoch, durable
    /// inputs recovered per SPEC 5, ended operations kept), or returns the bindings of the existing one. Idempotent;
    /// the epoch is stable across calls. A session that was unregistered is registered again in a new generation.
    /// `config` applies only when the session is created.
    ///
    /// # Errors
    ///
    /// - [`RuntimeError::InvalidConfig`] if `config` cannot be used (no attempt, no history, operations bounds past
    ///   their ceilings); nothing was made;
    /// - [`RuntimeError::Store`] if the store could not read the session;
    /// - [`RuntimeError::Corrupt`] if its stored state cannot be restored;
    /// - [`RuntimeError::TooManySessions`] if the session is new and the runtime already holds
    ///   [`RuntimeConfig::sessions_max`] sessions;
    /// - [`RuntimeError::Refused`] if the session's machine refuses the registration (while an unregister of it is
    ///   still in progress, or once it is destroyed).
    ///
    /// # Examples
    ///
    /// ```
    /// use burrow::{Runtime, SessionConfig, SessionId};
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # burrow_env::runtime::block_on_current_thread(async {
    /// let runtime = Runtime::ephemeral();
    /// let session = SessionId(1);
    /// let config = SessionConfig { max_attempts: 1, ..SessionConfig::default() };
    /// let bindings = runtime.prepare_with(session, config).await?;
    /// assert_eq!(runtime.runtime_state(session).await?.binding, Some(bindings.binding));
    /// # Ok(())
    /// # })
    /// # }
    /// ```
    pub async fn prepare_with(&self, id: SessionId, config: SessionConfig) -> Result<Bindings, RuntimeError> {
        config.validate().map_err(|error| RuntimeError::InvalidConfig { session: id, error })?;
        // An unregister drops its released session from the table under the session's lock; a prepare that took
        // the object just before must not register it again, or it would run beside the one the next call makes.
        // Each retry follows one such removal, so two suffice; the bound only keeps the loop finite.
        let mut attempts = 0;
        loop {
            attempts += 1;
            let existing = self.inner.sessions().get(&id).cloned();
            let session = match existing {
                Some(session) if session.moved.get().is_none() => session,
                Some(moved) => {
                    let owner = moved.moved.get().copied().flatten();
                    self.forget_moved(id, &moved);
                    return Err(RuntimeError::NotOwner { session: id, owner });
                }
                None => {
                    // In a fleet a session is driven only under a lease: claim it first (specs/lease.md).
                    let owned = self.claim_for(id).await?;
                    self.create(id, config.clone(), owned).await?
                }
            };
            let mut st = session.lock().await;
            let current = self.inner.sessions().get(&id).is_some_and(|s| Arc::ptr_eq(s, &session));
            if !current && attempts < 8 {
                continue;
            }
            let epoch = self.epoch_for(id);
            let reply = session
                .drive(&mut st, SessionEvent::Prepare { epoch }, None)
                .await
                .map_err(|r| RuntimeError::refused(id, "prepare", r))?;
            let Reply::Prepared(binding) = reply else { unreachable!("Prepare answers Prepared") };
            let operations = st.machine.operations();
            let cursors = (operations.feed_acknowledged(), operations.completion_seq_last());
            drop(st);
            return Ok(Bindings { binding, operations: OperationsHandle::new(session), cursors });
        }
    }

    /// Makes the session object of `id`, restoring it from the store if it knows it. `owned`: the lease epoch this
    /// host claimed it at, in a fleet; the restored binding moves to it (`PersistedLifecycle::taken_over`).
    async fn create(
        &self,
        id: SessionId,
        config: SessionConfig,
        owned: Option<EpochId>,
    ) -> Result<Arc<Session>, RuntimeError> {
        let _creating = self.inner.creating.lock().await;
        if let Some(existing) = self.inner.sessions().get(&id) {
            // Another caller made it while this one waited.
            return Ok(existing.clone());
        }
        // Checked before anything is restored: a session refused here must not have written to the store.
        if self.inner.sessions().len() >= self.inner.config.sessions_max {
            return Err(RuntimeError::TooManySessions { max: self.inner.config.sessions_max });
        }
        let image = match &self.inner.store {
            Some(store) => store.load(id).await.map_err(|error| RuntimeError::Store { session: id, error })?,
            None => None,
        };
        let now = self.inner.clock.now();
        let session = match image.as_ref().and_then(|i| i.lifecycle.clone().map(|l| (i, l))) {
            Some((image, lifecycle)) => {
                // A process restart (or, in a fleet, a hand-over): rebuild from the store without moving the phase.
                let lifecycle = owned.map_or(lifecycle.clone(), |epoch| lifecycle.taken_over(epoch));
                let (machine, fx) = SessionMachine::restored(id, config, &lifecycle, image.recovery_image(true), now)
                    .map_err(|e| RuntimeError::Corrupt { session: id, message: e.to_string() })?;
                let session = self.new_session(machine);
                let mut st = session.lock().await;
                restore_payloads(&mut st, image);
                let mut out = Driven::default();
                let mut stack = fx.effects;
                stack.reverse();
                session.perform_all(&mut st, now, &mut stack, &mut out, "restore", &tracing::Span::current()).await;
                drop(st);
                session
            }
            None => {
                // Without a store the machine asks for no writes at all (specs/session.md#without-a-store).
                let machine = match &self.inner.store {
                    Some(_) => SessionMachine::new(id, config),
                    None => SessionMachine::without_store(id, config),
                };
                let session = self.new_session(machine);
                if let Some(image) = &image {
                    // Rows without a lifecycle: written before the first lifecycle commit landed.
                    let mut st = session.lock().await;
                    self.recover_image(&session, &mut st, image, true, None).await?;
                }
                session
            }
        };
        if self.inner.fleet.is_some() {
            let weak = Arc::downgrade(&self.inner);
            let _ = session.lease_held.set(Box::new(move || Runtime::upgrade(&weak).is_some_and(|rt| rt.hosts(id))));
        }
        let mut sessions = self.inner.sessions_mut();
        sessions.insert(id, session.clone());
        self.inner.next_epoch.fetch_add(1, Ordering::Relaxed);
        tracing::info!(session = %id, restored = image.is_some(), "session created");
        Ok(session)
    }

    /// A session object for `machine` with this runtime's store, clock, settings and tap.
    fn new_session(&self, machine: SessionMachine) -> Arc<Session> {
        let id = machine.session();
        let bounds = SessionBounds {
            peer_idle: self.inner.config.peer_idle_timeout,
            executor_hook: self.inner.config.executor_hook_bound,
            notices: self.inner.config.notice_capacity,
        };
        Session::new(
            machine,
            self.inner.store.clone(),
            self.inner.clock,
            bounds,
            &TASK_STARTERS,
            self.inner.tap_for(id),
            self.planted(),
        )
    }

    async fn recover_image(
        &self,
        session: &Arc<Session>,
        st: &mut State,
        image: &SessionImage,
        with_operations: bool,
        binding: Option<Binding>,
    ) -> Result<Reply, RuntimeError> {
        if st.machine.binding().is_none() {
            // Recovery needs a prepared phase; a store that has rows but no lifecycle yet was never committed past
            // admission, so the session is prepared fresh first.
            let epoch = self.epoch_for(session.id);
            session
                .drive(st, SessionEvent::Prepare { epoch }, None)
                .await
                .map_err(|r| RuntimeError::refused(session.id, "prepare", r))?;
        }
        restore_payloads(st, image);
        let source = RecoverySource::Image(Box::new(image.recovery_image(with_operations)));
        session
            .drive_as_read(st, fenced(binding, SessionEvent::Recover(source)))
            .await
            .map_err(|r| RuntimeError::refused(session.id, "recover", r))
    }

    /// Attaches `executor` to `session` (preparing it if needed) and starts its loop. Single flight: of two
    /// concurrent attaches one spawns the loop, the other gets [`AttachReport::AlreadyAttached`]. A queued-only
    /// session is upgraded in place and starts draining its queue at once; a dead attachment (a loop that is gone)
    /// is repaired with a fresh loop. Attaching to a stopped session revives it.
    ///
    /// Returns [`AttachReport::Attached`] with the new loop's generation, or [`AttachReport::AlreadyAttached`] with the
    /// live loop's.
    ///
    /// # Errors
    ///
    /// - The errors of [`Runtime::prepare_with`] when the runtime does not hold the session yet;
    /// - [`RuntimeError::Refused`] when the session cannot take an executor: it is destroyed, or an unregister of it is
    ///   in progress;
    /// - [`RuntimeError::TimedOut`] when the loop of the previous executor, told to stop, did not exit within
    ///   [`RuntimeConfig::stop_wait`] (an attach waits for it rather than report an executor that is going away).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::Arc;
    /// use burrow::{AttachReport, Input, OutcomeClass, Runtime, SessionId};
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
    /// let report = runtime.attach_executor(session, Arc::new(Echo)).await?;
    /// let AttachReport::Attached { generation } = report else { panic!("the first attach spawns the loop") };
    /// let again = runtime.attach_executor(session, Arc::new(Echo)).await?;
    /// assert_eq!(again, AttachReport::AlreadyAttached { generation });
    ///
    /// let (_, handle) = runtime.accept_input_with_completion(session, Input::prompt("hi")).await?.into_parts();
    /// assert_eq!(handle.expect("a new input").wait().await?.class(), OutcomeClass::Completed);
    /// # Ok(())
    /// # })
    /// # }
    /// ```
    pub async fn attach_executor(
        &self,
        id: SessionId,
        executor: Arc<dyn Executor>,
    ) -> Result<AttachReport, RuntimeError> {
        let session = match self.session(id).await {
            Ok(session) => session,
            Err(_) => {
                self.prepare(id).await?;
                self.session(id).await?
            }
        };
        let mut st = session.lock().await;
        // The loop of the last attach is letting its executor go (a stop, a detach or a fail-stop told it to), but
        // it has not exited yet: it is still in the executor's stop or cleanup. The machine would refuse the attach
        // as AlreadyAttached, and the caller would believe its executor attached while the session is about to be
        // left with none. Wait for that loop to exit (bounded), then attach.
        let releasing = matches!(st.machine.registration().phase(), RegistrationPhase::Active { .. })
            && !st.machine.phase_machine().executor_attached();
        if releasing {
            let exited = st.loop_slot.as_ref().map(|slot| slot.exited.clone());
            drop(st);
            self.wait_loop_exit(id, exited, self.inner.config.stop_wait, "attach_executor").await?;
            st = session.lock().await;
        }
        // Repair: the machine believes a loop is live, but its task is gone (aborted or finished without
        // reporting). Report the exit so the attach can start a fresh loop.
        if let RegistrationPhase::Active { generation } = st.machine.registration().phase() {
            let dead =
                st.loop_slot.as_ref().is_none_or(|slot| slot.generation != generation || slot.handle.is_finished());
            if dead {
                tracing::warn!(session = %id, generation = generation.0, "repairing a dead attachment");
                st.loop_slot = None;
                let _ = session.drive(&mut st, SessionEvent::LoopExited { generation }, None).await;
            }
        }
        st.attaching = Some(executor);
        let result = session.drive(&mut st, SessionEvent::BeginAttach, None).await;
        st.attaching = None;
        match result {
            Ok(_) => match st.machine.registration().phase() {
                RegistrationPhase::Active { generation } => Ok(AttachReport::Attached { generation }),
                phase => Err(RuntimeError::refused(
                    id,
                    "attach_executor",
                    Refusal::Registration(RegistrationRefusal::NotPrepared { phase }),
                )),
            },
            Err(Refusal::Registration(RegistrationRefusal::AlreadyAttached { generation })) => {
                Ok(AttachReport::AlreadyAttached { generation })
            }
            Err(refusal) => Err(RuntimeError::refused(id, "attach_executor", refusal)),
        }
    }

    /// Detaches the executor: its loop stops it, runs its cleanup and exits; queued inputs stay queued. Refused
    /// while a run is in flight.
    ///
    /// Returns once the loop exited; the session rests in Idle until an executor attaches again.
    ///
    /// # Errors
    ///
    /// - [`RuntimeError::NotFound`] if the runtime holds no session `id`;
    /// - [`RuntimeError::Refused`] while a run is in flight, or when no executor is attached;
    /// - [`RuntimeError::TimedOut`] if the loop did not exit within [`RuntimeConfig::stop_wait`].
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::Arc;
    /// use burrow::{Runtime, RuntimeError, RuntimePhase, SessionId};
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
    /// runtime.detach_executor(session).await?;
    /// let state = runtime.runtime_state(session).await?;
    /// assert_eq!((state.phase, state.loop_live), (RuntimePhase::Idle, false));
    /// let err = runtime.detach_executor(session).await.unwrap_err();
    /// assert!(matches!(err, RuntimeError::Refused { .. }), "nothing is attached: {err}");
    /// # Ok(())
    /// # })
    /// # }
    /// ```
    pub async fn detach_executor(&self, id: SessionId) -> Result<(), RuntimeError> {
        let session = self.session(id).await?;
        let exited = {
            let mut st = session.lock().await;
            session
                .drive(&mut st, SessionEvent::Detach, None)
                .await
                .map_err(|r| RuntimeError::refused(id, "detach", r))?;
            st.loop_slot.as_ref().map(|slot| slot.exited.clone())
        };
        self.wait_loop_exit(id, exited, self.inner.config.stop_wait, "detach").await
    }

    /// Begins and completes the two-phase unregister: admission closes, every waiter resolves, the loop and the
    /// drain are stopped; the commit happens when all are closed, or when the grace period (2 s by default) expires,
    /// whichever comes first: past the grace the loop is aborted, never joined without bound. The session then
    /// leaves the runtime's table (prepare registers it again).
    ///
    /// Returns the binding that is now dead.
    ///
    /// # Errors
    ///
    /// - [`RuntimeError::NotFound`] if the runtime holds no session `id`;
    /// - [`RuntimeError::Refused`] if the session is not registered (an unregister of it already began, for example);
    /// - [`RuntimeError::TimedOut`] if the unregister did not commit within the grace period plus
    ///   [`RuntimeConfig::stop_wait`].
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::Arc;
    /// use burrow::{Runtime, RuntimeError, SessionId};
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
    /// let binding = runtime.runtime_state(session).await?.binding.expect("prepared by the attach");
    /// let report = runtime.unregister(session).await?;
    /// assert_eq!(report.released, binding);
    /// assert_eq!(runtime.runtime_state(session).await.unwrap_err(), RuntimeError::NotFound(session));
    /// let again = runtime.prepare(session).await?;
    /// assert_ne!(again.binding, binding, "registered again under a binding the old holders cannot use");
    /// # Ok(())
    /// # })
    /// # }
    /// ```
    pub async fn unregister(&self, id: SessionId) -> Result<UnregisterReport, RuntimeError> {
        let session = self.session(id).await?;
        let mut released = session.released().subscribe();
        let grace = {
            let mut st = session.lock().await;
            session
                .drive(&mut st, SessionEvent::BeginUnregister, None)
                .await
                .map_err(|r| RuntimeError::refused(id, "unregister", r))?;
            Duration::from_millis(st.machine.registration().grace_ms())
        };
        let bound = grace + self.inner.config.stop_wait;
        match timeout(bound, released.wait_for(|done| *done)).await {
            Ok(Ok(_)) => {}
            _ => return Err(RuntimeError::TimedOut { session: id, what: "unregister", waited_ms: millis(bound) }),
        }
        // Removed under the session's lock, and only while it is still released: a prepare that reached this object
        // first registered it again, and it stays the session of its id (a removed object that a caller had
        // registered again would run beside the one the next call makes).
        let st = session.lock().await;
        let binding = st.machine.binding().expect("an unregistered session keeps its binding");
        if st.machine.registration().phase() == RegistrationPhase::Unregistered {
            let mut sessions = self.inner.sessions_mut();
            if sessions.get(&id).is_some_and(|s| Arc::ptr_eq(s, &session)) {
                sessions.remove(&id);
            }
        }
        drop(st);
        Ok(UnregisterReport { released: binding })
    }

    /// Fault injection for tests and the simulator: aborts the session's loop task the way a crash would, without
    /// telling the machine. The next attach finds the dead attachment and repairs it.
    #[doc(hidden)]
    pub async fn kill_loop(&self, id: SessionId) -> Result<(), RuntimeError> {
        let session = self.session(id).await?;
        let st = session.lock().await;
        let Some(slot) = &st.loop_slot else { return Ok(()) };
        slot.handle.abort();
        let mut exited = slot.exited.clone();
        // The lock is held until the task is gone (its exit signal closes when the runtime drops it). On a runtime
        // with several workers the task may be in the middle of a poll as it is aborted, and is cancelled only at
        // its next wait: let go of the lock before that and the task could take it, start a drive, and be dropped
        // in the middle of that drive's store write, leaving the machine waiting for a result nobody reports (tokio
        // seed 720: a run staged and never started). A crash never stops a loop inside a drive either.
        let _ = timeout(self.inner.config.stop_wait, exited.wait_for(|_| false)).await;
        drop(st);
        Ok(())
    }

    /// The obligations of an unregister in progress that are still open (empty otherwise).
    ///
    /// # Errors
    ///
    /// [`RuntimeError::NotFound`] if the runtime holds no session `id`.
    pub async fn open_obligations(&self, id: SessionId) -> Result<Vec<Obligation>, RuntimeError> {
        Ok(self.session(id).await?.lock().await.machine.registration().open_obligations())
    }

    // ----- admission ---------------------------------------------------------------------------------------

    /// Accepts an input without a completion handle. Durable inputs are persisted before this returns.
    ///
    /// Returns [`AcceptOutcome::Accepted`] (with no handle) naming the new input, or [`AcceptOutcome::Deduplicated`]
    /// naming the input that already owns the idempotency key. An attached session's loop is woken to run it; a session
    /// without an executor keeps it queued until one attaches.
    ///
    /// # Errors
    ///
    /// Nothing is admitted when this returns an error:
    /// - [`RuntimeError::NotFound`] if the runtime holds no session `id` (prepare it first);
    /// - [`RuntimeError::PayloadTooLarge`] if the payload exceeds [`PAYLOAD_BYTES_MAX`](crate::PAYLOAD_BYTES_MAX);
    /// - [`RuntimeError::Rejected`] if the input can never be admitted (a key that is too long, for example);
    /// - [`RuntimeError::Refused`] if the session does not admit inputs now (it is retired, stopped, destroyed or being
    ///   unregistered) or a bound is hit (too many active inputs);
    /// - [`RuntimeError::Store`] if the durable write failed.
    ///
    /// # Examples
    ///
    /// ```
    /// use burrow::{AcceptOutcome, Input, InputState, Runtime, RuntimeError, SessionId};
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # burrow_env::runtime::block_on_current_thread(async {
    /// let runtime = Runtime::ephemeral();
    /// let session = SessionId(1);
    /// runtime.prepare(session).await?;
    /// let accepted = runtime.accept_input(session, Input::prompt("later")).await?;
    /// assert!(matches!(accepted, AcceptOutcome::Accepted { handle: None, .. }));
    /// let view = runtime.input_state(session, accepted.input()).await?.expect("a live input");
    /// assert_eq!(view.state, InputState::Queued, "no executor is attached yet");
    ///
    /// let err = runtime.accept_input(SessionId(2), Input::prompt("nowhere")).await.unwrap_err();
    /// assert_eq!(err, RuntimeError::NotFound(SessionId(2)));
    /// # Ok(())
    /// # })
    /// # }
    /// ```
    pub async fn accept_input(&self, id: SessionId, input: Input) -> Result<AcceptOutcome, RuntimeError> {
        self.session(id).await?.accept(input, false, true, None).await
    }

    /// Accepts an input and returns a handle to its outcome (see [`AcceptOutcome`]). An input that can never be
    /// admitted is [`RuntimeError::Rejected`] with its typed validation error.
    ///
    /// # Errors
    ///
    /// As [`Runtime::accept_input`].
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
    /// let first = runtime.accept_input_with_completion(session, Input::prompt("once").idempotency_key("k")).await?;
    /// let (input, handle) = first.into_parts();
    /// let outcome = handle.expect("a new input has a handle").wait().await?;
    /// assert_eq!(outcome, Outcome::Completed(RunResult { output: "once".into() }));
    ///
    /// // The key is known: the accept resolves to the first input, which has already finished.
    /// let again = runtime.accept_input_with_completion(session, Input::prompt("twice").idempotency_key("k")).await?;
    /// assert!(again.is_deduplicated());
    /// assert_eq!(again.input(), input);
    /// assert!(again.into_parts().1.is_none(), "nothing left to wait for");
    /// # Ok(())
    /// # })
    /// # }
    /// ```
    pub async fn accept_input_with_completion(
        &self,
        id: SessionId,
        input: Input,
    ) -> Result<AcceptOutcome, RuntimeError> {
        self.session(id).await?.accept(input, true, true, None).await
    }

    /// Submits a keyed input and waits, up to [`RuntimeConfig::submit_wait`] (30 s by default), for its outcome: the
    /// call a client retries safely. The idempotency key is mandatory: a second submit with the same key joins the
    /// same input while it runs, or answers [`Submitted::Ended`] once it has ended, never runs it again, and with a
    /// durable store does so across a restart for every key the store holds.
    ///
    /// # Errors
    ///
    /// - [`RuntimeError::KeyRequired`] if the input has no idempotency key; nothing was admitted;
    /// - as [`Runtime::accept_input`] for the admission;
    /// - [`RuntimeError::Completion`] if the wait failed for a reason outside the input (the session's state went
    ///   away); the input may still be in the store.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::Arc;
    /// use burrow::{Input, Outcome, RunResult, Runtime, RuntimeError, SessionId, Submitted};
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
    /// let first = runtime.submit(session, Input::prompt("pay").idempotency_key("order-1")).await?;
    /// let Submitted::Finished { input, outcome, joined: false } = first else { panic!("{first:?}") };
    /// assert_eq!(outcome, Outcome::Completed(RunResult { output: "pay".into() }));
    ///
    /// // A retry with the same key does not run again.
    /// let retry = runtime.submit(session, Input::prompt("pay").idempotency_key("order-1")).await?;
    /// assert!(matches!(retry, Submitted::Ended { input: i, .. } if i == input), "{retry:?}");
    ///
    /// let err = runtime.submit(session, Input::prompt("no key")).await.unwrap_err();
    /// assert!(matches!(err, RuntimeError::KeyRequired { .. }));
    /// # Ok(())
    /// # })
    /// # }
    /// ```
    pub async fn submit(&self, id: SessionId, input: Input) -> Result<Submitted, RuntimeError> {
        self.submit_within(id, input, self.config().submit_wait).await
    }

    /// [`Runtime::submit`] with a wait of its own instead of [`RuntimeConfig::submit_wait`]. A caller that gets
    /// [`Submitted::StillRunning`] may submit again with the same key to wait again (each wait holds one of the
    /// input's bounded waiter slots until the input resolves).
    ///
    /// # Errors
    ///
    /// As [`Runtime::submit`].
    pub async fn submit_within(&self, id: SessionId, input: Input, wait: Duration) -> Result<Submitted, RuntimeError> {
        let Some(key) = input.spec.idempotency_key.clone() else {
            return Err(RuntimeError::KeyRequired { session: id, call: "submit" });
        };
        let answer = self.accept_input_with_completion(id, input).await?;
        let joined = answer.is_deduplicated();
        let (input, handle) = answer.into_parts();
        let Some(handle) = handle else {
            let view = self.input_state_by_key(id, &key).await?.filter(|view| view.id == input);
            let state = view.map(|view| view.state).filter(burrow_core::input::InputState::is_terminal);
            return Ok(Submitted::Ended { input, state, joined });
        };
        match handle.wait_timeout(wait).await {
            Ok(outcome) => Ok(Submitted::Finished { input, outcome, joined }),
            Err(CompletionError::TimedOut { waited_ms, .. }) => {
                Ok(Submitted::StillRunning { input, waited_ms, joined })
            }
            Err(error) => Err(RuntimeError::Completion { session: id, error }),
        }
    }

    /// Accepts an input with a completion handle but does not wake a parked loop; it is picked up at the next
    /// wake (any waking input, [`Runtime::wake`], or the end of a run).
    ///
    /// # Errors
    ///
    /// As [`Runtime::accept_input`].
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::Arc;
    /// use burrow::{Input, InputState, OutcomeClass, Runtime, SessionId};
    /// use burrow_env::time::Duration;
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
    /// // Wait until the loop found nothing to do and sleeps.
    /// while !runtime.runtime_state(session).await?.loop_parked {
    ///     burrow_env::time::sleep(Duration::from_millis(1)).await;
    /// }
    /// let (input, handle) = runtime.accept_input_without_wake(session, Input::prompt("quiet")).await?.into_parts();
    /// assert_eq!(runtime.input_state(session, input).await?.expect("live").state, InputState::Queued);
    ///
    /// runtime.wake(session).await?;
    /// assert_eq!(handle.expect("a handle").wait().await?.class(), OutcomeClass::Completed);
    /// # Ok(())
    /// # })
    /// # }
    /// ```
    pub async fn accept_input_without_wake(&self, id: SessionId, input: Input) -> Result<AcceptOutcome, RuntimeError> {
        self.session(id).await?.accept(input, true, false, None).await
    }

    /// Wakes the loop so quietly queued inputs are picked up (see [`Runtime::accept_input_without_wake`]). Does
    /// nothing when the loop is awake or there is nothing to run.
    ///
    /// # Errors
    ///
    /// [`RuntimeError::NotFound`] if the runtime holds no session `id`.
    pub async fn wake(&self, id: SessionId) -> Result<(), RuntimeError> {
        self.call(id, "wake", SessionEvent::Wake).await.map(drop)
    }

    /// Accepts `input` and runs it at once through `op`, returning what `op` returned once the boundary committed.
    ///
    /// Only when the session is idle (or attached with no run) with nothing active; a key that matches a known input
    /// is refused (no dedup). No session lock is held while `op` runs. If the boundary commit fails the input is
    /// rolled back and [`RuntimeError::BoundaryCommitFailed`] returned; the session stays usable. If the terminal
    /// state cannot be persisted the session is fail-stopped, its waiters resolved, and
    /// [`RuntimeError::FailStopped`] returned. A panic in `op` fails the run.
    ///
    /// # Errors
    ///
    /// - [`RuntimeError::NotFound`], [`RuntimeError::PayloadTooLarge`] and [`RuntimeError::Rejected`] as for
    ///   [`Runtime::accept_input`];
    /// - [`RuntimeError::Refused`] unless the session is idle (or attached with no run) with nothing active, and when
    ///   the idempotency key matches a known input;
    /// - [`RuntimeError::Store`] if the input's durable write failed (nothing was admitted);
    /// - [`RuntimeError::RunFailed`] if `op` returned an error or panicked;
    /// - [`RuntimeError::RunCancelled`] if the run was interrupted, the session destroyed, or its deadline passed;
    /// - [`RuntimeError::BoundaryCommitFailed`] if the boundary commit failed;
    /// - [`RuntimeError::FailStopped`] if the start or the end of the run could not be persisted.
    ///
    /// # Examples
    ///
    /// ```
    /// use burrow::{ExecutorOutput, Input, RunRequest, Runtime, RuntimePhase, SessionId};
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # burrow_env::runtime::block_on_current_thread(async {
    /// let runtime = Runtime::ephemeral();
    /// let session = SessionId(1);
    /// runtime.prepare(session).await?;
    /// let value = runtime
    ///     .accept_and_run(session, Input::prompt("2 + 2"), |request: RunRequest| async move {
    ///         assert_eq!(request.inputs[0].payload, "2 + 2");
    ///         Ok((4, ExecutorOutput::result("4")))
    ///     })
    ///     .await?;
    /// assert_eq!(value, 4);
    /// assert_eq!(runtime.runtime_state(session).await?.phase, RuntimePhase::Idle, "the run returned to Idle");
    /// # Ok(())
    /// # })
    /// # }
    /// ```
    pub async fn accept_and_run<T, F, Fut>(&self, id: SessionId, input: Input, op: F) -> Result<T, RuntimeError>
    where
        F: FnOnce(RunRequest) -> Fut,
        Fut: Future<Output = Result<(T, ExecutorOutput), ExecutorError>>,
    {
        let session = self.session(id).await?;
        crate::session::check_payload(&input)?;
        let (request, cancel) = start_inline(&session, input).await?;
        let run = request.run;
        // The notice is the loop's business; an inline run only needs its deadline.
        let deadline = session.lock().await.machine.run_deadline(run).map(|at| session.clock.instant(at));
        let work = catch_panic(op(request));
        let result = burrow_env::select! {
            biased;
            () = cancel.notified() => None,
            result = work => Some(result),
            () = crate::runloop::sleep_until_or_never(deadline) => {
                session.tick().await;
                None
            }
        };
        let (value, observed) = match result {
            // Cancelled by interrupt, destroy or unregister, or past its deadline (the tick expired it).
            None => return Err(RuntimeError::RunCancelled { session: id }),
            Some(Ok(Ok((value, output)))) => (Some(value), crate::runloop::observe_run(Ok(Ok(output)))),
            Some(Ok(Err(error))) => (None, crate::runloop::observe_run(Ok(Err(error)))),
            Some(Err(panic)) => (None, crate::runloop::observe_run(Err(panic))),
        };
        finish_inline(&session, run, observed).await?;
        Ok(value.expect("a run without a value is failed by finish_inline"))
    }

    // ----- control -----------------------------------------------------------------------------------------

    /// Cancels the run in flight; with `run`, only if that is the run in flight. Its inputs end Cancelled.
    ///
    /// Returns the id of the cancelled run. The executor's future for the run is dropped, and queued work goes on with
    /// the next run.
    ///
    /// # Errors
    ///
    /// - [`RuntimeError::NotFound`] if the runtime holds no session `id`;
    /// - [`RuntimeError::Refused`] when no run is in flight, when `run` names another run, or when the run already
    ///   reported and its boundary commit is in flight.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::Arc;
    /// use burrow::{Input, Outcome, Runtime, SessionId};
    /// use burrow::Refusal;
    /// use burrow_env::time::Duration;
    /// # use burrow::{BoxFuture, Executor, ExecutorError, ExecutorOutput, RunRequest};
    /// # struct Forever;
    /// # impl Executor for Forever {
    /// #     fn apply(&self, _: RunRequest) -> BoxFuture<'_, Result<ExecutorOutput, ExecutorError>> {
    /// #         Box::pin(std::future::pending())
    /// #     }
    /// # }
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # burrow_env::runtime::block_on_current_thread(async {
    /// let runtime = Runtime::ephemeral();
    /// let session = SessionId(1);
    /// runtime.attach_executor(session, Arc::new(Forever)).await?;
    /// let (_, handle) = runtime.accept_input_with_completion(session, Input::prompt("long")).await?.into_parts();
    /// let run = loop {
    ///     if let Some(run) = runtime.runtime_state(session).await?.current_run {
    ///         break run;
    ///     }
    ///     burrow_env::time::sleep(Duration::from_millis(1)).await;
    /// };
    /// assert_eq!(runtime.interrupt(session, Some(run)).await?, run);
    /// assert_eq!(handle.expect("a handle").wait().await?, Outcome::Cancelled);
    ///
    /// let err = runtime.interrupt(session, None).await.unwrap_err();
    /// assert_eq!(err.refusal(), Some(&Refusal::NoRunInFlight));
    /// # Ok(())
    /// # })
    /// # }
    /// ```
    pub async fn interrupt(&self, id: SessionId, run: Option<RunId>) -> Result<RunId, RuntimeError> {
        match self.call(id, "interrupt", SessionEvent::Interrupt { run }).await? {
            Reply::Interrupted(run) => Ok(run),
            other => unreachable!("Interrupt answers Interrupted, not {other:?}"),
        }
    }

    /// Asks the executor to end the run in flight at its next boundary ([`Executor::cancel_after_boundary`]). If the
    /// executor cannot promise that, the run is interrupted instead.
    ///
    /// # Errors
    ///
    /// - [`RuntimeError::NotFound`] if the runtime holds no session `id`;
    /// - [`RuntimeError::Refused`] when no run is in flight.
    pub async fn cancel_after_boundary(&self, id: SessionId) -> Result<(), RuntimeError> {
        self.call(id, "cancel_after_boundary", SessionEvent::CancelAfterBoundary).await.map(drop)
    }

    /// Stops the executor. During a run the stop is deferred until the run ends. Returns after the loop exited, the
    /// executor's cleanup ran and every waiter resolved, or with [`RuntimeError::TimedOut`] after the run's
    /// deadline plus the stop wait.
    ///
    /// Stopping a stopped session changes nothing; a stopped session admits no input until an executor attaches again.
    ///
    /// # Errors
    ///
    /// - [`RuntimeError::NotFound`] if the runtime holds no session `id`;
    /// - [`RuntimeError::Refused`] if the session is destroyed;
    /// - [`RuntimeError::TimedOut`] if the loop did not exit within the run's remaining time plus
    ///   [`RuntimeConfig::stop_wait`] (the stop still takes effect).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::Arc;
    /// use burrow::{Input, Runtime, RuntimeError, RuntimePhase, SessionId, StopReport};
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
    /// let report = runtime.stop_executor(session).await?;
    /// assert_eq!(report, StopReport { deferred: false, abandoned: 0 });
    /// let state = runtime.runtime_state(session).await?;
    /// assert_eq!((state.phase, state.loop_live), (RuntimePhase::Stopped, false));
    /// let err = runtime.accept_input(session, Input::prompt("late")).await.unwrap_err();
    /// assert!(matches!(err, RuntimeError::Refused { .. }), "{err}");
    /// # Ok(())
    /// # })
    /// # }
    /// ```
    pub async fn stop_executor(&self, id: SessionId) -> Result<StopReport, RuntimeError> {
        let session = self.session(id).await?;
        let (report, exited, bound) = {
            let mut st = session.lock().await;
            let reply = session
                .drive(&mut st, SessionEvent::Stop, None)
                .await
                .map_err(|r| RuntimeError::refused(id, "stop", r))?;
            let report = match reply {
                Reply::Stopped { deferred, abandoned } => StopReport { deferred, abandoned },
                _ => StopReport { deferred: false, abandoned: 0 },
            };
            let run_left = st.machine.current_run().map_or(0, |r| r.deadline_at.since(session.clock.now()));
            let bound = Duration::from_millis(run_left) + self.inner.config.stop_wait;
            (report, st.loop_slot.as_ref().map(|slot| slot.exited.clone()), bound)
        };
        self.wait_loop_exit(id, exited, bound, "stop_executor").await?;
        Ok(report)
    }

    async fn wait_loop_exit(
        &self,
        id: SessionId,
        exited: Option<watch::Receiver<bool>>,
        bound: Duration,
        what: &'static str,
    ) -> Result<(), RuntimeError> {
        let Some(mut exited) = exited else { return Ok(()) };
        match timeout(bound, exited.wait_for(|done| *done)).await {
            // Err from wait_for: the loop task was aborted; it is gone either way.
            Ok(_) => Ok(()),
            Err(_) => Err(RuntimeError::TimedOut { session: id, what, waited_ms: millis(bound) }),
        }
    }

    /// Retires the session: admission closes; queued inputs are drained if an executor is attached, else abandoned.
    ///
    /// During a run the retirement is sticky: admission closes at once and the run returns to Retired. Retiring twice
    /// changes nothing.
    ///
    /// # Errors
    ///
    /// - [`RuntimeError::NotFound`] if the runtime holds no session `id`;
    /// - [`RuntimeError::Refused`] if the session is stopped or destroyed.
    ///
    /// # Examples
    ///
    /// ```
    /// use burrow::{Input, OutcomeClass, RetireReport, Runtime, SessionId};
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # burrow_env::runtime::block_on_current_thread(async {
    /// let runtime = Runtime::ephemeral();
    /// let session = SessionId(1);
    /// runtime.prepare(session).await?;
    /// let (_, handle) = runtime.accept_input_with_completion(session, Input::prompt("queued")).await?.into_parts();
    /// let report = runtime.retire(session).await?;
    /// assert_eq!(report, RetireReport { pending_drain: 0, abandoned: 1 }, "no executor to drain it");
    /// assert_eq!(handle.expect("a handle").wait().await?.class(), OutcomeClass::Abandoned);
    /// assert!(runtime.accept_input(session, Input::prompt("late")).await.is_err(), "admission is closed");
    /// # Ok(())
    /// # })
    /// # }
    /// ```
    pub async fn retire(&self, id: SessionId) -> Result<RetireReport, RuntimeError> {
        self.retire_as(id.into()).await
    }

    pub(crate) async fn retire_as(&self, target: Target) -> Result<RetireReport, RuntimeError> {
        Ok(match self.call_as(target, "retire", SessionEvent::Retire).await? {
            Reply::Retired { pending_drain, abandoned } => RetireReport { pending_drain, abandoned },
            _ => RetireReport { pending_drain: 0, abandoned: 0 },
        })
    }

    /// Rebuilds the session's runtime instance keeping its non-terminal work and their waiters; the binding moves to
    /// a new generation. Refused while a run is in flight.
    ///
    /// Bindings and cleanup observations minted before the recycle are stale afterwards. The session rests in Attached
    /// if an executor is attached, Idle otherwise.
    ///
    /// # Errors
    ///
    /// - [`RuntimeError::NotFound`] if the runtime holds no session `id`;
    /// - [`RuntimeError::Refused`] while a run is in flight, and when the session is destroyed or not registered.
    ///
    /// # Examples
    ///
    /// ```
    /// use burrow::{Input, Runtime, SessionId};
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # burrow_env::runtime::block_on_current_thread(async {
    /// let runtime = Runtime::ephemeral();
    /// let session = SessionId(1);
    /// let before = runtime.prepare(session).await?.binding;
    /// runtime.accept_input(session, Input::prompt("kept")).await?;
    /// let report = runtime.recycle(session).await?;
    /// assert_eq!(report.transferred, 1);
    /// let after = runtime.runtime_state(session).await?.binding.expect("prepared");
    /// assert_eq!(after.epoch, before.epoch);
    /// assert!(after.generation > before.generation);
    /// # Ok(())
    /// # })
    /// # }
    /// ```
    pub async fn recycle(&self, id: SessionId) -> Result<RecycleReport, RuntimeError> {
        self.recycle_as(id.into()).await
    }

    pub(crate) async fn recycle_as(&self, target: Target) -> Result<RecycleReport, RuntimeError> {
        match self.call_as(target, "recycle", SessionEvent::Recycle).await? {
            Reply::Recycled { transferred } => Ok(RecycleReport { transferred }),
            other => unreachable!("Recycle answers Recycled, not {other:?}"),
        }
    }

    /// Abandons every non-terminal input and resolves its waiters. Refused while a run is in flight.
    ///
    /// The session rests in Attached if an executor is attached, Idle otherwise.
    ///
    /// # Errors
    ///
    /// - [`RuntimeError::NotFound`] if the runtime holds no session `id`;
    /// - [`RuntimeError::Refused`] while a run is in flight, and when the session is destroyed.
    ///
    /// # Examples
    ///
    /// ```
    /// use burrow::{Input, OutcomeClass, Runtime, SessionId};
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # burrow_env::runtime::block_on_current_thread(async {
    /// let runtime = Runtime::ephemeral();
    /// let session = SessionId(1);
    /// runtime.prepare(session).await?;
    /// let (_, handle) = runtime.accept_input_with_completion(session, Input::prompt("a")).await?.into_parts();
    /// runtime.accept_input(session, Input::prompt("b")).await?;
    /// assert_eq!(runtime.reset(session).await?.abandoned, 2);
    /// assert_eq!(handle.expect("a handle").wait().await?.class(), OutcomeClass::RuntimeTerminated);
    /// assert_eq!(runtime.runtime_state(session).await?.active_inputs, 0);
    /// # Ok(())
    /// # })
    /// # }
    /// ```
    pub async fn reset(&self, id: SessionId) -> Result<ResetReport, RuntimeError> {
        self.reset_as(id.into()).await
    }

    pub(crate) async fn reset_as(&self, target: Target) -> Result<ResetReport, RuntimeError> {
        match self.call_as(target, "reset", SessionEvent::Reset).await? {
            Reply::Reset { abandoned } => Ok(ResetReport { abandoned }),
            other => unreachable!("Reset answers Reset, not {other:?}"),
        }
    }

    /// Replays durable state: from the store if the runtime has one, else the in-memory ledger (ephemeral inputs
    /// are dropped and their waiters resolved). Refused while a run is in flight.
    ///
    /// Inputs that were in a run go back to the queue, inputs out of attempts are abandoned, and inputs whose boundary
    /// committed are consumed, never run again (SPEC 5). The session rests in Attached if an executor is attached, Idle
    /// otherwise.
    ///
    /// # Errors
    ///
    /// - [`RuntimeError::NotFound`] if the runtime holds no session `id`;
    /// - [`RuntimeError::Store`] if the store could not be read;
    /// - [`RuntimeError::Refused`] while a run is in flight, and when the session is destroyed.
    ///
    /// # Examples
    ///
    /// ```
    /// use burrow::{Input, InputState, OutcomeClass, Runtime, SessionId};
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # burrow_env::runtime::block_on_current_thread(async {
    /// let runtime = Runtime::ephemeral();
    /// let session = SessionId(1);
    /// runtime.prepare(session).await?;
    /// let durable = runtime.accept_input(session, Input::prompt("keep")).await?.input();
    /// let (_, ephemeral) =
    ///     runtime.accept_input_with_completion(session, Input::prompt("drop").ephemeral()).await?.into_parts();
    /// let report = runtime.recover(session).await?;
    /// assert_eq!((report.recovered, report.dropped), (1, 1));
    /// assert_eq!(ephemeral.expect("a handle").wait().await?.class(), OutcomeClass::RuntimeTerminated);
    /// assert_eq!(runtime.input_state(session, durable).await?.expect("kept").state, InputState::Queued);
    /// # Ok(())
    /// # })
    /// # }
    /// ```
    pub async fn recover(&self, id: SessionId) -> Result<RecoverReport, RuntimeError> {
        self.recover_as(id.into()).await
    }

    pub(crate) async fn recover_as(&self, target: Target) -> Result<RecoverReport, RuntimeError> {
        let id = target.session;
        let session = self.session(id).await?;
        // The image is read under the session lock: read before it, a boundary that commits in between would be
        // missing from it, and recovery would requeue an input whose run already committed.
        let mut st = session.lock().await;
        session.expire_due(&mut st).await;
        let image = match &self.inner.store {
            Some(store) => store.load(id).await.map_err(|error| RuntimeError::Store { session: id, error })?,
            None => None,
        };
        let reply = match image {
            Some(image) => self.recover_image(&session, &mut st, &image, false, target.binding).await?,
            None => {
                let source = RecoverySource::InMemory;
                session
                    .drive(&mut st, fenced(target.binding, SessionEvent::Recover(source)), None)
                    .await
                    .map_err(|r| RuntimeError::refused(id, "recover", r))?
            }
        };
        match reply {
            Reply::Recovered { recovered, requeued, abandoned, consumed, dropped } => {
                Ok(RecoverReport { recovered, requeued, abandoned, consumed, dropped })
            }
            other => unreachable!("Recover answers Recovered, not {other:?}"),
        }
    }

    /// Destroys the session: terminal. The run in flight is cancelled, every input abandoned, every waiter resolved
    /// RuntimeTerminated, operations terminated; returns after the loop exited (bounded by the stop wait).
    ///
    /// A second destroy changes nothing; every other phase change is refused from then on. The session stays in the
    /// runtime's table in the Destroyed phase.
    ///
    /// # Errors
    ///
    /// - [`RuntimeError::NotFound`] if the runtime holds no session `id`;
    /// - [`RuntimeError::TimedOut`] if the loop did not exit within [`RuntimeConfig::stop_wait`].
    ///
    /// # Examples
    ///
    /// ```
    /// use burrow::{Input, OutcomeClass, Runtime, RuntimePhase, SessionId};
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # burrow_env::runtime::block_on_current_thread(async {
    /// let runtime = Runtime::ephemeral();
    /// let session = SessionId(1);
    /// runtime.prepare(session).await?;
    /// let (_, handle) = runtime.accept_input_with_completion(session, Input::prompt("never")).await?.into_parts();
    /// assert_eq!(runtime.destroy(session).await?.abandoned, 1);
    /// assert_eq!(handle.expect("a handle").wait().await?.class(), OutcomeClass::RuntimeTerminated);
    /// assert_eq!(runtime.runtime_state(session).await?.phase, RuntimePhase::Destroyed);
    /// assert!(runtime.retire(session).await.is_err(), "destroyed is terminal");
    /// # Ok(())
    /// # })
    /// # }
    /// ```
    pub async fn destroy(&self, id: SessionId) -> Result<DestroyReport, RuntimeError> {
        self.destroy_as(id.into()).await
    }

    pub(crate) async fn destroy_as(&self, target: Target) -> Result<DestroyReport, RuntimeError> {
        let id = target.session;
        let session = self.session(id).await?;
        let (report, exited) = {
            let mut st = session.lock().await;
            let reply = session
                .drive(&mut st, fenced(target.binding, SessionEvent::Destroy), None)
                .await
                .map_err(|r| RuntimeError::refused(id, "destroy", r))?;
            let report = match reply {
                Reply::Destroyed { abandoned } => DestroyReport { abandoned },
                _ => DestroyReport { abandoned: 0 },
            };
            (report, st.loop_slot.as_ref().map(|slot| slot.exited.clone()))
        };
        self.wait_loop_exit(id, exited, self.inner.config.stop_wait, "destroy").await?;
        Ok(report)
    }

    /// Replaces the list of peer-request intents that queue without waking the loop: a PeerRequest input whose
    /// intent is listed is accepted as if by [`Runtime::accept_input_without_wake`].
    ///
    /// # Errors
    ///
    /// - [`RuntimeError::NotFound`] if the runtime holds no session `id`;
    /// - [`RuntimeError::Refused`] if the list is longer than the machine allows.
    pub async fn set_silent_intents(&self, id: SessionId, intents: Vec<String>) -> Result<(), RuntimeError> {
        self.call(id, "set_silent_intents", SessionEvent::SetSilentIntents(intents)).await.map(drop)
    }

    /// Keeps the session hosted for peer ingress while idle (PersistentHost drain), or not.
    ///
    /// # Errors
    ///
    /// - [`RuntimeError::NotFound`] if the runtime holds no session `id`;
    /// - [`RuntimeError::Refused`] if the drain machine refuses the change (the setting is then left as it was).
    pub async fn set_keep_alive(&self, id: SessionId, keep_alive: bool) -> Result<(), RuntimeError> {
        self.call(id, "set_keep_alive", SessionEvent::SetKeepAlive(keep_alive)).await.map(drop)
    }

    /// Turns peer ingress on or off after prepare (`SessionConfig::comms_enabled`). Off, a running drain is aborted;
    /// on, a drain starts when the session wants one (attached, or idle and kept alive) and a peer source is set.
    ///
    /// # Errors
    ///
    /// - [`RuntimeError::NotFound`] if the runtime holds no session `id`;
    /// - [`RuntimeError::Refused`] if the session is released or the drain machine refuses (nothing changed).
    ///
    /// # Examples
    ///
    /// ```
    /// use burrow::{Runtime, SessionId};
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # burrow_env::runtime::block_on_current_thread(async {
    /// let runtime = Runtime::ephemeral();
    /// let session = SessionId(1);
    /// runtime.prepare(session).await?;
    /// assert!(!runtime.has_comms(session).await?, "comms is off by default");
    /// runtime.set_comms_enabled(session, true).await?;
    /// assert!(!runtime.has_comms(session).await?, "on, but no peer source is set yet");
    /// # Ok(())
    /// # })
    /// # }
    /// ```
    pub async fn set_comms_enabled(&self, id: SessionId, comms: bool) -> Result<(), RuntimeError> {
        self.call(id, "set_comms_enabled", SessionEvent::SetCommsEnabled(comms)).await.map(drop)
    }

    /// Follows the session's notices from now on: inputs admitted and ended (with their outcome class), runs
    /// started and ended, phase changes, operations ended, the peer drain's exits, and the events published with
    /// [`Runtime::publish_event`]. A slow subscriber never holds the session back; it misses the oldest notices past
    /// [`RuntimeConfig::notice_capacity`] and is told how many ([`SubscriptionError::Missed`]).
    ///
    /// # Errors
    ///
    /// [`RuntimeError::NotFound`] if the runtime holds no session `id`.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use burrow::{Notice, Runtime, RuntimeEvent, SessionId};
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # burrow_env::runtime::block_on_current_thread(async {
    /// let runtime = Runtime::ephemeral();
    /// let session = SessionId(1);
    /// runtime.prepare(session).await?;
    /// let mut notices = runtime.subscribe(session).await?;
    /// runtime.publish_event(session, RuntimeEvent::new("deploy", "v2")).await?;
    /// let notice = notices.next(Duration::from_secs(1)).await?;
    /// assert_eq!(notice, Notice::Published(RuntimeEvent::new("deploy", "v2")));
    /// assert!(runtime.list_active_inputs(session).await?.is_empty(), "an event is not an input");
    /// # Ok(())
    /// # })
    /// # }
    /// ```
    pub async fn subscribe(&self, id: SessionId) -> Result<Subscription, RuntimeError> {
        let session = self.session(id).await?;
        let mut st = session.lock().await;
        Ok(st.notices.subscribe(id, session.bounds.notices))
    }

    /// Tells the session's subscribers `event` ([`Notice::Published`]). It is not an input: nothing runs it and
    /// nothing stores it; with no subscriber it goes nowhere. Use [`ControlPlane::ingest`](crate::ControlPlane) or
    /// [`Runtime::accept_input`] with an [`InputKind::ExternalEvent`] input for an event the executor must see.
    ///
    /// # Errors
    ///
    /// [`RuntimeError::NotFound`] if the runtime holds no session `id`; [`RuntimeError::Refused`] with
    /// [`Refusal::InvalidEvent`](burrow_core::session::Refusal::InvalidEvent) for an empty or oversized name or
    /// an oversized payload, and [`Refusal::NotRegistered`](burrow_core::session::Refusal::NotRegistered) for a
    /// released session.
    pub async fn publish_event(&self, id: SessionId, event: RuntimeEvent) -> Result<(), RuntimeError> {
        self.publish_event_as(id.into(), event).await
    }

    pub(crate) async fn publish_event_as(&self, target: Target, event: RuntimeEvent) -> Result<(), RuntimeError> {
        self.call_as(target, "publish_event", SessionEvent::Publish(event)).await.map(drop)
    }

    /// Whether the session takes peer messages: comms is on and a peer source is set.
    ///
    /// # Errors
    ///
    /// [`RuntimeError::NotFound`] if the runtime holds no session `id`.
    pub async fn has_comms(&self, id: SessionId) -> Result<bool, RuntimeError> {
        let session = self.session(id).await?;
        let comms = session.lock().await.machine.config().comms_enabled;
        Ok(comms && session.peer.lock().unwrap_or_else(std::sync::PoisonError::into_inner).is_some())
    }

    /// Ends the session's running drain task now (it ends Aborted). No new task starts until the session's wish
    /// changes (an attach or detach, keep-alive, comms turned on again) or a new peer source is set. Messages the
    /// task had handed over but the session could not take yet stay held and are offered by the next task. Does
    /// nothing when no task runs.
    ///
    /// # Errors
    ///
    /// [`RuntimeError::NotFound`] if the runtime holds no session `id`.
    pub async fn abort_drain(&self, id: SessionId) -> Result<(), RuntimeError> {
        self.call(id, "abort_drain", SessionEvent::Drain(burrow_core::drain::DrainEvent::Abort)).await.map(drop)
    }

    /// Waits, at most `bound`, until no drain task runs for the session, and returns the drain's phase then
    /// (Inactive, Stopped with the reason the last task ended, or ExitedRespawnable).
    ///
    /// # Errors
    ///
    /// - [`RuntimeError::NotFound`] if the runtime holds no session `id`;
    /// - [`RuntimeError::TimedOut`] if a task still runs after `bound`.
    pub async fn wait_drain(&self, id: SessionId, bound: Duration) -> Result<DrainPhase, RuntimeError> {
        let session = self.session(id).await?;
        let look = async {
            loop {
                let phase = session.lock().await.machine.drain().phase();
                if !phase.is_running() {
                    return phase;
                }
                burrow_env::time::sleep(DRAIN_POLL).await;
            }
        };
        timeout(bound, look).await.map_err(|_| RuntimeError::TimedOut {
            session: id,
            what: "wait_drain",
            waited_ms: u64::try_from(bound.as_millis()).unwrap_or(u64::MAX),
        })
    }

    /// Sets where the session's peer messages come from. Takes effect at the next drain spawn; the session's
    /// settings must enable comms for a drain to run.
    ///
    /// # Errors
    ///
    /// [`RuntimeError::NotFound`] if the runtime holds no session `id`.
    pub async fn set_peer_source(&self, id: SessionId, source: Arc<dyn PeerSource>) -> Result<(), RuntimeError> {
        let session = self.session(id).await?;
        *session.peer.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(source);
        // The machine decides whether a drain starts for it (one that ended without a source does).
        self.call(id, "set_peer_source", SessionEvent::PeerSourceSet).await.map(drop)
    }

    // ----- reads -------------------------------------------------------------------------------------------

    /// One input's state (live, or recent history). `None` if the session never had the input, or has forgotten it
    /// (terminal inputs are kept for a bounded history).
    ///
    /// # Errors
    ///
    /// [`RuntimeError::NotFound`] if the runtime holds no session `id`.
    pub async fn input_state(&self, id: SessionId, input: InputId) -> Result<Option<InputView>, RuntimeError> {
        Ok(self.session(id).await?.lock().await.machine.input_state(input))
    }

    /// The input that holds idempotency key `key`: live, in the recent history, or (with a store, past the history)
    /// as the store's row shows it. `None` if no input of the session holds the key.
    ///
    /// # Errors
    ///
    /// - [`RuntimeError::NotFound`] if the runtime holds no session `id`;
    /// - [`RuntimeError::Store`] if the store could not be read.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::Arc;
    /// use burrow::{Input, InputState, MemoryStore, Runtime, SessionId};
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # burrow_env::runtime::block_on_current_thread(async {
    /// let store = Arc::new(MemoryStore::new());
    /// let runtime = Runtime::with_store(store.clone());
    /// let session = SessionId(1);
    /// runtime.prepare(session).await?;
    /// let input = runtime.accept_input(session, Input::prompt("pay").idempotency_key("order-1")).await?.input();
    ///
    /// // After a restart the key is found again.
    /// let restarted = Runtime::with_store(store);
    /// restarted.prepare(session).await?;
    /// let view = restarted.input_state_by_key(session, "order-1").await?.expect("the store holds it");
    /// assert_eq!((view.id, view.state), (input, InputState::Queued));
    /// assert!(restarted.input_state_by_key(session, "order-2").await?.is_none());
    /// # Ok(())
    /// # })
    /// # }
    /// ```
    pub async fn input_state_by_key(&self, id: SessionId, key: &str) -> Result<Option<InputView>, RuntimeError> {
        let session = self.session(id).await?;
        let st = session.lock().await;
        if let Some(view) = st.machine.input_state_by_key(key) {
            return Ok(Some(view));
        }
        let (true, Some(store)) = (st.machine.shows_key_from_store(key), session.store.as_ref()) else {
            return Ok(None);
        };
        let row = store.input_by_key(id, key).await.map_err(|error| RuntimeError::Store { session: id, error })?;
        Ok(row.and_then(|row| st.machine.stored_view(&row)))
    }

    /// Every non-terminal input, in id order.
    ///
    /// # Errors
    ///
    /// [`RuntimeError::NotFound`] if the runtime holds no session `id`.
    pub async fn list_active_inputs(&self, id: SessionId) -> Result<Vec<InputView>, RuntimeError> {
        Ok(self.session(id).await?.lock().await.machine.list_active_inputs())
    }

    /// The session's state: phase, registration, binding, active inputs, run in flight, waiters, loop and drain.
    ///
    /// # Errors
    ///
    /// [`RuntimeError::NotFound`] if the runtime holds no session `id`.
    pub async fn runtime_state(&self, id: SessionId) -> Result<RuntimeState, RuntimeError> {
        self.runtime_state_as(id.into()).await
    }

    pub(crate) async fn runtime_state_as(&self, target: Target) -> Result<RuntimeState, RuntimeError> {
        let id = target.session;
        let session = self.session(id).await?;
        let st = session.lock().await;
        if let Some(binding) = target.binding {
            // Under the same lock as the read: the state returned is the state of the instance the binding names.
            st.machine.check_binding(binding).map_err(|r| RuntimeError::refused(id, "runtime_state", r))?;
        }
        let m = &st.machine;
        Ok(RuntimeState {
            phase: m.phase(),
            registration: m.registration().phase(),
            binding: m.binding(),
            active_inputs: m.ledger().active_len(),
            current_run: m.current_run().map(|r| r.id),
            pending_waiters: m.waiters().pending(),
            loop_live: st.loop_slot.is_some(),
            loop_parked: m.loop_parked(),
            drain: m.drain().phase(),
        })
    }

    /// The committed receipt of `run`: from live state, else from the store. `None` if the run never committed a
    /// boundary, or if its receipt left memory and the runtime has no store.
    ///
    /// # Errors
    ///
    /// - [`RuntimeError::NotFound`] if the runtime holds no session `id`;
    /// - [`RuntimeError::Store`] if the store could not be read.
    pub async fn load_boundary_receipt(
        &self,
        id: SessionId,
        run: RunId,
    ) -> Result<Option<BoundaryReceipt>, RuntimeError> {
        self.load_boundary_receipt_as(id.into(), run).await
    }

    pub(crate) async fn load_boundary_receipt_as(
        &self,
        target: Target,
        run: RunId,
    ) -> Result<Option<BoundaryReceipt>, RuntimeError> {
        let id = target.session;
        let session = self.session(id).await?;
        {
            let st = session.lock().await;
            if let Some(binding) = target.binding {
                st.machine.check_binding(binding).map_err(|r| RuntimeError::refused(id, "load_boundary_receipt", r))?;
            }
            if let Some(receipt) = st.machine.boundary_receipt(run).cloned() {
                return Ok(Some(receipt));
            }
        }
        match &self.inner.store {
            Some(store) => {
                store.load_boundary_receipt(id, run).await.map_err(|error| RuntimeError::Store { session: id, error })
            }
            None => Ok(None),
        }
    }

    /// Checks a caller's binding (fencing): refused unless it is the session's current one.
    ///
    /// # Errors
    ///
    /// - [`RuntimeError::NotFound`] if the runtime holds no session `id`;
    /// - [`RuntimeError::Refused`] if `binding` is not the current binding (an older generation or epoch).
    ///
    /// # Examples
    ///
    /// ```
    /// use burrow::{Runtime, RuntimeError, SessionId};
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # burrow_env::runtime::block_on_current_thread(async {
    /// let runtime = Runtime::ephemeral();
    /// let session = SessionId(1);
    /// let old = runtime.prepare(session).await?.binding;
    /// runtime.check_binding(session, old).await?;
    /// runtime.recycle(session).await?;
    /// let err = runtime.check_binding(session, old).await.unwrap_err();
    /// assert!(matches!(err, RuntimeError::Refused { .. }), "a binding from before the recycle is stale: {err}");
    /// # Ok(())
    /// # })
    /// # }
    /// ```
    pub async fn check_binding(&self, id: SessionId, binding: Binding) -> Result<(), RuntimeError> {
        let session = self.session(id).await?;
        let st = session.lock().await;
        st.machine.check_binding(binding).map_err(|r| RuntimeError::refused(id, "check_binding", r))
    }

    /// Validates a cleanup observation: refused if it was minted by another session or for an earlier binding.
    ///
    /// # Errors
    ///
    /// - [`RuntimeError::NotFound`] if the runtime holds no session `id`;
    /// - [`RuntimeError::Refused`] if the observation belongs to another session or to an earlier binding.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::Arc;
    /// use burrow::{Input, Runtime, SessionId};
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
    /// let (_, handle) = runtime.accept_input_with_completion(session, Input::prompt("hi")).await?.into_parts();
    /// let (_, observation) = handle.expect("a handle").wait_with_observation().await?;
    /// runtime.validate_cleanup(session, &observation).await?;
    /// runtime.recycle(session).await?;
    /// assert!(runtime.validate_cleanup(session, &observation).await.is_err(), "minted for the old binding");
    /// # Ok(())
    /// # })
    /// # }
    /// ```
    pub async fn validate_cleanup(&self, id: SessionId, observation: &CleanupObservation) -> Result<(), RuntimeError> {
        let session = self.session(id).await?;
        let st = session.lock().await;
        st.machine.validate_cleanup(observation).map_err(|r| RuntimeError::refused(id, "validate_cleanup", r))
    }

    /// The session's operations registry (the same one [`Bindings::operations`] holds).
    ///
    /// # Errors
    ///
    /// [`RuntimeError::NotFound`] if the runtime holds no session `id`.
    pub async fn operations(&self, id: SessionId) -> Result<OperationsHandle, RuntimeError> {
        Ok(OperationsHandle::new(self.session(id).await?))
    }

    /// Checks every SPEC 6 rule that is a property of the session's state, plus the shell's own: each unresolved
    /// waiter of the machine has exactly one channel here.
    ///
    /// # Errors
    ///
    /// [`InvariantError::NotFound`] if the runtime holds no session `id`; otherwise the first rule found broken.
    ///
    /// # Examples
    ///
    /// ```
    /// use burrow::{Input, InvariantError, Runtime, SessionId};
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # burrow_env::runtime::block_on_current_thread(async {
    /// let runtime = Runtime::ephemeral();
    /// runtime.prepare(SessionId(1)).await?;
    /// runtime.accept_input(SessionId(1), Input::prompt("queued")).await?;
    /// assert_eq!(runtime.check_invariants(SessionId(1)).await, Ok(()));
    /// assert_eq!(runtime.check_invariants(SessionId(2)).await, Err(InvariantError::NotFound(SessionId(2))));
    /// # Ok(())
    /// # })
    /// # }
    /// ```
    pub async fn check_invariants(&self, id: SessionId) -> Result<(), InvariantError> {
        let session = self.session(id).await.map_err(|_| InvariantError::NotFound(id))?;
        let st = session.lock().await;
        invariants::check(&st.machine).map_err(|violation| InvariantError::Machine { session: id, violation })?;
        let (channels, pending) = (st.waiter_channels(), st.machine.waiters().pending());
        if channels != pending {
            return Err(InvariantError::WaiterChannels { session: id, channels, pending });
        }
        Ok(())
    }
}

/// Admits an accept_and_run input and starts its inline run: the run to hand to the caller's closure and the signal
/// that cancels it.
async fn start_inline(session: &Arc<Session>, input: Input) -> Result<(RunRequest, Arc<Notify>), RuntimeError> {
    // As for an accept: a caller that stops waiting does not cut the drive short. A run it started then has nobody
    // to run it, and ends by its deadline.
    let owned = session.clone();
    session.finish_unattended(async move { start_inline_now(&owned, input).await }).await
}

async fn start_inline_now(session: &Arc<Session>, input: Input) -> Result<(RunRequest, Arc<Notify>), RuntimeError> {
    let id = session.id;
    let mut st = session.lock().await;
    session.recall_key(&mut st, &input.spec, "accept_and_run").await?;
    let event = SessionEvent::AcceptAndRun { spec: input.spec };
    let mut out = Driven::default();
    session
        .drive_out(&mut st, event, Some(input.payload), &mut out)
        .await
        .map_err(|r| RuntimeError::refused(id, "accept_and_run", r))?;
    if let Some(error) = out.persist_input_failed() {
        return Err(RuntimeError::store(id, error));
    }
    // The run's start could not be made durable: the session fail-stopped (or moved) and the run was never handed
    // out.
    if let Some(error) = out.lifecycle_failed() {
        return Err(match error {
            StoreError::Fenced(fenced) => RuntimeError::NotOwner { session: id, owner: fenced.owner },
            error => RuntimeError::FailStopped { session: id, error },
        });
    }
    let run = out.run.ok_or(RuntimeError::RunCancelled { session: id })?;
    if let Some(lost) = session.before_run() {
        // spec: specs/session.md#ownership-moved: a host past its lease's end gives no run to an executor, the
        // caller's closure included: another host may claim the session now and run the same input.
        tracing::info!(session = %id, run = %run.0.run, "the lease ended before the inline run was handed out");
        session.lease_ended(&mut st, lost).await;
        return Err(RuntimeError::NotOwner { session: id, owner: None });
    }
    Ok(run)
}

/// Reports how an inline run's closure ended and says what its caller is told: nothing more on success, the store's
/// error if the commit or the fail-stop's row failed, the closure's failure otherwise.
async fn finish_inline(session: &Arc<Session>, run: RunId, observed: Observed) -> Result<(), RuntimeError> {
    let id = session.id;
    let failure = match &observed {
        Observed::ExecutorFailed(message) | Observed::ExecutorPanicked(message) => Some(message.clone()),
        _ => None,
    };
    let event = feedback(Subject::Run(run), observed)
        .expect("a run body's answer is a result of its run")
        .expect("a run's end is reported");
    let mut st = session.lock().await;
    let mut out = Driven::default();
    session
        .drive_out(&mut st, event, None, &mut out)
        .await
        .map_err(|r| RuntimeError::refused(id, "accept_and_run", r))?;
    if let Some(error) = out.lifecycle_failed() {
        return Err(RuntimeError::FailStopped { session: id, error });
    }
    if let Some(error) = out.boundary_failed() {
        return Err(RuntimeError::BoundaryCommitFailed { session: id, error });
    }
    match failure {
        Some(message) => Err(RuntimeError::RunFailed { session: id, message }),
        None => Ok(()),
    }
}

/// How the runtime's sessions start their loops and drains.
static TASK_STARTERS: TaskStarters = TaskStarters { run_loop: crate::runloop::start, drain: crate::peer::drain::start };

fn restore_payloads(st: &mut State, image: &SessionImage) {
    for stored in &image.inputs {
        if !stored.record.state.is_terminal() {
            st.payloads.insert(stored.record.id, stored.payload.clone());
        }
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
