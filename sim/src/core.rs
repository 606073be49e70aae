//! The core mode: a seeded discrete-event driver over burrow-core alone.
//!
//! Each seed draws its own workload shape and fault rates (swarm testing), then picks one enabled action at a time
//! from the same action set and environment as the model checker (`burrow_model::session`), steps the real
//! `SessionMachine`, and checks every safety property of the model after every step. A liveness phase follows with
//! faults off: the loop polls and the executor succeeds until nothing is left to do, and then every caller must have
//! its answer and every queue of a live session must be empty. Every step is a line of the trace.
//!
//! The actions a seed chose can be replayed as a list ([`replay_core`]), which is how a model checker's
//! counterexample (a scenario file) runs here and how [`crate::minimize`] shrinks a failing seed.

use std::borrow::Cow;
use std::sync::OnceLock;

use burrow_core::ids::{InputId, RunId};
use burrow_core::input::TERMINAL_HISTORY_MAX;
use burrow_env::rand::SeededRng;
use burrow_model::session::{Action, Bounds, Control, Defect, Kind, Outcome, SessionModel, World};
use stateright::{Expectation, Model, Property};

use crate::Mode;
use crate::trace::{Line, Run, Verdict};

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
            moves: 0,
            time_jumps: rng.gen_range(0..3) as u8,
            attaches: 1 + rng.gen_range(0..3) as u8,
            operations: rng.gen_range(0..3) as u8,
            drain_events: rng.gen_range(0..6) as u8,
            max_attempts: 1 + rng.gen_range(0..3) as u32,
            kinds: Kind::ALL.to_vec(),
            controls: Control::ALL.to_vec(),
            control_calls: rng.gen_range(0..5) as u8,
            outcomes: Outcome::ALL.to_vec(),
            comms: rng.gen_bool(0.5),
            // One shape in five is an ephemeral runtime's session (no store, so no crash or store fault).
            store: rng.gen_range(0..5) != 0,
            history_max: TERMINAL_HISTORY_MAX,
        };
        Shape { bounds, steps: 20 + rng.gen_range(0..200) as u32, fault_rate: rng.next_f64() * 0.5 }
    }

    /// The shape seed `seed` draws: [`Shape::draw`] from the seed's generator, then how many ended inputs the
    /// session keeps in memory from a generator of its own (so the other draws, and the seeds that name them, stay
    /// where they were). Half the sessions with a store keep one to three, so keys leave memory and are recalled
    /// from the store (specs/input.md#recall); the rest keep the default. A session without a store forgets a key
    /// once its input leaves the history, which the specification does not follow (specs/observable.md), so those
    /// keep the default, far more than a scenario ends.
    #[must_use]
    pub fn of_seed(seed: u64) -> Shape {
        let mut shape = Shape::draw(&mut SeededRng::from_seed(seed));
        shape.bounds.history_max = history_max_of(seed, shape.bounds.store);
        shape.bounds.moves = moves_of(seed, shape.bounds.store);
        shape
    }
}

/// The history bound seed `seed` draws (see [`Shape::of_seed`]).
fn history_max_of(seed: u64, store: bool) -> usize {
    let mut rng = SeededRng::from_seed(seed ^ 0x0415_7e11);
    match rng.gen_range(0..6) {
        n @ 0..=2 if store => n as usize + 1,
        _ => TERMINAL_HISTORY_MAX,
    }
}

/// The hand-overs seed `seed` draws, from a generator of its own as [`history_max_of`]: one session with a store in
/// four moves to another host once (specs/session.md#ownership-moved); a crash then stands for the new owner's restore.
fn moves_of(seed: u64, store: bool) -> u8 {
    let mut rng = SeededRng::from_seed(seed ^ 0x6f77_6e65);
    u8::from(store && rng.gen_range(0..4) == 0)
}

fn is_fault(action: &Action) -> bool {
    matches!(
        action,
        Action::StoreFault
            | Action::Fence
            | Action::LeaseLost
            | Action::Crash
            | Action::Executor(Outcome::Fail | Outcome::Panic)
            | Action::DrainFail
            | Action::Deadline
            | Action::Grace
    )
}

/// Where the actions of a safety phase come from.
enum Source<'a> {
    /// Drawn from a seeded generator among the enabled ones.
    Seeded { rng: SeededRng, fault_rate: f64, steps: u32 },
    /// A given list, in order.
    Listed(&'a [Action]),
}

/// Runs one seed in core mode. `defect` plants a bug (teeth tests).
#[must_use]
pub fn run_core(seed: u64, defect: Option<Defect>) -> Run {
    run_core_with_actions(seed, defect).0
}

/// Runs one seed in core mode and also returns the actions its safety phase chose, in order.
#[must_use]
pub fn run_core_with_actions(seed: u64, defect: Option<Defect>) -> (Run, Vec<Action>) {
    let mut rng = SeededRng::from_seed(seed);
    let mut shape = Shape::draw(&mut rng);
    shape.bounds.history_max = history_max_of(seed, shape.bounds.store);
    shape.bounds.moves = moves_of(seed, shape.bounds.store);
    let source = Source::Seeded { rng, fault_rate: shape.fault_rate, steps: shape.steps };
    drive(seed, shape.bounds, defect, source, None)
}

/// Runs `actions` in order on a model with `bounds` (a refused action is traced and skipped), then the liveness
/// phase. `seed` only labels the run.
#[must_use]
pub fn replay_core(seed: u64, bounds: Bounds, defect: Option<Defect>, actions: &[Action]) -> Run {
    drive(seed, bounds, defect, Source::Listed(actions), None).0
}

/// [`replay_core`] with the session told after each step in the full mode's words (inputs accepted and ended, runs
/// handed out and ended, crashes and restarts), read off the machine: for the picture of a run
/// ([`crate::html`]), never for a verdict.
#[must_use]
pub fn replay_core_narrated(seed: u64, bounds: Bounds, defect: Option<Defect>, actions: &[Action]) -> Run {
    drive(seed, bounds, defect, Source::Listed(actions), Some(Narrator::default())).0
}

/// Seed `seed`'s core run, narrated as [`replay_core_narrated`] does; the verdict and the steps are the seed's own.
#[must_use]
pub fn run_core_narrated(seed: u64, defect: Option<Defect>) -> Run {
    let (_, actions) = run_core_with_actions(seed, defect);
    let mut run = replay_core_narrated(seed, Shape::of_seed(seed).bounds, defect, &actions);
    run.seed = seed;
    run
}

/// Tells what changed in the session after each step, in the words of the full mode's trace.
#[derive(Default)]
struct Narrator {
    /// Every input the ledger holds, with its kind and whether it ended.
    inputs: std::collections::BTreeMap<InputId, (&'static str, bool)>,
    /// The run handed out, with its inputs.
    run: Option<(RunId, String)>,
    /// Crashes so far.
    process: u32,
}

impl Narrator {
    fn tell(&mut self, action: Action, applied: bool, world: &World, t: u64, trace: &mut Vec<Line>) {
        let mut say = |what: String| trace.push(Line { t, what: Cow::Owned(what) });
        if applied && action == Action::Crash {
            self.process += 1;
            say(format!("process {} crashed", self.process - 1));
            say(format!("s1 start (process {})", self.process));
        }
        let held = world.machine.current_run().map(|run| {
            let ids: Vec<String> = run.inputs.iter().map(ToString::to_string).collect();
            (run.id, ids.join(", "))
        });
        if self.run.as_ref().map(|r| r.0) != held.as_ref().map(|r| r.0) {
            if let Some((run, ids)) = self.run.take() {
                let how = match action {
                    Action::Executor(Outcome::Fail | Outcome::Panic) => "err",
                    Action::Executor(_) => "ok",
                    _ => "ended",
                };
                say(format!("s1 run {run} [{ids}] {action:?} -> {how}"));
            }
            if let Some((run, ids)) = &held {
                say(format!("s1 run {run} [{ids}] handed to the executor"));
            }
            self.run = held;
        }
        let ledger = world.machine.ledger();
        let now: std::collections::BTreeMap<InputId, &burrow_core::input::InputRecord> =
            ledger.active().chain(ledger.history()).map(|r| (r.id, r)).collect();
        for (id, record) in &now {
            let ended = record.state.is_terminal();
            match self.inputs.get_mut(id) {
                None => {
                    let kind = record.spec.kind.name();
                    say(format!("s1 accept {kind} -> accepted {id}"));
                    if ended {
                        say(format!("s1 input {id} resolved {:?}", record.state));
                    }
                    self.inputs.insert(*id, (kind, ended));
                }
                Some((_, was)) if ended && !*was => {
                    *was = true;
                    say(format!("s1 input {id} resolved {:?}", record.state));
                }
                Some(_) => {}
            }
        }
        // An input the ledger no longer holds without having ended was lost with its process.
        let gone: Vec<InputId> =
            self.inputs.iter().filter(|(id, (_, ended))| !ended && !now.contains_key(id)).map(|(id, _)| *id).collect();
        for id in gone {
            say(format!("s1 input {id} resolved Lost"));
            self.inputs.remove(&id);
        }
    }
}

/// Every action of the session model, by its debug text (how scenario files name them).
#[must_use]
pub fn action_names() -> Vec<(String, Action)> {
    Action::all().into_iter().map(|a| (format!("{a:?}"), a)).collect()
}

fn drive(
    seed: u64,
    bounds: Bounds,
    defect: Option<Defect>,
    mut source: Source<'_>,
    mut narrator: Option<Narrator>,
) -> (Run, Vec<Action>) {
    let mut model = SessionModel::new(bounds);
    model.defect = defect;
    let safety: Vec<_> = model.properties().into_iter().filter(|p| p.expectation == Expectation::Always).collect();
    let mut world = model.initial();
    let mut trace = Vec::with_capacity(256);
    let mut chosen = Vec::new();
    let mut actions = Vec::new();
    let mut events = 0u64;
    let run = |verdict, trace, events| Run {
        mode: Mode::Core,
        seed,
        defect: defect.map(defect_name),
        verdict,
        trace,
        events,
    };
    let mut step = 0usize;
    loop {
        step += 1;
        let Some(action) = next_action(&mut source, step, &model, &world, &mut actions) else { break };
        chosen.push(action);
        let applied = model.try_advance(&mut world, action);
        events += 1;
        trace.push(Line { t: step as u64, what: action_text(action, applied, "") });
        if let Some(narrator) = &mut narrator {
            narrator.tell(action, applied, &world, step as u64, &mut trace);
        }
        if let Some(property) = violated(&model, &safety, &world) {
            explain_into(&world, &mut trace, step as u64);
            let verdict = Verdict::Safety { property: property.to_owned(), step };
            return (run(verdict, trace, events), chosen);
        }
    }
    // Liveness: no faults, a healthy executor, the loop keeps polling, until nothing is left to do.
    for live in 0..10_000u64 {
        let Some(action) = progress_action(&model, &world, &mut actions) else { break };
        let applied = model.try_advance(&mut world, action);
        events += 1;
        trace.push(Line { t: step as u64 + live, what: action_text(action, applied, "live ") });
        if let Some(narrator) = &mut narrator {
            narrator.tell(action, applied, &world, step as u64 + live, &mut trace);
        }
        if !applied {
            break;
        }
        if let Some(property) = violated(&model, &safety, &world) {
            let verdict = Verdict::Safety { property: property.to_owned(), step: trace.len() };
            explain_into(&world, &mut trace, step as u64 + live);
            return (run(verdict, trace, events), chosen);
        }
    }
    let verdict = match liveness_left(&world) {
        None => Verdict::Clean,
        Some(what) => Verdict::Liveness { what },
    };
    (run(verdict, trace, events), chosen)
}

/// The safety phase's next action: the next listed one, or one drawn among the enabled ones (a fault with the
/// seed's fault rate). `None` ends the phase.
fn next_action(
    source: &mut Source<'_>,
    step: usize,
    model: &SessionModel,
    world: &World,
    actions: &mut Vec<Action>,
) -> Option<Action> {
    match source {
        Source::Listed(list) => list.get(step - 1).copied(),
        Source::Seeded { rng, fault_rate, steps } => {
            if step > *steps as usize {
                return None;
            }
            actions.clear();
            model.actions(world, actions);
            if actions.is_empty() {
                return None;
            }
            let faults = actions.iter().filter(|a| is_fault(a)).count();
            let rest = actions.len() - faults;
            let pick_fault = faults > 0 && (rest == 0 || rng.gen_bool(*fault_rate));
            let pool = if pick_fault { faults } else { rest };
            let index = rng.gen_range(0..pool as u64) as usize;
            actions.iter().filter(|a| is_fault(a) == pick_fault).nth(index).copied()
        }
    }
}

/// Adds the specification's reason to a failing trace: the observation and the rule it broke.
fn explain_into(world: &World, trace: &mut Vec<Line>, t: u64) {
    if let Some(why) = burrow_model::session::explain(world) {
        trace.push(Line { t, what: Cow::Owned(format!("why: {why}")) });
    }
}

/// The trace text of a step: the action's debug text, after `prefix`, with " refused" when it was. Applied steps
/// borrow their text from a table built once, so the common step allocates nothing.
fn action_text(action: Action, applied: bool, prefix: &'static str) -> Cow<'static, str> {
    // Each action's text, plain and with the liveness phase's prefix.
    static TEXTS: OnceLock<Vec<(Action, &'static str, &'static str)>> = OnceLock::new();
    if applied && matches!(prefix, "" | "live ") {
        let texts = TEXTS.get_or_init(|| {
            let leak = |text: String| &*Box::leak(text.into_boxed_str());
            action_names()
                .into_iter()
                .map(|(name, action)| (action, leak(format!("live {name}")), leak(name)))
                .collect()
        });
        if let Some((_, live, plain)) = texts.iter().find(|(a, _, _)| *a == action) {
            return Cow::Borrowed(if prefix.is_empty() { plain } else { live });
        }
    }
    Cow::Owned(format!("{prefix}{action:?}{}", if applied { "" } else { " refused" }))
}

/// Reads a scenario file of the session model (a model checker counterexample, or a minimized core run) into the
/// bounds to replay it under and its actions.
///
/// # Errors
/// If the text is not a session-model scenario or names an unknown configuration or step.
pub fn scenario_actions(text: &str) -> Result<(Bounds, Vec<Action>), String> {
    let steps = burrow_model::scenario::parse(text)?;
    let model = text.lines().find_map(|l| l.strip_prefix("model ")).unwrap_or_default();
    let bounds = if let Some(seed) = model.strip_prefix("core-seed/") {
        Shape::of_seed(seed.parse().map_err(|_| format!("bad model line {model:?}"))?).bounds
    } else {
        let config = model
            .strip_prefix("session/")
            .ok_or_else(|| format!("only session-model scenarios replay in the simulator, not {model:?}"))?;
        burrow_model::profile::Profile::Deep
            .session_configs()
            .into_iter()
            .find(|(name, _)| *name == config)
            .map(|(_, bounds)| bounds)
            .ok_or_else(|| format!("no session configuration named {config:?}"))?
    };
    let names = action_names();
    let actions = steps
        .iter()
        .map(|step| {
            names.iter().find(|(n, _)| n == step).map(|(_, a)| *a).ok_or_else(|| format!("unknown step {step:?}"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok((bounds, actions))
}

/// The command-line name of a model defect.
#[must_use]
pub fn defect_name(defect: Defect) -> &'static str {
    match defect {
        Defect::ForgetWaitersOnReset => "forget-waiters-on-reset",
        Defect::ResetAttemptsOnRecovery => "reset-attempts-on-recovery",
        Defect::AdmitAfterRetire => "admit-after-retire",
        Defect::ReapplyCommitted => "reapply-committed",
        Defect::ReportWriteTwice => "report-write-twice",
    }
}

/// The model defect named `name` on the command line.
#[must_use]
pub fn parse_defect(name: &str) -> Option<Defect> {
    [
        Defect::ForgetWaitersOnReset,
        Defect::ResetAttemptsOnRecovery,
        Defect::AdmitAfterRetire,
        Defect::ReapplyCommitted,
        Defect::ReportWriteTwice,
    ]
    .into_iter()
    .find(|d| defect_name(*d) == name)
}

/// The first safety property `world` breaks, if any.
fn violated(model: &SessionModel, safety: &[Property<SessionModel>], world: &World) -> Option<&'static str> {
    safety.iter().find(|p| !(p.condition)(model, world)).map(|p| p.name)
}

/// The next step that makes progress without faults, if any: the drive in progress goes on, the executor answers the run it holds, the loop
/// polls when something woke it (never on the session's behalf), time reaches an unregister's grace deadline, and a
/// caller attaches an executor to a session that still holds work. Only what the model enables is taken.
fn progress_action(model: &SessionModel, world: &World, enabled: &mut Vec<Action>) -> Option<Action> {
    enabled.clear();
    model.actions(world, enabled);
    let wanted = [Action::Perform, Action::Executor(Outcome::Ok), Action::Poll, Action::Grace];
    if let Some(action) = wanted.into_iter().find(|a| enabled.contains(a)) {
        return Some(action);
    }
    (enabled.contains(&Action::Attach) && world.spec.live_inputs() > 0).then_some(Action::Attach)
}

/// What the liveness phase left undone, judged by the specification: the session must have settled (no run held,
/// the loop asleep or gone), and then the specification's liveness must hold (every caller owed an answer has it,
/// no selectable backlog waits beside an executor).
fn liveness_left(world: &World) -> Option<String> {
    if !burrow_model::session::quiescent(world) {
        let held = world.env.executing.map_or(String::new(), |run| format!(", run {run} held"));
        return Some(format!("the session did not settle{held}"));
    }
    let unmet = world.spec.quiescent().err()?;
    Some(format!("{}: {}", unmet.rule, unmet.detail))
}
