//! Renders the outcome-class selection table into specs/completion.md.

mod common;

use burrow_core::completion::{Evidence, FinalizationObservation, Outcome, TerminalObservation, select_class};
use burrow_core::table;

#[test]
fn completion_table_matches_spec_page() {
    let states: Vec<(String, TerminalObservation)> =
        TerminalObservation::ALL.iter().map(|t| (format!("{t:?}"), *t)).collect();
    let states: Vec<(&str, TerminalObservation)> = states.iter().map(|(n, t)| (n.as_str(), *t)).collect();
    let events = [
        ("finalization Succeeded", FinalizationObservation::Succeeded),
        ("finalization Failed", FinalizationObservation::Failed),
    ];
    let mut out = table::render(
        "Outcome class from (terminal observation x finalization observation)",
        &states,
        &events,
        |t, f| format!("{:?}", select_class(*t, *f)),
    );
    out.push_str("### Assembly with no evidence\n\nAn outcome is assembled from evidence after its class is chosen; evidence that does not fit fails the waiters closed.\n\n| class | with empty evidence |\n| --- | --- |\n");
    for t in TerminalObservation::ALL {
        for f in [FinalizationObservation::Succeeded, FinalizationObservation::Failed] {
            let class = select_class(t, f);
            let row = format!(
                "| {class:?} | {} |\n",
                match Outcome::assemble(class, &Evidence::default()) {
                    Ok(o) => format!("{:?}", o.class()),
                    Err(e) => format!("fails closed: {e}"),
                }
            );
            if !out.contains(&row) {
                out.push_str(&row);
            }
        }
    }
    common::check_spec_page("completion", &out);
}
