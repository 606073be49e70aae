//! The simulated store: the memory store's durable contents behind writes that take time, can fail, and are lost
//! when the simulated process crashes before they are synced (SPEC 5).
//!
//! Writes are group-committed, as the SQLite store's are: a write joins the open batch, or opens one whose sync is
//! due one latency later; every write that arrives before that sync joins it. At the sync the whole batch lands at
//! once, in the order its writes arrived, or fails at once (the failure is drawn once per batch), and only then does
//! each of its writers learn its result. A crash loses exactly the batches whose sync had not come: their writes
//! never land, and whoever still awaits them gets an error (the process that made them is gone). A store value
//! belongs to one process: after a crash, writes through the values opened before it fail as well (a dead process
//! writes nothing), and the restarted process reads and writes through [`SimStore::reopen`]. Failures are drawn
//! from a seeded generator, so a simulation replays exactly. With no latency, each write is a batch of its own,
//! synced as it is made.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};

use burrow_core::ids::{EpochId, Millis, RunId, SessionId};
use burrow_core::input::InputRecord;
use burrow_core::lease::{HostId, LeaseRow};
use burrow_core::operations::OperationsRegistry;
use burrow_core::session::BoundaryReceipt;
use burrow_env::rand::SeededRng;
use burrow_env::time::{Duration, Instant};

use super::{BoundaryCommit, LifecycleCommit, MemoryStore, SessionImage, Store, StoreError};
use crate::BoxFuture;

/// How the simulated store misbehaves. The default never fails and takes no time.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SimStoreConfig {
    /// The seed of the failure draws.
    pub seed: u64,
    /// Probability that a batch fails (and changes nothing): drawn once per batch, for all its writes.
    pub write_failure: f64,
    /// How long after a batch opens it is synced: the longest a write waits before it lands. Writes that arrive in
    /// that time join the batch.
    pub latency: Duration,
}

impl Default for SimStoreConfig {
    fn default() -> Self {
        SimStoreConfig { seed: 0, write_failure: 0.0, latency: Duration::ZERO }
    }
}

/// One write, owned until its batch lands.
#[derive(Debug)]
enum Pending {
    Input(SessionId, EpochId, InputRecord, String),
    Boundary(SessionId, EpochId, BoundaryCommit),
    Lifecycle(SessionId, EpochId, LifecycleCommit),
    Operations(SessionId, EpochId, Box<OperationsRegistry>),
}

impl Pending {
    fn what(&self) -> &'static str {
        match self {
            Pending::Input(..) => "input write",
            Pending::Boundary(..) => "boundary commit",
            Pending::Lifecycle(..) => "lifecycle commit",
            Pending::Operations(..) => "operations save",
        }
    }

    /// Lands the write, fenced as it lands: a write made before another host claimed the session and synced after
    /// is refused then (specs/lease.md).
    fn land(&self, durable: &MemoryStore) -> Result<(), StoreError> {
        match self {
            Pending::Input(session, epoch, record, payload) => {
                durable.persist_input_now(*session, *epoch, record, payload)
            }
            Pending::Boundary(session, epoch, commit) => durable.commit_boundary_now(*session, *epoch, commit),
            Pending::Lifecycle(session, epoch, commit) => durable.commit_lifecycle_now(*session, *epoch, commit),
            Pending::Operations(session, epoch, registry) => durable.save_operations_now(*session, *epoch, registry),
        }
    }
}

/// Writes that will be synced together.
#[derive(Debug)]
struct Batch {
    sync_at: Instant,
    /// Drawn when the batch opened: every write in it fails together.
    fails: bool,
    /// The incarnation of the process whose writes these are.
    incarnation: u64,
    /// (write number, write), in arrival order.
    writes: Vec<(u64, Pending)>,
}

#[derive(Debug)]
struct SimState {
    rng: SeededRng,
    config: SimStoreConfig,
    /// Bumped by every crash; a batch of an earlier incarnation does not land.
    incarnation: u64,
    writes: u64,
    failed: u64,
    lost: u64,
    syncs: u64,
    /// Batches whose sync has not happened, oldest first; only the last can still take writes.
    batches: VecDeque<Batch>,
    /// Results of synced writes, by write number, until their writers take them.
    results: BTreeMap<u64, Result<(), StoreError>>,
}

impl SimState {
    /// Syncs every batch due by `now`, oldest first: it lands whole, fails whole, or (made by a process that has
    /// crashed since) is lost whole.
    fn sync_due(&mut self, now: Instant, durable: &MemoryStore) {
        while self.batches.front().is_some_and(|b| b.sync_at <= now) {
            let batch = self.batches.pop_front().expect("checked");
            let size = batch.writes.len() as u64;
            for (number, write) in batch.writes {
                let what = write.what();
                let result = if batch.incarnation != self.incarnation {
                    Err(StoreError::unavailable(format!("{what} lost: the process crashed before it was synced")))
                } else if batch.fails {
                    Err(StoreError::unavailable(format!("simulated {what} failure")))
                } else {
                    write.land(durable)
                };
                self.results.insert(number, result);
            }
            if batch.incarnation != self.incarnation {
                self.lost += size;
            } else if batch.fails {
                self.failed += size;
            } else {
                self.syncs += 1;
            }
        }
    }

    fn draw_failure(&mut self) -> bool {
        let p = self.config.write_failure;
        p > 0.0 && self.rng.gen_bool(p)
    }
}

/// A store for simulations. Clones share the same contents and fault state.
#[derive(Clone, Debug)]
pub struct SimStore {
    durable: MemoryStore,
    state: Arc<Mutex<SimState>>,
    /// The incarnation of the process this value belongs to.
    process: u64,
}

impl SimStore {
    /// A simulated store, empty, misbehaving as `config` says.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::Arc;
    /// use burrow::store::{SimStore, SimStoreConfig};
    /// use burrow::{Input, Runtime, RuntimeError, SessionId};
    /// use burrow_env::time::{Duration, Instant};
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # burrow_env::runtime::block_on_current_thread(async {
    /// let config = SimStoreConfig { seed: 7, latency: Duration::from_millis(1), ..SimStoreConfig::default() };
    /// let store = SimStore::new(config);
    /// let runtime = Runtime::with_store(Arc::new(store.clone()));
    /// let session = SessionId(1);
    /// runtime.prepare(session).await?;
    ///
    /// store.set_write_failure(1.0);
    /// let err = runtime.accept_input(session, Input::prompt("lost")).await.unwrap_err();
    /// assert!(matches!(err, RuntimeError::Store { .. }), "{err}");
    /// assert!(runtime.list_active_inputs(session).await?.is_empty(), "nothing was admitted");
    ///
    /// store.set_write_failure(0.0);
    /// runtime.accept_input(session, Input::prompt("kept")).await?;
    /// let (_, failed, lost) = store.counters();
    /// assert_eq!((failed, lost), (1, 0));
    /// # Ok(())
    /// # })
    /// # }
    /// ```
    #[must_use]
    pub fn new(config: SimStoreConfig) -> SimStore {
        let state = SimState {
            rng: SeededRng::from_seed(config.seed),
            config,
            incarnation: 0,
            writes: 0,
            failed: 0,
            lost: 0,
            syncs: 0,
            batches: VecDeque::new(),
            results: BTreeMap::new(),
        };
        SimStore { durable: MemoryStore::new(), state: Arc::new(Mutex::new(state)), process: 0 }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, SimState> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The process crashed: writes that have not landed yet never will, and no value opened before now writes
    /// again.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::Arc;
    /// use burrow::store::{SimStore, SimStoreConfig};
    /// use burrow::{Input, InputState, Runtime, RuntimeError, SessionId};
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # burrow_env::runtime::block_on_current_thread(async {
    /// let store = SimStore::new(SimStoreConfig::default());
    /// let session = SessionId(1);
    /// let runtime = Runtime::with_store(Arc::new(store.clone()));
    /// runtime.prepare(session).await?;
    /// let input = runtime.accept_input(session, Input::prompt("landed")).await?.input();
    ///
    /// store.crash();
    /// let err = runtime.accept_input(session, Input::prompt("too late")).await.unwrap_err();
    /// assert!(matches!(err, RuntimeError::Store { .. }), "a crashed process writes nothing: {err}");
    /// drop(runtime);
    ///
    /// let restarted = Runtime::with_store(Arc::new(store.reopen()));
    /// restarted.prepare(session).await?;
    /// let view = restarted.input_state(session, input).await?.expect("it landed before the crash");
    /// assert_eq!(view.state, InputState::Queued);
    /// # Ok(())
    /// # })
    /// # }
    /// ```
    pub fn crash(&self) {
        let mut s = self.state();
        // What was due is synced: only the batches whose sync had not come are lost.
        s.sync_due(Instant::now(), &self.durable);
        s.incarnation += 1;
    }

    /// The same durable contents for the process that starts after the last crash (see [`SimStore::crash`]).
    #[must_use]
    pub fn reopen(&self) -> SimStore {
        let process = self.state().incarnation;
        SimStore { durable: self.durable.clone(), state: self.state.clone(), process }
    }

    /// Changes the probability that a batch fails, from the next batch on. A probability of zero (a liveness phase
    /// turns faults off) also spares the batches not yet synced: no write fails after it.
    pub fn set_write_failure(&self, probability: f64) {
        let mut s = self.state();
        s.config.write_failure = probability;
        if probability <= 0.0 {
            for batch in &mut s.batches {
                batch.fails = false;
            }
        }
    }

    /// (writes attempted, writes failed, writes lost to a crash), counted since the store was made, across every
    /// value that shares it.
    #[must_use]
    pub fn counters(&self) -> (u64, u64, u64) {
        let s = self.state();
        (s.writes, s.failed, s.lost)
    }

    /// Batches synced so far (each landed whole).
    #[must_use]
    pub fn syncs(&self) -> u64 {
        self.state().syncs
    }

    /// Syncs what is due before a read, so a read sees every batch whose sync time has come (even one whose writers
    /// have not woken yet, or stopped waiting).
    fn settle(&self) {
        self.state().sync_due(Instant::now(), &self.durable);
    }

    /// Runs one write through the fault model: it joins the open batch (or opens one), and returns once that batch
    /// was synced, failed or lost.
    fn write(&self, write: Pending) -> BoxFuture<'_, Result<(), StoreError>> {
        let mut s = self.state();
        if s.incarnation != self.process {
            let error = StoreError::unavailable(format!("{} from a process that crashed", write.what()));
            return Box::pin(std::future::ready(Err(error)));
        }
        s.writes += 1;
        let number = s.writes;
        let latency = s.config.latency;
        let now = Instant::now();
        let joins = s.batches.back().is_some_and(|b| b.sync_at > now && !latency.is_zero());
        if !joins {
            let (fails, incarnation) = (s.draw_failure(), s.incarnation);
            s.batches.push_back(Batch { sync_at: now + latency, fails, incarnation, writes: Vec::new() });
        }
        let batch = s.batches.back_mut().expect("one is open");
        batch.writes.push((number, write));
        let sync_at = batch.sync_at;
        if latency.is_zero() {
            s.sync_due(now, &self.durable);
            let result = s.results.remove(&number).expect("synced just now");
            return Box::pin(std::future::ready(result));
        }
        drop(s);
        Box::pin(async move {
            burrow_env::time::sleep_until(sync_at).await;
            let mut s = self.state();
            s.sync_due(Instant::now().max(sync_at), &self.durable);
            s.results.remove(&number).expect("its batch was synced, failed or lost")
        })
    }
}

impl Store for SimStore {
    fn persist_input<'a>(
        &'a self,
        session: SessionId,
        epoch: EpochId,
        input: &'a InputRecord,
        payload: &'a str,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        self.write(Pending::Input(session, epoch, input.clone(), payload.to_owned()))
    }

    fn commit_boundary<'a>(
        &'a self,
        session: SessionId,
        epoch: EpochId,
        commit: &'a BoundaryCommit,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        self.write(Pending::Boundary(session, epoch, commit.clone()))
    }

    fn commit_lifecycle<'a>(
        &'a self,
        session: SessionId,
        epoch: EpochId,
        commit: &'a LifecycleCommit,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        self.write(Pending::Lifecycle(session, epoch, commit.clone()))
    }

    fn save_operations<'a>(
        &'a self,
        session: SessionId,
        epoch: EpochId,
        operations: &'a OperationsRegistry,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        self.write(Pending::Operations(session, epoch, Box::new(operations.clone())))
    }

    fn load(&self, session: SessionId) -> BoxFuture<'_, Result<Option<SessionImage>, StoreError>> {
        self.settle();
        self.durable.load(session)
    }

    fn input_by_key<'a>(
        &'a self,
        session: SessionId,
        key: &'a str,
    ) -> BoxFuture<'a, Result<Option<InputRecord>, StoreError>> {
        self.settle();
        self.durable.input_by_key(session, key)
    }

    fn load_boundary_receipt(
        &self,
        session: SessionId,
        run: RunId,
    ) -> BoxFuture<'_, Result<Option<BoundaryReceipt>, StoreError>> {
        self.settle();
        self.durable.load_boundary_receipt(session, run)
    }

    fn sessions(&self) -> BoxFuture<'_, Result<Vec<SessionId>, StoreError>> {
        self.settle();
        self.durable.sessions()
    }

    // The lease calls take effect at once on the durable contents, by the simulated clock: the store is one
    // machine, and a request is decided when it reaches it.
    fn claim_lease(
        &self,
        session: SessionId,
        host: HostId,
        length_ms: u64,
    ) -> BoxFuture<'_, Result<LeaseRow, StoreError>> {
        self.settle();
        self.durable.claim_lease(session, host, length_ms)
    }

    fn renew_lease(
        &self,
        session: SessionId,
        host: HostId,
        epoch: EpochId,
        length_ms: u64,
    ) -> BoxFuture<'_, Result<LeaseRow, StoreError>> {
        self.settle();
        self.durable.renew_lease(session, host, epoch, length_ms)
    }

    fn release_lease(
        &self,
        session: SessionId,
        host: HostId,
        epoch: EpochId,
    ) -> BoxFuture<'_, Result<LeaseRow, StoreError>> {
        self.settle();
        self.durable.release_lease(session, host, epoch)
    }

    fn lease(&self, session: SessionId) -> BoxFuture<'_, Result<(Option<LeaseRow>, Millis), StoreError>> {
        self.settle();
        self.durable.lease(session)
    }
}
