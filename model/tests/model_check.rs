//! The ci profile of every model: every safety property holds, every witness is found, and the unique state
//! counts are pinned so that an accidental change to a machine's state space shows up here.

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::collections::BTreeMap;
use std::hash::Hash;

use burrow_model::profile::Profile;
use stateright::{Checker, Expectation, Model};

/// Runs `model` to completion; returns its unique state count and the discovered property names.
fn explore<M>(model: M) -> (usize, BTreeMap<&'static str, Expectation>)
where
    M: Model + Send + Sync + 'static,
    M::State: Clone + std::fmt::Debug + Hash + Eq + Send + Sync,
    M::Action: Clone + std::fmt::Debug + PartialEq + Send + Sync,
{
    let expectations: BTreeMap<&'static str, Expectation> =
        model.properties().iter().map(|p| (p.name, p.expectation.clone())).collect();
    let checker = model.checker().threads(2).spawn_bfs().join();
    let found = checker.discoveries().into_keys().map(|name| (name, expectations[name].clone())).collect();
    (checker.unique_state_count(), found)
}

fn failures(found: &BTreeMap<&'static str, Expectation>) -> Vec<&'static str> {
    found.iter().filter(|(_, e)| **e != Expectation::Sometimes).map(|(n, _)| *n).collect()
}

#[test]
fn session_configurations_hold_and_together_witness_everything() {
    let mut counts = Vec::new();
    let mut witnessed = std::collections::BTreeSet::new();
    let mut wanted = std::collections::BTreeSet::new();
    for (name, model) in Profile::Ci.sessions() {
        for p in model.properties() {
            if p.expectation == Expectation::Sometimes {
                wanted.insert(p.name);
            }
        }
        let (unique, found) = explore(model);
        assert!(failures(&found).is_empty(), "session/{name}: {:?}", failures(&found));
        witnessed.extend(found.keys().copied());
        counts.push((name, unique));
    }
    let missing: Vec<_> = wanted.difference(&witnessed).collect();
    assert!(missing.is_empty(), "never witnessed: {missing:?}");
    // Pinned: a change here means the reachable state space changed. If the change is intended, update the
    // numbers and say why in the commit.
    assert_eq!(
        counts,
        vec![
            ("moves", 212_016),
            ("kinds", 560_252),
            ("control", 1_294_886),
            ("durability", 6_618_869),
            ("ambient", 313_626),
            ("no-store", 943_765),
            ("teardown", 1_415_421),
            ("derived", 67_867)
        ]
    );
}

#[test]
fn the_operations_model_holds_and_witnesses_everything() {
    let model = Profile::Ci.operations();
    let sometimes = model.properties().iter().filter(|p| p.expectation == Expectation::Sometimes).count();
    let (unique, found) = explore(model);
    assert!(failures(&found).is_empty(), "{:?}", failures(&found));
    assert_eq!(found.len(), sometimes, "every witness found: {found:?}");
    assert_eq!(unique, 450_819);
}

#[test]
fn the_attach_unregister_race_holds_and_witnesses_everything() {
    let model = Profile::Ci.race();
    let sometimes = model.properties().iter().filter(|p| p.expectation == Expectation::Sometimes).count();
    let (unique, found) = explore(model);
    assert!(failures(&found).is_empty(), "{:?}", failures(&found));
    assert_eq!(found.len(), sometimes, "every witness found: {found:?}");
    assert_eq!(unique, 41123);
}

#[test]
fn a_scenario_round_trips() {
    use burrow_model::scenario;
    use burrow_model::session::{Action, Control, Kind};
    let actions = [Action::Attach, Action::Accept(Kind::PromptKeyed), Action::Control(Control::Reset)];
    let text = scenario::render("session/control", "waiter resolved at most once", &actions);
    let steps = scenario::parse(&text).unwrap();
    assert_eq!(steps, vec!["Attach", "Accept(PromptKeyed)", "Control(Reset)"]);
    assert!(scenario::parse("garbage").is_err());
    // Found by the texts fuzz target: a step line with no step is an error, not an empty step.
    let header = text.lines().next().unwrap();
    assert!(scenario::parse(&format!("{header}\nstep \n")).is_err());
}
