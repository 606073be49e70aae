//! The fleet model (specs/lease.md): the ci bounds hold every property and find every witness with a pinned state
//! count, and each planted mistake is reported by the property that exists for it.

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod common;

use burrow_model::fleet::{FleetDefect, FleetModel};
use burrow_model::profile::Profile;

#[test]
fn the_fleet_holds_and_witnesses_everything() {
    assert_eq!(common::holds_and_witnesses(Profile::Ci.fleet()), 1_950_360);
}

/// Checks the ci fleet with `defect` until `property` is discovered; returns the counterexample's actions.
fn caught(defect: FleetDefect, property: &'static str) -> Vec<String> {
    let model = FleetModel { defect: Some(defect), ..Profile::Ci.fleet() };
    common::first_trace(model, property).unwrap_or_else(|| panic!("{defect:?} was not reported by {property:?}"))
}

#[test]
fn a_store_that_does_not_check_the_epoch_is_caught() {
    let trace = caught(FleetDefect::StoreIgnoresEpoch, "no write from a stale epoch lands");
    // The old owner's commit was slow on its way: it lands after the other host's claim did. Either host may be the
    // old owner: the checker's two threads can find either counterexample first.
    let (last, before) = trace.split_last().expect("a counterexample has steps");
    let other = match last.as_str() {
        "Land(0)" => "Land(1)",
        "Land(1)" => "Land(0)",
        _ => panic!("the stale commit landing is the last step: {trace:?}"),
    };
    assert!(before.iter().any(|a| a == other), "the other host's claim landed first: {trace:?}");
}

#[test]
fn a_host_that_calls_a_fenced_commit_done_is_caught() {
    let trace = caught(FleetDefect::FencedCommitToldDone, "a caller told done has its input committed");
    assert!(trace.iter().filter(|a| a.starts_with("Claim")).count() >= 2, "the session moved: {trace:?}");
}

/// A lease whose margin is smaller than the drift of a host's clock: the slow host still believes it drives when the
/// other host's claim has landed and it drives too.
#[test]
fn a_clock_drifting_past_the_margin_lets_two_hosts_drive_at_once() {
    let property = "two hosts never both drive at once while the clocks drift within the margin";
    let model = FleetModel { skew: 2, ..Profile::Ci.fleet() };
    let trace = common::first_trace(model, property).expect("a drift past the margin is reported");
    assert!(trace.iter().filter(|a| a.starts_with("TickSlow")).count() >= 2, "the clock fell behind: {trace:?}");
}
