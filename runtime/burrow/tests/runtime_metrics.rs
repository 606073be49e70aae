//! The runtime's numbers through the `metrics` facade agree with what the callers, the executor and the store saw.
//!
//! One test: a recorder is global to the process, so the numbers below are this test's alone.

mod support;

use std::sync::Arc;
use std::sync::atomic::Ordering;

use burrow::metrics::{self as names, Tally};
use burrow::{Input, OutcomeClass, Runtime, SessionId};
use support::{FlakyStore, Scripted, submit, within};

fn tally() -> Arc<Tally> {
    static TALLY: std::sync::OnceLock<Arc<Tally>> = std::sync::OnceLock::new();
    TALLY
        .get_or_init(|| {
            let tally = Arc::new(Tally::default());
            metrics::set_global_recorder(tally.clone()).expect("the only recorder of this test binary");
            tally
        })
        .clone()
}

#[burrow_env::test]
async fn the_numbers_agree_with_what_callers_the_executor_and_the_store_saw() {
    let tally = tally();
    let store = FlakyStore::new();
    let runtime = Runtime::with_store(store.arc());
    let id = SessionId(1);
    let exec = Scripted::new();
    runtime.prepare(id).await.unwrap();
    assert_eq!(tally.gauge(names::SESSIONS, &[("phase", "idle")]), 1.0, "a prepared session is idle");
    runtime.attach_executor(id, exec.arc()).await.unwrap();
    assert_eq!(tally.gauge(names::SESSIONS, &[("phase", "idle")]), 0.0);
    assert_eq!(tally.gauge(names::SESSIONS, &[("phase", "attached")]), 1.0);

    // Three prompts: one that completes, one whose every attempt fails, one whose executor panics every time.
    let mut classes = Vec::new();
    for payload in ["ok:fine", "fail:broken", "panic"] {
        let handle = submit(&runtime, id, Input::prompt(payload)).await;
        let outcome = within(handle.wait()).await.expect("an outcome");
        classes.push(outcome.class());
    }
    assert_eq!(classes, [OutcomeClass::Completed, OutcomeClass::AbandonedWithError, OutcomeClass::AbandonedWithError]);
    let runs_seen = exec.runs().len() as u64;
    let failed_runs_seen = runs_seen - 1;

    assert_eq!(tally.counter(names::INPUTS_ACCEPTED, &[("kind", "Prompt")]), 3);
    assert_eq!(tally.counter(names::INPUTS_ENDED, &[("class", "completed")]), 1);
    assert_eq!(tally.counter(names::INPUTS_ENDED, &[("class", "abandoned_with_error")]), 2);
    assert_eq!(tally.counter(names::RUNS_STARTED, &[]), runs_seen, "every run the executor was handed");
    let failed =
        tally.counter(names::RUNS_FAILED, &[("how", "error")]) + tally.counter(names::RUNS_FAILED, &[("how", "panic")]);
    assert_eq!(failed, failed_runs_seen);
    assert!(tally.counter(names::RUNS_FAILED, &[("how", "panic")]) >= 1);
    assert_eq!(tally.histogram(names::INPUT_LATENCY, &[]).count, 3, "one latency per input that ended");
    assert_eq!(tally.histogram(names::RUN_DURATION, &[]).count, runs_seen);
    // The store saw an input row per input and a boundary per completed run.
    let input_rows = store.input_writes.load(Ordering::SeqCst) as u64;
    assert_eq!(tally.counter(names::STORE_COMMITS, &[("write", "input")]), input_rows);
    assert_eq!(
        tally.counter(names::STORE_COMMITS, &[("write", "boundary")]),
        store.boundary_writes.load(Ordering::SeqCst) as u64
    );
    assert_eq!(tally.histogram(names::STORE_COMMIT_DURATION, &[("write", "input")]).count, input_rows);

    // A store write that fails is counted as a failure, and the caller is told.
    store.fail_inputs.store(1, Ordering::SeqCst);
    assert!(runtime.accept_input(id, Input::prompt("ok:lost")).await.is_err());
    assert_eq!(tally.counter(names::STORE_FAILURES, &[("write", "input")]), 1);

    // While a run is held: one session running, one input in flight, one caller waiting.
    let held = submit(&runtime, id, Input::prompt("block:late")).await;
    within(async {
        while tally.gauge(names::SESSIONS, &[("phase", "running")]) != 1.0 {
            burrow_env::time::sleep(std::time::Duration::from_millis(1)).await;
        }
    })
    .await;
    assert_eq!(tally.gauge(names::QUEUE_DEPTH, &[]), 1.0);
    assert_eq!(tally.gauge(names::WAITERS_PENDING, &[]), 1.0);
    exec.release();
    assert_eq!(within(held.wait()).await.expect("an outcome").class(), OutcomeClass::Completed);
    support::settle(&runtime, id).await;
    assert_eq!(tally.gauge(names::QUEUE_DEPTH, &[]), 0.0);
    assert_eq!(tally.gauge(names::WAITERS_PENDING, &[]), 0.0);
    assert_eq!(tally.gauge(names::SESSIONS, &[("phase", "running")]), 0.0);
    assert_eq!(tally.gauge(names::SESSIONS, &[("phase", "attached")]), 1.0);
    assert!(tally.summary().contains("burrow_inputs_accepted_total{kind=Prompt}"), "{}", tally.summary());
}
