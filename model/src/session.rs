//! The session model: burrow-core's `SessionMachine` itself, in an environment that plays every caller, the loop,
//! the executor, the store and crashes (SPEC 2, 3, 5 and 6).
//!
//! The state is the real machine plus what the world around it remembers: the store image a crash keeps, the run
//! the executor holds, the loop, each client waiter and how many answers it got, and a few facts about the past
//! that the properties need (inputs whose boundary committed, how often each input was staged). `next_state`
//! clones the state, applies one event to the machine and performs the effects against the environment the same
//! way the shell does, feeding each result back as the next event. Nothing here re-describes a transition: if the
//! machine changes, the model explores the new machine.
//!
//! Ids are allocated by the machine from counters, in order, so two states that differ only by a renaming of ids
//! cannot arise from the same history; there is no symmetry to reduce.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use burrow_core::completion::{PendingCallback, RunResult};
use burrow_core::drain::{DrainEffect, DrainEvent, DrainExitReason, DrainIncarnation};
use burrow_core::ids::{EpochId, Generation, InputId, Millis, OperationId, RunId, SessionId, WaiterId};
use burrow_core::input::{AbandonReason, Durability, InputKind, InputRecord, InputSpec, InputState};
use burrow_core::invariants;
use burrow_core::lease::HostId;
use burrow_core::operations::{OpEffect, OpEvent, OpResult, OperationKind, OperationSpec, OperationsRegistry};
use burrow_core::phase::{PhaseMachine, RuntimePhase};
use burrow_core::protocol::{Observed, Subject, feedback};
use burrow_core::registration::{RegistrationEffect, RegistrationPhase};
use burrow_core::session::{
    BoundaryReceipt, Effect, PersistedLifecycle, RecoveryImage, RecoverySource, Reply, RunPrimitive, RunReport,
    SessionConfig, SessionEvent, SessionMachine,
};
use burrow_spec::{Call, Observation, Report, SessionSpec, SpecConfig, Write};
use stateright::{Model, Property};

use crate::observe::{self, Said};
use crate::{NO_PANIC, contained};

/// The one session of the model.
pub const SESSION: SessionId = SessionId(1);
/// The host that takes the session over after a move.
pub const NEW_OWNER: HostId = HostId(2);
/// The run deadline the model uses, so a deadline can be reached in one step.
pub const RUN_DEADLINE_MS: u64 = 10;

/// What a client submits: every input kind, and the key variants that matter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// A durable prompt.
    Prompt,
    /// A prompt with the shared idempotency key "k" (a second one deduplicates).
    PromptKeyed,
    /// An ephemeral prompt (dropped by recovery).
    PromptEphemeral,
    /// A prompt in the steer lane.
    PromptSteer,
    /// An external event with the supersession key "s".
    ExternalEvent,
    /// A flow step.
    FlowStep,
    /// A peer message.
    PeerMessage,
    /// A peer request whose intent is silent.
    PeerRequestSilent,
    /// Response progress to request "r" (coalesces).
    PeerResponseProgress,
    /// The terminal reply to request "r" (supersedes its pending progress).
    PeerResponseTerminal,
    /// A continuation.
    Continuation,
    /// An operation record (consumed on accept).
    Operation,
    /// A Derived external event (specs/input.md#derived): written like a durable one, ended rather than replayed by
    /// a recovery.
    EventDerived,
}

impl Kind {
    /// Every kind, in a fixed order.
    pub const ALL: [Kind; 13] = [
        Kind::Prompt,
        Kind::PromptKeyed,
        Kind::PromptEphemeral,
        Kind::PromptSteer,
        Kind::ExternalEvent,
        Kind::FlowStep,
        Kind::PeerMessage,
        Kind::PeerRequestSilent,
        Kind::PeerResponseProgress,
        Kind::PeerResponseTerminal,
        Kind::Continuation,
        Kind::Operation,
        Kind::EventDerived,
    ];

    /// The spec a client sends for this kind.
    #[must_use]
    pub fn spec(self) -> InputSpec {
        match self {
            Kind::Prompt => InputSpec::new(InputKind::Prompt),
            Kind::PromptKeyed => InputSpec::new(InputKind::Prompt).idempotency_key("k"),
            Kind::PromptEphemeral => InputSpec::new(InputKind::Prompt).durability(Durability::Ephemeral),
            Kind::PromptSteer => InputSpec::new(InputKind::Prompt).steer(),
            Kind::ExternalEvent => InputSpec::new(InputKind::ExternalEvent).supersession_key("s"),
            Kind::FlowStep => InputSpec::new(InputKind::FlowStep),
            Kind::PeerMessage => InputSpec::new(InputKind::PeerMessage),
            Kind::PeerRequestSilent => InputSpec::new(InputKind::PeerRequest { intent: "quiet".into() }),
            Kind::PeerResponseProgress => InputSpec::new(InputKind::PeerResponseProgress { request: "r".into() }),
            Kind::PeerResponseTerminal => InputSpec::new(InputKind::PeerResponseTerminal { request: "r".into() }),
            Kind::Continuation => InputSpec::new(InputKind::Continuation),
            Kind::Operation => InputSpec::new(InputKind::Operation),
            Kind::EventDerived => InputSpec::new(InputKind::ExternalEvent).durability(Durability::Derived),
        }
    }
}

/// What the executor does with the run it holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Outcome {
    /// A result.
    Ok,
    /// No result.
    NoResult,
    /// A pending callback.
    Callback,
    /// Two callbacks pending at once.
    CallbackBatch,
    /// An error.
    Fail,
    /// A panic (contained by the shell).
    Panic,
}

impl Outcome {
    /// Every outcome.
    pub const ALL: [Outcome; 6] =
        [Outcome::Ok, Outcome::NoResult, Outcome::Callback, Outcome::CallbackBatch, Outcome::Fail, Outcome::Panic];
}

/// A control call, each used at most once per path.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Control {
    /// interrupt
    Interrupt,
    /// cancel_after_boundary
    CancelAfterBoundary,
    /// stop_executor
    Stop,
    /// retire
    Retire,
    /// recycle
    Recycle,
    /// reset
    Reset,
    /// recover (from the store)
    Recover,
    /// destroy
    Destroy,
    /// unregister (begin; the rest follows from the loop and timers)
    Unregister,
    /// detach_executor
    Detach,
    /// set_keep_alive(true)
    KeepAlive,
    /// set_comms_enabled(false)
    CommsOff,
    /// abort_drain
    AbortDrain,
    /// publish_event
    Publish,
}

impl Control {
    /// Every control call.
    pub const ALL: [Control; 14] = [
        Control::Interrupt,
        Control::CancelAfterBoundary,
        Control::Stop,
        Control::Retire,
        Control::Recycle,
        Control::Reset,
        Control::Recover,
        Control::Destroy,
        Control::Unregister,
        Control::Detach,
        Control::KeepAlive,
        Control::CommsOff,
        Control::AbortDrain,
        Control::Publish,
    ];

    /// The calls on a session's lifecycle and runs: all but the peer drain's own controls and publish_event.
    #[must_use]
    pub fn lifecycle() -> Vec<Control> {
        Control::ALL
            .into_iter()
            .filter(|c| !matches!(c, Control::CommsOff | Control::AbortDrain | Control::Publish))
            .collect()
    }

    fn bit(self) -> u16 {
        1 << (self as u16)
    }
}

/// One step of the world.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Action {
    /// accept_input_with_completion (a waiter while the waiter budget lasts).
    Accept(Kind),
    /// accept_input_without_wake of a prompt.
    AcceptQuiet,
    /// accept_and_run of a prompt (an inline run).
    AcceptAndRun,
    /// attach_executor: BeginAttach, the loop spawns, AttachCompleted.
    Attach,
    /// The loop polls (when it was woken or never parked).
    Poll,
    /// The executor reports the run it holds.
    Executor(Outcome),
    /// A control call.
    Control(Control),
    /// The next store write fails.
    StoreFault,
    /// Another host claims the session (its lease ended here, or this host was paused past it): from now on the
    /// store fences every write of this process.
    Fence,
    /// This host's lease ends or is refused: the lease loop tells the session it no longer owns it.
    LeaseLost,
    /// The process dies; a new one restores the session from the store. After a move, the new owner restores it
    /// (a hand-over).
    Crash,
    /// Time reaches the run's deadline.
    Deadline,
    /// Time reaches the unregister grace deadline.
    Grace,
    /// A background operation is registered and starts.
    OperationStart,
    /// The background operation completes (waking an idle session).
    OperationEnd,
    /// The peer inbox signals.
    InboxNotify,
    /// The drain finds its inbox empty and asks to park.
    DrainPark,
    /// The drain task fails.
    DrainFail,
    /// The respawn delay of a failed drain passes.
    DrainRespawn,
    /// The shell performs the next step of the drive in progress (a store write, or an input write's answer).
    Perform,
}

impl Action {
    /// Every action, enabled or not: the fixed ones, then one per kind, control call and executor outcome.
    #[must_use]
    pub fn all() -> Vec<Action> {
        let mut all = vec![
            Action::AcceptQuiet,
            Action::AcceptAndRun,
            Action::Attach,
            Action::Poll,
            Action::StoreFault,
            Action::Fence,
            Action::LeaseLost,
            Action::Crash,
            Action::Deadline,
            Action::Grace,
            Action::OperationStart,
            Action::OperationEnd,
            Action::InboxNotify,
            Action::DrainPark,
            Action::DrainFail,
            Action::DrainRespawn,
            Action::Perform,
        ];
        all.extend(Kind::ALL.map(Action::Accept));
        all.extend(Control::ALL.map(Action::Control));
        all.extend(Outcome::ALL.map(Action::Executor));
        all
    }
}

/// The model's bounds. Every budget counts per path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bounds {
    /// Inputs submitted (accept, quiet accept, accept_and_run).
    pub inputs: u8,
    /// Inputs submitted with a waiter.
    pub waiters: u8,
    /// Crashes.
    pub crashes: u8,
    /// Failed store writes.
    pub store_faults: u8,
    /// Hand-overs to another host (spec: specs/session.md#ownership-moved): the store fences this process's writes,
    /// the lease loop tells the session, in either order; a crash then stands for the new owner's restore.
    pub moves: u8,
    /// Time jumps (deadline, grace).
    pub time_jumps: u8,
    /// attach_executor calls.
    pub attaches: u8,
    /// Background operations.
    pub operations: u8,
    /// Drain events (notify, park, fail, respawn).
    pub drain_events: u8,
    /// The session's attempt bound.
    pub max_attempts: u32,
    /// Which kinds clients submit.
    pub kinds: Vec<Kind>,
    /// Which control calls are explored (each at most once per path).
    pub controls: Vec<Control>,
    /// Control calls per path.
    pub control_calls: u8,
    /// Executor outcomes explored.
    pub outcomes: Vec<Outcome>,
    /// Whether the session has peer ingress.
    pub comms: bool,
    /// Whether the shell keeps a store. Without one the model holds `SessionMachine::without_store`, which must ask
    /// for no write; nothing survives a crash, so crashes and store faults are not explored, and `recover` re-applies
    /// the recovery rule in memory.
    pub store: bool,
    /// Ended inputs the session keeps in memory (`SessionConfig::history_max`). Small, the shared key of
    /// `PromptKeyed` leaves memory and a later accept of it is answered from the store (specs/input.md#recall).
    pub history_max: usize,
}

/// A planted defect, for the teeth tests: the model wraps the real machine and breaks one thing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Defect {
    /// Reset abandons the inputs but forgets to resolve their waiters.
    ForgetWaitersOnReset,
    /// Recovery (a crash or recover) resets every input's attempt count.
    ResetAttemptsOnRecovery,
    /// Retire does not close admission, so work admitted after it is drained.
    AdmitAfterRetire,
    /// A committed boundary's inputs go back to the queue.
    ReapplyCommitted,
    /// The driver reports an input write's result twice (as a driver that retries a write and reports both would).
    ReportWriteTwice,
}

/// The store as a crash leaves it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct StoreImage {
    /// The last lifecycle commit.
    pub lifecycle: Option<PersistedLifecycle>,
    /// Durable input rows.
    pub inputs: BTreeMap<InputId, InputRecord>,
    /// Committed receipts.
    pub receipts: BTreeMap<RunId, BoundaryReceipt>,
    /// The saved operations registry.
    pub operations: Option<OperationsRegistry>,
}

impl StoreImage {
    fn recovery_image(&self, with_operations: bool) -> RecoveryImage {
        RecoveryImage::from_store(
            self.inputs.values().cloned().collect(),
            self.receipts.values(),
            if with_operations { self.operations.clone() } else { None },
        )
    }
}

/// One client waiter and what it received.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ClientWaiter {
    /// The input it waits on.
    pub input: InputId,
    /// Answers received (must be at most one).
    pub received: u8,
    /// The caller holds it (false when the accept failed and the caller got an error instead).
    pub handed: bool,
}

/// Facts about the past the properties read.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct History {
    /// An input whose boundary committed was handed to a run again.
    pub applied_twice: bool,
    /// A resolution named a waiter no client holds.
    pub unknown_waiter: bool,
    /// A refused event changed the machine.
    pub refusal_changed_state: bool,
    /// A run that returned to Retired committed work admitted before the retire.
    pub retire_drained: bool,
    /// A crash brought a staged input back as queued.
    pub crash_requeued_staged: bool,
    /// A stop was deferred by a run in flight.
    pub stop_deferred: bool,
    /// A recycle kept a waiter whose input was still pending.
    pub recycle_kept_waiter: bool,
    /// A session without a store asked for a write.
    pub write_without_store: bool,
    /// The machine refused the event that reports one of its own effects' results.
    pub feedback_refused: bool,
    /// A key that had left memory was read from the store and its duplicate was answered Deduplicated.
    pub recalled_key_deduplicated: bool,
    /// A waiter was told the session moved after the store fenced a write.
    pub fence_told_moved: bool,
    /// The new owner's restore after a move brought back an input the old owner had acknowledged.
    pub handover_kept_input: bool,
    /// The first observation the specification did not allow, with the rule it broke.
    pub deviation: Option<String>,
    /// The action during which the checked code panicked, and the panic's message.
    pub panicked: Option<String>,
}

/// One thing the shell still has to do in the drive in progress.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Pending {
    /// An effect to perform.
    Effect(Effect),
    /// An input write that ended: the caller's answer and the machine's feedback are next.
    WriteEnded {
        /// The write.
        subject: Subject,
        /// How it went.
        observed: Observed,
    },
}

/// The environment around the machine.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Env {
    /// The clock, in milliseconds.
    pub now: u64,
    /// What a crash keeps.
    pub store: StoreImage,
    /// The run the executor (or an accept_and_run caller) holds.
    pub executing: Option<RunId>,
    /// The live loop's generation.
    pub loop_generation: Option<Generation>,
    /// The loop was woken since it last polled.
    pub loop_woken: bool,
    /// The loop's last poll answered Park: the task sleeps until a wake reaches it, whatever the machine believes.
    pub loop_asleep: bool,
    /// The live drain task.
    pub drain: Option<DrainIncarnation>,
    /// A drain respawn is scheduled.
    pub respawn_pending: bool,
    /// The next store write fails.
    pub fault_armed: bool,
    /// Another host claimed the session: the store refuses this process's writes for their epoch.
    pub fenced: bool,
    /// The lease loop told the session that this host lost it.
    pub lease_told: bool,
    /// Budgets spent.
    pub spent: Spent,
    /// Control calls used (one bit each).
    pub controls_used: u16,
    /// Client waiters of this process.
    pub waiters: BTreeMap<WaiterId, ClientWaiter>,
    /// Inputs whose boundary committed.
    pub committed: BTreeSet<InputId>,
    /// How often each input was handed to a run, across crashes.
    pub staged: BTreeMap<InputId, u32>,
    /// The background operation.
    pub operation: Option<OperationId>,
    /// Facts about the past.
    pub history: History,
    /// The answer of an accept whose input write is in flight.
    pub answer_due: Option<Observation>,
    /// The input of an accept_and_run whose run has not been handed out yet: the next run handed out is its.
    pub inline_input: Option<InputId>,
    /// What the drive in progress has left to do. Between two of its writes (and after an input write, before the
    /// caller's answer) a crash or a store fault may land; calls and executor results wait for the session lock
    /// the drive holds.
    pub pending: VecDeque<Pending>,
    /// What the callers and the store saw, kept only for a model that judges several hosts by it (the hand-over
    /// model); `None` in the session model, whose states it would only split.
    pub seen: Option<Seen>,
}

/// What a host's callers and the store saw, for properties that judge several hosts at once.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Seen {
    /// Inputs whose accept was answered Accepted after their write landed: acknowledged durable.
    pub acked: BTreeSet<InputId>,
    /// Inputs a waiter was told ended with a success class (Completed, CompletedWithoutResult).
    pub succeeded: BTreeSet<InputId>,
    /// A write of this host's was refused by the store's fence.
    pub fenced: bool,
}

/// Budgets spent on the path so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Spent {
    /// Inputs submitted.
    pub inputs: u8,
    /// Waiters made.
    pub waiters: u8,
    /// Crashes.
    pub crashes: u8,
    /// Store faults.
    pub store_faults: u8,
    /// Hand-overs begun.
    pub moves: u8,
    /// Time jumps.
    pub time_jumps: u8,
    /// Attaches.
    pub attaches: u8,
    /// Operations.
    pub operations: u8,
    /// Drain events.
    pub drain_events: u8,
    /// Control calls.
    pub control_calls: u8,
}

/// The model's state: the real machine and its environment.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct World {
    /// burrow-core's session machine, exactly as the runtime holds it.
    pub machine: SessionMachine,
    /// Everything around it.
    pub env: Env,
    /// The observable specification, fed with what the callers, the executor and the store saw.
    pub spec: SessionSpec,
}

/// The session model.
#[derive(Clone, Debug)]
pub struct SessionModel {
    /// Its bounds.
    pub bounds: Bounds,
    /// A planted defect (teeth tests only).
    pub defect: Option<Defect>,
    /// A change to the session's configuration before each machine is made (teeth tests plant burrow-core's
    /// defects through it: see burrow-core's `planted` feature).
    pub configure: Option<fn(&mut SessionConfig)>,
}

impl SessionModel {
    /// A model with `bounds` and no defect.
    #[must_use]
    pub fn new(bounds: Bounds) -> SessionModel {
        SessionModel { bounds, defect: None, configure: None }
    }

    /// The same model with one planted defect.
    #[must_use]
    pub fn with_defect(mut self, defect: Defect) -> SessionModel {
        self.defect = Some(defect);
        self
    }

    // The struct update fills the `planted` field when burrow-core is built with that feature, and nothing otherwise.
    #[allow(clippy::needless_update)]
    fn config(&self) -> SessionConfig {
        let mut config = SessionConfig {
            max_attempts: self.bounds.max_attempts,
            run_deadline_ms: RUN_DEADLINE_MS,
            run_notice_ms: RUN_DEADLINE_MS / 2,
            comms_enabled: self.bounds.comms,
            keep_alive: false,
            history_max: self.bounds.history_max,
            ..SessionConfig::default()
        };
        if let Some(configure) = self.configure {
            configure(&mut config);
        }
        config
    }

    /// The world every path starts from: a prepared session, no executor, the silent intent set.
    #[must_use]
    pub fn initial(&self) -> World {
        let machine = if self.bounds.store {
            SessionMachine::new(SESSION, self.config())
        } else {
            SessionMachine::without_store(SESSION, self.config())
        };
        let spec = SessionSpec::new(SpecConfig {
            max_attempts: self.bounds.max_attempts,
            store: self.bounds.store,
            bounds: crate::observe::bounds(),
        });
        let mut world = World { machine, env: Env::default(), spec };
        self.step(&mut world, SessionEvent::Prepare { epoch: EpochId(1) }).expect("a new session prepares");
        self.step(&mut world, SessionEvent::SetSilentIntents(vec!["quiet".into()])).expect("one intent is allowed");
        world
    }

    /// The session as a host that has just claimed it at lease epoch `epoch` restores it from `store` at `now`
    /// (spec: specs/session.md#ownership-moved): the machine burrow-core restores from the store's rows, with its
    /// recovery effects performed (or pending, where a fault may come between them). The world keeps what its callers
    /// and the store see ([`Seen`]). `None` when the store holds no lifecycle row yet or refuses the restore.
    #[must_use]
    pub fn take_over(&self, store: StoreImage, epoch: EpochId, now: u64) -> Option<World> {
        let lifecycle = store.lifecycle.as_ref()?.taken_over(epoch);
        let image = store.recovery_image(true);
        let (machine, fx) = SessionMachine::restored(SESSION, self.config(), &lifecycle, image, Millis(now)).ok()?;
        let spec = SessionSpec::new(SpecConfig {
            max_attempts: self.bounds.max_attempts,
            store: self.bounds.store,
            bounds: crate::observe::bounds(),
        });
        let env = Env { now, store, seen: Some(Seen::default()), ..Env::default() };
        let mut world = World { machine, env, spec };
        self.perform_all(&mut world, fx.effects);
        Some(world)
    }

    /// The host lost the session's lease (its end passed, or the store refused it): the session takes `lost`, the
    /// event burrow-core names for that (`LossReason::session_event`, `lease::before_run`). Like a call, never in the
    /// middle of a drive: `None` then, or when the machine refuses it.
    pub fn lease_lost(&self, world: &mut World, lost: SessionEvent) -> Option<()> {
        if !world.env.pending.is_empty() {
            return None;
        }
        if !world.env.fenced {
            world.env.spent.moves += 1;
        }
        world.env.lease_told = true;
        observe(world, Observation::OwnershipLost { write: None });
        self.step(world, lost).map(drop)
    }

    /// Applies `event` and performs what follows; `None` if the machine refused it. Whether a refusal left the
    /// machine as it was is checked once per action, in `next_state`, against the state the action started from.
    fn step(&self, world: &mut World, event: SessionEvent) -> Option<Reply> {
        self.step_said(world, event, &Said::Nothing)
    }

    /// As [`SessionModel::step`], for a call whose answer the caller sees: the answer is observed before the
    /// effects, or, for an accept whose input is written first, once the write's result is known.
    fn step_said(&self, world: &mut World, event: SessionEvent, said: &Said) -> Option<Reply> {
        // A call on the operations registry: its caller reads the answer before the effects are performed.
        let op = match &event {
            SessionEvent::Operation(op) => Some(op.clone()),
            _ => None,
        };
        let fx = match world.machine.apply(Millis(world.env.now), event) {
            Ok(fx) => fx,
            Err(refusal) => {
                if let Some(op) = &op {
                    observe(world, observe::op_call(op, Err(&refusal)));
                }
                if let Some(observation) = said.refused(&refusal) {
                    observe(world, observation);
                }
                return None;
            }
        };
        if let Some(op) = &op {
            observe(world, observe::op_call(op, Ok(&fx.effects)));
        }
        let reply = fx.reply.clone();
        self.note_reply(world, &reply);
        if let (Said::AcceptAndRun(_), Reply::Accepted { input, .. }) = (said, &reply) {
            world.env.inline_input = Some(*input);
        }
        if let Some(observation) = said.answered(&reply) {
            if said.waits_for_write() && fx.effects.iter().any(|e| matches!(e, Effect::PersistInput(_))) {
                world.env.answer_due = Some(observation);
            } else {
                observe(world, observation);
            }
        }
        self.perform_all(world, fx.effects);
        Some(reply)
    }

    fn note_reply(&self, world: &mut World, reply: &Reply) {
        let waiter = match reply {
            Reply::Accepted { input, waiter: Some(w), .. } => Some((*input, *w)),
            Reply::Deduplicated { existing, waiter: Some(w) } => Some((*existing, *w)),
            _ => None,
        };
        if let Some((input, waiter)) = waiter {
            world.env.waiters.insert(waiter, ClientWaiter { input, received: 0, handed: true });
        }
    }

    /// Performs effects depth first, as every driver does: each effect's observed result goes through the core's
    /// table ([`feedback`]), and the event it names is applied with its effects performed next. The model decides
    /// nothing about what a result means.
    fn perform_all(&self, world: &mut World, effects: Vec<Effect>) {
        for effect in effects.into_iter().rev() {
            world.env.pending.push_front(Pending::Effect(effect));
        }
        self.drive(world, false);
    }

    /// Works through the pending effects, one at a time. Where a crash or a store fault could still land (the
    /// budgets allow one), the drive pauses before each store write and after each input write, and the next
    /// [`Action::Perform`] resumes it (`resumed`); otherwise it runs to the end.
    fn drive(&self, world: &mut World, mut resumed: bool) {
        while let Some(next) = world.env.pending.front() {
            let at_write = match next {
                Pending::Effect(effect) => Subject::of(effect).is_write(),
                Pending::WriteEnded { .. } => true,
            };
            if at_write && !resumed && self.interruptible(world) {
                return;
            }
            resumed = false;
            match world.env.pending.pop_front().expect("a front") {
                Pending::Effect(effect) => {
                    let subject = Subject::of(&effect);
                    let observed = self.perform(world, effect);
                    if matches!(subject, Subject::InputWrite(_)) {
                        world.env.pending.push_front(Pending::WriteEnded { subject, observed });
                    } else {
                        self.report_result(world, subject, observed);
                    }
                }
                Pending::WriteEnded { subject, observed } => self.report_result(world, subject, observed),
            }
        }
        // The drive is over: an accept_and_run whose run was not handed out in it (its start failed) has none.
        world.env.inline_input = None;
    }

    /// Whether a crash or a store fault may still land between two steps of a drive.
    fn interruptible(&self, world: &World) -> bool {
        let b = &self.bounds;
        let spent = &world.env.spent;
        let fence = !world.env.fenced && (world.env.lease_told || spent.moves < b.moves);
        b.store
            && (spent.crashes < b.crashes || (spent.store_faults < b.store_faults && !world.env.fault_armed) || fence)
    }

    /// Reports a performed effect's result: an input write answers its caller; the core's table names the event.
    fn report_result(&self, world: &mut World, subject: Subject, observed: Observed) {
        if matches!(subject, Subject::InputWrite(_)) {
            Self::answer_after_write(world, &observed);
        }
        let event = feedback(subject, observed).expect("the model reports only what an effect can observe");
        if self.defect == Some(Defect::ReportWriteTwice) && matches!(subject, Subject::InputWrite(_)) {
            self.report(world, event.clone());
        }
        self.report(world, event);
    }

    /// Applies the event that reports an effect's result; its effects go to the front of the pending queue. A
    /// refusal means the machine would not take the result of its own effect, which is recorded as a violation.
    fn report(&self, world: &mut World, event: Option<SessionEvent>) {
        let Some(event) = event else { return };
        match world.machine.apply(Millis(world.env.now), event) {
            Ok(fx) => {
                if fx.effects.iter().any(|e| matches!(e, Effect::Registration(RegistrationEffect::Released { .. }))) {
                    // The commit is what releases the session; its row is the write that follows.
                    observe(world, Observation::Released);
                }
                for effect in fx.effects.into_iter().rev() {
                    world.env.pending.push_front(Pending::Effect(effect));
                }
            }
            Err(_) => world.env.history.feedback_refused = true,
        }
    }

    /// The accept whose input write just ended is answered: as accepted, or with the store's error (the caller
    /// then holds no handle, whatever the machine does with the waiter it had booked).
    fn answer_after_write(world: &mut World, observed: &Observed) {
        let Some(mut observation) = world.env.answer_due.take() else { return };
        if let (Some(seen), Observed::Written) = (world.env.seen.as_mut(), observed) {
            if let Observation::Accept { answer: burrow_spec::AcceptAnswer::Accepted { input, .. }, .. }
            | Observation::AcceptAndRun { answer: burrow_spec::AcceptAnswer::Accepted { input, .. }, .. } =
                &observation
            {
                seen.acked.insert(InputId(*input));
            }
        }
        if matches!(observed, Observed::WriteFailed(_) | Observed::Fenced { .. }) {
            let answer = match &mut observation {
                Observation::Accept { answer, .. } | Observation::AcceptAndRun { answer, .. } => answer,
                other => unreachable!("only accepts wait for a write: {other:?}"),
            };
            if let burrow_spec::AcceptAnswer::Accepted { waiter: Some(waiter), .. } = answer {
                if let Some(client) = world.env.waiters.get_mut(&WaiterId(*waiter)) {
                    client.handed = false;
                }
            }
            *answer = if matches!(observed, Observed::Fenced { .. }) {
                burrow_spec::AcceptAnswer::Moved
            } else {
                burrow_spec::AcceptAnswer::StoreFailed
            };
        }
        observe(world, observation);
    }

    fn store_write_fails(world: &mut World) -> bool {
        std::mem::take(&mut world.env.fault_armed)
    }

    /// Performs one effect on the simulated world and says what happened.
    fn perform(&self, world: &mut World, effect: Effect) -> Observed {
        match effect {
            Effect::PersistInput(_)
            | Effect::PersistBoundary { .. }
            | Effect::PersistLifecycle { .. }
            | Effect::PersistOperations(_) => self.perform_write(world, effect),
            Effect::ResolveWaiters { waiters, resolution, .. } => {
                let class = observe::class(&resolution);
                if class == burrow_spec::Class::Moved && world.env.fenced {
                    world.env.history.fence_told_moved = true;
                }
                for waiter in waiters {
                    let handed = match world.env.waiters.get_mut(&waiter) {
                        Some(client) => {
                            client.received = client.received.saturating_add(1);
                            client.handed
                        }
                        None => {
                            world.env.history.unknown_waiter = true;
                            false
                        }
                    };
                    if handed {
                        observe(world, Observation::Resolved { waiter: waiter.0, class });
                        let success =
                            matches!(class, burrow_spec::Class::Completed | burrow_spec::Class::CompletedWithoutResult);
                        if let (Some(seen), Some(client), true) =
                            (world.env.seen.as_mut(), world.env.waiters.get(&waiter), success)
                        {
                            seen.succeeded.insert(client.input);
                        }
                    }
                }
                Observed::Done
            }
            Effect::StartRun(primitive) => {
                Self::hand_out(world, &primitive);
                Observed::Done
            }
            Effect::CancelRun { run, .. } => {
                if world.env.executing == Some(run) {
                    world.env.executing = None;
                }
                Observed::Done
            }
            Effect::CancelAfterBoundary { .. } | Effect::RunNotice { .. } => Observed::Done,
            Effect::StopExecutor { .. } | Effect::WakeLoop => {
                world.env.loop_woken = true;
                Observed::Done
            }
            Effect::Registration(effect) => Self::perform_registration(&mut world.env, effect),
            Effect::Drain(effect) => Self::perform_drain(&mut world.env, effect),
            Effect::Notify(notice) => {
                if let Some(observation) = observe::notice(&notice) {
                    observe(world, observation);
                }
                Observed::Done
            }
            Effect::Operation(effect) => {
                if let OpEffect::Registered { op } = effect {
                    world.env.operation = Some(op);
                }
                Observed::Done
            }
        }
    }

    /// A store write: it lands in the image a crash keeps, or fails when a fault is armed.
    fn perform_write(&self, world: &mut World, effect: Effect) -> Observed {
        if !self.bounds.store {
            world.env.history.write_without_store = true;
        }
        if let Effect::PersistLifecycle { starts_run: Some(run), inputs, .. } = &effect {
            let staged = inputs.iter().filter(|r| matches!(r.state, InputState::Staged { .. }));
            let inputs = staged.map(|r| r.id.0).collect();
            observe(world, Observation::Staged { run: run.0, inputs });
        }
        let write = match &effect {
            Effect::PersistBoundary { receipt, .. } => Some(Write::Boundary(receipt.run.0)),
            Effect::PersistLifecycle { .. } => Some(Write::Lifecycle),
            Effect::PersistOperations(_) => Some(Write::Operations),
            _ => None,
        };
        if let Some(write) = write {
            observe(world, Observation::Writing { write });
        }
        if world.env.fenced {
            if let Some(seen) = world.env.seen.as_mut() {
                seen.fenced = true;
            }
            // The store's rule (burrow-core's LeaseRow::admit_write): a write naming an epoch that is not the row's
            // does not land.
            observe(world, Observation::OwnershipLost { write });
            return Observed::Fenced { owner: Some(NEW_OWNER) };
        }
        if Self::store_write_fails(world) {
            if let Some(write) = write {
                observe(world, Observation::Written { write, ok: false });
            }
            return Observed::WriteFailed("injected".into());
        }
        if let Some(write) = write {
            observe(world, Observation::Written { write, ok: true });
        }
        let retire_drain = world.machine.phase_machine().run_returns_to() == Some(RuntimePhase::Retired);
        let env = &mut world.env;
        match effect {
            Effect::PersistInput(record) => {
                env.store.inputs.insert(record.id, record);
            }
            Effect::PersistBoundary { receipt, inputs, snapshot: _ } => {
                if retire_drain {
                    env.history.retire_drained = true;
                }
                env.committed.extend(receipt.contributors.iter().copied());
                for row in inputs {
                    env.store.inputs.insert(row.id, row);
                }
                env.store.receipts.insert(receipt.run, receipt);
            }
            Effect::PersistLifecycle { phase, registration, binding, marks, inputs, starts_run: _ } => {
                env.store.lifecycle = Some(PersistedLifecycle { phase, registration, binding, marks });
                for row in inputs {
                    env.store.inputs.insert(row.id, row);
                }
            }
            Effect::PersistOperations(registry) => env.store.operations = Some(*registry),
            other => unreachable!("not a store write: {other:?}"),
        }
        Observed::Written
    }

    /// A run handed to the executor, with what the executor saw: the run's inputs, in order.
    fn hand_out(world: &mut World, primitive: &RunPrimitive) {
        let inputs = primitive.inputs.iter().map(|(input, _)| input.0).collect();
        let inline =
            world.env.inline_input.take().is_some_and(|input| primitive.inputs.first().map(|i| i.0) == Some(input));
        observe(world, Observation::HandedOut { run: primitive.run.0, inputs, inline });
        let env = &mut world.env;
        for (input, _) in &primitive.inputs {
            if env.committed.contains(input) {
                env.history.applied_twice = true;
            }
            *env.staged.entry(*input).or_default() += 1;
        }
        env.executing = Some(primitive.run);
    }

    fn perform_registration(env: &mut Env, effect: RegistrationEffect) -> Observed {
        match effect {
            RegistrationEffect::SpawnLoop { binding } => {
                env.loop_generation = Some(binding.generation);
                env.loop_woken = true;
                env.loop_asleep = false;
                return Observed::Spawned;
            }
            RegistrationEffect::WakeLoop { .. } | RegistrationEffect::StopLoop { .. } => env.loop_woken = true,
            RegistrationEffect::StopDrain | RegistrationEffect::AbortDrain => env.drain = None,
            RegistrationEffect::AbortLoop { .. } => {
                env.loop_generation = None;
                env.loop_asleep = false;
            }
            RegistrationEffect::CommitReady
            | RegistrationEffect::Released { .. }
            | RegistrationEffect::BindingIssued { .. }
            | RegistrationEffect::CloseAdmission
            | RegistrationEffect::ResolveAllWaiters
            | RegistrationEffect::ArmGraceTimer { .. }
            | RegistrationEffect::ForceResolveWaiters => {}
        }
        Observed::Done
    }

    fn perform_drain(env: &mut Env, effect: DrainEffect) -> Observed {
        match effect {
            DrainEffect::SpawnDrain { incarnation, .. } => {
                env.drain = Some(incarnation);
                return Observed::Spawned;
            }
            DrainEffect::AbortDrain { incarnation } => {
                if env.drain == Some(incarnation) {
                    env.drain = None;
                }
            }
            DrainEffect::ScheduleRespawn => env.respawn_pending = true,
            DrainEffect::Park | DrainEffect::ContinueDraining | DrainEffect::WakeDrain { .. } => {}
        }
        Observed::Done
    }

    fn used(world: &World, control: Control) -> bool {
        world.env.controls_used & control.bit() != 0
    }

    fn crash(&self, world: &mut World) -> Option<()> {
        let store = world.env.store.clone();
        let lifecycle = store.lifecycle.clone()?;
        // The drive in progress dies with the process; an accept it had not answered never returns.
        if let Some(observation) = world.env.answer_due.take() {
            let lost = match observation {
                Observation::Accept { submission, .. } => {
                    Observation::Accept { submission, answer: burrow_spec::AcceptAnswer::Lost }
                }
                Observation::AcceptAndRun { submission, .. } => {
                    Observation::AcceptAndRun { submission, answer: burrow_spec::AcceptAnswer::Lost }
                }
                other => unreachable!("only accepts wait for a write: {other:?}"),
            };
            observe(world, lost);
        }
        world.env.pending.clear();
        world.env.inline_input = None;
        let mut image = store.recovery_image(true);
        if self.defect == Some(Defect::ResetAttemptsOnRecovery) {
            for row in &mut image.inputs {
                row.attempts = 0;
            }
        }
        let staged: Vec<InputId> =
            store.inputs.values().filter(|r| matches!(r.state, InputState::Staged { .. })).map(|r| r.id).collect();
        // After a move the restore is the new owner's: the binding's epoch becomes its lease's.
        let moved = world.env.fenced || world.env.lease_told;
        let lifecycle = match (moved, lifecycle.binding) {
            (true, Some(binding)) => lifecycle.taken_over(EpochId(binding.epoch.0 + 1)),
            _ => lifecycle,
        };
        let (machine, fx) =
            SessionMachine::restored(SESSION, self.config(), &lifecycle, image, Millis(world.env.now)).ok()?;
        world.machine = machine;
        let env = &mut world.env;
        env.executing = None;
        env.loop_generation = None;
        env.loop_woken = false;
        env.loop_asleep = false;
        env.drain = None;
        env.respawn_pending = false;
        env.fault_armed = false;
        env.fenced = false;
        env.lease_told = false;
        if moved && !world.machine.list_active_inputs().is_empty() {
            env.history.handover_kept_input = true;
        }
        // The clients of the dead process are gone with it.
        env.waiters.clear();
        env.spent.crashes += 1;
        if staged.iter().any(|id| world.machine.ledger().state_of(*id) == Some(InputState::Queued)) {
            world.env.history.crash_requeued_staged = true;
        }
        observe(world, Observation::Crash);
        self.perform_all(world, fx.effects);
        Self::list_active(world);
        Some(())
    }

    /// A caller lists the active inputs (list_active_inputs), as one would after a restart or a recover.
    fn list_active(world: &mut World) {
        let views = world.machine.list_active_inputs();
        let inputs = views.iter().map(|view| view.id.0).collect();
        let continuations = views.iter().filter(|view| view.kind == "Continuation").map(|view| view.id.0).collect();
        observe(world, Observation::Active { inputs, continuations });
    }

    fn control(&self, world: &mut World, control: Control) -> Option<()> {
        world.env.controls_used |= control.bit();
        world.env.spent.control_calls += 1;
        let said = observe::call(control).map_or(Said::Nothing, Said::Call);
        let event = match control {
            Control::Interrupt => SessionEvent::Interrupt { run: None },
            Control::CancelAfterBoundary => SessionEvent::CancelAfterBoundary,
            Control::Stop => SessionEvent::Stop,
            Control::Retire => SessionEvent::Retire,
            Control::Recycle => {
                self.step_said(world, SessionEvent::Recycle, &said)?;
                let ledger = world.machine.ledger();
                if world.env.waiters.values().any(|w| w.received == 0 && ledger.get(w.input).is_some()) {
                    world.env.history.recycle_kept_waiter = true;
                }
                return Some(());
            }
            Control::Reset if self.defect == Some(Defect::ForgetWaitersOnReset) => {
                return self.reset_forgetting_waiters(world);
            }
            Control::Reset => SessionEvent::Reset,
            Control::Recover if !self.bounds.store => SessionEvent::Recover(RecoverySource::InMemory),
            Control::Recover => {
                let mut image = world.env.store.recovery_image(false);
                if self.defect == Some(Defect::ResetAttemptsOnRecovery) {
                    for row in &mut image.inputs {
                        row.attempts = 0;
                    }
                }
                SessionEvent::Recover(RecoverySource::Image(Box::new(image)))
            }
            Control::Destroy => SessionEvent::Destroy,
            Control::Unregister => SessionEvent::BeginUnregister,
            Control::Detach => SessionEvent::Detach,
            Control::KeepAlive => SessionEvent::SetKeepAlive(true),
            Control::CommsOff => SessionEvent::SetCommsEnabled(false),
            Control::AbortDrain => SessionEvent::Drain(DrainEvent::Abort),
            Control::Publish => SessionEvent::Publish(burrow_core::session::RuntimeEvent::new("model", "")),
        };
        let reply = self.step_said(world, event, &said)?;
        match control {
            Control::Stop if matches!(reply, Reply::Stopped { deferred: true, .. }) => {
                world.env.history.stop_deferred = true;
            }
            Control::Recover => Self::list_active(world),
            _ => {}
        }
        Some(())
    }

    /// The ForgetWaitersOnReset defect: the reset happens, its resolutions are lost and the waiters stay booked.
    fn reset_forgetting_waiters(&self, world: &mut World) -> Option<()> {
        let fx = world.machine.apply(Millis(world.env.now), SessionEvent::Reset).ok()?;
        observe(world, Observation::Call { call: Call::Reset, answer: burrow_spec::Answer::Done });
        let mut kept = Vec::new();
        for effect in fx.effects {
            match effect {
                Effect::ResolveWaiters { input, waiters, .. } => {
                    for waiter in waiters {
                        world.machine.internals_mut().waiters.insert_unchecked(input, waiter);
                    }
                }
                other => kept.push(other),
            }
        }
        self.perform_all(world, kept);
        Some(())
    }

    fn reapply_committed(world: &mut World) {
        // The ReapplyCommitted defect: consumed inputs of committed runs go back to the queue lane.
        let ledger = world.machine.ledger();
        let mut records: Vec<InputRecord> = ledger.active().cloned().collect();
        let mut queue: Vec<InputId> = ledger.queue_lane().collect();
        let steer: Vec<InputId> = ledger.steer_lane().collect();
        for record in ledger.history() {
            if record.state == InputState::Consumed && world.env.committed.contains(&record.id) {
                let mut again = record.clone();
                again.state = InputState::Queued;
                queue.push(again.id);
                records.push(again);
            }
        }
        let (accepted, terminal) = ledger.totals();
        let revived = records.len() as u64 - ledger.active_len() as u64;
        let mut rebuilt =
            burrow_core::input::Ledger::from_parts_unchecked(records, queue, steer, ledger.max_attempts());
        rebuilt.set_totals_unchecked(accepted, terminal - revived);
        *world.machine.internals_mut().ledger = rebuilt;
    }

    fn submit(&self, world: &mut World, kind: Kind, quiet: bool) -> Option<()> {
        let waiter = world.env.spent.waiters < self.bounds.waiters;
        let said = Said::Accept(observe::submission(kind, waiter, !quiet));
        let spec = kind.spec();
        let recalled = self.recall(world, &spec)?;
        let Some(reply) = self.step_said(world, SessionEvent::Accept { spec, waiter, wake: !quiet }, &said) else {
            // The recall was taken and changed the machine: the action happened, though its accept was refused.
            return recalled.is_some().then_some(());
        };
        let recalled = recalled == Some(true);
        if recalled && matches!(reply, Reply::Deduplicated { .. }) {
            world.env.history.recalled_key_deduplicated = true;
        }
        let env = &mut world.env;
        env.spent.inputs += 1;
        if matches!(reply, Reply::Accepted { waiter: Some(_), .. } | Reply::Deduplicated { waiter: Some(_), .. }) {
            env.spent.waiters += 1;
        }
        Some(())
    }

    /// spec: specs/input.md#recall: what the shell does before an accept. When the core asks for a key, the store
    /// image's newest row with it is read and reported.
    /// Whether a row was found (`None`: no read was asked for); the outer `None` if the machine refused the recall.
    fn recall(&self, world: &mut World, spec: &InputSpec) -> Option<Option<bool>> {
        let Some(key) = world.machine.key_to_recall(spec) else { return Some(None) };
        let mut rows = world.env.store.inputs.values().rev();
        let found = rows.find(|row| row.spec.idempotency_key.as_deref() == Some(key)).cloned();
        let was_found = found.is_some();
        self.step(world, SessionEvent::KeyRecalled { key: key.to_owned(), found })?;
        Some(Some(was_found))
    }

    fn drain_event(&self, world: &mut World, event: DrainEvent) -> Option<()> {
        world.env.spent.drain_events += 1;
        self.step(world, SessionEvent::Drain(event)).map(drop)
    }
}

impl Model for SessionModel {
    type State = World;
    type Action = Action;

    fn init_states(&self) -> Vec<World> {
        vec![self.initial()]
    }

    fn actions(&self, world: &World, actions: &mut Vec<Action>) {
        if world.env.history.panicked.is_some() {
            // Nothing is explored past a panic: the state only carries the report.
            return;
        }
        let b = &self.bounds;
        let env = &world.env;
        let m = &world.machine;
        if !env.pending.is_empty() {
            // A drive is in progress and holds the session: only the store and a crash can come between its steps.
            actions.push(Action::Perform);
            self.fault_actions(world, actions);
            return;
        }
        if env.spent.inputs < b.inputs {
            actions.extend(b.kinds.iter().map(|k| Action::Accept(*k)));
            actions.push(Action::AcceptQuiet);
            if env.executing.is_none() {
                actions.push(Action::AcceptAndRun);
            }
        }
        if env.spent.attaches < b.attaches && env.loop_generation.is_none() {
            actions.push(Action::Attach);
        }
        if let Some(generation) = env.loop_generation {
            let live = m.registration().phase() == RegistrationPhase::Active { generation };
            let free = env.executing.is_none() && m.current_run().is_none();
            if free && (env.loop_woken || !env.loop_asleep || !live) {
                actions.push(Action::Poll);
            }
        }
        if let (Some(run), Some(current)) = (env.executing, m.current_run()) {
            if current.id == run && current.report.is_none() {
                actions.extend(b.outcomes.iter().map(|o| Action::Executor(*o)));
            }
        }
        if env.spent.control_calls < b.control_calls {
            for control in &b.controls {
                if !Self::used(world, *control) {
                    actions.push(Action::Control(*control));
                }
            }
        }
        self.fault_actions(world, actions);
        if env.spent.time_jumps < b.time_jumps {
            if m.current_run().is_some_and(|r| r.report.is_none()) {
                actions.push(Action::Deadline);
            }
            if m.registration().grace_deadline().is_some() {
                actions.push(Action::Grace);
            }
        }
        if env.spent.operations < b.operations && env.operation.is_none() {
            actions.push(Action::OperationStart);
        }
        if env.operation.is_some() {
            actions.push(Action::OperationEnd);
        }
        if b.comms && env.spent.drain_events < b.drain_events {
            actions.push(Action::InboxNotify);
            if env.drain.is_some() {
                actions.push(Action::DrainPark);
                actions.push(Action::DrainFail);
            }
            if env.respawn_pending {
                actions.push(Action::DrainRespawn);
            }
        }
    }

    fn next_state(&self, last: &World, action: Action) -> Option<World> {
        let mut world = last.clone();
        match contained(|| self.advance(&mut world, action)) {
            Ok(Some(())) => return Some(world),
            Ok(None) => {}
            Err(message) => {
                // The world the panic left is torn; the report is kept on the world before the action.
                let mut world = last.clone();
                world.env.history.panicked = Some(format!("{action:?} panicked: {message}"));
                return Some(world);
            }
        }
        // The action was refused. A refusal must change nothing; if the machine moved, that is a state worth
        // reporting, so it is returned with the fact recorded. So is a refusal the specification does not allow.
        if world.machine != last.machine {
            world.env.history.refusal_changed_state = true;
            return Some(world);
        }
        if world.env.history.deviation.is_some() && last.env.history.deviation.is_none() {
            return Some(world);
        }
        None
    }

    fn properties(&self) -> Vec<Property<Self>> {
        session_properties()
    }
}

impl SessionModel {
    /// Time reaches the run's deadline or the unregister's grace deadline.
    fn time_jump(&self, world: &mut World, action: Action) -> Option<()> {
        let (deadline, said) = if action == Action::Deadline {
            let deadline = world.machine.current_run()?.deadline_at;
            let said =
                world.env.executing.map_or(Said::Nothing, |run| Said::Seen(Observation::DeadlinePassed { run: run.0 }));
            (deadline, said)
        } else {
            (world.machine.registration().grace_deadline()?, Said::Seen(Observation::GraceExpired))
        };
        world.env.spent.time_jumps += 1;
        world.env.now = world.env.now.max(deadline.0);
        self.step_said(world, SessionEvent::Tick, &said).map(drop)
    }

    /// A background operation is registered and starts: a detached job, whose end wakes the session though nothing
    /// waits on it (a background tool's end does the same; the operations model draws the other kinds' rules).
    fn operation_start(&self, world: &mut World) -> Option<()> {
        world.env.spent.operations += 1;
        let spec = OperationSpec::new(OperationKind::DetachedJob, "job");
        self.step(world, SessionEvent::Operation(OpEvent::Register { spec }))?;
        // Two calls, one after the other: the register's save is performed before the provisioning is reported, as
        // the shell does it (the model would otherwise perform the later save first, and the store would keep the
        // earlier registry, which matters for a detached job a restart keeps only once it runs).
        while !world.env.pending.is_empty() {
            self.drive(world, true);
        }
        let op = world.env.operation?;
        if world.machine.moved().is_some() {
            // The register's save was fenced: the session moved to another host, and the caller's provisioning call
            // is refused NotOwner (which the machine's refusal rules check). The register stands as it happened.
            return Some(());
        }
        self.step(world, SessionEvent::Operation(OpEvent::ProvisioningSucceeded { op })).map(drop)
    }

    /// The background operation completes; a caller then lists the active inputs (a continuation may be there).
    fn operation_end(&self, world: &mut World) -> Option<()> {
        let op = world.env.operation.take()?;
        let result = OpResult { content: "done".into(), is_error: false };
        self.step(world, SessionEvent::Operation(OpEvent::Complete { op, result }))?;
        Self::list_active(world);
        Some(())
    }

    /// The store faults, crashes and hand-overs the budgets still allow.
    fn fault_actions(&self, world: &World, actions: &mut Vec<Action>) {
        let b = &self.bounds;
        let env = &world.env;
        if b.store && env.spent.store_faults < b.store_faults && !env.fault_armed {
            actions.push(Action::StoreFault);
        }
        if b.store && env.spent.crashes < b.crashes {
            actions.push(Action::Crash);
        }
        if b.store && !env.fenced && (env.lease_told || env.spent.moves < b.moves) {
            actions.push(Action::Fence);
        }
        // The lease loop takes the session's lock like a call: never in the middle of a drive.
        if b.store && env.pending.is_empty() && !env.lease_told && (env.fenced || env.spent.moves < b.moves) {
            actions.push(Action::LeaseLost);
        }
    }
}

/// The scalar part of an [`Env`]: what an action may change before the machine answers.
#[derive(Clone)]
struct Scalars {
    now: u64,
    executing: Option<RunId>,
    loop_generation: Option<Generation>,
    loop_woken: bool,
    loop_asleep: bool,
    drain: Option<DrainIncarnation>,
    respawn_pending: bool,
    fault_armed: bool,
    fenced: bool,
    lease_told: bool,
    spent: Spent,
    controls_used: u16,
    operation: Option<OperationId>,
}

impl Scalars {
    fn of(env: &Env) -> Scalars {
        Scalars {
            now: env.now,
            executing: env.executing,
            loop_generation: env.loop_generation,
            loop_woken: env.loop_woken,
            loop_asleep: env.loop_asleep,
            drain: env.drain,
            respawn_pending: env.respawn_pending,
            fault_armed: env.fault_armed,
            fenced: env.fenced,
            lease_told: env.lease_told,
            spent: env.spent,
            controls_used: env.controls_used,
            operation: env.operation,
        }
    }

    fn restore(self, env: &mut Env) {
        env.now = self.now;
        env.executing = self.executing;
        env.loop_generation = self.loop_generation;
        env.loop_woken = self.loop_woken;
        env.loop_asleep = self.loop_asleep;
        env.drain = self.drain;
        env.respawn_pending = self.respawn_pending;
        env.fault_armed = self.fault_armed;
        env.fenced = self.fenced;
        env.lease_told = self.lease_told;
        env.spent = self.spent;
        env.controls_used = self.controls_used;
        env.operation = self.operation;
    }
}

impl SessionModel {
    /// Performs `action` on `world` in place and says whether it was applied. A refused action leaves the world as
    /// it was, like [`Model::next_state`] returning `None`, without the clone per step `next_state` pays: every
    /// action but one applies at most one machine event before the machine can refuse, and a refused event changes
    /// nothing in the machine (the checker's "refused events change nothing"), so only the scalars of the
    /// environment need saving. The one exception, an operation start (register, then provisioning), keeps a whole
    /// copy. That a refused event really left the machine alone is not re-checked here; the checker checks it. The
    /// simulator's core mode steps worlds with this.
    pub fn try_advance(&self, world: &mut World, action: Action) -> bool {
        if action == Action::OperationStart {
            let before = world.clone();
            let applied = self.advance(world, action).is_some();
            if !applied {
                *world = before;
            }
            return applied;
        }
        let scalars = Scalars::of(&world.env);
        let deviated = world.env.history.deviation.is_some();
        let applied = self.advance(world, action).is_some();
        if !applied {
            // A refusal the specification does not allow is kept, so the driver sees it, as next_state keeps it.
            if !deviated && world.env.history.deviation.is_some() {
                return true;
            }
            scalars.restore(&mut world.env);
        }
        applied
    }
}

impl SessionModel {
    /// A client's accept of `kind`; with the AdmitAfterRetire defect, a retired session admits it anyway.
    fn accept(&self, world: &mut World, kind: Kind) -> Option<()> {
        let retired = world.machine.phase() == RuntimePhase::Retired;
        if !(retired && self.defect == Some(Defect::AdmitAfterRetire)) {
            return self.submit(world, kind, false);
        }
        // The defect: a retired session still admits (the phase is bypassed for this one accept).
        let saved = world.machine.phase_machine().clone();
        let attached = saved.executor_attached();
        let open = if attached { RuntimePhase::Attached } else { RuntimePhase::Idle };
        *world.machine.internals_mut().phase = PhaseMachine::from_parts_unchecked(open, None, false, attached);
        let admitted = self.submit(world, kind, false);
        *world.machine.internals_mut().phase = saved;
        admitted
    }

    /// The loop task polls: it runs, sleeps until a wake reaches it, or exits (and the machine learns it is gone).
    fn poll(&self, world: &mut World) -> Option<()> {
        let generation = world.env.loop_generation?;
        world.env.loop_woken = false;
        let live = world.machine.registration().phase() == RegistrationPhase::Active { generation };
        let reply = if live { Some(self.step(world, SessionEvent::Poll)?) } else { None };
        world.env.loop_asleep = matches!(reply, Some(Reply::Park));
        let exit = !live || matches!(reply, Some(Reply::Exit { .. }));
        if exit {
            observe(world, Observation::ExecutorReleased);
            world.env.loop_asleep = false;
            world.env.loop_generation = None;
            self.step(world, SessionEvent::LoopExited { generation });
        }
        Some(())
    }

    /// The executor answers the run it holds with `outcome`, reported through the core's table.
    fn executor(&self, world: &mut World, outcome: Outcome) -> Option<()> {
        let run = world.env.executing.take()?;
        let reported = |report| Observed::Reported { report, snapshot: None };
        let observed = match outcome {
            Outcome::Ok => reported(RunReport::Result(RunResult { output: "r".into() })),
            Outcome::NoResult => reported(RunReport::NoResult),
            Outcome::Callback => reported(RunReport::CallbackPending { tool: "t".into(), args: String::new() }),
            Outcome::CallbackBatch => {
                let call = |tool: &str| PendingCallback { tool: tool.into(), args: String::new() };
                reported(RunReport::CallbackBatchPending { calls: vec![call("t"), call("u")] })
            }
            Outcome::Fail => Observed::ExecutorFailed("e".into()),
            Outcome::Panic => Observed::ExecutorPanicked("p".into()),
        };
        let report = match outcome {
            Outcome::Ok => Report::Result,
            Outcome::NoResult => Report::NoResult,
            Outcome::Callback => Report::Callback,
            Outcome::CallbackBatch => Report::CallbackBatch,
            Outcome::Fail => Report::Failed,
            Outcome::Panic => Report::Panicked,
        };
        let event = feedback(Subject::Run(run), observed).expect("a run's answer").expect("is reported");
        self.step_said(world, event, &Said::Seen(Observation::Reported { run: run.0, report }))?;
        if self.defect == Some(Defect::ReapplyCommitted) && world.machine.current_run().is_none() {
            Self::reapply_committed(world);
        }
        Some(())
    }

    /// Performs `action` on `world` in place; `None` when the machine refused it (the world may then have been
    /// partly changed: callers that need the old world keep a copy, as `next_state` does, or use
    /// [`SessionModel::try_advance`], which restores it).
    pub fn advance(&self, world: &mut World, action: Action) -> Option<()> {
        let between = matches!(action, Action::Perform | Action::StoreFault | Action::Fence | Action::Crash);
        if !world.env.pending.is_empty() && !between {
            return None;
        }
        match action {
            Action::Perform => {
                if world.env.pending.is_empty() {
                    return None;
                }
                self.drive(world, true);
            }
            Action::Accept(kind) => self.accept(world, kind)?,
            Action::AcceptQuiet => self.submit(world, Kind::Prompt, true)?,
            Action::AcceptAndRun => {
                let said = Said::AcceptAndRun(observe::submission(Kind::Prompt, false, true));
                self.step_said(world, SessionEvent::AcceptAndRun { spec: Kind::Prompt.spec() }, &said)?;
                world.env.spent.inputs += 1;
            }
            Action::Attach => {
                world.env.spent.attaches += 1;
                self.step_said(world, SessionEvent::BeginAttach, &Said::Call(Call::Attach))?;
            }
            Action::Poll => self.poll(world)?,
            Action::Executor(outcome) => self.executor(world, outcome)?,
            Action::Control(control) => self.control(world, control)?,
            Action::StoreFault => {
                world.env.spent.store_faults += 1;
                world.env.fault_armed = true;
            }
            Action::Fence => {
                if !world.env.lease_told {
                    world.env.spent.moves += 1;
                }
                world.env.fenced = true;
            }
            Action::LeaseLost => self.lease_lost(world, burrow_core::lease::LossReason::Expired.session_event())?,
            Action::Crash => self.crash(world)?,
            Action::Deadline | Action::Grace => self.time_jump(world, action)?,
            Action::OperationStart => self.operation_start(world)?,
            Action::OperationEnd => self.operation_end(world)?,
            Action::InboxNotify => self.drain_event(world, DrainEvent::InboxNotified)?,
            Action::DrainPark => {
                let incarnation = world.env.drain?;
                self.drain_event(world, DrainEvent::ParkRequested { incarnation })?;
            }
            Action::DrainFail => {
                let incarnation = world.env.drain.take()?;
                let event = DrainEvent::Exited { incarnation, reason: DrainExitReason::Failed };
                self.drain_event(world, event)?;
            }
            Action::DrainRespawn => {
                world.env.respawn_pending = false;
                self.drain_event(world, DrainEvent::Respawn)?;
            }
        }
        Some(())
    }
}

/// Feeds `observation` to the specification; the first one it does not allow is kept, and nothing after it is fed.
fn observe(world: &mut World, observation: Observation) {
    if world.env.history.deviation.is_some() {
        return;
    }
    if let Err(deviation) = world.spec.observe(&observation) {
        world.env.history.deviation =
            Some(format!("{observation:?} breaks \"{}\": {}", deviation.rule, deviation.detail));
    }
}

/// Why a world breaks the specification, in words: the observation and the rule, or the liveness rule that failed.
#[must_use]
pub fn explain(world: &World) -> Option<String> {
    if let Some(panicked) = &world.env.history.panicked {
        return Some(panicked.clone());
    }
    if let Some(deviation) = &world.env.history.deviation {
        return Some(deviation.clone());
    }
    let unmet = quiescent(world).then(|| world.spec.quiescent().err()).flatten()?;
    Some(format!("at quiescence, \"{}\": {}", unmet.rule, unmet.detail))
}

/// Nothing will happen without a new call: the executor holds no run and the loop sleeps unwoken or is gone.
#[must_use]
pub fn quiescent(w: &World) -> bool {
    let env = &w.env;
    env.pending.is_empty()
        && env.executing.is_none()
        && (env.loop_generation.is_none() || (env.loop_asleep && !env.loop_woken))
}

fn session_properties() -> Vec<Property<SessionModel>> {
    vec![
        Property::always(NO_PANIC, |_, w: &World| w.env.history.panicked.is_none()),
        Property::always("every observation is allowed by the specification", |_, w: &World| {
            w.env.history.deviation.is_none()
        }),
        Property::always("at quiescence the specification's liveness holds", |_, w: &World| {
            !quiescent(w) || w.spec.quiescent().is_ok()
        }),
        Property::always("spec 6 invariants hold", |_, w: &World| invariants::check(&w.machine).is_ok()),
        Property::always("waiter resolved at most once", |_, w: &World| {
            !w.env.history.unknown_waiter && w.env.waiters.values().all(|c| c.received <= 1)
        }),
        Property::always("no input applied again after its boundary committed", |_, w: &World| {
            !w.env.history.applied_twice
        }),
        Property::always("no input staged more than max_attempts times", |m: &SessionModel, w: &World| {
            w.env.staged.values().all(|n| *n <= m.bounds.max_attempts)
        }),
        Property::always("refused events change nothing", |_, w: &World| !w.env.history.refusal_changed_state),
        Property::always("a session without a store asks for no write", |_, w: &World| {
            !w.env.history.write_without_store
        }),
        Property::always("the machine takes every result of its own effects", |_, w: &World| {
            !w.env.history.feedback_refused
        }),
        Property::sometimes("retire drains queued work", |_, w: &World| w.env.history.retire_drained),
        Property::sometimes("a dedup join resolves both callers", |_, w: &World| dedup_join_resolved(w)),
        Property::sometimes("a key that left memory is recalled from the store and deduplicates", |_, w: &World| {
            w.env.history.recalled_key_deduplicated
        }),
        Property::sometimes("a crash recovers a staged input", |_, w: &World| w.env.history.crash_requeued_staged),
        Property::sometimes("a fenced write tells the waiters the session moved", |_, w: &World| {
            w.env.history.fence_told_moved
        }),
        Property::sometimes("a hand-over brings back an input the old owner acknowledged", |_, w: &World| {
            w.env.history.handover_kept_input
        }),
        Property::sometimes("a poison input is abandoned at max attempts", |_, w: &World| {
            w.machine
                .ledger()
                .history()
                .any(|r| matches!(r.state, InputState::Abandoned(AbandonReason::MaxAttemptsExhausted { .. })))
        }),
        Property::sometimes("a deferred stop takes effect after the run", |_, w: &World| {
            w.env.history.stop_deferred && w.machine.phase() == RuntimePhase::Stopped
        }),
        Property::sometimes("recycle keeps a pending waiter", |_, w: &World| w.env.history.recycle_kept_waiter),
        Property::sometimes("an unregister commits", |_, w: &World| {
            w.machine.registration().phase() == RegistrationPhase::Unregistered
        }),
        Property::sometimes("a background operation wakes its idle session", |_, w: &World| {
            w.machine
                .ledger()
                .history()
                .chain(w.machine.ledger().active())
                .any(|r| r.spec.kind == InputKind::Continuation && r.spec.durability == Durability::Ephemeral)
        }),
        Property::sometimes("a recovery ends a derived input rather than replay it", |_, w: &World| {
            w.machine.ledger().history().any(|r| {
                r.state == burrow_core::input::InputState::Abandoned(burrow_core::input::AbandonReason::Rederived)
            })
        }),
    ]
}

fn dedup_join_resolved(w: &World) -> bool {
    let mut resolved: BTreeMap<InputId, usize> = BTreeMap::new();
    for c in w.env.waiters.values() {
        if c.received == 1 {
            *resolved.entry(c.input).or_default() += 1;
        }
    }
    resolved.values().any(|n| *n >= 2)
}
