//! The registration of one session with a runtime instance (SPEC 2.6).
//!
//! Registration answers: is the session known to the runtime, does it have a
//! live loop (an attached executor), which binding (epoch and generation) is
//! current, and how far has an unregister progressed. It is the only place
//! that decides whether a loop may be spawned, so two concurrent attaches can
//! never start two loops, and it fences every report and every handle by
//! generation, so a loop or caller from an earlier binding cannot act on the
//! current one.
//!
//! Unregister is two-phase. Begin closes admission and opens obligations
//! (stop the loop, stop the drain, resolve every waiter); the shell closes
//! them as it completes the work; commit is refused while any is open. Every
//! wait is bounded: past a grace deadline a tick force-closes what is left,
//! asking the shell to abort rather than join.
//!
//! spec: specs/registration.md

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::ids::{Binding, EpochId, Generation, Millis};

/// How long an unregister waits for the loop, the drain and the waiters before
/// it forces them, in milliseconds.
pub const UNREGISTER_GRACE_MS_DEFAULT: u64 = 2_000;

/// The longest grace a machine accepts, in milliseconds: an unregister must
/// finish in bounded time whatever the configuration says.
pub const UNREGISTER_GRACE_MS_MAX: u64 = 600_000;

/// How many obligations one unregister can open (loop, drain, waiters).
pub const OBLIGATIONS_MAX: usize = 3;

/// The registration phase of a session. Persisted with the binding.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum RegistrationPhase {
    /// The runtime does not know the session yet.
    Unprepared,
    /// Prepared without an executor: inputs queue, nothing runs.
    Queuing,
    /// One attach is in flight; its loop will carry `generation`.
    Attaching {
        /// The generation reserved for the loop being attached.
        generation: Generation,
    },
    /// A loop of `generation` is live and processes inputs.
    Active {
        /// The generation of the live loop.
        generation: Generation,
    },
    /// Unregister began: admission is closed, obligations are being closed.
    Unregistering,
    /// Unregister committed. A later prepare re-registers the session.
    Unregistered,
}

impl fmt::Display for RegistrationPhase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RegistrationPhase::Unprepared => f.write_str("Unprepared"),
            RegistrationPhase::Queuing => f.write_str("Queuing"),
            RegistrationPhase::Attaching { generation } => write!(f, "Attaching({generation})"),
            RegistrationPhase::Active { generation } => write!(f, "Active({generation})"),
            RegistrationPhase::Unregistering => f.write_str("Unregistering"),
            RegistrationPhase::Unregistered => f.write_str("Unregistered"),
        }
    }
}

/// Work an unregister must see finished before it may commit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Obligation {
    /// Stop the loop of `generation` (opened only if a loop exists or is being
    /// attached).
    StopLoop {
        /// The generation of the loop to stop.
        generation: Generation,
    },
    /// Stop the session's peer ingress drain.
    StopDrain,
    /// Resolve every registered completion waiter.
    ResolveWaiters,
}

impl fmt::Display for Obligation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Obligation::StopLoop { generation } => write!(f, "stop loop {generation}"),
            Obligation::StopDrain => f.write_str("stop drain"),
            Obligation::ResolveWaiters => f.write_str("resolve waiters"),
        }
    }
}

/// The open obligations of an unregister: at most one of each kind, so the set
/// is bounded by [`OBLIGATIONS_MAX`] by construction.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ObligationSet {
    stop_loop: Option<Generation>,
    stop_drain: bool,
    resolve_waiters: bool,
}

impl ObligationSet {
    /// No open obligation.
    #[must_use]
    pub fn none() -> Self {
        ObligationSet::default()
    }

    /// The set holding exactly `open`. For a repeated kind the last entry wins.
    #[must_use]
    pub fn from_open(open: &[Obligation]) -> Self {
        let mut set = ObligationSet::none();
        for obligation in open {
            match *obligation {
                Obligation::StopLoop { generation } => set.stop_loop = Some(generation),
                Obligation::StopDrain => set.stop_drain = true,
                Obligation::ResolveWaiters => set.resolve_waiters = true,
            }
        }
        set
    }

    /// The open obligations in a fixed order: loop, drain, waiters.
    #[must_use]
    pub fn open(&self) -> Vec<Obligation> {
        let mut open = Vec::with_capacity(OBLIGATIONS_MAX);
        if let Some(generation) = self.stop_loop {
            open.push(Obligation::StopLoop { generation });
        }
        if self.stop_drain {
            open.push(Obligation::StopDrain);
        }
        if self.resolve_waiters {
            open.push(Obligation::ResolveWaiters);
        }
        assert!(open.len() <= OBLIGATIONS_MAX);
        open
    }

    /// Whether nothing is open.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.stop_loop.is_none() && !self.stop_drain && !self.resolve_waiters
    }

    /// Whether `obligation` is open (a loop obligation must name the same
    /// generation).
    #[must_use]
    pub fn contains(&self, obligation: Obligation) -> bool {
        match obligation {
            Obligation::StopLoop { generation } => self.stop_loop == Some(generation),
            Obligation::StopDrain => self.stop_drain,
            Obligation::ResolveWaiters => self.resolve_waiters,
        }
    }

    /// The generation of the loop whose stop is still awaited, if any.
    #[must_use]
    pub fn loop_generation(&self) -> Option<Generation> {
        self.stop_loop
    }

    fn close(&mut self, obligation: Obligation) {
        assert!(self.contains(obligation), "closing an obligation that is not open");
        match obligation {
            Obligation::StopLoop { .. } => self.stop_loop = None,
            Obligation::StopDrain => self.stop_drain = false,
            Obligation::ResolveWaiters => self.resolve_waiters = false,
        }
        assert!(!self.contains(obligation));
    }
}

/// An event the registration machine understands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RegistrationEvent {
    /// Register the session (idempotent) and learn its binding. The first call
    /// fixes the epoch; later calls return the current binding unchanged. From
    /// Unregistered it re-registers under a new generation of the same epoch.
    Prepare {
        /// The epoch the shell offers for a first registration.
        epoch: EpochId,
    },
    /// Start attaching an executor: reserves a generation and asks the shell to
    /// spawn the loop. Single flight.
    BeginAttach,
    /// The loop spawned by the attach of `generation` is live.
    AttachCompleted {
        /// The generation named in the SpawnLoop effect.
        generation: Generation,
    },
    /// The attach of `generation` failed; the session goes back to queuing.
    AttachFailed {
        /// The generation named in the SpawnLoop effect.
        generation: Generation,
    },
    /// The loop of `generation` ended (its channels closed, it panicked, or it
    /// was stopped). During an unregister this closes the loop obligation.
    LoopExited {
        /// The generation of the loop that ended.
        generation: Generation,
    },
    /// Mint a new generation for the same epoch (recycle): handles minted
    /// under the old generation become stale.
    Rebind,
    /// Begin (or resume) an unregister.
    BeginUnregister,
    /// The shell finished the work behind `Obligation`.
    ObligationClosed(Obligation),
    /// Time passed; past the grace deadline every open obligation is forced.
    Tick,
    /// Finish the unregister; refused while any obligation is open.
    CommitUnregister,
}

/// Work the shell performs for the registration machine.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RegistrationEffect {
    /// Hand `binding` to the caller of prepare or rebind.
    BindingIssued {
        /// The session's current binding.
        binding: Binding,
    },
    /// Spawn the session's loop under `binding`.
    SpawnLoop {
        /// The binding the new loop carries (its generation fences its reports).
        binding: Binding,
    },
    /// The loop is live: wake it so queued inputs start draining at once.
    WakeLoop {
        /// The binding of the live loop.
        binding: Binding,
    },
    /// Close admission of new inputs for this session.
    CloseAdmission,
    /// Ask the loop of `generation` to stop, then report LoopExited or
    /// ObligationClosed(StopLoop).
    StopLoop {
        /// The loop to stop.
        generation: Generation,
    },
    /// Stop the peer ingress drain, then report ObligationClosed(StopDrain).
    StopDrain,
    /// Resolve every waiter, then report ObligationClosed(ResolveWaiters).
    ResolveAllWaiters,
    /// Deliver a Tick at `deadline` (the grace deadline).
    ArmGraceTimer {
        /// When the grace period ends.
        deadline: Millis,
    },
    /// The grace period ended: abort the loop of `generation` without joining it.
    AbortLoop {
        /// The loop to abort.
        generation: Generation,
    },
    /// The grace period ended: abort the drain without waiting for it.
    AbortDrain,
    /// The grace period ended: resolve every waiter still pending now.
    ForceResolveWaiters,
    /// Every obligation is closed: CommitUnregister will succeed.
    CommitReady,
    /// The unregister committed: release the session's resources and persist.
    Released {
        /// The binding that is now dead.
        binding: Binding,
    },
}

impl RegistrationEffect {
    /// The effect's variant name, for tables and traces.
    #[must_use]
    pub fn name(&self) -> &'static str {
        match self {
            RegistrationEffect::BindingIssued { .. } => "BindingIssued",
            RegistrationEffect::SpawnLoop { .. } => "SpawnLoop",
            RegistrationEffect::WakeLoop { .. } => "WakeLoop",
            RegistrationEffect::CloseAdmission => "CloseAdmission",
            RegistrationEffect::StopLoop { .. } => "StopLoop",
            RegistrationEffect::StopDrain => "StopDrain",
            RegistrationEffect::ResolveAllWaiters => "ResolveAllWaiters",
            RegistrationEffect::ArmGraceTimer { .. } => "ArmGraceTimer",
            RegistrationEffect::AbortLoop { .. } => "AbortLoop",
            RegistrationEffect::AbortDrain => "AbortDrain",
            RegistrationEffect::ForceResolveWaiters => "ForceResolveWaiters",
            RegistrationEffect::CommitReady => "CommitReady",
            RegistrationEffect::Released { .. } => "Released",
        }
    }
}

fn list(open: &[Obligation]) -> String {
    if open.is_empty() {
        return "none".to_owned();
    }
    open.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
}

/// Why the registration machine refused an event or a binding. A refused event
/// changed nothing.
#[derive(Clone, Debug, PartialEq, Eq, Hash, thiserror::Error)]
pub enum RegistrationRefusal {
    /// The session is not registered (never prepared, or unregistered).
    #[error("the session is not registered (phase {phase})")]
    NotPrepared {
        /// The phase at the time of the event.
        phase: RegistrationPhase,
    },
    /// Another attach is in flight: single flight allows one loop spawn.
    #[error("an attach is already in flight for {generation}")]
    AttachInFlight {
        /// The generation reserved by the attach in flight.
        generation: Generation,
    },
    /// A live loop is attached already.
    #[error("a loop of {generation} is already attached")]
    AlreadyAttached {
        /// The generation of the live loop.
        generation: Generation,
    },
    /// An attach report arrived while no attach is in flight.
    #[error("no attach is in flight (phase {phase})")]
    NoAttachInFlight {
        /// The phase at the time of the report.
        phase: RegistrationPhase,
    },
    /// A loop or attach report names a generation other than the current one.
    #[error("report from loop {presented}, but the current loop is {current}")]
    StaleLoop {
        /// The generation in the report.
        presented: Generation,
        /// The generation of the current (or in-flight) loop.
        current: Generation,
    },
    /// A loop exit was reported while no loop exists.
    #[error("no loop exists (phase {phase})")]
    NoLiveLoop {
        /// The phase at the time of the report.
        phase: RegistrationPhase,
    },
    /// Register, attach, prepare and rebind wait until the unregister commits.
    #[error("unregister in progress; open obligations: {}", list(.open))]
    UnregisterInProgress {
        /// The obligations still open.
        open: Vec<Obligation>,
    },
    /// Obligation and commit events need an unregister in progress.
    #[error("no unregister is in progress (phase {phase})")]
    NotUnregistering {
        /// The phase at the time of the event.
        phase: RegistrationPhase,
    },
    /// The obligation is not open (already closed, forced, or never opened).
    #[error("obligation {obligation} is not open")]
    ObligationNotOpen {
        /// The obligation named by the event.
        obligation: Obligation,
    },
    /// Commit waits until every obligation is closed.
    #[error("cannot commit unregister; open obligations: {}", list(.open))]
    ObligationsOpen {
        /// The obligations still open.
        open: Vec<Obligation>,
    },
    /// A handle from another epoch or generation was presented.
    #[error("stale binding {presented}; the current binding is {current}")]
    StaleBinding {
        /// The binding presented by the caller.
        presented: Binding,
        /// The session's current binding.
        current: Binding,
    },
}

/// A broken registration invariant, found by [`RegistrationMachine::check`].
#[derive(Clone, Debug, PartialEq, Eq, Hash, thiserror::Error)]
pub enum RegistrationViolation {
    /// A registered session has no binding (no epoch).
    #[error("phase {phase} has no binding")]
    UnboundWhilePrepared {
        /// The phase.
        phase: RegistrationPhase,
    },
    /// An unprepared session holds a binding.
    #[error("unprepared session holds binding {binding}")]
    BoundWhileUnprepared {
        /// The binding held.
        binding: Binding,
    },
    /// The binding's generation was never issued.
    #[error("binding {binding} is ahead of the last issued generation {issued}")]
    BindingAheadOfIssued {
        /// The binding.
        binding: Binding,
        /// The last issued generation.
        issued: Generation,
    },
    /// An attach in flight does not hold the newest generation.
    #[error("attach in flight for {attaching}, but the newest generation is {issued} (binding {binding})")]
    AttachNotNewest {
        /// The generation reserved by the attach.
        attaching: Generation,
        /// The last issued generation.
        issued: Generation,
        /// The current binding.
        binding: Binding,
    },
    /// The live loop carries a generation newer than the binding.
    #[error("live loop {loop_generation} is ahead of binding {binding}")]
    LoopAheadOfBinding {
        /// The loop's generation.
        loop_generation: Generation,
        /// The current binding.
        binding: Binding,
    },
    /// The unregister committed while obligations were still open.
    #[error("unregistered with open obligations: {}", list(.open))]
    CommittedWithOpenObligations {
        /// The obligations left open.
        open: Vec<Obligation>,
    },
    /// Obligations are open although no unregister is in progress.
    #[error("obligations open in phase {phase}: {}", list(.open))]
    ObligationsOutsideUnregistering {
        /// The phase.
        phase: RegistrationPhase,
        /// The open obligations.
        open: Vec<Obligation>,
    },
    /// An unregister in progress has no grace deadline, so its waits are unbounded.
    #[error("unregistering without a grace deadline")]
    UnregisteringWithoutDeadline,
    /// A grace deadline is set although no unregister is in progress.
    #[error("grace deadline set in phase {phase}")]
    DeadlineOutsideUnregistering {
        /// The phase.
        phase: RegistrationPhase,
    },
    /// The configured grace exceeds [`UNREGISTER_GRACE_MS_MAX`].
    #[error("grace of {grace_ms} ms exceeds the bound {UNREGISTER_GRACE_MS_MAX} ms")]
    GraceTooLong {
        /// The configured grace.
        grace_ms: u64,
    },
}

/// The registration machine of one session.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RegistrationMachine {
    phase: RegistrationPhase,
    /// The current binding; `None` only while Unprepared. Kept after an
    /// unregister so a re-registration stays in the same epoch.
    binding: Option<Binding>,
    /// The newest generation handed out (to a binding or to an attach). A
    /// failed attach burns its generation, so a zombie loop from it can never
    /// match a later loop.
    generation_issued: Generation,
    /// Open obligations of an unregister in progress (empty otherwise).
    open: ObligationSet,
    /// When the unregister in progress forces what is left.
    grace_deadline: Option<Millis>,
    grace_ms: u64,
}

impl Default for RegistrationMachine {
    fn default() -> Self {
        Self::new()
    }
}

impl RegistrationMachine {
    /// An unprepared session with the default grace.
    #[must_use]
    pub fn new() -> Self {
        Self::with_grace_ms(UNREGISTER_GRACE_MS_DEFAULT)
    }

    /// An unprepared session whose unregister waits `grace_ms` before forcing.
    ///
    /// # Panics
    /// If `grace_ms` exceeds [`UNREGISTER_GRACE_MS_MAX`]; configuration is
    /// validated against that bound before it reaches the core.
    #[must_use]
    pub fn with_grace_ms(grace_ms: u64) -> Self {
        assert!(grace_ms <= UNREGISTER_GRACE_MS_MAX, "grace {grace_ms} ms exceeds the bound");
        RegistrationMachine {
            phase: RegistrationPhase::Unprepared,
            binding: None,
            generation_issued: Generation(0),
            open: ObligationSet::none(),
            grace_deadline: None,
            grace_ms,
        }
    }

    /// Builds a machine from raw parts without checking them.
    ///
    /// For the model checker and for tests of [`RegistrationMachine::check`];
    /// call `check` on the result before applying events to it. Production
    /// code restores a machine with [`RegistrationMachine::recover_from`].
    #[must_use]
    pub fn from_parts(
        phase: RegistrationPhase,
        binding: Option<Binding>,
        generation_issued: Generation,
        open: ObligationSet,
        grace_deadline: Option<Millis>,
        grace_ms: u64,
    ) -> Self {
        RegistrationMachine { phase, binding, generation_issued, open, grace_deadline, grace_ms }
    }

    /// Rebuilds the machine from what a store persisted (its phase and binding)
    /// after a process restart.
    ///
    /// No loop, drain or waiter survives a restart, so Attaching and Active come
    /// back as Queuing (the next attach spawns a fresh loop), and Unregistering
    /// comes back as Unregistering with every obligation already closed: a
    /// retried BeginUnregister succeeds and reports CommitReady, so a crash
    /// mid-unregister never leaves the session stuck. The result is checked; a
    /// persisted pair that breaks an invariant is returned as the violation.
    // spec: specs/registration.md#recovery
    pub fn recover_from(
        persisted_phase: RegistrationPhase,
        persisted_binding: Option<Binding>,
        now: Millis,
        grace_ms: u64,
    ) -> Result<Self, RegistrationViolation> {
        if grace_ms > UNREGISTER_GRACE_MS_MAX {
            return Err(RegistrationViolation::GraceTooLong { grace_ms });
        }
        let bound_generation = persisted_binding.map_or(Generation(0), |b| b.generation);
        let loaded_generation = match persisted_phase {
            RegistrationPhase::Attaching { generation } | RegistrationPhase::Active { generation } => generation,
            _ => bound_generation,
        };
        // Check the pair exactly as it was persisted, so a corrupt row is named
        // before recovery reshapes it.
        let loaded = RegistrationMachine {
            phase: persisted_phase,
            binding: persisted_binding,
            generation_issued: loaded_generation.max(bound_generation),
            open: ObligationSet::none(),
            grace_deadline: (persisted_phase == RegistrationPhase::Unregistering).then_some(now),
            grace_ms,
        };
        loaded.check()?;
        let (phase, issued, grace_deadline) = match persisted_phase {
            RegistrationPhase::Attaching { generation } | RegistrationPhase::Active { generation } => {
                // Keep the dead loop's generation burnt so nothing can reuse it.
                (RegistrationPhase::Queuing, generation.max(bound_generation), None)
            }
            // Nothing is left to wait for, so the deadline is already reached.
            RegistrationPhase::Unregistering => (RegistrationPhase::Unregistering, bound_generation, Some(now)),
            other => (other, bound_generation, None),
        };
        let machine = RegistrationMachine {
            phase,
            binding: persisted_binding,
            generation_issued: issued,
            open: ObligationSet::none(),
            grace_deadline,
            grace_ms,
        };
        machine.check()?;
        assert!(!matches!(machine.phase, RegistrationPhase::Attaching { .. } | RegistrationPhase::Active { .. }));
        Ok(machine)
    }

    /// The current phase (persisted).
    #[must_use]
    pub fn phase(&self) -> RegistrationPhase {
        self.phase
    }

    /// The current binding (persisted); `None` before the first prepare.
    #[must_use]
    pub fn binding(&self) -> Option<Binding> {
        self.binding
    }

    /// The newest generation handed out.
    #[must_use]
    pub fn generation_issued(&self) -> Generation {
        self.generation_issued
    }

    /// The obligations an unregister in progress still waits for.
    #[must_use]
    pub fn open_obligations(&self) -> Vec<Obligation> {
        self.open.open()
    }

    /// When the unregister in progress forces what is left.
    #[must_use]
    pub fn grace_deadline(&self) -> Option<Millis> {
        self.grace_deadline
    }

    /// The configured grace, in milliseconds.
    #[must_use]
    pub fn grace_ms(&self) -> u64 {
        self.grace_ms
    }

    /// Fencing: accepts `presented` only if it is the session's current
    /// binding (same epoch and same generation).
    // spec: specs/registration.md#fencing
    pub fn check_binding(&self, presented: Binding) -> Result<(), RegistrationRefusal> {
        let current = match (self.phase, self.binding) {
            (RegistrationPhase::Unprepared | RegistrationPhase::Unregistered, _) | (_, None) => {
                return Err(RegistrationRefusal::NotPrepared { phase: self.phase });
            }
            (_, Some(current)) => current,
        };
        if presented != current {
            return Err(RegistrationRefusal::StaleBinding { presented, current });
        }
        Ok(())
    }

    /// Applies `event` at `now`. On refusal the machine is unchanged.
    pub fn apply(
        &mut self,
        now: Millis,
        event: RegistrationEvent,
    ) -> Result<Vec<RegistrationEffect>, RegistrationRefusal> {
        debug_assert_eq!(self.check(), Ok(()), "registration invariant broken before {event:?}");
        #[cfg(debug_assertions)]
        let before = self.clone();

        let result = match event {
            RegistrationEvent::Prepare { epoch } => self.on_prepare(epoch),
            RegistrationEvent::BeginAttach => self.on_begin_attach(),
            RegistrationEvent::AttachCompleted { generation } => self.on_attach_completed(generation),
            RegistrationEvent::AttachFailed { generation } => self.on_attach_failed(generation),
            RegistrationEvent::LoopExited { generation } => self.on_loop_exited(generation),
            RegistrationEvent::Rebind => self.on_rebind(),
            RegistrationEvent::BeginUnregister => self.on_begin_unregister(now),
            RegistrationEvent::ObligationClosed(obligation) => self.on_obligation_closed(obligation),
            RegistrationEvent::Tick => Ok(self.on_tick(now)),
            RegistrationEvent::CommitUnregister => self.on_commit_unregister(),
        };

        #[cfg(debug_assertions)]
        if result.is_err() {
            assert_eq!(*self, before, "a refused registration event changed the machine");
        }
        debug_assert_eq!(self.check(), Ok(()), "registration invariant broken after {event:?}");
        result
    }

    /// Checks the registration invariants; the model checker and the simulator
    /// call this after every step, and recovery calls it on what it loaded.
    pub fn check(&self) -> Result<(), RegistrationViolation> {
        if self.grace_ms > UNREGISTER_GRACE_MS_MAX {
            return Err(RegistrationViolation::GraceTooLong { grace_ms: self.grace_ms });
        }
        let binding = match (self.phase, self.binding) {
            (RegistrationPhase::Unprepared, Some(binding)) => {
                return Err(RegistrationViolation::BoundWhileUnprepared { binding });
            }
            (RegistrationPhase::Unprepared, None) => None,
            (phase, None) => return Err(RegistrationViolation::UnboundWhilePrepared { phase }),
            (_, Some(binding)) => Some(binding),
        };
        if let Some(binding) = binding {
            if binding.generation > self.generation_issued {
                return Err(RegistrationViolation::BindingAheadOfIssued { binding, issued: self.generation_issued });
            }
            match self.phase {
                RegistrationPhase::Attaching { generation }
                    if generation != self.generation_issued || generation <= binding.generation =>
                {
                    return Err(RegistrationViolation::AttachNotNewest {
                        attaching: generation,
                        issued: self.generation_issued,
                        binding,
                    });
                }
                RegistrationPhase::Active { generation } if generation > binding.generation => {
                    return Err(RegistrationViolation::LoopAheadOfBinding { loop_generation: generation, binding });
                }
                _ => {}
            }
        }
        let unregistering = self.phase == RegistrationPhase::Unregistering;
        if !unregistering && !self.open.is_empty() {
            let open = self.open.open();
            if self.phase == RegistrationPhase::Unregistered {
                return Err(RegistrationViolation::CommittedWithOpenObligations { open });
            }
            return Err(RegistrationViolation::ObligationsOutsideUnregistering { phase: self.phase, open });
        }
        match (unregistering, self.grace_deadline) {
            (true, None) => Err(RegistrationViolation::UnregisteringWithoutDeadline),
            (false, Some(_)) => Err(RegistrationViolation::DeadlineOutsideUnregistering { phase: self.phase }),
            _ => Ok(()),
        }
    }

    fn refuse_if_unregistering(&self) -> Result<(), RegistrationRefusal> {
        if self.phase == RegistrationPhase::Unregistering {
            return Err(RegistrationRefusal::UnregisterInProgress { open: self.open.open() });
        }
        Ok(())
    }

    fn current_binding(&self) -> Binding {
        self.binding.expect("a registered session always has a binding")
    }

    fn issue_generation(&mut self) -> Generation {
        let next = self.generation_issued.0.checked_add(1).expect("generations exhausted");
        self.generation_issued = Generation(next);
        self.generation_issued
    }

    // spec: specs/registration.md#prepare
    fn on_prepare(&mut self, epoch: EpochId) -> Result<Vec<RegistrationEffect>, RegistrationRefusal> {
        self.refuse_if_unregistering()?;
        match self.phase {
            RegistrationPhase::Unprepared => {
                assert!(self.binding.is_none());
                let binding = Binding { epoch, generation: self.generation_issued };
                self.binding = Some(binding);
                self.phase = RegistrationPhase::Queuing;
                Ok(vec![RegistrationEffect::BindingIssued { binding }])
            }
            RegistrationPhase::Unregistered => {
                // Re-registration keeps the epoch (stable across prepares) and
                // moves to a new generation, so handles from before are stale.
                let epoch = self.current_binding().epoch;
                let generation = self.issue_generation();
                let binding = Binding { epoch, generation };
                self.binding = Some(binding);
                self.phase = RegistrationPhase::Queuing;
                Ok(vec![RegistrationEffect::BindingIssued { binding }])
            }
            // Idempotent: the offered epoch is ignored once one is fixed.
            _ => Ok(vec![RegistrationEffect::BindingIssued { binding: self.current_binding() }]),
        }
    }

    // spec: specs/registration.md#attach
    fn on_begin_attach(&mut self) -> Result<Vec<RegistrationEffect>, RegistrationRefusal> {
        self.refuse_if_unregistering()?;
        match self.phase {
            RegistrationPhase::Queuing => {
                let epoch = self.current_binding().epoch;
                let generation = self.issue_generation();
                self.phase = RegistrationPhase::Attaching { generation };
                assert!(generation > self.current_binding().generation);
                Ok(vec![RegistrationEffect::SpawnLoop { binding: Binding { epoch, generation } }])
            }
            RegistrationPhase::Attaching { generation } => Err(RegistrationRefusal::AttachInFlight { generation }),
            RegistrationPhase::Active { generation } => Err(RegistrationRefusal::AlreadyAttached { generation }),
            phase => Err(RegistrationRefusal::NotPrepared { phase }),
        }
    }

    // spec: specs/registration.md#attach
    fn on_attach_completed(&mut self, presented: Generation) -> Result<Vec<RegistrationEffect>, RegistrationRefusal> {
        let generation = self.attaching_generation(presented)?;
        let binding = Binding { epoch: self.current_binding().epoch, generation };
        self.binding = Some(binding);
        self.phase = RegistrationPhase::Active { generation };
        assert_eq!(self.generation_issued, generation);
        Ok(vec![RegistrationEffect::WakeLoop { binding }])
    }

    // spec: specs/registration.md#attach
    fn on_attach_failed(&mut self, presented: Generation) -> Result<Vec<RegistrationEffect>, RegistrationRefusal> {
        let generation = self.attaching_generation(presented)?;
        // The reserved generation stays burnt (generation_issued keeps it).
        self.phase = RegistrationPhase::Queuing;
        assert!(self.generation_issued >= generation);
        Ok(Vec::new())
    }

    /// The generation of the attach in flight, if `presented` names it.
    fn attaching_generation(&self, presented: Generation) -> Result<Generation, RegistrationRefusal> {
        self.refuse_if_unregistering()?;
        match self.phase {
            RegistrationPhase::Attaching { generation } if generation == presented => Ok(generation),
            RegistrationPhase::Attaching { generation } => {
                Err(RegistrationRefusal::StaleLoop { presented, current: generation })
            }
            phase => Err(RegistrationRefusal::NoAttachInFlight { phase }),
        }
    }

    // spec: specs/registration.md#dead-attachment
    fn on_loop_exited(&mut self, presented: Generation) -> Result<Vec<RegistrationEffect>, RegistrationRefusal> {
        match self.phase {
            RegistrationPhase::Attaching { generation } | RegistrationPhase::Active { generation } => {
                if presented != generation {
                    return Err(RegistrationRefusal::StaleLoop { presented, current: generation });
                }
                // A dead attachment goes back to queuing; the next BeginAttach
                // repairs it with a fresh loop.
                self.phase = RegistrationPhase::Queuing;
                Ok(Vec::new())
            }
            RegistrationPhase::Unregistering => match self.open.loop_generation() {
                Some(generation) if generation == presented => {
                    Ok(self.close_obligation(Obligation::StopLoop { generation }))
                }
                Some(generation) => Err(RegistrationRefusal::StaleLoop { presented, current: generation }),
                None => Err(RegistrationRefusal::NoLiveLoop { phase: self.phase }),
            },
            phase => Err(RegistrationRefusal::NoLiveLoop { phase }),
        }
    }

    // spec: specs/registration.md#rebind
    fn on_rebind(&mut self) -> Result<Vec<RegistrationEffect>, RegistrationRefusal> {
        self.refuse_if_unregistering()?;
        match self.phase {
            RegistrationPhase::Queuing | RegistrationPhase::Active { .. } => {
                let epoch = self.current_binding().epoch;
                let generation = self.issue_generation();
                let binding = Binding { epoch, generation };
                self.binding = Some(binding);
                Ok(vec![RegistrationEffect::BindingIssued { binding }])
            }
            // The attach in flight reserved the newest generation; a rebind now
            // would leave it older than the binding it is about to publish.
            RegistrationPhase::Attaching { generation } => Err(RegistrationRefusal::AttachInFlight { generation }),
            phase => Err(RegistrationRefusal::NotPrepared { phase }),
        }
    }

    // spec: specs/registration.md#unregister
    fn on_begin_unregister(&mut self, now: Millis) -> Result<Vec<RegistrationEffect>, RegistrationRefusal> {
        let loop_generation = match self.phase {
            RegistrationPhase::Unprepared => {
                return Err(RegistrationRefusal::NotPrepared { phase: self.phase });
            }
            // Already done: unregistering twice is harmless.
            RegistrationPhase::Unregistered => return Ok(Vec::new()),
            RegistrationPhase::Unregistering => return Ok(self.resume_unregister()),
            RegistrationPhase::Queuing => None,
            // An attach in flight may already have spawned its loop, so the
            // loop obligation covers it too.
            RegistrationPhase::Attaching { generation } | RegistrationPhase::Active { generation } => Some(generation),
        };
        let deadline = now.saturating_add(self.grace_ms);
        self.open = ObligationSet { stop_loop: loop_generation, stop_drain: true, resolve_waiters: true };
        self.grace_deadline = Some(deadline);
        self.phase = RegistrationPhase::Unregistering;
        let mut effects = vec![RegistrationEffect::CloseAdmission];
        if let Some(generation) = loop_generation {
            effects.push(RegistrationEffect::StopLoop { generation });
        }
        effects.push(RegistrationEffect::StopDrain);
        effects.push(RegistrationEffect::ResolveAllWaiters);
        effects.push(RegistrationEffect::ArmGraceTimer { deadline });
        assert!(!self.open.is_empty());
        Ok(effects)
    }

    /// BeginUnregister while already unregistering: re-issue the work still
    /// open (the shell may have lost it in a crash) under the original
    /// deadline, so retrying never extends the grace.
    fn resume_unregister(&self) -> Vec<RegistrationEffect> {
        let mut effects = vec![RegistrationEffect::CloseAdmission];
        if self.open.is_empty() {
            effects.push(RegistrationEffect::CommitReady);
            return effects;
        }
        for obligation in self.open.open() {
            effects.push(match obligation {
                Obligation::StopLoop { generation } => RegistrationEffect::StopLoop { generation },
                Obligation::StopDrain => RegistrationEffect::StopDrain,
                Obligation::ResolveWaiters => RegistrationEffect::ResolveAllWaiters,
            });
        }
        let deadline = self.grace_deadline.expect("an unregister in progress has a deadline");
        effects.push(RegistrationEffect::ArmGraceTimer { deadline });
        effects
    }

    // spec: specs/registration.md#obligations
    fn on_obligation_closed(&mut self, obligation: Obligation) -> Result<Vec<RegistrationEffect>, RegistrationRefusal> {
        if self.phase != RegistrationPhase::Unregistering {
            return Err(RegistrationRefusal::NotUnregistering { phase: self.phase });
        }
        if !self.open.contains(obligation) {
            return Err(RegistrationRefusal::ObligationNotOpen { obligation });
        }
        Ok(self.close_obligation(obligation))
    }

    fn close_obligation(&mut self, obligation: Obligation) -> Vec<RegistrationEffect> {
        assert_eq!(self.phase, RegistrationPhase::Unregistering);
        self.open.close(obligation);
        if self.open.is_empty() { vec![RegistrationEffect::CommitReady] } else { Vec::new() }
    }

    // spec: specs/registration.md#grace
    fn on_tick(&mut self, now: Millis) -> Vec<RegistrationEffect> {
        let Some(deadline) = self.grace_deadline else {
            // Ticks reach every session; outside an unregister they mean nothing.
            return Vec::new();
        };
        if now < deadline || self.open.is_empty() {
            return Vec::new();
        }
        let mut effects = Vec::with_capacity(OBLIGATIONS_MAX + 1);
        for obligation in self.open.open() {
            effects.push(match obligation {
                Obligation::StopLoop { generation } => RegistrationEffect::AbortLoop { generation },
                Obligation::StopDrain => RegistrationEffect::AbortDrain,
                Obligation::ResolveWaiters => RegistrationEffect::ForceResolveWaiters,
            });
        }
        self.open = ObligationSet::none();
        effects.push(RegistrationEffect::CommitReady);
        assert!(self.open.is_empty());
        effects
    }

    // spec: specs/registration.md#commit
    fn on_commit_unregister(&mut self) -> Result<Vec<RegistrationEffect>, RegistrationRefusal> {
        if self.phase != RegistrationPhase::Unregistering {
            return Err(RegistrationRefusal::NotUnregistering { phase: self.phase });
        }
        if !self.open.is_empty() {
            return Err(RegistrationRefusal::ObligationsOpen { open: self.open.open() });
        }
        self.phase = RegistrationPhase::Unregistered;
        self.grace_deadline = None;
        let binding = self.current_binding();
        assert!(self.open.is_empty());
        Ok(vec![RegistrationEffect::Released { binding }])
    }
}

impl fmt::Display for RegistrationMachine {
    /// A short summary for tables: phase, binding, then open obligations.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.phase)?;
        if let Some(binding) = self.binding {
            write!(f, " @{binding}")?;
        }
        if !self.open.is_empty() {
            write!(f, " open[{}]", list(&self.open.open()))?;
        }
        Ok(())
    }
}
