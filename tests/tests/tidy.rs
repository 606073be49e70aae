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
        found.extend(offenders(&root().join(dir), &RESULT_EVENTS, &[]));
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
