//! Progress of long work (simulator sweeps, minimizing, model checks), shared by both command-line tools.
//!
//! On a terminal: an indicatif bar with the rate, the violations so far and the time left (a spinner with the rate
//! when the total is unknown). Anywhere else (a CI log, a pipe): plain lines, one per tenth of a known total or one
//! every [`PLAIN_EVERY`] of unknown work, so a log stays readable and never fills with redraws.

use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// How often a plain line reports work of unknown size.
pub const PLAIN_EVERY: Duration = Duration::from_secs(15);

/// A bar on a terminal, plain lines elsewhere.
pub struct Progress {
    bar: Option<ProgressBar>,
    total: Option<u64>,
    unit: String,
    started: Instant,
    plain: Mutex<Plain>,
}

/// What the plain lines printed last.
struct Plain {
    /// The last tenth (known total) a line was printed for; `u64::MAX` once the total was.
    tenth: u64,
    /// When the last line was printed (unknown total).
    at: Instant,
}

impl Progress {
    /// Progress over `total` items (`None`: unknown) named `unit` ("seeds", "states"); a bar when standard error is
    /// a terminal.
    #[must_use]
    pub fn new(total: Option<u64>, unit: impl Into<String>) -> Progress {
        Progress::drawn(total, unit, std::io::stderr().is_terminal())
    }

    /// As [`Progress::new`], with the choice of bar or plain lines made by the caller.
    #[must_use]
    pub fn drawn(total: Option<u64>, unit: impl Into<String>, terminal: bool) -> Progress {
        let unit = unit.into();
        let bar = terminal.then(|| {
            let (bar, template) = match total {
                Some(total) => (
                    ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr()),
                    format!(
                        "[{{bar:40}}] {{pos}}/{{len}} {unit}, {{msg}}, {{per_sec}}, {{elapsed_precise}} spent, \
                         {{eta}} left"
                    ),
                ),
                None => (
                    ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr()),
                    format!("{{spinner}} {{pos}} {unit}, {{msg}}{{per_sec}}, {{elapsed_precise}}"),
                ),
            };
            bar.set_style(ProgressStyle::with_template(&template).expect("a valid template").progress_chars("#>."));
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
        let now = Instant::now();
        Progress { bar, total, unit, started: now, plain: Mutex::new(Plain { tenth: 0, at: now }) }
    }

    /// `done` items so far, `violations` of them failed (`None`: not counted).
    pub fn set(&self, done: u64, violations: Option<u64>) {
        let counted = violations.map(|v| format!("{v} violations")).unwrap_or_default();
        if let Some(bar) = &self.bar {
            bar.set_position(done);
            bar.set_message(match self.total {
                Some(_) => counted,
                None if counted.is_empty() => String::new(),
                None => format!("{counted}, "),
            });
            return;
        }
        if let Some(line) = self.plain_line(done, &counted) {
            eprintln!("{line}");
        }
    }

    /// The plain line `done` items are worth, if one is due: at each tenth of a known total (and once at the end),
    /// or every [`PLAIN_EVERY`] of work of unknown size.
    fn plain_line(&self, done: u64, counted: &str) -> Option<String> {
        let mut plain = self.plain.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let counted = if counted.is_empty() { String::new() } else { format!(", {counted}") };
        match self.total {
            Some(total) => {
                let tenth = (total / 10).max(1);
                if done / tenth > plain.tenth || (done == total && plain.tenth < u64::MAX) {
                    plain.tenth = if done == total { u64::MAX } else { done / tenth };
                    return Some(format!("  {done}/{total} {}{counted}", self.unit));
                }
                None
            }
            None => {
                if plain.at.elapsed() < PLAIN_EVERY {
                    return None;
                }
                plain.at = Instant::now();
                let rate = done as f64 / self.started.elapsed().as_secs_f64().max(1e-9);
                Some(format!("  {done} {}{counted}, {rate:.0}/s", self.unit))
            }
        }
    }

    /// Prints `text` on standard output without tearing the bar.
    pub fn note(&self, text: &str) {
        match &self.bar {
            Some(bar) => bar.suspend(|| println!("{text}")),
            None => println!("{text}"),
        }
    }

    /// Removes the bar (its last state stays in the summary the caller prints).
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.finish();
    }
}

#[cfg(test)]
mod tests {
    use super::Progress;

    #[test]
    fn a_log_gets_a_line_per_tenth_and_one_at_the_end() {
        let progress = Progress::drawn(Some(95), "seeds", false);
        let lines: Vec<String> = (1..=95).filter_map(|done| progress.plain_line(done, "0 violations")).collect();
        assert_eq!(lines.len(), 11, "{lines:?}");
        assert_eq!(lines[0], "  9/95 seeds, 0 violations");
        assert_eq!(lines[10], "  95/95 seeds, 0 violations");
        assert_eq!(progress.plain_line(95, ""), None, "the end is told once");
    }

    #[test]
    fn work_of_unknown_size_is_told_only_after_a_while() {
        let progress = Progress::drawn(None, "states", false);
        assert_eq!(progress.plain_line(1_000, ""), None, "nothing before the first period has passed");
    }
}
