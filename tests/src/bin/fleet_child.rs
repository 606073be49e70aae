//! A host process of the two-process failover test (tests/tests/fleet_failover.rs), over the PostgreSQL database
//! URL names.
//!
//! `fleet_child host URL HOST LOG LEASE_MS` is fleet host HOST: it adopts the sessions 1 to 3 (claiming each that no
//! other host holds, at once or when the holder's lease ends) and, like a client that routes every call to the
//! owner, submits keyed inputs to each session until every key is acknowledged, retrying a key that the host does not
//! own. It then keeps serving until it is killed.
//!
//! `fleet_child verify URL HOST LOG LEASE_MS` adopts every session, waits until it holds them all, resubmits every key
//! with a completion handle plus fresh ones, lets everything drain and prints the final rows, receipts and how many
//! waiters resolved.
//!
//! Every line goes to LOG (opened for appending, one write per line, so the lines of all the processes interleave in
//! the order they were written) before the process acts on it:
//! - `claimed HOST S EPOCH` once a claim of session S returned;
//! - `try HOST N S EPOCH` before the host's N-th store write is sent, `wrote HOST N` or `fenced HOST N` after;
//! - `apply HOST S RUN IDS` when the executor starts a run;
//! - `ack HOST S KEY ID` when a submit was acknowledged; `moved HOST S` when a call was refused as not the owner;
//! - `done HOST` once every key was acknowledged.

#[cfg(madsim)]
fn main() {}

#[cfg(not(madsim))]
fn main() {
    real::main();
}

#[cfg(not(madsim))]
mod real {
    use std::collections::BTreeSet;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::{Arc, Mutex};

    use burrow::store::{BoundaryCommit, LifecycleCommit, SessionImage};
    use burrow::{
        BoxFuture, EpochId, FleetConfig, HostId, Input, LeaseConfig, LeaseRow, RunId, Runtime, RuntimeConfig,
        RuntimeError, SessionConfig, SessionId, Store, StoreError,
    };
    use burrow_core::ids::Millis;
    use burrow_core::input::InputRecord;
    use burrow_core::operations::OperationsRegistry;
    use burrow_core::session::BoundaryReceipt;
    use burrow_env::rand::SeededRng;
    use burrow_env::time::{Duration, sleep};
    use burrow_postgres::{PostgresConfig, PostgresStore};
    use burrow_tests::child::{Log, Worker, keys, verify};

    /// Sessions in the workload.
    const SESSIONS: u64 = 3;

    /// The store as one host sees it: every write and claim logged around the call.
    struct Logged {
        inner: PostgresStore,
        host: u64,
        log: Arc<Log>,
        writes: AtomicU64,
    }

    impl Logged {
        fn write<'a>(
            &'a self,
            session: SessionId,
            epoch: EpochId,
            call: BoxFuture<'a, Result<(), StoreError>>,
        ) -> BoxFuture<'a, Result<(), StoreError>> {
            let n = self.writes.fetch_add(1, Ordering::SeqCst);
            let host = self.host;
            self.log.line(&format!("try {host} {n} {} {}", session.0, epoch.0));
            Box::pin(async move {
                let result = call.await;
                match &result {
                    Ok(()) => self.log.line(&format!("wrote {host} {n}")),
                    Err(StoreError::Fenced(_)) => self.log.line(&format!("fenced {host} {n}")),
                    Err(other) => self.log.line(&format!("failed {host} {n} {other}")),
                }
                result
            })
        }
    }

    impl Store for Logged {
        fn persist_input<'a>(
            &'a self,
            s: SessionId,
            e: EpochId,
            i: &'a InputRecord,
            p: &'a str,
        ) -> BoxFuture<'a, Result<(), StoreError>> {
            self.write(s, e, self.inner.persist_input(s, e, i, p))
        }
        fn commit_boundary<'a>(
            &'a self,
            s: SessionId,
            e: EpochId,
            c: &'a BoundaryCommit,
        ) -> BoxFuture<'a, Result<(), StoreError>> {
            self.write(s, e, self.inner.commit_boundary(s, e, c))
        }
        fn commit_lifecycle<'a>(
            &'a self,
            s: SessionId,
            e: EpochId,
            c: &'a LifecycleCommit,
        ) -> BoxFuture<'a, Result<(), StoreError>> {
            self.write(s, e, self.inner.commit_lifecycle(s, e, c))
        }
        fn save_operations<'a>(
            &'a self,
            s: SessionId,
            e: EpochId,
            o: &'a OperationsRegistry,
        ) -> BoxFuture<'a, Result<(), StoreError>> {
            self.write(s, e, self.inner.save_operations(s, e, o))
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
            run: RunId,
        ) -> BoxFuture<'_, Result<Option<BoundaryReceipt>, StoreError>> {
            self.inner.load_boundary_receipt(s, run)
        }
        fn sessions(&self) -> BoxFuture<'_, Result<Vec<SessionId>, StoreError>> {
            self.inner.sessions()
        }
        fn claim_lease(
            &self,
            s: SessionId,
            host: HostId,
            length_ms: u64,
        ) -> BoxFuture<'_, Result<LeaseRow, StoreError>> {
            Box::pin(async move {
                let claimed = self.inner.claim_lease(s, host, length_ms).await;
                if let Ok(row) = &claimed {
                    self.log.line(&format!("claimed {} {} {}", self.host, s.0, row.epoch.0));
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
            self.inner.renew_lease(s, host, epoch, length_ms)
        }
        fn release_lease(
            &self,
            s: SessionId,
            host: HostId,
            epoch: EpochId,
        ) -> BoxFuture<'_, Result<LeaseRow, StoreError>> {
            self.inner.release_lease(s, host, epoch)
        }
        fn lease(&self, s: SessionId) -> BoxFuture<'_, Result<(Option<LeaseRow>, Millis), StoreError>> {
            self.inner.lease(s)
        }
    }

    pub(crate) fn main() {
        let args: Vec<String> = std::env::args().collect();
        let [_, mode, url, host, log, lease_ms] = &args[..] else {
            eprintln!("usage: fleet_child host|verify URL HOST LOG LEASE_MS");
            std::process::exit(2);
        };
        let host: u64 = host.parse().expect("host");
        let length_ms: u64 = lease_ms.parse().expect("lease length");
        let log = Arc::new(Log::append(log));
        let runtime = burrow_env::runtime::Builder::multi_thread(2).seed(host).build().expect("runtime");
        let code = runtime.block_on(async move {
            let inner = PostgresStore::connect(PostgresConfig::new(url.clone())).await.expect("the store connects");
            let store = Arc::new(Logged { inner, host, log: log.clone(), writes: AtomicU64::new(0) });
            let lease = LeaseConfig { length_ms, renew_every_ms: length_ms * 3 / 10, margin_ms: length_ms / 10 };
            let config = RuntimeConfig {
                session: SessionConfig { history_max: burrow_tests::child::HISTORY_MAX, ..SessionConfig::default() },
                ..RuntimeConfig::default()
            };
            let rt = Runtime::fleet_host(store.clone(), config, FleetConfig { host: HostId(host), lease })
                .expect("a safe lease");
            let worker = Arc::new(Worker::new(log.clone(), Some(host), SeededRng::from_seed(host)));
            let sessions: Vec<SessionId> = (1..=SESSIONS).map(SessionId).collect();
            rt.adopt(sessions.iter().copied(), worker);
            match mode.as_str() {
                "host" => work(&rt, &log, host).await,
                "verify" => {
                    for _ in 0..3000 {
                        if sessions.iter().all(|s| rt.hosts(*s)) {
                            break;
                        }
                        sleep(Duration::from_millis(10)).await;
                    }
                    verify(&rt, &*store, SESSIONS).await
                }
                _ => 2,
            }
        });
        std::process::exit(code);
    }

    /// Submits every key to every session, retrying a key while this host does not own its session; then keeps
    /// asking after each session, so that a host that loses one says so.
    async fn work(rt: &Runtime, log: &Arc<Log>, host: u64) -> i32 {
        let told = Arc::new(Mutex::new(BTreeSet::new()));
        let moved = |s: u64| {
            if told.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(s) {
                log.line(&format!("moved {host} {s}"));
            }
        };
        let mut tasks = Vec::new();
        for s in 1..=SESSIONS {
            let (rt, log, told) = (rt.clone(), log.clone(), told.clone());
            tasks.push(burrow_env::task::spawn(async move {
                for i in 0..keys() {
                    loop {
                        let input = Input::prompt(format!("work {i}")).idempotency_key(format!("k{i}"));
                        match rt.submit_within(SessionId(s), input, Duration::from_millis(20)).await {
                            Ok(answer) => {
                                log.line(&format!("ack {host} {s} k{i} {}", answer.input().0));
                                // Paced like a client with other work, so the faults land on a host mid-workload.
                                sleep(Duration::from_millis(10)).await;
                                break;
                            }
                            Err(RuntimeError::NotOwner { .. }) => {
                                if told.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(s) {
                                    log.line(&format!("moved {host} {s}"));
                                }
                                sleep(Duration::from_millis(20)).await;
                            }
                            Err(_) => sleep(Duration::from_millis(20)).await,
                        }
                    }
                }
            }));
        }
        for task in tasks {
            let _ = task.await;
        }
        log.line(&format!("done {host}"));
        loop {
            for s in 1..=SESSIONS {
                if let Err(RuntimeError::NotOwner { .. }) = rt.runtime_state(SessionId(s)).await {
                    moved(s);
                }
            }
            sleep(Duration::from_millis(50)).await;
        }
    }
}
