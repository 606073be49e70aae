//! burrow-model: stateright models whose state is burrow-core's own state (SPEC 6; specs/*.md).
//!
//! - [`session`]: the real `SessionMachine` in an environment of clients, a loop, an executor, a store and crashes.
//! - [`operations`]: the real `OperationsRegistry` under watchers, wait_all, eviction and the concurrency limit.
//! - [`registration`]: two clients racing attach and unregister against the real `SessionMachine`.
//! - [`profile`]: the `ci` and `deep` bounds.
//! - [`scenario`]: a counterexample written as a scenario the simulator can replay on the real shell.

#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub)]

pub mod observe;
pub mod operations;
pub mod profile;
pub mod registration;
pub mod scenario;
pub mod session;
