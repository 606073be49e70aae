//! What the model tests of the fleet and the hand-over share: a whole check judged property by property, and the
//! first counterexample of one property.

use std::collections::BTreeSet;
use std::fmt::Debug;
use std::hash::Hash;

use stateright::{Checker, Expectation, HasDiscoveries, Model};

/// Checks `model` whole: every `always` property holds and every `sometimes` one is witnessed. Returns the number of
/// unique states, for the test to pin.
pub(crate) fn holds_and_witnesses<M>(model: M) -> usize
where
    M: Model + Send + Sync + 'static,
    M::State: Clone + Debug + Hash + Eq + Send + Sync,
    M::Action: Clone + Debug + PartialEq + Send + Sync,
{
    let properties = model.properties();
    let checker = model.checker().threads(2).spawn_bfs().join();
    for property in &properties {
        let found = checker.discovery(property.name).is_some();
        match property.expectation {
            Expectation::Always => assert!(!found, "{} is violated", property.name),
            Expectation::Sometimes => assert!(found, "{} is never witnessed", property.name),
            Expectation::Eventually => {}
        }
    }
    checker.unique_state_count()
}

/// Checks `model` until `property` is discovered; returns the counterexample's actions, or `None` if it never is.
pub(crate) fn first_trace<M>(model: M, property: &'static str) -> Option<Vec<String>>
where
    M: Model + Send + Sync + 'static,
    M::State: Clone + Debug + Hash + Eq + Send + Sync,
    M::Action: Clone + Debug + PartialEq + Send + Sync,
{
    let checker =
        model.checker().threads(2).finish_when(HasDiscoveries::AnyOf(BTreeSet::from([property]))).spawn_bfs().join();
    let path = checker.discovery(property)?;
    Some(path.into_actions().iter().map(|a| format!("{a:?}")).collect())
}
