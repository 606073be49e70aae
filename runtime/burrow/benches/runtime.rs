//! The runtime's performance workloads W1-W5, each measured next to its physical-limit baseline in the same run.
//!
//! - W1: one session, a no-op executor, `accept_input_with_completion` then `wait`, one input at a time, against a
//!   bare round trip (an mpsc send to a task that answers on a oneshot). Plus the history check: one session takes
//!   1,000,000 inputs in a row, and the rate over its last 10,000 is compared with the rate over its first 10,000
//!   (three runs; the median is reported).
//! - W2: 20,000 inputs pipelined into one session (at most [`WINDOW`] in flight, the rest submitted as outcomes
//!   arrive, since a session holds at most 4,096 active inputs) against the same pipeline over bare channels.
//! - W3: 1,000 sessions x 20 inputs submitted concurrently on a 2-worker multi-thread runtime, against 1,000 bare
//!   echo tasks taking 20 round trips each on the same kind of runtime.
//! - W4: resident memory per idle session with an executor attached (10,000 sessions), against 10,000 bare idle
//!   tasks each parked on a channel, the least an idle session with a loop can be.
//! - W5: an operations cycle (register, provisioning succeeded, a watcher, complete, the watcher resolves) against a
//!   bare map insert, a oneshot, a send, a receive and a map removal.
//! - W6: 10,000 sessions x 100 inputs submitted concurrently on two workers (1,000,000 inputs), timed once per store.
//!
//! W1, W2 and W5 run on a current-thread runtime, W3 and W6 on two workers. W1 to W5 run without a store (as
//! `ephemeral()`), so those figures are the shell's own cost. W1, W3 and W6 also run over the memory store and over
//! the SQLite store (a fresh file in the system's temporary folder, synced fully: `SyncMode::Full`), each reported
//! as its rate and its ratio to the same workload without a store; W1 over SQLite is shown next to the device's own
//! rate of 4 KiB write+sync pairs in the same folder, the floor for a lone caller who waits for each sync. The SQLite
//! rows also give the store's syncs per 1,000 inputs (from its writer's own count). Criterion reports its statistics per benchmark; at the end a table gives each
//! figure, its baseline, the ratio and the goal. `cargo xtask bench` runs this file in release.
//!
//! Arguments: criterion's own, plus a filter word that selects workloads (`W1` .. `W6`; criterion matches it as
//! written, so `W3` rather than `w3`).

use std::collections::BTreeMap;
use std::future::Future;
use std::hint::black_box;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use burrow::ops::{CompletionSeq, OpResult, OperationKind, OperationSpec};
use burrow::{
    BoxFuture, Executor, ExecutorError, ExecutorOutput, Input, MemoryStore, OperationsHandle, RunRequest, Runtime,
    SessionId, SqliteStore,
};
use burrow_env::runtime::Builder;
use burrow_env::sync::{mpsc, oneshot};
use burrow_env::task;
use criterion::{Criterion, Throughput};

/// Inputs in flight at most in the pipelined workload W2.
const WINDOW: usize = 2_048;
/// W2's inputs per iteration.
const PIPELINED: usize = 20_000;
/// W3's shape.
const SESSIONS: usize = 1_000;
const PER_SESSION: usize = 20;
/// W4's sessions.
const IDLE_SESSIONS: usize = 10_000;
/// W6's shape.
const W6_SESSIONS: usize = 10_000;
const W6_PER_SESSION: usize = 100;
/// The history check's length and window.
const HISTORY: usize = 1_000_000;
const HISTORY_WINDOW: usize = 10_000;
/// Runs of the history check; the median one is reported.
const HISTORY_RUNS: usize = 3;

/// An executor that does nothing and reports a result.
struct Noop;

impl Executor for Noop {
    fn apply(&self, _request: RunRequest) -> BoxFuture<'_, Result<ExecutorOutput, ExecutorError>> {
        Box::pin(async { Ok(ExecutorOutput::result("")) })
    }
}

/// Elements processed and time spent, summed over every criterion sample of one benchmark.
#[derive(Default)]
struct Tally(Mutex<BTreeMap<&'static str, (u64, Duration)>>);

impl Tally {
    fn add(&self, name: &'static str, elements: u64, time: Duration) {
        let mut map = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let entry = map.entry(name).or_default();
        entry.0 += elements;
        entry.1 += time;
    }

    /// Runs `work` to its end on `rt`, and returns and records how long it took for `elements` elements of `name`.
    fn time(
        &self,
        rt: &burrow_env::runtime::Runtime,
        name: &'static str,
        elements: u64,
        work: impl Future<Output = ()>,
    ) -> Duration {
        let time = rt.block_on(async {
            let start = Instant::now();
            work.await;
            start.elapsed()
        });
        self.add(name, elements, time);
        time
    }

    /// Elements per second over every sample.
    fn rate(&self, name: &str) -> Option<f64> {
        let map = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        map.get(name).map(|(n, t)| *n as f64 / t.as_secs_f64().max(1e-12))
    }
}

fn current_thread() -> burrow_env::runtime::Runtime {
    Builder::current_thread().build().expect("a current-thread runtime")
}

fn two_workers() -> burrow_env::runtime::Runtime {
    Builder::multi_thread(2).build().expect("a 2-worker runtime")
}

/// A bare echo server: a task answering each message on its oneshot. The physical limit of a request/response hop.
fn bare_echo(capacity: usize) -> mpsc::Sender<(u64, oneshot::Sender<u64>)> {
    let (tx, mut rx) = mpsc::channel::<(u64, oneshot::Sender<u64>)>(capacity);
    task::spawn(async move {
        while let Some((value, reply)) = rx.recv().await {
            let _ = reply.send(value);
        }
    });
    tx
}

async fn attached(runtime: &Runtime, session: SessionId) {
    runtime.attach_executor(session, Arc::new(Noop)).await.expect("attach");
}

/// One round trip through the runtime: accept with completion, then wait for the outcome.
async fn round_trip(runtime: &Runtime, session: SessionId) {
    let (_, handle) =
        runtime.accept_input_with_completion(session, Input::prompt("x")).await.expect("accepted").into_parts();
    let outcome = handle.expect("a new input has a handle").wait().await.expect("an outcome");
    black_box(outcome);
}

/// Where a workload's runtime keeps its facts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Keep {
    Nothing,
    Memory,
    Sqlite,
    /// SQLite with `SyncMode::Normal`: what the sync per batch costs, next to [`Keep::Sqlite`].
    SqliteNormal,
}

impl Keep {
    fn label(self) -> &'static str {
        match self {
            Keep::Nothing => "no store",
            Keep::Memory => "memory store",
            Keep::Sqlite => "sqlite store",
            Keep::SqliteNormal => "sqlite store, SyncMode::Normal",
        }
    }
}

/// The folder of this run's SQLite files.
fn bench_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("burrow-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a temporary folder");
    dir
}

/// A runtime keeping its facts as `keep` says; the SQLite store (a fresh file named `name`) is handed back too.
fn runtime_keeping(keep: Keep, name: &str) -> (Runtime, Option<Arc<SqliteStore>>) {
    match keep {
        Keep::Nothing => (Runtime::ephemeral(), None),
        Keep::Memory => (Runtime::with_store(Arc::new(MemoryStore::new())), None),
        Keep::Sqlite | Keep::SqliteNormal => {
            let path = bench_dir().join(format!("{name}.db"));
            for suffix in ["", "-wal", "-shm"] {
                let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
            }
            let sync = if keep == Keep::Sqlite { burrow::SyncMode::Full } else { burrow::SyncMode::Normal };
            let store = Arc::new(SqliteStore::open_with(&path, sync).expect("the bench's store opens"));
            (Runtime::with_store(store.clone()), Some(store))
        }
    }
}

/// Write+sync pairs of 4 KiB per second in the bench's folder: what the device allows one waiting caller.
fn device_sync_rate() -> f64 {
    use std::io::Write;
    let path = bench_dir().join("sync-probe");
    let mut file = std::fs::File::create(&path).expect("the probe file");
    let block = [7u8; 4_096];
    let rounds = 200;
    let start = Instant::now();
    for _ in 0..rounds {
        file.write_all(&block).expect("a probe write");
        file.sync_data().expect("a probe sync");
    }
    let rate = f64::from(rounds) / start.elapsed().as_secs_f64();
    let _ = std::fs::remove_file(&path);
    rate
}

/// The SQLite store's syncs so far (zero without one).
fn syncs(store: Option<&Arc<SqliteStore>>) -> u64 {
    store.map_or(0, |s| s.writer_stats().syncs)
}

fn w1(c: &mut Criterion, tally: &Tally) {
    let rt = current_thread();
    let mut group = c.benchmark_group("W1 sequential round trip");
    group.throughput(Throughput::Elements(1));
    let runtime = rt.block_on(async {
        let runtime = Runtime::ephemeral();
        attached(&runtime, SessionId(1)).await;
        runtime
    });
    group.bench_function("burrow", |b| {
        b.iter_custom(|iters| {
            tally.time(&rt, "w1 burrow", iters, async {
                for _ in 0..iters {
                    round_trip(&runtime, SessionId(1)).await;
                }
            })
        });
    });
    let echo = rt.block_on(async { bare_echo(1) });
    group.bench_function("bare mpsc+oneshot", |b| {
        b.iter_custom(|iters| {
            tally.time(&rt, "w1 bare", iters, async {
                for i in 0..iters {
                    let (tx, rx) = oneshot::channel();
                    echo.send((i, tx)).await.expect("the echo task lives");
                    black_box(rx.await.expect("an answer"));
                }
            })
        });
    });
    group.finish();
    drop(echo);
    rt.block_on(async { runtime.stop_executor(SessionId(1)).await.expect("stop") });
}

/// W1 over the memory store and over the SQLite store; returns the SQLite store's syncs per 1,000 inputs.
fn w1_stores(c: &mut Criterion, tally: &Tally) -> Option<f64> {
    let rt = current_thread();
    let mut group = c.benchmark_group("W1 durable round trip");
    group.throughput(Throughput::Elements(1));
    let mut per_thousand = None;
    for (keep, name) in [(Keep::Memory, "w1 memory"), (Keep::Sqlite, "w1 sqlite"), (Keep::SqliteNormal, "w1 normal")] {
        let (runtime, store) = rt.block_on(async {
            let (runtime, store) = runtime_keeping(keep, "w1");
            attached(&runtime, SessionId(1)).await;
            (runtime, store)
        });
        let (mut inputs, before) = (0, syncs(store.as_ref()));
        group.bench_function(keep.label(), |b| {
            b.iter_custom(|iters| {
                inputs += iters;
                tally.time(&rt, name, iters, async {
                    for _ in 0..iters {
                        round_trip(&runtime, SessionId(1)).await;
                    }
                })
            });
        });
        if keep == Keep::Sqlite {
            per_thousand = Some((syncs(store.as_ref()) - before) as f64 * 1_000.0 / inputs.max(1) as f64);
        }
        rt.block_on(async { runtime.stop_executor(SessionId(1)).await.expect("stop") });
    }
    group.finish();
    per_thousand
}

/// The rates over the first and the last [`HISTORY_WINDOW`] of [`HISTORY`] inputs to one fresh session.
fn w1_history() -> (f64, f64) {
    let rt = current_thread();
    rt.block_on(async {
        let runtime = Runtime::ephemeral();
        attached(&runtime, SessionId(7)).await;
        let mut first = Duration::ZERO;
        let mut last = Duration::ZERO;
        let mut window = Instant::now();
        for i in 0..HISTORY {
            if i == HISTORY - HISTORY_WINDOW {
                window = Instant::now();
            }
            round_trip(&runtime, SessionId(7)).await;
            if i + 1 == HISTORY_WINDOW {
                first = window.elapsed();
            }
        }
        last = last.max(window.elapsed());
        runtime.stop_executor(SessionId(7)).await.expect("stop");
        let rate = |time: Duration| HISTORY_WINDOW as f64 / time.as_secs_f64();
        (rate(first), rate(last))
    })
}

/// Submits [`PIPELINED`] inputs to one session with at most [`WINDOW`] in flight, then waits for the rest.
async fn pipeline(runtime: &Runtime, session: SessionId) {
    let mut handles = std::collections::VecDeque::with_capacity(WINDOW);
    for _ in 0..PIPELINED {
        if handles.len() == WINDOW {
            let handle: burrow::CompletionHandle = handles.pop_front().expect("a full window");
            black_box(handle.wait().await.expect("an outcome"));
        }
        let (_, handle) =
            runtime.accept_input_with_completion(session, Input::prompt("x")).await.expect("accepted").into_parts();
        handles.push_back(handle.expect("a new input has a handle"));
    }
    for handle in handles {
        black_box(handle.wait().await.expect("an outcome"));
    }
}

async fn bare_pipeline(echo: &mpsc::Sender<(u64, oneshot::Sender<u64>)>) {
    let mut answers = std::collections::VecDeque::with_capacity(WINDOW);
    for i in 0..PIPELINED as u64 {
        if answers.len() == WINDOW {
            let answer: oneshot::Receiver<u64> = answers.pop_front().expect("a full window");
            black_box(answer.await.expect("an answer"));
        }
        let (tx, rx) = oneshot::channel();
        echo.send((i, tx)).await.expect("the echo task lives");
        answers.push_back(rx);
    }
    for answer in answers {
        black_box(answer.await.expect("an answer"));
    }
}

fn w2(c: &mut Criterion, tally: &Tally) {
    let rt = current_thread();
    let mut group = c.benchmark_group("W2 pipelined");
    group.throughput(Throughput::Elements(PIPELINED as u64)).sample_size(20);
    let runtime = rt.block_on(async {
        let runtime = Runtime::ephemeral();
        attached(&runtime, SessionId(2)).await;
        runtime
    });
    group.bench_function("burrow", |b| {
        b.iter_custom(|iters| {
            tally.time(&rt, "w2 burrow", iters * PIPELINED as u64, async {
                for _ in 0..iters {
                    pipeline(&runtime, SessionId(2)).await;
                }
            })
        });
    });
    let echo = rt.block_on(async { bare_echo(WINDOW) });
    group.bench_function("bare mpsc+oneshot", |b| {
        b.iter_custom(|iters| {
            tally.time(&rt, "w2 bare", iters * PIPELINED as u64, async {
                for _ in 0..iters {
                    bare_pipeline(&echo).await;
                }
            })
        });
    });
    group.finish();
    drop(echo);
    rt.block_on(async { runtime.stop_executor(SessionId(2)).await.expect("stop") });
}

/// Every session takes `per_session` inputs at once, then waits for their outcomes; all sessions side by side.
async fn many_sessions(runtime: &Runtime, first: u64, sessions: usize, per_session: usize) {
    let tasks: Vec<_> = (0..sessions as u64)
        .map(|s| {
            let runtime = runtime.clone();
            task::spawn(async move {
                let session = SessionId(first + s);
                let mut handles = Vec::with_capacity(per_session);
                for _ in 0..per_session {
                    let accepted = runtime.accept_input_with_completion(session, Input::prompt("x"));
                    let (_, handle) = accepted.await.expect("accepted").into_parts();
                    handles.push(handle.expect("a new input has a handle"));
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

/// W3 with no store, over the memory store and over the SQLite store, and its bare baseline; returns the SQLite
/// store's syncs per 1,000 inputs.
fn w3(c: &mut Criterion, tally: &Tally, keeps: &[Keep]) -> Option<f64> {
    let rt = two_workers();
    let mut group = c.benchmark_group("W3 1000 sessions x 20 inputs, 2 workers");
    let per_iteration = (SESSIONS * PER_SESSION) as u64;
    group.throughput(Throughput::Elements(per_iteration)).sample_size(10);
    let mut per_thousand = None;
    for &keep in keeps {
        let name = match keep {
            Keep::Nothing => "w3 burrow",
            Keep::Memory => "w3 memory",
            Keep::Sqlite | Keep::SqliteNormal => "w3 sqlite",
        };
        let (runtime, store) = rt.block_on(async {
            let (runtime, store) = runtime_keeping(keep, "w3");
            for s in 0..SESSIONS as u64 {
                attached(&runtime, SessionId(1_000 + s)).await;
            }
            (runtime, store)
        });
        let (mut inputs, before) = (0, syncs(store.as_ref()));
        let label = if keep == Keep::Nothing { "burrow" } else { keep.label() };
        group.bench_function(label, |b| {
            b.iter_custom(|iters| {
                inputs += iters * per_iteration;
                tally.time(&rt, name, iters * per_iteration, async {
                    for _ in 0..iters {
                        many_sessions(&runtime, 1_000, SESSIONS, PER_SESSION).await;
                    }
                })
            });
        });
        if store.is_some() {
            per_thousand = Some((syncs(store.as_ref()) - before) as f64 * 1_000.0 / inputs.max(1) as f64);
        }
        rt.block_on(async {
            for s in 0..SESSIONS as u64 {
                runtime.stop_executor(SessionId(1_000 + s)).await.expect("stop");
            }
        });
    }
    if keeps.contains(&Keep::Nothing) {
        let echoes: Vec<_> = rt.block_on(async { (0..SESSIONS).map(|_| bare_echo(PER_SESSION)).collect() });
        group.bench_function("bare mpsc+oneshot", |b| {
            b.iter_custom(|iters| {
                tally.time(&rt, "w3 bare", iters * per_iteration, async {
                    for _ in 0..iters {
                        let tasks: Vec<_> = echoes
                            .iter()
                            .map(|echo| {
                                let echo = echo.clone();
                                task::spawn(async move {
                                    let mut answers = Vec::with_capacity(PER_SESSION);
                                    for i in 0..PER_SESSION as u64 {
                                        let (tx, rx) = oneshot::channel();
                                        echo.send((i, tx)).await.expect("the echo task lives");
                                        answers.push(rx);
                                    }
                                    for answer in answers {
                                        black_box(answer.await.expect("an answer"));
                                    }
                                })
                            })
                            .collect();
                        for task in tasks {
                            task.await.expect("an echo client");
                        }
                    }
                })
            });
        });
    }
    group.finish();
    per_thousand
}

/// W6 once over `keep`: (inputs per second, the SQLite store's syncs per 1,000 inputs).
fn w6(keep: Keep) -> (f64, Option<f64>) {
    let rt = two_workers();
    rt.block_on(async {
        let (runtime, store) = runtime_keeping(keep, "w6");
        for s in 0..W6_SESSIONS as u64 {
            attached(&runtime, SessionId(100_000 + s)).await;
        }
        let before = syncs(store.as_ref());
        let start = Instant::now();
        many_sessions(&runtime, 100_000, W6_SESSIONS, W6_PER_SESSION).await;
        let elapsed = start.elapsed();
        let inputs = (W6_SESSIONS * W6_PER_SESSION) as f64;
        let per_thousand = store.as_ref().map(|_| (syncs(store.as_ref()) - before) as f64 * 1_000.0 / inputs);
        for s in 0..W6_SESSIONS as u64 {
            runtime.stop_executor(SessionId(100_000 + s)).await.expect("stop");
        }
        (inputs / elapsed.as_secs_f64(), per_thousand)
    })
}

/// Resident memory of this process, in bytes (Linux; `None` elsewhere).
fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4_096)
}

/// The variable that makes this binary measure one side of W4 and print bytes per item: `sessions` or `tasks`.
const W4_SIDE: &str = "BURROW_BENCH_W4";

/// Bytes of resident memory per idle attached session, and per bare idle task, over [`IDLE_SESSIONS`] of each. Each
/// side is measured in a fresh process (this binary again), so memory one side freed cannot hide the other's growth.
fn w4() -> Option<(f64, f64)> {
    let side = |which: &str| -> Option<f64> {
        let out = std::process::Command::new(std::env::current_exe().ok()?).env(W4_SIDE, which).output().ok()?;
        String::from_utf8(out.stdout).ok()?.trim().parse().ok()
    };
    Some((side("sessions")?, side("tasks")?))
}

/// One side of W4, in this process: resident bytes per item, or `None` if resident memory is not readable.
fn w4_side(which: &str) -> Option<f64> {
    let rt = current_thread();
    rt.block_on(async {
        // Warm the allocator and the runtime so the first reading includes their fixed cost.
        let warm = Runtime::ephemeral();
        attached(&warm, SessionId(1)).await;
        round_trip(&warm, SessionId(1)).await;
        let before = resident_bytes()?;
        if which == "sessions" {
            let runtime = Runtime::ephemeral();
            for s in 0..IDLE_SESSIONS as u64 {
                attached(&runtime, SessionId(10_000 + s)).await;
            }
            // Let every loop reach its first park.
            burrow_env::time::sleep(Duration::from_millis(50)).await;
            let after = resident_bytes()?;
            std::mem::forget(runtime);
            Some(after.saturating_sub(before) as f64 / IDLE_SESSIONS as f64)
        } else {
            let idle: Vec<mpsc::Sender<u64>> = (0..IDLE_SESSIONS)
                .map(|_| {
                    let (tx, mut rx) = mpsc::channel::<u64>(1);
                    task::spawn(async move { while rx.recv().await.is_some() {} });
                    tx
                })
                .collect();
            burrow_env::time::sleep(Duration::from_millis(50)).await;
            let after = resident_bytes()?;
            std::mem::forget(idle);
            Some(after.saturating_sub(before) as f64 / IDLE_SESSIONS as f64)
        }
    })
}

async fn op_cycle(ops: &OperationsHandle) {
    let spec = OperationSpec::new(OperationKind::BackgroundTool, "job");
    let op = ops.register(spec).await.expect("registered");
    ops.provisioning_succeeded(op).await.expect("provisioned");
    let watcher = ops.register_watcher(op).await.expect("watched");
    ops.complete(op, OpResult { content: "done".into(), is_error: false }).await.expect("completed");
    black_box(watcher.wait().await.expect("the watcher resolves"));
}

/// Cycles between two reads of the completion feed. The feed is bounded (1,024 unacknowledged entries), so a user of
/// the registry reads and acknowledges it as it goes; the benchmark does so every this many cycles.
const FEED_READ_EVERY: u64 = 256;

async fn op_cycles(ops: &OperationsHandle, cycles: u64, cursor: &mut CompletionSeq) {
    for i in 0..cycles {
        op_cycle(ops).await;
        if (i + 1) % FEED_READ_EVERY == 0 || i + 1 == cycles {
            let feed = ops.feed_since(*cursor).await;
            if let Some(last) = feed.last() {
                *cursor = last.seq;
                ops.acknowledge(last.seq).await.expect("acknowledged");
            }
        }
    }
}

fn w5(c: &mut Criterion, tally: &Tally) {
    let rt = current_thread();
    let mut group = c.benchmark_group("W5 operations cycle");
    group.throughput(Throughput::Elements(1));
    let (runtime, ops) = rt.block_on(async {
        let runtime = Runtime::ephemeral();
        runtime.prepare(SessionId(5)).await.expect("prepared");
        let ops = runtime.operations(SessionId(5)).await.expect("the operations handle");
        (runtime, ops)
    });
    let mut cursor = CompletionSeq(0);
    group.bench_function("burrow", |b| {
        b.iter_custom(|iters| {
            tally.time(&rt, "w5 burrow", iters, async {
                op_cycles(&ops, iters, &mut cursor).await;
            })
        });
    });
    group.bench_function("bare map+oneshot", |b| {
        b.iter_custom(|iters| {
            let mut map: std::collections::HashMap<u64, (String, Option<oneshot::Sender<String>>)> =
                std::collections::HashMap::new();
            tally.time(&rt, "w5 bare", iters, async {
                for i in 0..iters {
                    map.insert(i, ("job".to_owned(), None));
                    let (tx, rx) = oneshot::channel();
                    map.get_mut(&i).expect("inserted").1 = Some(tx);
                    let (_, watcher) = map.remove(&i).expect("inserted");
                    let _ = watcher.expect("set").send("done".to_owned());
                    black_box(rx.await.expect("an answer"));
                }
            })
        });
    });
    group.finish();
    drop(runtime);
}

/// One row of the summary.
struct Row {
    name: &'static str,
    figure: String,
    baseline: String,
    ratio: f64,
    goal: String,
    met: bool,
}

/// A row of a workload over a store: its rate, the same workload without a store as its baseline, their ratio, and
/// the store's syncs per 1,000 inputs where known.
fn durable_row(name: &'static str, durable: f64, ephemeral: Option<f64>, per_thousand: Option<f64>) -> Row {
    Row {
        name,
        figure: format!("{durable:.0}/s"),
        baseline: ephemeral.map_or_else(|| "not measured".into(), |e| format!("{e:.0}/s no store")),
        ratio: ephemeral.map_or(f64::NAN, |e| durable / e),
        goal: per_thousand.map_or_else(|| "-".into(), |p| format!("{p:.1} syncs/1k inputs")),
        met: true,
    }
}

fn main() {
    if let Ok(which) = std::env::var(W4_SIDE) {
        println!("{}", w4_side(&which).map_or_else(|| "unreadable".to_owned(), |b| format!("{b:.1}")));
        return;
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    // Criterion takes the first free word as its filter; the same word selects the custom measurements here. Words
    // that are the values of criterion's options are not filters.
    const VALUED: [&str; 14] = [
        "--warm-up-time",
        "--measurement-time",
        "--sample-size",
        "--save-baseline",
        "--baseline",
        "--load-baseline",
        "--output-format",
        "--plotting-backend",
        "--noise-threshold",
        "--confidence-level",
        "--significance-level",
        "--nresamples",
        "--profile-time",
        "--color",
    ];
    let filter = args
        .iter()
        .enumerate()
        .find(|(i, a)| !a.starts_with('-') && (*i == 0 || !VALUED.contains(&args[i - 1].as_str())))
        .map(|(_, a)| a.to_lowercase());
    let wants = |name: &str| filter.as_deref().is_none_or(|f| name.to_lowercase().contains(f));
    let mut c = Criterion::default().configure_from_args().warm_up_time(Duration::from_secs(1));
    let tally = Tally::default();
    let mut rows = Vec::new();
    let rate = |r: f64| format!("{r:.0}/s");

    if wants("W1 sequential round trip") {
        w1(&mut c, &tally);
        if let (Some(ours), Some(bare)) = (tally.rate("w1 burrow"), tally.rate("w1 bare")) {
            let ratio = ours / bare;
            rows.push(Row {
                name: "W1 round trip",
                figure: rate(ours),
                baseline: rate(bare),
                ratio,
                goal: ">= 0.5 of bare".into(),
                met: ratio >= 0.5,
            });
        }
    }
    if wants("W1 durable round trip") {
        let per_thousand = w1_stores(&mut c, &tally);
        let ephemeral = tally.rate("w1 burrow");
        if let Some(memory) = tally.rate("w1 memory") {
            rows.push(durable_row("W1 memory store", memory, ephemeral, None));
        }
        if let Some(sqlite) = tally.rate("w1 sqlite") {
            let device = device_sync_rate();
            println!("W1: the device takes {device:.0} 4 KiB write+sync pairs per second in the bench's folder");
            let mut row = durable_row("W1 sqlite store", sqlite, ephemeral, per_thousand);
            row.goal = format!("device {device:.0} syncs/s");
            rows.push(row);
        }
        if let Some(normal) = tally.rate("w1 normal") {
            rows.push(durable_row("W1 sqlite, Normal sync", normal, ephemeral, None));
        }
    }
    if wants("W1 flat history") {
        // A window of 10,000 round trips lasts tens of milliseconds, short enough for a noisy machine to skew one
        // reading; the check runs HISTORY_RUNS times on fresh sessions and reports the run with the median ratio.
        let mut runs: Vec<(f64, f64)> = (0..HISTORY_RUNS).map(|_| w1_history()).collect();
        runs.sort_by(|a, b| (a.1 / a.0).total_cmp(&(b.1 / b.0)));
        let ratios: Vec<String> = runs.iter().map(|(first, last)| format!("{:.3}", last / first)).collect();
        println!("W1 flat: last/first over {HISTORY_RUNS} runs: {}", ratios.join(", "));
        let (first, last) = runs[runs.len() / 2];
        let ratio = last / first;
        rows.push(Row {
            name: "W1 flat (1M inputs)",
            figure: format!("{} last 10k", rate(last)),
            baseline: format!("{} first 10k", rate(first)),
            ratio,
            goal: "within 10%".into(),
            met: ratio >= 0.9,
        });
    }
    if wants("W2 pipelined") {
        w2(&mut c, &tally);
        if let (Some(ours), Some(bare)) = (tally.rate("w2 burrow"), tally.rate("w2 bare")) {
            let ratio = ours / bare;
            rows.push(Row {
                name: "W2 pipelined",
                figure: rate(ours),
                baseline: rate(bare),
                ratio,
                goal: ">= 0.3 of bare".into(),
                met: ratio >= 0.3,
            });
        }
    }
    if wants("W3 1000 sessions") {
        let per_thousand = w3(&mut c, &tally, &[Keep::Nothing, Keep::Memory, Keep::Sqlite]);
        if let (Some(ours), Some(bare)) = (tally.rate("w3 burrow"), tally.rate("w3 bare")) {
            rows.push(Row {
                name: "W3 1000x20, 2 workers",
                figure: rate(ours),
                baseline: rate(bare),
                ratio: ours / bare,
                goal: ">= 420000/s".into(),
                met: ours >= 420_000.0,
            });
        }
        let ephemeral = tally.rate("w3 burrow");
        if let Some(memory) = tally.rate("w3 memory") {
            rows.push(durable_row("W3 memory store", memory, ephemeral, None));
        }
        if let Some(sqlite) = tally.rate("w3 sqlite") {
            let mut row = durable_row("W3 sqlite store", sqlite, ephemeral, per_thousand);
            row.goal = format!(">= 100000/s, >= 0.25; {}", row.goal);
            row.met = sqlite >= 100_000.0 && ephemeral.is_some_and(|e| sqlite / e >= 0.25);
            rows.push(row);
        }
    }
    if wants("W6 10000 sessions") {
        let (ephemeral, _) = w6(Keep::Nothing);
        println!("W6 no store: {ephemeral:.0} inputs/s");
        rows.push(Row {
            name: "W6 10000x100, no store",
            figure: rate(ephemeral),
            baseline: "-".into(),
            ratio: 1.0,
            goal: "-".into(),
            met: true,
        });
        for keep in [Keep::Memory, Keep::Sqlite] {
            let (durable, per_thousand) = w6(keep);
            println!("W6 {}: {durable:.0} inputs/s", keep.label());
            let name = if keep == Keep::Memory { "W6 memory store" } else { "W6 sqlite store" };
            rows.push(durable_row(name, durable, Some(ephemeral), per_thousand));
        }
    }
    if wants("W4 idle memory") {
        match w4() {
            Some((session, task)) => rows.push(Row {
                name: "W4 idle session memory",
                figure: format!("{session:.0} B/session"),
                baseline: format!("{task:.0} B/task"),
                ratio: session / task.max(1.0),
                goal: "<= 2048 B".into(),
                met: session <= 2_048.0,
            }),
            None => eprintln!("W4: resident memory is not readable on this system (/proc/self/statm)"),
        }
    }
    if wants("W5 operations cycle") {
        w5(&mut c, &tally);
        if let (Some(ours), Some(bare)) = (tally.rate("w5 burrow"), tally.rate("w5 bare")) {
            rows.push(Row {
                name: "W5 operations cycle",
                figure: rate(ours),
                baseline: rate(bare),
                ratio: ours / bare,
                goal: ">= 500000/s".into(),
                met: ours >= 500_000.0,
            });
        }
    }
    c.final_summary();
    let _ = std::fs::remove_dir_all(bench_dir());

    println!();
    println!("{:<24} {:>22} {:>22} {:>7}  {:<16} verdict", "workload", "burrow", "baseline", "ratio", "goal");
    for row in &rows {
        println!(
            "{:<24} {:>22} {:>22} {:>7.3}  {:<16} {}",
            row.name,
            row.figure,
            row.baseline,
            row.ratio,
            row.goal,
            if row.met { "met" } else { "NOT MET" }
        );
    }
}
