//! Group commit: a store's writes, performed by a writer of their own.
//!
//! Callers hand their commits to one writer through a bounded queue and await an acknowledgement. The writer takes
//! every commit waiting (up to [`BATCH_COMMITS_MAX`] commits and [`BATCH_BYTES_MAX`] bytes), applies them in one
//! transaction, makes that transaction durable once, and only then acknowledges each. So many sessions' writes share
//! one sync, a caller is never told a write landed before it is durable, and a slow disk delays callers instead of
//! blocking the async workers they run on. A full queue makes the next caller wait for room (back-pressure); it never
//! grows.
//!
//! Inside a batch each commit stands alone: one that fails (an update of a row that was never written, say) gets its
//! own error, and the others go on: the writer abandons the batch and applies it again without the failed commit.
//! Such failures are bugs or misuse, so the common batch pays nothing for them (a savepoint per commit would copy
//! every page it touches). A batch whose sync fails fails every commit in it: none of them is durable.
//!
//! In a normal build the writer is an operating-system thread, since its work (SQLite, the disk) blocks. Under
//! `--cfg madsim` there is no thread: the simulator must decide every step, so each commit is a batch of one,
//! performed by the caller through the same [`Journal`] methods.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

#[cfg(not(madsim))]
use burrow_env::sync::oneshot;

use super::StoreError;

/// Requests that wait for the writer at most. A caller that finds the queue full waits for room.
pub const QUEUE_DEPTH_MAX: usize = 1_024;
/// Commits one batch takes at most.
pub const BATCH_COMMITS_MAX: usize = 512;
/// Encoded bytes one batch takes at most; a commit larger than this is a batch of its own.
pub const BATCH_BYTES_MAX: usize = 8 << 20;

/// The writer's storage. Every method blocks, and runs on the writer (never on an async worker).
pub(crate) trait Journal: Send + 'static {
    /// One commit, owned and ready to apply.
    type Write: Send + 'static;

    /// Opens a batch.
    fn begin(&mut self) -> Result<(), StoreError>;
    /// Applies one commit inside the open batch. On an error the batch may hold part of it: the writer abandons the
    /// batch and applies the others again in a new one.
    fn apply(&mut self, write: &Self::Write) -> Result<(), StoreError>;
    /// Ends the batch: when this returns `Ok`, every commit applied in it is written and synced; on an error, none of
    /// them is.
    fn sync(&mut self) -> Result<(), StoreError>;
    /// Abandons the open batch: nothing applied in it is kept.
    fn abandon(&mut self);
    /// Housekeeping between batches (a log folded into tables, say). An error is the journal's to remember: no
    /// caller waits on this.
    fn maintain(&mut self) {}
    /// Syncs the journal made on its own (in [`Journal::maintain`] or in a read) since it was last asked.
    fn own_syncs(&mut self) -> u64 {
        0
    }
}

/// What the writer did, counted since it started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WriterStats {
    /// Batches made durable (each is one sync).
    pub syncs: u64,
    /// Commits acknowledged as durable.
    pub commits: u64,
    /// Commits that failed (alone, or with their batch).
    pub failed: u64,
    /// The most commits one batch held.
    pub batch_max: u64,
}

#[derive(Debug, Default)]
struct Counters {
    syncs: AtomicU64,
    commits: AtomicU64,
    failed: AtomicU64,
    batch_max: AtomicU64,
}

impl Counters {
    fn stats(&self) -> WriterStats {
        WriterStats {
            syncs: self.syncs.load(Ordering::Relaxed),
            commits: self.commits.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            batch_max: self.batch_max.load(Ordering::Relaxed),
        }
    }
}

#[cfg(not(madsim))]
type Reply<T> = oneshot::Sender<Result<T, StoreError>>;

#[cfg(not(madsim))]
type Read<J> = Box<dyn FnOnce(&mut J) + Send>;

#[cfg(not(madsim))]
enum Request<J: Journal> {
    Write { write: J::Write, bytes: usize, reply: Reply<()> },
    Read(Read<J>),
}

/// The writer of one store.
pub(crate) struct Writer<J: Journal> {
    inner: Inner<J>,
    counters: Arc<Counters>,
}

enum Inner<J: Journal> {
    #[cfg(not(madsim))]
    Thread { queue: Option<burrow_env::sync::mpsc::Sender<Request<J>>>, thread: Option<std::thread::JoinHandle<()>> },
    #[cfg_attr(not(madsim), allow(dead_code))]
    Inline(std::sync::Mutex<J>),
}

#[cfg(not(madsim))]
fn stopped() -> StoreError {
    StoreError::unavailable("the store's writer has stopped")
}

impl<J: Journal> Writer<J> {
    /// A writer for `journal`: a thread named `name` in a normal build, the caller itself under madsim.
    pub(crate) fn start(journal: J, name: &str) -> Result<Writer<J>, StoreError> {
        Writer::start_with(journal, name, QUEUE_DEPTH_MAX)
    }

    #[cfg(not(madsim))]
    fn start_with(journal: J, name: &str, depth: usize) -> Result<Writer<J>, StoreError> {
        let counters = Arc::new(Counters::default());
        let (queue, requests) = burrow_env::sync::mpsc::channel(depth);
        let thread = std::thread::Builder::new()
            .name(name.to_owned())
            .spawn({
                let counters = counters.clone();
                move || run(journal, requests, &counters)
            })
            .map_err(|e| StoreError::unavailable(format!("cannot start the store's writer: {e}")))?;
        Ok(Writer { inner: Inner::Thread { queue: Some(queue), thread: Some(thread) }, counters })
    }

    #[cfg(madsim)]
    fn start_with(journal: J, _name: &str, _depth: usize) -> Result<Writer<J>, StoreError> {
        Ok(Writer { inner: Inner::Inline(std::sync::Mutex::new(journal)), counters: Arc::default() })
    }

    /// What the writer did so far.
    pub(crate) fn stats(&self) -> WriterStats {
        self.counters.stats()
    }

    /// Hands `write` (`bytes` long, encoded) to the writer and waits until it is durable, or failed.
    pub(crate) async fn write(&self, write: J::Write, bytes: usize) -> Result<(), StoreError> {
        match &self.inner {
            #[cfg(not(madsim))]
            Inner::Thread { queue, .. } => {
                let (reply, answer) = oneshot::channel();
                let queue = queue.as_ref().ok_or_else(stopped)?;
                queue.send(Request::Write { write, bytes, reply }).await.map_err(|_| stopped())?;
                answer.await.map_err(|_| stopped())?
            }
            Inner::Inline(journal) => {
                // A batch of one has no bound to keep.
                let _ = bytes;
                let mut journal = journal.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                let mut batch = vec![(write, ())];
                let result = commit(&mut *journal, &mut batch, &self.counters).pop().expect("a batch of one");
                maintain(&mut *journal, &self.counters);
                result
            }
        }
    }

    /// Runs `read` on the writer, after every write queued before it is durable or failed.
    pub(crate) async fn read<T, F>(&self, read: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut J) -> Result<T, StoreError> + Send + 'static,
    {
        match &self.inner {
            #[cfg(not(madsim))]
            Inner::Thread { queue, .. } => {
                let (reply, answer) = oneshot::channel();
                let request = Request::Read(Box::new(move |journal: &mut J| {
                    // A caller that stopped waiting no longer needs the answer.
                    let _ = reply.send(read(journal));
                }));
                let queue = queue.as_ref().ok_or_else(stopped)?;
                queue.send(request).await.map_err(|_| stopped())?;
                answer.await.map_err(|_| stopped())?
            }
            Inner::Inline(journal) => {
                let mut journal = journal.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                let answer = read(&mut journal);
                count_own_syncs(&mut *journal, &self.counters);
                answer
            }
        }
    }

    /// Requests waiting in the queue now.
    #[cfg(all(test, not(madsim)))]
    fn queued(&self) -> usize {
        match &self.inner {
            #[cfg(not(madsim))]
            Inner::Thread { queue, .. } => queue.as_ref().map_or(0, |q| q.max_capacity() - q.capacity()),
            Inner::Inline(_) => 0,
        }
    }
}

impl<J: Journal> Drop for Writer<J> {
    fn drop(&mut self) {
        #[cfg(not(madsim))]
        if let Inner::Thread { queue, thread } = &mut self.inner {
            // Closing the queue lets the writer finish what is queued and exit; joining it means the storage is
            // closed when the store is dropped (a reopened file sees every acknowledged write).
            drop(queue.take());
            if let Some(thread) = thread.take() {
                let _ = thread.join();
            }
        }
    }
}

/// The writer's loop: take what is waiting, commit it as one batch, acknowledge; reads are served in queue order,
/// after the writes before them.
#[cfg(not(madsim))]
fn run<J: Journal>(mut journal: J, mut requests: burrow_env::sync::mpsc::Receiver<Request<J>>, counters: &Counters) {
    let mut batch: Vec<(J::Write, Option<Reply<()>>)> = Vec::new();
    let mut bytes = 0;
    while let Some(first) = next_request(&mut requests) {
        let mut next = Some(first);
        while let Some(request) = next.take() {
            match request {
                Request::Write { write, bytes: size, reply } => {
                    batch.push((write, Some(reply)));
                    bytes += size;
                    if batch.len() >= BATCH_COMMITS_MAX || bytes >= BATCH_BYTES_MAX {
                        acknowledge(&mut journal, &mut batch, counters);
                        bytes = 0;
                    }
                }
                Request::Read(read) => {
                    acknowledge(&mut journal, &mut batch, counters);
                    bytes = 0;
                    read(&mut journal);
                    count_own_syncs(&mut journal, counters);
                }
            }
            next = requests.try_recv().ok();
        }
        acknowledge(&mut journal, &mut batch, counters);
        bytes = 0;
    }
}

/// How long the writer keeps yielding before it parks: the next commit usually arrives within microseconds (a lone
/// caller's next write follows its acknowledgement after the shell's own work), and waking a parked writer costs the
/// caller a system call and the writer a reschedule. An idle writer spends at most this much CPU before it sleeps.
#[cfg(not(madsim))]
const SPIN_BEFORE_PARKING: std::time::Duration = std::time::Duration::from_micros(100);

/// The next request: taken at once if one is queued or arrives while the writer yields, else waited for. `None` once
/// every sender is gone.
#[cfg(not(madsim))]
fn next_request<J: Journal>(requests: &mut burrow_env::sync::mpsc::Receiver<Request<J>>) -> Option<Request<J>> {
    // The writer's own thread measures its own spin: this is not the simulated clock, and no decision depends on it.
    let start = std::time::Instant::now();
    while start.elapsed() < SPIN_BEFORE_PARKING {
        match requests.try_recv() {
            Ok(request) => return Some(request),
            Err(burrow_env::sync::mpsc::error::TryRecvError::Disconnected) => return None,
            Err(burrow_env::sync::mpsc::error::TryRecvError::Empty) => std::thread::yield_now(),
        }
    }
    requests.blocking_recv()
}

/// Commits `batch` and sends each caller its result.
#[cfg(not(madsim))]
fn acknowledge<J: Journal>(journal: &mut J, batch: &mut Vec<(J::Write, Option<Reply<()>>)>, counters: &Counters) {
    if batch.is_empty() {
        return;
    }
    let replies: Vec<Option<Reply<()>>> = batch.iter_mut().map(|(_, reply)| reply.take()).collect();
    let results = commit(journal, batch, counters);
    for (reply, result) in replies.into_iter().zip(results) {
        // A caller that stopped waiting (its task was dropped) still had its write made durable.
        let _ = reply.expect("taken above").send(result);
    }
    maintain(journal, counters);
}

/// Applies `batch` in one transaction and syncs it; the result of each commit, in order. The batch is emptied.
fn commit<J: Journal, R>(
    journal: &mut J,
    batch: &mut Vec<(J::Write, R)>,
    counters: &Counters,
) -> Vec<Result<(), StoreError>> {
    let size = batch.len() as u64;
    let mut results: Vec<Option<Result<(), StoreError>>> = batch.iter().map(|_| None).collect();
    let outcome = apply_all(journal, batch, &mut results).and_then(|()| journal.sync());
    match outcome {
        Ok(()) => counters.syncs.fetch_add(1, Ordering::Relaxed),
        Err(error) => {
            journal.abandon();
            for result in results.iter_mut().filter(|r| r.is_none()) {
                *result = Some(Err(error.clone()));
            }
            0
        }
    };
    batch.clear();
    let results: Vec<Result<(), StoreError>> = results.into_iter().map(|r| r.unwrap_or(Ok(()))).collect();
    let ok = results.iter().filter(|r| r.is_ok()).count() as u64;
    counters.commits.fetch_add(ok, Ordering::Relaxed);
    counters.failed.fetch_add(size - ok, Ordering::Relaxed);
    counters.batch_max.fetch_max(size, Ordering::Relaxed);
    results
}

/// The journal's housekeeping after a batch was acknowledged.
fn maintain<J: Journal>(journal: &mut J, counters: &Counters) {
    journal.maintain();
    count_own_syncs(journal, counters);
}

/// Adds the syncs the journal made on its own (housekeeping, or a read) to the writer's count.
fn count_own_syncs<J: Journal>(journal: &mut J, counters: &Counters) {
    counters.syncs.fetch_add(journal.own_syncs(), Ordering::Relaxed);
}

/// Opens a batch and applies every commit of `batch` that has no result yet. A commit that fails gets its error, and
/// the batch starts over without it (at most once per commit, since each failure settles one).
fn apply_all<J: Journal, R>(
    journal: &mut J,
    batch: &[(J::Write, R)],
    results: &mut [Option<Result<(), StoreError>>],
) -> Result<(), StoreError> {
    'batch: loop {
        journal.begin()?;
        for ((write, _), result) in batch.iter().zip(results.iter_mut()) {
            if result.is_some() {
                continue;
            }
            if let Err(error) = journal.apply(write) {
                *result = Some(Err(error));
                journal.abandon();
                continue 'batch;
            }
        }
        return Ok(());
    }
}

#[cfg(all(test, not(madsim)))]
mod tests {
    use std::sync::{Arc, Condvar, Mutex};

    use super::*;

    /// A journal that logs what it does and, while `held`, blocks in its sync until released.
    #[derive(Clone, Default)]
    struct Gated {
        log: Arc<Mutex<Vec<String>>>,
        gate: Arc<(Mutex<bool>, Condvar)>,
        fail_sync: Arc<Mutex<bool>>,
    }

    impl Gated {
        fn hold(&self) {
            *self.gate.0.lock().unwrap() = true;
        }
        fn release(&self) {
            *self.gate.0.lock().unwrap() = false;
            self.gate.1.notify_all();
        }
        fn log(&self) -> Vec<String> {
            self.log.lock().unwrap().clone()
        }
        fn note(&self, line: String) {
            self.log.lock().unwrap().push(line);
        }
    }

    impl Journal for Gated {
        type Write = u32;

        fn begin(&mut self) -> Result<(), StoreError> {
            self.note("begin".into());
            Ok(())
        }
        fn apply(&mut self, write: &u32) -> Result<(), StoreError> {
            self.note(format!("apply {write}"));
            if *write == 0 { Err(StoreError::unavailable("zero is refused")) } else { Ok(()) }
        }
        fn sync(&mut self) -> Result<(), StoreError> {
            self.note("sync starts".into());
            let mut held = self.gate.0.lock().unwrap();
            while *held {
                held = self.gate.1.wait(held).unwrap();
            }
            drop(held);
            self.note("sync returns".into());
            if *self.fail_sync.lock().unwrap() { Err(StoreError::unavailable("the disk failed")) } else { Ok(()) }
        }
        fn abandon(&mut self) {
            self.note("abandon".into());
        }
    }

    async fn until(what: impl Fn() -> bool) {
        for _ in 0..5_000 {
            if what() {
                return;
            }
            burrow_env::time::sleep(burrow_env::time::Duration::from_millis(1)).await;
        }
        panic!("never happened");
    }

    /// Spawns a write of `value` and returns a receiver of its result.
    fn spawn_write(writer: &Arc<Writer<Gated>>, value: u32) -> oneshot::Receiver<Result<(), StoreError>> {
        let (tx, rx) = oneshot::channel();
        let writer = writer.clone();
        burrow_env::task::spawn(async move {
            let _ = tx.send(writer.write(value, 4).await);
        });
        rx
    }

    #[burrow_env::test]
    async fn no_commit_is_acknowledged_before_its_batch_is_synced() {
        let journal = Gated::default();
        journal.hold();
        let writer = Arc::new(Writer::start(journal.clone(), "test-writer").unwrap());
        let mut first = spawn_write(&writer, 1);
        until(|| journal.log().contains(&"sync starts".to_string())).await;
        // Three more arrive while the first batch is syncing: they wait, then share the next batch.
        let mut later: Vec<_> = [2, 0, 3].into_iter().map(|v| spawn_write(&writer, v)).collect();
        until(|| writer.queued() == 3).await;
        burrow_env::time::sleep(burrow_env::time::Duration::from_millis(20)).await;
        assert!(first.try_recv().is_err(), "acknowledged while its sync had not returned");
        assert!(later.iter_mut().all(|rx| rx.try_recv().is_err()));
        journal.release();
        assert_eq!(first.await.unwrap(), Ok(()));
        let results: Vec<_> = futures_results(later).await;
        assert_eq!(results[0], Ok(()));
        assert_eq!(results[1], Err(StoreError::unavailable("zero is refused")), "a failed commit fails alone");
        assert_eq!(results[2], Ok(()));
        let log = journal.log();
        let second = log.iter().position(|l| l == "apply 2").unwrap() - 1;
        assert_eq!(
            &log[second..],
            ["begin", "apply 2", "apply 0", "abandon", "begin", "apply 2", "apply 3", "sync starts", "sync returns"],
            "the batch starts over without the failed commit"
        );
        assert_eq!(writer.stats(), WriterStats { syncs: 2, commits: 3, failed: 1, batch_max: 3 });
    }

    async fn futures_results(receivers: Vec<oneshot::Receiver<Result<(), StoreError>>>) -> Vec<Result<(), StoreError>> {
        let mut out = Vec::new();
        for rx in receivers {
            out.push(rx.await.unwrap());
        }
        out
    }

    #[burrow_env::test]
    async fn a_failed_sync_fails_every_commit_of_its_batch() {
        let journal = Gated::default();
        *journal.fail_sync.lock().unwrap() = true;
        let writer = Writer::start(journal.clone(), "test-writer").unwrap();
        assert_eq!(writer.write(5, 4).await, Err(StoreError::unavailable("the disk failed")));
        assert!(journal.log().ends_with(&["sync returns".to_string(), "abandon".to_string()]));
        *journal.fail_sync.lock().unwrap() = false;
        assert_eq!(writer.write(6, 4).await, Ok(()));
        assert_eq!(writer.stats(), WriterStats { syncs: 1, commits: 1, failed: 1, batch_max: 1 });
    }

    #[burrow_env::test]
    async fn a_full_queue_makes_callers_wait_and_never_grows() {
        let journal = Gated::default();
        journal.hold();
        let writer = Arc::new(Writer::start_with(journal.clone(), "test-writer", 2).unwrap());
        let first = spawn_write(&writer, 1);
        until(|| journal.log().contains(&"sync starts".to_string())).await;
        let mut waiting: Vec<_> = (2..7).map(|v| spawn_write(&writer, v)).collect();
        until(|| writer.queued() == 2).await;
        burrow_env::time::sleep(burrow_env::time::Duration::from_millis(20)).await;
        assert_eq!(writer.queued(), 2, "the queue holds its bound; the other callers wait for room");
        assert!(waiting.iter_mut().all(|rx| rx.try_recv().is_err()));
        journal.release();
        assert_eq!(first.await.unwrap(), Ok(()));
        assert!(futures_results(waiting).await.iter().all(Result::is_ok), "every waiting caller got in");
        assert_eq!(writer.stats().commits, 6);
    }

    #[burrow_env::test]
    async fn a_read_is_served_after_the_writes_queued_before_it_are_durable() {
        let journal = Gated::default();
        journal.hold();
        let writer = Arc::new(Writer::start(journal.clone(), "test-writer").unwrap());
        let write = spawn_write(&writer, 9);
        until(|| journal.log().contains(&"sync starts".to_string())).await;
        let later = spawn_write(&writer, 10);
        until(|| writer.queued() == 1).await;
        let (tx, mut seen) = oneshot::channel();
        let reader = writer.clone();
        burrow_env::task::spawn(async move {
            let _ = tx.send(reader.read(|j: &mut Gated| Ok(j.log())).await);
        });
        until(|| writer.queued() == 2).await;
        assert!(seen.try_recv().is_err(), "a read waits for the writes ahead of it");
        journal.release();
        let seen = seen.await.unwrap().unwrap();
        assert_eq!(&seen[seen.len() - 4..], ["begin", "apply 10", "sync starts", "sync returns"]);
        assert_eq!((write.await.unwrap(), later.await.unwrap()), (Ok(()), Ok(())));
    }
}
