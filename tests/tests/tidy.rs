//! Guards the two architecture rules a compiler cannot: burrow-core stays pure,
//! and only runtime/env names tokio or madsim. Runs in the ordinary suite.

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if path.is_dir() {
            if name != "target" && !name.starts_with('.') {
                rust_files(&path, out);
            }
        } else if name.ends_with(".rs") {
            out.push(path);
        }
    }
}

/// Lines that are code, not comments (doc comments may mention anything).
fn code_lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines().enumerate().filter(|(_, l)| {
        let t = l.trim_start();
        !t.starts_with("//")
    })
}

fn offenders(dir: &Path, patterns: &[&str], skip: &[&str]) -> Vec<String> {
    let mut files = Vec::new();
    rust_files(dir, &mut files);
    assert!(!files.is_empty(), "no sources under {}", dir.display());
    let mut found = Vec::new();
    for file in files {
        let rel = file.strip_prefix(root()).unwrap_or(&file).to_string_lossy().replace('\\', "/");
        if skip.iter().any(|s| rel.contains(s)) {
            continue;
        }
        let text = std::fs::read_to_string(&file).expect("readable source");
        for (n, line) in code_lines(&text) {
            for p in patterns {
                if line.contains(p) {
                    found.push(format!("{rel}:{}: `{p}` in: {}", n + 1, line.trim()));
                }
            }
        }
    }
    found
}

#[test]
fn core_reads_no_clock_draws_no_randomness_and_uses_ordered_state() {
    let forbidden = [
        "Instant::now",
        "SystemTime",
        "std::time",
        "thread_rng",
        "rand::",
        "HashMap",
        "HashSet",
        "tokio",
        "madsim",
        "std::thread",
        "std::fs",
        "std::net",
        "async fn",
        ".await",
    ];
    let found = offenders(&root().join("runtime/core/src"), &forbidden, &[]);
    assert!(found.is_empty(), "burrow-core must stay pure:\n{}", found.join("\n"));
}

#[test]
fn core_manifest_has_no_async_runtime() {
    let manifest = std::fs::read_to_string(root().join("runtime/core/Cargo.toml")).unwrap();
    let deps: Vec<&str> = manifest
        .split("[dependencies]")
        .nth(1)
        .unwrap_or("")
        .split("\n[")
        .next()
        .unwrap_or("")
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.trim().starts_with('#'))
        .collect();
    for dep in &deps {
        let name = dep.split(['=', '.']).next().unwrap_or("").trim();
        assert!(
            ["serde", "thiserror", "uuid"].contains(&name),
            "burrow-core may depend on serde, thiserror and uuid only, found `{dep}`"
        );
    }
}

#[test]
fn only_runtime_env_names_tokio_or_madsim() {
    let patterns = ["tokio::", "madsim::", "use tokio", "use madsim", "extern crate tokio", "extern crate madsim"];
    let mut found = Vec::new();
    for dir in ["runtime/core", "runtime/burrow", "model", "sim", "tests", "ci"] {
        // This file lists the patterns themselves.
        found.extend(offenders(&root().join(dir), &patterns, &["tests/tests/tidy.rs"]));
    }
    assert!(found.is_empty(), "tokio and madsim are reached only through burrow-env:\n{}", found.join("\n"));
    for dir in ["runtime/core", "runtime/burrow", "model", "sim", "tests", "ci"] {
        let manifest = std::fs::read_to_string(root().join(dir).join("Cargo.toml")).unwrap();
        for line in manifest.lines() {
            let name = line.split('=').next().unwrap_or("").trim();
            assert!(
                name != "tokio" && name != "madsim" && !line.contains("madsim-tokio"),
                "{dir}/Cargo.toml depends on an async runtime directly: {line}"
            );
        }
    }
}

#[test]
fn the_tidy_scan_sees_a_planted_offence() {
    // The scanner must be able to fail: feed it a directory with a planted line.
    let dir = std::env::temp_dir().join(format!("burrow-tidy-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("x.rs"), "// HashMap in a comment is fine\nlet t = std::time::Instant::now();\n").unwrap();
    let found = offenders(&dir, &["Instant::now", "HashMap"], &[]);
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].contains("Instant::now"));
}

/// The events that report an effect's result. Only the core's table (`burrow_core::protocol::feedback`) names
/// them; a driver that built one itself would be deciding what a result means.
const RESULT_EVENTS: [&str; 14] = [
    "SessionEvent::InputPersisted",
    "SessionEvent::InputPersistFailed",
    "SessionEvent::RunStartRecorded",
    "SessionEvent::RunReported",
    "SessionEvent::RunFailed",
    "SessionEvent::BoundaryCommitted",
    "SessionEvent::BoundaryCommitFailed",
    "SessionEvent::LifecyclePersistFailed",
    "SessionEvent::OperationsPersistFailed",
    "SessionEvent::CancelAfterBoundaryFailed",
    "SessionEvent::AttachCompleted",
    "SessionEvent::AttachFailed",
    "SessionEvent::CommitUnregister",
    "SessionEvent::ObligationMet",
];

#[test]
fn drivers_build_no_result_event_and_copy_no_decision() {
    let mut found = Vec::new();
    for dir in ["runtime/burrow/src", "model/src", "sim/src"] {
        // The sim's witness reads the events the shell's tap shows it (to check them against what the executor
        // returned); it applies none.
        found.extend(offenders(&root().join(dir), &RESULT_EVENTS, &["sim/src/conform.rs"]));
    }
    assert!(
        found.is_empty(),
        "a driver names a result event; it must report what it observed through burrow_core::protocol::feedback:\n{}",
        found.join("\n")
    );
    // A copy of a decision announces itself; the model once said so in comments.
    let mut copies = Vec::new();
    for dir in ["runtime/burrow/src", "model/src", "sim/src"] {
        let mut files = Vec::new();
        rust_files(&root().join(dir), &mut files);
        for file in files {
            let text = std::fs::read_to_string(&file).unwrap();
            if text.contains("as the shell") {
                copies.push(file.display().to_string());
            }
        }
    }
    assert!(copies.is_empty(), "a driver copies a decision of another: {copies:?}");
}

/// Functions longer than this many lines are split where a name explains the piece.
const FUNCTION_LINES_MAX: usize = 70;

/// How many functions in the production sources are longer than [`FUNCTION_LINES_MAX`] today. A ratchet: it may go
/// down, never up. Lower it when a long function is split.
const LONG_FUNCTIONS_ALLOWED: usize = 5;

/// Every function with a body in `dir` longer than [`FUNCTION_LINES_MAX`] lines, as `path:line name (n lines)`. A
/// function runs from its `fn` line to the first line that closes it at the same indentation.
fn long_functions(dir: &Path) -> Vec<String> {
    let mut files = Vec::new();
    rust_files(dir, &mut files);
    let mut found = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            let trimmed = line.trim_start();
            let indent = &line[..line.len() - trimmed.len()];
            let is_fn = ["fn ", "pub fn ", "pub(crate) fn ", "async fn ", "pub async fn ", "pub(crate) async fn "]
                .iter()
                .any(|p| trimmed.starts_with(p));
            if !is_fn {
                continue;
            }
            // The signature ends at the first line ending in `{` (a body) or `;` (a declaration).
            let Some(open) = (i..lines.len()).find(|&k| {
                let t = lines[k].trim_end();
                t.ends_with('{') || t.ends_with(';') || t.ends_with('}')
            }) else {
                continue;
            };
            if !lines[open].trim_end().ends_with('{') {
                continue;
            }
            let close = format!("{indent}}}");
            if let Some(end) = (open + 1..lines.len()).find(|&k| lines[k] == close) {
                let n = end - i + 1;
                if n > FUNCTION_LINES_MAX {
                    let rel = file.strip_prefix(root()).unwrap_or(&file).display().to_string();
                    let name = trimmed.split('(').next().unwrap_or(trimmed);
                    found.push(format!("{rel}:{} {name} ({n} lines)", i + 1));
                }
            }
        }
    }
    found
}

#[test]
fn long_functions_do_not_grow_in_number() {
    let mut found = Vec::new();
    for dir in ["runtime/core/src", "runtime/env/src", "runtime/burrow/src", "model/src", "sim/src", "ci/src"] {
        found.extend(long_functions(&root().join(dir)));
    }
    assert!(
        found.len() <= LONG_FUNCTIONS_ALLOWED,
        "{} functions are over {FUNCTION_LINES_MAX} lines (at most {LONG_FUNCTIONS_ALLOWED} allowed); split the new \
         one where a name explains the piece:\n{}",
        found.len(),
        found.join("\n")
    );
}

#[test]
fn the_length_scan_sees_a_planted_long_function() {
    let dir = std::env::temp_dir().join(format!("burrow-tidy-long-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let body: String = (0..FUNCTION_LINES_MAX).map(|k| format!("    let x{k} = {k};\n")).collect();
    let text = format!("fn short() {{}}\ntrait T {{\n    fn declared(&self);\n}}\nfn long() {{\n{body}}}\n");
    std::fs::write(dir.join("x.rs"), text).unwrap();
    let found = long_functions(&dir);
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].contains("fn long"), "{found:?}");
}

/// The shell's modules that must not name each other: `session.rs` is driven by the loop and the drain task, so it
/// reaches them only through the task starters the runtime hands it.
#[test]
fn the_session_names_neither_the_loop_nor_the_drain_task() {
    let session = std::fs::read_to_string(root().join("runtime/burrow/src/session.rs")).unwrap();
    let mut found = Vec::new();
    for (n, line) in code_lines(&session) {
        for forbidden in
            ["crate::runloop::run", "crate::runloop::LoopCtx", "crate::runloop::start", "crate::peer::drain"]
        {
            if line.contains(forbidden) {
                found.push(format!("session.rs:{}: {}", n + 1, line.trim()));
            }
        }
    }
    assert!(found.is_empty(), "the session names a task that drives it:\n{}", found.join("\n"));
    for (file, needle) in [
        ("runtime/burrow/src/runloop/mailbox.rs", "crate::session"),
        ("runtime/burrow/src/peer/mod.rs", "crate::session"),
    ] {
        let text = std::fs::read_to_string(root().join(file)).unwrap();
        assert!(code_lines(&text).all(|(_, l)| !l.contains(needle)), "{file} is a leaf: it must not name {needle}");
    }
}

#[test]
fn the_specification_stands_apart_from_the_code_it_judges() {
    // burrow-spec is written from SPEC: it may name no burrow crate and depend on nothing, so no mistake in the
    // machines can become a mistake in the oracle.
    let offences = offenders(&root().join("spec"), &["burrow_core", "burrow_model", "burrow_env", "burrow::"], &[]);
    assert!(offences.is_empty(), "the specification names the implementation: {offences:#?}");
    let manifest = std::fs::read_to_string(root().join("spec/Cargo.toml")).expect("spec/Cargo.toml");
    let dependencies = manifest.split("[dependencies]").nth(1).expect("a [dependencies] table");
    let listed = dependencies.lines().take_while(|l| !l.starts_with('[')).filter(|l| {
        let t = l.trim();
        !t.is_empty() && !t.starts_with('#')
    });
    assert_eq!(listed.count(), 0, "burrow-spec depends on nothing");
}

#[test]
fn planted_defects_stay_behind_their_feature() {
    // Only burrow-core's and the shell's planted features compile the planted defects; each defines its feature
    // empty, and only test dependencies turn one on.
    for manifest in ["tests/Cargo.toml", "ci/Cargo.toml"] {
        let text = std::fs::read_to_string(root().join(manifest)).expect("a manifest");
        assert!(!text.contains("planted"), "{manifest} enables planted defects");
    }
    for manifest in ["runtime/core/Cargo.toml", "runtime/burrow/Cargo.toml"] {
        let text = std::fs::read_to_string(root().join(manifest)).expect("a manifest");
        let mentions: Vec<&str> =
            text.lines().filter(|l| l.contains("planted") && !l.trim().starts_with('#')).collect();
        assert_eq!(mentions, ["planted = []"], "{manifest} defines its planted feature, empty, and nothing else");
    }
    for manifest in ["model/Cargo.toml", "sim/Cargo.toml"] {
        let text = std::fs::read_to_string(root().join(manifest)).expect("a manifest");
        let normal = text.split("[dev-dependencies]").next().expect("text");
        assert!(!normal.contains("planted"), "{manifest}: its normal dependencies enable planted defects");
    }
}
