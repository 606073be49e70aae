//! The input ledger, rule by rule (SPEC 2.2 and the recovery rule of SPEC 5).

use burrow_core::ids::{InputId, Millis, RunId};
use burrow_core::input::{
    AbandonReason, BATCH_INPUTS_MAX, Durability, InputKind, InputSpec, InputState, KeyLookup, Lane, Ledger,
    LedgerRefusal, RecoveryRule, TERMINAL_HISTORY_MAX, admission_policy, recovery_rule,
};

fn admit(l: &mut Ledger, id: u64, spec: InputSpec) {
    l.admit(InputId(id), spec, Millis(0)).unwrap();
}

#[test]
fn lanes_follow_the_kind() {
    let mut l = Ledger::new(3);
    admit(&mut l, 1, InputSpec::new(InputKind::Prompt));
    admit(&mut l, 2, InputSpec::new(InputKind::Continuation));
    admit(&mut l, 3, InputSpec::new(InputKind::Prompt).steer());
    assert_eq!(l.queue_lane().collect::<Vec<_>>(), vec![InputId(1)]);
    assert_eq!(l.steer_lane().collect::<Vec<_>>(), vec![InputId(2), InputId(3)]);
    assert_eq!(l.next_batch(), vec![InputId(2), InputId(3)]);
}

#[test]
fn operation_inputs_are_consumed_on_accept() {
    let mut l = Ledger::new(3);
    let t = l.admit(InputId(1), InputSpec::new(InputKind::Operation), Millis(0)).unwrap();
    assert_eq!(t.unwrap().state, InputState::Consumed);
    assert_eq!(l.active_len(), 0);
    assert_eq!(l.state_of(InputId(1)), Some(InputState::Consumed));
}

#[test]
fn staging_is_all_or_nothing() {
    let mut l = Ledger::new(3);
    admit(&mut l, 1, InputSpec::new(InputKind::Prompt));
    admit(&mut l, 2, InputSpec::new(InputKind::Prompt));
    l.stage_batch(&[InputId(2)], RunId(1)).unwrap();
    let before = l.clone();
    assert!(matches!(l.stage_batch(&[InputId(1), InputId(2)], RunId(2)), Err(LedgerRefusal::NotQueued { .. })));
    assert_eq!(l, before, "input 1 was not staged either");
    assert_eq!(l.stage_batch(&[InputId(1), InputId(1)], RunId(2)), Err(LedgerRefusal::DuplicateInBatch(InputId(1))));
    assert_eq!(l.stage_batch(&[], RunId(2)), Err(LedgerRefusal::BatchSize { len: 0, max: BATCH_INPUTS_MAX }));
    assert_eq!(l.stage_batch(&[InputId(9)], RunId(2)), Err(LedgerRefusal::NotActive(InputId(9))));
    assert_eq!(l, before);
}

#[test]
fn staging_counts_attempts_and_rollback_keeps_them() {
    let mut l = Ledger::new(2);
    admit(&mut l, 1, InputSpec::new(InputKind::Prompt));
    l.stage_batch(&[InputId(1)], RunId(1)).unwrap();
    assert_eq!(l.get(InputId(1)).unwrap().attempts, 1);
    assert!(l.rollback(InputId(1), false).is_none());
    assert_eq!(l.get(InputId(1)).unwrap().state, InputState::Queued);
    l.stage_batch(&[InputId(1)], RunId(2)).unwrap();
    let t = l.rollback(InputId(1), false).expect("out of attempts");
    assert_eq!(t.state, InputState::Abandoned(AbandonReason::MaxAttemptsExhausted { attempts: 2 }));
}

#[test]
fn rollback_of_a_never_executed_run_gives_the_attempt_back() {
    let mut l = Ledger::new(1);
    admit(&mut l, 1, InputSpec::new(InputKind::Prompt));
    l.stage_batch(&[InputId(1)], RunId(1)).unwrap();
    assert!(l.rollback(InputId(1), true).is_none());
    assert_eq!(l.get(InputId(1)).unwrap().attempts, 0);
}

#[test]
fn rollback_returns_to_the_front_of_the_lane() {
    let mut l = Ledger::new(3);
    admit(&mut l, 1, InputSpec::new(InputKind::Prompt));
    admit(&mut l, 2, InputSpec::new(InputKind::Prompt));
    l.stage_batch(&[InputId(1)], RunId(1)).unwrap();
    l.rollback(InputId(1), false);
    assert_eq!(l.queue_lane().collect::<Vec<_>>(), vec![InputId(1), InputId(2)]);
}

#[test]
fn idempotency_keys_move_from_active_to_history() {
    let mut l = Ledger::new(3);
    admit(&mut l, 1, InputSpec::new(InputKind::Prompt).idempotency_key("k"));
    assert_eq!(l.lookup_key("k"), KeyLookup::Active(InputId(1)));
    l.terminalize(InputId(1), InputState::Consumed);
    assert_eq!(l.lookup_key("k"), KeyLookup::Terminal(InputId(1)));
    assert_eq!(l.lookup_key("other"), KeyLookup::Unknown);
}

#[test]
fn terminal_history_is_bounded() {
    let mut l = Ledger::new(3);
    for i in 1..=(TERMINAL_HISTORY_MAX as u64 + 10) {
        admit(&mut l, i, InputSpec::new(InputKind::Prompt).idempotency_key(format!("k{i}")));
        l.terminalize(InputId(i), InputState::Consumed);
    }
    assert_eq!(l.history().count(), TERMINAL_HISTORY_MAX + 10, "a step keeps what it ended");
    assert!(!l.keys_forgotten());
    l.trim_history();
    assert!(l.keys_forgotten());
    assert_eq!(l.history().count(), TERMINAL_HISTORY_MAX);
    assert_eq!(l.lookup_key("k1"), KeyLookup::Unknown, "the oldest key left memory (the store keeps it)");
    assert_eq!(l.totals(), (TERMINAL_HISTORY_MAX as u64 + 10, TERMINAL_HISTORY_MAX as u64 + 10));
}

#[test]
fn supersession_lookup_is_by_kind_and_key_among_pending() {
    let mut l = Ledger::new(3);
    admit(&mut l, 1, InputSpec::new(InputKind::ExternalEvent).supersession_key("a"));
    admit(&mut l, 2, InputSpec::new(InputKind::Prompt).supersession_key("a"));
    assert_eq!(l.pending_with_supersession_key(&InputKind::ExternalEvent, "a"), vec![InputId(1)]);
    assert_eq!(l.pending_with_supersession_key(&InputKind::FlowStep, "a"), vec![]);
    l.stage_batch(&[InputId(1)], RunId(1)).unwrap();
    assert_eq!(l.pending_with_supersession_key(&InputKind::ExternalEvent, "a"), vec![], "a staged input is spared");
    // A newer one took the key while the first was staged; the first run failed and put it back: both are pending.
    admit(&mut l, 3, InputSpec::new(InputKind::ExternalEvent).supersession_key("a"));
    l.rollback_run(&[InputId(1)], false);
    assert_eq!(l.pending_with_supersession_key(&InputKind::ExternalEvent, "a"), vec![InputId(1), InputId(3)]);
}

#[test]
fn abandon_queued_leaves_runs_alone() {
    let mut l = Ledger::new(3);
    admit(&mut l, 1, InputSpec::new(InputKind::Prompt));
    admit(&mut l, 2, InputSpec::new(InputKind::Prompt));
    l.stage_batch(&[InputId(1)], RunId(1)).unwrap();
    let gone = l.abandon_queued(AbandonReason::Retired);
    assert_eq!(gone.len(), 1);
    assert_eq!(gone[0].input, InputId(2));
    assert_eq!(l.get(InputId(1)).unwrap().state, InputState::Staged { run: RunId(1) });
}

#[test]
fn drop_ephemeral_keeps_the_accounting_exact() {
    let mut l = Ledger::new(3);
    admit(&mut l, 1, InputSpec::new(InputKind::Prompt).durability(Durability::Ephemeral));
    admit(&mut l, 2, InputSpec::new(InputKind::Prompt));
    assert_eq!(l.drop_ephemeral(), vec![InputId(1)]);
    let (accepted, terminal) = l.totals();
    assert_eq!(accepted, l.active_len() as u64 + terminal);
}

#[test]
fn unadmit_frees_the_key() {
    let mut l = Ledger::new(3);
    admit(&mut l, 1, InputSpec::new(InputKind::Prompt).idempotency_key("k"));
    l.unadmit(InputId(1)).unwrap();
    assert_eq!(l.lookup_key("k"), KeyLookup::Unknown);
    assert_eq!(l.totals(), (0, 0));
}

#[test]
fn the_recovery_rule() {
    let committed = |_| true;
    let not = |_| false;
    let r = RunId(1);
    assert_eq!(recovery_rule(InputState::Queued, 0, 3, not), RecoveryRule::Queue);
    assert_eq!(recovery_rule(InputState::Staged { run: r }, 1, 3, not), RecoveryRule::Queue);
    assert_eq!(
        recovery_rule(InputState::Staged { run: r }, 3, 3, not),
        RecoveryRule::Abandon(AbandonReason::MaxAttemptsExhausted { attempts: 3 })
    );
    assert_eq!(recovery_rule(InputState::Applied { run: r }, 1, 3, committed), RecoveryRule::Consume);
    assert_eq!(recovery_rule(InputState::AppliedPendingConsumption { run: r }, 3, 3, committed), RecoveryRule::Consume);
    assert_eq!(recovery_rule(InputState::Applied { run: r }, 1, 3, not), RecoveryRule::Queue);
    assert_eq!(recovery_rule(InputState::Consumed, 1, 3, not), RecoveryRule::Keep);
}

#[test]
fn admission_policies() {
    assert_eq!(admission_policy(&InputKind::Prompt, false).lane, Some(Lane::Queue));
    assert!(!admission_policy(&InputKind::PeerRequest { intent: "x".into() }, true).wakes);
    assert!(admission_policy(&InputKind::PeerResponseProgress { request: "r".into() }, false).coalesces);
    let reply = InputKind::PeerResponseTerminal { request: "r".into() };
    assert!(!admission_policy(&reply, false).coalesces);
    assert_eq!(
        burrow_core::input::supersedes_pending(&reply),
        Some(InputKind::PeerResponseProgress { request: "r".into() })
    );
    assert_eq!(admission_policy(&InputKind::Continuation, false).lane, Some(Lane::Steer));
    assert_eq!(admission_policy(&InputKind::Operation, false).lane, None);
    assert!(admission_policy(&InputKind::ExternalEvent, false).supersedable);
}

#[test]
fn the_active_bound_is_a_typed_refusal() {
    let mut l = Ledger::new(3);
    for i in 1..=burrow_core::input::INPUTS_ACTIVE_MAX as u64 {
        admit(&mut l, i, InputSpec::new(InputKind::Prompt));
    }
    let before = l.clone();
    let r = l.admit(InputId(999_999), InputSpec::new(InputKind::Prompt), Millis(0));
    assert_eq!(r, Err(LedgerRefusal::Full { limit: burrow_core::input::INPUTS_ACTIVE_MAX }));
    assert_eq!(l, before);
}
