//! Renders the operations registry's (state x event) table into
//! specs/operations.md and snapshots it, so the page cannot drift from the code.

mod common;

use burrow_core::ids::{Millis, OperationId, RunId};
use burrow_core::operations::{
    CompletionSeq, OpEffect, OpEvent, OpResult, OperationKind, OperationSpec, OperationsRegistry, OpsConfig, WaitId,
};

const OP1: OperationId = OperationId(1);

fn background(name: &str) -> OperationSpec {
    OperationSpec::new(OperationKind::BackgroundTool, name)
}

fn child(name: &str) -> OperationSpec {
    OperationSpec::new(OperationKind::ChildSession, name).expecting_peer()
}

fn done() -> OpResult {
    OpResult { content: "done".into(), is_error: false }
}

/// Builds a state by applying `events` to a registry with `config`; the first
/// registered operation is always op1, the subject of most table events.
fn build(config: OpsConfig, events: Vec<OpEvent>) -> OperationsRegistry {
    let mut registry = OperationsRegistry::new(config);
    for event in events {
        registry
            .apply(Millis(0), event.clone())
            .unwrap_or_else(|refusal| panic!("building a table state: {event:?}: {refusal}"));
    }
    registry.check().expect("table states are valid");
    registry
}

fn states() -> Vec<(&'static str, OperationsRegistry)> {
    let default = OpsConfig::default();
    let register = |spec| OpEvent::Register { spec };
    let start = |op| OpEvent::ProvisioningSucceeded { op };
    let complete = |op| OpEvent::Complete { op, result: done() };
    vec![
        ("empty", build(default, vec![])),
        ("op1 provisioning", build(default, vec![register(background("a"))])),
        ("op1 provisioning, peer expected", build(default, vec![register(child("a"))])),
        ("op1 running", build(default, vec![register(background("a")), start(OP1)])),
        ("op1 running, peer expected", build(default, vec![register(child("a")), start(OP1)])),
        (
            "op1 running, peer ready",
            build(
                default,
                vec![register(child("a")), start(OP1), OpEvent::PeerReady { op: OP1, peer: "peer-a".into() }],
            ),
        ),
        (
            "op1 running, one watcher",
            build(default, vec![register(background("a")), start(OP1), OpEvent::RegisterWatcher { op: OP1 }]),
        ),
        (
            "op1 retiring",
            build(default, vec![register(background("a")), start(OP1), OpEvent::RequestRetire { op: OP1 }]),
        ),
        ("op1 completed", build(default, vec![register(background("a")), start(OP1), complete(OP1)])),
        (
            "op1 failed",
            build(
                default,
                vec![register(background("a")), OpEvent::ProvisioningFailed { op: OP1, error: "no sandbox".into() }],
            ),
        ),
        ("op1 cancelled", build(default, vec![register(background("a")), OpEvent::Cancel { op: OP1, reason: None }])),
        (
            "op1 aborted",
            build(default, vec![register(background("a")), OpEvent::AbortProvisioning { op: OP1, reason: None }]),
        ),
        (
            "op1 retired",
            build(
                default,
                vec![
                    register(background("a")),
                    start(OP1),
                    OpEvent::RequestRetire { op: OP1 },
                    OpEvent::MarkRetired { op: OP1 },
                ],
            ),
        ),
        (
            "op1 running, at the limit (2 of 2 live)",
            build(
                OpsConfig { max_concurrent: 2, ..default },
                vec![register(background("a")), start(OP1), register(background("b"))],
            ),
        ),
        (
            "op1 running, feed full (op2 ended, unacknowledged; feed_max 2)",
            build(
                OpsConfig { max_concurrent: 2, max_completed: 8, feed_max: 2 },
                vec![
                    register(background("a")),
                    start(OP1),
                    register(background("b")),
                    start(OperationId(2)),
                    complete(OperationId(2)),
                ],
            ),
        ),
        (
            "op1 running, retention full (op2 ended; max_completed 1)",
            build(
                OpsConfig { max_completed: 1, ..default },
                vec![
                    register(background("a")),
                    start(OP1),
                    register(background("b")),
                    start(OperationId(2)),
                    complete(OperationId(2)),
                ],
            ),
        ),
        (
            "op1 running, wait1 active on op1",
            build(
                default,
                vec![register(background("a")), start(OP1), OpEvent::WaitAll { run: RunId(1), ids: vec![OP1] }],
            ),
        ),
        (
            "op1 completed, feed acknowledged through #1",
            build(
                default,
                vec![
                    register(background("a")),
                    start(OP1),
                    complete(OP1),
                    OpEvent::AcknowledgeFeed { through: CompletionSeq(1) },
                ],
            ),
        ),
        (
            "registry terminated (op1 was running)",
            build(
                default,
                vec![
                    register(background("a")),
                    start(OP1),
                    OpEvent::TerminateOwner { reason: "owner destroyed".into() },
                ],
            ),
        ),
    ]
}

fn events() -> Vec<(&'static str, OpEvent)> {
    vec![
        ("Register(background tool)", OpEvent::Register { spec: background("new") }),
        ("Register(child session, expects peer)", OpEvent::Register { spec: child("new") }),
        ("ProvisioningSucceeded(op1)", OpEvent::ProvisioningSucceeded { op: OP1 }),
        ("ProvisioningFailed(op1)", OpEvent::ProvisioningFailed { op: OP1, error: "e".into() }),
        ("PeerReady(op1)", OpEvent::PeerReady { op: OP1, peer: "peer-b".into() }),
        (
            "ReportProgress(op1)",
            OpEvent::ReportProgress { op: OP1, progress: burrow_core::operations::Progress::message("half") },
        ),
        ("Complete(op1)", OpEvent::Complete { op: OP1, result: done() }),
        ("Fail(op1)", OpEvent::Fail { op: OP1, error: "e".into() }),
        ("Cancel(op1)", OpEvent::Cancel { op: OP1, reason: None }),
        ("AbortProvisioning(op1)", OpEvent::AbortProvisioning { op: OP1, reason: None }),
        ("RequestRetire(op1)", OpEvent::RequestRetire { op: OP1 }),
        ("MarkRetired(op1)", OpEvent::MarkRetired { op: OP1 }),
        ("TerminateOwner", OpEvent::TerminateOwner { reason: "owner destroyed".into() }),
        ("RegisterWatcher(op1)", OpEvent::RegisterWatcher { op: OP1 }),
        ("WaitAll([op1])", OpEvent::WaitAll { run: RunId(2), ids: vec![OP1] }),
        ("CancelWait(wait1)", OpEvent::CancelWait { wait: WaitId(1) }),
        ("CollectCompleted", OpEvent::CollectCompleted),
        ("AcknowledgeFeed(#1)", OpEvent::AcknowledgeFeed { through: CompletionSeq(1) }),
    ]
}

/// op1's status (or its absence), whether the registry is closed and whether a
/// wait is active, then the effects' names.
fn outcome(state: &OperationsRegistry, event: &OpEvent) -> String {
    let mut registry = state.clone();
    match registry.apply(Millis(100), event.clone()) {
        Err(refusal) => {
            assert_eq!(&registry, state, "a refusal changed the registry");
            format!("refused: {refusal}")
        }
        Ok(effects) => {
            registry.check().expect("accepted events keep the invariants");
            let mut summary = match registry.snapshot(OP1, Millis(100)) {
                Some(snapshot) => format!("op1 {}", snapshot.status),
                None => "op1 absent".to_owned(),
            };
            if registry.is_terminated() {
                summary.push_str(", registry terminated");
            }
            if let Some((wait, _)) = registry.active_wait() {
                summary.push_str(&format!(", {wait} active"));
            }
            let names: Vec<&str> = effects.iter().map(OpEffect::name).collect();
            if names.is_empty() { format!("{summary}; no effects") } else { format!("{summary}; {}", names.join(", ")) }
        }
    }
}

#[test]
fn operations_table_matches_the_spec_page() {
    let states = states();
    let events = events();
    let table = burrow_core::table::render("Operations registry: state x event", &states, &events, outcome);
    common::check_spec_page("operations", &table);
}
