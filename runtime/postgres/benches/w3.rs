//! W3 over PostgreSQL: 1,000 sessions x 20 inputs submitted concurrently on a 2-worker runtime, durable, against the
//! server named by `BURROW_PG_URL` (`cargo xtask test-pg start` starts one on loopback). Besides criterion's
//! figures it prints the store writes per input and how many of them shared each transaction (one round trip).
//! `BURROW_PG_POOL` sets the pool's size (default 8; half of it carries commits).
//!
//! ```text
//! BURROW_PG_URL='host=127.0.0.1 port=... user=burrow dbname=postgres' cargo bench -p burrow-postgres --bench w3
//! ```

use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use burrow::store::{BoundaryCommit, LifecycleCommit, SessionImage};
use burrow::{
    BoxFuture, EpochId, Executor, ExecutorError, ExecutorOutput, Input, RunId, RunRequest, Runtime, SessionId, Store,
    StoreError,
};
use burrow_core::input::InputRecord;
use burrow_core::operations::OperationsRegistry;
use burrow_core::session::BoundaryReceipt;
use burrow_postgres::{PostgresConfig, PostgresStore};
use criterion::{Criterion, Throughput};

const SESSIONS: u64 = 1_000;
const PER_SESSION: usize = 20;

struct Noop;

impl Executor for Noop {
    fn apply(&self, _: RunRequest) -> BoxFuture<'_, Result<ExecutorOutput, ExecutorError>> {
        Box::pin(async { Ok(ExecutorOutput::no_result()) })
    }
}

/// Counts the store's writes, each one round trip to the server.
struct Counted {
    inner: PostgresStore,
    writes: AtomicU64,
}

impl Counted {
    fn count<'a, T: Send + 'a>(&'a self, call: BoxFuture<'a, T>) -> BoxFuture<'a, T> {
        self.writes.fetch_add(1, Ordering::Relaxed);
        call
    }
}

impl Store for Counted {
    fn persist_input<'a>(
        &'a self,
        s: SessionId,
        e: EpochId,
        i: &'a InputRecord,
        p: &'a str,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        self.count(self.inner.persist_input(s, e, i, p))
    }
    fn commit_boundary<'a>(
        &'a self,
        s: SessionId,
        e: EpochId,
        c: &'a BoundaryCommit,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        self.count(self.inner.commit_boundary(s, e, c))
    }
    fn commit_lifecycle<'a>(
        &'a self,
        s: SessionId,
        e: EpochId,
        c: &'a LifecycleCommit,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        self.count(self.inner.commit_lifecycle(s, e, c))
    }
    fn save_operations<'a>(
        &'a self,
        s: SessionId,
        e: EpochId,
        o: &'a OperationsRegistry,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        self.count(self.inner.save_operations(s, e, o))
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
}

async fn many_sessions(runtime: &Runtime) {
    let tasks: Vec<_> = (0..SESSIONS)
        .map(|s| {
            let runtime = runtime.clone();
            burrow_env::task::spawn(async move {
                let session = SessionId(1_000 + s);
                let mut handles = Vec::with_capacity(PER_SESSION);
                for _ in 0..PER_SESSION {
                    let accepted = runtime.accept_input_with_completion(session, Input::prompt("x"));
                    handles.push(accepted.await.expect("accepted").into_parts().1.expect("a handle"));
                }
                for handle in handles {
                    black_box(handle.wait().await.expect("an outcome"));
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("a session's task");
    }
}

fn main() {
    let Some(url) = std::env::var("BURROW_PG_URL").ok().filter(|u| !u.is_empty()) else {
        eprintln!("BURROW_PG_URL is not set: start a server with `cargo xtask test-pg start` and set it");
        return;
    };
    let rt = burrow_env::runtime::Builder::multi_thread(2).build().expect("a runtime");
    let store = rt.block_on(async {
        let mut config = PostgresConfig::new(url);
        config.pool_size = std::env::var("BURROW_PG_POOL").ok().and_then(|v| v.parse().ok()).unwrap_or(8);
        let inner = PostgresStore::connect(config).await.expect("connects");
        Arc::new(Counted { inner, writes: AtomicU64::new(0) })
    });
    let runtime = Runtime::with_store(store.clone());
    rt.block_on(async {
        for s in 0..SESSIONS {
            runtime.attach_executor(SessionId(1_000 + s), Arc::new(Noop)).await.expect("attach");
        }
    });
    let mut c = Criterion::default().configure_from_args().sample_size(10);
    let mut group = c.benchmark_group("W3 1000 sessions x 20 inputs, 2 workers");
    group.throughput(Throughput::Elements(SESSIONS * PER_SESSION as u64));
    // One iteration is seconds long: every sample runs the same small number of them.
    group.sampling_mode(criterion::SamplingMode::Flat);
    let (before, inputs) = (store.writes.load(Ordering::Relaxed), AtomicU64::new(0));
    let (commits_before, transactions_before) = store.inner.commit_counts();
    group.bench_function("postgres", |b| {
        b.iter_custom(|iters| {
            inputs.fetch_add(iters * SESSIONS * PER_SESSION as u64, Ordering::Relaxed);
            let started = std::time::Instant::now();
            rt.block_on(async {
                for _ in 0..iters {
                    many_sessions(&runtime).await;
                }
            });
            started.elapsed()
        });
    });
    group.finish();
    let writes = store.writes.load(Ordering::Relaxed) - before;
    let inputs = inputs.load(Ordering::Relaxed).max(1);
    let (commits, transactions) = store.inner.commit_counts();
    let (commits, transactions) = (commits - commits_before, (transactions - transactions_before).max(1));
    println!(
        "W3 over PostgreSQL: {writes} store writes for {inputs} inputs ({:.2} per input); {commits} commits in \
         {transactions} transactions, {:.1} commits per round trip, {:.3} round trips per input",
        writes as f64 / inputs as f64,
        commits as f64 / transactions as f64,
        transactions as f64 / inputs as f64
    );
    c.final_summary();
}
