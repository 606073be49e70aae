//! What the SQLite store reads back from disk: a whole file of arbitrary bytes, or a valid database with one row's
//! column overwritten (a table's row, or the row of its log that the next open folds). Opening, listing, loading and restoring a session from what was loaded answer with a typed
//! error or a session whose invariants hold, never a panic.

#![no_main]

use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll, Wake, Waker};

use burrow::store::{LifecycleCommit, SqliteStore, Store};
use burrow_core::ids::{Binding, EpochId, Generation, InputId, Millis, SessionId};
use burrow_core::input::{InputKind, InputRecord, InputSpec};
use burrow_core::invariants;
use burrow_core::phase::RuntimePhase;
use burrow_core::registration::RegistrationPhase;
use burrow_core::session::{IdMarks, PersistedLifecycle, SessionConfig, SessionMachine};
use libfuzzer_sys::fuzz_target;

/// Wakes the thread that waits in [`ready`].
struct Unpark(std::thread::Thread);

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
}

/// Waits for one of the SQLite store's futures on this thread (its writer thread answers it).
fn ready<T>(future: impl Future<Output = T>) -> T {
    let mut future = std::pin::pin!(future);
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    loop {
        match future.as_mut().poll(&mut Context::from_waker(&waker)) {
            Poll::Ready(value) => return value,
            Poll::Pending => std::thread::park(),
        }
    }
}

fn path() -> PathBuf {
    std::env::temp_dir().join(format!("burrow-fuzz-{}.sqlite", std::process::id()))
}

fn clear(path: &PathBuf) {
    for suffix in ["", "-wal", "-shm"] {
        let mut name = path.clone().into_os_string();
        name.push(suffix);
        let _ = std::fs::remove_file(name);
    }
}

/// A valid database holding one session, written through the store itself: a lifecycle and two inputs (one keyed)
/// in its tables, and a third input in its log, not yet folded.
fn template() -> &'static [u8] {
    static TEMPLATE: OnceLock<Vec<u8>> = OnceLock::new();
    TEMPLATE.get_or_init(|| {
        let path = std::env::temp_dir().join(format!("burrow-fuzz-template-{}.sqlite", std::process::id()));
        clear(&path);
        let store = SqliteStore::open(&path).expect("a new database");
        let session = SessionId(1);
        let first = InputRecord::admitted(InputId(1), InputSpec::new(InputKind::Prompt), Millis(0));
        let keyed =
            InputRecord::admitted(InputId(2), InputSpec::new(InputKind::Prompt).idempotency_key("k"), Millis(1));
        ready(store.persist_input(session, EpochId(1), &first, "one")).expect("written");
        ready(store.persist_input(session, EpochId(1), &keyed, "two")).expect("written");
        let binding = Binding { epoch: EpochId(1), generation: Generation(1) };
        let lifecycle = PersistedLifecycle {
            phase: RuntimePhase::Idle,
            registration: RegistrationPhase::Active { generation: Generation(1) },
            binding: Some(binding),
            marks: IdMarks { last_input: 2, last_run: 0 },
        };
        ready(store.commit_lifecycle(session, EpochId(1), &LifecycleCommit { lifecycle, inputs: Vec::new() }))
            .expect("written");
        // A read folds the store's log into its tables; one more input then stays in the log, as a killed process
        // leaves it. Its log row is copied out, the store closed (which folds it too), and the row put back.
        ready(store.sessions()).expect("read");
        let third = InputRecord::admitted(InputId(3), InputSpec::new(InputKind::Prompt), Millis(2));
        ready(store.persist_input(session, EpochId(1), &third, "three")).expect("written");
        let body: Vec<u8> = rusqlite::Connection::open(&path)
            .expect("reopened")
            .query_row("SELECT body FROM log", [], |row| row.get(0))
            .expect("one log row");
        drop(store);
        rusqlite::Connection::open(&path)
            .expect("reopened")
            .execute("INSERT INTO log (body) VALUES (?1)", [body])
            .expect("the log row put back");
        // Fold the write-ahead log into the file so the template is one file.
        let conn = rusqlite::Connection::open(&path).expect("reopened");
        conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE); PRAGMA journal_mode=DELETE;").expect("checkpointed");
        drop(conn);
        let bytes = std::fs::read(&path).expect("the template");
        clear(&path);
        bytes
    })
}

/// Overwrites one column of one row of the template with the fuzzer's value.
fn damage(path: &PathBuf, data: &[u8]) {
    let Some((choice, value)) = data.split_first() else { return };
    let targets = [
        ("sessions", "lifecycle"),
        ("sessions", "operations"),
        ("sessions", "snapshot"),
        ("sessions", "session"),
        ("inputs", "record"),
        ("inputs", "id"),
        ("inputs", "idempotency_key"),
        ("inputs", "payload"),
        ("inputs", "state"),
        ("inputs", "attempts"),
        ("meta", "value"),
        ("log", "body"),
        ("log", "seq"),
    ];
    let (table, column) = targets[usize::from(choice % targets.len() as u8)];
    let conn = rusqlite::Connection::open(path).expect("the copy opens");
    let text = String::from_utf8_lossy(value).into_owned();
    let sql = format!("UPDATE {table} SET {column} = ?1 WHERE rowid = (SELECT min(rowid) FROM {table})");
    let _ = match choice / 16 % 3 {
        0 => conn.execute(&sql, [text]),
        1 => conn.execute(&sql, [value.to_vec()]),
        _ => conn.execute(
            &sql,
            [i64::from_le_bytes(
                value.iter().copied().chain([0; 8]).take(8).collect::<Vec<u8>>().try_into().expect("eight bytes"),
            )],
        ),
    };
}

fuzz_target!(|data: &[u8]| {
    let Some((mode, rest)) = data.split_first() else { return };
    let path = path();
    clear(&path);
    if mode & 1 == 0 {
        std::fs::write(&path, rest).expect("a temporary file");
    } else {
        std::fs::write(&path, template()).expect("a temporary file");
        damage(&path, rest);
    }
    let Ok(store) = SqliteStore::open(&path) else { return };
    let Ok(sessions) = ready(store.sessions()) else { return };
    for session in sessions.into_iter().take(4) {
        let Ok(Some(image)) = ready(store.load(session)) else { continue };
        let Some(lifecycle) = &image.lifecycle else { continue };
        let recovery = image.recovery_image(true);
        if let Ok((machine, _)) =
            SessionMachine::restored(session, SessionConfig::default(), lifecycle, recovery, Millis(0))
        {
            if let Err(violation) = invariants::check(&machine) {
                panic!("a restored session breaks an invariant: {violation:?}");
            }
        }
    }
    drop(store);
    clear(&path);
});
