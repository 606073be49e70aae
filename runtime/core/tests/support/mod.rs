//! A small driver for session-machine tests: every accepted event is followed
//! by the full invariant check, every refused event by a check that the machine
//! did not change.

#![allow(dead_code, unreachable_pub, unused_must_use)]

use burrow_core::completion::{OutcomeClass, RunResult};
use burrow_core::ids::{EpochId, InputId, Millis, RunId, SessionId, WaiterId};
use burrow_core::input::{Durability, InputKind, InputSpec};
use burrow_core::invariants;
use burrow_core::protocol::{Observed, Subject, feedback};
use burrow_core::session::{Effect, Effects, Refusal, Reply, RunReport, SessionConfig, SessionEvent, SessionMachine};

pub struct H {
    pub m: SessionMachine,
    pub now: u64,
}

impl H {
    /// A prepared session with no executor (Idle).
    pub fn prepared() -> H {
        H::prepared_with(SessionConfig::default())
    }

    pub fn prepared_with(config: SessionConfig) -> H {
        let mut h = H { m: SessionMachine::new(SessionId(1), config), now: 0 };
        h.ok(SessionEvent::Prepare { epoch: EpochId(7) });
        h
    }

    /// A prepared session with an executor attached and its loop parked.
    pub fn attached() -> H {
        let mut h = H::prepared();
        h.attach();
        h
    }

    pub fn attached_with(config: SessionConfig) -> H {
        let mut h = H::prepared_with(config);
        h.attach();
        h
    }

    pub fn attach(&mut self) {
        self.ok(SessionEvent::BeginAttach);
        self.ok(SessionEvent::AttachCompleted);
        let fx = self.ok(SessionEvent::Poll);
        assert_eq!(fx.reply, Reply::Park, "a fresh loop with nothing queued parks");
    }

    pub fn advance(&mut self, ms: u64) {
        self.now += ms;
    }

    /// Applies an event that must be accepted; checks every invariant after it. An input's durable write and a
    /// run's start record are taken as landed at once (their results go through the core's table), and the effects
    /// of those results are appended to the returned ones; a boundary commit is left to the test.
    pub fn ok(&mut self, event: SessionEvent) -> Effects {
        let name = event.name();
        let mut fx = self.apply_checked(name, event);
        let mut next = 0;
        while next < fx.effects.len() {
            let subject = Subject::of(&fx.effects[next]);
            next += 1;
            if matches!(subject, Subject::InputWrite(_) | Subject::LifecycleWrite { starts_run: Some(_) }) {
                let Some(result) = feedback(subject, Observed::Written).expect("a write's result") else { continue };
                let more = self.apply_checked(result.name(), result);
                fx.effects.extend(more.effects);
            }
        }
        fx
    }

    /// Applies one event that must be accepted and checks every invariant after it.
    pub fn apply_checked(&mut self, name: &str, event: SessionEvent) -> Effects {
        match self.m.apply(Millis(self.now), event) {
            Ok(fx) => {
                if let Err(v) = invariants::check(&self.m) {
                    panic!("invariant broken after {name}: {v}\nstate: {:#?}", self.m);
                }
                fx
            }
            Err(r) => panic!("{name} was refused: {r}"),
        }
    }

    /// Applies an event that must be refused; checks nothing changed.
    pub fn refused(&mut self, event: SessionEvent) -> Refusal {
        let before = self.m.clone();
        let name = event.name();
        match self.m.apply(Millis(self.now), event) {
            Ok(fx) => panic!("{name} was accepted: {fx:?}"),
            Err(r) => {
                assert_eq!(before, self.m, "refused {name} changed the machine");
                r
            }
        }
    }

    pub fn accept(&mut self, spec: InputSpec) -> (InputId, Option<WaiterId>) {
        let fx = self.ok(SessionEvent::Accept { spec, waiter: true, wake: true });
        match fx.reply {
            Reply::Accepted { input, waiter, .. } => (input, waiter),
            other => panic!("expected Accepted, got {other:?}"),
        }
    }

    pub fn prompt(&mut self) -> (InputId, WaiterId) {
        let (i, w) = self.accept(prompt());
        (i, w.expect("a waiter"))
    }

    /// The loop polls and must get a run.
    pub fn poll_run(&mut self) -> RunId {
        let fx = self.ok(SessionEvent::Poll);
        match fx.reply {
            Reply::Run(run) => run,
            other => panic!("expected a run, got {other:?}"),
        }
    }

    /// Runs `run` to a committed boundary with a result.
    pub fn succeed(&mut self, run: RunId, output: &str) -> Effects {
        let report = RunReport::Result(RunResult { output: output.into() });
        let fx = self.ok(SessionEvent::RunReported { run, report, snapshot: None });
        assert!(fx.effects.iter().any(|e| matches!(e, Effect::PersistBoundary { .. })));
        self.ok(SessionEvent::BoundaryCommitted { run })
    }

    pub fn fail(&mut self, run: RunId) -> Effects {
        self.ok(SessionEvent::RunFailed {
            run,
            error: burrow_core::completion::ErrorInfo::new(
                burrow_core::completion::FailureCause::ExecutorFailed,
                "boom",
            ),
        })
    }
}

pub fn prompt() -> InputSpec {
    InputSpec::new(InputKind::Prompt)
}

pub fn ephemeral(kind: InputKind) -> InputSpec {
    InputSpec::new(kind).durability(Durability::Ephemeral)
}

/// (input, waiters, class) of every ResolveWaiters effect.
pub fn resolutions(fx: &Effects) -> Vec<(InputId, Vec<WaiterId>, Option<OutcomeClass>)> {
    fx.effects
        .iter()
        .filter_map(|e| match e {
            Effect::ResolveWaiters { input, waiters, resolution, .. } => {
                Some((*input, waiters.clone(), resolution.as_ref().ok().map(|o| o.class())))
            }
            _ => None,
        })
        .collect()
}

/// The class the waiters of `input` received in `fx`.
pub fn class_of(fx: &Effects, input: InputId) -> Option<OutcomeClass> {
    resolutions(fx).into_iter().find(|(i, _, _)| *i == input).and_then(|(_, _, c)| c)
}

pub fn has(fx: &Effects, name: &str) -> bool {
    fx.names().contains(&name)
}
