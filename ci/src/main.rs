//! `cargo xtask`: the project's automation, written in Rust so it runs wherever cargo does.
//!
//! Invoked through the alias in `.cargo/config.toml`. Every command prints each command line before running it,
//! so a CI log shows exactly what to paste to reproduce a step by hand.

use std::env;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

const USAGE: &str = "\
usage: cargo xtask <command> [args...]

commands:
  test [args...]         the whole suite: `cargo test --workspace`, then the conformance suite and the runtime's
                         own tests built with --cfg madsim; args are passed to both cargo test runs
  test-madsim [args...]  only the madsim build: `cargo test -p burrow-tests -p burrow -p burrow-sim` with
                         --cfg madsim in its own target directory; args are passed to cargo test
  sim <args...>          the simulator, built in release: `--mode full` (and replaying a .json scenario) in the
                         madsim build, core and tokio in the normal one; e.g. `cargo xtask sim sweep --seeds 10000
                         --mode full --jobs 2`, `cargo xtask sim run --seed 7 --mode full --trace`,
                         `cargo xtask sim minimize --seed 7`, `cargo xtask sim help`
  help                   this text

The madsim runs honour madsim's variables, e.g. MADSIM_TEST_SEED=<n> to replay a seed and MADSIM_TEST_NUM=<n> to
run n consecutive seeds.";

fn main() -> ExitCode {
    let mut args = env::args_os().skip(1);
    let Some(command) = args.next() else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    let rest: Vec<OsString> = args.collect();
    let workspace = Workspace::locate();
    let steps = match command.to_str() {
        Some("test") => vec![workspace.normal_tests(&rest), workspace.madsim_tests(&rest)],
        Some("test-madsim") => vec![workspace.madsim_tests(&rest)],
        Some("sim") => vec![workspace.sim(&rest)],
        Some("help" | "-h" | "--help") => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        _ => {
            eprintln!("xtask: unknown command {command:?}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    run_all(steps)
}

/// Runs every step even after one fails, so one CI run reports every broken build rather than only the first.
fn run_all(steps: Vec<Step>) -> ExitCode {
    let mut failed = Vec::new();
    for step in steps {
        if !step.run() {
            failed.push(step.name);
        }
    }
    if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        eprintln!("xtask: failed: {}", failed.join(", "));
        ExitCode::FAILURE
    }
}

/// Where the workspace is and which cargo to call.
struct Workspace {
    root: PathBuf,
    cargo: OsString,
}

impl Workspace {
    fn locate() -> Workspace {
        // This crate sits one level below the workspace root, and cargo tells us where this crate is.
        let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
        let root = manifest_dir.parent().expect("the xtask crate lives inside the workspace").to_path_buf();
        // Under `cargo xtask`, CARGO names the cargo that launched us, so nested runs use the same toolchain.
        let cargo = env::var_os("CARGO").unwrap_or_else(|| OsString::from("cargo"));
        Workspace { root, cargo }
    }

    fn cargo(&self, name: &'static str, args: &[&str], extra: &[OsString]) -> Step {
        let mut step =
            Step { name, env: Vec::new(), program: self.cargo.clone(), args: Vec::new(), dir: self.root.clone() };
        step.args.extend(args.iter().map(OsString::from));
        step.args.extend(extra.iter().cloned());
        step
    }

    fn normal_tests(&self, extra: &[OsString]) -> Step {
        self.cargo("tests", &["test", "--workspace"], extra)
    }

    /// The conformance suite and the runtime's tests built with `--cfg madsim`: the same test bodies, on the
    /// simulator's virtual clock and seeded scheduler.
    ///
    /// It gets its own target directory because changing RUSTFLAGS invalidates every compiled crate; sharing
    /// `target/` would make each normal build and each madsim build rebuild the whole workspace from scratch.
    fn madsim_tests(&self, extra: &[OsString]) -> Step {
        let mut step =
            self.cargo("madsim tests", &["test", "-p", "burrow-tests", "-p", "burrow", "-p", "burrow-sim"], extra);
        self.madsim_env(&mut step);
        step
    }

    /// The simulator in release. The full mode (and a JSON scenario, which replays in it by default) needs the
    /// madsim build; everything else runs in the normal one.
    fn sim(&self, extra: &[OsString]) -> Step {
        let words: Vec<String> = extra.iter().map(|w| w.to_string_lossy().into_owned()).collect();
        let mode = words.iter().position(|w| w == "--mode").and_then(|i| words.get(i + 1)).map(String::as_str);
        let json_replay = words.first().is_some_and(|w| w == "replay") && words.iter().any(|w| w.ends_with(".json"));
        let simulated = mode == Some("full") || (mode.is_none() && json_replay);
        let mut step = self.cargo("sim", &["run", "--release", "-q", "-p", "burrow-sim", "--"], extra);
        if simulated {
            self.madsim_env(&mut step);
        }
        step
    }

    /// Points `step` at the madsim target directory with `--cfg madsim` added to the compiler flags.
    fn madsim_env(&self, step: &mut Step) {
        let target = env::var_os("CARGO_TARGET_DIR").map_or_else(|| self.root.join("target"), PathBuf::from);
        step.env.push(("CARGO_TARGET_DIR".into(), target.join("madsim").into_os_string()));
        // Cargo reads CARGO_ENCODED_RUSTFLAGS instead of RUSTFLAGS whenever it is set, so the flag must join
        // whichever of the two is in force or it would be silently dropped.
        match env::var_os("CARGO_ENCODED_RUSTFLAGS").filter(|flags| !flags.is_empty()) {
            Some(encoded) => {
                step.env.push(("CARGO_ENCODED_RUSTFLAGS".into(), append(encoded, "\u{1f}--cfg\u{1f}madsim")))
            }
            None => step.env.push(("RUSTFLAGS".into(), append_flags("RUSTFLAGS"))),
        }
        // Doctests are compiled by rustdoc, which reads its own variable; without it they would see the other cfg.
        step.env.push(("RUSTDOCFLAGS".into(), append_flags("RUSTDOCFLAGS")));
    }
}

/// The current value of a space-separated flags variable with `--cfg madsim` added.
fn append_flags(variable: &str) -> OsString {
    match env::var_os(variable).filter(|flags| !flags.is_empty()) {
        Some(flags) => append(flags, " --cfg madsim"),
        None => OsString::from("--cfg madsim"),
    }
}

fn append(mut base: OsString, suffix: &str) -> OsString {
    base.push(suffix);
    base
}

/// One command to run, with the environment it needs on top of ours.
struct Step {
    name: &'static str,
    env: Vec<(OsString, OsString)>,
    program: OsString,
    args: Vec<OsString>,
    dir: PathBuf,
}

impl Step {
    /// Prints the command line, runs it with inherited output, and says whether it succeeded.
    fn run(&self) -> bool {
        eprintln!("xtask: $ {}", self.display());
        let status = Command::new(&self.program)
            .args(&self.args)
            .envs(self.env.iter().map(|(key, value)| (key, value)))
            .current_dir(&self.dir)
            .status();
        match status {
            Ok(status) if status.success() => true,
            Ok(status) => {
                eprintln!("xtask: {} failed ({status})", self.name);
                false
            }
            Err(error) => {
                eprintln!("xtask: {} could not start {:?}: {error}", self.name, self.program);
                false
            }
        }
    }

    /// The step as a shell line: variables first, then the command, quoting only what needs it.
    fn display(&self) -> String {
        let mut words: Vec<String> = Vec::new();
        for (key, value) in &self.env {
            let value = value.to_string_lossy();
            let value = match Path::new(value.as_ref()).strip_prefix(&self.dir) {
                // Paths inside the workspace are shown relative to it, which is where the command runs.
                Ok(relative) if value.starts_with('/') => relative.display().to_string(),
                _ => value.into_owned(),
            };
            words.push(format!("{}={}", key.to_string_lossy(), quote(&value)));
        }
        // Show `cargo` rather than the absolute path of the cargo binary, which is the same command to a reader.
        let program = Path::new(&self.program);
        let program = if program.file_stem().is_some_and(|stem| stem == "cargo") {
            "cargo".to_owned()
        } else {
            program.display().to_string()
        };
        words.push(program);
        words.extend(self.args.iter().map(|arg| quote(&arg.to_string_lossy())));
        words.join(" ")
    }
}

fn quote(word: &str) -> String {
    let plain = !word.is_empty() && word.chars().all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c));
    if plain { word.to_owned() } else { format!("'{}'", word.replace('\'', "'\\''")) }
}
