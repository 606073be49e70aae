//! burrow's store over a shared PostgreSQL: the [`Store`] trait with leases and epoch-fenced commits, so that a fleet
//! of hosts can share sessions (specs/lease.md).
//!
//! - **One round trip per batch of commits.** Every statement is prepared once per connection. Commits of many
//!   sessions wait in one bounded queue and go out together: BEGIN, each commit's fence and statements, COMMIT, sent
//!   at once (tokio-postgres pipelines requests on one connection) and answered at once. A lone commit pays one round
//!   trip; under load a batch of up to 256 commits shares one round trip and one WAL flush. A commit lands whole or
//!   not at all, and is acknowledged only once the COMMIT that carried it returned; a commit the server refuses is
//!   failed alone and the rest of its batch sent again without it.
//! - **Fenced.** Every commit first calls `burrow_admit(session, epoch)`, which takes the session's lease row FOR
//!   SHARE and refuses any epoch but the row's (a session never claimed takes every write). A stale owner's commit is
//!   a typed [`StoreError::Fenced`] naming the owner, and changes nothing.
//! - **Leases by the server's clock.** Claims, renewals and releases read the row FOR UPDATE with the server's time,
//!   apply burrow-core's own [`LeaseRow`] rules, and write the result, in one transaction: the rules live in one place,
//!   and every host is judged by one clock.
//! - **Validated rows.** Rows are read back through `burrow::store::rows`, the same checks the SQLite store makes.
//! - **Bounded.** A pool of at most [`PostgresConfig::pool_size`] connections; waits for a connection, connects and
//!   every call are bounded, and an unreachable server is a typed [`StoreError::Unavailable`] after
//!   [`PostgresConfig::connect_attempts`] attempts. A commit is never retried: a failure after COMMIT was sent leaves
//!   its fate unknown, which is what an unacknowledged write means to the runtime (it fail-stops the session, and a
//!   restart reads what landed).
//!
//! The schema is created and migrated forward when a store connects, under an advisory lock, so hosts may start
//! together.

mod batch;
mod pool;
mod schema;

use std::sync::Arc;

use burrow::store::rows::{
    RawInput, corrupt, decode_input, decode_lifecycle, decode_operations, decode_receipt, int, json,
};
use burrow::store::{BoundaryCommit, LifecycleCommit, SessionImage, StoredInput};
use burrow::{BoxFuture, EpochId, HostId, InputId, LeaseRow, RunId, SessionId, Store, StoreError};
use burrow_core::ids::Millis;
use burrow_core::input::InputRecord;
use burrow_core::lease::Fenced;
use burrow_core::operations::OperationsRegistry;
use burrow_core::session::BoundaryReceipt;
use burrow_env::time::{Duration, timeout};
use tokio_postgres::types::ToSql;
use tokio_postgres::{NoTls, Row};

pub use schema::SCHEMA_VERSION;

use pool::{Lent, Pool, unavailable};
use schema::{MIGRATION_LOCK, MIGRATIONS, Q};

/// How to reach the server, and the bounds of every wait.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PostgresConfig {
    /// The connection string, e.g. `postgresql://burrow@127.0.0.1:5432/burrow` (key=value form works too).
    pub url: String,
    /// Connections at most.
    pub pool_size: usize,
    /// How long one connection attempt may take (including preparing its statements).
    pub connect_timeout: Duration,
    /// Attempts to open a connection before a call fails as unavailable.
    pub connect_attempts: u32,
    /// How long a call waits for a free connection.
    pub acquire_timeout: Duration,
    /// How long one call may take once it has its connection.
    pub call_timeout: Duration,
}

impl PostgresConfig {
    /// The defaults for `url`: 8 connections, connects of at most 5 s tried 3 times, waits of at most 10 s for a
    /// connection and 30 s for a call.
    #[must_use]
    pub fn new(url: impl Into<String>) -> PostgresConfig {
        PostgresConfig {
            url: url.into(),
            pool_size: 8,
            connect_timeout: Duration::from_secs(5),
            connect_attempts: 3,
            acquire_timeout: Duration::from_secs(10),
            call_timeout: Duration::from_secs(30),
        }
    }
}

/// Makes an empty database `name` on the server `server` names (dropping one of that name first) and returns the
/// address of the new database, for tests, examples and benchmarks that want a store of their own. `name` is
/// lowercase letters, digits and `_`, starting with a letter. In a URL the path is replaced; in key=value form a later
/// `dbname` wins.
///
/// # Errors
///
/// [`StoreError::Unavailable`] if the name is not such an identifier, the server cannot be reached or refuses.
pub async fn scratch_database(server: &str, name: &str) -> Result<String, StoreError> {
    let plain = name.chars().next().is_some_and(|c| c.is_ascii_lowercase())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if !plain || name.len() > 63 {
        return Err(unavailable(format!("{name:?} is not a plain database name")));
    }
    let (client, connection) = tokio_postgres::connect(server, NoTls)
        .await
        .map_err(|e| unavailable(format!("cannot reach PostgreSQL at {server}: {e}")))?;
    let driver = burrow_env::task::spawn(connection);
    // Two statements sent apart: a batch runs as one transaction, and CREATE DATABASE runs outside any.
    let mut made = client.batch_execute(&format!("DROP DATABASE IF EXISTS {name}")).await;
    if made.is_ok() {
        made = client.batch_execute(&format!("CREATE DATABASE {name}")).await;
    }
    drop(client);
    drop(driver.await);
    made.map_err(|e| {
        let detail = e.as_db_error().map_or_else(|| e.to_string(), |db| db.message().to_owned());
        unavailable(format!("cannot make database {name}: {detail}"))
    })?;
    let Some((scheme, rest)) = server.split_once("://") else { return Ok(format!("{server} dbname={name}")) };
    let (rest, query) = rest.split_once('?').map_or((rest, None), |(r, q)| (r, Some(q)));
    let authority = rest.split_once('/').map_or(rest, |(a, _)| a);
    let query = query.map(|q| format!("?{q}")).unwrap_or_default();
    Ok(format!("{scheme}://{authority}/{name}{query}"))
}

/// burrow's store in a PostgreSQL database shared by the hosts of a fleet.
#[derive(Clone)]
pub struct PostgresStore {
    pool: Arc<Pool>,
    call_timeout: Duration,
    batcher: batch::Batcher,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore").finish_non_exhaustive()
    }
}

impl PostgresStore {
    /// Connects, creates or migrates the schema, and returns the store.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] if the server cannot be reached or the migration fails;
    /// [`StoreError::UnsupportedSchema`] if the database was written by a newer schema (nothing is changed).
    pub async fn connect(config: PostgresConfig) -> Result<PostgresStore, StoreError> {
        migrate(&config).await?;
        let call_timeout = config.call_timeout;
        // Half the connections carry batched commits; reads and lease changes always find one.
        let slots = (config.pool_size / 2).max(1);
        let pool = Arc::new(Pool::new(config));
        let batcher = batch::Batcher::start(pool.clone(), slots, call_timeout);
        let store = PostgresStore { pool, call_timeout, batcher };
        // One connection now, so that a bad address fails here rather than at the first write.
        drop(store.pool.get().await?);
        Ok(store)
    }

    /// Runs `call` on a pooled connection, bounded by the call timeout.
    async fn with<T>(&self, call: impl AsyncFnOnce(&Lent<'_>) -> Result<T, StoreError>) -> Result<T, StoreError> {
        let conn = self.pool.get().await?;
        let limit = self.call_timeout;
        timeout(limit, call(&conn))
            .await
            .map_err(|_| unavailable(format!("PostgreSQL did not answer within {} ms", limit.as_millis())))?
    }

    /// Commits landed through this store value (and its clones) so far, and the transactions that carried them: one
    /// round trip each, so their ratio is the batching the load allowed.
    #[must_use]
    pub fn commit_counts(&self) -> (u64, u64) {
        self.batcher.counts()
    }

    /// One fenced commit, landed whole or not at all, in a transaction it may share with other sessions' commits
    /// (see the `batch` module).
    async fn commit(&self, session: SessionId, epoch: EpochId, writes: Vec<(Q, Params)>) -> Result<(), StoreError> {
        match self.batcher.commit(session, epoch, writes).await {
            Ok(()) => Ok(()),
            Err(batch::Failure::Refused(error)) => Err(self.explain(session, epoch, &error).await),
            Err(batch::Failure::Store(error)) => Err(error),
        }
    }

    /// The store error a failed commit means: fenced (with the row that fenced it), an unknown input, or unavailable.
    async fn explain(&self, session: SessionId, epoch: EpochId, error: &tokio_postgres::Error) -> StoreError {
        let code = error.code().map(|c| c.code().to_owned());
        match code.as_deref() {
            Some("BR001") => match self.lease_now(session).await {
                Ok((Some(row), _)) => match row.admit_write(epoch) {
                    Err(fenced) => StoreError::Fenced(fenced),
                    // The row moved on between the refusal and this read: name what the fence saw as best known.
                    Ok(()) => StoreError::Fenced(Fenced { presented: epoch, current: row.epoch, owner: row.owner }),
                },
                Ok((None, _)) => unavailable("fenced by a lease row that is gone"),
                Err(error) => error,
            },
            Some("BR002") => {
                let message = error.as_db_error().map(|d| d.message().to_owned()).unwrap_or_default();
                match message.parse::<u64>() {
                    Ok(id) => StoreError::UnknownInput { session, input: InputId(id) },
                    Err(_) => unavailable(format!("an input row was never written: {message}")),
                }
            }
            _ => unavailable(describe(error)),
        }
    }

    /// The lease row of `session` and the server's time.
    async fn lease_now(&self, session: SessionId) -> Result<(Option<LeaseRow>, Millis), StoreError> {
        let s = int(session.0);
        let row = self.with(async |conn| query_one(conn, Q::LeaseRead, &[&s]).await).await?;
        let now = millis(&row, 3, session)?;
        let owner: Option<i64> = row.get(0);
        let epoch: Option<i64> = row.get(1);
        let Some(epoch) = epoch else { return Ok((None, now)) };
        Ok((Some(lease_row(session, owner, epoch, row.get(2))?), now))
    }

    /// Reads the lease row of `session` FOR UPDATE (creating it, if the change may), applies `change` at the
    /// server's time, and writes the result, in one transaction.
    async fn change_lease(
        &self,
        session: SessionId,
        change: impl FnOnce(&LeaseRow, Millis) -> Result<LeaseRow, Fenced>,
    ) -> Result<LeaseRow, StoreError> {
        let s = int(session.0);
        let decided = self
            .with(async |conn| {
                let key: [&(dyn ToSql + Sync); 1] = [&s];
                let begin = conn.client.execute(conn.st(Q::Begin), &[]);
                let ensure = conn.client.execute(conn.st(Q::LeaseEnsure), &key);
                let lock = conn.client.query_one(conn.st(Q::LeaseLock), &key);
                let (begin, ensure, locked) = futures_util::future::join3(begin, ensure, lock).await;
                let read = begin.and(ensure).and(locked).map_err(|e| unavailable(describe(&e)));
                let decided = read.and_then(|row| {
                    let now = millis(&row, 3, session)?;
                    let current = lease_row(session, row.get(0), row.get(1), row.get(2))?;
                    Ok(change(&current, now)?)
                });
                let Ok(next) = decided else {
                    let _ = conn.client.batch_execute("ROLLBACK").await;
                    return decided;
                };
                let owner = next.owner.map(|h| int(h.0));
                let (epoch, until) = (int(next.epoch.0), int(next.expires_at.0));
                let row: [&(dyn ToSql + Sync); 4] = [&s, &owner, &epoch, &until];
                let put = conn.client.execute(conn.st(Q::LeasePut), &row);
                let commit = conn.client.execute(conn.st(Q::Commit), &[]);
                let (put, commit) = futures_util::future::join(put, commit).await;
                put.and(commit).map(|_| next).map_err(|e| unavailable(describe(&e)))
            })
            .await?;
        Ok(decided)
    }
}

async fn query_one(conn: &Lent<'_>, q: Q, params: &[&(dyn ToSql + Sync)]) -> Result<Row, StoreError> {
    conn.client.query_one(conn.st(q), params).await.map_err(|e| unavailable(describe(&e)))
}

async fn query(conn: &Lent<'_>, q: Q, params: &[&(dyn ToSql + Sync)]) -> Result<Vec<Row>, StoreError> {
    conn.client.query(conn.st(q), params).await.map_err(|e| unavailable(describe(&e)))
}

/// A client error with the server's own message, when it sent one.
fn describe(error: &tokio_postgres::Error) -> String {
    match error.as_db_error() {
        Some(db) => format!("{error}: {} ({})", db.message(), db.code().code()),
        None => error.to_string(),
    }
}

fn millis(row: &Row, column: usize, session: SessionId) -> Result<Millis, StoreError> {
    let value: i64 = row.get(column);
    u64::try_from(value)
        .map(Millis)
        .map_err(|_| corrupt(format!("burrow_leases(session={})", session.0), format!("negative time {value}")))
}

fn lease_row(session: SessionId, owner: Option<i64>, epoch: i64, until: i64) -> Result<LeaseRow, StoreError> {
    let name = || format!("burrow_leases(session={})", session.0);
    let read = |v: i64| u64::try_from(v).map_err(|_| corrupt(name(), format!("negative value {v}")));
    Ok(LeaseRow {
        owner: owner.map(read).transpose()?.map(HostId),
        epoch: EpochId(read(epoch)?),
        expires_at: Millis(read(until)?),
    })
}

fn raw_input(row: &Row) -> RawInput {
    RawInput { id: row.get(0), record: row.get(1), payload: row.get(2), state: row.get(3), attempts: row.get(4) }
}

type Params = Vec<Box<dyn ToSql + Sync + Send>>;

/// The input rows a commit updates, as the arrays `burrow_update_rows` takes.
fn rows_update(session: i64, inputs: &[InputRecord]) -> Result<(Q, Params), StoreError> {
    let ids: Vec<i64> = inputs.iter().map(|r| int(r.id.0)).collect();
    let states = inputs.iter().map(|r| json(&r.state)).collect::<Result<Vec<String>, _>>()?;
    let attempts: Vec<i64> = inputs.iter().map(|r| i64::from(r.attempts)).collect();
    Ok((Q::UpdateRows, vec![Box::new(session), Box::new(ids), Box::new(states), Box::new(attempts)]))
}

/// Creates or migrates the schema on a connection of its own, under an advisory lock.
async fn migrate(config: &PostgresConfig) -> Result<(), StoreError> {
    let limit = config.connect_timeout;
    let (mut client, connection) = timeout(limit, tokio_postgres::connect(&config.url, NoTls))
        .await
        .map_err(|_| unavailable(format!("no answer within {} ms", limit.as_millis())))?
        .map_err(|e| unavailable(format!("cannot connect: {e}")))?;
    let task = burrow_env::task::spawn(async move {
        let _ = connection.await;
    });
    let result = async {
        let tx = client.transaction().await?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK]).await?;
        tx.batch_execute("CREATE TABLE IF NOT EXISTS burrow_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)").await?;
        let found: Option<String> = tx
            .query_opt("SELECT value FROM burrow_meta WHERE key = 'schema_version'", &[])
            .await?
            .map(|row| row.get(0));
        Ok::<_, tokio_postgres::Error>((tx, found))
    }
    .await;
    let (tx, found) = result.map_err(|e| unavailable(format!("cannot read the schema version: {e}")))?;
    let version: u32 = match &found {
        None => 0,
        Some(text) => text
            .parse()
            .map_err(|_| StoreError::UnsupportedSchema { found: text.clone(), supported: SCHEMA_VERSION })?,
    };
    if version > SCHEMA_VERSION {
        return Err(StoreError::UnsupportedSchema { found: version.to_string(), supported: SCHEMA_VERSION });
    }
    let applied = async {
        for (from, migration) in MIGRATIONS.iter().enumerate().skip(version as usize) {
            tx.batch_execute(migration).await?;
            let to = (from + 1).to_string();
            tx.execute(
                "INSERT INTO burrow_meta (key, value) VALUES ('schema_version', $1)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                &[&to],
            )
            .await?;
        }
        tx.commit().await
    }
    .await;
    drop(client);
    drop(task);
    applied.map_err(|e| unavailable(format!("the migration failed: {e}")))
}

impl Store for PostgresStore {
    fn persist_input<'a>(
        &'a self,
        session: SessionId,
        epoch: EpochId,
        input: &'a InputRecord,
        payload: &'a str,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let params: Params = vec![
                Box::new(int(session.0)),
                Box::new(int(input.id.0)),
                Box::new(input.spec.idempotency_key.clone()),
                Box::new(json(input)?),
                Box::new(payload.to_owned()),
            ];
            self.commit(session, epoch, vec![(Q::InsertInput, params)]).await
        })
    }

    fn commit_boundary<'a>(
        &'a self,
        session: SessionId,
        epoch: EpochId,
        commit: &'a BoundaryCommit,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let s = int(session.0);
            let r = &commit.receipt;
            let mut writes = vec![rows_update(s, &commit.inputs)?];
            let receipt: Params =
                vec![Box::new(s), Box::new(int(r.run.0)), Box::new(int(r.sequence)), Box::new(json(r)?)];
            writes.push((Q::InsertReceipt, receipt));
            if let Some(snapshot) = &commit.snapshot {
                writes.push((Q::PutSnapshot, vec![Box::new(s), Box::new(snapshot.clone())]));
            }
            self.commit(session, epoch, writes).await
        })
    }

    fn commit_lifecycle<'a>(
        &'a self,
        session: SessionId,
        epoch: EpochId,
        commit: &'a LifecycleCommit,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let s = int(session.0);
            let writes = vec![
                rows_update(s, &commit.inputs)?,
                (Q::PutLifecycle, vec![Box::new(s), Box::new(json(&commit.lifecycle)?)]),
            ];
            self.commit(session, epoch, writes).await
        })
    }

    fn save_operations<'a>(
        &'a self,
        session: SessionId,
        epoch: EpochId,
        operations: &'a OperationsRegistry,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let params: Params = vec![Box::new(int(session.0)), Box::new(json(operations)?)];
            self.commit(session, epoch, vec![(Q::PutOperations, params)]).await
        })
    }

    fn load(&self, session: SessionId) -> BoxFuture<'_, Result<Option<SessionImage>, StoreError>> {
        Box::pin(async move {
            let s = int(session.0);
            let (head, inputs, receipts) = self
                .with(async |conn| {
                    let key: [&(dyn ToSql + Sync); 1] = [&s];
                    let head = conn.client.query_opt(conn.st(Q::LoadHead), &key);
                    let inputs = query(conn, Q::LoadInputs, &key);
                    let receipts = query(conn, Q::LoadReceipts, &key);
                    let (head, inputs, receipts) = futures_util::future::join3(head, inputs, receipts).await;
                    Ok((head.map_err(|e| unavailable(describe(&e)))?, inputs?, receipts?))
                })
                .await?;
            if head.is_none() && inputs.is_empty() && receipts.is_empty() {
                return Ok(None);
            }
            let inputs = inputs
                .iter()
                .map(|row| decode_input(session, raw_input(row)))
                .collect::<Result<Vec<StoredInput>, _>>()?;
            let receipts = receipts
                .iter()
                .map(|row| decode_receipt(session, row.get(0), row.get::<_, &str>(1)))
                .collect::<Result<Vec<BoundaryReceipt>, _>>()?;
            let (lifecycle, operations, snapshot) = match &head {
                Some(row) => (row.get::<_, Option<&str>>(0), row.get::<_, Option<&str>>(1), row.get(2)),
                None => (None, None, None),
            };
            Ok(Some(SessionImage {
                lifecycle: lifecycle.map(|l| decode_lifecycle(session, l)).transpose()?,
                inputs,
                receipts,
                operations: operations.map(|o| decode_operations(session, o)).transpose()?,
                snapshot,
            }))
        })
    }

    fn input_by_key<'a>(
        &'a self,
        session: SessionId,
        key: &'a str,
    ) -> BoxFuture<'a, Result<Option<InputRecord>, StoreError>> {
        Box::pin(async move {
            let s = int(session.0);
            let row = self
                .with(async |conn| {
                    conn.client.query_opt(conn.st(Q::ByKey), &[&s, &key]).await.map_err(|e| unavailable(describe(&e)))
                })
                .await?;
            row.map(|row| decode_input(session, raw_input(&row)).map(|i| i.record)).transpose()
        })
    }

    fn load_boundary_receipt(
        &self,
        session: SessionId,
        run: RunId,
    ) -> BoxFuture<'_, Result<Option<BoundaryReceipt>, StoreError>> {
        Box::pin(async move {
            let (s, r) = (int(session.0), int(run.0));
            let row = self
                .with(async |conn| {
                    conn.client.query_opt(conn.st(Q::Receipt), &[&s, &r]).await.map_err(|e| unavailable(describe(&e)))
                })
                .await?;
            row.map(|row| decode_receipt(session, r, row.get::<_, &str>(0))).transpose()
        })
    }

    fn sessions(&self) -> BoxFuture<'_, Result<Vec<SessionId>, StoreError>> {
        Box::pin(async move {
            let rows = self.with(async |conn| query(conn, Q::Sessions, &[]).await).await?;
            rows.iter()
                .map(|row| {
                    let id: i64 = row.get(0);
                    u64::try_from(id)
                        .map(SessionId)
                        .map_err(|_| corrupt("burrow_sessions", format!("negative id {id}")))
                })
                .collect()
        })
    }

    fn claim_lease(
        &self,
        session: SessionId,
        host: HostId,
        length_ms: u64,
    ) -> BoxFuture<'_, Result<LeaseRow, StoreError>> {
        Box::pin(self.change_lease(session, move |row, now| row.claim(host, now, length_ms)))
    }

    fn renew_lease(
        &self,
        session: SessionId,
        host: HostId,
        epoch: EpochId,
        length_ms: u64,
    ) -> BoxFuture<'_, Result<LeaseRow, StoreError>> {
        Box::pin(self.change_lease(session, move |row, now| row.renew(host, epoch, now, length_ms)))
    }

    fn release_lease(
        &self,
        session: SessionId,
        host: HostId,
        epoch: EpochId,
    ) -> BoxFuture<'_, Result<LeaseRow, StoreError>> {
        Box::pin(self.change_lease(session, move |row, _| row.release(host, epoch)))
    }

    fn lease(&self, session: SessionId) -> BoxFuture<'_, Result<(Option<LeaseRow>, Millis), StoreError>> {
        Box::pin(self.lease_now(session))
    }
}
