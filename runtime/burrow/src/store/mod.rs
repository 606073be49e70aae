//! Durable state (SPEC 5): the store trait and the in-memory store.
//!
//! A store keeps, per session: every durable input row with its payload, the committed boundary receipts, the last
//! persisted lifecycle (runtime phase, registration phase, binding), the operations registry and the executor's
//! latest snapshot. Two writes carry the runtime's guarantees: the boundary commit writes the receipt, the input
//! rows and the snapshot together or not at all, and the lifecycle commit writes the phase, binding and changed
//! input rows together. Recovery reads everything back as a [`SessionImage`].

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use burrow_core::ids::{InputId, RunId, SessionId};
use burrow_core::input::InputRecord;
use burrow_core::operations::OperationsRegistry;
use burrow_core::session::{BoundaryReceipt, PersistedLifecycle, RecoveryImage};

use crate::BoxFuture;

mod group;
mod sim;
mod sqlite;

pub use group::{BATCH_BYTES_MAX, BATCH_COMMITS_MAX, QUEUE_DEPTH_MAX, WriterStats};
pub use sim::{SimStore, SimStoreConfig};
pub use sqlite::{SCHEMA_VERSION, SqliteStore, SyncMode};

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
    /// Writes a new durable input row with its payload, before its accept is acknowledged.
    ///
    /// # Errors
    ///
    /// A [`StoreError`] if the write did not happen; the store is then unchanged.
    fn persist_input<'a>(
        &'a self,
        session: SessionId,
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
}

/// A store in process memory. Clones share the same contents, so a test can build a second runtime over the
/// store of the first to play a process restart.
#[derive(Clone, Debug, Default)]
pub struct MemoryStore {
    sessions: Arc<Mutex<BTreeMap<SessionId, Stored>>>,
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
    pub(crate) fn persist_input_now(&self, session: SessionId, input: &InputRecord, payload: &str) {
        self.with(|all| {
            let stored = all.entry(session).or_default();
            if let Some(key) = &input.spec.idempotency_key {
                let newest = stored.keys.entry(key.clone()).or_insert(input.id);
                *newest = (*newest).max(input.id);
            }
            stored.inputs.insert(input.id, StoredInput { record: input.clone(), payload: payload.to_owned() });
        });
    }

    /// Applies a boundary commit now, whole or not at all.
    pub(crate) fn commit_boundary_now(&self, session: SessionId, commit: &BoundaryCommit) -> Result<(), StoreError> {
        self.with(|all| {
            let stored = all.entry(session).or_default();
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
    pub(crate) fn commit_lifecycle_now(&self, session: SessionId, commit: &LifecycleCommit) -> Result<(), StoreError> {
        self.with(|all| {
            let stored = all.entry(session).or_default();
            Self::check_known(session, stored, &commit.inputs)?;
            Self::update_rows(stored, &commit.inputs);
            stored.lifecycle = Some(commit.lifecycle.clone());
            Ok(())
        })
    }

    /// Saves the operations registry now.
    pub(crate) fn save_operations_now(&self, session: SessionId, operations: &OperationsRegistry) {
        self.with(|all| all.entry(session).or_default().operations = Some(operations.clone()));
    }
}

/// The memory store has nothing to sync: each commit is applied whole under one lock, in the order the calls
/// arrive, and is visible to every later read once its call returns.
impl Store for MemoryStore {
    fn persist_input<'a>(
        &'a self,
        session: SessionId,
        input: &'a InputRecord,
        payload: &'a str,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        self.persist_input_now(session, input, payload);
        Box::pin(std::future::ready(Ok(())))
    }

    fn commit_boundary<'a>(
        &'a self,
        session: SessionId,
        commit: &'a BoundaryCommit,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(std::future::ready(self.commit_boundary_now(session, commit)))
    }

    fn commit_lifecycle<'a>(
        &'a self,
        session: SessionId,
        commit: &'a LifecycleCommit,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(std::future::ready(self.commit_lifecycle_now(session, commit)))
    }

    fn save_operations<'a>(
        &'a self,
        session: SessionId,
        operations: &'a OperationsRegistry,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        self.save_operations_now(session, operations);
        Box::pin(std::future::ready(Ok(())))
    }

    fn load(&self, session: SessionId) -> BoxFuture<'_, Result<Option<SessionImage>, StoreError>> {
        let image = self.with(|all| {
            all.get(&session).map(|stored| {
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
        let ids = self.with(|all| all.keys().copied().collect());
        Box::pin(std::future::ready(Ok(ids)))
    }
}
