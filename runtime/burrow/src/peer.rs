//! Peer ingress (SPEC 2.5): a drain task pulls messages from a pluggable [`PeerSource`] into its session.
//!
//! The core's drain machine decides when a drain runs and in which mode (from the runtime phase, comms and
//! keep-alive). The task here only pulls: it drains the source, accepts each message, and when the source is empty
//! asks the machine whether it may park. The machine answers Park only if no inbox notification arrived since the
//! task last looked, so a message that lands while the task decides to sleep is never missed. A second branch of
//! the task reports every inbox notification to the machine.

use std::sync::Arc;

use burrow_core::drain::{DrainEffect, DrainEvent, DrainExitReason, DrainIncarnation, DrainMode};
use burrow_env::sync::Notify;
use burrow_env::time::Duration;

use crate::BoxFuture;
use crate::executor::Input;
use crate::session::Session;

/// Most messages taken from the source in one pull.
pub const PEER_BATCH_MAX: usize = 64;
/// How long a failed PersistentHost drain waits before it is respawned.
pub const RESPAWN_DELAY: Duration = Duration::from_millis(100);
/// How long a PersistentHost drain waits for a message before it exits with IdleTimeout.
pub const PEER_IDLE_TIMEOUT_DEFAULT: Duration = Duration::from_secs(300);

/// What one pull from a source returned.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Drained {
    /// Messages, in arrival order (peer messages, peer requests, response progress).
    pub messages: Vec<Input>,
    /// The source was dismissed: no message will come again; the drain ends.
    pub dismissed: bool,
}

/// A source of peer messages failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("peer source failed: {message}")]
pub struct PeerError {
    /// What went wrong.
    pub message: String,
}

/// Where a session's peer messages come from.
pub trait PeerSource: Send + Sync + 'static {
    /// Takes up to `max` ready messages without waiting.
    fn drain(&self, max: usize) -> BoxFuture<'_, Result<Drained, PeerError>>;

    /// Resolves when the inbox may have something new. Like a `Notify` permit, a notification that arrives
    /// before this is awaited must still resolve it.
    fn notified(&self) -> BoxFuture<'_, ()>;
}

pub(crate) async fn drain_task(
    session: Arc<Session>,
    source: Arc<dyn PeerSource>,
    mode: DrainMode,
    incarnation: DrainIncarnation,
    wake: Arc<Notify>,
) {
    tracing::debug!(session = %session.id, ?mode, incarnation = incarnation.0, "drain started");
    let reason = burrow_env::select! {
        biased;
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

async fn pull(
    session: &Arc<Session>,
    source: &dyn PeerSource,
    mode: DrainMode,
    incarnation: DrainIncarnation,
    wake: &Notify,
) -> DrainExitReason {
    loop {
        let drained = match source.drain(PEER_BATCH_MAX).await {
            Ok(drained) => drained,
            Err(error) => {
                tracing::warn!(session = %session.id, %error, "peer source failed");
                return DrainExitReason::Failed;
            }
        };
        let empty = drained.messages.is_empty();
        for message in drained.messages {
            if let Err(error) = session.accept(message, false, true).await {
                // A refused message is not retried: it is logged with its reason and the drain goes on.
                tracing::warn!(session = %session.id, %error, "peer message refused");
            }
        }
        if drained.dismissed {
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
                if burrow_env::time::timeout(session.peer_idle_timeout, wake.notified()).await.is_err() {
                    return DrainExitReason::IdleTimeout;
                }
            }
        }
    }
}
