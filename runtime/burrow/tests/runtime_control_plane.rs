//! The control-plane trait (SPEC 3): calls addressed by runtime id, NotFound for unknown ids, fencing by binding.

mod support;

use burrow::{
    ControlPlane, Input, InputKind, Notice, OutcomeClass, Runtime, RuntimeError, RuntimeEvent, RuntimePhase, SessionId,
    Target,
};
use burrow_core::registration::RegistrationRefusal;
use burrow_core::session::Refusal;
use support::{Scripted, within};

fn plane(rt: &Runtime) -> &dyn ControlPlane {
    rt
}

#[burrow_env::test]
async fn every_call_on_an_unknown_id_is_not_found() {
    let rt = Runtime::ephemeral();
    let cp = plane(&rt);
    let t = Target::from(SessionId(404));
    let nf = RuntimeError::NotFound(SessionId(404));
    assert_eq!(cp.ingest(t, Input::prompt("x")).await.unwrap_err(), nf);
    assert_eq!(cp.publish_event(t, RuntimeEvent::new("e", "")).await.unwrap_err(), nf);
    assert_eq!(cp.retire(t).await.unwrap_err(), nf);
    assert_eq!(cp.recycle(t).await.unwrap_err(), nf);
    assert_eq!(cp.reset(t).await.unwrap_err(), nf);
    assert_eq!(cp.recover(t).await.unwrap_err(), nf);
    assert_eq!(cp.destroy(t).await.unwrap_err(), nf);
    assert_eq!(cp.runtime_state(t).await.unwrap_err(), nf);
    assert_eq!(cp.load_boundary_receipt(t, burrow::RunId(1)).await.unwrap_err(), nf);
}

#[burrow_env::test]
async fn a_stale_binding_is_refused_after_a_recycle() {
    let rt = Runtime::ephemeral();
    let id = SessionId(1);
    let old = rt.prepare(id).await.unwrap().binding;
    let cp = plane(&rt);
    cp.recycle(Target::bound(id, old)).await.unwrap();
    let err = cp.retire(Target::bound(id, old)).await.unwrap_err();
    assert!(matches!(err.refusal(), Some(Refusal::Registration(RegistrationRefusal::StaleBinding { .. }))), "{err:?}");
    let current = cp.runtime_state(id.into()).await.unwrap().binding.unwrap();
    cp.retire(Target::bound(id, current)).await.unwrap();
    assert_eq!(cp.runtime_state(id.into()).await.unwrap().phase, RuntimePhase::Retired);
}

#[burrow_env::test]
async fn ingest_reaches_the_session_and_a_newer_external_event_supersedes() {
    let rt = Runtime::ephemeral();
    let id = SessionId(2);
    rt.prepare(id).await.unwrap();
    let cp = plane(&rt);
    let (_, handle) = cp.ingest(id.into(), Input::prompt("ok:via plane")).await.unwrap().into_parts();
    let event = |payload: &str| Input::new(InputKind::ExternalEvent, payload).supersession_key("quote");
    let older = cp.ingest(id.into(), event("ok:v1")).await.unwrap();
    cp.ingest(id.into(), event("ok:v2")).await.unwrap();
    let view = rt.input_state(id, older.input()).await.unwrap().unwrap();
    assert!(matches!(view.state, burrow::InputState::Superseded { .. }));
    let exec = Scripted::new();
    rt.attach_executor(id, exec.arc()).await.unwrap();
    assert_eq!(within(handle.unwrap().wait()).await.unwrap().class(), OutcomeClass::Completed);
    support::settle(&rt, id).await;
    assert_eq!(exec.payloads(), vec!["ok:via plane", "ok:v2"]);
}

#[burrow_env::test]
async fn publish_event_reaches_the_subscribers_and_is_fenced_like_every_call() {
    let rt = Runtime::ephemeral();
    let id = SessionId(4);
    let old = rt.prepare(id).await.unwrap().binding;
    let cp = plane(&rt);
    let mut notices = rt.subscribe(id).await.unwrap();
    cp.publish_event(Target::bound(id, old), RuntimeEvent::new("deploy", "v1")).await.unwrap();
    let next = within(notices.next(std::time::Duration::from_secs(5))).await.unwrap();
    assert_eq!(next, Notice::Published(RuntimeEvent::new("deploy", "v1")));
    assert!(rt.list_active_inputs(id).await.unwrap().is_empty(), "an event is not an input");
    cp.recycle(Target::bound(id, old)).await.unwrap();
    let err = cp.publish_event(Target::bound(id, old), RuntimeEvent::new("deploy", "v2")).await.unwrap_err();
    assert!(matches!(err.refusal(), Some(Refusal::Registration(RegistrationRefusal::StaleBinding { .. }))), "{err:?}");
    let err = cp.publish_event(id.into(), RuntimeEvent::new("", "no name")).await.unwrap_err();
    assert!(matches!(err.refusal(), Some(Refusal::InvalidEvent { .. })), "{err:?}");
    while let Some(notice) = notices.try_next().unwrap() {
        assert!(!matches!(notice, Notice::Published(_)), "a refused event reached a subscriber: {notice:?}");
    }
}

#[burrow_env::test]
async fn reset_recover_destroy_and_receipts_through_the_plane() {
    let rt = Runtime::ephemeral();
    let id = SessionId(3);
    let exec = Scripted::new();
    rt.attach_executor(id, exec.arc()).await.unwrap();
    let cp = plane(&rt);
    let (_, handle) = cp.ingest(id.into(), Input::prompt("ok:r")).await.unwrap().into_parts();
    within(handle.unwrap().wait()).await.unwrap();
    let run = exec.runs()[0].run;
    let receipt = cp.load_boundary_receipt(id.into(), run).await.unwrap().expect("committed");
    assert_eq!(receipt.run, run);
    assert_eq!(cp.reset(id.into()).await.unwrap().abandoned, 0);
    assert_eq!(cp.recover(id.into()).await.unwrap().recovered, 0);
    cp.destroy(id.into()).await.unwrap();
    assert_eq!(cp.runtime_state(id.into()).await.unwrap().phase, RuntimePhase::Destroyed);
}
