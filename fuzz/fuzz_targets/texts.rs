//! Text that reaches burrow from outside: scenario and counterexample files, input specs and payloads. Parsing or
//! validating never panics; what is accepted is well formed.

#![no_main]

use burrow_core::input::{InputKind, InputSpec};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((which, rest)) = data.split_first() else { return };
    let text = String::from_utf8_lossy(rest);
    match which % 4 {
        0 => {
            if let Ok(steps) = burrow_model::scenario::parse(&text) {
                let _ = burrow_sim::core::scenario_actions(&text);
                assert!(steps.iter().all(|s| !s.is_empty()), "a parsed step is never empty");
            }
        }
        1 => {
            if let Ok(scenario) = burrow_sim::scenario::Scenario::from_json(&text) {
                let again = serde_json_roundtrip(&scenario);
                assert_eq!(again.as_ref(), Some(&scenario), "an accepted scenario round-trips");
            }
        }
        2 => {
            let (key, intent) = text.split_once('\u{0}').unwrap_or((&text, ""));
            let mut spec = InputSpec::new(InputKind::PeerRequest { intent: intent.to_owned() });
            spec.idempotency_key = Some(key.to_owned());
            if spec.validate().is_ok() {
                assert!(!key.is_empty() && !intent.is_empty(), "validation let an empty key or intent through");
            }
        }
        _ => {
            let spec = InputSpec::new(InputKind::Prompt).supersession_key(text.as_ref());
            let _ = spec.validate();
        }
    }
});

fn serde_json_roundtrip(scenario: &burrow_sim::scenario::Scenario) -> Option<burrow_sim::scenario::Scenario> {
    let text = serde_json::to_string(scenario).ok()?;
    burrow_sim::scenario::Scenario::from_json(&text).ok()
}
