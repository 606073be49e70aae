//! The bodies of the store conformance suite (SPEC 5, specs/lease.md), one per property, each run against every
//! store: the memory, SQLite and simulated stores here (`store_conformance.rs`) and PostgreSQL in burrow-postgres.
//! A test file that includes this module defines `Subject`, with `open()` giving a store value over the subject's
//! durable contents (a new value each call: a restart), and a `support` module.

#![allow(dead_code, unreachable_pub)]

use burrow::store::{BoundaryCommit, LifecycleCommit};
use burrow::{AcceptOutcome, Input, InputState, Runtime, RuntimePhase, SessionId, StoreError};
use burrow_core::ids::{Binding, EpochId, Generation, InputId, Millis, RunId};
use burrow_core::input::{AbandonReason, InputKind, InputRecord, InputSpec};
use burrow_core::lease::{Fenced, HostId};
use burrow_core::operations::{OpEvent, OperationKind, OperationSpec, OperationsRegistry};
use burrow_core::phase::RuntimePhase as Phase;
use burrow_core::registration::RegistrationPhase;
use burrow_core::session::{BoundaryReceipt, IdMarks, PersistedLifecycle};

use crate::Subject;
use crate::support::{Scripted, within};

const S: SessionId = SessionId(7);
/// The epoch every write names (the lifecycle rows' binding epoch); it matters only once the session is claimed.
const E: EpochId = EpochId(3);
const H1: HostId = HostId(1);
const H2: HostId = HostId(2);

pub(crate) fn record(id: u64, state: InputState, attempts: u32) -> InputRecord {
    InputRecord {
        id: InputId(id),
        spec: InputSpec::new(InputKind::Prompt).idempotency_key(format!("key-{id}")),
        state,
        attempts,
        accepted_at: Millis(id),
    }
}

fn lifecycle(phase: Phase, last_input: u64, last_run: u64) -> PersistedLifecycle {
    PersistedLifecycle {
        phase,
        registration: RegistrationPhase::Queuing,
        binding: Some(Binding { epoch: EpochId(3), generation: Generation(0) }),
        marks: IdMarks { last_input, last_run },
    }
}

fn receipt(run: u64, sequence: u64, contributors: &[u64]) -> BoundaryReceipt {
    BoundaryReceipt {
        run: RunId(run),
        boundary: 1,
        contributors: contributors.iter().map(|i| InputId(*i)).collect(),
        sequence,
    }
}

pub(crate) async fn round_trip(subject: Subject) {
    let store = subject.open();
    for id in 1..=3 {
        store.persist_input(S, E, &record(id, InputState::Queued, 0), &format!("payload {id}")).await.unwrap();
    }
    let staged = record(2, InputState::Staged { run: RunId(1) }, 1);
    let lc = LifecycleCommit { lifecycle: lifecycle(Phase::Idle, 3, 1), inputs: vec![staged.clone()] };
    store.commit_lifecycle(S, E, &lc).await.unwrap();
    let applied = record(2, InputState::AppliedPendingConsumption { run: RunId(1) }, 1);
    let bc = BoundaryCommit { receipt: receipt(1, 1, &[2]), inputs: vec![applied.clone()], snapshot: Some(vec![9, 9]) };
    store.commit_boundary(S, E, &bc).await.unwrap();
    let mut ops = OperationsRegistry::default();
    let spec = OperationSpec::new(OperationKind::BackgroundTool, "op");
    let _ = ops.apply(Millis(0), OpEvent::Register { spec }).unwrap();
    store.save_operations(S, E, &ops).await.unwrap();

    let reopened = subject.open();
    let image = reopened.load(S).await.unwrap().expect("the session is stored");
    assert_eq!(image.lifecycle, Some(lifecycle(Phase::Idle, 3, 1)));
    let rows: Vec<_> = image.inputs.iter().map(|i| (i.record.clone(), i.payload.clone())).collect();
    assert_eq!(
        rows,
        vec![
            (record(1, InputState::Queued, 0), "payload 1".into()),
            (applied, "payload 2".into()),
            (record(3, InputState::Queued, 0), "payload 3".into()),
        ]
    );
    assert_eq!(image.receipts, vec![receipt(1, 1, &[2])]);
    assert_eq!(image.snapshot, Some(vec![9, 9]));
    assert_eq!(image.operations, Some(ops));
    assert_eq!(reopened.load_boundary_receipt(S, RunId(1)).await.unwrap(), Some(receipt(1, 1, &[2])));
    assert_eq!(reopened.load_boundary_receipt(S, RunId(2)).await.unwrap(), None);
    assert_eq!(reopened.sessions().await.unwrap(), vec![S]);
    assert!(reopened.load(SessionId(99)).await.unwrap().is_none());
}

pub(crate) async fn boundary_commits_are_atomic(subject: Subject) {
    let store = subject.open();
    store.persist_input(S, E, &record(1, InputState::Queued, 0), "p").await.unwrap();
    let bc = BoundaryCommit {
        receipt: receipt(1, 1, &[1, 2]),
        inputs: vec![record(1, InputState::Consumed, 1), record(2, InputState::Consumed, 1)],
        snapshot: Some(vec![1]),
    };
    let err = store.commit_boundary(S, E, &bc).await.unwrap_err();
    assert_eq!(err, StoreError::UnknownInput { session: S, input: InputId(2) });
    let image = subject.open().load(S).await.unwrap().unwrap();
    assert_eq!(image.inputs[0].record, record(1, InputState::Queued, 0), "the valid row was not written either");
    assert!(image.receipts.is_empty(), "no receipt without its rows");
    assert_eq!(image.snapshot, None);
}

pub(crate) async fn lifecycle_commits_are_atomic(subject: Subject) {
    let store = subject.open();
    store.persist_input(S, E, &record(1, InputState::Queued, 0), "p").await.unwrap();
    let lc = LifecycleCommit {
        lifecycle: lifecycle(Phase::Stopped, 9, 9),
        inputs: vec![record(1, InputState::Abandoned(AbandonReason::Stopped), 0), record(5, InputState::Queued, 0)],
    };
    assert!(store.commit_lifecycle(S, E, &lc).await.is_err());
    let image = subject.open().load(S).await.unwrap().unwrap();
    assert_eq!(image.lifecycle, None, "the phase did not move without its rows");
    assert_eq!(image.inputs[0].record.state, InputState::Queued);
}

/// SPEC 5's recovery table, through a restarted runtime over the stored rows.
pub(crate) async fn the_recovery_table_holds_after_a_restart(subject: Subject) {
    let store = subject.open();
    let rows = [
        record(1, InputState::Queued, 0),
        record(2, InputState::Staged { run: RunId(2) }, 1),
        record(3, InputState::Applied { run: RunId(1) }, 1),
        record(4, InputState::Applied { run: RunId(2) }, 1),
        record(5, InputState::AppliedPendingConsumption { run: RunId(1) }, 1),
        record(6, InputState::Consumed, 1),
        record(7, InputState::Abandoned(AbandonReason::Reset), 0),
        record(8, InputState::Staged { run: RunId(2) }, 3),
    ];
    for row in &rows {
        store.persist_input(S, E, row, "p").await.unwrap();
    }
    let lc = LifecycleCommit { lifecycle: lifecycle(Phase::Idle, 8, 2), inputs: Vec::new() };
    store.commit_lifecycle(S, E, &lc).await.unwrap();
    store
        .commit_boundary(S, E, &BoundaryCommit { receipt: receipt(1, 1, &[3, 5]), inputs: Vec::new(), snapshot: None })
        .await
        .unwrap();

    let runtime = Runtime::with_store(subject.open());
    runtime.prepare(S).await.unwrap();
    let state = |id: u64| {
        let runtime = runtime.clone();
        async move { runtime.input_state(S, InputId(id)).await.unwrap().expect("known") }
    };
    assert_eq!(state(1).await.state, InputState::Queued, "Queued stays Queued");
    let staged = state(2).await;
    assert_eq!((staged.state, staged.attempts), (InputState::Queued, 1), "Staged -> Queued, attempts kept");
    assert_eq!(state(3).await.state, InputState::Consumed, "Applied with a receipt -> Consumed");
    assert_eq!(state(4).await.state, InputState::Queued, "Applied without a receipt -> Queued");
    assert_eq!(state(5).await.state, InputState::Consumed, "pending consumption with a receipt -> Consumed");
    assert_eq!(state(6).await.state, InputState::Consumed, "terminal kept");
    assert_eq!(state(7).await.state, InputState::Abandoned(AbandonReason::Reset), "terminal kept");
    assert!(
        matches!(state(8).await.state, InputState::Abandoned(AbandonReason::MaxAttemptsExhausted { .. })),
        "no attempt left -> abandoned"
    );
    // Ids continue after the marks: a new input never reuses a stored id.
    let fresh = runtime.accept_input(S, Input::prompt("new")).await.unwrap();
    assert_eq!(fresh.input(), InputId(9));
}

pub(crate) async fn dedup_survives_a_restart(subject: Subject) {
    let id = SessionId(11);
    {
        let runtime = Runtime::with_store(subject.open());
        let exec = Scripted::new();
        runtime.attach_executor(id, exec.arc()).await.unwrap();
        let (_, handle) = runtime
            .accept_input_with_completion(id, Input::prompt("ok:x").idempotency_key("once"))
            .await
            .unwrap()
            .into_parts();
        within(handle.unwrap().wait()).await.unwrap();
        runtime.detach_executor(id).await.unwrap();
    }
    let runtime = Runtime::with_store(subject.open());
    runtime.prepare(id).await.unwrap();
    let again = runtime.accept_input_with_completion(id, Input::prompt("ok:y").idempotency_key("once")).await;
    assert!(matches!(again.unwrap(), AcceptOutcome::Deduplicated { handle: None, .. }));
    assert_eq!(runtime.runtime_state(id).await.unwrap().phase, RuntimePhase::Idle, "the phase came back");
}

pub(crate) async fn a_restarted_runtime_finishes_what_was_queued(subject: Subject) {
    let id = SessionId(12);
    {
        let runtime = Runtime::with_store(subject.open());
        runtime.prepare(id).await.unwrap();
        for i in 0..3 {
            runtime.accept_input(id, Input::prompt(format!("ok:{i}"))).await.unwrap();
        }
        std::mem::forget(runtime);
    }
    let runtime = Runtime::with_store(subject.open());
    let exec = Scripted::new();
    runtime.attach_executor(id, exec.arc()).await.unwrap();
    crate::support::settle(&runtime, id).await;
    assert_eq!(exec.payloads(), vec!["ok:0", "ok:1", "ok:2"]);
}

/// `Store::input_by_key`: the row with the key, after its later updates, from a reopened store; the newest row when
/// two hold the key (a key is reused only after its input was forgotten without a store's answer).
pub(crate) async fn the_key_lookup_reads_the_row_that_holds_the_key(subject: Subject) {
    let store = subject.open();
    store.persist_input(S, E, &record(4, InputState::Queued, 0), "p").await.unwrap();
    let mut other = record(6, InputState::Queued, 0);
    other.spec = InputSpec::new(InputKind::Prompt).idempotency_key("key-4");
    let ended = record(4, InputState::Consumed, 1);
    let lc = LifecycleCommit { lifecycle: lifecycle(Phase::Idle, 4, 1), inputs: vec![ended.clone()] };
    store.commit_lifecycle(S, E, &lc).await.unwrap();
    let reopened = subject.open();
    assert_eq!(reopened.input_by_key(S, "key-4").await.unwrap(), Some(ended), "the row as last written");
    assert_eq!(reopened.input_by_key(S, "key-5").await.unwrap(), None);
    assert_eq!(reopened.input_by_key(SessionId(99), "key-4").await.unwrap(), None, "keys are per session");
    reopened.persist_input(S, E, &other, "q").await.unwrap();
    assert_eq!(subject.open().input_by_key(S, "key-4").await.unwrap(), Some(other), "the newest row");
}

/// Issue 18 item 2: more ended keyed inputs than memory keeps (the default history, 1,024), written as a finished
/// process left them; after a restart a duplicate of the oldest key is Deduplicated with no handle, never run.
pub(crate) async fn an_old_key_past_the_history_is_deduplicated_after_a_restart(subject: Subject) {
    let id = SessionId(13);
    let total = burrow_core::input::TERMINAL_HISTORY_MAX as u64 + 8;
    let store = subject.open();
    for n in 1..=total {
        store.persist_input(id, E, &record(n, InputState::Consumed, 1), "ok:done").await.unwrap();
    }
    let lc = LifecycleCommit { lifecycle: lifecycle(Phase::Idle, total, total), inputs: Vec::new() };
    store.commit_lifecycle(id, E, &lc).await.unwrap();
    let runtime = Runtime::with_store(subject.open());
    let exec = Scripted::new();
    runtime.attach_executor(id, exec.arc()).await.unwrap();
    assert!(runtime.input_state(id, InputId(1)).await.unwrap().is_none(), "input 1 is past the history");
    for n in [1, 2, total] {
        let again = runtime.accept_input_with_completion(id, Input::prompt("ok:x").idempotency_key(format!("key-{n}")));
        let again = again.await.unwrap();
        assert!(matches!(again, AcceptOutcome::Deduplicated { handle: None, .. }), "key-{n}: {again:?}");
        assert_eq!(again.input(), InputId(n));
    }
    let view = runtime.input_state_by_key(id, "key-1").await.unwrap().expect("the store holds key-1");
    assert_eq!(view.state, InputState::Consumed);
    let fresh = runtime.accept_input_with_completion(id, Input::prompt("ok:new").idempotency_key("key-new")).await;
    let (fresh, handle) = fresh.unwrap().into_parts();
    assert_eq!(fresh, InputId(total + 1));
    within(handle.expect("a new input").wait()).await.unwrap();
    assert_eq!(exec.payloads(), vec!["ok:new"], "only the new key ran");
}

/// specs/lease.md: claim, renew and release follow the lease row's rules, and every write lands only at the row's
/// epoch, whole or not at all; a restart keeps the row.
pub(crate) async fn leases_fence_every_kind_of_write(subject: Subject) {
    let store = subject.open();
    assert_eq!(store.lease(S).await.unwrap().0, None, "never claimed");
    store.persist_input(S, EpochId(0), &record(1, InputState::Queued, 0), "before").await.unwrap();

    let first = store.claim_lease(S, H1, 60_000).await.unwrap();
    assert_eq!((first.owner, first.epoch), (Some(H1), EpochId(1)));
    let refused = store.claim_lease(S, H2, 60_000).await.unwrap_err();
    assert_eq!(refused, StoreError::Fenced(Fenced { presented: EpochId(1), current: EpochId(1), owner: Some(H1) }));
    let renewed = store.renew_lease(S, H1, first.epoch, 60_000).await.unwrap();
    assert!(renewed.expires_at >= first.expires_at);
    assert!(matches!(store.renew_lease(S, H2, first.epoch, 60_000).await, Err(StoreError::Fenced(_))));

    // The owner's writes land; a write naming any other epoch is refused whole and changes nothing.
    store.persist_input(S, first.epoch, &record(2, InputState::Queued, 0), "owner").await.unwrap();
    let stale = EpochId(0);
    let fenced = |r: Result<(), StoreError>| matches!(r, Err(StoreError::Fenced(f)) if f.current == first.epoch);
    assert!(fenced(store.persist_input(S, stale, &record(3, InputState::Queued, 0), "stale").await));
    let staged = record(1, InputState::Staged { run: RunId(1) }, 1);
    let lc = LifecycleCommit { lifecycle: lifecycle(Phase::Idle, 3, 1), inputs: vec![staged] };
    assert!(fenced(store.commit_lifecycle(S, stale, &lc).await));
    let bc = BoundaryCommit { receipt: receipt(1, 1, &[1]), inputs: Vec::new(), snapshot: Some(vec![1]) };
    assert!(fenced(store.commit_boundary(S, stale, &bc).await));
    assert!(fenced(store.save_operations(S, stale, &OperationsRegistry::default()).await));
    let image = store.load(S).await.unwrap().expect("stored");
    let ids: Vec<u64> = image.inputs.iter().map(|i| i.record.id.0).collect();
    assert_eq!(ids, vec![1, 2], "only the owner's write and the one before any claim landed");
    assert_eq!((image.lifecycle, image.receipts.len(), image.snapshot, image.operations), (None, 0, None, None));

    // A hand-over: the owner lets go, the other host claims at the next epoch, and the old epoch is fenced.
    let released = store.release_lease(S, H1, first.epoch).await.unwrap();
    assert_eq!((released.owner, released.epoch), (None, first.epoch));
    let second = store.claim_lease(S, H2, 60_000).await.unwrap();
    assert_eq!((second.owner, second.epoch), (Some(H2), EpochId(2)));
    let late = store.commit_lifecycle(S, first.epoch, &lc).await.unwrap_err();
    assert_eq!(late, StoreError::Fenced(Fenced { presented: first.epoch, current: second.epoch, owner: Some(H2) }));
    assert!(matches!(store.release_lease(S, H1, first.epoch).await, Err(StoreError::Fenced(_))));
    store.commit_lifecycle(S, second.epoch, &lc).await.unwrap();

    let reopened = subject.open();
    let (row, _) = reopened.lease(S).await.unwrap();
    assert_eq!(row.map(|r| (r.owner, r.epoch)), Some((Some(H2), EpochId(2))), "a restart keeps the lease row");
    assert!(reopened.load(S).await.unwrap().expect("stored").lifecycle.is_some());
    assert!(reopened.load(SessionId(8)).await.unwrap().is_none());
    assert_eq!(reopened.claim_lease(SessionId(8), H1, 60_000).await.unwrap().epoch, EpochId(1));
    assert_eq!(reopened.sessions().await.unwrap(), vec![S], "a lease alone is no stored state");
}

/// A lease past its end is free: another host claims it at the next epoch, and the first host can renew no more.
pub(crate) async fn an_expired_lease_is_taken_by_another_host(subject: Subject) {
    let store = subject.open();
    let first = store.claim_lease(S, H1, 30).await.unwrap();
    burrow_env::time::sleep(std::time::Duration::from_millis(80)).await;
    let (row, now) = store.lease(S).await.unwrap();
    assert!(!row.expect("claimed").live(now), "past its end at {now}: {row:?}");
    let second = store.claim_lease(S, H2, 60_000).await.unwrap();
    assert_eq!((second.owner, second.epoch), (Some(H2), EpochId(first.epoch.0 + 1)));
    assert!(matches!(store.renew_lease(S, H1, first.epoch, 60_000).await, Err(StoreError::Fenced(_))));
    let write = store.persist_input(S, first.epoch, &record(1, InputState::Queued, 0), "late").await;
    assert!(matches!(write, Err(StoreError::Fenced(f)) if f.owner == Some(H2)), "{write:?}");
}

/// One test per body for the subject `make` builds, in a module of its own: `suite!(memory, Subject::memory());`.
#[macro_export]
macro_rules! suite {
    ($module:ident, $make:expr) => {
        mod $module {
            #[burrow_env::test]
            async fn round_trip() {
                $crate::store_suite::round_trip($make).await
            }
            #[burrow_env::test]
            async fn boundary_commits_are_atomic() {
                $crate::store_suite::boundary_commits_are_atomic($make).await
            }
            #[burrow_env::test]
            async fn lifecycle_commits_are_atomic() {
                $crate::store_suite::lifecycle_commits_are_atomic($make).await
            }
            #[burrow_env::test]
            async fn the_recovery_table_holds_after_a_restart() {
                $crate::store_suite::the_recovery_table_holds_after_a_restart($make).await
            }
            #[burrow_env::test]
            async fn dedup_survives_a_restart() {
                $crate::store_suite::dedup_survives_a_restart($make).await
            }
            #[burrow_env::test]
            async fn a_restarted_runtime_finishes_what_was_queued() {
                $crate::store_suite::a_restarted_runtime_finishes_what_was_queued($make).await
            }
            #[burrow_env::test]
            async fn the_key_lookup_reads_the_row_that_holds_the_key() {
                $crate::store_suite::the_key_lookup_reads_the_row_that_holds_the_key($make).await
            }
            #[burrow_env::test]
            async fn an_old_key_past_the_history_is_deduplicated_after_a_restart() {
                $crate::store_suite::an_old_key_past_the_history_is_deduplicated_after_a_restart($make).await
            }
            #[burrow_env::test]
            async fn leases_fence_every_kind_of_write() {
                $crate::store_suite::leases_fence_every_kind_of_write($make).await
            }
            #[burrow_env::test]
            async fn an_expired_lease_is_taken_by_another_host() {
                $crate::store_suite::an_expired_lease_is_taken_by_another_host($make).await
            }
        }
    };
}
