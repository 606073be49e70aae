//! A session's notices as its subscribers receive them: [`Runtime::subscribe`](crate::Runtime::subscribe) hands out
//! a [`Subscription`], a receiver of a bounded broadcast the session fills as it performs its
//! [`Notify`](burrow_core::session::Effect::Notify) effects.
//!
//! The session never waits for a subscriber. Each subscription holds at most the runtime's
//! [`notice_capacity`](crate::RuntimeConfig::notice_capacity) notices it has not read; when a slow one falls further
//! behind, the oldest are dropped for it alone and its next read says how many it missed
//! ([`SubscriptionError::Missed`]), then goes on with the oldest notice still held. A session with no subscriber
//! keeps no buffer at all.
//!
//! spec: specs/session.md#notices

use burrow_core::ids::SessionId;
use burrow_core::session::Notice;
use burrow_env::sync::broadcast;
use burrow_env::time::Duration;

/// Default number of unread notices a subscription may hold before it starts to miss the oldest.
pub const NOTICE_CAPACITY_DEFAULT: usize = 256;

/// Why a subscription gave no notice.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SubscriptionError {
    /// The subscription fell behind and the oldest `0` notices were dropped for it; the next read returns the
    /// oldest notice still held.
    #[error("the subscription fell behind and missed {0} notices")]
    Missed(u64),
    /// The session is gone (unregistered, or its runtime dropped): no notice will come.
    #[error("the session is gone: no notice will come")]
    Closed,
    /// No notice came within the bound.
    #[error("no notice came within {waited_ms} ms")]
    TimedOut {
        /// How long the read waited.
        waited_ms: u64,
    },
}

/// One subscriber's view of a session's notices, in the order the session made them.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use burrow::{Input, Notice, Runtime, SessionId};
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # burrow_env::runtime::block_on_current_thread(async {
/// let runtime = Runtime::ephemeral();
/// let session = SessionId(1);
/// runtime.prepare(session).await?;
/// let mut notices = runtime.subscribe(session).await?;
/// let input = runtime.accept_input(session, Input::prompt("hi")).await?.input();
/// let notice = notices.next(Duration::from_secs(1)).await?;
/// assert_eq!(notice, Notice::InputAccepted { input, kind: "Prompt" });
/// # Ok(())
/// # })
/// # }
/// ```
#[derive(Debug)]
pub struct Subscription {
    session: SessionId,
    rx: broadcast::Receiver<Notice>,
}

impl Subscription {
    pub(crate) fn new(session: SessionId, rx: broadcast::Receiver<Notice>) -> Subscription {
        Subscription { session, rx }
    }

    /// The session it follows.
    #[must_use]
    pub fn session(&self) -> SessionId {
        self.session
    }

    /// The next notice, waiting at most `bound` for one.
    ///
    /// # Errors
    ///
    /// [`SubscriptionError::Missed`] once after falling behind, [`SubscriptionError::Closed`] when the session is
    /// gone and every notice it made was read, [`SubscriptionError::TimedOut`] when `bound` passed first.
    pub async fn next(&mut self, bound: Duration) -> Result<Notice, SubscriptionError> {
        match burrow_env::time::timeout(bound, self.rx.recv()).await {
            Ok(received) => received.map_err(|error| match error {
                broadcast::error::RecvError::Lagged(missed) => SubscriptionError::Missed(missed),
                broadcast::error::RecvError::Closed => SubscriptionError::Closed,
            }),
            Err(_) => {
                Err(SubscriptionError::TimedOut { waited_ms: u64::try_from(bound.as_millis()).unwrap_or(u64::MAX) })
            }
        }
    }

    /// The next notice if one is already there, without waiting.
    ///
    /// # Errors
    ///
    /// [`SubscriptionError::Missed`] once after falling behind; [`SubscriptionError::Closed`] when the session is
    /// gone and every notice it made was read.
    pub fn try_next(&mut self) -> Result<Option<Notice>, SubscriptionError> {
        match self.rx.try_recv() {
            Ok(notice) => Ok(Some(notice)),
            Err(broadcast::error::TryRecvError::Empty) => Ok(None),
            Err(broadcast::error::TryRecvError::Lagged(missed)) => Err(SubscriptionError::Missed(missed)),
            Err(broadcast::error::TryRecvError::Closed) => Err(SubscriptionError::Closed),
        }
    }
}

/// The sending side a session keeps: made at the first subscribe, let go when the last subscriber has gone.
#[derive(Debug, Default)]
pub(crate) struct Notices {
    tx: Option<broadcast::Sender<Notice>>,
}

impl Notices {
    /// A new subscription, holding at most `capacity` unread notices.
    pub(crate) fn subscribe(&mut self, session: SessionId, capacity: usize) -> Subscription {
        let tx = self.tx.get_or_insert_with(|| broadcast::channel(capacity.max(1)).0);
        Subscription::new(session, tx.subscribe())
    }

    /// Whether some subscriber has not read every notice yet.
    pub(crate) fn unread(&self) -> bool {
        self.tx.as_ref().is_some_and(|tx| !tx.is_empty())
    }

    /// Delivers `notice` to every subscriber; with none left, the buffer goes.
    pub(crate) fn send(&mut self, notice: Notice) {
        if let Some(tx) = &self.tx {
            if tx.send(notice).is_err() {
                self.tx = None;
            }
        }
    }
}
