//! Mistakes planted in the shell on purpose, each small and realistic (none panics), so that the simulator's
//! checks can show they catch what they are meant to. A runtime runs one when its [`crate::RuntimeConfig`] names it,
//! which only a build with the `planted` feature can do; normal builds never select one.

/// A planted mistake of the shell.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ShellDefect {
    /// The session's `WakeLoop` effect is dropped: a parked loop never learns that work arrived.
    LostWake,
    /// A store write that failed is reported to the machine as landed.
    WriteErrorIgnored,
    /// Only the first waiter of an input is told its outcome; the channels of callers who joined it are dropped.
    FirstWaiterOnly,
    /// An executor's error is recorded as a run that completed without a result.
    FailureAsNoResult,
    /// The timer of a run's deadline is never armed: an executor that never answers holds the session forever.
    NoDeadlineTimer,
    /// A lifecycle commit that changes no input row (a retire, a stop, a destroy, a registration change) is
    /// acknowledged without being written, as if only input rows needed the store.
    InputlessLifecycleSkipped,
    /// A lifecycle commit that closes the session (retired, stopped, destroyed) and changes no input row is
    /// acknowledged without being written, as if a closed session had nothing left worth keeping.
    ClosingPhaseSkipped,
    /// An acknowledgement of the completion feed is passed on as if its cursor were exclusive: the entry it names
    /// stays unacknowledged, and a consumer reading after its cursor never sees it again.
    AcknowledgeExclusive,
    /// Dropping the runtime leaves its sessions alone: live loops run on unowned and peer drains keep their
    /// sessions, and the waiters in them, alive.
    DropForgetsSessions,
    /// A notice made while an earlier one is still unread is dropped rather than queued, as if the subscribers'
    /// channel held one notice: a busy subscriber misses it and is not told.
    NoticeDroppedWhenBusy,
    /// A fleet host goes on driving a session after its lease ran out, as if the lease were only for claiming: it
    /// stops only when the store refuses a write or a renewal.
    LeaseIgnored,
}

impl ShellDefect {
    /// Every planted mistake.
    pub const ALL: [ShellDefect; 11] = [
        ShellDefect::LostWake,
        ShellDefect::WriteErrorIgnored,
        ShellDefect::FirstWaiterOnly,
        ShellDefect::FailureAsNoResult,
        ShellDefect::NoDeadlineTimer,
        ShellDefect::InputlessLifecycleSkipped,
        ShellDefect::ClosingPhaseSkipped,
        ShellDefect::AcknowledgeExclusive,
        ShellDefect::DropForgetsSessions,
        ShellDefect::NoticeDroppedWhenBusy,
        ShellDefect::LeaseIgnored,
    ];
}
