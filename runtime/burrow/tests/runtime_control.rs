//! Control calls (SPEC 3): interrupt, cancel after boundary, stop, retire, recycle, reset, recover, destroy,
//! attach and detach, unregister; each with its refusals.

mod support;

use burrow::{
    AttachReport, Input, InputState, Outcome, OutcomeClass, RunId, Runtime, RuntimePhase, SessionId, StopReason,
};
use burrow_core::registration::RegistrationRefusal;
use burrow_core::session::Refusal;
use support::{Scripted, attached, parked, settle, submit, within};

#[burrow_env::test]
async fn interrupt_cancels_exactly_the_current_run_and_the_backlog_goes_on() {
    let exec = Scripted::new();
    let (rt, id) = attached(&exec).await;
    let mut starts = exec.watch_starts();
    let first = submit(&rt, id, Input::prompt("block")).await;
    let second = submit(&rt, id, Input::prompt("ok:next")).await;
    let run = within(starts.recv()).await.unwrap().run;
    let stale = RunId(run.0 + 100);
    let err = rt.interrupt(id, Some(stale)).await.unwrap_err();
    assert!(matches!(err.refusal(), Some(Refusal::StaleRun { .. })), "another run id is refused: {err:?}");
    assert_eq!(rt.interrupt(id, None).await.unwrap(), run);
    assert_eq!(within(first.wait()).await.unwrap(), Outcome::Cancelled);
    assert_eq!(within(second.wait()).await.unwrap().class(), OutcomeClass::Completed);
}

#[burrow_env::test]
async fn interrupt_without_a_run_is_refused() {
    let exec = Scripted::new();
    let (rt, id) = attached(&exec).await;
    let err = rt.interrupt(id, None).await.unwrap_err();
    assert!(matches!(err.refusal(), Some(Refusal::NoRunInFlight)), "{err:?}");
}

#[burrow_env::test]
async fn cancel_after_boundary_reaches_the_executor_of_the_current_run_once() {
    let exec = Scripted::new();
    let (rt, id) = attached(&exec).await;
    let mut starts = exec.watch_starts();
    let handle = submit(&rt, id, Input::prompt("block")).await;
    let run = within(starts.recv()).await.unwrap().run;
    rt.cancel_after_boundary(id).await.unwrap();
    rt.cancel_after_boundary(id).await.unwrap();
    exec.release();
    within(handle.wait()).await.unwrap();
    assert_eq!(exec.boundary_cancels(), vec![run], "asked once, for that run");
    let err = rt.cancel_after_boundary(id).await.unwrap_err();
    assert!(matches!(err.refusal(), Some(Refusal::NoRunInFlight)));
}

#[burrow_env::test]
async fn a_failed_cancel_after_boundary_fails_closed_by_interrupting_the_run() {
    let exec = Scripted::new();
    exec.refuse_boundary_cancels();
    let (rt, id) = attached(&exec).await;
    let mut starts = exec.watch_starts();
    let handle = submit(&rt, id, Input::prompt("block")).await;
    let run = within(starts.recv()).await.unwrap().run;
    rt.cancel_after_boundary(id).await.unwrap();
    assert_eq!(within(handle.wait()).await.unwrap(), Outcome::Cancelled, "not left running unbounded");
    assert_eq!(exec.boundary_cancels(), vec![run]);
    assert_eq!(rt.runtime_state(id).await.unwrap().current_run, None);
}

#[burrow_env::test]
async fn stop_when_idle_stops_and_cleans_up_the_executor_once_and_resolves_everything() {
    let exec = Scripted::new();
    let (rt, id) = attached(&exec).await;
    parked(&rt, id).await;
    let report = rt.stop_executor(id).await.unwrap();
    assert!(!report.deferred);
    assert_eq!(exec.stops(), vec![StopReason::Requested]);
    assert_eq!(exec.cleanups(), 1);
    let state = rt.runtime_state(id).await.unwrap();
    assert_eq!(state.phase, RuntimePhase::Stopped);
    assert!(!state.loop_live);
    assert_eq!(rt.stop_executor(id).await.unwrap().abandoned, 0, "a second stop changes nothing");
    assert_eq!(exec.stops().len(), 1);
}

#[burrow_env::test]
async fn stop_during_a_run_is_deferred_the_run_completes_then_queued_work_is_abandoned() {
    let exec = Scripted::new();
    let (rt, id) = attached(&exec).await;
    let mut starts = exec.watch_starts();
    let running = submit(&rt, id, Input::prompt("block:done")).await;
    let queued = submit(&rt, id, Input::prompt("ok:never")).await;
    within(starts.recv()).await.unwrap();
    let stopper = {
        let rt = rt.clone();
        burrow_env::task::spawn(async move { rt.stop_executor(id).await })
    };
    for _ in 0..10 {
        burrow_env::task::yield_now().await;
    }
    assert!(!stopper.is_finished(), "stop_executor waits for the run");
    exec.release();
    let report = within(stopper).await.unwrap().unwrap();
    assert!(report.deferred);
    assert_eq!(within(running.wait()).await.unwrap(), Outcome::Completed(burrow::RunResult { output: "done".into() }));
    assert_eq!(within(queued.wait()).await.unwrap().class(), OutcomeClass::RuntimeTerminated);
    assert_eq!(exec.payloads(), vec!["block:done"]);
    assert_eq!(exec.cleanups(), 1, "cleanup ran before stop_executor returned");
    assert_eq!(rt.runtime_state(id).await.unwrap().pending_waiters, 0);
}

#[burrow_env::test]
async fn attaching_again_revives_a_stopped_session() {
    let exec = Scripted::new();
    let (rt, id) = attached(&exec).await;
    rt.stop_executor(id).await.unwrap();
    let next = Scripted::new();
    assert!(matches!(rt.attach_executor(id, next.arc()).await.unwrap(), AttachReport::Attached { .. }));
    let outcome = within(submit(&rt, id, Input::prompt("ok:alive")).await.wait()).await.unwrap();
    assert_eq!(outcome.class(), OutcomeClass::Completed);
    assert_eq!(next.payloads(), vec!["ok:alive"]);
}

/// Decided differently from the reference (ARCHITECTURE.md "Decisions", item 11 of the parity list): a prepare of a
/// Stopped session hands back its bindings and leaves it Stopped; only an attach (or an unregister and a fresh
/// prepare) brings it back.
#[burrow_env::test]
async fn a_prepare_leaves_a_stopped_session_stopped_and_only_an_attach_revives_it() {
    let exec = Scripted::new();
    let (rt, id) = attached(&exec).await;
    let before = rt.prepare(id).await.unwrap().binding;
    rt.stop_executor(id).await.unwrap();
    let again = rt.prepare(id).await.unwrap().binding;
    assert_eq!(again, before, "a prepare changes no binding");
    assert_eq!(rt.runtime_state(id).await.unwrap().phase, RuntimePhase::Stopped);
    let refused = rt.accept_input(id, Input::prompt("ok:x")).await.unwrap_err();
    assert!(matches!(refused.refusal(), Some(Refusal::AdmissionClosed { .. })), "{refused:?}");
    let next = Scripted::new();
    rt.attach_executor(id, next.arc()).await.unwrap();
    assert_eq!(rt.runtime_state(id).await.unwrap().phase, RuntimePhase::Attached);
    let outcome = within(submit(&rt, id, Input::prompt("ok:back")).await.wait()).await.unwrap();
    assert_eq!(outcome.class(), OutcomeClass::Completed);
}

#[burrow_env::test]
async fn concurrent_attaches_start_one_loop() {
    let rt = Runtime::ephemeral();
    let id = SessionId(2);
    rt.prepare(id).await.unwrap();
    let (a, b) = (Scripted::new(), Scripted::new());
    let (ra, rb) = burrow_env::join!(rt.attach_executor(id, a.arc()), rt.attach_executor(id, b.arc()));
    let reports = [ra.unwrap(), rb.unwrap()];
    let attached = reports.iter().filter(|r| matches!(r, AttachReport::Attached { .. })).count();
    assert_eq!(attached, 1, "single flight: {reports:?}");
    within(submit(&rt, id, Input::prompt("ok:1")).await.wait()).await.unwrap();
    assert_eq!(a.runs().len() + b.runs().len(), 1);
}

#[burrow_env::test]
async fn a_dead_attachment_is_repaired_by_the_next_attach() {
    let exec = Scripted::new();
    let (rt, id) = attached(&exec).await;
    parked(&rt, id).await;
    // Kill the loop from outside, as a crashed task would vanish: the machine still believes it is live.
    rt.kill_loop(id).await.unwrap();
    let queued = submit(&rt, id, Input::prompt("ok:after repair")).await;
    let fresh = Scripted::new();
    assert!(matches!(rt.attach_executor(id, fresh.arc()).await.unwrap(), AttachReport::Attached { .. }));
    assert_eq!(within(queued.wait()).await.unwrap().class(), OutcomeClass::Completed);
    assert_eq!(fresh.payloads(), vec!["ok:after repair"]);
}

#[burrow_env::test]
async fn detach_keeps_queued_work_and_is_refused_during_a_run() {
    let exec = Scripted::new();
    let (rt, id) = attached(&exec).await;
    let mut starts = exec.watch_starts();
    let running = submit(&rt, id, Input::prompt("block")).await;
    within(starts.recv()).await.unwrap();
    let err = rt.detach_executor(id).await.unwrap_err();
    assert!(matches!(err.refusal(), Some(Refusal::Phase(_))), "{err:?}");
    exec.release();
    within(running.wait()).await.unwrap();
    settle(&rt, id).await;
    rt.detach_executor(id).await.unwrap();
    assert_eq!(exec.cleanups(), 1);
    let queued = submit(&rt, id, Input::prompt("ok:later")).await;
    assert_eq!(rt.runtime_state(id).await.unwrap().phase, RuntimePhase::Idle);
    rt.attach_executor(id, exec.arc()).await.unwrap();
    assert_eq!(within(queued.wait()).await.unwrap().class(), OutcomeClass::Completed);
}

#[burrow_env::test]
async fn retire_with_a_loop_drains_what_was_queued_and_closes_admission() {
    let exec = Scripted::new();
    let (rt, id) = attached(&exec).await;
    let mut starts = exec.watch_starts();
    let running = submit(&rt, id, Input::prompt("block")).await;
    let queued = [submit(&rt, id, Input::prompt("ok:a")).await, submit(&rt, id, Input::prompt("ok:b")).await];
    within(starts.recv()).await.unwrap();
    let report = rt.retire(id).await.unwrap();
    assert_eq!((report.pending_drain, report.abandoned), (2, 0));
    assert!(rt.accept_input(id, Input::prompt("late")).await.is_err());
    exec.release();
    within(running.wait()).await.unwrap();
    for handle in queued {
        assert_eq!(within(handle.wait()).await.unwrap().class(), OutcomeClass::Completed);
    }
    assert_eq!(rt.runtime_state(id).await.unwrap().phase, RuntimePhase::Retired, "the run returns to Retired");
}

#[burrow_env::test]
async fn recycle_keeps_pending_waiters_and_moves_the_binding_to_a_new_generation() {
    let rt = Runtime::ephemeral();
    let id = SessionId(3);
    let before = rt.prepare(id).await.unwrap().binding;
    let waiting = submit(&rt, id, Input::prompt("ok:survivor")).await;
    let report = rt.recycle(id).await.unwrap();
    assert_eq!(report.transferred, 1);
    let after = rt.runtime_state(id).await.unwrap().binding.unwrap();
    assert_eq!(after.epoch, before.epoch);
    assert!(after.generation > before.generation);
    assert!(rt.check_binding(id, before).await.is_err(), "the old binding is stale");
    let exec = Scripted::new();
    rt.attach_executor(id, exec.arc()).await.unwrap();
    assert_eq!(within(waiting.wait()).await.unwrap().class(), OutcomeClass::Completed, "the waiter was kept");
}

#[burrow_env::test]
async fn recycle_and_reset_are_refused_while_a_run_is_in_flight() {
    let exec = Scripted::new();
    let (rt, id) = attached(&exec).await;
    let mut starts = exec.watch_starts();
    let running = submit(&rt, id, Input::prompt("block")).await;
    within(starts.recv()).await.unwrap();
    for err in [rt.recycle(id).await.unwrap_err(), rt.reset(id).await.unwrap_err(), rt.recover(id).await.unwrap_err()] {
        assert!(matches!(err.refusal(), Some(Refusal::Phase(_))), "{err:?}");
    }
    exec.release();
    within(running.wait()).await.unwrap();
}

#[burrow_env::test]
async fn reset_abandons_every_pending_input_and_resolves_its_waiters() {
    let rt = Runtime::ephemeral();
    let id = SessionId(4);
    rt.prepare(id).await.unwrap();
    let handles = [submit(&rt, id, Input::prompt("a")).await, submit(&rt, id, Input::prompt("b")).await];
    assert_eq!(rt.reset(id).await.unwrap().abandoned, 2);
    for handle in handles {
        assert_eq!(within(handle.wait()).await.unwrap().class(), OutcomeClass::RuntimeTerminated);
    }
    let state = rt.runtime_state(id).await.unwrap();
    assert_eq!((state.phase, state.active_inputs, state.pending_waiters), (RuntimePhase::Idle, 0, 0));
}

#[burrow_env::test]
async fn recover_in_memory_drops_ephemeral_inputs_and_keeps_durable_ones() {
    let rt = Runtime::ephemeral();
    let id = SessionId(5);
    rt.prepare(id).await.unwrap();
    let durable = submit(&rt, id, Input::prompt("keep")).await;
    let ephemeral = submit(&rt, id, Input::prompt("drop").ephemeral()).await;
    let report = rt.recover(id).await.unwrap();
    assert_eq!((report.recovered, report.dropped), (1, 1));
    assert_eq!(within(ephemeral.wait()).await.unwrap().class(), OutcomeClass::RuntimeTerminated);
    assert_eq!(rt.input_state(id, durable.input()).await.unwrap().unwrap().state, InputState::Queued);
}

#[burrow_env::test]
async fn destroy_cancels_the_run_resolves_every_waiter_and_is_terminal() {
    let exec = Scripted::new();
    let (rt, id) = attached(&exec).await;
    let mut starts = exec.watch_starts();
    let running = submit(&rt, id, Input::prompt("block")).await;
    let queued = submit(&rt, id, Input::prompt("ok:x")).await;
    within(starts.recv()).await.unwrap();
    let report = rt.destroy(id).await.unwrap();
    assert_eq!(report.abandoned, 2);
    assert_eq!(within(running.wait()).await.unwrap().class(), OutcomeClass::RuntimeTerminated);
    assert_eq!(within(queued.wait()).await.unwrap().class(), OutcomeClass::RuntimeTerminated);
    assert_eq!(exec.stops(), vec![StopReason::Destroyed]);
    assert_eq!(exec.cleanups(), 1);
    let state = rt.runtime_state(id).await.unwrap();
    assert_eq!((state.phase, state.loop_live), (RuntimePhase::Destroyed, false));
    assert!(rt.attach_executor(id, exec.arc()).await.is_err(), "destroyed is terminal");
    assert!(rt.retire(id).await.is_err());
}

#[burrow_env::test]
async fn unregister_resolves_waiters_stops_the_loop_commits_and_allows_registering_again() {
    let exec = Scripted::new();
    let (rt, id) = attached(&exec).await;
    let before = rt.runtime_state(id).await.unwrap().binding.unwrap();
    let pending = {
        rt.set_silent_intents(id, vec!["quiet".into()]).await.unwrap();
        parked(&rt, id).await;
        submit(&rt, id, burrow::Input::new(burrow::InputKind::PeerRequest { intent: "quiet".into() }, "x")).await
    };
    let report = rt.unregister(id).await.unwrap();
    assert_eq!(report.released, before);
    assert_eq!(within(pending.wait()).await.unwrap().class(), OutcomeClass::RuntimeTerminated);
    assert_eq!(exec.cleanups(), 1);
    assert!(rt.runtime_state(id).await.is_err(), "the session left the table");
    let again = rt.prepare(id).await.unwrap();
    assert_ne!(again.binding, before, "registered again under a binding the old holders cannot use");
}

#[burrow_env::test]
async fn unregister_while_a_run_is_in_flight_waits_for_it_within_the_grace() {
    let exec = Scripted::new();
    let (rt, id) = attached(&exec).await;
    let mut starts = exec.watch_starts();
    let running = submit(&rt, id, Input::prompt("block")).await;
    within(starts.recv()).await.unwrap();
    let unregistering = {
        let rt = rt.clone();
        burrow_env::task::spawn(async move { rt.unregister(id).await })
    };
    within(async {
        while rt.open_obligations(id).await.map(|o| o.is_empty()).unwrap_or(true) {
            burrow_env::task::yield_now().await;
        }
    })
    .await;
    let err = rt.accept_input(id, Input::prompt("late")).await.unwrap_err();
    assert!(matches!(err.refusal(), Some(Refusal::NotRegistered)), "admission closed: {err:?}");
    let err = rt.prepare(id).await.unwrap_err();
    assert!(
        matches!(err.refusal(), Some(Refusal::Registration(RegistrationRefusal::UnregisterInProgress { .. }))),
        "a register during the drain is refused, naming what is open: {err:?}"
    );
    exec.release();
    within(unregistering).await.unwrap().unwrap();
    assert_eq!(within(running.wait()).await.unwrap().class(), OutcomeClass::RuntimeTerminated);
    assert_eq!(exec.runs().len(), 1, "no run started after unregister began");
}

#[burrow_env::test]
async fn unregister_past_its_grace_aborts_a_stuck_loop_instead_of_joining_it() {
    let exec = Scripted::new();
    let (rt, id) = attached(&exec).await;
    let mut starts = exec.watch_starts();
    let _running = submit(&rt, id, Input::prompt("block")).await;
    within(starts.recv()).await.unwrap();
    let started = burrow_env::time::now();
    rt.unregister(id).await.expect("completes by force after the grace");
    let waited = started.elapsed();
    // The machine's clock counts whole milliseconds, so the deadline may fall up to 1 ms before 2 s on the wall.
    assert!(waited >= burrow_env::time::Duration::from_millis(1_999), "waited the grace: {waited:?}");
    assert_eq!(exec.cleanups(), 0, "an aborted loop is not joined");
}

#[burrow_env::test]
async fn an_unregister_that_committed_stays_committed_across_a_restart() {
    // The exiting loop's row (Idle, still Unregistering) once landed after the commit's row and overwrote it: the
    // restarted process found the unregister in progress and refused the prepare.
    let store = burrow::MemoryStore::new();
    let id = SessionId(1);
    let exec = Scripted::new();
    let first = Runtime::with_store(std::sync::Arc::new(store.clone()));
    let before = first.prepare(id).await.unwrap().binding;
    first.attach_executor(id, exec.arc()).await.unwrap();
    parked(&first, id).await;
    first.unregister(id).await.unwrap();
    drop(first);
    let second = Runtime::with_store(std::sync::Arc::new(store));
    let again = second.prepare(id).await.expect("a committed unregister lets the next process register again");
    assert_eq!(again.binding.epoch, before.epoch, "re-registered in the same epoch");
    assert_ne!(again.binding, before, "under a binding the old holders cannot use");
}

#[burrow_env::test]
async fn two_callers_racing_to_restore_a_session_restore_it_once() {
    // Restoring a session writes to the store. Two prepares that both found the session missing once both restored
    // it, and the loser's writes landed beside the winner's (after a later prepare's, they could set the row back).
    use burrow::store::{SimStore, SimStoreConfig};
    let store = SimStore::new(SimStoreConfig {
        latency: burrow_env::time::Duration::from_millis(2),
        ..SimStoreConfig::default()
    });
    let id = SessionId(1);
    let exec = Scripted::new();
    let first = Runtime::with_store(std::sync::Arc::new(store.clone()));
    first.prepare(id).await.unwrap();
    first.attach_executor(id, exec.arc()).await.unwrap();
    // Each process ends in a crash, so nothing it left running writes into the next one's count.
    drop(first);
    store.crash();
    let alone = {
        let before = store.counters().0;
        let runtime = Runtime::with_store(std::sync::Arc::new(store.reopen()));
        runtime.prepare(id).await.unwrap();
        store.counters().0 - before
    };
    store.crash();
    assert!(alone > 0, "a restore writes");
    let before = store.counters().0;
    let runtime = Runtime::with_store(std::sync::Arc::new(store.reopen()));
    let (a, b) = burrow_env::join!(runtime.prepare(id), runtime.prepare(id));
    assert_eq!(a.unwrap().binding, b.unwrap().binding, "both callers got the one session");
    assert_eq!(store.counters().0 - before, alone, "the racing prepares wrote what one prepare writes");
}

#[burrow_env::test]
async fn an_accept_after_a_missed_deadline_lets_the_expiry_land_first() {
    // The loop that would have fired the deadline is gone, so the next accept finds the run expired. The expiry's row
    // fails to write: the session must fail-stop before the accept is decided, not admit into it.
    use burrow::store::{SimStore, SimStoreConfig};
    let store = SimStore::new(SimStoreConfig::default());
    let config = burrow::RuntimeConfig {
        session: burrow::SessionConfig { run_deadline_ms: 50, ..burrow::SessionConfig::default() },
        ..burrow::RuntimeConfig::default()
    };
    let rt = Runtime::with_config(config, Some(std::sync::Arc::new(store.clone())));
    let id = SessionId(1);
    rt.prepare(id).await.unwrap();
    let exec = Scripted::new();
    rt.attach_executor(id, exec.arc()).await.unwrap();
    let mut starts = exec.watch_starts();
    let blocked = submit(&rt, id, Input::prompt("block")).await;
    within(starts.recv()).await.expect("the run starts");
    rt.kill_loop(id).await.unwrap();
    burrow_env::time::sleep(burrow_env::time::Duration::from_millis(100)).await;
    store.set_write_failure(1.0);
    let err = rt.accept_input(id, Input::prompt("late")).await.unwrap_err();
    assert!(matches!(err.refusal(), Some(Refusal::AdmissionClosed { .. })), "the session fail-stopped first: {err:?}");
    assert_eq!(rt.runtime_state(id).await.unwrap().phase, RuntimePhase::Stopped);
    assert_eq!(within(blocked.wait()).await.unwrap().class(), OutcomeClass::RuntimeTerminated);
}

/// An executor whose cleanup takes a while, so an unregister waiting for its loop stays in progress meanwhile.
struct SlowCleanup;

impl burrow::Executor for SlowCleanup {
    fn apply(
        &self,
        request: burrow::RunRequest,
    ) -> burrow::BoxFuture<'_, Result<burrow::ExecutorOutput, burrow::ExecutorError>> {
        Box::pin(async move { Ok(burrow::ExecutorOutput::result(format!("{}", request.run))) })
    }

    fn cleanup_after_stop(&self) -> burrow::BoxFuture<'_, ()> {
        Box::pin(burrow_env::time::sleep(burrow_env::time::Duration::from_millis(20)))
    }
}

#[burrow_env::test]
async fn a_prepare_that_lands_between_the_release_and_the_unregisters_return_keeps_its_session() {
    // The unregister drops its released session from the table after it wakes up; a prepare that registered the
    // object again in between once lost it, and the next call made a second object for the id beside it. Prepares
    // are tried without pause while the unregister is in progress (they are refused) until one succeeds: it lands
    // between the release and the unregister's return, or after the return on a new object; either way it names the
    // session of its id.
    // Writes take a while, so a prepare is already waiting for the session's lock while the commit's row is
    // written; the lock is fair, so it goes before the unregister, which wakes only once the release is announced.
    use burrow::store::{SimStore, SimStoreConfig};
    let latency = burrow_env::time::Duration::from_millis(5);
    let store = SimStore::new(SimStoreConfig { latency, ..SimStoreConfig::default() });
    let rt = Runtime::with_store(std::sync::Arc::new(store));
    let id = SessionId(1);
    rt.attach_executor(id, std::sync::Arc::new(SlowCleanup)).await.unwrap();
    parked(&rt, id).await;
    let unregister = burrow_env::task::spawn({
        let rt = rt.clone();
        async move { rt.unregister(id).await }
    });
    let mut refused = 0;
    let registered = loop {
        match rt.prepare(id).await {
            Ok(bindings) if refused > 0 => break bindings.binding,
            Ok(_) => {}
            Err(_) => refused += 1,
        }
        assert!(refused < 1_000_000, "the unregister never released the session");
        burrow_env::task::yield_now().await;
    };
    within(unregister).await.unwrap().unwrap();
    let state = rt.runtime_state(id).await.expect("the session registered again is still the session of its id");
    assert_eq!(state.binding, Some(registered));
}

#[burrow_env::test]
async fn an_accept_cancelled_during_its_durable_write_still_finishes_its_drive() {
    // A caller that stops waiting (a timeout around the call) while its input's durable write is in flight once cut
    // the drive short: the machine waited for a write result nobody would report, refused every later event as
    // AdmissionInFlight, and the loop's next poll panicked. The drive now finishes on its own.
    use burrow::store::{SimStore, SimStoreConfig};
    let latency = burrow_env::time::Duration::from_millis(50);
    let store = SimStore::new(SimStoreConfig { latency, ..SimStoreConfig::default() });
    let rt = Runtime::with_store(std::sync::Arc::new(store));
    let id = SessionId(1);
    rt.prepare(id).await.unwrap();
    let short = burrow_env::time::Duration::from_millis(5);
    let cancelled = burrow_env::time::timeout(short, rt.accept_input(id, Input::prompt("cut short"))).await;
    assert!(cancelled.is_err(), "the caller stopped waiting during the write");
    let next = within(rt.accept_input(id, Input::prompt("next"))).await.expect("the session takes the next accept");
    let first = burrow::InputId(next.input().0 - 1);
    let view = rt.input_state(id, first).await.unwrap().expect("the first input was admitted all the same");
    assert_eq!(view.state, InputState::Queued);
}

/// An executor that answers runs at once and whose stop or cleanup never returns.
struct NeverAnswers {
    stop_hangs: bool,
}

impl burrow::Executor for NeverAnswers {
    fn apply(
        &self,
        request: burrow::RunRequest,
    ) -> burrow::BoxFuture<'_, Result<burrow::ExecutorOutput, burrow::ExecutorError>> {
        Box::pin(async move {
            burrow_env::time::sleep(burrow_env::time::Duration::from_millis(30)).await;
            Ok(burrow::ExecutorOutput::result(format!("{}", request.run)))
        })
    }

    fn stop(&self, _reason: StopReason) -> burrow::BoxFuture<'_, ()> {
        if self.stop_hangs { Box::pin(std::future::pending()) } else { Box::pin(async {}) }
    }

    fn cleanup_after_stop(&self) -> burrow::BoxFuture<'_, ()> {
        if self.stop_hangs { Box::pin(async {}) } else { Box::pin(std::future::pending()) }
    }
}

fn hook_bound_config() -> burrow::RuntimeConfig {
    burrow::RuntimeConfig {
        executor_hook_bound: burrow_env::time::Duration::from_millis(50),
        ..burrow::RuntimeConfig::default()
    }
}

#[burrow_env::test]
async fn an_executor_whose_stop_never_returns_holds_neither_its_run_nor_its_session() {
    // The loop asked the executor to stop at its next boundary and waited for the answer without bound: the run in
    // flight was never polled again, so it never ended and the session never took another input.
    let rt = Runtime::with_config(hook_bound_config(), None);
    let id = SessionId(1);
    rt.attach_executor(id, std::sync::Arc::new(NeverAnswers { stop_hangs: true })).await.unwrap();
    let running = submit(&rt, id, Input::prompt("first")).await;
    within(async {
        while rt.runtime_state(id).await.unwrap().current_run.is_none() {
            burrow_env::task::yield_now().await;
        }
    })
    .await;
    let stop = rt.stop_executor(id).await.unwrap();
    assert!(stop.deferred, "the run was in flight");
    assert_eq!(within(running.wait()).await.unwrap().class(), OutcomeClass::Completed, "the run still ended");
    let again = rt.attach_executor(id, std::sync::Arc::new(NeverAnswers { stop_hangs: false })).await.unwrap();
    assert!(matches!(again, AttachReport::Attached { .. }), "a new executor attaches: {again:?}");
    let next = submit(&rt, id, Input::prompt("second")).await;
    assert_eq!(within(next.wait()).await.unwrap().class(), OutcomeClass::Completed);
}

#[burrow_env::test]
async fn an_attach_while_the_last_executor_is_still_cleaning_up_waits_for_it() {
    // The loop of a stopped executor was still in its cleanup (here: one that never returns) when a new executor
    // attached. The attach answered AlreadyAttached, the caller believed its executor attached, and the loop then
    // exited and left the session with none: its inputs never ran.
    let rt = Runtime::with_config(hook_bound_config(), None);
    let id = SessionId(1);
    rt.attach_executor(id, std::sync::Arc::new(NeverAnswers { stop_hangs: false })).await.unwrap();
    parked(&rt, id).await;
    let stopping = burrow_env::task::spawn({
        let rt = rt.clone();
        async move { rt.stop_executor(id).await }
    });
    within(async {
        while rt.runtime_state(id).await.unwrap().phase != RuntimePhase::Stopped {
            burrow_env::task::yield_now().await;
        }
    })
    .await;
    assert!(rt.runtime_state(id).await.unwrap().loop_live, "the old loop is still in its cleanup");
    let report = rt.attach_executor(id, std::sync::Arc::new(NeverAnswers { stop_hangs: true })).await.unwrap();
    assert!(matches!(report, AttachReport::Attached { .. }), "the new executor attached: {report:?}");
    within(stopping).await.unwrap().unwrap();
    let handle = submit(&rt, id, Input::prompt("runs on the new executor")).await;
    assert_eq!(within(handle.wait()).await.unwrap().class(), OutcomeClass::Completed);
}
