//! The session machine: every per-session machine composed, changed only
//! through [`SessionMachine::apply`].
//!
//! The shell's contract (after quinn-proto and str0m): lock the session, call
//! `apply(now, event)`, perform every returned effect in order, feed each
//! effect's result back as an event, unlock. Nothing outside this file decides
//! a transition; a refused event leaves the machine exactly as it was.
//!
//! spec: specs/session.md

use std::collections::{BTreeSet, VecDeque};

use serde::{Deserialize, Serialize};

use crate::completion::{
    CleanupObservation, ErrorInfo, Evidence, FailureCause, FinalizationObservation, NoOutcome, Outcome, OutcomeClass,
    RunResult, TerminalObservation, WaiterBook, select_class, validate_cleanup,
};
use crate::drain::DrainMode;
use crate::drain::{DrainEvent, DrainExitReason, DrainMachine, desired_mode};
use crate::ids::{Binding, EpochId, Generation, InputId, Millis, RunId, SessionId};
use crate::input::{
    AbandonReason, InputKind, InputRecord, InputSpec, InputState, InputValidation, KeyLookup, Ledger, Terminalized,
    admission_policy,
};
use crate::lease::HostId;
use crate::operations::{OpEffect, OpEvent, OpRefusal, OperationsRegistry};
use crate::phase::{PhaseEvent, PhaseMachine, PhaseRefusal, RuntimePhase};
use crate::planted::planted_or;
use crate::registration::{Obligation, RegistrationEffect, RegistrationEvent, RegistrationMachine, RegistrationPhase};

/// Default run deadline: a run past it is cancelled (SPEC 3).
pub const RUN_DEADLINE_MS_DEFAULT: u64 = 60 * 60 * 1000;
/// Default notice threshold: a run past it is reported once.
pub const RUN_NOTICE_MS_DEFAULT: u64 = 2 * 60 * 1000;
/// Committed receipts kept in live state for `load_boundary_receipt`.
pub const RECEIPTS_RETAINED_MAX: usize = 256;
/// Most silent intents a session may list.
pub const SILENT_INTENTS_MAX: usize = 64;

/// Per-session settings.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SessionConfig {
    /// Attempts an input gets before MaxAttemptsExhausted.
    pub max_attempts: u32,
    /// A run past this many milliseconds is cancelled and counts as failed.
    pub run_deadline_ms: u64,
    /// A run past this many milliseconds is reported once.
    pub run_notice_ms: u64,
    /// Whether the session has peer ingress.
    pub comms_enabled: bool,
    /// Whether the session stays hosted for peer ingress while idle.
    pub keep_alive: bool,
    /// Most terminal inputs kept in memory for `input_state` and dedup (at least one). With a store, an older
    /// input's key is recalled from it (specs/input.md#recall); without one, it is forgotten.
    #[serde(default = "history_max_default")]
    pub history_max: usize,
    /// The operations registry's bounds: live operations (`max_concurrent`), retained ended records
    /// (`max_completed`) and the completion feed (specs/operations.md#bounds).
    #[serde(default)]
    pub operations: crate::operations::OpsConfig,
    /// A planted defect (teeth tests only).
    #[cfg(feature = "planted")]
    #[serde(skip)]
    pub planted: Option<crate::planted::Planted>,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            max_attempts: crate::input::MAX_ATTEMPTS_DEFAULT,
            run_deadline_ms: RUN_DEADLINE_MS_DEFAULT,
            run_notice_ms: RUN_NOTICE_MS_DEFAULT,
            comms_enabled: false,
            keep_alive: false,
            history_max: crate::input::TERMINAL_HISTORY_MAX,
            operations: crate::operations::OpsConfig::default(),
            #[cfg(feature = "planted")]
            planted: None,
        }
    }
}

fn history_max_default() -> usize {
    crate::input::TERMINAL_HISTORY_MAX
}

/// Why a session's settings cannot be used; nothing was made from them.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// An input needs at least one attempt.
    #[error("max_attempts must be at least 1")]
    MaxAttemptsZero,
    /// The history keeps at least the input that ended last.
    #[error("history_max must be at least 1")]
    HistoryZero,
    /// The operations registry's bounds.
    #[error("operations: {0}")]
    Operations(#[from] crate::operations::OpConfigError),
}

impl SessionConfig {
    /// Checks the settings: at least one attempt, a history of at least one, and operations bounds within their
    /// ceilings ([`OpsConfig::validate`](crate::operations::OpsConfig::validate)).
    ///
    /// # Errors
    ///
    /// The first [`ConfigError`] found.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.max_attempts == 0 {
            return Err(ConfigError::MaxAttemptsZero);
        }
        if self.history_max == 0 {
            return Err(ConfigError::HistoryZero);
        }
        self.operations.validate()?;
        Ok(())
    }
}

/// What an executor reported for a run that reached its boundary.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum RunReport {
    /// The turn produced a result.
    Result(RunResult),
    /// The turn finished without a result.
    NoResult,
    /// The turn stopped at a callback boundary.
    CallbackPending {
        /// The tool to call.
        tool: String,
        /// Its arguments.
        args: String,
    },
    /// The turn stopped with several callbacks pending at once (1 to
    /// [`CALLBACKS_PER_BATCH_MAX`](crate::completion::CALLBACKS_PER_BATCH_MAX); any other count fails the run).
    CallbackBatchPending {
        /// The pending calls, in order.
        calls: Vec<crate::completion::PendingCallback>,
    },
}

impl RunReport {
    fn observation(&self) -> TerminalObservation {
        match self {
            RunReport::Result(_) => TerminalObservation::Completed,
            RunReport::NoResult => TerminalObservation::NoResult,
            RunReport::CallbackPending { .. } => TerminalObservation::CallbackPending,
            RunReport::CallbackBatchPending { .. } => TerminalObservation::CallbackBatchPending,
        }
    }

    /// Why this report cannot be taken as it stands: a callback batch that is empty or longer than the bound. The
    /// run then fails (and its inputs follow the attempt rule) rather than hand its waiters an outcome the bound
    /// forbids. spec: specs/completion.md#callback-batch
    #[must_use]
    pub fn malformed(&self) -> Option<ErrorInfo> {
        let RunReport::CallbackBatchPending { calls } = self else { return None };
        let max = crate::completion::CALLBACKS_PER_BATCH_MAX;
        (calls.is_empty() || calls.len() > max).then(|| {
            let message = format!("a callback batch holds 1 to {max} calls, not {}", calls.len());
            ErrorInfo::new(crate::completion::FailureCause::ExecutorFailed, message)
        })
    }

    fn evidence(&self) -> Evidence {
        match self {
            RunReport::Result(r) => Evidence { result: Some(r.clone()), ..Evidence::default() },
            RunReport::NoResult => Evidence::default(),
            RunReport::CallbackPending { tool, args } => {
                Evidence { callback: Some((tool.clone(), args.clone())), ..Evidence::default() }
            }
            RunReport::CallbackBatchPending { calls } => {
                Evidence { callbacks: Some(calls.clone()), ..Evidence::default() }
            }
        }
    }
}

/// The record of one committed boundary.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct BoundaryReceipt {
    /// The run.
    pub run: RunId,
    /// The boundary's number within the run (runs here have one boundary).
    pub boundary: u32,
    /// The inputs that contributed to the run.
    pub contributors: Vec<InputId>,
    /// Session-wide, strictly increasing.
    pub sequence: u64,
}

/// What a run is asked to do.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RunPrimitive {
    /// The run.
    pub run: RunId,
    /// Its contributing inputs, in order, with their kinds.
    pub inputs: Vec<(InputId, InputKind)>,
}

/// The run in flight.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct CurrentRun {
    /// Its id.
    pub id: RunId,
    /// Its staged inputs (the contributors).
    pub inputs: Vec<InputId>,
    /// When it started.
    pub started_at: Millis,
    /// When it is cancelled if still executing.
    pub deadline_at: Millis,
    /// When it is reported as slow.
    pub notice_at: Millis,
    /// Whether the slow-run notice was sent.
    pub notice_sent: bool,
    /// Started by accept_and_run: the caller runs it, not the loop.
    pub inline: bool,
    /// A cancel-after-boundary was requested.
    pub cancel_after_boundary: bool,
    /// Set once the executor reported; the boundary commit is in flight.
    pub report: Option<RunReport>,
}

/// How recovery finds the durable state.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum RecoverySource {
    /// Re-apply the recovery rule to the ledger in memory (an ephemeral runtime).
    InMemory,
    /// Replace the ledger with what a store loaded.
    Image(Box<RecoveryImage>),
}

/// What a store hands back for recovery.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RecoveryImage {
    /// Every durable input row.
    pub inputs: Vec<InputRecord>,
    /// Runs whose boundary receipt is committed.
    pub committed_runs: BTreeSet<RunId>,
    /// The highest input id ever allocated (ids are not reused).
    pub last_input: u64,
    /// The highest run id ever allocated.
    pub last_run: u64,
    /// The last receipt sequence.
    pub last_receipt_sequence: u64,
    /// The operations registry as persisted, when recovery follows a process
    /// restart; `None` keeps the live registry (its jobs are still running).
    pub operations: Option<OperationsRegistry>,
}

impl RecoveryImage {
    /// Builds the image from what a store holds: the durable rows, the
    /// committed receipts and, after a restart, the operations registry.
    ///
    /// The id high-water marks cover the receipts too: an input that
    /// contributed to a committed run may have no row (an ephemeral input), and
    /// reusing its id after a restart would make a new input look committed.
    #[must_use]
    pub fn from_store<'a>(
        inputs: Vec<InputRecord>,
        receipts: impl IntoIterator<Item = &'a BoundaryReceipt>,
        operations: Option<OperationsRegistry>,
    ) -> RecoveryImage {
        let mut last_input = inputs.iter().map(|r| r.id.0).max().unwrap_or(0);
        let mut last_run = inputs.iter().filter_map(|r| r.state.run()).map(|r| r.0).max().unwrap_or(0);
        let mut last_receipt_sequence = 0;
        let mut committed_runs = BTreeSet::new();
        for receipt in receipts {
            committed_runs.insert(receipt.run);
            last_run = last_run.max(receipt.run.0);
            last_receipt_sequence = last_receipt_sequence.max(receipt.sequence);
            last_input = last_input.max(receipt.contributors.iter().map(|i| i.0).max().unwrap_or(0));
        }
        RecoveryImage { inputs, committed_runs, last_input, last_run, last_receipt_sequence, operations }
    }
}

/// The highest input and run ids a session has allocated. Persisted with
/// every lifecycle commit so that a restarted process continues after them:
/// an id is never given to two inputs (or runs), even when the first one was
/// ephemeral and left no row.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct IdMarks {
    /// The highest input id allocated.
    pub last_input: u64,
    /// The highest run id allocated.
    pub last_run: u64,
}

/// What a store keeps about a session's lifecycle, to rebuild the machine
/// after a process restart (SPEC 5).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PersistedLifecycle {
    /// The persisted runtime phase (Attached and Running are never stored).
    pub phase: RuntimePhase,
    /// The persisted registration phase.
    pub registration: RegistrationPhase,
    /// The persisted binding.
    pub binding: Option<Binding>,
    /// The id marks at the commit.
    pub marks: IdMarks,
}

impl PersistedLifecycle {
    /// Whether a recovery from `newer` would rebuild what a recovery from `self` rebuilds: the same phase,
    /// registration, binding and run mark. The input mark may differ: a durable input's id is in its own row, and an
    /// ephemeral input died with its process, so its id may be given again (specs/session.md#writes-per-input).
    #[must_use]
    pub fn reads_as(&self, newer: &PersistedLifecycle) -> bool {
        self.phase == newer.phase
            && self.registration == newer.registration
            && self.binding == newer.binding
            && self.marks.last_run == newer.marks.last_run
    }
}

impl PersistedLifecycle {
    /// The lifecycle as a host that just claimed the session at lease epoch `epoch` restores it: the binding's
    /// epoch becomes the lease's (every write it makes names it), and the generation moves on, so no handle minted by
    /// an earlier owner passes for one of this host's (spec: specs/session.md#ownership-moved).
    #[must_use]
    pub fn taken_over(&self, epoch: EpochId) -> PersistedLifecycle {
        let binding = self.binding.map(|b| Binding { epoch, generation: Generation(b.generation.0.saturating_add(1)) });
        PersistedLifecycle { binding, ..self.clone() }
    }
}

/// Where a moved session went.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Moved {
    /// The new owner, when the store named it.
    pub owner: Option<HostId>,
}

/// Why a persisted lifecycle could not be restored.
#[derive(Clone, Debug, PartialEq, Eq, Hash, thiserror::Error)]
pub enum RestoreError {
    /// The registration phase and binding break a registration invariant.
    #[error("persisted registration is inconsistent: {0}")]
    Registration(#[from] crate::registration::RegistrationViolation),
    /// Recovering the stored inputs was refused.
    #[error("stored inputs could not be recovered: {0}")]
    Recovery(#[from] Refusal),
    /// The machine the stored state describes breaks an invariant; it is not loaded.
    #[error("the stored state is inconsistent: {0}")]
    Inconsistent(crate::invariants::Violation),
}

pub use crate::protocol::{
    Effect, Effects, Notice, Refusal, Reply, RuntimeEvent, SessionEvent, StopReason, effect_name,
};

/// The per-session composition of every machine (SPEC 2).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SessionMachine {
    pub(crate) session: SessionId,
    pub(crate) config: SessionConfig,
    pub(crate) phase: PhaseMachine,
    pub(crate) ledger: Ledger,
    pub(crate) waiters: WaiterBook,
    pub(crate) registration: RegistrationMachine,
    pub(crate) drain: DrainMachine,
    pub(crate) operations: LazyRegistry,
    pub(crate) run: Option<CurrentRun>,
    pub(crate) next_input: u64,
    pub(crate) next_run: u64,
    pub(crate) receipt_sequence: u64,
    pub(crate) receipts: VecDeque<BoundaryReceipt>,
    pub(crate) silent_intents: BTreeSet<String>,
    /// The loop polled and parked; it needs a WakeLoop to look again.
    pub(crate) loop_parked: bool,
    /// Queued inputs admitted without a wake while the loop was parked.
    pub(crate) quiet: BTreeSet<InputId>,
    /// Inputs with an id at or above this were admitted after retirement.
    pub(crate) retire_watermark: Option<InputId>,
    /// The id of the first run that may not start once unregister began.
    pub(crate) unregister_watermark: Option<RunId>,
    /// The drain mode last asked of the drain machine.
    pub(crate) drain_desired: Option<DrainMode>,
    /// The clock value of the last accepted event.
    pub(crate) clock: Millis,
    /// Whether a store keeps this session's rows; see [`SessionMachine::without_store`].
    pub(crate) stored: bool,
    /// The admission whose durable write is in flight; see specs/session.md#write-ahead-admission.
    pub(crate) admitting: Option<Box<Admitting>>,
    /// Why the executor was last told to stop; what a loop that exits tells it.
    pub(crate) stop_reason: Option<StopReason>,
    /// A lifecycle row failed to land since the last one built: the rows it carried may be missing from the store,
    /// so the next row carries every durable row the ledger holds (specs/session.md#a-failed-row-is-written-again).
    pub(crate) resave: bool,
    /// The ids of the durable rows the last lifecycle row carried, in id order: until the next row is built, a
    /// failure of that row may still be reported, and its rows must then be written again.
    pub(crate) last_row: Vec<InputId>,
    /// Ended records of the last lifecycle row that left the history before that row was known to have landed: the
    /// next row carries them if the last one failed (specs/session.md#a-failed-row-is-written-again).
    pub(crate) unconfirmed: Vec<InputRecord>,
    /// The head (phase, registration, binding, marks) of the last lifecycle row built, unless a row failed since:
    /// a row with no input rows whose head recovery would read the same is not built (specs/session.md#writes-per-input).
    pub(crate) written_head: Option<PersistedLifecycle>,
    /// The session moved to another host (spec: specs/session.md#ownership-moved): this machine drives it no more.
    pub(crate) moved: Option<Moved>,
    /// Whether debug builds check every invariant around each event; see [`SessionMachine::apply_into`].
    pub(crate) checks: DebugChecks,
}

/// Whether a machine's transitions are checked in debug builds. On from birth; off once a test has reached inside
/// with [`SessionMachine::internals_mut`] to plant a violation, so the checkers under test (not these assertions)
/// meet it. It is not part of the state: it compares equal and hashes to nothing.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct DebugChecks {
    off: bool,
}

impl PartialEq for DebugChecks {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for DebugChecks {}

impl std::hash::Hash for DebugChecks {
    fn hash<H: std::hash::Hasher>(&self, _: &mut H) {}
}

/// An admission waiting for its input's durable write. Nothing of it has taken effect but the reserved id and the
/// caller's waiter (in the waiter book): the input enters the ledger, replaces what it supersedes or coalesces, wakes
/// the loop or starts its inline run only once the write is durable.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Admitting {
    /// The record being written.
    pub(crate) record: InputRecord,
    /// The pending inputs it supersedes (specs/input.md#supersession).
    pub(crate) supersedes: Vec<InputId>,
    /// The pending inputs it coalesces (specs/input.md#coalescing).
    pub(crate) coalesces: Vec<InputId>,
    /// The kind's policy wakes the loop and the caller asked for a wake.
    pub(crate) wake: bool,
    /// accept_and_run: the input starts an inline run.
    pub(crate) inline: bool,
}

/// Mutable access to every part of a session, for tests that build
/// violating states on purpose (the invariant tests and the model's teeth).
/// Production code never uses it: it bypasses `apply`.
#[doc(hidden)]
#[allow(missing_docs)]
pub struct InternalsMut<'a> {
    pub phase: &'a mut PhaseMachine,
    pub ledger: &'a mut Ledger,
    pub waiters: &'a mut WaiterBook,
    pub registration: &'a mut RegistrationMachine,
    pub drain: &'a mut DrainMachine,
    pub operations: &'a mut OperationsRegistry,
    pub run: &'a mut Option<CurrentRun>,
    pub receipts: &'a mut VecDeque<BoundaryReceipt>,
    pub loop_parked: &'a mut bool,
    pub quiet: &'a mut BTreeSet<InputId>,
    pub retire_watermark: &'a mut Option<InputId>,
    pub unregister_watermark: &'a mut Option<RunId>,
    pub clock: &'a mut Millis,
}

/// A read-only view for `input_state` and `list_active_inputs`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct InputView {
    /// The input.
    pub id: InputId,
    /// Its kind's name.
    pub kind: &'static str,
    /// Its state.
    pub state: InputState,
    /// Attempts so far.
    pub attempts: u32,
    /// Unresolved waiters.
    pub waiters: usize,
}

impl SessionMachine {
    /// A new session in Initializing.
    #[must_use]
    pub fn new(session: SessionId, config: SessionConfig) -> Self {
        let checks = DebugChecks { off: planted(&config) };
        let ledger = Ledger::with_history(config.max_attempts, config.history_max);
        let operations = LazyRegistry::new(config.operations);
        SessionMachine {
            session,
            config,
            phase: PhaseMachine::new(),
            ledger,
            waiters: WaiterBook::new(),
            registration: RegistrationMachine::new(),
            drain: DrainMachine::new(),
            operations,
            run: None,
            next_input: 0,
            next_run: 0,
            receipt_sequence: 0,
            receipts: VecDeque::new(),
            silent_intents: BTreeSet::new(),
            loop_parked: false,
            quiet: BTreeSet::new(),
            retire_watermark: None,
            unregister_watermark: None,
            drain_desired: None,
            clock: Millis(0),
            stored: true,
            admitting: None,
            stop_reason: None,
            resave: false,
            last_row: Vec::new(),
            unconfirmed: Vec::new(),
            written_head: None,
            moved: None,
            // A planted defect breaks the machine's own invariants on purpose: the checkers, not the machine's
            // assertions, must be the ones to report it.
            checks,
        }
    }

    /// A new session whose shell keeps no store (an ephemeral runtime). It makes the same transitions and gives the
    /// same replies as [`SessionMachine::new`] but asks for no write: it emits no `PersistInput` and no
    /// `PersistLifecycle`, and a run's report commits its boundary in the same transition, so there is no
    /// `PersistBoundary` to perform and no `BoundaryCommitted` to wait for. See specs/session.md#without-a-store.
    #[must_use]
    pub fn without_store(session: SessionId, config: SessionConfig) -> Self {
        SessionMachine { stored: false, ..SessionMachine::new(session, config) }
    }

    /// Whether a store keeps this session's rows (false for [`SessionMachine::without_store`]).
    #[must_use]
    pub fn has_store(&self) -> bool {
        self.stored
    }

    /// Every part, mutable, bypassing `apply` (tests only; see [`InternalsMut`]).
    #[doc(hidden)]
    pub fn internals_mut(&mut self) -> InternalsMut<'_> {
        self.checks.off = true;
        InternalsMut {
            phase: &mut self.phase,
            ledger: &mut self.ledger,
            waiters: &mut self.waiters,
            registration: &mut self.registration,
            drain: &mut self.drain,
            operations: self.operations.get_mut(),
            run: &mut self.run,
            receipts: &mut self.receipts,
            loop_parked: &mut self.loop_parked,
            quiet: &mut self.quiet,
            retire_watermark: &mut self.retire_watermark,
            unregister_watermark: &mut self.unregister_watermark,
            clock: &mut self.clock,
        }
    }

    /// Rebuilds a session after a process restart from what a store kept:
    /// the phase comes back without an executor or a run (a stopped session
    /// stays stopped), the registration as [`RegistrationMachine::recover_from`]
    /// says, and the ledger by SPEC 5's recovery table applied to `image`. The
    /// returned effects hold the lifecycle commit of what recovery changed and
    /// the reply is [`Reply::Recovered`].
    pub fn restored(
        session: SessionId,
        config: SessionConfig,
        lifecycle: &PersistedLifecycle,
        image: RecoveryImage,
        now: Millis,
    ) -> Result<(Self, Effects), RestoreError> {
        let mut machine = SessionMachine::new(session, config);
        machine.registration = RegistrationMachine::recover_from(
            lifecycle.registration,
            lifecycle.binding,
            now,
            crate::registration::UNREGISTER_GRACE_MS_DEFAULT,
        )?;
        machine.phase = PhaseMachine::from_persisted(lifecycle.phase);
        machine.clock = now;
        machine.next_input = lifecycle.marks.last_input;
        machine.next_run = lifecycle.marks.last_run;
        let mut fx = Effects::default();
        machine.recover_ledger(now, RecoverySource::Image(Box::new(image)), &mut fx)?;
        // spec: specs/operations.md#cursors: an end the agent had not applied wakes the restored session again.
        machine.settle_feed_and_save(now, &mut fx);
        machine.trim_history();
        // Validated as loaded, before anything runs on it: a store that holds an impossible state gets a typed
        // error naming what is wrong, never a machine that would fail an assertion later.
        crate::invariants::check(&machine).map_err(RestoreError::Inconsistent)?;
        machine.assert_consistent();
        Ok((machine, fx))
    }

    // ----- queries -------------------------------------------------------

    /// Where the session went, if it moved to another host: this machine then takes no call and attempts no write.
    #[must_use]
    pub fn moved(&self) -> Option<Moved> {
        self.moved
    }

    /// The session's id.
    #[must_use]
    pub fn session(&self) -> SessionId {
        self.session
    }
    /// The settings.
    #[must_use]
    pub fn config(&self) -> &SessionConfig {
        &self.config
    }
    /// The runtime phase.
    #[must_use]
    pub fn phase(&self) -> RuntimePhase {
        self.phase.phase()
    }
    /// The phase machine.
    #[must_use]
    pub fn phase_machine(&self) -> &PhaseMachine {
        &self.phase
    }
    /// The ledger.
    #[must_use]
    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }
    /// The waiters.
    #[must_use]
    pub fn waiters(&self) -> &WaiterBook {
        &self.waiters
    }
    /// The registration machine.
    #[must_use]
    pub fn registration(&self) -> &RegistrationMachine {
        &self.registration
    }
    /// The drain machine.
    #[must_use]
    pub fn drain(&self) -> &DrainMachine {
        &self.drain
    }
    /// The operations registry.
    #[must_use]
    pub fn operations(&self) -> &OperationsRegistry {
        self.operations.get()
    }
    /// The run in flight.
    #[must_use]
    pub fn current_run(&self) -> Option<&CurrentRun> {
        self.run.as_ref()
    }
    /// The binding, once prepared.
    #[must_use]
    pub fn binding(&self) -> Option<Binding> {
        self.registration.binding()
    }
    /// Whether the loop is parked.
    #[must_use]
    pub fn loop_parked(&self) -> bool {
        self.loop_parked
    }
    /// The highest ids allocated so far.
    #[must_use]
    pub fn id_marks(&self) -> IdMarks {
        IdMarks { last_input: self.next_input, last_run: self.next_run }
    }

    /// The clock of the last accepted event.
    #[must_use]
    pub fn clock(&self) -> Millis {
        self.clock
    }
    /// The silent intents.
    #[must_use]
    pub fn silent_intents(&self) -> &BTreeSet<String> {
        &self.silent_intents
    }
    /// Queued inputs that were admitted quietly (no wake yet).
    #[must_use]
    pub fn quiet_inputs(&self) -> &BTreeSet<InputId> {
        &self.quiet
    }
    /// The retire watermark.
    #[must_use]
    pub fn retire_watermark(&self) -> Option<InputId> {
        self.retire_watermark
    }
    /// The unregister watermark.
    #[must_use]
    pub fn unregister_watermark(&self) -> Option<RunId> {
        self.unregister_watermark
    }
    /// Committed receipts kept in live state, oldest first.
    pub fn receipts(&self) -> impl Iterator<Item = &BoundaryReceipt> {
        self.receipts.iter()
    }
    /// A committed receipt of `run`, if still in live state.
    #[must_use]
    pub fn boundary_receipt(&self, run: RunId) -> Option<&BoundaryReceipt> {
        self.receipts.iter().find(|r| r.run == run)
    }

    /// An input's view (live or recent history).
    #[must_use]
    pub fn input_state(&self, id: InputId) -> Option<InputView> {
        self.ledger.record(id).map(|r| self.view(r))
    }

    /// The input that holds idempotency key `key`, live or in the recent history. `None` also when the key may
    /// belong to an input only the store still holds: see [`SessionMachine::key_to_recall`].
    #[must_use]
    pub fn input_state_by_key(&self, key: &str) -> Option<InputView> {
        match self.ledger.lookup_key(key) {
            KeyLookup::Active(id) | KeyLookup::Terminal(id) => self.ledger.record(id).map(|r| self.view(r)),
            KeyLookup::Unknown => None,
        }
    }

    /// The key a driver must look up in the store, and report with [`SessionEvent::KeyRecalled`], before it applies
    /// an accept of `spec`: the spec's idempotency key when the ledger does not know it but may have forgotten it
    /// (a keyed input left the bounded history, or a restore held more than it keeps) and a store keeps this
    /// session's rows. `None` when the ledger's answer is the whole answer. spec: specs/input.md#recall
    #[must_use]
    pub fn key_to_recall<'a>(&self, spec: &'a InputSpec) -> Option<&'a str> {
        let key = spec.idempotency_key.as_deref()?;
        // An accept the session will refuse anyway needs no read.
        (self.recalls(key) && self.check_admission().is_ok()).then_some(key)
    }

    /// Whether the store's row is the answer for `key`: the ledger does not know it, may have forgotten it, and a
    /// store keeps this session's rows.
    #[must_use]
    pub fn recalls(&self, key: &str) -> bool {
        self.stored && self.ledger.keys_forgotten() && self.ledger.lookup_key(key) == KeyLookup::Unknown
    }

    /// Whether only the store can show the input that holds `key`: the ledger shows no record for it (it never
    /// knew the key, or knows only that the store holds it), may have forgotten it, and a store keeps the rows.
    #[must_use]
    pub fn shows_key_from_store(&self, key: &str) -> bool {
        self.stored && self.ledger.keys_forgotten() && self.input_state_by_key(key).is_none()
    }

    /// How an input the store still holds but this session no longer does is shown (`input_state_by_key` past the
    /// history): as its row says, with no waiter (none can wait on an input that is not live). `None` if the row
    /// names a live input, which the ledger shows instead.
    #[must_use]
    pub fn stored_view(&self, row: &InputRecord) -> Option<InputView> {
        if self.ledger.get(row.id).is_some() {
            return None;
        }
        Some(InputView { id: row.id, kind: row.spec.kind.name(), state: row.state, attempts: row.attempts, waiters: 0 })
    }

    /// Every active input, in id order.
    #[must_use]
    pub fn list_active_inputs(&self) -> Vec<InputView> {
        self.ledger.active().map(|r| self.view(r)).collect()
    }

    fn view(&self, r: &InputRecord) -> InputView {
        InputView {
            id: r.id,
            kind: r.spec.kind.name(),
            state: r.state,
            attempts: r.attempts,
            waiters: self.waiters.waiters_of(r.id).len(),
        }
    }

    /// Whether the loop could start a run now.
    #[must_use]
    pub fn ready_to_run(&self) -> bool {
        self.run.is_none()
            && self.phase.can_start_run()
            && registration_admits_runs(self.registration.phase())
            && self.ledger.has_queued()
    }

    /// What the executor is told when its loop exits: the reason of the last stop the machine asked for, else
    /// Unregistering while an unregister is in progress, else Requested.
    #[must_use]
    pub fn stop_reason(&self) -> StopReason {
        match self.stop_reason {
            Some(reason) => reason,
            None if matches!(self.registration.phase(), RegistrationPhase::Unregistering) => StopReason::Unregistering,
            None => StopReason::Requested,
        }
    }

    /// When `run` next needs a Tick (its notice, then its deadline), if it is the run in flight and still executing.
    #[must_use]
    pub fn next_timer(&self, run: RunId) -> Option<Millis> {
        let current = self.run.as_ref().filter(|r| r.id == run && r.report.is_none())?;
        Some(if current.notice_sent { current.deadline_at } else { current.notice_at.min(current.deadline_at) })
    }

    /// When `run` is cancelled if it is still executing, if it is the run in flight and has not reported.
    #[must_use]
    pub fn run_deadline(&self, run: RunId) -> Option<Millis> {
        self.run.as_ref().filter(|r| r.id == run && r.report.is_none()).map(|r| r.deadline_at)
    }

    /// Whether the run in flight passed its deadline without reporting, so that the next event expires it first.
    /// An admission that writes ahead must not share a transition with that expiry: the shell applies a `Tick`
    /// first (specs/session.md#write-ahead-admission).
    #[must_use]
    pub fn expiry_due(&self, now: Millis) -> bool {
        self.run.as_ref().is_some_and(|r| r.report.is_none() && now.max(self.clock) >= r.deadline_at)
    }

    /// The input whose durable write is in flight, if any (see specs/session.md#write-ahead-admission).
    #[must_use]
    pub fn admitting(&self) -> Option<InputId> {
        self.admitting.as_ref().map(|a| a.record.id)
    }

    /// Whether nothing is running and nothing is selectable.
    #[must_use]
    pub fn quiescent(&self) -> bool {
        self.run.is_none() && !self.ready_to_run()
    }

    /// Validates a cleanup observation against this session's binding.
    pub fn validate_cleanup(&self, observation: &CleanupObservation) -> Result<(), Refusal> {
        let current = self.binding().ok_or(Refusal::NotRegistered)?;
        validate_cleanup(observation, self.session, current)?;
        Ok(())
    }

    /// Checks a caller's binding (fencing).
    pub fn check_binding(&self, presented: Binding) -> Result<(), Refusal> {
        Ok(self.registration.check_binding(presented)?)
    }

    // ----- the one entry point ---------------------------------------------

    /// Applies one event at `now`. On refusal the machine is unchanged.
    pub fn apply(&mut self, now: Millis, event: SessionEvent) -> Result<Effects, Refusal> {
        let mut effects = Vec::new();
        let reply = self.apply_into(now, event, &mut effects)?;
        Ok(Effects { effects, reply, start: 0, ended: BTreeSet::new(), answered: Vec::new() })
    }

    /// Applies one event at `now`, appending its effects to `effects` (a buffer the caller reuses) and returning the
    /// reply. On refusal the machine and `effects` are both unchanged.
    pub fn apply_into(
        &mut self,
        now: Millis,
        event: SessionEvent,
        effects: &mut Vec<Effect>,
    ) -> Result<Reply, Refusal> {
        let start = effects.len();
        // spec: specs/session.md#assertions: in debug builds every event starts and ends in a state that keeps every
        // invariant, and a refusal leaves the machine exactly as it was.
        let checked = cfg!(debug_assertions) && !self.checks.off;
        let before = if checked {
            if let Err(violation) = crate::invariants::check(self) {
                panic!("an invariant was broken before {}: {violation}", event.name());
            }
            Some(self.clone())
        } else {
            None
        };
        let name = event.name();
        let (phase, run) = (self.phase.phase(), self.run.as_ref().map(|r| r.id));
        let drain_exit = match &event {
            SessionEvent::Drain(DrainEvent::Exited { reason, .. }) => Some(*reason),
            _ => None,
        };
        let mut fx = Effects {
            effects: std::mem::take(effects),
            reply: Reply::Done,
            start,
            ended: BTreeSet::new(),
            answered: Vec::new(),
        };
        let result = self.apply_fx(now, event, &mut fx);
        if result.is_err() {
            fx.effects.truncate(start);
        } else {
            self.notice_step(phase, run, drain_exit, &mut fx);
            commit_last(&mut fx.effects[start..]);
            self.trim_history();
        }
        *effects = fx.effects;
        if let Some(before) = before {
            match &result {
                Ok(()) => {
                    if let Err(violation) = crate::invariants::check(self) {
                        panic!("{name} broke an invariant: {violation}");
                    }
                }
                Err(refusal) => assert!(*self == before, "a refused {name} changed the machine ({refusal})"),
            }
        }
        result.map(|()| fx.reply)
    }

    fn apply_fx(&mut self, now: Millis, event: SessionEvent, fx: &mut Effects) -> Result<(), Refusal> {
        let now = now.max(self.clock);
        if let Some(moved) = self.moved {
            return self.after_move(moved, &event, fx);
        }
        if let SessionEvent::OwnershipLost { owner } = event {
            #[cfg(feature = "planted")]
            if self.config.planted == Some(crate::planted::Planted::MoveTreatedAsFailStop) {
                let _ = owner;
                let error = ErrorInfo::new(FailureCause::TerminalPersistFailed, "the session moved");
                return self.dispatch(now, SessionEvent::LifecyclePersistFailed { error }, fx);
            }
            self.on_ownership_lost(now, owner, fx);
            self.clock = now;
            self.assert_consistent();
            return Ok(());
        }
        if let Some(admitting) = &self.admitting {
            // spec: specs/session.md#write-ahead-admission: until the write's result is known, nothing else happens.
            let input = admitting.record.id;
            let result = matches!(
                &event,
                SessionEvent::InputPersisted { input: i } | SessionEvent::InputPersistFailed { input: i, .. } if *i == input
            );
            if !result {
                return Err(Refusal::AdmissionInFlight { input });
            }
        }
        let expired = self.run.as_ref().is_some_and(|r| r.report.is_none() && now >= r.deadline_at);
        if !expired {
            self.dispatch(now, event, fx)?;
            self.settle_feed_and_save(now, fx);
            self.clock = now;
            self.assert_consistent();
            return Ok(());
        }
        // A run passed its deadline: expiry is due whatever the event is, but a
        // refused event must still change nothing, so keep a copy to restore.
        // Deadlines are rare, so this clone is off the hot path.
        let backup = self.clone();
        self.expire_run(now, fx);
        if let Err(refusal) = self.dispatch(now, event, fx) {
            *self = backup;
            return Err(refusal);
        }
        self.settle_feed_and_save(now, fx);
        self.clock = now;
        self.assert_consistent();
        Ok(())
    }

    fn dispatch(&mut self, now: Millis, event: SessionEvent, fx: &mut Effects) -> Result<(), Refusal> {
        // spec: specs/session.md#released: a released session takes no call but a prepare, and so writes nothing
        // more: its id may already be registered again by a new session object, whose rows a late write here would
        // overwrite. The results of its own effects still arrive.
        if self.registration.phase() == RegistrationPhase::Unregistered && is_call(&event) {
            return Err(Refusal::NotRegistered);
        }
        match event {
            SessionEvent::Fenced { binding, event } => self.on_fenced(now, binding, *event, fx),
            SessionEvent::Initialize => {
                let _ = self.phase.apply(PhaseEvent::Initialize)?;
                self.reconcile_drain(now, fx)
            }
            SessionEvent::Prepare { epoch } => self.on_prepare(now, epoch, fx),
            SessionEvent::BeginAttach => self.on_begin_attach(now, fx),
            SessionEvent::AttachCompleted => self.on_attach_completed(now, fx),
            SessionEvent::AttachFailed => {
                let generation = self.attaching_generation();
                self.registration_event(now, RegistrationEvent::AttachFailed { generation }, fx)
            }
            SessionEvent::LoopExited { generation } => self.on_loop_exited(now, generation, fx),
            SessionEvent::Detach => self.on_detach(now, fx),
            SessionEvent::Accept { spec, waiter, wake } => self.on_accept(now, spec, waiter, wake, fx),
            SessionEvent::KeyRecalled { key, found } => self.on_key_recalled(key, found, fx),
            SessionEvent::AcceptAndRun { spec } => self.on_accept_and_run(now, spec, fx),
            SessionEvent::InputPersisted { input } => self.on_input_persisted(now, input, fx),
            SessionEvent::InputPersistFailed { input, error } => self.on_input_persist_failed(input, error, fx),
            SessionEvent::SetSilentIntents(intents) => self.on_set_silent_intents(intents),
            SessionEvent::Publish(event) => {
                event.validate().map(|()| fx.push(Effect::Notify(Notice::Published(event))))
            }
            SessionEvent::SetKeepAlive(keep_alive) => self.on_set_keep_alive(now, keep_alive, fx),
            SessionEvent::SetCommsEnabled(comms) => self.on_set_comms_enabled(now, comms, fx),
            SessionEvent::Wake => self.on_wake(fx),
            SessionEvent::Poll => self.on_poll(now, fx),
            SessionEvent::RunNotExecuted { run } => self.on_run_not_executed(now, run, fx),
            SessionEvent::RunStartRecorded { run } => self.on_run_start_recorded(run, fx),
            SessionEvent::RunReported { run, report, snapshot } => self.on_run_reported(now, run, report, snapshot, fx),
            SessionEvent::RunFailed { run, error } => self.on_run_failed(now, run, error, fx),
            SessionEvent::BoundaryCommitted { run } => self.on_boundary_committed(now, run, fx),
            SessionEvent::BoundaryCommitFailed { run, error } => self.on_boundary_commit_failed(now, run, error, fx),
            SessionEvent::LifecyclePersistFailed { error } => self.on_persist_failed(now, error, fx),
            SessionEvent::Interrupt { run } => self.interrupt(now, run, None, fx),
            SessionEvent::CancelAfterBoundary => self.on_cancel_after_boundary(fx),
            SessionEvent::CancelAfterBoundaryFailed { run, error } => {
                self.on_cancel_after_boundary_failed(now, run, error, fx)
            }
            SessionEvent::Stop => self.on_stop(now, fx),
            SessionEvent::Retire => self.on_retire(now, fx),
            SessionEvent::Recycle => self.on_recycle(now, fx),
            SessionEvent::Reset => self.on_reset(now, fx),
            SessionEvent::Recover(source) => self.on_recover(now, source, fx),
            SessionEvent::Destroy => self.on_destroy(now, fx),
            SessionEvent::BeginUnregister => self.on_begin_unregister(now, fx),
            SessionEvent::ObligationMet(obligation) => {
                self.registration_event(now, RegistrationEvent::ObligationClosed(obligation), fx)
            }
            SessionEvent::CommitUnregister => self.on_commit_unregister(now, fx),
            SessionEvent::Tick => self.on_tick(now, fx),
            SessionEvent::Operation(op) => self.on_operation(now, op, fx),
            SessionEvent::Drain(event) => self.drain_event(now, event, fx),
            // The registry is saved whole at its next change: what changed since its last save is at risk only until
            // then, and nothing a caller waits on depends on it, so the session goes on.
            SessionEvent::OperationsPersistFailed { error: _ } => no_op(fx),
            SessionEvent::PeerSourceSet => self.on_peer_source_set(now, fx),
            SessionEvent::OwnershipLost { .. } => unreachable!("apply_fx takes a lost ownership before dispatch"),
        }
    }

    // spec: specs/registration.md#fencing: the binding is checked in the same transition that acts.
    fn on_fenced(
        &mut self,
        now: Millis,
        binding: Binding,
        event: SessionEvent,
        fx: &mut Effects,
    ) -> Result<(), Refusal> {
        if matches!(event, SessionEvent::Fenced { .. }) {
            return Err(Refusal::NestedFence);
        }
        self.check_binding(binding)?;
        self.dispatch(now, event, fx)
    }

    /// Passes `event` to the registration machine and its effects on.
    fn registration_event(&mut self, now: Millis, event: RegistrationEvent, fx: &mut Effects) -> Result<(), Refusal> {
        let out = self.registration.apply(now, event)?;
        fx.effects.extend(out.into_iter().map(Effect::Registration));
        Ok(())
    }

    /// Passes `event` to the drain machine and its effects on.
    fn drain_event(&mut self, now: Millis, event: DrainEvent, fx: &mut Effects) -> Result<(), Refusal> {
        let out = self.drain.apply(now, event)?;
        fx.effects.extend(out.into_iter().map(Effect::Drain));
        Ok(())
    }

    fn on_set_silent_intents(&mut self, intents: Vec<String>) -> Result<(), Refusal> {
        if intents.len() > SILENT_INTENTS_MAX {
            return Err(Refusal::TooManySilentIntents { len: intents.len(), max: SILENT_INTENTS_MAX });
        }
        self.silent_intents = intents.into_iter().collect();
        Ok(())
    }

    fn on_set_keep_alive(&mut self, now: Millis, keep_alive: bool, fx: &mut Effects) -> Result<(), Refusal> {
        self.set_drain_wish(now, |c| &mut c.keep_alive, keep_alive, fx)
    }

    /// Sets one of the settings the drain's desired mode follows and reconciles the drain; a refused reconcile
    /// leaves the setting as it was.
    fn set_drain_wish(
        &mut self,
        now: Millis,
        setting: fn(&mut SessionConfig) -> &mut bool,
        value: bool,
        fx: &mut Effects,
    ) -> Result<(), Refusal> {
        let before = std::mem::replace(setting(&mut self.config), value);
        if let Err(refusal) = self.reconcile_drain(now, fx) {
            *setting(&mut self.config) = before;
            return Err(refusal);
        }
        Ok(())
    }

    /// spec: specs/drain.md#comms: peer ingress turned on or off after prepare; the drain follows the new wish.
    fn on_set_comms_enabled(&mut self, now: Millis, comms: bool, fx: &mut Effects) -> Result<(), Refusal> {
        if self.config.comms_enabled == comms {
            fx.reply = Reply::NoOp;
            return Ok(());
        }
        self.set_drain_wish(now, |c| &mut c.comms_enabled, comms, fx)
    }

    fn on_wake(&mut self, fx: &mut Effects) -> Result<(), Refusal> {
        self.quiet.clear();
        if self.loop_parked && self.ready_to_run() {
            self.loop_parked = false;
            fx.push(Effect::WakeLoop);
        } else {
            fx.reply = Reply::NoOp;
        }
        Ok(())
    }

    fn on_cancel_after_boundary(&mut self, fx: &mut Effects) -> Result<(), Refusal> {
        let run = self.run.as_mut().ok_or(Refusal::NoRunInFlight)?;
        if run.cancel_after_boundary {
            fx.reply = Reply::NoOp;
        } else {
            run.cancel_after_boundary = true;
            fx.push(Effect::CancelAfterBoundary { run: run.id });
        }
        Ok(())
    }

    // spec: specs/session.md#cancel-after-boundary: fail closed. The executor will not stop at its boundary, so the
    // run is interrupted now; a run that already ended needs nothing.
    fn on_cancel_after_boundary_failed(
        &mut self,
        now: Millis,
        run: RunId,
        error: ErrorInfo,
        fx: &mut Effects,
    ) -> Result<(), Refusal> {
        let live = self.run.as_ref().is_some_and(|r| r.id == run && r.report.is_none());
        if !live {
            fx.reply = Reply::NoOp;
            return Ok(());
        }
        self.interrupt(now, Some(run), Some(error), fx)
    }

    fn on_commit_unregister(&mut self, now: Millis, fx: &mut Effects) -> Result<(), Refusal> {
        let out = self.registration.apply(now, RegistrationEvent::CommitUnregister)?;
        for effect in out {
            if matches!(effect, RegistrationEffect::Released { .. }) {
                // The Unregistered row is written before the release is announced.
                self.persist_lifecycle(fx, &[]);
            }
            fx.push(Effect::Registration(effect));
        }
        Ok(())
    }

    // spec: specs/drain.md#source-changed
    fn on_peer_source_set(&mut self, now: Millis, fx: &mut Effects) -> Result<(), Refusal> {
        if !registration_admits_inputs(self.registration.phase()) {
            fx.reply = Reply::NoOp;
            return Ok(());
        }
        self.drain_event(now, DrainEvent::SourceChanged, fx)
    }

    // ----- registration ---------------------------------------------------

    fn on_prepare(&mut self, now: Millis, epoch: EpochId, fx: &mut Effects) -> Result<(), Refusal> {
        let newly_bound =
            matches!(self.registration.phase(), RegistrationPhase::Unprepared | RegistrationPhase::Unregistered);
        let out = self.registration.apply(now, RegistrationEvent::Prepare { epoch })?;
        fx.effects.extend(out.into_iter().map(Effect::Registration));
        if self.phase.phase() == RuntimePhase::Initializing {
            let _ = self.phase.apply(PhaseEvent::Initialize).expect("Initializing always initialises");
        }
        let binding = self.registration.binding().expect("prepared sessions have a binding");
        if newly_bound {
            // A new registration: the runs an earlier unregister forbade are allowed again.
            self.unregister_watermark = None;
            // The binding is durable from its first issue, so a restart keeps the epoch.
            self.persist_lifecycle(fx, &[]);
        }
        fx.reply = Reply::Prepared(binding);
        self.reconcile_drain(now, fx)
    }

    fn on_begin_attach(&mut self, now: Millis, fx: &mut Effects) -> Result<(), Refusal> {
        match self.phase.phase() {
            RuntimePhase::Destroyed => return Err(PhaseRefusal::Destroyed.into()),
            RuntimePhase::Initializing => {
                return Err(
                    PhaseRefusal::NotAllowed { phase: RuntimePhase::Initializing, event: PhaseEvent::Attach }.into()
                );
            }
            _ => {}
        }
        let refused = planted_or!(self.config, StopNotRevivable, self.phase.phase() == RuntimePhase::Stopped, false);
        if refused {
            return Err(PhaseRefusal::NotAllowed { phase: RuntimePhase::Stopped, event: PhaseEvent::Attach }.into());
        }
        if !self.phase.executor_attached() {
            // The attach must be able to complete: a phase that refuses the executor refuses it here, before the
            // loop is spawned, not in AttachCompleted after.
            let _ = self.phase.clone().apply(PhaseEvent::Attach)?;
        }
        let out = self.registration.apply(now, RegistrationEvent::BeginAttach)?;
        fx.effects.extend(out.into_iter().map(Effect::Registration));
        Ok(())
    }

    fn on_attach_completed(&mut self, now: Millis, fx: &mut Effects) -> Result<(), Refusal> {
        // Check the phase first so a refusal from it leaves registration untouched.
        let mut phase = self.phase.clone();
        if !phase.executor_attached() {
            let _ = phase.apply(PhaseEvent::Attach)?;
        }
        let generation = self.attaching_generation();
        let out = self.registration.apply(now, RegistrationEvent::AttachCompleted { generation })?;
        fx.effects.extend(out.into_iter().map(Effect::Registration));
        self.phase = phase;
        // A fresh loop starts by polling, so it is not parked; its executor has not been told to stop.
        self.loop_parked = false;
        self.stop_reason = None;
        self.quiet.clear();
        self.persist_lifecycle(fx, &[]);
        self.reconcile_drain(now, fx)
    }

    fn on_loop_exited(&mut self, now: Millis, generation: Generation, fx: &mut Effects) -> Result<(), Refusal> {
        let out = self.registration.apply(now, RegistrationEvent::LoopExited { generation })?;
        fx.effects.extend(out.into_iter().map(Effect::Registration));
        self.loop_parked = false;
        // The loop owned the executor: without it nothing can run, so an
        // attached phase falls back to Idle. A run still recorded here was
        // never reported: its inputs go back by the attempt rule.
        if let Some(run) = self.run.as_ref().map(|r| r.id) {
            if !self.run.as_ref().is_some_and(|r| r.inline) {
                self.fail_current_run(
                    now,
                    run,
                    ErrorInfo::new(FailureCause::ExecutorFailed, "the loop exited during the run"),
                    fx,
                );
            }
        }
        if self.phase.executor_attached() && self.phase.phase() != RuntimePhase::Running {
            let _ = self.phase.apply(PhaseEvent::Detach).expect("detach without a run is allowed");
            self.persist_lifecycle(fx, &[]);
        }
        self.reconcile_drain(now, fx)
    }

    fn on_detach(&mut self, now: Millis, fx: &mut Effects) -> Result<(), Refusal> {
        let _ = self.phase.apply(PhaseEvent::Detach)?;
        self.stop_reason = Some(StopReason::Requested);
        fx.push(Effect::StopExecutor { reason: StopReason::Requested });
        self.loop_parked = false;
        self.persist_lifecycle(fx, &[]);
        self.reconcile_drain(now, fx)
    }

    fn on_begin_unregister(&mut self, now: Millis, fx: &mut Effects) -> Result<(), Refusal> {
        let out = self.registration.apply(now, RegistrationEvent::BeginUnregister)?;
        // No run may start from here on: runs already started may finish.
        self.unregister_watermark = Some(RunId(self.next_run + 1));
        let inline = self.run.as_ref().filter(|r| r.inline && r.report.is_none()).map(|r| r.id);
        if let Some(run) = inline {
            // spec: specs/registration.md#unregister: an inline run belongs to its caller, not to the loop the
            // unregister waits for, so nothing would hold the commit back until it ends. It is cancelled here
            // (its report will name a run that is gone) and its inputs go back by the attempt rule, for whoever
            // registers the session next; otherwise the old run and the next registration's loop could both
            // commit the same input.
            fx.push(Effect::CancelRun { run, reason: StopReason::Unregistering });
            let error = ErrorInfo::new(FailureCause::RuntimeTerminated, "the session was unregistered during the run");
            self.fail_current_run(now, run, error, fx);
        }
        for effect in out {
            if matches!(effect, RegistrationEffect::ResolveAllWaiters) {
                self.resolve_all_waiters_terminated("unregistered", fx);
                let closed =
                    self.registration.apply(now, RegistrationEvent::ObligationClosed(Obligation::ResolveWaiters))?;
                fx.effects.extend(closed.into_iter().map(Effect::Registration));
            } else {
                fx.push(Effect::Registration(effect));
            }
        }
        self.loop_parked = false;
        let out = self.drain.apply(now, DrainEvent::Shutdown).expect("a drain always takes Shutdown");
        fx.effects.extend(out.into_iter().map(Effect::Drain));
        Ok(())
    }

    fn attaching_generation(&self) -> Generation {
        match self.registration.phase() {
            RegistrationPhase::Attaching { generation } | RegistrationPhase::Active { generation } => generation,
            _ => self.registration.generation_issued(),
        }
    }

    // ----- admission -------------------------------------------------------

    fn check_admission(&self) -> Result<(), Refusal> {
        if !registration_admits_inputs(self.registration.phase()) {
            return Err(Refusal::NotRegistered);
        }
        if !self.phase.admits_inputs() {
            return Err(Refusal::AdmissionClosed { phase: self.phase.phase() });
        }
        Ok(())
    }

    fn on_accept(
        &mut self,
        now: Millis,
        spec: InputSpec,
        waiter: bool,
        wake: bool,
        fx: &mut Effects,
    ) -> Result<(), Refusal> {
        spec.validate()?;
        self.check_admission()?;
        // spec: specs/input.md#idempotency
        if let Some(key) = &spec.idempotency_key {
            match self.ledger.lookup_key(key) {
                KeyLookup::Active(existing) => {
                    let joins = waiter && planted_or!(self.config, DedupJoinWithoutHandle, false, true);
                    let waiter = if joins { Some(self.waiters.register(existing)?) } else { None };
                    fx.reply = Reply::Deduplicated { existing, waiter };
                    return Ok(());
                }
                KeyLookup::Terminal(existing) => {
                    fx.reply = Reply::Deduplicated { existing, waiter: None };
                    return Ok(());
                }
                KeyLookup::Unknown => {}
            }
        }
        self.ledger.check_room()?;
        let id = InputId(self.next_input + 1);
        if waiter {
            self.waiters.can_register(id)?;
        }
        let silent = matches!(&spec.kind, InputKind::PeerRequest { intent } if self.silent_intents.contains(intent));
        let policy = admission_policy(&spec.kind, silent);
        let mut supersedes = spec
            .supersession_key
            .as_deref()
            .map(|key| self.ledger.pending_with_supersession_key(&spec.kind, key))
            .unwrap_or_default();
        // spec: specs/input.md#peer-responses: a terminal reply ends the pending progress of its request.
        if let Some(ended) = crate::input::supersedes_pending(&spec.kind) {
            supersedes.extend(self.ledger.pending_of_kind(&ended));
        }
        let coalesces = if policy.coalesces { self.ledger.pending_of_kind(&spec.kind) } else { Vec::new() };
        let consumed_on_accept = spec.lane().is_none();
        let durable = spec.durability.is_persisted() && self.stored;
        self.next_input += 1;
        let handled = planted_or!(self.config, RecordGetsHandle, true, !consumed_on_accept);
        let waiter = if waiter && handled { Some(self.waiters.register(id)?) } else { None };
        let admitting = Admitting {
            record: InputRecord::admitted(id, spec, now),
            supersedes,
            coalesces,
            wake: wake && policy.wakes,
            inline: false,
        };
        fx.reply = Reply::Accepted { input: id, waiter, terminal: consumed_on_accept };
        self.admit_after_write(now, admitting, durable, fx);
        Ok(())
    }

    /// spec: specs/input.md#recall: the store's row for a key the ledger forgot. An input the store holds that is not
    /// live here has ended, whatever its row says (a row whose end was not written yet, say): its key answers
    /// Deduplicated with no handle from now on, and it never runs again.
    fn on_key_recalled(&mut self, key: String, found: Option<InputRecord>, fx: &mut Effects) -> Result<(), Refusal> {
        let Some(row) = found else {
            fx.reply = Reply::NoOp;
            return Ok(());
        };
        let mismatch = |why| Refusal::RecallMismatch { key: key.clone(), input: row.id, why };
        if row.spec.idempotency_key.as_deref() != Some(key.as_str()) {
            return Err(mismatch("holds another key"));
        }
        if row.id.0 > self.next_input {
            return Err(mismatch("this session never gave"));
        }
        if self.ledger.lookup_key(&key) != KeyLookup::Unknown {
            // The ledger answers for the key already (a recall read twice, say): nothing to learn.
            fx.reply = Reply::NoOp;
            return Ok(());
        }
        if self.ledger.get(row.id).is_some() {
            return Err(mismatch("is live under another key"));
        }
        self.ledger.recall(key, row.id);
        Ok(())
    }

    /// A durable input's admission waits for its write (spec: specs/session.md#write-ahead-admission: the write
    /// comes first; its result admits or not); any other takes effect now.
    fn admit_after_write(&mut self, now: Millis, admitting: Admitting, durable: bool, fx: &mut Effects) {
        if durable {
            fx.push(Effect::PersistInput(admitting.record.clone()));
            self.admitting = Some(Box::new(admitting));
        } else {
            self.admit(now, admitting, fx);
        }
    }

    /// Gives an admission its effects: the input enters the ledger, ends what it supersedes or coalesces, and
    /// wakes the loop or starts its inline run. For a durable input this happens once its write is durable.
    fn admit(&mut self, now: Millis, admitting: Admitting, fx: &mut Effects) {
        let Admitting { record, supersedes, coalesces, wake, inline } = admitting;
        let id = record.id;
        let kind = record.spec.kind.name();
        let terminal = self.ledger.admit(id, record.spec, record.accepted_at).expect("room was checked at the accept");
        // spec: specs/session.md#notices: the admission takes effect now.
        fx.push(Effect::Notify(Notice::InputAccepted { input: id, kind }));
        // spec: specs/input.md#supersession and #coalescing: every older pending input it replaces ends; their
        // waiters move to the newer one.
        let replaced = supersedes
            .into_iter()
            .map(|older| (older, InputState::Superseded { by: id }))
            .chain(coalesces.into_iter().map(|older| (older, InputState::Coalesced { into: id })));
        let mut done = Vec::new();
        for (older, state) in replaced {
            if older != id && self.ledger.get(older).is_some() {
                done.push(self.ledger.terminalize(older, state));
                self.notice_end(older, None, fx);
                self.quiet.remove(&older);
                let moves = planted_or!(
                    self.config,
                    CoalescingDropsWaiters,
                    !matches!(state, InputState::Coalesced { .. }),
                    true
                );
                if moves {
                    self.waiters.transfer(older, id);
                }
            }
        }
        if !done.is_empty() {
            self.persist_lifecycle(fx, &done);
        }
        if terminal.is_some() {
            // An Operation input is consumed on accept: nothing waits on it.
            self.notice_end(id, None, fx);
            return;
        }
        if inline {
            self.start_run(now, vec![id], true, fx);
            return;
        }
        if wake {
            self.quiet.clear();
            self.wake_if_parked(fx);
        } else if self.loop_parked {
            self.quiet.insert(id);
        }
    }

    fn on_input_persisted(&mut self, now: Millis, input: InputId, fx: &mut Effects) -> Result<(), Refusal> {
        let admitting = self.admitting.take().ok_or(Refusal::NotAdmitting { input })?;
        assert_eq!(admitting.record.id, input, "the gate in apply_fx admits only the write's own result");
        if admitting.inline {
            // The gate kept everything else out while the write was in flight, so the session is as idle as it was.
            debug_assert!(self.run.is_none() && self.ledger.active_len() == 0);
        }
        self.admit(now, *admitting, fx);
        fx.reply = Reply::Done;
        Ok(())
    }

    fn on_input_persist_failed(&mut self, input: InputId, error: ErrorInfo, fx: &mut Effects) -> Result<(), Refusal> {
        let admitting = self.admitting.take().ok_or(Refusal::NotAdmitting { input })?;
        assert_eq!(admitting.record.id, input, "the gate in apply_fx admits only the write's own result");
        // Nothing of the admission took effect; only the caller's waiter (if any) has to learn that it failed. The
        // reserved id stays spent: ids are never reused.
        let evidence = Evidence {
            reason: Some("the durable write of the input failed".into()),
            error: Some(error),
            ..Evidence::default()
        };
        // The input was never admitted, so its end is no notice: no InputAccepted came before it.
        fx.ended.insert(input);
        self.resolve(input, TerminalObservation::RuntimeTerminated, FinalizationObservation::Failed, &evidence, fx);
        fx.reply = Reply::NoOp;
        Ok(())
    }

    fn on_accept_and_run(&mut self, now: Millis, spec: InputSpec, fx: &mut Effects) -> Result<(), Refusal> {
        spec.validate()?;
        self.check_admission()?;
        if let Some(key) = &spec.idempotency_key {
            match self.ledger.lookup_key(key) {
                KeyLookup::Active(existing) | KeyLookup::Terminal(existing) => {
                    return Err(Refusal::DedupRefused { existing });
                }
                KeyLookup::Unknown => {}
            }
        }
        let phase = self.phase.phase();
        if !matches!(phase, RuntimePhase::Idle | RuntimePhase::Attached) || self.ledger.active_len() > 0 {
            return Err(Refusal::NotIdle { phase, active: self.ledger.active_len() });
        }
        if spec.lane().is_none() {
            return Err(InputValidation::SteerNotAllowed { kind: spec.kind.name() }.into());
        }
        self.ledger.check_room()?;
        let id = InputId(self.next_input + 1);
        let durable = spec.durability.is_persisted() && self.stored;
        self.next_input += 1;
        let admitting = Admitting {
            record: InputRecord::admitted(id, spec, now),
            supersedes: Vec::new(),
            coalesces: Vec::new(),
            wake: false,
            inline: true,
        };
        fx.reply = Reply::Accepted { input: id, waiter: None, terminal: false };
        self.admit_after_write(now, admitting, durable, fx);
        Ok(())
    }

    // ----- the loop --------------------------------------------------------

    fn on_poll(&mut self, now: Millis, fx: &mut Effects) -> Result<(), Refusal> {
        if let Some(run) = &self.run {
            if !run.inline {
                return Err(Refusal::RunInFlight(run.id));
            }
        }
        let exit = matches!(self.phase.phase(), RuntimePhase::Stopped | RuntimePhase::Destroyed)
            || !registration_admits_runs(self.registration.phase())
            || !self.phase.executor_attached();
        if exit {
            self.loop_parked = false;
            fx.reply = Reply::Exit { reason: self.stop_reason() };
            return Ok(());
        }
        if self.run.is_some() {
            // spec: specs/session.md#inline-runs-and-the-loop: an inline run is in flight; the loop sleeps until
            // its end wakes it.
            self.loop_parked = true;
            self.quiet.clear();
            fx.reply = Reply::Park;
            return Ok(());
        }
        if self.ready_to_run() {
            let batch = planted_or!(
                self.config,
                NewestFirst,
                match self.ledger.steer_lane().next() {
                    Some(_) => self.ledger.next_batch(),
                    None => self.ledger.queue_lane().last().into_iter().collect(),
                },
                self.ledger.next_batch()
            );
            self.start_run(now, batch, false, fx);
            fx.reply = Reply::Run(self.run.as_ref().expect("just started").id);
            return Ok(());
        }
        // spec: specs/session.md#never-park-with-work
        self.loop_parked = true;
        self.quiet.clear();
        fx.reply = Reply::Park;
        Ok(())
    }

    fn start_run(&mut self, now: Millis, batch: Vec<InputId>, inline: bool, fx: &mut Effects) {
        assert!(self.run.is_none(), "one run at a time");
        self.next_run += 1;
        let id = RunId(self.next_run);
        self.ledger.stage_batch(&batch, id).expect("the batch was selected from queued inputs");
        let from = self.phase.phase();
        let _ = self.phase.apply(PhaseEvent::StartRun).expect("runs start only where the queue is processed");
        // spec: specs/session.md#notices: the session is told Running before its run is handed out.
        fx.push(Effect::Notify(Notice::PhaseChanged { from, to: RuntimePhase::Running }));
        for input in &batch {
            self.quiet.remove(input);
        }
        self.run = Some(CurrentRun {
            id,
            inputs: batch,
            started_at: now,
            deadline_at: now.saturating_add(self.config.run_deadline_ms),
            notice_at: now.saturating_add(self.config.run_notice_ms),
            notice_sent: false,
            inline,
            cancel_after_boundary: false,
            report: None,
        });
        // spec: specs/session.md#inline-runs-and-the-loop: an inline run is the caller's, not the loop's; a loop
        // that parked stays asleep through it, and the run's end wakes it if work is waiting.
        if !inline {
            self.loop_parked = false;
        }
        if self.stored {
            // The attempt is durable before the executor sees the run: the run is handed out once this commit is
            // (RunStartRecorded), never if it fails (the fail-stop ends the run).
            self.persist_lifecycle_starting(fx, &[], Some(id));
        } else {
            self.hand_out(fx);
        }
    }

    /// Hands the current run out, and tells the subscribers.
    fn hand_out(&self, fx: &mut Effects) {
        let primitive = self.primitive();
        let started = Notice::RunStarted { run: primitive.run, inputs: primitive.inputs.iter().map(|i| i.0).collect() };
        fx.push(Effect::StartRun(primitive));
        fx.push(Effect::Notify(started));
    }

    /// What the executor is handed for the current run: its id and its inputs with their kinds, in batch order.
    fn primitive(&self) -> RunPrimitive {
        let run = self.run.as_ref().expect("a current run");
        let inputs = run.inputs.iter().map(|i| (*i, self.ledger.get(*i).expect("staged").spec.kind.clone())).collect();
        RunPrimitive { run: run.id, inputs }
    }

    fn on_run_start_recorded(&mut self, run: RunId, fx: &mut Effects) -> Result<(), Refusal> {
        let current = self.current(run)?;
        if current.report.is_some() {
            return Err(Refusal::RunFinalizing(run));
        }
        self.hand_out(fx);
        Ok(())
    }

    fn current(&self, run: RunId) -> Result<&CurrentRun, Refusal> {
        match &self.run {
            Some(r) if r.id == run => Ok(r),
            other => Err(Refusal::StaleRun { presented: run, current: other.as_ref().map(|r| r.id) }),
        }
    }

    fn on_run_not_executed(&mut self, now: Millis, run: RunId, fx: &mut Effects) -> Result<(), Refusal> {
        let current = self.current(run)?;
        if current.report.is_some() {
            return Err(Refusal::RunFinalizing(run));
        }
        let inputs = current.inputs.clone();
        self.run = None;
        // spec: specs/session.md#never-executed: the attempt did not happen.
        // If the session can still process its queue the inputs go back;
        // otherwise (stopping) they end as NeverExecuted, never left Staged.
        let stopping = self.phase.stop_deferred();
        let done: Vec<Terminalized> = if stopping {
            let never = InputState::Abandoned(AbandonReason::NeverExecuted);
            inputs.into_iter().map(|input| self.ledger.terminalize(input, never)).collect()
        } else {
            self.ledger.rollback_run(&inputs, true).into_iter().flatten().collect()
        };
        self.resolve_terminalized(&done, fx);
        self.end_run(now, fx, &done);
        Ok(())
    }

    fn on_run_reported(
        &mut self,
        now: Millis,
        run: RunId,
        report: RunReport,
        snapshot: Option<Vec<u8>>,
        fx: &mut Effects,
    ) -> Result<(), Refusal> {
        let current = self.current(run)?;
        if current.report.is_some() {
            return Err(Refusal::RunFinalizing(run));
        }
        if let Some(error) = report.malformed() {
            return self.on_run_failed(now, run, error, fx);
        }
        if !self.stored {
            // spec: specs/session.md#without-a-store: nothing to write, so the boundary commits now (the inputs go
            // straight to their committed state; Applied would last no longer than this transition).
            self.run.as_mut().expect("current").report = Some(report);
            return self.on_boundary_committed(now, run, fx);
        }
        // spec: specs/input.md#applied: output exists, the boundary commit is next.
        let contributors = self.ledger.advance_run(run, |run| InputState::Applied { run });
        self.check_contributors(&contributors);
        self.run.as_mut().expect("current").report = Some(report);
        let mut rows: Vec<InputRecord> = Vec::new();
        for id in &contributors {
            let record = self.ledger.get(*id).expect("applied");
            if record.spec.durability.is_persisted() {
                // spec: specs/session.md#writes-per-input: the receipt and the rows land together or not at all, so
                // a row written with the receipt is Consumed as it lands; no later row has to say so.
                let mut row = record.clone();
                row.state = InputState::Consumed;
                rows.push(row);
            }
        }
        let receipt = BoundaryReceipt { run, boundary: 1, contributors, sequence: self.receipt_sequence + 1 };
        planted_or!(
            self.config,
            NoticeEndAtReport,
            {
                let class = select_class(
                    self.run.as_ref().and_then(|r| r.report.as_ref()).expect("just set").observation(),
                    FinalizationObservation::Succeeded,
                );
                for input in &receipt.contributors {
                    fx.push(Effect::Notify(Notice::InputEnded { input: *input, class: Some(class) }));
                }
            },
            ()
        );
        fx.push(Effect::PersistBoundary { receipt, inputs: rows, snapshot });
        Ok(())
    }

    /// A run's contributors (in id order) are exactly its staged inputs (in batch order).
    fn check_contributors(&self, contributors: &[InputId]) {
        let current = self.run.as_ref().expect("a current run");
        assert!(
            contributors.len() == current.inputs.len()
                && current.inputs.iter().all(|i| contributors.binary_search(i).is_ok()),
            "contributors are exactly the staged inputs"
        );
    }

    fn on_boundary_committed(&mut self, now: Millis, run: RunId, fx: &mut Effects) -> Result<(), Refusal> {
        let current = self.current(run)?;
        let report = current.report.clone().ok_or(Refusal::RunNotReported(run))?;
        let contributors = self.ledger.advance_run(run, |run| InputState::AppliedPendingConsumption { run });
        self.check_contributors(&contributors);
        self.receipt_sequence += 1;
        let mut done = Vec::with_capacity(contributors.len());
        let evidence = report.evidence();
        self.run = None;
        for input in &contributors {
            done.push(self.ledger.terminalize(*input, InputState::Consumed));
            self.resolve(*input, report.observation(), FinalizationObservation::Succeeded, &evidence, fx);
        }
        self.receipts.push_back(BoundaryReceipt { run, boundary: 1, contributors, sequence: self.receipt_sequence });
        while self.receipts.len() > RECEIPTS_RETAINED_MAX {
            self.receipts.pop_front();
        }
        // The boundary row that just landed wrote these ends (as Consumed): the run's end writes nothing for them.
        debug_assert!(done.iter().all(|t| t.state == InputState::Consumed));
        self.end_run(now, fx, &[]);
        Ok(())
    }

    fn on_boundary_commit_failed(
        &mut self,
        now: Millis,
        run: RunId,
        error: ErrorInfo,
        fx: &mut Effects,
    ) -> Result<(), Refusal> {
        let current = self.current(run)?;
        let report = current.report.clone().ok_or(Refusal::RunNotReported(run))?;
        let inline = current.inline;
        let inputs = current.inputs.clone();
        self.run = None;
        // spec: specs/session.md#boundary-commit-failure: a failed commit is
        // never a success. The inputs roll back (nothing was committed) and
        // their waiters learn that finalization failed.
        let evidence =
            Evidence { error: Some(error.clone()), reason: Some("boundary commit failed".into()), ..report.evidence() };
        let done: Vec<Terminalized> = self.ledger.rollback_run(&inputs, false).into_iter().flatten().collect();
        let finalization = planted_or!(
            self.config,
            FailedCommitReportedAsSuccess,
            FinalizationObservation::Succeeded,
            FinalizationObservation::Failed
        );
        for input in inputs {
            self.resolve(input, report.observation(), finalization, &evidence, fx);
        }
        if inline {
            // accept_and_run unwinds: the caller gets the error, the session lives.
            self.end_run(now, fx, &done);
            return Ok(());
        }
        // The loop's store is failing: stop the executor rather than run more
        // work whose results cannot be recorded.
        let _ = self.phase.apply(PhaseEvent::Stop).expect("a running session accepts stop");
        self.end_run(now, fx, &done);
        Ok(())
    }

    fn on_run_failed(&mut self, now: Millis, run: RunId, error: ErrorInfo, fx: &mut Effects) -> Result<(), Refusal> {
        let current = self.current(run)?;
        if current.report.is_some() {
            return Err(Refusal::RunFinalizing(run));
        }
        self.fail_current_run(now, run, error, fx);
        Ok(())
    }

    /// A failed attempt: inputs go back to their lane or, out of attempts, are
    /// abandoned with the error. The backlog keeps draining afterwards.
    fn fail_current_run(&mut self, now: Millis, run: RunId, error: ErrorInfo, fx: &mut Effects) {
        let current = self.run.take().expect("a current run");
        assert_eq!(current.id, run);
        let mut done = Vec::new();
        let refund = planted_or!(self.config, AttemptRefundedOnFailure, true, false);
        let rolled_back = self.ledger.rollback_run(&current.inputs, refund);
        for (input, ended) in current.inputs.into_iter().zip(rolled_back) {
            if let Some(t) = ended {
                let evidence =
                    Evidence { reason: Some(t_reason(&t)), error: Some(error.clone()), ..Evidence::default() };
                self.resolve(input, TerminalObservation::Failed, FinalizationObservation::Succeeded, &evidence, fx);
                done.push(t);
            }
        }
        self.end_run(now, fx, &done);
    }

    fn expire_run(&mut self, now: Millis, fx: &mut Effects) {
        let run = self.run.as_ref().expect("expiry needs a run").id;
        fx.push(Effect::CancelRun { run, reason: StopReason::DeadlineExceeded });
        self.fail_current_run(
            now,
            run,
            ErrorInfo::new(FailureCause::DeadlineExceeded, "the run passed its deadline"),
            fx,
        );
    }

    /// Common end of every run: return the phase, apply a deferred stop, persist.
    fn end_run(&mut self, now: Millis, fx: &mut Effects, done: &[Terminalized]) {
        assert!(self.run.is_none(), "the caller cleared the run");
        let outcome = self.phase.apply(PhaseEvent::EndRun).expect("a run was in flight");
        planted_or!(
            self.config,
            RetireUndoneAtRunEnd,
            if self.phase.phase() == RuntimePhase::Retired {
                let attached = self.phase.executor_attached();
                let open = if attached { RuntimePhase::Attached } else { RuntimePhase::Idle };
                self.phase = PhaseMachine::from_parts_unchecked(open, None, false, attached);
            },
            ()
        );
        if outcome.stop_now {
            self.stop_now(StopReason::Requested, fx, done);
        } else {
            self.persist_lifecycle(fx, done);
        }
        self.wake_if_parked(fx);
        self.reconcile_drain(now, fx).expect("a drain always takes a reconcile");
    }

    /// Cancels the run in flight (exactly `run`, when named); `error` is why, when the core chose it.
    fn interrupt(
        &mut self,
        now: Millis,
        run: Option<RunId>,
        error: Option<ErrorInfo>,
        fx: &mut Effects,
    ) -> Result<(), Refusal> {
        let current = self.run.as_ref().ok_or(Refusal::NoRunInFlight)?;
        if let Some(presented) = run {
            self.current(presented)?;
        }
        if current.report.is_some() {
            return Err(Refusal::RunFinalizing(current.id));
        }
        let current = self.run.take().expect("checked");
        fx.push(Effect::CancelRun { run: current.id, reason: StopReason::Interrupted });
        let mut done = Vec::new();
        let evidence = Evidence { error, ..Evidence::default() };
        for input in current.inputs {
            done.push(self.ledger.terminalize(input, InputState::Abandoned(AbandonReason::Cancelled)));
            self.resolve(input, TerminalObservation::Cancelled, FinalizationObservation::Succeeded, &evidence, fx);
        }
        self.end_run(now, fx, &done);
        fx.reply = Reply::Interrupted(current.id);
        Ok(())
    }

    fn on_tick(&mut self, now: Millis, fx: &mut Effects) -> Result<(), Refusal> {
        if let Some(run) = self.run.as_mut() {
            if !run.notice_sent && run.report.is_none() && now >= run.notice_at {
                run.notice_sent = true;
                fx.push(Effect::RunNotice {
                    run: run.id,
                    inputs: run.inputs.clone(),
                    elapsed_ms: now.since(run.started_at),
                });
            }
        }
        let out = self.registration.apply(now, RegistrationEvent::Tick).expect("registration always takes a Tick");
        for effect in out {
            if matches!(effect, RegistrationEffect::ForceResolveWaiters) {
                self.resolve_all_waiters_terminated("unregister grace expired", fx);
            }
            fx.push(Effect::Registration(effect));
        }
        Ok(())
    }

    // ----- control ---------------------------------------------------------

    fn on_stop(&mut self, _now: Millis, fx: &mut Effects) -> Result<(), Refusal> {
        let outcome = self.phase.apply(PhaseEvent::Stop)?;
        if outcome.no_op {
            fx.reply = Reply::NoOp;
            return Ok(());
        }
        if outcome.stop_deferred {
            fx.reply = Reply::Stopped { deferred: true, abandoned: 0 };
            return Ok(());
        }
        let abandoned = self.stop_now(StopReason::Requested, fx, &[]);
        fx.reply = Reply::Stopped { deferred: false, abandoned };
        Ok(())
    }

    /// The stop path, shared by explicit stops, deferred stops, closed
    /// channels and fail-stops: abandon pending work, resolve every waiter,
    /// stop the executor, persist. The phase is already Stopped.
    fn stop_now(&mut self, reason: StopReason, fx: &mut Effects, earlier: &[Terminalized]) -> usize {
        assert_eq!(self.phase.phase(), RuntimePhase::Stopped);
        assert!(self.run.is_none(), "a stop takes effect between runs");
        let done = self.ledger.abandon_all(AbandonReason::Stopped);
        let abandoned = done.len();
        self.resolve_terminalized(&done, fx);
        self.resolve_all_waiters_terminated("stopped", fx);
        self.quiet.clear();
        self.loop_parked = false;
        self.stop_reason = Some(reason);
        fx.push(Effect::StopExecutor { reason });
        let mut all = earlier.to_vec();
        all.extend(done);
        self.persist_lifecycle(fx, &all);
        abandoned
    }

    fn on_persist_failed(&mut self, now: Millis, error: ErrorInfo, fx: &mut Effects) -> Result<(), Refusal> {
        // spec: specs/session.md#a-failed-row-is-written-again: whatever the failed row carried, the next row carries.
        self.resave = true;
        self.written_head = None;
        if self.phase.phase() == RuntimePhase::Destroyed {
            // Nothing is left to stop: every input ended and every waiter was answered by the destroy itself. The
            // store keeps the phase before the destroy, so a restart brings the session back as it was then.
            fx.reply = Reply::NoOp;
            return Ok(());
        }
        if self.phase.phase() == RuntimePhase::Stopped && self.run.is_none() {
            // Already fail-stopped: a second failure changes nothing.
            fx.reply = Reply::NoOp;
            return Ok(());
        }
        // spec: specs/session.md#fail-stop: every waiter learns the store's error, not only that the session stopped.
        let evidence = Evidence {
            reason: Some("the session fail-stopped: a lifecycle commit failed".into()),
            error: Some(error),
            ..Evidence::default()
        };
        let mut done = Vec::new();
        if let Some(current) = self.run.take() {
            fx.push(Effect::CancelRun { run: current.id, reason: StopReason::PersistFailed });
            for input in current.inputs {
                if self.ledger.get(input).is_some() {
                    done.push(self.ledger.terminalize(input, InputState::Abandoned(AbandonReason::Stopped)));
                }
            }
            let _ = self.phase.apply(PhaseEvent::EndRun).expect("a run was in flight");
        }
        done.extend(self.ledger.abandon_all(AbandonReason::Stopped));
        let pending: Vec<InputId> = self.waiters.inputs().collect();
        for input in pending {
            let terminal = TerminalObservation::RuntimeTerminated;
            self.resolve(input, terminal, FinalizationObservation::Failed, &evidence, fx);
        }
        // spec: specs/session.md#notices: every input the fail-stop ended is told, those nobody waited on too (an
        // unregister may have answered their waiters already).
        planted_or!(self.config, FailStopLeavesEndsUntold, (), self.resolve_terminalized(&done, fx));
        if self.phase.phase() != RuntimePhase::Stopped {
            let _ = self.phase.apply(PhaseEvent::Stop).expect("not running, not destroyed");
        }
        self.stop_now(StopReason::PersistFailed, fx, &done);
        self.reconcile_drain(now, fx).expect("a drain always takes a reconcile");
        Ok(())
    }

    // spec: specs/session.md#ownership-moved
    fn on_ownership_lost(&mut self, now: Millis, owner: Option<HostId>, fx: &mut Effects) {
        // The host stops at once and writes nothing: the store is the new owner's now, and every write of this host
        // would be fenced anyway. Nothing here ends an input: the store keeps each as it was, and the new owner's
        // recovery decides. The input whose write was in flight is in the store or not, as the store decided; either
        // way its caller is told the session moved, never that it was accepted or ended.
        self.moved = Some(Moved { owner });
        self.stop_reason = Some(StopReason::OwnershipMoved);
        self.admitting = None;
        if let Some(current) = self.run.take() {
            fx.push(Effect::CancelRun { run: current.id, reason: StopReason::OwnershipMoved });
            let _ = self.phase.apply(PhaseEvent::EndRun).expect("a run was in flight");
        }
        let binding = self.binding().unwrap_or(Binding { epoch: EpochId(0), generation: Generation(0) });
        let pending: Vec<InputId> = self.waiters.inputs().collect();
        for input in pending {
            let waiters = self.waiters.take(input);
            let observation = CleanupObservation { session: self.session, binding, class: None };
            let resolution = planted_or!(
                self.config,
                MoveAbandonsWaiters,
                Outcome::assemble(
                    OutcomeClass::Abandoned,
                    &Evidence {
                        reason: Some("moved".into()),
                        error: Some(ErrorInfo::new(FailureCause::TerminalPersistFailed, "moved")),
                        ..Evidence::default()
                    }
                )
                .map_err(NoOutcome::from),
                Err(NoOutcome::OwnershipMoved { owner })
            );
            fx.push(Effect::ResolveWaiters { input, waiters, resolution, observation });
        }
        if !matches!(self.phase.phase(), RuntimePhase::Stopped | RuntimePhase::Destroyed) {
            let _ = self.phase.apply(PhaseEvent::Stop).expect("not running, not destroyed");
        }
        self.quiet.clear();
        self.loop_parked = false;
        fx.push(Effect::StopExecutor { reason: StopReason::OwnershipMoved });
        self.reconcile_drain(now, fx).expect("a drain always takes a reconcile");
        fx.push(Effect::Notify(Notice::OwnershipMoved { owner }));
        fx.reply = Reply::Done;
    }

    /// spec: specs/session.md#ownership-moved: a moved session refuses every call, naming the owner, and absorbs the
    /// late results of what it did before the move without acting on them. Its loop is told to exit.
    fn after_move(&mut self, moved: Moved, event: &SessionEvent, fx: &mut Effects) -> Result<(), Refusal> {
        let result = matches!(
            event,
            SessionEvent::OwnershipLost { .. }
                | SessionEvent::AttachCompleted
                | SessionEvent::AttachFailed
                | SessionEvent::LoopExited { .. }
                | SessionEvent::InputPersisted { .. }
                | SessionEvent::InputPersistFailed { .. }
                | SessionEvent::RunNotExecuted { .. }
                | SessionEvent::RunStartRecorded { .. }
                | SessionEvent::RunReported { .. }
                | SessionEvent::RunFailed { .. }
                | SessionEvent::BoundaryCommitted { .. }
                | SessionEvent::BoundaryCommitFailed { .. }
                | SessionEvent::LifecyclePersistFailed { .. }
                | SessionEvent::CancelAfterBoundaryFailed { .. }
                | SessionEvent::OperationsPersistFailed { .. }
                | SessionEvent::ObligationMet(_)
                | SessionEvent::CommitUnregister
                | SessionEvent::Drain(_)
                | SessionEvent::Tick
        );
        if matches!(event, SessionEvent::Poll) {
            fx.reply = Reply::Exit { reason: StopReason::OwnershipMoved };
            return Ok(());
        }
        if !result {
            return Err(Refusal::NotOwner { owner: moved.owner });
        }
        fx.reply = Reply::NoOp;
        Ok(())
    }

    fn on_retire(&mut self, now: Millis, fx: &mut Effects) -> Result<(), Refusal> {
        let outcome = self.phase.apply(PhaseEvent::Retire)?;
        if outcome.no_op {
            fx.reply = Reply::NoOp;
            return Ok(());
        }
        self.retire_watermark = Some(InputId(self.next_input + 1));
        // spec: specs/phase.md#retire: with an executor the queue drains,
        // without one it is abandoned.
        let (pending_drain, done) = if self.phase.executor_attached() {
            planted_or!(
                self.config,
                RetireExpectsQueuedWork,
                {
                    let _newest = self.ledger.queue_lane().last().expect("a retire has queued work to drain");
                },
                ()
            );
            (self.ledger.queue_lane().count() + self.ledger.steer_lane().count(), Vec::new())
        } else {
            let reason = planted_or!(self.config, RetireAbandonsAsReset, AbandonReason::Reset, AbandonReason::Retired);
            let done = self.ledger.abandon_queued(reason);
            self.resolve_terminalized(&done, fx);
            (0, done)
        };
        self.persist_lifecycle(fx, &done);
        // Draining what was queued is the point of a retire: quiet inputs too.
        self.quiet.clear();
        self.wake_if_parked(fx);
        fx.reply = Reply::Retired { pending_drain, abandoned: done.len() };
        self.reconcile_drain(now, fx)
    }

    fn on_recycle(&mut self, now: Millis, fx: &mut Effects) -> Result<(), Refusal> {
        let mut phase = self.phase.clone();
        let _ = phase.apply(PhaseEvent::Recycle)?;
        let out = self.registration.apply(now, RegistrationEvent::Rebind)?;
        fx.effects.extend(out.into_iter().map(Effect::Registration));
        self.phase = phase;
        self.retire_watermark = None;
        self.quiet.clear();
        let transferred = self.ledger.active_len();
        // Every active input is queued (no run is in flight); rebuilding keeps
        // them and their waiters. Ephemeral inputs transfer too: the ledger in
        // memory is the source, nothing was lost.
        let outcome = self.ledger.relane();
        assert!(outcome.requeued.is_empty() && outcome.abandoned.is_empty());
        self.persist_lifecycle(fx, &[]);
        self.wake_if_parked(fx);
        fx.reply = Reply::Recycled { transferred };
        self.reconcile_drain(now, fx)
    }

    fn on_reset(&mut self, now: Millis, fx: &mut Effects) -> Result<(), Refusal> {
        let _ = self.phase.apply(PhaseEvent::Reset)?;
        self.retire_watermark = None;
        let done = self.ledger.abandon_all(AbandonReason::Reset);
        self.resolve_terminalized(&done, fx);
        self.quiet.clear();
        self.persist_lifecycle(fx, &done);
        fx.reply = Reply::Reset { abandoned: done.len() };
        self.reconcile_drain(now, fx)
    }

    fn on_recover(&mut self, now: Millis, source: RecoverySource, fx: &mut Effects) -> Result<(), Refusal> {
        let _ = self.phase.apply(PhaseEvent::Recover)?;
        self.recover_ledger(now, source, fx)
    }

    /// The ledger half of recovery (SPEC 5's table), shared by the Recover
    /// event and by [`SessionMachine::restored`], which must not move the phase.
    fn recover_ledger(&mut self, now: Millis, source: RecoverySource, fx: &mut Effects) -> Result<(), Refusal> {
        self.retire_watermark = None;
        self.quiet.clear();
        // An ephemeral Continuation does not survive a recovery (specs/operations.md#cursors).
        let continuation_dropped = self.ledger.active().any(|r| {
            r.spec.kind == InputKind::Continuation && r.spec.durability == crate::input::Durability::Ephemeral
        });
        let dropped;
        let outcome = match source {
            RecoverySource::InMemory => {
                let ephemeral = self.ledger.drop_ephemeral();
                dropped = ephemeral.len();
                for input in ephemeral {
                    self.resolve_terminated(input, "ephemeral input dropped by recovery", fx);
                }
                let receipts: BTreeSet<RunId> = self.receipts.iter().map(|r| r.run).collect();
                self.ledger.recover(|run| receipts.contains(&run))
            }
            RecoverySource::Image(image) => {
                // spec: specs/session.md#notices: an input this session saw end and that the store still held
                // live (its last row failed) ends again here; its end was already told.
                // (An end the history let go is still known here if the failed row carried it.)
                let told: BTreeSet<InputId> = self.ledger.history().chain(&self.unconfirmed).map(|r| r.id).collect();
                let (outcome, gone) = self.replay_image(*image, fx)?;
                for t in outcome.consumed.iter().chain(&outcome.abandoned) {
                    if told.contains(&t.input) {
                        fx.ended.insert(t.input);
                    }
                }
                dropped = gone;
                outcome
            }
        };
        // spec: specs/operations.md#cursors: a Continuation the session made was ephemeral and is gone: the ends the
        // agent has not applied wake the session again once it is quiescent.
        if continuation_dropped && self.operations.get().injected_past_applied() {
            self.operations.get_mut().rewind_injected();
        }
        self.resolve_terminalized(&outcome.consumed, fx);
        self.resolve_terminalized(&outcome.abandoned, fx);
        let mut done = outcome.consumed.clone();
        done.extend(outcome.abandoned.iter().copied());
        self.persist_lifecycle(fx, &done);
        self.wake_if_parked(fx);
        fx.reply = Reply::Recovered {
            recovered: self.ledger.active_len(),
            requeued: outcome.requeued.len(),
            abandoned: outcome.abandoned.len(),
            consumed: outcome.consumed.len(),
            dropped,
        };
        self.reconcile_drain(now, fx)
    }

    /// Replaces the ledger with the image's (SPEC 5's table) and answers the waiters of inputs it does not bring
    /// back; returns the recovery's outcome and how many inputs were gone.
    fn replay_image(
        &mut self,
        image: RecoveryImage,
        fx: &mut Effects,
    ) -> Result<(crate::input::RecoveryOutcome, usize), Refusal> {
        image_is_well_formed(&image, self.config.max_attempts)?;
        let previous: Vec<InputId> = self.ledger.active().map(|r| r.id).collect();
        let mut ledger = Ledger::with_history(self.config.max_attempts, self.config.history_max);
        let (history, mut live): (Vec<InputRecord>, Vec<InputRecord>) =
            image.inputs.into_iter().partition(|record| record.state.is_terminal());
        // In id order, so each one lands at the back of the active map.
        live.sort_by_key(|record| record.id);
        planted_or!(
            self.config,
            StagedLostOnRecovery,
            live.retain(|record| !matches!(record.state, InputState::Staged { .. })),
            ()
        );
        for record in live {
            ledger = ledger_with(ledger, record);
        }
        for record in history {
            ledger = ledger_with(ledger, record);
        }
        self.ledger = ledger;
        // The store's image is now the session's word on every input: what a failed row carried and the history
        // let go is not written again over it (a revived input is live, and its row must say so).
        self.unconfirmed.clear();
        self.last_row.clear();
        self.next_input = self.next_input.max(image.last_input);
        self.next_run = self.next_run.max(image.last_run);
        self.receipt_sequence = self.receipt_sequence.max(image.last_receipt_sequence);
        if let Some(operations) = image.operations {
            // Live jobs died with the process; ended records and the feed survive.
            *self.operations.get_mut() = operations.recovered();
        }
        let outcome = self.ledger.recover(|run| image.committed_runs.contains(&run));
        // Waiters of inputs the image does not bring back cannot be answered.
        let mut gone = 0;
        for input in previous {
            if self.ledger.get(input).is_none() {
                gone += 1;
                self.resolve_terminated(input, "not in the recovered state", fx);
            }
        }
        Ok((outcome, gone))
    }

    fn on_destroy(&mut self, now: Millis, fx: &mut Effects) -> Result<(), Refusal> {
        let outcome = self.phase.apply(PhaseEvent::Destroy)?;
        if outcome.no_op {
            fx.reply = Reply::NoOp;
            return Ok(());
        }
        if let Some(current) = self.run.take() {
            fx.push(Effect::CancelRun { run: current.id, reason: StopReason::Destroyed });
        }
        let done = self.ledger.abandon_all(AbandonReason::Destroyed);
        planted_or!(self.config, DestroyKeepsWaiters, (), {
            self.resolve_terminalized(&done, fx);
            self.resolve_all_waiters_terminated("destroyed", fx);
        });
        self.quiet.clear();
        self.loop_parked = false;
        self.stop_reason = Some(StopReason::Destroyed);
        fx.push(Effect::StopExecutor { reason: StopReason::Destroyed });
        let terminate = OpEvent::TerminateOwner { reason: "session destroyed".into() };
        // A registry that is already terminated has nothing left to end: a destroy whose lifecycle row failed after
        // the registry's save landed comes back after a restart with the session alive and the registry ended.
        let terminated = planted_or!(self.config, DestroyLeavesOperations, Ok(Vec::new()), {
            self.operations.get_mut().apply(now, terminate)
        });
        let out = match terminated {
            Ok(out) => out,
            Err(OpRefusal::Terminated) => Vec::new(),
            Err(other) => unreachable!("terminating the owner is refused only when already done: {other}"),
        };
        let changed = !out.is_empty();
        if changed {
            self.operations.get_mut().observe_ends();
        }
        fx.effects.extend(out.into_iter().map(Effect::Operation));
        if changed && self.stored {
            fx.push(Effect::PersistOperations(Box::new(self.operations.get().clone())));
        }
        let out = self.drain.apply(now, DrainEvent::Shutdown).expect("a drain always takes Shutdown");
        fx.effects.extend(out.into_iter().map(Effect::Drain));
        self.persist_lifecycle(fx, &done);
        fx.reply = Reply::Destroyed { abandoned: done.len() };
        Ok(())
    }

    // ----- operations and drain ------------------------------------------

    fn on_operation(&mut self, now: Millis, event: OpEvent, fx: &mut Effects) -> Result<(), Refusal> {
        let event = match event {
            // spec: specs/operations.md#kinds: an operation belongs to the session whose registry holds it.
            OpEvent::Register { mut spec } => {
                match spec.owner {
                    Some(owner) if owner != self.session => {
                        return Err(OpRefusal::OwnerMismatch { owner, session: self.session }.into());
                    }
                    _ => spec.owner = Some(self.session),
                }
                OpEvent::Register { spec }
            }
            event => event,
        };
        // A detached job that starts or winds down changes what a restart keeps of it (a running one is re-bound, one
        // still provisioning is not): that change is saved though the registry emits nothing for it.
        let stage_saved = match &event {
            OpEvent::ProvisioningSucceeded { op } | OpEvent::RequestRetire { op } => {
                self.operations.get().outlives_restart(*op)
            }
            _ => false,
        };
        let base = fx.effects.len();
        let mut sink = OpSink { effects: &mut fx.effects, ended: false };
        self.operations.get_mut().apply_to(now, event, &mut sink)?;
        if sink.ended {
            // spec: specs/operations.md#cursors: the session machine sees every end in the step that makes it.
            self.operations.get_mut().observe_ends();
            self.settle_feed(now, fx);
        }
        if self.stored && (fx.effects.len() > base || stage_saved) {
            // Recovery reads the ended records, the feed and its cursors: save the registry after any change.
            fx.push(Effect::PersistOperations(Box::new(self.operations.get().clone())));
        }
        Ok(())
    }

    /// spec: specs/operations.md#cursors: once the session is quiescent (idle, nothing live, no admission in flight),
    /// the ends observed since the injected cursor are dealt with: if one wakes the owner and the agent has not applied
    /// it, a Continuation is injected so the end is seen without waiting for the next prompt; either way the injected
    /// cursor moves up to the observed one. Returns whether the registry changed (its save is the caller's).
    fn settle_feed(&mut self, now: Millis, fx: &mut Effects) -> bool {
        let ops = self.operations.get();
        if ops.feed_injected == ops.feed_observed || !self.settles_feed() {
            return false;
        }
        if ops.wake_owed() {
            let spec = InputSpec::new(InputKind::Continuation).durability(crate::input::Durability::Ephemeral);
            let mut inner = Effects::default();
            if self.on_accept(now, spec, false, true, &mut inner).is_err() {
                // Admission is closed (an unregister began) or the ledger is full: the wake stays owed.
                return false;
            }
            debug_assert!(matches!(inner.reply, Reply::Accepted { waiter: None, .. }));
            // Before the step's first write: if that write fails, the fail-stop that follows ends the continuation,
            // and its admission must have been told before its end (specs/session.md#notices).
            let at = fx.effects[fx.start..]
                .iter()
                .position(|effect| crate::protocol::Subject::of(effect).is_write())
                .map_or(fx.effects.len(), |offset| fx.start + offset);
            fx.effects.splice(at..at, inner.effects);
        }
        self.operations.get_mut().mark_injected();
        true
    }

    /// Whether the session is quiescent as the feed's settling means it (specs/operations.md#cursors): Idle or
    /// Attached, no run, no admission in flight, nothing live.
    pub(crate) fn settles_feed(&self) -> bool {
        matches!(self.phase.phase(), RuntimePhase::Idle | RuntimePhase::Attached)
            && self.run.is_none()
            && self.admitting.is_none()
            && self.ledger.active_len() == 0
    }

    /// [`Self::settle_feed`] after any event: the session may have just become quiescent with an end still owed.
    fn settle_feed_and_save(&mut self, now: Millis, fx: &mut Effects) {
        if planted_or!(self.config, WakeOnlyAtTheEnd, true, false) {
            return;
        }
        if self.settle_feed(now, fx) && self.stored {
            fx.push(Effect::PersistOperations(Box::new(self.operations.get().clone())));
        }
    }

    fn reconcile_drain(&mut self, now: Millis, fx: &mut Effects) -> Result<(), Refusal> {
        let view = self.phase.phase();
        let desired = if registration_admits_inputs(self.registration.phase()) {
            desired_mode(view, self.config.comms_enabled, self.config.keep_alive)
        } else {
            None
        };
        if self.drain_desired == desired {
            return Ok(());
        }
        let out = self.drain.apply(now, DrainEvent::Reconcile { desired })?;
        self.drain_desired = desired;
        fx.effects.extend(out.into_iter().map(Effect::Drain));
        Ok(())
    }

    // ----- helpers ---------------------------------------------------------

    fn wake_if_parked(&mut self, fx: &mut Effects) {
        if self.loop_parked
            && self.ready_to_run()
            && self.ledger.queue_lane().chain(self.ledger.steer_lane()).any(|i| !self.quiet.contains(&i))
        {
            self.loop_parked = false;
            self.quiet.clear();
            fx.push(Effect::WakeLoop);
        }
    }

    /// Resolves the waiters of `input` with the class chosen from the two
    /// observations. No waiters, no effect.
    fn resolve(
        &mut self,
        input: InputId,
        terminal: TerminalObservation,
        finalization: FinalizationObservation,
        evidence: &Evidence,
        fx: &mut Effects,
    ) {
        let class = select_class(terminal, finalization);
        let waiters = self.waiters.take(input);
        let answered = !waiters.is_empty();
        if answered {
            let resolution = Outcome::assemble(class, evidence).map_err(NoOutcome::from);
            let binding = self.binding().unwrap_or(Binding { epoch: EpochId(0), generation: Generation(0) });
            let observation = CleanupObservation {
                session: self.session,
                binding,
                class: resolution.as_ref().ok().map(Outcome::class),
            };
            fx.push(Effect::ResolveWaiters { input, waiters, resolution, observation });
        }
        if self.ledger.get(input).is_none() {
            self.notice_end(input, Some(class), fx);
        } else if answered {
            // spec: specs/session.md#notices: a live input has not ended, whatever its waiters were told (an
            // unregister answers them and keeps the input for the next registration): its end is told when it
            // comes, and if that is later in this event, with the class they received.
            fx.answered.push((input, class));
        }
    }

    /// spec: specs/session.md#notices: tells subscribers that `input`, no longer live, ended: once per input.
    fn notice_end(&self, input: InputId, class: Option<OutcomeClass>, fx: &mut Effects) {
        debug_assert!(self.ledger.get(input).is_none(), "input {input} is live: it has not ended");
        // Its waiters were answered earlier in this event, while it was live (a failed boundary commit answers them,
        // then the fail-stop ends the input): its end is told with the class they received.
        let class = fx.answered.iter().find(|(i, _)| *i == input).map(|(_, c)| *c).or(class);
        if fx.ended.insert(input) {
            fx.push(Effect::Notify(Notice::InputEnded { input, class }));
        }
    }

    /// spec: specs/session.md#notices: the notices an event implies that no one place of it makes, after its
    /// effects: an operation's end, the run's end, the drain's exit and the phase's change (a change into Running is
    /// told where the run starts, before the run is handed out).
    fn notice_step(
        &self,
        phase: RuntimePhase,
        run: Option<RunId>,
        drain_exit: Option<DrainExitReason>,
        fx: &mut Effects,
    ) {
        let mut notices = Vec::new();
        let mut from = phase;
        for effect in &fx.effects[fx.start..] {
            match effect {
                Effect::Operation(OpEffect::OperationEnded { op, status, .. }) => {
                    notices.push(Notice::OperationEnded { op: *op, status: *status });
                }
                Effect::Notify(Notice::PhaseChanged { to, .. }) => from = *to,
                _ => {}
            }
        }
        if let Some(ended) = run.filter(|r| self.run.as_ref().map(|now| now.id) != Some(*r)) {
            notices.push(Notice::RunEnded { run: ended });
        }
        if let Some(reason) = drain_exit {
            notices.push(Notice::DrainExited { reason });
        }
        let to = self.phase.phase();
        if to != from {
            notices.push(Notice::PhaseChanged { from, to });
        }
        fx.effects.extend(notices.into_iter().map(Effect::Notify));
    }

    fn resolve_terminalized(&mut self, done: &[Terminalized], fx: &mut Effects) {
        for t in done {
            let (terminal, cause) = match t.state {
                InputState::Abandoned(AbandonReason::Stopped | AbandonReason::Destroyed | AbandonReason::Reset) => {
                    (TerminalObservation::RuntimeTerminated, FailureCause::RuntimeTerminated)
                }
                InputState::Abandoned(AbandonReason::Cancelled) => {
                    (TerminalObservation::Cancelled, FailureCause::Abandoned)
                }
                InputState::Abandoned(AbandonReason::MaxAttemptsExhausted { .. }) => {
                    (TerminalObservation::Failed, FailureCause::ExecutorFailed)
                }
                InputState::Abandoned(_) => (TerminalObservation::Abandoned, FailureCause::Abandoned),
                InputState::Consumed => (TerminalObservation::NoResult, FailureCause::Abandoned),
                _ => (TerminalObservation::Abandoned, FailureCause::Abandoned),
            };
            let reason = t_reason(t);
            let evidence = Evidence {
                reason: Some(reason.clone()),
                error: Some(ErrorInfo::new(cause, reason)),
                ..Evidence::default()
            };
            self.resolve(t.input, terminal, FinalizationObservation::Succeeded, &evidence, fx);
        }
    }

    /// Resolves the waiters of `input` as RuntimeTerminated for `why`.
    fn resolve_terminated(&mut self, input: InputId, why: &str, fx: &mut Effects) {
        let evidence = Evidence {
            reason: Some(why.to_string()),
            error: Some(ErrorInfo::new(FailureCause::RuntimeTerminated, why)),
            ..Evidence::default()
        };
        self.resolve(input, TerminalObservation::RuntimeTerminated, FinalizationObservation::Succeeded, &evidence, fx);
    }

    fn resolve_all_waiters_terminated(&mut self, why: &str, fx: &mut Effects) {
        let inputs: Vec<InputId> = self.waiters.inputs().collect();
        for input in inputs {
            self.resolve_terminated(input, why, fx);
        }
        assert_eq!(self.waiters.pending(), 0);
    }

    /// Emits one lifecycle commit: the persisted phase, the binding and the
    /// durable rows of inputs that changed.
    fn persist_lifecycle(&mut self, fx: &mut Effects, done: &[Terminalized]) {
        self.persist_lifecycle_starting(fx, done, None);
    }

    /// As [`SessionMachine::persist_lifecycle`], recording the start of `starts_run`.
    fn persist_lifecycle_starting(&mut self, fx: &mut Effects, done: &[Terminalized], starts_run: Option<RunId>) {
        if !self.stored {
            return;
        }
        let mut inputs = self.changed_rows(done);
        let (phase, registration, binding, marks) =
            (self.phase.persisted_phase(), self.registration.phase(), self.binding(), self.id_marks());
        let head = PersistedLifecycle { phase, registration, binding, marks };
        let rows_matter = planted_or!(self.config, RowJudgedByItsHeadOnly, false, true);
        let unchanged = self.written_head.as_ref().is_some_and(|w| w.reads_as(&head));
        if (inputs.is_empty() || !rows_matter) && starts_run.is_none() && unchanged {
            // spec: specs/session.md#writes-per-input: recovery would read what the store holds already.
            return;
        }
        self.written_head = Some(head);
        // spec: specs/session.md#one-lifecycle-row: an event builds at most one lifecycle row. A second one is
        // merged into the first, where the first stood (nothing that had to wait for the first row's write runs
        // before the merged one). Two rows of one event would be performed in the order built, but an effect
        // between them may have feedback whose own row (a fail-stop after the first row's write failed, say) is
        // performed before the second: the second, built earlier, would then overwrite a newer row.
        let earlier = fx.effects[fx.start..].iter().position(|e| matches!(e, Effect::PersistLifecycle { .. }));
        let Some(at) = earlier.map(|at| fx.start + at) else {
            note_row(&mut self.last_row, &inputs);
            fx.push(Effect::PersistLifecycle { phase, registration, binding, marks, inputs, starts_run });
            return;
        };
        debug_assert!(
            !fx.effects[at..].iter().any(|e| matches!(e, Effect::PersistInput(_))),
            "an input written after the first lifecycle row could be named by the merged row before it lands"
        );
        let Effect::PersistLifecycle { inputs: older, starts_run: started, .. } = &fx.effects[at] else {
            unreachable!("found as a lifecycle row")
        };
        debug_assert!(started.is_none() || starts_run.is_none() || *started == starts_run, "one event, one run start");
        let starts_run = starts_run.or(*started);
        // A row the first one carried is carried again, as the ledger has it now.
        let fresh: BTreeSet<InputId> = inputs.iter().map(|r| r.id).collect();
        let carried: Vec<InputRecord> = older
            .iter()
            .filter(|old| !fresh.contains(&old.id))
            .map(|old| self.ledger.record(old.id).cloned().unwrap_or_else(|| old.clone()))
            .collect();
        inputs.extend(carried);
        inputs.sort_by_key(|r| r.id);
        note_row(&mut self.last_row, &inputs);
        fx.effects[at] = Effect::PersistLifecycle { phase, registration, binding, marks, inputs, starts_run };
    }

    /// The durable input rows a lifecycle row carries: those `done` ended, and every active one with attempts (its
    /// count changed); after a failed row, every row the ledger holds.
    fn changed_rows(&mut self, done: &[Terminalized]) -> Vec<InputRecord> {
        let durable = |record: &&InputRecord| record.spec.durability.is_persisted();
        // A new row is being built, so the last one's failure would have been reported by now.
        let unconfirmed = std::mem::take(&mut self.unconfirmed);
        if std::mem::take(&mut self.resave) {
            // spec: specs/session.md#a-failed-row-is-written-again. Every row in the ledger has landed once (an
            // input enters it only after its own write), so each one updates a row the store knows; so does each
            // record the failed row carried that has left the history since.
            let mut rows: Vec<InputRecord> =
                self.ledger.history().chain(self.ledger.active()).filter(durable).cloned().collect();
            // What the ledger holds now is the newer word on an input (a recovery may have brought one back).
            rows.extend(unconfirmed.into_iter().filter(|r| self.ledger.record(r.id).is_none()));
            return rows;
        }
        let mut rows: Vec<InputRecord> =
            done.iter().filter_map(|t| self.ledger.record(t.input)).filter(durable).cloned().collect();
        // Requeued and staged inputs changed too (their attempts); include
        // every active durable row with attempts, so recovery keeps counts: an
        // attempt cut short by a crash still counts (SPEC 2.2, poison inputs).
        rows.extend(
            self.ledger
                .attempted()
                .filter(|r| durable(r) && matches!(r.state, InputState::Queued | InputState::Staged { .. }))
                .cloned(),
        );
        rows
    }

    /// The step's rows are built: the history may shrink to its bound now (Ledger::trim_history), keeping aside
    /// what the last lifecycle row carried, which a failure reported later must write again.
    fn trim_history(&mut self) {
        let (last_row, unconfirmed) = (&self.last_row, &mut self.unconfirmed);
        self.ledger.trim_history_into(|old| {
            if last_row.binary_search(&old.id).is_ok() {
                unconfirmed.push(old);
            }
        });
    }

    fn assert_consistent(&self) {
        // Cheap structural postconditions after every accepted event; the full
        // predicate set lives in invariants::check.
        assert_eq!(self.phase.phase() == RuntimePhase::Running, self.run.is_some());
        // Walks every waiter, so only in debug builds; invariants::check has the same test.
        debug_assert!(self.waiters.count_is_consistent());
    }
}

/// The operations registry of a session, made on its first change: most sessions never run an operation, and the
/// registry is the largest part of an idle machine. An absent registry stands for the default one: it compares,
/// hashes and prints as that, so making it (even for an event the registry then refuses) changes nothing visible.
#[derive(Clone, Default)]
pub(crate) struct LazyRegistry(Option<Box<OperationsRegistry>>);

impl LazyRegistry {
    /// A registry with `config`: made on first change when the config is the default, at once otherwise (an absent
    /// registry stands for the default one).
    fn new(config: crate::operations::OpsConfig) -> LazyRegistry {
        if config == crate::operations::OpsConfig::default() {
            return LazyRegistry(None);
        }
        LazyRegistry(Some(Box::new(OperationsRegistry::new(config))))
    }

    pub(crate) fn get(&self) -> &OperationsRegistry {
        static EMPTY: std::sync::OnceLock<OperationsRegistry> = std::sync::OnceLock::new();
        match &self.0 {
            Some(registry) => registry,
            None => EMPTY.get_or_init(OperationsRegistry::default),
        }
    }

    pub(crate) fn get_mut(&mut self) -> &mut OperationsRegistry {
        self.0.get_or_insert_default()
    }
}

impl PartialEq for LazyRegistry {
    fn eq(&self, other: &Self) -> bool {
        self.get() == other.get()
    }
}

impl Eq for LazyRegistry {}

impl std::hash::Hash for LazyRegistry {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.get().hash(state);
    }
}

impl std::fmt::Debug for LazyRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.get().fmt(f)
    }
}

/// The registry's effects, pushed straight into the session's as `Effect::Operation`, noting whether an operation
/// ended.
struct OpSink<'a> {
    effects: &'a mut Vec<Effect>,
    ended: bool,
}

impl crate::operations::OpEffects for OpSink<'_> {
    fn push(&mut self, effect: OpEffect) {
        if let OpEffect::OperationEnded { .. } = &effect {
            self.ended = true;
        }
        self.effects.push(Effect::Operation(effect));
    }
}

/// Notes the ids of a lifecycle row's input rows in `ids`, in id order (the buffer is reused).
fn note_row(ids: &mut Vec<InputId>, rows: &[InputRecord]) {
    ids.clear();
    ids.extend(rows.iter().map(|r| r.id));
    ids.sort_unstable();
}

/// Whether a registration phase admits new inputs (prepared, not leaving).
#[must_use]
pub fn registration_admits_inputs(phase: RegistrationPhase) -> bool {
    matches!(phase, RegistrationPhase::Queuing | RegistrationPhase::Attaching { .. } | RegistrationPhase::Active { .. })
}

/// Whether a registration phase lets the loop start runs.
#[must_use]
pub fn registration_admits_runs(phase: RegistrationPhase) -> bool {
    matches!(phase, RegistrationPhase::Active { .. })
}

fn t_reason(t: &Terminalized) -> String {
    match t.state {
        InputState::Abandoned(reason) => reason.name().to_string(),
        other => other.label(),
    }
}

/// A store image names each input once, gives each live idempotency key to one input, and keeps attempts within the
/// bound; anything else is a corrupt store, refused before the ledger is touched.
fn image_is_well_formed(image: &RecoveryImage, max_attempts: u32) -> Result<(), Refusal> {
    let mut ids = BTreeSet::new();
    let mut live_keys = BTreeSet::new();
    for record in &image.inputs {
        if !ids.insert(record.id) {
            return Err(Refusal::CorruptImage { input: record.id, why: "the input appears twice" });
        }
        if record.attempts > max_attempts {
            return Err(Refusal::CorruptImage { input: record.id, why: "more attempts than the bound allows" });
        }
        if let (Some(key), false) = (&record.spec.idempotency_key, record.state.is_terminal()) {
            if !live_keys.insert(key.as_str()) {
                return Err(Refusal::CorruptImage { input: record.id, why: "a live idempotency key is held twice" });
            }
        }
    }
    Ok(())
}

fn ledger_with(mut ledger: Ledger, record: InputRecord) -> Ledger {
    ledger.restore(record);
    ledger
}

/// Whether `config` plants any defect (never, without the `planted` feature).
fn planted(config: &SessionConfig) -> bool {
    #[cfg(feature = "planted")]
    let any = config.planted.is_some();
    #[cfg(not(feature = "planted"))]
    let any = {
        let _ = config;
        false
    };
    any
}

/// Used by tables and tests: the class a waiter of an input in `state` gets.
#[must_use]
pub fn class_for_abandonment(reason: AbandonReason) -> OutcomeClass {
    match reason {
        AbandonReason::Stopped | AbandonReason::Destroyed | AbandonReason::Reset => OutcomeClass::RuntimeTerminated,
        AbandonReason::Cancelled => OutcomeClass::Cancelled,
        AbandonReason::MaxAttemptsExhausted { .. } => OutcomeClass::AbandonedWithError,
        AbandonReason::Retired | AbandonReason::NeverExecuted | AbandonReason::Rederived => OutcomeClass::Abandoned,
    }
}

/// Whether `event` is a call (from a caller, the loop, the drain or a control plane) rather than a prepare, a timer
/// or the result of one of the machine's own effects.
/// Takes an event that changes nothing.
fn no_op(fx: &mut Effects) -> Result<(), Refusal> {
    fx.reply = Reply::NoOp;
    Ok(())
}

fn is_call(event: &SessionEvent) -> bool {
    matches!(
        event,
        SessionEvent::Accept { .. }
            | SessionEvent::AcceptAndRun { .. }
            | SessionEvent::BeginAttach
            | SessionEvent::Detach
            | SessionEvent::Stop
            | SessionEvent::Retire
            | SessionEvent::Recycle
            | SessionEvent::Reset
            | SessionEvent::Recover(_)
            | SessionEvent::Destroy
            | SessionEvent::Interrupt { .. }
            | SessionEvent::CancelAfterBoundary
            | SessionEvent::SetSilentIntents(_)
            | SessionEvent::SetKeepAlive(_)
            | SessionEvent::SetCommsEnabled(_)
            | SessionEvent::Wake
            | SessionEvent::Operation(_)
            | SessionEvent::PeerSourceSet
            | SessionEvent::Publish(_)
    )
}

/// spec: specs/registration.md#commit: an unregister commits after everything else the event that readied it asked
/// for. Its feedback writes the Unregistered row; a lifecycle row the same event built earlier (a loop's exit falls
/// back to Idle, say) is performed after that feedback and would overwrite it with Unregistering, so a restart would
/// find the unregister still in progress. Moving `CommitReady` last keeps the rows in the order they were made.
fn commit_last(effects: &mut [Effect]) {
    let ready = |e: &Effect| matches!(e, Effect::Registration(RegistrationEffect::CommitReady));
    if let Some(at) = effects.iter().position(ready) {
        effects[at..].rotate_left(1);
    }
}
