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
  check                  the main job: the model check (ci profile), then simulator sweeps with every seed run
                         twice to compare traces (core mode 100,000 seeds, full mode 100,000 seeds, both on 2 jobs);
                         ends with one summary table, and fails with the line that reproduces any violation
  test [args...]         the whole suite: `cargo test --workspace`, then the conformance suite and the runtime's
                         own tests built with --cfg madsim; args are passed to both cargo test runs. When
                         PostgreSQL is installed it first starts a throwaway cluster under the target directory
                         (target/pg, loopback only, as the postgres user when run as root) and sets BURROW_PG_URL
                         for the tests; it stops the cluster at the end. `test-pg start|stop` does only that
  test-madsim [args...]  only the madsim build: `cargo test -p burrow-tests -p burrow -p burrow-sim` with
                         --cfg madsim in its own target directory; args are passed to cargo test
  sim <args...>          the simulator, built in release: `--mode full` (and replaying a .json scenario) in the
                         madsim build, core and tokio in the normal one; e.g. `cargo xtask sim sweep --seeds 10000
                         --mode full --jobs 2`, `cargo xtask sim run --seed 7 --mode full --trace`,
                         `cargo xtask sim minimize --seed 7`, `cargo xtask sim help`
  bench [args...]        the performance workloads W1-W5 (criterion, release), each next to its baseline, ending
                         with a table of figures, ratios and goals; args go to the bench (e.g. `W3`, or
                         `--measurement-time 2`)
  fuzz TARGET [--runs N] one fuzz target of fuzz/ (session_events, model_walk, sqlite_store, texts, inputs) for N
                         executions (default 100,000) over its corpus in fuzz/corpus/TARGET, with cargo fuzz on
                         the nightly toolchain (cargo-fuzz is installed first if missing); new corpus entries land
                         in the corpus folder, a crash in fuzz/artifacts/TARGET
  mutants core|shell [--shard K/N] [-- args...]
                         cargo-mutants (installed first if missing) over burrow-core or over the shell
                         (runtime/burrow/src), built with the `mutants` profile. A core mutant must get past the
                         core's tests, the simulator's tests, the model's ci profile and a 20,000-seed core sweep;
                         a shell mutant past the shell's and the conformance suite's tests, the simulator's tests and
                         a 120-seed tokio sweep. --shard K/N runs the K-th of N round-robin shares (K from 0), so a
                         CI matrix can spread it; the results land in target/mutation/<crate>-K-N/mutants.out
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
    let workspace = match Workspace::locate() {
        Ok(workspace) => workspace,
        Err(message) => {
            eprintln!("xtask: {message}");
            return ExitCode::from(2);
        }
    };
    let mut all = vec![command.clone()];
    all.extend(rest.iter().cloned());
    if let Some(code) = workspace.rebuild_if_stale(&all) {
        return code;
    }
    let steps = match command.to_str() {
        Some("check") => return workspace.check(&rest),
        Some("bench") => vec![workspace.bench(&rest)],
        Some("test") => {
            let cluster = match Cluster::start(&workspace) {
                Ok(cluster) => cluster,
                Err(message) => {
                    eprintln!("xtask: {message}");
                    return ExitCode::FAILURE;
                }
            };
            let mut normal = workspace.normal_tests(&rest);
            if let Some(cluster) = &cluster {
                normal.env.push(("BURROW_PG_URL".into(), cluster.url.clone().into()));
            }
            let code = run_all(vec![normal, workspace.madsim_tests(&rest)]);
            if let Some(cluster) = cluster {
                cluster.stop();
            }
            return code;
        }
        Some("test-pg") => return Cluster::command(&workspace, &rest),
        Some("test-madsim") => vec![workspace.madsim_tests(&rest)],
        Some("sim") => vec![workspace.sim(&rest)],
        Some("fuzz") => match workspace.fuzz(&rest) {
            Ok(steps) => steps,
            Err(message) => {
                eprintln!("xtask: {message}\n\n{USAGE}");
                return ExitCode::from(2);
            }
        },
        Some("mutants") => match workspace.mutants(&rest) {
            Ok(steps) => steps,
            Err(message) => {
                eprintln!("xtask: {message}\n\n{USAGE}");
                return ExitCode::from(2);
            }
        },
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
    /// The target directory of this checkout's builds, when it is not cargo's own choice (see [`Workspace::locate`]).
    target: Option<PathBuf>,
}

/// Set for an xtask that was rebuilt from this checkout's sources, so that it never tries again.
const REBUILT: &str = "BURROW_XTASK_REBUILT";

impl Workspace {
    /// The workspace of the directory `cargo xtask` was invoked from, as cargo itself resolves it, and the target
    /// directory its builds use.
    ///
    /// Never a path fixed at compile time: with a target directory shared between two checkouts (a copy, a second
    /// worktree, a CI cache), cargo may reuse one checkout's xtask binary in the other, and a compiled-in path
    /// would then build and check the first checkout's code while the second is the one asked about. Cargo judges
    /// whether a build is up to date by file times, not by where the sources are, so a checkout whose files are
    /// older than an artifact another checkout built would also run that artifact: when the target directory lies
    /// outside the workspace, each checkout's builds get a folder of their own inside it.
    fn locate() -> Result<Workspace, String> {
        // Under `cargo xtask`, CARGO names the cargo that launched us, so nested runs use the same toolchain.
        let cargo = env::var_os("CARGO").unwrap_or_else(|| OsString::from("cargo"));
        let output = Command::new(&cargo)
            .args(["metadata", "--no-deps", "--format-version", "1"])
            .output()
            .map_err(|error| format!("cannot run {cargo:?} to find the workspace: {error}"))?;
        if !output.status.success() {
            let said = String::from_utf8_lossy(&output.stderr);
            return Err(format!("no cargo workspace here ({}): {}", output.status, said.trim()));
        }
        let metadata = String::from_utf8_lossy(&output.stdout);
        let field = |key| json_field(&metadata, key).ok_or_else(|| format!("cargo metadata did not say {key}"));
        let root = PathBuf::from(field("workspace_root")?);
        if !root.join("ci").join("Cargo.toml").is_file() {
            return Err(format!("{} is not this project's workspace (it has no ci/ crate)", root.display()));
        }
        let shared = PathBuf::from(field("target_directory")?);
        let target = if shared.starts_with(&root) {
            None
        } else {
            Some(shared.join("checkouts").join(format!("{:016x}", fnv(root.as_os_str().as_encoded_bytes()))))
        };
        Ok(Workspace { root, cargo, target })
    }

    /// Whether this binary was built from the workspace's own xtask sources. A target directory shared with another
    /// checkout can hand us that checkout's build; then xtask is built again from these sources, in this checkout's
    /// own folder of the target directory, and run in our place.
    fn rebuild_if_stale(&self, args: &[OsString]) -> Option<ExitCode> {
        const SOURCE: &str = include_str!("main.rs");
        let ours = std::fs::read_to_string(self.root.join("ci/src/main.rs")).ok()?;
        if ours == SOURCE || env::var_os(REBUILT).is_some() {
            return None;
        }
        eprintln!("xtask: this xtask was built from another checkout's sources; building this checkout's");
        let mut step = self.cargo("xtask", &["run", "-q", "--package", "xtask", "--"], args);
        let own = self.target.clone().unwrap_or_else(|| self.root.join("target").join("xtask-rebuilt"));
        step.env.retain(|(key, _)| key != "CARGO_TARGET_DIR");
        step.env.push(("CARGO_TARGET_DIR".into(), own.into_os_string()));
        step.env.push((REBUILT.into(), "1".into()));
        Some(if step.run() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
    }

    fn cargo(&self, name: &'static str, args: &[&str], extra: &[OsString]) -> Step {
        let mut step =
            Step { name, env: Vec::new(), program: self.cargo.clone(), args: Vec::new(), dir: self.root.clone() };
        if let Some(target) = &self.target {
            step.env.push(("CARGO_TARGET_DIR".into(), target.clone().into_os_string()));
        }
        step.args.extend(args.iter().map(OsString::from));
        step.args.extend(extra.iter().cloned());
        step
    }

    /// The step that installs the cargo subcommand `cargo-<tool>`, if `cargo <tool>` does not answer yet.
    fn install_if_missing(&self, tool: &'static str) -> Option<Step> {
        let installed = Command::new("cargo").args([tool, "--version"]).output().is_ok_and(|o| o.status.success());
        if installed {
            return None;
        }
        let package = format!("cargo-{tool}");
        let mut install = self.cargo("install", &["install", &package, "--locked"], &[]);
        install.program = OsString::from("cargo");
        Some(install)
    }

    /// `fuzz TARGET [--runs N]`: installs cargo-fuzz if it is missing, then runs the target.
    fn fuzz(&self, args: &[OsString]) -> Result<Vec<Step>, String> {
        const TARGETS: [&str; 5] = ["session_events", "model_walk", "sqlite_store", "texts", "inputs"];
        let mut args = args.iter().map(|a| a.to_string_lossy().into_owned());
        let target = args.next().ok_or("fuzz needs a target")?;
        if !TARGETS.contains(&target.as_str()) {
            return Err(format!("unknown fuzz target {target:?}; the targets are {TARGETS:?}"));
        }
        let mut runs = 100_000u64;
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "--runs" => {
                    let value = args.next().ok_or("--runs needs a number")?;
                    runs = value.parse().map_err(|_| format!("--runs needs a number, not {value:?}"))?;
                }
                other => return Err(format!("unknown fuzz option {other:?}")),
            }
        }
        let mut steps: Vec<Step> = self.install_if_missing("fuzz").into_iter().collect();
        // cargo fuzz needs the nightly toolchain (sanitizer flags); rustup's `cargo` picks it with `+nightly`.
        let corpus = format!("corpus/{target}");
        let runs = format!("-runs={runs}");
        let mut run = self.cargo("fuzz", &["+nightly", "fuzz", "run", "-O", &target, &corpus, "--", &runs], &[]);
        run.program = OsString::from("cargo");
        run.dir = self.root.join("fuzz");
        steps.push(run);
        Ok(steps)
    }

    /// `mutants core|shell [--shard K/N] [-- args...]`: installs cargo-mutants if it is missing, then runs it with the
    /// crate's oracle (see USAGE).
    fn mutants(&self, args: &[OsString]) -> Result<Vec<Step>, String> {
        let mut args = args.iter().map(|a| a.to_string_lossy().into_owned());
        let (package, tests, oracle): (&str, &[&str], &str) = match args.next().as_deref() {
            Some("core") => ("burrow-core", &["burrow-core", "burrow-sim"], "burrow-sim/oracle-core"),
            Some("shell") => ("burrow", &["burrow", "burrow-tests", "burrow-sim"], "burrow-sim/oracle-shell"),
            Some(other) => return Err(format!("mutants takes core or shell, not {other:?}")),
            None => return Err("mutants needs core or shell".into()),
        };
        let mut shard = (0u32, 1u32);
        let mut extra = Vec::new();
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "--shard" => {
                    let value = args.next().ok_or("--shard needs K/N")?;
                    shard =
                        parse_shard(&value).ok_or_else(|| format!("--shard needs K/N with K < N, not {value:?}"))?;
                }
                "--" => extra.extend(args.by_ref()),
                other => return Err(format!("unknown mutants option {other:?}")),
            }
        }
        let mut steps: Vec<Step> = self.install_if_missing("mutants").into_iter().collect();
        let crate_name = if package == "burrow" { "shell" } else { "core" };
        let output = format!("target/mutation/{crate_name}-{}-{}", shard.0, shard.1);
        // cargo-mutants makes mutants.out inside this folder, but not the folder itself.
        std::fs::create_dir_all(self.root.join(&output)).map_err(|e| format!("cannot make {output}: {e}"))?;
        let shard = format!("{}/{}", shard.0, shard.1);
        let features = format!("--cargo-test-arg=--features={oracle}");
        let mut words = vec!["mutants", "--package", package];
        for test in tests {
            words.extend(["--test-package", test]);
        }
        words.extend(["--profile", "mutants", &features, "--shard", &shard, "--sharding", "round-robin"]);
        words.extend(["--output", &output]);
        let extra: Vec<OsString> = extra.into_iter().map(OsString::from).collect();
        let mut run = self.cargo("mutants", &words, &extra);
        run.program = OsString::from("cargo");
        steps.push(run);
        Ok(steps)
    }

    fn bench(&self, extra: &[OsString]) -> Step {
        self.cargo("bench", &["bench", "-p", "burrow", "--bench", "runtime", "--"], extra)
    }

    /// The main job. Each step's output streams through as it runs (the sweeps draw their progress bars on a
    /// terminal); its summary lines are kept for the table at the end.
    fn check(&self, extra: &[OsString]) -> ExitCode {
        if !extra.is_empty() {
            eprintln!("xtask: check takes no arguments (run `cargo xtask sim sweep ...` for other sweeps)");
            return ExitCode::from(2);
        }
        let sweep = |mode: &str, seeds: &str| -> Vec<OsString> {
            ["sweep", "--mode", mode, "--seeds", seeds, "--jobs", "2", "--recheck", "1"].map(OsString::from).to_vec()
        };
        let model = self.cargo(
            "model check (ci profile)",
            &["run", "--release", "-q", "-p", "burrow-model", "--", "check", "--profile", "ci", "--scenarios"],
            &[OsString::from("target/model")],
        );
        let mut core = self.sim(&sweep("core", "100000"));
        core.name = "sim core, 100,000 seeds";
        let mut full = self.sim(&sweep("full", "100000"));
        full.name = "sim full, 100,000 seeds";
        let mut rows = Vec::new();
        for step in [model, core, full] {
            let started = std::time::Instant::now();
            let (ok, lines) = step.run_teed();
            rows.push((step.name, ok, started.elapsed(), lines));
        }
        println!();
        println!("{:<28} {:<7} {:>8}  summary", "check", "result", "time");
        let mut failed = false;
        for (name, ok, time, lines) in &rows {
            failed |= !ok;
            // The model ends with its verdict; a sweep with its table row.
            let summary = lines.iter().rev().find(|l| !l.trim().is_empty()).map_or("", String::as_str);
            let result = if *ok { "ok" } else { "FAILED" };
            println!("{name:<28} {result:<7} {:>7.1}s  {}", time.as_secs_f64(), readable(summary));
        }
        let mut reproduce: Vec<String> = Vec::new();
        for (_, _, _, lines) in &rows {
            for line in lines {
                let line = line.trim();
                let again = if let Some(command) = line.strip_prefix("reproduce: ") {
                    command.to_owned()
                } else if let Some(file) = line.strip_prefix("scenario written to ") {
                    format!("cargo xtask sim replay {file}")
                } else if line.contains("the trace differs between two runs") {
                    line.to_owned()
                } else {
                    continue;
                };
                if !reproduce.contains(&again) {
                    reproduce.push(again);
                }
            }
        }
        if !reproduce.is_empty() {
            println!("\nto reproduce:");
            for line in &reproduce {
                println!("  {line}");
            }
        }
        if failed {
            eprintln!("xtask: check failed");
            ExitCode::FAILURE
        } else {
            ExitCode::SUCCESS
        }
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
        let simulated = matches!(mode, Some("full" | "fleet")) || (mode.is_none() && json_replay);
        let mut step = self.cargo("sim", &["run", "--release", "-q", "-p", "burrow-sim", "--"], extra);
        if simulated {
            self.madsim_env(&mut step);
        }
        step
    }

    /// Points `step` at the madsim target directory with `--cfg madsim` added to the compiler flags.
    fn madsim_env(&self, step: &mut Step) {
        let target = match &self.target {
            Some(target) => target.clone(),
            None => env::var_os("CARGO_TARGET_DIR").map_or_else(|| self.root.join("target"), PathBuf::from),
        };
        step.env.retain(|(key, _)| key != "CARGO_TARGET_DIR");
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

/// A sweep's table row (mode, seeds, violations, rechecked, differ, seeds/s, events/s, jobs, time) in words; any other
/// line as it is.
/// `K/N` with `K < N`.
fn parse_shard(text: &str) -> Option<(u32, u32)> {
    let (k, n) = text.split_once('/')?;
    let (k, n) = (k.parse().ok()?, n.parse().ok()?);
    (k < n).then_some((k, n))
}

fn readable(line: &str) -> String {
    let fields: Vec<&str> = line.split_whitespace().collect();
    match fields.as_slice() {
        [mode, seeds, violations, rechecked, differ, per_second, events, ..]
            if ["core", "full", "tokio"].contains(mode) =>
        {
            format!(
                "{seeds} seeds, {violations} violations, {rechecked} re-run with {differ} traces differing, \
                 {per_second} seeds/s, {events} events/s"
            )
        }
        _ => line.trim().to_owned(),
    }
}

/// The string value of the first `"key":"..."` in a JSON text (enough for cargo metadata's top-level paths).
fn json_field(json: &str, key: &str) -> Option<String> {
    let start = json.find(&format!("\"{key}\":\""))? + key.len() + 4;
    let mut value = String::new();
    let mut chars = json[start..].chars();
    loop {
        match chars.next()? {
            '"' => return Some(value),
            '\\' => match chars.next()? {
                'n' => value.push('\n'),
                't' => value.push('\t'),
                'u' => {
                    let code: String = chars.by_ref().take(4).collect();
                    value.push(char::from_u32(u32::from_str_radix(&code, 16).ok()?)?);
                }
                other => value.push(other),
            },
            c => value.push(c),
        }
    }
}

/// FNV-1a: a stable name for a checkout's folder, the same on every run and every build.
fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3))
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

/// A throwaway PostgreSQL cluster for the tests: in `<target>/pg`, listening on loopback only, with trust
/// authentication for the user `burrow`. Made with Debian's `initdb` and `pg_ctl`; run as the `postgres` user when
/// xtask runs as root (the server refuses to run as root).
struct Cluster {
    bin: PathBuf,
    dir: PathBuf,
    as_user: Option<&'static str>,
    url: String,
}

impl Cluster {
    /// Starts the cluster (making it first if needed). `Ok(None)`, with a notice, when PostgreSQL is not installed
    /// and CI is not set; under `CI=true` that is an error, since the PostgreSQL tests must run there.
    fn start(workspace: &Workspace) -> Result<Option<Cluster>, String> {
        let Some(bin) = postgres_bin() else {
            let ci = env::var("CI").is_ok_and(|v| v == "true");
            if ci {
                return Err("PostgreSQL is not installed (no initdb on PATH or in /usr/lib/postgresql/*/bin); \
                            under CI=true the PostgreSQL tests must run: apt-get install postgresql"
                    .into());
            }
            eprintln!(
                "xtask: PostgreSQL is not installed (no initdb found): the PostgreSQL tests will say so and not run; \
                 install Debian's postgresql package to run them"
            );
            return Ok(None);
        };
        let target = workspace.target.clone().unwrap_or_else(|| workspace.root.join("target"));
        let dir = target.join("pg");
        let root =
            Command::new("id").arg("-u").output().is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
        let as_user = root.then_some("postgres");
        let port = 40_000 + fnv(workspace.root.as_os_str().as_encoded_bytes()) % 20_000;
        let url = format!("host=127.0.0.1 port={port} user=burrow dbname=postgres");
        let mut cluster = Cluster { bin, dir, as_user, url };
        cluster.stop_quietly();
        std::fs::create_dir_all(&cluster.dir).map_err(|e| format!("cannot make {}: {e}", cluster.dir.display()))?;
        if let Some(user) = as_user {
            cluster.run_plain("chown", &["-R", user, &cluster.dir.display().to_string()])?;
            let reachable = Command::new("runuser")
                .args(["-u", user, "--", "test", "-w"])
                .arg(&cluster.dir)
                .status()
                .is_ok_and(|s| s.success());
            if !reachable {
                // A checkout inside a folder the server's user cannot enter (a home directory, say).
                let elsewhere = env::temp_dir().join(format!("burrow-pg-{port}"));
                eprintln!(
                    "xtask: {user} cannot reach {}; the cluster lives in {} instead",
                    cluster.dir.display(),
                    elsewhere.display()
                );
                cluster.dir = elsewhere;
                cluster.stop_quietly();
                std::fs::create_dir_all(&cluster.dir)
                    .map_err(|e| format!("cannot make {}: {e}", cluster.dir.display()))?;
                cluster.run_plain("chown", &["-R", user, &cluster.dir.display().to_string()])?;
            }
        }
        let data = cluster.dir.join("data");
        if !data.join("PG_VERSION").is_file() {
            let data = data.display().to_string();
            cluster.run("initdb", &["-D", &data, "-A", "trust", "-U", "burrow", "-E", "UTF8", "--no-sync"])?;
        }
        let options = format!("-p {port} -k {} -c listen_addresses=127.0.0.1", cluster.dir.display());
        let log = cluster.dir.join("log").display().to_string();
        cluster.run("pg_ctl", &["-D", &data.display().to_string(), "-l", &log, "-o", &options, "-w", "start"])?;
        eprintln!("xtask: PostgreSQL started for the tests: BURROW_PG_URL='{}'", cluster.url);
        Ok(Some(cluster))
    }

    /// `cargo xtask test-pg start|stop`: the cluster alone, for running the PostgreSQL tests by hand.
    fn command(workspace: &Workspace, args: &[OsString]) -> ExitCode {
        match args.first().and_then(|a| a.to_str()) {
            Some("start") => match Cluster::start(workspace) {
                Ok(Some(cluster)) => {
                    println!("{}", cluster.url);
                    ExitCode::SUCCESS
                }
                Ok(None) => ExitCode::SUCCESS,
                Err(message) => {
                    eprintln!("xtask: {message}");
                    ExitCode::FAILURE
                }
            },
            Some("stop") => {
                if let Some(bin) = postgres_bin() {
                    let target = workspace.target.clone().unwrap_or_else(|| workspace.root.join("target"));
                    let root = Command::new("id")
                        .arg("-u")
                        .output()
                        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
                    let cluster = Cluster {
                        bin,
                        dir: target.join("pg"),
                        as_user: root.then_some("postgres"),
                        url: String::new(),
                    };
                    cluster.stop();
                }
                ExitCode::SUCCESS
            }
            _ => {
                eprintln!("xtask: test-pg start|stop\n\n{USAGE}");
                ExitCode::from(2)
            }
        }
    }

    fn stop(&self) {
        let data = self.dir.join("data").display().to_string();
        match self.run("pg_ctl", &["-D", &data, "-m", "fast", "-w", "stop"]) {
            Ok(()) => eprintln!("xtask: PostgreSQL stopped"),
            Err(message) => eprintln!("xtask: {message}"),
        }
    }

    /// Stops a cluster left running by an earlier run, if any.
    fn stop_quietly(&self) {
        let data = self.dir.join("data");
        if data.join("postmaster.pid").is_file() {
            let _ =
                self.command_for("pg_ctl", &["-D", &data.display().to_string(), "-m", "fast", "-w", "stop"]).output();
        }
    }

    fn command_for(&self, tool: &str, args: &[&str]) -> Command {
        let program = self.bin.join(tool);
        match self.as_user {
            Some(user) => {
                let mut command = Command::new("runuser");
                command.args(["-u", user, "--"]).arg(program).args(args);
                command
            }
            None => {
                let mut command = Command::new(program);
                command.args(args);
                command
            }
        }
    }

    fn run(&self, tool: &str, args: &[&str]) -> Result<(), String> {
        let output = self.command_for(tool, args).output().map_err(|e| format!("cannot run {tool}: {e}"))?;
        if output.status.success() {
            return Ok(());
        }
        let log = std::fs::read_to_string(self.dir.join("log")).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(10).collect();
        Err(format!(
            "{tool} failed ({}): {}{}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr),
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        ))
    }

    fn run_plain(&self, program: &str, args: &[&str]) -> Result<(), String> {
        let status = Command::new(program).args(args).status().map_err(|e| format!("cannot run {program}: {e}"))?;
        if status.success() { Ok(()) } else { Err(format!("{program} {} failed ({status})", args.join(" "))) }
    }
}

/// The folder with PostgreSQL's server programs: Debian's newest `/usr/lib/postgresql/<version>/bin`, else wherever
/// `initdb` and `pg_ctl` are on PATH.
fn postgres_bin() -> Option<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let version = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").is_file().then_some((version, bin))
        })
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return Some(bin);
    }
    env::var_os("PATH").and_then(|path| {
        env::split_paths(&path).find(|dir| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file())
    })
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

    /// Like [`Step::run`], but standard output also passes through a pipe whose lines are returned, for a summary.
    fn run_teed(&self) -> (bool, Vec<String>) {
        use std::io::{BufRead, BufReader, Write};
        eprintln!("xtask: $ {}", self.display());
        let child = Command::new(&self.program)
            .args(&self.args)
            .envs(self.env.iter().map(|(key, value)| (key, value)))
            .current_dir(&self.dir)
            .stdout(std::process::Stdio::piped())
            .spawn();
        let mut child = match child {
            Ok(child) => child,
            Err(error) => {
                eprintln!("xtask: {} could not start {:?}: {error}", self.name, self.program);
                return (false, Vec::new());
            }
        };
        let mut lines = Vec::new();
        if let Some(out) = child.stdout.take() {
            let mut stdout = std::io::stdout();
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                let _ = writeln!(stdout, "{line}");
                let _ = stdout.flush();
                lines.push(line);
            }
        }
        match child.wait() {
            Ok(status) if status.success() => (true, lines),
            Ok(status) => {
                eprintln!("xtask: {} failed ({status})", self.name);
                (false, lines)
            }
            Err(error) => {
                eprintln!("xtask: {} did not finish: {error}", self.name);
                (false, lines)
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
