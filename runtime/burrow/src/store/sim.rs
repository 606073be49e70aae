//! The simulated store: the memory store's durable contents behind writes that take time, can fail, and are lost
//! when the simulated process crashes before they land (SPEC 5).
//!
//! A write waits its latency on burrow-env's clock, then lands atomically, then returns. A write still waiting when
//! [`SimStore::crash`] is called never lands and returns an error to whoever still awaits it: the process that made
//! it is gone. A store value belongs to one process: after a crash, writes through the values opened before it fail
//! as well (a dead process writes nothing), and the restarted process reads and writes through
//! [`SimStore::reopen`]. Failures are drawn from a seeded generator, so a simulation replays exactly.

use std::sync::{Arc, Mutex};

use burrow_core::ids::{RunId, SessionId};
use burrow_core::input::InputRecord;
use burrow_core::operations::OperationsRegistry;
use burrow_core::session::BoundaryReceipt;
use burrow_env::rand::SeededRng;
use burrow_env::time::Duration;

use super::{BoundaryCommit, LifecycleCommit, MemoryStore, SessionImage, Store, StoreError};
use crate::BoxFuture;

/// How the simulated store misbehaves. The default never fails and takes no time.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SimStoreConfig {
    /// The seed of the failure draws.
    pub seed: u64,
    /// Probability that a write fails (and changes nothing).
    pub write_failure: f64,
    /// How long a write takes before it lands.
    pub latency: Duration,
}

impl Default for SimStoreConfig {
    fn default() -> Self {
        SimStoreConfig { seed: 0, write_failure: 0.0, latency: Duration::ZERO }
    }
}

#[derive(Debug)]
struct SimState {
    rng: SeededRng,
    config: SimStoreConfig,
    /// Bumped by every crash; a write that started in an earlier incarnation does not land.
    incarnation: u64,
    writes: u64,
    failed: u64,
    lost: u64,
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
    /// use burrow_env::time::Duration;
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
        let state =
            SimState { rng: SeededRng::from_seed(config.seed), config, incarnation: 0, writes: 0, failed: 0, lost: 0 };
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
        self.state().incarnation += 1;
    }

    /// The same durable contents for the process that starts after the last crash (see [`SimStore::crash`]).
    #[must_use]
    pub fn reopen(&self) -> SimStore {
        let process = self.state().incarnation;
        SimStore { durable: self.durable.clone(), state: self.state.clone(), process }
    }

    /// Changes the probability that a write fails, from the next write on (a liveness phase turns faults off).
    pub fn set_write_failure(&self, probability: f64) {
        self.state().config.write_failure = probability;
    }

    /// (writes attempted, writes failed, writes lost to a crash), counted since the store was made, across every
    /// value that shares it.
    #[must_use]
    pub fn counters(&self) -> (u64, u64, u64) {
        let s = self.state();
        (s.writes, s.failed, s.lost)
    }

    /// Runs one write through the fault model, then `land` if it survives.
    fn write<'a>(
        &'a self,
        what: &'static str,
        land: impl FnOnce(&'a MemoryStore) -> BoxFuture<'a, Result<(), StoreError>> + Send + 'a,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        let (fails, incarnation, latency) = {
            let mut s = self.state();
            if s.incarnation != self.process {
                return Box::pin(
                    async move { Err(StoreError::unavailable(format!("{what} from a process that crashed"))) },
                );
            }
            s.writes += 1;
            let p = s.config.write_failure;
            let fails = p > 0.0 && s.rng.gen_bool(p);
            if fails {
                s.failed += 1;
            }
            (fails, s.incarnation, s.config.latency)
        };
        Box::pin(async move {
            if !latency.is_zero() {
                burrow_env::time::sleep(latency).await;
            }
            if fails {
                return Err(StoreError::unavailable(format!("simulated {what} failure")));
            }
            {
                let mut s = self.state();
                if s.incarnation != incarnation {
                    s.lost += 1;
                    return Err(StoreError::unavailable(format!("{what} lost: the process crashed before it landed")));
                }
            }
            land(&self.durable).await
        })
    }
}

impl Store for SimStore {
    fn persist_input<'a>(
        &'a self,
        session: SessionId,
        input: &'a InputRecord,
        payload: &'a str,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        self.write("input write", move |m| m.persist_input(session, input, payload))
    }

    fn commit_boundary<'a>(
        &'a self,
        session: SessionId,
        commit: &'a BoundaryCommit,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        self.write("boundary commit", move |m| m.commit_boundary(session, commit))
    }

    fn commit_lifecycle<'a>(
        &'a self,
        session: SessionId,
        commit: &'a LifecycleCommit,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        self.write("lifecycle commit", move |m| m.commit_lifecycle(session, commit))
    }

    fn save_operations<'a>(
        &'a self,
        session: SessionId,
        operations: &'a OperationsRegistry,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        self.write("operations save", move |m| m.save_operations(session, operations))
    }

    fn load(&self, session: SessionId) -> BoxFuture<'_, Result<Option<SessionImage>, StoreError>> {
        self.durable.load(session)
    }

    fn input_by_key<'a>(
        &'a self,
        session: SessionId,
        key: &'a str,
    ) -> BoxFuture<'a, Result<Option<InputRecord>, StoreError>> {
        self.durable.input_by_key(session, key)
    }

    fn load_boundary_receipt(
        &self,
        session: SessionId,
        run: RunId,
    ) -> BoxFuture<'_, Result<Option<BoundaryReceipt>, StoreError>> {
        self.durable.load_boundary_receipt(session, run)
    }

    fn sessions(&self) -> BoxFuture<'_, Result<Vec<SessionId>, StoreError>> {
        self.durable.sessions()
    }
}
