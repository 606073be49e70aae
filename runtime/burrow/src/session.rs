//! One session in the shell: the machine behind an async mutex, the channels its effects reach, and the one place
//! where effects are performed.
//!
//! Every state change goes through [`Session::drive`]: apply one event to the `SessionMachine`, perform each effect
//! in the order the machine emitted it, and feed each effect's result (a store write, a spawned loop) back as the
//! next event. Nothing here decides a transition; it only does what the machine asked and reports how it went.

use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use tracing::Instrument;

use burrow_core::drain::{DrainEffect, DrainEvent, DrainIncarnation, DrainMode};
use burrow_core::ids::{EpochId, Generation, InputId, Millis, OperationId, RunId, SessionId, WaiterId};
use burrow_core::operations::OperationsRegistry;
use burrow_core::operations::{OpEffect, OpOutcome, WaitId, WatcherId};
use burrow_core::protocol::{Observed, Subject, feedback};
use burrow_core::registration::{RegistrationEffect, RegistrationPhase};
use burrow_core::session::{Effect, PersistedLifecycle, Refusal, Reply, SessionEvent, SessionMachine};
use burrow_env::sync::{Mutex, MutexGuard, Notify, oneshot, watch};
use burrow_env::task::{self, JoinHandle};
use burrow_env::time::{Duration, Instant};

use crate::completion::{CompletionHandle, Resolution};
use crate::executor::{Executor, RunInput, RunRequest};
use crate::peer::{DrainSlot, PeerSource};
use crate::runloop::mailbox::{EffectReceiver, EffectSender, ExecutorEffect, LoopSlot, effect_queue};
use crate::store::{BoundaryCommit, LifecycleCommit, Store, StoreError};

/// Starts the loop of a generation with its executor and mailbox; it signals the sender once it is gone.
pub(crate) type StartLoop =
    fn(Arc<Session>, Arc<dyn Executor>, Generation, EffectReceiver, watch::Sender<bool>) -> JoinHandle<()>;

/// Starts the drain task of an incarnation over a source, woken through the notify.
pub(crate) type StartDrain =
    fn(Arc<Session>, Arc<dyn PeerSource>, DrainMode, DrainIncarnation, Arc<Notify>) -> JoinHandle<()>;

/// How a session starts its tasks. The loop (`runloop`) and the peer drain (`peer::drain`) drive the session, so the
/// session does not name them: the runtime hands it these, and the modules depend on each other one way only.
pub(crate) struct TaskStarters {
    /// Starts a loop.
    pub(crate) run_loop: StartLoop,
    /// Starts a drain task.
    pub(crate) drain: StartDrain,
}

/// Largest input payload accepted, in bytes.
pub const PAYLOAD_BYTES_MAX: usize = 16 * 1024 * 1024;

/// Milliseconds since the runtime started, on burrow-env's clock: what the machine receives as `now`. A clock may
/// run at a rate of its own (the simulator's drifting hosts): `rate` milliseconds of this clock pass per million of
/// burrow-env's.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Clock {
    origin: Instant,
    rate: u64,
}

/// The rate of a clock that keeps time.
const TRUE_RATE: u64 = 1_000_000;

impl Clock {
    /// A clock from now, `drift_ppm` parts per million fast (positive) or slow (negative).
    pub(crate) fn start(drift_ppm: i32) -> Clock {
        let rate = TRUE_RATE.saturating_add_signed(i64::from(drift_ppm)).max(1);
        Clock { origin: burrow_env::time::now(), rate }
    }

    pub(crate) fn now(&self) -> Millis {
        let elapsed = self.origin.elapsed().as_millis();
        let ms = if self.rate == TRUE_RATE { elapsed } else { elapsed * u128::from(self.rate) / u128::from(TRUE_RATE) };
        Millis(u64::try_from(ms).unwrap_or(u64::MAX))
    }

    /// When this clock reads `at`.
    pub(crate) fn instant(&self, at: Millis) -> Instant {
        let ms = if self.rate == TRUE_RATE {
            at.0
        } else {
            u64::try_from(u128::from(at.0) * u128::from(TRUE_RATE) / u128::from(self.rate)).unwrap_or(u64::MAX)
        };
        self.origin.checked_add(Duration::from_millis(ms)).unwrap_or_else(burrow_env::time::now)
    }
}

/// What a resolved wait_all delivers: each member and how it ended, in the order given.
pub(crate) type WaitOutcomes = Vec<(OperationId, OpOutcome)>;

/// The channels bound to operation watchers and waits.
#[derive(Default)]
struct OpChannels {
    watchers: BTreeMap<WatcherId, oneshot::Sender<OpOutcome>>,
    waits: BTreeMap<WaitId, oneshot::Sender<WaitOutcomes>>,
}

/// Everything behind the session's lock.
pub(crate) struct State {
    pub(crate) machine: SessionMachine,
    waiters: BTreeMap<WaiterId, oneshot::Sender<crate::completion::Delivery>>,
    pub(crate) payloads: BTreeMap<InputId, String>,
    /// The channels of operation watchers and waits; made on first use, so a session without operations keeps
    /// only a pointer.
    op_channels: Option<Box<OpChannels>>,
    /// The executor of the attach in flight, taken when its loop is spawned.
    pub(crate) attaching: Option<Arc<dyn Executor>>,
    pub(crate) loop_slot: Option<LoopSlot>,
    run_cancel: Option<(RunId, Arc<Notify>)>,
    /// The live drain task, boxed: most sessions never run one.
    pub(crate) drain: Option<Box<DrainSlot>>,
    /// The subscribers' channel, while there are any.
    pub(crate) notices: crate::notices::Notices,
    /// What this session added to the runtime's gauges.
    reported: crate::metrics::Reported,
}

impl State {
    pub(crate) fn new(machine: SessionMachine) -> State {
        State {
            reported: crate::metrics::Reported::new(machine.phase()),
            machine,
            waiters: BTreeMap::new(),
            payloads: BTreeMap::new(),
            op_channels: None,
            attaching: None,
            loop_slot: None,
            run_cancel: None,
            drain: None,
            notices: crate::notices::Notices::default(),
        }
    }

    fn op_channels(&mut self) -> &mut OpChannels {
        self.op_channels.get_or_insert_default()
    }

    /// Waiter channels the shell holds; equal to the machine's pending count between calls.
    pub(crate) fn waiter_channels(&self) -> usize {
        self.waiters.len()
    }
}

/// A store write an effect asked for: the one kind of effect that waits. A session without a store has none.
enum StoreWrite {
    Input(burrow_core::input::InputRecord),
    Boundary(BoundaryCommit),
    Lifecycle(LifecycleCommit),
    Operations(Box<OperationsRegistry>),
}

/// A drive's working stack of effects. Its buffer comes from a per-thread spare and goes back there when the drive
/// ends, so a drive allocates no effect buffer of its own once the thread has driven one before; a drive that
/// starts while another on the same thread is suspended in a store write takes a fresh buffer.
struct EffectStack(Vec<Effect>);

/// Spare buffers above this capacity are dropped rather than kept.
const EFFECT_STACK_SPARE_MAX: usize = 64;

thread_local! {
    static SPARE_EFFECTS: std::cell::Cell<Vec<Effect>> = const { std::cell::Cell::new(Vec::new()) };
}

impl EffectStack {
    fn take() -> EffectStack {
        EffectStack(SPARE_EFFECTS.with(std::cell::Cell::take))
    }

    fn give_back(mut self) {
        self.0.clear();
        if self.0.capacity() <= EFFECT_STACK_SPARE_MAX {
            let buffer = std::mem::take(&mut self.0);
            SPARE_EFFECTS.with(|spare| {
                let current = spare.take();
                spare.set(if current.capacity() >= buffer.capacity() { current } else { buffer });
            });
        }
    }
}

/// What every step of one drive shares: its moment (the clock is read once per drive), its event's name and its
/// span.
#[derive(Clone, Copy)]
struct Pass<'s> {
    now: Millis,
    name: &'static str,
    span: &'s tracing::Span,
}

/// A store write a drive stopped at, with the effect it performs.
struct PendingWrite {
    write: StoreWrite,
    subject: Subject,
}

/// A drive in progress: already done (a session without a store, or nothing left to write), or the boxed rest of
/// it. Awaiting it gives the event's reply.
#[must_use = "a drive that has a store write left does nothing until it is awaited"]
pub(crate) enum Drive<'a> {
    /// The drive is done; taken by the first poll.
    Ready(Option<Result<Reply, Refusal>>),
    /// The drive waits for store writes.
    Pending(Pin<Box<dyn Future<Output = Result<Reply, Refusal>> + Send + 'a>>),
}

impl Future for Drive<'_> {
    type Output = Result<Reply, Refusal>;

    fn poll(self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<Self::Output> {
        match self.get_mut() {
            Drive::Ready(result) => std::task::Poll::Ready(result.take().expect("a drive is awaited once")),
            Drive::Pending(rest) => rest.as_mut().poll(cx),
        }
    }
}

/// How one effect was performed.
enum Performed {
    /// In place, with what was observed.
    Done(Observed),
    /// It needs this store write first.
    Write(StoreWrite),
}

/// What performing one event and its consequences produced, for the caller.
#[derive(Debug, Default)]
pub(crate) struct Driven {
    /// A run the caller must hand to its executor (the loop, or accept_and_run).
    pub(crate) run: Option<(RunRequest, Arc<Notify>)>,
    /// The handle of the waiter registered by the reply.
    pub(crate) handle: Option<CompletionHandle>,
    /// Store writes that failed; boxed, since a drive is moved a few times and failures are rare.
    pub(crate) failed: Option<Box<StoreFailures>>,
    /// The operation a Register event allocated.
    pub(crate) registered: Option<OperationId>,
    /// The records a CollectCompleted event removed.
    pub(crate) collected: Option<Vec<(OperationId, OpOutcome)>>,
    /// The watcher a RegisterWatcher event made (one per event).
    pub(crate) watcher: Option<(OperationId, oneshot::Receiver<OpOutcome>)>,
    pub(crate) wait: Option<(WaitId, oneshot::Receiver<WaitOutcomes>)>,
    pub(crate) drain_answer: Option<DrainEffect>,
}

/// The store writes of one drive that failed, by kind.
#[derive(Debug, Default)]
pub(crate) struct StoreFailures {
    pub(crate) persist_input: Option<StoreError>,
    pub(crate) boundary: Option<StoreError>,
    pub(crate) lifecycle: Option<StoreError>,
    pub(crate) operations: Option<StoreError>,
}

impl Driven {
    fn failures(&mut self) -> &mut StoreFailures {
        self.failed.get_or_insert_default()
    }

    /// The input write failed (the admission was undone).
    pub(crate) fn persist_input_failed(&mut self) -> Option<StoreError> {
        self.failed.as_mut().and_then(|f| f.persist_input.take())
    }

    /// The boundary commit failed.
    pub(crate) fn boundary_failed(&mut self) -> Option<StoreError> {
        self.failed.as_mut().and_then(|f| f.boundary.take())
    }

    /// A lifecycle commit failed (the session fail-stopped).
    pub(crate) fn lifecycle_failed(&mut self) -> Option<StoreError> {
        self.failed.as_mut().and_then(|f| f.lifecycle.take())
    }
}

/// One session: its state, its wake signal, its store.
pub(crate) struct Session {
    pub(crate) id: SessionId,
    state: Mutex<State>,
    /// Wakes the loop (WakeLoop, StopLoop, StopExecutor). A permit is kept if the loop is not waiting yet.
    pub(crate) wake: Notify,
    /// The executor-effect channel of the live loop. Only the runtime's session table reaches it, so dropping the
    /// runtime closes it and the loop takes the stop path.
    pub(crate) effects_tx: std::sync::Mutex<Option<EffectSender>>,
    pub(crate) store: Option<Arc<dyn Store>>,
    pub(crate) clock: Clock,
    /// Turns true when an unregister commits. Made on first use: most sessions are never unregistered.
    released: std::sync::OnceLock<watch::Sender<bool>>,
    /// Turns true when the runtime that holds the session is dropped: its peer drain ends and no new one starts, so
    /// nothing keeps a session without a live loop (and the channels of its waiters) alive past its runtime.
    runtime_gone: watch::Sender<bool>,
    pub(crate) peer: std::sync::Mutex<Option<Arc<dyn PeerSource>>>,
    /// Peer messages handed over by the source that the session could not take yet (at most one batch).
    peer_held: std::sync::Mutex<VecDeque<crate::executor::Input>>,
    pub(crate) bounds: SessionBounds,
    starters: &'static TaskStarters,
    /// Told what the session does, in order, when a conformance check watches it; with this session object's name.
    tap: Option<(Arc<dyn crate::tap::Tap>, crate::tap::Teller)>,
    /// A planted mistake (teeth tests only; always None in a normal build).
    pub(crate) planted: Option<crate::planted::ShellDefect>,
    /// Set when the session moved to another host (its machine said so): the new owner, if named. The runtime then
    /// drops the session and answers its calls `NotOwner`.
    pub(crate) moved: std::sync::OnceLock<Option<burrow_core::lease::HostId>>,
    /// Set when a boundary or lifecycle commit failed (not fenced): what the store holds is behind what this process
    /// holds, and only a restore from the store catches up. A fleet host lets such a session's lease go once the
    /// session stopped.
    pub(crate) commit_failed: std::sync::atomic::AtomicBool,
    /// In a fleet: whether this host still holds the session's lease, by its own clock. The loop and
    /// `accept_and_run` ask before they hand a run to an executor, so a host that wakes up past its lease never
    /// starts one.
    pub(crate) lease_held: std::sync::OnceLock<Box<dyn Fn() -> bool + Send + Sync>>,
}

impl Drop for Session {
    /// Waits still open when the session object goes (a session without a live loop, when its runtime is dropped)
    /// learn why, rather than a bare closed channel: no one in this process will resolve them.
    fn drop(&mut self) {
        let waiters = std::mem::take(&mut self.state.get_mut().waiters);
        if !*self.runtime_gone.borrow() {
            // Only an unregister lets a session go while its runtime lives, and it resolves every waiter first. (A
            // runtime dropped without telling its sessions, as a planted defect does, leaves closed channels.)
            return;
        }
        for (_, tx) in waiters {
            let _ = tx.send(Err(crate::completion::WaitFailure::RuntimeDropped));
        }
    }
}

/// The waits of one session's tasks that the runtime's settings bound.
#[derive(Clone, Copy, Debug)]
pub(crate) struct SessionBounds {
    /// An idle PersistentHost peer drain exits after this.
    pub(crate) peer_idle: Duration,
    /// The loop waits this long for the executor's stop or cleanup.
    pub(crate) executor_hook: Duration,
    /// Unread notices a subscription may hold.
    pub(crate) notices: usize,
}

impl Session {
    pub(crate) fn new(
        machine: SessionMachine,
        store: Option<Arc<dyn Store>>,
        clock: Clock,
        bounds: SessionBounds,
        starters: &'static TaskStarters,
        tap: Option<(Arc<dyn crate::tap::Tap>, crate::tap::Teller)>,
        planted: Option<crate::planted::ShellDefect>,
    ) -> Arc<Session> {
        Arc::new(Session {
            id: machine.session(),
            state: Mutex::new(State::new(machine)),
            wake: Notify::new(),
            effects_tx: std::sync::Mutex::new(None),
            store,
            clock,
            released: std::sync::OnceLock::new(),
            moved: std::sync::OnceLock::new(),
            commit_failed: std::sync::atomic::AtomicBool::new(false),
            lease_held: std::sync::OnceLock::new(),
            runtime_gone: watch::channel(false).0,
            peer: std::sync::Mutex::new(None),
            peer_held: std::sync::Mutex::new(VecDeque::new()),
            bounds,
            starters,
            tap,
            planted,
        })
    }

    fn held_peer(&self) -> std::sync::MutexGuard<'_, VecDeque<crate::executor::Input>> {
        self.peer_held.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether peer messages handed over by the source still wait for the session.
    pub(crate) fn holds_peer_messages(&self) -> bool {
        !self.held_peer().is_empty()
    }

    /// Holds peer messages handed over by the source until the session takes them; a drain pulls a batch only
    /// when none is held, so at most one batch is.
    pub(crate) fn hold_peer_messages(&self, messages: Vec<crate::executor::Input>) {
        let mut held = self.held_peer();
        held.extend(messages);
        assert!(held.len() <= crate::peer::PEER_BATCH_MAX, "a drain holds at most one batch");
    }

    /// A copy of the first held peer message, to offer to the session.
    pub(crate) fn first_held_peer_message(&self) -> Option<crate::executor::Input> {
        self.held_peer().front().cloned()
    }

    /// The first held peer message was taken (or can never be): it leaves the hold.
    pub(crate) fn release_first_held_peer_message(&self) {
        self.held_peer().pop_front();
    }

    /// The release signal, made on first use.
    pub(crate) fn released(&self) -> &watch::Sender<bool> {
        self.released.get_or_init(|| watch::channel(false).0)
    }

    pub(crate) async fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().await
    }

    /// The runtime is going away: takes the executor-effect sender out, closing the channel (a live loop takes the
    /// stop path), and ends the peer drain (a session without a live loop is then dropped with its waiters).
    pub(crate) fn close_effects(&self) {
        let taken = self.effects_tx.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take();
        drop(taken);
        self.runtime_gone.send_replace(true);
    }

    /// Resolves once the runtime that holds the session was dropped.
    pub(crate) async fn runtime_dropped(&self) {
        let mut gone = self.runtime_gone.subscribe();
        let _ = gone.wait_for(|gone| *gone).await;
    }

    fn send_effect(&self, effect: ExecutorEffect) {
        let guard = self.effects_tx.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        match guard.as_ref().map(|tx| tx.try_send(effect)) {
            None | Some(Ok(())) => {}
            Some(Err(error)) => tracing::warn!(session = %self.id, ?effect, %error, "executor effect not queued"),
        }
    }

    /// Applies `event` and performs everything that follows from it. `payload` is recorded for a newly admitted
    /// input; a waiter registered by the reply gets its channel here, before any effect could resolve it.
    ///
    /// Only store writes wait. The work that needs no store is done when this is called, not when the result is
    /// awaited: the event is applied and its effects performed up to the first store write. Only a drive that has a
    /// write left (or an operations change to save) goes on in a boxed future, so a drive without a store is a small,
    /// ready value.
    pub(crate) fn drive<'a>(
        self: &'a Arc<Self>,
        st: &'a mut State,
        event: SessionEvent,
        payload: Option<String>,
    ) -> Drive<'a> {
        self.drive_with(st, event, payload, Driven::default())
    }

    /// Expires the run in flight if its deadline passed (a Tick of its own, as [`Session::drive`] would before any
    /// event). A caller about to read the store and apply what it read calls this first, then applies it with
    /// [`Session::drive_as_read`]: the expiry's rows then land before the read, not after it.
    pub(crate) async fn expire_due(self: &Arc<Self>, st: &mut State) {
        if st.machine.expiry_due(self.clock.now()) {
            let _ = self.drive_one(st, SessionEvent::Tick, None, Driven::default()).await;
        }
    }

    /// As [`Session::drive`], without expiring a run whose deadline passed meanwhile: `event` carries what was read
    /// from the store under this lock, and must meet the session it was read from. (An expiry between the read and
    /// the event stopped the session and wrote its inputs' ends; a recover then applied the older image and
    /// requeued an input whose waiter had been told it ended: full seed 480481.) A run still in flight makes the
    /// machine refuse what needs it ended.
    pub(crate) fn drive_as_read<'a>(self: &'a Arc<Self>, st: &'a mut State, event: SessionEvent) -> Drive<'a> {
        self.drive_one(st, event, None, Driven::default())
    }

    /// As [`Session::drive`], also handing back what the effects produced for the caller (a run, a handle, store
    /// failures, operations answers) in `out`, which stays where the caller keeps it.
    pub(crate) fn drive_out<'a>(
        self: &'a Arc<Self>,
        st: &'a mut State,
        event: SessionEvent,
        payload: Option<String>,
        out: &'a mut Driven,
    ) -> Drive<'a> {
        self.drive_with(st, event, payload, out)
    }

    /// A drive whose outputs land in `out`, owned (moved into the rest of the drive if it has to wait) or borrowed.
    fn drive_with<'a, O>(
        self: &'a Arc<Self>,
        st: &'a mut State,
        event: SessionEvent,
        payload: Option<String>,
        out: O,
    ) -> Drive<'a>
    where
        O: std::borrow::BorrowMut<Driven> + Send + 'a,
    {
        if !matches!(event, SessionEvent::Tick) && st.machine.expiry_due(self.clock.now()) {
            // A run past its deadline is expired by a Tick of its own, with its writes' results known, before the
            // event is decided (specs/session.md#write-ahead-admission). Rare: only when no timer fired in time.
            return Drive::Pending(Box::pin(async move {
                let _ = self.drive_one(st, SessionEvent::Tick, None, Driven::default()).await;
                self.drive_one(st, event, payload, out).await
            }));
        }
        self.drive_one(st, event, payload, out)
    }

    /// One drive of `event`, whatever the clock says of the run in flight.
    fn drive_one<'a, O>(
        self: &'a Arc<Self>,
        st: &'a mut State,
        event: SessionEvent,
        payload: Option<String>,
        mut out: O,
    ) -> Drive<'a>
    where
        O: std::borrow::BorrowMut<Driven> + Send + 'a,
    {
        let name = event.name();
        // The span covers the work done in place; a store write carries it along (a span must not stay entered
        // across an await).
        let span = tracing::debug_span!("session", session = %self.id, event = name);
        let now = self.clock.now();
        let mut stack = EffectStack::take();
        let reply = match span.in_scope(|| self.begin(st, now, event, payload, out.borrow_mut(), &mut stack.0)) {
            Ok(reply) => reply,
            Err(refusal) => {
                stack.give_back();
                return Drive::Ready(Some(Err(refusal)));
            }
        };
        stack.0.reverse();
        let pass = Pass { now, name, span: &span };
        let pending = self.perform_until_write(st, pass, &mut stack.0, out.borrow_mut());
        if pending.is_none() {
            self.sweep_payloads(st);
            stack.give_back();
            self.settled(st);
            return Drive::Ready(Some(Ok(reply)));
        }
        Drive::Pending(Box::pin(async move {
            let pass = Pass { now, name, span: &span };
            self.perform_rest(st, pass, &mut stack.0, out.borrow_mut(), pending).await;
            stack.give_back();
            self.settled(st);
            Ok(reply)
        }))
    }

    /// Applies the event, leaving its effects in `effects`, and binds what its reply asks for.
    fn begin(
        self: &Arc<Self>,
        st: &mut State,
        now: Millis,
        event: SessionEvent,
        payload: Option<String>,
        out: &mut Driven,
        effects: &mut Vec<Effect>,
    ) -> Result<Reply, Refusal> {
        let reply = self.apply(st, now, event, effects)?;
        match &reply {
            Reply::Accepted { input, waiter, .. } => {
                if let Some(payload) = payload {
                    st.payloads.insert(*input, payload);
                }
                if let Some(waiter) = waiter {
                    out.handle = Some(self.bind_waiter(st, *input, *waiter));
                }
            }
            Reply::Deduplicated { existing, waiter: Some(waiter) } => {
                out.handle = Some(self.bind_waiter(st, *existing, *waiter));
            }
            _ => {}
        }
        Ok(reply)
    }

    /// Performs the effects on `stack` (the next one last), feeding each result back, depth first: the effects of a
    /// fed-back event go on top, so they are performed before the ones after the effect that caused them.
    pub(crate) async fn perform_all(
        self: &Arc<Self>,
        st: &mut State,
        now: Millis,
        stack: &mut Vec<Effect>,
        out: &mut Driven,
        name: &'static str,
        span: &tracing::Span,
    ) {
        let pass = Pass { now, name, span };
        let pending = self.perform_until_write(st, pass, stack, out);
        self.perform_rest(st, pass, stack, out, pending).await;
        self.settled(st);
    }

    /// Tells the tap, if any, that a drive ended, and the gauges what the session holds now.
    fn settled(&self, st: &mut State) {
        if let Some((tap, teller)) = &self.tap {
            tap.settled(*teller, &st.machine);
        }
        st.reported.settled(st.machine.ledger().active_len(), st.waiters.len());
    }

    /// The rest of a drive from the store write it stopped at (if any): each write, then the effects up to the next
    /// one; then the payloads are swept.
    async fn perform_rest(
        self: &Arc<Self>,
        st: &mut State,
        pass: Pass<'_>,
        stack: &mut Vec<Effect>,
        out: &mut Driven,
        mut pending: Option<PendingWrite>,
    ) {
        while let Some(write) = pending {
            let observed = self.write(st, write.write, out).instrument(pass.span.clone()).await;
            self.report(st, pass, stack, write.subject, observed);
            pending = self.perform_until_write(st, pass, stack, out);
        }
        self.sweep_payloads(st);
    }

    /// Performs effects from the top of `stack` until it is empty or an effect needs a store write, which is
    /// returned for the caller to await (see [`Session::perform_rest`]).
    fn perform_until_write(
        self: &Arc<Self>,
        st: &mut State,
        pass: Pass<'_>,
        stack: &mut Vec<Effect>,
        out: &mut Driven,
    ) -> Option<PendingWrite> {
        while let Some(effect) = stack.pop() {
            let subject = Subject::of(&effect);
            if let Some((tap, teller)) = &self.tap {
                tap.performing(*teller, &effect);
            }
            match pass.span.in_scope(|| self.perform(st, effect, out)) {
                Performed::Done(observed) => self.report(st, pass, stack, subject, observed),
                Performed::Write(write) => return Some(PendingWrite { write, subject }),
            }
        }
        None
    }

    /// Tells the machine what performing `subject` observed: the core's table names the event, if any, and its
    /// effects go on top of the stack. A refused report is a bug in the machine or in this driver.
    fn report(&self, st: &mut State, pass: Pass<'_>, stack: &mut Vec<Effect>, subject: Subject, observed: Observed) {
        if let Some((tap, teller)) = &self.tap {
            tap.observed(*teller, subject, &observed);
        }
        let Some(next) = feedback(subject, observed).expect("a performer reports only what its effect can observe")
        else {
            return;
        };
        let next_name = next.name();
        let base = stack.len();
        match pass.span.in_scope(|| self.apply(st, pass.now, next, stack)) {
            Ok(_) => stack[base..].reverse(),
            Err(refusal) => {
                tracing::error!(session = %self.id, after = pass.name, event = next_name, %refusal, "feedback refused");
                debug_assert!(
                    false,
                    "the machine refused the result of its own effect: {next_name} after {}: {refusal}",
                    pass.name
                );
            }
        }
    }

    /// Payloads of inputs that ended are dropped in one sweep once they are as many as the active inputs (plus a
    /// little), so a sweep's cost is spread over the inputs that ended since the last one instead of paid on every
    /// batch: the map holds at most about twice the active inputs.
    fn sweep_payloads(&self, st: &mut State) {
        let active = st.machine.ledger().active_len();
        if st.payloads.len() > 2 * active + 64 {
            let ledger = st.machine.ledger();
            st.payloads.retain(|id, _| ledger.get(*id).is_some());
        }
    }

    /// Applies one event at `now`. A drive reads the clock once: the events that follow from its effects happen at
    /// the same moment.
    fn apply(
        &self,
        st: &mut State,
        now: Millis,
        event: SessionEvent,
        effects: &mut Vec<Effect>,
    ) -> Result<Reply, Refusal> {
        let name = event.name();
        let base = effects.len();
        let tapped = self.tap.as_ref().map(|tap| (tap, event.clone()));
        let result = st.machine.apply_into(now, event, effects);
        if let Some(((tap, teller), event)) = tapped {
            tap.applied(*teller, &event, result.as_ref(), &effects[base..]);
        }
        match result {
            Ok(reply) => {
                tracing::trace!(
                    session = %self.id,
                    event = name,
                    effects = ?effects[base..].iter().map(burrow_core::session::effect_name).collect::<Vec<_>>(),
                    ?reply,
                    "applied"
                );
                Ok(reply)
            }
            Err(refusal) => {
                tracing::debug!(session = %self.id, event = name, %refusal, "refused");
                Err(refusal)
            }
        }
    }

    fn bind_waiter(&self, st: &mut State, input: InputId, waiter: WaiterId) -> CompletionHandle {
        let (tx, rx) = oneshot::channel();
        let previous = st.waiters.insert(waiter, tx);
        assert!(previous.is_none(), "waiter ids are never reused");
        CompletionHandle::new(self.id, input, rx)
    }

    /// Performs one effect in place and says what it observed, or hands back the store write it needs. It decides
    /// nothing: what the observation means is the core's ([`feedback`]).
    fn perform(self: &Arc<Self>, st: &mut State, effect: Effect, out: &mut Driven) -> Performed {
        tracing::trace!(session = %self.id, effect = burrow_core::session::effect_name(&effect), "perform");
        match effect {
            Effect::PersistInput(record) => return Performed::Write(StoreWrite::Input(record)),
            Effect::PersistBoundary { receipt, inputs, snapshot } => {
                return Performed::Write(StoreWrite::Boundary(BoundaryCommit { receipt, inputs, snapshot }));
            }
            Effect::PersistLifecycle { phase, registration, binding, marks, inputs, starts_run: _ } => {
                let lifecycle = PersistedLifecycle { phase, registration, binding, marks };
                return Performed::Write(StoreWrite::Lifecycle(LifecycleCommit { lifecycle, inputs }));
            }
            Effect::PersistOperations(registry) => return Performed::Write(StoreWrite::Operations(registry)),
            Effect::ResolveWaiters { input, waiters, resolution, observation } => {
                tracing::debug!(session = %self.id, %input, waiters = waiters.len(), class = ?resolution.as_ref().map(|o| o.class()), "resolve");
                let first_only = self.planted == Some(crate::planted::ShellDefect::FirstWaiterOnly);
                for (i, waiter) in waiters.into_iter().enumerate() {
                    let tx = st.waiters.remove(&waiter).expect("a waiter the machine resolves has its channel bound");
                    if first_only && i > 0 {
                        continue;
                    }
                    // A caller that dropped its handle no longer listens; that is its right.
                    let _ = tx.send(Ok(Resolution { outcome: resolution.clone(), observation }));
                }
            }
            Effect::StartRun(primitive) => {
                let inputs = primitive
                    .inputs
                    .iter()
                    .map(|(id, kind)| RunInput { id: *id, kind: kind.clone(), payload: self.payload_of(st, *id, kind) })
                    .collect();
                let cancel = Arc::new(Notify::new());
                st.run_cancel = Some((primitive.run, cancel.clone()));
                tracing::debug!(session = %self.id, run = %primitive.run, inputs = ?primitive.inputs.iter().map(|i| i.0).collect::<Vec<_>>(), "run starts");
                out.run = Some((RunRequest { session: self.id, run: primitive.run, inputs }, cancel));
            }
            Effect::CancelRun { run, reason } => {
                if let Some((_, cancel)) = st.run_cancel.take_if(|(current, _)| *current == run) {
                    tracing::info!(session = %self.id, %run, ?reason, "run cancelled");
                    cancel.notify_one();
                }
            }
            Effect::CancelAfterBoundary { run } => self.send_effect(ExecutorEffect::CancelAfterBoundary(run)),
            Effect::StopExecutor { reason } => {
                self.send_effect(ExecutorEffect::Stop(reason));
                self.wake.notify_one();
            }
            Effect::WakeLoop => {
                if self.planted != Some(crate::planted::ShellDefect::LostWake) {
                    self.wake.notify_one();
                }
            }
            Effect::RunNotice { run, inputs, elapsed_ms } => {
                tracing::warn!(session = %self.id, %run, ?inputs, elapsed_ms, "run is slow");
            }
            Effect::Registration(effect) => return Performed::Done(self.perform_registration(st, effect)),
            Effect::Drain(effect) => return Performed::Done(self.perform_drain(st, effect, out)),
            Effect::Operation(effect) => self.perform_operation(st, effect, out),
            Effect::Notify(notice) => {
                if let burrow_core::protocol::Notice::OwnershipMoved { owner } = &notice {
                    let _ = self.moved.set(*owner);
                }
                st.reported.notice(&notice, &st.machine);
                let dropped = self.planted == Some(crate::planted::ShellDefect::NoticeDroppedWhenBusy);
                if !(dropped && st.notices.unread()) {
                    st.notices.send(notice);
                }
            }
        }
        Performed::Done(Observed::Done)
    }

    /// The payload recorded for `input`. Only an input the machine made itself has none: the Continuation that
    /// resumes a session after a background operation, whose payload is empty by definition.
    fn payload_of(&self, st: &State, input: InputId, kind: &burrow_core::input::InputKind) -> String {
        match st.payloads.get(&input) {
            Some(payload) => payload.clone(),
            None => {
                let made_by_the_machine = *kind == burrow_core::input::InputKind::Continuation;
                if !made_by_the_machine {
                    tracing::error!(session = %self.id, %input, ?kind, "a caller's input has no payload");
                }
                debug_assert!(made_by_the_machine, "input {input} ({kind:?}) has no payload");
                String::new()
            }
        }
    }

    /// Performs a store write and says how it went; the caller's error, if it failed, is kept in `out`. Only reached
    /// with a store: a session without one asks for no write.
    async fn write(&self, st: &State, write: StoreWrite, out: &mut Driven) -> Observed {
        let store = self.store.as_ref().expect("store writes are asked for only with a store");
        let started = burrow_env::time::Instant::now();
        // specs/lease.md: every write names the session's epoch; in a fleet that is its lease's, and the store
        // refuses it once another host has claimed the session.
        let epoch = st.machine.binding().map_or(EpochId(0), |b| b.epoch);
        let result = match &write {
            StoreWrite::Input(record) => {
                let payload = st.payloads.get(&record.id).map_or("", String::as_str);
                store.persist_input(self.id, epoch, record, payload).await
            }
            StoreWrite::Boundary(commit) => store.commit_boundary(self.id, epoch, commit).await,
            StoreWrite::Lifecycle(commit) if commit.inputs.is_empty() && self.planted_skips(commit) => Ok(()),
            StoreWrite::Lifecycle(commit) => store.commit_lifecycle(self.id, epoch, commit).await,
            StoreWrite::Operations(registry) => store.save_operations(self.id, epoch, registry).await,
        };
        let name = match &write {
            StoreWrite::Input(_) => "input",
            StoreWrite::Boundary(_) => "boundary",
            StoreWrite::Lifecycle(_) => "lifecycle",
            StoreWrite::Operations(_) => "operations",
        };
        crate::metrics::store_write(name, started, result.is_ok());
        let Err(error) = result else { return Observed::Written };
        if self.planted == Some(crate::planted::ShellDefect::WriteErrorIgnored) {
            return Observed::Written;
        }
        tracing::warn!(session = %self.id, %error, "store write failed");
        let message = error.to_string();
        let failures = out.failures();
        let kept = match write {
            StoreWrite::Input(_) => &mut failures.persist_input,
            StoreWrite::Boundary(_) => &mut failures.boundary,
            StoreWrite::Lifecycle(_) => &mut failures.lifecycle,
            StoreWrite::Operations(_) => &mut failures.operations,
        };
        // spec: specs/session.md#ownership-moved: the store's refusal is reported as what it is; the core decides.
        let observed = match &error {
            crate::store::StoreError::Fenced(fenced) => Observed::Fenced { owner: fenced.owner },
            _ => {
                if matches!(write, StoreWrite::Boundary(_) | StoreWrite::Lifecycle(_)) {
                    self.commit_failed.store(true, std::sync::atomic::Ordering::Relaxed);
                }
                Observed::WriteFailed(message)
            }
        };
        *kept = Some(error);
        observed
    }

    /// Whether a planted mistake acknowledges this lifecycle commit without writing it.
    fn planted_skips(&self, commit: &crate::store::LifecycleCommit) -> bool {
        use burrow_core::phase::RuntimePhase;
        match self.planted {
            Some(crate::planted::ShellDefect::InputlessLifecycleSkipped) => true,
            Some(crate::planted::ShellDefect::ClosingPhaseSkipped) => matches!(
                commit.lifecycle.phase,
                RuntimePhase::Retired | RuntimePhase::Stopped | RuntimePhase::Destroyed
            ),
            _ => false,
        }
    }

    fn perform_registration(self: &Arc<Self>, st: &mut State, effect: RegistrationEffect) -> Observed {
        match effect {
            RegistrationEffect::BindingIssued { .. }
            | RegistrationEffect::CloseAdmission
            | RegistrationEffect::ResolveAllWaiters
            | RegistrationEffect::ForceResolveWaiters
            | RegistrationEffect::CommitReady => {}
            RegistrationEffect::SpawnLoop { binding } => {
                let Some(executor) = st.attaching.take() else {
                    return Observed::Missing;
                };
                let (tx, rx) = effect_queue();
                *self.effects_tx.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(tx);
                let (exited_tx, exited) = watch::channel(false);
                let handle = (self.starters.run_loop)(self.clone(), executor, binding.generation, rx, exited_tx);
                tracing::info!(session = %self.id, generation = binding.generation.0, "loop spawned");
                st.loop_slot = Some(LoopSlot { generation: binding.generation, handle, exited });
                return Observed::Spawned;
            }
            RegistrationEffect::WakeLoop { .. } | RegistrationEffect::StopLoop { .. } => self.wake.notify_one(),
            RegistrationEffect::StopDrain | RegistrationEffect::AbortDrain => {
                if let Some(drain) = st.drain.take() {
                    drain.handle.abort();
                }
            }
            RegistrationEffect::ArmGraceTimer { deadline } => {
                let session = self.clone();
                let at = self.clock.instant(deadline);
                drop(task::spawn(async move {
                    burrow_env::time::sleep_until(at).await;
                    session.tick().await;
                }));
            }
            RegistrationEffect::AbortLoop { generation } => {
                if let Some(slot) = st.loop_slot.take_if(|slot| slot.generation == generation) {
                    tracing::warn!(session = %self.id, generation = generation.0, "grace expired; loop aborted");
                    slot.handle.abort();
                }
            }
            RegistrationEffect::Released { binding } => {
                // The machine asked for the Unregistered row first; this only tells the unregister's caller.
                tracing::info!(session = %self.id, %binding, "unregistered");
                self.released().send_replace(true);
            }
        }
        Observed::Done
    }

    fn perform_drain(self: &Arc<Self>, st: &mut State, effect: DrainEffect, out: &mut Driven) -> Observed {
        match effect {
            DrainEffect::SpawnDrain { mode, incarnation } => return self.spawn_drain(st, mode, incarnation),
            DrainEffect::AbortDrain { incarnation } => {
                if let Some(drain) = st.drain.take_if(|d| d.incarnation == incarnation) {
                    drain.handle.abort();
                }
            }
            DrainEffect::ScheduleRespawn => {
                let session = self.clone();
                drop(task::spawn(async move {
                    burrow_env::time::sleep(crate::peer::RESPAWN_DELAY).await;
                    session.drain_event(DrainEvent::Respawn).await;
                }));
            }
            DrainEffect::Park | DrainEffect::ContinueDraining => out.drain_answer = Some(effect),
            DrainEffect::WakeDrain { incarnation } => {
                if let Some(drain) = st.drain.as_ref().filter(|d| d.incarnation == incarnation) {
                    drain.wake.notify_one();
                }
            }
        }
        Observed::Done
    }

    fn spawn_drain(self: &Arc<Self>, st: &mut State, mode: DrainMode, incarnation: DrainIncarnation) -> Observed {
        if let Some(old) = st.drain.take() {
            old.handle.abort();
        }
        if *self.runtime_gone.borrow() {
            tracing::debug!(session = %self.id, "the runtime was dropped; no drain starts");
            return Observed::Missing;
        }
        let source = self.peer.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
        let Some(source) = source else {
            tracing::debug!(session = %self.id, "no peer source; the drain cannot start");
            return Observed::Missing;
        };
        let wake = Arc::new(Notify::new());
        let handle = (self.starters.drain)(self.clone(), source, mode, incarnation, wake.clone());
        st.drain = Some(Box::new(DrainSlot { incarnation, handle, wake }));
        Observed::Spawned
    }

    fn perform_operation(&self, st: &mut State, effect: OpEffect, out: &mut Driven) {
        match effect {
            OpEffect::Registered { op } => out.registered = Some(op),
            OpEffect::WatcherRegistered { op, watcher } => {
                let (tx, rx) = oneshot::channel();
                st.op_channels().watchers.insert(watcher, tx);
                out.watcher = Some((op, rx));
            }
            OpEffect::ResolveWatchers { watchers, outcome, .. } => {
                let channels = &mut st.op_channels().watchers;
                let mut senders = watchers.iter().filter_map(|watcher| channels.remove(watcher)).peekable();
                let mut outcome = Some(outcome);
                while let Some(tx) = senders.next() {
                    // The last one takes the outcome itself; a dropped watcher no longer listens.
                    let value = if senders.peek().is_some() { outcome.clone() } else { outcome.take() };
                    let _ = tx.send(value.expect("taken only by the last sender"));
                }
            }
            OpEffect::WaitStarted { wait, .. } => {
                let (tx, rx) = oneshot::channel();
                st.op_channels().waits.insert(wait, tx);
                out.wait = Some((wait, rx));
            }
            OpEffect::ResolveWaitAll { wait, outcomes } => {
                if let Some(tx) = st.op_channels().waits.remove(&wait) {
                    let _ = tx.send(outcomes);
                }
            }
            OpEffect::WaitCancelled { wait } => {
                st.op_channels().waits.remove(&wait);
            }
            OpEffect::OperationEnded { op, seq, .. } => {
                tracing::debug!(session = %self.id, %op, seq = seq.0, "operation ended");
            }
            OpEffect::Collected { operations } => out.collected = Some(operations),
            OpEffect::PeerExposed { .. } | OpEffect::Evicted { .. } | OpEffect::FeedAcknowledged { .. } => {}
        }
    }

    // ----- entry points used by the loop, timers and the drain -------------------------------------------

    /// Applies a Tick (deadlines, notices, grace).
    pub(crate) async fn tick(self: &Arc<Self>) {
        let mut st = self.lock().await;
        let _ = self.drive(&mut st, SessionEvent::Tick, None).await;
    }

    pub(crate) async fn drain_event(self: &Arc<Self>, event: DrainEvent) -> Option<DrainEffect> {
        let mut st = self.lock().await;
        let mut out = Driven::default();
        let driven = self.drive_out(&mut st, SessionEvent::Drain(event), None, &mut out).await;
        driven.ok().and(out.drain_answer)
    }

    /// The registration phase is Active for `generation`: the loop of that generation is the live one.
    pub(crate) fn is_live_loop(st: &State, generation: Generation) -> bool {
        st.machine.registration().phase() == RegistrationPhase::Active { generation }
    }
}

/// `event` as the machine should see it for a caller that holds `binding`, if it names one: wrapped, so the machine
/// refuses it (changing nothing) unless the binding is current, in the same transition that acts.
pub(crate) fn fenced(binding: Option<burrow_core::ids::Binding>, event: SessionEvent) -> SessionEvent {
    match binding {
        Some(binding) => SessionEvent::Fenced { binding, event: Box::new(event) },
        None => event,
    }
}

/// Refuses a payload above [`PAYLOAD_BYTES_MAX`] before anything is admitted.
pub(crate) fn check_payload(input: &crate::executor::Input) -> Result<(), crate::RuntimeError> {
    let len = input.payload.len();
    if len > PAYLOAD_BYTES_MAX {
        return Err(crate::RuntimeError::PayloadTooLarge { len, max: PAYLOAD_BYTES_MAX });
    }
    Ok(())
}

impl Session {
    /// spec: specs/input.md#recall: before an admission of `spec`, reads the store's row for its key when the core
    /// asks for it, and tells the core what was read. Under the session's lock, so no admission comes between.
    pub(crate) async fn recall_key(
        self: &Arc<Self>,
        st: &mut State,
        spec: &burrow_core::input::InputSpec,
        call: &'static str,
    ) -> Result<(), crate::RuntimeError> {
        let (Some(key), Some(store)) = (st.machine.key_to_recall(spec), self.store.as_ref()) else { return Ok(()) };
        let found = store
            .input_by_key(self.id, key)
            .await
            .map_err(|error| crate::RuntimeError::Store { session: self.id, error })?;
        let event = SessionEvent::KeyRecalled { key: key.to_owned(), found };
        self.drive(st, event, None).await.map_err(|refusal| crate::RuntimeError::refused(self.id, call, refusal))?;
        Ok(())
    }

    /// Admits one input (the accept paths of SPEC 3 and the peer drain).
    pub(crate) async fn accept(
        self: &Arc<Self>,
        input: crate::executor::Input,
        want_handle: bool,
        wake: bool,
        fence: Option<burrow_core::ids::Binding>,
    ) -> Result<crate::completion::AcceptOutcome, crate::RuntimeError> {
        check_payload(&input)?;
        let session = self.clone();
        self.finish_unattended(async move { session.accept_now(input, want_handle, wake, fence).await }).await
    }

    /// What the core says of a run about to reach an executor (`burrow_core::lease::before_run`), told whether this
    /// host still holds the session's lease (always outside a fleet): `None` to go on, or the event that stops the
    /// session instead.
    pub(crate) fn before_run(&self) -> Option<SessionEvent> {
        let held = self.planted == Some(crate::planted::ShellDefect::LeaseIgnored)
            || self.lease_held.get().is_none_or(|held| held());
        burrow_core::lease::before_run(held)
    }

    /// The lease ended before a run was handed out: the session takes `lost` (it stops as moved: the run is
    /// cancelled, its inputs stay for the next owner) and this host forgets it.
    pub(crate) async fn lease_ended(self: &Arc<Self>, st: &mut State, lost: SessionEvent) {
        if let Err(refusal) = self.drive(st, lost, None).await {
            tracing::error!(session = %self.id, %refusal, "the session refused OwnershipLost");
        }
        let _ = self.moved.set(None);
    }

    /// Runs `drive`, an admission's, so that its caller cannot cut it short. With a store its durable write waits,
    /// and the machine takes nothing else until it hears the write's result: the drive runs as its own task, so a
    /// caller that stops waiting (a timeout around the call) does not leave the session waiting for a result nobody
    /// reports (specs/session.md#write-ahead-admission). Without a store the drive never waits once it holds the
    /// lock, so it runs in place.
    pub(crate) async fn finish_unattended<T: Send + 'static>(
        &self,
        drive: impl std::future::Future<Output = T> + Send + 'static,
    ) -> T {
        if self.store.is_none() {
            return drive.await;
        }
        match task::spawn(drive).await {
            Ok(result) => result,
            Err(error) => std::panic::resume_unwind(
                error.try_into_panic().unwrap_or_else(|_| Box::new("an admission's drive was cancelled")),
            ),
        }
    }

    async fn accept_now(
        self: &Arc<Self>,
        input: crate::executor::Input,
        want_handle: bool,
        wake: bool,
        fence: Option<burrow_core::ids::Binding>,
    ) -> Result<crate::completion::AcceptOutcome, crate::RuntimeError> {
        use crate::completion::AcceptOutcome;
        let mut st = self.lock().await;
        self.recall_key(&mut st, &input.spec, "accept").await?;
        let event = SessionEvent::Accept { spec: input.spec, waiter: want_handle, wake };
        let event = fenced(fence, event);
        let mut out = Driven::default();
        let reply = self
            .drive_out(&mut st, event, Some(input.payload), &mut out)
            .await
            .map_err(|refusal| crate::RuntimeError::refused(self.id, "accept", refusal))?;
        if let Some(error) = out.persist_input_failed() {
            return Err(crate::RuntimeError::store(self.id, error));
        }
        match reply {
            Reply::Accepted { input, .. } => {
                tracing::debug!(session = %self.id, %input, "accepted");
                Ok(AcceptOutcome::Accepted { input, handle: out.handle })
            }
            Reply::Deduplicated { existing, .. } => {
                tracing::debug!(session = %self.id, input = %existing, "deduplicated");
                Ok(AcceptOutcome::Deduplicated { existing, handle: out.handle })
            }
            other => unreachable!("Accept answers Accepted or Deduplicated, not {other:?}"),
        }
    }
}
