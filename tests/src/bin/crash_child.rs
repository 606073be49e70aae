//! The child process of the SIGKILL crash test (tests/tests/store_crash.rs).
//!
//! `crash_child work DB LOG SEED` runs a workload on the SQLite file DB until it is killed: three sessions, each
//! submitting keyed inputs with `Runtime::submit_within` (resubmitted on every start, so a restarted process
//! retries keys an earlier one submitted), an executor with random latency. Sessions keep only
//! [`HISTORY_MAX`] ended inputs in memory, so most retries are answered from the store (specs/input.md#recall). It appends to LOG every accept it was acknowledged (`ack`) and every run the executor started
//! (`apply`), one line each, before acting on it; a SIGKILL loses nothing that reached the log.
//!
//! `crash_child verify DB LOG SEED` restarts on the same file, resubmits every key with a completion handle, lets
//! everything drain, and prints the final rows, receipts and how many waiters resolved.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::sync::{Arc, Mutex};

use burrow::{
    BoxFuture, Executor, ExecutorError, ExecutorOutput, Input, RunRequest, Runtime, RuntimeConfig, SessionConfig,
    SessionId, SqliteStore, Store, Submitted,
};
use burrow_env::rand::SeededRng;
use burrow_env::time::{Duration, sleep, timeout};

/// Sessions in the workload.
const SESSIONS: u64 = 3;
/// Ended inputs a session keeps in memory: far fewer than the keys, so dedup must reach into the store.
const HISTORY_MAX: usize = 16;
/// How long one submit waits for its outcome before the workload moves on.
const SUBMIT_WAIT: Duration = Duration::from_millis(20);
/// Keys only the verifier submits.
const FRESH_KEYS: u64 = 20;

/// Keys per session, from BURROW_CRASH_KEYS (default 300).
fn keys() -> u64 {
    std::env::var("BURROW_CRASH_KEYS").ok().and_then(|v| v.parse().ok()).unwrap_or(300)
}

struct Log(Mutex<File>);

impl Log {
    fn line(&self, text: &str) {
        let mut file = self.0.lock().unwrap();
        // One write per line; the OS keeps it even if this process is killed right after.
        file.write_all(format!("{text}\n").as_bytes()).expect("log write");
    }
}

struct Worker {
    log: Arc<Log>,
    rng: Mutex<SeededRng>,
}

impl Executor for Worker {
    fn apply(&self, request: RunRequest) -> BoxFuture<'_, Result<ExecutorOutput, ExecutorError>> {
        let ids: Vec<String> = request.inputs.iter().map(|i| i.id.0.to_string()).collect();
        self.log.line(&format!("apply {} {} {}", request.session.0, request.run.0, ids.join(",")));
        let latency = self.rng.lock().unwrap().gen_range(0..4);
        Box::pin(async move {
            sleep(Duration::from_millis(latency)).await;
            Ok(ExecutorOutput::result("done"))
        })
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, mode, db, log, seed] = &args[..] else {
        eprintln!("usage: crash_child work|verify DB LOG SEED");
        std::process::exit(2);
    };
    let seed: u64 = seed.parse().expect("seed");
    let log = Arc::new(Log(Mutex::new(OpenOptions::new().create(true).append(true).open(log).expect("log"))));
    let runtime = burrow_env::runtime::Builder::multi_thread(2).seed(seed).build().expect("runtime");
    let store = Arc::new(SqliteStore::open(db).expect("the store opens"));
    let code = runtime.block_on(async move {
        let config = RuntimeConfig {
            session: SessionConfig { history_max: HISTORY_MAX, ..SessionConfig::default() },
            ..RuntimeConfig::default()
        };
        let rt = Runtime::with_config(config, Some(store.clone()));
        let worker = Arc::new(Worker { log: log.clone(), rng: Mutex::new(SeededRng::from_seed(seed)) });
        for s in 1..=SESSIONS {
            rt.attach_executor(SessionId(s), worker.clone()).await.expect("attach");
        }
        match mode.as_str() {
            "work" => work(&rt, &log, seed * 6).await,
            "verify" => verify(&rt, &*store).await,
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

async fn verify(rt: &Runtime, store: &dyn Store) -> i32 {
    let mut handles = Vec::new();
    for s in 1..=SESSIONS {
        // Every key again (joining whatever is still in flight), plus fresh ones, so the verifier has waiters.
        for i in 0..keys() + FRESH_KEYS {
            let input = Input::prompt(format!("work {i}")).idempotency_key(format!("k{i}"));
            let outcome = rt.accept_input_with_completion(SessionId(s), input).await.expect("accept");
            if let (_, Some(handle)) = outcome.into_parts() {
                handles.push(handle);
            }
        }
    }
    let total = handles.len();
    let mut resolved = 0;
    for handle in handles {
        if timeout(Duration::from_secs(30), handle.wait()).await.is_ok_and(|r| r.is_ok()) {
            resolved += 1;
        }
    }
    for s in 1..=SESSIONS {
        let id = SessionId(s);
        for _ in 0..3000 {
            if rt.runtime_state(id).await.expect("state").active_inputs == 0 {
                break;
            }
            sleep(Duration::from_millis(10)).await;
        }
        let image = store.load(id).await.expect("load").expect("stored");
        for row in &image.inputs {
            let key = row.record.spec.idempotency_key.clone().unwrap_or_default();
            println!("input {s} {} {key} {}", row.record.id.0, row.record.state.label());
        }
        for receipt in &image.receipts {
            let ids: Vec<String> = receipt.contributors.iter().map(|i| i.0.to_string()).collect();
            println!("receipt {s} {} {}", receipt.run.0, ids.join(","));
        }
    }
    println!("waiters {resolved} {total}");
    0
}
