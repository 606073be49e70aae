//! Rows as a database keeps them: burrow-core's own types as JSON beside the columns that are searched. The SQLite
//! store and stores in other crates (burrow-postgres) encode and validate rows through these, so every store refuses
//! the same impossible rows with the same typed error naming the row.

use burrow_core::ids::SessionId;
use burrow_core::input::{InputRecord, InputState};
use burrow_core::operations::OperationsRegistry;
use burrow_core::session::{BoundaryReceipt, PersistedLifecycle};

use super::{StoreError, StoredInput};

/// An input row as read: id, record JSON, payload, and the state and attempts written since it (NULL until then).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawInput {
    /// The `id` column.
    pub id: i64,
    /// The record as first written (JSON).
    pub record: String,
    /// The payload.
    pub payload: String,
    /// The state written by a later commit (JSON), if any.
    pub state: Option<String>,
    /// The attempts written by a later commit, if any.
    pub attempts: Option<i64>,
}

/// A [`StoreError::Corrupt`] naming `row`.
pub fn corrupt(row: impl Into<String>, message: impl ToString) -> StoreError {
    StoreError::Corrupt { row: row.into(), message: message.to_string() }
}

/// `value` as JSON.
///
/// # Errors
///
/// [`StoreError::Unavailable`] if it cannot be encoded (nothing was written).
pub fn json<T: serde::Serialize>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| StoreError::unavailable(format!("cannot encode a row: {e}")))
}

/// `value` as a database integer (ids never come near the top of the range).
#[must_use]
pub fn int(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// Decodes and validates an input row of `session`: its record must name its own id, its later state and attempts
/// come together, and no state that needs an attempt has none.
///
/// # Errors
///
/// [`StoreError::Corrupt`] naming the row.
pub fn decode_input(session: SessionId, raw: RawInput) -> Result<StoredInput, StoreError> {
    let RawInput { id, record, payload, state, attempts } = raw;
    let row = format!("inputs(session={}, id={id})", session.0);
    let mut record: InputRecord = serde_json::from_str(&record).map_err(|e| corrupt(&row, e))?;
    match (state, attempts) {
        (Some(state), Some(attempts)) => {
            record.state = serde_json::from_str(&state).map_err(|e| corrupt(format!("{row}.state"), e))?;
            record.attempts =
                u32::try_from(attempts).map_err(|_| corrupt(format!("{row}.attempts"), "out of range"))?;
        }
        (None, None) => {}
        _ => return Err(corrupt(row, "a state without its attempts, or attempts without a state")),
    }
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

/// Decodes the receipt row of `run`, which must name that run.
///
/// # Errors
///
/// [`StoreError::Corrupt`] naming the row.
pub fn decode_receipt(session: SessionId, run: i64, text: &str) -> Result<BoundaryReceipt, StoreError> {
    let name = format!("receipts(session={}, run={run})", session.0);
    let receipt: BoundaryReceipt = serde_json::from_str(text).map_err(|e| corrupt(&name, e))?;
    if int(receipt.run.0) != run {
        return Err(corrupt(name, format!("the receipt names run {}", receipt.run)));
    }
    Ok(receipt)
}

/// Decodes a session's lifecycle column.
///
/// # Errors
///
/// [`StoreError::Corrupt`] naming the row.
pub fn decode_lifecycle(session: SessionId, text: &str) -> Result<PersistedLifecycle, StoreError> {
    serde_json::from_str(text).map_err(|e| corrupt(format!("sessions(session={}).lifecycle", session.0), e))
}

/// Decodes a session's operations column and checks the registry's invariants.
///
/// # Errors
///
/// [`StoreError::Corrupt`] naming the row.
pub fn decode_operations(session: SessionId, text: &str) -> Result<OperationsRegistry, StoreError> {
    let name = || format!("sessions(session={}).operations", session.0);
    let registry: OperationsRegistry = serde_json::from_str(text).map_err(|e| corrupt(name(), e))?;
    registry.check().map_err(|v| corrupt(name(), v))?;
    Ok(registry)
}
