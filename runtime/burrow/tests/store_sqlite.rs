//! The SQLite store's own concerns: migrations, the key index, and damaged databases, which must yield typed errors
//! naming what is wrong, never a panic, and never delete anything.

use std::path::PathBuf;

use burrow::store::{SCHEMA_VERSION, SimStoreConfig};
use burrow::{Input, Runtime, RuntimeError, SessionId, SimStore, SqliteStore, Store, StoreError, SyncMode};
use burrow_core::ids::{EpochId, InputId, Millis};
use burrow_core::input::{InputKind, InputRecord, InputSpec, InputState};
use burrow_env::time::Duration;

fn temp_db(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("burrow-sqlite-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join(format!("{name}.db"));
    let _ = std::fs::remove_file(&path);
    path
}

fn raw(path: &PathBuf, sql: &str) {
    let conn = rusqlite::Connection::open(path).expect("raw open");
    conn.execute_batch(sql).expect("raw sql");
}

fn row(id: u64) -> InputRecord {
    InputRecord {
        id: InputId(id),
        spec: InputSpec::new(InputKind::Prompt).idempotency_key("k"),
        state: InputState::Queued,
        attempts: 0,
        accepted_at: Millis(0),
    }
}

const S: SessionId = SessionId(1);
/// The epoch the writes name: these sessions are never claimed, so any epoch lands.
const E: EpochId = EpochId(0);

/// A lifecycle commit of an idle, unregistered session carrying `inputs`.
fn idle_commit(inputs: Vec<InputRecord>) -> burrow::store::LifecycleCommit {
    burrow::store::LifecycleCommit {
        lifecycle: burrow_core::session::PersistedLifecycle {
            phase: burrow_core::phase::RuntimePhase::Idle,
            registration: burrow_core::registration::RegistrationPhase::Unregistered,
            binding: None,
            marks: burrow_core::session::IdMarks::default(),
        },
        inputs,
    }
}

#[burrow_env::test]
async fn a_new_file_gets_the_current_schema_and_reopens() {
    let path = temp_db("fresh");
    drop(SqliteStore::open(&path).unwrap());
    let conn = rusqlite::Connection::open(&path).unwrap();
    let version: String =
        conn.query_row("SELECT value FROM meta WHERE key = 'schema_version'", [], |r| r.get(0)).unwrap();
    assert_eq!(version, SCHEMA_VERSION.to_string());
    let mode: String = conn.query_row("PRAGMA journal_mode", [], |r| r.get(0)).unwrap();
    assert_eq!(mode, "wal");
    drop(conn);
    SqliteStore::open(&path).expect("reopening an up-to-date file is a no-op migration");
}

/// A file as version 1 of the schema wrote it: an input row's state lives in its record.
const VERSION_1: &str = "
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE sessions (session INTEGER PRIMARY KEY, lifecycle TEXT, operations TEXT, snapshot BLOB);
    CREATE TABLE inputs (
        session INTEGER NOT NULL, id INTEGER NOT NULL, idempotency_key TEXT, record TEXT NOT NULL,
        payload TEXT NOT NULL, PRIMARY KEY (session, id)
    );
    CREATE INDEX inputs_by_key ON inputs (session, idempotency_key) WHERE idempotency_key IS NOT NULL;
    CREATE TABLE receipts (
        session INTEGER NOT NULL, run INTEGER NOT NULL, sequence INTEGER NOT NULL, receipt TEXT NOT NULL,
        PRIMARY KEY (session, run)
    );
    CREATE INDEX receipts_by_sequence ON receipts (session, sequence);
    INSERT INTO meta (key, value) VALUES ('schema_version', '1');
";

#[burrow_env::test]
async fn a_version_1_file_is_migrated_and_its_rows_read_as_written() {
    let path = temp_db("version-1");
    raw(&path, VERSION_1);
    let mut staged = row(1);
    (staged.state, staged.attempts) = (InputState::Staged { run: burrow_core::ids::RunId(4) }, 2);
    let record = serde_json::to_string(&staged).unwrap();
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute(
        "INSERT INTO inputs (session, id, idempotency_key, record, payload) VALUES (1, 1, 'k', ?1, 'p')",
        [&record],
    )
    .unwrap();
    drop(conn);
    let store = SqliteStore::open(&path).unwrap();
    let image = store.load(S).await.unwrap().unwrap();
    assert_eq!(image.inputs[0].record, staged, "a version 1 row's state is its record's");
    // A later commit writes the state columns only; the row reads back with them.
    let mut consumed = staged.clone();
    consumed.state = InputState::Consumed;
    let commit = idle_commit(vec![consumed.clone()]);
    store.commit_lifecycle(S, E, &commit).await.unwrap();
    assert_eq!(store.load(S).await.unwrap().unwrap().inputs[0].record, consumed);
    assert_eq!(store.input_by_key(S, "k").await.unwrap(), Some(consumed));
    drop(store);
    let conn = rusqlite::Connection::open(&path).unwrap();
    let version: String =
        conn.query_row("SELECT value FROM meta WHERE key = 'schema_version'", [], |r| r.get(0)).unwrap();
    assert_eq!(version, SCHEMA_VERSION.to_string());
    // A state column without its attempts cannot be written by the store: it is a typed error naming the row.
    conn.execute("UPDATE inputs SET attempts = NULL", []).unwrap();
    drop(conn);
    let err = SqliteStore::open(&path).unwrap().load(S).await.unwrap_err();
    assert!(matches!(&err, StoreError::Corrupt { row, .. } if row == "inputs(session=1, id=1)"), "{err:?}");
}

#[burrow_env::test]
async fn a_newer_schema_version_is_refused_and_left_alone() {
    let path = temp_db("newer");
    drop(SqliteStore::open(&path).unwrap());
    raw(&path, "UPDATE meta SET value = '99' WHERE key = 'schema_version'");
    let err = SqliteStore::open(&path).unwrap_err();
    assert_eq!(err, StoreError::UnsupportedSchema { found: "99".into(), supported: SCHEMA_VERSION });
    let conn = rusqlite::Connection::open(&path).unwrap();
    let version: String =
        conn.query_row("SELECT value FROM meta WHERE key = 'schema_version'", [], |r| r.get(0)).unwrap();
    assert_eq!(version, "99", "nothing was migrated or deleted");
}

#[burrow_env::test]
async fn a_garbage_row_is_a_typed_error_naming_the_row_and_stays() {
    let path = temp_db("garbage");
    let store = SqliteStore::open(&path).unwrap();
    store.persist_input(S, E, &row(1), "p").await.unwrap();
    store.persist_input(S, E, &row(2), "p").await.unwrap();
    assert_eq!(store.sessions().await.unwrap(), vec![S], "a read folds the log into the tables");
    raw(&path, "UPDATE inputs SET record = '{not json' WHERE id = 2");
    let err = store.load(S).await.unwrap_err();
    let StoreError::Corrupt { row, .. } = &err else { panic!("{err:?}") };
    assert_eq!(row, "inputs(session=1, id=2)");
    let runtime = Runtime::with_store(std::sync::Arc::new(SqliteStore::open(&path).unwrap()));
    let err = runtime.prepare(S).await.unwrap_err();
    assert!(matches!(err, RuntimeError::Store { error: StoreError::Corrupt { .. }, .. }), "{err:?}");
    let conn = rusqlite::Connection::open(&path).unwrap();
    let count: i64 = conn.query_row("SELECT count(*) FROM inputs", [], |r| r.get(0)).unwrap();
    assert_eq!(count, 2, "nothing is deleted to get past a bad row");
}

#[burrow_env::test]
async fn a_row_in_an_impossible_state_is_a_typed_error() {
    let path = temp_db("impossible");
    let store = SqliteStore::open(&path).unwrap();
    let mut staged = row(1);
    staged.state = InputState::Staged { run: burrow_core::ids::RunId(3) };
    staged.attempts = 0;
    store.persist_input(S, E, &staged, "p").await.unwrap();
    let err = store.load(S).await.unwrap_err();
    assert!(
        matches!(&err, StoreError::Corrupt { row, message } if row == "inputs(session=1, id=1)" && message.contains("impossible")),
        "{err:?}"
    );
}

#[burrow_env::test]
async fn a_row_naming_another_input_is_a_typed_error() {
    let path = temp_db("mismatch");
    let store = SqliteStore::open(&path).unwrap();
    store.persist_input(S, E, &row(1), "p").await.unwrap();
    assert_eq!(store.sessions().await.unwrap(), vec![S], "a read folds the log into the tables");
    raw(&path, "UPDATE inputs SET id = 5 WHERE id = 1");
    let err = store.load(S).await.unwrap_err();
    assert!(matches!(&err, StoreError::Corrupt { row, .. } if row == "inputs(session=1, id=5)"), "{err:?}");
}

#[burrow_env::test]
async fn a_truncated_file_is_a_typed_error_and_is_not_deleted() {
    let path = temp_db("truncated");
    let store = SqliteStore::open(&path).unwrap();
    for id in 1..=50 {
        store.persist_input(S, E, &row(id), &"x".repeat(500)).await.unwrap();
    }
    drop(store);
    // Fold the WAL into the main file, then cut the file in half.
    raw(&path, "PRAGMA wal_checkpoint(TRUNCATE);");
    let len = std::fs::metadata(&path).unwrap().len();
    let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    file.set_len(len / 2).unwrap();
    drop(file);
    // SQLite may notice at open or only when it reads the missing pages.
    let err = match SqliteStore::open(&path) {
        Err(err) => err,
        Ok(store) => store.load(S).await.unwrap_err(),
    };
    assert!(matches!(err, StoreError::Corrupt { .. } | StoreError::Unavailable { .. }), "{err:?}");
    assert_eq!(std::fs::metadata(&path).unwrap().len(), len / 2, "the damaged file is left as it was");
}

#[burrow_env::test]
async fn a_file_that_is_not_a_database_is_a_typed_error() {
    let path = temp_db("notadb");
    std::fs::write(&path, b"this is not a database, just some bytes that are long enough to look like a header....")
        .unwrap();
    let err = SqliteStore::open(&path).unwrap_err();
    assert!(matches!(&err, StoreError::Corrupt { row, .. } if row == "database file"), "{err:?}");
    assert!(std::fs::read(&path).unwrap().starts_with(b"this is not a database"));
}

#[burrow_env::test]
async fn the_sim_store_loses_writes_still_in_flight_at_a_crash() {
    let store = SimStore::new(SimStoreConfig { latency: Duration::from_millis(10), ..SimStoreConfig::default() });
    let landed = store.persist_input(S, E, &row(1), "p").await;
    assert!(landed.is_ok());
    let in_flight = {
        let store = store.clone();
        burrow_env::task::spawn(async move { store.persist_input(S, E, &row(2), "p").await })
    };
    burrow_env::time::sleep(Duration::from_millis(2)).await;
    store.crash();
    assert!(in_flight.await.unwrap().is_err(), "the writer learns its write did not land");
    let image = store.load(S).await.unwrap().unwrap();
    assert_eq!(image.inputs.len(), 1);
    assert_eq!(store.counters(), (2, 0, 1));
}

#[burrow_env::test]
async fn the_sqlite_store_syncs_fully_by_default_and_concurrent_commits_share_a_sync() {
    let path = temp_db("group");
    let store = std::sync::Arc::new(SqliteStore::open(&path).unwrap());
    assert_eq!(store.sync_mode().await.unwrap(), SyncMode::Full, "durable against a power cut unless asked otherwise");
    let writes: Vec<_> = (1..=200)
        .map(|session| {
            let store = store.clone();
            burrow_env::task::spawn(async move { store.persist_input(SessionId(session), E, &row(1), "p").await })
        })
        .collect();
    for write in writes {
        assert_eq!(write.await.unwrap(), Ok(()));
    }
    let stats = store.writer_stats();
    assert_eq!((stats.commits, stats.failed), (200, 0));
    // Under madsim each commit is a batch of its own; a writer thread takes what waits together.
    if !burrow_env::runtime::SIMULATED {
        assert!(stats.syncs < 200 && stats.batch_max > 1, "concurrent commits shared syncs: {stats:?}");
    }
    // A failing commit inside a batch fails alone: an update of a row that was never written.
    let unknown = idle_commit(vec![row(99)]);
    let err = store.commit_lifecycle(S, E, &unknown).await.unwrap_err();
    assert!(matches!(err, StoreError::UnknownInput { input: InputId(99), .. }), "{err:?}");
    assert!(store.load(S).await.unwrap().unwrap().lifecycle.is_none(), "nothing of the failed commit landed");
    drop(store);
    let reopened = SqliteStore::open(&path).unwrap();
    assert_eq!(reopened.sessions().await.unwrap().len(), 200, "every acknowledged write is in the file");
}

/// specs/lease.md: a write is fenced when it lands, not when it is made. A paused owner's write that was on its way
/// when another host claimed the session is refused at its sync, and the rest of its batch still lands.
#[burrow_env::test]
async fn the_sim_store_fences_a_slow_write_that_lands_after_another_host_claimed() {
    use burrow::HostId;
    let store = SimStore::new(SimStoreConfig { latency: Duration::from_millis(10), ..SimStoreConfig::default() });
    let other = SessionId(2);
    let held = store.claim_lease(S, HostId(1), 5).await.unwrap();
    let slow = {
        let store = store.clone();
        burrow_env::task::spawn(async move { store.persist_input(S, held.epoch, &row(1), "slow").await })
    };
    let beside = {
        let store = store.clone();
        burrow_env::task::spawn(async move { store.persist_input(other, E, &row(1), "beside").await })
    };
    burrow_env::time::sleep(Duration::from_millis(7)).await;
    let taken = store.claim_lease(S, HostId(2), 60_000).await.expect("the lease ended: another host claims it");
    let refused = slow.await.unwrap().unwrap_err();
    assert!(matches!(refused, StoreError::Fenced(f) if f.owner == Some(HostId(2)) && f.current == taken.epoch));
    assert!(beside.await.unwrap().is_ok(), "the rest of the batch lands");
    assert!(store.load(S).await.unwrap().is_none(), "nothing of the stale write is kept");
}

#[burrow_env::test]
async fn the_sim_store_syncs_writes_in_batches_and_a_crash_loses_exactly_the_unsynced_one() {
    let store = SimStore::new(SimStoreConfig { latency: Duration::from_millis(10), ..SimStoreConfig::default() });
    let spawn_write = |id: u64| {
        let store = store.clone();
        burrow_env::task::spawn(async move { store.persist_input(S, E, &row(id), "p").await })
    };
    // Three writes within one latency share one sync.
    let first: Vec<_> = (1..=3).map(spawn_write).collect();
    burrow_env::time::sleep(Duration::from_millis(4)).await;
    let more = spawn_write(4);
    for write in first {
        assert!(write.await.unwrap().is_ok());
    }
    assert!(more.await.unwrap().is_ok());
    assert_eq!(store.syncs(), 1, "four writes, one batch");
    // A batch that has not synced when the process dies is lost whole; the batch before it is kept.
    let synced = spawn_write(5);
    assert!(synced.await.unwrap().is_ok());
    let doomed: Vec<_> = (6..=8).map(spawn_write).collect();
    burrow_env::time::sleep(Duration::from_millis(3)).await;
    store.crash();
    for write in doomed {
        assert!(write.await.unwrap().is_err(), "a write of the lost batch is told so");
    }
    let image = store.reopen().load(S).await.unwrap().unwrap();
    assert_eq!(image.inputs.iter().map(|i| i.record.id.0).collect::<Vec<_>>(), vec![1, 2, 3, 4, 5]);
    assert_eq!((store.syncs(), store.counters()), (2, (8, 0, 3)));
}

#[burrow_env::test]
async fn the_sim_store_fails_a_batch_whole() {
    let store = SimStore::new(SimStoreConfig { seed: 3, write_failure: 1.0, latency: Duration::from_millis(5) });
    let writes: Vec<_> = (1..=4)
        .map(|id| {
            let store = store.clone();
            burrow_env::task::spawn(async move { store.persist_input(S, E, &row(id), "p").await })
        })
        .collect();
    for write in writes {
        assert!(write.await.unwrap().is_err());
    }
    assert_eq!((store.syncs(), store.counters()), (0, (4, 4, 0)));
    assert!(store.load(S).await.unwrap().is_none(), "nothing of a failed batch landed");
    // Turning faults off spares a batch that drew a failure and has not synced yet.
    let spared = {
        let store = store.clone();
        burrow_env::task::spawn(async move { store.persist_input(S, E, &row(5), "p").await })
    };
    burrow_env::time::sleep(Duration::from_millis(1)).await;
    store.set_write_failure(0.0);
    assert_eq!(spared.await.unwrap(), Ok(()));
    assert_eq!(store.syncs(), 1);
}

#[burrow_env::test]
async fn the_sim_stores_failures_replay_from_the_seed() {
    let draws = |seed| async move {
        let store = SimStore::new(SimStoreConfig { seed, write_failure: 0.5, ..SimStoreConfig::default() });
        let mut failed = Vec::new();
        for id in 1..=32 {
            failed.push(store.persist_input(S, E, &row(id), "p").await.is_err());
        }
        failed
    };
    assert_eq!(draws(7).await, draws(7).await);
    assert_ne!(draws(7).await, draws(8).await);
    let runtime = Runtime::with_store(std::sync::Arc::new(SimStore::new(SimStoreConfig {
        seed: 1,
        write_failure: 1.0,
        ..SimStoreConfig::default()
    })));
    assert!(runtime.prepare(S).await.is_ok(), "prepare's lifecycle write failing fail-stops, it does not panic");
    assert!(runtime.accept_input(S, Input::prompt("x")).await.is_err());
}

/// Rows of `table` in the file, read through a connection of its own.
fn count(path: &PathBuf, table: &str) -> i64 {
    let conn = rusqlite::Connection::open(path).expect("raw open");
    conn.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0)).expect("a count")
}

/// A run's start and its boundary over inputs 1..=3: input 2 staged, then consumed by run 1.
async fn three_inputs_and_a_run(store: &SqliteStore) {
    for id in 1..=3 {
        store.persist_input(S, E, &row(id), &format!("p{id}")).await.unwrap();
    }
    let mut staged = row(2);
    (staged.state, staged.attempts) = (InputState::Staged { run: burrow_core::ids::RunId(1) }, 1);
    store.commit_lifecycle(S, E, &idle_commit(vec![staged])).await.unwrap();
    let mut consumed = row(2);
    (consumed.state, consumed.attempts) = (InputState::Consumed, 1);
    let receipt = burrow_core::session::BoundaryReceipt {
        run: burrow_core::ids::RunId(1),
        boundary: 1,
        contributors: vec![InputId(2)],
        sequence: 1,
    };
    let commit = burrow::store::BoundaryCommit { receipt, inputs: vec![consumed], snapshot: Some(vec![7]) };
    store.commit_boundary(S, E, &commit).await.unwrap();
}

/// What a store reads back after [`three_inputs_and_a_run`].
async fn assert_three_inputs_and_a_run(store: &SqliteStore) {
    let image = store.load(S).await.unwrap().expect("stored");
    let states: Vec<_> =
        image.inputs.iter().map(|i| (i.record.id.0, i.record.state.label(), i.record.attempts)).collect();
    assert_eq!(states, vec![(1, "Queued".into(), 0), (2, "Consumed".into(), 1), (3, "Queued".into(), 0)]);
    assert_eq!(image.payload(InputId(3)), Some("p3"));
    assert_eq!(image.receipts.len(), 1);
    assert_eq!(image.snapshot, Some(vec![7]));
    assert!(image.lifecycle.is_some());
}

/// Each batch is one row of the log until the writer folds the log into the tables: once it holds
/// `FOLD_BYTES_MAX` bytes (or `FOLD_COMMITS_MAX` commits), before a read, and when the store closes.
#[burrow_env::test]
async fn the_log_is_folded_into_the_tables_when_full_on_a_read_and_on_close() {
    let path = temp_db("fold");
    let store = SqliteStore::open(&path).unwrap();
    let big = "x".repeat(1 << 20);
    let mut id = 0;
    while count(&path, "log") == id {
        assert_eq!(count(&path, "inputs"), 0, "input {id}: still in the log");
        id += 1;
        store.persist_input(S, E, &row(id as u64), &big).await.unwrap();
        // The fold follows the acknowledgement; a read that does not fold waits for it.
        store.sync_mode().await.unwrap();
    }
    assert_eq!(id as usize, burrow::store::FOLD_BYTES_MAX / big.len(), "folded once the log held its bound");
    assert_eq!((count(&path, "log"), count(&path, "inputs")), (0, id));
    assert_eq!(store.writer_stats().syncs, id as u64 + 1, "one sync per batch, and the fold's own");

    store.persist_input(S, E, &row(id as u64 + 1), "small").await.unwrap();
    assert_eq!(count(&path, "log"), 1);
    assert_eq!(store.load(S).await.unwrap().expect("stored").inputs.len() as i64, id + 1, "a read sees the log");
    assert_eq!(count(&path, "log"), 0, "the read folded it first");

    store.persist_input(S, E, &row(id as u64 + 2), "small").await.unwrap();
    assert_eq!(count(&path, "log"), 1);
    drop(store);
    assert_eq!((count(&path, "log"), count(&path, "inputs")), (0, id + 2), "closing folds it");
}

/// A process that stops without folding (killed) leaves its log in the file; the next open folds it, and every
/// acknowledged write reads back.
#[burrow_env::test]
async fn a_log_left_by_a_killed_process_is_folded_when_the_file_is_opened() {
    let path = temp_db("killed");
    let store = SqliteStore::open(&path).unwrap();
    three_inputs_and_a_run(&store).await;
    assert_eq!((count(&path, "log"), count(&path, "inputs")), (5, 0), "one log row per batch, nothing folded");
    // No close: the writer never gets to fold, as when the process is killed.
    std::mem::forget(store);
    let reopened = SqliteStore::open(&path).unwrap();
    assert_eq!((count(&path, "log"), count(&path, "inputs"), count(&path, "receipts")), (0, 3, 1));
    assert_three_inputs_and_a_run(&reopened).await;
}

/// Two stores on one file (two hosts sharing it, or a reopen while the first is alive) each see what the other
/// committed, whichever of them folded it: a store that finds another connection wrote the file reads the log again
/// instead of trusting what it kept.
#[burrow_env::test]
async fn two_stores_on_one_file_see_each_others_logs() {
    let path = temp_db("two");
    let first = SqliteStore::open(&path).unwrap();
    first.persist_input(S, E, &row(1), "a").await.unwrap();
    let second = SqliteStore::open(&path).unwrap();
    assert_eq!(count(&path, "log"), 0, "opening folded the first store's log");
    second.persist_input(S, E, &row(2), "b").await.unwrap();
    assert_eq!(count(&path, "log"), 1, "the second store's input is in the log only");
    // The first store must find input 2 (in the other's log) and must not fold input 1 again (folded by the other).
    let mut staged = vec![row(1), row(2)];
    for input in &mut staged {
        (input.state, input.attempts) = (InputState::Staged { run: burrow_core::ids::RunId(1) }, 1);
    }
    first.commit_lifecycle(S, E, &idle_commit(staged)).await.unwrap();
    for store in [&first, &second] {
        let image = store.load(S).await.unwrap().expect("stored");
        let states: Vec<_> = image.inputs.iter().map(|i| (i.record.id.0, i.record.state.label())).collect();
        assert_eq!(states, vec![(1, "Staged(r1)".into()), (2, "Staged(r1)".into())]);
    }
    let err = second.persist_input(S, E, &row(1), "again").await.unwrap_err();
    assert!(matches!(&err, StoreError::Unavailable { message } if message.contains("already stored")), "{err:?}");
}

/// A damaged log row is a typed error naming it when the file is opened, and it stays in the file.
#[burrow_env::test]
async fn a_damaged_log_row_is_a_typed_error_naming_it_and_stays() {
    let path = temp_db("damaged-log");
    let store = SqliteStore::open(&path).unwrap();
    store.persist_input(S, E, &row(1), "p").await.unwrap();
    std::mem::forget(store);
    raw(&path, "UPDATE log SET body = substr(body, 1, 20)");
    let err = SqliteStore::open(&path).unwrap_err();
    assert!(
        matches!(&err, StoreError::Corrupt { row, message } if row == "log(seq=1)" && message.contains("cut short")),
        "{err:?}"
    );
    raw(&path, "UPDATE log SET body = x'09'");
    let err = SqliteStore::open(&path).unwrap_err();
    assert!(matches!(&err, StoreError::Corrupt { row, .. } if row == "log(seq=1)"), "{err:?}");
    raw(&path, "UPDATE log SET body = 'text'");
    let err = SqliteStore::open(&path).unwrap_err();
    assert!(
        matches!(&err, StoreError::Corrupt { row, message } if row == "log(seq=1)" && message.contains("not bytes")),
        "{err:?}"
    );
    assert_eq!(count(&path, "log"), 1, "nothing is deleted to get past a bad row");
}

/// A fold that fails (here the file refuses new input rows) loses nothing: batches still land in the log until it
/// holds twice the fold's bound, then each write fails with the fold's error, as does a read; once the cause is gone
/// the next write folds everything, and every acknowledged input reads back.
#[burrow_env::test]
async fn a_failing_fold_stops_writes_at_its_bound_and_loses_nothing() {
    let path = temp_db("fold-fails");
    let store = SqliteStore::open(&path).unwrap();
    raw(&path, "CREATE TRIGGER no_room BEFORE INSERT ON inputs BEGIN SELECT RAISE(ABORT, 'no room'); END;");
    let big = "x".repeat(1 << 20);
    let bound = 2 * burrow::store::FOLD_BYTES_MAX / big.len();
    let mut acknowledged = 0;
    let refused = loop {
        match store.persist_input(S, E, &row(acknowledged + 1), &big).await {
            Ok(()) => acknowledged += 1,
            Err(error) => break error,
        }
        assert!(acknowledged as usize <= bound, "the log in memory grew past its bound");
    };
    assert_eq!(acknowledged as usize, bound, "writes land until the log holds twice the fold's bound");
    assert!(matches!(&refused, StoreError::Unavailable { message } if message.contains("no room")), "{refused:?}");
    let read = store.load(S).await.unwrap_err();
    assert!(matches!(&read, StoreError::Unavailable { message } if message.contains("no room")), "{read:?}");
    assert_eq!((count(&path, "log"), count(&path, "inputs")), (acknowledged as i64, 0));

    raw(&path, "DROP TRIGGER no_room");
    store.persist_input(S, E, &row(acknowledged + 1), "small").await.unwrap();
    let image = store.load(S).await.unwrap().expect("stored");
    assert_eq!(image.inputs.len() as u64, acknowledged + 1, "every acknowledged input is there");
    assert_eq!(count(&path, "log"), 0);
}

/// A batch whose every commit is refused writes no log row.
#[burrow_env::test]
async fn a_batch_of_refused_commits_writes_no_log_row() {
    let path = temp_db("refused");
    let store = SqliteStore::open(&path).unwrap();
    let err = store.commit_lifecycle(S, E, &idle_commit(vec![row(99)])).await.unwrap_err();
    assert!(matches!(err, StoreError::UnknownInput { input: InputId(99), .. }), "{err:?}");
    assert_eq!(count(&path, "log"), 0);
    store.persist_input(S, E, &row(1), "p").await.unwrap();
    assert_eq!(count(&path, "log"), 1, "the next batch lands as usual");
}
