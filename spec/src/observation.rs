//! The vocabulary of the specification: what the outside of a session sees. Callers make calls and get answers; the
//! executor is handed runs and reports them; the store takes writes that succeed or fail; waiters receive outcomes;
//! the process crashes. Nothing here names a state of the implementation.

use std::fmt;

use crate::operations::OpObservation;

/// An input id as a caller sees it in an accept's answer.
pub type InputRef = u64;
/// A run id as the executor sees it.
pub type RunRef = u64;
/// A completion handle, by a number the driver gives it.
pub type WaiterRef = u64;

/// The kinds of SPEC 2.2.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// A prompt.
    Prompt,
    /// An external event.
    ExternalEvent,
    /// A flow step.
    FlowStep,
    /// A peer message.
    PeerMessage,
    /// A peer request; `silent` when its intent is in the session's silent list.
    PeerRequest {
        /// Queued with no wake.
        silent: bool,
    },
    /// Progress of a peer response to a request (coalesces with an earlier pending one of the same request).
    PeerResponseProgress {
        /// The request, by a number standing for its id.
        request: u64,
    },
    /// The terminal reply to a request (supersedes the pending progress of the same request).
    PeerResponseTerminal {
        /// The request, by a number standing for its id.
        request: u64,
    },
    /// A continuation (steer lane).
    Continuation,
    /// An operation record (consumed on accept, no run).
    Operation,
}

/// What a caller submits.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Submission {
    /// The kind.
    pub kind: Kind,
    /// Durable (persisted before the accept is acknowledged) or ephemeral.
    pub durable: bool,
    /// Derived (specs/input.md#derived): persisted like a durable input, but a recovery ends it rather than replay it.
    pub derived: bool,
    /// The idempotency key.
    pub idempotency_key: Option<String>,
    /// The supersession key.
    pub supersession_key: Option<String>,
    /// Put into the steer lane.
    pub steer: bool,
    /// False for accept_input_without_wake.
    pub wake: bool,
    /// The caller asked for a completion handle.
    pub waiter: bool,
}

impl Submission {
    /// A durable prompt with a handle and a wake.
    #[must_use]
    pub fn prompt() -> Submission {
        Submission::of(Kind::Prompt)
    }

    /// A durable input of `kind` with a handle and a wake, no keys.
    #[must_use]
    pub fn of(kind: Kind) -> Submission {
        Submission {
            kind,
            durable: true,
            derived: false,
            idempotency_key: None,
            supersession_key: None,
            steer: false,
            wake: true,
            waiter: true,
        }
    }

    /// In the steer lane: steered queue kinds and continuations.
    #[must_use]
    pub fn steers(&self) -> bool {
        self.steer || self.kind == Kind::Continuation
    }

    /// Whether the kind goes through a run at all (SPEC 2.2: an operation record is consumed on accept).
    #[must_use]
    pub fn runs(&self) -> bool {
        self.kind != Kind::Operation
    }

    /// Whether accepting it wakes the loop (SPEC 2.2: a silent peer request and a no-wake accept do not).
    #[must_use]
    pub fn wakes(&self) -> bool {
        self.wake && self.kind != (Kind::PeerRequest { silent: true }) && self.runs()
    }
}

/// Why a call was refused, as far as the caller can tell.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Refused {
    /// Admission is closed (phase or registration).
    Closed,
    /// A bound was reached (inputs, waiters).
    Full,
    /// The submission can never be admitted.
    Invalid,
    /// accept_and_run: the session is not idle with nothing active.
    Busy,
    /// accept_and_run: the idempotency key is known.
    Duplicate,
    /// The session moved to another host: this one takes no call for it.
    NotOwner,
    /// Any other refusal of a control call.
    Other,
}

/// The answer to an accept.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum AcceptAnswer {
    /// A new input; a handle when the caller asked and the input can end later.
    Accepted {
        /// Its id.
        input: InputRef,
        /// The handle.
        waiter: Option<WaiterRef>,
    },
    /// The key names a known input; a handle when it is still pending and the caller asked.
    Deduplicated {
        /// The input that owns the key.
        existing: InputRef,
        /// The handle, joining the existing input's outcome.
        waiter: Option<WaiterRef>,
    },
    /// Refused.
    Refused(Refused),
    /// The durable write failed: nothing was admitted.
    StoreFailed,
    /// The process died before answering: the input may or may not have been written.
    Lost,
    /// The store fenced the input's write: the session moved to another host, and nothing was admitted here.
    Moved,
}

/// A control call.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Call {
    /// attach_executor.
    Attach,
    /// detach_executor.
    Detach,
    /// stop_executor.
    Stop,
    /// retire.
    Retire,
    /// recycle.
    Recycle,
    /// reset.
    Reset,
    /// recover.
    Recover,
    /// destroy.
    Destroy,
    /// unregister (its first phase: admission closes).
    Unregister,
    /// interrupt the current run.
    Interrupt,
    /// cancel_after_boundary.
    CancelAfterBoundary,
    /// prepare: registers the session; after a committed unregister it registers it again (SPEC 2.6).
    Prepare,
}

/// The answer to a control call.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Answer {
    /// It took effect.
    Done,
    /// Nothing to do (already so).
    NoOp,
    /// stop_executor during a run: it takes effect at the run's end.
    Deferred,
    /// interrupt: this run was cancelled.
    Interrupted(RunRef),
    /// Refused.
    Refused(Refused),
}

/// What the executor reported for a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Report {
    /// A result.
    Result,
    /// No result.
    NoResult,
    /// A pending callback.
    Callback,
    /// Several callbacks pending at once.
    CallbackBatch,
    /// An error.
    Failed,
    /// A panic, contained.
    Panicked,
}

/// A store write, by what it records.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Write {
    /// A run's boundary: receipt and its inputs, atomically.
    Boundary(RunRef),
    /// The session's lifecycle: phase, binding, changed input rows.
    Lifecycle,
    /// The operations registry.
    Operations,
}

/// The outcome classes of SPEC 2.3, plus a waiter failed closed by a mismatch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Class {
    /// Completed with a result.
    Completed,
    /// Completed without a result.
    CompletedWithoutResult,
    /// A callback is pending.
    CallbackPending,
    /// Several callbacks are pending.
    CallbackBatchPending,
    /// Cancelled.
    Cancelled,
    /// Abandoned.
    Abandoned,
    /// Abandoned with an error.
    AbandonedWithError,
    /// The run completed but its commit failed: the result is withheld.
    CompletedWithFinalizationFailure,
    /// The runtime ended before the input could.
    RuntimeTerminated,
    /// The waiter failed closed: no outcome could be assembled.
    Mismatch,
    /// Not an outcome: the waiter was told the session moved to another host, where its input goes on.
    Moved,
}

impl Class {
    const ALL: [Class; 11] = [
        Class::Completed,
        Class::CompletedWithoutResult,
        Class::CallbackPending,
        Class::CallbackBatchPending,
        Class::Cancelled,
        Class::Abandoned,
        Class::AbandonedWithError,
        Class::CompletedWithFinalizationFailure,
        Class::RuntimeTerminated,
        Class::Mismatch,
        Class::Moved,
    ];

    fn bit(self) -> u16 {
        1 << (self as u16)
    }
}

/// A set of classes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Classes(u16);

impl Classes {
    /// No class.
    pub const NONE: Classes = Classes(0);

    /// One class.
    #[must_use]
    pub fn one(class: Class) -> Classes {
        Classes(class.bit())
    }

    /// This set and `class`.
    #[must_use]
    pub fn with(self, class: Class) -> Classes {
        Classes(self.0 | class.bit())
    }

    /// Both sets.
    #[must_use]
    pub fn union(self, other: Classes) -> Classes {
        Classes(self.0 | other.0)
    }

    /// Whether `class` is in the set.
    #[must_use]
    pub fn contains(self, class: Class) -> bool {
        self.0 & class.bit() != 0
    }

    /// Whether the set is empty.
    #[must_use]
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
}

impl fmt::Display for Classes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<String> = Class::ALL.iter().filter(|c| self.contains(**c)).map(|c| format!("{c:?}")).collect();
        if names.is_empty() { f.write_str("nothing") } else { f.write_str(&names.join(" or ")) }
    }
}

/// One thing the outside saw.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Observation {
    /// An accept (accept_input, accept_input_with_completion, accept_input_without_wake) and its answer.
    Accept {
        /// What was submitted.
        submission: Submission,
        /// The answer.
        answer: AcceptAnswer,
    },
    /// accept_and_run and its answer; an accepted input is run inline by the caller.
    AcceptAndRun {
        /// What was submitted.
        submission: Submission,
        /// The answer (never with a handle).
        answer: AcceptAnswer,
    },
    /// A control call and its answer.
    Call {
        /// The call.
        call: Call,
        /// The answer.
        answer: Answer,
    },
    /// The executor (or an accept_and_run caller, `inline`) was handed a run over these inputs, in this order.
    HandedOut {
        /// The run.
        run: RunRef,
        /// Its inputs.
        inputs: Vec<InputRef>,
        /// The run of an accept_and_run.
        inline: bool,
    },
    /// The executor reported a run.
    Reported {
        /// The run.
        run: RunRef,
        /// What it said.
        report: Report,
    },
    /// Time passed the deadline of the run the executor holds.
    DeadlinePassed {
        /// The run.
        run: RunRef,
    },
    /// The store was asked to record that these inputs start a run (their attempt counted before they are handed
    /// out): the next lifecycle write, if it lands, makes that attempt durable.
    Staged {
        /// The run.
        run: RunRef,
        /// Its inputs.
        inputs: Vec<InputRef>,
    },
    /// The store was asked for a write; until [`Observation::Written`] answers it, a crash leaves its fate
    /// unknown: it may have landed, or not (SPEC 5 promises only what was acknowledged).
    Writing {
        /// What it records.
        write: Write,
    },
    /// The store took or failed a write.
    Written {
        /// What it recorded.
        write: Write,
        /// It is durable.
        ok: bool,
    },
    /// A waiter received its outcome.
    Resolved {
        /// The handle.
        waiter: WaiterRef,
        /// The outcome's class.
        class: Class,
    },
    /// The process died; a new one restored the session from the store. After [`Observation::OwnershipLost`] this
    /// is the hand-over: another host claimed the session and restored it from the store.
    Crash,
    /// This host lost the session (spec: specs/observable.md#ownership): the store fenced `write` (`None`: an input's
    /// write, or no write: the lease ended). The write did not land. From here the host hands out no run, asks for
    /// no write, tells no input's fate, refuses every call, and answers every waiter it holds [`Class::Moved`].
    OwnershipLost {
        /// The write the store refused, if it was one of these.
        write: Option<Write>,
    },
    /// The loop released the executor (its stop, a detach, a destroy or an unregister ended it): nothing runs until
    /// an executor attaches again.
    ExecutorReleased,
    /// The unregister committed: the session is released until a prepare registers it again. What it still holds
    /// stays for that registration; admission stays closed until then (SPEC 2.6).
    Released,
    /// The runtime made the released session again from the store (a prepare of its id after the unregister
    /// committed): what the store kept comes back, as after a restart.
    Rebuilt,
    /// The unregister's grace period passed: the loop is aborted, and with it the run it held (SPEC 2.6).
    GraceExpired,
    /// list_active_inputs answered these ids.
    Active {
        /// The non-terminal inputs, in any order.
        inputs: Vec<InputRef>,
        /// Those of them the listing shows as Continuations (a listing names each input's kind).
        continuations: Vec<InputRef>,
    },
    /// A listing showed how many attempts an input has had (after [`Observation::Active`]).
    Attempts {
        /// The input.
        input: InputRef,
        /// Its attempts.
        attempts: u32,
    },
    /// What the outside of the session's operations registry saw (spec: specs/observable.md#operations).
    Op(OpObservation),
    /// Nothing will happen without a new call: no run is held and the loop sleeps or is gone.
    Quiescent,
    /// The session told its subscribers that an input was admitted (spec: specs/observable.md#notices).
    AdmissionTold {
        /// The input.
        input: InputRef,
        /// The notice names it a Continuation (one the session made itself, or a caller's).
        continuation: bool,
    },
    /// The session told its subscribers that an input ended, with the class its waiters received (`None`: the
    /// input has no outcome of its own).
    EndTold {
        /// The input.
        input: InputRef,
        /// The class.
        class: Option<Class>,
    },
}
