//! The full mode (under `--cfg madsim`) and the tokio mode (a normal build): the real `burrow::Runtime` driven by a
//! [`Scenario`].
//!
//! The driver plays a process: it prepares the sessions, attaches a [`SimExecutor`] to each, then starts every step
//! of the scenario as its own task (so calls overlap the loop, runs, store writes and each other), waits the step's
//! gap, and checks SPEC 6 on every session machine (`Runtime::check_invariants`). A crash aborts every task of the
//! process, loses the store writes in flight, and starts a new process over the same store. After the last step
//! comes the liveness phase: faults off, the executor healthy, every session re-attached and woken.
//!
//! The oracles watch what callers and the executor saw, not the runtime's own bookkeeping:
//! - every completion handle resolves at most once, and (unless its caller gave up, or the process that held it
//!   died) by the end of the liveness phase; a success outcome means the input is Consumed;
//! - every durable input whose accept was acknowledged is in the store (checked at each crash and at the end) and
//!   known to the restarted runtime;
//! - every committed receipt names exactly the inputs the executor was handed for that run and reported success
//!   for; no input is in two receipts, and no input is handed to a run after the run that committed it;
//! - at each crash the store's lifecycle row keeps a standing (open, retired, stopped, destroyed) that an
//!   acknowledged lifecycle write, or one left unanswered by the crash, recorded; its receipts' sequence numbers
//!   strictly increase; its run mark covers every run the executor was handed (a restart never reuses a run id);
//! - watchers of ended operations have resolved, once, with the operation's outcome;
//! - no call hangs past a bound; at the end no session with an executor keeps queued work.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Once};

use burrow::ops::OperationWatcher;
use burrow::peer::{Drained, PeerError, PeerSource};
use burrow::store::SimStoreConfig;
use burrow::store::{BoundaryCommit, LifecycleCommit, SessionImage};
use burrow::{
    AcceptOutcome, BoxFuture, CompletionError, CompletionHandle, Durability, Executor, ExecutorError, ExecutorOutput,
    Input, InputId, InputKind, InputState, OperationsHandle, Outcome, RunId, RunRequest, Runtime, RuntimeConfig,
    SessionConfig, SessionId, SimStore, StopReason, Store, StoreError, Submitted, WaitFailure,
};
use burrow_core::ids::EpochId;
use burrow_core::input::InputRecord;
use burrow_core::operations::{CompletionSeq, OpOutcome, OpResult, OperationKind, OperationSpec, OperationsRegistry};
use burrow_core::phase::RuntimePhase;
use burrow_env::sync::Notify;
use burrow_env::task::{JoinHandle, spawn};
use burrow_env::time::{Duration, Instant, sleep, timeout};
use burrow_spec::{OpObservation, Standing};

use crate::Mode;
use crate::conform::{self, Witness, Witnessed};
use crate::scenario::{Act, Aim, AimAt, Call, Kind, OpCall, Scenario, Step, Teardown, Wait};
use crate::trace::{Line, Run, Verdict};

/// A deliberately broken collaborator, to show the oracles catch what they are meant to (teeth tests).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FullDefect {
    /// The store acknowledges every third input write and drops it.
    DroppingStore,
    /// The executor reports success for an input it was not handed.
    LyingExecutor,
    /// The caller-side wrapper swallows the resolution of the second completion handle.
    DroppedResolution,
}

impl FullDefect {
    /// Every defect.
    pub const ALL: [FullDefect; 3] =
        [FullDefect::DroppingStore, FullDefect::LyingExecutor, FullDefect::DroppedResolution];

    /// The command-line name.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            FullDefect::DroppingStore => "dropping-store",
            FullDefect::LyingExecutor => "lying-executor",
            FullDefect::DroppedResolution => "dropped-resolution",
        }
    }

    /// Parses a command-line name.
    #[must_use]
    pub fn parse(name: &str) -> Option<FullDefect> {
        FullDefect::ALL.into_iter().find(|d| d.name() == name)
    }
}

/// Whether `BURROW_SIM_ECHO` asks for the timeline on stderr as it happens: for a run that dies before its trace
/// is written (the simulator finding that every task blocks for good, say).
fn echo() -> bool {
    static ECHO: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ECHO.get_or_init(|| std::env::var_os("BURROW_SIM_ECHO").is_some())
}

/// The mode this build's [`run_full`] is: full under madsim, tokio otherwise.
#[must_use]
pub fn this_mode() -> Mode {
    if burrow_env::runtime::SIMULATED { Mode::Full } else { Mode::Tokio }
}

/// One tick of scenario time: a millisecond under madsim (virtual, free), a tenth of one under real tokio.
fn tick() -> Duration {
    if burrow_env::runtime::SIMULATED { Duration::from_millis(1) } else { Duration::from_micros(100) }
}

/// The bound on any one call, and on the liveness phase: 60 s of simulated time (6 s under real tokio).
fn call_bound() -> Duration {
    tick() * 60_000
}

const PANIC_TEXT: &str = "simulated executor panic";

/// Runs the scenario of `seed` in this build's mode.
#[must_use]
pub fn run_seed(seed: u64, defect: Option<FullDefect>) -> Run {
    run_full(&Scenario::generate(seed), defect)
}

/// Runs `scenario` in this build's mode on a fresh runtime (seeded by the scenario under madsim).
///
/// # Panics
/// If the operating system refuses the runtime's threads.
#[must_use]
pub fn run_full(scenario: &Scenario, defect: Option<FullDefect>) -> Run {
    run_full_configured(scenario, defect, |_| {})
}

/// As [`run_full`], with `configure` applied to the settings of every process's runtime (the teeth tests plant the
/// shell's own mistakes this way).
///
/// # Panics
/// If the operating system refuses the runtime's threads.
#[must_use]
pub fn run_full_configured(scenario: &Scenario, defect: Option<FullDefect>, configure: fn(&mut RuntimeConfig)) -> Run {
    quiet_simulated_panics();
    let builder = if burrow_env::runtime::SIMULATED {
        burrow_env::runtime::Builder::current_thread().seed(scenario.seed)
    } else {
        burrow_env::runtime::Builder::multi_thread(2)
    };
    let runtime = builder.build().expect("a runtime for the simulation");
    let scenario = scenario.clone();
    // Isolated: a task the seed leaves behind (a drain of a crashed process, a loop parked at the end) is ended with
    // it instead of keeping its session alive for the rest of a sweep.
    runtime.block_on(burrow_env::runtime::isolated(async move { Driver::new(scenario, defect, configure).run().await }))
}

/// The executor's panics are part of the scenario; the default hook would print each one.
fn quiet_simulated_panics() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !crate::panic_text(info.payload()).is_some_and(|text| text.contains(PANIC_TEXT)) {
                previous(info);
            }
        }));
    });
}

// ----- what callers and the executor saw ---------------------------------------------------------------------

#[derive(Debug)]
struct HandleRec {
    process: u32,
    session: u8,
    input: InputId,
    resolutions: u32,
    outcome: Option<String>,
    success: bool,
    gave_up: bool,
    swallowed: bool,
}

#[derive(Debug)]
struct WatcherRec {
    process: u32,
    session: u8,
    op: burrow::OperationId,
    resolutions: u32,
    outcome: Option<Option<OpOutcome>>,
}

#[derive(Default)]
pub(crate) struct Seen {
    trace: Vec<Line>,
    events: u64,
    pub(crate) process: u32,
    handles: Vec<HandleRec>,
    watchers: Vec<WatcherRec>,
    /// Durable inputs whose accept was acknowledged, by session.
    acked: BTreeSet<(u8, InputId)>,
    /// Inputs handed to each run (session, run), per hand-over.
    handed: BTreeMap<(u8, RunId), Vec<BTreeSet<InputId>>>,
    /// Inputs the executor reported success for, per (session, run).
    applied: BTreeMap<(u8, RunId), Vec<BTreeSet<InputId>>>,
    ops: BTreeMap<u8, Vec<burrow::OperationId>>,
    /// Each session's feed consumer: the position it has consumed through (the cursor a prepare reports after a
    /// restart, then each acknowledgement taken).
    cursors: BTreeMap<u8, u64>,
    /// The process whose runtime was dropped, if one was: callers of a session without a live loop see their
    /// channel close.
    dropped: Option<u32>,
    inbox: BTreeMap<u8, VecDeque<Input>>,
    violation: Option<String>,
    handles_issued: u32,
    /// Callers awaiting completion handles or watchers: they die with their process.
    waiters: Vec<(String, JoinHandle<()>)>,
    /// Payloads given to publish_event so far (each a new number).
    published: u64,
    /// Each process's subscribers of its sessions' notices: they end with their session, or die with their
    /// process; nothing waits for them.
    subscribers: Vec<JoinHandle<()>>,
    /// What the sessions' taps told, and each session's specification.
    pub(crate) witnessed: Witnessed,
}

impl Seen {
    /// Records a broken rule at `t` (the first one is the verdict).
    pub(crate) fn violate(&mut self, t: u64, what: String) {
        self.events += 1;
        self.trace.push(Line { t, what: format!("VIOLATION {what}").into() });
        if self.violation.is_none() {
            self.violation = Some(what);
        }
    }
}

/// The shared record of one run; cheap to clone into tasks.
#[derive(Clone)]
pub(crate) struct Sim {
    seen: Arc<Mutex<Seen>>,
    start: Instant,
    healthy: Arc<AtomicBool>,
    notify: Arc<BTreeMap<u8, Arc<Notify>>>,
    defect: Option<FullDefect>,
    teardown: Teardown,
    /// One consumer of each session's completion feed at a time, as a session consumes it.
    consumers: Arc<BTreeMap<u8, Arc<burrow_env::sync::Mutex<()>>>>,
}

impl Sim {
    pub(crate) fn seen(&self) -> MutexGuard<'_, Seen> {
        self.seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Milliseconds since the run started (simulated under madsim).
    pub(crate) fn now(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }

    fn log(&self, what: impl Into<String>) {
        let t = self.now();
        let what: String = what.into();
        if echo() {
            eprintln!("{t:>9} ms | {what}");
        }
        let mut seen = self.seen();
        seen.events += 1;
        seen.trace.push(Line { t, what: what.into() });
    }

    fn violation(&self, what: impl Into<String>) {
        let t = self.now();
        self.seen().violate(t, what.into());
    }

    fn process(&self) -> u32 {
        self.seen().process
    }
}

fn sid(session: u8) -> SessionId {
    SessionId(u64::from(session))
}

fn ids(set: &BTreeSet<InputId>) -> String {
    set.iter().map(|i| i.to_string()).collect::<Vec<_>>().join(",")
}

// ----- the executor, the peer inbox and the broken store -----------------------------------------------------------

/// The executor of one session in one process: does what the leading input's payload says, and records what it
/// was handed and what it reported success for.
struct SimExecutor {
    sim: Sim,
    session: u8,
    process: u32,
}

fn act_of(payload: &str) -> Act {
    let number = |s: &str| s.trim_end_matches(')').parse().unwrap_or(0);
    match payload {
        "Callback" => Act::Callback,
        "Fail" => Act::Fail,
        "Panic" => Act::Panic,
        "Block" => Act::Block,
        p if p.starts_with("NoResult(") => Act::NoResult(number(&p[9..])),
        p if p.starts_with("Ok(") => Act::Ok(number(&p[3..])),
        _ => Act::Ok(0),
    }
}

/// A callback turn's output: one call, or a batch of two.
fn callback_output(batch: bool) -> ExecutorOutput {
    if !batch {
        return ExecutorOutput::callback("tool", "{}");
    }
    let call = |tool: &str| burrow::PendingCallback { tool: tool.into(), args: "{}".into() };
    ExecutorOutput::callbacks(vec![call("tool"), call("other")]).expect("two calls fit the bound")
}

/// What the executor's answer to `act` reports, in the specification's terms.
fn report_said(act: Act, batch: bool) -> burrow_spec::Report {
    match act {
        Act::Ok(_) | Act::Block => burrow_spec::Report::Result,
        Act::NoResult(_) => burrow_spec::Report::NoResult,
        Act::Callback if batch => burrow_spec::Report::CallbackBatch,
        Act::Callback => burrow_spec::Report::Callback,
        Act::Fail => burrow_spec::Report::Failed,
        Act::Panic => burrow_spec::Report::Panicked,
    }
}

/// Performs `act` for a run of `inputs` and records it; shared by the executor and accept_and_run bodies.
async fn perform(
    sim: &Sim,
    session: u8,
    process: u32,
    run: RunId,
    inputs: &[InputId],
    act: Act,
) -> Result<ExecutorOutput, ExecutorError> {
    let given: BTreeSet<InputId> = inputs.iter().copied().collect();
    let stale = {
        let mut seen = sim.seen();
        if seen.process == process {
            seen.handed.entry((session, run)).or_default().push(given.clone());
            let started = seen.witnessed.runs.get(&(session, run)).cloned();
            if started.as_deref() != Some(inputs) {
                let t = sim.now();
                seen.violate(
                    t,
                    format!(
                        "s{session} the executor was handed {}, the session started {:?}",
                        conform::run_text(run, inputs),
                        started.map(|started| conform::run_text(run, &started))
                    ),
                );
            }
        }
        seen.process != process
    };
    if stale {
        // A run of a process that crashed: it never finishes.
        std::future::pending::<()>().await;
    }
    sim.log(format!("s{session} run {run} [{}] handed to the executor", ids(&given)));
    let act = if sim.healthy.load(Ordering::SeqCst) { Act::Ok(0) } else { act };
    // A callback turn of an even run leaves two calls pending at once (no draw is spent on it: seeds stay as drawn).
    let (batch, said) = (run.0 % 2 == 0, report_said(act, run.0 % 2 == 0));
    let output = match act {
        Act::Ok(n) => {
            sleep(tick() * n as u32).await;
            Ok(ExecutorOutput::result(format!("done {run}")))
        }
        Act::NoResult(n) => {
            sleep(tick() * n as u32).await;
            Ok(ExecutorOutput::no_result())
        }
        Act::Callback => Ok(callback_output(batch)),
        Act::Fail => Err(ExecutorError::new("simulated failure")),
        Act::Panic => {
            note_said(sim, session, process, run, said);
            panic!("{PANIC_TEXT}")
        }
        Act::Block => {
            sleep(Duration::from_secs(3_600)).await;
            Ok(ExecutorOutput::result("late"))
        }
    };
    note_said(sim, session, process, run, said);
    if output.is_ok() {
        let mut claimed = given.clone();
        if sim.defect == Some(FullDefect::LyingExecutor) {
            claimed.insert(InputId(given.iter().next_back().map_or(0, |i| i.0) + 1_000));
        }
        let mut seen = sim.seen();
        if seen.process == process {
            seen.applied.entry((session, run)).or_default().push(claimed);
        }
    }
    sim.log(format!("s{session} run {run} [{}] {act:?} -> {}", ids(&given), if output.is_ok() { "ok" } else { "err" }));
    output
}

/// Records what the executor returns for `run`, as it returns it (for the check of what the session recorded).
fn note_said(sim: &Sim, session: u8, process: u32, run: RunId, said: burrow_spec::Report) {
    let mut seen = sim.seen();
    if seen.process == process {
        seen.witnessed.executor_said.insert((session, run), said);
    }
}

impl Executor for SimExecutor {
    fn apply(&self, request: RunRequest) -> BoxFuture<'_, Result<ExecutorOutput, ExecutorError>> {
        Box::pin(async move {
            let inputs: Vec<InputId> = request.inputs.iter().map(|i| i.id).collect();
            let act = request.inputs.first().map_or(Act::Ok(0), |i| act_of(&i.payload));
            perform(&self.sim, self.session, self.process, request.run, &inputs, act).await
        })
    }

    fn stop(&self, reason: StopReason) -> BoxFuture<'_, ()> {
        self.sim.log(format!("s{} executor asked to stop ({reason:?})", self.session));
        Box::pin(self.teardown(Teardown::StopHangs))
    }

    fn cleanup_after_stop(&self) -> BoxFuture<'_, ()> {
        self.sim.log(format!("s{} executor asked to clean up", self.session));
        Box::pin(self.teardown(Teardown::CleanupHangs))
    }
}

impl SimExecutor {
    /// The scenario's answer to a stop or a cleanup: `hangs` is the teardown under which this one never returns.
    async fn teardown(&self, hangs: Teardown) {
        match self.sim.teardown {
            Teardown::Slow(ticks) => sleep(tick() * ticks as u32).await,
            teardown if teardown == hangs => std::future::pending::<()>().await,
            _ => {}
        }
    }
}

/// A session's peer inbox as one process sees it; a crashed process's source is dismissed.
struct SimPeer {
    sim: Sim,
    session: u8,
    process: u32,
}

impl PeerSource for SimPeer {
    fn drain(&self, max: usize) -> BoxFuture<'_, Result<Drained, PeerError>> {
        Box::pin(async move {
            let mut seen = self.sim.seen();
            if seen.process != self.process {
                return Ok(Drained { messages: Vec::new(), dismissed: true });
            }
            let inbox = seen.inbox.entry(self.session).or_default();
            let take = inbox.len().min(max);
            Ok(Drained { messages: inbox.drain(..take).collect(), dismissed: false })
        })
    }

    fn notified(&self) -> BoxFuture<'_, ()> {
        let notify = self.sim.notify.get(&self.session).cloned();
        Box::pin(async move {
            match notify {
                Some(notify) => notify.notified().await,
                None => std::future::pending().await,
            }
        })
    }
}

/// Where the aimed crash stands: the writes counted so far (across processes) and whether the aim is still armed.
struct AimState {
    aim: Option<Aim>,
    writes: AtomicU32,
    armed: AtomicBool,
    /// The aimed write was chosen (it may not have been reached yet).
    chosen: AtomicBool,
    /// The aimed write was reached; the driver crashes the process at its next chance.
    reached: AtomicBool,
    /// The aimed crash happened.
    done: AtomicBool,
    fired: Notify,
}

/// The store each process sees: the simulated store, through the scenario's aimed crash (at one write of the aimed
/// kind, the write is held, never acknowledged after landing it when the aim says so, and the driver is told to
/// crash) and, for the DroppingStore defect, acknowledging every third input write without making it.
struct DriverStore {
    inner: SimStore,
    aim: Option<Arc<AimState>>,
    /// Input writes so far, when the DroppingStore defect is on.
    dropping: Option<AtomicU64>,
}

impl DriverStore {
    fn aimed<'a>(
        &'a self,
        at: AimAt,
        write: BoxFuture<'a, Result<(), StoreError>>,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        let Some(state) = self.aim.as_ref().filter(|state| state.aim.is_some_and(|aim| aim.at == at)) else {
            return write;
        };
        let n = state.writes.fetch_add(1, Ordering::SeqCst) + 1;
        let Some(aim) = state.aim.filter(|aim| aim.write == n && state.armed.swap(false, Ordering::SeqCst)) else {
            return write;
        };
        state.chosen.store(true, Ordering::SeqCst);
        Box::pin(async move {
            if aim.durable {
                let _ = write.await;
            } else {
                drop(write);
            }
            state.reached.store(true, Ordering::SeqCst);
            state.fired.notify_one();
            // The process dies before the writer hears back.
            std::future::pending().await
        })
    }
}

impl Store for DriverStore {
    fn persist_input<'a>(
        &'a self,
        s: SessionId,
        e: EpochId,
        i: &'a InputRecord,
        p: &'a str,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        let dropped = self.dropping.as_ref().is_some_and(|writes| writes.fetch_add(1, Ordering::SeqCst) % 3 == 2);
        let write = if dropped { Box::pin(async { Ok(()) }) } else { self.inner.persist_input(s, e, i, p) };
        self.aimed(AimAt::InputOrBoundary, write)
    }
    fn commit_boundary<'a>(
        &'a self,
        s: SessionId,
        e: EpochId,
        c: &'a BoundaryCommit,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        self.aimed(AimAt::InputOrBoundary, self.inner.commit_boundary(s, e, c))
    }
    // A crash that leaves a lifecycle row's fate unknown is followed by the specification both ways
    // (burrow_spec::SessionSpecs).
    fn commit_lifecycle<'a>(
        &'a self,
        s: SessionId,
        e: EpochId,
        c: &'a LifecycleCommit,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        self.aimed(AimAt::Lifecycle, self.inner.commit_lifecycle(s, e, c))
    }
    fn save_operations<'a>(
        &'a self,
        s: SessionId,
        e: EpochId,
        o: &'a OperationsRegistry,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        self.aimed(AimAt::Operations, self.inner.save_operations(s, e, o))
    }
    fn load(&self, s: SessionId) -> BoxFuture<'_, Result<Option<SessionImage>, StoreError>> {
        self.inner.load(s)
    }
    fn input_by_key<'a>(
        &'a self,
        s: SessionId,
        key: &'a str,
    ) -> BoxFuture<'a, Result<Option<InputRecord>, StoreError>> {
        self.inner.input_by_key(s, key)
    }
    fn load_boundary_receipt(
        &self,
        s: SessionId,
        r: RunId,
    ) -> BoxFuture<'_, Result<Option<burrow::BoundaryReceipt>, StoreError>> {
        self.inner.load_boundary_receipt(s, r)
    }
    fn sessions(&self) -> BoxFuture<'_, Result<Vec<SessionId>, StoreError>> {
        self.inner.sessions()
    }
}

// ----- the driver ---------------------------------------------------------------------------------------------

struct Driver {
    scenario: Scenario,
    sim: Sim,
    store: SimStore,
    runtime: Runtime,
    tasks: Vec<(String, JoinHandle<()>)>,
    configure: fn(&mut RuntimeConfig),
    aim: Arc<AimState>,
}

impl Driver {
    fn new(scenario: Scenario, defect: Option<FullDefect>, configure: fn(&mut RuntimeConfig)) -> Driver {
        let notify = (1..=scenario.sessions).map(|s| (s, Arc::new(Notify::new()))).collect();
        let spec = burrow_spec::SpecConfig {
            max_attempts: scenario.max_attempts,
            store: true,
            bounds: burrow_model::observe::bounds(),
        };
        let seen = Seen { witnessed: Witnessed::new(scenario.sessions, spec), ..Seen::default() };
        let sim = Sim {
            seen: Arc::new(Mutex::new(seen)),
            start: Instant::now(),
            healthy: Arc::new(AtomicBool::new(false)),
            notify: Arc::new(notify),
            defect,
            teardown: scenario.teardown,
            consumers: Arc::new(
                (1..=scenario.sessions).map(|s| (s, Arc::new(burrow_env::sync::Mutex::new(())))).collect(),
            ),
        };
        let latency = tick() * scenario.store_latency as u32;
        let store = SimStore::new(SimStoreConfig { seed: scenario.seed, write_failure: 0.0, latency });
        let runtime = Runtime::ephemeral();
        let aim = Arc::new(AimState {
            aim: scenario.aim,
            writes: AtomicU32::new(0),
            // Armed once the first process has started: the driver's own prepares must not be held.
            armed: AtomicBool::new(false),
            chosen: AtomicBool::new(false),
            reached: AtomicBool::new(false),
            done: AtomicBool::new(false),
            fired: Notify::new(),
        });
        Driver { scenario, sim, store, runtime, tasks: Vec::new(), configure, aim }
    }

    fn session_config(&self) -> SessionConfig {
        let deadline = tick() * self.scenario.run_deadline as u32;
        SessionConfig {
            max_attempts: self.scenario.max_attempts,
            run_deadline_ms: deadline.as_millis().max(5) as u64,
            comms_enabled: self.scenario.comms,
            history_max: self.scenario.history_max,
            ..SessionConfig::default()
        }
    }

    fn open_store(&self) -> Arc<dyn Store> {
        Arc::new(DriverStore {
            inner: self.store.reopen(),
            aim: self.scenario.aim.is_some().then(|| self.aim.clone()),
            dropping: (self.sim.defect == Some(FullDefect::DroppingStore)).then(|| AtomicU64::new(0)),
        })
    }

    /// Waits `ticks`, or less if the aimed write is reached meanwhile: then the process crashes at once.
    async fn gap(&mut self, ticks: u64) {
        let until = Instant::now() + tick() * ticks as u32;
        loop {
            if self.aim.reached.swap(false, Ordering::SeqCst) {
                let aim = self.scenario.aim.expect("reached only when aimed");
                let when = if aim.durable { "after it landed, before its writer heard" } else { "before it landed" };
                self.sim.log(format!("aimed crash at {:?} write {}, {when}", aim.at, aim.write));
                self.crash().await;
                self.aim.done.store(true, Ordering::SeqCst);
            }
            let now = Instant::now();
            let left = if now >= until { Duration::ZERO } else { until.duration_since(now) };
            if left.is_zero() {
                return;
            }
            let fired = self.aim.fired.notified();
            // Biased: the branch order must come from the seed, not from the select's own randomness.
            burrow_env::select! {
                biased;
                () = fired => {}
                () = sleep(left) => return,
            }
        }
    }

    /// Starts a process: a runtime over the store, every session prepared (restored from the store after a crash)
    /// with its executor attached and its peer source set.
    async fn start_process(&mut self) {
        // The driver's own prepares and attaches are never the aimed write: it would wait on itself.
        let armed = self.aim.armed.swap(false, Ordering::SeqCst);
        self.start_sessions().await;
        self.aim.armed.store(armed, Ordering::SeqCst);
    }

    async fn start_sessions(&mut self) {
        let mut config = RuntimeConfig {
            session: self.session_config(),
            // In ticks, so that a tokio-mode seed whose executor never answers a stop waits 200 ms, not 2 s.
            executor_hook_bound: tick() * 2_000,
            ..RuntimeConfig::default()
        };
        (self.configure)(&mut config);
        let process = self.sim.process();
        let witness = Arc::new(Witness { sim: self.sim.clone(), process });
        self.runtime = Runtime::with_tap(config.clone(), Some(self.open_store()), witness);
        for s in 1..=self.scenario.sessions {
            let prepared = self.runtime.prepare_with(sid(s), config.session.clone()).await;
            if let Ok(bindings) = &prepared {
                self.feed_cursor(s, bindings.cursors.0.0);
            }
            self.list_active(s).await;
            if self.scenario.comms {
                let source = Arc::new(SimPeer { sim: self.sim.clone(), session: s, process });
                let _ = self.runtime.set_peer_source(sid(s), source).await;
            }
            if let Ok(subscription) = self.runtime.subscribe(sid(s)).await {
                let subscriber = spawn(subscriber(self.sim.clone(), s, process, subscription));
                self.sim.seen().subscribers.push(subscriber);
            }
            let attached = self.attach(s).await;
            self.sim
                .log(format!("s{s} start (process {process}): prepare {:?}, attach {attached}", prepared.map(|_| ())));
        }
    }

    /// The completion feed's acknowledged cursor a prepare reported: the consumer goes on from there, and the
    /// specification judges that it survived the restart.
    fn feed_cursor(&self, s: u8, acknowledged: u64) {
        let process = self.sim.process();
        self.sim.seen().cursors.insert(s, acknowledged);
        judge_op(&self.sim, s, process, OpObservation::Cursor { acknowledged });
    }

    /// A caller lists the session's active inputs, as one does after a restart; the specification judges the list.
    /// Called before anything else can touch the session, so the list is what the restart left.
    async fn list_active(&self, s: u8) {
        let Ok(views) = self.runtime.list_active_inputs(sid(s)).await else { return };
        let inputs = views.iter().map(|view| view.id.0).collect();
        let continuations = views.iter().filter(|view| view.kind == "Continuation").map(|view| view.id.0).collect();
        let t = self.sim.now();
        let mut seen = self.sim.seen();
        let mut observations = vec![burrow_spec::Observation::Active { inputs, continuations }];
        observations.extend(
            views.iter().map(|view| burrow_spec::Observation::Attempts { input: view.id.0, attempts: view.attempts }),
        );
        for observation in &observations {
            if let Some(broken) = conform::judge(&mut seen.witnessed, s, observation) {
                seen.violate(t, broken);
                return;
            }
        }
    }

    async fn attach(&self, s: u8) -> String {
        let executor = Arc::new(SimExecutor { sim: self.sim.clone(), session: s, process: self.sim.process() });
        match self.runtime.attach_executor(sid(s), executor).await {
            Ok(report) => format!("{report:?}"),
            Err(error) => format!("refused: {error}"),
        }
    }

    async fn run(mut self) -> Run {
        self.sim.log(format!(
            "scenario: {} sessions, {} attempts, store latency {}, aimed crash {:?}, executor teardown {:?}",
            self.scenario.sessions,
            self.scenario.max_attempts,
            self.scenario.store_latency,
            self.scenario.aim,
            self.scenario.teardown
        ));
        self.start_process().await;
        self.aim.writes.store(0, Ordering::SeqCst);
        self.aim.armed.store(self.scenario.aim.is_some(), Ordering::SeqCst);
        let steps = self.scenario.steps.clone();
        let mut failed_at = None;
        for (i, timed) in steps.iter().enumerate() {
            self.sim.log(format!("step {} {:?}", i + 1, timed.step));
            match &timed.step {
                Step::Crash => self.crash().await,
                Step::Shutdown => self.shutdown().await,
                Step::StoreFaults { on } => {
                    self.store.set_write_failure(if *on {
                        f64::from(self.scenario.write_failure_permille) / 1000.0
                    } else {
                        0.0
                    });
                }
                step => {
                    let task = spawn(act(self.sim.clone(), self.runtime.clone(), step.clone(), self.sim.process()));
                    self.tasks.push((format!("step {}", i + 1), task));
                }
            }
            self.gap(timed.gap).await;
            self.check_machines().await;
            self.gap(0).await;
            if self.sim.seen().violation.is_some() {
                failed_at = Some(i + 1);
                break;
            }
        }
        if failed_at.is_none() {
            self.liveness().await;
        }
        self.finish(failed_at)
    }

    /// The service drops its runtime while callers wait and loops run: dropping the last clone stops every live
    /// loop through the machine. Nothing is aborted and nothing is woken. Every caller must be answered within the
    /// bound (an outcome, or a closed channel where no loop was left to take the stop path), every loop that was live
    /// must let its executor go, and every specification's liveness must hold once it all settled. A new process
    /// then starts from the store, as after a crash.
    async fn shutdown(&mut self) {
        let armed = self.aim.armed.swap(false, Ordering::SeqCst);
        // A write already chosen as the aim is held for good, with its session's lock: that process crashes first
        // (full seed 298638: the drop then waited on the held lock, and every task blocked).
        if self.aim.chosen.load(Ordering::SeqCst) && !self.aim.done.load(Ordering::SeqCst) {
            let _ = timeout(call_bound(), self.aim.fired.notified()).await;
            self.aim.fired.notify_one();
            self.gap(0).await;
        }
        let process = self.sim.process();
        // Let go, or killed by the harness (a KillLoop still in flight at the drop may land after it).
        let cleaned = |sim: &Sim, s: u8| {
            sim.seen().witnessed.sessions.get(&s).map_or(0, |j| if j.loop_killed { u32::MAX } else { j.let_go })
        };
        let (mut live, mut before) = (Vec::new(), Vec::new());
        for s in 1..=self.scenario.sessions {
            // A loop the harness killed is not live, whatever the machine believes.
            let killed = self.sim.seen().witnessed.sessions.get(&s).is_some_and(|j| j.loop_killed);
            // Counted before the loop is asked about: a loop that is live when asked lets go after the count (a
            // count taken after the question missed a loop that exited in between, full seed 8294).
            let count = cleaned(&self.sim, s);
            if !killed && self.runtime.runtime_state(sid(s)).await.is_ok_and(|state| state.loop_live) {
                live.push(s);
                before.push((s, count));
            }
        }
        self.sim.seen().dropped = Some(process);
        self.sim.log(format!("the runtime is dropped; live loops in {live:?}"));
        self.runtime = Runtime::ephemeral();
        let deadline = Instant::now() + call_bound();
        loop {
            let waiters = std::mem::take(&mut self.sim.seen().waiters);
            let tasks: Vec<(String, JoinHandle<()>)> = self.tasks.drain(..).chain(waiters).collect();
            if tasks.is_empty() {
                break;
            }
            for (label, task) in tasks {
                match joined_by(deadline, task).await {
                    Ok(()) => {}
                    Err(Some(message)) => {
                        self.sim.violation(format!("a caller panicked after the runtime was dropped: {message}"));
                        return;
                    }
                    Err(None) => {
                        let bound = call_bound().as_secs();
                        self.sim.violation(format!(
                            "a caller still waits {bound} s after the runtime was dropped ({label})"
                        ));
                        return;
                    }
                }
            }
        }
        while Instant::now() < deadline && before.iter().any(|(s, n)| cleaned(&self.sim, *s) == *n) {
            sleep(tick() * 100).await;
        }
        if let Some((s, _)) = before.iter().find(|(s, n)| cleaned(&self.sim, *s) == *n) {
            self.sim.violation(format!(
                "s{s}: the runtime was dropped with its loop live, and the loop never let its executor go"
            ));
            return;
        }
        if !self.judge_quiescence().await {
            return;
        }
        self.crash_and_restart().await;
        self.aim.armed.store(armed, Ordering::SeqCst);
    }

    /// SPEC 6 on every session machine the runtime holds.
    async fn check_machines(&self) {
        for session in self.runtime.sessions().await {
            // Bounded: a drive held at an aimed write keeps its session's lock until the crash.
            let Ok(checked) = timeout(tick() * 100, self.runtime.check_invariants(session)).await else { continue };
            if let Err(broken) = checked {
                // A session unregistered since the listing has no machine to check.
                if self.runtime.sessions().await.contains(&session) {
                    self.sim.violation(format!("invariant broken: {broken}"));
                }
            }
        }
    }

    /// The process dies: its tasks (callers, loops, drains) are gone and store writes in flight are lost. A new
    /// process restores every session from the store.
    async fn crash(&mut self) {
        // The driver's own calls below wait on sessions: no write of theirs may be the aimed one.
        let armed = self.aim.armed.swap(false, Ordering::SeqCst);
        self.crash_and_restart().await;
        self.aim.armed.store(armed, Ordering::SeqCst);
    }

    async fn crash_and_restart(&mut self) {
        // The store is fenced first: a write that lands from here on is refused, so every write the old process
        // landed was also observed by its tap (under madsim, landing and observing happen in one poll).
        self.store.crash();
        let crashed = {
            let mut seen = self.sim.seen();
            seen.process += 1;
            seen.process - 1
        };
        self.sim.log(format!("process {crashed} crashed: its tasks are gone, its unsynced writes lost"));
        let waiters = std::mem::take(&mut self.sim.seen().waiters);
        for subscriber in std::mem::take(&mut self.sim.seen().subscribers) {
            subscriber.abort();
        }
        for (_, task) in self.tasks.drain(..).chain(waiters) {
            task.abort();
        }
        for session in self.runtime.sessions().await {
            // Bounded: a loop held at an aimed write keeps its session's lock; it dies with the process anyway.
            let _ = timeout(tick() * 100, self.runtime.kill_loop(session)).await;
        }
        {
            let t = self.sim.now();
            let mut seen = self.sim.seen();
            if let Some(broken) = conform::crash(&mut seen.witnessed) {
                seen.violate(t, broken);
            }
        }
        self.check_durable().await;
        self.start_process().await;
        // Every acknowledged durable input is known to the restarted runtime: in memory, or (one that ended and left
        // the session's small history) by its row in the store the runtime reads. Whether that row records the end
        // is the specification's to judge: a fail-stop's row may fail too, and then the end is written by the next
        // row (specs/session.md#a-failed-row-is-written-again).
        let acked: Vec<(u8, InputId)> = self.sim.seen().acked.iter().copied().collect();
        for (s, input) in acked {
            let answer = self.runtime.input_state(sid(s), input).await;
            if let Ok(None) = answer {
                let image = self.store.load(sid(s)).await.ok().flatten();
                let in_memory_history = self.scenario.history_max;
                let stored = image.as_ref().is_some_and(|image| image.inputs.iter().any(|i| i.record.id == input));
                if stored && in_memory_history < burrow_core::input::TERMINAL_HISTORY_MAX {
                    continue;
                }
            }
            if !matches!(answer, Ok(Some(_))) {
                self.sim.violation(format!(
                    "s{s} input {input}: acknowledged durable, unknown after the restart ({:?})",
                    answer.map(|v| v.map(|v| v.state))
                ));
            }
        }
    }

    /// Every acknowledged durable input has its row in the store; every receipt matches what the executor did.
    async fn check_durable(&self) {
        let (acked, handed, applied) = {
            let seen = self.sim.seen();
            (seen.acked.clone(), seen.handed.clone(), seen.applied.clone())
        };
        for s in 1..=self.scenario.sessions {
            let image = match self.store.load(sid(s)).await {
                Ok(image) => image.unwrap_or(SessionImage {
                    lifecycle: None,
                    inputs: Vec::new(),
                    receipts: Vec::new(),
                    operations: None,
                    snapshot: None,
                }),
                Err(error) => {
                    self.sim.violation(format!("s{s}: the store cannot load: {error}"));
                    continue;
                }
            };
            self.check_lifecycle_row(s, &image, &handed);
            let rows: BTreeSet<InputId> = image.inputs.iter().map(|i| i.record.id).collect();
            for (_, input) in acked.iter().filter(|(session, _)| *session == s) {
                if !rows.contains(input) {
                    self.sim.violation(format!("s{s} input {input}: acknowledged durable, not in the store"));
                }
            }
            let mut committed: BTreeMap<InputId, RunId> = BTreeMap::new();
            for receipt in &image.receipts {
                let contributors: BTreeSet<InputId> = receipt.contributors.iter().copied().collect();
                let matches = applied.get(&(s, receipt.run)).is_some_and(|runs| runs.contains(&contributors));
                if !matches {
                    self.sim.violation(format!(
                        "s{s} receipt of {}: names [{}], but the executor reported success for {:?}",
                        receipt.run,
                        ids(&contributors),
                        applied.get(&(s, receipt.run)).map(|runs| runs.iter().map(ids).collect::<Vec<_>>())
                    ));
                }
                for input in &contributors {
                    if let Some(earlier) = committed.insert(*input, receipt.run) {
                        self.sim
                            .violation(format!("s{s} input {input}: committed by {earlier} and by {}", receipt.run));
                    }
                }
            }
            for ((session, run), given) in &handed {
                if *session != s {
                    continue;
                }
                for input in given.iter().flatten() {
                    if let Some(first) = committed.get(input).filter(|first| *first < run) {
                        self.sim.violation(format!("s{s} input {input}: committed by {first}, handed again to {run}"));
                    }
                }
            }
        }
    }

    /// SPEC 5's meaning of the rest of what the store keeps: the standing the specification allows after the
    /// crash, receipts in strictly increasing sequence, and a run mark no handed-out run exceeds.
    fn check_lifecycle_row(&self, s: u8, image: &SessionImage, handed: &BTreeMap<(u8, RunId), Vec<BTreeSet<InputId>>>) {
        for pair in image.receipts.windows(2) {
            if pair[1].sequence <= pair[0].sequence {
                self.sim.violation(format!(
                    "s{s} receipts of {} and {}: sequence {} then {}, not increasing",
                    pair[0].run, pair[1].run, pair[0].sequence, pair[1].sequence
                ));
            }
        }
        let Some(lifecycle) = &image.lifecycle else { return };
        let stored = match lifecycle.phase {
            RuntimePhase::Retired => Standing::Retired,
            RuntimePhase::Stopped => Standing::Stopped,
            RuntimePhase::Destroyed => Standing::Destroyed,
            RuntimePhase::Initializing | RuntimePhase::Idle | RuntimePhase::Attached | RuntimePhase::Running => {
                Standing::Open
            }
        };
        let allowed = self.sim.seen().witnessed.sessions.get(&s).map(|judged| judged.spec.standings());
        if let Some(allowed) = allowed.filter(|allowed| !allowed.contains(&stored)) {
            self.sim.violation(format!(
                "s{s}: the store keeps phase {:?} ({stored:?}); the acknowledged lifecycle writes allow {allowed:?}",
                lifecycle.phase
            ));
        }
        let last_run = lifecycle.marks.last_run;
        if let Some(((_, run), _)) = handed.range((s, RunId(last_run + 1))..=(s, RunId(u64::MAX))).next() {
            self.sim.violation(format!(
                "s{s}: the store's run mark is {last_run}, but the executor was handed {run}: a restart may reuse it"
            ));
        }
    }

    /// Faults off, executor healthy, every session re-attached and woken; then every caller must have its answer
    /// and every session with an executor must have drained.
    async fn liveness(&mut self) {
        // An aimed write not chosen by now is not aimed at any more; one chosen is waited for (bounded) and crashed
        // at first.
        self.aim.armed.store(false, Ordering::SeqCst);
        if self.aim.chosen.load(Ordering::SeqCst) && !self.aim.done.load(Ordering::SeqCst) {
            let _ = timeout(call_bound(), self.aim.fired.notified()).await;
            self.aim.fired.notify_one();
        }
        self.gap(0).await;
        self.sim.log("liveness phase");
        self.store.set_write_failure(0.0);
        self.sim.healthy.store(true, Ordering::SeqCst);
        let deadline = Instant::now() + call_bound();
        for (i, (_, task)) in std::mem::take(&mut self.tasks).into_iter().enumerate() {
            match joined_by(deadline, task).await {
                Ok(()) => {}
                Err(Some(message)) => {
                    self.sim.violation(format!("step task {i}: a call panicked: {message}"));
                    return;
                }
                Err(None) => {
                    self.sim
                        .violation(format!("step task {i}: a call did not return within {} s", call_bound().as_secs()));
                    return;
                }
            }
        }
        if !self.judge_quiescence().await {
            return;
        }
        let mut attached = Vec::new();
        for s in 1..=self.scenario.sessions {
            let report = self.attach(s).await;
            let wake = self.runtime.wake(sid(s)).await;
            self.sim.log(format!("s{s} live: attach {report}, wake {:?}", wake.map_err(|e| e.to_string())));
            if !report.starts_with("refused") {
                attached.push(s);
            }
        }
        let rounds = call_bound().as_micros() / (tick() * 100).as_micros();
        for _ in 0..rounds {
            sleep(tick() * 100).await;
            if self.left(&attached).await.is_none() {
                break;
            }
        }
        if let Some(what) = self.left(&attached).await {
            self.sim.log(format!("LIVENESS {what}"));
            let mut seen = self.sim.seen();
            if seen.violation.is_none() {
                seen.violation = Some(format!("liveness: {what}"));
            }
            return;
        }
        self.check_machines().await;
        self.check_outcomes().await;
        self.check_watchers().await;
        self.check_durable().await;
    }

    /// The first half of the liveness phase judges and cures nothing: with every call returned, it waits (bounded)
    /// until no judged session holds a run and nothing new was observed for a while, then asks each specification
    /// whether what must have happened did. False on a verdict.
    async fn judge_quiescence(&self) -> bool {
        let rounds = call_bound().as_micros() / (tick() * 200).as_micros();
        let mut last = u64::MAX;
        let mut settled = false;
        for _ in 0..rounds {
            sleep(tick() * 200).await;
            let seen = self.sim.seen();
            let now = seen.witnessed.judged;
            if now == last && !conform::any_run_held(&seen.witnessed) {
                settled = true;
                break;
            }
            last = now;
        }
        // Each session's consumer reads the feed once more: settled, it must show every unacknowledged end.
        if settled {
            let process = self.sim.process();
            for s in 1..=self.scenario.sessions {
                consume(&self.sim, &self.runtime, s, process, false).await;
            }
        }
        let t = self.sim.now();
        let mut seen = self.sim.seen();
        if !settled {
            seen.violate(t, format!("liveness: a run is still held {} s after the last call", call_bound().as_secs()));
            return false;
        }
        for s in conform::sessions(&seen.witnessed) {
            if let Some(broken) = conform::judge(&mut seen.witnessed, s, &burrow_spec::Observation::Quiescent) {
                seen.violate(t, format!("liveness: {broken}"));
                return false;
            }
        }
        seen.trace.push(Line { t, what: "quiescent: every specification's liveness holds".into() });
        true
    }

    /// What the liveness phase still waits for, if anything.
    async fn left(&self, attached: &[u8]) -> Option<String> {
        let process = self.sim.process();
        let waiting = self
            .sim
            .seen()
            .handles
            .iter()
            .find(|h| h.process == process && h.resolutions == 0 && !h.gave_up)
            .map(|h| (h.session, h.input));
        if let Some((s, input)) = waiting {
            let state = self.runtime.input_state(sid(s), input).await;
            let session = self.runtime.runtime_state(sid(s)).await;
            return Some(format!(
                "s{s} input {input}: its caller never got an outcome (input {:?}; session {:?})",
                state.map(|v| v.map(|v| v.state)),
                session
            ));
        }
        for s in attached {
            let active = self.runtime.list_active_inputs(sid(*s)).await.unwrap_or_default();
            if let Some(view) = active.first() {
                return Some(format!(
                    "s{s}: {} inputs still active with an executor attached (first: {} {:?})",
                    active.len(),
                    view.id,
                    view.state
                ));
            }
        }
        None
    }

    /// A success outcome means the input is Consumed.
    async fn check_outcomes(&self) {
        let process = self.sim.process();
        let resolved: Vec<(u8, InputId, String)> = self
            .sim
            .seen()
            .handles
            .iter()
            .filter(|h| h.process == process && h.success)
            .map(|h| (h.session, h.input, h.outcome.clone().unwrap_or_default()))
            .collect();
        for (s, input, outcome) in resolved {
            // A superseded or coalesced input's waiter follows the input that replaced it.
            let mut at = input;
            for _ in 0..64 {
                let Ok(Some(view)) = self.runtime.input_state(sid(s), at).await else { break };
                match view.state {
                    InputState::Superseded { by } => at = by,
                    InputState::Coalesced { into } => at = into,
                    InputState::Consumed => break,
                    state => {
                        self.sim.violation(format!("s{s} input {input}: resolved {outcome}, but {at} is {state:?}"));
                        break;
                    }
                }
            }
        }
    }

    /// Watchers of ended operations resolved with the operation's outcome.
    async fn check_watchers(&self) {
        let process = self.sim.process();
        let watchers: Vec<(u8, burrow::OperationId, u32, Option<Option<OpOutcome>>)> = self
            .sim
            .seen()
            .watchers
            .iter()
            .filter(|w| w.process == process)
            .map(|w| (w.session, w.op, w.resolutions, w.outcome.clone()))
            .collect();
        for (s, op, resolutions, outcome) in watchers {
            let Ok(ops) = self.runtime.operations(sid(s)).await else { continue };
            let Some(snapshot) = ops.snapshot(op).await else { continue };
            if let Some(ended) = snapshot.outcome {
                if resolutions != 1 || outcome.as_ref().is_some_and(|o| o.as_ref() != Some(&ended)) {
                    self.sim.violation(format!(
                        "s{s} watcher of {op}: the operation ended {ended:?}, the watcher saw {outcome:?} \
                         ({resolutions} resolutions)"
                    ));
                }
            }
        }
    }

    fn finish(self, failed_at: Option<usize>) -> Run {
        let stats = self.store.counters();
        self.sim.log(format!("store writes {} failed {} lost {}", stats.0, stats.1, stats.2));
        let mut seen = self.sim.seen();
        let verdict = match seen.violation.take() {
            None => Verdict::Clean,
            Some(what) if what.starts_with("liveness: ") => {
                Verdict::Liveness { what: what["liveness: ".len()..].to_owned() }
            }
            Some(what) => Verdict::Safety { property: what, step: failed_at.unwrap_or(self.scenario.steps.len() + 1) },
        };
        Run {
            mode: this_mode(),
            seed: self.scenario.seed,
            defect: self.sim.defect.map(FullDefect::name),
            verdict,
            trace: std::mem::take(&mut seen.trace),
            events: seen.events,
        }
    }
}

// ----- the steps -----------------------------------------------------------------------------------------------

fn input_of(kind: Kind, act: Act, durable: bool, key: Option<u8>, supersede: Option<u8>) -> Input {
    let payload = format!("{act:?}");
    let input = match kind {
        Kind::Prompt => Input::prompt(payload),
        Kind::Event => Input::new(InputKind::ExternalEvent, payload),
        Kind::DerivedEvent => Input::new(InputKind::ExternalEvent, payload).durability(Durability::Derived),
        Kind::FlowStep => Input::new(InputKind::FlowStep, payload),
        Kind::PeerMessage => Input::new(InputKind::PeerMessage, payload),
        Kind::PeerRequest => Input::new(InputKind::PeerRequest { intent: "ask".into() }, payload),
        Kind::PeerProgress | Kind::PeerTerminal => {
            // The step's supersession group names the request a peer response answers (it takes no key).
            let request = format!("r{}", supersede.unwrap_or(0));
            let kind = if kind == Kind::PeerProgress {
                InputKind::PeerResponseProgress { request }
            } else {
                InputKind::PeerResponseTerminal { request }
            };
            return finish_input(Input::new(kind, payload), durable, key, None);
        }
        Kind::Continuation => Input::new(InputKind::Continuation, payload),
        Kind::Operation => Input::new(InputKind::Operation, payload),
        Kind::Steer => Input::prompt(payload).steer(),
    };
    finish_input(input, durable, key, supersede)
}

/// `input` with the step's durability, idempotency key and supersession group.
fn finish_input(mut input: Input, durable: bool, key: Option<u8>, supersede: Option<u8>) -> Input {
    if !durable {
        input = input.durability(Durability::Ephemeral);
    }
    if let Some(key) = key {
        input = input.idempotency_key(format!("k{key}"));
    }
    if let Some(group) = supersede {
        input = input.supersession_key(format!("g{group}"));
    }
    input
}

fn success(outcome: &Outcome) -> bool {
    matches!(
        outcome,
        Outcome::Completed(_)
            | Outcome::CompletedWithoutResult
            | Outcome::CallbackPending { .. }
            | Outcome::CallbackBatchPending { .. }
    )
}

fn outcome_name(outcome: &Outcome) -> String {
    let full = format!("{outcome:?}");
    full.split(['(', ' ', '{']).next().unwrap_or_default().to_owned()
}

/// Performs one step of the scenario; runs as its own task.
async fn act(sim: Sim, runtime: Runtime, step: Step, process: u32) {
    match step {
        // A keyed accept that would wait a bounded time is a client's submit: one call, the answer and the wait.
        Step::Accept {
            session,
            kind,
            durable,
            key: key @ Some(_),
            supersede,
            act,
            wait: Wait::Timeout(n),
            quiet: false,
        } => {
            let input = input_of(kind, act, durable, key, supersede);
            submit(sim, runtime, session, kind, durable, input, n, process).await;
        }
        Step::Accept { session, kind, durable, key, supersede, act, wait, quiet } => {
            let input = input_of(kind, act, durable, key, supersede);
            let id = sid(session);
            let result = if quiet {
                runtime.accept_input_without_wake(id, input).await
            } else if wait == Wait::None {
                runtime.accept_input(id, input).await
            } else {
                runtime.accept_input_with_completion(id, input).await
            };
            let handle = match result {
                Ok(AcceptOutcome::Accepted { input, handle }) => {
                    sim.log(format!("s{session} accept {kind:?} -> accepted {input}"));
                    let mut seen = sim.seen();
                    if durable && seen.process == process {
                        seen.acked.insert((session, input));
                    }
                    drop(seen);
                    check_answer(&sim, session, process, input, true);
                    handle
                }
                Ok(AcceptOutcome::Deduplicated { existing: input, handle }) => {
                    sim.log(format!("s{session} accept {kind:?} -> deduplicated {input}"));
                    check_answer(&sim, session, process, input, false);
                    handle
                }
                Err(error) => {
                    sim.log(format!("s{session} accept {kind:?} -> {error}"));
                    None
                }
            };
            if let Some(handle) = handle {
                let label = format!("s{session} waiter of {}", handle.input());
                let waiter = spawn(await_handle(sim.clone(), session, process, handle, wait));
                keep_waiter(&sim, process, label, waiter);
            }
        }
        Step::AcceptAndRun { session, act } => {
            let body_sim = sim.clone();
            let result = runtime
                .accept_and_run(sid(session), input_of(Kind::Prompt, act, true, None, None), |request| async move {
                    let inputs: Vec<InputId> = request.inputs.iter().map(|i| i.id).collect();
                    let output = perform(&body_sim, session, process, request.run, &inputs, act).await?;
                    Ok(((), output))
                })
                .await;
            sim.log(format!("s{session} accept_and_run {act:?} -> {:?}", result.map_err(|e| e.to_string())));
        }
        Step::Control { session, call } => control(sim, runtime, session, call, process).await,
        Step::Op { session, call } => operation(sim, runtime, session, call, process).await,
        Step::Peer { session, messages } => {
            {
                let mut seen = sim.seen();
                let inbox = seen.inbox.entry(session).or_default();
                for _ in 0..messages {
                    inbox.push_back(Input::new(InputKind::PeerMessage, "Ok(0)"));
                }
            }
            if let Some(notify) = sim.notify.get(&session) {
                notify.notify_one();
            }
            sim.log(format!("s{session} inbox +{messages}"));
        }
        Step::Crash | Step::Shutdown | Step::StoreFaults { .. } => unreachable!("the driver performs these itself"),
    }
}

/// The caller's answer is the one the session gave (the witness saw it under the session's lock).
fn check_answer(sim: &Sim, session: u8, process: u32, input: InputId, accepted: bool) {
    let t = sim.now();
    let mut seen = sim.seen();
    if seen.process != process {
        return;
    }
    let given = seen.witnessed.answers.entry((session, input, accepted)).or_default();
    if *given == 0 {
        let said = if accepted { "accepted" } else { "deduplicated" };
        seen.violate(
            t,
            format!("s{session} input {input}: the caller was told {said}, which the session never answered"),
        );
    } else {
        *given -= 1;
    }
}

/// `submit_within` of a keyed input, judged as an accept and a wait by the caller: the answer names an input the
/// session answered that way, and an outcome received is one the session resolved.
#[allow(clippy::too_many_arguments)]
async fn submit(
    sim: Sim,
    runtime: Runtime,
    session: u8,
    kind: Kind,
    durable: bool,
    input: Input,
    n: u64,
    process: u32,
) {
    let answer = runtime.submit_within(sid(session), input, tick() * n as u32).await;
    if sim.seen().process != process {
        return;
    }
    let (what, outcome) = match answer {
        Ok(Submitted::Finished { input, outcome, joined }) => {
            note_submitted(&sim, session, process, input, joined, durable);
            (format!("finished {input} ({})", if joined { "joined" } else { "new" }), Some(outcome))
        }
        Ok(Submitted::StillRunning { input, joined, .. }) => {
            note_submitted(&sim, session, process, input, joined, durable);
            (format!("still running {input}"), None)
        }
        Ok(Submitted::Ended { input, joined, .. }) => {
            note_submitted(&sim, session, process, input, joined, durable);
            (format!("ended {input}"), None)
        }
        Err(error) => (format!("{error}"), None),
    };
    if let Some(outcome) = &outcome {
        let t = sim.now();
        let mut seen = sim.seen();
        if seen.process == process {
            check_received(t, &mut seen, session, conform::received_class(outcome));
        }
    }
    sim.log(format!("s{session} submit {kind:?} -> {what}"));
}

/// What an accept's answer records, for a submit's answer.
fn note_submitted(sim: &Sim, session: u8, process: u32, input: InputId, joined: bool, durable: bool) {
    if durable && !joined {
        let mut seen = sim.seen();
        if seen.process == process {
            seen.acked.insert((session, input));
        }
    }
    check_answer(sim, session, process, input, !joined);
}

/// The outcome a caller received is one the session resolved for a handle a caller holds. Judged under the same
/// lock as the caller's process check, so a crash cannot clear the count in between.
fn check_received(t: u64, seen: &mut Seen, session: u8, class: burrow_spec::Class) {
    let left = seen.witnessed.resolved.entry((session, class)).or_default();
    if *left == 0 {
        seen.violate(t, format!("s{session}: a caller received {class:?}, which the session never resolved"));
    } else {
        *left -= 1;
    }
}

async fn await_handle(sim: Sim, session: u8, process: u32, handle: CompletionHandle, wait: Wait) {
    let input = handle.input();
    let index = {
        let mut seen = sim.seen();
        seen.handles_issued += 1;
        let swallowed = sim.defect == Some(FullDefect::DroppedResolution) && seen.handles_issued == 2;
        let gave_up = matches!(wait, Wait::Drop | Wait::None);
        seen.handles.push(HandleRec {
            process,
            session,
            input,
            resolutions: 0,
            outcome: None,
            success: false,
            gave_up,
            swallowed,
        });
        seen.handles.len() - 1
    };
    let result = match wait {
        Wait::None | Wait::Drop => return,
        Wait::Wait => handle.wait().await,
        Wait::Timeout(n) => handle.wait_timeout(tick() * n as u32).await,
        Wait::Cleanup => handle.wait_with_cleanup(|_| async {}).await.0,
    };
    let mut seen = sim.seen();
    if seen.process != process {
        return;
    }
    let dropped = seen.dropped == Some(process);
    let rec = &mut seen.handles[index];
    if rec.swallowed {
        return;
    }
    let what = match result {
        Ok(outcome) => {
            rec.resolutions += 1;
            rec.success = success(&outcome);
            rec.outcome = Some(outcome_name(&outcome));
            let twice = rec.resolutions > 1;
            check_received(sim.now(), &mut seen, session, conform::received_class(&outcome));
            drop(seen);
            if twice {
                sim.violation(format!("s{session} input {input}: its handle resolved twice"));
            }
            format!("resolved {}", outcome_name(&outcome))
        }
        Err(CompletionError::TimedOut { .. }) => {
            rec.gave_up = true;
            drop(seen);
            "caller gave up (timeout)".to_owned()
        }
        // A session the dropped runtime held with no live loop is dropped with its waiters, who learn why.
        Err(CompletionError::Unresolved { reason: WaitFailure::RuntimeDropped, .. }) if dropped => {
            rec.resolutions += 1;
            drop(seen);
            "unresolved: the runtime was dropped".to_owned()
        }
        Err(error) => {
            rec.resolutions += 1;
            drop(seen);
            sim.violation(format!("s{session} input {input}: no outcome: {error}"));
            return;
        }
    };
    sim.log(format!("s{session} input {input} {what}"));
}

async fn control(sim: Sim, runtime: Runtime, session: u8, call: Call, process: u32) {
    let id = sid(session);
    let text = |r: Result<String, burrow::RuntimeError>| match r {
        Ok(s) => s,
        Err(e) => format!("error: {e}"),
    };
    let executor = || Arc::new(SimExecutor { sim: sim.clone(), session, process }) as Arc<dyn Executor>;
    let result = match call {
        Call::Stop => text(runtime.stop_executor(id).await.map(|r| format!("{r:?}"))),
        Call::Retire => text(runtime.retire(id).await.map(|r| format!("{r:?}"))),
        Call::Reset => text(runtime.reset(id).await.map(|r| format!("{r:?}"))),
        Call::Recycle => text(runtime.recycle(id).await.map(|r| format!("{r:?}"))),
        Call::Recover => text(runtime.recover(id).await.map(|r| format!("{r:?}"))),
        Call::Destroy => text(runtime.destroy(id).await.map(|r| format!("{r:?}"))),
        Call::Unregister => text(runtime.unregister(id).await.map(|r| format!("{r:?}"))),
        Call::Interrupt => text(runtime.interrupt(id, None).await.map(|r| format!("{r}"))),
        Call::CancelAfterBoundary => text(runtime.cancel_after_boundary(id).await.map(|()| "ok".into())),
        Call::Attach => text(runtime.attach_executor(id, executor()).await.map(|r| format!("{r:?}"))),
        Call::ConcurrentAttach => {
            let (a, b) =
                burrow_env::join!(runtime.attach_executor(id, executor()), runtime.attach_executor(id, executor()));
            format!("{} / {}", text(a.map(|r| format!("{r:?}"))), text(b.map(|r| format!("{r:?}"))))
        }
        Call::Detach => text(runtime.detach_executor(id).await.map(|()| "ok".into())),
        Call::Wake => text(runtime.wake(id).await.map(|()| "ok".into())),
        Call::Publish => {
            let event = burrow::RuntimeEvent::new("sim", sim.seen().published.to_string());
            sim.seen().published += 1;
            text(runtime.publish_event(id, event).await.map(|()| "ok".into()))
        }
        Call::CommsOff => text(runtime.set_comms_enabled(id, false).await.map(|()| "ok".into())),
        Call::CommsOn => text(runtime.set_comms_enabled(id, true).await.map(|()| "ok".into())),
        Call::AbortDrain => text(runtime.abort_drain(id).await.map(|()| "ok".into())),
        Call::KillLoop => {
            // A killed loop is a fault outside the specification's vocabulary: until an attach repairs it, the
            // session's quiescence is not judged.
            conform::loop_killed(&mut sim.seen().witnessed, session);
            let killed = text(runtime.kill_loop(id).await.map(|()| "ok".into()));
            // Again once it is done: an attach may have repaired an earlier kill meanwhile.
            conform::loop_killed(&mut sim.seen().witnessed, session);
            killed
        }
    };
    sim.log(format!("s{session} {call:?} -> {result}"));
}

async fn operation(sim: Sim, runtime: Runtime, session: u8, call: OpCall, process: u32) {
    let ops = match runtime.operations(sid(session)).await {
        Ok(ops) => ops,
        Err(error) => {
            sim.log(format!("s{session} op {call:?} -> {error}"));
            return;
        }
    };
    let pick = |k: u8| {
        let seen = sim.seen();
        let list = seen.ops.get(&session)?;
        (!list.is_empty()).then(|| list[usize::from(k) % list.len()])
    };
    let text = |r: Result<(), burrow::RuntimeError>| match r {
        Ok(()) => "ok".to_owned(),
        Err(e) => format!("error: {e}"),
    };
    let result = match call {
        OpCall::Register => {
            // Every kind in turn: their rules differ in what ends wake the session and what survives a restart.
            let registered = sim.seen().ops.get(&session).map_or(0, Vec::len);
            let kind = OperationKind::ALL[registered % OperationKind::ALL.len()];
            let spec = OperationSpec::new(kind, "tool").source("sim");
            match ops.register(spec).await {
                Ok(op) => {
                    sim.seen().ops.entry(session).or_default().push(op);
                    format!("{op} {}", text(ops.provisioning_succeeded(op).await))
                }
                Err(e) => format!("error: {e}"),
            }
        }
        OpCall::Complete(k) | OpCall::Fail(k) | OpCall::Cancel(k) | OpCall::Watch(k) => {
            let Some(op) = pick(k) else {
                sim.log(format!("s{session} op {call:?} -> none registered"));
                return;
            };
            match call {
                OpCall::Complete(_) => match ops.snapshot(op).await.map(|snapshot| snapshot.kind) {
                    Some(OperationKind::CapacitySlot) => text(ops.release(op).await),
                    _ => text(ops.complete(op, OpResult { content: "done".into(), is_error: false }).await),
                },
                OpCall::Fail(_) => text(ops.fail(op, "simulated").await),
                OpCall::Cancel(_) => text(ops.cancel(op, None).await),
                _ => match ops.register_watcher(op).await {
                    Ok(watcher) => {
                        let waiter = spawn(watch(sim.clone(), session, process, watcher));
                        keep_waiter(&sim, process, format!("s{session} watcher of {op}"), waiter);
                        return;
                    }
                    Err(e) => format!("error: {e}"),
                },
            }
        }
        OpCall::WaitAll => wait_all(&sim, &runtime, &ops, session, process).await,
        OpCall::TerminateOwner => text(ops.terminate_owner("simulated").await),
        OpCall::Consume => consume(&sim, &runtime, session, process, true).await,
    };
    sim.log(format!("s{session} op {call:?} -> {result}"));
}

/// A subscriber of session `s`'s notices in `process`, for as long as the session object lives. It judges what a
/// subscriber is promised of the events the callers publish: each one it receives is one the session told, and
/// between two it receives it missed none, unless it was told it missed some (specs/session.md#notices). The
/// notices about inputs are judged by the specification as the session performs them.
async fn subscriber(sim: Sim, s: u8, process: u32, mut subscription: burrow::Subscription) {
    let mut last: Option<usize> = None;
    loop {
        let event = match subscription.next(call_bound()).await {
            Ok(burrow::Notice::Published(event)) => event,
            Ok(_) => continue,
            Err(burrow::SubscriptionError::Missed(_)) => {
                last = None;
                continue;
            }
            Err(burrow::SubscriptionError::TimedOut { .. }) => {
                if sim.seen().process != process {
                    return;
                }
                continue;
            }
            Err(burrow::SubscriptionError::Closed) => return,
        };
        let payload: u64 = event.payload.parse().expect("the simulator publishes numbers");
        let mut seen = sim.seen();
        if seen.process != process {
            return;
        }
        let told = seen.witnessed.told_published.get(&s).map_or(&[][..], Vec::as_slice);
        let broken = match (told.iter().position(|p| *p == payload), last) {
            (None, _) => Some(format!("s{s}: a subscriber received event {payload}, which the session never told")),
            (Some(at), Some(before)) if at != before + 1 => Some(format!(
                "s{s}: a subscriber received event {payload} after {}, missing {:?} without being told",
                told[before],
                told.get(before + 1..at).unwrap_or_default()
            )),
            (Some(at), _) => {
                last = Some(at);
                None
            }
        };
        if let Some(what) = broken {
            let t = sim.now();
            seen.violate(t, what);
            return;
        }
    }
}

/// Keeps a waiter `process` spawned, to be joined at a drop or aborted at a crash. A waiter spawned after its
/// process crashed is aborted at once: the crash already took the list, and a real crash would have ended it (tokio
/// seed 207: an accept's task that ran on while the crash aborted it spawned its waiter after the crash; the waiter
/// then waited on the dead process's runtime until the next drop judged it).
fn keep_waiter(sim: &Sim, process: u32, label: String, waiter: JoinHandle<()>) {
    let mut seen = sim.seen();
    if seen.process == process {
        seen.waiters.push((label, waiter));
    } else {
        waiter.abort();
    }
}

/// Awaits a caller's task until `deadline`: the panic's message if it panicked, nothing if it still runs then.
async fn joined_by(deadline: Instant, task: JoinHandle<()>) -> Result<(), Option<String>> {
    match timeout(deadline.duration_since(Instant::now()), task).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(error)) => Err(Some(error.panic_message().unwrap_or("cancelled").to_owned())),
        Err(_) => Err(None),
    }
}

/// wait_all over every operation the session registered, awaited within a bound (then dropped, which cancels it).
async fn wait_all(sim: &Sim, runtime: &Runtime, ops: &OperationsHandle, session: u8, process: u32) -> String {
    let all: Vec<burrow::OperationId> = sim.seen().ops.get(&session).cloned().unwrap_or_default();
    let run = runtime.runtime_state(sid(session)).await.ok().and_then(|s| s.current_run).unwrap_or(RunId(0));
    let wait = match ops.wait_all(run, all).await {
        Ok(wait) => wait,
        Err(e) => return format!("error: {e}"),
    };
    match timeout(tick() * 2_000, wait).await {
        Ok(Some(ended)) => {
            let ends = ended.iter().map(|(op, outcome)| (op.0, burrow_model::observe::op_end(outcome))).collect();
            judge_op(sim, session, process, OpObservation::WaitedAll { ends });
            format!("all {} ended", ended.len())
        }
        Ok(None) => "the session went away".to_owned(),
        Err(_) => "still waiting at the bound".to_owned(),
    }
}

/// Judges what a caller of the session's operations registry saw, unless its process is gone.
fn judge_op(sim: &Sim, session: u8, process: u32, observation: OpObservation) {
    let t = sim.now();
    let mut seen = sim.seen();
    if seen.process != process {
        return;
    }
    if let Some(broken) = conform::judge(&mut seen.witnessed, session, &burrow_spec::Observation::Op(observation)) {
        seen.violate(t, broken);
    }
}

async fn watch(sim: Sim, session: u8, process: u32, watcher: OperationWatcher) {
    let op = watcher.operation();
    let index = {
        let mut seen = sim.seen();
        seen.watchers.push(WatcherRec { process, session, op, resolutions: 0, outcome: None });
        seen.watchers.len() - 1
    };
    sim.log(format!("s{session} watching {op}"));
    let outcome = watcher.wait().await;
    sim.log(format!("s{session} watcher of {op} -> {outcome:?}"));
    let end = outcome.as_ref().map(burrow_model::observe::op_end);
    {
        let mut seen = sim.seen();
        if seen.process != process {
            return;
        }
        let rec = &mut seen.watchers[index];
        rec.resolutions += 1;
        rec.outcome = Some(outcome);
    }
    judge_op(&sim, session, process, OpObservation::Watched { op: op.0, end });
}

/// A consumer of the session's completion feed: it reads what follows its cursor, which the specification judges,
/// and acknowledges it. One consumer per session at a time.
async fn consume(sim: &Sim, runtime: &Runtime, session: u8, process: u32, acknowledge: bool) -> String {
    let Ok(ops) = runtime.operations(sid(session)).await else { return "no session".to_owned() };
    let lock = sim.consumers.get(&session).cloned();
    let _one = match &lock {
        Some(lock) => Some(lock.lock().await),
        None => None,
    };
    let after = sim.seen().cursors.get(&session).copied().unwrap_or(0);
    let feed = ops.feed_since(CompletionSeq(after)).await;
    let entries = feed
        .iter()
        .map(|e| burrow_spec::FeedItem { seq: e.seq.0, op: e.op.0, end: burrow_model::observe::op_end(&e.outcome) })
        .collect();
    judge_op(sim, session, process, OpObservation::FeedRead { after, entries });
    let read = format!("read {} after {after}", feed.len());
    let Some(last) = feed.last().filter(|_| acknowledge) else { return read };
    match ops.acknowledge(last.seq).await {
        Ok(()) => {
            let t = sim.now();
            let mut seen = sim.seen();
            if seen.process == process {
                seen.cursors.insert(session, last.seq.0);
                // The registry took the acknowledgement the consumer asked for (the witness saw it take it).
                let took = seen.witnessed.acknowledged.get(&session).copied();
                if took != Some(last.seq.0) {
                    let what = format!(
                        "s{session}: the consumer acknowledged through {}, the registry took {took:?}",
                        last.seq
                    );
                    seen.violate(t, what);
                }
            }
            format!("{read}, acknowledged through {}", last.seq)
        }
        Err(error) => format!("{read}, acknowledge refused: {error}"),
    }
}
