//! The loop's mailbox and slot: how the control side reaches a session's loop (executor effects: cancel after
//! boundary, stop) and what the session keeps of the loop task. Knows nothing of the session, so the session can hold
//! these without depending on the loop.

use std::collections::VecDeque;
use std::sync::Arc;

use burrow_core::ids::{Generation, RunId};
use burrow_core::session::StopReason;
use burrow_env::sync::{Notify, watch};
use burrow_env::task::JoinHandle;

/// Most executor effects (cancel-after-boundary, stop) queued for one loop. The machine emits at most one of each
/// per run, so the bound is never reached by a correct machine; reaching it is logged and the stop still takes
/// effect through the session state.
pub(crate) const EXECUTOR_EFFECTS_MAX: usize = 16;

/// What the loop hands to the executor besides runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ExecutorEffect {
    CancelAfterBoundary(RunId),
    Stop(StopReason),
}

/// The queue of executor effects from the control side to the loop, bounded by [`EXECUTOR_EFFECTS_MAX`].
///
/// A mutex-guarded deque and a [`Notify`] rather than a channel: an idle session keeps one of these for as long as
/// its loop lives, and an empty deque holds no memory while a channel allocates its first block of slots up front.
#[derive(Debug, Default)]
struct EffectQueue {
    queue: std::sync::Mutex<VecDeque<ExecutorEffect>>,
    /// Set when the sending side is dropped.
    closed: std::sync::atomic::AtomicBool,
    /// Woken after each push and on close. Its stored permit covers a push between a receiver's check and its wait.
    notify: Notify,
}

impl EffectQueue {
    fn queue(&self) -> std::sync::MutexGuard<'_, VecDeque<ExecutorEffect>> {
        self.queue.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// A new effect queue: the control side's sender and the loop's receiver.
pub(crate) fn effect_queue() -> (EffectSender, EffectReceiver) {
    let shared = Arc::new(EffectQueue::default());
    (EffectSender(shared.clone()), EffectReceiver(shared))
}

/// The control side of an [`EffectQueue`]; dropping it closes the queue.
#[derive(Debug)]
pub(crate) struct EffectSender(Arc<EffectQueue>);

impl EffectSender {
    /// Queues `effect` unless the queue is full.
    pub(crate) fn try_send(&self, effect: ExecutorEffect) -> Result<(), &'static str> {
        let mut queue = self.0.queue();
        if queue.len() >= EXECUTOR_EFFECTS_MAX {
            return Err("the executor effect queue is full");
        }
        queue.push_back(effect);
        drop(queue);
        self.0.notify.notify_one();
        Ok(())
    }
}

impl Drop for EffectSender {
    fn drop(&mut self) {
        self.0.closed.store(true, std::sync::atomic::Ordering::Release);
        self.0.notify.notify_one();
    }
}

/// The loop's side of an [`EffectQueue`].
#[derive(Debug)]
pub(crate) struct EffectReceiver(Arc<EffectQueue>);

/// What [`EffectReceiver::try_recv`] found instead of an effect.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum NoEffect {
    /// Nothing queued now.
    Empty,
    /// Nothing queued, and the sender is gone.
    Closed,
}

impl EffectReceiver {
    /// The next queued effect, without waiting.
    pub(crate) fn try_recv(&mut self) -> Result<ExecutorEffect, NoEffect> {
        if let Some(effect) = self.0.queue().pop_front() {
            return Ok(effect);
        }
        if self.0.closed.load(std::sync::atomic::Ordering::Acquire) {
            Err(NoEffect::Closed)
        } else {
            Err(NoEffect::Empty)
        }
    }

    /// Nothing is queued and the sender is still there.
    pub(crate) fn is_idle(&self) -> bool {
        self.0.queue().is_empty() && !self.0.closed.load(std::sync::atomic::Ordering::Acquire)
    }

    /// The next effect, waiting for one; `None` once the queue is empty and closed. Cancel-safe: an effect leaves the
    /// queue only when this returns it.
    pub(crate) async fn recv(&mut self) -> Option<ExecutorEffect> {
        loop {
            match self.try_recv() {
                Ok(effect) => return Some(effect),
                Err(NoEffect::Closed) => return None,
                Err(NoEffect::Empty) => self.0.notify.notified().await,
            }
        }
    }
}

/// The live loop of the session.
#[derive(Debug)]
pub(crate) struct LoopSlot {
    pub(crate) generation: Generation,
    pub(crate) handle: JoinHandle<()>,
    /// Turns true after the executor's cleanup ran and the machine learned of the exit; closes if the loop task
    /// was aborted.
    pub(crate) exited: watch::Receiver<bool>,
}
