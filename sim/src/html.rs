//! A run as a picture: one self-contained HTML page (no network, no external script) with one lane per session, runs
//! as bars, inputs from their accept to their end, crashes and restarts across every lane, the violated property at
//! the step where it failed, and each event's details on click.
//!
//! The page is drawn by the script of `timeline.html` from a JSON model of the run that this module reads off the
//! trace's lines (full and tokio modes write them; a core run is replayed with
//! [`crate::core::replay_core_narrated`] to tell the same things in the same words).

use serde::Serialize;

use crate::Mode;
use crate::trace::{Run, Verdict};

/// The page, with `@TITLE@` and `@DATA@` to fill.
const TEMPLATE: &str = include_str!("timeline.html");

/// What the page draws.
#[derive(Debug, Default, Serialize)]
pub struct Picture {
    /// The page's heading.
    pub title: String,
    /// The time axis' unit: "ms", or "step" in core mode.
    pub unit: &'static str,
    /// The verdict, as the timeline prints it.
    pub verdict: String,
    /// The line that reproduces the run.
    pub reproduce: String,
    /// The last time on the axis.
    pub end: u64,
    /// One per session, in order of first appearance.
    pub lanes: Vec<String>,
    /// Every line of the trace.
    pub events: Vec<Event>,
    /// Runs, from handed out to ended.
    pub runs: Vec<Bar>,
    /// Inputs, from accepted to ended.
    pub inputs: Vec<InputBar>,
    /// Crashes and restarts.
    pub markers: Vec<Marker>,
    /// Where the run broke a rule, if it did.
    pub violation: Option<Violation>,
}

/// One line of the trace.
#[derive(Debug, Serialize)]
pub struct Event {
    /// Its place in the trace.
    pub i: usize,
    /// Its time.
    pub t: u64,
    /// Its session's lane, if it has one.
    pub lane: Option<String>,
    /// accept, run, resolve, crash, restart, step, call, violation or other.
    pub kind: &'static str,
    /// The line.
    pub text: String,
}

/// A run.
#[derive(Debug, Serialize)]
pub struct Bar {
    /// Its session.
    pub lane: String,
    /// The run's id.
    pub id: String,
    /// Handed out.
    pub from: u64,
    /// Ended (`None`: never, as a run of a crashed process).
    pub to: Option<u64>,
    /// The inputs handed to it.
    pub inputs: Vec<String>,
    /// Whether the executor succeeded (`None`: not known, or not ended).
    pub ok: Option<bool>,
    /// The event that handed it out (or ended it, when its start is not in the trace).
    pub event: usize,
}

/// An input.
#[derive(Debug, Serialize)]
pub struct InputBar {
    /// Its session.
    pub lane: String,
    /// The input's id.
    pub id: String,
    /// Its kind.
    pub kind: String,
    /// Accepted.
    pub from: u64,
    /// Ended (`None`: not within the trace).
    pub to: Option<u64>,
    /// How it ended.
    pub outcome: Option<String>,
    /// The event that accepted it.
    pub event: usize,
}

/// A crash or a restart.
#[derive(Debug, Serialize)]
pub struct Marker {
    /// When.
    pub t: u64,
    /// crash or restart.
    pub kind: &'static str,
    /// What happened.
    pub text: String,
    /// Its event.
    pub event: usize,
}

/// The broken rule.
#[derive(Debug, Serialize)]
pub struct Violation {
    /// When.
    pub t: u64,
    /// The event that tells it.
    pub event: usize,
    /// The property.
    pub property: String,
    /// What the trace says about it.
    pub text: String,
}

/// The lane of a line that starts with a session's name (`s3 ...`).
fn lane_of(text: &str) -> Option<String> {
    let (head, _) = text.split_once(' ')?;
    let digits = head.strip_prefix('s')?;
    (!digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())).then(|| head.to_owned())
}

/// The lane a scenario step names (`step 4 Accept { session: 2, ...`).
fn step_lane(text: &str) -> Option<String> {
    let rest = &text[text.find("session: ")? + "session: ".len()..];
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    (!digits.is_empty()).then(|| format!("s{digits}"))
}

/// The word after `marker` in `text`, up to a space, comma or bracket.
fn word_after<'a>(text: &'a str, marker: &str) -> Option<&'a str> {
    let rest = &text[text.find(marker)? + marker.len()..];
    let end = rest.find([' ', ',', ']', ')', ':']).unwrap_or(rest.len());
    Some(&rest[..end]).filter(|w| !w.is_empty())
}

/// The ids between the first brackets of `text`.
fn bracketed(text: &str) -> Vec<String> {
    let Some(open) = text.find('[') else { return Vec::new() };
    let Some(close) = text[open..].find(']') else { return Vec::new() };
    text[open + 1..open + close].split(", ").filter(|w| !w.is_empty()).map(str::to_owned).collect()
}

impl Picture {
    /// Reads the picture of `run` off its trace.
    #[must_use]
    pub fn of(run: &Run) -> Picture {
        let defect = run.defect.map(|d| format!(", defect {d}")).unwrap_or_default();
        let mut picture = Picture {
            title: format!("seed {}, mode {}{defect}", run.seed, run.mode.name()),
            unit: if run.mode == Mode::Core { "step" } else { "ms" },
            verdict: format!("{:?}", run.verdict),
            reproduce: run.repro(),
            ..Picture::default()
        };
        let mut restarted = std::collections::BTreeSet::new();
        for (i, line) in run.trace.iter().enumerate() {
            let (t, text) = (line.t, line.what.as_ref());
            picture.end = picture.end.max(t);
            let lane = lane_of(text).or_else(|| text.starts_with("step ").then(|| step_lane(text)).flatten());
            if let Some(lane) = &lane {
                if !picture.lanes.contains(lane) {
                    picture.lanes.push(lane.clone());
                }
            }
            let kind = picture.read(i, t, lane.as_deref(), text, &mut restarted);
            picture.events.push(Event { i, t, lane, kind, text: text.to_owned() });
        }
        if picture.violation.is_none() && !run.verdict.is_clean() {
            picture.violation = picture.fallback_violation(run);
        }
        picture.end = picture.end.max(1);
        picture
    }

    /// Reads one line into the bars and markers; returns the event's kind.
    fn read(
        &mut self,
        i: usize,
        t: u64,
        lane: Option<&str>,
        text: &str,
        restarted: &mut std::collections::BTreeSet<String>,
    ) -> &'static str {
        if let Some(what) = text.strip_prefix("VIOLATION ").or_else(|| text.strip_prefix("LIVENESS ")) {
            if self.violation.is_none() {
                self.violation = Some(Violation { t, event: i, property: what.to_owned(), text: text.to_owned() });
            }
            return "violation";
        }
        if text.starts_with("process ") && text.contains(" crashed") {
            self.markers.push(Marker { t, kind: "crash", text: text.to_owned(), event: i });
            return "crash";
        }
        if text.starts_with("step ") {
            return "step";
        }
        let Some(lane) = lane else { return "other" };
        let body = &text[lane.len() + 1..];
        if let Some(process) = word_after(body, "start (process ") {
            if process != "0" && restarted.insert(process.to_owned()) {
                self.markers.push(Marker { t, kind: "restart", text: format!("process {process} starts"), event: i });
            }
            return "restart";
        }
        if body.starts_with("accept") {
            if let (Some(kind), Some(id)) = (word_after(body, "accept "), word_after(body, "-> accepted ")) {
                self.accepted(lane, id, kind, t, i);
            }
            return "accept";
        }
        if let Some(rest) = body.strip_prefix("run ") {
            self.run_line(lane, rest, t, i);
            return "run";
        }
        if let Some(rest) = body.strip_prefix("input ") {
            let id = rest.split(' ').next().unwrap_or_default();
            if let Some(outcome) = word_after(rest, " resolved ") {
                if let Some(bar) = self.inputs.iter_mut().rev().find(|b| b.lane == lane && b.id == id) {
                    if bar.to.is_none() {
                        bar.to = Some(t);
                        bar.outcome = Some(outcome.to_owned());
                    }
                }
                return "resolve";
            }
            return "other";
        }
        "call"
    }

    /// A run handed out, or ended (`rest` follows "sN run ").
    fn run_line(&mut self, lane: &str, rest: &str, t: u64, i: usize) {
        let id = rest.split(' ').next().unwrap_or_default().to_owned();
        if rest.ends_with("handed to the executor") {
            let inputs = bracketed(rest);
            self.runs.push(Bar { lane: lane.to_owned(), id, from: t, to: None, inputs, ok: None, event: i });
            return;
        }
        let Some(how) = rest.rsplit(" -> ").next() else { return };
        let ok = match how {
            "ok" => Some(true),
            "err" => Some(false),
            _ => None,
        };
        match self.runs.iter_mut().rev().find(|r| r.lane == lane && r.id == id && r.to.is_none()) {
            Some(bar) => {
                bar.to = Some(t);
                bar.ok = ok;
            }
            None => {
                let inputs = bracketed(rest);
                self.runs.push(Bar { lane: lane.to_owned(), id, from: t, to: Some(t), inputs, ok, event: i });
            }
        }
    }

    /// An input accepted at `t`. An id given again (an ephemeral input's, after its process died) ends the old bar.
    fn accepted(&mut self, lane: &str, id: &str, kind: &str, t: u64, i: usize) {
        if let Some(old) = self.inputs.iter_mut().rev().find(|b| b.lane == lane && b.id == id && b.to.is_none()) {
            old.to = Some(t);
            old.outcome = Some("Lost".to_owned());
        }
        let (lane, id, kind) = (lane.to_owned(), id.to_owned(), kind.to_owned());
        self.inputs.push(InputBar { lane, id, kind, from: t, to: None, outcome: None, event: i });
    }

    /// The violation of a run whose trace has no VIOLATION line: a core run's (at its step, told by its `why:`
    /// line when it has one) or a liveness verdict's (at the end).
    fn fallback_violation(&self, run: &Run) -> Option<Violation> {
        let last = self.events.len().checked_sub(1)?;
        let (property, at) = match &run.verdict {
            Verdict::Safety { property, step } => (property.clone(), Some(*step as u64)),
            Verdict::Liveness { what } => (format!("liveness: {what}"), None),
            Verdict::Clean => return None,
        };
        let event = self
            .events
            .iter()
            .position(|e| e.text.starts_with("why: "))
            .or_else(|| at.and_then(|t| self.events.iter().rposition(|e| e.t == t)))
            .unwrap_or(last);
        let e = &self.events[event];
        Some(Violation { t: e.t, event, property, text: e.text.clone() })
    }

    /// The page.
    #[must_use]
    pub fn page(&self) -> String {
        let data = serde_json::to_string(self).expect("a picture is plain data").replace('<', "\\u003c");
        let title = self.title.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;");
        // Each token is filled where the template has it, so that neither filling can land inside the other.
        let (head, rest) = TEMPLATE.split_once("@TITLE@").expect("the template has a title token");
        let (middle, tail) = rest.split_once("@DATA@").expect("the template has a data token after the title");
        [head, &title, middle, &data, tail].concat()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::Line;

    fn run(lines: &[(u64, &str)], verdict: Verdict) -> Run {
        Run {
            mode: Mode::Full,
            seed: 9,
            defect: Some("lying-executor"),
            verdict,
            trace: lines.iter().map(|(t, what)| Line { t: *t, what: (*what).to_owned().into() }).collect(),
            events: lines.len() as u64,
        }
    }

    #[test]
    fn a_trace_reads_as_lanes_bars_markers_and_the_violation() {
        let run = run(
            &[
                (0, "s1 start (process 0): prepare Ok(()), attach Attached"),
                (1, "step 1 Accept { session: 2, kind: Prompt }"),
                (1, "s2 accept Prompt -> accepted i1"),
                (2, "s2 run r1 [i1] handed to the executor"),
                (5, "s2 run r1 [i1] Ok(3) -> ok"),
                (5, "s2 input i1 resolved Completed"),
                (6, "s1 accept Prompt -> accepted i1"),
                (7, "process 0 crashed: its tasks are gone, its unsynced writes lost"),
                (7, "s1 start (process 1): prepare Ok(()), attach Attached"),
                (7, "s2 start (process 1): prepare Ok(()), attach Attached"),
                (8, "s1 run r2 [i1] handed to the executor"),
                (9, "VIOLATION s1 input i1: <b>committed</b> twice"),
            ],
            Verdict::Safety { property: "s1 input i1: <b>committed</b> twice".into(), step: 3 },
        );
        let picture = Picture::of(&run);
        assert_eq!(picture.lanes, ["s1", "s2"]);
        assert_eq!(picture.runs.len(), 2);
        assert_eq!((picture.runs[0].from, picture.runs[0].to, picture.runs[0].ok), (2, Some(5), Some(true)));
        assert_eq!(picture.runs[0].inputs, ["i1"]);
        assert_eq!((picture.runs[1].lane.as_str(), picture.runs[1].to), ("s1", None));
        assert_eq!(picture.inputs.len(), 2);
        assert_eq!(picture.inputs[0].outcome.as_deref(), Some("Completed"));
        assert_eq!((picture.inputs[1].lane.as_str(), picture.inputs[1].to), ("s1", None));
        let markers: Vec<(&str, u64)> = picture.markers.iter().map(|m| (m.kind, m.t)).collect();
        assert_eq!(markers, [("crash", 7), ("restart", 7)], "one restart per process, not per session");
        let violation = picture.violation.as_ref().expect("the violation");
        assert_eq!((violation.t, violation.event), (9, 11));
        let page = picture.page();
        assert!(page.contains("<title>seed 9, mode full, defect lying-executor"));
        assert!(!page.contains("<b>committed"), "the trace's text cannot open a tag in the page");
        assert!(page.contains("\\u003cb>committed"));
        assert!(!page.contains("@DATA@"));
    }

    #[test]
    fn a_core_verdict_without_a_violation_line_is_placed_at_its_why() {
        let mut run = run(
            &[(1, "Perform"), (2, "Accept(Prompt)"), (2, "why: a closed session accepted"), (3, "live Perform")],
            Verdict::Safety { property: "admission by phase".into(), step: 2 },
        );
        run.mode = Mode::Core;
        let picture = Picture::of(&run);
        let violation = picture.violation.expect("the violation");
        assert_eq!((violation.t, violation.event, violation.property.as_str()), (2, 2, "admission by phase"));
        assert_eq!(picture.unit, "step");
    }
}
