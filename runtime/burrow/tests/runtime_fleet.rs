//! Two hosts of a fleet in one process over one shared store (specs/lease.md, specs/session.md#ownership-moved):
//! a session is driven by the host that holds its lease; the other host's calls are `NotOwner` naming it; a
//! hand-over stops the session on the old owner (its waiters are told it moved, never an outcome) and the new owner
//! recovers it from the store, runs what was acknowledged and not committed, and never runs a committed input again.

mod support;

use std::sync::Arc;

use burrow::{
    CompletionError, FleetConfig, HostId, Input, LeaseConfig, MemoryStore, Outcome, Runtime, RuntimeConfig,
    RuntimeError, SessionId, Store,
};
use burrow_env::time::{Duration, sleep};
use support::{Scripted, within};

const S: SessionId = SessionId(1);
const A: HostId = HostId(0xa);
const B: HostId = HostId(0xb);

/// A short lease, so that an expiry takes a fraction of a second.
fn lease() -> LeaseConfig {
    LeaseConfig { length_ms: 400, renew_every_ms: 100, margin_ms: 100 }
}

fn host(store: &MemoryStore, id: HostId) -> Runtime {
    let fleet = FleetConfig { host: id, lease: lease() };
    Runtime::fleet_host(Arc::new(store.clone()), RuntimeConfig::default(), fleet).expect("a safe lease")
}

#[burrow_env::test]
async fn one_host_drives_a_session_and_the_other_is_told_who() {
    let store = MemoryStore::new();
    let (a, b) = (host(&store, A), host(&store, B));
    let exec = Scripted::new();
    a.attach_executor(S, exec.arc()).await.expect("A claims and attaches");
    assert!(a.hosts(S));
    let binding = a.runtime_state(S).await.unwrap().binding.expect("bound");
    let (row, _) = store.lease(S).await.unwrap();
    assert_eq!(row.map(|r| (r.owner, r.epoch)), Some((Some(A), binding.epoch)), "the binding's epoch is the lease's");

    let refused = b.prepare(S).await.unwrap_err();
    assert_eq!(refused, RuntimeError::NotOwner { session: S, owner: Some(A) });
    let refused = b.accept_input(S, Input::prompt("x")).await.unwrap_err();
    assert_eq!(refused, RuntimeError::NotOwner { session: S, owner: Some(A) });

    // The lease is renewed on time: well past its length, A still drives the session.
    sleep(Duration::from_millis(1_000)).await;
    assert!(a.hosts(S));
    let handle = a.accept_input_with_completion(S, Input::prompt("ok:done")).await.unwrap().into_parts().1.unwrap();
    assert_eq!(within(handle.wait()).await.unwrap(), Outcome::Completed(burrow::RunResult { output: "done".into() }));
}

#[burrow_env::test]
async fn a_hand_over_tells_the_old_owners_waiters_it_moved_and_the_new_owner_finishes_the_work() {
    let store = MemoryStore::new();
    let (a, b) = (host(&store, A), host(&store, B));
    let (exec_a, exec_b) = (Scripted::new(), Scripted::new());
    a.attach_executor(S, exec_a.arc()).await.unwrap();
    // Committed on A: must never run again.
    let first = a.accept_input_with_completion(S, Input::prompt("ok:one").idempotency_key("one")).await.unwrap();
    within(first.into_parts().1.unwrap().wait()).await.unwrap();
    // Acknowledged on A, still running there when A lets the session go.
    let second = a.accept_input_with_completion(S, Input::prompt("block").idempotency_key("two")).await.unwrap();
    let (second, handle) = second.into_parts();
    while exec_a.runs().len() < 2 {
        sleep(Duration::from_millis(1)).await;
    }
    a.release(S).await.expect("released");
    let told = within(handle.unwrap().wait()).await.unwrap_err();
    assert_eq!(told, CompletionError::OwnershipMoved { input: second, owner: None }, "never an outcome");
    assert!(!a.hosts(S));

    b.attach_executor(S, exec_b.arc()).await.expect("B claims the released session at once");
    let (row, _) = store.lease(S).await.unwrap();
    assert_eq!(row.map(|r| (r.owner, r.epoch.0)), Some((Some(B), 2)));
    assert_eq!(
        a.accept_input(S, Input::prompt("x")).await.unwrap_err(),
        RuntimeError::NotOwner { session: S, owner: Some(B) }
    );
    // The acknowledged input comes back on B and runs there; the committed one does not run again.
    exec_a.release();
    within(async {
        while exec_b.runs().is_empty() {
            sleep(Duration::from_millis(1)).await;
        }
    })
    .await;
    let ran: Vec<_> = exec_b.runs().iter().flat_map(|r| r.inputs.iter().map(|i| i.payload.clone())).collect();
    assert_eq!(ran, vec!["block".to_owned()], "only the acknowledged, uncommitted input runs on the new owner");
    // A retry by key on B finds the committed input ended.
    let again = b.submit(S, Input::prompt("ok:one").idempotency_key("one")).await.unwrap();
    assert!(matches!(again, burrow::Submitted::Ended { .. }), "{again:?}");
}

#[burrow_env::test]
async fn a_host_refused_a_renewal_stops_driving_and_names_the_new_owner() {
    let store = MemoryStore::new();
    let a = host(&store, A);
    a.prepare(S).await.unwrap();
    let epoch = store.lease(S).await.unwrap().0.unwrap().epoch;
    // Another host cannot claim while A renews.
    assert!(store.claim_lease(S, B, 400).await.is_err());
    // The row is taken from under A behind its back (an operator, a store restored from backup): A's next renewal is
    // refused, and A stops driving; a write of A's epoch is fenced.
    store.release_lease(S, A, epoch).await.unwrap();
    let taken = store.claim_lease(S, B, 60_000).await.unwrap();
    within(async {
        while a.hosts(S) {
            sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    assert_eq!(a.prepare(S).await.unwrap_err(), RuntimeError::NotOwner { session: S, owner: Some(B) });
    assert_eq!(taken.epoch.0, epoch.0 + 1);
}

#[burrow_env::test]
async fn a_host_that_adopts_a_session_takes_it_over_when_its_owner_dies() {
    let store = MemoryStore::new();
    let (a, b) = (host(&store, A), host(&store, B));
    let (exec_a, exec_b) = (Scripted::new(), Scripted::new());
    a.attach_executor(S, exec_a.arc()).await.unwrap();
    let pending = a.accept_input(S, Input::prompt("block").idempotency_key("k")).await.unwrap();
    while exec_a.runs().is_empty() {
        sleep(Duration::from_millis(1)).await;
    }
    let since = burrow_env::time::Instant::now();
    b.adopt([S], exec_b.arc());
    // A is alive and renewing: B waits.
    sleep(Duration::from_millis(600)).await;
    assert!(!b.hosts(S), "B never claims a session whose owner renews");
    // A dies without letting go: B takes the session once A's lease has ended, and runs the acknowledged input.
    drop(a);
    within(async {
        while exec_b.runs().is_empty() {
            sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    let waited = since.elapsed();
    assert!(b.hosts(S));
    assert_eq!(exec_b.payloads(), vec!["block".to_owned()]);
    assert_eq!(store.lease(S).await.unwrap().0.map(|r| r.owner), Some(Some(B)));
    // Within the lease's length after A's last renewal, plus the watcher's interval and a margin for this machine.
    assert!(waited < Duration::from_millis(600 + 400 + 100 + 500), "took over after {waited:?}");
    // A retry by key on B joins the input A had acknowledged, which ends once.
    exec_b.release();
    let again = within(b.submit(S, Input::prompt("block").idempotency_key("k"))).await.unwrap();
    assert_eq!(again.input(), pending.input(), "{again:?}");
    assert_eq!(exec_b.runs().len(), 1, "run once on B");
}
