//! The command lines: misspelled and unknown flags are refused with a suggestion, every subcommand has help, every
//! command the README shows still parses, and the ones that are quick run for real.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use burrow_model::cli::Cli as ModelCli;
use burrow_sim::cli::Cli as SimCli;
use clap::Parser;

fn sim(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_burrow-sim")).args(args).output().expect("burrow-sim runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A folder of its own under the test target directory.
fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("make the folder");
    dir
}

#[test]
fn a_misspelled_flag_is_refused_with_the_right_one_named() {
    let out = sim(&["sweep", "--seed", "5"]);
    assert_eq!(out.status.code(), Some(2), "a typo must not run the default sweep");
    let said = text(&out.stderr);
    assert!(said.contains("unexpected argument '--seed'"), "{said}");
    assert!(said.contains("a similar argument exists: '--seeds'"), "{said}");
    assert!(out.stdout.is_empty(), "nothing ran: {}", text(&out.stdout));

    let out = sim(&["run", "--seed", "1", "--bogus"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("unexpected argument '--bogus'"), "{}", text(&out.stderr));

    let out = sim(&["sweep", "--mode", "fast"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("[possible values: core, full, tokio, fleet]"), "{}", text(&out.stderr));

    let out = sim(&["sweep", "--recheck", "2"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("wants a share from 0 to 1"), "{}", text(&out.stderr));

    let out = sim(&["run", "--seed", "1", "--defect", "no-such-defect"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("unknown core defect \"no-such-defect\""), "{}", text(&out.stderr));
}

#[test]
fn every_subcommand_has_help_with_its_defaults() {
    for command in ["run", "sweep", "minimize", "replay"] {
        let out = sim(&[command, "--help"]);
        assert!(out.status.success(), "{command} --help");
        let help = text(&out.stdout);
        assert!(help.contains(&format!("Usage: burrow-sim {command}")), "{help}");
        assert!(help.contains("--out <DIR>"), "the global option is listed: {help}");
    }
    let help = text(&sim(&["sweep", "--help"]).stdout);
    for default in ["[default: 1000]", "[default: core]", "[default: 1]", "[default: target/sim]"] {
        assert!(help.contains(default), "{default} in {help}");
    }
    for command in ["check", "explore"] {
        let help = ModelCli::try_parse_from(["burrow-model", command, "--help"]).err().expect("help is an early exit");
        assert_eq!(help.kind(), clap::error::ErrorKind::DisplayHelp);
        let text = help.to_string();
        assert!(text.contains(&format!("Usage: burrow-model {command}")) && text.contains("[default: ci]"), "{text}");
    }
    let typo = ModelCli::try_parse_from(["burrow-model", "check", "--modle", "session"]).err().expect("refused");
    assert!(typo.to_string().contains("a similar argument exists: '--model'"), "{typo}");
    let out = Command::new(env!("CARGO_BIN_EXE_burrow-sim")).output().expect("runs");
    assert_eq!(out.status.code(), Some(2), "no command is an error");
    assert!(text(&out.stderr).contains("Usage: burrow-sim [OPTIONS] <COMMAND>"));
}

/// Every `cargo xtask sim ...` and `cargo run ... -p burrow-model -- ...` line of the README, as words after the
/// program's name.
fn readme_commands() -> (Vec<Vec<String>>, Vec<Vec<String>>) {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md")).expect("README");
    let (mut sims, mut models) = (Vec::new(), Vec::new());
    for line in readme.lines() {
        // Commands appear in code blocks and in inline code; a comment after `#` is not part of one.
        for piece in line.split('`').chain(std::iter::once(line)) {
            let command = piece.split(" #").next().unwrap_or_default().trim();
            let words: Vec<String> = command.split_whitespace().map(str::to_owned).collect();
            if let Some(rest) = words.strip_prefix(&["cargo".into(), "xtask".into(), "sim".into()]) {
                sims.push(rest.to_vec());
            } else if words.starts_with(&["cargo".into(), "run".into()]) && words.contains(&"burrow-model".into()) {
                let at = words.iter().position(|w| w == "--").expect("arguments after --");
                models.push(words[at + 1..].to_vec());
            }
        }
    }
    sims.sort();
    sims.dedup();
    models.sort();
    models.dedup();
    (sims, models)
}

/// A command that asks for help parsed well: clap answers it with the help text.
fn asked_for_help(error: clap::Error) -> Result<(), clap::Error> {
    match error.kind() {
        clap::error::ErrorKind::DisplayHelp => Ok(()),
        _ => Err(error),
    }
}

#[test]
fn every_command_the_readme_shows_still_parses() {
    let (sims, models) = readme_commands();
    assert!(sims.len() >= 6, "the README shows the simulator's commands: {sims:?}");
    assert!(models.len() >= 3, "the README shows the model checker's commands: {models:?}");
    for words in &sims {
        if words.is_empty() || words.iter().any(|w| w.contains("...") || w == "help") {
            continue;
        }
        let argv = std::iter::once("burrow-sim".to_owned()).chain(words.iter().cloned());
        if let Err(error) = SimCli::try_parse_from(argv).map(drop).or_else(asked_for_help) {
            panic!("README: cargo xtask sim {} no longer parses:\n{error}", words.join(" "));
        }
    }
    for words in &models {
        let argv = std::iter::once("burrow-model".to_owned()).chain(words.iter().cloned());
        if let Err(error) = ModelCli::try_parse_from(argv).map(drop).or_else(asked_for_help) {
            panic!("README: burrow-model {} no longer parses:\n{error}", words.join(" "));
        }
    }
}

#[test]
fn the_quick_commands_run_run_sweep_minimize_and_replay_with_a_picture() {
    let out_dir = scratch("sim-cli");
    let out_arg = out_dir.to_str().expect("a UTF-8 path");
    let out = sim(&["run", "--mode", "core", "--seed", "7", "--trace", "--out", out_arg]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("mode core seed 7: Clean"), "{}", text(&out.stdout));

    let out = sim(&["sweep", "--mode", "core", "--seeds", "200", "--jobs", "2", "--out", out_arg]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).lines().any(|l| l.starts_with("core        200           0")), "{}", text(&out.stdout));

    // A failing seed leaves its trace and its picture; minimizing it writes a scenario that replays with one.
    let defect = "admit-after-retire";
    let out = sim(&["sweep", "--mode", "core", "--seeds", "300", "--defect", defect, "--out", out_arg]);
    assert_eq!(out.status.code(), Some(1), "a planted defect fails the sweep");
    let said = text(&out.stdout);
    let seed: u64 = said
        .lines()
        .find_map(|l| l.strip_prefix("seed ")?.split(':').next()?.parse().ok())
        .expect("a failing seed is named");
    assert!(out_dir.join(format!("core-seed-{seed}.html")).is_file(), "the picture is beside the trace: {said}");
    let out = sim(&["minimize", "--mode", "core", "--seed", &seed.to_string(), "--defect", defect, "--out", out_arg]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let file = out_dir.join(format!("core-seed-{seed}.min.scenario"));
    assert!(file.is_file(), "{}", text(&out.stdout));
    let html_dir = scratch("sim-cli-replay");
    let file_arg = file.to_str().expect("UTF-8");
    let html_arg = html_dir.to_str().expect("UTF-8");
    let out = sim(&["replay", file_arg, "--defect", defect, "--html", "--out", html_arg]);
    assert_eq!(out.status.code(), Some(1), "the minimized scenario still fails");
    let page = std::fs::read_to_string(html_dir.join("core-seed-0.html")).expect("the replay's picture");
    assert!(page.contains("\"violation\":{"), "the picture marks the violation");
}
