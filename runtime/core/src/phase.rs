//! The runtime phase of one session (SPEC 2.1).
//!
//! The phase answers three questions for the rest of the session machine: may a
//! new input be admitted, may queued work be processed, and where does a run
//! return when it ends. It also remembers two requests that cannot take effect
//! while a run is in flight: a retire (sticky: the run returns to Retired) and a
//! stop (deferred: the session stops when the run ends).
//!
//! spec: specs/phase.md

use serde::{Deserialize, Serialize};

/// The phase of a session's runtime.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum RuntimePhase {
    /// Created, not yet initialised.
    Initializing,
    /// Ready, no executor attached.
    Idle,
    /// An executor is attached and no run is in flight.
    Attached,
    /// A run is in flight.
    Running,
    /// Admission is closed; work queued before retirement may still drain.
    Retired,
    /// The executor was stopped; revivable by attaching a new executor.
    Stopped,
    /// Terminal: nothing is accepted or run ever again.
    Destroyed,
}

impl RuntimePhase {
    /// Every phase, in declaration order (for tables and exhaustive tests).
    pub const ALL: [RuntimePhase; 7] = [
        RuntimePhase::Initializing,
        RuntimePhase::Idle,
        RuntimePhase::Attached,
        RuntimePhase::Running,
        RuntimePhase::Retired,
        RuntimePhase::Stopped,
        RuntimePhase::Destroyed,
    ];

    /// The phase a store persists for this one (SPEC 5): Attached and Running
    /// are stored as Idle because no executor survives a restart.
    #[must_use]
    pub fn persisted(self, run_returns_to: Option<RuntimePhase>) -> RuntimePhase {
        match self {
            RuntimePhase::Attached => RuntimePhase::Idle,
            RuntimePhase::Running => match run_returns_to {
                Some(RuntimePhase::Retired) => RuntimePhase::Retired,
                _ => RuntimePhase::Idle,
            },
            other => other,
        }
    }
}

impl std::fmt::Display for RuntimePhase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self, f)
    }
}

/// An event the phase machine understands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PhaseEvent {
    /// Initializing -> Idle.
    Initialize,
    /// An executor attaches.
    Attach,
    /// The executor detaches.
    Detach,
    /// A run starts.
    StartRun,
    /// The current run ends (successfully or not).
    EndRun,
    /// Close admission; drain what is queued.
    Retire,
    /// Stop the executor (deferred while a run is in flight).
    Stop,
    /// Abandon all non-terminal work and return to Idle/Attached.
    Reset,
    /// Rebuild the runtime instance, keeping non-terminal work.
    Recycle,
    /// Replay durable state.
    Recover,
    /// Terminal for the session.
    Destroy,
}

impl PhaseEvent {
    /// Every event, in declaration order.
    pub const ALL: [PhaseEvent; 11] = [
        PhaseEvent::Initialize,
        PhaseEvent::Attach,
        PhaseEvent::Detach,
        PhaseEvent::StartRun,
        PhaseEvent::EndRun,
        PhaseEvent::Retire,
        PhaseEvent::Stop,
        PhaseEvent::Reset,
        PhaseEvent::Recycle,
        PhaseEvent::Recover,
        PhaseEvent::Destroy,
    ];
}

/// What a phase transition asks of the session machine.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
#[must_use]
pub struct PhaseOutcome {
    /// The session must now stop: abandon pending inputs (Stopped), resolve
    /// their waiters, stop the executor. Set by an immediate stop and by the
    /// end of a run that had a deferred stop.
    pub stop_now: bool,
    /// The stop was recorded and will take effect when the run ends.
    pub stop_deferred: bool,
    /// Retire closed admission while a run was in flight (sticky).
    pub retire_deferred: bool,
    /// The event changed nothing because it was already in effect.
    pub no_op: bool,
}

/// Why the phase machine refused an event.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, thiserror::Error)]
pub enum PhaseRefusal {
    /// The event is not defined from this phase.
    #[error("{event:?} is not allowed in phase {phase}")]
    NotAllowed {
        /// Phase at the time of the event.
        phase: RuntimePhase,
        /// The refused event.
        event: PhaseEvent,
    },
    /// The session was destroyed; nothing is accepted any more.
    #[error("the session is destroyed")]
    Destroyed,
    /// Reset, recycle, recover and detach need the run to end first.
    #[error("{event:?} is refused while a run is in flight")]
    RunInFlight {
        /// The refused event.
        event: PhaseEvent,
    },
    /// A run needs an attached executor.
    #[error("no executor is attached")]
    NoExecutor,
    /// Attaching twice without a detach in between.
    #[error("an executor is already attached")]
    AlreadyAttached,
}

/// The phase machine: the phase plus what a run in flight must remember.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PhaseMachine {
    phase: RuntimePhase,
    /// While Running: the phase the run returns to (Idle for an inline run
    /// without an executor, Attached, or Retired).
    run_returns_to: Option<RuntimePhase>,
    /// While Running: a stop arrived and takes effect when the run ends.
    stop_deferred: bool,
    /// Whether an executor is attached (Attached, Running, or Retired with one).
    executor_attached: bool,
}

impl Default for PhaseMachine {
    fn default() -> Self {
        Self::new()
    }
}

impl PhaseMachine {
    /// A machine in Initializing with no executor.
    #[must_use]
    pub fn new() -> Self {
        PhaseMachine {
            phase: RuntimePhase::Initializing,
            run_returns_to: None,
            stop_deferred: false,
            executor_attached: false,
        }
    }

    /// Rebuilds a machine from a persisted phase (SPEC 5): no executor, no run.
    #[must_use]
    pub fn from_persisted(phase: RuntimePhase) -> Self {
        let phase = phase.persisted(None);
        PhaseMachine { phase, run_returns_to: None, stop_deferred: false, executor_attached: false }
    }

    /// The current phase.
    #[must_use]
    pub fn phase(&self) -> RuntimePhase {
        self.phase
    }

    /// While Running, the phase the run returns to.
    #[must_use]
    pub fn run_returns_to(&self) -> Option<RuntimePhase> {
        self.run_returns_to
    }

    /// Whether a stop waits for the current run to end.
    #[must_use]
    pub fn stop_deferred(&self) -> bool {
        self.stop_deferred
    }

    /// Whether an executor is attached.
    #[must_use]
    pub fn executor_attached(&self) -> bool {
        self.executor_attached
    }

    /// Whether new inputs are admitted (SPEC 2.1): Idle, Attached, Running, but
    /// not during a run that will return to Retired or stop.
    #[must_use]
    pub fn admits_inputs(&self) -> bool {
        match self.phase {
            RuntimePhase::Idle | RuntimePhase::Attached => true,
            RuntimePhase::Running => !self.stop_deferred && self.run_returns_to != Some(RuntimePhase::Retired),
            _ => false,
        }
    }

    /// Whether queued work may be processed in this phase (SPEC 2.1): Idle,
    /// Attached, Retired. A run additionally needs an executor.
    #[must_use]
    pub fn processes_queue(&self) -> bool {
        matches!(self.phase, RuntimePhase::Idle | RuntimePhase::Attached | RuntimePhase::Retired)
    }

    /// Whether a run may start now: the phase processes the queue and an
    /// executor is attached.
    #[must_use]
    pub fn can_start_run(&self) -> bool {
        self.processes_queue() && self.executor_attached
    }

    /// The phase a store keeps for this machine.
    #[must_use]
    pub fn persisted_phase(&self) -> RuntimePhase {
        self.phase.persisted(self.run_returns_to)
    }

    /// Applies one event. A refusal leaves the machine unchanged.
    pub fn apply(&mut self, event: PhaseEvent) -> Result<PhaseOutcome, PhaseRefusal> {
        if self.phase == RuntimePhase::Destroyed {
            if event == PhaseEvent::Destroy {
                return Ok(PhaseOutcome { no_op: true, ..PhaseOutcome::default() });
            }
            return Err(PhaseRefusal::Destroyed);
        }
        let before = self.clone();
        let outcome = self.transition(event)?;
        self.assert_consistent();
        // A no-op changes nothing (the converse need not hold: a reset of an
        // Attached session keeps the phase but is real work for the session).
        debug_assert!(!outcome.no_op || before == *self);
        Ok(outcome)
    }

    fn refuse(&self, event: PhaseEvent) -> PhaseRefusal {
        PhaseRefusal::NotAllowed { phase: self.phase, event }
    }

    /// The phase a session rests in when no run is in flight.
    fn resting_phase(&self) -> RuntimePhase {
        if self.executor_attached { RuntimePhase::Attached } else { RuntimePhase::Idle }
    }

    fn transition(&mut self, event: PhaseEvent) -> Result<PhaseOutcome, PhaseRefusal> {
        use RuntimePhase as P;
        let ok = PhaseOutcome::default();
        match event {
            // spec: specs/phase.md#initialize
            PhaseEvent::Initialize => match self.phase {
                P::Initializing => {
                    self.phase = P::Idle;
                    Ok(ok)
                }
                _ => Err(self.refuse(event)),
            },
            // spec: specs/phase.md#attach (a Stopped session is revived by a new executor)
            PhaseEvent::Attach => {
                if self.executor_attached {
                    return Err(PhaseRefusal::AlreadyAttached);
                }
                match self.phase {
                    P::Idle | P::Stopped => {
                        self.phase = P::Attached;
                        self.executor_attached = true;
                        Ok(ok)
                    }
                    P::Retired => {
                        // A retired session may still drain what was queued before
                        // retirement, so an executor may attach to it.
                        self.executor_attached = true;
                        Ok(ok)
                    }
                    P::Running if !self.stop_deferred => {
                        // spec: specs/phase.md#attach-during-an-inline-run: only an inline
                        // run runs without an executor. The executor attaches now and the
                        // run returns to Attached instead of Idle (Retired stays Retired).
                        self.executor_attached = true;
                        if self.run_returns_to == Some(P::Idle) {
                            self.run_returns_to = Some(P::Attached);
                        }
                        Ok(ok)
                    }
                    _ => Err(self.refuse(event)),
                }
            }
            // spec: specs/phase.md#detach
            PhaseEvent::Detach => match self.phase {
                P::Running => Err(PhaseRefusal::RunInFlight { event }),
                _ if !self.executor_attached => Err(PhaseRefusal::NoExecutor),
                P::Attached => {
                    self.phase = P::Idle;
                    self.executor_attached = false;
                    Ok(ok)
                }
                P::Retired => {
                    self.executor_attached = false;
                    Ok(ok)
                }
                _ => Err(self.refuse(event)),
            },
            // spec: specs/phase.md#start-run
            PhaseEvent::StartRun => {
                // The executor requirement is the loop's (see `can_start_run`):
                // an inline run (accept_and_run) brings its own body, so the
                // phase only asks that the queue may be processed.
                if !self.processes_queue() {
                    return Err(self.refuse(event));
                }
                self.run_returns_to = Some(self.phase);
                self.phase = P::Running;
                Ok(ok)
            }
            // spec: specs/phase.md#end-run
            PhaseEvent::EndRun => match self.phase {
                P::Running => {
                    let back = self.run_returns_to.take().expect("a run records its return phase");
                    if self.stop_deferred {
                        self.stop_deferred = false;
                        self.phase = P::Stopped;
                        self.executor_attached = false;
                        return Ok(PhaseOutcome { stop_now: true, ..ok });
                    }
                    self.phase = back;
                    Ok(ok)
                }
                _ => Err(self.refuse(event)),
            },
            // spec: specs/phase.md#retire
            PhaseEvent::Retire => match self.phase {
                P::Idle | P::Attached => {
                    self.phase = P::Retired;
                    Ok(ok)
                }
                P::Running => {
                    if self.run_returns_to == Some(P::Retired) {
                        return Ok(PhaseOutcome { no_op: true, ..ok });
                    }
                    // Sticky: the run returns to Retired and admission stays closed.
                    self.run_returns_to = Some(P::Retired);
                    Ok(PhaseOutcome { retire_deferred: true, ..ok })
                }
                P::Retired => Ok(PhaseOutcome { no_op: true, ..ok }),
                _ => Err(self.refuse(event)),
            },
            // spec: specs/phase.md#stop
            PhaseEvent::Stop => match self.phase {
                P::Running => {
                    if self.stop_deferred {
                        return Ok(PhaseOutcome { no_op: true, stop_deferred: true, ..ok });
                    }
                    self.stop_deferred = true;
                    Ok(PhaseOutcome { stop_deferred: true, ..ok })
                }
                P::Stopped => Ok(PhaseOutcome { no_op: true, ..ok }),
                P::Initializing | P::Idle | P::Attached | P::Retired => {
                    self.phase = P::Stopped;
                    self.executor_attached = false;
                    Ok(PhaseOutcome { stop_now: true, ..ok })
                }
                P::Destroyed => Err(PhaseRefusal::Destroyed),
            },
            // spec: specs/phase.md#reset-recycle-recover
            PhaseEvent::Reset | PhaseEvent::Recycle | PhaseEvent::Recover => match self.phase {
                P::Running => Err(PhaseRefusal::RunInFlight { event }),
                P::Initializing => Err(self.refuse(event)),
                _ => {
                    self.phase = self.resting_phase();
                    Ok(ok)
                }
            },
            // spec: specs/phase.md#destroy
            PhaseEvent::Destroy => {
                self.phase = P::Destroyed;
                self.run_returns_to = None;
                self.stop_deferred = false;
                self.executor_attached = false;
                Ok(ok)
            }
        }
    }

    fn assert_consistent(&self) {
        // A return phase is remembered exactly while a run is in flight.
        assert_eq!(self.phase == RuntimePhase::Running, self.run_returns_to.is_some());
        assert!(!self.stop_deferred || self.phase == RuntimePhase::Running);
        assert!(matches!(
            self.run_returns_to,
            None | Some(RuntimePhase::Idle) | Some(RuntimePhase::Attached) | Some(RuntimePhase::Retired)
        ));
        if self.phase == RuntimePhase::Attached {
            assert!(self.executor_attached);
        }
        if matches!(
            self.phase,
            RuntimePhase::Idle | RuntimePhase::Stopped | RuntimePhase::Destroyed | RuntimePhase::Initializing
        ) {
            assert!(!self.executor_attached);
        }
    }

    /// Builds an arbitrary (possibly inconsistent) machine, for invariant tests.
    #[doc(hidden)]
    #[must_use]
    pub fn from_parts_unchecked(
        phase: RuntimePhase,
        run_returns_to: Option<RuntimePhase>,
        stop_deferred: bool,
        executor_attached: bool,
    ) -> Self {
        PhaseMachine { phase, run_returns_to, stop_deferred, executor_attached }
    }
}
