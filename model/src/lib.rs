//! burrow-model: stateright models whose state is burrow-core's own state (SPEC 6; specs/*.md).
//!
//! - [`session`]: the real `SessionMachine` in an environment of clients, a loop, an executor, a store and crashes.
//! - [`operations`]: the real `OperationsRegistry` under watchers, wait_all, eviction and the concurrency limit.
//! - [`registration`]: two clients racing attach and unregister against the real `SessionMachine`.
//! - [`fleet`]: hosts over one shared store, each with the real `LeaseMachine`, the store with the real `LeaseRow`
//!   rules, under pauses, crashes and slow messages.
//! - [`handover`]: hosts over one shared store, each with the real `LeaseMachine` and, once it claims, the real
//!   `SessionMachine` restored from the store's rows, judged by what the store, the executors and the callers saw.
//! - [`profile`]: the `ci` and `deep` bounds.
//! - [`scenario`]: a counterexample written as a scenario the simulator can replay on the real shell.

#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub)]

pub mod cli;
pub mod fleet;
pub mod handover;
pub mod observe;
pub mod operations;
pub mod profile;
pub mod progress;
pub mod registration;
pub mod scenario;
pub mod session;

/// The name of the property every model has: a panic inside the checked code is a violation like any other.
pub const NO_PANIC: &str = "the checked code never panics";

/// Runs one step of the checked code. A panic comes back as its message, so that the model can keep it in a state
/// of its own and the checker reports the path that led to it, instead of the checker's thread dying with it.
///
/// # Errors
/// The panic's message when `step` panicked.
pub fn contained<T>(step: impl FnOnce() -> T) -> Result<T, String> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(step)).map_err(|payload| {
        if let Some(text) = payload.downcast_ref::<&str>() {
            (*text).to_owned()
        } else if let Some(text) = payload.downcast_ref::<String>() {
            text.clone()
        } else {
            "a panic without a message".to_owned()
        }
    })
}
