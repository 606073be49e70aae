//! The SQLite store: burrow's embedded durable default (SPEC 5).
//!
//! One file, in WAL mode. Every commit of the store trait is applied whole or not at all, so a boundary commit
//! (receipt, input rows, snapshot) or a lifecycle commit (phase, binding, id marks, input rows) is visible whole or
//! not at all. Rows hold burrow-core's own types as JSON next to the columns that are searched (session, id,
//! idempotency key, run, sequence). Reading back validates every row; a row that cannot be decoded, or decodes to a
//! state that cannot exist, is a typed error naming the row. Nothing is ever deleted to get past a bad row.
//!
//! The connection belongs to a writer thread of its own (`store/group.rs`): callers encode their rows on their own
//! task, queue the commit and await its acknowledgement, and the writer commits everything waiting as one
//! transaction with one sync (group commit). With the default [`SyncMode::Full`] an acknowledged write survives a
//! process crash and a power cut: the transaction's log is synced to the disk before any commit in it is
//! acknowledged. [`SyncMode::Normal`] is the relaxed option: it survives a process crash, and a power cut may lose
//! the last acknowledged batches.
//!
//! A batch is written as one row of the `log` table: its commits one after another, in a small binary framing around
//! the same JSON the tables hold. That is one insert per batch, appended at the end of one B-tree, where writing each
//! commit into the tables cost several statements and rewrote pages all over them at every sync (about 10 KiB
//! written to the disk per input, against about 2.5 KiB now). Before a commit joins a batch the writer checks it as
//! the tables would (fenced by the lease row, the rows it updates stored, the rows it adds new), so a refused commit
//! never reaches the log. The writer keeps the log's commits merged in memory (a row's later state replaces its
//! earlier one) and folds them into the tables in one transaction of their own once the log holds
//! [`FOLD_COMMITS_MAX`] commits or [`FOLD_BYTES_MAX`] bytes, before any read of the tables, and when the store is
//! closed; opening a file folds whatever log a killed process left. Another connection's commit (a second store on
//! the file) is seen through `PRAGMA data_version`: the writer then drops what it kept and reads the log again.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use burrow_core::ids::{EpochId, InputId, Millis, RunId, SessionId};
use burrow_core::input::InputRecord;
use burrow_core::lease::{HostId, LeaseRow};
use burrow_core::operations::OperationsRegistry;
use burrow_core::session::BoundaryReceipt;
use rusqlite::{Connection, OptionalExtension, params};

use super::group::{Journal, Writer, WriterStats};
use super::rows::{RawInput, corrupt, decode_input, decode_lifecycle, decode_operations, decode_receipt, int, json};
use super::{BoundaryCommit, LifecycleCommit, SessionImage, Store, StoreError};
use crate::BoxFuture;

/// SQLite's page cache, in KiB.
const CACHE_KIB: u32 = 64 * 1024;
/// Log pages that trigger a checkpoint.
const CHECKPOINT_PAGES: u32 = 16_384;

/// The schema version this build writes. Older files are migrated forward when opened.
pub const SCHEMA_VERSION: u32 = 4;

/// Forward migrations: entry `i` takes a database from version `i` to `i + 1`.
///
/// Version 2 gives an input row its own `state` and `attempts` columns: a row's record is written once, with the
/// input, and later commits update only these two (a small write, where rewriting the whole record cost the writer
/// more than anything else). A row whose `state` is NULL (written by version 1) still has its state in its record.
///
/// Version 3 adds the lease rows of a fleet (specs/lease.md): owner, epoch and the end of the lease, in milliseconds
/// of the wall clock of the machine whose disk holds the file. A session without a row was never claimed.
///
/// Version 4 adds the log: each batch of commits is first one row of it (see [`SqliteStore`]), and the writer folds
/// the log into the other tables now and then.
const MIGRATIONS: [&str; 4] = [
    "
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
",
    "
    ALTER TABLE inputs ADD COLUMN state TEXT;
    ALTER TABLE inputs ADD COLUMN attempts INTEGER;
",
    "
    CREATE TABLE leases (
        session INTEGER PRIMARY KEY,
        owner INTEGER,
        epoch INTEGER NOT NULL,
        expires_at INTEGER NOT NULL
    );
",
    "
    CREATE TABLE log (seq INTEGER PRIMARY KEY, body BLOB NOT NULL);
",
];

fn read_input(row: &rusqlite::Row<'_>) -> rusqlite::Result<RawInput> {
    Ok(RawInput {
        id: row.get(0)?,
        record: row.get(1)?,
        payload: row.get(2)?,
        state: row.get(3)?,
        attempts: row.get(4)?,
    })
}

/// The `sessions` row of one session: lifecycle JSON, operations JSON, snapshot bytes.
type SessionRow = (Option<String>, Option<String>, Option<Vec<u8>>);

/// How hard a commit is pushed to the disk before it is acknowledged.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SyncMode {
    /// Each batch's log is synced to the disk before any commit in it is acknowledged: an acknowledged write survives
    /// a process crash and a power cut (SQLite's `synchronous=FULL`). The default.
    #[default]
    Full,
    /// Relaxed: an acknowledged write survives a process crash, but a power cut or an operating-system crash may lose
    /// the last acknowledged batches (SQLite's `synchronous=NORMAL` in WAL mode). Choose it only where losing them
    /// is acceptable.
    Normal,
}

/// A store in one SQLite file.
pub struct SqliteStore {
    writer: Writer<SqliteJournal>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore").field("writer", &self.writer.stats()).finish()
    }
}

/// One input row to update: (input id, state JSON, attempts). The rest of a record never changes once written.
type Row = (i64, String, i64);

/// A commit, encoded on the caller's task, applied by the writer.
struct Encoded {
    session: i64,
    /// The writer's epoch: the write lands only at the session's lease epoch, if it has a lease row.
    epoch: EpochId,
    what: Write,
}

/// What a commit writes.
enum Write {
    Input { id: i64, key: Option<String>, record: String, payload: String },
    Boundary { rows: Vec<Row>, run: i64, sequence: i64, receipt: String, snapshot: Option<Vec<u8>> },
    Lifecycle { rows: Vec<Row>, lifecycle: String },
    Operations { operations: String },
}

impl Encoded {
    fn rows(inputs: &[InputRecord]) -> Result<Vec<Row>, StoreError> {
        inputs.iter().map(|r| Ok((int(r.id.0), json(&r.state)?, i64::from(r.attempts)))).collect()
    }
}

impl Write {
    /// The bytes it carries, for the batch's bound and the log's.
    fn bytes(&self) -> usize {
        let rows = |rows: &[Row]| rows.iter().map(|(_, state, _)| state.len() + 16).sum::<usize>();
        match self {
            Write::Input { record, payload, key, .. } => {
                record.len() + payload.len() + key.as_ref().map_or(0, String::len)
            }
            Write::Boundary { rows: r, receipt, snapshot, .. } => {
                rows(r) + receipt.len() + snapshot.as_ref().map_or(0, Vec::len)
            }
            Write::Lifecycle { rows: r, lifecycle, .. } => rows(r) + lifecycle.len(),
            Write::Operations { operations, .. } => operations.len(),
        }
    }
}

/// The longest value SQLite takes (its default `SQLITE_MAX_LENGTH`, which the bundled library keeps): a batch's log
/// row is one value.
const VALUE_BYTES_MAX: usize = 1_000_000_000;

/// Commits the log holds at most before the writer folds it into the tables.
pub const FOLD_COMMITS_MAX: usize = 32_768;
/// Encoded bytes the log holds at most before the writer folds it into the tables.
pub const FOLD_BYTES_MAX: usize = 32 << 20;
/// Commits the log takes after a failed fold before the writer's housekeeping tries again: a fold that fails (a full
/// disk, say) is not redone, and rolled back, after every batch.
const FOLD_RETRY_COMMITS: usize = 1_024;

/// The writer's side of the store: the connection, the log's contents not yet folded into the tables, and what the
/// writer knows of the file since it last looked (valid while no other connection has written it).
struct SqliteJournal {
    conn: Connection,
    /// `PRAGMA data_version` when this connection last looked: another connection's commit changes it.
    data_version: i64,
    /// Lease rows read or written by this connection (`None`: the session has no lease row).
    leases: BTreeMap<i64, Option<LeaseRow>>,
    /// The highest input id and run of a session the tables hold (`i64::MIN`: none), read when first needed and
    /// forgotten at each fold: a new row's key above it needs no probe of the table (ids and runs only grow).
    table_max: BTreeMap<(Table, i64), i64>,
    /// The log's rows, merged in commit order: exactly what `log` holds in the file.
    pending: Pending,
    /// Folds committed since the writer last counted them (each is a sync).
    folds: u64,
    /// The log's size in commits when a fold last failed: the writer's own housekeeping waits for
    /// [`FOLD_RETRY_COMMITS`] more before it tries again (a read, or the bound, tries at once).
    fold_failed_at: Option<usize>,
    /// The open batch: its encoded commits, and the rows it adds (for the checks of later commits in it).
    batch: Vec<u8>,
    batch_inputs: BTreeSet<(i64, i64)>,
    batch_receipts: BTreeSet<(i64, i64)>,
}

/// A table whose keys within a session only grow.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Table {
    Inputs,
    Receipts,
}

impl Table {
    fn max_sql(self) -> &'static str {
        match self {
            Table::Inputs => "SELECT max(id) FROM inputs WHERE session = ?1",
            Table::Receipts => "SELECT max(run) FROM receipts WHERE session = ?1",
        }
    }

    fn probe_sql(self) -> &'static str {
        match self {
            Table::Inputs => "SELECT 1 FROM inputs WHERE session = ?1 AND id = ?2",
            Table::Receipts => "SELECT 1 FROM receipts WHERE session = ?1 AND run = ?2",
        }
    }
}

/// An input row written to the log and not yet to the table, with its latest state.
#[derive(Debug)]
struct NewInput {
    key: Option<String>,
    record: String,
    payload: String,
    /// The state and attempts written by a later commit, if any (NULL columns until then, as in the table).
    state: Option<(String, i64)>,
}

/// The columns of a `sessions` row a commit changed (`None`: unchanged).
#[derive(Debug, Default)]
struct SessionPatch {
    lifecycle: Option<String>,
    operations: Option<String>,
    snapshot: Option<Vec<u8>>,
}

/// The log's commits, merged: later writes of a row replace earlier ones, so a fold writes each row once.
#[derive(Debug, Default)]
struct Pending {
    inputs: BTreeMap<(i64, i64), NewInput>,
    /// Later states of rows the table already holds.
    updates: BTreeMap<(i64, i64), (String, i64)>,
    /// (session, run) -> (sequence, receipt).
    receipts: BTreeMap<(i64, i64), (i64, String)>,
    sessions: BTreeMap<i64, SessionPatch>,
    commits: usize,
    bytes: usize,
}

impl Pending {
    fn is_empty(&self) -> bool {
        self.commits == 0
    }

    /// Takes one decoded commit, in log order.
    fn merge(&mut self, session: i64, what: Write) {
        self.commits += 1;
        self.bytes += what.bytes();
        let rows = |rows: Vec<Row>, pending: &mut Pending| {
            for (id, state, attempts) in rows {
                match pending.inputs.get_mut(&(session, id)) {
                    Some(input) => input.state = Some((state, attempts)),
                    None => {
                        pending.updates.insert((session, id), (state, attempts));
                    }
                }
            }
        };
        match what {
            Write::Input { id, key, record, payload } => {
                self.inputs.insert((session, id), NewInput { key, record, payload, state: None });
            }
            Write::Boundary { rows: r, run, sequence, receipt, snapshot } => {
                rows(r, self);
                self.receipts.insert((session, run), (sequence, receipt));
                if let Some(snapshot) = snapshot {
                    self.sessions.entry(session).or_default().snapshot = Some(snapshot);
                }
            }
            Write::Lifecycle { rows: r, lifecycle } => {
                rows(r, self);
                self.sessions.entry(session).or_default().lifecycle = Some(lifecycle);
            }
            Write::Operations { operations } => {
                self.sessions.entry(session).or_default().operations = Some(operations);
            }
        }
    }
}

/// The log's encoding: a batch is one `log` row whose body is its commits one after another, each a tag byte, the
/// session, then its fields (integers little-endian, text and bytes preceded by their length, an absent value by a
/// zero byte and a present one by a one).
mod log {
    use super::{Row, Write};
    use crate::store::StoreError;
    use crate::store::rows::corrupt;

    const INPUT: u8 = 1;
    const BOUNDARY: u8 = 2;
    const LIFECYCLE: u8 = 3;
    const OPERATIONS: u8 = 4;

    fn int(out: &mut Vec<u8>, v: i64) {
        out.extend_from_slice(&v.to_le_bytes());
    }
    fn bytes(out: &mut Vec<u8>, b: &[u8]) {
        out.extend_from_slice(&(b.len() as u64).to_le_bytes());
        out.extend_from_slice(b);
    }
    fn optional(out: &mut Vec<u8>, b: Option<&[u8]>) {
        match b {
            Some(b) => {
                out.push(1);
                bytes(out, b);
            }
            None => out.push(0),
        }
    }
    fn rows(out: &mut Vec<u8>, rows: &[Row]) {
        int(out, rows.len() as i64);
        for (id, state, attempts) in rows {
            int(out, *id);
            bytes(out, state.as_bytes());
            int(out, *attempts);
        }
    }

    /// Appends one commit of `session` to `out`.
    pub(super) fn encode(out: &mut Vec<u8>, session: i64, what: &Write) {
        match what {
            Write::Input { id, key, record, payload } => {
                out.push(INPUT);
                int(out, session);
                int(out, *id);
                optional(out, key.as_ref().map(String::as_bytes));
                bytes(out, record.as_bytes());
                bytes(out, payload.as_bytes());
            }
            Write::Boundary { rows: r, run, sequence, receipt, snapshot } => {
                out.push(BOUNDARY);
                int(out, session);
                rows(out, r);
                int(out, *run);
                int(out, *sequence);
                bytes(out, receipt.as_bytes());
                optional(out, snapshot.as_deref());
            }
            Write::Lifecycle { rows: r, lifecycle } => {
                out.push(LIFECYCLE);
                int(out, session);
                rows(out, r);
                bytes(out, lifecycle.as_bytes());
            }
            Write::Operations { operations } => {
                out.push(OPERATIONS);
                int(out, session);
                bytes(out, operations.as_bytes());
            }
        }
    }

    /// Reads a body back: every commit in it, in order.
    struct Reader<'a> {
        body: &'a [u8],
        at: usize,
        row: String,
    }

    impl Reader<'_> {
        fn bad(&self, what: &str) -> StoreError {
            corrupt(&self.row, format!("{what} at byte {}", self.at))
        }
        fn take(&mut self, n: usize) -> Result<&[u8], StoreError> {
            let end = self.at.checked_add(n).filter(|&e| e <= self.body.len()).ok_or_else(|| self.bad("cut short"))?;
            let taken = &self.body[self.at..end];
            self.at = end;
            Ok(taken)
        }
        fn byte(&mut self) -> Result<u8, StoreError> {
            Ok(self.take(1)?[0])
        }
        fn int(&mut self) -> Result<i64, StoreError> {
            let raw = self.take(8)?;
            Ok(i64::from_le_bytes(raw.try_into().expect("eight bytes")))
        }
        fn bytes(&mut self) -> Result<Vec<u8>, StoreError> {
            let len = self.int()?;
            let len = usize::try_from(len).map_err(|_| self.bad("a negative length"))?;
            Ok(self.take(len)?.to_vec())
        }
        fn text(&mut self) -> Result<String, StoreError> {
            let raw = self.bytes()?;
            String::from_utf8(raw).map_err(|_| self.bad("text that is not UTF-8"))
        }
        fn flag(&mut self) -> Result<bool, StoreError> {
            match self.byte()? {
                0 => Ok(false),
                1 => Ok(true),
                _ => Err(self.bad("a flag that is neither 0 nor 1")),
            }
        }
        fn rows(&mut self) -> Result<Vec<Row>, StoreError> {
            let count = self.int()?;
            // Each row takes at least 24 bytes: a count past what is left is damage, not a reason to allocate.
            let count = usize::try_from(count)
                .ok()
                .filter(|&c| c <= (self.body.len() - self.at) / 24)
                .ok_or_else(|| self.bad("a row count past the body's end"))?;
            (0..count).map(|_| Ok((self.int()?, self.text()?, self.int()?))).collect()
        }
    }

    /// The commits of the log row `seq`: (session, what it writes), in order.
    pub(super) fn decode(seq: i64, body: &[u8]) -> Result<Vec<(i64, Write)>, StoreError> {
        let mut r = Reader { body, at: 0, row: format!("log(seq={seq})") };
        let mut commits = Vec::new();
        while r.at < body.len() {
            let tag = r.byte()?;
            let session = r.int()?;
            let what = match tag {
                INPUT => {
                    let id = r.int()?;
                    let key = if r.flag()? { Some(r.text()?) } else { None };
                    Write::Input { id, key, record: r.text()?, payload: r.text()? }
                }
                BOUNDARY => {
                    let rows = r.rows()?;
                    let (run, sequence, receipt) = (r.int()?, r.int()?, r.text()?);
                    let snapshot = if r.flag()? { Some(r.bytes()?) } else { None };
                    Write::Boundary { rows, run, sequence, receipt, snapshot }
                }
                LIFECYCLE => Write::Lifecycle { rows: r.rows()?, lifecycle: r.text()? },
                OPERATIONS => Write::Operations { operations: r.text()? },
                _ => return Err(r.bad(&format!("an unknown commit kind {tag}"))),
            };
            commits.push((session, what));
        }
        Ok(commits)
    }
}

impl SqliteJournal {
    fn new(conn: Connection) -> Result<SqliteJournal, StoreError> {
        let mut journal = SqliteJournal {
            conn,
            data_version: 0,
            leases: BTreeMap::new(),
            table_max: BTreeMap::new(),
            pending: Pending::default(),
            folds: 0,
            fold_failed_at: None,
            batch: Vec::new(),
            batch_inputs: BTreeSet::new(),
            batch_receipts: BTreeSet::new(),
        };
        journal.data_version = journal.read_data_version()?;
        journal.reload()?;
        // A log left by a process that stopped without folding it is folded now.
        journal.fold()?;
        Ok(journal)
    }

    fn read_data_version(&self) -> Result<i64, StoreError> {
        self.conn.query_row("PRAGMA data_version", [], |r| r.get(0)).map_err(unavailable)
    }

    /// Reads the log from the file into `pending`, forgetting what this connection kept: after another connection
    /// wrote the file, the file is the truth.
    fn reload(&mut self) -> Result<(), StoreError> {
        self.leases.clear();
        self.table_max.clear();
        self.pending = Pending::default();
        let mut stmt = self.conn.prepare_cached("SELECT seq, body FROM log ORDER BY seq").map_err(unavailable)?;
        let rows = stmt
            .query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, rusqlite::types::Value>(1)?)))
            .map_err(unavailable)?;
        for row in rows {
            let (seq, body) = row.map_err(unavailable)?;
            let rusqlite::types::Value::Blob(body) = body else {
                return Err(corrupt(format!("log(seq={seq})"), "a body that is not bytes"));
            };
            for (session, what) in log::decode(seq, &body)? {
                self.pending.merge(session, what);
            }
        }
        Ok(())
    }

    /// Brings what this connection keeps up to date with the file, inside a transaction: if another connection
    /// committed since this one last looked, the caches are dropped and the log is read again.
    fn look(&mut self) -> Result<(), StoreError> {
        let version = self.read_data_version()?;
        if version != self.data_version {
            self.reload()?;
            self.data_version = version;
        }
        Ok(())
    }

    /// Writes the log's rows into the tables and empties the log, in one transaction of its own. `Ok(true)` when it
    /// committed (one sync).
    fn fold(&mut self) -> Result<bool, StoreError> {
        // Nothing kept and nobody else wrote: no transaction needed.
        if self.pending.is_empty() && self.read_data_version()? == self.data_version {
            return Ok(false);
        }
        self.run("BEGIN IMMEDIATE")?;
        let folded = self.look().and_then(|()| {
            let any = !self.pending.is_empty();
            if any {
                self.write_pending()?;
            }
            self.run("COMMIT")?;
            Ok(any)
        });
        match folded {
            Ok(any) => {
                if any {
                    self.pending = Pending::default();
                    self.table_max.clear();
                    self.folds += 1;
                }
                self.fold_failed_at = None;
                Ok(any)
            }
            Err(error) => {
                let _ = self.conn.execute_batch("ROLLBACK");
                self.fold_failed_at = Some(self.pending.commits);
                Err(error)
            }
        }
    }

    /// Applies `pending` to the tables inside the open transaction and deletes the log's rows.
    fn write_pending(&self) -> Result<(), StoreError> {
        let conn = &self.conn;
        let pending = &self.pending;
        let mut insert = conn
            .prepare_cached(
                "INSERT INTO inputs (session, id, idempotency_key, record, payload, state, attempts)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )
            .map_err(unavailable)?;
        for ((session, id), input) in &pending.inputs {
            let (state, attempts) = input.state.as_ref().map_or((None, None), |(s, a)| (Some(s.as_str()), Some(*a)));
            insert
                .execute(params![session, id, input.key, input.record, input.payload, state, attempts])
                .map_err(unavailable)?;
        }
        let mut update = conn
            .prepare_cached("UPDATE inputs SET state = ?3, attempts = ?4 WHERE session = ?1 AND id = ?2")
            .map_err(unavailable)?;
        for ((session, id), (state, attempts)) in &pending.updates {
            if update.execute(params![session, id, state, attempts]).map_err(unavailable)? == 0 {
                return Err(StoreError::UnknownInput {
                    session: SessionId(*session as u64),
                    input: InputId(*id as u64),
                });
            }
        }
        let mut receipt = conn
            .prepare_cached("INSERT INTO receipts (session, run, sequence, receipt) VALUES (?1, ?2, ?3, ?4)")
            .map_err(unavailable)?;
        for ((session, run), (sequence, text)) in &pending.receipts {
            receipt.execute(params![session, run, sequence, text]).map_err(unavailable)?;
        }
        // NULL is "unchanged": no commit writes a NULL lifecycle or registry, and a boundary without a snapshot keeps
        // the last one.
        let mut head = conn
            .prepare_cached(
                "INSERT INTO sessions (session, lifecycle, operations, snapshot) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (session) DO UPDATE SET
                 lifecycle = coalesce(excluded.lifecycle, lifecycle),
                 operations = coalesce(excluded.operations, operations),
                 snapshot = coalesce(excluded.snapshot, snapshot)",
            )
            .map_err(unavailable)?;
        for (session, patch) in &pending.sessions {
            head.execute(params![session, patch.lifecycle, patch.operations, patch.snapshot]).map_err(unavailable)?;
        }
        conn.prepare_cached("DELETE FROM log").and_then(|mut s| s.execute([])).map_err(unavailable)?;
        Ok(())
    }

    /// The session's lease row, if it was ever claimed: from what this connection knows, else from the file.
    fn lease_row(&mut self, session: i64) -> Result<Option<LeaseRow>, StoreError> {
        if let Some(row) = self.leases.get(&session) {
            return Ok(*row);
        }
        let row = self.lease_row_in_file(session)?;
        self.leases.insert(session, row);
        Ok(row)
    }

    fn lease_row_in_file(&self, session: i64) -> Result<Option<LeaseRow>, StoreError> {
        let row: Option<(Option<i64>, i64, i64)> = self
            .conn
            .prepare_cached("SELECT owner, epoch, expires_at FROM leases WHERE session = ?1")
            .and_then(|mut s| s.query_row(params![session], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))))
            .optional()
            .map_err(unavailable)?;
        let Some((owner, epoch, expires_at)) = row else { return Ok(None) };
        let read = |v: i64, what: &str| {
            u64::try_from(v).map_err(|_| corrupt(format!("leases(session={session})"), format!("negative {what} {v}")))
        };
        Ok(Some(LeaseRow {
            owner: owner.map(|o| read(o, "owner")).transpose()?.map(HostId),
            epoch: EpochId(read(epoch, "epoch")?),
            expires_at: Millis(read(expires_at, "end")?),
        }))
    }

    /// Whether `table` holds the row of `session` keyed `key`: a key above the session's highest needs no probe.
    fn in_table(&mut self, table: Table, session: i64, key: i64) -> Result<bool, StoreError> {
        let max = match self.table_max.get(&(table, session)) {
            Some(max) => *max,
            None => {
                let max: Option<i64> = self
                    .conn
                    .prepare_cached(table.max_sql())
                    .and_then(|mut s| s.query_row(params![session], |r| r.get(0)))
                    .map_err(unavailable)?;
                let max = max.unwrap_or(i64::MIN);
                self.table_max.insert((table, session), max);
                max
            }
        };
        if key > max {
            return Ok(false);
        }
        self.conn
            .prepare_cached(table.probe_sql())
            .and_then(|mut s| s.exists(params![session, key]))
            .map_err(unavailable)
    }

    /// Whether input `id` of `session` is stored: in this batch, in the log, or in the table.
    fn input_exists(&mut self, session: i64, id: i64) -> Result<bool, StoreError> {
        let key = (session, id);
        if self.batch_inputs.contains(&key)
            || self.pending.inputs.contains_key(&key)
            || self.pending.updates.contains_key(&key)
        {
            return Ok(true);
        }
        self.in_table(Table::Inputs, session, id)
    }

    fn check_rows(&mut self, session: i64, rows: &[Row]) -> Result<(), StoreError> {
        for (id, _, _) in rows {
            if !self.input_exists(session, *id)? {
                return Err(StoreError::UnknownInput {
                    session: SessionId(session as u64),
                    input: InputId(*id as u64),
                });
            }
        }
        Ok(())
    }

    /// Checks `write` against the file and the open batch (fenced by the session's lease row, rows it updates
    /// stored, rows it adds new) and appends it to the batch. A refused write adds nothing.
    fn apply_one(&mut self, write: &Encoded) -> Result<(), StoreError> {
        let session = write.session;
        // specs/lease.md: fenced in the transaction that applies it.
        if let Some(row) = self.lease_row(session)? {
            row.admit_write(write.epoch)?;
        }
        match &write.what {
            Write::Input { id, .. } => {
                if self.input_exists(session, *id)? {
                    return Err(StoreError::unavailable(format!("session {session}: input {id} is already stored")));
                }
                self.batch_inputs.insert((session, *id));
            }
            Write::Boundary { rows, run, .. } => {
                self.check_rows(session, rows)?;
                let key = (session, *run);
                if self.batch_receipts.contains(&key)
                    || self.pending.receipts.contains_key(&key)
                    || self.in_table(Table::Receipts, session, *run)?
                {
                    return Err(StoreError::unavailable(format!("session {session}: run {run} already has a receipt")));
                }
                self.batch_receipts.insert(key);
            }
            Write::Lifecycle { rows, .. } => self.check_rows(session, rows)?,
            Write::Operations { .. } => {}
        }
        let before = self.batch.len();
        log::encode(&mut self.batch, session, &write.what);
        // The batch is one value of SQLite's: a commit that would make it longer than SQLite takes fails alone.
        if self.batch.len() > VALUE_BYTES_MAX {
            let size = self.batch.len() - before;
            self.batch.truncate(before);
            return Err(StoreError::unavailable(format!(
                "session {session}: a commit of {size} bytes does not fit in a batch of the store \
                 (at most {VALUE_BYTES_MAX} bytes)"
            )));
        }
        Ok(())
    }

    fn clear_batch(&mut self) {
        self.batch.clear();
        self.batch_inputs.clear();
        self.batch_receipts.clear();
    }

    fn run(&self, sql: &str) -> Result<(), StoreError> {
        self.conn.prepare_cached(sql).and_then(|mut s| s.execute([])).map(|_| ()).map_err(unavailable)
    }
}

impl Journal for SqliteJournal {
    type Write = Encoded;

    fn begin(&mut self) -> Result<(), StoreError> {
        self.clear_batch();
        // The log in memory has a bound: past twice the fold's, a batch waits for a fold, or fails with its error.
        if self.pending.commits >= 2 * FOLD_COMMITS_MAX || self.pending.bytes >= 2 * FOLD_BYTES_MAX {
            self.fold()?;
        }
        self.run("BEGIN IMMEDIATE")?;
        if let Err(error) = self.look() {
            let _ = self.conn.execute_batch("ROLLBACK");
            return Err(error);
        }
        Ok(())
    }

    fn apply(&mut self, write: &Encoded) -> Result<(), StoreError> {
        self.apply_one(write)
    }

    fn sync(&mut self) -> Result<(), StoreError> {
        // A batch whose every commit was refused writes nothing (and its COMMIT syncs nothing).
        if !self.batch.is_empty() {
            self.conn
                .prepare_cached("INSERT INTO log (body) VALUES (?1)")
                .and_then(|mut s| s.execute(params![self.batch]))
                .map_err(unavailable)?;
        }
        let seq = self.conn.last_insert_rowid();
        // With synchronous=FULL, SQLite syncs the log before COMMIT returns.
        self.run("COMMIT")?;
        // What the file now holds, read back from the bytes it holds: the same decoding a restart uses.
        match log::decode(seq, &self.batch) {
            Ok(commits) => {
                for (session, what) in commits {
                    self.pending.merge(session, what);
                }
            }
            // The batch is durable, so its commits are acknowledged; this connection reads the log again before its
            // next transaction, which then reports the damage.
            Err(_) => self.data_version = -1,
        }
        self.clear_batch();
        Ok(())
    }

    fn abandon(&mut self) {
        self.clear_batch();
        // Nothing of the batch is kept; if the rollback fails too, SQLite has already rolled the transaction back.
        let _ = self.conn.execute_batch("ROLLBACK");
    }

    fn maintain(&mut self) {
        let retry = self.fold_failed_at.is_none_or(|at| self.pending.commits >= at + FOLD_RETRY_COMMITS);
        if retry && (self.pending.commits >= FOLD_COMMITS_MAX || self.pending.bytes >= FOLD_BYTES_MAX) {
            // A fold that fails leaves the log as it was; the next batch, read or close tries again.
            let _ = self.fold();
        }
    }

    fn own_syncs(&mut self) -> u64 {
        std::mem::take(&mut self.folds)
    }
}

impl Drop for SqliteJournal {
    fn drop(&mut self) {
        // A store closed in order leaves no log behind; if this fails, the next open folds it.
        let _ = self.fold();
    }
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
        SqliteStore::open_with(path, SyncMode::Full)
    }

    /// As [`SqliteStore::open`], with the sync mode chosen: [`SyncMode::Normal`] is the relaxed, documented option.
    ///
    /// # Errors
    ///
    /// As [`SqliteStore::open`].
    ///
    /// # Examples
    ///
    /// ```
    /// use burrow::{SqliteStore, SyncMode};
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let path = std::env::temp_dir().join(format!("burrow-doc-sync-{}.db", std::process::id()));
    /// # burrow_env::runtime::block_on_current_thread(async {
    /// let store = SqliteStore::open_with(&path, SyncMode::Normal)?;
    /// assert_eq!(store.sync_mode().await?, SyncMode::Normal);
    /// # drop(store);
    /// # for suffix in ["", "-wal", "-shm"] {
    /// #     let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    /// # }
    /// # Ok(())
    /// # })
    /// # }
    /// ```
    pub fn open_with(path: impl AsRef<Path>, sync: SyncMode) -> Result<SqliteStore, StoreError> {
        let conn = Connection::open(path).map_err(unavailable)?;
        SqliteStore::init(conn, sync)
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
        SqliteStore::init(Connection::open_in_memory().map_err(unavailable)?, SyncMode::Full)
    }

    fn init(mut conn: Connection, sync: SyncMode) -> Result<SqliteStore, StoreError> {
        conn.busy_timeout(std::time::Duration::from_secs(5)).map_err(unavailable)?;
        // journal_mode answers with a row, so it is read rather than executed.
        let _: String = conn.query_row("PRAGMA journal_mode=WAL", [], |row| row.get(0)).map_err(unavailable)?;
        let synchronous = match sync {
            SyncMode::Full => "FULL",
            SyncMode::Normal => "NORMAL",
        };
        // A 64 MiB page cache, and a checkpoint once the log holds 16,384 pages (64 MiB) rather than SQLite's 1,000:
        // the writer touches pages all over the tables (every session has its own rows), and a page rewritten by many
        // batches between two checkpoints is copied into the database once. The cost is a log of up to about 64 MiB
        // to replay when the file is opened after a crash. Measured on W3-like work (1,000 sessions x 200 inputs):
        // 17,700 inputs/s with SQLite's defaults, 26,400 with these.
        conn.execute_batch(&format!(
            "PRAGMA synchronous={synchronous}; PRAGMA foreign_keys=ON; PRAGMA cache_size=-{CACHE_KIB};
             PRAGMA wal_autocheckpoint={CHECKPOINT_PAGES};"
        ))
        .map_err(unavailable)?;
        conn.set_prepared_statement_cache_capacity(32);
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
        Ok(SqliteStore { writer: Writer::start(SqliteJournal::new(conn)?, "burrow-sqlite-writer")? })
    }

    /// The sync mode the connection runs with, as SQLite reports it.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] if SQLite cannot be asked, or answers with a mode this store never sets.
    pub async fn sync_mode(&self) -> Result<SyncMode, StoreError> {
        let level = self
            .writer
            .read(|j: &mut SqliteJournal| {
                j.conn.query_row("PRAGMA synchronous", [], |row| row.get::<_, i64>(0)).map_err(unavailable)
            })
            .await?;
        match level {
            2 => Ok(SyncMode::Full),
            1 => Ok(SyncMode::Normal),
            other => Err(StoreError::unavailable(format!("the store runs with synchronous={other}"))),
        }
    }

    /// What the store's writer did so far: batches synced, commits acknowledged and failed, the largest batch.
    #[must_use]
    pub fn writer_stats(&self) -> WriterStats {
        self.writer.stats()
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
            .prepare("SELECT id, record, payload, state, attempts FROM inputs WHERE session = ?1 ORDER BY id")
            .map_err(unavailable)?;
        let rows = stmt.query_map(params![s], read_input).map_err(unavailable)?;
        for row in rows {
            inputs.push(decode_input(session, row.map_err(unavailable)?)?);
        }
        let mut receipts = Vec::new();
        let mut stmt = conn
            .prepare("SELECT run, receipt FROM receipts WHERE session = ?1 ORDER BY sequence")
            .map_err(unavailable)?;
        let rows =
            stmt.query_map(params![s], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))).map_err(unavailable)?;
        for row in rows {
            let (run, receipt) = row.map_err(unavailable)?;
            receipts.push(decode_receipt(session, run, &receipt)?);
        }
        if head.is_none() && inputs.is_empty() && receipts.is_empty() {
            return Ok(None);
        }
        let (lifecycle, operations, snapshot) = head.unwrap_or((None, None, None));
        let lifecycle = lifecycle.map(|l| decode_lifecycle(session, &l)).transpose()?;
        let operations = operations.map(|o| decode_operations(session, &o)).transpose()?;
        Ok(Some(SessionImage { lifecycle, inputs, receipts, operations, snapshot }))
    }
}

impl SqliteStore {
    /// Queues `write` and waits until it is durable.
    fn queue(&self, write: Result<Encoded, StoreError>) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            let write = write?;
            let bytes = write.what.bytes();
            self.writer.write(write, bytes).await
        })
    }
}

impl Store for SqliteStore {
    fn persist_input<'a>(
        &'a self,
        session: SessionId,
        epoch: EpochId,
        input: &'a InputRecord,
        payload: &'a str,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        self.queue(json(input).map(|record| Encoded {
            session: int(session.0),
            epoch,
            what: Write::Input {
                id: int(input.id.0),
                key: input.spec.idempotency_key.clone(),
                record,
                payload: payload.to_owned(),
            },
        }))
    }

    fn commit_boundary<'a>(
        &'a self,
        session: SessionId,
        epoch: EpochId,
        commit: &'a BoundaryCommit,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        let r = &commit.receipt;
        self.queue(Encoded::rows(&commit.inputs).and_then(|rows| {
            Ok(Encoded {
                session: int(session.0),
                epoch,
                what: Write::Boundary {
                    rows,
                    run: int(r.run.0),
                    sequence: int(r.sequence),
                    receipt: json(r)?,
                    snapshot: commit.snapshot.clone(),
                },
            })
        }))
    }

    fn commit_lifecycle<'a>(
        &'a self,
        session: SessionId,
        epoch: EpochId,
        commit: &'a LifecycleCommit,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        self.queue(Encoded::rows(&commit.inputs).and_then(|rows| {
            Ok(Encoded {
                session: int(session.0),
                epoch,
                what: Write::Lifecycle { rows, lifecycle: json(&commit.lifecycle)? },
            })
        }))
    }

    fn save_operations<'a>(
        &'a self,
        session: SessionId,
        epoch: EpochId,
        operations: &'a OperationsRegistry,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        self.queue(json(operations).map(|operations| Encoded {
            session: int(session.0),
            epoch,
            what: Write::Operations { operations },
        }))
    }

    fn load(&self, session: SessionId) -> BoxFuture<'_, Result<Option<SessionImage>, StoreError>> {
        Box::pin(self.writer.read(move |j: &mut SqliteJournal| {
            j.fold()?;
            SqliteStore::load_sync(&j.conn, session)
        }))
    }

    fn input_by_key<'a>(
        &'a self,
        session: SessionId,
        key: &'a str,
    ) -> BoxFuture<'a, Result<Option<InputRecord>, StoreError>> {
        let key = key.to_owned();
        Box::pin(self.writer.read(move |j: &mut SqliteJournal| {
            j.fold()?;
            let row: Option<RawInput> = j
                .conn
                .prepare_cached(
                    "SELECT id, record, payload, state, attempts FROM inputs
                     WHERE session = ?1 AND idempotency_key = ?2 ORDER BY id DESC LIMIT 1",
                )
                .and_then(|mut s| s.query_row(params![int(session.0), key], read_input))
                .optional()
                .map_err(unavailable)?;
            row.map(|raw| decode_input(session, raw).map(|i| i.record)).transpose()
        }))
    }

    fn load_boundary_receipt(
        &self,
        session: SessionId,
        run: RunId,
    ) -> BoxFuture<'_, Result<Option<BoundaryReceipt>, StoreError>> {
        Box::pin(self.writer.read(move |j: &mut SqliteJournal| {
            j.fold()?;
            let text: Option<String> = j
                .conn
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
        }))
    }

    fn sessions(&self) -> BoxFuture<'_, Result<Vec<SessionId>, StoreError>> {
        Box::pin(self.writer.read(|j: &mut SqliteJournal| {
            j.fold()?;
            let mut stmt = j
                .conn
                .prepare("SELECT session FROM sessions UNION SELECT session FROM inputs ORDER BY 1")
                .map_err(unavailable)?;
            let rows = stmt.query_map([], |r| r.get::<_, i64>(0)).map_err(unavailable)?;
            let mut ids = Vec::new();
            for row in rows {
                let id = row.map_err(unavailable)?;
                ids.push(SessionId(u64::try_from(id).map_err(|_| corrupt("sessions", format!("negative id {id}")))?));
            }
            Ok(ids)
        }))
    }

    fn claim_lease(
        &self,
        session: SessionId,
        host: HostId,
        length_ms: u64,
    ) -> BoxFuture<'_, Result<LeaseRow, StoreError>> {
        self.change_lease(session, move |row, now| row.claim(host, now, length_ms))
    }

    fn renew_lease(
        &self,
        session: SessionId,
        host: HostId,
        epoch: EpochId,
        length_ms: u64,
    ) -> BoxFuture<'_, Result<LeaseRow, StoreError>> {
        self.change_lease(session, move |row, now| row.renew(host, epoch, now, length_ms))
    }

    fn release_lease(
        &self,
        session: SessionId,
        host: HostId,
        epoch: EpochId,
    ) -> BoxFuture<'_, Result<LeaseRow, StoreError>> {
        self.change_lease(session, move |row, _| row.release(host, epoch))
    }

    fn lease(&self, session: SessionId) -> BoxFuture<'_, Result<(Option<LeaseRow>, Millis), StoreError>> {
        Box::pin(
            self.writer.read(move |j: &mut SqliteJournal| Ok((j.lease_row_in_file(int(session.0))?, wall_clock()))),
        )
    }
}

/// The store's clock for leases: the wall clock of the machine the file is on, in milliseconds since 1970. Hosts
/// that share one SQLite file share that machine's clock.
fn wall_clock() -> Millis {
    let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    Millis(u64::try_from(since.as_millis()).unwrap_or(u64::MAX))
}

impl SqliteStore {
    /// Reads the lease row of `session`, applies `change` at the store's time and writes the result, in one
    /// transaction of the writer's own (never inside a batch).
    fn change_lease(
        &self,
        session: SessionId,
        change: impl FnOnce(&LeaseRow, Millis) -> Result<LeaseRow, burrow_core::lease::Fenced> + Send + 'static,
    ) -> BoxFuture<'_, Result<LeaseRow, StoreError>> {
        Box::pin(self.writer.read(move |j: &mut SqliteJournal| {
            let id = int(session.0);
            j.run("BEGIN IMMEDIATE")?;
            let changed = j.lease_row_in_file(id).and_then(|row| Ok(change(&row.unwrap_or_default(), wall_clock())?));
            let written = changed.and_then(|row| {
                j.conn
                    .prepare_cached(
                        "INSERT INTO leases (session, owner, epoch, expires_at) VALUES (?1, ?2, ?3, ?4)
                         ON CONFLICT (session) DO UPDATE SET owner = excluded.owner, epoch = excluded.epoch,
                         expires_at = excluded.expires_at",
                    )
                    .and_then(|mut s| {
                        s.execute(params![id, row.owner.map(|h| int(h.0)), int(row.epoch.0), int(row.expires_at.0)])
                    })
                    .map_err(unavailable)?;
                Ok(row)
            });
            match written.and_then(|row| j.run("COMMIT").map(|()| row)) {
                Ok(row) => {
                    j.leases.insert(id, Some(row));
                    Ok(row)
                }
                Err(error) => {
                    j.abandon();
                    Err(error)
                }
            }
        }))
    }
}
