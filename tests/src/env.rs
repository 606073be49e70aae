//! The conformance suite for burrow-env: channels, timers, tasks, locks and notification.
//!
//! Every body here must pass on both runtimes. They assume what `#[burrow_env::test]` provides in both builds:
//! all tasks run on one thread, so a task that has been handed a message has already made every registration it
//! made in the same poll (the lock-fairness and notification checks lean on that).
//!
//! Waits that should finish go through [`within`], so a broken runtime fails with a message instead of hanging a
//! real-tokio run forever (madsim would notice the deadlock by itself).

use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use burrow_env::rand::SeededRng;
use burrow_env::runtime::{self, SIMULATED};
use burrow_env::sync::{Mutex, Notify, RwLock, mpsc, oneshot, watch};
use burrow_env::task::{JoinError, JoinHandle, spawn, yield_now};
use burrow_env::time::{Duration, Elapsed, Instant, now, sleep, sleep_until, timeout};

/// How long a wait that must succeed may take before the suite calls it a hang.
const PATIENCE: Duration = Duration::from_secs(10);

/// How long the suite watches for something that must not happen, such as a blocked send completing.
const BRIEFLY: Duration = Duration::from_millis(20);

/// Awaits `future`, failing the test if it takes longer than ten seconds (of virtual time, under madsim).
pub async fn within<F: Future>(future: F) -> F::Output {
    timeout(PATIENCE, future).await.expect("a wait that should finish did not finish in time")
}

/// Yields until `done` returns true, failing if it is still false after many rounds.
///
/// Used where a condition depends on other tasks getting scheduled, which under madsim happens in a seeded random
/// order, so no fixed number of yields is enough on its own.
async fn yield_until(mut done: impl FnMut() -> bool) {
    for _ in 0..10_000 {
        if done() {
            return;
        }
        yield_now().await;
    }
    panic!("condition still false after 10000 yields");
}

fn millis(n: u64) -> Duration {
    Duration::from_millis(n)
}

// ---- channels ----------------------------------------------------------------------------------------------

/// A bounded channel keeps order, applies back-pressure when full, and reports closed ends.
pub async fn bounded_channel() {
    let (tx, mut rx) = mpsc::channel::<u32>(2);
    tx.try_send(1).unwrap();
    tx.try_send(2).unwrap();
    assert_eq!(tx.capacity(), 0);
    assert!(matches!(tx.try_send(3), Err(mpsc::error::TrySendError::Full(3))));
    // A send into a full channel waits; dropping that wait must not lose or corrupt anything.
    assert!(timeout(BRIEFLY, tx.send(3)).await.is_err());

    let producer = spawn({
        let tx = tx.clone();
        async move {
            tx.send(3).await.unwrap();
            tx.send(4).await.unwrap();
        }
    });
    for expected in 1..=4 {
        assert_eq!(within(rx.recv()).await, Some(expected));
    }
    within(producer).await.unwrap();

    drop(tx);
    assert_eq!(within(rx.recv()).await, None, "a channel with no senders left ends");

    let (tx, rx) = mpsc::channel::<u32>(1);
    drop(rx);
    assert_eq!(tx.send(9).await.unwrap_err().0, 9, "a send to a dropped receiver gives the value back");
}

/// An unbounded channel never blocks a sender and delivers everything in order from several senders.
pub async fn unbounded_channel() {
    let (tx, mut rx) = mpsc::unbounded_channel::<(u32, u32)>();
    let producers: Vec<JoinHandle<()>> = (0..3)
        .map(|producer| {
            let tx = tx.clone();
            spawn(async move {
                for n in 0..50 {
                    tx.send((producer, n)).unwrap();
                    if n % 10 == 0 {
                        yield_now().await;
                    }
                }
            })
        })
        .collect();
    drop(tx);
    let mut next = [0u32; 3];
    while let Some((producer, n)) = within(rx.recv()).await {
        assert_eq!(n, next[producer as usize], "messages from one sender arrive in the order sent");
        next[producer as usize] += 1;
    }
    assert_eq!(next, [50, 50, 50]);
    for producer in producers {
        within(producer).await.unwrap();
    }

    let (tx, rx) = mpsc::unbounded_channel::<&str>();
    drop(rx);
    assert_eq!(tx.send("lost").unwrap_err().0, "lost");
}

/// A oneshot delivers one value across tasks and tells each side when the other has gone.
pub async fn oneshot_channel() {
    let (tx, rx) = oneshot::channel::<String>();
    let sender = spawn(async move {
        sleep(millis(5)).await;
        tx.send("answer".to_owned()).unwrap();
    });
    assert_eq!(within(rx).await.unwrap(), "answer");
    within(sender).await.unwrap();

    let (tx, rx) = oneshot::channel::<u8>();
    drop(tx);
    assert!(within(rx).await.is_err(), "a dropped sender resolves the receiver with an error");

    let (tx, rx) = oneshot::channel::<u8>();
    drop(rx);
    assert!(tx.is_closed());
    assert_eq!(tx.send(3), Err(3), "a send to a dropped receiver gives the value back");
}

// ---- timers ------------------------------------------------------------------------------------------------

/// Sleeping advances [`now`] by at least the duration; under simulation, by barely more and at no real cost.
pub async fn sleep_advances_now() {
    let start = now();
    sleep(millis(50)).await;
    let slept = start.elapsed();
    assert!(slept >= millis(50), "slept {slept:?}, asked for 50ms");
    if SIMULATED {
        // Virtual time only moves to the next timer, plus a few nanoseconds per task run.
        assert!(slept < millis(51), "simulated sleep of 50ms took {slept:?}");
        let start = now();
        sleep(Duration::from_secs(3600)).await;
        assert!(start.elapsed() >= Duration::from_secs(3600));
    }
}

/// `sleep_until` waits for its deadline, and one already passed returns promptly.
pub async fn sleep_until_deadline() {
    let deadline = now() + millis(30);
    sleep_until(deadline).await;
    assert!(now() >= deadline);

    let past = now() - millis(1);
    within(sleep_until(past)).await;
}

/// `timeout` gives up on a slow future at its deadline.
pub async fn timeout_fires() {
    let start = now();
    let result = timeout(millis(20), sleep(Duration::from_secs(3600))).await;
    assert!(result.is_err());
    let waited = start.elapsed();
    assert!(waited >= millis(20), "gave up after {waited:?}, deadline was 20ms");
    assert!(waited < Duration::from_secs(3600));

    let never = timeout(millis(5), std::future::pending::<()>()).await;
    let error: Elapsed = never.unwrap_err();
    assert_eq!(result, Err(error), "every elapsed deadline is the same error");
    assert_eq!(error.to_string(), "deadline has elapsed");
}

/// `timeout` passes through the output of a future that finishes in time, without waiting for the deadline.
pub async fn timeout_does_not_fire() {
    assert_eq!(timeout(Duration::from_secs(1), async { 7 }).await, Ok(7));

    let start = now();
    assert_eq!(timeout(Duration::from_secs(3600), sleep(millis(10))).await, Ok(()));
    assert!(start.elapsed() < Duration::from_secs(3600));
}

/// [`Instant`] arithmetic saturates where the standard library would panic or return `None`.
pub async fn instant_arithmetic() {
    let start = now();
    let later = start + millis(250);
    assert_eq!(later - start, millis(250));
    assert_eq!(start - later, Duration::ZERO, "subtracting a later instant saturates at zero");
    assert_eq!(later.duration_since(start), millis(250));
    assert_eq!(start.checked_duration_since(later), None);
    assert_eq!(later.checked_sub(millis(250)), Some(start));
    assert_eq!(start.checked_add(millis(250)), Some(later));
    let mut moving = start;
    moving += millis(10);
    moving -= millis(4);
    assert_eq!(moving - start, millis(6));
    assert!(later > start);
    assert!(Instant::now() >= start);
}

// ---- tasks -------------------------------------------------------------------------------------------------

/// Spawned tasks run concurrently, return their outputs when joined, and keep running if their handle is dropped.
pub async fn spawn_and_join() {
    let handles: Vec<JoinHandle<u32>> = (0..5)
        .map(|n| {
            spawn(async move {
                yield_now().await;
                n * 10
            })
        })
        .collect();
    for (n, handle) in (0..).zip(handles) {
        assert_eq!(within(handle).await.unwrap(), n * 10);
    }

    let nested = spawn(async { spawn(async { 6 * 7 }).await.unwrap() });
    assert_eq!(within(nested).await.unwrap(), 42);

    let (go_tx, go_rx) = oneshot::channel::<u32>();
    let waiting = spawn(async move { go_rx.await.unwrap() + 1 });
    yield_now().await;
    assert!(!waiting.is_finished(), "a task waiting on a channel is not finished");
    go_tx.send(41).unwrap();
    yield_until(|| waiting.is_finished()).await;
    assert_eq!(within(waiting).await.unwrap(), 42);

    let (done_tx, done_rx) = oneshot::channel::<()>();
    drop(spawn(async move {
        sleep(millis(5)).await;
        done_tx.send(()).unwrap();
    }));
    within(done_rx).await.expect("a task whose handle was dropped still runs to completion");
}

/// Sends on its channel when dropped, so a test can see that an aborted task's future was really dropped.
struct DropSignal(Option<oneshot::Sender<()>>);

impl Drop for DropSignal {
    fn drop(&mut self) {
        if let Some(tx) = self.0.take() {
            let _ = tx.send(());
        }
    }
}

/// Aborting a task drops it at its next yield point and makes its join report a cancellation.
pub async fn abort() {
    let reached_end = Arc::new(AtomicBool::new(false));
    let (started_tx, started_rx) = oneshot::channel::<()>();
    let (dropped_tx, dropped_rx) = oneshot::channel::<()>();
    let handle = spawn({
        let reached_end = reached_end.clone();
        async move {
            let _signal = DropSignal(Some(dropped_tx));
            started_tx.send(()).unwrap();
            sleep(Duration::from_secs(3600)).await;
            reached_end.store(true, Ordering::SeqCst);
        }
    });
    within(started_rx).await.unwrap();
    handle.abort();
    let error: JoinError = within(handle).await.unwrap_err();
    assert!(error.is_cancelled());
    assert!(!error.is_panic());
    assert_eq!(error.panic_message(), None);
    assert_eq!(error.to_string(), "task was cancelled");
    assert!(error.try_into_panic().is_err());
    within(dropped_rx).await.expect("the aborted task's future was dropped");
    assert!(!reached_end.load(Ordering::SeqCst));

    let finished = spawn(async { 5 });
    yield_until(|| finished.is_finished()).await;
    finished.abort();
    assert_eq!(within(finished).await.unwrap(), 5, "aborting a finished task keeps its output");
}

/// A panic inside a task is reported through its join handle, and the runtime carries on.
pub async fn panic_is_contained() {
    // The condition only gives the block a `()` output; a bare `panic!` would make it diverge.
    let explode = true;
    let literal = spawn(async move {
        if explode {
            panic!("executor exploded");
        }
    });
    let error = within(literal).await.unwrap_err();
    assert!(error.is_panic());
    assert!(!error.is_cancelled());
    assert_eq!(error.panic_message(), Some("executor exploded"));
    assert_eq!(error.to_string(), "task panicked: executor exploded");

    let code = 7;
    let formatted = spawn(async move {
        yield_now().await;
        if code == 7 {
            panic!("executor failed with code {code}");
        }
        code
    });
    let error = within(formatted).await.unwrap_err();
    assert_eq!(error.panic_message(), Some("executor failed with code 7"));
    let payload = error.try_into_panic().expect("a panic carries its payload");
    assert_eq!(payload.downcast_ref::<String>().map(String::as_str), Some("executor failed with code 7"));

    assert_eq!(within(spawn(async { "still running" })).await.unwrap(), "still running");
}

/// `yield_now` lets other ready tasks run before the caller continues.
pub async fn yield_now_lets_others_run() {
    let ran = Arc::new(AtomicBool::new(false));
    let other = spawn({
        let ran = ran.clone();
        async move { ran.store(true, Ordering::SeqCst) }
    });
    // On one thread the spawned task can only run while this one is suspended, so seeing the flag proves the
    // yields gave way.
    yield_until(|| ran.load(Ordering::SeqCst)).await;
    within(other).await.unwrap();

    let turns = Arc::new(AtomicU32::new(0));
    let spinners: Vec<JoinHandle<()>> = (0..2)
        .map(|_| {
            let turns = turns.clone();
            spawn(async move {
                for _ in 0..10 {
                    turns.fetch_add(1, Ordering::SeqCst);
                    yield_now().await;
                }
            })
        })
        .collect();
    for spinner in spinners {
        within(spinner).await.unwrap();
    }
    assert_eq!(turns.load(Ordering::SeqCst), 20);
}

// ---- locks and notification -------------------------------------------------------------------------------

/// `notify_one` with nobody waiting stores a single permit; `notify_waiters` stores none but wakes everyone waiting.
pub async fn notify() {
    let notify = Arc::new(Notify::new());

    notify.notify_one();
    notify.notify_one();
    within(notify.notified()).await;
    assert!(timeout(BRIEFLY, notify.notified()).await.is_err(), "permits do not accumulate: two notifies, one permit");

    notify.notify_waiters();
    assert!(timeout(BRIEFLY, notify.notified()).await.is_err(), "notify_waiters leaves no permit behind");

    let waiter = spawn({
        let notify = notify.clone();
        async move { notify.notified().await }
    });
    sleep(millis(5)).await;
    notify.notify_one();
    within(waiter).await.unwrap();

    let (ready_tx, mut ready_rx) = mpsc::unbounded_channel::<()>();
    let waiters: Vec<JoinHandle<()>> = (0..3)
        .map(|_| {
            let notify = notify.clone();
            let ready_tx = ready_tx.clone();
            spawn(async move {
                let mut notified = pin!(notify.notified());
                // Registering before reporting ready means notify_waiters, sent after every report, reaches all.
                notified.as_mut().enable();
                ready_tx.send(()).unwrap();
                notified.await;
            })
        })
        .collect();
    for _ in 0..3 {
        within(ready_rx.recv()).await.unwrap();
    }
    notify.notify_waiters();
    for waiter in waiters {
        within(waiter).await.unwrap();
    }
}

/// A watch channel shows the latest value, wakes receivers on change, coalesces bursts and reports a gone sender.
pub async fn watch_channel() {
    let (tx, mut rx) = watch::channel(0u32);
    assert_eq!(*rx.borrow(), 0);
    assert!(!rx.has_changed().unwrap());

    tx.send(1).unwrap();
    within(rx.changed()).await.unwrap();
    assert_eq!(*rx.borrow_and_update(), 1);

    tx.send(2).unwrap();
    tx.send(3).unwrap();
    within(rx.changed()).await.unwrap();
    assert_eq!(*rx.borrow_and_update(), 3, "a receiver sees the latest value, not every value");
    assert!(timeout(BRIEFLY, rx.changed()).await.is_err(), "no change is reported twice");

    let second = tx.subscribe();
    let sender = spawn(async move {
        sleep(millis(5)).await;
        tx.send_modify(|value| *value += 1);
    });
    within(rx.changed()).await.unwrap();
    assert_eq!(*rx.borrow_and_update(), 4);
    assert_eq!(*second.borrow(), 4);
    within(sender).await.unwrap();
    assert!(within(rx.changed()).await.is_err(), "changed() fails once the sender is gone");
}

/// A mutex excludes, reports contention through `try_lock`, and grants the lock to waiters in arrival order.
pub async fn mutex() {
    let counter = Arc::new(Mutex::new(0u32));
    let incrementers: Vec<JoinHandle<()>> = (0..8)
        .map(|_| {
            let counter = counter.clone();
            spawn(async move {
                for _ in 0..25 {
                    let mut guard = counter.lock().await;
                    let seen = *guard;
                    // Suspending inside the critical section would let a racing task lose this update if the lock
                    // did not exclude it.
                    yield_now().await;
                    *guard = seen + 1;
                }
            })
        })
        .collect();
    for incrementer in incrementers {
        within(incrementer).await.unwrap();
    }
    assert_eq!(*counter.lock().await, 200);

    let guard = counter.lock().await;
    assert!(counter.try_lock().is_err());
    drop(guard);
    assert!(counter.try_lock().is_ok());

    let order = Arc::new(Mutex::new(Vec::new()));
    let held = order.lock().await;
    let (queued_tx, mut queued_rx) = mpsc::unbounded_channel::<u32>();
    let mut queued = Vec::new();
    for n in 0..4 {
        let order = order.clone();
        let queued_tx = queued_tx.clone();
        queued.push(spawn(async move {
            // The report and the lock request happen in one poll, so by the time the report is read this task is
            // already in the lock's queue.
            queued_tx.send(n).unwrap();
            order.lock().await.push(n);
        }));
        assert_eq!(within(queued_rx.recv()).await, Some(n));
    }
    drop(held);
    for task in queued {
        within(task).await.unwrap();
    }
    assert_eq!(*order.lock().await, [0, 1, 2, 3]);
}

/// A read-write lock admits readers together and a writer alone.
pub async fn rwlock() {
    let lock = Arc::new(RwLock::new(5u32));
    let first = lock.read().await;
    let second = within(lock.read()).await;
    assert_eq!(*first + *second, 10, "two readers hold the lock at once");
    assert!(lock.try_write().is_err());

    let writer = spawn({
        let lock = lock.clone();
        async move { *lock.write().await += 1 }
    });
    sleep(millis(10)).await;
    assert!(!writer.is_finished(), "a writer waits while readers hold the lock");
    drop(first);
    drop(second);
    within(writer).await.unwrap();
    assert_eq!(*lock.read().await, 6);

    let guard = lock.write().await;
    assert!(lock.try_read().is_err(), "no reader while a writer holds the lock");
    drop(guard);
    assert!(lock.try_read().is_ok());
}

/// The seed reported from inside a run: the simulator's under madsim, none with real tokio.
pub async fn runtime_reports_its_seed() {
    assert_eq!(runtime::current_seed().is_some(), SIMULATED);
}

// ---- a scheduling workload ---------------------------------------------------------------------------------

/// One observation from [`scheduling_workload`]: which task finished which step, and when.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// The task, numbered from zero in spawn order.
    pub task: u32,
    /// The step within that task, counting from zero.
    pub step: u32,
    /// Clock time since the workload started.
    pub at: Duration,
}

/// Number of tasks in [`scheduling_workload`].
pub const WORKLOAD_TASKS: u32 = 6;

/// Number of steps each task of [`scheduling_workload`] takes.
pub const WORKLOAD_STEPS: u32 = 5;

/// Several tasks that yield, sleep and contend for a lock in a pattern drawn from `seed`, logging every step.
///
/// Many of the steps are ties (tasks ready at once, timers due at the same instant), so the order of the log is
/// decided by the scheduler: under madsim by its seed, which is what the determinism check relies on.
pub async fn scheduling_workload(seed: u64) -> Vec<Event> {
    let mut rng = SeededRng::from_seed(seed);
    let start = now();
    let (log_tx, mut log_rx) = mpsc::unbounded_channel::<Event>();
    let shared = Arc::new(Mutex::new(0u32));
    let tasks: Vec<JoinHandle<()>> = (0..WORKLOAD_TASKS)
        .map(|task| {
            let mut rng = rng.fork();
            let log_tx = log_tx.clone();
            let shared = shared.clone();
            spawn(async move {
                for step in 0..WORKLOAD_STEPS {
                    match rng.gen_range(0..3) {
                        0 => yield_now().await,
                        1 => sleep(Duration::from_micros(rng.gen_range(0..3) * 500)).await,
                        _ => {
                            let mut guard = shared.lock().await;
                            *guard += 1;
                            yield_now().await;
                        }
                    }
                    log_tx.send(Event { task, step, at: now() - start }).unwrap();
                }
            })
        })
        .collect();
    drop(log_tx);
    let mut events = Vec::new();
    while let Some(event) = within(log_rx.recv()).await {
        events.push(event);
    }
    for task in tasks {
        within(task).await.unwrap();
    }
    events
}

/// The workload completes under any scheduler, with every task's steps logged in order.
pub async fn scheduling_workload_completes() {
    let events = scheduling_workload(7).await;
    assert_eq!(events.len(), (WORKLOAD_TASKS * WORKLOAD_STEPS) as usize);
    for task in 0..WORKLOAD_TASKS {
        let steps: Vec<u32> = events.iter().filter(|e| e.task == task).map(|e| e.step).collect();
        assert_eq!(steps, (0..WORKLOAD_STEPS).collect::<Vec<_>>());
    }
}

// ---- types ---------------------------------------------------------------------------------------------------

fn assert_send<T: Send>(_: &T) {}
fn assert_send_sync<T: Send + Sync>() {}

/// Compile-time parity: the futures and values burrow passes between tasks are `Send` (and `Sync` where shared) in
/// this build. Without it, code could compile against one runtime and not the other.
pub fn seam_types_are_thread_safe() {
    assert_send(&sleep(Duration::ZERO));
    assert_send(&sleep_until(Instant::now()));
    assert_send(&timeout(Duration::ZERO, async {}));
    assert_send(&yield_now());
    assert_send(&within(async {}));
    assert_send_sync::<Instant>();
    assert_send_sync::<Elapsed>();
    assert_send_sync::<JoinHandle<u32>>();
    assert_send_sync::<JoinError>();
    assert_send_sync::<SeededRng>();
    assert_send_sync::<Mutex<u32>>();
    assert_send_sync::<Notify>();
}
