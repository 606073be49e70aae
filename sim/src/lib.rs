//! burrow-sim: seeded simulation of burrow (SPEC 6; DESIGN "The simulator").
//!
//! One seed decides a whole run. Three modes share the oracles (SPEC 6) and the trace format:
//!
//! - core ([`core`]): a discrete-event driver over burrow-core alone. Each seed draws its own workload shape and
//!   fault rates (swarm testing), then picks one enabled action at a time from the model checker's action set
//!   (`burrow_model::session`), steps the real `SessionMachine`, and checks every safety property after every step.
//!   No async, no allocation of a runtime: built for sweeps of millions of seeds.
//! - full ([`full`], in a `--cfg madsim` build): the real `burrow::Runtime` with its loops, locks, channels, timers
//!   and the simulated store, on madsim's seeded scheduler and virtual clock. The seed draws a [`scenario::Scenario`]
//!   (sessions, inputs of every kind, executor behaviour, control calls at random moments, operations, peer
//!   messages, store faults, crashes with restarts, timing jitter) and also seeds the scheduler.
//! - tokio (the same [`full`] driver in a normal build): the scenario on a real two-worker tokio runtime, as a stress
//!   test. Its schedule is the operating system's, so its trace is not expected to replay.
//!
//! Every run ends with a liveness phase (faults off, executor healthy) after which every caller must have its
//! answer and every queue of a live session must be empty. A failing run prints one line that reproduces it, can be
//! written as JSON lines and as a readable timeline ([`trace`]), and can be shrunk ([`minimize`]).

#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub)]

pub mod cli;
mod conform;
pub mod core;
#[cfg(madsim)]
pub mod fleet;
pub mod full;
pub mod html;
pub mod minimize;
pub mod scenario;
pub mod trace;

pub use crate::core::run_core;
pub use crate::trace::{Line, Run, Verdict};

/// The message of a panic payload (a `&str` or a `String`), if it has one.
#[must_use]
pub fn panic_text(payload: &(dyn std::any::Any + Send)) -> Option<String> {
    payload.downcast_ref::<&str>().map(|s| (*s).to_owned()).or_else(|| payload.downcast_ref::<String>().cloned())
}

/// Which driver runs a seed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Mode {
    /// burrow-core alone, no async.
    Core,
    /// The real shell under madsim (only in a `--cfg madsim` build).
    Full,
    /// The real shell under a real multi-thread tokio runtime (only in a normal build).
    Tokio,
    /// Several hosts of a fleet over one shared store, under madsim (only in a `--cfg madsim` build).
    Fleet,
}

impl Mode {
    /// The mode's name on the command line.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Mode::Core => "core",
            Mode::Full => "full",
            Mode::Tokio => "tokio",
            Mode::Fleet => "fleet",
        }
    }

    /// Parses a command-line name.
    #[must_use]
    pub fn parse(name: &str) -> Option<Mode> {
        match name {
            "core" => Some(Mode::Core),
            "full" => Some(Mode::Full),
            "tokio" => Some(Mode::Tokio),
            "fleet" => Some(Mode::Fleet),
            _ => None,
        }
    }

    /// Whether this build can run the mode: full needs `--cfg madsim`, tokio needs a normal build.
    #[must_use]
    pub fn available(self) -> bool {
        match self {
            Mode::Core => true,
            Mode::Full | Mode::Fleet => burrow_env::runtime::SIMULATED,
            Mode::Tokio => !burrow_env::runtime::SIMULATED,
        }
    }

    /// Whether a seed of this mode replays its trace exactly (the determinism re-check applies).
    #[must_use]
    pub fn deterministic(self) -> bool {
        self != Mode::Tokio
    }
}
