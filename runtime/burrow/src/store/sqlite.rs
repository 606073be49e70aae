//! The SQLite store: burrow's embedded durable default (SPEC 5).
//!
//! One file, in WAL mode. Every commit of the store trait is one SQLite transaction, so a boundary commit (receipt,
//! input rows, snapshot) or a lifecycle commit (phase, binding, id marks, input rows) is visible whole or not at
//! all. Rows hold burrow-core's own types as JSON next to the columns that are searched (session, id, idempotency
//! key, run, sequence). Reading back validates every row; a row that cannot be decoded, or decodes to a state that
//! cannot exist, is a typed error naming the row. Nothing is ever deleted to get past a bad row.
//!
//! The connection is synchronous and guarded by a mutex; each call is one short transaction, so the async methods
//! simply run it. `synchronous=NORMAL` in WAL mode keeps every committed transaction across a process crash (it may
//! lose the last transactions on a power cut).

use std::path::Path;
use std::sync::Mutex;

use burrow_core::ids::{RunId, SessionId};
use burrow_core::input::{InputRecord, InputState};
use burrow_core::operations::OperationsRegistry;
use burrow_core::session::{BoundaryReceipt, PersistedLifecycle};
use rusqlite::{Connection, OptionalExtension, params};

use super::{BoundaryCommit, LifecycleCommit, SessionImage, Store, StoreError, StoredInput};
use crate::BoxFuture;

/// The schema version this build writes. Older files are migrated forward when opened.
pub const SCHEMA_VERSION: u32 = 1;

/// Forward migrations: entry `i` takes a database from version `i` to `i + 1`.
const MIGRATIONS: [&str; 1] = ["
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE sessions (
        session INTEGER PRIMARY KEY,
        lifecycle TEXT,
        operations TEXT,
        snapshot BLOB
    );
    CREATE TABLE inputs (
        session INTEGER NOT NULL,
        id INTEGER NOT NULL,
        idempotency_key TEXT,
        record TEXT NOT NULL,
        payload TEXT NOT NULL,
        PRIMARY KEY (session, id)
    );
    CREATE INDEX inputs_by_key ON inputs (session, idempotency_key) WHERE idempotency_key IS NOT NULL;
    CREATE TABLE receipts (
        session INTEGER NOT NULL,
        run INTEGER NOT NULL,
        sequence INTEGER NOT NULL,
        receipt TEXT NOT NULL,
        PRIMARY KEY (session, run)
    );
    CREATE INDEX receipts_by_sequence ON receipts (session, sequence);
"];

/// The `sessions` row of one session: lifecycle JSON, operations JSON, snapshot bytes.
type SessionRow = (Option<String>, Option<String>, Option<Vec<u8>>);

/// A store in one SQLite file.
#[derive(Debug)]
pub struct SqliteStore {
    conn: Mutex<Connection>,
}

fn unavailable(error: rusqlite::Error) -> StoreError {
    match error {
        rusqlite::Error::SqliteFailure(e, message) if e.code == rusqlite::ErrorCode::NotADatabase => {
            StoreError::Corrupt { row: "database file".into(), message: message.unwrap_or_else(|| e.to_string()) }
        }
        rusqlite::Error::SqliteFailure(e, message) if e.code == rusqlite::ErrorCode::DatabaseCorrupt => {
            StoreError::Corrupt { row: "database file".into(), message: message.unwrap_or_else(|| e.to_string()) }
        }
        other => StoreError::unavailable(other.to_string()),
    }
}

fn corrupt(row: impl Into<String>, message: impl ToString) -> StoreError {
    StoreError::Corrupt { row: row.into(), message: message.to_string() }
}

fn json<T: serde::Serialize>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| StoreError::unavailable(format!("cannot encode a row: {e}")))
}

fn int(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path`, migrating an older schema forward. A file that is not a
    /// database, or one written by a newer schema, is a typed error and is left untouched.
    ///
    /// # Errors
    ///
    /// - [`StoreError::Corrupt`] if the file is not a database, or is damaged;
    /// - [`StoreError::UnsupportedSchema`] if a newer (or unknown) schema wrote it;
    /// - [`StoreError::Unavailable`] if SQLite cannot open, configure or migrate it.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::Arc;
    /// use burrow::{Input, Runtime, SessionId, SqliteStore, Store};
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # burrow_env::runtime::block_on_current_thread(async {
    /// let path = std::env::temp_dir().join(format!("burrow-doc-{}.db", std::process::id()));
    /// let session = SessionId(1);
    /// let runtime = Runtime::with_store(Arc::new(SqliteStore::open(&path)?));
    /// runtime.prepare(session).await?;
    /// let input = runtime.accept_input(session, Input::prompt("kept on disk")).await?.input();
    /// drop(runtime);
    ///
    /// let reopened = SqliteStore::open(&path)?;
    /// let image = reopened.load(session).await?.expect("written");
    /// assert_eq!(image.payload(input), Some("kept on disk"));
    /// # drop(reopened);
    /// # for suffix in ["", "-wal", "-shm"] {
    /// #     let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    /// # }
    /// # Ok(())
    /// # })
    /// # }
    /// ```
    pub fn open(path: impl AsRef<Path>) -> Result<SqliteStore, StoreError> {
        let conn = Connection::open(path).map_err(unavailable)?;
        SqliteStore::init(conn)
    }

    /// A private in-memory database (for tests; nothing survives the value).
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] if SQLite cannot create or set up the database.
    ///
    /// # Examples
    ///
    /// ```
    /// use burrow::{SessionId, SqliteStore, Store};
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # burrow_env::runtime::block_on_current_thread(async {
    /// let store = SqliteStore::in_memory()?;
    /// assert!(store.sessions().await?.is_empty());
    /// assert!(store.load(SessionId(1)).await?.is_none(), "nothing was ever written");
    /// # Ok(())
    /// # })
    /// # }
    /// ```
    pub fn in_memory() -> Result<SqliteStore, StoreError> {
        SqliteStore::init(Connection::open_in_memory().map_err(unavailable)?)
    }

    fn init(mut conn: Connection) -> Result<SqliteStore, StoreError> {
        conn.busy_timeout(std::time::Duration::from_secs(5)).map_err(unavailable)?;
        // journal_mode answers with a row, so it is read rather than executed.
        let _: String = conn.query_row("PRAGMA journal_mode=WAL", [], |row| row.get(0)).map_err(unavailable)?;
        conn.execute_batch("PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON;").map_err(unavailable)?;
        let version = SqliteStore::schema_version(&conn)?;
        if version > SCHEMA_VERSION {
            return Err(StoreError::UnsupportedSchema { found: version.to_string(), supported: SCHEMA_VERSION });
        }
        let tx = conn.transaction().map_err(unavailable)?;
        for (from, migration) in MIGRATIONS.iter().enumerate().skip(version as usize) {
            tx.execute_batch(migration).map_err(unavailable)?;
            let to = from as u32 + 1;
            tx.execute(
                "INSERT INTO meta (key, value) VALUES ('schema_version', ?1)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                params![to.to_string()],
            )
            .map_err(unavailable)?;
        }
        tx.commit().map_err(unavailable)?;
        Ok(SqliteStore { conn: Mutex::new(conn) })
    }

    /// The schema version of an open connection: 0 for an empty database.
    fn schema_version(conn: &Connection) -> Result<u32, StoreError> {
        let has_meta: bool = conn
            .query_row("SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'meta'", [], |row| {
                row.get::<_, i64>(0)
            })
            .map_err(unavailable)?
            > 0;
        if !has_meta {
            return Ok(0);
        }
        let value: Option<String> = conn
            .query_row("SELECT value FROM meta WHERE key = 'schema_version'", [], |row| row.get(0))
            .optional()
            .map_err(unavailable)?;
        let Some(value) = value else { return Err(corrupt("meta(schema_version)", "missing")) };
        value.parse().map_err(|_| StoreError::UnsupportedSchema { found: value.clone(), supported: SCHEMA_VERSION })
    }

    fn with<T>(&self, f: impl FnOnce(&mut Connection) -> Result<T, StoreError>) -> Result<T, StoreError> {
        // A panic while holding the lock leaves the connection usable (SQLite rolled back the open transaction when
        // it was dropped), so a poisoned lock is taken over.
        let mut conn = self.conn.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&mut conn)
    }

    fn update_rows(tx: &rusqlite::Transaction<'_>, session: SessionId, rows: &[InputRecord]) -> Result<(), StoreError> {
        for row in rows {
            let changed = tx
                .execute(
                    "UPDATE inputs SET record = ?3 WHERE session = ?1 AND id = ?2",
                    params![int(session.0), int(row.id.0), json(row)?],
                )
                .map_err(unavailable)?;
            if changed == 0 {
                return Err(StoreError::UnknownInput { session, input: row.id });
            }
        }
        Ok(())
    }

    fn decode_input(session: SessionId, id: i64, record: &str, payload: String) -> Result<StoredInput, StoreError> {
        let row = format!("inputs(session={}, id={id})", session.0);
        let record: InputRecord = serde_json::from_str(record).map_err(|e| corrupt(&row, e))?;
        if int(record.id.0) != id {
            return Err(corrupt(row, format!("the record names input {}", record.id)));
        }
        let staged = matches!(
            record.state,
            InputState::Staged { .. } | InputState::Applied { .. } | InputState::AppliedPendingConsumption { .. }
        );
        if staged && record.attempts == 0 {
            return Err(corrupt(row, format!("state {} with no attempt is impossible", record.state.label())));
        }
        Ok(StoredInput { record, payload })
    }

    fn load_sync(conn: &Connection, session: SessionId) -> Result<Option<SessionImage>, StoreError> {
        let s = int(session.0);
        let head: Option<SessionRow> = conn
            .query_row("SELECT lifecycle, operations, snapshot FROM sessions WHERE session = ?1", params![s], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .optional()
            .map_err(unavailable)?;
        let mut inputs = Vec::new();
        let mut stmt = conn
            .prepare("SELECT id, record, payload FROM inputs WHERE session = ?1 ORDER BY id")
            .map_err(unavailable)?;
        let rows = stmt
            .query_map(params![s], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?)))
            .map_err(unavailable)?;
        for row in rows {
            let (id, record, payload) = row.map_err(unavailable)?;
            inputs.push(SqliteStore::decode_input(session, id, &record, payload)?);
        }
        let mut receipts = Vec::new();
        let mut stmt = conn
            .prepare("SELECT run, receipt FROM receipts WHERE session = ?1 ORDER BY sequence")
            .map_err(unavailable)?;
        let rows =
            stmt.query_map(params![s], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))).map_err(unavailable)?;
        for row in rows {
            let (run, receipt) = row.map_err(unavailable)?;
            let name = format!("receipts(session={s}, run={run})");
            let receipt: BoundaryReceipt = serde_json::from_str(&receipt).map_err(|e| corrupt(&name, e))?;
            if int(receipt.run.0) != run {
                return Err(corrupt(name, format!("the receipt names run {}", receipt.run)));
            }
            receipts.push(receipt);
        }
        if head.is_none() && inputs.is_empty() && receipts.is_empty() {
            return Ok(None);
        }
        let (lifecycle, operations, snapshot) = head.unwrap_or((None, None, None));
        let lifecycle: Option<PersistedLifecycle> = lifecycle
            .map(|l| serde_json::from_str(&l).map_err(|e| corrupt(format!("sessions(session={s}).lifecycle"), e)))
            .transpose()?;
        let operations: Option<OperationsRegistry> = operations
            .map(|o| serde_json::from_str(&o).map_err(|e| corrupt(format!("sessions(session={s}).operations"), e)))
            .transpose()?;
        if let Some(registry) = &operations {
            registry.check().map_err(|v| corrupt(format!("sessions(session={s}).operations"), v))?;
        }
        Ok(Some(SessionImage { lifecycle, inputs, receipts, operations, snapshot }))
    }
}

impl Store for SqliteStore {
    fn persist_input<'a>(
        &'a self,
        session: SessionId,
        input: &'a InputRecord,
        payload: &'a str,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        let result = self.with(|conn| {
            conn.execute(
                "INSERT INTO inputs (session, id, idempotency_key, record, payload) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![int(session.0), int(input.id.0), input.spec.idempotency_key, json(input)?, payload],
            )
            .map_err(unavailable)?;
            Ok(())
        });
        Box::pin(std::future::ready(result))
    }

    fn commit_boundary<'a>(
        &'a self,
        session: SessionId,
        commit: &'a BoundaryCommit,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        let result = self.with(|conn| {
            let tx = conn.transaction().map_err(unavailable)?;
            SqliteStore::update_rows(&tx, session, &commit.inputs)?;
            let r = &commit.receipt;
            tx.execute(
                "INSERT INTO receipts (session, run, sequence, receipt) VALUES (?1, ?2, ?3, ?4)",
                params![int(session.0), int(r.run.0), int(r.sequence), json(r)?],
            )
            .map_err(unavailable)?;
            if let Some(snapshot) = &commit.snapshot {
                tx.execute(
                    "INSERT INTO sessions (session, snapshot) VALUES (?1, ?2)
                     ON CONFLICT (session) DO UPDATE SET snapshot = excluded.snapshot",
                    params![int(session.0), snapshot],
                )
                .map_err(unavailable)?;
            }
            // Dropping an uncommitted transaction rolls it back: an error above leaves nothing visible.
            tx.commit().map_err(unavailable)
        });
        Box::pin(std::future::ready(result))
    }

    fn commit_lifecycle<'a>(
        &'a self,
        session: SessionId,
        commit: &'a LifecycleCommit,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        let result = self.with(|conn| {
            let tx = conn.transaction().map_err(unavailable)?;
            SqliteStore::update_rows(&tx, session, &commit.inputs)?;
            tx.execute(
                "INSERT INTO sessions (session, lifecycle) VALUES (?1, ?2)
                 ON CONFLICT (session) DO UPDATE SET lifecycle = excluded.lifecycle",
                params![int(session.0), json(&commit.lifecycle)?],
            )
            .map_err(unavailable)?;
            tx.commit().map_err(unavailable)
        });
        Box::pin(std::future::ready(result))
    }

    fn save_operations<'a>(
        &'a self,
        session: SessionId,
        operations: &'a OperationsRegistry,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        let result = self.with(|conn| {
            conn.execute(
                "INSERT INTO sessions (session, operations) VALUES (?1, ?2)
                 ON CONFLICT (session) DO UPDATE SET operations = excluded.operations",
                params![int(session.0), json(operations)?],
            )
            .map_err(unavailable)?;
            Ok(())
        });
        Box::pin(std::future::ready(result))
    }

    fn load(&self, session: SessionId) -> BoxFuture<'_, Result<Option<SessionImage>, StoreError>> {
        let result = self.with(|conn| SqliteStore::load_sync(conn, session));
        Box::pin(std::future::ready(result))
    }

    fn input_by_key<'a>(
        &'a self,
        session: SessionId,
        key: &'a str,
    ) -> BoxFuture<'a, Result<Option<InputRecord>, StoreError>> {
        let result = self.with(|conn| {
            let row: Option<(i64, String, String)> = conn
                .query_row(
                    "SELECT id, record, payload FROM inputs WHERE session = ?1 AND idempotency_key = ?2
                     ORDER BY id DESC LIMIT 1",
                    params![int(session.0), key],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                )
                .optional()
                .map_err(unavailable)?;
            row.map(|(id, record, payload)| SqliteStore::decode_input(session, id, &record, payload).map(|i| i.record))
                .transpose()
        });
        Box::pin(std::future::ready(result))
    }

    fn load_boundary_receipt(
        &self,
        session: SessionId,
        run: RunId,
    ) -> BoxFuture<'_, Result<Option<BoundaryReceipt>, StoreError>> {
        let result = self.with(|conn| {
            let text: Option<String> = conn
                .query_row(
                    "SELECT receipt FROM receipts WHERE session = ?1 AND run = ?2",
                    params![int(session.0), int(run.0)],
                    |r| r.get(0),
                )
                .optional()
                .map_err(unavailable)?;
            text.map(|t| {
                serde_json::from_str(&t)
                    .map_err(|e| corrupt(format!("receipts(session={}, run={})", session.0, run.0), e))
            })
            .transpose()
        });
        Box::pin(std::future::ready(result))
    }

    fn sessions(&self) -> BoxFuture<'_, Result<Vec<SessionId>, StoreError>> {
        let result = self.with(|conn| {
            let mut stmt = conn
                .prepare("SELECT session FROM sessions UNION SELECT session FROM inputs ORDER BY 1")
                .map_err(unavailable)?;
            let rows = stmt.query_map([], |r| r.get::<_, i64>(0)).map_err(unavailable)?;
            let mut ids = Vec::new();
            for row in rows {
                let id = row.map_err(unavailable)?;
                ids.push(SessionId(u64::try_from(id).map_err(|_| corrupt("sessions", format!("negative id {id}")))?));
            }
            Ok(ids)
        });
        Box::pin(std::future::ready(result))
    }
}
