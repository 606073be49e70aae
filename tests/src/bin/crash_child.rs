//! The child process of the SIGKILL crash test (tests/tests/store_crash.rs).
//!
//! `crash_child work DB LOG SEED` runs a workload on DB (a SQLite file, or a PostgreSQL database when DB is a
//! connection string) until it is killed: three sessions, each submitting keyed inputs with `Runtime::submit_within`
//! (resubmitted on every start, so a restarted process retries keys an earlier one submitted), an executor with
//! random latency. Sessions keep only [`HISTORY_MAX`] ended inputs in memory, so most retries are answered from the
//! store (specs/input.md#recall). It appends to LOG every accept it was acknowledged (`ack`) and every run the
//! executor started (`apply`), one line each, before acting on it; a SIGKILL loses nothing that reached the log.
//!
//! `crash_child verify DB LOG SEED` restarts on the same store, resubmits every key with a completion handle, lets
//! everything drain, and prints the final rows, receipts and how many waiters resolved.

use std::sync::Arc;

use burrow::{Input, Runtime, RuntimeConfig, SessionConfig, SessionId, SqliteStore, Store, Submitted};
use burrow_env::rand::SeededRng;
use burrow_env::time::{Duration, sleep};
use burrow_tests::child::{HISTORY_MAX, Log, Worker, keys, verify};

/// Sessions in the workload.
const SESSIONS: u64 = 3;
/// How long one submit waits for its outcome before the workload moves on.
const SUBMIT_WAIT: Duration = Duration::from_millis(20);

/// The store DB names: a PostgreSQL database when it is a `postgresql://` URL or a `key=value` connection string,
/// else a SQLite file.
async fn open(db: &str) -> Arc<dyn Store> {
    #[cfg(not(madsim))]
    if db.starts_with("postgresql://") || db.contains('=') {
        let config = burrow_postgres::PostgresConfig::new(db);
        return Arc::new(burrow_postgres::PostgresStore::connect(config).await.expect("the store connects"));
    }
    Arc::new(SqliteStore::open(db).expect("the store opens"))
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, mode, db, log, seed] = &args[..] else {
        eprintln!("usage: crash_child work|verify DB LOG SEED");
        std::process::exit(2);
    };
    let seed: u64 = seed.parse().expect("seed");
    let log = Arc::new(Log::append(log));
    let runtime = burrow_env::runtime::Builder::multi_thread(2).seed(seed).build().expect("runtime");
    let code = runtime.block_on(async move {
        let store = open(db).await;
        let config = RuntimeConfig {
            session: SessionConfig { history_max: HISTORY_MAX, ..SessionConfig::default() },
            ..RuntimeConfig::default()
        };
        let rt = Runtime::with_config(config, Some(store.clone()));
        let worker = Arc::new(Worker::new(log.clone(), None, SeededRng::from_seed(seed)));
        for s in 1..=SESSIONS {
            rt.attach_executor(SessionId(s), worker.clone()).await.expect("attach");
        }
        match mode.as_str() {
            "work" => work(&rt, &log, seed * 6).await,
            "verify" => verify(&rt, &*store, SESSIONS).await,
            _ => 2,
        }
    });
    std::process::exit(code);
}

async fn work(rt: &Runtime, log: &Arc<Log>, start: u64) -> i32 {
    // Each process starts a little further on and overlaps what earlier ones submitted, so keys are both new and
    // retried (deduplicated) across restarts. The sessions submit side by side, each waiting on its own outcomes.
    let keys = keys();
    let start = start % keys;
    let mut tasks = Vec::new();
    for s in 1..=SESSIONS {
        let (rt, log) = (rt.clone(), log.clone());
        tasks.push(burrow_env::task::spawn(async move {
            for i in start.saturating_sub(20)..keys {
                let input = Input::prompt(format!("work {i}")).idempotency_key(format!("k{i}"));
                match rt.submit_within(SessionId(s), input, SUBMIT_WAIT).await {
                    Ok(answer) => {
                        log.line(&format!("ack {s} k{i} {}", answer.input().0));
                        if let Submitted::Finished { outcome, .. } = answer {
                            log.line(&format!("outcome {s} k{i} {:?}", outcome.class()));
                        }
                    }
                    Err(error) => log.line(&format!("refused {s} k{i} {error}")),
                }
            }
        }));
    }
    for task in tasks {
        let _ = task.await;
    }
    // Keep running until killed; a run that was never killed ends here cleanly.
    sleep(Duration::from_secs(3600)).await;
    0
}
