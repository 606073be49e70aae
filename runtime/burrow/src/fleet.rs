//! A runtime as one host of a fleet (specs/lease.md): several processes over one shared store, each session driven by
//! the one host that holds its lease.
//!
//! The host decides nothing about ownership itself: each hosted session has burrow-core's `LeaseMachine`, and this
//! module only performs what it asks (claim, renew, release through the store's lease calls) and feeds back the
//! answers. A session is made here only after its claim is granted, at the lease's epoch, so every write it makes
//! names that epoch and the store fences it once another host has claimed the session. When the lease machine says
//! stop (a renewal refused, the lease's end reached, a write fenced), the session is told `OwnershipLost`: it stops
//! at once, answers its waiters that it moved, and is dropped from this host; its calls here are answered
//! [`RuntimeError::NotOwner`] naming the owner.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, Weak};

use burrow_core::ids::{EpochId, Millis, SessionId};
use burrow_core::lease::{HostId, LeaseConfig, LeaseConfigError, LeaseEffect, LeaseEvent, LeaseMachine, LossReason};
use burrow_env::time::{Duration, sleep};

use crate::RuntimeError;
use crate::executor::Executor;
use crate::runtime::{Inner, Runtime, RuntimeConfig};
use crate::session::Session;
use crate::store::{Store, StoreError};

/// Who this host is and how it holds leases.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FleetConfig {
    /// This host's identity: unique in the fleet, stable while the process lives.
    pub host: HostId,
    /// Lease length, renewal interval and safety margin ([`LeaseConfig::default`]: 10 s, 3 s, 1 s).
    pub lease: LeaseConfig,
}

impl FleetConfig {
    /// Host `host` with the default lease timing.
    #[must_use]
    pub fn new(host: HostId) -> FleetConfig {
        FleetConfig { host, lease: LeaseConfig::default() }
    }

    /// A host with a fresh random identity (64 bits from the process's random source) and the default timing. A
    /// simulation draws the identity from its seeded source instead and calls [`FleetConfig::new`].
    #[must_use]
    pub fn random() -> FleetConfig {
        use std::hash::{BuildHasher, Hasher};
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u128(
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos(),
        );
        hasher.write_u32(std::process::id());
        FleetConfig::new(HostId(hasher.finish()))
    }
}

/// A session this host takes when it is free.
struct Adopted {
    executor: Arc<dyn Executor>,
    /// Not looked at before this time (the runtime's clock): the end of the lease another host held when last read.
    look_at: Millis,
}

/// The fleet state of a runtime: the lease machine of every session this host holds or asked for.
pub(crate) struct Fleet {
    config: FleetConfig,
    leases: Mutex<BTreeMap<SessionId, LeaseMachine>>,
    /// Sessions this host takes whenever no other host holds them, with the executor it attaches (see
    /// [`Runtime::adopt`]); the watcher that claims them is started with the first.
    adopted: Mutex<(BTreeMap<SessionId, Adopted>, bool)>,
}

impl Fleet {
    fn leases(&self) -> std::sync::MutexGuard<'_, BTreeMap<SessionId, LeaseMachine>> {
        self.leases.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Why a fleet host could not be made.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FleetError {
    /// The lease timing is unsafe.
    #[error(transparent)]
    Lease(#[from] LeaseConfigError),
}

impl Runtime {
    /// A runtime that is one host of a fleet over the shared `store` (a `PostgresStore`, typically). It drives a
    /// session only while it holds the session's lease: [`Runtime::prepare`] (and every call that makes a session)
    /// claims it first, a background task renews it, and [`Runtime::release`] lets it go.
    ///
    /// # Errors
    ///
    /// [`FleetError::Lease`] if the lease timing is unsafe (a renewal interval that leaves no time to renew).
    pub fn fleet_host(store: Arc<dyn Store>, config: RuntimeConfig, fleet: FleetConfig) -> Result<Runtime, FleetError> {
        fleet.lease.validate()?;
        let fleet = Fleet { config: fleet, leases: Mutex::new(BTreeMap::new()), adopted: Mutex::default() };
        Ok(Runtime::assemble(config, Some(store), None, Some(fleet)))
    }

    /// Hosts `sessions` here whenever no other host holds them, each with `executor` attached: a free session is
    /// claimed at once, and one held elsewhere as soon as its lease ends (the watcher looks every
    /// [`LeaseConfig::margin_ms`], so a host that died loses its sessions to this one within the lease's length and
    /// that interval). A session this host gives up (released, or its lease lost) is watched again. Outside a fleet
    /// this does nothing.
    pub fn adopt(&self, sessions: impl IntoIterator<Item = SessionId>, executor: Arc<dyn Executor>) {
        let Some(fleet) = &self.inner.fleet else { return };
        let mut adopted = fleet.adopted.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = Millis(0);
        adopted.0.extend(sessions.into_iter().map(|id| (id, Adopted { executor: executor.clone(), look_at: now })));
        if std::mem::replace(&mut adopted.1, true) {
            return;
        }
        drop(adopted);
        let every = Duration::from_millis(fleet.config.lease.margin_ms.max(1));
        let weak: Weak<Inner> = Arc::downgrade(&self.inner);
        drop(burrow_env::task::spawn(async move {
            loop {
                let Some(runtime) = Runtime::upgrade(&weak) else { return };
                runtime.adopt_free().await;
                drop(runtime);
                sleep(every).await;
            }
        }));
    }

    /// Claims every adopted session that no host holds now and attaches its executor.
    async fn adopt_free(&self) {
        let Some(fleet) = &self.inner.fleet else { return };
        let now = self.inner.clock.now();
        let due: Vec<(SessionId, Arc<dyn Executor>)> = {
            let adopted = fleet.adopted.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            adopted.0.iter().filter(|(_, a)| a.look_at <= now).map(|(id, a)| (*id, a.executor.clone())).collect()
        };
        let store = self.inner.store.clone().expect("a fleet host has a store");
        for (id, executor) in due {
            if self.hosts(id) {
                continue;
            }
            // One read tells when another host's lease ends; no claim is sent before then.
            if let Ok((Some(row), store_now)) = store.lease(id).await {
                if row.live(store_now) && row.owner != Some(fleet.config.host) {
                    let look_at = self.inner.clock.now().saturating_add(row.expires_at.since(store_now));
                    let mut adopted = fleet.adopted.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                    if let Some(entry) = adopted.0.get_mut(&id) {
                        entry.look_at = look_at;
                    }
                    continue;
                }
            }
            match self.attach_executor(id, executor).await {
                Ok(_) => tracing::info!(session = %id, "adopted"),
                Err(RuntimeError::NotOwner { .. }) => {}
                Err(error) => tracing::debug!(session = %id, %error, "not adopted yet"),
            }
        }
    }

    /// This host's identity, if the runtime is a fleet host.
    #[must_use]
    pub fn host_id(&self) -> Option<HostId> {
        self.inner.fleet.as_ref().map(|f| f.config.host)
    }

    /// Whether this host drives `session` now (it holds a live lease on it).
    #[must_use]
    pub fn hosts(&self, session: SessionId) -> bool {
        let now = self.inner.clock.now();
        self.inner.fleet.as_ref().is_some_and(|f| f.leases().get(&session).is_some_and(|l| l.drives(now).is_some()))
    }

    /// Lets `session` go: the session stops here (its waiters are told it moved, with no owner named) and its lease
    /// is released, so another host may claim it at once. A session this host does not hold is a no-op.
    ///
    /// # Errors
    ///
    /// [`RuntimeError::Store`] if the release could not reach the store; the lease then ends by itself.
    pub async fn release(&self, session: SessionId) -> Result<(), RuntimeError> {
        let Some(fleet) = &self.inner.fleet else { return Ok(()) };
        let now = self.inner.clock.now();
        let effects = match fleet.leases().get_mut(&session) {
            Some(lease) => lease.apply(now, LeaseEvent::Release).unwrap_or_default(),
            None => return Ok(()),
        };
        self.perform_lease(session, effects).await
    }

    /// The epoch a new binding of `id` takes: its lease's, in a fleet; the runtime's own counter otherwise.
    pub(crate) fn epoch_for(&self, id: SessionId) -> EpochId {
        let now = self.inner.clock.now();
        let held = self.inner.fleet.as_ref().and_then(|f| f.leases().get(&id).and_then(|l| l.drives(now)));
        held.unwrap_or_else(|| EpochId(self.inner.next_epoch.load(Ordering::Relaxed)))
    }

    /// In a fleet, claims `id` for this host and starts renewing it; the epoch it was granted at. Outside a fleet,
    /// `None`.
    pub(crate) async fn claim_for(&self, id: SessionId) -> Result<Option<EpochId>, RuntimeError> {
        let Some(fleet) = &self.inner.fleet else { return Ok(None) };
        let store = self.inner.store.clone().expect("a fleet host has a store");
        let now = self.inner.clock.now();
        if let Some(epoch) = fleet.leases().get(&id).and_then(|l| l.drives(now)) {
            return Ok(Some(epoch));
        }
        let asked = {
            let mut leases = fleet.leases();
            let lease = leases.entry(id).or_insert_with(|| LeaseMachine::new(fleet.config.lease));
            lease.apply(now, LeaseEvent::Claim)
        };
        if asked.is_err() {
            // A claim of this host's is already on its way: this caller is told who owns the session now.
            return Err(self.not_here(id).await);
        }
        let answer = store.claim_lease(id, fleet.config.host, fleet.config.lease.length_ms).await;
        let event = match &answer {
            Ok(row) => LeaseEvent::Claimed { epoch: row.epoch },
            Err(StoreError::Fenced(fenced)) => LeaseEvent::ClaimRefused { owner: fenced.owner },
            Err(_) => LeaseEvent::ClaimFailed,
        };
        let now = self.inner.clock.now();
        let effects = fleet.leases().get_mut(&id).map(|l| l.apply(now, event).unwrap_or_default()).unwrap_or_default();
        match answer {
            Ok(row) => {
                tracing::info!(session = %id, host = %fleet.config.host, epoch = %row.epoch, "lease claimed");
                debug_assert!(effects.contains(&LeaseEffect::StartDriving { epoch: row.epoch }));
                self.spawn_lease_loop(id);
                Ok(Some(row.epoch))
            }
            Err(error) => {
                fleet.leases().remove(&id);
                Err(RuntimeError::store(id, error))
            }
        }
    }

    /// Why `id` is not served here: another host owns it (`NotOwner`), or no one holds it (`NotFound`).
    pub(crate) async fn not_here(&self, id: SessionId) -> RuntimeError {
        let (Some(fleet), Some(store)) = (&self.inner.fleet, &self.inner.store) else {
            return RuntimeError::NotFound(id);
        };
        match store.lease(id).await {
            Ok((Some(row), now)) if row.live(now) && row.owner != Some(fleet.config.host) => {
                RuntimeError::NotOwner { session: id, owner: row.owner }
            }
            _ => RuntimeError::NotFound(id),
        }
    }

    /// Drops a session that moved from the table (and its lease machine, told of the fenced write).
    pub(crate) fn forget_moved(&self, id: SessionId, session: &Arc<Session>) {
        let mut sessions = self.inner.sessions_mut();
        if sessions.get(&id).is_some_and(|s| Arc::ptr_eq(s, session)) {
            sessions.remove(&id);
        }
        drop(sessions);
        if let Some(fleet) = &self.inner.fleet {
            let owner = session.moved.get().copied().flatten();
            let now = self.inner.clock.now();
            if let Some(lease) = fleet.leases().get_mut(&id) {
                let _ = lease.apply(now, burrow_core::lease::after_fenced_write(owner));
            }
            fleet.leases().remove(&id);
        }
    }

    /// Renews `id`'s lease on time, in a task of its own, until the lease machine says stop or the runtime goes.
    fn spawn_lease_loop(&self, id: SessionId) {
        let weak: Weak<Inner> = Arc::downgrade(&self.inner);
        drop(burrow_env::task::spawn(async move {
            loop {
                let Some(wait) = Runtime::upgrade(&weak).and_then(|r| r.until_next_tick(id)) else { return };
                sleep(wait).await;
                let Some(runtime) = Runtime::upgrade(&weak) else { return };
                if !runtime.lease_tick(id).await {
                    return;
                }
            }
        }));
    }

    pub(crate) fn upgrade(weak: &Weak<Inner>) -> Option<Runtime> {
        weak.upgrade().map(|inner| Runtime { inner })
    }

    /// How long until `id`'s lease machine wants to look at the time again; `None` once it drives nothing.
    fn until_next_tick(&self, id: SessionId) -> Option<Duration> {
        let fleet = self.inner.fleet.as_ref()?;
        let next = fleet.leases().get(&id)?.next_tick()?;
        // Read on this host's clock, which may not run at the world's rate (the simulator's drifting hosts).
        let at = self.inner.clock.instant(next);
        Some(at.checked_duration_since(burrow_env::time::now()).unwrap_or_default().max(Duration::from_millis(1)))
    }

    /// One look at `id`'s lease: a fenced write first, then the time (renew when due, stop past the end). Whether
    /// the lease goes on.
    async fn lease_tick(&self, id: SessionId) -> bool {
        let Some(fleet) = &self.inner.fleet else { return false };
        let session = self.inner.sessions().get(&id).cloned();
        if let Some(session) = session.filter(|s| s.moved.get().is_some()) {
            self.forget_moved(id, &session);
            return false;
        }
        // A session that fail-stopped here (a commit the store did not take) holds nothing worth the lease: it is let
        // go, so that a host that adopts it (this one too) restores it from what the store holds, as a restarted
        // process would. Kept, it would be served by no one for as long as this host lives.
        let held = self.inner.sessions().get(&id).cloned();
        let failed = match held {
            Some(session) if session.commit_failed.load(Ordering::Relaxed) => {
                session.lock().await.machine.phase() == burrow_core::phase::RuntimePhase::Stopped
            }
            Some(_) => false,
            None => false,
        };
        let event = if failed { LeaseEvent::Release } else { LeaseEvent::Tick };
        if failed {
            tracing::warn!(session = %id, "the session fail-stopped: its lease is let go for a restore");
        }
        let now = self.inner.clock.now();
        let effects = match fleet.leases().get_mut(&id) {
            Some(lease) => lease.apply(now, event).unwrap_or_default(),
            None => return false,
        };
        if let Err(error) = self.perform_lease(id, effects).await {
            tracing::warn!(session = %id, %error, "lease");
        }
        fleet.leases().get(&id).is_some_and(|l| l.next_tick().is_some())
    }

    /// Performs what a lease machine asked, feeding each answer back, until it asks nothing more.
    async fn perform_lease(&self, id: SessionId, mut effects: Vec<LeaseEffect>) -> Result<(), RuntimeError> {
        let Some(fleet) = &self.inner.fleet else { return Ok(()) };
        let store = self.inner.store.clone().expect("a fleet host has a store");
        let (host, length) = (fleet.config.host, fleet.config.lease.length_ms);
        let mut outcome = Ok(());
        while !effects.is_empty() {
            let mut next = Vec::new();
            for effect in effects {
                let event = match effect {
                    LeaseEffect::SendRenew { epoch } => Some(match store.renew_lease(id, host, epoch, length).await {
                        Ok(_) => LeaseEvent::Renewed,
                        Err(StoreError::Fenced(fenced)) => LeaseEvent::RenewRefused { owner: fenced.owner },
                        Err(_) => LeaseEvent::RenewFailed,
                    }),
                    LeaseEffect::SendRelease { epoch } => {
                        if let Err(error) = store.release_lease(id, host, epoch).await {
                            outcome = Err(RuntimeError::store(id, error));
                        }
                        None
                    }
                    LeaseEffect::StopDriving { why } => {
                        self.stop_driving(id, why).await;
                        None
                    }
                    LeaseEffect::SendClaim | LeaseEffect::StartDriving { .. } => None,
                };
                if let Some(event) = event {
                    let now = self.inner.clock.now();
                    if let Some(lease) = fleet.leases().get_mut(&id) {
                        next.extend(lease.apply(now, event).unwrap_or_default());
                    }
                }
            }
            effects = next;
        }
        let done = fleet.leases().get(&id).is_some_and(|l| l.next_tick().is_none());
        if done {
            fleet.leases().remove(&id);
        }
        outcome
    }

    /// The lease is gone: the session stops here at once, tells its waiters it moved, and leaves the table.
    async fn stop_driving(&self, id: SessionId, why: LossReason) {
        let owner = why.new_owner();
        if why == LossReason::Expired && self.planted() == Some(crate::planted::ShellDefect::LeaseIgnored) {
            return;
        }
        tracing::info!(session = %id, ?why, "stopped driving: the lease is gone");
        let session = self.inner.sessions().get(&id).cloned();
        if let Some(session) = session.filter(|s| s.moved.get().is_none()) {
            let mut st = session.lock().await;
            if let Err(refusal) = session.drive(&mut st, why.session_event(), None).await {
                tracing::error!(session = %id, %refusal, "the session refused OwnershipLost");
            }
            drop(st);
            let _ = session.moved.set(owner);
            let mut sessions = self.inner.sessions_mut();
            if sessions.get(&id).is_some_and(|s| Arc::ptr_eq(s, &session)) {
                sessions.remove(&id);
            }
        }
    }
}
