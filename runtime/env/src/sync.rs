//! Channels, locks and notification.
//!
//! These are tokio's own synchronisation types in both builds. They hold no runtime of their own (they only
//! store and wake wakers), so under madsim they are driven entirely by the simulator's deterministic scheduler;
//! that is why the simulated build can keep them rather than substitute look-alikes.
//!
//! Two behaviours the conformance suite pins because burrow relies on them: [`Notify::notify_one`] with nobody
//! waiting stores one permit that the next `notified().await` consumes at once, and a [`Mutex`] hands the lock to
//! waiters in the order they asked.

/// Multi-producer, single-consumer queues: [`mpsc::channel`] (bounded, with back-pressure) and
/// [`mpsc::unbounded_channel`].
pub mod mpsc {
    pub use tokio::sync::mpsc::{
        OwnedPermit, Permit, Receiver, Sender, UnboundedReceiver, UnboundedSender, WeakSender, WeakUnboundedSender,
        channel, error, unbounded_channel,
    };
}

/// A channel for sending exactly one value: [`oneshot::channel`].
pub mod oneshot {
    pub use tokio::sync::oneshot::{Receiver, Sender, channel, error};
}

/// A channel holding one latest value that many receivers can watch for changes: [`watch::channel`].
pub mod watch {
    pub use tokio::sync::watch::{Receiver, Ref, Sender, channel, error};
}

pub use tokio::sync::{
    MappedMutexGuard, Mutex, MutexGuard, Notify, OwnedMutexGuard, OwnedRwLockReadGuard, OwnedRwLockWriteGuard, RwLock,
    RwLockReadGuard, RwLockWriteGuard, TryLockError,
};
