//! Identifiers and the logical clock value the shell passes in.
//!
//! Every id is a small integer newtype: the core allocates input, run, waiter
//! and receipt numbers from counters it owns, so the same event sequence always
//! yields the same ids (the model checker and the simulator depend on that).

use serde::{Deserialize, Serialize};

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $prefix:literal) => {
        $(#[$doc])*
        #[derive(
            Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
        )]
        pub struct $name(pub u64);

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, concat!($prefix, "{}"), self.0)
            }
        }
    };
}

pub(crate) use id_type;

id_type!(
    /// A session: one agent conversation. Chosen by the embedding service.
    SessionId,
    "s"
);
id_type!(
    /// An input accepted by a session; allocated by the session machine.
    InputId,
    "i"
);
id_type!(
    /// One execution of the executor; allocated by the session machine.
    RunId,
    "r"
);
id_type!(
    /// One completion waiter; allocated by the session machine.
    WaiterId,
    "w"
);
id_type!(
    /// One background operation; allocated by the operations registry.
    OperationId,
    "op"
);
id_type!(
    /// The runtime epoch of a session: stable across `prepare` calls, new after a
    /// restart without recovery. Chosen by the shell (it owns randomness).
    EpochId,
    "e"
);
id_type!(
    /// How many times a session has been (re)bound to a runtime instance within
    /// its epoch. Bumped by attach, recycle and re-registration.
    Generation,
    "g"
);

/// A point on the shell's monotonic clock, in milliseconds since an origin the
/// shell chooses. The core never reads a clock: every `apply` receives `now`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Millis(pub u64);

impl Millis {
    /// `self + delta`, saturating instead of overflowing.
    #[must_use]
    pub fn saturating_add(self, delta_ms: u64) -> Millis {
        Millis(self.0.saturating_add(delta_ms))
    }

    /// Milliseconds from `earlier` to `self`, zero if `earlier` is later.
    #[must_use]
    pub fn since(self, earlier: Millis) -> u64 {
        self.0.saturating_sub(earlier.0)
    }
}

impl std::fmt::Display for Millis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}ms", self.0)
    }
}

/// A session's binding: which epoch and generation of the session a caller's
/// handle was minted for. Calls made with a stale binding are refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Binding {
    /// The session's epoch.
    pub epoch: EpochId,
    /// The generation within the epoch.
    pub generation: Generation,
}

impl std::fmt::Display for Binding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.epoch, self.generation)
    }
}
