//! The runtime's numbers, through the `metrics` facade: no exporter is forced on the embedder. Without a recorder
//! installed every call below is a no-op; with one (Prometheus, StatsD, a test's own, [`Tally`]), the names in
//! [`NAMES`] appear. Install the recorder before the runtime makes its first session: the runtime registers its
//! handles once, then, and a recorder installed later sees nothing.
//!
//! The facts come from the core: inputs accepted and ended, runs started and ended and phase changes are the
//! session's notices ([`burrow_core::protocol::Notice`]), which the shell performs here as it performs every other
//! effect; store writes and executor failures are counted where the shell performs them. Times of inputs and runs are
//! read off the session's clock (milliseconds), so they cost no clock read of their own.

use burrow_core::completion::OutcomeClass;
use burrow_core::ids::{Millis, RunId};
use burrow_core::phase::RuntimePhase;
use burrow_core::protocol::Notice;
use burrow_core::session::SessionMachine;
use metrics::{Counter, Gauge, Histogram, counter, gauge, histogram};

/// Inputs admitted, by kind (counter).
pub const INPUTS_ACCEPTED: &str = "burrow_inputs_accepted_total";
/// Inputs ended, by the class their waiters received (counter; `moved` when the input had no outcome of its own).
pub const INPUTS_ENDED: &str = "burrow_inputs_ended_total";
/// Runs handed to the executor (counter).
pub const RUNS_STARTED: &str = "burrow_runs_started_total";
/// Runs whose executor returned an error or panicked, by `how` (counter).
pub const RUNS_FAILED: &str = "burrow_runs_failed_total";
/// Store writes that succeeded, by `write` (input, boundary, lifecycle, operations) (counter).
pub const STORE_COMMITS: &str = "burrow_store_commits_total";
/// Store writes that failed, by `write` (counter).
pub const STORE_FAILURES: &str = "burrow_store_failures_total";
/// Sessions, by phase (gauge).
pub const SESSIONS: &str = "burrow_sessions";
/// Inputs admitted and not ended yet, queued or in a run, over every session (gauge).
pub const QUEUE_DEPTH: &str = "burrow_queue_depth";
/// Callers waiting on an input's outcome, over every session (gauge).
pub const WAITERS_PENDING: &str = "burrow_waiters_pending";
/// From a run handed out to its end, in seconds (histogram).
pub const RUN_DURATION: &str = "burrow_run_duration_seconds";
/// From an input's admission to its end, in seconds (histogram).
pub const INPUT_LATENCY: &str = "burrow_input_latency_seconds";
/// A store write, from the call to its acknowledgement (for a durable store: after its sync), in seconds, by
/// `write` (histogram).
pub const STORE_COMMIT_DURATION: &str = "burrow_store_commit_seconds";

/// Every name, for a recorder that wants to describe them.
pub const NAMES: [&str; 12] = [
    INPUTS_ACCEPTED,
    INPUTS_ENDED,
    RUNS_STARTED,
    RUNS_FAILED,
    STORE_COMMITS,
    STORE_FAILURES,
    SESSIONS,
    QUEUE_DEPTH,
    WAITERS_PENDING,
    RUN_DURATION,
    INPUT_LATENCY,
    STORE_COMMIT_DURATION,
];

/// Every handle the runtime records through, registered with the recorder once, when the first session is made:
/// a recorder installed later than that sees nothing (install it before the runtime starts, as the facade asks).
/// With no recorder every handle is a no-op that costs a branch, and no key or label is built per event.
struct Handles {
    accepted: Vec<(&'static str, Counter)>,
    /// By [`class_index`].
    ended: [Counter; 10],
    runs_started: Counter,
    /// error, panic.
    runs_failed: [Counter; 2],
    /// By [`WRITES`].
    store_commits: [Counter; 4],
    store_failures: [Counter; 4],
    store_seconds: [Histogram; 4],
    /// By [`RuntimePhase::ALL`].
    sessions: [Gauge; 7],
    depth: Gauge,
    waiters: Gauge,
    run_seconds: Histogram,
    input_seconds: Histogram,
}

/// The kinds of store write, as the `write` label names them.
const WRITES: [&str; 4] = ["input", "boundary", "lifecycle", "operations"];

impl Handles {
    fn get() -> &'static Handles {
        static HANDLES: std::sync::OnceLock<Handles> = std::sync::OnceLock::new();
        HANDLES.get_or_init(Handles::register)
    }

    fn register() -> Handles {
        let accepted = burrow_core::input::InputKind::representatives()
            .iter()
            .map(|kind| (kind.name(), counter!(INPUTS_ACCEPTED, "kind" => kind.name())))
            .collect();
        let classes = [
            OutcomeClass::Completed,
            OutcomeClass::CompletedWithoutResult,
            OutcomeClass::CallbackPending,
            OutcomeClass::CallbackBatchPending,
            OutcomeClass::Cancelled,
            OutcomeClass::Abandoned,
            OutcomeClass::AbandonedWithError,
            OutcomeClass::CompletedWithFinalizationFailure,
            OutcomeClass::RuntimeTerminated,
        ];
        let ended = std::array::from_fn(|i| {
            let label = classes.get(i).map_or("moved", |class| class_label(*class));
            debug_assert!(classes.get(i).is_none_or(|class| class_index(Some(*class)) == i));
            counter!(INPUTS_ENDED, "class" => label)
        });
        Handles {
            accepted,
            ended,
            runs_started: counter!(RUNS_STARTED),
            runs_failed: ["error", "panic"].map(|how| counter!(RUNS_FAILED, "how" => how)),
            store_commits: WRITES.map(|write| counter!(STORE_COMMITS, "write" => write)),
            store_failures: WRITES.map(|write| counter!(STORE_FAILURES, "write" => write)),
            store_seconds: WRITES.map(|write| histogram!(STORE_COMMIT_DURATION, "write" => write)),
            sessions: RuntimePhase::ALL.map(|phase| gauge!(SESSIONS, "phase" => phase_label(phase))),
            depth: gauge!(QUEUE_DEPTH),
            waiters: gauge!(WAITERS_PENDING),
            run_seconds: histogram!(RUN_DURATION),
            input_seconds: histogram!(INPUT_LATENCY),
        }
    }

    fn session_gauge(&self, phase: RuntimePhase) -> &Gauge {
        let index = RuntimePhase::ALL.iter().position(|p| *p == phase).expect("every phase is in ALL");
        &self.sessions[index]
    }
}

/// What one session last added to the gauges, so that each change moves them by its difference and a session that
/// goes takes its share back.
pub(crate) struct Reported {
    phase: RuntimePhase,
    depth: usize,
    waiters: usize,
    /// The run in flight and when it was handed out.
    run: Option<(RunId, Millis)>,
}

impl Reported {
    /// A new session, counted in its first phase.
    pub(crate) fn new(phase: RuntimePhase) -> Reported {
        Handles::get().session_gauge(phase).increment(1.0);
        Reported { phase, depth: 0, waiters: 0, run: None }
    }

    /// Performs a notice the core emitted, after `machine` applied the event that emitted it.
    pub(crate) fn notice(&mut self, notice: &Notice, machine: &SessionMachine) {
        let handles = Handles::get();
        let now = machine.clock();
        match notice {
            Notice::InputAccepted { kind, .. } => {
                if let Some((_, counter)) = handles.accepted.iter().find(|(name, _)| name == kind) {
                    counter.increment(1);
                }
            }
            Notice::InputEnded { input, class } => {
                handles.ended[class_index(*class)].increment(1);
                if let Some(record) = machine.ledger().record(*input) {
                    handles.input_seconds.record(seconds(now, record.accepted_at));
                }
            }
            Notice::RunStarted { run, .. } => {
                handles.runs_started.increment(1);
                self.run = Some((*run, now));
            }
            Notice::RunEnded { run } => {
                if let Some((_, started)) = self.run.take_if(|(current, _)| current == run) {
                    handles.run_seconds.record(seconds(now, started));
                }
            }
            Notice::PhaseChanged { to, .. } => self.phase_now(handles, *to),
            Notice::OperationEnded { .. }
            | Notice::DrainExited { .. }
            | Notice::Published(_)
            | Notice::OwnershipMoved { .. } => {}
        }
    }

    fn phase_now(&mut self, handles: &Handles, phase: RuntimePhase) {
        if phase != self.phase {
            handles.session_gauge(self.phase).decrement(1.0);
            handles.session_gauge(phase).increment(1.0);
            self.phase = phase;
        }
    }

    /// After a drive: the session's live inputs and pending waiters now.
    pub(crate) fn settled(&mut self, depth: usize, waiters: usize) {
        if depth != self.depth || waiters != self.waiters {
            let handles = Handles::get();
            move_gauge(&handles.depth, &mut self.depth, depth);
            move_gauge(&handles.waiters, &mut self.waiters, waiters);
        }
    }
}

impl Drop for Reported {
    /// The session object goes: its share leaves the gauges.
    fn drop(&mut self) {
        Handles::get().session_gauge(self.phase).decrement(1.0);
        self.settled(0, 0);
    }
}

fn move_gauge(gauge: &Gauge, reported: &mut usize, now: usize) {
    if now > *reported {
        gauge.increment((now - *reported) as f64);
    } else if now < *reported {
        gauge.decrement((*reported - now) as f64);
    }
    *reported = now;
}

fn seconds(now: Millis, then: Millis) -> f64 {
    now.0.saturating_sub(then.0) as f64 / 1_000.0
}

/// A store write, performed: counted and timed. `write` is one of [`WRITES`].
pub(crate) fn store_write(write: &'static str, started: burrow_env::time::Instant, ok: bool) {
    let handles = Handles::get();
    let index = WRITES.iter().position(|w| *w == write).expect("a known kind of write");
    handles.store_seconds[index].record(started.elapsed().as_secs_f64());
    if ok {
        handles.store_commits[index].increment(1);
    } else {
        handles.store_failures[index].increment(1);
    }
}

/// A run whose executor returned an error (`panicked` false) or panicked.
pub(crate) fn run_failed(panicked: bool) {
    Handles::get().runs_failed[usize::from(panicked)].increment(1);
}

/// The place of `class` among the `ended` handles (the last: no class of its own).
fn class_index(class: Option<OutcomeClass>) -> usize {
    match class {
        Some(OutcomeClass::Completed) => 0,
        Some(OutcomeClass::CompletedWithoutResult) => 1,
        Some(OutcomeClass::CallbackPending) => 2,
        Some(OutcomeClass::CallbackBatchPending) => 3,
        Some(OutcomeClass::Cancelled) => 4,
        Some(OutcomeClass::Abandoned) => 5,
        Some(OutcomeClass::AbandonedWithError) => 6,
        Some(OutcomeClass::CompletedWithFinalizationFailure) => 7,
        Some(OutcomeClass::RuntimeTerminated) => 8,
        None => 9,
    }
}

fn phase_label(phase: RuntimePhase) -> &'static str {
    match phase {
        RuntimePhase::Initializing => "initializing",
        RuntimePhase::Idle => "idle",
        RuntimePhase::Attached => "attached",
        RuntimePhase::Running => "running",
        RuntimePhase::Retired => "retired",
        RuntimePhase::Stopped => "stopped",
        RuntimePhase::Destroyed => "destroyed",
    }
}

fn class_label(class: OutcomeClass) -> &'static str {
    match class {
        OutcomeClass::Completed => "completed",
        OutcomeClass::CompletedWithoutResult => "completed_without_result",
        OutcomeClass::CallbackPending => "callback_pending",
        OutcomeClass::CallbackBatchPending => "callback_batch_pending",
        OutcomeClass::Cancelled => "cancelled",
        OutcomeClass::Abandoned => "abandoned",
        OutcomeClass::AbandonedWithError => "abandoned_with_error",
        OutcomeClass::CompletedWithFinalizationFailure => "completed_with_finalization_failure",
        OutcomeClass::RuntimeTerminated => "runtime_terminated",
    }
}

/// A small recorder that keeps every number in memory and prints them as a table: for an example, a test or a
/// service that only wants a summary at shutdown. A service that exports its numbers installs its exporter's
/// recorder instead; burrow installs none itself.
///
/// ```
/// let tally = std::sync::Arc::new(burrow::metrics::Tally::default());
/// // Once per process, before the runtime starts: `metrics::set_global_recorder(tally.clone())`.
/// assert_eq!(tally.counter("burrow_runs_started_total", &[]), 0);
/// ```
#[derive(Default)]
pub struct Tally {
    counters: std::sync::Mutex<std::collections::BTreeMap<String, std::sync::Arc<TallyCounter>>>,
    gauges: std::sync::Mutex<std::collections::BTreeMap<String, std::sync::Arc<TallyGauge>>>,
    histograms: std::sync::Mutex<std::collections::BTreeMap<String, std::sync::Arc<TallyHistogram>>>,
}

/// A histogram's count, sum, least and greatest value.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Spread {
    /// Values recorded.
    pub count: u64,
    /// Their sum.
    pub sum: f64,
    /// The least.
    pub min: f64,
    /// The greatest.
    pub max: f64,
}

struct TallyCounter(std::sync::atomic::AtomicU64);
struct TallyGauge(std::sync::Mutex<f64>);
struct TallyHistogram(std::sync::Mutex<Spread>);

impl metrics::CounterFn for TallyCounter {
    fn increment(&self, value: u64) {
        self.0.fetch_add(value, std::sync::atomic::Ordering::Relaxed);
    }

    fn absolute(&self, value: u64) {
        self.0.fetch_max(value, std::sync::atomic::Ordering::Relaxed);
    }
}

impl metrics::GaugeFn for TallyGauge {
    fn increment(&self, value: f64) {
        *lock(&self.0) += value;
    }

    fn decrement(&self, value: f64) {
        *lock(&self.0) -= value;
    }

    fn set(&self, value: f64) {
        *lock(&self.0) = value;
    }
}

impl metrics::HistogramFn for TallyHistogram {
    fn record(&self, value: f64) {
        let mut spread = lock(&self.0);
        spread.min = if spread.count == 0 { value } else { spread.min.min(value) };
        spread.max = if spread.count == 0 { value } else { spread.max.max(value) };
        spread.count += 1;
        spread.sum += value;
    }
}

fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// `name{label=value,...}`, labels in the order given.
fn key_text(name: &str, labels: &[(&str, &str)]) -> String {
    if labels.is_empty() {
        return name.to_owned();
    }
    let labels: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    format!("{name}{{{}}}", labels.join(","))
}

fn metric_text(key: &metrics::Key) -> String {
    let labels: Vec<(&str, &str)> = key.labels().map(|l| (l.key(), l.value())).collect();
    key_text(key.name(), &labels)
}

impl Tally {
    /// A counter's value; 0 when nothing counted it.
    #[must_use]
    pub fn counter(&self, name: &str, labels: &[(&str, &str)]) -> u64 {
        lock(&self.counters).get(&key_text(name, labels)).map_or(0, |c| c.0.load(std::sync::atomic::Ordering::Relaxed))
    }

    /// A gauge's value; 0 when nothing set it.
    #[must_use]
    pub fn gauge(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        lock(&self.gauges).get(&key_text(name, labels)).map_or(0.0, |g| *lock(&g.0))
    }

    /// A histogram's spread; all zero when nothing was recorded.
    #[must_use]
    pub fn histogram(&self, name: &str, labels: &[(&str, &str)]) -> Spread {
        lock(&self.histograms).get(&key_text(name, labels)).map_or_else(Spread::default, |h| *lock(&h.0))
    }

    /// Every number as a table, one line each, in name order.
    #[must_use]
    pub fn summary(&self) -> String {
        let mut out = String::new();
        for (key, counter) in lock(&self.counters).iter() {
            out.push_str(&format!("{key:<64} {}\n", counter.0.load(std::sync::atomic::Ordering::Relaxed)));
        }
        for (key, gauge) in lock(&self.gauges).iter() {
            out.push_str(&format!("{key:<64} {}\n", *lock(&gauge.0)));
        }
        for (key, histogram) in lock(&self.histograms).iter() {
            let s = *lock(&histogram.0);
            let mean = if s.count == 0 { 0.0 } else { s.sum / s.count as f64 };
            out.push_str(&format!("{key:<64} count {} mean {:.6} min {:.6} max {:.6}\n", s.count, mean, s.min, s.max));
        }
        out
    }
}

impl metrics::Recorder for Tally {
    fn describe_counter(&self, _: metrics::KeyName, _: Option<metrics::Unit>, _: metrics::SharedString) {}

    fn describe_gauge(&self, _: metrics::KeyName, _: Option<metrics::Unit>, _: metrics::SharedString) {}

    fn describe_histogram(&self, _: metrics::KeyName, _: Option<metrics::Unit>, _: metrics::SharedString) {}

    fn register_counter(&self, key: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Counter {
        let cell = lock(&self.counters)
            .entry(metric_text(key))
            .or_insert_with(|| std::sync::Arc::new(TallyCounter(std::sync::atomic::AtomicU64::new(0))))
            .clone();
        metrics::Counter::from_arc(cell)
    }

    fn register_gauge(&self, key: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Gauge {
        let cell = lock(&self.gauges)
            .entry(metric_text(key))
            .or_insert_with(|| std::sync::Arc::new(TallyGauge(std::sync::Mutex::new(0.0))))
            .clone();
        metrics::Gauge::from_arc(cell)
    }

    fn register_histogram(&self, key: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Histogram {
        let cell = lock(&self.histograms)
            .entry(metric_text(key))
            .or_insert_with(|| std::sync::Arc::new(TallyHistogram(std::sync::Mutex::new(Spread::default()))))
            .clone();
        metrics::Histogram::from_arc(cell)
    }
}
