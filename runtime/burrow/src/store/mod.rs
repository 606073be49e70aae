//! Durable state (SPEC 5): the store trait and the in-memory store.
//!
//! A store keeps, per session: every durable input row with its payload, the committed boundary receipts, the last
//! persisted lifecycle (runtime phase, registration phase, binding), the operations registry and the executor's
//! latest snapshot. Two writes carry the runtime's guarantees: the boundary commit writes the receipt, the input
//! rows and the snapshot together or not at all, and the lifecycle commit writes the phase, binding and changed
//! input rows together. Recovery reads everything back as a [`SessionImage`].
//!
//! In a fleet (specs/lease.md) a store also keeps one lease row per session and fences every write: each write names
//! the epoch of its writer, and a session whose lease row is at another epoch refuses it whole
//! ([`StoreError::Fenced`]), in the same step that would have applied it. A session that was never claimed has no
//! lease row and every write is taken, as a single host needs.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use burrow_core::ids::{EpochId, InputId, Millis, RunId, SessionId};
use burrow_core::input::InputRecord;
use burrow_core::lease::{HostId, LeaseRow};
use burrow_core::operations::OperationsRegistry;
use burrow_core::session::{BoundaryReceipt, PersistedLifecycle, RecoveryImage};

use crate::BoxFuture;

mod group;
pub mod rows;
mod sim;
mod sqlite;

pub use group::{BATCH_BYTES_MAX, BATCH_COMMITS_MAX, QUEUE_DEPTH_MAX, WriterStats};
pub use sim::{SimStore, SimStoreConfig};
pub use sqlite::{FOLD_BYTES_MAX, FOLD_COMMITS_MAX, SCHEMA_VERSION, SqliteStore, SyncMode};

/// Why a store call failed. A failed write changed nothing in the store.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The store could not be reached or refused the write.
    #[error("store unavailable: {message}")]
    Unavailable {
        /// What the store said.
        message: String,
    },
    /// A stored row could not be read back.
    #[error("corrupt row {row}: {message}")]
    Corrupt {
        /// Which row.
        row: String,
        /// What was wrong with it.
        message: String,
    },
    /// The database was written by a newer (or unknown) schema; nothing was changed.
    #[error("schema version {found} is not supported (this build knows up to {supported})")]
    UnsupportedSchema {
        /// The version found.
        found: String,
        /// The newest version this build can migrate to.
        supported: u32,
    },
    /// Another host owns the session at a later epoch: the write names an epoch the store's lease row has left
    /// behind, and nothing was changed (specs/lease.md).
    #[error(transparent)]
    Fenced(#[from] burrow_core::lease::Fenced),
    /// The store keeps no leases: it cannot host a fleet.
    #[error("this store keeps no leases")]
    LeasesUnsupported,
    /// A commit updates an input row that was never written.
    #[error("session {session}: input {input} was never persisted")]
    UnknownInput {
        /// The session.
        session: SessionId,
        /// The input.
        input: InputId,
    },
}

impl StoreError {
    /// An unavailable-store error with `message`.
    ///
    /// # Examples
    ///
    /// ```
    /// use burrow::StoreError;
    /// let error = StoreError::unavailable("disk full");
    /// assert_eq!(error, StoreError::Unavailable { message: "disk full".into() });
    /// assert_eq!(error.to_string(), "store unavailable: disk full");
    /// ```
    #[must_use]
    pub fn unavailable(message: impl Into<String>) -> StoreError {
        StoreError::Unavailable { message: message.into() }
    }
}

/// A durable input row and its payload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredInput {
    /// The row.
    pub record: InputRecord,
    /// The payload written with the input.
    pub payload: String,
}

/// The atomic boundary commit: all of it or none of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BoundaryCommit {
    /// The receipt.
    pub receipt: BoundaryReceipt,
    /// The contributing durable inputs in their new state.
    pub inputs: Vec<InputRecord>,
    /// The executor's snapshot, if it gave one.
    pub snapshot: Option<Vec<u8>>,
}

/// The lifecycle commit: phase, registration and binding with the changed input rows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LifecycleCommit {
    /// Phase, registration phase and binding.
    pub lifecycle: PersistedLifecycle,
    /// Changed durable input rows.
    pub inputs: Vec<InputRecord>,
}

/// Everything a store kept about one session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionImage {
    /// The last committed lifecycle, if any was committed.
    pub lifecycle: Option<PersistedLifecycle>,
    /// Every durable input row, in id order.
    pub inputs: Vec<StoredInput>,
    /// Every committed receipt, in sequence order.
    pub receipts: Vec<BoundaryReceipt>,
    /// The last saved operations registry.
    pub operations: Option<OperationsRegistry>,
    /// The executor's last committed snapshot.
    pub snapshot: Option<Vec<u8>>,
}

impl SessionImage {
    /// The image the session machine recovers from. `with_operations` hands over the stored registry (after a
    /// process restart) instead of keeping the live one.
    #[must_use]
    pub fn recovery_image(&self, with_operations: bool) -> RecoveryImage {
        RecoveryImage::from_store(
            self.inputs.iter().map(|i| i.record.clone()).collect(),
            &self.receipts,
            if with_operations { self.operations.clone() } else { None },
        )
    }

    /// The payload of `input`, if stored.
    #[must_use]
    pub fn payload(&self, input: InputId) -> Option<&str> {
        self.inputs.iter().find(|i| i.record.id == input).map(|i| i.payload.as_str())
    }
}

/// Where durable facts live. Every method is one write or one read; a write either happens whole or returns an
/// error and changes nothing.
///
/// The runtime calls these methods; an embedder implements the trait to keep burrow's facts in its own database,
/// and may call the reads to inspect what was kept. [`MemoryStore`], [`SqliteStore`] and [`SimStore`] implement it.
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
/// use burrow::{Input, MemoryStore, Runtime, SessionId, Store};
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # burrow_env::runtime::block_on_current_thread(async {
/// let store = Arc::new(MemoryStore::new());
/// let runtime = Runtime::with_store(store.clone());
/// let session = SessionId(1);
/// runtime.prepare(session).await?;
/// let input = runtime.accept_input(session, Input::prompt("remember me")).await?.input();
///
/// let image = store.load(session).await?.expect("the session was written");
/// assert!(image.lifecycle.is_some(), "the first prepare commits the lifecycle");
/// assert_eq!(image.payload(input), Some("remember me"));
/// assert_eq!(store.sessions().await?, vec![session]);
/// # Ok(())
/// # })
/// # }
/// ```
pub trait Store: Send + Sync + 'static {
    /// Writes a new durable input row with its payload, before its accept is acknowledged. Every write names the
    /// `epoch` of its writer (the session's binding epoch, which in a fleet is its lease's): a session with a lease
    /// row at another epoch refuses it with [`StoreError::Fenced`].
    ///
    /// # Errors
    ///
    /// A [`StoreError`] if the write did not happen; the store is then unchanged.
    fn persist_input<'a>(
        &'a self,
        session: SessionId,
        epoch: EpochId,
        input: &'a InputRecord,
        payload: &'a str,
    ) -> BoxFuture<'a, Result<(), StoreError>>;

    /// The atomic boundary commit: the receipt, the contributing input rows and the snapshot, all or nothing.
    ///
    /// # Errors
    ///
    /// A [`StoreError`] if the write did not happen ([`StoreError::UnknownInput`] when a row updates an input that
    /// was never persisted); the store is then unchanged.
    fn commit_boundary<'a>(
        &'a self,
        session: SessionId,
        epoch: EpochId,
        commit: &'a BoundaryCommit,
    ) -> BoxFuture<'a, Result<(), StoreError>>;

    /// The lifecycle commit: phase, registration phase and binding with the changed input rows, all or nothing.
    ///
    /// # Errors
    ///
    /// A [`StoreError`] if the write did not happen ([`StoreError::UnknownInput`] when a row updates an input that
    /// was never persisted); the store is then unchanged.
    fn commit_lifecycle<'a>(
        &'a self,
        session: SessionId,
        epoch: EpochId,
        commit: &'a LifecycleCommit,
    ) -> BoxFuture<'a, Result<(), StoreError>>;

    /// Saves the operations registry (its ended records and feed survive a restart), replacing the last one saved.
    ///
    /// # Errors
    ///
    /// A [`StoreError`] if the write did not happen; the store is then unchanged.
    fn save_operations<'a>(
        &'a self,
        session: SessionId,
        epoch: EpochId,
        operations: &'a OperationsRegistry,
    ) -> BoxFuture<'a, Result<(), StoreError>>;

    /// Reads everything kept about `session`, or `None` if nothing was ever written.
    ///
    /// # Errors
    ///
    /// A [`StoreError`] if the store cannot be read, or [`StoreError::Corrupt`] naming a row that cannot be decoded.
    fn load(&self, session: SessionId) -> BoxFuture<'_, Result<Option<SessionImage>, StoreError>>;

    /// Reads the row of the input of `session` that holds idempotency key `key` (the newest, if several rows do),
    /// or `None` if no row has it. The runtime reads it before admitting a key its memory may have forgotten, so
    /// that a duplicate of any key the store holds is deduplicated, after a restart too (specs/input.md#recall).
    ///
    /// # Errors
    ///
    /// As [`Store::load`].
    fn input_by_key<'a>(
        &'a self,
        session: SessionId,
        key: &'a str,
    ) -> BoxFuture<'a, Result<Option<InputRecord>, StoreError>>;

    /// Reads the committed receipt of `run`, or `None` if none was committed.
    ///
    /// # Errors
    ///
    /// As [`Store::load`].
    fn load_boundary_receipt(
        &self,
        session: SessionId,
        run: RunId,
    ) -> BoxFuture<'_, Result<Option<BoundaryReceipt>, StoreError>>;

    /// Every session with stored state, in id order.
    ///
    /// # Errors
    ///
    /// As [`Store::load`].
    fn sessions(&self) -> BoxFuture<'_, Result<Vec<SessionId>, StoreError>>;

    /// `host` claims `session` for `length_ms` of the store's time ([`LeaseRow::claim`]): granted over a session with
    /// no live owner, at the next epoch.
    ///
    /// # Errors
    ///
    /// [`StoreError::Fenced`] naming the live owner; [`StoreError::LeasesUnsupported`] from a store that keeps none;
    /// as [`Store::load`].
    fn claim_lease(
        &self,
        session: SessionId,
        host: HostId,
        length_ms: u64,
    ) -> BoxFuture<'_, Result<LeaseRow, StoreError>> {
        let _ = (session, host, length_ms);
        Box::pin(std::future::ready(Err(StoreError::LeasesUnsupported)))
    }

    /// The owner at `epoch` extends its lease to `length_ms` from now ([`LeaseRow::renew`]).
    ///
    /// # Errors
    ///
    /// [`StoreError::Fenced`] if `host` is not the owner at `epoch` or the lease already ended; as
    /// [`Store::claim_lease`].
    fn renew_lease(
        &self,
        session: SessionId,
        host: HostId,
        epoch: EpochId,
        length_ms: u64,
    ) -> BoxFuture<'_, Result<LeaseRow, StoreError>> {
        let _ = (session, host, epoch, length_ms);
        Box::pin(std::future::ready(Err(StoreError::LeasesUnsupported)))
    }

    /// The owner at `epoch` lets the session go ([`LeaseRow::release`]): another host may claim it at once.
    ///
    /// # Errors
    ///
    /// [`StoreError::Fenced`] if `host` is not the owner at `epoch`; as [`Store::claim_lease`].
    fn release_lease(
        &self,
        session: SessionId,
        host: HostId,
        epoch: EpochId,
    ) -> BoxFuture<'_, Result<LeaseRow, StoreError>> {
        let _ = (session, host, epoch);
        Box::pin(std::future::ready(Err(StoreError::LeasesUnsupported)))
    }

    /// The lease row of `session` and the store's time now, or `None` for the row if it was never claimed.
    ///
    /// # Errors
    ///
    /// As [`Store::claim_lease`].
    fn lease(&self, session: SessionId) -> BoxFuture<'_, Result<(Option<LeaseRow>, Millis), StoreError>> {
        let _ = session;
        Box::pin(std::future::ready(Err(StoreError::LeasesUnsupported)))
    }
}

#[derive(Clone, Debug, Default)]
struct Stored {
    lifecycle: Option<PersistedLifecycle>,
    inputs: BTreeMap<InputId, StoredInput>,
    /// The newest input row holding each idempotency key.
    keys: BTreeMap<String, InputId>,
    receipts: BTreeMap<RunId, BoundaryReceipt>,
    operations: Option<OperationsRegistry>,
    snapshot: Option<Vec<u8>>,
    /// The session's lease row, once it was claimed.
    lease: Option<LeaseRow>,
}

impl Stored {
    /// Whether anything but a lease row is kept (a session only ever claimed has no stored state).
    fn holds_state(&self) -> bool {
        self.lifecycle.is_some()
            || !self.inputs.is_empty()
            || !self.receipts.is_empty()
            || self.operations.is_some()
            || self.snapshot.is_some()
    }

    /// specs/lease.md: a write lands only at the lease row's epoch (any epoch, for a session never claimed).
    fn admit(&self, epoch: EpochId) -> Result<(), StoreError> {
        match &self.lease {
            Some(row) => Ok(row.admit_write(epoch)?),
            None => Ok(()),
        }
    }
}

/// A store in process memory. Clones share the same contents, so a test can build a second runtime over the
/// store of the first to play a process restart.
#[derive(Clone, Debug, Default)]
pub struct MemoryStore {
    sessions: Arc<Mutex<BTreeMap<SessionId, Stored>>>,
    /// The origin of the store's clock, which leases are reckoned by (the first lease call sets it).
    origin: Arc<std::sync::OnceLock<burrow_env::time::Instant>>,
}

impl MemoryStore {
    /// An empty store.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::Arc;
    /// use burrow::{MemoryStore, Runtime, SessionId, Store};
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # burrow_env::runtime::block_on_current_thread(async {
    /// let store = MemoryStore::new();
    /// let runtime = Runtime::with_store(Arc::new(store.clone()));
    /// runtime.prepare(SessionId(1)).await?;
    /// assert_eq!(store.sessions().await?, vec![SessionId(1)], "clones share the contents");
    /// # Ok(())
    /// # })
    /// # }
    /// ```
    #[must_use]
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }

    fn with<T>(&self, f: impl FnOnce(&mut BTreeMap<SessionId, Stored>) -> T) -> T {
        // A panic while holding this lock can only come from a bug in this file; the data is still whole (every
        // write below validates before it mutates), so a poisoned lock is taken over rather than propagated.
        let mut guard = self.sessions.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&mut guard)
    }

    fn check_known(session: SessionId, stored: &Stored, rows: &[InputRecord]) -> Result<(), StoreError> {
        for row in rows {
            if !stored.inputs.contains_key(&row.id) {
                return Err(StoreError::UnknownInput { session, input: row.id });
            }
        }
        Ok(())
    }

    fn update_rows(stored: &mut Stored, rows: &[InputRecord]) {
        for row in rows {
            let slot = stored.inputs.get_mut(&row.id).expect("checked before any write");
            slot.record = row.clone();
        }
    }
}

impl MemoryStore {
    /// Writes an input row now.
    pub(crate) fn persist_input_now(
        &self,
        session: SessionId,
        epoch: EpochId,
        input: &InputRecord,
        payload: &str,
    ) -> Result<(), StoreError> {
        self.with(|all| {
            let stored = all.entry(session).or_default();
            stored.admit(epoch)?;
            if let Some(key) = &input.spec.idempotency_key {
                let newest = stored.keys.entry(key.clone()).or_insert(input.id);
                *newest = (*newest).max(input.id);
            }
            stored.inputs.insert(input.id, StoredInput { record: input.clone(), payload: payload.to_owned() });
            Ok(())
        })
    }

    /// Applies a boundary commit now, whole or not at all.
    pub(crate) fn commit_boundary_now(
        &self,
        session: SessionId,
        epoch: EpochId,
        commit: &BoundaryCommit,
    ) -> Result<(), StoreError> {
        self.with(|all| {
            let stored = all.entry(session).or_default();
            stored.admit(epoch)?;
            Self::check_known(session, stored, &commit.inputs)?;
            Self::update_rows(stored, &commit.inputs);
            stored.receipts.insert(commit.receipt.run, commit.receipt.clone());
            if let Some(snapshot) = &commit.snapshot {
                stored.snapshot = Some(snapshot.clone());
            }
            Ok(())
        })
    }

    /// Applies a lifecycle commit now, whole or not at all.
    pub(crate) fn commit_lifecycle_now(
        &self,
        session: SessionId,
        epoch: EpochId,
        commit: &LifecycleCommit,
    ) -> Result<(), StoreError> {
        self.with(|all| {
            let stored = all.entry(session).or_default();
            stored.admit(epoch)?;
            Self::check_known(session, stored, &commit.inputs)?;
            Self::update_rows(stored, &commit.inputs);
            stored.lifecycle = Some(commit.lifecycle.clone());
            Ok(())
        })
    }

    /// Saves the operations registry now.
    pub(crate) fn save_operations_now(
        &self,
        session: SessionId,
        epoch: EpochId,
        operations: &OperationsRegistry,
    ) -> Result<(), StoreError> {
        self.with(|all| {
            let stored = all.entry(session).or_default();
            stored.admit(epoch)?;
            stored.operations = Some(operations.clone());
            Ok(())
        })
    }

    /// The store's clock: milliseconds since its first lease call.
    pub(crate) fn store_now(&self) -> Millis {
        let origin = *self.origin.get_or_init(burrow_env::time::Instant::now);
        let elapsed = burrow_env::time::Instant::now().duration_since(origin);
        Millis(u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX))
    }

    /// Applies `change` to the lease row of `session` (the default row if it has none) at the store's time now.
    pub(crate) fn lease_now(
        &self,
        session: SessionId,
        change: impl FnOnce(&LeaseRow, Millis) -> Result<LeaseRow, burrow_core::lease::Fenced>,
    ) -> Result<LeaseRow, StoreError> {
        let now = self.store_now();
        self.with(|all| {
            let stored = all.entry(session).or_default();
            let row = change(&stored.lease.unwrap_or_default(), now)?;
            stored.lease = Some(row);
            Ok(row)
        })
    }

    /// The lease row of `session`, if it was ever claimed, and the store's time.
    pub(crate) fn lease_row(&self, session: SessionId) -> (Option<LeaseRow>, Millis) {
        let now = self.store_now();
        (self.with(|all| all.get(&session).and_then(|s| s.lease)), now)
    }
}

/// The memory store has nothing to sync: each commit is applied whole under one lock, in the order the calls
/// arrive, and is visible to every later read once its call returns.
impl Store for MemoryStore {
    fn persist_input<'a>(
        &'a self,
        session: SessionId,
        epoch: EpochId,
        input: &'a InputRecord,
        payload: &'a str,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(std::future::ready(self.persist_input_now(session, epoch, input, payload)))
    }

    fn commit_boundary<'a>(
        &'a self,
        session: SessionId,
        epoch: EpochId,
        commit: &'a BoundaryCommit,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(std::future::ready(self.commit_boundary_now(session, epoch, commit)))
    }

    fn commit_lifecycle<'a>(
        &'a self,
        session: SessionId,
        epoch: EpochId,
        commit: &'a LifecycleCommit,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(std::future::ready(self.commit_lifecycle_now(session, epoch, commit)))
    }

    fn save_operations<'a>(
        &'a self,
        session: SessionId,
        epoch: EpochId,
        operations: &'a OperationsRegistry,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(std::future::ready(self.save_operations_now(session, epoch, operations)))
    }

    fn load(&self, session: SessionId) -> BoxFuture<'_, Result<Option<SessionImage>, StoreError>> {
        let image = self.with(|all| {
            all.get(&session).filter(|stored| stored.holds_state()).map(|stored| {
                let mut receipts: Vec<BoundaryReceipt> = stored.receipts.values().cloned().collect();
                receipts.sort_by_key(|r| r.sequence);
                SessionImage {
                    lifecycle: stored.lifecycle.clone(),
                    inputs: stored.inputs.values().cloned().collect(),
                    receipts,
                    operations: stored.operations.clone(),
                    snapshot: stored.snapshot.clone(),
                }
            })
        });
        Box::pin(std::future::ready(Ok(image)))
    }

    fn input_by_key<'a>(
        &'a self,
        session: SessionId,
        key: &'a str,
    ) -> BoxFuture<'a, Result<Option<InputRecord>, StoreError>> {
        let row = self.with(|all| {
            let stored = all.get(&session)?;
            stored.keys.get(key).map(|id| stored.inputs[id].record.clone())
        });
        Box::pin(std::future::ready(Ok(row)))
    }

    fn load_boundary_receipt(
        &self,
        session: SessionId,
        run: RunId,
    ) -> BoxFuture<'_, Result<Option<BoundaryReceipt>, StoreError>> {
        let receipt = self.with(|all| all.get(&session).and_then(|s| s.receipts.get(&run).cloned()));
        Box::pin(std::future::ready(Ok(receipt)))
    }

    fn sessions(&self) -> BoxFuture<'_, Result<Vec<SessionId>, StoreError>> {
        let ids = self.with(|all| all.iter().filter(|(_, s)| s.holds_state()).map(|(id, _)| *id).collect());
        Box::pin(std::future::ready(Ok(ids)))
    }

    fn claim_lease(
        &self,
        session: SessionId,
        host: HostId,
        length_ms: u64,
    ) -> BoxFuture<'_, Result<LeaseRow, StoreError>> {
        Box::pin(std::future::ready(self.lease_now(session, |row, now| row.claim(host, now, length_ms))))
    }

    fn renew_lease(
        &self,
        session: SessionId,
        host: HostId,
        epoch: EpochId,
        length_ms: u64,
    ) -> BoxFuture<'_, Result<LeaseRow, StoreError>> {
        Box::pin(std::future::ready(self.lease_now(session, |row, now| row.renew(host, epoch, now, length_ms))))
    }

    fn release_lease(
        &self,
        session: SessionId,
        host: HostId,
        epoch: EpochId,
    ) -> BoxFuture<'_, Result<LeaseRow, StoreError>> {
        Box::pin(std::future::ready(self.lease_now(session, |row, _| row.release(host, epoch))))
    }

    fn lease(&self, session: SessionId) -> BoxFuture<'_, Result<(Option<LeaseRow>, Millis), StoreError>> {
        Box::pin(std::future::ready(Ok(self.lease_row(session))))
    }
}
