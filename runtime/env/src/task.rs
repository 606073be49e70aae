//! Tasks: spawning, joining, aborting, yielding.
//!
//! A panic inside a spawned task is caught here, in both builds, and reported through [`JoinError::is_panic`].
//! Real tokio already does that; madsim instead lets the panic tear down the whole simulation. Catching it in this
//! crate gives both builds tokio's behaviour, which is the one burrow needs: an executor that panics must fail its
//! run and leave the session alive, and the simulator must exercise exactly that path.

use std::any::Any;
use std::fmt;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::Mutex;
use std::task::{Context, Poll};

type PanicPayload = Box<dyn Any + Send + 'static>;

/// Starts `future` as a new task on the current runtime and returns a handle to await or abort it.
///
/// The task runs even if the handle is dropped; dropping the handle only gives up the ability to join or abort
/// it. Must be called from inside a runtime.
#[track_caller]
pub fn spawn<F>(future: F) -> JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    JoinHandle { inner: tokio::task::spawn(CatchPanic { future }) }
}

/// Runs `future` on the current task and turns a panic during any of its polls into a [`JoinError`], the same way
/// [`spawn`] reports a panicking task; the caller keeps running.
///
/// burrow calls its users' executors through this, so a panicking turn fails its run instead of tearing down the
/// session's loop.
pub async fn catch_panic<F: Future>(future: F) -> Result<F::Output, JoinError> {
    CatchPanic { future }.await.map_err(JoinError::panicked)
}

/// Gives other ready tasks a chance to run before this one continues.
///
/// Under madsim, which task runs next is chosen by the seed, so a yield is also a point where the simulator can
/// explore a different interleaving.
pub async fn yield_now() {
    tokio::task::yield_now().await
}

pin_project_lite::pin_project! {
    /// Runs the wrapped future, turning a panic during any poll into an error value. The future lives inline, so a
    /// spawned task is one allocation.
    struct CatchPanic<F> {
        #[pin]
        future: F,
    }
}

impl<F: Future> Future for CatchPanic<F> {
    type Output = Result<F::Output, PanicPayload>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let future = self.project().future;
        // Unwind safety: after a panic the future is never polled again; the runtime drops it once this wrapper
        // returns Ready, so no broken invariant inside it can be observed.
        match catch_unwind(AssertUnwindSafe(|| future.poll(cx))) {
            Ok(Poll::Ready(output)) => Poll::Ready(Ok(output)),
            Ok(Poll::Pending) => Poll::Pending,
            Err(payload) => Poll::Ready(Err(payload)),
        }
    }
}

/// A handle to a spawned task: await it for the task's output, or abort it.
///
/// Awaiting yields `Ok(output)` if the task finished, or a [`JoinError`] if it was aborted or panicked.
pub struct JoinHandle<T> {
    inner: tokio::task::JoinHandle<Result<T, PanicPayload>>,
}

impl<T> JoinHandle<T> {
    /// Asks the task to stop. It is dropped at its next yield point, and awaiting the handle then gives a
    /// cancelled [`JoinError`]. A task that already finished keeps its output.
    pub fn abort(&self) {
        self.inner.abort()
    }

    /// Whether the task has finished: completed, panicked, or been aborted and dropped by the runtime.
    ///
    /// It turns true only after the runtime has run or dropped the task, never at the moment of
    /// [`abort`](Self::abort) or of the event the task was waiting for; code that needs the outcome should await
    /// the handle rather than poll this.
    pub fn is_finished(&self) -> bool {
        self.inner.is_finished()
    }
}

impl<T> Future for JoinHandle<T> {
    type Output = Result<T, JoinError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match Pin::new(&mut self.inner).poll(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Ok(Ok(output))) => Poll::Ready(Ok(output)),
            Poll::Ready(Ok(Err(payload))) => Poll::Ready(Err(JoinError::panicked(payload))),
            // The task's own panics were caught inside it, so the runtime can only report a cancellation here.
            Poll::Ready(Err(_)) => Poll::Ready(Err(JoinError::cancelled())),
        }
    }
}

impl<T> fmt::Debug for JoinHandle<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JoinHandle").field("finished", &self.is_finished()).finish()
    }
}

/// Why a task did not produce its output: it was aborted, or it panicked.
pub struct JoinError {
    // The payload sits behind a mutex only so that the error is `Sync`, as errors are expected to be; the message
    // is copied out at construction so reading it never needs the lock.
    panic: Option<(Mutex<PanicPayload>, Option<String>)>,
}

impl JoinError {
    fn cancelled() -> JoinError {
        JoinError { panic: None }
    }

    fn panicked(payload: PanicPayload) -> JoinError {
        let message = payload
            .downcast_ref::<&'static str>()
            .map(|s| (*s).to_owned())
            .or_else(|| payload.downcast_ref::<String>().cloned());
        JoinError { panic: Some((Mutex::new(payload), message)) }
    }

    /// Whether the task was aborted.
    pub fn is_cancelled(&self) -> bool {
        self.panic.is_none()
    }

    /// Whether the task panicked.
    pub fn is_panic(&self) -> bool {
        self.panic.is_some()
    }

    /// The panic's message, if the task panicked with a string (as `panic!` with a message does).
    pub fn panic_message(&self) -> Option<&str> {
        self.panic.as_ref().and_then(|(_, message)| message.as_deref())
    }

    /// The value the task panicked with, so it can be re-raised with `std::panic::resume_unwind`; or the error
    /// itself back if the task was aborted instead.
    pub fn try_into_panic(self) -> Result<Box<dyn Any + Send + 'static>, JoinError> {
        match self.panic {
            Some((payload, _)) => Ok(payload.into_inner().unwrap_or_else(|poisoned| poisoned.into_inner())),
            None => Err(self),
        }
    }
}

impl fmt::Display for JoinError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.panic {
            None => f.write_str("task was cancelled"),
            Some((_, Some(message))) => write!(f, "task panicked: {message}"),
            Some((_, None)) => f.write_str("task panicked"),
        }
    }
}

impl fmt::Debug for JoinError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.panic {
            None => f.write_str("JoinError::Cancelled"),
            Some((_, message)) => f.debug_tuple("JoinError::Panic").field(message).finish(),
        }
    }
}

impl std::error::Error for JoinError {}
