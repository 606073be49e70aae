//! Real crashes: a child process runs a workload on a store and is killed with SIGKILL at random moments, again and
//! again; then a last child recovers and drains. Checked against what the children logged: no acknowledged durable
//! input lost, none applied again after its receipt was committed, every key admitted once, every waiter of the
//! living process resolved. Over a SQLite file, and over a PostgreSQL database (`BURROW_PG_URL`; `cargo xtask test`
//! starts a throwaway server, and under `CI=true` a missing one fails).
//!
//! 50 kills by default (20 over PostgreSQL, whose children take longer to start); `BURROW_CRASH_KILLS=1000` runs
//! more. The children keep 16 ended inputs in memory, so every retry of an older key is deduplicated by the store's
//! answer (specs/input.md#recall).

#![cfg(not(madsim))]

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use burrow_env::rand::SeededRng;
use burrow_tests::child::{check_history, postgres_server};

fn child() -> Command {
    Command::new(env!("CARGO_BIN_EXE_crash_child"))
}

/// A scratch folder and log file for one test.
fn scratch(name: &str) -> (PathBuf, PathBuf) {
    let dir = std::env::temp_dir().join(format!("burrow-crash-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let log = dir.join("crash.log");
    let _ = std::fs::remove_file(&log);
    (dir, log)
}

/// Kills `kills` workers on `db`, each after a random 5 ms to `5 + spread` ms (plus `start` ms for it to start), then
/// verifies.
fn crash_and_verify(db: &str, log: &PathBuf, kills: u64, start: u64, spread: u64) {
    // Enough work that the kills keep landing on a busy process.
    let keys = (kills * 6).clamp(60, 3000);
    let mut rng =
        SeededRng::from_seed(std::env::var("BURROW_CRASH_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or(7));
    for round in 0..kills {
        let mut process = child()
            .env("BURROW_CRASH_KEYS", keys.to_string())
            .args(["work", db, log.to_str().unwrap(), &round.to_string()])
            .stdout(Stdio::null())
            .spawn()
            .expect("the child starts");
        std::thread::sleep(Duration::from_millis(start + 5 + rng.gen_range(0..spread)));
        process.kill().expect("SIGKILL");
        process.wait().expect("reaped");
    }
    let output = child()
        .env("BURROW_CRASH_KEYS", keys.to_string())
        .args(["verify", db, log.to_str().unwrap(), "0"])
        .output()
        .expect("the verifier runs");
    assert!(output.status.success(), "verifier failed: {}", String::from_utf8_lossy(&output.stderr));
    let history =
        check_history(&std::fs::read_to_string(log).unwrap(), &String::from_utf8(output.stdout).unwrap(), 3, keys);
    println!("{kills} kills: {history:?}");
}

fn kills(default: u64) -> u64 {
    std::env::var("BURROW_CRASH_KILLS").ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

#[test]
fn sigkill_loses_nothing_and_reruns_nothing() {
    let (dir, log) = scratch("sqlite");
    let db = dir.join("crash.db");
    let _ = std::fs::remove_file(&db);
    crash_and_verify(db.to_str().unwrap(), &log, kills(50), 0, 120);
}

#[test]
fn sigkill_over_postgres_loses_nothing_and_reruns_nothing() {
    let Some(server) = postgres_server() else { return };
    let name = format!("burrow_crash_{}", std::process::id());
    let db = burrow_env::runtime::block_on_current_thread(burrow_postgres::scratch_database(&server, &name))
        .expect("a database of its own");
    let (_, log) = scratch("postgres");
    // A child connects and migrates before it works: the kills land after that, on a busy process.
    crash_and_verify(&db, &log, kills(20), 60, 200);
}
