//! A session without a store (specs/session.md#without-a-store) makes the same transitions as one with a store:
//! the same replies, the same refusals, the same effects once the writes are taken out, and the same state after
//! every event. The machine with a store has its writes performed as the shell performs them (each succeeds, and a
//! boundary commit is fed back as `BoundaryCommitted`, depth first); the one without must ask for no write at all.
//! Random event sequences from a fixed seed drive both side by side.

use burrow_core::completion::{ErrorInfo, FailureCause, RunResult};
use burrow_core::ids::{EpochId, Generation, Millis, RunId, SessionId};
use burrow_core::input::{Durability, InputKind, InputSpec};
use burrow_core::invariants;
use burrow_core::operations::{OpEvent, OpResult, OperationKind, OperationSpec};
use burrow_core::protocol::{Observed, Subject, feedback};
use burrow_core::session::{
    Effect, RecoverySource, Refusal, Reply, RunReport, SessionConfig, SessionEvent, SessionMachine,
};

/// xorshift64*: a fixed, dependency-free stream of choices.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn spec(rng: &mut Rng) -> InputSpec {
    match rng.below(7) {
        0 => InputSpec::new(InputKind::Prompt).durability(Durability::Ephemeral),
        1 => InputSpec::new(InputKind::Prompt).idempotency_key("k"),
        2 => InputSpec::new(InputKind::Prompt).steer(),
        3 => InputSpec::new(InputKind::ExternalEvent).supersession_key("s"),
        4 => InputSpec::new(InputKind::Operation),
        _ => InputSpec::new(InputKind::Prompt),
    }
}

/// One event, chosen with the machine's state in view so that runs get reported and failed as often as refused.
fn event(rng: &mut Rng, m: &SessionMachine) -> SessionEvent {
    let run = m.current_run().map_or(RunId(1), |r| r.id);
    let generation = m.binding().map_or(Generation(0), |b| b.generation);
    if m.current_run().is_some() && rng.below(2) == 0 {
        return match rng.below(10) {
            0..=5 => SessionEvent::RunReported {
                run,
                report: RunReport::Result(RunResult { output: "r".into() }),
                snapshot: None,
            },
            6 => SessionEvent::RunReported { run, report: RunReport::NoResult, snapshot: None },
            7 => SessionEvent::RunFailed { run, error: ErrorInfo::new(FailureCause::ExecutorFailed, "e") },
            8 => SessionEvent::RunNotExecuted { run },
            _ => SessionEvent::Interrupt { run: None },
        };
    }
    match rng.below(24) {
        0..=4 => SessionEvent::Accept { spec: spec(rng), waiter: rng.below(3) != 0, wake: rng.below(5) != 0 },
        5 => SessionEvent::AcceptAndRun { spec: spec(rng) },
        6..=8 => SessionEvent::Poll,
        9..=10 => {
            let report = match rng.below(3) {
                0 => RunReport::NoResult,
                1 => RunReport::CallbackPending { tool: "t".into(), args: String::new() },
                _ => RunReport::Result(RunResult { output: "r".into() }),
            };
            SessionEvent::RunReported { run, report, snapshot: None }
        }
        11 => SessionEvent::RunFailed { run, error: ErrorInfo::new(FailureCause::ExecutorFailed, "e") },
        12 => SessionEvent::RunNotExecuted { run },
        13 => SessionEvent::Interrupt { run: None },
        14 => SessionEvent::CancelAfterBoundary,
        15 if rng.below(3) != 0 => SessionEvent::Poll,
        15 => match rng.below(8) {
            0 => SessionEvent::Stop,
            1 => SessionEvent::Retire,
            2 => SessionEvent::Recycle,
            3 => SessionEvent::Reset,
            4 => SessionEvent::Recover(RecoverySource::InMemory),
            5 => SessionEvent::Destroy,
            6 => SessionEvent::Detach,
            _ => SessionEvent::Wake,
        },
        16 => SessionEvent::BeginAttach,
        17 => SessionEvent::AttachCompleted,
        18 => SessionEvent::LoopExited { generation },
        19 => SessionEvent::Tick,
        20 => SessionEvent::Prepare { epoch: EpochId(1) },
        21 => {
            let spec = OperationSpec::new(OperationKind::BackgroundTool, "job");
            SessionEvent::Operation(OpEvent::Register { spec })
        }
        22 => SessionEvent::Operation(OpEvent::ProvisioningSucceeded { op: burrow_core::ids::OperationId(1) }),
        _ => SessionEvent::Operation(OpEvent::Complete {
            op: burrow_core::ids::OperationId(1),
            result: OpResult { content: "done".into(), is_error: false },
        }),
    }
}

fn is_write(effect: &Effect) -> bool {
    burrow_core::protocol::Subject::of(effect).is_write()
}

/// Applies `event` and performs its writes as a shell whose writes all succeed; returns the reply and every effect
/// that is not a write, in the order the shell meets them.
fn drive(m: &mut SessionMachine, now: Millis, event: SessionEvent) -> Result<(Reply, Vec<Effect>), Refusal> {
    let fx = m.apply(now, event)?;
    let mut stack: Vec<Effect> = fx.effects.into_iter().rev().collect();
    let mut seen = Vec::new();
    while let Some(effect) = stack.pop() {
        if !is_write(&effect) {
            seen.push(effect);
            continue;
        }
        // The core's own table says which event reports a write that landed.
        if let Some(next) = feedback(Subject::of(&effect), Observed::Written).expect("a write's result") {
            let more = m.apply(now, next).expect("the write's result is taken");
            stack.extend(more.effects.into_iter().rev());
        }
    }
    Ok((fx.reply, seen))
}

fn assert_same_state(with: &SessionMachine, without: &SessionMachine, step: &str) {
    assert_eq!(with.ledger(), without.ledger(), "ledger after {step}");
    assert_eq!(with.waiters(), without.waiters(), "waiters after {step}");
    assert_eq!(with.phase_machine(), without.phase_machine(), "phase after {step}");
    assert_eq!(with.registration(), without.registration(), "registration after {step}");
    assert_eq!(with.drain(), without.drain(), "drain after {step}");
    assert_eq!(with.operations(), without.operations(), "operations after {step}");
    assert_eq!(with.current_run(), without.current_run(), "run after {step}");
    assert_eq!(with.loop_parked(), without.loop_parked(), "parked after {step}");
    assert_eq!(with.id_marks(), without.id_marks(), "id marks after {step}");
    assert_eq!(with.quiet_inputs(), without.quiet_inputs(), "quiet inputs after {step}");
    assert_eq!(with.retire_watermark(), without.retire_watermark(), "retire watermark after {step}");
    assert_eq!(with.unregister_watermark(), without.unregister_watermark(), "unregister watermark after {step}");
    assert!(with.receipts().eq(without.receipts()), "receipts after {step}");
}

#[test]
fn a_session_without_a_store_makes_the_same_transitions_and_asks_for_no_write() {
    let config = SessionConfig { run_deadline_ms: 50, run_notice_ms: 20, ..SessionConfig::default() };
    let (mut reported, mut runs) = (0, 0);
    for seed in 1..=1_000u64 {
        let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
        let mut with = SessionMachine::new(SessionId(1), config.clone());
        let mut without = SessionMachine::without_store(SessionId(1), config.clone());
        assert!(with.has_store() && !without.has_store());
        // Most sequences start attached, some from a bare session.
        if seed % 4 != 0 {
            for start in
                [SessionEvent::Prepare { epoch: EpochId(1) }, SessionEvent::BeginAttach, SessionEvent::AttachCompleted]
            {
                drive(&mut with, Millis(0), start.clone()).expect("a new session prepares and attaches");
                without.apply(Millis(0), start).map(drop).expect("a new session prepares and attaches");
            }
        }
        let mut now = 0;
        for step in 0..60 {
            now += rng.below(8);
            let event = event(&mut rng, &with);
            let label = format!("seed {seed} step {step} {}", event.name());
            let is_report = matches!(event, SessionEvent::RunReported { .. });
            let a = drive(&mut with, Millis(now), event.clone());
            // Without a store there is nothing to perform between events: its effects are compared as emitted.
            let raw = without.apply(Millis(now), event);
            if let Ok(fx) = &raw {
                assert!(!fx.effects.iter().any(is_write), "{label}: a write was asked for: {:?}", fx.names());
            }
            match (&a, raw) {
                (Ok((reply, seen)), Ok(fx)) => {
                    assert_eq!(*reply, fx.reply, "{label}: replies differ");
                    assert_eq!(*seen, fx.effects, "{label}: effects differ");
                    runs += usize::from(matches!(reply, Reply::Run(_)));
                    reported += usize::from(is_report);
                }
                (Err(x), Err(y)) => assert_eq!(*x, y, "{label}: refusals differ"),
                (x, y) => panic!("{label}: one accepted and one refused: {x:?} / {y:?}"),
            }
            if let Err(v) = invariants::check(&without) {
                panic!("{label}: invariant broken without a store: {v}");
            }
            assert_same_state(&with, &without, &label);
        }
    }
    // The sequences reach the paths that differ: runs that start, report and commit.
    assert!(runs > 1_500 && reported > 1_000, "runs {runs}, reported {reported}");
}
