//! Renders a machine's (state x event) outcome table as Markdown.
//!
//! Every machine page in `specs/` embeds one of these tables; a test renders it
//! from the real transition function and snapshots it with insta, so the page
//! cannot drift from the code.

use std::fmt::Write as _;

/// Renders a table whose rows are states and whose columns are events.
///
/// `outcome` applies an event to a clone of a state and describes the result in
/// a few words (the new state and notable effects, or `refused: <why>`).
#[must_use]
pub fn render<S, E>(
    title: &str,
    states: &[(&str, S)],
    events: &[(&str, E)],
    mut outcome: impl FnMut(&S, &E) -> String,
) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "### {title}\n");
    let _ =
        writeln!(out, "{} states x {} events = {} cells.\n", states.len(), events.len(), states.len() * events.len());
    for (event_label, event) in events {
        let _ = writeln!(out, "#### on `{event_label}`\n");
        let _ = writeln!(out, "| from | outcome |");
        let _ = writeln!(out, "| --- | --- |");
        for (state_label, state) in states {
            let cell = outcome(state, event).replace('|', "\\|").replace('\n', " ");
            let _ = writeln!(out, "| {state_label} | {cell} |");
        }
        let _ = writeln!(out);
    }
    out
}
