//! The hand-over model (specs/lease.md, specs/session.md#ownership-moved): two hosts, each with burrow-core's real
//! lease and session machines, over one fencing store. The ci bounds hold every property and find every witness with
//! a pinned state count, and each planted mistake is reported by the property that judges what the outside saw.

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod common;

use burrow_model::handover::HandoverDefect;
use burrow_model::profile::Profile;

#[test]
fn the_handover_holds_and_witnesses_everything() {
    assert_eq!(common::holds_and_witnesses(Profile::Ci.handover()), 858_112);
}

/// Checks the ci hand-over with `defect` until `property` is discovered; returns the counterexample's actions.
fn caught(defect: HandoverDefect, property: &'static str) -> Vec<String> {
    common::first_trace(Profile::Ci.handover().with_defect(defect), property)
        .unwrap_or_else(|| panic!("{defect:?} was not reported by {property:?}"))
}

/// A host that hands a run to its executor without asking its lease: fencing keeps the store's rows right, but the
/// executor runs an input while another host may run it too. The store's lease row says the host did not own it.
#[test]
fn a_host_that_ignores_its_lease_is_caught() {
    let trace = caught(
        HandoverDefect::LeaseIgnored,
        "a run reaches an executor only while its host's lease is live in the store",
    );
    assert!(trace.iter().any(|a| a == "Tick"), "the lease ran out: {trace:?}");
}

/// A store that lands a paused owner's late commit: the input the new owner committed is in two receipts.
#[test]
fn a_store_that_does_not_check_the_epoch_is_caught() {
    let trace = caught(HandoverDefect::StoreIgnoresEpoch, "no input is in two receipts");
    assert!(trace.iter().any(|a| a == "Claim(1)"), "the session moved: {trace:?}");
}

/// The shell as it was: the loop asked its lease before a run, `accept_and_run` did not, so a host past its lease's
/// end that no other host had claimed yet ran the caller's closure, and the next owner could run the same input.
#[test]
fn an_inline_run_that_does_not_ask_the_lease_is_caught() {
    let trace = caught(
        HandoverDefect::InlineRunUnchecked,
        "a run reaches an executor only while its host's lease is live in the store",
    );
    assert!(trace.iter().any(|a| a.contains("AcceptAndRun")), "the run was inline: {trace:?}");
}
