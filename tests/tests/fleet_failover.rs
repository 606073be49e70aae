//! Two host processes of a fleet over one PostgreSQL database (tests/src/bin/fleet_child.rs): host 1 claims the
//! sessions and serves them, host 2 adopts the same sessions and waits. Then host 1 fails, in two ways:
//! - SIGKILL: host 2 takes every session over once host 1's lease has ended, and finishes the work;
//! - SIGSTOP past its lease, then SIGCONT: host 2 takes over while host 1 sleeps; the resumed host 1 stops driving
//!   (its calls are refused as not the owner) and any write it sends after host 2's claim is refused by the database.
//!
//! Judged from outside, by what the processes logged in one shared file and what a verifier host finds in the store:
//! every write the database accepted was made by the host that claimed that epoch; a write sent after a newer claim
//! of its session was refused; nothing acknowledged lost; nothing committed run again; every key admitted once.
//!
//! Needs `BURROW_PG_URL` (`cargo xtask test` starts a throwaway server); under `CI=true` a missing server fails.

#![cfg(not(madsim))]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use burrow_tests::child::{check_history, postgres_server};

/// The lease length of both hosts: short, so a takeover takes about a second.
const LEASE_MS: u64 = 1_000;
/// Keys per session.
const KEYS: u64 = 150;
/// Sessions in the workload.
const SESSIONS: u64 = 3;

struct Fleet {
    url: String,
    log: PathBuf,
}

impl Fleet {
    fn new(name: &str) -> Option<Fleet> {
        let server = postgres_server()?;
        let db = format!("burrow_{name}_{}", std::process::id());
        let url = burrow_env::runtime::block_on_current_thread(burrow_postgres::scratch_database(&server, &db))
            .expect("a database of its own");
        let dir = std::env::temp_dir().join(format!("burrow-fleet-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let log = dir.join("fleet.log");
        let _ = std::fs::remove_file(&log);
        Some(Fleet { url, log })
    }

    fn command(&self, mode: &str, host: u64) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_fleet_child"));
        command.env("BURROW_CRASH_KEYS", KEYS.to_string()).args([
            mode,
            &self.url,
            &host.to_string(),
            self.log.to_str().unwrap(),
            &LEASE_MS.to_string(),
        ]);
        command
    }

    fn host(&self, host: u64) -> Child {
        self.command("host", host).stdout(Stdio::null()).spawn().expect("a host starts")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits (at most 30 s) until the log shows `what`.
    fn wait_for(&self, what: &str, seen: impl Fn(&str) -> bool) {
        let started = Instant::now();
        while !seen(&self.log()) {
            assert!(started.elapsed() < Duration::from_secs(30), "waited 30 s for {what}; log:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Runs the verifier host and checks the whole history; returns what the write lines came to.
    fn verify(&self) -> Writes {
        let output = self.command("verify", 3).output().expect("the verifier runs");
        assert!(output.status.success(), "verifier failed: {}", String::from_utf8_lossy(&output.stderr));
        let log = self.log();
        let history = check_history(&log, &String::from_utf8(output.stdout).unwrap(), SESSIONS, KEYS);
        let writes = check_fencing(&log);
        println!("{history:?}; {writes:?}");
        writes
    }
}

/// Sessions `host` has claimed in `log`.
fn claimed_by(log: &str, host: u64) -> usize {
    let mut sessions: Vec<&str> =
        log.lines().filter_map(|l| l.strip_prefix(&format!("claimed {host} "))?.split(' ').next()).collect();
    sessions.sort_unstable();
    sessions.dedup();
    sessions.len()
}

fn acks_by(log: &str, host: u64) -> usize {
    log.lines().filter(|l| l.starts_with(&format!("ack {host} "))).count()
}

/// What the hosts' writes came to.
#[derive(Debug, Default)]
struct Writes {
    /// Accepted by the database.
    accepted: usize,
    /// Refused as fenced.
    fenced: usize,
    /// Sent after a newer claim of their session (each must have been refused).
    stale: usize,
    /// Claims, each a new epoch.
    claims: usize,
}

/// The fencing oracle, over the log's order (a line is appended before the process acts on what it says, or after a
/// call returned): every accepted write was made at an epoch its host claimed, and a write sent after another host's
/// claim of a newer epoch of its session was refused.
fn check_fencing(log: &str) -> Writes {
    let num = |s: &str| s.parse::<u64>().expect("a number");
    // (session, epoch) -> host that claimed it; session -> newest epoch claimed so far in log order.
    let mut owner: BTreeMap<(u64, u64), u64> = BTreeMap::new();
    let mut newest: BTreeMap<u64, u64> = BTreeMap::new();
    // (host, write number) -> (session, epoch, sent after a newer claim).
    let mut sent: BTreeMap<(u64, u64), (u64, u64, bool)> = BTreeMap::new();
    let mut writes = Writes::default();
    for line in log.lines() {
        match line.split(' ').collect::<Vec<_>>().as_slice() {
            ["claimed", host, s, epoch] => {
                let (s, epoch) = (num(s), num(epoch));
                assert!(owner.insert((s, epoch), num(host)).is_none(), "epoch {epoch} of session {s} claimed twice");
                newest.insert(s, epoch.max(newest.get(&s).copied().unwrap_or(0)));
                writes.claims += 1;
            }
            ["try", host, n, s, epoch] => {
                let (s, epoch) = (num(s), num(epoch));
                let stale = newest.get(&s).is_some_and(|newest| *newest > epoch);
                sent.insert((num(host), num(n)), (s, epoch, stale));
            }
            ["wrote", host, n] => {
                let (host, n) = (num(host), num(n));
                let (s, epoch, stale) = sent[&(host, n)];
                assert!(!stale, "host {host} wrote session {s} at epoch {epoch} after a newer epoch was claimed");
                assert_eq!(
                    owner.get(&(s, epoch)),
                    Some(&host),
                    "host {host} wrote session {s} at an epoch it never claimed"
                );
                writes.accepted += 1;
            }
            ["fenced", host, n] => {
                writes.fenced += 1;
                writes.stale += usize::from(sent[&(num(host), num(n))].2);
            }
            _ => {}
        }
    }
    writes
}

fn signal(child: &Child, name: &str) {
    let status = Command::new("kill").args([name, &child.id().to_string()]).status().expect("kill runs");
    assert!(status.success(), "kill {name}");
}

fn stop(mut child: Child) {
    child.kill().expect("SIGKILL");
    child.wait().expect("reaped");
}

/// Host 1 serving, host 2 adopting: returns both once host 1 holds every session and has acknowledged inputs.
fn two_hosts(fleet: &Fleet) -> (Child, Child) {
    let first = fleet.host(1);
    fleet.wait_for("host 1 to claim and serve", |log| claimed_by(log, 1) == SESSIONS as usize && acks_by(log, 1) >= 30);
    let second = fleet.host(2);
    fleet.wait_for("host 2 to be refused", |log| log.lines().any(|l| l.starts_with("moved 2 ")));
    (first, second)
}

#[test]
fn a_killed_owner_is_taken_over_and_nothing_is_lost_or_run_twice() {
    let Some(fleet) = Fleet::new("kill") else { return };
    let (first, second) = two_hosts(&fleet);
    let killed = Instant::now();
    stop(first);
    fleet.wait_for("host 2 to take every session over", |log| claimed_by(log, 2) == SESSIONS as usize);
    let took = killed.elapsed();
    assert!(took < Duration::from_millis(LEASE_MS + 2_000), "taken over {took:?} after the kill");
    fleet.wait_for("host 2 to finish the work", |log| log.lines().any(|l| l == "done 2"));
    stop(second);
    let writes = fleet.verify();
    assert!(writes.accepted > 0 && writes.claims >= 2 * SESSIONS as usize, "{writes:?}");
}

#[test]
fn a_paused_owner_resumes_to_find_its_sessions_moved_and_its_writes_refused() {
    let Some(fleet) = Fleet::new("pause") else { return };
    let (first, second) = two_hosts(&fleet);
    signal(&first, "-STOP");
    fleet.wait_for("host 2 to take every session over", |log| claimed_by(log, 2) == SESSIONS as usize);
    signal(&first, "-CONT");
    // The resumed host finds out: its own deadline has passed, or a write is fenced, or a renewal is refused; its
    // workload is then told, for every session, that it is not the owner.
    fleet.wait_for("host 1 to be told it lost every session", |log| {
        (1..=SESSIONS).all(|s| log.lines().any(|l| l == format!("moved 1 {s}")))
    });
    fleet.wait_for("host 2 to finish the work", |log| log.lines().any(|l| l == "done 2"));
    // Host 1 is alive and running: nothing it does from here on may land.
    std::thread::sleep(Duration::from_millis(300));
    stop(first);
    stop(second);
    let writes = fleet.verify();
    assert!(writes.accepted > 0, "{writes:?}");
}

/// The fencing oracle catches what a store that does not check the writer's epoch lets through: the paused host's
/// write, sent after the other host's claim, lands. Also a write at an epoch its host never claimed.
#[test]
fn the_fencing_oracle_catches_a_stale_write_that_landed() {
    let fenced =
        "claimed 1 7 1\ntry 1 0 7 1\nwrote 1 0\nclaimed 2 7 2\ntry 1 1 7 1\nfenced 1 1\ntry 2 0 7 2\nwrote 2 0\n";
    let writes = check_fencing(fenced);
    assert_eq!((writes.accepted, writes.fenced, writes.stale, writes.claims), (2, 1, 1, 2));
    let landed = fenced.replace("fenced 1 1", "wrote 1 1");
    let caught = std::panic::catch_unwind(|| check_fencing(&landed)).expect_err("a stale write that landed");
    let message = caught.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(message.contains("after a newer epoch was claimed"), "{message}");
    let unclaimed = "claimed 1 7 1\ntry 2 0 7 1\nwrote 2 0\n";
    assert!(std::panic::catch_unwind(|| check_fencing(unclaimed)).is_err(), "a write by a host that never claimed");
}
