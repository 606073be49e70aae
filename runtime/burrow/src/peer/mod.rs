//! Peer ingress (SPEC 2.5): a drain task pulls messages from a pluggable [`PeerSource`] into its session.
//!
//! The core's drain machine decides when a drain runs and in which mode (from the runtime phase, comms and
//! keep-alive). The task here only pulls: it drains the source, accepts each message, and when the source is empty
//! asks the machine whether it may park. The machine answers Park only if no inbox notification arrived since the
//! task last looked, so a message that lands while the task decides to sleep is never missed. A second branch of
//! the task reports every inbox notification to the machine.

use std::sync::Arc;

use burrow_core::drain::DrainIncarnation;
use burrow_env::sync::Notify;
use burrow_env::task::JoinHandle;
use burrow_env::time::Duration;

use crate::BoxFuture;
use crate::executor::Input;

pub(crate) mod drain;

/// Most messages taken from the source in one pull.
pub const PEER_BATCH_MAX: usize = 64;
/// How long a failed PersistentHost drain waits before it is respawned.
pub const RESPAWN_DELAY: Duration = Duration::from_millis(100);
/// How long a PersistentHost drain waits for a message before it exits with IdleTimeout.
pub const PEER_IDLE_TIMEOUT_DEFAULT: Duration = Duration::from_secs(300);
/// The first wait before held messages are offered again; it doubles up to [`PEER_RETRY_MAX`].
pub const PEER_RETRY_MIN: Duration = Duration::from_millis(5);
/// The longest wait before held messages are offered again.
pub const PEER_RETRY_MAX: Duration = Duration::from_millis(500);

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
/// Set one with [`Runtime::set_peer_source`](crate::Runtime::set_peer_source); setting one (again) starts a drain
/// at once if the session wants one, even after an earlier source dismissed its drain. A drain task runs while the
/// session's settings enable comms and the session has an executor attached, or is idle with keep-alive on
/// ([`Runtime::set_keep_alive`](crate::Runtime::set_keep_alive)). It accepts every drained message into the session
/// as [`Runtime::accept_input`](crate::Runtime::accept_input) would.
///
/// # Hand-over
///
/// A message returned by [`PeerSource::drain`] is handed over: the source owes it to no one any more, and the
/// session keeps it until it is admitted. A message the session cannot take now (its active-input bound is
/// reached, admission is closed for the moment, a store write failed) is held by the session, in order with those
/// behind it, and offered again with a bounded backoff; the drain pulls nothing new while it holds messages, so
/// the backlog stays with the source. At most [`PEER_BATCH_MAX`] messages are held, and they outlive a drain task
/// that is replaced. Only a message that can never be admitted (it fails validation) is dropped, with a warning;
/// held messages are lost only with the session itself (destroyed, unregistered, or the process ending), so a
/// source that needs more must keep its own log and redeliver.
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

/// The live peer-ingress drain task.
#[derive(Debug)]
pub(crate) struct DrainSlot {
    pub(crate) incarnation: DrainIncarnation,
    pub(crate) handle: JoinHandle<()>,
    pub(crate) wake: Arc<Notify>,
}
