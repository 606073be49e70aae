//! Multi-host mode: several fleet hosts (each a real `Runtime::fleet_host`) in one madsim world, each on a simulated
//! machine of its own, over one shared simulated store that fences by epoch. Clients submit keyed durable inputs
//! (one in four run by the caller through `accept_and_run` when the session is idle) and route each call to the
//! owner they are told of; every host adopts every session. The seed draws the shape and the faults:
//! - a host paused past its lease, then resumed (every task of its machine frozen, timers included: SIGSTOP);
//! - a host crash (its machine killed), and a new process for it a while later (a new host identity);
//! - a partition between one host and the store (every store call of that host fails while it lasts);
//! - clock skew: the hosts start apart (7 to 91 ms), so no two hosts' clocks read the same, and each host's clock
//!   runs fast or slow by up to 5% (drawn per process); a host measures its lease on its own clock from the moment
//!   it sent the claim or renewal, and the store judges expiry on its own. The lease's margin (a tenth of its
//!   length) is the stated bound on drift over one lease: a clock 5% slow still gives its lease up before the store
//!   does.
//!
//! Oracles, judged from what the outside saw (the store's answers, the executors, the callers, the final store):
//! - no write sent at an epoch after a newer epoch of its session was claimed lands, and every write that lands was
//!   made by the host that claimed its epoch;
//! - no input is run after a receipt naming it was committed, on any host;
//! - after the faults heal: every acknowledged input is in the store in a terminal state and in at most one
//!   receipt, and every session has exactly one owner: one live host serves calls for it, every other says
//!   `NotOwner`.
//!
//! Teeth: a host that ignores its lease (the shell's planted `LeaseIgnored`), and a store that does not check the
//! epoch ([`FleetDefect`]).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};

use burrow::store::{BoundaryCommit, LifecycleCommit, SessionImage};
use burrow::{
    BoxFuture, EpochId, Executor, ExecutorError, ExecutorOutput, FleetConfig, HostId, Input, InputId, LeaseConfig,
    LeaseRow, RunId, RunRequest, Runtime, RuntimeConfig, RuntimeError, SessionId, SimStore, Store, StoreError,
};
use burrow_core::ids::Millis;
use burrow_core::input::InputRecord;
use burrow_core::operations::OperationsRegistry;
use burrow_core::session::BoundaryReceipt;
use burrow_env::rand::SeededRng;
use burrow_env::time::{Duration, Instant, sleep, timeout};

use crate::Mode;
use crate::trace::{Line, Run, Verdict};

/// A planted mistake of the store, to show the oracles catch it (teeth). A host that ignores its lease is the
/// shell's own planted mistake (`ShellDefect::LeaseIgnored`), which the teeth tests set through
/// [`run_fleet_configured`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FleetDefect {
    /// The store admits every write whatever its epoch, as if each were made at the lease row's.
    StoreIgnoresEpoch,
    /// The first host's clock runs 30% slow: further than the lease's margin (a tenth of its length) covers.
    ClockPastMargin,
}

impl FleetDefect {
    /// Every defect.
    pub const ALL: [FleetDefect; 2] = [FleetDefect::StoreIgnoresEpoch, FleetDefect::ClockPastMargin];

    /// The command-line name.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            FleetDefect::StoreIgnoresEpoch => "store-ignores-epoch",
            FleetDefect::ClockPastMargin => "clock-past-margin",
        }
    }

    /// Parses a command-line name.
    #[must_use]
    pub fn parse(name: &str) -> Option<FleetDefect> {
        FleetDefect::ALL.into_iter().find(|d| d.name() == name)
    }
}

/// The lease every host uses: 1 s, renewed every 300 ms, a 100 ms margin.
const LEASE: LeaseConfig = LeaseConfig { length_ms: 1_000, renew_every_ms: 300, margin_ms: 100 };
/// The most a host's clock runs fast or slow, in parts per million: 5%, half of what the lease's margin (a tenth of
/// its length) covers, which is the stated bound on drift.
const DRIFT_MAX_PPM: i32 = 50_000;
/// When the faults are over: the liveness phase starts here (simulated milliseconds).
const HEAL_AT_MS: u64 = 8_000;
/// The bound on one client call to a host: a paused host does not answer.
const CALL_BOUND: Duration = Duration::from_millis(1_500);

/// What a seed draws.
#[derive(Clone, Debug)]
struct Shape {
    hosts: usize,
    sessions: u64,
    inputs: u64,
    faults: Vec<(u64, Fault)>,
}

#[derive(Clone, Copy, Debug)]
enum Fault {
    Pause { host: usize, for_ms: u64 },
    Crash { host: usize, restart_after_ms: u64 },
    Partition { host: usize, for_ms: u64 },
}

impl Shape {
    fn of(seed: u64) -> Shape {
        let mut rng = SeededRng::from_seed(seed ^ 0xf1ee_7000);
        let hosts = 2 + usize::from(rng.gen_range(0..3) == 0);
        let sessions = 1 + rng.gen_range(0..3);
        let inputs = 3 + rng.gen_range(0..6);
        let mut faults = Vec::new();
        for _ in 0..rng.gen_range(1..4) {
            let at = 200 + rng.gen_range(0..4_000);
            // The first host claims most sessions: it is the one worth hurting, more often than not.
            let host = if rng.gen_range(0..5) < 3 { 0 } else { rng.gen_range(0..hosts as u64) as usize };
            let fault = match rng.gen_range(0..3) {
                0 => Fault::Pause { host, for_ms: 300 + rng.gen_range(0..2_500) },
                1 => Fault::Crash { host, restart_after_ms: 200 + rng.gen_range(0..2_000) },
                _ => Fault::Partition { host, for_ms: 200 + rng.gen_range(0..2_000) },
            };
            faults.push((at, fault));
        }
        faults.sort_by_key(|(at, _)| *at);
        Shape { hosts, sessions, inputs, faults }
    }
}

/// What the outside saw, in the order it happened (the world is one thread: the order is exact).
#[derive(Default)]
struct World {
    started: Option<Instant>,
    lines: Vec<Line>,
    /// (session, epoch) -> the host that claimed it; session -> newest epoch claimed.
    claims: BTreeMap<(u64, u64), u64>,
    newest: BTreeMap<u64, u64>,
    /// Inputs named by a committed receipt, per session.
    committed: BTreeMap<u64, BTreeSet<u64>>,
    /// Inputs a caller was told were accepted, per session.
    acked: BTreeMap<u64, BTreeSet<u64>>,
    violation: Option<String>,
}

type Shared = Arc<Mutex<World>>;

fn with<T>(world: &Shared, f: impl FnOnce(&mut World) -> T) -> T {
    f(&mut world.lock().unwrap_or_else(std::sync::PoisonError::into_inner))
}

impl World {
    fn note(&mut self, what: String) {
        let t = self.started.map_or(0, |s| s.elapsed().as_millis() as u64);
        self.lines.push(Line { t, what: what.into() });
    }

    fn violated(&mut self, what: String) {
        self.note(format!("VIOLATION {what}"));
        self.violation.get_or_insert(what);
    }
}

/// One host process's view of the shared store: it logs what the outside sees, fails every call while the host is
/// cut off from the store, and (planted) lets a stale write through.
struct HostStore {
    store: SimStore,
    host: u64,
    world: Shared,
    cut_off: Arc<Mutex<bool>>,
    defect: Option<FleetDefect>,
}

impl HostStore {
    fn reachable(&self) -> Result<(), StoreError> {
        if *self.cut_off.lock().unwrap_or_else(std::sync::PoisonError::into_inner) {
            Err(StoreError::Unavailable { message: format!("host {} is cut off from the store", self.host) })
        } else {
            Ok(())
        }
    }

    /// A write: the oracle notes whether a newer epoch was claimed before it was sent, and judges it when it lands.
    fn write<'a>(
        &'a self,
        s: SessionId,
        epoch: EpochId,
        what: &'static str,
        commit: Option<&'a BoundaryReceipt>,
        call: impl FnOnce(EpochId) -> BoxFuture<'a, Result<(), StoreError>> + Send + 'a,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            self.reachable()?;
            let stale = with(&self.world, |w| w.newest.get(&s.0).is_some_and(|n| *n > epoch.0));
            // Planted: the store checks the write against the row as it is, not against the writer's epoch.
            let sent_as = match self.defect {
                Some(FleetDefect::StoreIgnoresEpoch) => {
                    self.store.lease(s).await.ok().and_then(|(row, _)| row).map_or(epoch, |row| row.epoch)
                }
                Some(FleetDefect::ClockPastMargin) | None => epoch,
            };
            let result = call(sent_as).await;
            let host = self.host;
            with(&self.world, |w| match &result {
                Ok(()) => {
                    w.note(format!("host {host} wrote {what} of session {} at epoch {}", s.0, epoch.0));
                    if stale {
                        w.violated(format!(
                            "host {host}'s {what} of session {} at epoch {} landed, sent after a newer epoch was \
                             claimed",
                            s.0, epoch.0
                        ));
                    } else if w.claims.get(&(s.0, epoch.0)) != Some(&host) {
                        w.violated(format!("host {host} wrote session {} at epoch {}, not its claim", s.0, epoch.0));
                    }
                    if let Some(receipt) = commit {
                        w.committed.entry(s.0).or_default().extend(receipt.contributors.iter().map(|i| i.0));
                    }
                }
                Err(StoreError::Fenced(_)) => {
                    w.note(format!("host {host}'s {what} of session {} at epoch {} fenced", s.0, epoch.0));
                }
                Err(error) => w.note(format!("host {host}'s {what} of session {} failed: {error}", s.0)),
            });
            result
        })
    }
}

impl Store for HostStore {
    fn persist_input<'a>(
        &'a self,
        s: SessionId,
        e: EpochId,
        i: &'a InputRecord,
        p: &'a str,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        self.write(s, e, "input", None, move |e| self.store.persist_input(s, e, i, p))
    }

    fn commit_boundary<'a>(
        &'a self,
        s: SessionId,
        e: EpochId,
        c: &'a BoundaryCommit,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        self.write(s, e, "boundary", Some(&c.receipt), move |e| self.store.commit_boundary(s, e, c))
    }

    fn commit_lifecycle<'a>(
        &'a self,
        s: SessionId,
        e: EpochId,
        c: &'a LifecycleCommit,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        self.write(s, e, "lifecycle", None, move |e| self.store.commit_lifecycle(s, e, c))
    }

    fn save_operations<'a>(
        &'a self,
        s: SessionId,
        e: EpochId,
        o: &'a OperationsRegistry,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        self.write(s, e, "operations", None, move |e| self.store.save_operations(s, e, o))
    }

    fn load(&self, s: SessionId) -> BoxFuture<'_, Result<Option<SessionImage>, StoreError>> {
        Box::pin(async move {
            self.reachable()?;
            self.store.load(s).await
        })
    }

    fn input_by_key<'a>(
        &'a self,
        s: SessionId,
        key: &'a str,
    ) -> BoxFuture<'a, Result<Option<InputRecord>, StoreError>> {
        Box::pin(async move {
            self.reachable()?;
            self.store.input_by_key(s, key).await
        })
    }

    fn load_boundary_receipt(
        &self,
        s: SessionId,
        run: RunId,
    ) -> BoxFuture<'_, Result<Option<BoundaryReceipt>, StoreError>> {
        Box::pin(async move {
            self.reachable()?;
            self.store.load_boundary_receipt(s, run).await
        })
    }

    fn sessions(&self) -> BoxFuture<'_, Result<Vec<SessionId>, StoreError>> {
        Box::pin(async move {
            self.reachable()?;
            self.store.sessions().await
        })
    }

    fn claim_lease(&self, s: SessionId, host: HostId, length_ms: u64) -> BoxFuture<'_, Result<LeaseRow, StoreError>> {
        Box::pin(async move {
            self.reachable()?;
            let claimed = self.store.claim_lease(s, host, length_ms).await;
            if let Ok(row) = &claimed {
                with(&self.world, |w| {
                    w.note(format!("host {} claimed session {} at epoch {}", self.host, s.0, row.epoch.0));
                    if w.claims.insert((s.0, row.epoch.0), self.host).is_some() {
                        w.violated(format!("epoch {} of session {} granted twice", row.epoch.0, s.0));
                    }
                    let newest = w.newest.entry(s.0).or_default();
                    *newest = (*newest).max(row.epoch.0);
                });
            }
            claimed
        })
    }

    fn renew_lease(
        &self,
        s: SessionId,
        host: HostId,
        epoch: EpochId,
        length_ms: u64,
    ) -> BoxFuture<'_, Result<LeaseRow, StoreError>> {
        Box::pin(async move {
            self.reachable()?;
            self.store.renew_lease(s, host, epoch, length_ms).await
        })
    }

    fn release_lease(&self, s: SessionId, host: HostId, epoch: EpochId) -> BoxFuture<'_, Result<LeaseRow, StoreError>> {
        Box::pin(async move {
            self.reachable()?;
            self.store.release_lease(s, host, epoch).await
        })
    }

    fn lease(&self, s: SessionId) -> BoxFuture<'_, Result<(Option<LeaseRow>, Millis), StoreError>> {
        Box::pin(async move {
            self.reachable()?;
            self.store.lease(s).await
        })
    }
}

/// The executor of one host process: notes every run it starts, and that no input it runs was committed already.
struct HostExecutor {
    host: u64,
    world: Shared,
    rng: Mutex<SeededRng>,
}

/// What an executor (a loop's, or an `accept_and_run` caller's closure) tells the world as it is handed a run: the
/// oracle that no input runs after its receipt was committed.
fn handed(world: &Shared, host: u64, request: &RunRequest, how: &str) {
    let s = request.session.0;
    let ids: Vec<u64> = request.inputs.iter().map(|i| i.id.0).collect();
    with(world, |w| {
        w.note(format!("host {host} runs {ids:?} of session {s} in run {}{how}", request.run.0));
        let done = w.committed.get(&s).and_then(|c| ids.iter().find(|i| c.contains(i)).copied());
        if let Some(id) = done {
            w.violated(format!("host {host} runs input {id} of session {s} after its receipt was committed"));
        }
    });
}

impl Executor for HostExecutor {
    fn apply(&self, request: RunRequest) -> BoxFuture<'_, Result<ExecutorOutput, ExecutorError>> {
        handed(&self.world, self.host, &request, "");
        let latency = self.rng.lock().unwrap_or_else(std::sync::PoisonError::into_inner).gen_range(5..60);
        Box::pin(async move {
            sleep(Duration::from_millis(latency)).await;
            Ok(ExecutorOutput::result("done"))
        })
    }
}

/// One host process: its machine, its runtime (held by the world, driven on the machine), and its link to the store.
struct Host {
    id: u64,
    machine: burrow_env::runtime::Machine,
    runtime: Option<Runtime>,
    cut_off: Arc<Mutex<bool>>,
}

struct Fleet {
    seed: u64,
    shape: Shape,
    store: SimStore,
    world: Shared,
    hosts: Vec<Host>,
    incarnations: u64,
    defect: Option<FleetDefect>,
    configure: fn(&mut RuntimeConfig),
}

impl Fleet {
    /// Starts a host process in slot `slot` (a new identity each time).
    async fn start_host(&mut self, slot: usize) {
        self.incarnations += 1;
        let id = self.incarnations;
        let machine = burrow_env::runtime::Machine::start();
        let cut_off = Arc::new(Mutex::new(false));
        let store = HostStore {
            store: self.store.clone(),
            host: id,
            world: self.world.clone(),
            cut_off: cut_off.clone(),
            defect: self.defect,
        };
        let executor = Arc::new(HostExecutor {
            host: id,
            world: self.world.clone(),
            rng: Mutex::new(SeededRng::from_seed(self.seed.wrapping_mul(31).wrapping_add(id))),
        });
        let sessions: Vec<SessionId> = (1..=self.shape.sessions).map(SessionId).collect();
        let configure = self.configure;
        let drift = if id == 1 && self.defect == Some(FleetDefect::ClockPastMargin) {
            -300_000
        } else {
            SeededRng::from_seed(self.seed ^ (id << 40)).gen_range(0..2 * DRIFT_MAX_PPM as u64 + 1) as i32
                - DRIFT_MAX_PPM
        };
        let runtime = machine
            .spawn(async move {
                let mut config = RuntimeConfig { clock_drift_ppm: drift, ..RuntimeConfig::default() };
                configure(&mut config);
                let fleet = FleetConfig { host: HostId(id), lease: LEASE };
                let runtime = Runtime::fleet_host(Arc::new(store), config, fleet).expect("a safe lease");
                runtime.adopt(sessions, executor);
                runtime
            })
            .await
            .expect("a fresh machine runs");
        with(&self.world, |w| w.note(format!("host {id} starts, its clock {:+.1}% off", f64::from(drift) / 10_000.0)));
        let host = Host { id, machine, runtime: Some(runtime), cut_off };
        if slot < self.hosts.len() {
            self.hosts[slot] = host;
        } else {
            self.hosts.push(host);
        }
    }
}

/// A client call to `host`, run on its machine and bounded: a paused or dead host does not answer.
fn call<F, Fut, T>(host: &Host, f: F) -> impl std::future::Future<Output = Option<T>> + use<F, Fut, T>
where
    F: FnOnce(Runtime) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let (runtime, machine) = (host.runtime.clone(), host.machine.clone());
    async move {
        let runtime = runtime?;
        timeout(CALL_BOUND, machine.spawn(async move { f(runtime).await })).await.ok().flatten()
    }
}

/// Runs seed `seed` of the multi-host mode.
#[must_use]
pub fn run_fleet(seed: u64, defect: Option<FleetDefect>) -> Run {
    run_fleet_configured(seed, defect, |_| {})
}

/// As [`run_fleet`], with `configure` applied to every host's settings (the teeth tests plant a host's mistakes this
/// way).
///
/// # Panics
/// Outside a `--cfg madsim` build.
#[must_use]
pub fn run_fleet_configured(seed: u64, defect: Option<FleetDefect>, configure: fn(&mut RuntimeConfig)) -> Run {
    if !burrow_env::runtime::SIMULATED {
        panic!("the multi-host mode runs only in a --cfg madsim build");
    }
    let runtime = burrow_env::runtime::Builder::current_thread().seed(seed).build().expect("a simulated runtime");
    let world: Shared = Arc::default();
    let verdict = {
        let world = world.clone();
        runtime.block_on(burrow_env::runtime::isolated(async move { drive(seed, defect, configure, world).await }))
    };
    let lines = with(&world, |w| std::mem::take(&mut w.lines));
    Run {
        mode: Mode::Fleet,
        seed,
        defect: defect.map(FleetDefect::name),
        events: lines.len() as u64,
        trace: lines,
        verdict,
    }
}

async fn drive(seed: u64, defect: Option<FleetDefect>, configure: fn(&mut RuntimeConfig), world: Shared) -> Verdict {
    let shape = Shape::of(seed);
    with(&world, |w| {
        w.started = Some(Instant::now());
        w.note(format!(
            "{} hosts, {} sessions x {} inputs, faults {:?}",
            shape.hosts, shape.sessions, shape.inputs, shape.faults
        ));
    });
    let store = SimStore::new(burrow::store::SimStoreConfig {
        seed,
        write_failure: 0.0,
        latency: Duration::from_millis(1 + seed % 5),
    });
    let mut fleet = Fleet {
        seed,
        shape: shape.clone(),
        store,
        world: world.clone(),
        hosts: Vec::new(),
        incarnations: 0,
        defect,
        configure,
    };
    for slot in 0..shape.hosts {
        fleet.start_host(slot).await;
        // Clock skew: the hosts start apart, so each one's clock reads differently.
        sleep(Duration::from_millis(7 * (seed % 13 + 1))).await;
    }
    let fleet = Arc::new(burrow_env::sync::Mutex::new(fleet));
    let clients: Vec<_> = (1..=shape.sessions)
        .map(|s| burrow_env::task::spawn(client(fleet.clone(), world.clone(), s, shape.inputs, seed)))
        .collect();
    faults(&fleet, &world, &shape).await;
    let until = Instant::now() + Duration::from_millis(HEAL_AT_MS);
    sleep(until.duration_since(Instant::now())).await;
    with(&world, |w| w.note("the faults are over".into()));
    for client in clients {
        if timeout(Duration::from_secs(60), client).await.is_err() {
            return Verdict::Liveness { what: "a client did not get every input acknowledged".into() };
        }
    }
    // Long enough for every session to settle on one live host and drain.
    sleep(Duration::from_millis(LEASE.length_ms * 3)).await;
    let verdict = judge(&fleet, &world, &shape).await;
    let mut fleet = fleet.lock().await;
    for host in &mut fleet.hosts {
        drop(host.runtime.take());
        host.machine.kill();
    }
    verdict
}

/// The seed's faults, each at its time.
async fn faults(fleet: &Arc<burrow_env::sync::Mutex<Fleet>>, world: &Shared, shape: &Shape) {
    let started = Instant::now();
    let mut healing = Vec::new();
    for (at, fault) in &shape.faults {
        let when = started + Duration::from_millis(*at);
        sleep(when.duration_since(Instant::now())).await;
        let mut guard = fleet.lock().await;
        match *fault {
            Fault::Pause { host, for_ms } => {
                let h = &guard.hosts[host];
                with(world, |w| w.note(format!("host {} paused for {for_ms} ms", h.id)));
                h.machine.pause();
                let (machine, id, world) = (h.machine.clone(), h.id, world.clone());
                healing.push(burrow_env::task::spawn(async move {
                    sleep(Duration::from_millis(for_ms)).await;
                    with(&world, |w| w.note(format!("host {id} resumed")));
                    machine.resume();
                }));
            }
            Fault::Crash { host, restart_after_ms } => {
                let h = &mut guard.hosts[host];
                with(world, |w| w.note(format!("host {} crashed", h.id)));
                drop(h.runtime.take());
                h.machine.kill();
                drop(guard);
                sleep(Duration::from_millis(restart_after_ms)).await;
                fleet.lock().await.start_host(host).await;
            }
            Fault::Partition { host, for_ms } => {
                let h = &guard.hosts[host];
                with(world, |w| w.note(format!("host {} cut off from the store for {for_ms} ms", h.id)));
                *h.cut_off.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = true;
                let (cut_off, id, world) = (h.cut_off.clone(), h.id, world.clone());
                healing.push(burrow_env::task::spawn(async move {
                    sleep(Duration::from_millis(for_ms)).await;
                    with(&world, |w| w.note(format!("host {id} reaches the store again")));
                    *cut_off.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = false;
                }));
            }
        }
    }
    for heal in healing {
        let _ = heal.await;
    }
}

/// A client of session `s`: submits its keys one by one, each to the host it was last told owns the session,
/// until each is acknowledged.
async fn client(fleet: Arc<burrow_env::sync::Mutex<Fleet>>, world: Shared, s: u64, inputs: u64, seed: u64) {
    let mut rng = SeededRng::from_seed(seed ^ (s << 20));
    let mut at = rng.gen_range(0..8) as usize;
    for key in 0..inputs {
        sleep(Duration::from_millis(rng.gen_range(0..900))).await;
        // One input in four is run by its caller (accept_and_run) while the session is idle; refused (busy, or its
        // key already known after an attempt that moved), it is submitted as the others are.
        let mut inline = rng.gen_range(0..4) == 0;
        loop {
            let (host, id) = {
                let fleet = fleet.lock().await;
                let slot = at % fleet.hosts.len();
                let host = &fleet.hosts[slot];
                let input = Input::prompt(format!("work {key}")).idempotency_key(format!("k{key}"));
                let (world, host_id) = (world.clone(), host.id);
                let answer: BoxFuture<'static, Option<Result<InputId, RuntimeError>>> = if inline {
                    Box::pin(call(host, move |rt| async move {
                        let run = move |request: RunRequest| async move {
                            handed(&world, host_id, &request, " (inline)");
                            sleep(Duration::from_millis(5)).await;
                            Ok((request.inputs[0].id, ExecutorOutput::result("done")))
                        };
                        rt.accept_and_run(SessionId(s), input, run).await
                    }))
                } else {
                    Box::pin(call(host, move |rt| async move {
                        rt.accept_input(SessionId(s), input).await.map(|a| a.input())
                    }))
                };
                (answer, host.id)
            };
            let answer = host.await;
            if inline && matches!(answer, Some(Err(ref error)) if !matches!(error, RuntimeError::NotOwner { .. })) {
                inline = false;
            }
            match answer {
                Some(Ok(input)) => {
                    with(&world, |w| {
                        w.note(format!("host {id} acknowledged input {} (key k{key}) of session {s}", input.0));
                        w.acked.entry(s).or_default().insert(input.0);
                    });
                    break;
                }
                Some(Err(RuntimeError::NotOwner { owner: Some(owner), .. })) => {
                    let fleet = fleet.lock().await;
                    at = fleet.hosts.iter().position(|h| HostId(h.id) == owner).unwrap_or(at + 1);
                }
                Some(Err(error)) => {
                    with(&world, |w| w.note(format!("host {id} refused key k{key} of session {s}: {error}")));
                    at += 1;
                }
                None => at += 1,
            }
            sleep(Duration::from_millis(50)).await;
        }
    }
}

/// After the faults: every session has exactly one live owner that serves it, and every acknowledged input is in
/// the store, ended, in at most one receipt.
async fn judge(fleet: &Arc<burrow_env::sync::Mutex<Fleet>>, world: &Shared, shape: &Shape) -> Verdict {
    if let Some(violation) = with(world, |w| w.violation.clone()) {
        return Verdict::Safety { property: violation, step: 0 };
    }
    let fleet = fleet.lock().await;
    for s in 1..=shape.sessions {
        let mut serving = Vec::new();
        for host in &fleet.hosts {
            let answer =
                call(host, move |rt| async move { rt.runtime_state(SessionId(s)).await.map(|st| st.active_inputs) })
                    .await;
            if let Some(Ok(active)) = answer {
                serving.push((host.id, active));
            }
        }
        with(world, |w| w.note(format!("session {s} is served by {serving:?}")));
        if serving.len() != 1 {
            return Verdict::Safety {
                property: format!("after the faults session {s} has {} owners serving it, not one", serving.len()),
                step: 0,
            };
        }
        let image = match fleet.store.load(SessionId(s)).await {
            Ok(Some(image)) => image,
            other => {
                return Verdict::Safety { property: format!("session {s} is not in the store: {other:?}"), step: 0 };
            }
        };
        let acked = with(world, |w| w.acked.get(&s).cloned().unwrap_or_default());
        let mut in_receipts: BTreeMap<u64, usize> = BTreeMap::new();
        for receipt in &image.receipts {
            for id in &receipt.contributors {
                *in_receipts.entry(id.0).or_default() += 1;
            }
        }
        for id in acked {
            let row = image.inputs.iter().find(|r| r.record.id == InputId(id));
            let Some(row) = row else {
                return Verdict::Safety {
                    property: format!("acknowledged input {id} of session {s} is lost"),
                    step: 0,
                };
            };
            if !row.record.state.is_terminal() {
                return Verdict::Liveness {
                    what: format!("input {id} of session {s} is still {} after the faults", row.record.state.label()),
                };
            }
            if in_receipts.get(&id).copied().unwrap_or(0) > 1 {
                return Verdict::Safety { property: format!("input {id} of session {s} committed twice"), step: 0 };
            }
        }
    }
    let mut text = String::new();
    let _ = write!(text, "{} hosts started", fleet.incarnations);
    with(world, |w| w.note(text));
    Verdict::Clean
}
