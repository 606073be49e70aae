//! The drain task: pulls a [`PeerSource`] into its session, holding what the session cannot take yet.

use std::sync::Arc;

use burrow_core::drain::{DrainEffect, DrainEvent, DrainExitReason, DrainIncarnation, DrainMode};
use burrow_env::sync::Notify;
use burrow_env::task::{self, JoinHandle};

use super::{Drained, PEER_BATCH_MAX, PEER_RETRY_MAX, PEER_RETRY_MIN, PeerSource};
use crate::session::Session;

/// Starts the drain task of `incarnation` (the session's [`crate::session::TaskStarters`] entry for drains).
pub(crate) fn start(
    session: Arc<Session>,
    source: Arc<dyn PeerSource>,
    mode: DrainMode,
    incarnation: DrainIncarnation,
    wake: Arc<Notify>,
) -> JoinHandle<()> {
    task::spawn(drain_task(session, source, mode, incarnation, wake))
}

async fn drain_task(
    session: Arc<Session>,
    source: Arc<dyn PeerSource>,
    mode: DrainMode,
    incarnation: DrainIncarnation,
    wake: Arc<Notify>,
) {
    tracing::debug!(session = %session.id, ?mode, incarnation = incarnation.0, "drain started");
    let reason = burrow_env::select! {
        biased;
        // Nothing will take what the drain pulls any more, and its hold on the session would keep the session's
        // waiters from learning that.
        () = session.runtime_dropped() => {
            tracing::debug!(session = %session.id, "drain ended: the runtime was dropped");
            return;
        }
        reason = pull(&session, &*source, mode, incarnation, &wake) => reason,
        () = report_notifications(&session, &*source) => DrainExitReason::Failed,
    };
    tracing::debug!(session = %session.id, ?reason, "drain ended");
    let _ = session.drain_event(DrainEvent::Exited { incarnation, reason }).await;
}

async fn report_notifications(session: &Arc<Session>, source: &dyn PeerSource) {
    loop {
        source.notified().await;
        let _ = session.drain_event(DrainEvent::InboxNotified).await;
    }
}

/// Accepts the held messages in order, each leaving the hold once the session has it. Returns false when the
/// session could not take one for now: it and those after it stay held (see [`PeerSource`]).
async fn offer(session: &Arc<Session>) -> bool {
    while let Some(message) = session.first_held_peer_message() {
        match session.accept(message, false, true, None).await {
            Ok(_) => {}
            Err(error) if error.is_transient() => {
                tracing::debug!(session = %session.id, %error, "peer message held until the session can take it");
                return false;
            }
            Err(error) => tracing::warn!(session = %session.id, %error, "peer message can never be admitted; dropped"),
        }
        session.release_first_held_peer_message();
    }
    true
}

async fn pull(
    session: &Arc<Session>,
    source: &dyn PeerSource,
    mode: DrainMode,
    incarnation: DrainIncarnation,
    wake: &Notify,
) -> DrainExitReason {
    let mut retry = PEER_RETRY_MIN;
    // A dismissal that came with messages the session could not take yet ends the drain once they are in.
    let mut dismissed = false;
    loop {
        // Messages the session could not take before go first, in order; nothing new is pulled until they are in.
        let drained = if session.holds_peer_messages() {
            Drained::default()
        } else {
            match source.drain(PEER_BATCH_MAX).await {
                Ok(drained) => drained,
                Err(error) => {
                    tracing::warn!(session = %session.id, %error, "peer source failed");
                    return DrainExitReason::Failed;
                }
            }
        };
        let empty = drained.messages.is_empty() && !session.holds_peer_messages();
        dismissed |= drained.dismissed;
        // Held by the session from the moment they are handed over, so a drain replaced mid-batch loses none.
        session.hold_peer_messages(drained.messages);
        if !offer(session).await {
            // Wait for room (or for the drain to be woken), then offer the held messages again.
            let _ = burrow_env::time::timeout(retry, wake.notified()).await;
            retry = (retry * 2).min(PEER_RETRY_MAX);
            continue;
        }
        retry = PEER_RETRY_MIN;
        if dismissed {
            return DrainExitReason::Dismissed;
        }
        if !empty {
            continue;
        }
        match session.drain_event(DrainEvent::ParkRequested { incarnation }).await {
            Some(DrainEffect::Park) => {}
            Some(_) => continue,
            // Refused: this drain is no longer the current one.
            None => return DrainExitReason::Aborted,
        }
        match mode {
            DrainMode::AttachedSession => wake.notified().await,
            DrainMode::PersistentHost => {
                if burrow_env::time::timeout(session.bounds.peer_idle, wake.notified()).await.is_err() {
                    return DrainExitReason::IdleTimeout;
                }
            }
        }
    }
}
