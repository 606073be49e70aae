//! The operations registry's specification against SPEC 2.4's and SPEC 5's sentences: for each, a history SPEC
//! allows passes, and the nearest history it forbids is refused by the named rule.

use burrow_spec::{
    Answer, Bounds, Call, End, FeedItem, Observation, OpAnswer, OpCall, OpKind, OpObservation, OpRefused, OpsBounds,
    SessionSpecs, SpecConfig, Write,
};

const BOUNDS: Bounds = Bounds {
    waiters_per_input: 64,
    waiters_per_session: 8_192,
    active_inputs: 4_096,
    batch_inputs: 16,
    operations: OpsBounds { live: 2, feed: 3, watchers: 1, wait_ids: 2 },
};

/// Feeds `history` to a session's specification (every history it allows); the rule of the first deviation.
fn judge(history: &[Observation]) -> Result<(), &'static str> {
    let mut spec = SessionSpecs::new(SpecConfig { max_attempts: 2, store: true, bounds: BOUNDS });
    for observation in history {
        spec.observe(observation).map_err(|d| d.rule)?;
    }
    Ok(())
}

fn op(call: OpCall, answer: OpAnswer) -> Observation {
    Observation::Op(OpObservation::Call { call, answer })
}

fn done(call: OpCall) -> Observation {
    op(call, OpAnswer::Done)
}

fn refused(call: OpCall) -> Observation {
    op(call, OpAnswer::Refused(OpRefused::Invalid))
}

/// A child session: its end wakes nobody, so these histories of the registry owe the session no continuation.
fn registered(id: u64) -> Observation {
    op(OpCall::Register(OpKind::Child), OpAnswer::Registered(id))
}

/// Registered and provisioned: Running.
fn running(id: u64) -> Vec<Observation> {
    vec![registered(id), done(OpCall::ProvisionOk(id))]
}

fn read(after: u64, entries: &[(u64, u64, End)]) -> Observation {
    let entries = entries.iter().map(|&(seq, op, end)| FeedItem { seq, op, end }).collect();
    Observation::Op(OpObservation::FeedRead { after, entries })
}

fn watched(id: u64, end: Option<End>) -> Observation {
    Observation::Op(OpObservation::Watched { op: id, end })
}

fn saved(ok: bool) -> Vec<Observation> {
    vec![Observation::Writing { write: Write::Operations }, Observation::Written { write: Write::Operations, ok }]
}

fn with(mut history: Vec<Observation>, more: impl IntoIterator<Item = Observation>) -> Vec<Observation> {
    history.extend(more);
    history
}

#[test]
fn an_operation_runs_after_provisioning_and_ends_once() {
    // SPEC 2.4: Register -> Provisioning -> Running -> Completed | Failed | Cancelled.
    assert_eq!(judge(&with(running(1), [done(OpCall::Complete(1))])), Ok(()));
    assert_eq!(
        judge(&[registered(1), done(OpCall::Complete(1))]),
        Err("an operation moves only as SPEC 2.4 draws it"),
        "complete before provisioning finished"
    );
    assert_eq!(
        judge(&with(running(1), [done(OpCall::Complete(1)), done(OpCall::Fail(1))])),
        Err("an operation moves only as SPEC 2.4 draws it"),
        "an end after the end"
    );
    assert_eq!(judge(&with(running(1), [done(OpCall::Complete(1)), refused(OpCall::Cancel(1))])), Ok(()));
    assert_eq!(
        judge(&with(running(1), [refused(OpCall::Complete(1))])),
        Err("a call is refused only where SPEC refuses it")
    );
}

#[test]
fn aborted_only_from_provisioning() {
    assert_eq!(judge(&[registered(1), done(OpCall::Abort(1))]), Ok(()));
    assert_eq!(judge(&with(running(1), [done(OpCall::Abort(1))])), Err("an operation moves only as SPEC 2.4 draws it"));
    // Retiring winds down to Retired.
    assert_eq!(judge(&with(running(1), [done(OpCall::RequestRetire(1)), done(OpCall::MarkRetired(1))])), Ok(()));
    assert_eq!(
        judge(&with(running(1), [done(OpCall::MarkRetired(1))])),
        Err("an operation moves only as SPEC 2.4 draws it")
    );
}

#[test]
fn a_terminated_owner_ends_every_live_operation_and_refuses_further_calls() {
    let history = with(running(1), [registered(2), done(OpCall::Watch(1)), done(OpCall::TerminateOwner)]);
    assert_eq!(judge(&with(history.clone(), [watched(1, Some(End::Terminated))])), Ok(()));
    assert_eq!(
        judge(&with(history.clone(), [op(OpCall::Register(OpKind::Tool), OpAnswer::Refused(OpRefused::Terminated))])),
        Ok(())
    );
    assert_eq!(
        judge(&with(history.clone(), [registered(3)])),
        Err("a terminated registry refuses every call, and only it")
    );
    // Both ends reach the feed, as one call's: in either order.
    let both = [(1, 2, End::Terminated), (2, 1, End::Terminated)];
    assert_eq!(judge(&with(history.clone(), [read(0, &both)])), Ok(()));
    // A destroy terminates the owner too.
    let destroyed = with(running(1), [Observation::Call { call: Call::Destroy, answer: Answer::Done }]);
    assert_eq!(
        judge(&with(destroyed, [done(OpCall::Complete(1))])),
        Err("a terminated registry refuses every call, and only it")
    );
}

#[test]
fn watchers_resolve_exactly_once_with_the_end_even_when_late() {
    let ended = with(running(1), [done(OpCall::Watch(1)), done(OpCall::Complete(1))]);
    assert_eq!(judge(&with(ended.clone(), [watched(1, Some(End::Completed)), Observation::Quiescent])), Ok(()));
    assert_eq!(
        judge(&with(ended.clone(), [watched(1, Some(End::Failed))])),
        Err("a watcher learns how its operation ended")
    );
    assert_eq!(
        judge(&with(ended.clone(), [watched(1, Some(End::Completed)), watched(1, Some(End::Completed))])),
        Err("watchers resolve exactly once")
    );
    assert_eq!(
        judge(&with(ended.clone(), [Observation::Quiescent])),
        Err("quiescent implies watchers of ended operations told")
    );
    // A watcher registered after the end resolves at once.
    let late = with(running(1), [done(OpCall::Complete(1)), done(OpCall::Watch(1))]);
    assert_eq!(judge(&with(late.clone(), [watched(1, Some(End::Completed))])), Ok(()));
    assert_eq!(
        judge(&with(late, [Observation::Quiescent])),
        Err("quiescent implies watchers of ended operations told")
    );
    // A watcher of a live operation whose registry went away is told nothing; it is not judged as never told.
    assert_eq!(judge(&with(running(1), [done(OpCall::Watch(1)), watched(1, None), Observation::Quiescent])), Ok(()));
}

#[test]
fn registration_is_refused_for_room_only_at_a_bound() {
    // max_concurrent 2 live.
    let two = with(running(1), running(2));
    assert_eq!(
        judge(&with(two.clone(), [op(OpCall::Register(OpKind::Tool), OpAnswer::Refused(OpRefused::Limit))])),
        Ok(())
    );
    assert_eq!(judge(&with(two.clone(), [registered(3)])), Err("a register is taken only below the registry's bounds"));
    assert_eq!(
        judge(&with(running(1), [op(OpCall::Register(OpKind::Tool), OpAnswer::Refused(OpRefused::Limit))])),
        Err("a register is refused for room only at a bound")
    );
    // The feed holds 3: two unacknowledged ends and one live operation fill it.
    let full = with(running(1), [done(OpCall::Complete(1)), registered(2), done(OpCall::ProvisionOk(2))]);
    let full = with(full, [done(OpCall::Complete(2)), registered(3)]);
    assert_eq!(
        judge(&with(full.clone(), [op(OpCall::Register(OpKind::Tool), OpAnswer::Refused(OpRefused::FeedFull))])),
        Ok(())
    );
    let acked = with(full, [read(0, &[(1, 1, End::Completed), (2, 2, End::Completed)]), done(OpCall::Acknowledge(2))]);
    assert_eq!(
        judge(&with(acked.clone(), [op(OpCall::Register(OpKind::Tool), OpAnswer::Refused(OpRefused::FeedFull))])),
        Err("a register is refused for room only at a bound")
    );
    assert_eq!(judge(&with(acked, [registered(4)])), Ok(()));
}

#[test]
fn wait_all_resolves_when_every_member_ended_one_wait_at_a_time() {
    let waiting = with(with(running(1), running(2)), [done(OpCall::WaitAll(vec![1, 2]))]);
    let both = Observation::Op(OpObservation::WaitedAll { ends: vec![(1, End::Completed), (2, End::Cancelled)] });
    assert_eq!(
        judge(&with(waiting.clone(), [done(OpCall::Complete(1)), done(OpCall::Cancel(2)), both.clone()])),
        Ok(())
    );
    assert_eq!(
        judge(&with(waiting.clone(), [done(OpCall::Complete(1)), both.clone()])),
        Err("wait_all resolves iff all members ended")
    );
    assert_eq!(
        judge(&with(waiting.clone(), [done(OpCall::WaitAll(vec![1]))])),
        Err("one wait_all at a time, over known operations")
    );
    assert_eq!(
        judge(&with(waiting, [done(OpCall::Complete(1)), done(OpCall::Cancel(2)), Observation::Quiescent])),
        Err("quiescent implies resolved waits delivered")
    );
}

#[test]
fn the_feed_shows_each_end_once_in_order_until_acknowledged() {
    let ends = with(with(running(1), running(2)), [done(OpCall::Complete(2)), done(OpCall::Fail(1))]);
    let first = [(1, 2, End::Completed), (2, 1, End::Failed)];
    assert_eq!(judge(&with(ends.clone(), [read(0, &first), Observation::Quiescent])), Ok(()));
    assert_eq!(
        judge(&with(ends.clone(), [read(0, &[(1, 1, End::Failed), (2, 2, End::Completed)])])),
        Err("the feed keeps the order of ends")
    );
    assert_eq!(
        judge(&with(ends.clone(), [read(0, &[(1, 2, End::Failed)])])),
        Err("a feed entry is an end that happened, once")
    );
    assert_eq!(
        judge(&with(ends.clone(), [read(0, &[(2, 1, End::Failed)])])),
        Err("a feed read misses no end before the last it shows")
    );
    // A read may miss the newest ends (they came after it), but a settled read may not.
    assert_eq!(judge(&with(ends.clone(), [read(0, &[(1, 2, End::Completed)])])), Ok(()));
    assert_eq!(
        judge(&with(ends.clone(), [read(0, &[(1, 2, End::Completed)]), Observation::Quiescent])),
        Err("a settled feed read shows every unacknowledged end")
    );
    let acked = with(ends.clone(), [read(0, &first), done(OpCall::Acknowledge(1))]);
    assert_eq!(judge(&with(acked.clone(), [read(1, &[(2, 1, End::Failed)])])), Ok(()));
    assert_eq!(judge(&with(acked.clone(), [read(0, &first)])), Err("a feed read shows only ends not yet acknowledged"));
    assert_eq!(judge(&with(acked.clone(), [read(1, &[(3, 1, End::Failed)])])), Err("an end keeps its feed position"));
    assert_eq!(
        judge(&with(acked.clone(), [done(OpCall::Acknowledge(0))])),
        Err("the acknowledged cursor never moves back")
    );
    assert_eq!(judge(&with(acked, [refused(OpCall::Acknowledge(0)), refused(OpCall::Acknowledge(9))])), Ok(()));
}

#[test]
fn a_stored_acknowledgement_survives_a_restart_and_an_unstored_one_may_not() {
    let ends = with(running(1), [done(OpCall::Complete(1))]);
    let ends = with(ends, saved(true));
    let acked = with(ends, [read(0, &[(1, 1, End::Completed)]), done(OpCall::Acknowledge(1))]);
    // Saved: the restart reports the cursor, and the end is never read again.
    let kept = with(with(acked.clone(), saved(true)), [Observation::Crash]);
    let cursor = |acknowledged| Observation::Op(OpObservation::Cursor { acknowledged });
    assert_eq!(judge(&with(kept.clone(), [cursor(1), read(1, &[])])), Ok(()));
    assert_eq!(judge(&with(kept.clone(), [cursor(0)])), Err("the acknowledged cursor survives a restart"));
    assert_eq!(
        judge(&with(kept, [read(0, &[(1, 1, End::Completed)])])),
        Err("a feed read shows only ends not yet acknowledged")
    );
    // The save failed: the restart comes back to the end unacknowledged.
    let lost = with(with(acked.clone(), saved(false)), [Observation::Crash]);
    assert_eq!(judge(&with(lost.clone(), [cursor(0), read(0, &[(1, 1, End::Completed)])])), Ok(()));
    assert_eq!(judge(&with(lost, [cursor(1)])), Err("the acknowledged cursor survives a restart"));
    // The save had no answer: either.
    let unknown = with(acked, [Observation::Writing { write: Write::Operations }, Observation::Crash]);
    assert_eq!(judge(&with(unknown.clone(), [cursor(1)])), Ok(()));
    assert_eq!(judge(&with(unknown, [cursor(0), read(0, &[(1, 1, End::Completed)])])), Ok(()));
    // Live operations died with the process; their ids may be given again when nothing was stored.
    assert_eq!(judge(&with(running(1), [Observation::Crash, registered(1)])), Ok(()));
    assert_eq!(
        judge(&with(with(running(1), saved(true)), [Observation::Crash, done(OpCall::Complete(1))])),
        Err("an operation moves only as SPEC 2.4 draws it")
    );
}

#[test]
fn watchers_and_waits_are_bounded() {
    // One watcher per operation here: a second may be refused, the first may not.
    let one = with(running(1), [done(OpCall::Watch(1))]);
    assert_eq!(judge(&with(one.clone(), [refused(OpCall::Watch(1))])), Ok(()));
    assert_eq!(
        judge(&with(running(1), [refused(OpCall::Watch(1))])),
        Err("a call is refused only where SPEC refuses it")
    );
    // A wait over more than two operations may not be taken.
    let three = with(with(running(1), [done(OpCall::Complete(1))]), running(2));
    let three = with(three, [registered(3)]);
    assert_eq!(
        judge(&with(three.clone(), [done(OpCall::WaitAll(vec![1, 2, 3]))])),
        Err("one wait_all at a time, over known operations")
    );
    assert_eq!(judge(&with(three, [refused(OpCall::WaitAll(vec![1, 2, 3]))])), Ok(()));
}

#[test]
fn a_capacity_slot_completes_only_without_a_result_and_only_a_child_announces_a_peer() {
    let slot = vec![op(OpCall::Register(OpKind::Slot), OpAnswer::Registered(1)), done(OpCall::ProvisionOk(1))];
    assert_eq!(judge(&with(slot.clone(), [refused(OpCall::Complete(1))])), Ok(()));
    assert_eq!(judge(&with(slot.clone(), [done(OpCall::Release(1))])), Ok(()));
    assert_eq!(
        judge(&with(slot.clone(), [done(OpCall::Complete(1))])),
        Err("an operation moves only as SPEC 2.4 draws it")
    );
    assert_eq!(judge(&with(running(1), [done(OpCall::Release(1))])), Ok(()), "a child may end with nothing to say");
    assert_eq!(judge(&with(slot, [done(OpCall::PeerReady(1))])), Err("a call answers as SPEC says"));
    let child = vec![op(OpCall::Register(OpKind::Child), OpAnswer::Registered(1)), done(OpCall::ProvisionOk(1))];
    assert_eq!(judge(&with(child, [done(OpCall::PeerReady(1))])), Ok(()));
}

#[test]
fn a_running_detached_job_outlives_a_restart_and_other_live_operations_do_not() {
    let job = vec![op(OpCall::Register(OpKind::Detached), OpAnswer::Registered(1)), done(OpCall::ProvisionOk(1))];
    let stored = with(with(job.clone(), saved(true)), [Observation::Crash]);
    assert_eq!(judge(&with(stored.clone(), [done(OpCall::Complete(1))])), Ok(()), "re-bound, it may still end");
    assert_eq!(judge(&with(stored, [registered(1)])), Err("an operation id is new"));
    let child = with(with(running(1), saved(true)), [Observation::Crash]);
    assert_eq!(judge(&with(child, [done(OpCall::Complete(1))])), Err("an operation moves only as SPEC 2.4 draws it"));
}

#[test]
fn a_quiescent_session_owes_a_continuation_for_each_unacknowledged_waking_end() {
    // specs/operations.md#cursors: a background tool's end wakes its session unless the agent acknowledged it.
    let tool = vec![
        op(OpCall::Register(OpKind::Tool), OpAnswer::Registered(1)),
        done(OpCall::ProvisionOk(1)),
        done(OpCall::Complete(1)),
    ];
    assert_eq!(
        judge(&with(tool.clone(), [Observation::Quiescent])),
        Err("a background end wakes its quiescent session")
    );
    let woken = with(tool.clone(), [Observation::Active { inputs: vec![1], continuations: vec![1] }]);
    assert_eq!(judge(&with(woken, [Observation::Quiescent])), Ok(()), "the continuation made for it is live");
    let applied = with(tool, [read(0, &[(1, 1, End::Completed)]), done(OpCall::Acknowledge(1))]);
    assert_eq!(judge(&with(applied, [Observation::Quiescent])), Ok(()));
}
