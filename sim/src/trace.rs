//! Runs, verdicts and traces.
//!
//! A trace is a list of lines, each with the time it happened at (simulated milliseconds in the full and tokio modes,
//! the step number in the core mode). The same seed yields the same lines, byte for byte; a sweep compares the hash
//! of two runs of each seed. A failing trace is written twice: as JSON lines for tools, and as a timeline to read.

use std::borrow::Cow;
use std::hash::{Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::Mode;

/// One event of a trace.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Line {
    /// When it happened: simulated milliseconds since the run started (the step number in core mode).
    pub t: u64,
    /// What happened (borrowed when it is a fixed text, as most core-mode steps are).
    pub what: Cow<'static, str>,
}

/// How a run ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Every oracle held.
    Clean,
    /// A safety property failed after a step.
    Safety {
        /// The property.
        property: String,
        /// The step after which it failed (1-based).
        step: usize,
    },
    /// The liveness phase ended with work or callers left.
    Liveness {
        /// What was left.
        what: String,
    },
}

impl Verdict {
    /// Whether every oracle held.
    #[must_use]
    pub fn is_clean(&self) -> bool {
        *self == Verdict::Clean
    }
}

/// One seed's run.
#[derive(Clone, Debug)]
pub struct Run {
    /// The mode that ran it.
    pub mode: Mode,
    /// The seed.
    pub seed: u64,
    /// The planted defect, by its command-line name, if any.
    pub defect: Option<&'static str>,
    /// The verdict.
    pub verdict: Verdict,
    /// The trace.
    pub trace: Vec<Line>,
    /// Events simulated (core: actions applied; full and tokio: calls made and results observed).
    pub events: u64,
}

impl Run {
    /// A hash of the trace, for the determinism re-check.
    #[must_use]
    pub fn trace_hash(&self) -> u64 {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        self.trace.hash(&mut hasher);
        hasher.finish()
    }

    /// The one line that reproduces this run.
    #[must_use]
    pub fn repro(&self) -> String {
        let defect = self.defect.map(|d| format!(" --defect {d}")).unwrap_or_default();
        format!("cargo xtask sim run --mode {} --seed {}{defect}", self.mode.name(), self.seed)
    }

    /// The trace as JSON lines: `{"t":..,"what":".."}` per line.
    #[must_use]
    pub fn json_lines(&self) -> String {
        let mut out = String::with_capacity(self.trace.len() * 64);
        for line in &self.trace {
            out.push_str(&format!("{{\"t\":{},\"what\":{}}}\n", line.t, json_string(&line.what)));
        }
        out
    }

    /// The trace as a timeline: time, then the event, with the verdict at the end.
    #[must_use]
    pub fn timeline(&self) -> String {
        let unit = if self.mode == Mode::Core { "step" } else { "ms" };
        let mut out = format!("seed {} mode {} ({unit} | event)\n", self.seed, self.mode.name());
        for line in &self.trace {
            out.push_str(&format!("{:>9} {unit:<4} | {}\n", line.t, line.what));
        }
        out.push_str(&format!("verdict: {:?}\nreproduce: {}\n", self.verdict, self.repro()));
        out
    }

    /// Writes `<dir>/<mode>-seed-<seed>.jsonl`, `.timeline.txt` and `.html` (the picture: [`crate::html`]); returns
    /// their paths. A core run's picture is drawn from the run replayed with its session told step by step
    /// ([`crate::core::replay_core_narrated`]); the trace files hold the run as it ran.
    ///
    /// # Errors
    /// If the directory cannot be created or a file cannot be written.
    pub fn write_trace(&self, dir: &Path) -> std::io::Result<TraceFiles> {
        std::fs::create_dir_all(dir)?;
        let stem = format!("{}-seed-{}", self.mode.name(), self.seed);
        let json = dir.join(format!("{stem}.jsonl"));
        let timeline = dir.join(format!("{stem}.timeline.txt"));
        std::fs::File::create(&json)?.write_all(self.json_lines().as_bytes())?;
        std::fs::File::create(&timeline)?.write_all(self.timeline().as_bytes())?;
        let html = self.write_html(dir)?;
        Ok(TraceFiles { json, timeline, html })
    }

    /// Writes the picture of this run to `<dir>/<mode>-seed-<seed>.html`; returns its path. A core run that is not
    /// narrated yet is taken to be its seed's run and narrated by running the seed again (see [`Run::write_trace`]);
    /// a replayed list of steps is narrated by its caller ([`crate::core::replay_core_narrated`]), which has the
    /// list.
    ///
    /// # Errors
    /// If the directory cannot be created or the file cannot be written.
    pub fn write_html(&self, dir: &Path) -> std::io::Result<PathBuf> {
        std::fs::create_dir_all(dir)?;
        let file = dir.join(format!("{}-seed-{}.html", self.mode.name(), self.seed));
        let narrated;
        let run = if self.mode == Mode::Core && !self.narrated() {
            let defect = self.defect.and_then(crate::core::parse_defect);
            // A seed whose run panicked panics again when replayed: its picture is then drawn from what it has.
            let again = std::panic::catch_unwind(|| crate::core::run_core_narrated(self.seed, defect));
            match again {
                Ok(run) => {
                    narrated = run;
                    &narrated
                }
                Err(_) => self,
            }
        } else {
            self
        };
        std::fs::File::create(&file)?.write_all(crate::html::Picture::of(run).page().as_bytes())?;
        Ok(file)
    }

    /// Whether the trace already tells the session's inputs and runs (a full or tokio run, or a narrated core run).
    fn narrated(&self) -> bool {
        self.trace.iter().any(|line| line.what.starts_with("s1 "))
    }
}

/// The files [`Run::write_trace`] wrote.
#[derive(Clone, Debug)]
pub struct TraceFiles {
    /// JSON lines, for tools.
    pub json: PathBuf,
    /// The timeline, to read.
    pub timeline: PathBuf,
    /// The picture, to look at.
    pub html: PathBuf,
}

/// `text` as a JSON string literal.
fn json_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_lines_escape_quotes_and_control_characters() {
        let run = Run {
            mode: Mode::Core,
            seed: 3,
            defect: None,
            verdict: Verdict::Clean,
            trace: vec![Line { t: 7, what: "say \"hi\"\n\\".into() }],
            events: 1,
        };
        assert_eq!(run.json_lines(), "{\"t\":7,\"what\":\"say \\\"hi\\\"\\n\\\\\"}\n");
        assert!(run.timeline().contains("        7 step | say"));
        assert_eq!(run.repro(), "cargo xtask sim run --mode core --seed 3");
    }
}
