//! burrow-env: the one seam between burrow and its async runtime.
//!
//! Everything in burrow that needs time, tasks, channels, locks or randomness reaches them through this crate and
//! nowhere else. In a normal build they are real tokio; in a build with `RUSTFLAGS="--cfg madsim"` they are the
//! madsim simulator, whose clock is virtual and whose scheduler is driven by a seed, so a whole run of the shell
//! can be replayed from one number. No other crate in the workspace names tokio or madsim, which is what makes
//! that swap a one-flag change.
//!
//! The public API is meant to be the same shape in both builds: where the two runtimes expose slightly different
//! types (instants, timeout errors, join handles) this crate wraps them in its own types, so code that compiles
//! against one build compiles against the other. Where they behave differently, this crate makes them behave
//! alike; the conformance suite in burrow-tests runs one body under both to hold it to that.
//!
//! - [`time`]: [`time::now`], [`time::sleep`], [`time::sleep_until`], [`time::timeout`], [`time::Instant`].
//! - [`task`]: [`task::spawn`], [`task::JoinHandle`], [`task::yield_now`].
//! - [`sync`]: channels ([`sync::mpsc`], [`sync::oneshot`], [`sync::watch`]), [`sync::Mutex`],
//!   [`sync::RwLock`], [`sync::Notify`].
//! - [`rand`]: [`rand::SeededRng`], a hand-written generator whose output is the same in both builds.
//! - [`runtime`]: building and entering a runtime without naming one, and [`runtime::SIMULATED`].
//! - [`test`]: the attribute for async tests that run under whichever runtime the build selected.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod rand;
pub mod runtime;
pub mod sync;
pub mod task;
pub mod time;

/// Marks an `async fn` as a test that runs on this build's runtime.
///
/// Under a normal build this behaves like `#[tokio::test]` (a current-thread runtime with timers); under
/// `--cfg madsim` it behaves like `#[madsim::test]` (a simulated runtime seeded from `MADSIM_TEST_SEED`, or from
/// the clock when that is unset, with the seed printed if the test fails).
///
/// ```
/// #[burrow_env::test]
/// async fn sleeping_moves_the_clock() {
///     let start = burrow_env::time::now();
///     burrow_env::time::sleep(burrow_env::time::Duration::from_millis(5)).await;
///     assert!(start.elapsed() >= burrow_env::time::Duration::from_millis(5));
/// }
/// ```
///
/// The function must be `async` and take no arguments:
///
/// ```compile_fail
/// #[burrow_env::test]
/// fn not_async() {}
/// ```
///
/// The expansion refers to `::burrow_env`, so a crate using the attribute must depend on burrow-env under that
/// name (a renamed dependency would not resolve).
pub use burrow_env_macros::test;

/// Waits on several branches at once and runs the one that completes first.
///
/// This is tokio's `select!`, which is the same macro in both builds. Its default branch order is random, and that
/// randomness is not tied to the simulator's seed (it is kept per thread, and a thread can outlive one simulated
/// run), so code that must replay exactly under madsim should start the macro with `biased;` and list branches in
/// the order it wants them polled.
pub use tokio::select;

/// Runs several futures concurrently on the current task and returns all of their outputs.
pub use tokio::join;

/// Items the `#[test]` attribute expands to. Not part of the API.
#[doc(hidden)]
pub mod __private {
    pub use crate::runtime::run_test;
}
