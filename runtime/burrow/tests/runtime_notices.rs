//! A session's notices as a subscriber receives them (specs/session.md#notices): what a subscriber sees of an
//! input's life, of a fail-stop and of an operation; a slow subscriber misses the oldest and is told how many; the
//! stream closes when the session goes.

mod support;

use burrow::{
    Input, Notice, OpStatus, OutcomeClass, Runtime, RuntimeConfig, RuntimeEvent, RuntimePhase, SessionId, Subscription,
    SubscriptionError,
};
use burrow_core::operations::{OpResult, OperationKind, OperationSpec};
use burrow_env::time::Duration;
use support::{FlakyStore, Scripted, attached, submit, within};

const BOUND: Duration = Duration::from_secs(5);

/// Reads notices until `last` matches one, returning all read.
async fn read_until(notices: &mut Subscription, last: impl Fn(&Notice) -> bool) -> Vec<Notice> {
    let mut read = Vec::new();
    loop {
        let notice = notices.next(BOUND).await.expect("a notice");
        let done = last(&notice);
        read.push(notice);
        if done {
            return read;
        }
    }
}

#[burrow_env::test]
async fn a_subscriber_sees_an_input_from_its_admission_to_its_end() {
    let exec = Scripted::new();
    let (rt, id) = attached(&exec).await;
    support::parked(&rt, id).await;
    let mut notices = rt.subscribe(id).await.unwrap();
    let handle = submit(&rt, id, Input::prompt("ok:hello")).await;
    let input = handle.input();
    let class = within(handle.wait()).await.unwrap().class();
    let read = read_until(&mut notices, |n| matches!(n, Notice::PhaseChanged { to: RuntimePhase::Attached, .. })).await;
    let run = exec.runs()[0].run;
    assert_eq!(
        read,
        [
            Notice::InputAccepted { input, kind: "Prompt" },
            Notice::PhaseChanged { from: RuntimePhase::Attached, to: RuntimePhase::Running },
            Notice::RunStarted { run, inputs: vec![input] },
            Notice::InputEnded { input, class: Some(class) },
            Notice::RunEnded { run },
            Notice::PhaseChanged { from: RuntimePhase::Running, to: RuntimePhase::Attached },
        ]
    );
    assert_eq!(class, OutcomeClass::Completed);
    assert_eq!(notices.try_next(), Ok(None), "nothing more was told");
}

#[burrow_env::test]
async fn every_subscriber_sees_every_notice_and_a_late_one_sees_only_what_follows() {
    let rt = Runtime::ephemeral();
    let id = SessionId(1);
    rt.prepare(id).await.unwrap();
    let mut first = rt.subscribe(id).await.unwrap();
    let mut second = rt.subscribe(id).await.unwrap();
    rt.publish_event(id, RuntimeEvent::new("a", "1")).await.unwrap();
    let mut late = rt.subscribe(id).await.unwrap();
    rt.publish_event(id, RuntimeEvent::new("b", "2")).await.unwrap();
    for notices in [&mut first, &mut second] {
        assert_eq!(notices.next(BOUND).await, Ok(Notice::Published(RuntimeEvent::new("a", "1"))));
        assert_eq!(notices.next(BOUND).await, Ok(Notice::Published(RuntimeEvent::new("b", "2"))));
    }
    assert_eq!(late.next(BOUND).await, Ok(Notice::Published(RuntimeEvent::new("b", "2"))));
    assert_eq!(late.next(Duration::from_millis(20)).await, Err(SubscriptionError::TimedOut { waited_ms: 20 }));
}

#[burrow_env::test]
async fn a_slow_subscriber_misses_the_oldest_notices_and_is_told_how_many() {
    let rt = Runtime::with_config(RuntimeConfig { notice_capacity: 4, ..RuntimeConfig::default() }, None);
    let id = SessionId(1);
    rt.prepare(id).await.unwrap();
    let mut slow = rt.subscribe(id).await.unwrap();
    // The session never waits for it: ten publishes return while nothing is read.
    for n in 0..10 {
        within(rt.publish_event(id, RuntimeEvent::new("tick", n.to_string()))).await.unwrap();
    }
    assert_eq!(slow.next(BOUND).await, Err(SubscriptionError::Missed(6)));
    for n in 6..10 {
        assert_eq!(slow.try_next(), Ok(Some(Notice::Published(RuntimeEvent::new("tick", n.to_string())))));
    }
    assert_eq!(slow.try_next(), Ok(None));
}

#[burrow_env::test]
async fn a_fail_stop_tells_each_end_once_with_the_class_its_waiter_got() {
    let store = FlakyStore::new();
    let rt = Runtime::with_store(store.arc());
    let id = SessionId(1);
    rt.prepare(id).await.unwrap();
    let handles = [submit(&rt, id, Input::prompt("ok:a")).await, submit(&rt, id, Input::prompt("ok:b")).await];
    let mut notices = rt.subscribe(id).await.unwrap();
    // The attach's lifecycle row fails: the session fail-stops with both inputs queued.
    store.fail_lifecycles.store(1, std::sync::atomic::Ordering::SeqCst);
    let exec = Scripted::new();
    let _ = rt.attach_executor(id, exec.arc()).await;
    let mut classes = Vec::new();
    for handle in handles {
        let input = handle.input();
        let outcome = within(handle.wait()).await.unwrap();
        classes.push((input, Some(outcome.class())));
    }
    let read = read_until(&mut notices, |n| matches!(n, Notice::PhaseChanged { to: RuntimePhase::Stopped, .. })).await;
    let ended: Vec<_> = read
        .iter()
        .filter_map(|n| match n {
            Notice::InputEnded { input, class } => Some((*input, *class)),
            _ => None,
        })
        .collect();
    assert_eq!(ended, classes, "one end per input, with its waiter's class: {read:?}");
    assert!(ended.iter().all(|(_, class)| *class == Some(OutcomeClass::RuntimeTerminated)));
}

#[burrow_env::test]
async fn an_operation_s_end_is_told() {
    let rt = Runtime::ephemeral();
    let id = SessionId(1);
    let ops = rt.prepare(id).await.unwrap().operations;
    let mut notices = rt.subscribe(id).await.unwrap();
    let spec = OperationSpec::new(OperationKind::BackgroundTool, "fetch");
    let op = ops.register(spec).await.unwrap();
    ops.provisioning_succeeded(op).await.unwrap();
    ops.complete(op, OpResult { content: "done".into(), is_error: false }).await.unwrap();
    let read = read_until(&mut notices, |n| matches!(n, Notice::OperationEnded { .. })).await;
    assert_eq!(read.last(), Some(&Notice::OperationEnded { op, status: OpStatus::Completed }));
}

#[burrow_env::test]
async fn the_stream_closes_when_the_session_is_gone() {
    let rt = Runtime::ephemeral();
    let id = SessionId(1);
    rt.prepare(id).await.unwrap();
    let mut notices = rt.subscribe(id).await.unwrap();
    rt.publish_event(id, RuntimeEvent::new("last", "")).await.unwrap();
    drop(rt);
    assert_eq!(notices.next(BOUND).await, Ok(Notice::Published(RuntimeEvent::new("last", ""))));
    assert_eq!(notices.next(BOUND).await, Err(SubscriptionError::Closed), "every notice made was read first");
}
