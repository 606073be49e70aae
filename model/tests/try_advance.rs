//! `SessionModel::try_advance` (the simulator's step without a clone) agrees with `next_state` (the checker's step)
//! on every action, enabled or not, from every state of many random walks under generous bounds: an applied action
//! gives the same world, a refused one leaves the world exactly as it was.

use burrow_model::session::{Action, Bounds, Control, Kind, Outcome, SessionModel, World};
use stateright::Model;

fn generous(comms: bool, max_attempts: u32, store: bool) -> Bounds {
    Bounds {
        inputs: 12,
        waiters: 8,
        crashes: 2,
        store_faults: 3,
        moves: 1,
        time_jumps: 3,
        attaches: 3,
        operations: 3,
        drain_events: 6,
        max_attempts,
        kinds: Kind::ALL.to_vec(),
        controls: Control::ALL.to_vec(),
        control_calls: 6,
        outcomes: Outcome::ALL.to_vec(),
        comms,
        store,
        history_max: if store { 1 } else { burrow_core::input::TERMINAL_HISTORY_MAX },
    }
}

/// A small generator for the walk, so the test needs nothing but the model.
struct Walk(u64);

impl Walk {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

#[test]
fn try_advance_matches_next_state_for_every_action_on_random_walks() {
    let all = Action::all();
    let (mut applied, mut refused) = (0u32, 0u32);
    for walk in 0..120u64 {
        let model = SessionModel::new(generous(walk % 2 == 0, 1 + (walk % 3) as u32, walk % 5 != 4));
        let mut rng = Walk(0x9E37_79B9_7F4A_7C15 ^ (walk + 1));
        let mut world: World = model.initial();
        for _ in 0..60 {
            for action in &all {
                let mut stepped = world.clone();
                let ok = model.try_advance(&mut stepped, *action);
                match model.next_state(&world, *action) {
                    Some(next) => {
                        assert!(!next.env.history.refusal_changed_state, "{action:?} refused and moved the machine");
                        assert!(ok, "{action:?}: next_state applied it, try_advance refused it");
                        assert_eq!(stepped, next, "{action:?} applied differently");
                        applied += 1;
                    }
                    None => {
                        assert!(!ok, "{action:?}: next_state refused it, try_advance applied it");
                        assert_eq!(stepped, world, "{action:?} was refused but changed the world");
                        refused += 1;
                    }
                }
            }
            let mut enabled = Vec::new();
            model.actions(&world, &mut enabled);
            if enabled.is_empty() {
                break;
            }
            let action = enabled[rng.below(enabled.len())];
            model.try_advance(&mut world, action);
        }
    }
    // Both branches were exercised many times.
    assert!(applied > 10_000 && refused > 10_000, "applied {applied}, refused {refused}");
}
