//! burrow-core's `SessionMachine::apply` over arbitrary event sequences, in and out of protocol: it never panics, a
//! refused event changes nothing, and every accepted event leaves the SPEC 6 invariants holding.

#![no_main]

use burrow_core::completion::{ErrorInfo, FailureCause, PendingCallback, RunResult};
use burrow_core::ids::{EpochId, Generation, InputId, Millis, RunId, SessionId};
use burrow_core::input::{Durability, InputKind, InputRecord, InputSpec, InputState};
use burrow_core::invariants;
use burrow_core::registration::Obligation;
use burrow_core::session::{RecoverySource, RunReport, RuntimeEvent, SessionConfig, SessionEvent, SessionMachine};
use libfuzzer_sys::fuzz_target;

/// Reads the fuzzer's bytes as small numbers; an exhausted input reads zeros.
struct Bytes<'a>(&'a [u8]);

impl Bytes<'_> {
    fn next(&mut self) -> u8 {
        let Some((first, rest)) = self.0.split_first() else { return 0 };
        self.0 = rest;
        *first
    }

    fn below(&mut self, n: u8) -> u8 {
        self.next() % n
    }

    fn flag(&mut self) -> bool {
        self.next() & 1 == 1
    }

    fn key(&mut self) -> Option<String> {
        match self.below(4) {
            0 => None,
            1 => Some(String::new()),
            n => Some(format!("k{n}")),
        }
    }
}

fn spec(b: &mut Bytes<'_>) -> InputSpec {
    let kind = match b.below(8) {
        0 => InputKind::Prompt,
        1 => InputKind::ExternalEvent,
        2 => InputKind::FlowStep,
        3 => InputKind::PeerMessage,
        4 => InputKind::PeerRequest { intent: if b.flag() { "quiet".into() } else { String::new() } },
        5 => {
            // Two requests, and an empty id the machine must refuse.
            let request = ["r1", "r2", ""][usize::from(b.below(3))].to_owned();
            if b.flag() {
                InputKind::PeerResponseProgress { request }
            } else {
                InputKind::PeerResponseTerminal { request }
            }
        }
        6 => InputKind::Continuation,
        _ => InputKind::Operation,
    };
    let mut spec = InputSpec::new(kind);
    if b.flag() {
        spec = spec.durability(if b.flag() { Durability::Ephemeral } else { Durability::Derived });
    }
    spec.idempotency_key = b.key();
    spec.supersession_key = b.key();
    spec.steer = b.flag();
    spec
}

fn error() -> ErrorInfo {
    ErrorInfo::new(FailureCause::ExecutorFailed, "fuzz")
}

fn event(b: &mut Bytes<'_>) -> SessionEvent {
    let input = InputId(u64::from(b.below(6)) + 1);
    let run = RunId(u64::from(b.below(4)) + 1);
    match b.below(35) {
        0 => SessionEvent::Initialize,
        1 => SessionEvent::Prepare { epoch: EpochId(u64::from(b.below(3))) },
        2 => SessionEvent::BeginAttach,
        3 => SessionEvent::AttachCompleted,
        4 => SessionEvent::AttachFailed,
        5 => SessionEvent::LoopExited { generation: Generation(u64::from(b.below(3))) },
        6 => SessionEvent::Detach,
        7 | 8 | 9 => SessionEvent::Accept { spec: spec(b), waiter: b.flag(), wake: b.flag() },
        10 => SessionEvent::AcceptAndRun { spec: spec(b) },
        11 => SessionEvent::InputPersisted { input },
        12 => SessionEvent::InputPersistFailed { input, error: error() },
        13 => match b.below(3) {
            0 => SessionEvent::SetSilentIntents(vec!["quiet".into()]),
            // An empty name is refused; the refusal must change nothing.
            1 => SessionEvent::Publish(RuntimeEvent::new(if b.flag() { "event" } else { "" }, "payload")),
            _ => SessionEvent::SetCommsEnabled(b.flag()),
        },
        14 => SessionEvent::SetKeepAlive(b.flag()),
        15 => SessionEvent::Wake,
        16 | 17 => SessionEvent::Poll,
        18 => SessionEvent::RunNotExecuted { run },
        19 => SessionEvent::RunStartRecorded { run },
        20 => {
            let report = match b.below(4) {
                0 => RunReport::Result(RunResult { output: "r".into() }),
                1 => RunReport::NoResult,
                2 => RunReport::CallbackPending { tool: "t".into(), args: String::new() },
                // Zero calls is a malformed batch: the run fails.
                _ => RunReport::CallbackBatchPending {
                    calls: (0..b.below(3)).map(|_| PendingCallback { tool: "t".into(), args: String::new() }).collect(),
                },
            };
            SessionEvent::RunReported { run, report, snapshot: None }
        }
        21 => SessionEvent::RunFailed { run, error: error() },
        22 => SessionEvent::BoundaryCommitted { run },
        23 => SessionEvent::BoundaryCommitFailed { run, error: error() },
        24 => SessionEvent::LifecyclePersistFailed { error: error() },
        25 => SessionEvent::Interrupt { run: if b.flag() { Some(run) } else { None } },
        26 => SessionEvent::CancelAfterBoundary,
        27 => SessionEvent::Stop,
        28 => SessionEvent::Retire,
        29 => match b.below(3) {
            0 => SessionEvent::Recycle,
            1 => SessionEvent::Reset,
            _ => SessionEvent::Recover(RecoverySource::InMemory),
        },
        30 => SessionEvent::Destroy,
        31 => SessionEvent::BeginUnregister,
        32 => match b.below(4) {
            0 => SessionEvent::ObligationMet(Obligation::StopLoop { generation: Generation(u64::from(b.below(3))) }),
            1 => SessionEvent::ObligationMet(Obligation::StopDrain),
            2 => SessionEvent::ObligationMet(Obligation::ResolveWaiters),
            _ => SessionEvent::CommitUnregister,
        },
        33 => SessionEvent::KeyRecalled {
            key: "k".into(),
            found: b.flag().then(|| InputRecord {
                id: input,
                spec: InputSpec::new(InputKind::Prompt).idempotency_key(if b.flag() { "k" } else { "j" }),
                state: InputState::Consumed,
                attempts: 1,
                accepted_at: Millis(0),
            }),
        },
        _ => SessionEvent::Tick,
    }
}

fuzz_target!(|data: &[u8]| {
    let mut b = Bytes(data);
    let config = SessionConfig {
        max_attempts: 1 + u32::from(b.below(3)),
        run_deadline_ms: 50,
        history_max: 1 + usize::from(b.below(3)),
        ..SessionConfig::default()
    };
    let mut machine = if b.flag() {
        SessionMachine::new(SessionId(1), config)
    } else {
        SessionMachine::without_store(SessionId(1), config)
    };
    let mut now = 0u64;
    let mut applied: Vec<String> = Vec::new();
    for _ in 0..64 {
        if b.0.is_empty() {
            break;
        }
        now += u64::from(b.below(4)) * 20;
        let event = event(&mut b);
        let before = machine.clone();
        let result = machine.apply(Millis(now), event.clone());
        applied.push(format!("{event:?} -> {}", if result.is_ok() { "applied" } else { "refused" }));
        match result {
            Err(refusal) => assert!(machine == before, "{event:?} was refused ({refusal}) and changed the machine"),
            Ok(_) => {
                if let Err(violation) = invariants::check(&machine) {
                    panic!("{event:?} broke an invariant: {violation:?}\nafter {applied:#?}");
                }
            }
        }
    }
});
