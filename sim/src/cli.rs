//! The command line of `burrow-sim`, here rather than in the binary so that tests can check every command the README
//! shows still parses.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::Mode;

/// Seeded simulations of burrow: run one seed, sweep many, shrink a failing one, replay a scenario file.
#[derive(Parser)]
#[command(name = "burrow-sim", version, about, after_help = AFTER_HELP)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
    /// Where failing traces (JSON lines, a timeline, an HTML picture) and minimized scenarios are written.
    #[arg(long, global = true, default_value = "target/sim", value_name = "DIR")]
    pub out: PathBuf,
}

/// Modes, defects and variables, after the options.
const AFTER_HELP: &str = "\
modes: core (the machine alone), full (the real shell under madsim: a --cfg madsim build), tokio (the real shell
on real threads: a normal build); `cargo xtask sim ...` picks the build for the mode.
defects (teeth): core: forget-waiters-on-reset, reset-attempts-on-recovery, admit-after-retire, reapply-committed,
report-write-twice; full and tokio: dropping-store, lying-executor, dropped-resolution; fleet: store-ignores-epoch, clock-past-margin.
environment: BURROW_SIM_ECHO=1 prints a full or tokio run's timeline on stderr as it happens (for a run that dies
before its trace is written).";

/// What to do.
#[derive(Subcommand)]
pub enum Command {
    /// Runs one seed and prints its verdict; a failing seed leaves its trace and picture in --out.
    Run {
        /// The seed.
        #[arg(long)]
        seed: u64,
        /// The mode and the planted defect.
        #[command(flatten)]
        plan: PlanArgs,
        /// Prints the run's timeline.
        #[arg(long)]
        trace: bool,
        /// Writes the run's HTML picture to --out even when it passes.
        #[arg(long)]
        html: bool,
    },
    /// Runs many seeds (a share run twice to compare traces) and prints a summary table.
    Sweep {
        /// How many seeds.
        #[arg(long, default_value_t = 1_000)]
        seeds: u64,
        /// The first seed.
        #[arg(long, default_value_t = 0)]
        start: u64,
        /// Worker threads.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
        jobs: u64,
        /// Only the seeds s with s % n == k: one share of a sweep spread over machines.
        #[arg(long, value_name = "K/N", value_parser = parse_shard)]
        shard: Option<(u64, u64)>,
        /// The share of seeds run twice to compare trace hashes, 0 to 1.
        #[arg(long, default_value_t = 1.0, value_parser = parse_share)]
        recheck: f64,
        /// The mode and the planted defect.
        #[command(flatten)]
        plan: PlanArgs,
    },
    /// Shrinks a failing seed to a smaller scenario that still fails and writes it to --out.
    Minimize {
        /// The seed.
        #[arg(long)]
        seed: u64,
        /// The mode and the planted defect.
        #[command(flatten)]
        plan: PlanArgs,
    },
    /// Runs a scenario file: a model checker counterexample or a minimized core run (core mode), or a JSON scenario
    /// (full mode in a madsim build, tokio mode in a normal one).
    Replay {
        /// The scenario file.
        file: PathBuf,
        /// The mode a JSON scenario runs in (only this build's mode is accepted).
        #[arg(long, value_enum)]
        mode: Option<ModeArg>,
        /// A planted defect (teeth).
        #[arg(long, value_name = "DEFECT")]
        defect: Option<String>,
        /// Writes the run's HTML picture to --out.
        #[arg(long)]
        html: bool,
    },
}

/// The mode and the planted defect of a run.
#[derive(Args, Clone, Debug)]
pub struct PlanArgs {
    /// The mode.
    #[arg(long, value_enum, default_value_t = ModeArg::Core)]
    pub mode: ModeArg,
    /// A planted defect (teeth); the names are listed below.
    #[arg(long, value_name = "DEFECT")]
    pub defect: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
/// A mode, as the command line names it.
pub enum ModeArg {
    /// The machine alone.
    Core,
    /// The real shell under madsim.
    Full,
    /// The real shell on real threads.
    Tokio,
    /// Several fleet hosts over one shared store, under madsim.
    Fleet,
}

impl ModeArg {
    /// The mode.
    #[must_use]
    pub fn mode(self) -> Mode {
        match self {
            ModeArg::Core => Mode::Core,
            ModeArg::Full => Mode::Full,
            ModeArg::Tokio => Mode::Tokio,
            ModeArg::Fleet => Mode::Fleet,
        }
    }
}

/// `K/N` with `K < N`.
fn parse_shard(text: &str) -> Result<(u64, u64), String> {
    text.split_once('/')
        .and_then(|(k, n)| Some((k.parse::<u64>().ok()?, n.parse::<u64>().ok()?)))
        .filter(|(k, n)| *n > 0 && k < n)
        .ok_or_else(|| format!("wants K/N with K < N, not {text:?}"))
}

/// A share from 0 to 1.
fn parse_share(text: &str) -> Result<f64, String> {
    text.parse::<f64>()
        .ok()
        .filter(|share| (0.0..=1.0).contains(share))
        .ok_or_else(|| format!("wants a share from 0 to 1, not {text:?}"))
}
