//! Peer ingress (SPEC 2.5): the drain task pulls from a PeerSource into its session; its mode follows the phase and
//! keep-alive.

mod support;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use burrow::peer::{Drained, PeerError, PeerSource};
use burrow::{BoxFuture, Input, InputKind, Runtime, SessionConfig, SessionId};
use burrow_core::drain::{DrainExitReason, DrainMode, DrainPhase};
use burrow_env::sync::Notify;
use burrow_env::time::{Duration, sleep};
use support::{Scripted, within};

#[derive(Default)]
struct Inbox {
    queue: Mutex<VecDeque<Input>>,
    notify: Notify,
    dismissed: AtomicBool,
    fail_next: AtomicBool,
}

impl Inbox {
    fn push(&self, payload: &str) {
        self.queue.lock().unwrap().push_back(Input::new(InputKind::PeerMessage, payload));
        self.notify.notify_one();
    }
}

impl PeerSource for Inbox {
    fn drain(&self, max: usize) -> BoxFuture<'_, Result<Drained, PeerError>> {
        if self.fail_next.swap(false, Ordering::SeqCst) {
            return Box::pin(async { Err(PeerError { message: "inbox unreachable".into() }) });
        }
        let mut queue = self.queue.lock().unwrap();
        let take = queue.len().min(max);
        let messages = queue.drain(..take).collect();
        let dismissed = self.dismissed.load(Ordering::SeqCst);
        Box::pin(async move { Ok(Drained { messages, dismissed }) })
    }

    fn notified(&self) -> BoxFuture<'_, ()> {
        Box::pin(self.notify.notified())
    }
}

fn comms() -> SessionConfig {
    SessionConfig { comms_enabled: true, ..SessionConfig::default() }
}

async fn drain_phase(rt: &Runtime, id: SessionId) -> DrainPhase {
    rt.runtime_state(id).await.unwrap().drain
}

async fn wait_for(rt: &Runtime, id: SessionId, wanted: impl Fn(DrainPhase) -> bool) {
    within(async {
        while !wanted(drain_phase(rt, id).await) {
            sleep(Duration::from_millis(1)).await;
        }
    })
    .await;
}

#[burrow_env::test]
async fn an_attached_session_drains_peer_messages_into_runs() {
    let rt = Runtime::ephemeral();
    let id = SessionId(1);
    rt.prepare_with(id, comms()).await.unwrap();
    let inbox = Arc::new(Inbox::default());
    rt.set_peer_source(id, inbox.clone()).await.unwrap();
    let exec = Scripted::new();
    rt.attach_executor(id, exec.arc()).await.unwrap();
    wait_for(&rt, id, |p| matches!(p, DrainPhase::Running { mode: DrainMode::AttachedSession, .. })).await;
    inbox.push("ok:hello peer");
    within(async {
        while exec.payloads().is_empty() {
            sleep(Duration::from_millis(1)).await;
        }
    })
    .await;
    assert_eq!(exec.payloads(), vec!["ok:hello peer"]);
    // A message that arrives after the drain parked is still seen.
    sleep(Duration::from_millis(5)).await;
    inbox.push("ok:second");
    within(async {
        while exec.payloads().len() < 2 {
            sleep(Duration::from_millis(1)).await;
        }
    })
    .await;
}

#[burrow_env::test]
async fn without_comms_no_drain_runs() {
    let rt = Runtime::ephemeral();
    let id = SessionId(2);
    rt.prepare(id).await.unwrap();
    rt.set_peer_source(id, Arc::new(Inbox::default())).await.unwrap();
    rt.attach_executor(id, Scripted::new().arc()).await.unwrap();
    assert_eq!(drain_phase(&rt, id).await, DrainPhase::Inactive);
}

#[burrow_env::test]
async fn keep_alive_hosts_an_idle_session_and_queues_its_messages() {
    let rt = Runtime::ephemeral();
    let id = SessionId(3);
    rt.prepare_with(id, comms()).await.unwrap();
    let inbox = Arc::new(Inbox::default());
    rt.set_peer_source(id, inbox.clone()).await.unwrap();
    assert_eq!(drain_phase(&rt, id).await, DrainPhase::Inactive, "idle without keep-alive: no drain");
    rt.set_keep_alive(id, true).await.unwrap();
    wait_for(&rt, id, |p| matches!(p, DrainPhase::Running { mode: DrainMode::PersistentHost, .. })).await;
    inbox.push("ok:while idle");
    within(async {
        while rt.list_active_inputs(id).await.unwrap().is_empty() {
            sleep(Duration::from_millis(1)).await;
        }
    })
    .await;
    rt.set_keep_alive(id, false).await.unwrap();
    wait_for(&rt, id, |p| !p.is_running()).await;
}

/// Decided (ARCHITECTURE.md "Decisions", item 13 of the parity list): burrow has no separate Timed mode; the
/// PersistentHost drain of an idle kept-alive session is the timed one, ending after `peer_idle_timeout` (300 s by
/// default) without a message, and starting again on the next message's wake. An attached session's drain has no
/// idle timeout.
#[burrow_env::test]
async fn an_idle_persistent_host_drain_ends_after_its_idle_timeout_and_an_attached_one_does_not() {
    assert_eq!(burrow::RuntimeConfig::default().peer_idle_timeout, Duration::from_secs(300));
    let config = burrow::RuntimeConfig { peer_idle_timeout: Duration::from_millis(30), ..Default::default() };
    let rt = Runtime::with_config(config, None);
    let id = SessionId(12);
    rt.prepare_with(id, comms()).await.unwrap();
    let inbox = Arc::new(Inbox::default());
    rt.set_peer_source(id, inbox.clone()).await.unwrap();
    rt.set_keep_alive(id, true).await.unwrap();
    wait_for(&rt, id, |p| matches!(p, DrainPhase::Running { mode: DrainMode::PersistentHost, .. })).await;
    wait_for(&rt, id, |p| p == DrainPhase::Stopped { reason: DrainExitReason::IdleTimeout }).await;
    let exec = Scripted::new();
    rt.attach_executor(id, exec.arc()).await.unwrap();
    wait_for(&rt, id, |p| matches!(p, DrainPhase::Running { mode: DrainMode::AttachedSession, .. })).await;
    sleep(Duration::from_millis(120)).await;
    assert!(matches!(drain_phase(&rt, id).await, DrainPhase::Running { mode: DrainMode::AttachedSession, .. }));
}

#[burrow_env::test]
async fn a_dismissed_source_ends_the_drain() {
    let rt = Runtime::ephemeral();
    let id = SessionId(4);
    rt.prepare_with(id, comms()).await.unwrap();
    let inbox = Arc::new(Inbox::default());
    inbox.dismissed.store(true, Ordering::SeqCst);
    rt.set_peer_source(id, inbox).await.unwrap();
    rt.attach_executor(id, Scripted::new().arc()).await.unwrap();
    wait_for(&rt, id, |p| matches!(p, DrainPhase::Stopped { .. })).await;
}

#[burrow_env::test]
async fn a_failed_persistent_host_drain_is_respawned() {
    let rt = Runtime::ephemeral();
    let id = SessionId(5);
    rt.prepare_with(id, comms()).await.unwrap();
    let inbox = Arc::new(Inbox::default());
    inbox.fail_next.store(true, Ordering::SeqCst);
    rt.set_peer_source(id, inbox.clone()).await.unwrap();
    rt.set_keep_alive(id, true).await.unwrap();
    wait_for(&rt, id, |p| p == DrainPhase::ExitedRespawnable).await;
    wait_for(&rt, id, |p| matches!(p, DrainPhase::Running { mode: DrainMode::PersistentHost, .. })).await;
    inbox.push("ok:after respawn");
    within(async {
        while rt.list_active_inputs(id).await.unwrap().is_empty() {
            sleep(Duration::from_millis(2)).await;
        }
    })
    .await;
}

#[burrow_env::test]
async fn destroy_shuts_the_drain_down() {
    let rt = Runtime::ephemeral();
    let id = SessionId(6);
    rt.prepare_with(id, comms()).await.unwrap();
    rt.set_peer_source(id, Arc::new(Inbox::default())).await.unwrap();
    rt.attach_executor(id, Scripted::new().arc()).await.unwrap();
    wait_for(&rt, id, DrainPhase::is_running).await;
    rt.destroy(id).await.unwrap();
    wait_for(&rt, id, |p| !p.is_running()).await;
}

#[burrow_env::test]
async fn unregister_stops_the_drain() {
    let rt = Runtime::ephemeral();
    let id = SessionId(7);
    rt.prepare_with(id, comms()).await.unwrap();
    let inbox = Arc::new(Inbox::default());
    rt.set_peer_source(id, inbox.clone()).await.unwrap();
    rt.attach_executor(id, Scripted::new().arc()).await.unwrap();
    wait_for(&rt, id, DrainPhase::is_running).await;
    rt.unregister(id).await.unwrap();
    inbox.push("ok:too late");
    sleep(Duration::from_millis(20)).await;
    assert_eq!(inbox.queue.lock().unwrap().len(), 1, "no drain is left to pull it");
}

#[burrow_env::test]
async fn dropping_the_runtime_ends_the_drain_of_a_session_without_a_loop_and_its_callers_learn_it() {
    // A kept-alive idle session: its drain runs with no loop to take the stop path when the runtime goes.
    let rt = Runtime::ephemeral();
    let id = SessionId(8);
    rt.prepare_with(id, comms()).await.unwrap();
    let inbox = Arc::new(Inbox::default());
    rt.set_peer_source(id, inbox.clone()).await.unwrap();
    rt.set_keep_alive(id, true).await.unwrap();
    wait_for(&rt, id, |p| matches!(p, DrainPhase::Running { mode: DrainMode::PersistentHost, .. })).await;
    let accepted = rt.accept_input_with_completion(id, Input::prompt("queued")).await.unwrap();
    let burrow::AcceptOutcome::Accepted { handle: Some(handle), .. } = accepted else { panic!("{accepted:?}") };
    drop(rt);
    // Before the fix the drain held the session for good, and this caller waited forever.
    let result = within(handle.wait()).await;
    let dropped = burrow::WaitFailure::RuntimeDropped;
    assert!(
        matches!(result, Err(burrow::CompletionError::Unresolved { reason, .. }) if reason == dropped),
        "{result:?}"
    );
    assert!(Arc::strong_count(&inbox) == 1, "the drain let its source go");
}

/// Issue 18 item 4: comms turned on after prepare starts the drain an attached session wants, and off aborts it;
/// `has_comms` needs both comms and a source.
#[burrow_env::test]
async fn comms_can_be_turned_on_and_off_after_prepare() {
    let rt = Runtime::ephemeral();
    let id = SessionId(13);
    let exec = Scripted::new();
    rt.attach_executor(id, exec.arc()).await.unwrap();
    let inbox = Arc::new(Inbox::default());
    rt.set_peer_source(id, inbox.clone()).await.unwrap();
    assert!(!rt.has_comms(id).await.unwrap(), "a source, but comms is off");
    assert_eq!(drain_phase(&rt, id).await, DrainPhase::Inactive);
    rt.set_comms_enabled(id, true).await.unwrap();
    assert!(rt.has_comms(id).await.unwrap());
    wait_for(&rt, id, |p| matches!(p, DrainPhase::Running { mode: DrainMode::AttachedSession, .. })).await;
    inbox.push("ok:after the switch");
    within(async {
        while exec.payloads().is_empty() {
            sleep(Duration::from_millis(1)).await;
        }
    })
    .await;
    rt.set_comms_enabled(id, false).await.unwrap();
    let phase = rt.wait_drain(id, Duration::from_secs(5)).await.unwrap();
    assert_eq!(phase, DrainPhase::Stopped { reason: DrainExitReason::Aborted });
    assert!(!rt.has_comms(id).await.unwrap());
}

/// Issue 18 item 4: `abort_drain` ends the running task, which stays ended until the session's wish changes;
/// `wait_drain` is bounded.
#[burrow_env::test]
async fn abort_drain_ends_the_task_until_the_wish_changes_and_wait_drain_is_bounded() {
    let rt = Runtime::ephemeral();
    let id = SessionId(14);
    rt.prepare_with(id, comms()).await.unwrap();
    let exec = Scripted::new();
    rt.attach_executor(id, exec.arc()).await.unwrap();
    let inbox = Arc::new(Inbox::default());
    rt.set_peer_source(id, inbox.clone()).await.unwrap();
    wait_for(&rt, id, |p| p.is_running()).await;
    let err = rt.wait_drain(id, Duration::from_millis(10)).await.unwrap_err();
    assert!(matches!(err, burrow::RuntimeError::TimedOut { what: "wait_drain", waited_ms: 10, .. }), "{err:?}");
    rt.abort_drain(id).await.unwrap();
    let phase = rt.wait_drain(id, Duration::from_secs(5)).await.unwrap();
    assert_eq!(phase, DrainPhase::Stopped { reason: DrainExitReason::Aborted });
    // A run starts and ends (Attached -> Running -> Attached): the wish is the same, so no task starts.
    within(support::submit(&rt, id, Input::prompt("ok:run")).await.wait()).await.unwrap();
    assert_eq!(drain_phase(&rt, id).await, DrainPhase::Stopped { reason: DrainExitReason::Aborted });
    rt.abort_drain(id).await.unwrap();
    // A new source is a change: the drain starts again and takes what waits.
    inbox.push("ok:later");
    rt.set_peer_source(id, inbox.clone()).await.unwrap();
    wait_for(&rt, id, |p| p.is_running()).await;
    within(async {
        while !exec.payloads().contains(&"ok:later".to_owned()) {
            sleep(Duration::from_millis(1)).await;
        }
    })
    .await;
}
