//! The input ledger and its two lanes (SPEC 2.2).
//!
//! The ledger holds every non-terminal input of a session plus a bounded
//! history of recent terminal ones. Terminal inputs leave live state at once,
//! so the cost of an accept or a run does not grow with a session's history:
//! live state is bounded by non-terminal work.
//!
//! spec: specs/input.md

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use serde::{Deserialize, Serialize};

use crate::idmap::IdMap;
use crate::ids::{InputId, Millis, RunId};

/// Attempts an input gets before it is abandoned (default).
pub const MAX_ATTEMPTS_DEFAULT: u32 = 3;
/// Most non-terminal inputs a session holds; admission past it is refused.
pub const INPUTS_ACTIVE_MAX: usize = 4_096;
/// Most inputs staged into one run.
pub const BATCH_INPUTS_MAX: usize = 16;
/// Recent terminal inputs kept for `input_state` and dedup of terminal keys (default; see
/// [`Ledger::with_history`]). An older terminal input's key is recalled from the store (specs/input.md#recall).
pub const TERMINAL_HISTORY_MAX: usize = 1_024;
/// Keys recalled from the store that a ledger keeps: a recall is asked for just before the accept it serves, so a
/// few suffice; an evicted one is recalled again when it is next used.
pub const RECALLED_KEYS_MAX: usize = 16;
/// Longest idempotency or supersession key, in bytes.
pub const KEY_LEN_MAX: usize = 256;
/// Longest peer-request intent, in bytes.
pub const INTENT_LEN_MAX: usize = 128;
/// Longest request id of a peer response, in bytes.
pub const REQUEST_LEN_MAX: usize = 128;

/// What an input is; its kind decides its admission policy.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum InputKind {
    /// A user prompt.
    Prompt,
    /// An event from outside the session.
    ExternalEvent,
    /// A step of a scripted flow.
    FlowStep,
    /// A message from a peer.
    PeerMessage,
    /// A request from a peer, with its intent.
    PeerRequest {
        /// The request's intent; silent intents queue without waking.
        intent: String,
    },
    /// Progress of a peer's response to `request`; a newer one coalesces an older pending one of the same request.
    PeerResponseProgress {
        /// The request it answers (non-empty, at most [`REQUEST_LEN_MAX`] bytes).
        request: String,
    },
    /// The terminal reply to `request`: it supersedes every pending progress of the same request
    /// (specs/input.md#peer-responses).
    PeerResponseTerminal {
        /// The request it answers (non-empty, at most [`REQUEST_LEN_MAX`] bytes).
        request: String,
    },
    /// Resumes the session at a boundary (e.g. after a background operation).
    Continuation,
    /// Records an operation; consumed on accept, never run.
    Operation,
}

impl InputKind {
    /// A short stable name (used in tables, traces and stores).
    #[must_use]
    pub fn name(&self) -> &'static str {
        match self {
            InputKind::Prompt => "Prompt",
            InputKind::ExternalEvent => "ExternalEvent",
            InputKind::FlowStep => "FlowStep",
            InputKind::PeerMessage => "PeerMessage",
            InputKind::PeerRequest { .. } => "PeerRequest",
            InputKind::PeerResponseProgress { .. } => "PeerResponseProgress",
            InputKind::PeerResponseTerminal { .. } => "PeerResponseTerminal",
            InputKind::Continuation => "Continuation",
            InputKind::Operation => "Operation",
        }
    }

    /// One representative of every kind (for tables and exhaustive tests).
    #[must_use]
    pub fn representatives() -> Vec<InputKind> {
        vec![
            InputKind::Prompt,
            InputKind::ExternalEvent,
            InputKind::FlowStep,
            InputKind::PeerMessage,
            InputKind::PeerRequest { intent: "ask".into() },
            InputKind::PeerResponseProgress { request: "r1".into() },
            InputKind::PeerResponseTerminal { request: "r1".into() },
            InputKind::Continuation,
            InputKind::Operation,
        ]
    }
}

/// Which lane an input waits in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Lane {
    /// FIFO work, one input per run.
    Queue,
    /// Priority work applied at the next run boundary, all pending steer
    /// inputs together, before anything in the queue lane.
    Steer,
}

/// Whether an input survives a restart.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Durability {
    /// Persisted before the accept is acknowledged; recovered after a crash.
    Durable,
    /// Kept in memory only; dropped by recovery.
    Ephemeral,
    /// Made from a source that can make it again (a feed, an event log): persisted before the accept is
    /// acknowledged, like Durable, so its id, key and end are known after a restart; but recovery does not replay
    /// it. One that ran to a committed boundary is consumed as usual; any other live one ends Abandoned(Rederived),
    /// and its source derives it again if it is still wanted (specs/input.md#derived). Not for kinds a person or a
    /// peer authored.
    Derived,
}

impl Durability {
    /// Whether the store keeps the input's row (Durable and Derived).
    #[must_use]
    pub fn is_persisted(self) -> bool {
        !matches!(self, Durability::Ephemeral)
    }
}

/// Whether `kind` may be Derived: only kinds a source can make again (an external event, a continuation, an
/// operation record, a peer's progress report); never a prompt, a flow step, or a peer's message, request or final
/// reply, which someone authored once.
#[must_use]
pub fn derivable(kind: &InputKind) -> bool {
    matches!(
        kind,
        InputKind::ExternalEvent
            | InputKind::Continuation
            | InputKind::Operation
            | InputKind::PeerResponseProgress { .. }
    )
}

/// How an accepted input is handled, derived from its kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct AdmissionPolicy {
    /// The lane it waits in; None when it is consumed on accept.
    pub lane: Option<Lane>,
    /// Whether accepting it wakes the loop.
    pub wakes: bool,
    /// Whether a newer pending input of this kind coalesces an older one.
    pub coalesces: bool,
    /// Whether a supersession key is allowed.
    pub supersedable: bool,
}

/// The admission policy of `kind` (SPEC 2.2); `silent` tells whether a peer
/// request's intent is in the session's silent list.
#[must_use]
pub fn admission_policy(kind: &InputKind, silent: bool) -> AdmissionPolicy {
    let queued = AdmissionPolicy { lane: Some(Lane::Queue), wakes: true, coalesces: false, supersedable: true };
    match kind {
        InputKind::Prompt | InputKind::ExternalEvent | InputKind::FlowStep | InputKind::PeerMessage => queued,
        InputKind::PeerRequest { .. } => AdmissionPolicy { wakes: !silent, ..queued },
        InputKind::PeerResponseProgress { .. } => AdmissionPolicy { coalesces: true, supersedable: false, ..queued },
        InputKind::PeerResponseTerminal { .. } => AdmissionPolicy { supersedable: false, ..queued },
        InputKind::Continuation => {
            AdmissionPolicy { lane: Some(Lane::Steer), wakes: true, coalesces: false, supersedable: false }
        }
        InputKind::Operation => AdmissionPolicy { lane: None, wakes: false, coalesces: false, supersedable: false },
    }
}

/// The kind whose pending inputs an accepted input of `kind` supersedes, whatever their supersession key: a peer
/// response's terminal reply ends the pending progress of its request (specs/input.md#peer-responses).
#[must_use]
pub fn supersedes_pending(kind: &InputKind) -> Option<InputKind> {
    match kind {
        InputKind::PeerResponseTerminal { request } => {
            Some(InputKind::PeerResponseProgress { request: request.clone() })
        }
        _ => None,
    }
}

/// What a caller submits (the payload itself stays in the shell).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct InputSpec {
    /// The kind.
    pub kind: InputKind,
    /// Durable or ephemeral.
    pub durability: Durability,
    /// Dedup key: a second input with the key of a known input is deduplicated.
    pub idempotency_key: Option<String>,
    /// Supersession key: replaces a pending input of the same kind and key.
    pub supersession_key: Option<String>,
    /// Puts a queue-lane kind into the steer lane (a steering message).
    pub steer: bool,
}

impl InputSpec {
    /// A durable input of `kind` with no keys.
    #[must_use]
    pub fn new(kind: InputKind) -> Self {
        InputSpec { kind, durability: Durability::Durable, idempotency_key: None, supersession_key: None, steer: false }
    }

    /// Sets the durability.
    #[must_use]
    pub fn durability(mut self, durability: Durability) -> Self {
        self.durability = durability;
        self
    }

    /// Sets the idempotency key.
    #[must_use]
    pub fn idempotency_key(mut self, key: impl Into<String>) -> Self {
        self.idempotency_key = Some(key.into());
        self
    }

    /// Sets the supersession key.
    #[must_use]
    pub fn supersession_key(mut self, key: impl Into<String>) -> Self {
        self.supersession_key = Some(key.into());
        self
    }

    /// Routes the input to the steer lane.
    #[must_use]
    pub fn steer(mut self) -> Self {
        self.steer = true;
        self
    }

    /// Checks the spec on its own (SPEC 3: bad input gets a typed error).
    pub fn validate(&self) -> Result<(), InputValidation> {
        for (field, key) in [("idempotency key", &self.idempotency_key), ("supersession key", &self.supersession_key)] {
            if let Some(key) = key {
                if key.is_empty() {
                    return Err(InputValidation::EmptyKey { field });
                }
                if key.len() > KEY_LEN_MAX {
                    return Err(InputValidation::KeyTooLong { field, len: key.len(), max: KEY_LEN_MAX });
                }
            }
        }
        if let InputKind::PeerRequest { intent } = &self.kind {
            if intent.is_empty() {
                return Err(InputValidation::EmptyIntent);
            }
            if intent.len() > INTENT_LEN_MAX {
                return Err(InputValidation::IntentTooLong { len: intent.len(), max: INTENT_LEN_MAX });
            }
        }
        if let InputKind::PeerResponseProgress { request } | InputKind::PeerResponseTerminal { request } = &self.kind {
            if request.is_empty() {
                return Err(InputValidation::EmptyRequest);
            }
            if request.len() > REQUEST_LEN_MAX {
                return Err(InputValidation::RequestTooLong { len: request.len(), max: REQUEST_LEN_MAX });
            }
        }
        if self.durability == Durability::Derived && !derivable(&self.kind) {
            return Err(InputValidation::DerivedNotAllowed { kind: self.kind.name() });
        }
        let policy = admission_policy(&self.kind, false);
        if self.supersession_key.is_some() && !policy.supersedable {
            return Err(InputValidation::SupersessionNotAllowed { kind: self.kind.name() });
        }
        if self.steer && policy.lane != Some(Lane::Queue) {
            return Err(InputValidation::SteerNotAllowed { kind: self.kind.name() });
        }
        Ok(())
    }

    /// The lane this input waits in, if any.
    #[must_use]
    pub fn lane(&self) -> Option<Lane> {
        let lane = admission_policy(&self.kind, false).lane?;
        Some(if self.steer { Lane::Steer } else { lane })
    }
}

/// A spec that can never be admitted, whatever the session's state.
#[derive(Clone, Debug, PartialEq, Eq, Hash, thiserror::Error)]
pub enum InputValidation {
    /// A key was empty.
    #[error("the {field} is empty")]
    EmptyKey {
        /// Which key.
        field: &'static str,
    },
    /// A key was too long.
    #[error("the {field} is {len} bytes, the limit is {max}")]
    KeyTooLong {
        /// Which key.
        field: &'static str,
        /// Its length.
        len: usize,
        /// The bound.
        max: usize,
    },
    /// A peer request had no intent.
    #[error("a peer request needs an intent")]
    EmptyIntent,
    /// A peer request's intent was too long.
    #[error("the intent is {len} bytes, the limit is {max}")]
    IntentTooLong {
        /// Its length.
        len: usize,
        /// The bound.
        max: usize,
    },
    /// A peer response named no request.
    #[error("a peer response needs the id of the request it answers")]
    EmptyRequest,
    /// The kind cannot be Derived: someone authored it once, and nothing could make it again.
    #[error("{kind} inputs cannot be derived")]
    DerivedNotAllowed {
        /// The kind.
        kind: &'static str,
    },
    /// A peer response's request id was too long.
    #[error("the request id is {len} bytes, the limit is {max}")]
    RequestTooLong {
        /// Its length.
        len: usize,
        /// The bound.
        max: usize,
    },
    /// The kind cannot be superseded.
    #[error("{kind} inputs cannot carry a supersession key")]
    SupersessionNotAllowed {
        /// The kind's name.
        kind: &'static str,
    },
    /// The kind cannot be routed to the steer lane.
    #[error("{kind} inputs cannot be sent as steering")]
    SteerNotAllowed {
        /// The kind's name.
        kind: &'static str,
    },
}

/// Why an input was abandoned.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum AbandonReason {
    /// Queued when the session retired with no executor to drain it.
    Retired,
    /// The session was reset.
    Reset,
    /// The session was stopped.
    Stopped,
    /// The session was destroyed.
    Destroyed,
    /// Its run was interrupted.
    Cancelled,
    /// It failed in as many runs as it may.
    MaxAttemptsExhausted {
        /// How many attempts it had.
        attempts: u32,
    },
    /// Its run was prepared but never handed to the executor.
    NeverExecuted,
    /// Derived, and found live by a recovery, which does not replay it: its source makes it again if it is still
    /// wanted (specs/input.md#derived).
    Rederived,
}

impl AbandonReason {
    /// A short stable name.
    #[must_use]
    pub fn name(&self) -> &'static str {
        match self {
            AbandonReason::Retired => "retired",
            AbandonReason::Reset => "reset",
            AbandonReason::Stopped => "stopped",
            AbandonReason::Destroyed => "destroyed",
            AbandonReason::Cancelled => "cancelled",
            AbandonReason::MaxAttemptsExhausted { .. } => "max attempts exhausted",
            AbandonReason::NeverExecuted => "never executed",
            AbandonReason::Rederived => "left to be derived again",
        }
    }
}

/// Where an input is in its lifecycle.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum InputState {
    /// Waiting in a lane.
    Queued,
    /// Part of a run that has not produced output yet.
    Staged {
        /// The run.
        run: RunId,
    },
    /// Its run produced output; the boundary commit is pending.
    Applied {
        /// The run.
        run: RunId,
    },
    /// Its boundary is committed; it is consumed when the run is recorded as ended.
    AppliedPendingConsumption {
        /// The run.
        run: RunId,
    },
    /// Terminal: consumed.
    Consumed,
    /// Terminal: replaced by a newer input with the same kind and supersession key.
    Superseded {
        /// The newer input.
        by: InputId,
    },
    /// Terminal: merged into a newer input of a coalescing kind.
    Coalesced {
        /// The newer input.
        into: InputId,
    },
    /// Terminal: abandoned.
    Abandoned(AbandonReason),
}

impl InputState {
    /// Whether the state is terminal (absorbing).
    #[must_use]
    pub fn is_terminal(&self) -> bool {
        matches!(
            self,
            InputState::Consumed
                | InputState::Superseded { .. }
                | InputState::Coalesced { .. }
                | InputState::Abandoned(_)
        )
    }

    /// The run the input belongs to, if it is in one.
    #[must_use]
    pub fn run(&self) -> Option<RunId> {
        match self {
            InputState::Staged { run }
            | InputState::Applied { run }
            | InputState::AppliedPendingConsumption { run } => Some(*run),
            _ => None,
        }
    }

    /// A short label (tables, traces).
    #[must_use]
    pub fn label(&self) -> String {
        match self {
            InputState::Queued => "Queued".into(),
            InputState::Staged { run } => format!("Staged({run})"),
            InputState::Applied { run } => format!("Applied({run})"),
            InputState::AppliedPendingConsumption { run } => format!("AppliedPendingConsumption({run})"),
            InputState::Consumed => "Consumed".into(),
            InputState::Superseded { by } => format!("Superseded(by {by})"),
            InputState::Coalesced { into } => format!("Coalesced(into {into})"),
            InputState::Abandoned(r) => format!("Abandoned({})", r.name()),
        }
    }
}

/// One input as the ledger (and a store) records it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct InputRecord {
    /// Its id (also its admission order).
    pub id: InputId,
    /// What was submitted.
    pub spec: InputSpec,
    /// Where it is.
    pub state: InputState,
    /// How many times it was staged into a run.
    pub attempts: u32,
    /// When it was accepted.
    pub accepted_at: Millis,
}

impl InputRecord {
    /// The record of an input as admission makes it: Queued with no attempt, or Consumed at once for a kind that
    /// has no lane (an Operation input). [`Ledger::admit`] makes the same record.
    #[must_use]
    pub fn admitted(id: InputId, spec: InputSpec, now: Millis) -> InputRecord {
        let state = if spec.lane().is_some() { InputState::Queued } else { InputState::Consumed };
        InputRecord { id, spec, state, attempts: 0, accepted_at: now }
    }
}

/// Why a ledger operation was refused.
#[derive(Clone, Debug, PartialEq, Eq, Hash, thiserror::Error)]
pub enum LedgerRefusal {
    /// The input is not in live state.
    #[error("input {0} is not active")]
    NotActive(InputId),
    /// The input is not queued.
    #[error("input {input} is {state}, not queued")]
    NotQueued {
        /// The input.
        input: InputId,
        /// Its state.
        state: String,
    },
    /// A batch was empty or too large.
    #[error("a batch holds 1 to {max} inputs, not {len}")]
    BatchSize {
        /// The batch length.
        len: usize,
        /// The bound.
        max: usize,
    },
    /// The same input twice in one batch.
    #[error("input {0} appears twice in the batch")]
    DuplicateInBatch(InputId),
    /// Too many active inputs.
    #[error("the session holds {limit} active inputs already")]
    Full {
        /// The bound.
        limit: usize,
    },
}

/// What the ledger did to an input that left live state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Terminalized {
    /// The input.
    pub input: InputId,
    /// Its terminal state.
    pub state: InputState,
}

/// The per-session ledger of inputs and its two lanes.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Ledger {
    active: IdMap<InputId, InputRecord>,
    /// The active inputs with at least one attempt (every input of a run is one), in id order: an index over
    /// `active`, so that the work of a run's start and end does not grow with the queue behind it.
    attempted: BTreeSet<InputId>,
    queue_lane: VecDeque<InputId>,
    steer_lane: VecDeque<InputId>,
    /// Idempotency keys of active inputs.
    active_keys: BTreeMap<String, InputId>,
    /// Recent terminal inputs, oldest first, with their keys indexed.
    history: VecDeque<InputRecord>,
    history_keys: BTreeMap<String, InputId>,
    /// Most terminal inputs `history` keeps.
    history_max: usize,
    /// A keyed terminal input left the history (or a restore could not keep it): a key the ledger does not know
    /// may belong to an input the store still holds, so it is recalled before it is admitted.
    keys_forgotten: bool,
    /// Keys the store said belong to inputs that are not live here, newest last (at most [`RECALLED_KEYS_MAX`]).
    recalled: VecDeque<(String, InputId)>,
    max_attempts: u32,
    accepted_total: u64,
    terminal_total: u64,
}

impl Default for Ledger {
    fn default() -> Self {
        Self::new(MAX_ATTEMPTS_DEFAULT)
    }
}

/// The result of looking up an idempotency key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KeyLookup {
    /// No known input has the key.
    Unknown,
    /// An active input has it: the caller joins its waiters.
    Active(InputId),
    /// A terminal input has it: deduplicated, no handle.
    Terminal(InputId),
}

impl Ledger {
    /// An empty ledger with the given attempt bound and the default history ([`TERMINAL_HISTORY_MAX`]).
    #[must_use]
    pub fn new(max_attempts: u32) -> Self {
        Ledger::with_history(max_attempts, TERMINAL_HISTORY_MAX)
    }

    /// An empty ledger that keeps at most `history_max` terminal inputs (at least one).
    #[must_use]
    pub fn with_history(max_attempts: u32, history_max: usize) -> Self {
        assert!(max_attempts >= 1, "an input needs at least one attempt");
        assert!(history_max >= 1, "the history keeps at least the input that ended last");
        Ledger {
            active: IdMap::new(),
            attempted: BTreeSet::new(),
            queue_lane: VecDeque::new(),
            steer_lane: VecDeque::new(),
            active_keys: BTreeMap::new(),
            history: VecDeque::new(),
            history_keys: BTreeMap::new(),
            history_max,
            keys_forgotten: false,
            recalled: VecDeque::new(),
            max_attempts,
            accepted_total: 0,
            terminal_total: 0,
        }
    }

    /// The attempt bound.
    #[must_use]
    pub fn max_attempts(&self) -> u32 {
        self.max_attempts
    }

    /// An active input's record.
    #[must_use]
    pub fn get(&self, id: InputId) -> Option<&InputRecord> {
        self.active.get(&id)
    }

    /// An input's state, from live state or the recent terminal history.
    #[must_use]
    pub fn state_of(&self, id: InputId) -> Option<InputState> {
        if let Some(r) = self.active.get(&id) {
            return Some(r.state);
        }
        self.history.iter().rev().find(|r| r.id == id).map(|r| r.state)
    }

    /// A record from live state or history.
    #[must_use]
    pub fn record(&self, id: InputId) -> Option<&InputRecord> {
        self.active.get(&id).or_else(|| self.history.iter().rev().find(|r| r.id == id))
    }

    /// Active inputs in id order.
    pub fn active(&self) -> impl Iterator<Item = &InputRecord> {
        self.active.values()
    }

    /// How many inputs are active.
    #[must_use]
    pub fn active_len(&self) -> usize {
        self.active.len()
    }

    /// The recent terminal inputs, oldest first.
    pub fn history(&self) -> impl Iterator<Item = &InputRecord> {
        self.history.iter()
    }

    /// The queue lane, front first.
    pub fn queue_lane(&self) -> impl Iterator<Item = InputId> + '_ {
        self.queue_lane.iter().copied()
    }

    /// The steer lane, front first.
    pub fn steer_lane(&self) -> impl Iterator<Item = InputId> + '_ {
        self.steer_lane.iter().copied()
    }

    /// Whether anything waits in a lane.
    #[must_use]
    pub fn has_queued(&self) -> bool {
        !self.queue_lane.is_empty() || !self.steer_lane.is_empty()
    }

    /// Inputs ever accepted, and inputs ever terminal (for the no-loss check).
    #[must_use]
    pub fn totals(&self) -> (u64, u64) {
        (self.accepted_total, self.terminal_total)
    }

    /// How many terminal inputs the history keeps.
    #[must_use]
    pub fn history_max(&self) -> usize {
        self.history_max
    }

    /// Looks up an idempotency key: live inputs, then the history, then the keys recalled from the store.
    #[must_use]
    pub fn lookup_key(&self, key: &str) -> KeyLookup {
        if let Some(id) = self.active_keys.get(key) {
            return KeyLookup::Active(*id);
        }
        if let Some(id) = self.history_keys.get(key) {
            return KeyLookup::Terminal(*id);
        }
        match self.recalled.iter().rev().find(|(k, _)| k == key) {
            Some((_, id)) => KeyLookup::Terminal(*id),
            None => KeyLookup::Unknown,
        }
    }

    /// Whether a keyed terminal input has left the history, so that an unknown key may still be the store's.
    #[must_use]
    pub fn keys_forgotten(&self) -> bool {
        self.keys_forgotten
    }

    /// Records that the store holds `key` for `id`, an input that is not live: the key now answers
    /// [`KeyLookup::Terminal`] (specs/input.md#recall).
    pub fn recall(&mut self, key: String, id: InputId) {
        assert!(!self.active.contains_key(&id), "a live input's key is never recalled");
        assert_eq!(self.lookup_key(&key), KeyLookup::Unknown, "only an unknown key is recalled");
        self.recalled.push_back((key, id));
        if self.recalled.len() > RECALLED_KEYS_MAX {
            self.recalled.pop_front();
        }
    }

    /// The pending (queued, not staged) inputs of `kind` with `key`, in id order. Usually one at most; two when an
    /// input that was staged while a newer one took its key went back to its lane (its run failed, or a restart).
    #[must_use]
    pub fn pending_with_supersession_key(&self, kind: &InputKind, key: &str) -> Vec<InputId> {
        let mut found: Vec<InputId> = self
            .queue_lane
            .iter()
            .chain(self.steer_lane.iter())
            .copied()
            .filter(|id| {
                let r = &self.active[id];
                r.spec.kind == *kind && r.spec.supersession_key.as_deref() == Some(key)
            })
            .collect();
        found.sort_unstable();
        found
    }

    /// The pending inputs of the same coalescing kind, in id order (as above, usually one at most).
    #[must_use]
    pub fn pending_of_kind(&self, kind: &InputKind) -> Vec<InputId> {
        let mut found: Vec<InputId> = self
            .queue_lane
            .iter()
            .chain(self.steer_lane.iter())
            .copied()
            .filter(|id| self.active[id].spec.kind == *kind)
            .collect();
        found.sort_unstable();
        found
    }

    /// Admits a new input with `id`: Queued in its lane, or Consumed at once
    /// when its kind has no lane.
    pub fn admit(&mut self, id: InputId, spec: InputSpec, now: Millis) -> Result<Option<Terminalized>, LedgerRefusal> {
        self.check_room()?;
        assert!(!self.active.contains_key(&id), "input ids are never reused");
        let lane = spec.lane();
        if let Some(key) = &spec.idempotency_key {
            assert_eq!(self.lookup_key(key), KeyLookup::Unknown, "dedup is decided before admission");
            self.active_keys.insert(key.clone(), id);
        }
        self.accepted_total += 1;
        self.active.insert(id, InputRecord { id, spec, state: InputState::Queued, attempts: 0, accepted_at: now });
        match lane {
            Some(Lane::Queue) => self.queue_lane.push_back(id),
            Some(Lane::Steer) => self.steer_lane.push_back(id),
            None => return Ok(Some(self.terminalize(id, InputState::Consumed))),
        }
        Ok(None)
    }

    /// Whether one more input fits ([`INPUTS_ACTIVE_MAX`]).
    pub fn check_room(&self) -> Result<(), LedgerRefusal> {
        if self.active.len() >= INPUTS_ACTIVE_MAX {
            return Err(LedgerRefusal::Full { limit: INPUTS_ACTIVE_MAX });
        }
        Ok(())
    }

    /// Removes an input that was admitted but whose admission is being undone
    /// (its durable write failed before the accept was acknowledged). It counts
    /// as never accepted.
    pub fn unadmit(&mut self, id: InputId) -> Result<InputRecord, LedgerRefusal> {
        let record = self.active.get(&id).ok_or(LedgerRefusal::NotActive(id))?;
        if record.state != InputState::Queued {
            return Err(LedgerRefusal::NotQueued { input: id, state: record.state.label() });
        }
        let record = self.active.remove(&id).expect("checked above");
        self.remove_from_lanes(id);
        if let Some(key) = &record.spec.idempotency_key {
            self.active_keys.remove(key);
        }
        self.accepted_total -= 1;
        Ok(record)
    }

    /// The batch the next run would take: every pending steer input (up to the
    /// batch bound), else the head of the queue lane.
    #[must_use]
    pub fn next_batch(&self) -> Vec<InputId> {
        if !self.steer_lane.is_empty() {
            return self.steer_lane.iter().copied().take(BATCH_INPUTS_MAX).collect();
        }
        self.queue_lane.front().copied().into_iter().collect()
    }

    /// Stages `batch` into `run`, all or nothing: every input must be queued.
    pub fn stage_batch(&mut self, batch: &[InputId], run: RunId) -> Result<(), LedgerRefusal> {
        if batch.is_empty() || batch.len() > BATCH_INPUTS_MAX {
            return Err(LedgerRefusal::BatchSize { len: batch.len(), max: BATCH_INPUTS_MAX });
        }
        for (k, id) in batch.iter().enumerate() {
            // A batch holds at most BATCH_INPUTS_MAX inputs, so the pairwise scan is short and needs no set.
            if batch[..k].contains(id) {
                return Err(LedgerRefusal::DuplicateInBatch(*id));
            }
            let record = self.active.get(id).ok_or(LedgerRefusal::NotActive(*id))?;
            if record.state != InputState::Queued {
                return Err(LedgerRefusal::NotQueued { input: *id, state: record.state.label() });
            }
            assert!(record.attempts < self.max_attempts, "an exhausted input is never left queued");
        }
        for id in batch {
            self.remove_from_lanes(*id);
            let record = self.active.get_mut(id).expect("checked above");
            record.state = InputState::Staged { run };
            record.attempts += 1;
            self.attempted.insert(*id);
        }
        Ok(())
    }

    /// The inputs currently in `run`, in id order.
    #[must_use]
    pub fn inputs_of_run(&self, run: RunId) -> Vec<InputId> {
        self.attempted().filter(|r| r.state.run() == Some(run)).map(|r| r.id).collect()
    }

    /// Active inputs with at least one attempt, in id order (every input of a run is one).
    pub fn attempted(&self) -> impl Iterator<Item = &InputRecord> {
        self.attempted.iter().map(|id| &self.active[id])
    }

    /// Moves every input of `run` in `from` state to `to`.
    pub fn advance_run(&mut self, run: RunId, to: fn(RunId) -> InputState) -> Vec<InputId> {
        let ids = self.inputs_of_run(run);
        for id in &ids {
            let record = self.active.get_mut(id).expect("listed above");
            record.state = to(run);
        }
        ids
    }

    /// Returns an input of an ended run to the front of its lane (attempts
    /// kept), or abandons it when it has used every attempt. Returns the
    /// abandonment if there was one.
    pub fn rollback(&mut self, id: InputId, undo_attempt: bool) -> Option<Terminalized> {
        let max = self.max_attempts;
        let record = self.active.get_mut(&id).expect("rollback of an active input");
        assert!(record.state.run().is_some(), "only inputs of a run roll back");
        if undo_attempt {
            record.attempts -= 1;
            if record.attempts == 0 {
                self.attempted.remove(&id);
            }
        }
        if record.attempts >= max {
            let attempts = record.attempts;
            return Some(self.terminalize(id, InputState::Abandoned(AbandonReason::MaxAttemptsExhausted { attempts })));
        }
        record.state = InputState::Queued;
        match record.spec.lane().expect("inputs in runs have lanes") {
            Lane::Queue => self.queue_lane.push_front(id),
            Lane::Steer => self.steer_lane.push_front(id),
        }
        None
    }

    /// Rolls back every input of a run, as [`Ledger::rollback`] does one, and returns each one's result in the
    /// order of `ids`. The lanes keep the batch's order: each input goes to the front of its lane, so the last one
    /// goes first (spec: specs/input.md#lanes).
    pub fn rollback_run(&mut self, ids: &[InputId], undo_attempt: bool) -> Vec<Option<Terminalized>> {
        let mut results: Vec<Option<Terminalized>> =
            ids.iter().rev().map(|id| self.rollback(*id, undo_attempt)).collect();
        results.reverse();
        results
    }

    /// Requeues an input at the back of its lane (recovery and recycle).
    fn requeue(&mut self, id: InputId) {
        let record = self.active.get_mut(&id).expect("requeue of an active input");
        record.state = InputState::Queued;
        match record.spec.lane().expect("active inputs have lanes") {
            Lane::Queue => self.queue_lane.push_back(id),
            Lane::Steer => self.steer_lane.push_back(id),
        }
    }

    /// Moves an active input to a terminal state and out of live state.
    pub fn terminalize(&mut self, id: InputId, state: InputState) -> Terminalized {
        assert!(state.is_terminal(), "terminalize needs a terminal state");
        let mut record = self.active.remove(&id).expect("terminalize of an active input");
        self.attempted.remove(&id);
        // Only queued inputs are in a lane (SPEC 6.8).
        if record.state == InputState::Queued {
            self.remove_from_lanes(id);
        }
        record.state = state;
        if let Some(key) = &record.spec.idempotency_key {
            self.active_keys.remove(key);
            self.history_keys.insert(key.clone(), id);
        }
        self.terminal_total += 1;
        self.push_history(record);
        Terminalized { input: id, state }
    }

    /// Abandons every active input for `reason`; returns what left.
    pub fn abandon_all(&mut self, reason: AbandonReason) -> Vec<Terminalized> {
        let ids: Vec<InputId> = self.active.keys().copied().collect();
        ids.into_iter().map(|id| self.terminalize(id, InputState::Abandoned(reason))).collect()
    }

    /// Abandons every queued input for `reason`; returns what left.
    pub fn abandon_queued(&mut self, reason: AbandonReason) -> Vec<Terminalized> {
        let ids: Vec<InputId> = self.queue_lane.iter().chain(self.steer_lane.iter()).copied().collect();
        ids.into_iter().map(|id| self.terminalize(id, InputState::Abandoned(reason))).collect()
    }

    /// Drops every ephemeral active input without a terminal state (recovery
    /// forgets them, as a restart would). Returns their ids.
    pub fn drop_ephemeral(&mut self) -> Vec<InputId> {
        let ids: Vec<InputId> =
            self.active.values().filter(|r| r.spec.durability == Durability::Ephemeral).map(|r| r.id).collect();
        for id in &ids {
            self.drop_active(*id);
        }
        ids
    }

    /// Forgets one active input without a terminal state, as a restart would.
    fn drop_active(&mut self, id: InputId) {
        let record = self.active.remove(&id).expect("dropping an active input");
        self.attempted.remove(&id);
        if record.state == InputState::Queued {
            self.remove_from_lanes(id);
        }
        if let Some(key) = &record.spec.idempotency_key {
            self.active_keys.remove(key);
        }
        // A dropped input was accepted and is gone on purpose: count it as ended so the no-loss accounting stays
        // exact.
        self.terminal_total += 1;
    }

    /// Re-applies the recovery rule of SPEC 5 to every active input: staged
    /// or applied without a committed receipt goes back to Queued (attempts
    /// kept), applied with a committed receipt becomes Consumed, an input with
    /// no attempt left is abandoned. `committed(run)` tells whether a run's
    /// receipt is committed. A Derived input that would go back to Queued is abandoned Rederived instead
    /// (specs/input.md#derived). Returns what happened to each input.
    pub fn recover(&mut self, committed: impl Fn(RunId) -> bool) -> RecoveryOutcome {
        self.recover_keeping(committed, false)
    }

    /// Puts every active input back in its lane in admission order, as a rebuild of a living session does (SPEC 2.1
    /// recycle): nothing is lost, so every input stays, Derived ones included.
    pub fn relane(&mut self) -> RecoveryOutcome {
        self.recover_keeping(|_| false, true)
    }

    fn recover_keeping(&mut self, committed: impl Fn(RunId) -> bool, keep_derived: bool) -> RecoveryOutcome {
        let mut out = RecoveryOutcome::default();
        // Rebuild the lanes in admission order so recovery does not reorder work.
        self.queue_lane.clear();
        self.steer_lane.clear();
        let ids: Vec<InputId> = self.active.keys().copied().collect();
        for id in ids {
            let record = &self.active[&id];
            let decision = recovery_rule(record.state, record.attempts, self.max_attempts, &committed);
            match decision {
                RecoveryRule::Queue if record.spec.durability == Durability::Derived && !keep_derived => {
                    // spec: specs/input.md#derived: not replayed; its source makes it again if it is still wanted.
                    out.abandoned.push(self.terminalize(id, InputState::Abandoned(AbandonReason::Rederived)));
                }
                RecoveryRule::Queue => {
                    if record.state != InputState::Queued {
                        out.requeued.push(id);
                    } else {
                        out.kept.push(id);
                    }
                    self.requeue(id);
                }
                RecoveryRule::Consume => out.consumed.push(self.terminalize(id, InputState::Consumed)),
                RecoveryRule::Abandon(reason) => {
                    out.abandoned.push(self.terminalize(id, InputState::Abandoned(reason)));
                }
                RecoveryRule::Keep => out.kept.push(id),
            }
        }
        out
    }

    /// Puts back a record loaded from a store: non-terminal records become
    /// active (the caller then runs [`Ledger::recover`] to place them in
    /// lanes), terminal ones join the history so their keys still dedup.
    pub fn restore(&mut self, record: InputRecord) {
        assert!(!self.active.contains_key(&record.id), "a record is restored once");
        self.accepted_total += 1;
        if record.state.is_terminal() {
            if let Some(key) = &record.spec.idempotency_key {
                self.history_keys.insert(key.clone(), record.id);
            }
            self.terminal_total += 1;
            self.push_history(record);
            return;
        }
        if let Some(key) = &record.spec.idempotency_key {
            self.active_keys.insert(key.clone(), record.id);
        }
        if record.attempts > 0 {
            self.attempted.insert(record.id);
        }
        self.active.insert(record.id, record);
    }

    /// Appends a terminal record to the history. The history may run past its bound until [`Ledger::trim_history`]:
    /// a step that ends more inputs than the history keeps still finds every one of them to write its row.
    fn push_history(&mut self, record: InputRecord) {
        self.history.push_back(record);
    }

    /// Brings the history back to its bound, evicting the oldest records (and their keys, unless a newer input
    /// reused one; the ledger then knows a key may be the store's). The session machine calls it once a step has
    /// built its rows: evicting as the step went would drop the rows of a step that ends more inputs than the
    /// history keeps (a reset of a long queue), and the store would keep them live (model: control configuration,
    /// Accept keyed, Accept, Reset, Recover, with a history of one).
    pub fn trim_history(&mut self) {
        self.trim_history_into(|_| {});
    }

    /// As [`Ledger::trim_history`], handing each evicted record to `evicted` (the session keeps those a lifecycle
    /// row that may still fail carried: specs/session.md#a-failed-row-is-written-again).
    pub fn trim_history_into(&mut self, mut evicted: impl FnMut(InputRecord)) {
        while self.history.len() > self.history_max {
            let old = self.history.pop_front().expect("non-empty");
            if let Some(key) = &old.spec.idempotency_key {
                if self.history_keys.get(key) == Some(&old.id) {
                    self.history_keys.remove(key);
                    self.keys_forgotten = true;
                }
            }
            evicted(old);
        }
    }

    fn remove_from_lanes(&mut self, id: InputId) {
        // A run takes inputs from the front of a lane, so look there before scanning (an input is in at most one
        // lane, once: SPEC 6.8).
        for lane in [&mut self.queue_lane, &mut self.steer_lane] {
            if lane.front() == Some(&id) {
                lane.pop_front();
                return;
            }
        }
        self.queue_lane.retain(|x| *x != id);
        self.steer_lane.retain(|x| *x != id);
    }

    /// Builds a ledger from raw parts without checks, for invariant tests.
    #[doc(hidden)]
    #[must_use]
    pub fn from_parts_unchecked(
        records: Vec<InputRecord>,
        queue_lane: Vec<InputId>,
        steer_lane: Vec<InputId>,
        max_attempts: u32,
    ) -> Self {
        let mut ledger = Ledger::new(max_attempts);
        for r in records {
            ledger.accepted_total += 1;
            if let Some(k) = &r.spec.idempotency_key {
                ledger.active_keys.insert(k.clone(), r.id);
            }
            if r.attempts > 0 {
                ledger.attempted.insert(r.id);
            }
            ledger.active.insert(r.id, r);
        }
        ledger.queue_lane = queue_lane.into();
        ledger.steer_lane = steer_lane.into();
        ledger
    }

    /// Overrides the accounting totals, for invariant tests.
    #[doc(hidden)]
    pub fn set_totals_unchecked(&mut self, accepted: u64, terminal: u64) {
        self.accepted_total = accepted;
        self.terminal_total = terminal;
    }
}

/// What recovery did to the ledger.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct RecoveryOutcome {
    /// Inputs that were in a run and went back to Queued.
    pub requeued: Vec<InputId>,
    /// Inputs that were queued and stay queued.
    pub kept: Vec<InputId>,
    /// Inputs whose committed receipt made them Consumed.
    pub consumed: Vec<Terminalized>,
    /// Inputs abandoned because no attempt was left, and Derived inputs that had not reached a committed boundary
    /// (abandoned Rederived).
    pub abandoned: Vec<Terminalized>,
}

/// What recovery does with one input (SPEC 5).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RecoveryRule {
    /// Back to (or stay) Queued.
    Queue,
    /// Its receipt is committed: Consumed, never run again.
    Consume,
    /// Abandoned (no attempt left).
    Abandon(AbandonReason),
    /// Terminal: kept as it is.
    Keep,
}

/// The recovery rule of SPEC 5 for one input, shared by every store.
#[must_use]
pub fn recovery_rule(
    state: InputState,
    attempts: u32,
    max_attempts: u32,
    committed: impl Fn(RunId) -> bool,
) -> RecoveryRule {
    match state {
        InputState::Queued => RecoveryRule::Queue,
        InputState::Staged { .. } | InputState::Applied { .. } | InputState::AppliedPendingConsumption { .. } => {
            let run = state.run().expect("states in a run name it");
            if matches!(state, InputState::Applied { .. } | InputState::AppliedPendingConsumption { .. })
                && committed(run)
            {
                return RecoveryRule::Consume;
            }
            if attempts >= max_attempts {
                return RecoveryRule::Abandon(AbandonReason::MaxAttemptsExhausted { attempts });
            }
            RecoveryRule::Queue
        }
        _ => RecoveryRule::Keep,
    }
}
