//! The bounds the checker runs with: `ci` explores every input kind and every control call with at least two
//! inputs, two waiters, one crash and attempts up to the maximum in well under two minutes on two cores; `deep`
//! raises the bounds for an on-demand run.

use burrow_core::input::TERMINAL_HISTORY_MAX;
use burrow_core::operations::OpsConfig;

use crate::operations::OperationsModel;
use crate::registration::RaceModel;
use crate::session::{Bounds, Control, Kind, Outcome, SessionModel};

/// A named set of bounds for every model.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Profile {
    /// The CI bounds.
    Ci,
    /// Larger bounds, run on demand.
    Deep,
}

impl Profile {
    /// Parses `ci` or `deep`.
    #[must_use]
    pub fn parse(name: &str) -> Option<Profile> {
        match name {
            "ci" => Some(Profile::Ci),
            "deep" => Some(Profile::Deep),
            _ => None,
        }
    }

    /// The session model's configurations. Each explores one concern with every other knob small, so that together
    /// they reach every input kind, every control call, every executor outcome, store faults, a crash and the attempt
    /// bound, within the time CI allows; `deep` also runs them all at once.
    #[must_use]
    pub fn session_configs(self) -> Vec<(&'static str, Bounds)> {
        let all_outcomes: Vec<Outcome> = Outcome::ALL.to_vec();
        let quiet = Bounds {
            inputs: 2,
            waiters: 2,
            crashes: 0,
            store_faults: 0,
            moves: 0,
            time_jumps: 0,
            attaches: 1,
            operations: 0,
            drain_events: 0,
            max_attempts: 2,
            kinds: vec![Kind::Prompt],
            controls: Vec::new(),
            control_calls: 0,
            outcomes: vec![Outcome::Ok, Outcome::Fail],
            comms: false,
            store: true,
            history_max: TERMINAL_HISTORY_MAX,
        };
        let kinds = Bounds { kinds: Kind::ALL.to_vec(), inputs: 3, outcomes: all_outcomes.clone(), ..quiet.clone() };
        let control = Bounds {
            kinds: vec![Kind::Prompt, Kind::PromptKeyed],
            controls: Control::lifecycle(),
            control_calls: 3,
            outcomes: all_outcomes.clone(),
            time_jumps: 1,
            history_max: 1,
            ..quiet.clone()
        };
        let durability = Bounds {
            kinds: vec![Kind::Prompt, Kind::PromptKeyed, Kind::PromptEphemeral],
            crashes: 1,
            store_faults: 1,
            time_jumps: 1,
            controls: vec![Control::Recover, Control::Stop],
            control_calls: 1,
            inputs: 3,
            history_max: 1,
            ..quiet.clone()
        };
        let ambient = Bounds {
            kinds: vec![Kind::Prompt],
            inputs: 1,
            operations: 1,
            comms: true,
            drain_events: 2,
            controls: vec![
                Control::KeepAlive,
                Control::Detach,
                Control::Unregister,
                Control::Destroy,
                Control::CommsOff,
                Control::AbortDrain,
                Control::Publish,
            ],
            control_calls: 2,
            time_jumps: 1,
            ..quiet.clone()
        };
        // A crash around the calls that end a session's life: its unregister (commit, grace, release) and destroy, and
        // a retire's drain, each of which a restart must find where the store left it.
        let teardown = Bounds {
            kinds: vec![Kind::Prompt, Kind::PromptEphemeral],
            crashes: 1,
            store_faults: 1,
            controls: vec![Control::Unregister, Control::Destroy, Control::Retire],
            control_calls: 3,
            time_jumps: 1,
            ..quiet.clone()
        };
        // A Derived input through a crash and a recover, beside a durable one (specs/input.md#derived).
        let derived = Bounds {
            kinds: vec![Kind::Prompt, Kind::EventDerived],
            crashes: 1,
            store_faults: 1,
            controls: vec![Control::Recover],
            control_calls: 1,
            inputs: 2,
            ..quiet.clone()
        };
        // An ephemeral runtime's session: every kind and the controls whose paths differ without a store.
        let no_store = Bounds {
            store: false,
            kinds: vec![Kind::Prompt, Kind::PromptKeyed, Kind::PromptSteer, Kind::PromptEphemeral, Kind::Operation],
            inputs: 3,
            outcomes: all_outcomes.clone(),
            controls: vec![Control::Recover, Control::Stop, Control::Interrupt, Control::Reset, Control::Retire],
            control_calls: 1,
            time_jumps: 1,
            ..quiet.clone()
        };
        // A hand-over (specs/session.md#ownership-moved): the store fences this process's writes and the lease loop
        // tells the session, in either order, around a keyed and a plain input, a failing run, a stop and a recover;
        // a crash stands for the new owner's restore.
        let moves = Bounds {
            kinds: vec![Kind::Prompt, Kind::PromptKeyed],
            moves: 1,
            crashes: 1,
            controls: vec![Control::Stop, Control::Recover],
            control_calls: 1,
            inputs: 2,
            ..quiet.clone()
        };
        match self {
            Profile::Ci => vec![
                ("moves", moves),
                ("kinds", kinds),
                ("control", control),
                ("durability", durability),
                ("ambient", ambient),
                ("no-store", no_store),
                ("teardown", teardown),
                ("derived", derived),
            ],
            Profile::Deep => vec![
                ("kinds", Bounds { inputs: 4, waiters: 3, ..kinds }),
                ("control", Bounds { control_calls: 3, inputs: 3, waiters: 3, ..control }),
                ("durability", Bounds { crashes: 2, store_faults: 2, max_attempts: 3, inputs: 3, ..durability }),
                ("ambient", Bounds { drain_events: 3, operations: 2, ..ambient }),
                ("no-store", Bounds { inputs: 4, waiters: 3, control_calls: 2, ..no_store }),
                ("teardown", Bounds { inputs: 3, crashes: 2, ..teardown }),
                ("derived", Bounds { inputs: 3, crashes: 2, ..derived }),
                ("moves", Bounds { inputs: 3, store_faults: 1, time_jumps: 1, ..moves }),
                (
                    "combined",
                    Bounds {
                        kinds: Kind::ALL.to_vec(),
                        controls: Control::ALL.to_vec(),
                        control_calls: 1,
                        outcomes: vec![Outcome::Ok, Outcome::Fail],
                        crashes: 1,
                        store_faults: 1,
                        time_jumps: 1,
                        ..quiet
                    },
                ),
            ],
        }
    }

    /// The session models of this profile, by configuration name.
    #[must_use]
    pub fn sessions(self) -> Vec<(&'static str, SessionModel)> {
        self.session_configs().into_iter().map(|(name, bounds)| (name, SessionModel::new(bounds))).collect()
    }

    /// The operations model.
    #[must_use]
    pub fn operations(self) -> OperationsModel {
        match self {
            Profile::Ci => OperationsModel {
                operations: 2,
                watchers: 1,
                config: OpsConfig { max_concurrent: 1, max_completed: 1, feed_max: 2 },
            },
            Profile::Deep => OperationsModel {
                operations: 4,
                watchers: 3,
                config: OpsConfig { max_concurrent: 3, max_completed: 2, feed_max: 4 },
            },
        }
    }

    /// The fleet: hosts, inputs, the clock's ticks, claims per host and faults, with a lease of 4 ticks renewed
    /// every tick and given up one tick early; each host's clock may fall one tick behind the store's (a drift of a
    /// quarter of the lease, which the one-tick margin covers).
    #[must_use]
    pub fn fleet(self) -> crate::fleet::FleetModel {
        let config = burrow_core::lease::LeaseConfig { length_ms: 4, renew_every_ms: 1, margin_ms: 1 };
        let (hosts, inputs, ticks, claims, faults) = match self {
            Profile::Ci => (2, 1, 5, 1, 1),
            Profile::Deep => (2, 2, 6, 2, 1),
        };
        crate::fleet::FleetModel { hosts, inputs, ticks, claims, faults, skew: 1, config, defect: None }
    }

    /// The hand-over: two hosts, each with a real session machine once it claims, a lease of 3 ticks renewed every
    /// tick and given up one tick early, one prompt, and one pause or crash; deep has one more tick (two prompts, or
    /// two claims per host, exhaust 24 GiB).
    #[must_use]
    pub fn handover(self) -> crate::handover::HandoverModel {
        let config = burrow_core::lease::LeaseConfig { length_ms: 3, renew_every_ms: 1, margin_ms: 1 };
        let (inputs, ticks, claims, faults) = match self {
            Profile::Ci => (1, 4, 1, 1),
            Profile::Deep => (1, 5, 1, 1),
        };
        crate::handover::HandoverModel::new(2, inputs, ticks, claims, faults, config)
    }

    /// The attach/unregister race.
    #[must_use]
    pub fn race(self) -> RaceModel {
        match self {
            Profile::Ci => RaceModel { attaches: 2, unregisters: 1, prepares: 1 },
            Profile::Deep => RaceModel { attaches: 3, unregisters: 2, prepares: 2 },
        }
    }
}
