//! The burrow-env conformance suite, run on whichever runtime this build selected.
//!
//! `cargo test` runs it on real tokio; the same file built with `--cfg madsim` (see `cargo xtask test-madsim`)
//! runs it in the simulator. Each test only forwards to a body in `burrow_tests::env`, so both runs execute
//! exactly the same code.

use burrow_tests::env;

#[burrow_env::test]
async fn bounded_channel() {
    env::bounded_channel().await;
}

#[burrow_env::test]
async fn unbounded_channel() {
    env::unbounded_channel().await;
}

#[burrow_env::test]
async fn oneshot_channel() {
    env::oneshot_channel().await;
}

#[burrow_env::test]
async fn sleep_advances_now() {
    env::sleep_advances_now().await;
}

#[burrow_env::test]
async fn sleep_until_deadline() {
    env::sleep_until_deadline().await;
}

#[burrow_env::test]
async fn timeout_fires() {
    env::timeout_fires().await;
}

#[burrow_env::test]
async fn timeout_does_not_fire() {
    env::timeout_does_not_fire().await;
}

#[burrow_env::test]
async fn instant_arithmetic() {
    env::instant_arithmetic().await;
}

#[burrow_env::test]
async fn spawn_and_join() {
    env::spawn_and_join().await;
}

#[burrow_env::test]
async fn abort() {
    env::abort().await;
}

#[burrow_env::test]
async fn panic_is_contained() {
    env::panic_is_contained().await;
}

#[burrow_env::test]
async fn yield_now_lets_others_run() {
    env::yield_now_lets_others_run().await;
}

#[burrow_env::test]
async fn notify() {
    env::notify().await;
}

#[burrow_env::test]
async fn watch_channel() {
    env::watch_channel().await;
}

#[burrow_env::test]
async fn mutex() {
    env::mutex().await;
}

#[burrow_env::test]
async fn rwlock() {
    env::rwlock().await;
}

#[burrow_env::test]
async fn runtime_reports_its_seed() {
    env::runtime_reports_its_seed().await;
}

#[burrow_env::test]
async fn scheduling_workload_completes() {
    env::scheduling_workload_completes().await;
}

#[burrow_env::test]
async fn test_bodies_may_return_results() -> Result<(), burrow_env::time::Elapsed> {
    burrow_env::time::timeout(burrow_env::time::Duration::from_secs(1), async {}).await
}

#[test]
fn seam_types_are_thread_safe() {
    env::seam_types_are_thread_safe();
}

/// The builders give a working runtime of either flavour, without the caller naming one.
#[test]
fn runtime_builders_run_futures() {
    use burrow_env::runtime::{Builder, block_on_current_thread};

    assert_eq!(block_on_current_thread(async { burrow_env::task::spawn(async { 2 }).await.unwrap() }), 2);

    let pool = Builder::multi_thread(2).seed(5).build().unwrap();
    let sum = pool.block_on(async {
        let parts: Vec<_> = (0..4u32).map(|n| burrow_env::task::spawn(async move { n })).collect();
        let mut sum = 0;
        for part in parts {
            sum += part.await.unwrap();
        }
        sum
    });
    assert_eq!(sum, 6);
}

/// Under madsim, one seed must replay one interleaving exactly, and the seed must actually matter.
#[cfg(madsim)]
#[test]
fn one_seed_replays_one_event_order() {
    use burrow_env::runtime::{Builder, current_seed};

    fn run(seed: u64) -> Vec<env::Event> {
        let runtime = Builder::current_thread().seed(seed).build().unwrap();
        runtime.block_on(async move {
            assert_eq!(current_seed(), Some(seed));
            env::scheduling_workload(7).await
        })
    }

    let mut orders = Vec::new();
    for seed in 0..8 {
        let first = run(seed);
        let second = run(seed);
        assert_eq!(first, second, "seed {seed} produced two different event logs");
        orders.push(first.iter().map(|e| (e.task, e.step)).collect::<Vec<_>>());
    }
    orders.sort();
    orders.dedup();
    // If every seed gave the same order, the comparison above would prove nothing about the scheduler.
    assert!(orders.len() > 1, "eight seeds produced a single event order; the seed is not reaching the scheduler");
}
