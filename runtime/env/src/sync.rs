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

/// A bounded channel whose every receiver sees every value, or learns how many it missed:
/// [`broadcast::channel`]. Tokio's own: it keeps its waiting receivers in one list and wakes them in that order,
/// with nothing drawn from a per-thread generator, so a simulation's seed decides the order as it does for
/// [`Notify`](super::Notify).
pub mod broadcast {
    pub use tokio::sync::broadcast::{Receiver, Sender, channel, error};
}

/// A channel for sending exactly one value: [`oneshot::channel`].
pub mod oneshot {
    pub use tokio::sync::oneshot::{Receiver, Sender, channel, error};
}

/// A channel holding one latest value that many receivers can watch for changes: [`watch::channel`].
///
/// This one is burrow's own rather than tokio's. Tokio's watch spreads its waiting receivers over several wait
/// lists and picks one per receiver from a thread-local generator that a simulation's seed never reaches, so two
/// runs of one seed on the same thread could wake receivers in different orders. Here every receiver waits on one
/// [`Notify`](super::Notify), which wakes waiters in the order they began to wait, and the channel behaves the same
/// in both builds. The API is the subset of tokio's that burrow uses, with the same meaning.
pub mod watch {
    use std::ops::Deref;
    use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

    use super::Notify;

    /// Why a watch operation failed.
    pub mod error {
        /// The sender is gone: no value will change again.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
        #[error("the watch sender is gone")]
        pub struct RecvError(pub(crate) ());

        /// Every receiver is gone; the value is handed back.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
        #[error("every watch receiver is gone")]
        pub struct SendError<T>(pub T);
    }

    #[derive(Debug)]
    struct State<T> {
        value: T,
        version: u64,
        sender_alive: bool,
        receivers: usize,
    }

    #[derive(Debug)]
    struct Shared<T> {
        state: Mutex<State<T>>,
        changed: Notify,
    }

    impl<T> Shared<T> {
        fn lock(&self) -> MutexGuard<'_, State<T>> {
            self.state.lock().unwrap_or_else(PoisonError::into_inner)
        }
    }

    /// The sending half; dropping it tells every receiver that no change will come.
    #[derive(Debug)]
    pub struct Sender<T> {
        shared: Arc<Shared<T>>,
    }

    /// A receiving half; it remembers the last version it has seen.
    #[derive(Debug)]
    pub struct Receiver<T> {
        shared: Arc<Shared<T>>,
        seen: u64,
    }

    /// A borrowed view of the current value; hold it briefly (it locks the channel).
    #[derive(Debug)]
    pub struct Ref<'a, T> {
        guard: MutexGuard<'a, State<T>>,
    }

    impl<T> Deref for Ref<'_, T> {
        type Target = T;

        fn deref(&self) -> &T {
            &self.guard.value
        }
    }

    /// A channel whose current value is `initial`.
    pub fn channel<T>(initial: T) -> (Sender<T>, Receiver<T>) {
        let state = State { value: initial, version: 0, sender_alive: true, receivers: 1 };
        let shared = Arc::new(Shared { state: Mutex::new(state), changed: Notify::new() });
        (Sender { shared: shared.clone() }, Receiver { shared, seen: 0 })
    }

    impl<T> Sender<T> {
        /// Replaces the value and wakes every receiver; fails (handing the value back) if none is left.
        ///
        /// # Errors
        /// When every receiver is gone.
        pub fn send(&self, value: T) -> Result<(), error::SendError<T>> {
            if self.shared.lock().receivers == 0 {
                return Err(error::SendError(value));
            }
            self.send_replace(value);
            Ok(())
        }

        /// Replaces the value whether or not anyone listens, wakes every receiver, and returns the old value.
        pub fn send_replace(&self, value: T) -> T {
            let old = {
                let mut state = self.shared.lock();
                state.version += 1;
                std::mem::replace(&mut state.value, value)
            };
            self.shared.changed.notify_waiters();
            old
        }

        /// Changes the value in place and wakes every receiver.
        pub fn send_modify(&self, modify: impl FnOnce(&mut T)) {
            {
                let mut state = self.shared.lock();
                modify(&mut state.value);
                state.version += 1;
            }
            self.shared.changed.notify_waiters();
        }

        /// A new receiver that has seen the current value.
        pub fn subscribe(&self) -> Receiver<T> {
            let mut state = self.shared.lock();
            state.receivers += 1;
            Receiver { shared: self.shared.clone(), seen: state.version }
        }

        /// The current value.
        pub fn borrow(&self) -> Ref<'_, T> {
            Ref { guard: self.shared.lock() }
        }
    }

    impl<T> Drop for Sender<T> {
        fn drop(&mut self) {
            self.shared.lock().sender_alive = false;
            self.shared.changed.notify_waiters();
        }
    }

    impl<T> Clone for Receiver<T> {
        fn clone(&self) -> Self {
            self.shared.lock().receivers += 1;
            Receiver { shared: self.shared.clone(), seen: self.seen }
        }
    }

    impl<T> Drop for Receiver<T> {
        fn drop(&mut self) {
            self.shared.lock().receivers -= 1;
        }
    }

    impl<T> Receiver<T> {
        /// The current value, without marking it seen.
        pub fn borrow(&self) -> Ref<'_, T> {
            Ref { guard: self.shared.lock() }
        }

        /// The current value, marking it seen.
        pub fn borrow_and_update(&mut self) -> Ref<'_, T> {
            let guard = self.shared.lock();
            self.seen = guard.version;
            Ref { guard }
        }

        /// Whether the value changed since this receiver last saw it.
        ///
        /// # Errors
        /// When the sender is gone.
        pub fn has_changed(&self) -> Result<bool, error::RecvError> {
            let state = self.shared.lock();
            if !state.sender_alive {
                return Err(error::RecvError(()));
            }
            Ok(state.version != self.seen)
        }

        /// Waits until the value changes from the last one seen (and marks it seen).
        ///
        /// # Errors
        /// When the sender is gone.
        pub async fn changed(&mut self) -> Result<(), error::RecvError> {
            loop {
                let notified = self.shared.changed.notified();
                let mut notified = std::pin::pin!(notified);
                notified.as_mut().enable();
                {
                    let state = self.shared.lock();
                    if state.version != self.seen {
                        self.seen = state.version;
                        return Ok(());
                    }
                    if !state.sender_alive {
                        return Err(error::RecvError(()));
                    }
                }
                notified.await;
            }
        }

        /// Waits until `ready` holds for the value (checking the current one first) and returns a view of it.
        ///
        /// # Errors
        /// When the sender is gone and the value does not satisfy `ready`.
        pub async fn wait_for(&mut self, mut ready: impl FnMut(&T) -> bool) -> Result<Ref<'_, T>, error::RecvError> {
            loop {
                let notified = self.shared.changed.notified();
                let mut notified = std::pin::pin!(notified);
                notified.as_mut().enable();
                {
                    let state = self.shared.lock();
                    self.seen = state.version;
                    if ready(&state.value) {
                        return Ok(Ref { guard: state });
                    }
                    if !state.sender_alive {
                        return Err(error::RecvError(()));
                    }
                }
                notified.await;
            }
        }
    }
}

pub use tokio::sync::{
    MappedMutexGuard, Mutex, MutexGuard, Notify, OwnedMutexGuard, OwnedRwLockReadGuard, OwnedRwLockWriteGuard,
    OwnedSemaphorePermit, RwLock, RwLockReadGuard, RwLockWriteGuard, Semaphore, TryLockError,
};
