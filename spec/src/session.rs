//! The specification of one session, as a relation over observations: given what the outside saw so far,
//! [`SessionSpec::observe`] says whether the next observation is allowed, and [`Observation::Quiescent`] asks what
//! must have happened by the time nothing more will.
//!
//! Each rule cites the SPEC section it comes from. Where SPEC leaves a choice open (a reset's waiters may be told
//! Abandoned or RuntimeTerminated; an ended input whose record never reached the store may come back after a
//! restart), the relation allows every choice.
//!
//! spec: specs/observable.md

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use crate::observation::{
    AcceptAnswer, Answer, Call, Class, Classes, InputRef, Observation, Refused, Report, RunRef, Submission, WaiterRef,
    Write,
};
use crate::operations::{OpAnswer, OpObservation, OpsBounds, OpsSpec};

/// What the specification needs to know of a session's configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SpecConfig {
    /// Attempts per input (SPEC 2.2, 3 by default).
    pub max_attempts: u32,
    /// Whether the runtime keeps a store (SPEC 5).
    pub store: bool,
    /// The session's bounds (every queue and wait has one).
    pub bounds: Bounds,
}

/// The bounds a session documents. Reaching one is the only reason an accept may be refused as full, and none is
/// ever passed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Bounds {
    /// Handles waiting on one input.
    pub waiters_per_input: usize,
    /// Handles waiting in one session.
    pub waiters_per_session: usize,
    /// Inputs not yet ended.
    pub active_inputs: usize,
    /// Inputs one run holds.
    pub batch_inputs: usize,
    /// The operations registry's bounds.
    pub operations: OpsBounds,
}

/// An observation the specification does not allow, and the rule it broke.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Deviation {
    /// The rule, a short phrase.
    pub rule: &'static str,
    /// What was seen, and why it breaks the rule.
    pub detail: String,
}

impl fmt::Display for Deviation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.rule, self.detail)
    }
}

/// How an input ended, as the outside learned it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Fate {
    /// Its run's boundary committed with this report.
    Consumed(Report),
    /// An operation record: consumed on accept.
    Recorded,
    /// A newer input with its supersession key replaced it; its waiters moved there.
    Superseded,
    /// A newer progress input coalesced it; its waiters moved there.
    Coalesced,
    /// Retired with no executor to drain it.
    Retired,
    /// Reset.
    Reset,
    /// The session stopped (or fail-stopped).
    Stopped,
    /// The session was destroyed.
    Destroyed,
    /// Its run was interrupted.
    Cancelled,
    /// Out of attempts.
    Exhausted,
    /// Ephemeral, dropped by a recovery.
    Dropped,
    /// Derived, ended by a recovery for its source to make again.
    Rederived,
}

impl Fate {
    /// The classes its waiters may receive (SPEC 2.1, 2.3).
    fn classes(self) -> Classes {
        let one = Classes::one;
        match self {
            Fate::Consumed(Report::Result) => one(Class::Completed),
            Fate::Consumed(Report::NoResult) => one(Class::CompletedWithoutResult),
            Fate::Consumed(Report::Callback) => one(Class::CallbackPending),
            Fate::Consumed(Report::CallbackBatch) => one(Class::CallbackBatchPending),
            Fate::Consumed(Report::Failed | Report::Panicked) => unreachable!("a failed run commits nothing"),
            Fate::Retired => one(Class::Abandoned),
            // SPEC says a reset abandons and resolves, not with which class.
            Fate::Reset => one(Class::Abandoned).with(Class::RuntimeTerminated),
            Fate::Stopped | Fate::Destroyed | Fate::Dropped => one(Class::RuntimeTerminated),
            Fate::Cancelled => one(Class::Cancelled),
            Fate::Exhausted => one(Class::AbandonedWithError),
            // A recovery of the ledger in memory answers Abandoned; one from the store's image, RuntimeTerminated.
            Fate::Rederived => one(Class::Abandoned).with(Class::RuntimeTerminated),
            // Nobody waits on these: a record has no handle, replaced inputs hand theirs on.
            Fate::Recorded | Fate::Superseded | Fate::Coalesced => Classes::NONE,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Status {
    /// Waiting in its lane.
    Queued,
    /// Handed out in this run.
    Held(RunRef),
    /// Ended. `revivable` when the store may not know: a restart or a recover may bring it back queued.
    Ended { fate: Fate, revivable: bool },
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Input {
    submission: Submission,
    status: Status,
    /// Times handed out, across restarts.
    attempts: u32,
    /// Its run's start record was asked of the store and its result is not known yet.
    staged: bool,
    /// Its run's start record landed: the attempt is counted before it is handed out.
    precounted: bool,
    /// A crash came before its start record's result: the store counts `attempts` or one more, as a listing shows.
    uncertain: bool,
    /// Its boundary committed: it may never be handed out again.
    committed: bool,
    /// Queued when the session was retired: a retired session may still drain it.
    before_retire: bool,
    /// Accepted without waking the loop and not woken since: it may wait at quiescence.
    quiet: bool,
}

impl Input {
    /// A new queued input that has not run.
    fn queued_new(submission: Submission, quiet: bool) -> Input {
        Input {
            submission,
            status: Status::Queued,
            attempts: 0,
            staged: false,
            precounted: false,
            uncertain: false,
            committed: false,
            before_retire: false,
            quiet,
        }
    }

    fn live(&self) -> bool {
        !matches!(self.status, Status::Ended { .. })
    }

    fn queued(&self) -> bool {
        self.status == Status::Queued
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Waiter {
    /// The input whose outcome it gets (it follows supersession, coalescing and dedup joins).
    input: InputRef,
    resolved: bool,
    /// Classes it may receive besides those of its input's fate (a failed commit, a terminated session).
    also: Classes,
}

/// What the session told its subscribers of one input, in this process.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
struct Told {
    admitted: bool,
    ended: bool,
    /// A rebuild or a recover may have brought the ended input back and ended it again at once: its end may be
    /// told once more (it need not be).
    retell: bool,
    /// The input ended for good and the specification let it go ([`SessionSpec::compact`]).
    gone: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct HeldRun {
    id: RunRef,
    inputs: Vec<InputRef>,
    inline: bool,
    report: Option<Report>,
}

/// The facts about the session the outside can know from answers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
struct Flags {
    executor: bool,
    /// The loop of the last attach has not released its executor yet (a new attach may be refused meanwhile).
    loop_alive: bool,
    retired: bool,
    stop_deferred: bool,
    stopped: bool,
    destroyed: bool,
    unregistering: bool,
    /// The unregister committed: a prepare registers the session again.
    released: bool,
}

impl Flags {
    /// SPEC 2.1: admission in Idle, Attached, Running, closed by retire, stop (deferred or not), destroy, and
    /// unregister (SPEC 2.6).
    fn admits(self) -> bool {
        !(self.retired || self.stop_deferred || self.stopped || self.destroyed || self.unregistering)
    }

    /// Every waiter is owed an answer (SPEC 6.1: after destroy, stop or unregister).
    fn terminated(self) -> bool {
        self.stopped || self.destroyed || self.unregistering
    }
}

/// Where a session stands in SPEC 2.1's terms, as the store records it: what a restart comes back to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Standing {
    /// Admitting (Idle, or Attached before the restart).
    Open,
    /// Retired: admission closed, queued work drains.
    Retired,
    /// Stopped: revivable by an attach.
    Stopped,
    /// Destroyed: terminal.
    Destroyed,
}

impl Standing {
    fn of(flags: Flags) -> Standing {
        if flags.destroyed {
            Standing::Destroyed
        } else if flags.stopped {
            Standing::Stopped
        } else if flags.retired {
            Standing::Retired
        } else {
            Standing::Open
        }
    }
}

/// The specification's state: what the outside has seen, in the terms SPEC uses.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SessionSpec {
    config: SpecConfig,
    flags: Flags,
    /// The flags as the last durable lifecycle write left them: what a restart comes back to.
    durable_flags: Flags,
    /// A lifecycle write was asked of the store and not answered yet: a crash now may come back to the flags it
    /// records as well as to `durable_flags` ([`SessionSpecs`] follows both).
    writing: bool,
    inputs: BTreeMap<InputRef, Input>,
    /// Idempotency keys of ended inputs the specification no longer keeps, with the owner and its durability.
    ended_keys: BTreeMap<String, (InputRef, bool)>,
    waiters: BTreeMap<WaiterRef, Waiter>,
    run: Option<HeldRun>,
    runs_seen: BTreeSet<RunRef>,
    /// Every input id a caller or the executor has seen, and whether the input was durable: the ids of durable
    /// inputs are never given again; an ephemeral input that died with its process left no trace, so its id may be.
    inputs_seen: BTreeMap<InputRef, bool>,
    /// Inputs that ended since the last lifecycle or boundary write: if that write fails, the store may not know.
    unwritten: Vec<InputRef>,
    /// Continuations the session may make itself (one per ended background operation that wakes its owner).
    continuation_credit: u32,
    /// Every such end seen: after a crash each may be owed a continuation again.
    wakes_seen: u32,
    /// How many of those were granted before the session was retired: such a continuation was queued before it.
    credit_before_retire: u32,
    /// An accept_and_run input that must be the next run handed out.
    inline_pending: Option<InputRef>,
    /// The session was rebuilt from the store and not listed since: a listing now shows what the store kept.
    restored: bool,
    /// The ended inputs a rebuild may have brought back: those whose record might not have been durable when it
    /// happened. An input that ends after the rebuild, by a write that fails, may come back only at the next one.
    revival: BTreeSet<InputRef>,
    /// A fail-stop came between the rebuild and its listing: what the rebuild brought back may have ended again
    /// in memory, so the listing cannot tell what the store kept, and any input that may be revived may be listed.
    blind: bool,
    /// Durable submissions whose accept never answered (the process died): each may have been written.
    lost: Vec<Submission>,
    /// Idempotency keys of those: if the write landed, an input the outside never saw owns the key.
    lost_keys: BTreeSet<String>,
    /// The session's operations registry.
    ops: OpsSpec,
    /// What the session told its subscribers of each input it still follows, in this process.
    told: BTreeMap<InputRef, Told>,
    /// The input whose waiters the last observation answered, and with what: its end, told next, must agree.
    last_resolved: Transient,
    /// This host lost the session; until the next [`Observation::Crash`] (the hand-over) it may only answer its
    /// waiters that the session moved.
    moved: bool,
}

/// What the last observation left for the next one to judge, within one drive of the session: the input whose
/// waiters were just answered. It is not part of the state: a drive never pauses between the answers and the end
/// they come with, so no two states that differ only here judge anything differently. It compares equal and hashes
/// to nothing, so the model checker does not count it.
#[derive(Clone, Copy, Debug, Default)]
struct Transient(Option<(InputRef, Class)>);

impl PartialEq for Transient {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for Transient {}

impl std::hash::Hash for Transient {
    fn hash<H: std::hash::Hasher>(&self, _: &mut H) {}
}

type Verdict = Result<(), Deviation>;

fn deviation(rule: &'static str, detail: impl Into<String>) -> Verdict {
    Err(Deviation { rule, detail: detail.into() })
}

fn ensure(ok: bool, rule: &'static str, detail: impl FnOnce() -> String) -> Verdict {
    if ok { Ok(()) } else { deviation(rule, detail()) }
}

impl SessionSpec {
    /// A prepared session with no executor and nothing admitted.
    #[must_use]
    pub fn new(config: SpecConfig) -> SessionSpec {
        SessionSpec {
            config,
            flags: Flags::default(),
            durable_flags: Flags::default(),
            writing: false,
            inputs: BTreeMap::new(),
            ended_keys: BTreeMap::new(),
            waiters: BTreeMap::new(),
            run: None,
            runs_seen: BTreeSet::new(),
            inputs_seen: BTreeMap::new(),
            unwritten: Vec::new(),
            continuation_credit: 0,
            wakes_seen: 0,
            credit_before_retire: 0,
            inline_pending: None,
            restored: false,
            revival: BTreeSet::new(),
            blind: false,
            lost: Vec::new(),
            lost_keys: BTreeSet::new(),
            ops: OpsSpec::new(config.bounds.operations, config.store),
            told: BTreeMap::new(),
            last_resolved: Transient(None),
            moved: false,
        }
    }

    /// Judges the next observation. On a deviation the state is left as it was before it.
    pub fn observe(&mut self, observation: &Observation) -> Result<(), Deviation> {
        let mut next = self.clone();
        next.apply(observation)?;
        *self = next;
        Ok(())
    }

    fn apply(&mut self, observation: &Observation) -> Verdict {
        if !matches!(observation, Observation::Resolved { .. }) {
            // Only an end told right after its waiters' answers is judged against them.
            let last = self.last_resolved.0.take();
            if matches!(observation, Observation::EndTold { .. }) {
                self.last_resolved.0 = last;
            }
        }
        self.judge(observation)?;
        if matches!(observation, Observation::EndTold { .. }) {
            self.last_resolved.0 = None;
        }
        if matches!(
            observation,
            Observation::HandedOut { .. }
                | Observation::Active { .. }
                | Observation::Accept { .. }
                | Observation::Call { .. }
        ) {
            // An input these showed live again (a rebuild or a recover brought back what the store still held) has
            // a new life: its end will be told again.
            let inputs = &self.inputs;
            for (id, told) in &mut self.told {
                if told.ended && inputs.get(id).is_some_and(Input::live) {
                    told.ended = false;
                }
            }
        }
        self.compact();
        Ok(())
    }

    /// Forgets what can no longer matter: an input that ended for good (its record is durable or there is no
    /// store) and that no caller waits on can only be named again by a mistake, which the rules for unknown inputs
    /// catch just as well; only its idempotency key must be remembered. Without this the specification would hold
    /// every input ever accepted, and two histories that differ only in how long-gone inputs ended would be two
    /// states to the model checker.
    fn compact(&mut self) {
        let waited: BTreeSet<InputRef> = self.waiters.values().filter(|w| !w.resolved).map(|w| w.input).collect();
        let gone: Vec<InputRef> = self
            .inputs
            .iter()
            .filter(|(id, i)| {
                matches!(i.status, Status::Ended { revivable: false, .. })
                    && !waited.contains(id)
                    && !self.unwritten.contains(id)
            })
            .map(|(id, _)| *id)
            .collect();
        for id in gone {
            if let Some(told) = self.told.get_mut(&id) {
                told.gone = true;
            }
            let input = self.inputs.remove(&id).expect("listed");
            if let Some(key) = input.submission.idempotency_key {
                self.ended_keys.insert(key, (id, input.submission.durable));
            }
        }
    }

    fn judge(&mut self, observation: &Observation) -> Verdict {
        if self.moved {
            if let Some(verdict) = self.after_move(observation) {
                return verdict;
            }
        } else {
            self.before_move(observation)?;
        }
        match observation {
            Observation::Accept { submission, answer } => self.on_accept(submission, answer),
            Observation::AcceptAndRun { submission, answer } => self.on_accept_and_run(submission, answer),
            Observation::Call { call, answer } => self.on_call(*call, *answer),
            Observation::HandedOut { run, inputs, inline } => self.on_handed_out(*run, inputs, *inline),
            Observation::Reported { run, report } => self.on_reported(*run, *report),
            Observation::DeadlinePassed { run } => self.on_deadline(*run),
            Observation::Writing { write } => {
                match write {
                    Write::Lifecycle => self.writing = true,
                    Write::Operations => self.ops.writing(),
                    Write::Boundary(_) => {}
                }
                Ok(())
            }
            Observation::Op(observation) => {
                let closed = self.flags.unregistering || self.flags.released;
                let before = self.ops.waking_ends();
                self.ops.observe(observation, closed)?;
                // specs/operations.md#cursors: each end whose kind wakes the owner may bring one continuation the
                // session makes itself, now or once it is quiescent.
                let woken = u32::try_from(self.ops.waking_ends().saturating_sub(before)).unwrap_or(u32::MAX);
                self.continuation_credit = self.continuation_credit.saturating_add(woken);
                self.wakes_seen = self.wakes_seen.saturating_add(woken);
                Ok(())
            }
            Observation::Written { write, ok } => self.on_written(*write, *ok),
            Observation::Staged { inputs, .. } => {
                for id in inputs {
                    if let Some(input) = self.inputs.get_mut(id) {
                        input.staged = true;
                    }
                }
                Ok(())
            }
            Observation::Resolved { waiter, class } => self.on_resolved(*waiter, *class),
            Observation::OwnershipLost { write } => {
                self.on_ownership_lost(*write);
                Ok(())
            }
            Observation::Crash => {
                self.on_crash();
                Ok(())
            }
            Observation::Active { inputs, continuations } => self.on_active(inputs, continuations),
            Observation::Attempts { input, attempts } => self.on_attempts(*input, *attempts),
            Observation::ExecutorReleased => {
                self.flags.executor = false;
                self.flags.loop_alive = false;
                // The loop's run ends with it: unreported, or reported with its boundary never committed (a loop
                // that dies between the executor's answer and the commit cannot commit it any more).
                if self.run.as_ref().is_some_and(|r| !r.inline) {
                    self.fail_run();
                }
                Ok(())
            }
            Observation::Released => {
                ensure(self.flags.unregistering, "only an unregister releases", || format!("{:?}", self.flags))?;
                self.flags.released = true;
                self.flags.loop_alive = false;
                Ok(())
            }
            Observation::Rebuilt => {
                ensure(self.flags.released, "only a released session is made again", || format!("{:?}", self.flags))?;
                // Its callers were all answered by the unregister; what it holds now is what the store kept.
                self.on_crash();
                Ok(())
            }
            Observation::GraceExpired => {
                self.flags.loop_alive = false;
                // The aborted loop's run never reports: it counts as a failed attempt. A run that reported already
                // stays held: its boundary write may still be in the store's hands, and the rebuild after the
                // release finds out whether it landed (as after a crash).
                if self.run.as_ref().is_some_and(|r| !r.inline && r.report.is_none()) {
                    self.fail_run();
                }
                Ok(())
            }
            Observation::Quiescent => self.quiescent(),
            Observation::AdmissionTold { input, continuation } => self.on_admission_told(*input, *continuation),
            Observation::EndTold { input, class } => self.on_end_told(*input, *class),
        }
    }

    // ----- admission (SPEC 2.1, 2.2, 3) --------------------------------------

    fn on_accept(&mut self, submission: &Submission, answer: &AcceptAnswer) -> Verdict {
        let open = self.flags.admits();
        match answer {
            AcceptAnswer::Refused(Refused::Closed) => {
                ensure(!open, "admission closes only by phase", || "an open session refused an accept".into())
            }
            AcceptAnswer::Refused(Refused::Full) => {
                let reached = self.bound_reached(submission);
                ensure(reached.is_some(), "an accept is refused as full only at a bound", || {
                    format!(
                        "{} waiting in the session, {} live inputs, key owner {:?}",
                        self.waiting_on(None),
                        self.live_inputs(),
                        submission.idempotency_key.as_deref().and_then(|key| self.key_owner(key))
                    )
                })
            }
            AcceptAnswer::Refused(_) | AcceptAnswer::StoreFailed | AcceptAnswer::Moved => Ok(()),
            AcceptAnswer::Lost => {
                self.lose(submission);
                Ok(())
            }
            AcceptAnswer::Deduplicated { existing, waiter } => {
                ensure(open, "admission by phase", || format!("a closed session ({:?}) deduplicated", self.flags))?;
                self.on_deduplicated(submission, *existing, *waiter)
            }
            AcceptAnswer::Accepted { input, waiter } => {
                ensure(open, "admission by phase", || format!("a closed session ({:?}) accepted", self.flags))?;
                self.check_key_unknown(submission)?;
                self.admit(submission, *input)?;
                let wants = submission.waiter && submission.runs();
                ensure(
                    waiter.is_some() == wants,
                    "a handle exactly when asked for and the input can end later",
                    || format!("asked {}, kind {:?}, got {waiter:?}", submission.waiter, submission.kind),
                )?;
                if let Some(waiter) = waiter {
                    self.add_waiter(*waiter, *input)?;
                }
                Ok(())
            }
        }
    }

    /// SPEC 2.2 idempotency: the key of a live input joins it; the key of an ended one answers without a handle.
    fn on_deduplicated(&mut self, submission: &Submission, existing: InputRef, waiter: Option<WaiterRef>) -> Verdict {
        let key = submission.idempotency_key.as_deref();
        if let Some(lost) = key.filter(|key| self.key_owner(key).is_none() && self.lost_keys.contains(*key)) {
            // The accept that died with the process did land: its input owns the key (and ended, or a listing
            // would have shown it).
            let lost = lost.to_owned();
            self.lost_keys.remove(&lost);
            if self.inputs_seen.insert(existing, true).is_none() {
                self.ended_keys.insert(lost, (existing, true));
            }
        }
        let owner = key.and_then(|key| self.key_owner(key));
        ensure(owner == Some(existing), "dedup names the input that owns the key", || {
            format!("key {key:?} is owned by {owner:?}, the answer named {existing}")
        })?;
        // An ended input the store may still hold queued comes back with a rebuild; a join that gets a handle
        // shows it did.
        if waiter.is_some() && ((self.restored && self.revival.contains(&existing)) || self.blind) {
            if let Some(input @ Input { status: Status::Ended { revivable: true, .. }, .. }) =
                self.inputs.get_mut(&existing)
            {
                input.status = Status::Queued;
            }
        }
        let live = self.inputs.get(&existing).is_some_and(Input::live);
        let wants = live && submission.waiter;
        ensure(waiter.is_some() == wants, "a dedup join gets a handle exactly when the input is live", || {
            format!("input {existing} live {live}, asked {}, got {waiter:?}", submission.waiter)
        })?;
        if let Some(waiter) = waiter {
            let bound = self.config.bounds.waiters_per_input;
            ensure(self.waiting_on(Some(existing)) < bound, "waiters are bounded", || {
                format!("a join on input {existing} past {bound} waiting handles")
            })?;
            self.add_waiter(waiter, existing)?;
        }
        Ok(())
    }

    fn key_owner(&self, key: &str) -> Option<InputRef> {
        let kept = self.inputs.iter().find(|(_, i)| i.submission.idempotency_key.as_deref() == Some(key));
        kept.map(|(id, _)| *id).or_else(|| self.ended_keys.get(key).map(|(id, _)| *id))
    }

    fn check_key_unknown(&mut self, submission: &Submission) -> Verdict {
        let Some(key) = submission.idempotency_key.as_deref() else { return Ok(()) };
        let owner = self.key_owner(key);
        ensure(owner.is_none(), "a known idempotency key deduplicates", || {
            format!("key {key:?} is owned by input {owner:?}, yet a new input was admitted")
        })?;
        // A new input took the key: the accept that died with it did not land.
        self.lost_keys.remove(key);
        Ok(())
    }

    /// A new input enters its lane and ends what it supersedes or coalesces (SPEC 2.2).
    fn admit(&mut self, submission: &Submission, id: InputRef) -> Verdict {
        let fresh = self.inputs_seen.insert(id, submission.durable).is_none();
        ensure(fresh, "input ids are never reused", || format!("input {id} again"))?;
        let replaced = self.replaced_by(submission);
        let quiet = !submission.wakes();
        if !quiet {
            self.wake_all();
        }
        let status =
            if submission.runs() { Status::Queued } else { Status::Ended { fate: Fate::Recorded, revivable: false } };
        let input = Input { status, ..Input::queued_new(submission.clone(), quiet) };
        self.inputs.insert(id, input);
        for (older, fate) in replaced {
            self.end(older, fate);
            for waiter in self.waiters.values_mut().filter(|w| w.input == older && !w.resolved) {
                waiter.input = id;
            }
        }
        Ok(())
    }

    /// The queued inputs a new one replaces (SPEC 2.2): every one of the same kind and supersession key, or every
    /// earlier pending progress. Two can be queued at once when one was staged while the other took its key, and its
    /// run then failed or a restart put it back.
    fn replaced_by(&self, submission: &Submission) -> Vec<(InputRef, Fate)> {
        if let Some(key) = submission.supersession_key.as_deref() {
            return self
                .inputs
                .iter()
                .filter(|(_, i)| {
                    i.queued()
                        && i.submission.kind == submission.kind
                        && i.submission.supersession_key.as_deref() == Some(key)
                })
                .map(|(id, _)| (*id, Fate::Superseded))
                .collect();
        }
        if let crate::observation::Kind::PeerResponseProgress { .. } = submission.kind {
            return self
                .inputs
                .iter()
                .filter(|(_, i)| i.queued() && i.submission.kind == submission.kind)
                .map(|(id, _)| (*id, Fate::Coalesced))
                .collect();
        }
        // specs/input.md#peer-responses: the terminal reply ends the pending progress of its request.
        if let crate::observation::Kind::PeerResponseTerminal { request } = submission.kind {
            let progress = crate::observation::Kind::PeerResponseProgress { request };
            return self
                .inputs
                .iter()
                .filter(|(_, i)| i.queued() && i.submission.kind == progress)
                .map(|(id, _)| (*id, Fate::Superseded))
                .collect();
        }
        Vec::new()
    }

    /// Unresolved handles, on one input or in the whole session.
    fn waiting_on(&self, on: Option<InputRef>) -> usize {
        self.waiters.values().filter(|w| !w.resolved && on.is_none_or(|input| w.input == input)).count()
    }

    /// The bound an accept of `submission` would pass now, if any.
    fn bound_reached(&self, submission: &Submission) -> Option<&'static str> {
        let bounds = self.config.bounds;
        let owner = submission.idempotency_key.as_deref().and_then(|key| self.key_owner(key));
        let joins = owner.filter(|owner| self.inputs.get(owner).is_some_and(Input::live));
        if let Some(owner) = joins {
            let full = submission.waiter && self.waiting_on(Some(owner)) >= bounds.waiters_per_input;
            return full.then_some("waiters per input");
        }
        if submission.waiter && self.waiting_on(None) >= bounds.waiters_per_session {
            return Some("waiters per session");
        }
        (self.live_inputs() >= bounds.active_inputs).then_some("active inputs")
    }

    fn add_waiter(&mut self, waiter: WaiterRef, input: InputRef) -> Verdict {
        ensure(!self.waiters.contains_key(&waiter), "handles are distinct", || format!("handle {waiter} again"))?;
        self.waiters.insert(waiter, Waiter { input, resolved: false, also: Classes::NONE });
        Ok(())
    }

    /// accept_and_run (SPEC 3): only when idle with nothing active; refuses dedup; no handle.
    fn on_accept_and_run(&mut self, submission: &Submission, answer: &AcceptAnswer) -> Verdict {
        let key_known = submission
            .idempotency_key
            .as_deref()
            .is_some_and(|key| self.key_owner(key).is_some() || self.lost_keys.contains(key));
        // A continuation the session may have made would be live work too; one it did not make is no work at all.
        let busy = self.run.is_some() || self.inputs.values().any(Input::live);
        // So would an ended input a rebuild may have brought back.
        let revived = (self.restored && !self.revival.is_empty())
            || (self.blind && self.inputs.values().any(|i| matches!(i.status, Status::Ended { revivable: true, .. })));
        let maybe_busy = busy || self.continuation_credit > 0 || revived;
        match answer {
            AcceptAnswer::Refused(Refused::Closed) => {
                ensure(!self.flags.admits(), "admission closes only by phase", || "accept_and_run refused".into())
            }
            AcceptAnswer::Refused(Refused::Busy) => {
                ensure(maybe_busy, "accept_and_run runs on an idle session", || "refused as busy while idle".into())
            }
            AcceptAnswer::Refused(Refused::Duplicate) => {
                ensure(key_known, "accept_and_run refuses dedup", || "refused an unknown key as a duplicate".into())
            }
            AcceptAnswer::Refused(_) | AcceptAnswer::StoreFailed | AcceptAnswer::Moved => Ok(()),
            AcceptAnswer::Lost => {
                self.lose(submission);
                Ok(())
            }
            AcceptAnswer::Deduplicated { .. } => deviation("accept_and_run refuses dedup", "it deduplicated"),
            AcceptAnswer::Accepted { input, waiter } => {
                ensure(self.flags.admits(), "admission by phase", || format!("closed ({:?}) but ran", self.flags))?;
                ensure(!busy, "accept_and_run runs on an idle session", || {
                    let live: Vec<InputRef> = self.inputs.iter().filter(|(_, i)| i.live()).map(|(id, _)| *id).collect();
                    let run = self.run.as_ref().map(|r| r.id);
                    format!(
                        "it ran beside run {run:?}, live inputs {live:?}, {} continuations",
                        self.continuation_credit
                    )
                })?;
                ensure(!key_known, "accept_and_run refuses dedup", || "it admitted a known key".into())?;
                ensure(waiter.is_none(), "accept_and_run gives no handle", || "it gave one".into())?;
                self.admit(submission, *input)?;
                self.inline_pending = Some(*input);
                // It ran on an idle session: no continuation was waiting, and none was made.
                self.continuation_credit = 0;
                self.credit_before_retire = 0;
                Ok(())
            }
        }
    }

    // ----- control calls (SPEC 2.1, 2.6, 3) ------------------------------------

    fn on_call(&mut self, call: Call, answer: Answer) -> Verdict {
        let running = self.run.is_some();
        let f = self.flags;
        match (call, answer) {
            (_, Answer::Refused(_)) => self.check_refusal(call),
            (Call::Attach, Answer::Done) => {
                ensure(!f.destroyed && !f.unregistering, "no attach to an ended session", || format!("{f:?}"))?;
                // SPEC 2.1: attaching revives a stopped session; queued work starts draining (SPEC 2.6). A revival
                // is a fresh start: the session is Attached, so a retirement before the stop is over too.
                self.flags.executor = true;
                self.flags.loop_alive = true;
                if self.flags.stopped {
                    self.flags.retired = false;
                }
                self.flags.stopped = false;
                self.wake_all();
                Ok(())
            }
            (Call::Detach, Answer::Done) => {
                let loop_run = self.run.as_ref().is_some_and(|r| !r.inline);
                ensure(f.executor && !loop_run, "detach needs an idle executor", || format!("{f:?}"))?;
                self.flags.executor = false;
                Ok(())
            }
            (Call::Stop, Answer::Done) => {
                ensure(!running && !f.destroyed, "stop is immediate only between runs", || format!("{f:?}"))?;
                self.stop_now();
                Ok(())
            }
            (Call::Stop, Answer::Deferred) => {
                ensure(running, "stop is deferred only by a run in flight", || "no run was held".into())?;
                self.flags.stop_deferred = true;
                Ok(())
            }
            (Call::Stop, Answer::NoOp) => {
                ensure(f.stopped || f.stop_deferred, "a stop is a no-op only when stopped", || format!("{f:?}"))
            }
            (Call::Retire, Answer::Done) => {
                ensure(!f.stopped && !f.destroyed, "no retire of a stopped session", || format!("{f:?}"))?;
                self.retire();
                Ok(())
            }
            (Call::Retire, Answer::NoOp) => ensure(f.retired, "retiring twice is a no-op", || format!("{f:?}")),
            (Call::Reset | Call::Recycle | Call::Recover, Answer::Done) => {
                ensure(!running && !f.destroyed, "reset, recycle and recover wait for the run", || {
                    format!("{call:?} while {f:?}, run {running}")
                })?;
                self.rebuild(call);
                Ok(())
            }
            (Call::Destroy, Answer::Done) => {
                ensure(!f.destroyed, "destroy is terminal", || "destroyed twice".into())?;
                self.destroy();
                Ok(())
            }
            (Call::Destroy, Answer::NoOp) => {
                ensure(f.destroyed, "destroy is a no-op only when destroyed", || format!("{f:?}"))
            }
            (Call::Unregister, Answer::Done) => {
                self.flags.unregistering = true;
                self.owe_all(Class::RuntimeTerminated);
                // An inline run belongs to its caller, not to the loop the unregister waits for: it is cancelled and
                // counts as a failed attempt (specs/registration.md#unregister).
                if self.run.as_ref().is_some_and(|r| r.inline && r.report.is_none()) {
                    self.fail_run();
                }
                Ok(())
            }
            (Call::Prepare, Answer::Done | Answer::NoOp) => {
                // SPEC 2.6: a released session registers again and admits; an unregister still in progress refuses.
                ensure(!f.unregistering || f.released, "no prepare during an unregister", || format!("{f:?}"))?;
                self.flags.unregistering = false;
                self.flags.released = false;
                Ok(())
            }
            (Call::Interrupt, Answer::Interrupted(run)) => self.interrupt(run),
            (Call::CancelAfterBoundary, _) => Ok(()),
            (call, answer) => deviation("a call answers as SPEC says", format!("{call:?} answered {answer:?}")),
        }
    }

    /// A refusal is allowed only where SPEC refuses.
    fn check_refusal(&self, call: Call) -> Verdict {
        let f = self.flags;
        let running = self.run.is_some();
        let reported = self.run.as_ref().is_some_and(|r| r.report.is_some());
        let allowed = match call {
            Call::Attach => f.executor || f.loop_alive || f.destroyed || f.unregistering || f.stop_deferred,
            Call::Detach => !f.executor || running,
            Call::Stop => f.destroyed,
            Call::Retire => f.stopped || f.destroyed,
            Call::Reset | Call::Recycle | Call::Recover => running || f.destroyed,
            Call::Destroy | Call::Unregister | Call::CancelAfterBoundary => true,
            // The store may not have the released row (its write failed): the old unregister is then in progress.
            Call::Prepare => f.unregistering || f.destroyed,
            Call::Interrupt => !running || reported,
        };
        // SPEC 2.6: once unregister began, the session takes no more calls (a prepare only once it is released).
        let allowed = allowed || (f.unregistering && call != Call::Prepare);
        ensure(allowed, "a call is refused only where SPEC refuses it", || {
            format!("{call:?} refused while {f:?}, run held {running}")
        })
    }

    /// SPEC 2.1 retire: admission closes; queued work drains with an executor, else it is abandoned (Retired). The
    /// input of a run in flight was admitted before the retire too: if its run fails, it may run again.
    fn retire(&mut self) {
        self.flags.retired = true;
        self.credit_before_retire = self.continuation_credit;
        let executor = self.flags.executor;
        let live: Vec<InputRef> = self.inputs.iter().filter(|(_, i)| i.live()).map(|(id, _)| *id).collect();
        for id in live {
            if executor || !self.inputs[&id].queued() {
                let input = self.inputs.get_mut(&id).expect("listed");
                input.before_retire = true;
            } else {
                self.end(id, Fate::Retired);
            }
        }
        self.wake_all();
    }

    /// Reset, recycle, recover (SPEC 2.1): the session rests in Idle or Attached again.
    fn rebuild(&mut self, call: Call) {
        self.flags.retired = false;
        self.flags.stopped = false;
        let live: Vec<InputRef> = self.inputs.iter().filter(|(_, i)| i.live()).map(|(id, _)| *id).collect();
        match call {
            Call::Reset => {
                for id in live {
                    self.end(id, Fate::Reset);
                }
            }
            Call::Recover => {
                let dropped_continuation = live.iter().any(|id| {
                    let submission = &self.inputs[id].submission;
                    submission.kind == crate::observation::Kind::Continuation && !submission.durable
                });
                // SPEC 5: ephemeral inputs are dropped by recovery; durable ones replay from the store. The store
                // never had the ephemeral ones, so the keys of those that ended are forgotten with them.
                for id in live {
                    if !self.inputs[&id].submission.durable {
                        self.end(id, Fate::Dropped);
                    } else if self.inputs[&id].submission.derived {
                        // specs/input.md#derived: not replayed; it ends with its reason written.
                        self.end(id, Fate::Rederived);
                    }
                }
                self.ended_keys.retain(|_, (_, durable)| *durable);
                // A continuation it dropped covered ends the agent may not have applied: those wake it again.
                if dropped_continuation {
                    self.ops.uncover_wakes();
                    self.continuation_credit = self.continuation_credit.max(u32::from(self.ops.wake_owed()));
                }
                for input in self.inputs.values_mut().filter(|i| !i.submission.durable) {
                    input.submission.idempotency_key = None;
                }
                // What ended with no write since may not be in the store.
                self.settle_writes(false);
                self.allow_revival();
            }
            _ => {}
        }
        for input in self.inputs.values_mut() {
            input.before_retire = false;
        }
        self.credit_before_retire = 0;
        self.wake_all();
    }

    fn destroy(&mut self) {
        self.ops.terminate();
        self.flags.destroyed = true;
        self.flags.stop_deferred = false;
        self.flags.executor = false;
        self.run = None;
        let live: Vec<InputRef> = self.inputs.iter().filter(|(_, i)| i.live()).map(|(id, _)| *id).collect();
        for id in live {
            self.end(id, Fate::Destroyed);
        }
        self.owe_all(Class::RuntimeTerminated);
    }

    /// SPEC 2.1 stop: pending inputs are abandoned (Stopped), every waiter resolves RuntimeTerminated, the executor
    /// is gone.
    fn stop_now(&mut self) {
        self.flags.stopped = true;
        self.flags.stop_deferred = false;
        self.flags.executor = false;
        let live: Vec<InputRef> = self.inputs.iter().filter(|(_, i)| i.live()).map(|(id, _)| *id).collect();
        for id in live {
            self.end(id, Fate::Stopped);
        }
        self.owe_all(Class::RuntimeTerminated);
    }

    fn owe_all(&mut self, class: Class) {
        for waiter in self.waiters.values_mut().filter(|w| !w.resolved) {
            waiter.also = waiter.also.with(class);
        }
    }

    fn interrupt(&mut self, run: RunRef) -> Verdict {
        let held = self.run.as_ref().map(|r| (r.id, r.report));
        ensure(held == Some((run, None)), "interrupt cancels exactly the run in flight", || {
            format!("it cancelled run {run}; held {held:?}")
        })?;
        let inputs = self.run.take().expect("checked").inputs;
        for id in inputs {
            self.end(id, Fate::Cancelled);
        }
        self.end_run();
        Ok(())
    }

    // ----- runs (SPEC 2.2, 3, 6.3 - 6.7) -----------------------------------

    fn on_handed_out(&mut self, run: RunRef, inputs: &[InputRef], inline: bool) -> Verdict {
        ensure(self.runs_seen.insert(run), "run ids are never reused", || format!("run {run} again"))?;
        ensure(self.run.is_none(), "at most one run at a time", || format!("run {run} while {:?} is held", self.run))?;
        let f = self.flags;
        ensure(!f.stopped && !f.destroyed && !f.stop_deferred, "no run after stop or destroy", || format!("{f:?}"))?;
        ensure(!f.unregistering, "no run after unregister began", || format!("run {run}"))?;
        ensure(!inputs.is_empty(), "a run has inputs", || format!("run {run} is empty"))?;
        let batch = self.config.bounds.batch_inputs;
        ensure(inputs.len() <= batch, "a batch is bounded", || format!("run {run} holds {} inputs", inputs.len()))?;
        if inline {
            ensure(
                self.inline_pending == Some(inputs[0]) && inputs.len() == 1,
                "accept_and_run runs its input",
                || format!("inline run {run} over {inputs:?}, pending {:?}", self.inline_pending),
            )?;
        } else {
            ensure(f.executor, "the loop runs only with an executor", || format!("run {run} with none attached"))?;
        }
        self.inline_pending = None;
        for id in inputs {
            self.take_for_run(*id, run)?;
        }
        if !inline {
            self.check_lane_order(inputs)?;
        }
        for id in inputs {
            let input = self.inputs.get_mut(id).expect("taken");
            input.status = Status::Held(run);
            input.quiet = false;
        }
        self.run = Some(HeldRun { id: run, inputs: inputs.to_vec(), inline, report: None });
        Ok(())
    }

    /// One input of a run: queued (or brought back by a restart), never after its boundary committed, within its
    /// attempts, and admitted before a retire.
    fn take_for_run(&mut self, id: InputRef, run: RunRef) -> Verdict {
        if !self.inputs.contains_key(&id) && self.continuation_credit > 0 {
            self.adopt_continuation(id)?;
        }
        let max = self.config.max_attempts;
        let retired = self.flags.retired;
        let Some(input) = self.inputs.get_mut(&id) else {
            if self.inputs_seen.contains_key(&id) {
                return deviation("a run holds only queued inputs", format!("input {id} in run {run} had ended"));
            }
            return deviation("a run holds only admitted inputs", format!("run {run} holds unknown input {id}"));
        };
        ensure(!input.committed, "no input runs again after its boundary committed", || {
            format!("input {id} in run {run}")
        })?;
        match input.status {
            Status::Queued | Status::Ended { revivable: true, .. } => {}
            status => {
                return deviation("a run holds only queued inputs", format!("input {id} in run {run} was {status:?}"));
            }
        }
        ensure(!retired || input.before_retire, "no run after retire except work queued before it", || {
            format!("input {id} in run {run} was admitted after the retire")
        })?;
        if std::mem::take(&mut input.precounted) {
            // Counted when its start record landed.
        } else {
            input.attempts += 1;
        }
        let attempts = input.attempts;
        ensure(attempts <= max, "attempts are bounded", || format!("input {id} handed out {attempts} times, max {max}"))
    }

    /// SPEC 2.2 lanes: steer inputs go first, each lane in the order inputs were accepted.
    fn check_lane_order(&self, batch: &[InputRef]) -> Verdict {
        let waiting_steer: Vec<InputRef> = self
            .inputs
            .iter()
            .filter(|(id, i)| (i.queued() || batch.contains(id)) && i.submission.steers())
            .map(|(id, _)| *id)
            .collect();
        let steer = !waiting_steer.is_empty();
        for id in batch {
            ensure(self.inputs[id].submission.steers() == steer, "the steer lane goes first", || {
                format!("batch {batch:?} while steer inputs {waiting_steer:?} wait")
            })?;
        }
        let lane: Vec<InputRef> = self
            .inputs
            .iter()
            .filter(|(id, i)| (i.queued() || batch.contains(id)) && i.submission.steers() == steer)
            .map(|(id, _)| *id)
            .collect();
        ensure(lane.starts_with(batch), "a lane runs in the order it was accepted", || {
            format!("batch {batch:?}, lane in accept order {lane:?}")
        })
    }

    fn held(&self, run: RunRef) -> Result<&HeldRun, Deviation> {
        match &self.run {
            Some(held) if held.id == run => Ok(held),
            other => Err(Deviation {
                rule: "only the run in flight reports",
                detail: format!("run {run}, held {:?}", other.as_ref().map(|r| r.id)),
            }),
        }
    }

    fn on_reported(&mut self, run: RunRef, report: Report) -> Verdict {
        let held = self.held(run)?;
        ensure(held.report.is_none(), "a run reports once", || format!("run {run} reported again"))?;
        match report {
            Report::Failed | Report::Panicked => {
                self.fail_run();
                Ok(())
            }
            _ if !self.config.store => {
                // Without a store the boundary commits as the run reports.
                self.run.as_mut().expect("held").report = Some(report);
                self.commit(true);
                Ok(())
            }
            _ => {
                self.run.as_mut().expect("held").report = Some(report);
                Ok(())
            }
        }
    }

    fn on_deadline(&mut self, run: RunRef) -> Verdict {
        if self.run.is_none() && self.expire_staged(run) {
            return Ok(());
        }
        let held = self.held(run)?;
        if held.report.is_some() {
            return Ok(());
        }
        // SPEC 3: past the deadline the run is cancelled and counts as a failed attempt.
        self.fail_run();
        Ok(())
    }

    /// A run whose deadline passed after it was staged and before it was handed out: its start record was asked
    /// of the store (or landed), so the core counted its attempt, and the expiry fails that attempt (SPEC 3: a run
    /// never handed to the executor leaves no input staged). Its inputs are the queued ones whose start record is in
    /// flight (`staged`: the landing will count it) or landed (`precounted`: counted already). `false` if no input
    /// waits for a hand-out, so the expiry is judged as that of a held run.
    fn expire_staged(&mut self, run: RunRef) -> bool {
        let max = self.config.max_attempts;
        let waiting: Vec<(InputRef, u32)> = self
            .inputs
            .iter()
            .filter(|(_, i)| i.status == Status::Queued && (i.staged || i.precounted))
            .map(|(id, i)| (*id, i.attempts + u32::from(i.staged)))
            .collect();
        if waiting.is_empty() || !self.runs_seen.insert(run) {
            return false;
        }
        for (id, counted) in waiting {
            // A staged input keeps its flag: its start record still counts the attempt when it lands, and the next
            // start record counts the next one, so the count stays the core's. A landed one was counted already.
            let input = self.inputs.get_mut(&id).expect("listed above");
            if !input.staged {
                input.precounted = false;
            }
            if counted >= max {
                self.end(id, Fate::Exhausted);
            }
        }
        self.end_run();
        true
    }

    /// A failed attempt: back to the queue while attempts remain, else abandoned (SPEC 2.2).
    fn fail_run(&mut self) {
        let run = self.run.take().expect("a held run");
        for id in run.inputs {
            let input = &self.inputs[&id];
            if input.attempts >= self.config.max_attempts {
                self.end(id, Fate::Exhausted);
            } else {
                self.inputs.get_mut(&id).expect("held").status = Status::Queued;
            }
        }
        self.end_run();
    }

    /// The boundary commit's result (SPEC 3, 5).
    fn commit(&mut self, ok: bool) {
        let run = self.run.take().expect("a reported run");
        let report = run.report.expect("reported");
        if ok {
            for id in &run.inputs {
                self.inputs.get_mut(id).expect("held").committed = true;
                self.end(*id, Fate::Consumed(report));
            }
            // The receipt that ends them is the write that just landed.
            self.unwritten.retain(|id| !run.inputs.contains(id));
            self.end_run();
            return;
        }
        // A failed commit is never a success: the waiters learn it, the inputs roll back, and the loop stops.
        let told = match report {
            Report::NoResult => Class::AbandonedWithError,
            _ => Class::CompletedWithFinalizationFailure,
        };
        for id in &run.inputs {
            for waiter in self.waiters.values_mut().filter(|w| w.input == *id && !w.resolved) {
                waiter.also = waiter.also.with(told);
            }
            if self.inputs[id].attempts >= self.config.max_attempts {
                self.end(*id, Fate::Exhausted);
            } else {
                self.inputs.get_mut(id).expect("held").status = Status::Queued;
            }
        }
        if !run.inline {
            self.flags.stop_deferred = true;
        }
        self.end_run();
    }

    /// The end of every run: a deferred stop takes effect.
    fn end_run(&mut self) {
        debug_assert!(self.run.is_none());
        if self.flags.stop_deferred {
            self.stop_now();
        }
    }

    // ----- the store (SPEC 5) ------------------------------------------------

    fn on_written(&mut self, write: Write, ok: bool) -> Verdict {
        match write {
            Write::Boundary(run) => {
                let held = self.held(run)?;
                ensure(
                    held.report.is_some_and(|r| !matches!(r, Report::Failed | Report::Panicked)),
                    "a boundary commits a reported run",
                    || format!("run {run} committed with report {:?}", held.report),
                )?;
                // What ended before this write is recorded by it (or lost with it); what the commit ends next waits
                // for the write after.
                self.settle_writes(ok);
                self.commit(ok);
            }
            Write::Lifecycle => {
                self.writing = false;
                // SPEC 2.2: a run's start record makes its attempt durable before the run is handed out.
                for input in self.inputs.values_mut().filter(|i| i.staged) {
                    input.staged = false;
                    if ok {
                        input.attempts += 1;
                        input.precounted = true;
                    }
                }
                self.settle_writes(ok);
                if ok {
                    self.durable_flags = self.flags;
                } else {
                    self.fail_stop();
                }
            }
            Write::Operations => self.ops.written(ok),
        }
        Ok(())
    }

    /// A lifecycle write failed: the session fail-stops (SPEC 3), unless it already ended.
    fn fail_stop(&mut self) {
        if self.restored {
            self.restored = false;
            self.blind = true;
        }
        if self.flags.destroyed || (self.flags.stopped && self.run.is_none()) {
            return;
        }
        if let Some(run) = self.run.take() {
            for id in run.inputs {
                self.end(id, Fate::Stopped);
            }
        }
        self.inline_pending = None;
        self.stop_now();
    }

    fn settle_writes(&mut self, ok: bool) {
        let unwritten = std::mem::take(&mut self.unwritten);
        if ok {
            return;
        }
        for id in unwritten {
            if let Some(Input { status: Status::Ended { revivable, .. }, submission, .. }) = self.inputs.get_mut(&id) {
                *revivable = submission.durable;
            }
        }
    }

    // ----- waiters (SPEC 2.3, 6.1) -------------------------------------------

    fn on_resolved(&mut self, waiter: WaiterRef, class: Class) -> Verdict {
        let Some(w) = self.waiters.get(&waiter) else {
            return deviation("only a caller's handle resolves", format!("handle {waiter} was never given out"));
        };
        ensure(!w.resolved, "a waiter resolves exactly once", || format!("handle {waiter} resolved again"))?;
        let input = &self.inputs[&w.input];
        let fate = match input.status {
            Status::Ended { fate, .. } => fate.classes(),
            _ => Classes::NONE,
        };
        let allowed = fate.union(w.also);
        ensure(allowed.contains(class), "an outcome follows from what happened", || {
            format!("handle {waiter} of input {} got {class:?}; allowed {allowed}", w.input)
        })?;
        let w = self.waiters.get_mut(&waiter).expect("checked");
        w.resolved = true;
        w.also = Classes::NONE;
        // The end of an input that ended is told right after its waiters' answers, and must agree with them. (An
        // input still live whose waiters were answered, by an unregister say, is told ended only when it ends.)
        let input = w.input;
        if self.inputs.get(&input).is_some_and(|i| !i.live()) {
            self.last_resolved.0 = Some((input, class));
        }
        Ok(())
    }

    // ----- notices (specs/observable.md#notices) ----------------------------

    /// An admission is told once, before its end. (The session admits inputs no caller submitted, a peer's
    /// message or its own continuation, so an admission told of an input no caller saw is no deviation.)
    fn on_admission_told(&mut self, input: InputRef, continuation: bool) -> Verdict {
        // A continuation the session made itself is first seen here when nothing lists it or runs it.
        let unknown = !self.inputs.contains_key(&input) && !self.inputs_seen.contains_key(&input);
        if continuation && unknown && self.continuation_credit > 0 {
            self.adopt_continuation(input)?;
        }
        let told = self.told.entry(input).or_default();
        ensure(!told.admitted && !told.ended, "each admission and end is told once, in order", || {
            format!("input {input} was told admitted again ({told:?})")
        })?;
        told.admitted = true;
        Ok(())
    }

    /// An end is told once, for an input that ended, with the class its waiters received; an input with no
    /// outcome of its own (replaced, or a record) is told with none.
    fn on_end_told(&mut self, input: InputRef, class: Option<Class>) -> Verdict {
        if let Some(known) = self.inputs.get(&input) {
            let Status::Ended { fate, revivable } = known.status else {
                return deviation(
                    "an end is told only for an input that ended",
                    format!("input {input} is {:?}", known.status),
                );
            };
            // An end the store may not hold may have come back with a rebuild or a recover, unseen, and ended
            // again otherwise (a newer progress input coalesces it, say).
            let own = !matches!(fate, Fate::Superseded | Fate::Coalesced | Fate::Recorded);
            ensure(
                own == class.is_some() || revivable,
                "an end is told with a class exactly when the input has its own outcome",
                || format!("input {input} ended {fate:?}, told with {class:?}"),
            )?;
        }
        // The waiters of an input that ended are answered just before its end is told.
        if let Some((resolved, got)) = self.last_resolved.0.filter(|(resolved, _)| *resolved == input) {
            ensure(class == Some(got), "a told end agrees with the waiters", || {
                format!("input {resolved} was told ended {class:?}; its waiters received {got:?}")
            })?;
        }
        let told = self.told.entry(input).or_default();
        ensure(!told.ended || told.retell, "each admission and end is told once, in order", || {
            format!("input {input} was told ended again")
        })?;
        told.ended = true;
        told.retell = false;
        Ok(())
    }

    // ----- ownership (specs/observable.md#ownership) ----------------------------

    /// What only a moved session may see.
    fn before_move(&self, observation: &Observation) -> Verdict {
        let moved_only = match observation {
            Observation::Accept { answer, .. } | Observation::AcceptAndRun { answer, .. } => {
                matches!(answer, AcceptAnswer::Moved | AcceptAnswer::Refused(Refused::NotOwner))
            }
            Observation::Call { answer, .. } => *answer == Answer::Refused(Refused::NotOwner),
            Observation::Resolved { class, .. } => *class == Class::Moved,
            _ => false,
        };
        ensure(!moved_only, "only a session that moved says so", || format!("{observation:?} on its owner"))
    }

    /// The store refused a write of this host's, or its lease ended: the write did not land, and the session is
    /// another host's now.
    fn on_ownership_lost(&mut self, write: Option<Write>) {
        match write {
            Some(Write::Lifecycle) => {
                self.writing = false;
                for input in self.inputs.values_mut() {
                    input.staged = false;
                }
                self.settle_writes(false);
            }
            Some(Write::Boundary(_)) => self.settle_writes(false),
            Some(Write::Operations) => self.ops.written(false),
            None => {}
        }
        self.moved = true;
    }

    /// Judges `observation` in a moved session; `None` for what is judged as usual. What the session set going
    /// before it learned of the move still comes out: an answer it chose then, a notice, a write (which the store
    /// refuses). What it must not do is start anything, land a write, or take a call.
    fn after_move(&mut self, observation: &Observation) -> Option<Verdict> {
        let rule = "a moved session only answers that it moved";
        let verdict = match observation {
            Observation::Crash => {
                self.moved = false;
                return None;
            }
            // The process died after the store refused the write and before the caller heard: judged as any lost
            // answer (the crash follows).
            Observation::Accept { answer: AcceptAnswer::Lost, .. }
            | Observation::AcceptAndRun { answer: AcceptAnswer::Lost, .. } => return None,
            Observation::Accept { answer, .. } | Observation::AcceptAndRun { answer, .. } => {
                let ok = matches!(answer, AcceptAnswer::Moved | AcceptAnswer::Refused(Refused::NotOwner));
                ensure(ok, rule, || format!("an accept answered {answer:?}"))
            }
            Observation::Call { call, answer } => {
                ensure(*answer == Answer::Refused(Refused::NotOwner), rule, || format!("{call:?} answered {answer:?}"))
            }
            Observation::Resolved { waiter, class: Class::Moved } => self.on_resolved_moved(*waiter),
            Observation::HandedOut { run, .. } => deviation("a moved session hands out no run", format!("run {run}")),
            Observation::Written { write, ok: true } => {
                deviation("no write of a moved session lands", format!("{write:?} landed"))
            }
            Observation::Writing { .. } | Observation::Staged { .. } | Observation::OwnershipLost { .. } => Ok(()),
            // A background job of this host reports into a session it no longer drives: refused, nothing changes.
            // Its watchers here hear that the registry went away when the host lets the session go.
            Observation::Op(OpObservation::Call { answer: OpAnswer::Refused(_), .. }) => Ok(()),
            Observation::Quiescent => self.quiescent(),
            _ => return None,
        };
        Some(verdict)
    }

    fn on_resolved_moved(&mut self, waiter: WaiterRef) -> Verdict {
        let Some(w) = self.waiters.get_mut(&waiter) else {
            return deviation("only a caller's handle resolves", format!("handle {waiter} was never given out"));
        };
        ensure(!w.resolved, "a waiter resolves exactly once", || format!("handle {waiter} resolved again"))?;
        w.resolved = true;
        w.also = Classes::NONE;
        Ok(())
    }

    // ----- restarts and listings (SPEC 5) -----------------------------------

    /// The process died: its callers are gone, ephemeral inputs with them; durable inputs come back queued unless
    /// their boundary committed; ended inputs whose record may not have been written may come back too.
    fn on_crash(&mut self) {
        // A new process tells its own subscribers afresh.
        self.told.clear();
        self.writing = false;
        self.ops.restart();
        // What ended since the last write may never have reached the store: the write had not happened yet.
        self.settle_writes(false);
        self.waiters.clear();
        // A reported run whose boundary write had no answer yet: the receipt may have landed.
        let committing = self.run.take().and_then(|run| run.report.map(|report| (run.inputs, report)));
        self.run = None;
        self.inline_pending = None;
        // A continuation made before the crash was ephemeral and died with the process; an end the agent had not
        // applied wakes the new process again (specs/operations.md#cursors), so every wake seen may be owed again.
        self.continuation_credit = self.wakes_seen;
        self.credit_before_retire = 0;
        self.flags = Flags { executor: false, loop_alive: false, stop_deferred: false, ..self.durable_flags };
        // An ephemeral input that died with the process left no trace in the store; its id may be given again.
        self.inputs_seen.retain(|_, durable| *durable);
        self.inputs.retain(|_, input| input.submission.durable);
        self.ended_keys.retain(|_, (_, durable)| *durable);
        let max = self.config.max_attempts;
        let retired = self.flags.retired;
        for (id, input) in &mut self.inputs {
            // A session the store keeps as retired admitted nothing since its retire (a call that reopened
            // admission had its lifecycle write in the same drive): what it still holds was queued before it.
            input.before_retire = retired;
            input.quiet = false;
            let started = std::mem::take(&mut input.precounted);
            let staged = std::mem::take(&mut input.staged);
            input.uncertain = staged;
            if staged && input.status == Status::Queued && input.attempts + 1 >= max {
                // Its start record may have landed with the attempt that exhausts it: it may be back, or not.
                input.status = Status::Ended { fate: Fate::Exhausted, revivable: true };
            } else if started && input.status == Status::Queued && input.attempts >= max {
                // Its start record landed with its last attempt: a restart does not hand it out again.
                input.status = Status::Ended { fate: Fate::Exhausted, revivable: false };
            }
            if let (Status::Held(_), Some((inputs, report))) = (input.status, &committing) {
                if inputs.contains(id) && !matches!(report, Report::Failed | Report::Panicked) {
                    // Committed if the receipt landed (then never run again), queued if not: the listing says.
                    input.status = Status::Ended { fate: Fate::Consumed(*report), revivable: true };
                    continue;
                }
            }
            if let Status::Held(_) = input.status {
                // SPEC 5: a staged input comes back queued with its attempts; one whose last attempt died with the
                // process is out of attempts (SPEC 2.2: a poison input never spins forever).
                input.status = if input.attempts >= max {
                    Status::Ended { fate: Fate::Exhausted, revivable: false }
                } else {
                    Status::Queued
                };
            }
            if input.submission.derived && input.status == Status::Queued {
                // specs/input.md#derived: what would come back queued ends instead, for its source to make again.
                input.status = Status::Ended { fate: Fate::Rederived, revivable: false };
            }
        }
        self.allow_revival();
    }

    /// The session was rebuilt from the store (a restart or a recover): ended inputs whose record may not be
    /// durable may be back; the next listing says which.
    fn allow_revival(&mut self) {
        self.unwritten.clear();
        self.restored = true;
        self.blind = false;
        self.revival = self
            .inputs
            .iter()
            .filter(|(_, i)| matches!(i.status, Status::Ended { revivable: true, .. }))
            .map(|(id, _)| *id)
            .collect();
        // What the store may bring back may end again, in the same call (a committed receipt consumes it, no
        // attempt is left) or later: its end may be told again.
        for id in &self.revival {
            if let Some(told) = self.told.get_mut(id) {
                told.retell = true;
            }
        }
    }

    /// list_active_inputs: every live input, and nothing that ended for good.
    fn on_active(&mut self, listed: &[InputRef], continuations: &[InputRef]) -> Verdict {
        for (id, input) in &self.inputs {
            if input.live() {
                ensure(listed.contains(id), "no accepted durable input is lost", || {
                    format!("input {id} ({:?}) is missing from {listed:?}", input.status)
                })?;
            }
        }
        let restored = std::mem::take(&mut self.restored);
        let revival = std::mem::take(&mut self.revival);
        let blind = std::mem::take(&mut self.blind);
        for id in listed {
            let lost_at = if restored && !self.inputs.contains_key(id) && !self.inputs_seen.contains_key(id) {
                self.lost_of_kind(continuations.contains(id))
            } else {
                None
            };
            match self.inputs.get_mut(id) {
                Some(input) if input.live() => {}
                Some(input @ Input { status: Status::Ended { revivable: true, .. }, .. })
                    if (restored && revival.contains(id)) || blind =>
                {
                    input.status = Status::Queued;
                }
                Some(input) => {
                    return deviation("terminal states are absorbing", format!("input {id} was {:?}", input.status));
                }
                // The listing names each input's kind: a continuation the session made, or an input whose accept
                // died with the process.
                None if lost_at.is_some() => {
                    let submission = self.lost.remove(lost_at.expect("checked"));
                    self.adopt_lost(*id, submission);
                }
                None if continuations.contains(id) && self.continuation_credit > 0 => self.adopt_continuation(*id)?,
                None if self.inputs_seen.contains_key(id) => {
                    return deviation("terminal states are absorbing", format!("input {id} had ended for good"));
                }
                None => return deviation("only admitted inputs are active", format!("input {id} is unknown")),
            }
        }
        if restored {
            for id in &revival {
                if let Some(Input { status: Status::Ended { revivable, .. }, .. }) = self.inputs.get_mut(id) {
                    *revivable = false;
                }
            }
        }
        // An input whose accept died with the process is listed by now, if it was written. A continuation may still be
        // made later: an end seen during a run wakes the session once the run is over (specs/operations.md#cursors).
        if restored {
            self.lost.clear();
        }
        Ok(())
    }

    /// A listing's attempt count: exact for what the specification followed, one of two for an input whose start
    /// record had no answer when the process died (SPEC 2.2: attempts survive a restart).
    fn on_attempts(&mut self, id: InputRef, attempts: u32) -> Verdict {
        let Some(input) = self.inputs.get_mut(&id).filter(|i| i.live()) else { return Ok(()) };
        let known = input.attempts;
        let uncertain = std::mem::take(&mut input.uncertain);
        let allowed = attempts == known || (uncertain && attempts == known + 1);
        ensure(allowed, "attempts survive a restart", || {
            format!(
                "input {id} listed with {attempts} attempts, had {known}{}",
                if uncertain { " or one more" } else { "" }
            )
        })?;
        input.attempts = attempts;
        Ok(())
    }

    // ----- liveness (SPEC 6.1, 6.7) -----------------------------------------

    /// What must have happened once nothing more will: every caller owed an answer has it, and no
    /// selectable backlog waits beside an executor (SPEC 6.1, 6.7).
    pub fn quiescent(&self) -> Result<(), Deviation> {
        if self.moved {
            // specs/observable.md#ownership: what the session still held is the new owner's to finish; here only
            // the callers must have heard.
            return match self.waiters.iter().find(|(_, w)| !w.resolved) {
                Some((id, _)) => deviation("a moved session tells every waiter it moved", format!("handle {id}")),
                None => Ok(()),
            };
        }
        self.ops.quiescent()?;
        for (id, waiter) in &self.waiters {
            if waiter.resolved {
                continue;
            }
            let ended = !self.inputs[&waiter.input].live();
            ensure(!ended, "quiescent implies settled waiters resolved", || {
                format!(
                    "handle {id} of ended input {} ({:?}) was never told",
                    waiter.input, self.inputs[&waiter.input].status
                )
            })?;
            ensure(!self.flags.terminated(), "an ended session has no waiting caller", || {
                format!("handle {id} still waits after {:?}", self.flags)
            })?;
            ensure(waiter.also.is_empty(), "quiescent implies settled waiters resolved", || {
                format!("handle {id} was owed {} and never told", waiter.also)
            })?;
        }
        // specs/operations.md#cursors: a quiescent session that admits inputs has made a continuation for every end
        // that wakes it and that the agent has not acknowledged.
        let f = self.flags;
        let settled = self.run.is_none() && self.inline_pending.is_none() && !self.inputs.values().any(Input::live);
        if f.admits() && !f.released && settled {
            ensure(!self.ops.wake_owed(), "a background end wakes its quiescent session", || {
                "an unacknowledged end that wakes the session has no continuation".into()
            })?;
        }
        // spec: specs/observable.md#notices: an input told admitted that ended for good was told ended. (One the
        // store may bring back may yet end otherwise.)
        for (id, told) in &self.told {
            let ended = told.gone
                || self.inputs.get(id).is_some_and(|i| matches!(i.status, Status::Ended { revivable: false, .. }));
            ensure(!(told.admitted && !told.ended && ended), "quiescent implies every end told", || {
                format!("input {id} ended for good and its subscribers were never told")
            })?;
        }
        let f = self.flags;
        if f.executor && !f.terminated() && !f.stop_deferred {
            let stranded = self.inputs.iter().find(|(_, i)| i.queued() && !i.quiet);
            if let Some((id, _)) = stranded {
                return deviation("no backlog stranded", format!("input {id} waits with an executor attached"));
            }
        }
        Ok(())
    }

    // ----- helpers -----------------------------------------------------------

    fn end(&mut self, id: InputRef, fate: Fate) {
        let input = self.inputs.get_mut(&id).expect("ending a known input");
        input.status = Status::Ended { fate, revivable: false };
        input.quiet = false;
        if fate == Fate::Dropped {
            // Its key and id are forgotten with it (a dropped ephemeral input is not in the store's history).
            input.submission.idempotency_key = None;
        }
        if self.config.store && input.submission.durable {
            self.unwritten.push(id);
        }
    }

    /// A continuation the session made itself after a background operation ended (SPEC 2.4): ephemeral, no handle.
    fn adopt_continuation(&mut self, id: InputRef) -> Verdict {
        self.continuation_credit -= 1;
        // It covers every end that woke the session so far.
        self.ops.cover_wakes();
        let before_retire = self.flags.retired && self.credit_before_retire > 0;
        self.credit_before_retire = self.credit_before_retire.saturating_sub(1);
        let fresh = self.inputs_seen.insert(id, false).is_none();
        ensure(fresh, "input ids are never reused", || format!("continuation {id}"))?;
        let mut submission = Submission::of(crate::observation::Kind::Continuation);
        submission.durable = false;
        submission.waiter = false;
        let input = Input { before_retire, ..Input::queued_new(submission, false) };
        self.inputs.insert(id, input);
        Ok(())
    }

    /// An accept that never answered, because the process died: if its input was durable, the store may hold it.
    fn lose(&mut self, submission: &Submission) {
        if let Some(key) = submission.idempotency_key.clone().filter(|_| submission.durable && self.config.store) {
            self.lost_keys.insert(key);
        }
        if submission.durable && self.config.store {
            self.lost.push(Submission { waiter: false, ..submission.clone() });
        }
    }

    /// The first input whose accept died with the process that is (or is not) a continuation.
    fn lost_of_kind(&self, continuation: bool) -> Option<usize> {
        self.lost.iter().position(|s| (s.kind == crate::observation::Kind::Continuation) == continuation)
    }

    /// An input whose accept died with the process but whose write was durable, found by the listing after the
    /// restart: it is queued like any other (SPEC 5: a durable input survives; its caller is gone).
    fn adopt_lost(&mut self, id: InputRef, submission: Submission) {
        self.inputs_seen.insert(id, true);
        let input = Input::queued_new(submission, false);
        self.inputs.insert(id, input);
    }

    fn wake_all(&mut self) {
        for input in self.inputs.values_mut() {
            input.quiet = false;
        }
    }

    /// Whether a lifecycle write was asked of the store and not answered yet.
    pub(crate) fn writing_lifecycle(&self) -> bool {
        self.writing
    }

    /// Whether an operations write was asked of the store and not answered yet.
    pub(crate) fn writing_operations(&self) -> bool {
        self.ops.writing_unanswered()
    }

    /// The standing the session has now, by the calls answered so far (SPEC 2.1).
    #[must_use]
    pub fn standing(&self) -> Standing {
        Standing::of(self.flags)
    }

    /// The standing the store keeps: the one the last acknowledged lifecycle write recorded (SPEC 5). After a
    /// crash it is also the session's [`SessionSpec::standing`].
    #[must_use]
    pub fn durable_standing(&self) -> Standing {
        Standing::of(self.durable_flags)
    }

    /// How many inputs the specification knows to be pending (queued or in a run).
    #[must_use]
    pub fn live_inputs(&self) -> usize {
        self.inputs.values().filter(|i| i.live()).count()
    }

    /// Whether a run is handed out and not yet ended.
    #[must_use]
    pub fn run_held(&self) -> bool {
        self.run.is_some()
    }

    /// Whether a caller still waits on an answer.
    #[must_use]
    pub fn waiting(&self) -> usize {
        self.waiters.values().filter(|w| !w.resolved).count()
    }
}
