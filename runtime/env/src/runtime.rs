//! Building and entering a runtime, so that no other crate has to name tokio or madsim.
//!
//! The API has one shape in both builds. Settings that only one runtime understands are accepted by both and
//! ignored by the other: a seed means nothing to real tokio, and worker threads mean nothing to madsim, which runs
//! every task on one thread in an order its seed decides.

use std::future::Future;
use std::io;

/// `true` in a `--cfg madsim` build, where time is virtual and scheduling is seeded; `false` with real tokio.
///
/// For the rare place that must behave differently under simulation (a test that measures wall-clock time, say);
/// everything else should not need to ask.
pub const SIMULATED: bool = cfg!(madsim);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Flavor {
    CurrentThread,
    MultiThread(usize),
}

/// Describes a runtime to build: its flavour (one thread or a pool) and, for simulation, its seed.
#[derive(Clone, Debug)]
pub struct Builder {
    // madsim runs every task on one thread whatever the flavour, so only the real build reads this.
    #[cfg_attr(madsim, allow(dead_code))]
    flavor: Flavor,
    seed: u64,
}

impl Builder {
    /// A runtime that runs every task on the thread that calls [`Runtime::block_on`].
    pub fn current_thread() -> Builder {
        Builder { flavor: Flavor::CurrentThread, seed: 0 }
    }

    /// A runtime with a pool of `workers` threads. Under madsim the pool is simulated by its one thread.
    ///
    /// # Panics
    /// If `workers` is zero.
    pub fn multi_thread(workers: usize) -> Builder {
        assert!(workers > 0, "a multi-thread runtime needs at least one worker");
        Builder { flavor: Flavor::MultiThread(workers), seed: 0 }
    }

    /// The seed that decides every scheduling choice and random draw of a simulated run (default 0).
    ///
    /// Two simulated runtimes built with the same seed run the same program identically. A real runtime ignores
    /// the seed: its scheduling depends on the operating system.
    pub fn seed(mut self, seed: u64) -> Builder {
        self.seed = seed;
        self
    }

    /// Builds the runtime.
    ///
    /// # Errors
    /// If the operating system refuses the threads or timers a real runtime needs.
    pub fn build(self) -> io::Result<Runtime> {
        imp::build(self)
    }
}

/// A runtime to run futures on; built by a [`Builder`].
pub struct Runtime {
    inner: imp::Inner,
}

impl Runtime {
    /// Runs `future` to completion on this runtime, blocking the calling thread, and returns its output.
    ///
    /// Tasks the future spawns run on this runtime too. Under madsim, if every task is waiting and no timer is
    /// pending, nothing could ever wake them, so this panics with a message rather than hanging as a real runtime
    /// would.
    pub fn block_on<F: Future>(&self, future: F) -> F::Output {
        self.inner.block_on(future)
    }
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime").field("simulated", &SIMULATED).finish_non_exhaustive()
    }
}

/// Runs `future` to completion on a fresh current-thread runtime (seed 0 under madsim).
///
/// # Panics
/// If the runtime cannot be built, which only happens when the operating system is out of resources.
pub fn block_on_current_thread<F: Future>(future: F) -> F::Output {
    Builder::current_thread()
        .build()
        .unwrap_or_else(|error| panic!("cannot build a current-thread runtime: {error}"))
        .block_on(future)
}

/// The seed of the simulated run this is called from, or `None` outside one (always `None` in a normal build).
///
/// Lets code deep inside a run print a line that reproduces it.
pub fn current_seed() -> Option<u64> {
    imp::current_seed()
}

/// Runs `future` as a process of its own and, once it has its output, ends every task it spawned that has not ended.
///
/// Under madsim the future runs on a fresh simulated node that is killed when the future is done, so tasks it left
/// behind (a loop parked on a wake, a drain waiting for its inbox) are dropped with their state instead of living on,
/// unreachable, for as long as the process: the simulator runs one of these per seed. With real tokio it is a plain
/// await; leftover tasks end when the runtime shuts down.
///
/// # Panics
/// Under madsim, if `future` panics.
pub async fn isolated<F>(future: F) -> F::Output
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    imp::isolated(future).await
}

/// A simulated machine: a group of tasks the simulator can pause, resume and kill together, as an operating system
/// would a process (SIGSTOP, SIGCONT, SIGKILL). Every task spawned from a task of the machine belongs to it. Only
/// under madsim; the simulator's multi-host mode is what uses it.
#[cfg(madsim)]
#[derive(Clone)]
pub struct Machine {
    node: madsim::runtime::NodeHandle,
}

#[cfg(madsim)]
impl Machine {
    /// A fresh machine in the current simulation.
    ///
    /// # Panics
    /// Outside a simulation.
    #[must_use]
    pub fn start() -> Machine {
        Machine { node: madsim::runtime::Handle::current().create_node().build() }
    }

    /// Runs `future` on the machine; its output, or `None` if the machine was killed first.
    pub fn spawn<F>(&self, future: F) -> impl Future<Output = Option<F::Output>> + use<F>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let task = self.node.spawn(future);
        async move { task.await.ok() }
    }

    /// Stops every task of the machine where it stands, timers included, until [`Machine::resume`].
    pub fn pause(&self) {
        madsim::runtime::Handle::current().pause(self.node.id());
    }

    /// Lets a paused machine run again.
    pub fn resume(&self) {
        madsim::runtime::Handle::current().resume(self.node.id());
    }

    /// Ends the machine: its tasks are dropped without running further.
    pub fn kill(&self) {
        madsim::runtime::Handle::current().kill(self.node.id());
    }
}

/// The body of `#[burrow_env::test]`; not part of the API.
///
/// It takes a function rather than a future because the simulator may run a test several times (once per seed
/// in `MADSIM_TEST_NUM`, or twice to check determinism) and needs a fresh future each time.
#[doc(hidden)]
pub fn run_test<F>(test: fn() -> F) -> F::Output
where
    F: Future + 'static,
    F::Output: Send,
{
    imp::run_test(test)
}

#[cfg(not(madsim))]
mod imp {
    use super::{Builder, Flavor, Runtime};
    use std::future::Future;
    use std::io;

    pub(super) type Inner = tokio::runtime::Runtime;

    pub(super) fn build(builder: Builder) -> io::Result<Runtime> {
        let mut tokio_builder = match builder.flavor {
            Flavor::CurrentThread => tokio::runtime::Builder::new_current_thread(),
            Flavor::MultiThread(workers) => {
                let mut multi = tokio::runtime::Builder::new_multi_thread();
                multi.worker_threads(workers);
                multi
            }
        };
        let inner = tokio_builder.enable_all().build()?;
        Ok(Runtime { inner })
    }

    pub(super) fn current_seed() -> Option<u64> {
        None
    }

    pub(super) fn run_test<F: Future>(test: fn() -> F) -> F::Output {
        // The same runtime `#[tokio::test]` builds by default, so the suite sees tokio as a test author expects.
        super::block_on_current_thread(test())
    }

    pub(super) async fn isolated<F: Future>(future: F) -> F::Output {
        future.await
    }
}

#[cfg(madsim)]
mod imp {
    use super::{Builder, Runtime};
    use std::future::Future;
    use std::io;

    pub(super) type Inner = madsim::runtime::Runtime;

    pub(super) fn build(builder: Builder) -> io::Result<Runtime> {
        let inner = madsim::runtime::Runtime::with_seed_and_config(builder.seed, madsim::Config::default());
        Ok(Runtime { inner })
    }

    pub(super) fn current_seed() -> Option<u64> {
        madsim::runtime::Handle::try_current().ok().map(|handle| handle.seed())
    }

    pub(super) async fn isolated<F>(future: F) -> F::Output
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let handle = madsim::runtime::Handle::current();
        let node = handle.create_node().build();
        let id = node.id();
        let output = match node.spawn(future).await {
            Ok(output) => output,
            Err(error) => panic!("the isolated future did not finish: {error}"),
        };
        // Killing the node wakes each of its tasks, and the executor drops a woken task of a killed node instead of
        // polling it. The sleep lets it do so before this returns: the clock moves only once nothing is ready.
        handle.kill(id);
        madsim::time::sleep(std::time::Duration::from_millis(1)).await;
        output
    }

    pub(super) fn run_test<F>(test: fn() -> F) -> F::Output
    where
        F: Future + 'static,
        F::Output: Send,
    {
        // The same runner `#[madsim::test]` uses, so MADSIM_TEST_SEED, MADSIM_TEST_NUM and
        // MADSIM_TEST_CHECK_DETERMINISM work as madsim documents, and a failure prints its seed.
        madsim::runtime::Builder::from_env().run(test)
    }
}
