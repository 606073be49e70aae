//! Runs W3's shape (many sessions, each taking its inputs at once, on two workers) over a fresh SQLite file and prints
//! the rate, the store's own count of batches synced, and its syncs per 1,000 inputs, so a system-call counter can
//! check the figure from outside:
//!
//! ```text
//! cargo build --release -p burrow --example durable_syncs
//! strace -f -c -e trace=fsync,fdatasync target/release/examples/durable_syncs FOLDER 1000 20
//! ```
//!
//! Arguments: a folder for the database file (it is made if missing; the file is removed at the end), the number of
//! sessions (default 1,000) and the inputs per session (default 20).

use std::hint::black_box;
use std::sync::Arc;

use burrow::{BoxFuture, Executor, ExecutorError, ExecutorOutput, Input, RunRequest, Runtime, SessionId, SqliteStore};
use burrow_env::runtime::Builder;

/// An executor that answers at once.
struct Noop;

impl Executor for Noop {
    fn apply(&self, _request: RunRequest) -> BoxFuture<'_, Result<ExecutorOutput, ExecutorError>> {
        Box::pin(async { Ok(ExecutorOutput::result("done")) })
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let folder = std::path::PathBuf::from(args.next().expect("usage: durable_syncs FOLDER [SESSIONS] [INPUTS]"));
    let sessions: u64 = args.next().and_then(|n| n.parse().ok()).unwrap_or(1_000);
    let per_session: usize = args.next().and_then(|n| n.parse().ok()).unwrap_or(20);
    std::fs::create_dir_all(&folder).expect("the folder");
    let path = folder.join(format!("durable-syncs-{}.db", std::process::id()));
    let store = Arc::new(SqliteStore::open(&path).expect("the store opens"));
    let rt = Builder::multi_thread(2).build().expect("a 2-worker runtime");
    let (rate, syncs) = rt.block_on(async {
        let runtime = Runtime::with_store(store.clone());
        for s in 1..=sessions {
            runtime.attach_executor(SessionId(s), Arc::new(Noop)).await.expect("attach");
        }
        let before = store.writer_stats().syncs;
        let start = std::time::Instant::now();
        let tasks: Vec<_> = (1..=sessions)
            .map(|s| {
                let runtime = runtime.clone();
                burrow_env::task::spawn(async move {
                    let mut handles = Vec::with_capacity(per_session);
                    for _ in 0..per_session {
                        let accepted = runtime.accept_input_with_completion(SessionId(s), Input::prompt("x")).await;
                        handles.push(accepted.expect("accepted").into_parts().1.expect("a handle"));
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
        let inputs = sessions as f64 * per_session as f64;
        (inputs / start.elapsed().as_secs_f64(), store.writer_stats().syncs - before)
    });
    let inputs = sessions * per_session as u64;
    println!("{inputs} inputs over {sessions} sessions: {rate:.0} inputs/s");
    println!("{syncs} batches synced: {:.1} per 1,000 inputs", syncs as f64 * 1_000.0 / inputs as f64);
    println!("writer: {:?}", store.writer_stats());
    drop(rt);
    drop(store);
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
}
