//! The specification when the outside cannot tell what the store kept: a crash while a lifecycle write was asked
//! and not answered leaves two histories SPEC allows (the write landed, or it did not). [`SessionSpecs`] follows
//! each of them and drops one as soon as an observation contradicts it; an observation is a deviation only when no
//! history allows it.
//!
//! spec: specs/observable.md#unanswered-writes

use crate::observation::{Observation, Write};
use crate::session::{Deviation, SessionSpec, SpecConfig, Standing};

/// How many histories are followed at once. Each crash during an unanswered lifecycle write can double them and
/// the next observation that depends on the session's phase halves them again, so more than a few never live
/// together; a history past the bound is not followed (its observations would be judged by the others only).
pub const MAX_HISTORIES: usize = 16;

/// Every history of one session the observations so far allow.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionSpecs {
    histories: Vec<SessionSpec>,
}

impl SessionSpecs {
    /// A prepared session with no executor and nothing admitted: one history.
    #[must_use]
    pub fn new(config: SpecConfig) -> SessionSpecs {
        SessionSpecs { histories: vec![SessionSpec::new(config)] }
    }

    /// Judges the next observation against every history: those that do not allow it are dropped. If none allows
    /// it, the deviation of the first is returned and nothing changes.
    pub fn observe(&mut self, observation: &Observation) -> Result<(), Deviation> {
        let mut next: Vec<SessionSpec> = Vec::with_capacity(self.histories.len());
        let mut first = None;
        for history in &self.histories {
            for mut fork in history.forks(observation) {
                match fork.observe(observation) {
                    Ok(()) if next.len() < MAX_HISTORIES && !next.contains(&fork) => next.push(fork),
                    Ok(()) => {}
                    Err(deviation) => {
                        first.get_or_insert(deviation);
                    }
                }
            }
        }
        if next.is_empty() {
            return Err(first.expect("a history that allowed nothing has a deviation"));
        }
        self.histories = next;
        Ok(())
    }

    /// How many histories are still possible.
    #[must_use]
    pub fn histories(&self) -> usize {
        self.histories.len()
    }

    /// Whether some history holds a run that can still end.
    #[must_use]
    pub fn run_held(&self) -> bool {
        self.histories.iter().any(SessionSpec::run_held)
    }

    /// The standings the store may keep for the session, one per history (see [`SessionSpec::durable_standing`]).
    #[must_use]
    pub fn standings(&self) -> Vec<Standing> {
        self.histories.iter().map(SessionSpec::durable_standing).collect()
    }
}

impl SessionSpec {
    /// The histories an observation may continue: a crash during an unanswered lifecycle or operations write
    /// continues both the one where the write did not land and the one where it landed, unacknowledged.
    fn forks(&self, observation: &Observation) -> Vec<SessionSpec> {
        let mut forks = vec![self.clone()];
        if *observation != Observation::Crash {
            return forks;
        }
        for (unanswered, write) in
            [(self.writing_lifecycle(), Write::Lifecycle), (self.writing_operations(), Write::Operations)]
        {
            if !unanswered {
                continue;
            }
            let landed: Vec<SessionSpec> = forks
                .iter()
                .map(|fork| {
                    let mut landed = fork.clone();
                    let took = landed.observe(&Observation::Written { write, ok: true });
                    debug_assert!(took.is_ok(), "a write may always land");
                    landed
                })
                .collect();
            forks.extend(landed);
        }
        forks
    }
}
