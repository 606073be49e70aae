//! Renders the input lifecycle tables into specs/input.md.

mod common;

use burrow_core::ids::{InputId, Millis, RunId};
use burrow_core::input::{
    AbandonReason, InputKind, InputRecord, InputSpec, InputState, Ledger, admission_policy, recovery_rule,
};
use burrow_core::table;

const R: RunId = RunId(1);

fn ledger_with(state: InputState, attempts: u32) -> Ledger {
    let record = InputRecord {
        id: InputId(1),
        spec: InputSpec::new(InputKind::Prompt),
        state,
        attempts,
        accepted_at: Millis(0),
    };
    let lane = if state == InputState::Queued { vec![InputId(1)] } else { vec![] };
    Ledger::from_parts_unchecked(vec![record], lane, vec![], 3)
}

type Op = fn(&mut Ledger) -> Result<(), String>;

fn in_run(l: &Ledger) -> Result<(), String> {
    match l.get(InputId(1)) {
        Some(r) if r.state.run().is_some() => Ok(()),
        Some(r) => Err(format!("refused: input is {}", r.state.label())),
        None => Err("refused: input is not active".into()),
    }
}

#[test]
fn input_tables_match_spec_page() {
    let states = vec![
        ("Queued (0 attempts)", ledger_with(InputState::Queued, 0)),
        ("Staged (attempt 1)", ledger_with(InputState::Staged { run: R }, 1)),
        ("Staged (attempt 3 = max)", ledger_with(InputState::Staged { run: R }, 3)),
        ("Applied", ledger_with(InputState::Applied { run: R }, 1)),
        ("AppliedPendingConsumption", ledger_with(InputState::AppliedPendingConsumption { run: R }, 1)),
    ];
    let events: Vec<(&str, Op)> = vec![
        ("stage into run", |l| l.stage_batch(&[InputId(1)], RunId(2)).map_err(|e| format!("refused: {e}"))),
        ("run reported", |l| {
            in_run(l)?;
            let run = l.get(InputId(1)).unwrap().state.run().unwrap();
            if l.get(InputId(1)).unwrap().state != (InputState::Staged { run }) {
                return Err("refused: not staged".into());
            }
            l.advance_run(run, |run| InputState::Applied { run });
            Ok(())
        }),
        ("boundary committed, run ends", |l| {
            in_run(l)?;
            if !matches!(
                l.get(InputId(1)).unwrap().state,
                InputState::Applied { .. } | InputState::AppliedPendingConsumption { .. }
            ) {
                return Err("refused: no report".into());
            }
            l.terminalize(InputId(1), InputState::Consumed);
            Ok(())
        }),
        ("run failed (rollback)", |l| {
            in_run(l)?;
            l.rollback(InputId(1), false);
            Ok(())
        }),
        ("run never executed", |l| {
            in_run(l)?;
            l.rollback(InputId(1), true);
            Ok(())
        }),
        ("superseded", |l| {
            if l.get(InputId(1)).map(|r| r.state) != Some(InputState::Queued) {
                return Err("refused: only a pending input is superseded".into());
            }
            l.terminalize(InputId(1), InputState::Superseded { by: InputId(2) });
            Ok(())
        }),
        ("abandon all (stop)", |l| {
            l.abandon_all(AbandonReason::Stopped);
            Ok(())
        }),
        ("recover (no receipt)", |l| {
            l.recover(|_| false);
            Ok(())
        }),
        ("recover (receipt committed)", |l| {
            l.recover(|_| true);
            Ok(())
        }),
    ];
    let mut out = table::render("Input lifecycle", &states, &events, |ledger, op| {
        let mut l = ledger.clone();
        match op(&mut l) {
            Ok(()) => {
                let r = l.record(InputId(1)).expect("known");
                format!("{} (attempts {})", r.state.label(), r.attempts)
            }
            Err(e) => {
                assert_eq!(&l, ledger, "a refusal changes nothing");
                e
            }
        }
    });
    out.push_str("### Admission policy by kind\n\n| kind | lane | wakes | coalesces | supersedable |\n| --- | --- | --- | --- | --- |\n");
    for kind in InputKind::representatives() {
        let p = admission_policy(&kind, false);
        out.push_str(&format!(
            "| {} | {:?} | {} | {} | {} |\n",
            kind.name(),
            p.lane,
            p.wakes,
            p.coalesces,
            p.supersedable
        ));
    }
    let silent = admission_policy(&InputKind::PeerRequest { intent: "x".into() }, true);
    out.push_str(&format!(
        "| PeerRequest (silent intent) | {:?} | {} | {} | {} |\n",
        silent.lane, silent.wakes, silent.coalesces, silent.supersedable
    ));
    out.push_str("\n### Recovery rule (SPEC 5)\n\n| durable state | attempts | receipt committed | recovery |\n| --- | --- | --- | --- |\n");
    let rows = [
        InputState::Queued,
        InputState::Staged { run: R },
        InputState::Applied { run: R },
        InputState::AppliedPendingConsumption { run: R },
        InputState::Consumed,
        InputState::Abandoned(AbandonReason::Reset),
    ];
    for state in rows {
        for attempts in [1, 3] {
            for committed in [false, true] {
                let rule = recovery_rule(state, attempts, 3, |_| committed);
                out.push_str(&format!("| {} | {attempts} | {committed} | {rule:?} |\n", state.label()));
            }
        }
    }
    common::check_spec_page("input", &out);
}
