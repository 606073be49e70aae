//! Counterexamples as scenario files: one action per line, in order, after a header naming the model and the
//! violated property. The simulator reads these to replay a model counterexample on the real shell.

use std::fmt::Debug;
use std::io::Write;
use std::path::Path;

/// The first line of every scenario file.
pub const HEADER: &str = "burrow-scenario v1";

/// Renders `actions` as a scenario for `model` that violated `property`.
#[must_use]
pub fn render<A: Debug>(model: &str, property: &str, actions: &[A]) -> String {
    let mut text = format!("{HEADER}\nmodel {model}\nproperty {property}\n");
    for action in actions {
        text.push_str(&format!("step {action:?}\n"));
    }
    text
}

/// Writes the scenario to `path`.
pub fn write<A: Debug>(path: &Path, model: &str, property: &str, actions: &[A]) -> std::io::Result<()> {
    let mut file = std::fs::File::create(path)?;
    file.write_all(render(model, property, actions).as_bytes())
}

/// Reads the steps of a scenario back (the text inside each `step` line), checking the header.
pub fn parse(text: &str) -> Result<Vec<String>, String> {
    let mut lines = text.lines();
    if lines.next() != Some(HEADER) {
        return Err(format!("not a scenario: the first line must be {HEADER:?}"));
    }
    let mut steps = Vec::new();
    for (n, line) in lines.enumerate() {
        let Some(step) = line.strip_prefix("step ") else { continue };
        let step = step.trim();
        if step.is_empty() {
            // The header is line 1.
            return Err(format!("line {}: a step line names no step", n + 2));
        }
        steps.push(step.to_owned());
    }
    Ok(steps)
}
