//! Conformance of the real shell to the observable specification (`burrow-spec`), in the full and tokio modes.
//!
//! Each process's runtime is built with a [`Witness`] as its tap ([`burrow::tap`]). The tap says, under each
//! session's lock, which event the machine took and what it answered, which effect is performed and what performing
//! it observed. The witness turns that into the specification's observations, in that order, and feeds each
//! session's [`SessionSpecs`]; the first observation it does not allow is a violation naming the rule.
//!
//! The tap only gives the order. What the observations say is held against what the outside received: the driver
//! checks that the executor was handed exactly the run and inputs the witness saw handed out, that an accept's caller
//! got the answer the witness observed, and that every outcome a caller received is one the witness saw resolved.
//! A shell that performs something other than what it reports to the tap is caught there.
//!
//! Three things are outside the specification's vocabulary: a loop killed by the harness (its run never reports and
//! nothing wakes the session until an attach repairs it, so that session's quiescence is not judged meanwhile), a
//! late executor report the machine refused (the run had already ended; nothing is observed), and the events of a
//! process that crashed (dropped: the process is gone).

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use burrow::burrow_core::operations::OpEvent;
use burrow::burrow_core::protocol::{Observed, Subject};
use burrow::burrow_core::registration::RegistrationEffect;
use burrow::burrow_core::session::{Effect, Refusal, Reply, SessionEvent, SessionMachine, StopReason};
use burrow::tap::{Tap, Teller};
use burrow::{InputId, RunId, SessionId};
use burrow_model::observe;
use burrow_spec::{AcceptAnswer, Answer, Call, Class, Observation, SessionSpecs, SpecConfig, Write};

use crate::full::Sim;

/// How many observations of a session the trace shows when one breaks a rule.
const RECENT: usize = 400;

/// One session's specification and what the witness needs to translate the tap.
pub(crate) struct Judged {
    pub(crate) spec: SessionSpecs,
    /// An accept answered by the machine whose input write has not ended: its caller learns the answer then.
    answer_due: Option<Observation>,
    /// The input of an accept_and_run whose run has not been handed out yet.
    inline: Option<InputId>,
    /// Peer-request intents the session treats as silent.
    silent: BTreeSet<String>,
    /// Waiters whose accept answered with a handle that its caller holds, by the machine's id, with the number the
    /// specification knows the handle by (the machine numbers waiters afresh after a re-registration).
    given: BTreeMap<u64, u64>,
    next_ref: u64,
    /// The runtime's newest session object for this id (a prepare after a committed unregister makes a new one).
    instance: Option<u64>,
    /// The harness killed the loop and no attach has repaired it yet: the run it held never reports and nothing
    /// wakes it, which the specification has no word for; the session's safety is judged, its quiescence is not.
    pub(crate) loop_killed: bool,
    /// How many times a loop of this session let its executor go (released it, or was aborted at the grace's end).
    pub(crate) let_go: u32,
    recent: VecDeque<String>,
}

impl Judged {
    fn new(config: SpecConfig) -> Judged {
        Judged {
            spec: SessionSpecs::new(config),
            answer_due: None,
            inline: None,
            silent: BTreeSet::new(),
            given: BTreeMap::new(),
            next_ref: 1,
            instance: None,
            loop_killed: false,
            let_go: 0,
            recent: VecDeque::new(),
        }
    }
}

/// What the witness saw, for the driver's checks against what the outside received.
pub(crate) struct Witnessed {
    pub(crate) sessions: BTreeMap<u8, Judged>,
    /// The inputs of each run the session handed out, in order.
    pub(crate) runs: BTreeMap<(u8, RunId), Vec<InputId>>,
    /// Accept answers the session gave and no caller has checked yet, by input and by whether it was accepted
    /// (else deduplicated).
    pub(crate) answers: BTreeMap<(u8, InputId, bool), u32>,
    /// Outcomes the session resolved for handles its callers hold, by class, not yet received by a caller.
    pub(crate) resolved: BTreeMap<(u8, Class), u32>,
    /// What the executor returned for each run (a report, an error or a panic), as it returned it.
    pub(crate) executor_said: BTreeMap<(u8, RunId), burrow_spec::Report>,
    /// The cursor each session's registry last took an acknowledgement through (for the consumer's check that it
    /// took the one asked).
    pub(crate) acknowledged: BTreeMap<u8, u64>,
    /// Observations judged so far.
    pub(crate) judged: u64,
    /// The published events each session told its subscribers (their payloads), in the order it told them.
    pub(crate) told_published: BTreeMap<u8, Vec<u64>>,
}

impl Default for Witnessed {
    /// No session: the driver replaces it with [`Witnessed::new`] before anything runs.
    fn default() -> Witnessed {
        Witnessed::new(0, SpecConfig { max_attempts: 1, store: true, bounds: observe::bounds() })
    }
}

impl Witnessed {
    /// A fresh specification for each session.
    pub(crate) fn new(sessions: u8, config: SpecConfig) -> Witnessed {
        Witnessed {
            sessions: (1..=sessions).map(|s| (s, Judged::new(config))).collect(),
            runs: BTreeMap::new(),
            answers: BTreeMap::new(),
            resolved: BTreeMap::new(),
            executor_said: BTreeMap::new(),
            acknowledged: BTreeMap::new(),
            judged: 0,
            told_published: BTreeMap::new(),
        }
    }
}

/// The tap of one process's runtime.
pub(crate) struct Witness {
    pub(crate) sim: Sim,
    pub(crate) process: u32,
}

fn session_of(id: SessionId) -> u8 {
    u8::try_from(id.0).unwrap_or(u8::MAX)
}

fn refusal(observation: &Observation) -> bool {
    matches!(
        observation,
        Observation::Accept { answer: AcceptAnswer::Refused(_), .. }
            | Observation::AcceptAndRun { answer: AcceptAnswer::Refused(_), .. }
            | Observation::Call { answer: Answer::Refused(_), .. }
            | Observation::Op(burrow_spec::OpObservation::Call { answer: burrow_spec::OpAnswer::Refused(_), .. })
    )
}

impl Witness {
    /// What the driver records, unless this witness's process has crashed (its taps are then dropped).
    fn seen(&self) -> Option<std::sync::MutexGuard<'_, crate::full::Seen>> {
        let seen = self.sim.seen();
        (seen.process == self.process).then_some(seen)
    }

    /// Feeds `observations` of the session object `teller` to its session's specification, unless this process is
    /// gone. An object older than the newest one for its id was released by an unregister: it may only refuse, or
    /// answer an unregister that joined the release.
    fn feed(&self, seen: &mut crate::full::Seen, teller: Teller, observations: Vec<Observation>) {
        if observations.is_empty() {
            return;
        }
        let s = session_of(teller.session);
        let t = self.sim.now();
        let Some(judged) = seen.witnessed.sessions.get_mut(&s) else { return };
        let newest = *judged.instance.get_or_insert(teller.instance);
        if teller.instance > newest {
            // A new session object for the id: the runtime made the released session again from the store.
            judged.instance = Some(teller.instance);
            if let Some(broken) = judge(&mut seen.witnessed, s, &Observation::Rebuilt) {
                seen.violate(t, broken);
                return;
            }
        } else if teller.instance < newest {
            // An unregister that joined the one in flight reports the same release, even once the id has a newer
            // object (full seed 86937: two concurrent unregisters, and an accept that made the id again between).
            let joined = |o: &&Observation| *o == &Observation::Call { call: Call::Unregister, answer: Answer::Done };
            if let Some(answer) = observations.iter().filter(|o| !joined(o)).find(|o| !refusal(o)) {
                let recent: Vec<String> = judged.recent.iter().rev().take(6).rev().cloned().collect();
                let what = format!(
                    "s{s}: a released session object answered after its id was prepared again: {answer:?}; last: {}",
                    recent.join(" | ")
                );
                seen.violate(t, what);
            }
            return;
        }
        for observation in observations {
            if let Some(broken) = judge(&mut seen.witnessed, s, &observation) {
                seen.violate(t, broken);
                return;
            }
        }
    }
}

/// Judges one observation of session `s`; the violation's text if the specification does not allow it.
pub(crate) fn judge(witnessed: &mut Witnessed, s: u8, observation: &Observation) -> Option<String> {
    let judged = witnessed.sessions.get_mut(&s)?;
    if *observation == Observation::ExecutorReleased {
        judged.loop_killed = false;
    }
    if matches!(observation, Observation::ExecutorReleased | Observation::GraceExpired) {
        judged.let_go += 1;
    }
    if *observation == Observation::Quiescent && judged.loop_killed {
        return None;
    }
    witnessed.judged += 1;
    let judged = witnessed.sessions.get_mut(&s).expect("present");
    if judged.recent.len() == RECENT {
        judged.recent.pop_front();
    }
    judged.recent.push_back(format!("{observation:?}"));
    let Err(deviation) = judged.spec.observe(observation) else { return None };
    let recent: Vec<&str> = judged.recent.iter().map(String::as_str).collect();
    Some(format!("s{s} specification: {deviation}; observed, last {}: {}", recent.len(), recent.join(" | ")))
}

/// Whether a session holds a run that can still end (the executor has it, or its report is not settled).
pub(crate) fn any_run_held(witnessed: &Witnessed) -> bool {
    witnessed.sessions.values().any(|j| !j.loop_killed && j.spec.run_held())
}

/// The sessions.
pub(crate) fn sessions(witnessed: &Witnessed) -> Vec<u8> {
    witnessed.sessions.keys().copied().collect()
}

/// The harness is killing the session's loop (until an attach repairs it, its quiescence is not judged).
pub(crate) fn loop_killed(witnessed: &mut Witnessed, s: u8) {
    if let Some(judged) = witnessed.sessions.get_mut(&s) {
        judged.loop_killed = true;
    }
}

/// The process died: every session's accept still waiting for its write never answered, then the crash itself.
pub(crate) fn crash(witnessed: &mut Witnessed) -> Option<String> {
    let mut broken = None;
    let sessions: Vec<u8> = witnessed.sessions.keys().copied().collect();
    for s in sessions {
        let judged = witnessed.sessions.get_mut(&s).expect("listed");
        judged.loop_killed = false;
        judged.instance = None;
        judged.inline = None;
        judged.given.clear();
        let mut observations = Vec::new();
        if let Some(due) = judged.answer_due.take() {
            observations.push(lost(due));
        }
        observations.push(Observation::Crash);
        for observation in &observations {
            if let Some(text) = judge(witnessed, s, observation) {
                broken = broken.or(Some(text));
                break;
            }
        }
    }
    witnessed.resolved.clear();
    broken
}

fn lost(due: Observation) -> Observation {
    match due {
        Observation::Accept { submission, .. } => Observation::Accept { submission, answer: AcceptAnswer::Lost },
        Observation::AcceptAndRun { submission, .. } => {
            Observation::AcceptAndRun { submission, answer: AcceptAnswer::Lost }
        }
        other => other,
    }
}

/// The control call an event is, if a caller makes it.
fn call_of(event: &SessionEvent) -> Option<Call> {
    Some(match event {
        SessionEvent::BeginAttach => Call::Attach,
        SessionEvent::Detach => Call::Detach,
        SessionEvent::Stop => Call::Stop,
        SessionEvent::Retire => Call::Retire,
        SessionEvent::Recycle => Call::Recycle,
        SessionEvent::Reset => Call::Reset,
        SessionEvent::Recover(_) => Call::Recover,
        SessionEvent::Destroy => Call::Destroy,
        SessionEvent::BeginUnregister => Call::Unregister,
        SessionEvent::Interrupt { .. } => Call::Interrupt,
        SessionEvent::CancelAfterBoundary => Call::CancelAfterBoundary,
        SessionEvent::Prepare { .. } => Call::Prepare,
        _ => return None,
    })
}

impl Witness {
    /// The observations an event the machine took (or refused) makes, in order, before its effects.
    fn on_applied(
        &self,
        s: u8,
        event: &SessionEvent,
        answer: Result<&Reply, &Refusal>,
        effects: &[Effect],
        seen: &mut crate::full::Seen,
    ) -> Vec<Observation> {
        let event = match event {
            SessionEvent::Fenced { event, .. } => event.as_ref(),
            event => event,
        };
        if let Some(broken) = report_differs(&seen.witnessed, s, event, answer) {
            let t = self.sim.now();
            seen.violate(t, broken);
        }
        let witnessed = &mut seen.witnessed;
        let Some(judged) = witnessed.sessions.get_mut(&s) else { return Vec::new() };
        // The event's name goes into the recent list, so a broken rule shows what the session was doing.
        if judged.recent.len() == RECENT {
            judged.recent.pop_front();
        }
        judged.recent.push_back(format!("<{}>", event.name()));
        let mut out = effect_observations(answer, effects);
        match (event, answer) {
            (SessionEvent::Accept { spec, waiter, wake }, answer) => {
                let silent =
                    matches!(&spec.kind, burrow::InputKind::PeerRequest { intent } if judged.silent.contains(intent));
                let submission = observe::submission_of(spec, *waiter, *wake, silent);
                out.extend(accept_answer(witnessed, s, submission, answer, effects, false));
            }
            (SessionEvent::AcceptAndRun { spec }, answer) => {
                let submission = observe::submission_of(spec, false, true, false);
                out.extend(accept_answer(witnessed, s, submission, answer, effects, true));
            }
            (SessionEvent::SetSilentIntents(intents), Ok(_)) => judged.silent = intents.iter().cloned().collect(),
            (SessionEvent::Poll, _) => judged.inline = None,
            (SessionEvent::Operation(op), answer) => {
                if let (OpEvent::AcknowledgeFeed { through }, Ok(_)) = (op, answer) {
                    witnessed.acknowledged.insert(s, through.0);
                }
                // The specification decides from the operation's kind whether its end may bring a continuation.
                out.push(observe::op_call(op, answer.map(|_| effects)));
            }
            (event, answer) => out.extend(event_observation(event, answer, effects)),
        }
        out
    }

    /// The observations an effect makes as it is performed.
    fn on_performing(&self, seen: &mut crate::full::Seen, s: u8, effect: &Effect) -> Vec<Observation> {
        let witnessed = &mut seen.witnessed;
        match effect {
            Effect::PersistLifecycle { starts_run, inputs, .. } => {
                let mut out = Vec::new();
                if let Some(run) = starts_run {
                    let staged = inputs.iter().filter(|r| matches!(r.state, burrow::InputState::Staged { .. }));
                    out.push(Observation::Staged { run: run.0, inputs: staged.map(|r| r.id.0).collect() });
                }
                out.push(Observation::Writing { write: Write::Lifecycle });
                out
            }
            Effect::PersistOperations(_) => vec![Observation::Writing { write: Write::Operations }],
            Effect::StartRun(primitive) => {
                let inputs: Vec<InputId> = primitive.inputs.iter().map(|(id, _)| *id).collect();
                witnessed.runs.insert((s, primitive.run), inputs.clone());
                let Some(judged) = witnessed.sessions.get_mut(&s) else { return Vec::new() };
                let inline = judged.inline.take().is_some_and(|input| inputs.first() == Some(&input));
                vec![Observation::HandedOut {
                    run: primitive.run.0,
                    inputs: inputs.iter().map(|i| i.0).collect(),
                    inline,
                }]
            }
            Effect::ResolveWaiters { waiters, resolution, .. } => {
                let class = observe::class(resolution);
                // A waiter whose accept failed its write was never given to a caller: nobody hears it.
                let Some(judged) = witnessed.sessions.get_mut(&s) else { return Vec::new() };
                let told: Vec<u64> = waiters.iter().filter_map(|w| judged.given.remove(&w.0)).collect();
                *witnessed.resolved.entry((s, class)).or_default() += told.len() as u32;
                told.into_iter().map(|waiter| Observation::Resolved { waiter, class }).collect()
            }
            Effect::Notify(notice) => {
                if let burrow::Notice::Published(event) = notice {
                    let payload = event.payload.parse().expect("the simulator publishes numbers");
                    witnessed.told_published.entry(s).or_default().push(payload);
                }
                observe::notice(notice).into_iter().collect()
            }
            _ => Vec::new(),
        }
    }

    /// The observations a performed effect's result makes: a store write, and the accept that waited for it.
    fn on_observed(
        &self,
        seen: &mut crate::full::Seen,
        s: u8,
        subject: Subject,
        observed: &Observed,
    ) -> Vec<Observation> {
        let ok = matches!(observed, Observed::Written);
        let write = match subject {
            Subject::BoundaryWrite(run) => Write::Boundary(run.0),
            Subject::LifecycleWrite { .. } => Write::Lifecycle,
            Subject::OperationsWrite => Write::Operations,
            Subject::InputWrite(_) => return Self::answer_after_write(seen, s, ok),
            _ => return Vec::new(),
        };
        vec![Observation::Written { write, ok }]
    }

    fn answer_after_write(seen: &mut crate::full::Seen, s: u8, ok: bool) -> Vec<Observation> {
        let witnessed = &mut seen.witnessed;
        let Some(judged) = witnessed.sessions.get_mut(&s) else { return Vec::new() };
        let Some(mut due) = judged.answer_due.take() else { return Vec::new() };
        if !ok {
            if let Observation::Accept { answer, .. } | Observation::AcceptAndRun { answer, .. } = &mut due {
                if let AcceptAnswer::Accepted { input, waiter } = *answer {
                    if let Some(waiter) = waiter {
                        judged.given.retain(|_, r| *r != waiter);
                    }
                    if let Some(n) = witnessed.answers.get_mut(&(s, InputId(input), true)) {
                        *n = n.saturating_sub(1);
                    }
                }
                *answer = AcceptAnswer::StoreFailed;
            }
        }
        vec![due]
    }
}

/// What the effects of a taken event show before the event's own answer: a run that expired on the way in, or the
/// release an unregister's commit makes.
fn effect_observations(answer: Result<&Reply, &Refusal>, effects: &[Effect]) -> Vec<Observation> {
    let mut out = Vec::new();
    if answer.is_err() {
        return out;
    }
    for effect in effects {
        match effect {
            // A run past its deadline expires before whatever event comes next is taken (specs/session.md,
            // Deadlines).
            Effect::CancelRun { run, reason: StopReason::DeadlineExceeded } => {
                out.push(Observation::DeadlinePassed { run: run.0 });
            }
            // The unregister's commit releases the session; its row is the write that follows.
            Effect::Registration(RegistrationEffect::Released { .. }) => out.push(Observation::Released),
            _ => {}
        }
    }
    out
}

/// What an event other than an accept or an operations call shows: the executor's report, the loop letting it go,
/// the grace expiring, or a control call and its answer.
fn event_observation(
    event: &SessionEvent,
    answer: Result<&Reply, &Refusal>,
    effects: &[Effect],
) -> Option<Observation> {
    match (event, answer) {
        (SessionEvent::RunReported { run, report, .. }, Ok(_)) => {
            Some(Observation::Reported { run: run.0, report: observe::report_of(report) })
        }
        (SessionEvent::RunFailed { run, .. }, Ok(_)) => {
            Some(Observation::Reported { run: run.0, report: burrow_spec::Report::Failed })
        }
        (SessionEvent::LoopExited { .. }, Ok(_)) => Some(Observation::ExecutorReleased),
        (SessionEvent::Tick, Ok(_)) => effects
            .iter()
            .any(|e| matches!(e, Effect::Registration(RegistrationEffect::AbortLoop { .. })))
            .then_some(Observation::GraceExpired),
        (event, answer) => {
            let call = call_of(event)?;
            let answer = match answer {
                Ok(reply) => observe::call_answer(reply),
                Err(refusal) => Answer::Refused(observe::refused(refusal)),
            };
            Some(Observation::Call { call, answer })
        }
    }
}

/// The observation of an accept (or an accept_and_run, `inline`) the machine answered: now, or once its input's
/// durable write has a result (kept as the session's answer due).
fn accept_answer(
    witnessed: &mut Witnessed,
    s: u8,
    submission: burrow_spec::Submission,
    answer: Result<&Reply, &Refusal>,
    effects: &[Effect],
    inline: bool,
) -> Option<Observation> {
    let observation = |submission, answer| {
        if inline {
            Observation::AcceptAndRun { submission, answer }
        } else {
            Observation::Accept { submission, answer }
        }
    };
    let reply = match answer {
        Err(refusal) => return Some(observation(submission, AcceptAnswer::Refused(observe::refused(refusal)))),
        Ok(reply) => reply,
    };
    let mut answer = observe::accept_answer(reply);
    if inline {
        if let AcceptAnswer::Accepted { input, .. } = answer {
            witnessed.sessions.get_mut(&s)?.inline = Some(InputId(input));
        }
    } else {
        note_answer(witnessed, s, &mut answer);
    }
    let answered = observation(submission, answer);
    if effects.iter().any(|e| matches!(e, Effect::PersistInput(_))) {
        witnessed.sessions.get_mut(&s)?.answer_due = Some(answered);
        return None;
    }
    Some(answered)
}

/// The session recorded a run's end other than as its executor returned it (a report of another kind, a failure
/// for a report, or an end the executor never returned).
fn report_differs(
    witnessed: &Witnessed,
    s: u8,
    event: &SessionEvent,
    answer: Result<&Reply, &Refusal>,
) -> Option<String> {
    use burrow_spec::Report;
    let (run, recorded) = match (event, answer) {
        (SessionEvent::RunReported { run, report, .. }, Ok(_)) => (*run, observe::report_of(report)),
        (SessionEvent::RunFailed { run, .. }, Ok(_)) => (*run, Report::Failed),
        _ => return None,
    };
    let said = witnessed.executor_said.get(&(s, run)).copied();
    let failure = |r: Report| matches!(r, Report::Failed | Report::Panicked);
    let same = said.is_some_and(|said| said == recorded || (failure(said) && failure(recorded)));
    (!same).then(|| format!("s{s} run {run}: the executor returned {said:?}, the session recorded {recorded:?}"))
}

/// Records an accept's answer for the caller-side check, and the handle its caller holds, renamed to the number
/// the specification knows it by.
fn note_answer(witnessed: &mut Witnessed, s: u8, answer: &mut AcceptAnswer) {
    let (input, waiter, accepted) = match answer {
        AcceptAnswer::Accepted { input, waiter } => (*input, waiter, true),
        AcceptAnswer::Deduplicated { existing, waiter } => (*existing, waiter, false),
        _ => return,
    };
    *witnessed.answers.entry((s, InputId(input), accepted)).or_default() += 1;
    if let (Some(id), Some(judged)) = (waiter.as_mut(), witnessed.sessions.get_mut(&s)) {
        let number = judged.next_ref;
        judged.next_ref += 1;
        judged.given.insert(*id, number);
        *id = number;
    }
}

// Each tap call reads and judges under one hold of the driver's lock: a crash between the two (another thread,
// in tokio mode) would lose what was read, such as an accept's answer taken as the answer due (tokio seed 209: an
// accept whose write landed just before the crash was neither answered nor lost to the specification).
impl Tap for Witness {
    fn applied(&self, teller: Teller, event: &SessionEvent, answer: Result<&Reply, &Refusal>, effects: &[Effect]) {
        let Some(mut seen) = self.seen() else { return };
        let observations = self.on_applied(session_of(teller.session), event, answer, effects, &mut seen);
        self.feed(&mut seen, teller, observations);
    }

    fn performing(&self, teller: Teller, effect: &Effect) {
        let Some(mut seen) = self.seen() else { return };
        let observations = self.on_performing(&mut seen, session_of(teller.session), effect);
        self.feed(&mut seen, teller, observations);
    }

    fn observed(&self, teller: Teller, subject: Subject, observed: &Observed) {
        let Some(mut seen) = self.seen() else { return };
        let observations = self.on_observed(&mut seen, session_of(teller.session), subject, observed);
        self.feed(&mut seen, teller, observations);
    }

    /// SPEC 6 after every drive, not only between the scenario's steps.
    fn settled(&self, teller: Teller, machine: &SessionMachine) {
        let Err(violation) = burrow::burrow_core::invariants::check(machine) else { return };
        if let Some(mut seen) = self.seen() {
            let t = self.sim.now();
            seen.violate(t, format!("s{} invariant broken after a drive: {violation}", session_of(teller.session)));
        }
    }
}

/// The class of an outcome a caller received.
pub(crate) fn received_class(outcome: &burrow::Outcome) -> Class {
    observe::class_of(outcome.class())
}

/// The run a caller-side record names, for messages.
pub(crate) fn run_text(run: RunId, inputs: &[InputId]) -> String {
    format!("{run} [{}]", inputs.iter().map(|i| i.to_string()).collect::<Vec<_>>().join(","))
}
