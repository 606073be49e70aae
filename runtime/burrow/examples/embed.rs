//! Embedding burrow in a service: three agent sessions driven by a simulated LLM, one input that fails, a
//! background tool call, a retired session and a clean shutdown.
//!
//! ```text
//! cargo run -p burrow --example embed
//! RUST_LOG=info cargo run -p burrow --example embed    # only the example's own events and the runtime's info lines
//! RUST_LOG=trace cargo run -p burrow --example embed   # every event the sessions apply and every effect they perform
//! cargo run -p burrow --example embed 2>/dev/null       # the summary alone (logs go to stderr)
//! ```
//!
//! The log filter defaults to `info,burrow=debug`. What happens, in order:
//!
//! 1. A runtime with a memory store and explicit bounds (attempts per input, a run deadline, the stop wait) gets a
//!    [`SimulatedModel`] executor on each of three sessions. A turn sleeps 20-60 ms, fails about one time in five
//!    with a transient error (the runtime puts the input back at the head of the queue and runs it again, up to
//!    `max_attempts`), and never accepts a prompt longer than its context window: that input fails every attempt
//!    and ends `AbandonedWithError`.
//! 2. One conversation task per session queues its prompts; the three run concurrently, and each awaits every
//!    outcome through its completion handle, with a timeout.
//! 3. A long-running tool call on one session goes through its operations handle: registered (provisioning), a
//!    watcher, provisioned, progress, completed; the watcher resolves. The session was idle, so the runtime wakes it
//!    with a Continuation input, which the model answers.
//! 4. One session is retired with prompts still queued: they drain, and a new prompt is refused with the typed
//!    `Refusal::AdmissionClosed`.
//! 5. Every executor is stopped and a summary is printed, then the runtime's own numbers (inputs accepted and ended
//!    by class, runs started and failed, store commits, sessions by phase, queue depth, waiters, and the spreads of
//!    run duration, input latency and store commit time) from the in-memory recorder the example installed.
//!
//! The model's draws come from `burrow_env::rand::SeededRng`, one generator per run keyed by session and run id, so
//! the same turns fail and take the same time however the sessions interleave. The runtime, tasks and clock come
//! from `burrow_env` rather than tokio so that the example also builds, and runs on virtual time, under
//! `--cfg madsim`; in a tokio service, `#[tokio::main]`, `tokio::spawn` and `tokio::time` do the same jobs.

use std::error::Error;
use std::io::IsTerminal;
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use burrow::ops::{OpResult, OperationKind, OperationSpec, Progress};
use burrow::{
    BoxFuture, CompletionHandle, Executor, ExecutorError, ExecutorOutput, Input, InputKind, MemoryStore, Outcome,
    Refusal, RunInput, RunRequest, Runtime, RuntimeConfig, RuntimeError, SessionConfig, SessionId, StopReason,
};
use burrow_env::rand::SeededRng;
use burrow_env::time::{Duration, sleep, timeout};
use tracing::{info, warn};
use tracing_subscriber::EnvFilter;

type BoxError = Box<dyn Error + Send + Sync>;

/// Seeds every draw of the simulated model.
const SEED: u64 = 2024;
/// How long one model call takes, drawn per run.
const TURN_LATENCY_MS: Range<u64> = 20..60;
/// The chance that a model call fails with a transient error (a rate limit, a dropped connection).
const TRANSIENT_FAILURE_P: f64 = 0.2;
/// Prompts longer than this fail on every attempt, as a prompt over a model's context window would.
const CONTEXT_CHARS_MAX: usize = 400;
/// Attempts an input gets; an input whose turns fail this many times ends `AbandonedWithError`.
const ATTEMPTS_MAX: u32 = 3;
/// A turn running longer than this is cancelled and counts as a failed attempt.
const RUN_DEADLINE_MS: u64 = 2_000;
/// How long a stop waits for a loop to exit once no run is in flight.
const STOP_WAIT: Duration = Duration::from_secs(1);
/// How long the service waits for one input's outcome, or for the tool call to end.
const OUTCOME_WAIT: Duration = Duration::from_secs(5);
/// How long the service waits for a whole conversation task.
const CONVERSATION_WAIT: Duration = Duration::from_secs(10);

fn main() -> Result<(), BoxError> {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,burrow=debug"));
    // Logs go to stderr, the summary to stdout; colours only when stderr is a terminal.
    let ansi = std::io::stderr().is_terminal();
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi).init();
    // The runtime's numbers go through the `metrics` facade; a service installs its exporter's recorder here. This
    // one keeps them in memory for the table printed at the end.
    let numbers = std::sync::Arc::new(burrow::metrics::Tally::default());
    metrics::set_global_recorder(numbers.clone()).map_err(|_| "a metrics recorder was already installed")?;

    // Two worker threads, as a small service would run. Under madsim this is one simulated thread, seeded.
    let async_runtime = burrow_env::runtime::Builder::multi_thread(2).seed(SEED).build()?;
    let summary = async_runtime.block_on(serve())?;
    println!(
        "summary: {} inputs submitted, {} succeeded, {} failed; {} refused after retire; {} model turns ({} failed); \
         elapsed {} ms",
        summary.tally.submitted,
        summary.tally.succeeded,
        summary.tally.failed,
        summary.refused,
        summary.turns,
        summary.turns_failed,
        summary.elapsed.as_millis(),
    );
    println!("the runtime's numbers (names and units: README, Metrics):");
    print!("{}", numbers.summary());
    Ok(())
}

// ----- the executor ---------------------------------------------------------------------------------------------

/// Counts shared by the executors of every session.
#[derive(Debug, Default)]
struct Usage {
    turns: AtomicU64,
    turns_failed: AtomicU64,
}

/// Stands in for an LLM call: a seeded latency, an occasional transient failure and a context window.
struct SimulatedModel {
    session: SessionId,
    seed: u64,
    usage: Arc<Usage>,
}

impl Executor for SimulatedModel {
    fn apply(&self, request: RunRequest) -> BoxFuture<'_, Result<ExecutorOutput, ExecutorError>> {
        Box::pin(async move {
            // The runtime calls this inside a `run` span naming the session, the run and its inputs, so the events
            // below need not repeat them.
            let mut rng = self.rng_for(&request);
            let latency = Duration::from_millis(rng.gen_range(TURN_LATENCY_MS));
            let transient = rng.gen_bool(TRANSIENT_FAILURE_P);
            self.usage.turns.fetch_add(1, Ordering::Relaxed);

            sleep(latency).await; // The model call. Dropping this future (interrupt, deadline) cancels it.

            // A permanent failure. An `ExecutorError` cannot say "do not retry", so this input still uses up all its
            // attempts before it is abandoned.
            if let Some(input) = request.inputs.iter().find(|i| i.payload.len() > CONTEXT_CHARS_MAX) {
                self.usage.turns_failed.fetch_add(1, Ordering::Relaxed);
                let error = format!(
                    "input {} has {} characters; the context window holds {CONTEXT_CHARS_MAX}",
                    input.id,
                    input.payload.len()
                );
                warn!(%error, "model refused the prompt");
                return Err(ExecutorError::new(error));
            }
            if transient {
                self.usage.turns_failed.fetch_add(1, Ordering::Relaxed);
                warn!(latency_ms = latency.as_millis() as u64, "model call failed (503); the runtime will retry");
                return Err(ExecutorError::new("the model answered 503: overloaded"));
            }
            // A queue-lane run carries one input; steer inputs are batched, so a turn answers all it is given.
            let replies: Vec<String> = request.inputs.iter().map(|input| reply(input, &mut rng)).collect();
            Ok(ExecutorOutput::result(replies.join("\n")))
        })
    }

    fn stop(&self, reason: StopReason) -> BoxFuture<'_, ()> {
        // Called with no run in flight; a real executor would close its model client here.
        Box::pin(async move { info!(session = %self.session, ?reason, "model client closing") })
    }
}

impl SimulatedModel {
    /// One generator per run. Sessions number their runs themselves, so keying by (session, run) gives every run
    /// the same draws whatever the other sessions are doing, and a retry (a new run) draws afresh.
    fn rng_for(&self, request: &RunRequest) -> SeededRng {
        SeededRng::from_seed(self.seed ^ (request.session.0 << 32) ^ request.run.0)
    }
}

/// The simulated model's answer to one input.
fn reply(input: &RunInput, rng: &mut SeededRng) -> String {
    let tokens = rng.gen_range(40..400);
    match input.kind {
        InputKind::Continuation => {
            // The runtime queued this because a background operation ended while the session was idle. A real
            // executor would read the ended operation from the session's completion feed
            // (`OperationsHandle::feed_since`) and hand its result to the model.
            info!("continuation: resuming after a background operation ended");
            format!("read the tool's result and carried on ({tokens} tokens)")
        }
        _ => format!("answer to {:?} ({tokens} tokens)", clip(&input.payload, 40)),
    }
}

fn clip(text: &str, chars_max: usize) -> String {
    match text.char_indices().nth(chars_max) {
        Some((end, _)) => format!("{}...", &text[..end]),
        None => text.to_owned(),
    }
}

// ----- the service ----------------------------------------------------------------------------------------------

/// What happened to the inputs the service submitted.
#[derive(Clone, Copy, Debug, Default)]
struct Tally {
    submitted: u64,
    succeeded: u64,
    failed: u64,
}

impl Tally {
    fn add(&mut self, other: Tally) {
        self.submitted += other.submitted;
        self.succeeded += other.succeeded;
        self.failed += other.failed;
    }
}

struct Summary {
    tally: Tally,
    refused: u64,
    turns: u64,
    turns_failed: u64,
    elapsed: Duration,
}

async fn serve() -> Result<Summary, BoxError> {
    let started = burrow_env::time::now();
    let usage = Arc::new(Usage::default());

    // Swap the memory store for `SqliteStore::open(path)?` to keep sessions across restarts.
    let config = RuntimeConfig {
        session: SessionConfig {
            max_attempts: ATTEMPTS_MAX,
            run_deadline_ms: RUN_DEADLINE_MS,
            ..SessionConfig::default()
        },
        stop_wait: STOP_WAIT,
        ..RuntimeConfig::default()
    };
    let runtime = Runtime::with_config(config, Some(Arc::new(MemoryStore::new())));

    let planner = SessionId(1);
    let support = SessionId(2);
    let coder = SessionId(3);
    let sessions = [planner, support, coder];
    for session in sessions {
        // Attaching prepares the session and starts its loop; the loop calls the executor one run at a time.
        let executor = Arc::new(SimulatedModel { session, seed: SEED, usage: usage.clone() });
        let report = runtime.attach_executor(session, executor).await?;
        info!(%session, ?report, "executor attached");
    }

    // 1. Three conversations at once, each on its own task.
    let build_log = format!("Why does this fail?\n{}", "error: linker `cc` not found (exit status 1)\n".repeat(12));
    let conversations = [
        (planner, vec!["Plan three days in Lisbon.".to_owned(), "Which museums are free on Sundays?".to_owned()]),
        (support, vec!["My build fails on a fresh machine.".to_owned(), build_log, "It's Ubuntu 24.04.".to_owned()]),
        (coder, vec!["Write a function that parses ISO dates.".to_owned(), "Add tests for leap years.".to_owned()]),
    ];
    let mut tasks = Vec::with_capacity(conversations.len());
    for (session, prompts) in conversations {
        tasks.push((session, burrow_env::task::spawn(converse(runtime.clone(), session, prompts))));
    }
    let mut tally = Tally::default();
    for (session, task) in tasks {
        match timeout(CONVERSATION_WAIT, task).await {
            Ok(Ok(Ok(conversation))) => tally.add(conversation),
            Ok(Ok(Err(error))) => warn!(%session, %error, "conversation ended early"),
            Ok(Err(error)) => warn!(%session, %error, "conversation task failed"),
            Err(_) => warn!(%session, waited_ms = CONVERSATION_WAIT.as_millis() as u64, "conversation still running"),
        }
    }

    // 2. A long-running tool call on the planner's session.
    background_tool_call(&runtime, planner).await?;

    // 3. The coder's session is retired with work still queued.
    let refused = retire_with_work_queued(&runtime, coder, &mut tally).await?;

    // 4. Stop every executor. A stop waits for the run in flight (bounded by the run deadline plus the stop wait),
    // resolves every waiter still pending, and returns once the loop has exited.
    for session in sessions {
        let report = runtime.stop_executor(session).await?;
        info!(%session, deferred = report.deferred, abandoned = report.abandoned, "executor stopped");
    }
    // Dropping the last clone also stops every session whose loop is still live; stopping them explicitly first is
    // what gives the service each stop's report and a bound on how long it waits.
    drop(runtime);

    Ok(Summary {
        tally,
        refused,
        turns: usage.turns.load(Ordering::Relaxed),
        turns_failed: usage.turns_failed.load(Ordering::Relaxed),
        elapsed: burrow_env::time::now() - started,
    })
}

/// Queues `prompts` on `session`, a short pause apart as a user would send them, then awaits every outcome.
async fn converse(runtime: Runtime, session: SessionId, prompts: Vec<String>) -> Result<Tally, RuntimeError> {
    let mut handles = Vec::with_capacity(prompts.len());
    for prompt in prompts {
        handles.push(submit(&runtime, session, Input::prompt(prompt)).await?);
        sleep(Duration::from_millis(10)).await;
    }
    let mut tally = Tally::default();
    for handle in handles {
        record(&mut tally, handle).await;
    }
    Ok(tally)
}

/// Accepts `input` and returns its completion handle.
async fn submit(runtime: &Runtime, session: SessionId, input: Input) -> Result<CompletionHandle, RuntimeError> {
    let (input, handle) = runtime.accept_input_with_completion(session, input).await?.into_parts();
    info!(%session, %input, "input queued");
    // Only an input deduplicated against a finished one (it has no idempotency key here) or an Operation input
    // comes back without a handle.
    Ok(handle.expect("a new prompt always gets a completion handle"))
}

/// Awaits one outcome (bounded), logs its class and counts it.
async fn record(tally: &mut Tally, handle: CompletionHandle) {
    let (session, input) = (handle.session(), handle.input());
    tally.submitted += 1;
    match handle.wait_timeout(OUTCOME_WAIT).await {
        Ok(Outcome::Completed(result)) => {
            tally.succeeded += 1;
            info!(%session, %input, class = "Completed", reply = %result.output, "input completed");
        }
        Ok(Outcome::AbandonedWithError { reason, error }) => {
            tally.failed += 1;
            warn!(%session, %input, class = "AbandonedWithError", %reason, cause = ?error.cause, error = %error.message,
                "input failed");
        }
        Ok(other) => {
            // CompletedWithoutResult and CallbackPending are normal ends for other executors; the rest mean the
            // runtime ended the input (cancelled, abandoned, stopped) before a result.
            tally.failed += 1;
            warn!(%session, %input, class = ?other.class(), outcome = ?other, "input ended without a result");
        }
        Err(error) => {
            // A plumbing failure or the timeout: no outcome was delivered (after a timeout the input keeps running).
            tally.failed += 1;
            warn!(%session, %input, %error, "no outcome");
        }
    }
}

/// A tool call that outlives the turn that started it, tracked in the session's operations registry.
async fn background_tool_call(runtime: &Runtime, session: SessionId) -> Result<(), BoxError> {
    let ops = runtime.operations(session).await?;
    let spec = OperationSpec::new(OperationKind::BackgroundTool, "run test suite").source("test runner");
    let op = ops.register(spec).await?;
    info!(%session, %op, "tool call registered (provisioning)");
    let watcher = ops.register_watcher(op).await?;

    // The worker that runs the tool. The runtime only records the operation's lifecycle; the work is the service's.
    let worker_ops = ops.clone();
    let worker = burrow_env::task::spawn(async move {
        sleep(Duration::from_millis(30)).await; // provisioning a sandbox
        worker_ops.provisioning_succeeded(op).await?;
        info!(%op, "tool call provisioned, running");
        for done in 1..=3u8 {
            sleep(Duration::from_millis(40)).await;
            let progress = Progress { message: format!("{done} of 3 suites"), percent: Some(done * 33) };
            worker_ops.report_progress(op, progress).await?;
        }
        let result = OpResult { content: "212 passed, 0 failed".into(), is_error: false };
        worker_ops.complete(op, result).await
    });

    match timeout(OUTCOME_WAIT, watcher.wait()).await {
        Ok(Some(outcome)) => info!(%session, %op, ?outcome, "tool call ended; watcher resolved"),
        Ok(None) => warn!(%session, %op, "the session went away before the tool call ended"),
        Err(_) => warn!(%session, %op, waited_ms = OUTCOME_WAIT.as_millis() as u64, "tool call still running"),
    }
    match timeout(OUTCOME_WAIT, worker).await {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(error))) => warn!(%session, %op, %error, "tool worker was refused"),
        Ok(Err(error)) => warn!(%session, %op, %error, "tool worker failed"),
        Err(_) => warn!(%session, %op, "tool worker still running"),
    }
    if let Some(snapshot) = ops.snapshot(op).await {
        info!(%session, %op, status = ?snapshot.status, progress = snapshot.progress_count, "tool call record");
    }

    // The operation ended while the session was idle, so the runtime queued a Continuation input to resume it. No
    // caller holds a handle to that input; wait until the session is idle again instead.
    wait_until_idle(runtime, session, OUTCOME_WAIT).await?;
    info!(%session, "continuation turn done; session idle");
    Ok(())
}

/// Retires `session` with prompts queued, shows they still drain, then shows admission is closed. Returns how many
/// submissions were refused.
async fn retire_with_work_queued(runtime: &Runtime, session: SessionId, tally: &mut Tally) -> Result<u64, BoxError> {
    let mut handles = Vec::new();
    for prompt in ["Summarise what we did.", "List the open questions.", "Draft a commit message."] {
        handles.push(submit(runtime, session, Input::prompt(prompt)).await?);
    }
    // Admission closes now; inputs already queued stay queued and the attached executor drains them.
    let report = runtime.retire(session).await?;
    info!(%session, pending_drain = report.pending_drain, abandoned = report.abandoned, "session retired");
    for handle in handles {
        record(tally, handle).await;
    }

    let mut refused = 0;
    match runtime.accept_input_with_completion(session, Input::prompt("One more thing...")).await {
        Err(RuntimeError::Refused { refusal: Refusal::AdmissionClosed { phase }, call, .. }) => {
            refused += 1;
            info!(%session, %phase, call, "new input refused: admission is closed");
        }
        Err(error) => return Err(error.into()),
        Ok(accepted) => warn!(%session, input = %accepted.input(), "a retired session admitted an input"),
    }
    let state = runtime.runtime_state(session).await?;
    info!(%session, phase = %state.phase, active_inputs = state.active_inputs, "retired session drained");
    Ok(refused)
}

/// Polls until `session` has no active input and no run in flight, or `limit` passes.
async fn wait_until_idle(runtime: &Runtime, session: SessionId, limit: Duration) -> Result<(), BoxError> {
    let idle = async {
        loop {
            let state = runtime.runtime_state(session).await?;
            if state.active_inputs == 0 && state.current_run.is_none() {
                return Ok::<_, RuntimeError>(());
            }
            sleep(Duration::from_millis(5)).await;
        }
    };
    timeout(limit, idle)
        .await
        .map_err(|_| format!("session {session} still busy after {} ms", limit.as_millis()))??;
    Ok(())
}
