//! The observable specification of a burrow session (SPEC 2, 3, 5, 6), written from SPEC and apart from
//! burrow-core: it never calls the machines it judges.
//!
//! Its vocabulary ([`Observation`]) is what the outside of a session sees: calls and their answers, the runs the
//! executor is handed and what it reported, the store's writes, the outcomes waiters receive, crashes and listings.
//! [`SessionSpec`] holds what was seen so far and says whether the next observation is allowed. Drivers (the model
//! checker, the simulator's core and full modes) feed it what their callers, executor and store saw and fail on the
//! first [`Deviation`].
//!
//! spec: specs/observable.md

#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub)]

pub mod choice;
pub mod observation;
pub mod operations;
pub mod session;

pub use choice::SessionSpecs;
pub use observation::{
    AcceptAnswer, Answer, Call, Class, Classes, InputRef, Kind, Observation, Refused, Report, RunRef, Submission,
    WaiterRef, Write,
};
pub use operations::{End, FeedItem, OpAnswer, OpCall, OpKind, OpObservation, OpRef, OpRefused, OpsBounds, OpsSpec};
pub use session::{Bounds, Deviation, SessionSpec, SpecConfig, Standing};
