//! The fleet (specs/lease.md): several hosts over one shared store, each holding burrow-core's real `LeaseMachine`
//! for one session, the store applying burrow-core's real `LeaseRow` rules, with the clock, pauses, crashes and every
//! interleaving of requests and answers in between.
//!
//! Messages are slow: a request a host sends lands at the store at a later step of its own, and its answer reaches
//! the host at a later step again. A host that crashes loses its memory but not what it already sent, and a paused
//! host takes no step while the clock goes on: so a paused owner's late write, the classic failure of a sharded
//! control plane, is among the interleavings.
//!
//! The work is abstract: `inputs` acknowledged durable inputs sit in the store from the start. A host that drives
//! the session reads which are not committed yet, runs one, and commits it naming its epoch; when the commit is
//! acknowledged it tells the caller the input is done. The properties judge what the store's commit log and the
//! callers saw, never a host's own fields.

use std::collections::BTreeSet;

use burrow_core::ids::{EpochId, Millis};
use burrow_core::lease::{Fenced, HostId, LeaseConfig, LeaseEffect, LeaseEvent, LeaseMachine, LeaseRow};
use stateright::{Model, Property};

use crate::{NO_PANIC, contained};

/// A request on its way to the store.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Request {
    /// A claim sent at this host time.
    Claim,
    /// A renewal at this epoch.
    Renew(EpochId),
    /// A release at this epoch.
    Release(EpochId),
    /// Input `i` committed at this epoch.
    Commit(u8, EpochId),
}

/// One host.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Host {
    /// burrow-core's lease machine: this host's view of its lease.
    pub lease: LeaseMachine,
    /// The host takes no step (a stop-the-world pause, a partition): the clock goes on.
    pub paused: bool,
    /// Requests sent and not landed yet (they outlive a crash of their sender).
    pub sent: Vec<Request>,
    /// Answers the store gave that have not reached the host yet (dropped when it crashes).
    pub answers: Vec<Answer>,
    /// The input the host runs, read as uncommitted from the store when it began.
    pub running: Option<u8>,
    /// The host sent the commit of the input it runs and awaits the answer.
    pub committing: bool,
    /// Claims made (bounded).
    pub claims: u8,
    /// Ticks this host's clock has fallen behind the store's (clock drift, at most the model's `skew`).
    pub lag: u64,
}

/// What the store answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Answer {
    /// A lease answer for the machine.
    Lease(LeaseEvent),
    /// Input `i`'s commit landed.
    Committed(u8),
    /// Input `i`'s commit was refused.
    CommitFenced(u8, Fenced),
}

/// A planted mistake (teeth tests only).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FleetDefect {
    /// The store lands a commit whatever epoch it names.
    StoreIgnoresEpoch,
    /// A host that is told its commit was fenced tells its caller the input is done anyway.
    FencedCommitToldDone,
}

/// The fleet's state.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct FleetWorld {
    /// The clock, in ticks: the store's. A host reads it less its own `lag`.
    pub now: u64,
    /// The store's lease row.
    pub row: LeaseRow,
    /// The hosts.
    pub hosts: Vec<Host>,
    /// The store's commit log: (input, epoch named, the row's epoch when it landed, host).
    pub log: Vec<(u8, EpochId, EpochId, u8)>,
    /// Inputs whose caller was told "done".
    pub told_done: BTreeSet<u8>,
    /// A commit was refused for its epoch.
    pub stale_refused: bool,
    /// The host whose claim the store granted first.
    pub first_owner: Option<u8>,
    /// A host crashed while it held the lease, and another host then claimed it.
    pub crashed_holder: bool,
    /// The lease was claimed by another host after a crashed holder.
    pub taken_after_crash: bool,
    /// Pauses and crashes spent.
    pub faults: u8,
    /// The step during which the checked code panicked.
    pub panicked: Option<String>,
}

/// A step.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FleetAction {
    /// The clock moves one tick.
    Tick,
    /// The clock moves one tick, and host `h`'s clock does not: it runs slow.
    TickSlow(u8),
    /// Host `h` asks for the session.
    Claim(u8),
    /// Host `h` notices the time (renews when due, stops past its end).
    Notice(u8),
    /// The store applies host `h`'s oldest request.
    Land(u8),
    /// Host `h` receives its oldest answer.
    Hear(u8),
    /// Host `h` (driving) begins the lowest input the store shows uncommitted.
    Run(u8),
    /// Host `h` commits the input it runs.
    Commit(u8),
    /// Host `h` lets the session go.
    Release(u8),
    /// Host `h` pauses.
    Pause(u8),
    /// Host `h` resumes.
    Resume(u8),
    /// Host `h` crashes and restarts empty.
    Crash(u8),
}

/// The fleet model.
#[derive(Clone, Debug)]
pub struct FleetModel {
    /// Hosts.
    pub hosts: u8,
    /// Inputs in the store.
    pub inputs: u8,
    /// The clock's last tick.
    pub ticks: u64,
    /// Claims per host.
    pub claims: u8,
    /// Pauses and crashes in all.
    pub faults: u8,
    /// How many ticks a host's clock may fall behind the store's over the whole run: the drift the lease's margin
    /// must cover.
    pub skew: u64,
    /// The lease's timing, in ticks.
    pub config: LeaseConfig,
    /// A planted mistake (teeth tests only).
    pub defect: Option<FleetDefect>,
}

impl Model for FleetModel {
    type State = FleetWorld;
    type Action = FleetAction;

    fn init_states(&self) -> Vec<FleetWorld> {
        let host = Host {
            lease: LeaseMachine::new(self.config),
            paused: false,
            sent: Vec::new(),
            answers: Vec::new(),
            running: None,
            committing: false,
            claims: 0,
            lag: 0,
        };
        vec![FleetWorld {
            now: 0,
            row: LeaseRow::default(),
            hosts: vec![host; usize::from(self.hosts)],
            log: Vec::new(),
            told_done: BTreeSet::new(),
            stale_refused: false,
            first_owner: None,
            crashed_holder: false,
            taken_after_crash: false,
            faults: 0,
            panicked: None,
        }]
    }

    fn actions(&self, w: &FleetWorld, actions: &mut Vec<FleetAction>) {
        if w.panicked.is_some() {
            return;
        }
        if w.now < self.ticks {
            actions.push(FleetAction::Tick);
        }
        for (h, host) in w.hosts.iter().enumerate() {
            let h = h as u8;
            let now = Millis(w.now - host.lag);
            if w.now < self.ticks && host.lag < self.skew {
                actions.push(FleetAction::TickSlow(h));
            }
            if !host.sent.is_empty() {
                // The network delivers whether or not the sender is paused.
                actions.push(FleetAction::Land(h));
            }
            if host.paused {
                actions.push(FleetAction::Resume(h));
                continue;
            }
            if !host.answers.is_empty() {
                actions.push(FleetAction::Hear(h));
            }
            let held = host.lease.phase_name() == burrow_core::lease::LeasePhaseName::Held;
            let claimable = matches!(
                host.lease.phase_name(),
                burrow_core::lease::LeasePhaseName::Unowned | burrow_core::lease::LeasePhaseName::Lost
            );
            if claimable && host.claims < self.claims {
                actions.push(FleetAction::Claim(h));
            }
            if held {
                actions.push(FleetAction::Notice(h));
                actions.push(FleetAction::Release(h));
            }
            if host.lease.drives(now).is_some() {
                match host.running {
                    None if self.uncommitted(w).is_some() => actions.push(FleetAction::Run(h)),
                    Some(_) if !host.committing => actions.push(FleetAction::Commit(h)),
                    Some(_) => {}
                    None => {}
                }
            }
            if w.faults < self.faults {
                actions.push(FleetAction::Pause(h));
                actions.push(FleetAction::Crash(h));
            }
        }
    }

    fn next_state(&self, last: &FleetWorld, action: FleetAction) -> Option<FleetWorld> {
        contained(|| self.step(last, action)).unwrap_or_else(|message| {
            let mut world = last.clone();
            world.panicked = Some(format!("{action:?} panicked: {message}"));
            Some(world)
        })
    }

    fn properties(&self) -> Vec<Property<Self>> {
        fleet_properties()
    }
}

impl FleetModel {
    /// The lowest input the store's log does not show committed.
    fn uncommitted(&self, w: &FleetWorld) -> Option<u8> {
        (0..self.inputs).find(|i| !w.log.iter().any(|(c, ..)| c == i))
    }

    fn lease(&self, w: &mut FleetWorld, h: usize, event: LeaseEvent) {
        let now = Millis(w.now - w.hosts[h].lag);
        let Ok(effects) = w.hosts[h].lease.apply(now, event) else { return };
        for effect in effects {
            let host = &mut w.hosts[h];
            match effect {
                LeaseEffect::SendClaim => host.sent.push(Request::Claim),
                LeaseEffect::SendRenew { epoch } => host.sent.push(Request::Renew(epoch)),
                LeaseEffect::SendRelease { epoch } => host.sent.push(Request::Release(epoch)),
                LeaseEffect::StartDriving { .. } => {}
                // Stopped at once: the run is abandoned and its caller is told the ownership moved, never "done". A
                // commit already sent may still land (it names the old epoch); its answer is heard and ignored.
                LeaseEffect::StopDriving { .. } => host.running = None,
            }
        }
    }

    fn step(&self, last: &FleetWorld, action: FleetAction) -> Option<FleetWorld> {
        let mut w = last.clone();
        let host_now = |w: &FleetWorld, h: u8| Millis(w.now - w.hosts[h as usize].lag);
        match action {
            FleetAction::Tick => w.now += 1,
            FleetAction::TickSlow(h) => {
                w.now += 1;
                w.hosts[h as usize].lag += 1;
            }
            FleetAction::Claim(h) => {
                w.hosts[h as usize].claims += 1;
                self.lease(&mut w, h as usize, LeaseEvent::Claim);
            }
            FleetAction::Notice(h) => self.lease(&mut w, h as usize, LeaseEvent::Tick),
            FleetAction::Release(h) => self.lease(&mut w, h as usize, LeaseEvent::Release),
            FleetAction::Land(h) => self.land(&mut w, h),
            FleetAction::Hear(h) => {
                let answer = w.hosts[h as usize].answers.remove(0);
                match answer {
                    Answer::Lease(event) => self.lease(&mut w, h as usize, event),
                    Answer::Committed(i) => {
                        w.hosts[h as usize].running = None;
                        w.hosts[h as usize].committing = false;
                        w.told_done.insert(i);
                    }
                    Answer::CommitFenced(i, fenced) => {
                        w.hosts[h as usize].running = None;
                        w.hosts[h as usize].committing = false;
                        if self.defect == Some(FleetDefect::FencedCommitToldDone) {
                            w.told_done.insert(i);
                        }
                        self.lease(&mut w, h as usize, LeaseEvent::WriteFenced { owner: fenced.owner });
                    }
                }
            }
            FleetAction::Run(h) => w.hosts[h as usize].running = self.uncommitted(&w),
            FleetAction::Commit(h) => {
                let now = host_now(&w, h);
                let host = &mut w.hosts[h as usize];
                let (Some(input), Some(epoch)) = (host.running, host.lease.drives(now)) else { return None };
                host.committing = true;
                host.sent.push(Request::Commit(input, epoch));
            }
            FleetAction::Pause(h) => {
                w.faults += 1;
                w.hosts[h as usize].paused = true;
            }
            FleetAction::Resume(h) => w.hosts[h as usize].paused = false,
            FleetAction::Crash(h) => {
                w.faults += 1;
                let now = host_now(&w, h);
                let host = &mut w.hosts[h as usize];
                if host.lease.drives(now).is_some() {
                    w.crashed_holder = true;
                }
                // A new process: no lease, no run, no answers; what it sent is still on its way.
                host.lease = LeaseMachine::new(self.config);
                host.answers.clear();
                host.running = None;
                host.committing = false;
            }
        }
        Some(w)
    }

    /// The store applies host `h`'s oldest request with burrow-core's row rules, and queues the answer.
    fn land(&self, w: &mut FleetWorld, h: u8) {
        let id = HostId(u64::from(h) + 1);
        let now = Millis(w.now);
        let length = self.config.length_ms;
        let request = w.hosts[h as usize].sent.remove(0);
        let answer = match request {
            Request::Claim => match w.row.claim(id, now, length) {
                Ok(row) => {
                    if w.crashed_holder && w.row.owner.is_some_and(|owner| owner != id) {
                        w.taken_after_crash = true;
                    }
                    w.row = row;
                    w.first_owner.get_or_insert(h);
                    Answer::Lease(LeaseEvent::Claimed { epoch: row.epoch })
                }
                Err(fenced) => Answer::Lease(LeaseEvent::ClaimRefused { owner: fenced.owner }),
            },
            Request::Renew(epoch) => match w.row.renew(id, epoch, now, length) {
                Ok(row) => {
                    w.row = row;
                    Answer::Lease(LeaseEvent::Renewed)
                }
                Err(fenced) => Answer::Lease(LeaseEvent::RenewRefused { owner: fenced.owner }),
            },
            Request::Release(epoch) => {
                if let Ok(row) = w.row.release(id, epoch) {
                    w.row = row;
                }
                return;
            }
            Request::Commit(input, epoch) => {
                let admitted =
                    if self.defect == Some(FleetDefect::StoreIgnoresEpoch) { Ok(()) } else { w.row.admit_write(epoch) };
                match admitted {
                    Ok(()) => {
                        w.log.push((input, epoch, w.row.epoch, h));
                        Answer::Committed(input)
                    }
                    Err(fenced) => {
                        w.stale_refused = true;
                        Answer::CommitFenced(input, fenced)
                    }
                }
            }
        };
        w.hosts[h as usize].answers.push(answer);
    }
}

fn fleet_properties() -> Vec<Property<FleetModel>> {
    vec![
        Property::always(NO_PANIC, |_, w: &FleetWorld| w.panicked.is_none()),
        Property::always(
            "two hosts never both drive at once while the clocks drift within the margin",
            |_, w: &FleetWorld| w.hosts.iter().filter(|h| h.lease.drives(Millis(w.now - h.lag)).is_some()).count() <= 1,
        ),
        Property::always("at most one host's commits land per epoch", |_, w: &FleetWorld| {
            w.log.iter().all(|(_, e, _, h)| w.log.iter().all(|(_, e2, _, h2)| e != e2 || h == h2))
        }),
        Property::always("no write from a stale epoch lands", |_, w: &FleetWorld| {
            w.log.iter().all(|(_, named, current, _)| named == current)
        }),
        Property::always("no input is committed twice", |_, w: &FleetWorld| {
            w.log.iter().enumerate().all(|(k, (i, ..))| w.log[..k].iter().all(|(j, ..)| j != i))
        }),
        Property::always("a caller told done has its input committed", |_, w: &FleetWorld| {
            w.told_done.iter().all(|i| w.log.iter().any(|(c, ..)| c == i))
        }),
        Property::sometimes("a hand-over: a later owner's commit lands", |_, w: &FleetWorld| {
            w.log.iter().any(|(_, _, _, h)| w.first_owner.is_some_and(|first| first != *h))
        }),
        Property::sometimes("a stale write is refused", |_, w: &FleetWorld| w.stale_refused),
        Property::sometimes("a takeover after the holder crashed", |_, w: &FleetWorld| w.taken_after_crash),
        Property::sometimes("a host drives while its clock runs slow", |_, w: &FleetWorld| {
            w.hosts.iter().any(|h| h.lag > 0 && h.lease.drives(Millis(w.now - h.lag)).is_some())
        }),
        Property::sometimes("every input is committed and its caller told", |m: &FleetModel, w: &FleetWorld| {
            w.told_done.len() == usize::from(m.inputs)
        }),
    ]
}
