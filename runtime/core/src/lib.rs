//! burrow-core: the pure state machines of the burrow runtime.
//!
//! Nothing here awaits, reads a clock, draws randomness or performs I/O. Each
//! machine is a value changed only through `apply(now, event)`, which returns
//! either effects (data the shell performs) or a typed refusal that left the
//! machine untouched. The model checker, the simulator and the async shell all
//! drive these same types.

#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub)]

pub mod completion;
pub mod drain;
mod idmap;
pub mod ids;
pub mod input;
pub mod invariants;
pub mod lease;
pub mod operations;
pub mod phase;
#[cfg(feature = "planted")]
pub mod planted;
#[cfg(not(feature = "planted"))]
mod planted;
pub mod protocol;
pub mod registration;
pub mod session;
pub mod table;

pub use ids::{Binding, EpochId, Generation, InputId, Millis, OperationId, RunId, SessionId, WaiterId};
