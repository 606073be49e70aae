//! burrow-sim: seeded simulation of burrow (SPEC 6; DESIGN "The simulator").
//!
//! This crate has the core mode so far: a seeded discrete-event driver over burrow-core alone. Each seed draws its
//! own workload shape and fault rates (swarm testing), then picks one enabled action at a time from the same
//! action set and environment as the model checker (`burrow_model::session`), steps the real `SessionMachine` in
//! place, and checks every safety property of the model after every step. A liveness phase follows with faults off:
//! the loop polls and the executor succeeds until nothing is left to do, and then every caller must have its answer
//! and every queue of a live session must be empty. Every step is a line of the trace; the same seed yields the
//! same trace, byte for byte, which a sweep re-checks by hashing.

#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub)]

use std::hash::{Hash, Hasher};

use burrow_core::phase::RuntimePhase;
use burrow_core::registration::RegistrationPhase;
use burrow_env::rand::SeededRng;
use burrow_model::session::{Action, Bounds, Control, Defect, Kind, Outcome, SessionModel, World};
use stateright::{Expectation, Model, Property};

/// The workload and fault rates one seed draws.
#[derive(Clone, Debug, PartialEq)]
pub struct Shape {
    /// The model bounds (budgets) of the safety phase.
    pub bounds: Bounds,
    /// Steps of the safety phase.
    pub steps: u32,
    /// Weight of fault actions (store faults, crashes, executor failures and panics) against the rest, 0..1.
    pub fault_rate: f64,
}

impl Shape {
    /// Draws a shape from `rng`.
    pub fn draw(rng: &mut SeededRng) -> Shape {
        let inputs = 2 + rng.gen_range(0..40) as u8;
        let bounds = Bounds {
            inputs,
            waiters: inputs,
            crashes: rng.gen_range(0..3) as u8,
            store_faults: rng.gen_range(0..4) as u8,
            time_jumps: rng.gen_range(0..3) as u8,
            attaches: 1 + rng.gen_range(0..3) as u8,
            operations: rng.gen_range(0..3) as u8,
            drain_events: rng.gen_range(0..6) as u8,
            max_attempts: 1 + rng.gen_range(0..3) as u32,
            kinds: Kind::ALL.to_vec(),
            controls: Control::ALL.to_vec(),
            control_calls: rng.gen_range(0..5) as u8,
            outcomes: vec![Outcome::Ok, Outcome::NoResult, Outcome::Callback, Outcome::Fail, Outcome::Panic],
            comms: rng.gen_bool(0.5),
        };
        Shape { bounds, steps: 20 + rng.gen_range(0..200) as u32, fault_rate: rng.next_f64() * 0.5 }
    }
}

/// How a run ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Every oracle held.
    Clean,
    /// A safety property failed after a step.
    Safety {
        /// The property.
        property: &'static str,
        /// The step after which it failed (1-based).
        step: usize,
    },
    /// The liveness phase ended with work or callers left.
    Liveness {
        /// What was left.
        what: String,
    },
}

/// One seed's run.
#[derive(Clone, Debug)]
pub struct Run {
    /// The seed.
    pub seed: u64,
    /// The verdict.
    pub verdict: Verdict,
    /// The trace, one line per step.
    pub trace: Vec<String>,
    /// Actions taken (events).
    pub events: u64,
}

impl Run {
    /// A hash of the trace, for the determinism re-check.
    #[must_use]
    pub fn trace_hash(&self) -> u64 {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        self.trace.hash(&mut hasher);
        hasher.finish()
    }

    /// The one line that reproduces this run.
    #[must_use]
    pub fn repro(&self) -> String {
        format!("cargo run --release -p burrow-sim -- run --mode core --seed {}", self.seed)
    }
}

fn is_fault(action: &Action) -> bool {
    matches!(
        action,
        Action::StoreFault
            | Action::Crash
            | Action::Executor(Outcome::Fail | Outcome::Panic)
            | Action::DrainFail
            | Action::Deadline
            | Action::Grace
    )
}

/// Runs one seed in core mode. `defect` plants a bug (teeth tests).
#[must_use]
pub fn run_core(seed: u64, defect: Option<Defect>) -> Run {
    let mut rng = SeededRng::from_seed(seed);
    let shape = Shape::draw(&mut rng);
    let mut model = SessionModel::new(shape.bounds.clone());
    model.defect = defect;
    let safety: Vec<_> = model.properties().into_iter().filter(|p| p.expectation == Expectation::Always).collect();
    let mut world = model.initial();
    let mut trace = Vec::with_capacity(shape.steps as usize + 32);
    let mut actions = Vec::new();
    let mut events = 0u64;
    for step in 1..=shape.steps as usize {
        actions.clear();
        model.actions(&world, &mut actions);
        if actions.is_empty() {
            break;
        }
        let (faults, rest): (Vec<Action>, Vec<Action>) = actions.iter().partition(|a| is_fault(a));
        let pool =
            if !faults.is_empty() && (rest.is_empty() || rng.gen_bool(shape.fault_rate)) { faults } else { rest };
        let action = pool[rng.gen_range(0..pool.len() as u64) as usize];
        let mut next = world.clone();
        let applied = model.advance(&mut next, action).is_some();
        events += 1;
        if applied {
            world = next;
        }
        trace.push(format!("{step} {action:?}{}", if applied { "" } else { " refused" }));
        if let Some(property) = violated(&model, &safety, &world) {
            return Run { seed, verdict: Verdict::Safety { property, step }, trace, events };
        }
    }
    // Liveness: no faults, a healthy executor, the loop keeps polling, until nothing is left to do.
    for step in 0..10_000 {
        let progress = progress_action(&world);
        let Some(action) = progress else { break };
        let mut next = world.clone();
        let applied = model.advance(&mut next, action).is_some();
        events += 1;
        trace.push(format!("live {step} {action:?}{}", if applied { "" } else { " refused" }));
        if !applied {
            break;
        }
        world = next;
        if let Some(property) = violated(&model, &safety, &world) {
            let step = trace.len();
            return Run { seed, verdict: Verdict::Safety { property, step }, trace, events };
        }
    }
    let verdict = match liveness_left(&world) {
        None => Verdict::Clean,
        Some(what) => Verdict::Liveness { what },
    };
    Run { seed, verdict, trace, events }
}

/// The first safety property `world` breaks, if any.
fn violated(model: &SessionModel, safety: &[Property<SessionModel>], world: &World) -> Option<&'static str> {
    safety.iter().find(|p| !(p.condition)(model, world)).map(|p| p.name)
}

/// The next step that makes progress without faults, if any.
fn progress_action(world: &World) -> Option<Action> {
    let m = &world.machine;
    let env = &world.env;
    if let (Some(run), Some(current)) = (env.executing, m.current_run()) {
        if current.id == run && current.report.is_none() {
            return Some(Action::Executor(Outcome::Ok));
        }
    }
    if m.registration().phase() == RegistrationPhase::Unregistering && m.registration().grace_deadline().is_some() {
        if env.loop_generation.is_some() {
            return Some(Action::Poll);
        }
        return Some(Action::Grace);
    }
    let live = matches!(m.registration().phase(), RegistrationPhase::Queuing | RegistrationPhase::Active { .. });
    let can_run = live && !matches!(m.phase(), RuntimePhase::Stopped | RuntimePhase::Destroyed);
    if env.loop_generation.is_none() && can_run && m.ledger().has_queued() {
        return Some(Action::Attach);
    }
    if env.loop_generation.is_some() && env.executing.is_none() && m.current_run().is_none() {
        let generation = env.loop_generation?;
        let parked_idle = m.loop_parked() && !m.ready_to_run() && !env.loop_woken;
        let active = m.registration().phase() == RegistrationPhase::Active { generation };
        if !parked_idle || !active {
            return Some(Action::Poll);
        }
        if !m.quiet_inputs().is_empty() || m.ready_to_run() {
            return Some(Action::Poll);
        }
    }
    None
}

/// What the liveness phase left undone, if anything.
///
/// No run may be in flight. On a live session (registered, not stopped or destroyed) nothing selectable may be
/// left, and a caller may still wait only on an input that was admitted quietly (it waits for the next wake by
/// design). On a session that ended, every caller has its answer.
fn liveness_left(world: &World) -> Option<String> {
    let m = &world.machine;
    if let Some(run) = m.current_run() {
        return Some(format!("run {} is still in flight", run.id));
    }
    let live = matches!(m.registration().phase(), RegistrationPhase::Queuing | RegistrationPhase::Active { .. })
        && !matches!(m.phase(), RuntimePhase::Stopped | RuntimePhase::Destroyed);
    if live && m.ready_to_run() && world.env.loop_generation.is_some() {
        return Some(format!("{} inputs stranded with a live loop", m.ledger().active_len()));
    }
    for (waiter, client) in world.env.waiters.iter().filter(|(_, c)| c.received == 0) {
        let booked = m.waiters().iter().find(|(_, w)| w == waiter).map(|(input, _)| input);
        let quiet = booked.is_some_and(|input| m.quiet_inputs().contains(&input));
        if !live || !quiet {
            return Some(format!("caller {waiter} (input {}) still waits", client.input));
        }
    }
    None
}
