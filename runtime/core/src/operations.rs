//! The operations registry of one session (SPEC 2.4).
//!
//! An operation is a side job a session starts and later learns the end of: a
//! background tool call, a child session. The registry tracks each one through
//! its lifecycle, hands out watchers that learn its end exactly once, lets one
//! run wait for a set of operations at a time, keeps a bounded window of ended
//! records, and appends every end to a completion feed that the session
//! consumes by cursor, so each end reaches the session exactly once even across
//! a restart (the whole registry is serialisable for that purpose).
//!
//! The registry owns no channels and reads no clock: watchers and waits are
//! ids, and the shell maps them to its own senders when it performs the
//! effects that [`OperationsRegistry::apply`] returns.
//!
//! spec: specs/operations.md

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use serde::{Deserialize, Serialize};

use crate::idmap::IdMap;
use crate::ids::{Millis, OperationId, RunId, SessionId};

/// Highest cap on non-terminal operations a configuration may ask for.
pub const OPERATIONS_ACTIVE_MAX_LIMIT: usize = 1024;
/// Default cap on non-terminal operations per session: the ceiling. The reference runtime sets no limit by default;
/// burrow's "no limit of the embedder's" is the core's own ceiling, which keeps a registry's memory bounded (each
/// live record is bounded: its texts, watchers and progress are capped below).
pub const OPERATIONS_ACTIVE_MAX_DEFAULT: usize = OPERATIONS_ACTIVE_MAX_LIMIT;
/// Default number of ended records kept for snapshots and late watchers.
pub const COMPLETED_RETAINED_MAX_DEFAULT: usize = 256;
/// Highest number of retained ended records a configuration may ask for.
pub const COMPLETED_RETAINED_MAX_LIMIT: usize = 4096;
/// Default cap on the completion feed, counting both unacknowledged entries
/// and the slots reserved for operations that have not ended yet.
pub const COMPLETION_FEED_MAX_DEFAULT: usize = 1024;
/// Highest completion feed cap a configuration may ask for.
pub const COMPLETION_FEED_MAX_LIMIT: usize = 16384;
/// Pending watchers one operation may hold.
pub const WATCHERS_PER_OPERATION_MAX: usize = 64;
/// Operations one wait_all may name.
pub const WAIT_ALL_IDS_MAX: usize = 256;
/// Longest display name, in bytes.
pub const DISPLAY_NAME_BYTES_MAX: usize = 256;
/// Longest peer handle, in bytes.
pub const PEER_HANDLE_BYTES_MAX: usize = 256;
/// Longest source label, in bytes.
pub const SOURCE_LABEL_BYTES_MAX: usize = 128;
/// Longest progress message, in bytes.
pub const PROGRESS_MESSAGE_BYTES_MAX: usize = 1024;

crate::ids::id_type!(
    /// One watcher of one operation; allocated by the registry.
    WatcherId,
    "watcher"
);
crate::ids::id_type!(
    /// One wait_all request; allocated by the registry.
    WaitId,
    "wait"
);
crate::ids::id_type!(
    /// The position of an operation's end in the completion feed. Zero means
    /// "before the first end", so it doubles as the initial cursor.
    CompletionSeq,
    "#"
);

/// What sort of side job an operation is. Each kind has its own rules (specs/operations.md#kinds); the core decides
/// them, through the methods below.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum OperationKind {
    /// A tool call that runs past the turn that started it. Its end wakes its idle owner.
    BackgroundTool,
    /// A child session; the only kind that may open a peer channel (announced once). It reports to its owner through
    /// that channel, so its end does not wake the owner.
    ChildSession,
    /// A slot of the owner's concurrency budget held for work tracked elsewhere: it counts against `max_concurrent`,
    /// carries no result, and its end wakes nobody.
    CapacitySlot,
    /// A wait on a job that lives outside the process's tasks. Its end wakes the owner even though nothing waits on
    /// it, and a running one is kept, re-bound, across a restart.
    DetachedJob,
}

impl OperationKind {
    /// Every kind, in declaration order.
    pub const ALL: [OperationKind; 4] = [
        OperationKind::BackgroundTool,
        OperationKind::ChildSession,
        OperationKind::CapacitySlot,
        OperationKind::DetachedJob,
    ];

    /// Whether operations of this kind may expect a peer channel.
    #[must_use]
    pub fn supports_peer(self) -> bool {
        matches!(self, OperationKind::ChildSession)
    }

    /// Whether operations of this kind may name a child session.
    #[must_use]
    pub fn has_child_session(self) -> bool {
        matches!(self, OperationKind::ChildSession)
    }

    /// Whether a successful end carries a result (a capacity slot's does not).
    #[must_use]
    pub fn carries_result(self) -> bool {
        !matches!(self, OperationKind::CapacitySlot)
    }

    /// Whether an end of this kind (other than the owner's own termination) wakes its owner: the session injects a
    /// Continuation once it is quiescent, unless the agent applied the end first (specs/operations.md#cursors).
    #[must_use]
    pub fn wakes_owner(self) -> bool {
        matches!(self, OperationKind::BackgroundTool | OperationKind::DetachedJob)
    }

    /// Whether a live operation of this kind outlives a process restart (re-bound rather than dropped).
    #[must_use]
    pub fn survives_restart(self) -> bool {
        matches!(self, OperationKind::DetachedJob)
    }
}

impl std::fmt::Display for OperationKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            OperationKind::BackgroundTool => "background tool",
            OperationKind::ChildSession => "child session",
            OperationKind::CapacitySlot => "capacity slot",
            OperationKind::DetachedJob => "detached job",
        })
    }
}

/// What a caller supplies to register an operation.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct OperationSpec {
    /// The sort of job.
    pub kind: OperationKind,
    /// A short human-readable name shown in snapshots.
    pub display_name: String,
    /// Whether the job will announce a peer channel (child sessions only).
    pub expects_peer: bool,
    /// The session that owns the operation. `None` when registering means the registry's own session, which the
    /// session fills in; another session is refused (an operation belongs to the session whose registry holds it).
    pub owner: Option<SessionId>,
    /// The child session the job runs (child sessions only; never the owner itself).
    pub child_session: Option<SessionId>,
    /// Where the operation came from (a tool name, a subsystem), for snapshots and logs.
    pub source_label: String,
}

impl OperationSpec {
    /// An operation of `kind` named `display_name`, with no peer channel, owned by the registry's session, no child
    /// session and an empty source label.
    #[must_use]
    pub fn new(kind: OperationKind, display_name: impl Into<String>) -> Self {
        OperationSpec {
            kind,
            display_name: display_name.into(),
            expects_peer: false,
            owner: None,
            child_session: None,
            source_label: String::new(),
        }
    }

    /// The job will announce a peer channel.
    #[must_use]
    pub fn expecting_peer(mut self) -> Self {
        self.expects_peer = true;
        self
    }

    /// Names the owning session.
    #[must_use]
    pub fn owned_by(mut self, owner: SessionId) -> Self {
        self.owner = Some(owner);
        self
    }

    /// Names the child session the job runs.
    #[must_use]
    pub fn child(mut self, child: SessionId) -> Self {
        self.child_session = Some(child);
        self
    }

    /// Sets the source label.
    #[must_use]
    pub fn source(mut self, label: impl Into<String>) -> Self {
        self.source_label = label.into();
        self
    }
}

/// What a job reports about itself while it runs: a message and, if it knows, how far along it is.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Progress {
    /// What the job is doing; at most `PROGRESS_MESSAGE_BYTES_MAX` bytes.
    pub message: String,
    /// Percent done, 0 to 100.
    pub percent: Option<u8>,
}

impl Progress {
    /// A report with a message and no percentage.
    #[must_use]
    pub fn message(message: impl Into<String>) -> Self {
        Progress { message: message.into(), percent: None }
    }
}

/// The payload of a successful end.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct OpResult {
    /// What the job produced.
    pub content: String,
    /// The job finished but its content describes an error (a tool error the
    /// model should see), as opposed to the operation itself failing.
    pub is_error: bool,
}

impl OpResult {
    /// The end of a job that produced nothing: what a capacity slot completes with.
    #[must_use]
    pub fn empty() -> Self {
        OpResult { content: String::new(), is_error: false }
    }

    /// Whether this result carries nothing.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.content.is_empty() && !self.is_error
    }
}

/// How an operation ended.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum OpOutcome {
    /// The job finished with a result.
    Completed(OpResult),
    /// Provisioning or the job itself failed.
    Failed {
        /// Why.
        error: String,
    },
    /// The job was cancelled.
    Cancelled {
        /// Why, if the caller said.
        reason: Option<String>,
    },
    /// Provisioning was abandoned before the job started.
    Aborted {
        /// Why, if the caller said.
        reason: Option<String>,
    },
    /// The job was retired gracefully.
    Retired,
    /// The owning session was terminated while the job was live.
    Terminated {
        /// Why the owner went away.
        reason: String,
    },
}

impl OpOutcome {
    /// The terminal status this outcome puts an operation in.
    #[must_use]
    pub fn status(&self) -> OpStatus {
        match self {
            OpOutcome::Completed(_) => OpStatus::Completed,
            OpOutcome::Failed { .. } => OpStatus::Failed,
            OpOutcome::Cancelled { .. } => OpStatus::Cancelled,
            OpOutcome::Aborted { .. } => OpStatus::Aborted,
            OpOutcome::Retired => OpStatus::Retired,
            OpOutcome::Terminated { .. } => OpStatus::Terminated,
        }
    }
}

/// The lifecycle status of an operation, as shown in snapshots and refusals.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum OpStatus {
    /// Registered; the job is being set up.
    Provisioning,
    /// The job is running.
    Running,
    /// Graceful retirement was requested; the job is winding down.
    Retiring,
    /// Terminal: finished with a result.
    Completed,
    /// Terminal: failed.
    Failed,
    /// Terminal: cancelled.
    Cancelled,
    /// Terminal: provisioning abandoned.
    Aborted,
    /// Terminal: retired.
    Retired,
    /// Terminal: the owner was terminated.
    Terminated,
}

impl OpStatus {
    /// Whether no further lifecycle event may change this status.
    #[must_use]
    pub fn is_terminal(self) -> bool {
        !matches!(self, OpStatus::Provisioning | OpStatus::Running | OpStatus::Retiring)
    }
}

impl std::fmt::Display for OpStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            OpStatus::Provisioning => "provisioning",
            OpStatus::Running => "running",
            OpStatus::Retiring => "retiring",
            OpStatus::Completed => "completed",
            OpStatus::Failed => "failed",
            OpStatus::Cancelled => "cancelled",
            OpStatus::Aborted => "aborted",
            OpStatus::Retired => "retired",
            OpStatus::Terminated => "terminated",
        })
    }
}

/// Where an operation is in its lifecycle. The end carries its outcome, its
/// feed position and its time together, so an ended record without any of them
/// cannot be represented.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub(crate) enum Stage {
    Provisioning,
    Running,
    Retiring,
    Ended { outcome: OpOutcome, seq: CompletionSeq, at: Millis },
}

/// Everything the registry knows about one operation.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub(crate) struct OperationRecord {
    pub(crate) spec: OperationSpec,
    pub(crate) stage: Stage,
    pub(crate) peer_handle: Option<String>,
    pub(crate) progress_count: u64,
    /// The last progress the job reported.
    pub(crate) progress_last: Option<Progress>,
    /// Watchers registered while the operation was live; emptied by its end.
    pub(crate) watchers: Vec<WatcherId>,
    pub(crate) created_at: Millis,
    pub(crate) started_at: Option<Millis>,
}

impl OperationRecord {
    fn status(&self) -> OpStatus {
        match &self.stage {
            Stage::Provisioning => OpStatus::Provisioning,
            Stage::Running => OpStatus::Running,
            Stage::Retiring => OpStatus::Retiring,
            Stage::Ended { outcome, .. } => outcome.status(),
        }
    }

    fn outcome(&self) -> Option<&OpOutcome> {
        match &self.stage {
            Stage::Ended { outcome, .. } => Some(outcome),
            _ => None,
        }
    }

    fn is_ended(&self) -> bool {
        matches!(self.stage, Stage::Ended { .. })
    }
}

/// The one wait_all in flight. Each member's outcome is captured when it ends,
/// so the wait still resolves with every outcome even if a member's record is
/// evicted or collected before the last member ends.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub(crate) struct ActiveWait {
    pub(crate) id: WaitId,
    pub(crate) run: RunId,
    pub(crate) members: Vec<(OperationId, Option<OpOutcome>)>,
}

/// One end, as recorded in the completion feed.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct FeedEntry {
    /// Position in the feed; strictly increasing.
    pub seq: CompletionSeq,
    /// The operation that ended.
    pub op: OperationId,
    /// Its kind, which says whether the end wakes the owner.
    pub kind: OperationKind,
    /// How it ended.
    pub outcome: OpOutcome,
}

/// The completion feed's three cursors (specs/operations.md#cursors). Each moves forward over every end exactly once
/// (the injected one goes back to the applied one at a restart), and all three persist with the registry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct FeedCursors {
    /// Ends the agent applied (acknowledged); their feed entries are gone.
    pub applied: CompletionSeq,
    /// Ends the session machine has seen.
    pub observed: CompletionSeq,
    /// Ends a Continuation was injected for, or that needed none.
    pub injected: CompletionSeq,
}

/// The registry's bounds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct OpsConfig {
    /// Most non-terminal operations at once.
    pub max_concurrent: usize,
    /// Most ended records retained before the oldest is evicted.
    pub max_completed: usize,
    /// Most feed entries that may be outstanding: unacknowledged entries plus
    /// one reserved slot per live operation (each will append exactly one).
    pub feed_max: usize,
}

impl Default for OpsConfig {
    fn default() -> Self {
        OpsConfig {
            max_concurrent: OPERATIONS_ACTIVE_MAX_DEFAULT,
            max_completed: COMPLETED_RETAINED_MAX_DEFAULT,
            feed_max: COMPLETION_FEED_MAX_DEFAULT,
        }
    }
}

/// Why a configuration was rejected.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum OpConfigError {
    /// A registry that admits no operation is useless and hides mistakes.
    #[error("max_concurrent must be at least 1")]
    ConcurrentZero,
    /// `max_concurrent` exceeds its ceiling.
    #[error("max_concurrent {value} exceeds the ceiling {limit}")]
    ConcurrentAboveLimit {
        /// Requested value.
        value: usize,
        /// Ceiling.
        limit: usize,
    },
    /// `max_completed` exceeds its ceiling.
    #[error("max_completed {value} exceeds the ceiling {limit}")]
    CompletedAboveLimit {
        /// Requested value.
        value: usize,
        /// Ceiling.
        limit: usize,
    },
    /// The feed could not hold one entry per live operation.
    #[error("feed_max {feed_max} is below max_concurrent {max_concurrent}")]
    FeedBelowConcurrent {
        /// Requested feed cap.
        feed_max: usize,
        /// Requested concurrency cap.
        max_concurrent: usize,
    },
    /// `feed_max` exceeds its ceiling.
    #[error("feed_max {value} exceeds the ceiling {limit}")]
    FeedAboveLimit {
        /// Requested value.
        value: usize,
        /// Ceiling.
        limit: usize,
    },
}

impl OpsConfig {
    /// Checks the bounds against each other and against their ceilings.
    pub fn validate(&self) -> Result<(), OpConfigError> {
        if self.max_concurrent == 0 {
            return Err(OpConfigError::ConcurrentZero);
        }
        if self.max_concurrent > OPERATIONS_ACTIVE_MAX_LIMIT {
            return Err(OpConfigError::ConcurrentAboveLimit {
                value: self.max_concurrent,
                limit: OPERATIONS_ACTIVE_MAX_LIMIT,
            });
        }
        if self.max_completed > COMPLETED_RETAINED_MAX_LIMIT {
            return Err(OpConfigError::CompletedAboveLimit {
                value: self.max_completed,
                limit: COMPLETED_RETAINED_MAX_LIMIT,
            });
        }
        if self.feed_max < self.max_concurrent {
            return Err(OpConfigError::FeedBelowConcurrent {
                feed_max: self.feed_max,
                max_concurrent: self.max_concurrent,
            });
        }
        if self.feed_max > COMPLETION_FEED_MAX_LIMIT {
            return Err(OpConfigError::FeedAboveLimit { value: self.feed_max, limit: COMPLETION_FEED_MAX_LIMIT });
        }
        Ok(())
    }
}

/// An event the registry understands. Ids name operations the registry
/// allocated earlier (see [`OpEffect::Registered`]).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum OpEvent {
    /// Track a new operation; it starts in Provisioning.
    Register {
        /// What to track.
        spec: OperationSpec,
    },
    /// Provisioning finished; the job runs.
    ProvisioningSucceeded {
        /// The operation.
        op: OperationId,
    },
    /// Provisioning failed; the operation ends Failed.
    ProvisioningFailed {
        /// The operation.
        op: OperationId,
        /// Why.
        error: String,
    },
    /// The job's peer channel is ready (kinds that expect one, once).
    PeerReady {
        /// The operation.
        op: OperationId,
        /// How to reach the peer.
        peer: String,
    },
    /// The job reported progress: counted, and kept as the last report.
    ReportProgress {
        /// The operation.
        op: OperationId,
        /// What it reported.
        progress: Progress,
    },
    /// The job finished with a result.
    Complete {
        /// The operation.
        op: OperationId,
        /// What it produced.
        result: OpResult,
    },
    /// The job failed.
    Fail {
        /// The operation.
        op: OperationId,
        /// Why.
        error: String,
    },
    /// Cancel a live operation.
    Cancel {
        /// The operation.
        op: OperationId,
        /// Why, if known.
        reason: Option<String>,
    },
    /// Abandon an operation still provisioning.
    AbortProvisioning {
        /// The operation.
        op: OperationId,
        /// Why, if known.
        reason: Option<String>,
    },
    /// Ask a running operation to wind down gracefully.
    RequestRetire {
        /// The operation.
        op: OperationId,
    },
    /// A retiring operation finished winding down.
    MarkRetired {
        /// The operation.
        op: OperationId,
    },
    /// The owning session is gone: end every live operation and close the
    /// registry for good.
    TerminateOwner {
        /// Why the owner went away.
        reason: String,
    },
    /// Learn the end of an operation (at once if it already ended).
    RegisterWatcher {
        /// The operation.
        op: OperationId,
    },
    /// Wait for every named operation to end.
    WaitAll {
        /// The run that waits.
        run: RunId,
        /// The operations, in the order outcomes are reported.
        ids: Vec<OperationId>,
    },
    /// The waiting future was dropped.
    CancelWait {
        /// The wait to cancel.
        wait: WaitId,
    },
    /// Remove and report every retained ended record.
    CollectCompleted,
    /// The session consumed every feed entry up to and including `through`.
    AcknowledgeFeed {
        /// The highest sequence number consumed.
        through: CompletionSeq,
    },
}

/// Where [`OperationsRegistry::apply_to`] puts the effects of an event: a `Vec<OpEffect>`, or a buffer of a composing
/// machine's own effect type, so that the effects need no vector of their own.
pub trait OpEffects {
    /// Appends one effect.
    fn push(&mut self, effect: OpEffect);
}

impl OpEffects for Vec<OpEffect> {
    fn push(&mut self, effect: OpEffect) {
        Vec::push(self, effect);
    }
}

/// Something the shell must do, or learn, after an accepted event.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum OpEffect {
    /// A new operation is tracked under this id.
    Registered {
        /// The allocated id.
        op: OperationId,
    },
    /// The peer channel of an operation is ready; expose it to the session.
    PeerExposed {
        /// The operation.
        op: OperationId,
        /// How to reach the peer.
        peer: String,
    },
    /// A watcher was allocated; the shell binds it to the caller's receiver.
    WatcherRegistered {
        /// The operation watched.
        op: OperationId,
        /// The allocated watcher.
        watcher: WatcherId,
    },
    /// Send `outcome` to each of these watchers; they are now resolved.
    ResolveWatchers {
        /// The operation that ended.
        op: OperationId,
        /// Watchers to resolve, in registration order.
        watchers: Vec<WatcherId>,
        /// Its outcome.
        outcome: OpOutcome,
    },
    /// An operation ended and its end was appended to the completion feed.
    OperationEnded {
        /// The operation.
        op: OperationId,
        /// Its feed position.
        seq: CompletionSeq,
        /// The end's kind wakes its owner (specs/operations.md#kinds): the session injects a Continuation once it
        /// is quiescent, unless the agent applied the end first (specs/operations.md#cursors). False when the
        /// owner itself is being terminated.
        owner_wake: bool,
        /// How it ended.
        status: OpStatus,
    },
    /// A wait_all was accepted and is now the active wait.
    WaitStarted {
        /// The wait.
        wait: WaitId,
        /// The run that waits.
        run: RunId,
    },
    /// Every member of the wait ended; deliver these outcomes, in the order
    /// the ids were given. The wait is no longer active.
    ResolveWaitAll {
        /// The wait.
        wait: WaitId,
        /// Each member and how it ended.
        outcomes: Vec<(OperationId, OpOutcome)>,
    },
    /// The active wait was cancelled before it resolved.
    WaitCancelled {
        /// The wait.
        wait: WaitId,
    },
    /// The oldest ended record was dropped to respect `max_completed`.
    Evicted {
        /// The operation whose record was dropped.
        op: OperationId,
    },
    /// The ended records that CollectCompleted removed, oldest end first.
    Collected {
        /// Each operation and how it ended.
        operations: Vec<(OperationId, OpOutcome)>,
    },
    /// Feed entries up to `through` were consumed and dropped.
    FeedAcknowledged {
        /// The new acknowledged cursor.
        through: CompletionSeq,
        /// How many entries were dropped.
        dropped: usize,
    },
}

impl OpEffect {
    /// The variant's name, for tables and traces.
    #[must_use]
    pub fn name(&self) -> &'static str {
        match self {
            OpEffect::Registered { .. } => "Registered",
            OpEffect::PeerExposed { .. } => "PeerExposed",
            OpEffect::WatcherRegistered { .. } => "WatcherRegistered",
            OpEffect::ResolveWatchers { .. } => "ResolveWatchers",
            OpEffect::OperationEnded { .. } => "OperationEnded",
            OpEffect::WaitStarted { .. } => "WaitStarted",
            OpEffect::ResolveWaitAll { .. } => "ResolveWaitAll",
            OpEffect::WaitCancelled { .. } => "WaitCancelled",
            OpEffect::Evicted { .. } => "Evicted",
            OpEffect::Collected { .. } => "Collected",
            OpEffect::FeedAcknowledged { .. } => "FeedAcknowledged",
        }
    }
}

/// Why the registry refused an event. A refused event changed nothing.
#[derive(Clone, Debug, PartialEq, Eq, Hash, thiserror::Error)]
pub enum OpRefusal {
    /// The owner was terminated; the registry accepts nothing more.
    #[error("the owner was terminated; the registry accepts no further events")]
    Terminated,
    /// No record with this id: never registered, evicted or collected.
    #[error("unknown operation {id}")]
    UnknownOperation {
        /// The id asked for.
        id: OperationId,
    },
    /// The operation already ended; it ends only once.
    #[error("operation {id} already ended ({status})")]
    AlreadyTerminal {
        /// The operation.
        id: OperationId,
        /// How it ended.
        status: OpStatus,
    },
    /// Registering would exceed `max_concurrent` live operations.
    #[error("operation limit reached: {active} live of at most {limit}")]
    LimitReached {
        /// The configured limit.
        limit: usize,
        /// Live operations now.
        active: usize,
    },
    /// Registering would leave the feed no room for the new operation's end:
    /// the session must acknowledge feed entries first.
    #[error("completion feed full: {unacknowledged} unacknowledged + {active} reserved of {max}")]
    FeedFull {
        /// The configured feed cap.
        max: usize,
        /// Entries not yet acknowledged.
        unacknowledged: usize,
        /// Slots reserved for live operations.
        active: usize,
    },
    /// A text field is longer than its bound.
    #[error("{field} is {len} bytes, more than {max}")]
    TextTooLong {
        /// Which field.
        field: &'static str,
        /// Its length in bytes.
        len: usize,
        /// The bound.
        max: usize,
    },
    /// Only child sessions may expect a peer channel.
    #[error("a {kind} operation cannot expect a peer channel")]
    PeerChannelUnsupported {
        /// The kind asked for.
        kind: OperationKind,
    },
    /// Only a child session operation may name a child session.
    #[error("a {kind} operation cannot name a child session")]
    ChildSessionUnsupported {
        /// The kind asked for.
        kind: OperationKind,
    },
    /// The operation names a session other than the registry's as its owner, or its owner as its own child.
    #[error("operation owner {owner} is not this registry's session {session}, or is named as its own child")]
    OwnerMismatch {
        /// The owner named.
        owner: SessionId,
        /// The registry's session.
        session: SessionId,
    },
    /// A capacity slot completes with no result.
    #[error("operation {id} is a capacity slot, which carries no result")]
    ResultNotCarried {
        /// The operation.
        id: OperationId,
    },
    /// A progress report's percentage is above 100.
    #[error("progress of {percent} percent is above 100")]
    ProgressOutOfRange {
        /// The percentage given.
        percent: u8,
    },
    /// A provisioning-only event arrived after provisioning ended.
    #[error("operation {id} is {status}, not provisioning")]
    NotProvisioning {
        /// The operation.
        id: OperationId,
        /// Its status.
        status: OpStatus,
    },
    /// The job has not started yet, so it cannot finish, fail or retire.
    #[error("operation {id} is still provisioning")]
    StillProvisioning {
        /// The operation.
        id: OperationId,
    },
    /// Retirement was already requested.
    #[error("operation {id} is already retiring")]
    AlreadyRetiring {
        /// The operation.
        id: OperationId,
    },
    /// MarkRetired needs a prior RequestRetire.
    #[error("operation {id} is {status}, not retiring")]
    NotRetiring {
        /// The operation.
        id: OperationId,
        /// Its status.
        status: OpStatus,
    },
    /// The operation was registered without expecting a peer channel.
    #[error("operation {id} ({kind}) does not expect a peer channel")]
    PeerReadyNotExpected {
        /// The operation.
        id: OperationId,
        /// Its kind.
        kind: OperationKind,
    },
    /// The peer channel was already announced.
    #[error("operation {id} already announced its peer")]
    PeerAlreadyReady {
        /// The operation.
        id: OperationId,
    },
    /// The operation holds as many pending watchers as allowed.
    #[error("operation {id} already has {max} pending watchers")]
    WatcherLimitReached {
        /// The operation.
        id: OperationId,
        /// The bound.
        max: usize,
    },
    /// Another wait_all is active; only one at a time.
    #[error("{wait} is already active")]
    WaitAlreadyActive {
        /// The active wait.
        wait: WaitId,
    },
    /// The wait names the same operation twice.
    #[error("operation {id} appears twice in the wait")]
    DuplicateIdInWait {
        /// The repeated id.
        id: OperationId,
    },
    /// The wait names more operations than allowed.
    #[error("wait names {len} operations, more than {max}")]
    WaitTooLarge {
        /// Ids given.
        len: usize,
        /// The bound.
        max: usize,
    },
    /// No such wait is active (already resolved, cancelled or never started).
    #[error("{wait} is not active")]
    WaitNotActive {
        /// The wait named.
        wait: WaitId,
    },
    /// The cursor names an end that has not happened yet.
    #[error("cursor {cursor} is past the last end {last}")]
    CursorAhead {
        /// The cursor given.
        cursor: CompletionSeq,
        /// The last sequence number issued.
        last: CompletionSeq,
    },
    /// The cursor moves backwards: those entries were already consumed.
    #[error("cursor {cursor} is behind the acknowledged cursor {acknowledged}")]
    CursorBehind {
        /// The cursor given.
        cursor: CompletionSeq,
        /// The cursor already acknowledged.
        acknowledged: CompletionSeq,
    },
}

/// A state the registry must never be in (SPEC 6, item 9). Found by
/// [`OperationsRegistry::check`].
#[derive(Clone, Debug, PartialEq, Eq, Hash, thiserror::Error)]
pub enum OpViolation {
    /// An ended operation still holds unresolved watchers: they would never
    /// resolve (watchers resolve exactly once, at the end).
    #[error("operation {id} ended but {pending} watchers are unresolved")]
    TerminalWithPendingWatchers {
        /// The operation.
        id: OperationId,
        /// Unresolved watchers.
        pending: usize,
    },
    /// A watcher id is pending on two operations, or twice on one: it could
    /// resolve twice.
    #[error("{watcher} is pending more than once")]
    WatcherDuplicated {
        /// The watcher.
        watcher: WatcherId,
    },
    /// An operation holds more pending watchers than allowed.
    #[error("operation {id} holds {count} watchers, more than {max}")]
    WatchersOverBound {
        /// The operation.
        id: OperationId,
        /// Pending watchers.
        count: usize,
        /// The bound.
        max: usize,
    },
    /// The eviction queue names a live (or missing) operation: eviction would
    /// drop a record that has not ended.
    #[error("retention queue holds {id}, which is not an ended record")]
    RetainedNotTerminal {
        /// The operation.
        id: OperationId,
    },
    /// An ended record is missing from the eviction queue, or listed twice:
    /// retention would leak or evict it out of order.
    #[error("ended operation {id} is not listed exactly once for retention")]
    TerminalNotRetained {
        /// The operation.
        id: OperationId,
    },
    /// More ended records are retained than `max_completed`.
    #[error("{retained} ended records retained, more than {max}")]
    RetainedOverBound {
        /// Records retained.
        retained: usize,
        /// The bound.
        max: usize,
    },
    /// More live operations than `max_concurrent`.
    #[error("{active} live operations, more than {max}")]
    ActiveOverBound {
        /// Live operations.
        active: usize,
        /// The bound.
        max: usize,
    },
    /// The registry was terminated yet an operation is still live.
    #[error("registry terminated but operation {id} is still live")]
    TerminatedWithLiveOperation {
        /// The operation.
        id: OperationId,
    },
    /// An operation holds a peer handle without having expected a peer.
    #[error("operation {id} holds a peer handle it never expected")]
    PeerHandleUnexpected {
        /// The operation.
        id: OperationId,
    },
    /// Two ended records share a feed position: one end was counted twice or
    /// the counter went backwards.
    #[error("completion sequence {seq} is used by {first} and {second}")]
    CompletionSeqDuplicated {
        /// The shared position.
        seq: CompletionSeq,
        /// One operation.
        first: OperationId,
        /// The other.
        second: OperationId,
    },
    /// An ended record's feed position is beyond the last one issued.
    #[error("operation {id} ended at {seq}, past the last issued {last}")]
    CompletionSeqAhead {
        /// The operation.
        id: OperationId,
        /// Its position.
        seq: CompletionSeq,
        /// The last position issued.
        last: CompletionSeq,
    },
    /// A wait member ended but the wait did not capture its outcome.
    #[error("{wait} missed the end of {id}")]
    WaitMissedEnd {
        /// The wait.
        wait: WaitId,
        /// The member.
        id: OperationId,
    },
    /// A wait captured an outcome for a member that is still live.
    #[error("{wait} holds an outcome for live operation {id}")]
    WaitOutcomeForLiveOperation {
        /// The wait.
        wait: WaitId,
        /// The member.
        id: OperationId,
    },
    /// Every member of the active wait ended, yet the wait did not resolve.
    #[error("{wait} is still active although all its members ended")]
    WaitUnresolved {
        /// The wait.
        wait: WaitId,
    },
    /// Feed sequence numbers do not strictly increase.
    #[error("feed entry {next} follows {previous}")]
    FeedNotMonotonic {
        /// The earlier entry's position.
        previous: CompletionSeq,
        /// The later entry's position.
        next: CompletionSeq,
    },
    /// A feed entry is beyond the last issued sequence number.
    #[error("feed entry {seq} is past the last issued {last}")]
    FeedAheadOfCounter {
        /// The entry's position.
        seq: CompletionSeq,
        /// The last position issued.
        last: CompletionSeq,
    },
    /// A feed entry at or below the acknowledged cursor is still held: it
    /// could be delivered twice.
    #[error("feed entry {seq} was acknowledged (through {acknowledged}) but is still held")]
    FeedEntryAcknowledged {
        /// The entry's position.
        seq: CompletionSeq,
        /// The acknowledged cursor.
        acknowledged: CompletionSeq,
    },
    /// The injected cursor is past the observed one, or the observed one past the last end: an end would be counted
    /// as dealt with before it was seen, or before it happened.
    #[error("feed cursors out of order: injected {injected}, observed {observed}, last end {last}")]
    CursorsOutOfOrder {
        /// The injected cursor.
        injected: CompletionSeq,
        /// The observed cursor.
        observed: CompletionSeq,
        /// The last position issued.
        last: CompletionSeq,
    },
    /// Unacknowledged entries plus reserved slots exceed the feed cap: some
    /// live operation's end would not fit.
    #[error("feed holds {unacknowledged} entries + {active} reserved, more than {max}")]
    FeedOverBound {
        /// Entries held.
        unacknowledged: usize,
        /// Live operations.
        active: usize,
        /// The bound.
        max: usize,
    },
}

/// A read-only view of one operation, for callers and tools.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct OperationSnapshot {
    /// The operation.
    pub id: OperationId,
    /// Its kind.
    pub kind: OperationKind,
    /// Its display name.
    pub display_name: String,
    /// Its status.
    pub status: OpStatus,
    /// How it ended, once it has.
    pub outcome: Option<OpOutcome>,
    /// Its feed position, once it has ended.
    pub completion_seq: Option<CompletionSeq>,
    /// Progress reports counted so far.
    pub progress_count: u64,
    /// Watchers still waiting for its end.
    pub watcher_count: usize,
    /// Its peer handle, once announced.
    pub peer_handle: Option<String>,
    /// The session that owns it (`None` only in a registry used on its own, outside a session).
    pub owner: Option<SessionId>,
    /// The child session it runs, if it is one.
    pub child_session: Option<SessionId>,
    /// Where it came from.
    pub source_label: String,
    /// The last progress it reported.
    pub progress_last: Option<Progress>,
    /// When it was registered.
    pub created_at: Millis,
    /// When provisioning succeeded, if it did.
    pub started_at: Option<Millis>,
    /// When it ended, if it has.
    pub completed_at: Option<Millis>,
    /// From registration to its end, or to `now` while it is live.
    pub elapsed_ms: u64,
}

/// The operations registry of one session. Change it only through
/// [`OperationsRegistry::apply`].
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct OperationsRegistry {
    pub(crate) config: OpsConfig,
    pub(crate) records: IdMap<OperationId, OperationRecord>,
    /// Ended records still held, oldest end first; eviction pops the front.
    pub(crate) retained: VecDeque<OperationId>,
    pub(crate) wait: Option<ActiveWait>,
    /// Ends not yet acknowledged, in sequence order.
    pub(crate) feed: VecDeque<FeedEntry>,
    /// The agent-applied cursor: ends the agent consumed (AcknowledgeFeed); their entries are dropped.
    pub(crate) feed_acknowledged: CompletionSeq,
    /// The runtime-observed cursor: ends the session machine has seen and classified (specs/operations.md#cursors).
    pub(crate) feed_observed: CompletionSeq,
    /// The runtime-injected cursor: ends a Continuation was injected for, or that needed none.
    pub(crate) feed_injected: CompletionSeq,
    pub(crate) completion_seq_last: CompletionSeq,
    pub(crate) operation_id_next: u64,
    pub(crate) watcher_id_next: u64,
    pub(crate) wait_id_next: u64,
    pub(crate) terminated: bool,
}

impl Default for OperationsRegistry {
    fn default() -> Self {
        OperationsRegistry::new(OpsConfig::default())
    }
}

fn next_counter(counter: &mut u64) -> u64 {
    let value = *counter;
    // A u64 counter incremented once per event cannot wrap in practice; if it
    // ever did, reusing ids would break exactly-once delivery, so stop loudly.
    *counter = value.checked_add(1).expect("registry id counter overflowed");
    value
}

fn check_text(field: &'static str, text: &str, max: usize) -> Result<(), OpRefusal> {
    if text.len() > max {
        return Err(OpRefusal::TextTooLong { field, len: text.len(), max });
    }
    Ok(())
}

impl OperationsRegistry {
    /// An empty registry.
    ///
    /// # Panics
    /// If `config` fails [`OpsConfig::validate`]; use [`Self::try_new`] for
    /// configuration that comes from users.
    #[must_use]
    pub fn new(config: OpsConfig) -> Self {
        match Self::try_new(config) {
            Ok(registry) => registry,
            Err(error) => panic!("invalid operations registry config: {error}"),
        }
    }

    /// An empty registry, or why `config` is unusable.
    pub fn try_new(config: OpsConfig) -> Result<Self, OpConfigError> {
        config.validate()?;
        let registry = OperationsRegistry {
            config,
            records: IdMap::new(),
            retained: VecDeque::new(),
            wait: None,
            feed: VecDeque::new(),
            feed_acknowledged: CompletionSeq(0),
            feed_observed: CompletionSeq(0),
            feed_injected: CompletionSeq(0),
            completion_seq_last: CompletionSeq(0),
            operation_id_next: 1,
            watcher_id_next: 1,
            wait_id_next: 1,
            terminated: false,
        };
        debug_assert_eq!(registry.check(), Ok(()));
        Ok(registry)
    }

    /// The registry's bounds.
    #[must_use]
    pub fn config(&self) -> OpsConfig {
        self.config
    }

    /// Whether the owner was terminated (every later event is refused).
    #[must_use]
    pub fn is_terminated(&self) -> bool {
        self.terminated
    }

    /// Operations that have not ended.
    #[must_use]
    pub fn active_count(&self) -> usize {
        self.records.len() - self.retained.len()
    }

    /// Ended records still held.
    #[must_use]
    pub fn retained_count(&self) -> usize {
        self.retained.len()
    }

    /// The active wait_all, if any, and the run waiting on it.
    #[must_use]
    pub fn active_wait(&self) -> Option<(WaitId, RunId)> {
        self.wait.as_ref().map(|wait| (wait.id, wait.run))
    }

    /// The last completion sequence number issued (zero before any end).
    #[must_use]
    pub fn completion_seq_last(&self) -> CompletionSeq {
        self.completion_seq_last
    }

    /// The highest sequence number the session acknowledged.
    #[must_use]
    pub fn feed_acknowledged(&self) -> CompletionSeq {
        self.feed_acknowledged
    }

    /// The feed's three cursors (specs/operations.md#cursors).
    #[must_use]
    pub fn cursors(&self) -> FeedCursors {
        FeedCursors { applied: self.feed_acknowledged, observed: self.feed_observed, injected: self.feed_injected }
    }

    /// Whether `op` is a live operation whose record outlives a restart (a detached job): a change of its stage is
    /// worth saving.
    #[must_use]
    pub fn outlives_restart(&self, op: OperationId) -> bool {
        self.records.get(&op).is_some_and(|r| !r.is_ended() && r.spec.kind.survives_restart())
    }

    /// Moves the runtime-observed cursor to the last end: the session machine has seen every end so far.
    pub(crate) fn observe_ends(&mut self) {
        debug_assert!(self.feed_observed <= self.completion_seq_last);
        self.feed_observed = self.completion_seq_last;
    }

    /// Whether an end the session machine observed and has not dealt with yet (past the injected cursor) wakes the
    /// owner, and the agent has not applied it: a Continuation is owed.
    #[must_use]
    pub fn wake_owed(&self) -> bool {
        let floor = self.feed_injected.max(self.feed_acknowledged);
        self.feed.iter().any(|e| {
            e.seq > floor
                && e.seq <= self.feed_observed
                && e.kind.wakes_owner()
                && !matches!(e.outcome, OpOutcome::Terminated { .. })
        })
    }

    /// Moves the runtime-injected cursor back to the applied one: the Continuations it counted are gone (a restart,
    /// a recover), so every end the agent has not applied is looked at again (specs/operations.md#cursors).
    pub(crate) fn rewind_injected(&mut self) {
        self.feed_injected = self.feed_injected.min(self.feed_acknowledged.min(self.feed_observed));
        debug_assert!(self.feed_injected <= self.feed_observed);
    }

    /// Whether [`Self::rewind_injected`] would move the injected cursor.
    pub(crate) fn injected_past_applied(&self) -> bool {
        self.feed_injected > self.feed_acknowledged.min(self.feed_observed)
    }

    /// Moves the runtime-injected cursor to the observed one: every observed end has had its Continuation (or needed
    /// none).
    pub(crate) fn mark_injected(&mut self) {
        debug_assert!(self.feed_injected <= self.feed_observed);
        self.feed_injected = self.feed_observed;
    }

    /// Feed entries strictly after `cursor`, in sequence order. Entries at or
    /// below the acknowledged cursor are gone, whatever `cursor` says.
    pub fn feed_since(&self, cursor: CompletionSeq) -> impl Iterator<Item = &FeedEntry> + '_ {
        self.feed.iter().filter(move |entry| entry.seq > cursor)
    }

    /// A view of one operation, or `None` if it is unknown (never registered,
    /// evicted or collected).
    #[must_use]
    pub fn snapshot(&self, id: OperationId, now: Millis) -> Option<OperationSnapshot> {
        let record = self.records.get(&id)?;
        let (completion_seq, completed_at) = match &record.stage {
            Stage::Ended { seq, at, .. } => (Some(*seq), Some(*at)),
            _ => (None, None),
        };
        // Elapsed time stops at the end; while live it runs to the caller's now.
        let elapsed_ms = completed_at.unwrap_or(now).since(record.created_at);
        Some(OperationSnapshot {
            id,
            kind: record.spec.kind,
            display_name: record.spec.display_name.clone(),
            status: record.status(),
            outcome: record.outcome().cloned(),
            completion_seq,
            progress_count: record.progress_count,
            watcher_count: record.watchers.len(),
            peer_handle: record.peer_handle.clone(),
            owner: record.spec.owner,
            child_session: record.spec.child_session,
            source_label: record.spec.source_label.clone(),
            progress_last: record.progress_last.clone(),
            created_at: record.created_at,
            started_at: record.started_at,
            completed_at,
            elapsed_ms,
        })
    }

    /// Views of every known operation, ordered by display name, then by id.
    #[must_use]
    pub fn list(&self, now: Millis) -> Vec<OperationSnapshot> {
        let mut snapshots: Vec<OperationSnapshot> =
            self.records.keys().filter_map(|id| self.snapshot(*id, now)).collect();
        snapshots.sort_by(|a, b| a.display_name.cmp(&b.display_name).then(a.id.cmp(&b.id)));
        debug_assert_eq!(snapshots.len(), self.records.len());
        snapshots
    }

    /// The registry as it should be after a process restart (SPEC 5): ended
    /// records, the feed, every counter and the terminated flag survive; live
    /// operations are
    /// dropped because their jobs died with the process, and so are watchers
    /// and the active wait, whose receivers died too.
    ///
    /// A running (or retiring) detached job is the exception: its job lives outside the process, so its record is
    /// kept, re-bound, without the watchers. The cursors survive, except that the injected cursor goes back to the
    /// applied one: the Continuations it counted were ephemeral and died with the process, so every end the agent
    /// has not applied is looked at again and wakes the session once (specs/operations.md#cursors).
    #[must_use]
    pub fn recovered(&self) -> Self {
        let mut next = self.clone();
        next.records.retain(|_, record| {
            record.watchers.clear();
            record.is_ended() || (record.spec.kind.survives_restart() && record.stage != Stage::Provisioning)
        });
        next.wait = None;
        next.rewind_injected();
        // `terminated` is kept: a restart must not reopen a registry whose
        // owner was terminated; reviving a session builds a fresh registry.
        debug_assert!(next.records.values().all(|r| r.is_ended() || r.spec.kind.survives_restart()));
        debug_assert_eq!(next.records.len() - next.active_count(), next.retained.len());
        next
    }

    /// Applies one event. On success returns the effects the shell must
    /// perform, in order; on refusal nothing changed.
    pub fn apply(&mut self, now: Millis, event: OpEvent) -> Result<Vec<OpEffect>, OpRefusal> {
        let mut effects = Vec::new();
        self.apply_to(now, event, &mut effects)?;
        Ok(effects)
    }

    /// Applies one event, pushing its effects, in order, into `effects` (a buffer of the caller's, possibly of its
    /// own effect type). On refusal nothing changed and nothing was pushed.
    pub fn apply_to(&mut self, now: Millis, event: OpEvent, effects: &mut impl OpEffects) -> Result<(), OpRefusal> {
        debug_assert_eq!(self.check(), Ok(()), "registry invalid before {event:?}");
        if self.terminated {
            // spec: specs/operations.md#terminate-owner
            return Err(OpRefusal::Terminated);
        }
        match event {
            OpEvent::Register { spec } => self.register(now, spec, effects)?,
            OpEvent::ProvisioningSucceeded { op } => self.provisioning_succeeded(now, op)?,
            OpEvent::ProvisioningFailed { op, error } => {
                self.require_stage_provisioning(op)?;
                self.end(now, op, OpOutcome::Failed { error }, effects);
            }
            OpEvent::AbortProvisioning { op, reason } => {
                // spec: specs/operations.md#abort
                self.require_stage_provisioning(op)?;
                self.end(now, op, OpOutcome::Aborted { reason }, effects);
            }
            OpEvent::PeerReady { op, peer } => self.peer_ready(op, peer, effects)?,
            OpEvent::ReportProgress { op, progress } => self.report_progress(op, progress)?,
            OpEvent::Complete { op, result } => {
                // spec: specs/operations.md#finish
                self.require_started(op)?;
                // spec: specs/operations.md#kinds: a capacity slot carries no result.
                if !self.records.get(&op).expect("checked live").spec.kind.carries_result() && !result.is_empty() {
                    return Err(OpRefusal::ResultNotCarried { id: op });
                }
                self.end(now, op, OpOutcome::Completed(result), effects);
            }
            OpEvent::Fail { op, error } => {
                // spec: specs/operations.md#finish
                self.require_started(op)?;
                self.end(now, op, OpOutcome::Failed { error }, effects);
            }
            OpEvent::Cancel { op, reason } => {
                // spec: specs/operations.md#cancel
                self.live_record(op)?;
                self.end(now, op, OpOutcome::Cancelled { reason }, effects);
            }
            OpEvent::RequestRetire { op } => self.request_retire(op)?,
            OpEvent::MarkRetired { op } => {
                // spec: specs/operations.md#retire
                let status = self.live_record(op)?.status();
                if status != OpStatus::Retiring {
                    return Err(OpRefusal::NotRetiring { id: op, status });
                }
                self.end(now, op, OpOutcome::Retired, effects);
            }
            OpEvent::TerminateOwner { reason } => self.terminate_owner(now, reason, effects),
            OpEvent::RegisterWatcher { op } => self.register_watcher(op, effects)?,
            OpEvent::WaitAll { run, ids } => self.wait_all(run, ids, effects)?,
            OpEvent::CancelWait { wait } => {
                // spec: specs/operations.md#wait-all
                match &self.wait {
                    Some(active) if active.id == wait => {
                        self.wait = None;
                        effects.push(OpEffect::WaitCancelled { wait });
                    }
                    _ => return Err(OpRefusal::WaitNotActive { wait }),
                }
            }
            OpEvent::CollectCompleted => self.collect_completed(effects),
            OpEvent::AcknowledgeFeed { through } => self.acknowledge_feed(through, effects)?,
        }
        debug_assert_eq!(self.check(), Ok(()), "registry invalid after an accepted event");
        Ok(())
    }

    fn record(&self, id: OperationId) -> Result<&OperationRecord, OpRefusal> {
        self.records.get(&id).ok_or(OpRefusal::UnknownOperation { id })
    }

    /// The record of a known operation that has not ended.
    fn live_record(&self, id: OperationId) -> Result<&OperationRecord, OpRefusal> {
        let record = self.record(id)?;
        // spec: specs/operations.md#terminal-once
        if record.is_ended() {
            return Err(OpRefusal::AlreadyTerminal { id, status: record.status() });
        }
        Ok(record)
    }

    fn require_stage_provisioning(&self, id: OperationId) -> Result<(), OpRefusal> {
        let status = self.live_record(id)?.status();
        if status != OpStatus::Provisioning {
            return Err(OpRefusal::NotProvisioning { id, status });
        }
        Ok(())
    }

    /// Running or Retiring: the job exists and may finish.
    fn require_started(&self, id: OperationId) -> Result<(), OpRefusal> {
        let status = self.live_record(id)?.status();
        if status == OpStatus::Provisioning {
            return Err(OpRefusal::StillProvisioning { id });
        }
        debug_assert!(matches!(status, OpStatus::Running | OpStatus::Retiring));
        Ok(())
    }

    fn register(&mut self, now: Millis, spec: OperationSpec, effects: &mut impl OpEffects) -> Result<(), OpRefusal> {
        // spec: specs/operations.md#register
        check_text("display name", &spec.display_name, DISPLAY_NAME_BYTES_MAX)?;
        check_text("source label", &spec.source_label, SOURCE_LABEL_BYTES_MAX)?;
        if spec.expects_peer && !spec.kind.supports_peer() {
            return Err(OpRefusal::PeerChannelUnsupported { kind: spec.kind });
        }
        if spec.child_session.is_some() && !spec.kind.has_child_session() {
            return Err(OpRefusal::ChildSessionUnsupported { kind: spec.kind });
        }
        if let (Some(owner), Some(child)) = (spec.owner, spec.child_session)
            && owner == child
        {
            return Err(OpRefusal::OwnerMismatch { owner, session: owner });
        }
        let active = self.active_count();
        if active >= self.config.max_concurrent {
            return Err(OpRefusal::LimitReached { limit: self.config.max_concurrent, active });
        }
        // Each live operation holds one feed slot for its future end, so that
        // no end (least of all an owner termination) ever has to be refused
        // for lack of feed room: back-pressure falls on registration instead.
        let unacknowledged = self.feed.len();
        if unacknowledged + active >= self.config.feed_max {
            return Err(OpRefusal::FeedFull { max: self.config.feed_max, unacknowledged, active });
        }
        let op = OperationId(next_counter(&mut self.operation_id_next));
        let record = OperationRecord {
            spec,
            stage: Stage::Provisioning,
            peer_handle: None,
            progress_count: 0,
            progress_last: None,
            watchers: Vec::new(),
            created_at: now,
            started_at: None,
        };
        let previous = self.records.insert(op, record);
        assert!(previous.is_none(), "operation id {op} allocated twice");
        debug_assert_eq!(self.active_count(), active + 1);
        effects.push(OpEffect::Registered { op });
        Ok(())
    }

    fn provisioning_succeeded(&mut self, now: Millis, op: OperationId) -> Result<(), OpRefusal> {
        // spec: specs/operations.md#provision
        self.require_stage_provisioning(op)?;
        let record = self.records.get_mut(&op).expect("checked provisioning");
        record.stage = Stage::Running;
        record.started_at = Some(now);
        debug_assert_eq!(record.status(), OpStatus::Running);
        Ok(())
    }

    fn peer_ready(&mut self, op: OperationId, peer: String, effects: &mut impl OpEffects) -> Result<(), OpRefusal> {
        // spec: specs/operations.md#peer-ready
        let record = self.live_record(op)?;
        if !record.spec.expects_peer {
            return Err(OpRefusal::PeerReadyNotExpected { id: op, kind: record.spec.kind });
        }
        if record.peer_handle.is_some() {
            return Err(OpRefusal::PeerAlreadyReady { id: op });
        }
        check_text("peer handle", &peer, PEER_HANDLE_BYTES_MAX)?;
        let record = self.records.get_mut(&op).expect("checked live");
        record.peer_handle = Some(peer.clone());
        debug_assert!(record.spec.kind.supports_peer());
        effects.push(OpEffect::PeerExposed { op, peer });
        Ok(())
    }

    fn report_progress(&mut self, op: OperationId, progress: Progress) -> Result<(), OpRefusal> {
        // spec: specs/operations.md#progress
        self.live_record(op)?;
        check_text("progress message", &progress.message, PROGRESS_MESSAGE_BYTES_MAX)?;
        if let Some(percent) = progress.percent.filter(|p| *p > 100) {
            return Err(OpRefusal::ProgressOutOfRange { percent });
        }
        let record = self.records.get_mut(&op).expect("checked live");
        record.progress_count = record.progress_count.saturating_add(1);
        record.progress_last = Some(progress);
        debug_assert!(record.progress_count > 0);
        Ok(())
    }

    fn request_retire(&mut self, op: OperationId) -> Result<(), OpRefusal> {
        // spec: specs/operations.md#retire
        match self.live_record(op)?.status() {
            OpStatus::Provisioning => return Err(OpRefusal::StillProvisioning { id: op }),
            OpStatus::Retiring => return Err(OpRefusal::AlreadyRetiring { id: op }),
            status => debug_assert_eq!(status, OpStatus::Running),
        }
        let record = self.records.get_mut(&op).expect("checked live");
        record.stage = Stage::Retiring;
        debug_assert_eq!(record.status(), OpStatus::Retiring);
        Ok(())
    }

    /// Ends one live operation: resolves its watchers, appends its end to the
    /// feed, feeds the active wait, and evicts the oldest ended records past
    /// the retention bound. Every terminal transition goes through here, which
    /// is what makes "ends only once" and "watchers resolve exactly once" hold.
    fn end(&mut self, now: Millis, op: OperationId, outcome: OpOutcome, effects: &mut impl OpEffects) {
        // spec: specs/operations.md#terminal-once
        let seq = CompletionSeq(self.completion_seq_last.0 + 1);
        let record = self.records.get_mut(&op).expect("caller checked the operation is known");
        assert!(!record.is_ended(), "operation {op} ended twice");
        let watchers = std::mem::take(&mut record.watchers);
        record.stage = Stage::Ended { outcome: outcome.clone(), seq, at: now };
        self.completion_seq_last = seq;
        if !watchers.is_empty() {
            effects.push(OpEffect::ResolveWatchers { op, watchers, outcome: outcome.clone() });
        }
        // spec: specs/operations.md#feed
        // The slot reserved at registration guarantees room.
        debug_assert!(self.feed.len() < self.config.feed_max);
        let kind = record.spec.kind;
        let owner_wake = kind.wakes_owner() && !matches!(outcome, OpOutcome::Terminated { .. });
        effects.push(OpEffect::OperationEnded { op, seq, owner_wake, status: outcome.status() });
        self.feed_wait(op, &outcome, effects);
        // The feed entry is the outcome's last holder, so it takes it.
        self.feed.push_back(FeedEntry { seq, op, kind, outcome });
        // spec: specs/operations.md#retention
        self.retained.push_back(op);
        while self.retained.len() > self.config.max_completed {
            let oldest = self.retained.pop_front().expect("longer than the bound");
            let evicted = self.records.remove(&oldest).expect("retained ids have records");
            assert!(evicted.is_ended(), "evicted live operation {oldest}");
            effects.push(OpEffect::Evicted { op: oldest });
        }
    }

    /// Records a member's end in the active wait and resolves the wait once
    /// every member has ended.
    fn feed_wait(&mut self, op: OperationId, outcome: &OpOutcome, effects: &mut impl OpEffects) {
        // spec: specs/operations.md#wait-all
        let Some(wait) = self.wait.as_mut() else {
            return;
        };
        if let Some((_, captured)) = wait.members.iter_mut().find(|(id, _)| *id == op) {
            debug_assert!(captured.is_none(), "wait member {op} ended twice");
            *captured = Some(outcome.clone());
        }
        if wait.members.iter().all(|(_, captured)| captured.is_some()) {
            let wait = self.wait.take().expect("checked above");
            effects.push(resolution(wait));
        }
    }

    fn terminate_owner(&mut self, now: Millis, reason: String, effects: &mut impl OpEffects) {
        // spec: specs/operations.md#terminate-owner
        let live: Vec<OperationId> =
            self.records.iter().filter(|(_, record)| !record.is_ended()).map(|(id, _)| *id).collect();
        for op in live {
            self.end(now, op, OpOutcome::Terminated { reason: reason.clone() }, effects);
        }
        self.terminated = true;
        debug_assert_eq!(self.active_count(), 0);
        debug_assert!(self.wait.is_none(), "a wait outlived the termination of all members");
    }

    fn register_watcher(&mut self, op: OperationId, effects: &mut impl OpEffects) -> Result<(), OpRefusal> {
        // spec: specs/operations.md#watchers
        let record = self.record(op)?;
        if record.watchers.len() >= WATCHERS_PER_OPERATION_MAX {
            return Err(OpRefusal::WatcherLimitReached { id: op, max: WATCHERS_PER_OPERATION_MAX });
        }
        let watcher = WatcherId(next_counter(&mut self.watcher_id_next));
        effects.push(OpEffect::WatcherRegistered { op, watcher });
        let record = self.records.get_mut(&op).expect("checked known");
        match record.outcome() {
            // A late watcher resolves in the same apply, so it never waits on
            // an end that already happened.
            Some(outcome) => {
                effects.push(OpEffect::ResolveWatchers { op, watchers: vec![watcher], outcome: outcome.clone() })
            }
            None => record.watchers.push(watcher),
        }
        debug_assert!(record.watchers.len() <= WATCHERS_PER_OPERATION_MAX);
        Ok(())
    }

    fn wait_all(&mut self, run: RunId, ids: Vec<OperationId>, effects: &mut impl OpEffects) -> Result<(), OpRefusal> {
        // spec: specs/operations.md#wait-all
        if let Some(active) = &self.wait {
            return Err(OpRefusal::WaitAlreadyActive { wait: active.id });
        }
        if ids.len() > WAIT_ALL_IDS_MAX {
            return Err(OpRefusal::WaitTooLarge { len: ids.len(), max: WAIT_ALL_IDS_MAX });
        }
        let mut seen = BTreeSet::new();
        let mut members = Vec::with_capacity(ids.len());
        for id in ids {
            if !seen.insert(id) {
                return Err(OpRefusal::DuplicateIdInWait { id });
            }
            members.push((id, self.record(id)?.outcome().cloned()));
        }
        let wait = ActiveWait { id: WaitId(next_counter(&mut self.wait_id_next)), run, members };
        effects.push(OpEffect::WaitStarted { wait: wait.id, run });
        // A wait whose members all ended already (or that names none) resolves
        // in the same apply rather than waiting for an end that cannot come.
        if wait.members.iter().all(|(_, captured)| captured.is_some()) {
            effects.push(resolution(wait));
        } else {
            self.wait = Some(wait);
        }
        debug_assert!(self.wait.as_ref().is_none_or(|w| w.members.iter().any(|m| m.1.is_none())));
        Ok(())
    }

    fn collect_completed(&mut self, effects: &mut impl OpEffects) {
        // spec: specs/operations.md#retention
        let mut operations = Vec::with_capacity(self.retained.len());
        for op in self.retained.drain(..) {
            let record = self.records.remove(&op).expect("retained ids have records");
            let Stage::Ended { outcome, .. } = record.stage else {
                panic!("retained operation {op} has not ended");
            };
            operations.push((op, outcome));
        }
        debug_assert_eq!(self.records.len(), self.active_count());
        effects.push(OpEffect::Collected { operations });
    }

    fn acknowledge_feed(&mut self, through: CompletionSeq, effects: &mut impl OpEffects) -> Result<(), OpRefusal> {
        // spec: specs/operations.md#feed
        if through > self.completion_seq_last {
            return Err(OpRefusal::CursorAhead { cursor: through, last: self.completion_seq_last });
        }
        if through < self.feed_acknowledged {
            return Err(OpRefusal::CursorBehind { cursor: through, acknowledged: self.feed_acknowledged });
        }
        let before = self.feed.len();
        while self.feed.front().is_some_and(|entry| entry.seq <= through) {
            self.feed.pop_front();
        }
        self.feed_acknowledged = through;
        debug_assert!(self.feed.front().is_none_or(|entry| entry.seq > through));
        effects.push(OpEffect::FeedAcknowledged { through, dropped: before - self.feed.len() });
        Ok(())
    }

    /// Checks every state property of SPEC 6 item 9 (and the bounds). The
    /// model checker and the simulator call this after every step.
    pub fn check(&self) -> Result<(), OpViolation> {
        self.check_records()?;
        self.check_retention()?;
        self.check_wait()?;
        self.check_feed()
    }

    fn check_records(&self) -> Result<(), OpViolation> {
        let mut watchers_seen = BTreeSet::new();
        let mut seqs_seen: BTreeMap<CompletionSeq, OperationId> = BTreeMap::new();
        for (id, record) in &self.records {
            let id = *id;
            if record.is_ended() && !record.watchers.is_empty() {
                return Err(OpViolation::TerminalWithPendingWatchers { id, pending: record.watchers.len() });
            }
            if record.watchers.len() > WATCHERS_PER_OPERATION_MAX {
                return Err(OpViolation::WatchersOverBound {
                    id,
                    count: record.watchers.len(),
                    max: WATCHERS_PER_OPERATION_MAX,
                });
            }
            if let Some(watcher) = record.watchers.iter().find(|w| !watchers_seen.insert(**w)) {
                return Err(OpViolation::WatcherDuplicated { watcher: *watcher });
            }
            if record.peer_handle.is_some() && !record.spec.expects_peer {
                return Err(OpViolation::PeerHandleUnexpected { id });
            }
            match &record.stage {
                Stage::Ended { seq, .. } => {
                    if *seq > self.completion_seq_last {
                        return Err(OpViolation::CompletionSeqAhead { id, seq: *seq, last: self.completion_seq_last });
                    }
                    if let Some(first) = seqs_seen.insert(*seq, id) {
                        return Err(OpViolation::CompletionSeqDuplicated { seq: *seq, first, second: id });
                    }
                }
                _ if self.terminated => {
                    return Err(OpViolation::TerminatedWithLiveOperation { id });
                }
                _ => {}
            }
        }
        Ok(())
    }

    fn check_retention(&self) -> Result<(), OpViolation> {
        for id in &self.retained {
            if !self.records.get(id).is_some_and(OperationRecord::is_ended) {
                return Err(OpViolation::RetainedNotTerminal { id: *id });
            }
        }
        let mut sorted: Vec<OperationId> = self.retained.iter().copied().collect();
        sorted.sort_unstable();
        for (id, record) in &self.records {
            if record.is_ended() && sorted.binary_search(id).is_err() {
                return Err(OpViolation::TerminalNotRetained { id: *id });
            }
        }
        if let Some(pair) = sorted.windows(2).find(|pair| pair[0] == pair[1]) {
            return Err(OpViolation::TerminalNotRetained { id: pair[0] });
        }
        if self.retained.len() > self.config.max_completed {
            return Err(OpViolation::RetainedOverBound {
                retained: self.retained.len(),
                max: self.config.max_completed,
            });
        }
        if self.active_count() > self.config.max_concurrent {
            return Err(OpViolation::ActiveOverBound { active: self.active_count(), max: self.config.max_concurrent });
        }
        Ok(())
    }

    fn check_wait(&self) -> Result<(), OpViolation> {
        let Some(wait) = &self.wait else {
            return Ok(());
        };
        for (id, captured) in &wait.members {
            // A member without a record has ended and been evicted or collected.
            let ended = self.records.get(id).is_none_or(OperationRecord::is_ended);
            if ended && captured.is_none() {
                return Err(OpViolation::WaitMissedEnd { wait: wait.id, id: *id });
            }
            if !ended && captured.is_some() {
                return Err(OpViolation::WaitOutcomeForLiveOperation { wait: wait.id, id: *id });
            }
        }
        if wait.members.iter().all(|(_, captured)| captured.is_some()) {
            return Err(OpViolation::WaitUnresolved { wait: wait.id });
        }
        Ok(())
    }

    fn check_feed(&self) -> Result<(), OpViolation> {
        let mut previous: Option<CompletionSeq> = None;
        for entry in &self.feed {
            match previous {
                Some(previous) if entry.seq <= previous => {
                    return Err(OpViolation::FeedNotMonotonic { previous, next: entry.seq });
                }
                _ => {}
            }
            if entry.seq > self.completion_seq_last {
                return Err(OpViolation::FeedAheadOfCounter { seq: entry.seq, last: self.completion_seq_last });
            }
            if entry.seq <= self.feed_acknowledged {
                return Err(OpViolation::FeedEntryAcknowledged {
                    seq: entry.seq,
                    acknowledged: self.feed_acknowledged,
                });
            }
            previous = Some(entry.seq);
        }
        if self.feed_injected > self.feed_observed || self.feed_observed > self.completion_seq_last {
            return Err(OpViolation::CursorsOutOfOrder {
                injected: self.feed_injected,
                observed: self.feed_observed,
                last: self.completion_seq_last,
            });
        }
        if self.feed.len() + self.active_count() > self.config.feed_max {
            return Err(OpViolation::FeedOverBound {
                unacknowledged: self.feed.len(),
                active: self.active_count(),
                max: self.config.feed_max,
            });
        }
        Ok(())
    }

    /// Hooks that bend the state past what `apply` allows, so tests can show
    /// that [`Self::check`] catches each violation. Not for production use.
    #[doc(hidden)]
    pub fn tamper(&mut self) -> Tamper<'_> {
        Tamper { registry: self }
    }
}

fn resolution(wait: ActiveWait) -> OpEffect {
    let outcomes = wait
        .members
        .into_iter()
        .map(|(id, captured)| (id, captured.expect("resolved waits have every outcome")))
        .collect();
    OpEffect::ResolveWaitAll { wait: wait.id, outcomes }
}

/// Direct state edits for violation tests (see [`OperationsRegistry::tamper`]).
/// Each method breaks exactly one rule; none is reachable through `apply`.
#[doc(hidden)]
#[derive(Debug)]
pub struct Tamper<'a> {
    registry: &'a mut OperationsRegistry,
}

#[doc(hidden)]
impl Tamper<'_> {
    /// Adds a pending watcher to an operation, ended or not.
    pub fn push_watcher(&mut self, op: OperationId, watcher: WatcherId) {
        self.registry.records.get_mut(&op).expect("known operation").watchers.push(watcher);
    }

    /// Lists an id in the retention queue.
    pub fn push_retained(&mut self, op: OperationId) {
        self.registry.retained.push_back(op);
    }

    /// Removes an id from the retention queue.
    pub fn remove_retained(&mut self, op: OperationId) {
        self.registry.retained.retain(|id| *id != op);
    }

    /// Overwrites the bounds without validation.
    pub fn set_config(&mut self, config: OpsConfig) {
        self.registry.config = config;
    }

    /// Marks the registry terminated without ending anything.
    pub fn set_terminated(&mut self) {
        self.registry.terminated = true;
    }

    /// Stores a peer handle regardless of what the operation expects.
    pub fn set_peer_handle(&mut self, op: OperationId, peer: &str) {
        self.registry.records.get_mut(&op).expect("known operation").peer_handle = Some(peer.to_owned());
    }

    /// Rewrites an ended operation's feed position.
    pub fn set_completion_seq(&mut self, op: OperationId, seq: CompletionSeq) {
        let record = self.registry.records.get_mut(&op).expect("known operation");
        match &mut record.stage {
            Stage::Ended { seq: stored, .. } => *stored = seq,
            _ => panic!("operation {op} has not ended"),
        }
    }

    /// Installs an active wait whose captured outcomes are given as is.
    pub fn install_wait(&mut self, wait: WaitId, run: RunId, members: Vec<(OperationId, Option<OpOutcome>)>) {
        self.registry.wait = Some(ActiveWait { id: wait, run, members });
    }

    /// Appends a feed entry without touching the counter.
    pub fn push_feed(&mut self, entry: FeedEntry) {
        self.registry.feed.push_back(entry);
    }

    /// Moves the acknowledged cursor without dropping entries.
    pub fn set_feed_acknowledged(&mut self, through: CompletionSeq) {
        self.registry.feed_acknowledged = through;
    }

    /// Moves the injected cursor, wherever that leaves it.
    pub fn set_feed_injected(&mut self, through: CompletionSeq) {
        self.registry.feed_injected = through;
    }
}
