//! Regressions of races and losses that lived where no checker looked: in the shell, between two locks, or in
//! what a performer decided on its own. Each runs under tokio and under madsim.

mod support;

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use burrow::peer::{Drained, PeerError, PeerSource};
use burrow::{
    BoxFuture, ControlPlane, ExecutorOutput, Input, InputKind, InputState, MemoryStore, Runtime, RuntimeError,
    RuntimePhase, SessionConfig, SessionId, Target,
};
use burrow_core::input::INPUTS_ACTIVE_MAX;
use burrow_env::sync::Notify;
use burrow_env::task;
use burrow_env::time::{Duration, sleep};
use support::{FlakyStore, Scripted, within};

/// Lets the tasks spawned so far run until they wait on something.
async fn let_others_run() {
    sleep(Duration::from_millis(20)).await;
}

#[burrow_env::test]
async fn a_recycle_between_the_fence_check_and_the_act_cannot_let_a_stale_binding_act() {
    let store = FlakyStore::new();
    let rt = Runtime::with_store(store.arc());
    let id = SessionId(1);
    let old = rt.prepare(id).await.unwrap().binding;
    // One call holds the session's lock across a store write that does not land yet.
    store.hold_inputs.store(true, Ordering::SeqCst);
    let holder = {
        let rt = rt.clone();
        task::spawn(async move { rt.accept_input(id, Input::prompt("holds the lock")).await })
    };
    store.held_inputs(1).await;
    // Behind it, in this order: a controller's retire fenced by the binding it holds, then a recycle that makes
    // that binding stale.
    let retire = {
        let rt = rt.clone();
        task::spawn(async move { ControlPlane::retire(&rt, Target::bound(id, old)).await })
    };
    let_others_run().await;
    let recycle = {
        let rt = rt.clone();
        task::spawn(async move { rt.recycle(id).await })
    };
    let_others_run().await;
    store.release_inputs();
    within(holder).await.unwrap().unwrap();
    let retired = within(retire).await.unwrap();
    within(recycle).await.unwrap().unwrap();
    let state = rt.runtime_state(id).await.unwrap();
    assert_ne!(state.binding, Some(old), "the recycle issued a new binding");
    // The retire was checked and applied in one step, on the generation its binding named, before the recycle.
    // Had the check and the act been two steps, the recycle would have landed between them and the stale caller
    // would have retired the new generation.
    assert!(retired.is_ok(), "{retired:?}");
    assert_ne!(state.phase, RuntimePhase::Retired, "a stale binding acted on the new generation");
    // And a call with the stale binding now is refused and changes nothing.
    let err = ControlPlane::retire(&rt, Target::bound(id, old)).await.unwrap_err();
    assert!(matches!(err, RuntimeError::Refused { .. }), "{err:?}");
    assert_ne!(rt.runtime_state(id).await.unwrap().phase, RuntimePhase::Retired);
}

/// A peer inbox that counts what it hands over.
#[derive(Default)]
struct Inbox {
    queue: Mutex<VecDeque<Input>>,
    notify: Notify,
}

impl Inbox {
    fn push(&self, n: usize) {
        let mut queue = self.queue.lock().unwrap();
        for k in 0..n {
            queue.push_back(Input::new(InputKind::PeerMessage, format!("m{k}")));
        }
        drop(queue);
        self.notify.notify_one();
    }

    fn len(&self) -> usize {
        self.queue.lock().unwrap().len()
    }
}

impl PeerSource for Inbox {
    fn drain(&self, max: usize) -> BoxFuture<'_, Result<Drained, PeerError>> {
        let mut queue = self.queue.lock().unwrap();
        let take = queue.len().min(max);
        let messages = queue.drain(..take).collect();
        Box::pin(async move { Ok(Drained { messages, dismissed: false }) })
    }

    fn notified(&self) -> BoxFuture<'_, ()> {
        Box::pin(self.notify.notified())
    }
}

#[burrow_env::test]
async fn peer_fan_in_past_the_active_input_bound_loses_no_message() {
    let rt = Runtime::ephemeral();
    let id = SessionId(2);
    rt.prepare_with(id, SessionConfig { comms_enabled: true, ..SessionConfig::default() }).await.unwrap();
    let inbox = Arc::new(Inbox::default());
    let sent = INPUTS_ACTIVE_MAX + 200;
    inbox.push(sent);
    rt.set_peer_source(id, inbox.clone()).await.unwrap();
    // No executor: keep-alive hosts the drain, and the queue fills to its bound.
    rt.set_keep_alive(id, true).await.unwrap();
    within(async {
        while rt.runtime_state(id).await.unwrap().active_inputs < INPUTS_ACTIVE_MAX {
            sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    let_others_run().await;
    assert_eq!(rt.runtime_state(id).await.unwrap().active_inputs, INPUTS_ACTIVE_MAX, "the bound holds");
    assert!(inbox.len() > 0, "the drain stopped pulling: the backlog stayed with the source");
    // An executor drains the queue; the held messages and the rest of the inbox follow.
    let exec = Scripted::new();
    rt.attach_executor(id, exec.arc()).await.unwrap();
    within(async {
        while exec.runs().len() < sent {
            sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    support::settle(&rt, id).await;
    assert_eq!(exec.runs().len(), sent, "every message ran exactly once");
    let mut payloads = exec.payloads();
    payloads.sort();
    payloads.dedup();
    assert_eq!(payloads.len(), sent, "no message was lost or run twice");
    assert_eq!(inbox.len(), 0);
}

#[burrow_env::test]
async fn a_source_set_after_the_drain_ended_without_one_is_drained() {
    let rt = Runtime::ephemeral();
    let id = SessionId(3);
    rt.prepare_with(id, SessionConfig { comms_enabled: true, keep_alive: true, ..SessionConfig::default() })
        .await
        .unwrap();
    // The drain started with no source and ended at once (Dismissed).
    let_others_run().await;
    let inbox = Arc::new(Inbox::default());
    inbox.push(1);
    rt.set_peer_source(id, inbox.clone()).await.unwrap();
    within(async {
        while rt.list_active_inputs(id).await.unwrap().is_empty() {
            sleep(Duration::from_millis(1)).await;
        }
    })
    .await;
    assert_eq!(rt.list_active_inputs(id).await.unwrap()[0].kind, "PeerMessage");
    assert_eq!(inbox.len(), 0);
}

#[burrow_env::test]
async fn a_failed_write_of_a_superseding_input_puts_nothing_out_of_place() {
    let store = FlakyStore::new();
    let rt = Runtime::with_store(store.arc());
    let id = SessionId(4);
    rt.prepare(id).await.unwrap();
    let older = rt
        .accept_input_with_completion(id, Input::new(InputKind::ExternalEvent, "v1").supersession_key("k"))
        .await
        .unwrap();
    let (older, handle) = older.into_parts();
    let handle = handle.expect("a handle");
    store.fail_inputs.store(1, Ordering::SeqCst);
    let err = rt.accept_input(id, Input::new(InputKind::ExternalEvent, "v2").supersession_key("k")).await.unwrap_err();
    assert!(matches!(err, RuntimeError::Store { .. }), "{err:?}");
    // Memory and store agree: the older input is still queued, with its waiter.
    let view = rt.input_state(id, older).await.unwrap().expect("known");
    assert_eq!(view.state, InputState::Queued);
    assert_eq!(view.waiters, 1, "its caller still waits on it");
    let stored = burrow::Store::load(&store.memory, id).await.unwrap().unwrap();
    let row = stored.inputs.iter().find(|i| i.record.id == older).expect("stored");
    assert_eq!(row.record.state, InputState::Queued);
    assert_eq!(rt.list_active_inputs(id).await.unwrap().len(), 1, "the failed input was never admitted");
    // It runs when an executor comes, and its caller learns the outcome.
    let exec = Scripted::new();
    rt.attach_executor(id, exec.arc()).await.unwrap();
    let outcome = within(handle.wait()).await.unwrap();
    assert_eq!(outcome.class(), burrow::OutcomeClass::Completed);
    assert_eq!(exec.payloads(), vec!["v1".to_string()]);
}

#[burrow_env::test]
async fn an_inline_run_that_outlives_an_unregister_never_commits() {
    let store = MemoryStore::new();
    let rt = Runtime::with_store(Arc::new(store.clone()));
    let id = SessionId(5);
    rt.prepare(id).await.unwrap();
    let gate = Arc::new(Notify::new());
    let inline = {
        let rt = rt.clone();
        let gate = gate.clone();
        task::spawn(async move {
            rt.accept_and_run(id, Input::prompt("slow turn"), |_request| async move {
                gate.notified().await;
                Ok(((), ExecutorOutput::result("late")))
            })
            .await
        })
    };
    within(async {
        while rt.runtime_state(id).await.unwrap().current_run.is_none() {
            sleep(Duration::from_millis(1)).await;
        }
    })
    .await;
    // The unregister commits while the caller's run is in flight; it does not wait for it.
    within(rt.unregister(id)).await.unwrap();
    // The next registration recovers the input from the store and runs it.
    let exec = Scripted::new();
    rt.attach_executor(id, exec.arc()).await.unwrap();
    support::settle(&rt, id).await;
    assert_eq!(exec.payloads(), vec!["slow turn".to_string()]);
    // Now the old run ends. It was cancelled by the unregister: its caller hears so and nothing commits.
    gate.notify_one();
    let result = within(inline).await.unwrap();
    assert!(matches!(result, Err(RuntimeError::RunCancelled { .. })), "{result:?}");
    let image = burrow::Store::load(&store, id).await.unwrap().unwrap();
    let input = image.inputs[0].record.id;
    let commits = image.receipts.iter().filter(|r| r.contributors.contains(&input)).count();
    assert_eq!(commits, 1, "one input, one committed run: {:?}", image.receipts);
}
