//! One conformance suite for every store (SPEC 5, specs/lease.md): the memory store, the SQLite store and the
//! simulated store each run the same bodies (`store_suite/mod.rs`, which burrow-postgres runs against PostgreSQL). A
//! "restart" reopens the same durable contents in a fresh value (the same file for SQLite).

mod store_suite;
mod support;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use burrow::store::SimStoreConfig;
use burrow::{MemoryStore, SimStore, SqliteStore, Store};

/// Which store a body runs against, and how to reopen its durable contents.
pub(crate) enum Subject {
    Memory(MemoryStore),
    Sqlite(PathBuf),
    Sim(SimStore),
}

fn temp_db() -> PathBuf {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::SeqCst);
    let dir = std::env::temp_dir().join(format!("burrow-conformance-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join(format!("store-{n}.db"));
    let _ = std::fs::remove_file(&path);
    path
}

impl Subject {
    fn memory() -> Subject {
        Subject::Memory(MemoryStore::new())
    }
    fn sqlite() -> Subject {
        Subject::Sqlite(temp_db())
    }
    fn sim() -> Subject {
        Subject::Sim(SimStore::new(SimStoreConfig::default()))
    }

    /// A store value over the durable contents (a new value each call: a restart).
    pub(crate) fn open(&self) -> Arc<dyn Store> {
        match self {
            Subject::Memory(m) => Arc::new(m.clone()),
            Subject::Sqlite(path) => Arc::new(SqliteStore::open(path).expect("opens")),
            Subject::Sim(s) => Arc::new(s.clone()),
        }
    }
}

suite!(memory, crate::Subject::memory());
suite!(sqlite, crate::Subject::sqlite());
suite!(sim, crate::Subject::sim());
