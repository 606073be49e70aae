//! Renders the composed session machine's (state x event) table into
//! specs/session.md: representative reachable states, built by driving the
//! real machine, against every control and loop event.

#![allow(unused_must_use)]

mod common;
mod support;

use burrow_core::completion::{ErrorInfo, FailureCause};
use burrow_core::ids::{Binding, EpochId, Generation, InputId, Millis, RunId};
use burrow_core::input::{InputKind, InputSpec};
use burrow_core::invariants;
use burrow_core::lease::HostId;
use burrow_core::registration::Obligation;
use burrow_core::session::{RecoverySource, Reply, RunReport, SessionEvent, SessionMachine};
use burrow_core::table;
use support::{H, prompt};

fn states() -> Vec<(&'static str, SessionMachine)> {
    let mut out = Vec::new();
    out.push(("Idle, prepared, no executor", H::prepared().m));
    out.push(("Attached, parked, empty", H::attached().m));
    let mut h = H::attached();
    h.ok(SessionEvent::Accept { spec: prompt(), waiter: true, wake: false });
    out.push(("Attached, parked, one quiet input", h.m));
    let mut h = H::attached();
    h.apply_checked("Accept", SessionEvent::Accept { spec: prompt(), waiter: true, wake: true });
    out.push(("Attached, i1's write in flight", h.m));
    let mut h = H::attached();
    h.prompt();
    h.apply_checked("Poll", SessionEvent::Poll);
    out.push(("Running r1, start not yet recorded", h.m));
    let mut h = H::attached();
    h.prompt();
    h.poll_run();
    out.push(("Running run r1", h.m.clone()));
    h.ok(SessionEvent::RunReported { run: RunId(1), report: RunReport::NoResult, snapshot: None });
    out.push(("Running r1, reported, commit pending", h.m));
    let mut h = H::attached();
    h.prompt();
    h.poll_run();
    h.ok(SessionEvent::Stop);
    out.push(("Running r1, stop deferred", h.m));
    let mut h = H::attached();
    h.prompt();
    h.poll_run();
    h.ok(SessionEvent::Retire);
    out.push(("Running r1, retire sticky", h.m));
    let mut h = H::attached();
    h.ok(SessionEvent::Retire);
    out.push(("Retired with executor", h.m));
    let mut h = H::attached();
    h.ok(SessionEvent::Stop);
    out.push(("Stopped", h.m));
    let mut h = H::attached();
    h.ok(SessionEvent::Destroy);
    out.push(("Destroyed", h.m));
    let mut h = H::attached();
    h.ok(SessionEvent::BeginUnregister);
    out.push(("Unregistering", h.m));
    let mut h = H::attached();
    h.ok(SessionEvent::OwnershipLost { owner: Some(HostId(2)) });
    out.push(("Moved to h2", h.m));
    out
}

fn events() -> Vec<(&'static str, SessionEvent)> {
    let err = ErrorInfo::new(FailureCause::ExecutorFailed, "x");
    vec![
        ("Accept prompt", SessionEvent::Accept { spec: prompt(), waiter: true, wake: true }),
        ("Accept without wake", SessionEvent::Accept { spec: prompt(), waiter: false, wake: false }),
        (
            "Accept operation",
            SessionEvent::Accept { spec: InputSpec::new(InputKind::Operation), waiter: true, wake: true },
        ),
        ("AcceptAndRun", SessionEvent::AcceptAndRun { spec: prompt() }),
        ("KeyRecalled (no row)", SessionEvent::KeyRecalled { key: "k".into(), found: None }),
        ("SetCommsEnabled(true)", SessionEvent::SetCommsEnabled(true)),
        ("InputPersisted i1", SessionEvent::InputPersisted { input: InputId(1) }),
        ("InputPersistFailed i1", SessionEvent::InputPersistFailed { input: InputId(1), error: err.clone() }),
        ("RunStartRecorded r1", SessionEvent::RunStartRecorded { run: RunId(1) }),
        ("Poll", SessionEvent::Poll),
        ("RunReported r1", SessionEvent::RunReported { run: RunId(1), report: RunReport::NoResult, snapshot: None }),
        ("BoundaryCommitted r1", SessionEvent::BoundaryCommitted { run: RunId(1) }),
        ("BoundaryCommitFailed r1", SessionEvent::BoundaryCommitFailed { run: RunId(1), error: err.clone() }),
        ("RunFailed r1", SessionEvent::RunFailed { run: RunId(1), error: err.clone() }),
        ("RunNotExecuted r1", SessionEvent::RunNotExecuted { run: RunId(1) }),
        ("Interrupt", SessionEvent::Interrupt { run: None }),
        ("CancelAfterBoundary", SessionEvent::CancelAfterBoundary),
        ("CancelAfterBoundaryFailed r1", SessionEvent::CancelAfterBoundaryFailed { run: RunId(1), error: err.clone() }),
        ("LifecyclePersistFailed", SessionEvent::LifecyclePersistFailed { error: err.clone() }),
        ("Stop", SessionEvent::Stop),
        ("Retire", SessionEvent::Retire),
        ("Recycle", SessionEvent::Recycle),
        ("Reset", SessionEvent::Reset),
        ("Recover in memory", SessionEvent::Recover(RecoverySource::InMemory)),
        ("Destroy", SessionEvent::Destroy),
        ("Prepare", SessionEvent::Prepare { epoch: EpochId(9) }),
        ("BeginAttach", SessionEvent::BeginAttach),
        ("LoopExited g1", SessionEvent::LoopExited { generation: Generation(1) }),
        ("Detach", SessionEvent::Detach),
        ("Wake", SessionEvent::Wake),
        ("BeginUnregister", SessionEvent::BeginUnregister),
        ("ObligationMet StopDrain", SessionEvent::ObligationMet(Obligation::StopDrain)),
        ("CommitUnregister", SessionEvent::CommitUnregister),
        ("Tick", SessionEvent::Tick),
        ("PeerSourceSet", SessionEvent::PeerSourceSet),
        ("OperationsPersistFailed", SessionEvent::OperationsPersistFailed { error: err.clone() }),
        ("OwnershipLost (owner h2)", SessionEvent::OwnershipLost { owner: Some(HostId(2)) }),
        (
            "Fenced (stale binding) Retire",
            SessionEvent::Fenced {
                binding: Binding { epoch: EpochId(7), generation: Generation(99) },
                event: Box::new(SessionEvent::Retire),
            },
        ),
    ]
}

fn summary(m: &SessionMachine) -> String {
    let queued = m.ledger().queue_lane().count() + m.ledger().steer_lane().count();
    format!("{} / {} q={queued} w={}", m.phase(), m.registration().phase(), m.waiters().pending())
}

fn reply(r: &Reply) -> String {
    match r {
        Reply::Done => String::new(),
        Reply::Accepted { input, terminal, .. } => {
            format!(" accepted {input}{}", if *terminal { " (terminal)" } else { "" })
        }
        other => format!(" {other:?}"),
    }
}

#[test]
fn session_table_matches_spec_page() {
    let states = states();
    let events = events();
    let table = table::render("Session machine (composed)", &states, &events, |state, event| {
        let mut m = state.clone();
        match m.apply(Millis(0), event.clone()) {
            Ok(fx) => {
                invariants::check(&m).expect("reachable states keep every invariant");
                let names = fx.names().join(", ");
                format!("{}{}; [{}]", summary(&m), reply(&fx.reply), names)
            }
            Err(r) => {
                assert_eq!(&m, state, "a refusal changes nothing");
                format!("refused: {r}")
            }
        }
    });
    let _ = InputId(0);
    common::check_spec_page("session", &table);
}
