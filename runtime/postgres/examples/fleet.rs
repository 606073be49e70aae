//! Two hosts of a fleet in one process, over PostgreSQL when `BURROW_PG_URL` names a server (else over a memory
//! store): host A claims and serves N sessions, host B adopts the same sessions, then A dies without a word (its
//! runtime is dropped: no renewal, no release). B takes every session over as its lease ends; the example prints how
//! long each took, against the target of the lease's length plus 2 s.
//!
//! ```text
//! cargo run --release -p burrow-postgres --example fleet -- [--sessions N] [--lease-ms MS]
//! ```

use std::sync::Arc;
use std::time::Duration;

use burrow::{
    BoxFuture, Executor, ExecutorError, ExecutorOutput, FleetConfig, HostId, Input, LeaseConfig, MemoryStore,
    RunRequest, Runtime, RuntimeConfig, SessionId, Store,
};
use burrow_postgres::{PostgresConfig, PostgresStore};

/// Echoes the first input's payload.
struct Echo;

impl Executor for Echo {
    fn apply(&self, request: RunRequest) -> BoxFuture<'_, Result<ExecutorOutput, ExecutorError>> {
        Box::pin(async move { Ok(ExecutorOutput::result(request.inputs[0].payload.clone())) })
    }
}

fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    burrow_env::runtime::Builder::multi_thread(2).build()?.block_on(run())
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let sessions = arg("--sessions", 1_000);
    let length_ms = arg("--lease-ms", 10_000);
    let lease =
        LeaseConfig { length_ms, renew_every_ms: (length_ms * 3 / 10).max(1), margin_ms: (length_ms / 10).max(1) };
    let store: Arc<dyn Store> = match std::env::var("BURROW_PG_URL") {
        Ok(url) if !url.is_empty() => {
            println!("store: PostgreSQL");
            let mut config = PostgresConfig::new(url);
            config.pool_size = 16;
            Arc::new(PostgresStore::connect(config).await?)
        }
        _ => {
            println!("store: memory (set BURROW_PG_URL for PostgreSQL)");
            Arc::new(MemoryStore::new())
        }
    };
    let ids: Vec<SessionId> = (1..=sessions).map(|n| SessionId(1_000_000 + n)).collect();
    let host =
        |id| Runtime::fleet_host(store.clone(), RuntimeConfig::default(), FleetConfig { host: HostId(id), lease });

    let a = host(0xa)?;
    for id in &ids {
        a.attach_executor(*id, Arc::new(Echo)).await?;
        a.accept_input(*id, Input::prompt("hello")).await?;
    }
    println!("host A serves {sessions} sessions (lease {length_ms} ms, renewed every {} ms)", lease.renew_every_ms);
    let b = host(0xb)?;
    b.adopt(ids.iter().copied(), Arc::new(Echo));
    let refused = b.accept_input(ids[0], Input::prompt("x")).await.expect_err("A owns it");
    println!("a call on host B: {refused}");

    burrow_env::time::sleep(Duration::from_millis(length_ms / 2)).await;
    drop(a);
    let died = burrow_env::time::Instant::now();
    println!("host A died");
    let mut taken: Vec<Option<Duration>> = vec![None; ids.len()];
    let limit = Duration::from_millis(length_ms) + Duration::from_secs(10);
    while taken.iter().any(Option::is_none) && died.elapsed() < limit {
        for (slot, id) in taken.iter_mut().zip(&ids) {
            if slot.is_none() && b.hosts(*id) {
                *slot = Some(died.elapsed());
            }
        }
        burrow_env::time::sleep(Duration::from_millis(20)).await;
    }
    let mut times: Vec<Duration> = taken.iter().flatten().copied().collect();
    times.sort();
    let missing = taken.len() - times.len();
    let at = |q: f64| times.get(((times.len() as f64 - 1.0) * q).round() as usize).copied().unwrap_or_default();
    println!(
        "taken over by B: {} of {} sessions; after A died: min {:?}, p50 {:?}, p90 {:?}, p99 {:?}, max {:?}",
        times.len(),
        taken.len(),
        at(0.0),
        at(0.5),
        at(0.9),
        at(0.99),
        at(1.0)
    );
    let target = Duration::from_millis(length_ms) + Duration::from_secs(2);
    let within = times.iter().filter(|t| **t <= target).count();
    println!("within the lease's length + 2 s ({target:?}): {within} of {}; never: {missing}", taken.len());
    // Serving again: an input on the last session taken over runs on B.
    if let Some((_, id)) = taken.iter().zip(&ids).filter(|(t, _)| t.is_some()).max_by_key(|(t, _)| **t) {
        let handle = b.accept_input_with_completion(*id, Input::prompt("served by B")).await?.into_parts().1;
        let outcome = handle.expect("a handle").wait_timeout(Duration::from_secs(10)).await?;
        println!("session {id} on B: {outcome:?}");
    }
    Ok(())
}
