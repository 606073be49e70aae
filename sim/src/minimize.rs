//! Shrinking a failing run to a shorter one that still fails.
//!
//! Both modes use the same greedy delta debugging: try to drop a chunk of steps (halves, then quarters, down to
//! single steps), keep any removal after which the run still fails, and repeat until no single step can go. The full
//! mode then also tries fewer sessions, no store faults and no gaps. "Still fails" means any violation, not the same
//! one: a shorter scenario that breaks a different property is as useful a lead, and its trace says which.

use burrow_model::session::{Action, Defect};

use crate::core::{Shape, replay_core, run_core_with_actions};
use crate::full::{FullDefect, run_full};
use crate::scenario::{Scenario, Step};
use crate::trace::Run;

/// Removes chunks of `items` while `fails` holds, from large chunks to single items.
fn shrink<T: Clone>(mut items: Vec<T>, mut fails: impl FnMut(&[T]) -> bool) -> Vec<T> {
    let mut chunk = items.len().div_ceil(2).max(1);
    loop {
        let mut removed = false;
        let mut start = 0;
        while start < items.len() {
            let end = (start + chunk).min(items.len());
            let mut candidate = items.clone();
            candidate.drain(start..end);
            if fails(&candidate) {
                items = candidate;
                removed = true;
            } else {
                start = end;
            }
        }
        if chunk == 1 && !removed {
            return items;
        }
        if !removed {
            chunk = (chunk / 2).max(1);
        }
    }
}

/// Shrinks the actions of a failing core-mode seed. `None` if the seed does not fail.
#[must_use]
pub fn minimize_core(seed: u64, defect: Option<Defect>) -> Option<(Vec<Action>, Run)> {
    minimize_core_watched(seed, defect, &mut |_| {})
}

/// [`minimize_core`], telling `watch` the length of each candidate it runs (for a progress display).
pub fn minimize_core_watched(
    seed: u64,
    defect: Option<Defect>,
    watch: &mut dyn FnMut(usize),
) -> Option<(Vec<Action>, Run)> {
    let (run, actions) = run_core_with_actions(seed, defect);
    if run.verdict.is_clean() {
        return None;
    }
    let bounds = Shape::of_seed(seed).bounds;
    let small = shrink(actions, |candidate| {
        watch(candidate.len());
        !replay_core(seed, bounds.clone(), defect, candidate).verdict.is_clean()
    });
    let run = replay_core(seed, bounds, defect, &small);
    Some((small, run))
}

/// Shrinks a failing full- or tokio-mode scenario. `None` if it does not fail.
#[must_use]
pub fn minimize_full(scenario: &Scenario, defect: Option<FullDefect>) -> Option<(Scenario, Run)> {
    minimize_full_watched(scenario, defect, &mut |_| {})
}

/// [`minimize_full`], telling `watch` the step count of each candidate it runs (for a progress display).
pub fn minimize_full_watched(
    scenario: &Scenario,
    defect: Option<FullDefect>,
    watch: &mut dyn FnMut(usize),
) -> Option<(Scenario, Run)> {
    let watch = std::cell::RefCell::new(watch);
    let fails = |s: &Scenario| {
        (watch.borrow_mut())(s.steps.len());
        !run_full(s, defect).verdict.is_clean()
    };
    if !fails(scenario) {
        return None;
    }
    let mut best = scenario.clone();
    best.steps = shrink(best.steps.clone(), |steps| fails(&Scenario { steps: steps.to_vec(), ..best.clone() }));
    // Fewer sessions: drop the steps of the last one.
    while best.sessions > 1 {
        let last = best.sessions;
        let steps = best.steps.iter().filter(|t| session_of(&t.step) != Some(last)).cloned().collect();
        let candidate = Scenario { sessions: last - 1, steps, ..best.clone() };
        if !fails(&candidate) {
            break;
        }
        best = candidate;
    }
    for candidate in [
        Scenario { write_failure_permille: 0, ..best.clone() },
        Scenario { store_latency: 0, ..best.clone() },
        Scenario { aim: None, ..best.clone() },
        Scenario { teardown: crate::scenario::Teardown::Prompt, ..best.clone() },
        Scenario {
            steps: best.steps.iter().map(|t| crate::scenario::Timed { gap: 0, ..t.clone() }).collect(),
            ..best.clone()
        },
    ] {
        if fails(&candidate) {
            best = candidate;
        }
    }
    let run = run_full(&best, defect);
    Some((best, run))
}

fn session_of(step: &Step) -> Option<u8> {
    match step {
        Step::Accept { session, .. }
        | Step::AcceptAndRun { session, .. }
        | Step::Control { session, .. }
        | Step::Op { session, .. }
        | Step::Peer { session, .. } => Some(*session),
        Step::Crash | Step::Shutdown | Step::StoreFaults { .. } => None,
    }
}

#[cfg(test)]
mod tests {
    use super::shrink;

    #[test]
    fn shrink_finds_the_two_items_that_matter() {
        let items: Vec<u32> = (0..40).collect();
        let small = shrink(items, |c| c.contains(&7) && c.contains(&31));
        assert_eq!(small, vec![7, 31]);
    }
}
