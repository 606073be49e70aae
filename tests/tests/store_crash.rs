//! Real crashes: a child process runs a workload on a SQLite file and is killed with SIGKILL at random moments,
//! again and again; then a last child recovers and drains. Checked against what the children logged: no
//! acknowledged durable input lost, none applied again after its receipt was committed, every key admitted once,
//! every waiter of the living process resolved.
//!
//! 50 kills by default; `BURROW_CRASH_KILLS=1000` runs more. The children keep 16 ended inputs in memory, so every retry
//! of an older key is deduplicated by the store's answer (specs/input.md#recall).

#![cfg(not(madsim))]

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use burrow_env::rand::SeededRng;

fn child() -> Command {
    Command::new(env!("CARGO_BIN_EXE_crash_child"))
}

#[test]
fn sigkill_loses_nothing_and_reruns_nothing() {
    let kills: u64 = std::env::var("BURROW_CRASH_KILLS").ok().and_then(|v| v.parse().ok()).unwrap_or(50);
    let dir = std::env::temp_dir().join(format!("burrow-crash-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let db: PathBuf = dir.join("crash.db");
    let log: PathBuf = dir.join("crash.log");
    for path in [&db, &log] {
        let _ = std::fs::remove_file(path);
    }
    // Enough work that the kills keep landing on a busy process.
    let keys = (kills * 6).clamp(60, 3000);
    let mut rng =
        SeededRng::from_seed(std::env::var("BURROW_CRASH_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or(7));
    for round in 0..kills {
        let mut process = child()
            .env("BURROW_CRASH_KEYS", keys.to_string())
            .args(["work", db.to_str().unwrap(), log.to_str().unwrap(), &round.to_string()])
            .stdout(Stdio::null())
            .spawn()
            .expect("the child starts");
        std::thread::sleep(Duration::from_millis(5 + rng.gen_range(0..120)));
        process.kill().expect("SIGKILL");
        process.wait().expect("reaped");
    }
    let output = child()
        .env("BURROW_CRASH_KEYS", keys.to_string())
        .args(["verify", db.to_str().unwrap(), log.to_str().unwrap(), "0"])
        .output()
        .expect("the verifier runs");
    assert!(output.status.success(), "verifier failed: {}", String::from_utf8_lossy(&output.stderr));
    let stdout = String::from_utf8(output.stdout).unwrap();
    let log_text = std::fs::read_to_string(&log).unwrap();

    let mut acked: BTreeSet<(u64, u64)> = BTreeSet::new();
    let mut applies: Vec<(u64, u64, Vec<u64>)> = Vec::new();
    for line in log_text.lines() {
        let parts: Vec<&str> = line.split(' ').collect();
        match parts.as_slice() {
            ["ack", s, _key, id] => {
                acked.insert((s.parse().unwrap(), id.parse().unwrap()));
            }
            ["apply", s, run, ids] => {
                applies.push((
                    s.parse().unwrap(),
                    run.parse().unwrap(),
                    ids.split(',').map(|i| i.parse().unwrap()).collect(),
                ));
            }
            _ => {}
        }
    }
    let mut rows: BTreeMap<(u64, u64), (String, String)> = BTreeMap::new();
    let mut receipts: Vec<(u64, u64, Vec<u64>)> = Vec::new();
    let mut waiters = (0, 0);
    for line in stdout.lines() {
        // The state label is last and may contain spaces.
        let parts: Vec<&str> = line.splitn(5, ' ').collect();
        match parts.as_slice() {
            ["input", s, id, key, state] => {
                rows.insert((s.parse().unwrap(), id.parse().unwrap()), (key.to_string(), state.to_string()));
            }
            ["receipt", s, run, ids] => {
                receipts.push((
                    s.parse().unwrap(),
                    run.parse().unwrap(),
                    ids.split(',').map(|i| i.parse().unwrap()).collect(),
                ));
            }
            ["waiters", resolved, total] => waiters = (resolved.parse().unwrap(), total.parse().unwrap()),
            _ => {}
        }
    }
    assert!(!acked.is_empty(), "the workload made progress before the kills");

    // No acknowledged durable input lost.
    for (s, id) in &acked {
        assert!(rows.contains_key(&(*s, *id)), "acknowledged input {id} of session {s} is gone");
    }
    // None applied again after its receipt was committed (run ids grow, across restarts too).
    for (s, run, ids) in &receipts {
        for (s2, run2, ids2) in &applies {
            if s2 == s && run2 > run {
                for id in ids {
                    assert!(
                        !ids2.contains(id),
                        "input {id} of session {s} committed in run {run}, applied again in {run2}"
                    );
                }
            }
        }
    }
    // Dedup held across every restart: one input per key per session.
    let mut per_key: BTreeMap<(u64, String), usize> = BTreeMap::new();
    for ((s, _), (key, _)) in &rows {
        *per_key.entry((*s, key.clone())).or_default() += 1;
    }
    assert!(per_key.values().all(|n| *n == 1), "a key was admitted twice: {per_key:?}");
    assert_eq!(per_key.len() as u64, 3 * (keys + 20), "every key admitted, the verifier's 20 fresh ones too");
    assert!(waiters.1 >= 3 * 20, "the verifier waited on its fresh keys at least");
    // Every waiter of the living process resolved, and the healthy executor drained everything. An input whose
    // runs were cut short by kills max_attempts times is abandoned: a crash mid-run counts as an attempt, so a
    // poison input cannot spin forever.
    assert_eq!(waiters.0, waiters.1, "waiters resolved / total");
    let exhausted = rows.values().filter(|(_, state)| state.starts_with("Abandoned(max")).count();
    let unfinished: Vec<_> =
        rows.iter().filter(|(_, (_, state))| state != "Consumed" && !state.starts_with("Abandoned(max")).collect();
    assert!(unfinished.is_empty(), "neither consumed nor out of attempts after the drain: {unfinished:?}");
    println!(
        "{kills} kills: {} acknowledged inputs, {} runs started, {} receipts, {} out of attempts, {} waiters in the \
         verifier",
        acked.len(),
        applies.len(),
        receipts.len(),
        exhausted,
        waiters.1
    );
}
