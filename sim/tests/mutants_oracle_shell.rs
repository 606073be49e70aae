//! The oracle a mutant of the shell (runtime/burrow/src) must get past (`cargo xtask mutants shell`), besides the
//! shell's own tests: a tokio-mode sweep, the real runtime on real tokio judged by the observable specification and
//! the caller-side checks. Built only with the `oracle-shell` feature.

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use burrow_sim::Verdict;
use burrow_sim::full::run_seed;

/// Seeds of the tokio sweep: a race that shows in 2% of seeds is caught nine times in ten.
const TOKIO_SEEDS: u64 = 120;

#[test]
fn a_tokio_mode_sweep_is_clean() {
    for seed in 0..TOKIO_SEEDS {
        let run = run_seed(seed, None);
        assert_eq!(run.verdict, Verdict::Clean, "seed {seed}; reproduce: {}", run.repro());
    }
}
