//! `submit` and `input_state_by_key` (issue 18, items 1 and 2): a keyed input's outcome within a bounded wait, a retry
//! that joins or learns the end, and idempotency that reaches past the in-memory history and across a restart for
//! every key the store holds (specs/input.md#recall).

mod support;

use std::sync::Arc;

use burrow::{
    Input, InputState, MemoryStore, Outcome, RunResult, Runtime, RuntimeConfig, RuntimeError, SessionConfig, SessionId,
    Store, Submitted,
};
use burrow_env::time::Duration;
use support::{Scripted, attached, settle, within};

const S: SessionId = SessionId(1);

/// A runtime over `store` whose sessions keep `history_max` terminal inputs in memory.
fn durable(store: &MemoryStore, history_max: usize) -> Runtime {
    let config = RuntimeConfig {
        session: SessionConfig { history_max, ..SessionConfig::default() },
        ..RuntimeConfig::default()
    };
    Runtime::with_config(config, Some(Arc::new(store.clone())))
}

fn keyed(payload: &str, key: &str) -> Input {
    Input::prompt(payload).idempotency_key(key)
}

#[burrow_env::test]
async fn submit_returns_the_outcome_and_a_retry_learns_the_end_without_a_second_run() {
    let exec = Scripted::new();
    let (runtime, id) = attached(&exec).await;
    let first = within(runtime.submit(id, keyed("ok:paid", "order-1"))).await.unwrap();
    let Submitted::Finished { input, outcome, joined } = first else { panic!("{first:?}") };
    assert_eq!(outcome, Outcome::Completed(RunResult { output: "paid".into() }));
    assert!(!joined);
    let retry = within(runtime.submit(id, keyed("ok:paid again", "order-1"))).await.unwrap();
    assert_eq!(retry, Submitted::Ended { input, state: Some(InputState::Consumed), joined: true });
    assert_eq!(exec.payloads(), vec!["ok:paid"], "the retry did not run");
}

#[burrow_env::test]
async fn submit_without_a_key_is_refused_and_admits_nothing() {
    let exec = Scripted::new();
    let (runtime, id) = attached(&exec).await;
    let err = runtime.submit(id, Input::prompt("ok:x")).await.unwrap_err();
    assert_eq!(err, RuntimeError::KeyRequired { session: id, call: "submit" });
    assert_eq!(runtime.runtime_state(id).await.unwrap().active_inputs, 0);
    assert!(exec.runs().is_empty());
}

#[burrow_env::test]
async fn a_wait_that_passes_answers_still_running_and_a_retry_joins_the_same_input() {
    let exec = Scripted::new();
    let (runtime, id) = attached(&exec).await;
    let wait = Duration::from_millis(20);
    let first = within(runtime.submit_within(id, keyed("block:done", "job"), wait)).await.unwrap();
    let Submitted::StillRunning { input, waited_ms, joined: false } = first else { panic!("{first:?}") };
    assert_eq!(waited_ms, 20);
    let second = within(runtime.submit_within(id, keyed("block:other", "job"), wait)).await.unwrap();
    let again = Submitted::StillRunning { input, waited_ms: 20, joined: true };
    assert_eq!(second, again, "the retry waits on the same input");
    let third = {
        let runtime = runtime.clone();
        burrow_env::task::spawn(async move { runtime.submit(id, keyed("block:third", "job")).await })
    };
    // The third call joins (the two dropped waits still hold their slots), then the run ends within its wait.
    within(async {
        while runtime.input_state(id, input).await.unwrap().expect("live").waiters < 3 {
            burrow_env::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await;
    exec.release();
    let third = within(third).await.unwrap().unwrap();
    assert_eq!(
        third,
        Submitted::Finished { input, outcome: Outcome::Completed(RunResult { output: "done".into() }), joined: true }
    );
    assert_eq!(exec.runs().len(), 1, "one input, one run");
}

#[burrow_env::test]
async fn the_submit_wait_is_configuration() {
    let config = RuntimeConfig { submit_wait: Duration::from_millis(5), ..RuntimeConfig::default() };
    assert_eq!(RuntimeConfig::default().submit_wait, burrow::SUBMIT_WAIT_DEFAULT);
    assert_eq!(burrow::SUBMIT_WAIT_DEFAULT, Duration::from_secs(30));
    let runtime = Runtime::with_config(config, None);
    let exec = Scripted::new();
    runtime.attach_executor(S, exec.arc()).await.unwrap();
    let answer = within(runtime.submit(S, keyed("block", "k"))).await.unwrap();
    assert!(matches!(answer, Submitted::StillRunning { waited_ms: 5, .. }), "{answer:?}");
    exec.release();
    settle(&runtime, S).await;
}

#[burrow_env::test]
async fn a_key_past_the_history_is_recalled_from_the_store_and_never_runs_again() {
    let store = MemoryStore::new();
    let runtime = durable(&store, 2);
    let exec = Scripted::new();
    runtime.attach_executor(S, exec.arc()).await.unwrap();
    let mut inputs = Vec::new();
    for n in 0..5 {
        let answer = within(runtime.submit(S, keyed(&format!("ok:{n}"), &format!("key-{n}")))).await.unwrap();
        inputs.push(answer.input());
    }
    assert!(runtime.input_state(S, inputs[0]).await.unwrap().is_none(), "key-0 left the two-input history");
    let view = runtime.input_state_by_key(S, "key-0").await.unwrap().expect("the store holds key-0");
    assert_eq!((view.id, view.state, view.waiters), (inputs[0], InputState::Consumed, 0));
    let retry = within(runtime.submit(S, keyed("ok:again", "key-0"))).await.unwrap();
    assert_eq!(retry, Submitted::Ended { input: inputs[0], state: Some(InputState::Consumed), joined: true });
    let dup = runtime.accept_input_with_completion(S, keyed("ok:again", "key-1")).await.unwrap();
    assert!(dup.is_deduplicated() && dup.input() == inputs[1], "{dup:?}");
    assert!(dup.into_parts().1.is_none(), "an ended input has no handle");
    assert_eq!(exec.runs().len(), 5, "no key ran twice");
    assert!(runtime.input_state_by_key(S, "key-9").await.unwrap().is_none());
    let fresh = within(runtime.submit(S, keyed("ok:new", "key-9"))).await.unwrap();
    assert!(matches!(fresh, Submitted::Finished { joined: false, .. }), "{fresh:?}");
}

#[burrow_env::test]
async fn every_key_the_store_holds_is_deduplicated_after_a_restart() {
    let store = MemoryStore::new();
    let mut inputs = Vec::new();
    {
        let first = durable(&store, 2);
        let exec = Scripted::new();
        first.attach_executor(S, exec.arc()).await.unwrap();
        for n in 0..6 {
            inputs.push(within(first.submit(S, keyed(&format!("ok:{n}"), &format!("key-{n}")))).await.unwrap().input());
        }
        std::mem::forget(first);
    }
    let second = durable(&store, 2);
    let exec = Scripted::new();
    second.attach_executor(S, exec.arc()).await.unwrap();
    for (n, input) in inputs.iter().enumerate() {
        let retry = within(second.submit(S, keyed("ok:again", &format!("key-{n}")))).await.unwrap();
        let ended = Submitted::Ended { input: *input, state: Some(InputState::Consumed), joined: true };
        assert_eq!(retry, ended, "key-{n}");
    }
    assert!(exec.runs().is_empty(), "nothing the first process ran runs again");
    let row = store.input_by_key(S, "key-0").await.unwrap().expect("stored");
    assert_eq!(row.id, inputs[0]);
}

#[burrow_env::test]
async fn a_retry_after_a_restart_joins_the_input_the_first_process_left_running() {
    let store = MemoryStore::new();
    let input = {
        let first = durable(&store, 2);
        let exec = Scripted::new();
        first.attach_executor(S, exec.arc()).await.unwrap();
        let answer =
            within(first.submit_within(S, keyed("block:late", "order-7"), Duration::from_millis(10))).await.unwrap();
        let Submitted::StillRunning { input, .. } = answer else { panic!("{answer:?}") };
        // The process dies with the run in flight.
        std::mem::forget(first);
        input
    };
    let second = durable(&store, 2);
    let exec = Scripted::new();
    exec.release(); // the recovered run may finish at once
    second.attach_executor(S, exec.arc()).await.unwrap();
    let retry = within(second.submit(S, keyed("block:late", "order-7"))).await.unwrap();
    assert_eq!(retry.input(), input, "the retry names the input the first process accepted");
    // It joined the recovered input, or (if the run was quicker than the retry) learned that it ended.
    let ok = match &retry {
        Submitted::Finished { outcome, joined, .. } => *joined && outcome.class() == burrow::OutcomeClass::Completed,
        Submitted::Ended { state, .. } => *state == Some(InputState::Consumed),
        Submitted::StillRunning { .. } => false,
    };
    assert!(ok, "{retry:?}");
    assert_eq!(exec.payloads(), vec!["block:late"], "the recovered input ran once in the second process");
}
