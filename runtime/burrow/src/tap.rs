//! A witness of what each session does at its edges, in the order the session does it.
//!
//! A conformance check (the simulator's full and tokio modes) judges a runtime by what its callers, its executor and
//! its store saw. Those see things concurrently: a caller learns its accept's answer after the session lock is
//! released, while the loop may already be handing the input to the executor. A [`Tap`] gives the order: it is told,
//! under the session's lock, each event the machine takes (with its answer and the effects it asked for), each effect
//! as it is performed, and what performing it observed. The checker turns these into observations of its own
//! vocabulary and compares their contents with what the callers and the executor actually received; the tap only
//! says when.
//!
//! A runtime without a tap (the usual case) pays one branch per event and effect.

use burrow_core::ids::SessionId;
use burrow_core::protocol::{Observed, Subject};
use burrow_core::session::{Effect, Refusal, Reply, SessionEvent, SessionMachine};

/// Which session told: its id, and which of the runtime's session objects for that id (an unregistered session
/// leaves the runtime, and preparing its id again makes a new one, while calls that reached the old one may still
/// be answered by it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Teller {
    /// The session.
    pub session: SessionId,
    /// The runtime's count of session objects made before this one.
    pub instance: u64,
}

/// Told what a session does, under its lock. Calls must be quick and must not call back into the runtime.
pub trait Tap: Send + Sync {
    /// The machine took `event` and answered `answer`, asking for `effects` (in the order they will be performed),
    /// or refused it.
    fn applied(&self, teller: Teller, event: &SessionEvent, answer: Result<&Reply, &Refusal>, effects: &[Effect]);

    /// `effect` is about to be performed.
    fn performing(&self, teller: Teller, effect: &Effect);

    /// Performing the effect of `subject` observed `observed` (a store write's result, a spawn, or plain done); the
    /// machine is told next.
    fn observed(&self, teller: Teller, subject: Subject, observed: &Observed);

    /// A drive ended (its event and every effect that followed from it are done), still under the lock: the machine
    /// as the next event will find it, for checks of its own invariants.
    fn settled(&self, teller: Teller, machine: &SessionMachine) {
        let _ = (teller, machine);
    }
}
