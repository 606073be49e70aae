//! Ownership of a session by one host of a fleet: the lease a host holds on it, and the lease row the shared store
//! keeps.
//!
//! spec: specs/lease.md
//!
//! Two pure values decide every fact about ownership:
//! - [`LeaseRow`] is the store's row for one session: its owner, its epoch and the end of the lease. Its methods are
//!   the rules every store applies (the PostgreSQL store in one conditional statement, the simulated store and the
//!   model in memory): a claim succeeds only over an unowned or expired row and bumps the epoch; a renewal or a
//!   release succeeds only for the owner at the current epoch; every durable write names its epoch and is refused
//!   ([`Fenced`]) unless that epoch is the row's.
//! - [`LeaseMachine`] is one host's view of its lease on one session. The host drives the session only while the
//!   machine says so ([`LeaseMachine::drives`]), and the machine stops it at once when the lease is lost: fenced by
//!   the store, refused a renewal, or past the end the host must assume. Time is passed in; the machine reads no
//!   clock.
//!
//! The host reckons its lease from when it *asked* (the claim or renewal was sent), never from when the answer came,
//! and gives up [`LeaseConfig::margin_ms`] early: a store that accepted the request later, or a clock of the store's
//! that runs ahead by less than the margin, cannot leave the host believing in a lease the store already ended.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::ids::{EpochId, Millis, id_type};

id_type!(
    /// A host of the fleet: one process running burrow over the shared store. The embedder names it, or the shell
    /// draws one (`FleetConfig::random`: the time and the process id, hashed with a random key); it must differ
    /// between processes.
    HostId,
    "h"
);

/// The lease's timing. The defaults are safe for hosts whose clocks differ by less than a second.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct LeaseConfig {
    /// How long a claim or a renewal holds the session, in the store's reckoning.
    pub length_ms: u64,
    /// How often the holder renews, counted from its last request.
    pub renew_every_ms: u64,
    /// How much earlier than the store the holder gives its lease up: covers the store accepting a request after it
    /// was sent, and clock skew between the host and the store.
    pub margin_ms: u64,
}

impl Default for LeaseConfig {
    fn default() -> Self {
        LeaseConfig { length_ms: 10_000, renew_every_ms: 3_000, margin_ms: 1_000 }
    }
}

/// A [`LeaseConfig`] that cannot keep a lease.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, thiserror::Error)]
pub enum LeaseConfigError {
    /// A holder could not renew before it must give up: `renew_every_ms + margin_ms` must be below `length_ms`.
    #[error("renew every {renew_every_ms} ms with a margin of {margin_ms} ms cannot keep a {length_ms} ms lease")]
    RenewTooLate {
        /// The lease length.
        length_ms: u64,
        /// The renewal period.
        renew_every_ms: u64,
        /// The margin.
        margin_ms: u64,
    },
    /// A zero renewal period would renew without end.
    #[error("the renewal period must be at least 1 ms")]
    NoRenewalPeriod,
}

impl LeaseConfig {
    /// Checks that a holder renews in time.
    ///
    /// # Errors
    /// [`LeaseConfigError`] when it could not.
    pub fn validate(&self) -> Result<(), LeaseConfigError> {
        if self.renew_every_ms == 0 {
            return Err(LeaseConfigError::NoRenewalPeriod);
        }
        if self.renew_every_ms.saturating_add(self.margin_ms) >= self.length_ms {
            return Err(LeaseConfigError::RenewTooLate {
                length_ms: self.length_ms,
                renew_every_ms: self.renew_every_ms,
                margin_ms: self.margin_ms,
            });
        }
        Ok(())
    }
}

// ----- the store's row ------------------------------------------------------------------------------------------

/// The store's lease row of one session. A session never claimed has the row [`LeaseRow::default`]: no owner, epoch
/// zero.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct LeaseRow {
    /// The holder, if any.
    pub owner: Option<HostId>,
    /// Bumped by every claim: the epoch of the holder's writes.
    pub epoch: EpochId,
    /// When the lease ends, in the store's time.
    pub expires_at: Millis,
}

/// A durable write or a lease request refused because another host owns the session (or owned it later).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, thiserror::Error)]
#[error("fenced: the write names epoch {presented}, the session is at epoch {current} (owner {owner:?})")]
pub struct Fenced {
    /// The epoch the writer named.
    pub presented: EpochId,
    /// The row's epoch.
    pub current: EpochId,
    /// The row's owner, if any: where a caller should go.
    pub owner: Option<HostId>,
}

impl Default for LeaseRow {
    fn default() -> Self {
        LeaseRow { owner: None, epoch: EpochId(0), expires_at: Millis(0) }
    }
}

impl LeaseRow {
    /// Whether the lease is held at `now` (store time).
    #[must_use]
    pub fn live(&self, now: Millis) -> bool {
        self.owner.is_some() && now < self.expires_at
    }

    /// `host` claims the session at `now` (store time) for `length_ms`: granted over a row with no live owner (or
    /// whose live owner is `host` itself, which starts over at a new epoch), with the epoch bumped.
    ///
    /// # Errors
    /// [`Fenced`] naming the live owner.
    pub fn claim(&self, host: HostId, now: Millis, length_ms: u64) -> Result<LeaseRow, Fenced> {
        if self.live(now) && self.owner != Some(host) {
            return Err(self.fenced(self.epoch));
        }
        let epoch = EpochId(self.epoch.0 + 1);
        Ok(LeaseRow { owner: Some(host), epoch, expires_at: Millis(now.0.saturating_add(length_ms)) })
    }

    /// The owner at `epoch` extends its lease to `now + length_ms`; an end never moves back.
    ///
    /// # Errors
    /// [`Fenced`] if `host` is not the owner at `epoch`, or the lease already ended (another host may have read it
    /// as free).
    pub fn renew(&self, host: HostId, epoch: EpochId, now: Millis, length_ms: u64) -> Result<LeaseRow, Fenced> {
        if self.owner != Some(host) || self.epoch != epoch || !self.live(now) {
            return Err(self.fenced(epoch));
        }
        let until = Millis(now.0.saturating_add(length_ms).max(self.expires_at.0));
        Ok(LeaseRow { expires_at: until, ..*self })
    }

    /// The owner at `epoch` lets the session go: the row keeps its epoch and has no owner.
    ///
    /// # Errors
    /// [`Fenced`] if `host` is not the owner at `epoch`.
    pub fn release(&self, host: HostId, epoch: EpochId) -> Result<LeaseRow, Fenced> {
        if self.owner != Some(host) || self.epoch != epoch {
            return Err(self.fenced(epoch));
        }
        Ok(LeaseRow { owner: None, expires_at: Millis(0), ..*self })
    }

    /// Whether a durable write of the session naming `epoch` may land: only the current epoch's. The lease's end is
    /// not checked: until another host claims, nothing the holder writes can conflict, and the claim bumps the epoch.
    ///
    /// # Errors
    /// [`Fenced`] for any other epoch.
    pub fn admit_write(&self, epoch: EpochId) -> Result<(), Fenced> {
        if epoch == self.epoch && self.owner.is_some() { Ok(()) } else { Err(self.fenced(epoch)) }
    }

    fn fenced(&self, presented: EpochId) -> Fenced {
        Fenced { presented, current: self.epoch, owner: self.owner }
    }
}

// ----- one host's lease -----------------------------------------------------------------------------------------

/// Where a host's lease on one session stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LeasePhase {
    /// The host neither holds nor asked for the session.
    Unowned,
    /// A claim was sent at `asked_at` and not answered.
    Claiming {
        /// When the claim was sent (host time).
        asked_at: Millis,
    },
    /// The host holds the session at `epoch` until `good_until` (host time, the margin already taken off).
    Held {
        /// The epoch of the host's writes.
        epoch: EpochId,
        /// The last moment the host may still drive the session.
        good_until: Millis,
        /// A renewal sent at this time is not answered yet.
        renewing: Option<Millis>,
        /// When the last claim or renewal was sent.
        last_asked: Millis,
    },
    /// The host held the session and lost it; it drives nothing until it claims again.
    Lost {
        /// The epoch it held.
        epoch: EpochId,
        /// Why.
        why: LossReason,
    },
}

/// Why a host stopped driving a session.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LossReason {
    /// The store refused a write or a renewal: another host owns the session.
    Fenced {
        /// The new owner, when the store said.
        owner: Option<HostId>,
    },
    /// The host could not renew before the end it must assume.
    Expired,
    /// The host let the session go.
    Released,
}

impl LossReason {
    /// The host that owns the session now, when the store said.
    #[must_use]
    pub fn new_owner(self) -> Option<HostId> {
        match self {
            LossReason::Fenced { owner } => owner,
            LossReason::Expired | LossReason::Released => None,
        }
    }

    /// What the session on this host takes when its lease is gone this way: it stops as moved, naming the new owner
    /// when the store said (specs/session.md#ownership-moved).
    #[must_use]
    pub fn session_event(self) -> crate::session::SessionEvent {
        crate::session::SessionEvent::OwnershipLost { owner: self.new_owner() }
    }
}

/// Whether a run the session handed out may reach an executor (the loop's, or an `accept_and_run` caller's), given
/// whether this host's lease machine still drives the session by the host's clock: `None` to go on; past the lease's
/// end, the event the session takes instead, so that it stops as moved and the run never starts (its inputs stay
/// for the next owner). Outside a fleet the lease always drives. (specs/lease.md#what-the-shell-adds)
#[must_use]
pub fn before_run(lease_drives: bool) -> Option<crate::session::SessionEvent> {
    (!lease_drives).then_some(crate::session::SessionEvent::OwnershipLost { owner: None })
}

/// What the host's lease machine takes when the store fenced one of the session's writes: the session moved, to
/// `owner` when the store named it.
#[must_use]
pub fn after_fenced_write(owner: Option<HostId>) -> LeaseEvent {
    LeaseEvent::WriteFenced { owner }
}

/// What happened to the host's lease: a request it wants to make, or the answer to one. `now` is the host's clock.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LeaseEvent {
    /// The fleet loop wants the session here.
    Claim,
    /// The store granted the claim sent at `asked_at`, at `epoch`.
    Claimed {
        /// The new epoch.
        epoch: EpochId,
    },
    /// The store refused the claim: the session has a live owner.
    ClaimRefused {
        /// That owner, when the store said.
        owner: Option<HostId>,
    },
    /// The claim could not reach the store (unreachable, timed out): nothing is known to have changed.
    ClaimFailed,
    /// Time passed: renew when due, give the session up past its end.
    Tick,
    /// The store granted the renewal in flight.
    Renewed,
    /// The store refused the renewal: the lease ended or moved.
    RenewRefused {
        /// The new owner, when the store said.
        owner: Option<HostId>,
    },
    /// The renewal could not reach the store; the lease still ends when it ends.
    RenewFailed,
    /// A durable write of the session was refused for its epoch.
    WriteFenced {
        /// The owner the store named.
        owner: Option<HostId>,
    },
    /// The host lets the session go (a hand-over, a shutdown).
    Release,
}

/// What the shell must do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LeaseEffect {
    /// Ask the store to claim the session ([`LeaseRow::claim`]) for the configured length; answer with `Claimed`,
    /// `ClaimRefused` or `ClaimFailed`.
    SendClaim,
    /// Ask the store to renew at `epoch` ([`LeaseRow::renew`]); answer with `Renewed`, `RenewRefused` or
    /// `RenewFailed`.
    SendRenew {
        /// The held epoch.
        epoch: EpochId,
    },
    /// Ask the store to release at `epoch` ([`LeaseRow::release`]); no answer is awaited.
    SendRelease {
        /// The held epoch.
        epoch: EpochId,
    },
    /// Drive the session at `epoch`: recover it from the store and run it, every write naming `epoch`.
    StartDriving {
        /// The epoch of every write.
        epoch: EpochId,
    },
    /// Stop driving at once: start no run, attempt no commit, and answer this host's waiters with a typed
    /// "ownership moved" error naming the new owner when known.
    StopDriving {
        /// Why.
        why: LossReason,
    },
}

/// A lease event that does not apply. A refused event changed nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, thiserror::Error)]
pub enum LeaseRefusal {
    /// An answer arrived for a request that is not in flight.
    #[error("{event} answers no request in flight (phase {phase})")]
    NoRequest {
        /// The event's name.
        event: &'static str,
        /// The phase.
        phase: LeasePhaseName,
    },
    /// A claim while the host already holds or claims the session.
    #[error("the host already holds or claims the session (phase {phase})")]
    AlreadyOwned {
        /// The phase.
        phase: LeasePhaseName,
    },
    /// A release or a fenced write while the host holds nothing.
    #[error("the host holds no lease (phase {phase})")]
    NotHeld {
        /// The phase.
        phase: LeasePhaseName,
    },
}

/// A phase's name, for refusals and tables.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LeasePhaseName {
    /// [`LeasePhase::Unowned`].
    Unowned,
    /// [`LeasePhase::Claiming`].
    Claiming,
    /// [`LeasePhase::Held`].
    Held,
    /// [`LeasePhase::Lost`].
    Lost,
}

impl fmt::Display for LeasePhaseName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            LeasePhaseName::Unowned => "Unowned",
            LeasePhaseName::Claiming => "Claiming",
            LeasePhaseName::Held => "Held",
            LeasePhaseName::Lost => "Lost",
        };
        f.write_str(name)
    }
}

impl LeaseEvent {
    /// A short stable name.
    #[must_use]
    pub fn name(&self) -> &'static str {
        match self {
            LeaseEvent::Claim => "Claim",
            LeaseEvent::Claimed { .. } => "Claimed",
            LeaseEvent::ClaimRefused { .. } => "ClaimRefused",
            LeaseEvent::ClaimFailed => "ClaimFailed",
            LeaseEvent::Tick => "Tick",
            LeaseEvent::Renewed => "Renewed",
            LeaseEvent::RenewRefused { .. } => "RenewRefused",
            LeaseEvent::RenewFailed => "RenewFailed",
            LeaseEvent::WriteFenced { .. } => "WriteFenced",
            LeaseEvent::Release => "Release",
        }
    }
}

/// One host's lease on one session.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct LeaseMachine {
    config: LeaseConfig,
    phase: LeasePhase,
}

impl LeaseMachine {
    /// A host that holds nothing. `config` must be valid ([`LeaseConfig::validate`]).
    #[must_use]
    pub fn new(config: LeaseConfig) -> LeaseMachine {
        debug_assert_eq!(config.validate(), Ok(()), "a lease config that cannot keep a lease");
        LeaseMachine { config, phase: LeasePhase::Unowned }
    }

    /// Where the lease stands.
    #[must_use]
    pub fn phase(&self) -> LeasePhase {
        self.phase
    }

    /// The phase's name.
    #[must_use]
    pub fn phase_name(&self) -> LeasePhaseName {
        match self.phase {
            LeasePhase::Unowned => LeasePhaseName::Unowned,
            LeasePhase::Claiming { .. } => LeasePhaseName::Claiming,
            LeasePhase::Held { .. } => LeasePhaseName::Held,
            LeasePhase::Lost { .. } => LeasePhaseName::Lost,
        }
    }

    /// The epoch the host may write at `now`, if it may drive the session: it holds the lease and `now` is before
    /// the end it must assume. Every run start and every commit asks this first.
    #[must_use]
    pub fn drives(&self, now: Millis) -> Option<EpochId> {
        match self.phase {
            LeasePhase::Held { epoch, good_until, .. } if now < good_until => Some(epoch),
            _ => None,
        }
    }

    /// When the host must next be told [`LeaseEvent::Tick`]: its next renewal, or the end of its lease.
    #[must_use]
    pub fn next_tick(&self) -> Option<Millis> {
        match self.phase {
            LeasePhase::Held { good_until, renewing: None, last_asked, .. } => {
                Some(Millis(last_asked.0.saturating_add(self.config.renew_every_ms).min(good_until.0)))
            }
            LeasePhase::Held { good_until, .. } => Some(good_until),
            _ => None,
        }
    }

    /// The end a request sent at `asked_at` lets the host assume.
    fn good_until(&self, asked_at: Millis) -> Millis {
        Millis(asked_at.0.saturating_add(self.config.length_ms).saturating_sub(self.config.margin_ms))
    }

    /// Applies `event` at `now` (host time).
    ///
    /// # Errors
    /// [`LeaseRefusal`] when the event does not apply; the machine is unchanged.
    pub fn apply(&mut self, now: Millis, event: LeaseEvent) -> Result<Vec<LeaseEffect>, LeaseRefusal> {
        let phase = self.phase_name();
        let no_request = LeaseRefusal::NoRequest { event: event.name(), phase };
        let (next, effects) = match (self.phase, event) {
            // spec: specs/lease.md#claim
            (LeasePhase::Unowned | LeasePhase::Lost { .. }, LeaseEvent::Claim) => {
                (LeasePhase::Claiming { asked_at: now }, vec![LeaseEffect::SendClaim])
            }
            (LeasePhase::Claiming { .. } | LeasePhase::Held { .. }, LeaseEvent::Claim) => {
                return Err(LeaseRefusal::AlreadyOwned { phase });
            }
            (LeasePhase::Claiming { asked_at }, LeaseEvent::Claimed { epoch }) => {
                let good_until = self.good_until(asked_at);
                let held = LeasePhase::Held { epoch, good_until, renewing: None, last_asked: asked_at };
                // An answer that came after the lease it granted must already be given up is no lease at all.
                if now >= good_until {
                    (LeasePhase::Lost { epoch, why: LossReason::Expired }, vec![])
                } else {
                    (held, vec![LeaseEffect::StartDriving { epoch }])
                }
            }
            (LeasePhase::Claiming { .. }, LeaseEvent::ClaimRefused { .. } | LeaseEvent::ClaimFailed) => {
                (LeasePhase::Unowned, vec![])
            }
            // spec: specs/lease.md#renew
            (LeasePhase::Held { .. }, LeaseEvent::Tick) => self.tick_held(now),
            (LeasePhase::Held { epoch, good_until, renewing: Some(asked), .. }, LeaseEvent::Renewed) => {
                let good_until = Millis(good_until.0.max(self.good_until(asked).0));
                (LeasePhase::Held { epoch, good_until, renewing: None, last_asked: asked }, vec![])
            }
            (LeasePhase::Held { epoch, good_until, renewing: Some(_), last_asked }, LeaseEvent::RenewFailed) => {
                (LeasePhase::Held { epoch, good_until, renewing: None, last_asked }, vec![])
            }
            (LeasePhase::Held { epoch, renewing: Some(_), .. }, LeaseEvent::RenewRefused { owner })
            | (LeasePhase::Held { epoch, .. }, LeaseEvent::WriteFenced { owner }) => {
                let why = LossReason::Fenced { owner };
                (LeasePhase::Lost { epoch, why }, vec![LeaseEffect::StopDriving { why }])
            }
            // spec: specs/lease.md#release
            (LeasePhase::Held { epoch, .. }, LeaseEvent::Release) => {
                let why = LossReason::Released;
                let effects = vec![LeaseEffect::StopDriving { why }, LeaseEffect::SendRelease { epoch }];
                (LeasePhase::Lost { epoch, why }, effects)
            }
            (_, LeaseEvent::Release | LeaseEvent::WriteFenced { .. }) => return Err(LeaseRefusal::NotHeld { phase }),
            // Time passing changes nothing a host that holds nothing must do.
            (_, LeaseEvent::Tick) => (self.phase, vec![]),
            (
                _,
                LeaseEvent::Claimed { .. }
                | LeaseEvent::ClaimRefused { .. }
                | LeaseEvent::ClaimFailed
                | LeaseEvent::Renewed
                | LeaseEvent::RenewRefused { .. }
                | LeaseEvent::RenewFailed,
            ) => return Err(no_request),
        };
        self.phase = next;
        debug_assert_eq!(self.check(), Ok(()));
        Ok(effects)
    }

    /// Time passed while the lease is held: stop past its end, or send the renewal that is due.
    fn tick_held(&self, now: Millis) -> (LeasePhase, Vec<LeaseEffect>) {
        let LeasePhase::Held { epoch, good_until, renewing, last_asked } = self.phase else {
            unreachable!("only a held lease is ticked here")
        };
        if now >= good_until {
            let why = LossReason::Expired;
            return (LeasePhase::Lost { epoch, why }, vec![LeaseEffect::StopDriving { why }]);
        }
        if renewing.is_none() && now.0 >= last_asked.0.saturating_add(self.config.renew_every_ms) {
            let renewing = Some(now);
            return (
                LeasePhase::Held { epoch, good_until, renewing, last_asked },
                vec![LeaseEffect::SendRenew { epoch }],
            );
        }
        (self.phase, vec![])
    }

    /// The machine's own invariants.
    ///
    /// # Errors
    /// A description of the broken one.
    pub fn check(&self) -> Result<(), String> {
        if let LeasePhase::Held { good_until, renewing, last_asked, .. } = self.phase {
            if good_until > self.good_until(last_asked) {
                return Err(format!("held until {good_until}, past what the request at {last_asked} allows"));
            }
            if renewing.is_some_and(|asked| asked < last_asked) {
                return Err("a renewal in flight older than the last request".into());
            }
        }
        Ok(())
    }
}

impl fmt::Display for LeaseMachine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.phase {
            LeasePhase::Unowned => write!(f, "Unowned"),
            LeasePhase::Claiming { asked_at } => write!(f, "Claiming(asked {asked_at})"),
            LeasePhase::Held { epoch, good_until, renewing, .. } => {
                let renewing = if renewing.is_some() { ", renewing" } else { "" };
                write!(f, "Held({epoch} until {good_until}{renewing})")
            }
            LeasePhase::Lost { epoch, why } => write!(f, "Lost({epoch}, {why:?})"),
        }
    }
}
