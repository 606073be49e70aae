//! The scenario of the full and tokio modes: what happens, and when, drawn from a seed.
//!
//! A scenario is plain data, so it can be written to a file, replayed, and shrunk by [`crate::minimize`]. The seed
//! draws it with a pinned generator ([`burrow_env::rand::SeededRng`]), and swarm testing applies: each seed draws its
//! own mix of step kinds, executor behaviours and fault rates, so some seeds hammer control calls, others crashes or
//! store failures, others long quiet runs.

use burrow_env::rand::SeededRng;
use serde::{Deserialize, Serialize};

/// Everything one run of the full or tokio mode does.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Scenario {
    /// The seed it was drawn from; under madsim it also seeds the scheduler.
    pub seed: u64,
    /// Sessions (ids 1..=sessions).
    pub sessions: u8,
    /// Attempts each input gets.
    pub max_attempts: u32,
    /// A run's deadline, in ticks.
    pub run_deadline: u64,
    /// Sessions with peer ingress.
    pub comms: bool,
    /// Store writes that fail during the safety phase, per thousand.
    pub write_failure_permille: u32,
    /// How long a store write takes, in ticks.
    pub store_latency: u64,
    /// What happens, in order; each step waits its gap after it starts.
    pub steps: Vec<Timed>,
    /// A crash aimed at one store write (counted across the run's processes), if any.
    #[serde(default)]
    pub aim: Option<Aim>,
    /// How the executors answer when asked to stop and to clean up.
    #[serde(default)]
    pub teardown: Teardown,
    /// Ended inputs each session keeps in memory (`SessionConfig::history_max`): small, keys leave memory and are
    /// recalled from the store (specs/input.md#recall).
    #[serde(default = "history_default")]
    pub history_max: usize,
}

fn history_default() -> usize {
    burrow_core::input::TERMINAL_HISTORY_MAX
}

/// How an executor answers `stop` and `cleanup_after_stop`: at once, slowly, or never.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Teardown {
    /// Both return at once.
    #[default]
    Prompt,
    /// Both take this many ticks.
    Slow(u64),
    /// `stop` never returns.
    StopHangs,
    /// `cleanup_after_stop` never returns.
    CleanupHangs,
}

/// Where an aimed crash lands: at the `write`-th store write of the aimed kind after the first process started
/// (counted across the processes that follow), before it lands or after it is durable but before its writer learns
/// so. A crash between two writes of one drive is the crash before the second.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Aim {
    /// The write, counting from 1.
    pub write: u32,
    /// The write lands first (durable, never acknowledged); else it never lands.
    pub durable: bool,
    /// Which writes are counted.
    #[serde(default)]
    pub at: AimAt,
}

/// The kind of store write an aimed crash counts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum AimAt {
    /// An accepted input's row, or a run's boundary (receipt and inputs).
    #[default]
    InputOrBoundary,
    /// A lifecycle row (phase, registration, binding, changed inputs, a run's start record).
    Lifecycle,
    /// The operations registry.
    Operations,
}

/// A step and the gap before the next one.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Timed {
    /// Ticks to wait after starting the step (the step itself runs concurrently).
    pub gap: u64,
    /// The step.
    pub step: Step,
}

/// One thing a caller, the executor's world or the environment does.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Step {
    /// Submit an input.
    Accept {
        /// The session (1-based).
        session: u8,
        /// The input's kind.
        kind: Kind,
        /// Durable (else ephemeral).
        durable: bool,
        /// Idempotency key, from a small pool so that duplicates happen.
        key: Option<u8>,
        /// Supersession key, from a small pool.
        supersede: Option<u8>,
        /// What the executor does when this input leads a run.
        act: Act,
        /// How the caller waits for the outcome (none: fire and forget).
        wait: Wait,
        /// Submit without waking the loop.
        quiet: bool,
    },
    /// accept_and_run with a body that behaves like `act`.
    AcceptAndRun {
        /// The session.
        session: u8,
        /// What the body does.
        act: Act,
    },
    /// A control call.
    Control {
        /// The session.
        session: u8,
        /// The call.
        call: Call,
    },
    /// A call on the session's operations registry.
    Op {
        /// The session.
        session: u8,
        /// The call.
        call: OpCall,
    },
    /// Peer messages arrive in the session's inbox.
    Peer {
        /// The session.
        session: u8,
        /// How many.
        messages: u8,
    },
    /// The process dies (store writes in flight are lost) and a new one restarts every session from the store.
    Crash,
    /// The service drops its runtime while callers wait and loops run; once everything settled, a new process
    /// restarts every session from the store.
    Shutdown,
    /// Store writes start (or stop) failing at the scenario's rate.
    StoreFaults {
        /// Whether writes fail from now on.
        on: bool,
    },
}

/// Input kinds a scenario submits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Kind {
    /// A prompt.
    Prompt,
    /// An external event.
    Event,
    /// A flow step.
    FlowStep,
    /// A peer message.
    PeerMessage,
    /// A peer request.
    PeerRequest,
    /// Progress of a peer response (coalescing within its request; the step's supersession group is its request).
    PeerProgress,
    /// The terminal reply to a peer request (supersedes its pending progress), drawn by `with_terminal_replies`.
    PeerTerminal,
    /// A Derived external event (written like a durable one, ended rather than replayed by a recovery), drawn by
    /// `with_derived_events`.
    DerivedEvent,
    /// A continuation.
    Continuation,
    /// An operation record (consumed on accept).
    Operation,
    /// A prompt in the steer lane.
    Steer,
}

/// What the executor does in a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Act {
    /// Returns a result after this many ticks.
    Ok(u64),
    /// Returns no result after this many ticks.
    NoResult(u64),
    /// Stops at a callback.
    Callback,
    /// Returns an error.
    Fail,
    /// Panics.
    Panic,
    /// Never returns (the run ends by its deadline, an interrupt or a cancel).
    Block,
}

/// How a caller awaits a completion handle.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Wait {
    /// No handle asked for.
    None,
    /// `wait`.
    Wait,
    /// `wait_timeout` with this many ticks (a timeout is a caller giving up, not a violation).
    Timeout(u64),
    /// `wait_with_cleanup`.
    Cleanup,
    /// The handle is dropped at once.
    Drop,
}

/// Control calls.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Call {
    /// stop_executor.
    Stop,
    /// retire.
    Retire,
    /// reset.
    Reset,
    /// recycle.
    Recycle,
    /// recover.
    Recover,
    /// destroy.
    Destroy,
    /// unregister.
    Unregister,
    /// interrupt of the current run.
    Interrupt,
    /// cancel_after_boundary.
    CancelAfterBoundary,
    /// attach_executor (a re-attach, a revive or a repair).
    Attach,
    /// Two attach_executor calls at once.
    ConcurrentAttach,
    /// detach_executor.
    Detach,
    /// wake.
    Wake,
    /// The loop task dies the way a crash would take it.
    KillLoop,
    /// publish_event, with the step's number as its payload (drawn by `with_ambient_calls`).
    Publish,
    /// set_comms_enabled(false).
    CommsOff,
    /// set_comms_enabled(true).
    CommsOn,
    /// abort_drain.
    AbortDrain,
}

/// Operations calls; `op` picks one of the session's registered operations (modulo their count).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum OpCall {
    /// register (a background tool) then provisioning_succeeded.
    Register,
    /// complete.
    Complete(u8),
    /// fail.
    Fail(u8),
    /// cancel.
    Cancel(u8),
    /// register_watcher, then await it.
    Watch(u8),
    /// wait_all over every registered operation, awaited.
    WaitAll,
    /// terminate_owner.
    TerminateOwner,
    /// The session's consumer reads the completion feed after its cursor and acknowledges what it read.
    Consume,
}

const KINDS: [Kind; 9] = [
    Kind::Prompt,
    Kind::Event,
    Kind::FlowStep,
    Kind::PeerMessage,
    Kind::PeerRequest,
    Kind::PeerProgress,
    Kind::Continuation,
    Kind::Operation,
    Kind::Steer,
];

const CALLS: [Call; 14] = [
    Call::Stop,
    Call::Retire,
    Call::Reset,
    Call::Recycle,
    Call::Recover,
    Call::Destroy,
    Call::Unregister,
    Call::Interrupt,
    Call::CancelAfterBoundary,
    Call::Attach,
    Call::ConcurrentAttach,
    Call::Detach,
    Call::Wake,
    Call::KillLoop,
];

/// Picks an index by weight.
/// The idempotency key of a burst's accepts (the other steps draw keys below it).
const BURST_KEY: u8 = 9;

fn weighted(rng: &mut SeededRng, weights: &[u64]) -> usize {
    let total: u64 = weights.iter().sum();
    let mut draw = rng.gen_range(0..total.max(1));
    for (i, w) in weights.iter().enumerate() {
        if draw < *w {
            return i;
        }
        draw -= w;
    }
    weights.len() - 1
}

impl Scenario {
    /// The scenario seed `seed` draws: about 50 inputs over 1 to 3 sessions, with the seed's own mix.
    #[must_use]
    pub fn generate(seed: u64) -> Scenario {
        let mut rng = SeededRng::from_seed(seed ^ 0x5eed_f011);
        let sessions = 1 + rng.gen_range(0..3) as u8;
        let comms = rng.gen_bool(0.5);
        // Swarm: this seed's weights of step kinds (accept, accept_and_run, control, op, peer, crash, fault toggle).
        let w_control = [0, 2, 6, 12][rng.gen_range(0..4) as usize];
        let w_ops = [0, 3, 8][rng.gen_range(0..3) as usize];
        let w_peer = if comms { [0, 4][rng.gen_range(0..2) as usize] } else { 0 };
        let w_crash = [0, 0, 1, 2][rng.gen_range(0..4) as usize];
        let w_inline = [0, 2][rng.gen_range(0..2) as usize];
        let faulty_store = rng.gen_bool(0.5);
        let w_faults = if faulty_store { 2 } else { 0 };
        let step_weights = [40, w_inline, w_control, w_ops, w_peer, w_crash, w_faults];
        // Executor behaviours: ok, no result, callback, fail, panic, block.
        let act_weights = [
            30,
            [0, 4][rng.gen_range(0..2) as usize],
            [0, 3][rng.gen_range(0..2) as usize],
            [0, 3, 8][rng.gen_range(0..3) as usize],
            [0, 2][rng.gen_range(0..2) as usize],
            [0, 0, 1][rng.gen_range(0..3) as usize],
        ];
        let latency_max = [1, 5, 30][rng.gen_range(0..3) as usize];
        let gap_max = [1, 4, 20][rng.gen_range(0..3) as usize];
        let steps_n = 30 + rng.gen_range(0..50) as usize;
        let mut steps = Vec::with_capacity(steps_n);
        let session = |rng: &mut SeededRng| 1 + rng.gen_range(0..sessions as u64) as u8;
        for _ in 0..steps_n {
            let act = |rng: &mut SeededRng| match weighted(rng, &act_weights) {
                0 => Act::Ok(rng.gen_range(0..latency_max)),
                1 => Act::NoResult(rng.gen_range(0..latency_max)),
                2 => Act::Callback,
                3 => Act::Fail,
                4 => Act::Panic,
                _ => Act::Block,
            };
            let step = match weighted(&mut rng, &step_weights) {
                0 => {
                    let kind = KINDS[weighted(&mut rng, &[20, 3, 3, 2, 2, 2, 1, 1, 2])];
                    Step::Accept {
                        session: session(&mut rng),
                        kind,
                        durable: rng.gen_bool(0.8),
                        key: rng.gen_bool(0.25).then(|| rng.gen_range(0..6) as u8),
                        supersede: rng.gen_bool(0.15).then(|| rng.gen_range(0..3) as u8),
                        act: act(&mut rng),
                        wait: match weighted(&mut rng, &[2, 6, 1, 1, 1]) {
                            0 => Wait::None,
                            1 => Wait::Wait,
                            2 => Wait::Timeout(rng.gen_range(1..200)),
                            3 => Wait::Cleanup,
                            _ => Wait::Drop,
                        },
                        quiet: rng.gen_bool(0.1),
                    }
                }
                1 => Step::AcceptAndRun { session: session(&mut rng), act: act(&mut rng) },
                2 => Step::Control {
                    session: session(&mut rng),
                    call: CALLS[rng.gen_range(0..CALLS.len() as u64) as usize],
                },
                3 => {
                    let op = rng.gen_range(0..4) as u8;
                    let call = match weighted(&mut rng, &[4, 3, 1, 1, 2, 1, 1]) {
                        0 => OpCall::Register,
                        1 => OpCall::Complete(op),
                        2 => OpCall::Fail(op),
                        3 => OpCall::Cancel(op),
                        4 => OpCall::Watch(op),
                        5 => OpCall::WaitAll,
                        _ => OpCall::TerminateOwner,
                    };
                    Step::Op { session: session(&mut rng), call }
                }
                4 => Step::Peer { session: session(&mut rng), messages: 1 + rng.gen_range(0..3) as u8 },
                5 => Step::Crash,
                _ => Step::StoreFaults { on: rng.gen_bool(0.5) },
            };
            steps.push(Timed { gap: rng.gen_range(0..gap_max), step });
        }
        Scenario {
            seed,
            sessions,
            max_attempts: 1 + rng.gen_range(0..3) as u32,
            run_deadline: 100 + rng.gen_range(0..400),
            comms,
            write_failure_permille: if faulty_store { 20 + rng.gen_range(0..200) as u32 } else { 0 },
            store_latency: rng.gen_range(0..3),
            steps,
            // Drawn last, so the rest of a seed's scenario does not depend on it.
            aim: rng.gen_bool(0.3).then(|| Aim {
                write: 1 + rng.gen_range(0..30) as u32,
                durable: rng.gen_bool(0.5),
                at: AimAt::InputOrBoundary,
            }),
            teardown: match weighted(&mut rng, &[14, 2, 2, 2]) {
                0 => Teardown::Prompt,
                1 => Teardown::Slow(1 + rng.gen_range(0..300)),
                2 => Teardown::StopHangs,
                _ => Teardown::CleanupHangs,
            },
            history_max: history_default(),
        }
        .aimed_at(&mut rng)
        .with_burst(&mut rng)
        // From a generator of its own, so the shapes it adds leave the rest of the seed as it was drawn before them.
        .with_consumers_and_shutdown(&mut SeededRng::from_seed(seed ^ 0xe47e_0ded))
        .with_history(&mut SeededRng::from_seed(seed ^ 0x4157_0e11))
        .with_ambient_calls(&mut SeededRng::from_seed(seed ^ 0x9b1c_a115))
        .with_terminal_replies(&mut SeededRng::from_seed(seed ^ 0x7e4a_11ed))
        .with_derived_events(&mut SeededRng::from_seed(seed ^ 0xde41_7ed0))
    }

    /// From a generator of its own, drawn last (so the rest of the seed stays as it was drawn before): in one seed in
    /// two, each durable external event becomes a Derived one with odds of one in two.
    fn with_derived_events(mut self, rng: &mut SeededRng) -> Scenario {
        if rng.gen_bool(0.5) {
            return self;
        }
        for timed in &mut self.steps {
            if let Step::Accept { kind: kind @ Kind::Event, durable: true, .. } = &mut timed.step {
                if rng.gen_bool(0.5) {
                    *kind = Kind::DerivedEvent;
                }
            }
        }
        self
    }

    /// From a generator of its own, drawn last (so the rest of the seed stays as it was drawn before): in one seed in
    /// two, each peer-response progress becomes its request's terminal reply with odds of one in three.
    fn with_terminal_replies(mut self, rng: &mut SeededRng) -> Scenario {
        if rng.gen_bool(0.5) {
            return self;
        }
        for timed in &mut self.steps {
            if let Step::Accept { kind: kind @ Kind::PeerProgress, .. } = &mut timed.step {
                if rng.gen_range(0..3) == 0 {
                    *kind = Kind::PeerTerminal;
                }
            }
        }
        self
    }

    /// From a generator of its own, drawn last (so the rest of the seed stays as it was drawn before): one seed in
    /// three gets two to six calls that change no input, at random points: publish_event, and with comms turning
    /// comms off and on and aborting the drain.
    fn with_ambient_calls(mut self, rng: &mut SeededRng) -> Scenario {
        if rng.gen_range(0..3) != 0 {
            return self;
        }
        let calls: &[Call] = if self.comms {
            &[Call::Publish, Call::CommsOff, Call::CommsOn, Call::AbortDrain]
        } else {
            &[Call::Publish]
        };
        for _ in 0..2 + rng.gen_range(0..5) {
            let at = rng.gen_range(0..self.steps.len() as u64 + 1) as usize;
            let session = 1 + rng.gen_range(0..u64::from(self.sessions)) as u8;
            let call = calls[rng.gen_range(0..calls.len() as u64) as usize];
            self.steps.insert(at, Timed { gap: rng.gen_range(0..5), step: Step::Control { session, call } });
        }
        self
    }

    /// From a generator of its own, drawn last (so the rest of the seed stays as it was drawn before): one seed in
    /// three keeps one to three ended inputs per session in memory, so a duplicate key is answered from the store.
    /// Such a seed submits its keyed inputs durable: an ephemeral input's key is kept only while the history holds
    /// it, a bound the specification does not follow (specs/observable.md).
    fn with_history(mut self, rng: &mut SeededRng) -> Scenario {
        if rng.gen_range(0..3) != 0 {
            return self;
        }
        self.history_max = 1 + rng.gen_range(0..3) as usize;
        for timed in &mut self.steps {
            if let Step::Accept { key: Some(_), durable, .. } = &mut timed.step {
                *durable = true;
            }
        }
        self
    }

    /// Drawn after everything else, so the rest of the scenario does not depend on it: a seed with operations
    /// steps gets one to four consumers of a session's completion feed at random points, and one seed in eight
    /// drops its runtime at a random point.
    fn with_consumers_and_shutdown(mut self, rng: &mut SeededRng) -> Scenario {
        let op_sessions: Vec<u8> = self
            .steps
            .iter()
            .filter_map(|t| match t.step {
                Step::Op { session, .. } => Some(session),
                _ => None,
            })
            .collect();
        if !op_sessions.is_empty() {
            for _ in 0..1 + rng.gen_range(0..4) {
                let at = rng.gen_range(0..self.steps.len() as u64 + 1) as usize;
                let session = op_sessions[rng.gen_range(0..op_sessions.len() as u64) as usize];
                let step = Step::Op { session, call: OpCall::Consume };
                self.steps.insert(at, Timed { gap: rng.gen_range(0..5), step });
            }
        }
        if rng.gen_bool(0.125) {
            let at = rng.gen_range(0..self.steps.len() as u64 + 1) as usize;
            self.steps.insert(at, Timed { gap: 1, step: Step::Shutdown });
        }
        self
    }

    /// One seed in five gets a burst, drawn after everything else: at one point, with no gap between them, either
    /// 66 to 73 accepts of one idempotency key with a handle each (past the bound on handles per input), or 17 to
    /// 40 steer accepts (past the bound on inputs per run).
    fn with_burst(mut self, rng: &mut SeededRng) -> Scenario {
        if !rng.gen_bool(0.2) {
            return self;
        }
        let at = rng.gen_range(0..self.steps.len() as u64 + 1) as usize;
        let session = 1 + rng.gen_range(0..u64::from(self.sessions)) as u8;
        let joins = rng.gen_bool(0.5);
        let (n, kind, key) = if joins {
            (66 + rng.gen_range(0..8), Kind::Prompt, Some(BURST_KEY))
        } else {
            (17 + rng.gen_range(0..24), Kind::Steer, None)
        };
        let durable = rng.gen_bool(0.8);
        let burst = (0..n).map(|_| Timed {
            gap: 0,
            step: Step::Accept {
                session,
                kind,
                durable,
                key,
                supersede: None,
                act: Act::Ok(rng.gen_range(0..5)),
                // Every join asks for a handle, so the bound on handles per input is passed.
                wait: if joins || rng.gen_bool(0.8) { Wait::Wait } else { Wait::None },
                quiet: false,
            },
        });
        let burst: Vec<Timed> = burst.collect();
        self.steps.splice(at..at, burst);
        self
    }

    /// Which writes the aimed crash counts, drawn after everything else so the rest of the scenario does not
    /// depend on it.
    fn aimed_at(mut self, rng: &mut SeededRng) -> Scenario {
        if let Some(aim) = &mut self.aim {
            aim.at = match weighted(rng, &[2, 2, 1]) {
                0 => AimAt::InputOrBoundary,
                1 => AimAt::Lifecycle,
                _ => AimAt::Operations,
            };
            if aim.at == AimAt::Operations {
                // Operations writes are few: aim at one of the first.
                aim.write = 1 + (aim.write - 1) % 6;
            }
        }
        self
    }

    /// Inputs the scenario submits (accepts, inline runs and peer messages).
    #[must_use]
    pub fn inputs(&self) -> usize {
        self.steps
            .iter()
            .map(|t| match t.step {
                Step::Accept { .. } | Step::AcceptAndRun { .. } => 1,
                Step::Peer { messages, .. } => usize::from(messages),
                _ => 0,
            })
            .sum()
    }

    /// The scenario as pretty JSON.
    #[must_use]
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a scenario always serialises")
    }

    /// A scenario from JSON.
    ///
    /// # Errors
    /// If the text is not a scenario.
    pub fn from_json(text: &str) -> Result<Scenario, String> {
        serde_json::from_str(text).map_err(|e| format!("not a scenario: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seed_draws_the_same_scenario_and_seeds_differ() {
        assert_eq!(Scenario::generate(7), Scenario::generate(7));
        assert_ne!(Scenario::generate(7), Scenario::generate(8));
    }

    #[test]
    fn some_seeds_burst_past_the_waiter_and_batch_bounds() {
        use burrow_core::completion::WAITERS_PER_INPUT_MAX;
        use burrow_core::input::BATCH_INPUTS_MAX;
        let (mut joins, mut steers) = (0, 0);
        for seed in 0..100 {
            // The shapes drawn after the burst (feed consumers, the drop) may land inside it: left out here.
            let steps: Vec<Timed> = Scenario::generate(seed)
                .steps
                .into_iter()
                .filter(|t| !matches!(t.step, Step::Op { call: OpCall::Consume, .. } | Step::Shutdown))
                .collect();
            // The longest run of gapless accepts of one session and kind.
            let mut i = 0;
            while i < steps.len() {
                let Step::Accept { session, kind, key, .. } = steps[i].step else {
                    i += 1;
                    continue;
                };
                let same = steps[i..]
                    .iter()
                    .take_while(|t| {
                        matches!(t.step, Step::Accept { session: s, kind: k, key: y, .. } if s == session && k == kind && y == key)
                            && t.gap == 0
                    })
                    .count();
                if kind == Kind::Prompt && key == Some(BURST_KEY) && same > WAITERS_PER_INPUT_MAX {
                    joins += 1;
                }
                if kind == Kind::Steer && same > BATCH_INPUTS_MAX {
                    steers += 1;
                }
                i += same.max(1);
            }
        }
        assert!(joins >= 3 && steers >= 3, "in 100 seeds: {joins} join bursts, {steers} steer bursts");
    }

    #[test]
    fn scenarios_round_trip_through_json() {
        for seed in 0..50 {
            let scenario = Scenario::generate(seed);
            assert_eq!(Scenario::from_json(&scenario.to_json()).unwrap(), scenario);
        }
        assert!(Scenario::from_json("{}").is_err());
    }

    #[test]
    fn swarm_seeds_cover_every_step_kind() {
        let mut seen = [false; 8];
        for seed in 0..200 {
            for t in Scenario::generate(seed).steps {
                let i = match t.step {
                    Step::Accept { .. } => 0,
                    Step::AcceptAndRun { .. } => 1,
                    Step::Control { .. } => 2,
                    Step::Op { .. } => 3,
                    Step::Peer { .. } => 4,
                    Step::Crash => 5,
                    Step::StoreFaults { .. } => 6,
                    Step::Shutdown => 7,
                };
                seen[i] = true;
            }
        }
        assert_eq!(seen, [true; 8]);
    }
}
