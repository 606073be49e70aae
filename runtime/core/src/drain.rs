//! The peer ingress drain of one session (SPEC 2.5).
//!
//! A drain is a task that pulls peer messages from a pluggable source into the
//! session. This machine decides when such a task must exist, in which mode,
//! what happens when it ends, and whether it may go to sleep. The shell owns the
//! task itself; it performs the effects returned here and reports back what the
//! task did.
//!
//! Two races shape the design. First, a task that was aborted may still report
//! (abort is asynchronous), so every spawned task gets an incarnation number and
//! every report names it; a report from an older incarnation is refused instead
//! of being applied to its successor. Second, a message may arrive while the
//! task is deciding to sleep; the sleep decision is therefore made here, under
//! the same serialisation as the inbox notification, so one of the two always
//! sees the other (see [`DrainEvent::ParkRequested`]).
//!
//! spec: specs/drain.md

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::phase::RuntimePhase;

use crate::ids::Millis;

/// How many times in a row a failed PersistentHost drain is respawned before
/// the machine gives up and records `Stopped(Failed)`.
///
/// A source that fails at once on every start would otherwise spin forever.
/// The count starts again whenever a drain proves healthy by reaching its park
/// point, or when the session asks for a drain afresh.
pub const DRAIN_RESPAWNS_MAX: u32 = 3;

/// Why a drain task exists. Serialisable so a session snapshot or a trace can
/// record the desired mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum DrainMode {
    /// An executor is attached or running: peer messages feed its turns.
    AttachedSession,
    /// No executor, but the session is kept alive to host peer ingress.
    PersistentHost,
}

impl fmt::Display for DrainMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// Why a drain task ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum DrainExitReason {
    /// The task saw no traffic for its idle period and ended itself.
    IdleTimeout,
    /// A peer dismissed the session.
    Dismissed,
    /// The source or the task failed.
    Failed,
    /// The control plane aborted the task (no longer wanted, or a mode change).
    Aborted,
    /// The session is going away.
    SessionShutdown,
}

impl DrainExitReason {
    /// Every reason, in declaration order.
    pub const ALL: [DrainExitReason; 5] = [
        DrainExitReason::IdleTimeout,
        DrainExitReason::Dismissed,
        DrainExitReason::Failed,
        DrainExitReason::Aborted,
        DrainExitReason::SessionShutdown,
    ];

    /// Whether the task chose to end (as opposed to being ended by the
    /// control plane).
    ///
    /// Such an end is latched: reconciling again with an unchanged desire does
    /// not undo it, because the task's own decision (a dismissal, an idle
    /// timeout, a failure) still stands. Only a change of desire undoes it.
    #[must_use]
    pub fn is_self_ended(self) -> bool {
        matches!(self, DrainExitReason::IdleTimeout | DrainExitReason::Dismissed | DrainExitReason::Failed)
    }
}

impl fmt::Display for DrainExitReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// Which spawned drain task a report or an effect concerns.
///
/// Numbers grow by one per spawn; zero means no task was ever spawned.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DrainIncarnation(pub u64);

impl fmt::Display for DrainIncarnation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "d{}", self.0)
    }
}

/// The lifecycle phase of a session's drain.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DrainPhase {
    /// No task was ever spawned.
    Inactive,
    /// A task is running in `mode`.
    Running {
        /// The mode the task was spawned in.
        mode: DrainMode,
    },
    /// No task; the last one ended for `reason`.
    Stopped {
        /// Why the last task ended.
        reason: DrainExitReason,
    },
    /// A PersistentHost task failed and waits for [`DrainEvent::Respawn`].
    ExitedRespawnable,
}

impl DrainPhase {
    /// Whether a drain task exists.
    #[must_use]
    pub fn is_running(self) -> bool {
        matches!(self, DrainPhase::Running { .. })
    }
}

impl fmt::Display for DrainPhase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DrainPhase::Inactive => f.write_str("Inactive"),
            DrainPhase::Running { mode } => write!(f, "Running({mode})"),
            DrainPhase::Stopped { reason } => write!(f, "Stopped({reason})"),
            DrainPhase::ExitedRespawnable => f.write_str("ExitedRespawnable"),
        }
    }
}

/// The drain mode a session wants, as a pure function of its runtime phase,
/// whether comms are enabled and whether it is kept alive while idle.
///
/// A session with an executor attached or running wants an AttachedSession
/// drain; an idle session that is kept alive wants a PersistentHost drain;
/// every other phase (and any session without comms) wants none.
// spec: specs/drain.md#desired-mode
#[must_use]
pub fn desired_mode(phase: RuntimePhase, comms_enabled: bool, keep_alive: bool) -> Option<DrainMode> {
    if !comms_enabled {
        return None;
    }
    match phase {
        RuntimePhase::Attached | RuntimePhase::Running => Some(DrainMode::AttachedSession),
        RuntimePhase::Idle if keep_alive => Some(DrainMode::PersistentHost),
        RuntimePhase::Initializing
        | RuntimePhase::Idle
        | RuntimePhase::Retired
        | RuntimePhase::Stopped
        | RuntimePhase::Destroyed => None,
    }
}

/// An event the drain machine understands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DrainEvent {
    /// The session states the mode it wants now (see [`desired_mode`]); the
    /// machine spawns, aborts or swaps the task to match.
    Reconcile {
        /// The wanted mode, or `None` for no drain.
        desired: Option<DrainMode>,
    },
    /// The drain task ended by itself.
    Exited {
        /// The task that ended.
        incarnation: DrainIncarnation,
        /// Why it ended.
        reason: DrainExitReason,
    },
    /// The respawn delay after a PersistentHost failure has passed.
    Respawn,
    /// The session is going away; no drain may outlive it.
    Shutdown,
    /// The control plane ends the running task now (`abort_drain`). It ends Aborted and is not started again
    /// until the session's wish changes (an attach or detach, keep-alive, comms, a new source).
    Abort,
    /// The session was given a (new) message source. A drain that ended by itself (dismissed by the old source,
    /// idle, failed) starts again if the session wants one, and a running one is replaced so that it pulls from the
    /// new source.
    SourceChanged,
    /// The message source signalled that its inbox has something.
    InboxNotified,
    /// The drain task found its inbox empty and asks whether it may sleep.
    ///
    /// The answer is [`DrainEffect::Park`] only if no notification arrived
    /// since the task last looked; otherwise [`DrainEffect::ContinueDraining`].
    ParkRequested {
        /// The task asking.
        incarnation: DrainIncarnation,
    },
}

/// Work the shell performs for the drain machine.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DrainEffect {
    /// Spawn a drain task in `mode`, tagged with `incarnation`.
    SpawnDrain {
        /// The mode to run in.
        mode: DrainMode,
        /// The tag the task puts on its reports.
        incarnation: DrainIncarnation,
    },
    /// Abort the drain task `incarnation`.
    AbortDrain {
        /// The task to abort.
        incarnation: DrainIncarnation,
    },
    /// Arm the respawn delay; deliver [`DrainEvent::Respawn`] when it passes.
    ScheduleRespawn,
    /// Tell the asking task it may sleep until woken.
    Park,
    /// Tell the asking task to look at its inbox again instead of sleeping.
    ContinueDraining,
    /// Wake the parked task `incarnation`.
    WakeDrain {
        /// The task to wake.
        incarnation: DrainIncarnation,
    },
}

impl DrainEffect {
    /// The effect's variant name, for tables and traces.
    #[must_use]
    pub fn name(&self) -> &'static str {
        match self {
            DrainEffect::SpawnDrain { .. } => "SpawnDrain",
            DrainEffect::AbortDrain { .. } => "AbortDrain",
            DrainEffect::ScheduleRespawn => "ScheduleRespawn",
            DrainEffect::Park => "Park",
            DrainEffect::ContinueDraining => "ContinueDraining",
            DrainEffect::WakeDrain { .. } => "WakeDrain",
        }
    }
}

/// Why the drain machine refused an event. A refused event changed nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, thiserror::Error)]
pub enum DrainRefusal {
    /// A task report arrived while no task is running.
    #[error("no drain task is running (phase {phase})")]
    NotRunning {
        /// The phase at the time of the report.
        phase: DrainPhase,
    },
    /// A report came from a task that has since been replaced.
    #[error("report from drain {presented}, but the current drain is {current}")]
    StaleIncarnation {
        /// The incarnation named by the report.
        presented: DrainIncarnation,
        /// The incarnation of the newest task.
        current: DrainIncarnation,
    },
    /// A parked task cannot ask to park again; it must be woken first.
    #[error("drain {incarnation} is already parked")]
    AlreadyParked {
        /// The parked task.
        incarnation: DrainIncarnation,
    },
    /// Respawn arrived while no failed PersistentHost drain waits for it.
    #[error("nothing to respawn in phase {phase}")]
    NotRespawnable {
        /// The phase at the time of the event.
        phase: DrainPhase,
    },
}

/// A broken drain invariant, found by [`DrainMachine::check`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, thiserror::Error)]
pub enum DrainViolation {
    /// The task sleeps although a notification is pending: a lost wakeup.
    #[error("lost wakeup: drain {incarnation} is parked with a notification pending")]
    LostWakeup {
        /// The parked task.
        incarnation: DrainIncarnation,
    },
    /// The machine records a parked task although none is running.
    #[error("parked flag set in phase {phase}")]
    ParkedWhileNotRunning {
        /// The phase.
        phase: DrainPhase,
    },
    /// A respawnable exit was recorded for a drain that was not PersistentHost.
    #[error("ExitedRespawnable recorded for mode {last_mode:?}")]
    RespawnableWithoutPersistentHost {
        /// The mode of the task that ended.
        last_mode: Option<DrainMode>,
    },
    /// The running mode disagrees with the mode recorded at spawn.
    #[error("running as {running} but last spawned as {last_mode:?}")]
    RunningModeMismatch {
        /// The mode in the phase.
        running: DrainMode,
        /// The mode recorded at spawn.
        last_mode: Option<DrainMode>,
    },
    /// A task runs in a mode the session no longer wants: a Reconcile was
    /// applied without aborting or swapping it.
    #[error("running as {running} but the desired mode is {desired:?}")]
    RunningUndesired {
        /// The mode in the phase.
        running: DrainMode,
        /// The desire of the last Reconcile.
        desired: Option<DrainMode>,
    },
    /// Running although no task was ever spawned.
    #[error("running as {mode} but no drain was ever spawned")]
    RunningWithoutSpawn {
        /// The mode in the phase.
        mode: DrainMode,
    },
    /// More consecutive respawns were recorded than the bound allows.
    #[error("{respawns} consecutive respawns exceed the bound {DRAIN_RESPAWNS_MAX}")]
    RespawnBudgetExceeded {
        /// The recorded count.
        respawns: u32,
    },
}

/// The drain machine of one session.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct DrainMachine {
    phase: DrainPhase,
    /// The desire stated by the last Reconcile (cleared by Shutdown). A
    /// self-ended stop holds while this stays the same.
    desired: Option<DrainMode>,
    /// The mode of the most recently spawned task; it explains a Stopped or
    /// ExitedRespawnable phase.
    last_mode: Option<DrainMode>,
    /// The newest task's incarnation (zero before the first spawn).
    incarnation: DrainIncarnation,
    /// Consecutive respawns after failures, bounded by [`DRAIN_RESPAWNS_MAX`].
    respawns: u32,
    /// A notification arrived that no task has looked at yet.
    signal_pending: bool,
    /// The running task was told to sleep and has not been woken.
    parked: bool,
}

impl Default for DrainMachine {
    fn default() -> Self {
        Self::new()
    }
}

impl DrainMachine {
    /// A machine with no drain task.
    #[must_use]
    pub fn new() -> Self {
        DrainMachine {
            phase: DrainPhase::Inactive,
            desired: None,
            last_mode: None,
            incarnation: DrainIncarnation(0),
            respawns: 0,
            signal_pending: false,
            parked: false,
        }
    }

    /// Builds a machine from raw parts without checking them.
    ///
    /// For the model checker and for tests of [`DrainMachine::check`]; call
    /// `check` on the result before applying events to it.
    ///
    /// The desire defaults to what the phase implies: the last mode while a
    /// task runs or waits for its respawn, none otherwise. Override it with
    /// [`DrainMachine::with_desired`].
    #[must_use]
    pub fn from_parts(
        phase: DrainPhase,
        last_mode: Option<DrainMode>,
        incarnation: DrainIncarnation,
        respawns: u32,
        signal_pending: bool,
        parked: bool,
    ) -> Self {
        let desired = match phase {
            DrainPhase::Running { .. } | DrainPhase::ExitedRespawnable => last_mode,
            DrainPhase::Inactive | DrainPhase::Stopped { .. } => None,
        };
        DrainMachine { phase, desired, last_mode, incarnation, respawns, signal_pending, parked }
    }

    /// The same raw machine with `desired` as the last reconciled desire.
    /// Unchecked, like [`DrainMachine::from_parts`].
    #[must_use]
    pub fn with_desired(mut self, desired: Option<DrainMode>) -> Self {
        self.desired = desired;
        self
    }

    /// The current phase.
    #[must_use]
    pub fn phase(&self) -> DrainPhase {
        self.phase
    }

    /// The desire stated by the last Reconcile (`None` after a Shutdown).
    #[must_use]
    pub fn desired(&self) -> Option<DrainMode> {
        self.desired
    }

    /// The mode of the most recently spawned task, if any was spawned.
    #[must_use]
    pub fn last_mode(&self) -> Option<DrainMode> {
        self.last_mode
    }

    /// The newest task's incarnation (zero before the first spawn).
    #[must_use]
    pub fn incarnation(&self) -> DrainIncarnation {
        self.incarnation
    }

    /// Consecutive respawns after failures since the drain was last healthy.
    #[must_use]
    pub fn respawns(&self) -> u32 {
        self.respawns
    }

    /// Whether a notification is pending that no task has looked at yet.
    #[must_use]
    pub fn signal_pending(&self) -> bool {
        self.signal_pending
    }

    /// Whether the running task is asleep.
    #[must_use]
    pub fn parked(&self) -> bool {
        self.parked
    }

    /// Applies `event`. On refusal the machine is unchanged.
    ///
    /// `now` is accepted for uniformity with the other machines; no drain rule
    /// depends on time (the respawn delay and the idle timeout are the shell's
    /// timers, reported back as events).
    pub fn apply(&mut self, now: Millis, event: DrainEvent) -> Result<Vec<DrainEffect>, DrainRefusal> {
        let _ = now;
        debug_assert_eq!(self.check(), Ok(()), "drain invariant broken before {event:?}");
        #[cfg(debug_assertions)]
        let before = self.clone();

        let result = match event {
            DrainEvent::Reconcile { desired } => Ok(self.on_reconcile(desired)),
            DrainEvent::Exited { incarnation, reason } => self.on_exited(incarnation, reason),
            DrainEvent::Respawn => self.on_respawn(),
            DrainEvent::Shutdown => Ok(self.on_shutdown()),
            DrainEvent::Abort => Ok(self.on_abort()),
            DrainEvent::SourceChanged => Ok(self.on_source_changed()),
            DrainEvent::InboxNotified => Ok(self.on_inbox_notified()),
            DrainEvent::ParkRequested { incarnation } => self.on_park_requested(incarnation),
        };

        #[cfg(debug_assertions)]
        if result.is_err() {
            assert_eq!(*self, before, "a refused drain event changed the machine");
        }
        debug_assert_eq!(self.check(), Ok(()), "drain invariant broken after {event:?}");
        result
    }

    /// Checks the drain invariants; the model checker and the simulator call
    /// this after every step.
    pub fn check(&self) -> Result<(), DrainViolation> {
        if self.parked && !self.phase.is_running() {
            return Err(DrainViolation::ParkedWhileNotRunning { phase: self.phase });
        }
        if self.parked && self.signal_pending {
            return Err(DrainViolation::LostWakeup { incarnation: self.incarnation });
        }
        if self.phase == DrainPhase::ExitedRespawnable && self.last_mode != Some(DrainMode::PersistentHost) {
            return Err(DrainViolation::RespawnableWithoutPersistentHost { last_mode: self.last_mode });
        }
        if let DrainPhase::Running { mode } = self.phase {
            if self.incarnation == DrainIncarnation(0) {
                return Err(DrainViolation::RunningWithoutSpawn { mode });
            }
            if self.last_mode != Some(mode) {
                return Err(DrainViolation::RunningModeMismatch { running: mode, last_mode: self.last_mode });
            }
            if self.desired != Some(mode) {
                return Err(DrainViolation::RunningUndesired { running: mode, desired: self.desired });
            }
        }
        if self.respawns > DRAIN_RESPAWNS_MAX {
            return Err(DrainViolation::RespawnBudgetExceeded { respawns: self.respawns });
        }
        Ok(())
    }

    // spec: specs/drain.md#reconcile
    fn on_reconcile(&mut self, desired: Option<DrainMode>) -> Vec<DrainEffect> {
        let changed = desired != self.desired;
        self.desired = desired;
        match (self.phase, desired) {
            (DrainPhase::Running { mode }, Some(wanted)) if mode == wanted => Vec::new(),
            (DrainPhase::Running { .. }, Some(wanted)) => {
                // A mode change replaces the task: the old one must not keep
                // pulling messages under the wrong policy.
                let abort = self.transition_to_stopped_from_running(DrainExitReason::Aborted);
                vec![abort, self.transition_to_running_afresh(wanted)]
            }
            (DrainPhase::Running { .. }, None) => {
                vec![self.transition_to_stopped_from_running(DrainExitReason::Aborted)]
            }
            (DrainPhase::Inactive, Some(wanted)) => vec![self.transition_to_running_afresh(wanted)],
            (DrainPhase::Inactive, None) => Vec::new(),
            (DrainPhase::Stopped { reason }, Some(wanted)) if !reason.is_self_ended() => {
                // Aborted and SessionShutdown were the control plane's doing;
                // once the session wants a drain again, it gets one.
                vec![self.transition_to_running_afresh(wanted)]
            }
            // Nothing is wanted and nothing runs. Recording the empty desire
            // is what spends a latched stop: the next desire is a change.
            (DrainPhase::Stopped { .. }, None) => Vec::new(),
            (DrainPhase::Stopped { reason }, Some(wanted)) => {
                // The task ended itself. Respawning under the same desire would
                // undo a dismissal, an idle timeout or a failure at once.
                if !changed {
                    return Vec::new();
                }
                // A dismissal holds until a new attach; a detach to
                // PersistentHost is not one.
                if reason == DrainExitReason::Dismissed && wanted == DrainMode::PersistentHost {
                    return Vec::new();
                }
                vec![self.transition_to_running_afresh(wanted)]
            }
            (DrainPhase::ExitedRespawnable, Some(DrainMode::PersistentHost)) => {
                // The respawn stays with the shell's delay; spawning here would
                // bypass it and let a failing source spin.
                Vec::new()
            }
            (DrainPhase::ExitedRespawnable, Some(wanted)) => vec![self.transition_to_running_afresh(wanted)],
            (DrainPhase::ExitedRespawnable, None) => {
                // The failed drain is no longer wanted; a pending Respawn is
                // now refused, which cancels it.
                self.phase = DrainPhase::Stopped { reason: DrainExitReason::Failed };
                self.respawns = 0;
                Vec::new()
            }
        }
    }

    // spec: specs/drain.md#exit
    fn on_exited(
        &mut self,
        incarnation: DrainIncarnation,
        reason: DrainExitReason,
    ) -> Result<Vec<DrainEffect>, DrainRefusal> {
        let DrainPhase::Running { mode } = self.phase else {
            return Err(DrainRefusal::NotRunning { phase: self.phase });
        };
        self.check_incarnation(incarnation)?;
        let respawnable = reason == DrainExitReason::Failed
            && mode == DrainMode::PersistentHost
            && self.respawns < DRAIN_RESPAWNS_MAX;
        self.parked = false;
        if respawnable {
            self.phase = DrainPhase::ExitedRespawnable;
            assert_eq!(self.last_mode, Some(DrainMode::PersistentHost));
            Ok(vec![DrainEffect::ScheduleRespawn])
        } else {
            self.phase = DrainPhase::Stopped { reason };
            Ok(Vec::new())
        }
    }

    // spec: specs/drain.md#respawn
    fn on_respawn(&mut self) -> Result<Vec<DrainEffect>, DrainRefusal> {
        if self.phase != DrainPhase::ExitedRespawnable {
            return Err(DrainRefusal::NotRespawnable { phase: self.phase });
        }
        assert!(self.respawns < DRAIN_RESPAWNS_MAX, "a respawnable exit is only recorded within the budget");
        self.respawns += 1;
        Ok(vec![self.transition_to_running(DrainMode::PersistentHost)])
    }

    // spec: specs/drain.md#source-changed
    fn on_source_changed(&mut self) -> Vec<DrainEffect> {
        let Some(wanted) = self.desired else { return Vec::new() };
        if self.phase.is_running() {
            // The task pulls from the source it was spawned with: replace it.
            let abort = self.transition_to_stopped_from_running(DrainExitReason::Aborted);
            return vec![abort, self.transition_to_running_afresh(wanted)];
        }
        vec![self.transition_to_running_afresh(wanted)]
    }

    // spec: specs/drain.md#shutdown
    fn on_shutdown(&mut self) -> Vec<DrainEffect> {
        let effects = if self.phase.is_running() {
            vec![self.transition_to_stopped_from_running(DrainExitReason::SessionShutdown)]
        } else {
            // Shutdown must always succeed, so it also cancels a pending respawn
            // and overrides any earlier stop reason.
            self.phase = DrainPhase::Stopped { reason: DrainExitReason::SessionShutdown };
            Vec::new()
        };
        self.respawns = 0;
        self.desired = None;
        assert!(!self.parked);
        effects
    }

    // spec: specs/drain.md#abort
    fn on_abort(&mut self) -> Vec<DrainEffect> {
        if !self.phase.is_running() {
            return Vec::new();
        }
        vec![self.transition_to_stopped_from_running(DrainExitReason::Aborted)]
    }

    // spec: specs/drain.md#wakeup
    fn on_inbox_notified(&mut self) -> Vec<DrainEffect> {
        if self.parked {
            // The wake carries the signal: the woken task drains before it can
            // ask to park again, so nothing stays pending.
            assert!(self.phase.is_running() && !self.signal_pending);
            self.parked = false;
            return vec![DrainEffect::WakeDrain { incarnation: self.incarnation }];
        }
        // Either the task is busy (it will see the flag at its next park
        // request) or no task runs (the next one will see it): never dropped.
        self.signal_pending = true;
        Vec::new()
    }

    // spec: specs/drain.md#wakeup
    fn on_park_requested(&mut self, incarnation: DrainIncarnation) -> Result<Vec<DrainEffect>, DrainRefusal> {
        if !self.phase.is_running() {
            return Err(DrainRefusal::NotRunning { phase: self.phase });
        }
        self.check_incarnation(incarnation)?;
        if self.parked {
            return Err(DrainRefusal::AlreadyParked { incarnation });
        }
        // Reaching the park point means the task drained its inbox: it is healthy.
        self.respawns = 0;
        if self.signal_pending {
            self.signal_pending = false;
            return Ok(vec![DrainEffect::ContinueDraining]);
        }
        self.parked = true;
        Ok(vec![DrainEffect::Park])
    }

    fn check_incarnation(&self, presented: DrainIncarnation) -> Result<(), DrainRefusal> {
        if presented == self.incarnation {
            Ok(())
        } else {
            Err(DrainRefusal::StaleIncarnation { presented, current: self.incarnation })
        }
    }

    /// Spawns for a new desire (not a respawn), so the respawn budget is full.
    fn transition_to_running_afresh(&mut self, mode: DrainMode) -> DrainEffect {
        self.respawns = 0;
        self.transition_to_running(mode)
    }

    fn transition_to_running(&mut self, mode: DrainMode) -> DrainEffect {
        assert!(!self.phase.is_running(), "a second drain task would race the first");
        assert_eq!(self.desired, Some(mode), "a drain is only spawned for the desired mode");
        let next = self.incarnation.0.checked_add(1).expect("drain incarnations exhausted");
        self.incarnation = DrainIncarnation(next);
        self.phase = DrainPhase::Running { mode };
        self.last_mode = Some(mode);
        self.parked = false;
        DrainEffect::SpawnDrain { mode, incarnation: self.incarnation }
    }

    fn transition_to_stopped_from_running(&mut self, reason: DrainExitReason) -> DrainEffect {
        assert!(self.phase.is_running());
        assert!(!reason.is_self_ended(), "the control plane only aborts or shuts down");
        self.phase = DrainPhase::Stopped { reason };
        self.parked = false;
        DrainEffect::AbortDrain { incarnation: self.incarnation }
    }
}

impl fmt::Display for DrainMachine {
    /// A short summary for tables: the phase, the desire when no task serves
    /// it, then `parked` and `+signal` when set.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.phase)?;
        if let (false, Some(desired)) = (self.phase.is_running(), self.desired) {
            write!(f, ", wants {desired}")?;
        }
        if self.parked {
            f.write_str(", parked")?;
        }
        if self.signal_pending {
            f.write_str(", +signal")?;
        }
        Ok(())
    }
}
