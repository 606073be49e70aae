//! Teeth of the full mode: each of the shell's planted mistakes (`burrow::planted`, a test-only feature) is caught by
//! a bounded sweep of full-mode seeds, through the rule the mistake breaks. Only the madsim build runs them: the
//! seeds replay exactly there.

#![cfg(madsim)]

use burrow::RuntimeConfig;
use burrow::planted::ShellDefect;
use burrow_sim::Verdict;
use burrow_sim::full::run_full_configured;
use burrow_sim::scenario::Scenario;

/// Seeds tried per mistake before the sweep gives up.
const BOUND: u64 = 300;

/// The first seed below [`BOUND`] whose run with `configure` is not clean, with what it broke.
fn first_caught(configure: fn(&mut RuntimeConfig)) -> Option<(u64, String)> {
    (0..BOUND).find_map(|seed| {
        let run = run_full_configured(&Scenario::generate(seed), None, configure);
        match run.verdict {
            Verdict::Clean => None,
            Verdict::Safety { property, .. } => Some((seed, property)),
            Verdict::Liveness { what } => Some((seed, format!("liveness: {what}"))),
        }
    })
}

macro_rules! teeth {
    ($($name:ident: $defect:ident => $rule:literal;)*) => {
        $(
            #[test]
            fn $name() {
                let (seed, what) = first_caught(|c| c.planted = Some(ShellDefect::$defect))
                    .unwrap_or_else(|| panic!("{:?} passed {BOUND} seeds", ShellDefect::$defect));
                eprintln!("{:?}: seed {seed}: {}", ShellDefect::$defect, what.chars().take(160).collect::<String>());
                assert!(what.contains($rule), "{:?} at seed {seed} was caught as {what}", ShellDefect::$defect);
            }
        )*

        #[test]
        fn every_planted_mistake_has_a_teeth_test() {
            // A fleet host's mistake is caught by the multi-host mode (tests/sim_fleet.rs).
            let tested = [$(ShellDefect::$defect),*, ShellDefect::LeaseIgnored];
            for defect in ShellDefect::ALL {
                assert!(tested.contains(&defect), "{defect:?} has no teeth test");
            }
        }
    };
}

teeth! {
    a_lost_wake_strands_the_backlog: LostWake => "no backlog stranded";
    // An acknowledged input lost, or an acknowledged lifecycle row the store does not hold: whichever the seed
    // reaches first.
    an_ignored_write_error_loses_an_acknowledged_input: WriteErrorIgnored => "acknowledged";
    a_joined_caller_never_told_is_seen_by_the_caller: FirstWaiterOnly => "no outcome";
    a_failure_recorded_as_a_result_differs_from_what_the_executor_returned: FailureAsNoResult => "the executor returned";
    a_run_without_its_deadline_holds_the_session: NoDeadlineTimer => "a run is still held";
    // Caught by the lifecycle row after a crash: its run mark or its phase, whichever the seed reaches first.
    an_inputless_lifecycle_commit_never_written_shows_in_the_stored_row: InputlessLifecycleSkipped => "the store";
    a_closing_phase_never_written_comes_back_open_after_a_crash: ClosingPhaseSkipped => "the store keeps phase";
    an_exclusive_acknowledgement_is_not_the_one_the_consumer_asked: AcknowledgeExclusive => "the registry took";
    // A live loop that never stops, or a caller a drain keeps waiting: whichever the seed reaches first.
    a_drop_that_forgets_its_sessions_leaves_them_running: DropForgetsSessions => "the runtime was dropped";
    a_notice_dropped_while_one_is_unread_is_a_gap_the_subscriber_sees: NoticeDroppedWhenBusy => "without being told";
}

/// The bound on an executor's stop and cleanup is what keeps a hanging hook from holding its session: with a bound
/// of a day (in effect none) the seeds whose executor's stop or cleanup never returns leave a caller waiting.
#[test]
fn an_unbounded_executor_hook_holds_its_session() {
    let (seed, what) = first_caught(|c| c.executor_hook_bound = std::time::Duration::from_secs(86_400))
        .unwrap_or_else(|| panic!("an unbounded executor hook passed {BOUND} seeds"));
    eprintln!("unbounded hook: seed {seed}: {}", what.chars().take(160).collect::<String>());
    // A caller left waiting, or a dropped runtime's loop that never lets its executor go: whichever comes first.
    let caught = what.contains("its caller never got an outcome") || what.contains("never let its executor go");
    assert!(caught, "an unbounded hook at seed {seed} was caught as {what}");
}
