//! Renders the phase machine's (state x event) table into specs/phase.md.

mod common;

use burrow_core::phase::{PhaseEvent, PhaseMachine, RuntimePhase};
use burrow_core::table;

fn describe(m: &PhaseMachine) -> String {
    let mut s = m.phase().to_string();
    if let Some(back) = m.run_returns_to() {
        s.push_str(&format!(" (returns to {back})"));
    }
    if m.stop_deferred() {
        s.push_str(" +stop deferred");
    }
    if m.executor_attached() && m.phase() == RuntimePhase::Retired {
        s.push_str(" +executor");
    }
    s
}

#[test]
fn phase_table_matches_spec_page() {
    use RuntimePhase as P;
    let states = vec![
        ("Initializing", PhaseMachine::from_parts_unchecked(P::Initializing, None, false, false)),
        ("Idle", PhaseMachine::from_parts_unchecked(P::Idle, None, false, false)),
        ("Attached", PhaseMachine::from_parts_unchecked(P::Attached, None, false, true)),
        ("Running (from Attached)", PhaseMachine::from_parts_unchecked(P::Running, Some(P::Attached), false, true)),
        ("Running (inline, from Idle)", PhaseMachine::from_parts_unchecked(P::Running, Some(P::Idle), false, false)),
        ("Running (returns to Retired)", PhaseMachine::from_parts_unchecked(P::Running, Some(P::Retired), false, true)),
        ("Running (stop deferred)", PhaseMachine::from_parts_unchecked(P::Running, Some(P::Attached), true, true)),
        ("Retired (no executor)", PhaseMachine::from_parts_unchecked(P::Retired, None, false, false)),
        ("Retired (executor)", PhaseMachine::from_parts_unchecked(P::Retired, None, false, true)),
        ("Stopped", PhaseMachine::from_parts_unchecked(P::Stopped, None, false, false)),
        ("Destroyed", PhaseMachine::from_parts_unchecked(P::Destroyed, None, false, false)),
    ];
    let events: Vec<(String, PhaseEvent)> = PhaseEvent::ALL.iter().map(|e| (format!("{e:?}"), *e)).collect();
    let events: Vec<(&str, PhaseEvent)> = events.iter().map(|(n, e)| (n.as_str(), *e)).collect();
    let mut out = table::render("Phase transitions", &states, &events, |state, event| {
        let mut m = state.clone();
        match m.apply(*event) {
            Ok(o) => {
                let mut s = describe(&m);
                if o.stop_now {
                    s.push_str("; stop now");
                }
                if o.stop_deferred {
                    s.push_str("; stop deferred");
                }
                if o.retire_deferred {
                    s.push_str("; retire sticky");
                }
                if o.no_op {
                    s.push_str("; no-op");
                }
                s
            }
            Err(r) => {
                assert_eq!(&m, state, "a refusal changes nothing");
                format!("refused: {r}")
            }
        }
    });
    out.push_str("### Predicates\n\n| phase | admits inputs | processes queue | can start a loop run |\n| --- | --- | --- | --- |\n");
    for (label, m) in &states {
        out.push_str(&format!(
            "| {label} | {} | {} | {} |\n",
            m.admits_inputs(),
            m.processes_queue(),
            m.can_start_run()
        ));
    }
    common::check_spec_page("phase", &out);
}
