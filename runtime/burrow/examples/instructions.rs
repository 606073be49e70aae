//! Runs one benchmark workload a given number of times on one thread, with nothing else, so that an instruction
//! counter can compare two versions of the runtime exactly:
//!
//! ```text
//! cargo build --release -p burrow --example instructions
//! valgrind --tool=callgrind --callgrind-out-file=/dev/null target/release/examples/instructions w1 10000
//! valgrind --tool=callgrind --callgrind-out-file=/dev/null target/release/examples/instructions w1 30000
//! ```
//!
//! The difference of the two totals divided by 20,000 is the cost of one iteration, without the set-up. `w1` is the
//! benchmark's sequential round trip (accept with completion, run, commit, resolve) on an ephemeral runtime; `w5`
//! its operations cycle (register, provision, watch, complete, read the feed every 256 cycles). `w1-memory` and
//! `w1-sqlite` are `w1` over the memory store and over an in-memory SQLite database (the writer's thread is counted
//! too), so the store's own cost per input is the difference from `w1`.

use std::hint::black_box;
use std::sync::Arc;

use burrow::ops::{CompletionSeq, OpResult, OperationKind, OperationSpec};
use burrow::{
    BoxFuture, Executor, ExecutorError, ExecutorOutput, Input, MemoryStore, RunRequest, Runtime, SessionId, SqliteStore,
};
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
    let workload = args.next().unwrap_or_else(|| "w1".into());
    let iterations: u64 = args.next().and_then(|n| n.parse().ok()).unwrap_or(10_000);
    let rt = Builder::current_thread().build().expect("a current-thread runtime");
    rt.block_on(async move {
        let runtime = match workload.as_str() {
            "w1-memory" => Runtime::with_store(Arc::new(MemoryStore::new())),
            "w1-sqlite" => Runtime::with_store(Arc::new(SqliteStore::in_memory().expect("an in-memory database"))),
            _ => Runtime::ephemeral(),
        };
        let session = SessionId(1);
        runtime.attach_executor(session, Arc::new(Noop)).await.expect("attach");
        match workload.as_str() {
            "w1" | "w1-memory" | "w1-sqlite" => {
                for _ in 0..iterations {
                    let accepted = runtime.accept_input_with_completion(session, Input::prompt("x")).await;
                    let (_, handle) = accepted.expect("accepted").into_parts();
                    black_box(handle.expect("a handle").wait().await.expect("an outcome"));
                }
            }
            "w5" => {
                let ops = runtime.operations(session).await.expect("the operations handle");
                let mut cursor = CompletionSeq(0);
                for i in 0..iterations {
                    let spec = OperationSpec::new(OperationKind::BackgroundTool, "job");
                    let op = ops.register(spec).await.expect("registered");
                    ops.provisioning_succeeded(op).await.expect("provisioned");
                    let watcher = ops.register_watcher(op).await.expect("watched");
                    ops.complete(op, OpResult { content: "done".into(), is_error: false }).await.expect("completed");
                    black_box(watcher.wait().await.expect("the watcher resolves"));
                    if (i + 1) % 256 == 0 {
                        let feed = ops.feed_since(cursor).await;
                        if let Some(last) = feed.last() {
                            cursor = last.seq;
                            ops.acknowledge(last.seq).await.expect("acknowledged");
                        }
                    }
                }
            }
            other => panic!("unknown workload {other:?}: w1, w1-memory, w1-sqlite or w5"),
        }
    });
}
