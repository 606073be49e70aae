//! What the child processes of the crash and failover tests share: the log they append to, the executor that logs
//! every run it starts, and the verifier's final pass.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::sync::{Arc, Mutex};

use burrow::{BoxFuture, Executor, ExecutorError, ExecutorOutput, Input, RunRequest, Runtime, SessionId, Store};
use burrow_env::rand::SeededRng;
use burrow_env::time::{Duration, sleep, timeout};

/// Ended inputs a session keeps in memory: far fewer than the keys, so dedup must reach into the store.
pub const HISTORY_MAX: usize = 16;
/// Keys only the verifier submits.
pub const FRESH_KEYS: u64 = 20;

/// Keys per session, from BURROW_CRASH_KEYS (default 300).
#[must_use]
pub fn keys() -> u64 {
    std::env::var("BURROW_CRASH_KEYS").ok().and_then(|v| v.parse().ok()).unwrap_or(300)
}

/// A file several processes append lines to.
pub struct Log(Mutex<File>);

impl Log {
    /// Opens `path` for appending, creating it.
    ///
    /// # Panics
    ///
    /// If the file cannot be opened.
    #[must_use]
    pub fn append(path: &str) -> Log {
        Log(Mutex::new(OpenOptions::new().create(true).append(true).open(path).expect("log")))
    }

    /// Appends one line in one write: the OS keeps it even if this process is killed right after, and lines of
    /// processes appending to the same file never interleave within a line.
    ///
    /// # Panics
    ///
    /// If the write fails.
    pub fn line(&self, text: &str) {
        let mut file = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        file.write_all(format!("{text}\n").as_bytes()).expect("log write");
    }
}

/// An executor that logs every run it starts (`apply [HOST] S RUN IDS`) before taking a few milliseconds for it.
pub struct Worker {
    log: Arc<Log>,
    host: Option<u64>,
    rng: Mutex<SeededRng>,
}

impl Worker {
    /// A worker logging to `log`, naming `host` in its lines when given.
    #[must_use]
    pub fn new(log: Arc<Log>, host: Option<u64>, rng: SeededRng) -> Worker {
        Worker { log, host, rng: Mutex::new(rng) }
    }
}

impl Executor for Worker {
    fn apply(&self, request: RunRequest) -> BoxFuture<'_, Result<ExecutorOutput, ExecutorError>> {
        let ids: Vec<String> = request.inputs.iter().map(|i| i.id.0.to_string()).collect();
        let host = self.host.map(|h| format!("{h} ")).unwrap_or_default();
        self.log.line(&format!("apply {host}{} {} {}", request.session.0, request.run.0, ids.join(",")));
        let latency = self.rng.lock().unwrap_or_else(std::sync::PoisonError::into_inner).gen_range(0..4);
        Box::pin(async move {
            sleep(Duration::from_millis(latency)).await;
            Ok(ExecutorOutput::result("done"))
        })
    }
}

/// Resubmits every key of the sessions 1 to `sessions` with a completion handle (joining whatever is in flight),
/// plus fresh ones, lets everything drain and prints the stored rows (`input S ID KEY STATE`), receipts
/// (`receipt S RUN IDS`) and how many of its waiters resolved (`waiters RESOLVED TOTAL`). Returns the exit code.
///
/// # Panics
///
/// If an accept or a read of the store fails.
pub async fn verify(rt: &Runtime, store: &dyn Store, sessions: u64) -> i32 {
    let mut handles = Vec::new();
    for s in 1..=sessions {
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
    for s in 1..=sessions {
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

/// The PostgreSQL server the tests use, from `BURROW_PG_URL` (`cargo xtask test` starts a throwaway cluster and sets
/// it), or `None` with the reason printed. Under `CI=true` a missing server is a failure, not a skip.
///
/// # Panics
///
/// Under `CI=true` when `BURROW_PG_URL` is not set.
#[must_use]
pub fn postgres_server() -> Option<String> {
    match std::env::var("BURROW_PG_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("BURROW_PG_URL is not set under CI=true: `cargo xtask test` starts a throwaway PostgreSQL cluster")
        }
        _ => {
            eprintln!("BURROW_PG_URL is not set: the PostgreSQL tests do not run (`cargo xtask test` starts a server)");
            None
        }
    }
}

/// What a crash or failover history came to, once [`check_history`] found nothing wrong.
#[derive(Debug)]
pub struct History {
    /// Inputs acknowledged to a submitter, over all processes.
    pub acked: usize,
    /// Runs the executors started, over all processes.
    pub runs: usize,
    /// Receipts in the store at the end.
    pub receipts: usize,
    /// Inputs abandoned because kills cut their runs short `max_attempts` times.
    pub out_of_attempts: usize,
    /// Waiters the verifier held.
    pub waiters: usize,
}

/// Checks what the processes logged (`log`) against the verifier's account of the store (`verified`, printed by
/// [`verify`] over `sessions` sessions of `keys` keys): no acknowledged durable input lost, none applied again after
/// its receipt was committed, every key admitted once, every waiter of the verifier resolved, everything drained.
///
/// # Panics
///
/// On any of those failing, with what was seen.
#[must_use]
pub fn check_history(log: &str, verified: &str, sessions: u64, keys: u64) -> History {
    use std::collections::{BTreeMap, BTreeSet};
    let num = |s: &str| s.parse::<u64>().expect("a number in the log");
    let ids = |s: &str| s.split(',').map(num).collect::<Vec<_>>();
    let mut acked: BTreeSet<(u64, u64)> = BTreeSet::new();
    let mut applies: Vec<(u64, u64, Vec<u64>)> = Vec::new();
    for line in log.lines() {
        // Lines of a fleet host name it first; the checks here do not need it.
        match line.split(' ').collect::<Vec<_>>().as_slice() {
            ["ack", s, _key, id] | ["ack", _, s, _key, id] => drop(acked.insert((num(s), num(id)))),
            ["apply", s, run, list] | ["apply", _, s, run, list] => applies.push((num(s), num(run), ids(list))),
            _ => {}
        }
    }
    let mut rows: BTreeMap<(u64, u64), (String, String)> = BTreeMap::new();
    let mut receipts: Vec<(u64, u64, Vec<u64>)> = Vec::new();
    let mut waiters = (0, 0);
    for line in verified.lines() {
        // The state label is last and may contain spaces.
        match line.splitn(5, ' ').collect::<Vec<_>>().as_slice() {
            ["input", s, id, key, state] => {
                drop(rows.insert((num(s), num(id)), ((*key).to_owned(), (*state).to_owned())))
            }
            ["receipt", s, run, list] => receipts.push((num(s), num(run), ids(list))),
            ["waiters", resolved, total] => waiters = (num(resolved), num(total)),
            _ => {}
        }
    }
    assert!(!acked.is_empty(), "the workload made progress before the faults");
    for (s, id) in &acked {
        assert!(rows.contains_key(&(*s, *id)), "acknowledged input {id} of session {s} is gone");
    }
    // Run ids grow across restarts and owners: a run after the committing one must not apply the input again.
    for (s, run, committed) in &receipts {
        for (s2, run2, applied) in &applies {
            if s2 == s && run2 > run {
                for id in committed {
                    assert!(
                        !applied.contains(id),
                        "input {id} of session {s} committed in run {run}, applied again in {run2}"
                    );
                }
            }
        }
    }
    let mut per_key: BTreeMap<(u64, String), usize> = BTreeMap::new();
    for ((s, _), (key, _)) in &rows {
        *per_key.entry((*s, key.clone())).or_default() += 1;
    }
    assert!(per_key.values().all(|n| *n == 1), "a key was admitted twice: {per_key:?}");
    assert_eq!(
        per_key.len() as u64,
        sessions * (keys + FRESH_KEYS),
        "every key admitted, the verifier's fresh ones too"
    );
    assert!(waiters.1 >= sessions * FRESH_KEYS, "the verifier waited on its fresh keys at least");
    // An input whose runs were cut short by kills max_attempts times is abandoned: a crash mid-run counts as an
    // attempt, so a poison input cannot spin forever.
    assert_eq!(waiters.0, waiters.1, "waiters resolved / total");
    let exhausted = rows.values().filter(|(_, state)| state.starts_with("Abandoned(max")).count();
    let unfinished: Vec<_> =
        rows.iter().filter(|(_, (_, state))| state != "Consumed" && !state.starts_with("Abandoned(max")).collect();
    assert!(unfinished.is_empty(), "neither consumed nor out of attempts after the drain: {unfinished:?}");
    History {
        acked: acked.len(),
        runs: applies.len(),
        receipts: receipts.len(),
        out_of_attempts: exhausted,
        waiters: usize::try_from(waiters.1).unwrap_or(usize::MAX),
    }
}
