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

/// What one pull from a source returned ([`PeerSource::drain`]).
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
///
/// Set one with [`Runtime::set_peer_source`](crate::Runtime::set_peer_source). A drain task runs while the
/// session's settings enable comms and the session has an executor attached, or is idle with keep-alive on
/// ([`Runtime::set_keep_alive`](crate::Runtime::set_keep_alive)). It accepts every drained message into the session
/// as [`Runtime::accept_input`](crate::Runtime::accept_input) would; a message the session refuses is logged and
/// dropped.
///
/// # Examples
///
/// ```
/// use std::collections::VecDeque;
/// use std::sync::{Arc, Mutex};
/// use burrow::peer::{Drained, PeerError, PeerSource};
/// use burrow::{BoxFuture, Input, InputKind, Runtime, RuntimeError, SessionConfig, SessionId};
/// use burrow_env::sync::Notify;
/// use burrow_env::time::{Duration, sleep, timeout};
///
/// /// An in-process inbox.
/// #[derive(Default)]
/// struct Inbox {
///     queue: Mutex<VecDeque<Input>>,
///     notify: Notify,
/// }
///
/// impl PeerSource for Inbox {
///     fn drain(&self, max: usize) -> BoxFuture<'_, Result<Drained, PeerError>> {
///         let mut queue = self.queue.lock().unwrap();
///         let take = queue.len().min(max);
///         let messages = queue.drain(..take).collect();
///         Box::pin(async move { Ok(Drained { messages, dismissed: false }) })
///     }
///
///     fn notified(&self) -> BoxFuture<'_, ()> {
///         Box::pin(self.notify.notified())
///     }
/// }
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # burrow_env::runtime::block_on_current_thread(async {
/// let runtime = Runtime::ephemeral();
/// let session = SessionId(1);
/// runtime.prepare_with(session, SessionConfig { comms_enabled: true, ..SessionConfig::default() }).await?;
/// let inbox = Arc::new(Inbox::default());
/// inbox.queue.lock().unwrap().push_back(Input::new(InputKind::PeerMessage, "hello from a peer"));
/// inbox.notify.notify_one();
/// runtime.set_peer_source(session, inbox).await?;
/// // No executor is attached: keep-alive hosts the idle session for peer ingress.
/// runtime.set_keep_alive(session, true).await?;
/// let queued = timeout(Duration::from_secs(5), async {
///     loop {
///         let active = runtime.list_active_inputs(session).await?;
///         if !active.is_empty() {
///             return Ok::<_, RuntimeError>(active);
///         }
///         sleep(Duration::from_millis(1)).await;
///     }
/// })
/// .await
/// .expect("the drain queues the message")?;
/// assert_eq!(queued[0].kind, "PeerMessage");
/// # Ok(())
/// # })
/// # }
/// ```
pub trait PeerSource: Send + Sync + 'static {
    /// Takes up to `max` ready messages without waiting, in arrival order. An empty batch that is not dismissed lets
    /// the drain park until [`PeerSource::notified`] resolves.
    ///
    /// # Errors
    ///
    /// Return an error when the source cannot be read: the drain task ends, and a PersistentHost drain is started again
    /// after [`RESPAWN_DELAY`].
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
