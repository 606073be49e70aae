//! The attach/unregister race (SPEC 2.6, specs/registration.md): two clients attach and unregister one session
//! concurrently, with every interleaving of their steps and of the loops they spawn, against the real
//! `SessionMachine`.
//!
//! An attach is two steps, as in the shell: BeginAttach, then (the loop having been spawned) AttachCompleted or
//! AttachFailed. Each spawned loop is a task that may exit at any time; an unregister waits for the loop, the drain
//! and the waiters, or for the grace tick.

use burrow_core::ids::{EpochId, Generation, Millis};
use burrow_core::invariants;
use burrow_core::protocol::{Observed, Subject, feedback};
use burrow_core::registration::{Obligation, RegistrationEffect, RegistrationPhase};
use burrow_core::session::{Effect, SessionConfig, SessionEvent, SessionMachine};
use stateright::{Model, Property};

use crate::{NO_PANIC, contained};

/// A client's step.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RaceAction {
    /// Client `c` begins an attach.
    BeginAttach(u8),
    /// Client `c`'s spawned loop is up.
    AttachCompleted(u8),
    /// Client `c`'s spawn failed.
    AttachFailed(u8),
    /// Client `c` begins an unregister.
    Unregister(u8),
    /// Client `c` prepares (registers again).
    Prepare(u8),
    /// The loop of generation `g` exits.
    LoopExits(u64),
    /// The drain reports it stopped.
    DrainStopped,
    /// The grace period passes.
    Grace,
}

/// One client's progress.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Client {
    /// Attaches begun.
    pub attaches: u8,
    /// An attach of this client is between its two steps.
    pub attaching: bool,
    /// Unregisters begun.
    pub unregisters: u8,
    /// Prepares made.
    pub prepares: u8,
}

/// The race's state.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RaceWorld {
    /// burrow-core's session machine.
    pub machine: SessionMachine,
    /// The two clients.
    pub clients: [Client; 2],
    /// Generations of loops spawned and not yet exited.
    pub loops: Vec<Generation>,
    /// A register during an unregister was refused.
    pub register_refused_while_unregistering: bool,
    /// An attach lost the single-flight race.
    pub attach_refused_in_flight: bool,
    /// Time.
    pub now: u64,
    /// The action during which the checked code panicked, and the panic's message.
    pub panicked: Option<String>,
}

/// The race model.
#[derive(Clone, Debug)]
pub struct RaceModel {
    /// Attaches per client.
    pub attaches: u8,
    /// Unregisters per client.
    pub unregisters: u8,
    /// Prepares per client.
    pub prepares: u8,
}

impl RaceModel {
    fn apply(world: &mut RaceWorld, event: SessionEvent) -> bool {
        match world.machine.apply(Millis(world.now), event) {
            Ok(fx) => {
                let mut queue = fx.effects;
                while !queue.is_empty() {
                    let mut next = Vec::new();
                    for effect in queue {
                        match effect {
                            Effect::Registration(RegistrationEffect::SpawnLoop { binding }) => {
                                world.loops.push(binding.generation);
                            }
                            Effect::Registration(RegistrationEffect::AbortLoop { generation }) => {
                                world.loops.retain(|g| *g != generation);
                            }
                            Effect::Registration(RegistrationEffect::CommitReady) => {
                                if let Ok(fx) =
                                    world.machine.apply(Millis(world.now), result(Subject::CommitReady, Observed::Done))
                                {
                                    next.extend(fx.effects);
                                }
                            }
                            _ => {}
                        }
                    }
                    queue = next;
                }
                true
            }
            Err(_) => false,
        }
    }
}

impl Model for RaceModel {
    type State = RaceWorld;
    type Action = RaceAction;

    fn init_states(&self) -> Vec<RaceWorld> {
        let mut machine = SessionMachine::new(burrow_core::ids::SessionId(1), SessionConfig::default());
        let _ = machine.apply(Millis(0), SessionEvent::Prepare { epoch: EpochId(1) }).expect("prepares");
        vec![RaceWorld {
            machine,
            clients: [Client::default(); 2],
            loops: Vec::new(),
            register_refused_while_unregistering: false,
            attach_refused_in_flight: false,
            now: 0,
            panicked: None,
        }]
    }

    fn actions(&self, world: &RaceWorld, actions: &mut Vec<RaceAction>) {
        if world.panicked.is_some() {
            return;
        }
        for c in 0..2u8 {
            let client = world.clients[c as usize];
            if client.attaching {
                actions.push(RaceAction::AttachCompleted(c));
                actions.push(RaceAction::AttachFailed(c));
            } else if client.attaches < self.attaches {
                actions.push(RaceAction::BeginAttach(c));
            }
            if client.unregisters < self.unregisters {
                actions.push(RaceAction::Unregister(c));
            }
            if client.prepares < self.prepares {
                actions.push(RaceAction::Prepare(c));
            }
        }
        actions.extend(world.loops.iter().map(|g| RaceAction::LoopExits(g.0)));
        if world.machine.registration().open_obligations().contains(&Obligation::StopDrain) {
            actions.push(RaceAction::DrainStopped);
        }
        if world.machine.registration().grace_deadline().is_some() && world.now == 0 {
            actions.push(RaceAction::Grace);
        }
    }

    fn next_state(&self, last: &RaceWorld, action: RaceAction) -> Option<RaceWorld> {
        contained(|| self.step(last, action)).unwrap_or_else(|message| {
            let mut world = last.clone();
            world.panicked = Some(format!("{action:?} panicked: {message}"));
            Some(world)
        })
    }

    fn properties(&self) -> Vec<Property<Self>> {
        race_properties()
    }
}

impl RaceModel {
    fn step(&self, last: &RaceWorld, action: RaceAction) -> Option<RaceWorld> {
        let mut w = last.clone();
        match action {
            RaceAction::BeginAttach(c) => {
                w.clients[c as usize].attaches += 1;
                let before = w.machine.registration().phase();
                if Self::apply(&mut w, SessionEvent::BeginAttach) {
                    w.clients[c as usize].attaching = true;
                } else if matches!(before, RegistrationPhase::Attaching { .. }) {
                    w.attach_refused_in_flight = true;
                }
            }
            RaceAction::AttachCompleted(c) => {
                w.clients[c as usize].attaching = false;
                Self::apply(&mut w, result(Subject::LoopSpawn, Observed::Spawned));
            }
            RaceAction::AttachFailed(c) => {
                w.clients[c as usize].attaching = false;
                // The spawn did not happen after all: its loop never ran.
                if let RegistrationPhase::Attaching { generation } = w.machine.registration().phase() {
                    if Self::apply(&mut w, result(Subject::LoopSpawn, Observed::Missing)) {
                        w.loops.retain(|g| *g != generation);
                    }
                }
            }
            RaceAction::Unregister(c) => {
                w.clients[c as usize].unregisters += 1;
                Self::apply(&mut w, SessionEvent::BeginUnregister);
            }
            RaceAction::Prepare(c) => {
                w.clients[c as usize].prepares += 1;
                let unregistering = w.machine.registration().phase() == RegistrationPhase::Unregistering;
                if !Self::apply(&mut w, SessionEvent::Prepare { epoch: EpochId(1) }) && unregistering {
                    w.register_refused_while_unregistering = true;
                }
            }
            RaceAction::LoopExits(g) => {
                w.loops.retain(|x| x.0 != g);
                Self::apply(&mut w, SessionEvent::LoopExited { generation: Generation(g) });
            }
            RaceAction::DrainStopped => {
                Self::apply(&mut w, result(Subject::DrainStop, Observed::Done));
            }
            RaceAction::Grace => {
                w.now = w.machine.registration().grace_deadline()?.0;
                Self::apply(&mut w, SessionEvent::Tick);
            }
        }
        Some(w)
    }
}

fn race_properties() -> Vec<Property<RaceModel>> {
    vec![
        Property::always(NO_PANIC, |_, w: &RaceWorld| w.panicked.is_none()),
        Property::always("spec 6 invariants hold", |_, w: &RaceWorld| invariants::check(&w.machine).is_ok()),
        Property::always("at most one live loop is current", |_, w: &RaceWorld| {
            let current = match w.machine.registration().phase() {
                RegistrationPhase::Active { generation } => Some(generation),
                _ => None,
            };
            current.is_none_or(|g| w.loops.iter().filter(|l| **l == g).count() <= 1)
        }),
        Property::always("an unregister commits only after its loop stopped or was aborted", |_, w: &RaceWorld| {
            w.machine.registration().phase() != RegistrationPhase::Unregistered || w.loops.is_empty()
        }),
        Property::sometimes("an unregister commits", |_, w: &RaceWorld| {
            w.machine.registration().phase() == RegistrationPhase::Unregistered
        }),
        Property::sometimes("a concurrent attach is refused in flight", |_, w: &RaceWorld| w.attach_refused_in_flight),
        Property::sometimes("a register during unregister is refused", |_, w: &RaceWorld| {
            w.register_refused_while_unregistering
        }),
        Property::sometimes("a session registers again after unregister", |_, w: &RaceWorld| {
            w.clients.iter().any(|c| c.prepares > 0)
                && matches!(w.machine.registration().phase(), RegistrationPhase::Queuing)
                && w.machine.binding().is_some_and(|b| b.generation.0 > 0)
        }),
    ]
}

/// The event that reports `observed` for `subject`, from the core's table: the clients here perform the spawn and the
/// drain's stop, and report them as any driver does.
fn result(subject: Subject, observed: Observed) -> SessionEvent {
    feedback(subject, observed).expect("a result of its effect").expect("reported by an event")
}
