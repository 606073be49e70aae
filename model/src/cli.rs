//! The command line of `burrow-model`, here rather than in the binary so that tests can check every command the
//! README shows still parses.

use std::path::PathBuf;

use clap::{Args as ClapArgs, Parser, Subcommand, ValueEnum};

use crate::profile::Profile;

/// Model-checks burrow's state machines (stateright), or serves stateright's explorer for one of them.
#[derive(Parser)]
#[command(name = "burrow-model", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// What to do.
#[derive(Subcommand)]
pub enum Command {
    /// Checks every property of the chosen models; prints unique states, rate, depth and each verdict, and the
    /// counterexample of a violated property.
    Check {
        /// Which models, with which bounds.
        #[command(flatten)]
        choice: Choice,
        /// Writes each counterexample as a scenario file in DIR (`cargo xtask sim replay FILE` runs it).
        #[arg(long, value_name = "DIR")]
        scenarios: Option<PathBuf>,
        /// Stops each model after N unique states (a partial run, for sizing bounds: verdicts cover only the states
        /// reached).
        #[arg(long, value_name = "N")]
        max_states: Option<usize>,
    },
    /// Serves stateright's explorer for one model on a local address.
    Explore {
        /// Which models, with which bounds.
        #[command(flatten)]
        choice: Choice,
        /// The address to serve on.
        #[arg(long, default_value = "127.0.0.1:3000", value_name = "HOST:PORT")]
        addr: String,
    },
}

/// Which models, with which bounds.
#[derive(ClapArgs)]
pub struct Choice {
    /// The bounds: ci (every input kind and control action, pinned state counts) or deep (larger, on demand).
    #[arg(long, value_enum, default_value_t = ProfileArg::Ci)]
    pub profile: ProfileArg,
    /// session, operations, registration, fleet, handover, all, or one session configuration as session/NAME (e.g. session/kinds).
    #[arg(long, default_value = "all")]
    pub model: String,
}

/// A profile, as the command line names it.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum ProfileArg {
    /// The CI bounds.
    Ci,
    /// Larger bounds.
    Deep,
}

impl ProfileArg {
    /// The profile.
    #[must_use]
    pub fn profile(self) -> Profile {
        match self {
            ProfileArg::Ci => Profile::Ci,
            ProfileArg::Deep => Profile::Deep,
        }
    }
}
