//! The hand-over (specs/lease.md, specs/session.md#ownership-moved): hosts over one shared store, each holding
//! burrow-core's real `LeaseMachine` and, once it has claimed the session, burrow-core's real `SessionMachine`,
//! restored from the store's rows and driven by the session model's own performer (every effect's result through
//! the core's table). The store keeps one lease row with burrow-core's `LeaseRow` rules and one set of session rows;
//! every write of a host names the epoch it claimed and lands only while that is the row's epoch.
//!
//! Between the two machines, each fact's meaning is burrow-core's: a lease gone tells the session the event
//! `LossReason::session_event` names; a fenced write tells the lease machine `lease::after_fenced_write`; a run
//! about to reach an executor (the loop's or an `accept_and_run` caller's) goes on or stops the session as
//! `lease::before_run` says, told whether the lease still drives. The model performs; it decides none of them.
//!
//! The properties judge what the outside saw: the store's rows and lease row, what each executor was given, what
//! each caller was told. None reads a host's own fields. A host's drive pauses before each store write, so another
//! host's claim, a pause or a crash can come between any two writes of a drive.

use std::collections::BTreeSet;

use burrow_core::ids::{EpochId, InputId, Millis, RunId};
use burrow_core::lease::{HostId, LeaseConfig, LeaseEffect, LeaseEvent, LeaseMachine, LeasePhaseName, LeaseRow};
use burrow_core::session::SessionEvent;
use stateright::{Model, Property};

use crate::session::{Action, Bounds, Kind, Outcome, SessionModel, StoreImage, World};
use crate::{NO_PANIC, contained};

/// One host.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct HandoverHost {
    /// burrow-core's lease machine: this host's view of its lease.
    pub lease: LeaseMachine,
    /// The session as this host holds it, once it claimed and restored it (gone with a crash).
    pub session: Option<World>,
    /// The epoch this host's writes name.
    pub epoch: EpochId,
    /// The run this host's executor holds.
    pub given: Option<RunId>,
    /// The host takes no step (a stop-the-world pause): the clock goes on.
    pub paused: bool,
    /// Claims made.
    pub claims: u8,
    /// The drive in progress is an `accept_and_run` call's: the run it hands out is its caller's.
    pub inline: bool,
}

/// A planted mistake (teeth tests only).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HandoverDefect {
    /// A host hands a run to its executor without asking its lease (the shell's check is skipped).
    LeaseIgnored,
    /// The store lands every write, whatever epoch it names.
    StoreIgnoresEpoch,
    /// The loop asks its lease before a run, an `accept_and_run` caller's run does not (the shell before this model
    /// found it).
    InlineRunUnchecked,
}

/// The model's state.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct HandoverWorld {
    /// The store's clock, in ticks (every host reads it; the fleet model covers drift).
    pub now: u64,
    /// The store's lease row.
    pub row: LeaseRow,
    /// The store's session rows.
    pub store: StoreImage,
    /// The hosts.
    pub hosts: Vec<HandoverHost>,
    /// Inputs submitted, across hosts.
    pub inputs: u8,
    /// Pauses and crashes spent.
    pub faults: u8,
    /// Inputs acknowledged durable to a caller, by any host.
    pub acked: BTreeSet<InputId>,
    /// Inputs a caller was told ended in success, by any host.
    pub succeeded: BTreeSet<InputId>,
    /// A run reached an executor while its host's lease was not live in the store.
    pub given_without_lease: bool,
    /// An input reached an executor after a receipt naming it had landed.
    pub given_after_commit: bool,
    /// A write was refused by the fence.
    pub stale_refused: bool,
    /// A receipt landed from a host other than the first owner.
    pub later_owner_committed: bool,
    /// A claim restored an input another host had acknowledged.
    pub restored_acked: bool,
    /// A host that held the lease crashed.
    pub crashed_holder: bool,
    /// Another host claimed the session after a holder crashed.
    pub taken_after_crash: bool,
    /// A host past its lease stopped a run before its executor got it.
    pub gate_stopped: bool,
    /// The step during which the checked code panicked.
    pub panicked: Option<String>,
}

/// A step.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum HandoverAction {
    /// The clock moves one tick.
    Tick,
    /// Host `h` claims the session (the claim lands at once; the fleet model covers slow messages).
    Claim(u8),
    /// Host `h`'s lease loop notices the time: renews when due, tells the session when the lease ended.
    Notice(u8),
    /// Host `h` pauses.
    Pause(u8),
    /// Host `h` resumes.
    Resume(u8),
    /// Host `h` crashes: its lease machine, session, callers and executor are gone; its process starts empty.
    Crash(u8),
    /// Host `h`'s session takes a step of the session model (a call, the loop, the executor, a store write).
    Session(u8, Action),
}

/// The hand-over model.
#[derive(Clone, Debug)]
pub struct HandoverModel {
    /// Hosts.
    pub hosts: u8,
    /// Inputs submitted, across hosts.
    pub inputs: u8,
    /// The clock's last tick.
    pub ticks: u64,
    /// Claims per host.
    pub claims: u8,
    /// Pauses and crashes in all.
    pub faults: u8,
    /// The lease's timing, in ticks.
    pub config: LeaseConfig,
    /// Each host's session model (its kinds and executor outcomes; its own fault budgets are not used).
    pub session: SessionModel,
    /// A planted mistake (teeth tests only).
    pub defect: Option<HandoverDefect>,
}

impl HandoverModel {
    /// A model of `hosts` hosts, `inputs` prompts (each with a waiter, one through `accept_and_run`), `ticks` ticks
    /// of a lease of `config`, `claims` claims per host and `faults` pauses or crashes.
    #[must_use]
    pub fn new(hosts: u8, inputs: u8, ticks: u64, claims: u8, faults: u8, config: LeaseConfig) -> HandoverModel {
        let bounds = Bounds {
            inputs,
            waiters: inputs,
            crashes: 0,
            store_faults: 0,
            // Unspent, it keeps each drive pausing before its writes; the model's own claims do the moving.
            moves: 1,
            time_jumps: 0,
            attaches: 1,
            operations: 0,
            drain_events: 0,
            max_attempts: 2,
            kinds: vec![Kind::Prompt],
            controls: Vec::new(),
            control_calls: 0,
            outcomes: vec![Outcome::Ok, Outcome::Fail],
            comms: false,
            store: true,
            history_max: burrow_core::input::TERMINAL_HISTORY_MAX,
        };
        HandoverModel { hosts, inputs, ticks, claims, faults, config, session: SessionModel::new(bounds), defect: None }
    }

    /// The same model with one planted defect.
    #[must_use]
    pub fn with_defect(mut self, defect: HandoverDefect) -> HandoverModel {
        self.defect = Some(defect);
        self
    }

    fn id(h: usize) -> HostId {
        HostId(h as u64 + 1)
    }
}

impl Model for HandoverModel {
    type State = HandoverWorld;
    type Action = HandoverAction;

    fn init_states(&self) -> Vec<HandoverWorld> {
        let host = HandoverHost {
            lease: LeaseMachine::new(self.config),
            session: None,
            epoch: EpochId(0),
            given: None,
            paused: false,
            claims: 0,
            inline: false,
        };
        let mut w = HandoverWorld {
            now: 0,
            row: LeaseRow::default(),
            store: StoreImage::default(),
            hosts: vec![host; usize::from(self.hosts)],
            inputs: 0,
            faults: 0,
            acked: BTreeSet::new(),
            succeeded: BTreeSet::new(),
            given_without_lease: false,
            given_after_commit: false,
            stale_refused: false,
            later_owner_committed: false,
            restored_acked: false,
            crashed_holder: false,
            taken_after_crash: false,
            gate_stopped: false,
            panicked: None,
        };
        // Host 0 claims first and prepares the session at the epoch it was given.
        let row = w.row.claim(Self::id(0), Millis(0), self.config.length_ms).expect("an unowned row is claimed");
        w.row = row;
        let lease = &mut w.hosts[0].lease;
        lease.apply(Millis(0), LeaseEvent::Claim).expect("a new lease machine claims");
        lease.apply(Millis(0), LeaseEvent::Claimed { epoch: row.epoch }).expect("the claim was sent");
        let mut session = self.session.initial();
        session.env.seen = Some(crate::session::Seen::default());
        w.store = std::mem::take(&mut session.env.store);
        w.hosts[0].session = Some(session);
        w.hosts[0].epoch = row.epoch;
        w.hosts[0].claims = 1;
        vec![w]
    }

    fn actions(&self, w: &HandoverWorld, actions: &mut Vec<HandoverAction>) {
        if w.panicked.is_some() {
            return;
        }
        if w.now < self.ticks {
            actions.push(HandoverAction::Tick);
        }
        for (h, host) in w.hosts.iter().enumerate() {
            let h8 = h as u8;
            if host.paused {
                actions.push(HandoverAction::Resume(h8));
                continue;
            }
            let busy = host.session.as_ref().is_some_and(|s| !s.env.pending.is_empty());
            let phase = host.lease.phase_name();
            if matches!(phase, LeasePhaseName::Unowned | LeasePhaseName::Lost) && host.claims < self.claims && !busy {
                actions.push(HandoverAction::Claim(h8));
            }
            if phase == LeasePhaseName::Held && !busy {
                actions.push(HandoverAction::Notice(h8));
            }
            if w.faults < self.faults {
                actions.push(HandoverAction::Pause(h8));
                actions.push(HandoverAction::Crash(h8));
            }
            let Some(session) = &host.session else { continue };
            let mut inner = Vec::new();
            self.session.actions(session, &mut inner);
            for action in inner {
                let allowed = match action {
                    Action::Accept(_) | Action::AcceptAndRun => w.inputs < self.inputs,
                    Action::Executor(_) => host.given.is_some() && host.given == session.env.executing,
                    Action::Attach | Action::Poll | Action::Perform => true,
                    // The model's own claims, pauses and crashes do the moving and the failing.
                    _ => false,
                };
                if allowed {
                    actions.push(HandoverAction::Session(h8, action));
                }
            }
        }
    }

    fn next_state(&self, last: &HandoverWorld, action: HandoverAction) -> Option<HandoverWorld> {
        contained(|| {
            let mut w = last.clone();
            self.step(&mut w, action).map(|()| w)
        })
        .unwrap_or_else(|message| {
            let mut world = last.clone();
            world.panicked = Some(format!("{action:?} panicked: {message}"));
            Some(world)
        })
    }

    fn properties(&self) -> Vec<Property<Self>> {
        handover_properties()
    }
}

impl HandoverModel {
    fn step(&self, w: &mut HandoverWorld, action: HandoverAction) -> Option<()> {
        match action {
            HandoverAction::Tick => w.now += 1,
            HandoverAction::Claim(h) => self.claim(w, usize::from(h))?,
            HandoverAction::Notice(h) => self.lease(w, usize::from(h), LeaseEvent::Tick)?,
            HandoverAction::Pause(h) => {
                w.faults += 1;
                w.hosts[usize::from(h)].paused = true;
            }
            HandoverAction::Resume(h) => w.hosts[usize::from(h)].paused = false,
            HandoverAction::Crash(h) => {
                w.faults += 1;
                let host = &mut w.hosts[usize::from(h)];
                if host.lease.drives(Millis(w.now)).is_some() {
                    w.crashed_holder = true;
                }
                // A new process: no lease, no session, no callers, no run; what it wrote stays in the store.
                host.lease = LeaseMachine::new(self.config);
                host.session = None;
                host.given = None;
                host.inline = false;
            }
            HandoverAction::Session(h, action) => self.session_step(w, usize::from(h), action)?,
        }
        Some(())
    }

    /// Host `h` claims: the store grants it when no other host's lease is live, and the host restores the session
    /// from the store's rows at the new epoch.
    fn claim(&self, w: &mut HandoverWorld, h: usize) -> Option<()> {
        w.hosts[h].claims += 1;
        let now = Millis(w.now);
        let effects = w.hosts[h].lease.apply(now, LeaseEvent::Claim).ok()?;
        debug_assert!(effects.iter().any(|e| matches!(e, LeaseEffect::SendClaim)));
        let answer = match w.row.claim(Self::id(h), now, self.config.length_ms) {
            Ok(row) => {
                if w.crashed_holder && w.row.owner.is_some_and(|owner| owner != Self::id(h)) {
                    w.taken_after_crash = true;
                }
                w.row = row;
                LeaseEvent::Claimed { epoch: row.epoch }
            }
            Err(fenced) => LeaseEvent::ClaimRefused { owner: fenced.owner },
        };
        self.lease(w, h, answer)
    }

    /// Applies a lease event to host `h`'s machine and performs its effects: requests land at once, a start restores
    /// the session, a stop tells it.
    fn lease(&self, w: &mut HandoverWorld, h: usize, event: LeaseEvent) -> Option<()> {
        let now = Millis(w.now);
        let mut events = vec![event];
        while let Some(event) = events.pop() {
            let effects = w.hosts[h].lease.apply(now, event).ok()?;
            for effect in effects {
                match effect {
                    LeaseEffect::SendClaim => {}
                    LeaseEffect::SendRenew { epoch } => {
                        events.push(match w.row.renew(Self::id(h), epoch, now, self.config.length_ms) {
                            Ok(row) => {
                                w.row = row;
                                LeaseEvent::Renewed
                            }
                            Err(fenced) => LeaseEvent::RenewRefused { owner: fenced.owner },
                        });
                    }
                    LeaseEffect::SendRelease { epoch } => {
                        if let Ok(row) = w.row.release(Self::id(h), epoch) {
                            w.row = row;
                        }
                    }
                    LeaseEffect::StartDriving { epoch } => self.restore(w, h, epoch),
                    LeaseEffect::StopDriving { why } => self.tell_lost(w, h, why.session_event()),
                }
            }
        }
        Some(())
    }

    /// The host that just claimed at `epoch` restores the session from the store (its old one, if any, is dropped:
    /// the restore is the store's word).
    fn restore(&self, w: &mut HandoverWorld, h: usize, epoch: EpochId) {
        let host = &mut w.hosts[h];
        host.epoch = epoch;
        host.given = None;
        host.inline = false;
        host.session = None;
        let store = std::mem::take(&mut w.store);
        let Some(mut session) = self.session.take_over(store.clone(), epoch, w.now) else {
            w.store = store;
            return;
        };
        w.store = std::mem::take(&mut session.env.store);
        if w.acked.iter().any(|input| session.machine.ledger().get(*input).is_some_and(|r| !r.state.is_terminal())) {
            w.restored_acked = true;
        }
        w.hosts[h].session = Some(session);
        self.absorb(w, h);
    }

    /// The lease loop tells host `h`'s session that the host lost it, with `lost` (once; the loop takes the session's
    /// lock like a call, so `Notice` waits for a drive in progress to end).
    fn tell_lost(&self, w: &mut HandoverWorld, h: usize, lost: SessionEvent) {
        let Some(mut session) = w.hosts[h].session.take() else { return };
        if !session.env.lease_told && session.machine.moved().is_none() {
            session.env.store = std::mem::take(&mut w.store);
            session.env.fenced = self.fenced(w, h);
            let _ = self.session.lease_lost(&mut session, lost);
            w.store = std::mem::take(&mut session.env.store);
        }
        w.hosts[h].session = Some(session);
        self.absorb(w, h);
    }

    fn fenced(&self, w: &HandoverWorld, h: usize) -> bool {
        self.defect != Some(HandoverDefect::StoreIgnoresEpoch) && w.row.admit_write(w.hosts[h].epoch).is_err()
    }

    /// One step of host `h`'s session against the shared store, then what the shell does after it: a fenced write
    /// tells the lease machine, and a run about to reach the executor is first checked against the lease.
    fn session_step(&self, w: &mut HandoverWorld, h: usize, action: Action) -> Option<()> {
        let mut session = w.hosts[h].session.take()?;
        let receipts_before = w.store.receipts.len();
        session.env.store = std::mem::take(&mut w.store);
        session.env.fenced = self.fenced(w, h);
        session.env.now = w.now;
        let applied = self.session.advance(&mut session, action);
        if applied.is_some() {
            if action == Action::AcceptAndRun {
                w.hosts[h].inline = true;
            }
            self.gate(w, h, &mut session);
        }
        w.store = std::mem::take(&mut session.env.store);
        applied?;
        if matches!(action, Action::Accept(_) | Action::AcceptAndRun) {
            w.inputs += 1;
        }
        if w.store.receipts.len() > receipts_before && h != 0 {
            w.later_owner_committed = true;
        }
        if session.env.executing.is_none() {
            w.hosts[h].given = None;
        }
        w.hosts[h].session = Some(session);
        let fenced = self.absorb(w, h);
        if fenced {
            // The lease machine hears what the store said: the session moved.
            let owner = w.row.owner;
            self.lease(w, h, burrow_core::lease::after_fenced_write(owner))?;
        }
        Some(())
    }

    /// Once a drive is over, a run it handed out goes to its executor (the loop's, or the `accept_and_run` caller's
    /// closure).
    fn gate(&self, w: &mut HandoverWorld, h: usize, session: &mut World) {
        if session.env.pending.is_empty() {
            // The drive is over: whatever it handed out, the next one is not an inline caller's unless it says so.
            let inline = std::mem::take(&mut w.hosts[h].inline);
            if session.env.executing.is_some_and(|run| w.hosts[h].given != Some(run)) {
                self.give(w, h, session, inline);
            }
        }
    }

    /// Before a run reaches its executor, burrow-core's `lease::before_run` is asked, told whether the lease still
    /// drives: past its end the session takes the event it names and the executor gets nothing.
    fn give(&self, w: &mut HandoverWorld, h: usize, session: &mut World, inline: bool) {
        let Some(run) = session.env.executing else { return };
        let unchecked = inline && self.defect == Some(HandoverDefect::InlineRunUnchecked);
        let now = Millis(w.now);
        let drives =
            w.hosts[h].lease.drives(now).is_some() || unchecked || self.defect == Some(HandoverDefect::LeaseIgnored);
        let Some(lost) = burrow_core::lease::before_run(drives) else {
            w.hosts[h].given = Some(run);
            // Judged by the store: the row names this host at the epoch its writes carry, and has not ended.
            if w.row.owner != Some(Self::id(h)) || w.row.epoch != w.hosts[h].epoch || !w.row.live(now) {
                w.given_without_lease = true;
            }
            let inputs = session.machine.current_run().map(|r| r.inputs.clone()).unwrap_or_default();
            if w.store.receipts.values().any(|receipt| receipt.contributors.iter().any(|i| inputs.contains(i))) {
                w.given_after_commit = true;
            }
            return;
        };
        w.gate_stopped = true;
        session.env.executing = None;
        if !session.env.lease_told && session.machine.moved().is_none() {
            let _ = self.session.lease_lost(session, lost);
        }
    }

    /// Moves what host `h`'s callers and the store saw into the world's record; says whether a write was fenced.
    fn absorb(&self, w: &mut HandoverWorld, h: usize) -> bool {
        let Some(session) = w.hosts[h].session.as_mut() else { return false };
        if let Some(message) = &session.env.history.panicked {
            w.panicked.get_or_insert_with(|| message.clone());
        }
        let Some(seen) = session.env.seen.as_mut() else { return false };
        w.acked.append(&mut seen.acked);
        w.succeeded.append(&mut seen.succeeded);
        let fenced = std::mem::take(&mut seen.fenced);
        w.stale_refused |= fenced;
        fenced
    }
}

/// Every input the store's receipts name, once per receipt that names it, sorted.
fn receipted(w: &HandoverWorld) -> Vec<InputId> {
    let mut all: Vec<InputId> = w.store.receipts.values().flat_map(|r| r.contributors.iter().copied()).collect();
    all.sort_unstable();
    all
}

fn handover_properties() -> Vec<Property<HandoverModel>> {
    vec![
        Property::always(NO_PANIC, |_, w: &HandoverWorld| w.panicked.is_none()),
        Property::always(
            "a run reaches an executor only while its host's lease is live in the store",
            |_, w: &HandoverWorld| !w.given_without_lease,
        ),
        Property::always("no input reaches an executor after a receipt naming it landed", |_, w: &HandoverWorld| {
            !w.given_after_commit
        }),
        Property::always("no input is in two receipts", |_, w: &HandoverWorld| {
            receipted(w).windows(2).all(|pair| pair[0] != pair[1])
        }),
        Property::always("every input acknowledged durable is in the store", |_, w: &HandoverWorld| {
            w.acked.iter().all(|input| w.store.inputs.contains_key(input))
        }),
        Property::always("a caller told its input succeeded finds it in a receipt", |_, w: &HandoverWorld| {
            let receipted = receipted(w);
            w.succeeded.iter().all(|input| receipted.binary_search(input).is_ok())
        }),
        Property::always("every waiter is resolved at most once", |_, w: &HandoverWorld| {
            w.hosts
                .iter()
                .filter_map(|h| h.session.as_ref())
                .all(|s| !s.env.history.unknown_waiter && s.env.waiters.values().all(|c| c.received <= 1))
        }),
        Property::always("each host's machine takes every result of its own effects", |_, w: &HandoverWorld| {
            w.hosts.iter().filter_map(|h| h.session.as_ref()).all(|s| !s.env.history.feedback_refused)
        }),
        Property::sometimes("a stale write is refused", |_, w: &HandoverWorld| w.stale_refused),
        Property::sometimes("a later owner commits a receipt", |_, w: &HandoverWorld| w.later_owner_committed),
        Property::sometimes("a later owner restores an input the first acknowledged", |_, w: &HandoverWorld| {
            w.restored_acked
        }),
        Property::sometimes("a takeover after the holder crashed", |_, w: &HandoverWorld| w.taken_after_crash),
        Property::sometimes("a host past its lease stops a run before its executor gets it", |_, w: &HandoverWorld| {
            w.gate_stopped
        }),
        Property::sometimes("every input submitted is in a receipt", |m: &HandoverModel, w: &HandoverWorld| {
            let receipted = receipted(w);
            w.inputs == m.inputs && w.acked.iter().all(|input| receipted.binary_search(input).is_ok())
        }),
    ]
}
