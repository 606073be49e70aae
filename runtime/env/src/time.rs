//! Time: the current instant, sleeping, deadlines.
//!
//! Under madsim the clock is virtual: it only moves when every task is idle, jumping to the next timer, so a sleep
//! of an hour costs nothing. Code must therefore read the clock only through [`now`] (never `std::time::Instant`
//! directly, which this crate cannot promise to intercept) and must not busy-wait on it.

use std::fmt;
use std::future::Future;
use std::ops::{Add, AddAssign, Sub, SubAssign};

pub use std::time::Duration;

/// A point on this build's clock: real monotonic time normally, virtual time under madsim.
///
/// This wraps the runtime's own instant type rather than re-exporting it, because the two builds use different
/// types (tokio's instant and the standard library's) with slightly different methods; one wrapper keeps the API
/// identical. Only differences between instants are meaningful; the absolute value is not.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Instant(tokio::time::Instant);

impl Instant {
    /// The current instant; the same as [`now`].
    pub fn now() -> Instant {
        Instant(tokio::time::Instant::now())
    }

    /// The time from `earlier` to `self`, or zero if `earlier` is later.
    pub fn duration_since(&self, earlier: Instant) -> Duration {
        self.0.saturating_duration_since(earlier.0)
    }

    /// The time from `earlier` to `self`, or `None` if `earlier` is later.
    pub fn checked_duration_since(&self, earlier: Instant) -> Option<Duration> {
        self.0.checked_duration_since(earlier.0)
    }

    /// The time that has passed since `self`, or zero if `self` is in the future.
    pub fn elapsed(&self) -> Duration {
        Instant::now().duration_since(*self)
    }

    /// `self + duration`, or `None` if that cannot be represented.
    pub fn checked_add(&self, duration: Duration) -> Option<Instant> {
        self.0.checked_add(duration).map(Instant)
    }

    /// `self - duration`, or `None` if that cannot be represented.
    pub fn checked_sub(&self, duration: Duration) -> Option<Instant> {
        self.0.checked_sub(duration).map(Instant)
    }
}

impl fmt::Debug for Instant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl Add<Duration> for Instant {
    type Output = Instant;

    /// Panics on overflow, like the standard library's instant.
    fn add(self, rhs: Duration) -> Instant {
        Instant(self.0 + rhs)
    }
}

impl AddAssign<Duration> for Instant {
    fn add_assign(&mut self, rhs: Duration) {
        *self = *self + rhs;
    }
}

impl Sub<Duration> for Instant {
    type Output = Instant;

    /// Panics on underflow, like the standard library's instant.
    fn sub(self, rhs: Duration) -> Instant {
        Instant(self.0 - rhs)
    }
}

impl SubAssign<Duration> for Instant {
    fn sub_assign(&mut self, rhs: Duration) {
        *self = *self - rhs;
    }
}

impl Sub<Instant> for Instant {
    type Output = Duration;

    /// Saturates at zero rather than panicking, so a caller comparing two readings never has to order them first.
    fn sub(self, rhs: Instant) -> Duration {
        self.duration_since(rhs)
    }
}

/// Reads the clock.
///
/// Must be called from inside a runtime when the build is simulated, since the virtual clock belongs to the
/// running simulation.
pub fn now() -> Instant {
    Instant::now()
}

/// Waits until `duration` has passed on this build's clock.
///
/// Returns after at least `duration`. Under madsim the virtual clock also advances a little for every task it
/// runs and a sleep lasts at least one millisecond, so measured times there are slightly longer, never shorter.
pub async fn sleep(duration: Duration) {
    tokio::time::sleep(duration).await
}

/// Waits until `deadline`.
///
/// A deadline that has already passed returns promptly; under madsim "promptly" means one millisecond of virtual
/// time, the simulator's shortest sleep, so code must not rely on a past deadline costing no time at all.
pub async fn sleep_until(deadline: Instant) {
    tokio::time::sleep_until(deadline.0).await
}

/// Runs `future` but gives up once `duration` has passed, dropping it.
///
/// The future is polled before the deadline is checked, in both builds, so a future that is ready when the deadline
/// is reached still returns its output.
pub async fn timeout<F: Future>(duration: Duration, future: F) -> Result<F::Output, Elapsed> {
    tokio::time::timeout(duration, future).await.map_err(|_| Elapsed(()))
}

/// The error [`timeout`] returns when the deadline passes first.
///
/// A type of this crate's own, because tokio's cannot be constructed outside tokio and madsim's is a different
/// type; one error type keeps `match` arms and `?` conversions identical in both builds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Elapsed(());

impl fmt::Display for Elapsed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("deadline has elapsed")
    }
}

impl std::error::Error for Elapsed {}
