//! The session model driven by the fuzzer's choices instead of a seed: every action it picks is one the model
//! enables, and after each one every safety property holds, the observable specification's among them.

#![no_main]

use burrow_model::session::{Action, Bounds, Control, Kind, Outcome, SessionModel, World, explain};
use libfuzzer_sys::fuzz_target;
use stateright::{Expectation, Model};

/// The first safety property `world` breaks, if any.
fn broken(model: &SessionModel, world: &World) -> Option<&'static str> {
    model
        .properties()
        .into_iter()
        .filter(|p| p.expectation == Expectation::Always)
        .find(|p| !(p.condition)(model, world))
        .map(|p| p.name)
}

fuzz_target!(|data: &[u8]| {
    let Some((shape, choices)) = data.split_first() else { return };
    let bounds = Bounds {
        inputs: 6,
        waiters: 4,
        crashes: shape & 3,
        store_faults: (shape >> 2) & 3,
        time_jumps: 2,
        attaches: 3,
        operations: 2,
        drain_events: 4,
        max_attempts: 1 + u32::from((shape >> 4) & 1),
        kinds: Kind::ALL.to_vec(),
        controls: Control::ALL.to_vec(),
        control_calls: 4,
        outcomes: Outcome::ALL.to_vec(),
        comms: shape & 0x20 != 0,
        store: shape & 0x40 == 0,
        // A session with a store may keep a single ended input, so its keys are recalled from the store.
        history_max: if shape & 0xc0 == 0x80 { 1 } else { burrow_core::input::TERMINAL_HISTORY_MAX },
    };
    let model = SessionModel::new(bounds);
    let mut world = model.initial();
    let mut enabled: Vec<Action> = Vec::new();
    let mut taken: Vec<Action> = Vec::new();
    for choice in choices.iter().take(200) {
        enabled.clear();
        model.actions(&world, &mut enabled);
        if enabled.is_empty() {
            break;
        }
        let action = enabled[usize::from(*choice) % enabled.len()];
        model.try_advance(&mut world, action);
        taken.push(action);
        if let Some(property) = broken(&model, &world) {
            panic!("{property} fails after {taken:?}: {}", explain(&world).unwrap_or_default());
        }
    }
});
