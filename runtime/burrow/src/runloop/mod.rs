//! The loop of one attached session (SPEC 3).
//!
//! It owns the executor. Before each unit of work it drains the executor effects that are ready (cancel after
//! boundary, stop); then it polls the machine, which answers Run, Park or Exit. A run is handed to the executor
//! without the session lock; while it is in flight the loop also listens for its cancellation, for executor
//! effects and for the run's notice and deadline. A closed effect channel is not an exit: it applies Stop, the same
//! path as an explicit stop, and the loop exits only when the machine says so. On exit the executor is stopped
//! and cleaned up, then the machine learns the loop is gone.

use std::future::Future;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::task::Poll;

use burrow_core::ids::{Generation, RunId};
use burrow_core::protocol::{Observed, Subject, feedback};
use burrow_core::session::{Reply, SessionEvent, StopReason};
use burrow_env::sync::{Notify, watch};
use burrow_env::task::catch_panic;
use burrow_env::time::Instant;

use crate::executor::{Executor, ExecutorError, ExecutorOutput, RunRequest};
use crate::session::{Driven, Session, State};

pub(crate) mod mailbox;

use mailbox::{EffectReceiver, ExecutorEffect, NoEffect};

/// What the machine told the loop to do next.
enum Step {
    Run(RunRequest, Arc<Notify>),
    /// The machine started a run whose start could not be made durable (it fail-stopped): poll again.
    Again,
    Park,
    Exit,
}

/// How a run in flight ended, from the loop's side.
enum RunEnd {
    Finished(Result<Result<ExecutorOutput, ExecutorError>, burrow_env::task::JoinError>),
    Cancelled,
}

/// What the loop does once a stretch of runs ends.
#[derive(Clone, Copy)]
enum After {
    /// Poll the machine afresh (an executor effect is waiting, or the run was cancelled).
    Poll,
    Park,
    Exit,
}

/// The loop's own state: what it owns for as long as it lives.
pub(crate) struct LoopCtx {
    session: Arc<Session>,
    executor: Arc<dyn Executor>,
    generation: Generation,
    effects: EffectReceiver,
    effects_open: bool,
    executor_stopped: bool,
}

impl LoopCtx {
    pub(crate) fn new(
        session: Arc<Session>,
        executor: Arc<dyn Executor>,
        generation: Generation,
        effects: EffectReceiver,
    ) -> LoopCtx {
        LoopCtx { session, executor, generation, effects, effects_open: true, executor_stopped: false }
    }
}

/// Starts the loop of `generation` (the session's [`crate::session::TaskStarters`] entry for loops).
pub(crate) fn start(
    session: Arc<Session>,
    executor: Arc<dyn Executor>,
    generation: Generation,
    effects: EffectReceiver,
    exited: watch::Sender<bool>,
) -> burrow_env::task::JoinHandle<()> {
    burrow_env::task::spawn(run(LoopCtx::new(session, executor, generation, effects), exited))
}

/// The loop task. Takes its state whole, so the task keeps one copy of it.
pub(crate) async fn run(mut ctx: LoopCtx, exited: watch::Sender<bool>) {
    tracing::debug!(session = %ctx.session.id, generation = ctx.generation.0, "loop started");
    // Each phase's future is boxed while it runs, so the task of an idle session holds only the small future it is
    // parked in rather than room for the largest phase (a run, with the executor call and the boundary commit).
    let mut after = After::Poll;
    loop {
        if ctx.effects_ready() {
            after = After::Poll;
            Box::pin(ctx.drain_ready_effects()).await;
        }
        if let After::Poll = after {
            after = Box::pin(ctx.poll_and_run()).await;
        }
        match after {
            After::Poll => {}
            After::Park => {
                Box::pin(ctx.park()).await;
                after = After::Poll;
            }
            After::Exit => break,
        }
    }
    Box::pin(ctx.finish()).await;
    exited.send_replace(true);
}

impl LoopCtx {
    async fn drain_ready_effects(&mut self) {
        while self.effects_open {
            match self.effects.try_recv() {
                Ok(effect) => self.apply_effect(effect).await,
                Err(NoEffect::Empty) => break,
                Err(NoEffect::Closed) => self.effects_closed().await,
            }
        }
    }

    async fn apply_effect(&mut self, effect: ExecutorEffect) {
        match effect {
            ExecutorEffect::CancelAfterBoundary(run) => {
                let observed = match catch_panic(self.executor.cancel_after_boundary(run)).await {
                    Ok(Ok(())) => return,
                    Ok(Err(error)) => Observed::ExecutorFailed(error.message),
                    Err(panic) => Observed::ExecutorPanicked(panic.panic_message().unwrap_or("panicked").to_owned()),
                };
                tracing::error!(session = %self.session.id, %run, ?observed, "cancel-after-boundary failed");
                let event = feedback(Subject::CancelAfterBoundary(run), observed)
                    .expect("an executor failure is a result of a cancel-after-boundary")
                    .expect("a failed cancel-after-boundary is reported");
                let mut st = self.session.lock().await;
                let _ = self.session.drive(&mut st, event, None).await;
            }
            ExecutorEffect::Stop(reason) => self.stop_executor(reason).await,
        }
    }

    async fn stop_executor(&mut self, reason: StopReason) {
        if self.executor_stopped {
            return;
        }
        self.executor_stopped = true;
        tracing::info!(session = %self.session.id, ?reason, "executor stopping");
        self.executor_hook("stop", self.executor.stop(reason)).await;
    }

    /// Waits for one of the executor's teardown calls, within the runtime's bound: a panic or a call that never
    /// returns is logged and the loop goes on, so that no executor can hold its session (its run's deadline, its
    /// stop's callers, an unregister's commit) by not answering.
    async fn executor_hook(&self, name: &'static str, call: impl Future<Output = ()>) {
        let bound = self.session.bounds.executor_hook;
        match burrow_env::time::timeout(bound, catch_panic(call)).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => tracing::error!(session = %self.session.id, "executor panicked in {name}"),
            Err(_) => tracing::error!(session = %self.session.id, ?bound, "executor did not return from {name}"),
        }
    }

    /// The control side dropped the effect channel: stop through the machine, like an explicit stop.
    async fn effects_closed(&mut self) {
        self.effects_open = false;
        let mut st = self.session.lock().await;
        if !Session::is_live_loop(&st, self.generation) {
            return;
        }
        tracing::warn!(session = %self.session.id, "executor effect channel closed; stopping the session");
        let _ = self.session.drive(&mut st, SessionEvent::Stop, None).await;
    }

    /// An executor effect is waiting, or the effect channel closed and the loop has not taken the stop path yet.
    fn effects_ready(&self) -> bool {
        self.effects_open && !self.effects.is_idle()
    }

    /// Polls the machine and, if it hands out a run, runs it (and the runs after it).
    async fn poll_and_run(&mut self) -> After {
        match self.poll().await {
            Step::Run(request, cancel) => self.run_some(request, cancel).await,
            Step::Again => After::Poll,
            Step::Park => After::Park,
            Step::Exit => After::Exit,
        }
    }

    async fn poll(&self) -> Step {
        let mut st = self.session.lock().await;
        self.poll_locked(&mut st).await
    }

    async fn poll_locked(&self, st: &mut State) -> Step {
        if !Session::is_live_loop(st, self.generation) {
            // A newer loop owns the session, or the attachment ended: leave without touching it.
            return Step::Exit;
        }
        let mut out = Driven::default();
        let reply = self
            .session
            .drive_out(st, SessionEvent::Poll, None, &mut out)
            .await
            .expect("the live loop polls only when no run of its own is in flight");
        match (reply, out.run) {
            (Reply::Run(_), Some((request, cancel))) => Step::Run(request, cancel),
            (Reply::Run(_), None) => Step::Again,
            (Reply::Exit { .. }, _) => Step::Exit,
            (Reply::Park, _) => Step::Park,
            (other, _) => unreachable!("Poll answers Run, Park or Exit, not {other:?}"),
        }
    }

    async fn park(&mut self) {
        let session = self.session.clone();
        burrow_env::select! {
            biased;
            // Boxed: a parked loop's future then holds only the two waits, not the work that follows them.
            effect = self.effects.recv(), if self.effects_open => match effect {
                Some(effect) => Box::pin(self.apply_effect(effect)).await,
                None => Box::pin(self.effects_closed()).await,
            },
            () = session.wake.notified() => {}
        }
    }

    async fn next_timer(&self, run: RunId) -> Option<Instant> {
        if self.session.planted == Some(crate::planted::ShellDefect::NoDeadlineTimer) {
            return None;
        }
        let st = self.session.lock().await;
        st.machine.next_timer(run).map(|at| self.session.clock.instant(at))
    }

    /// Runs `request`, and the runs after it while the machine hands out one run after another: after each run the
    /// next step is polled under the lock that reported it, unless an executor effect is waiting.
    async fn run_some(&mut self, mut request: RunRequest, mut cancel: Arc<Notify>) -> After {
        loop {
            match self.run_one(request, cancel).await {
                Some(Step::Run(next, next_cancel)) => (request, cancel) = (next, next_cancel),
                Some(Step::Again) | None => return After::Poll,
                Some(Step::Park) => return After::Park,
                Some(Step::Exit) => return After::Exit,
            }
        }
    }

    /// Hands one run to the executor and reports how it ended. Returns the next step when it could be polled under
    /// the same lock (no executor effect waiting), or `None` for the loop to poll afresh.
    async fn run_one(&mut self, request: RunRequest, cancel: Arc<Notify>) -> Option<Step> {
        use tracing::Instrument;
        let run = request.run;
        if let Some(lost) = self.session.before_run() {
            // spec: specs/session.md#ownership-moved: past its lease's end a host starts no run. The session stops
            // here as moved (the run is cancelled, its inputs stay for the next owner) and the loop exits.
            tracing::info!(session = %self.session.id, run = %run, "the lease ended before the run was handed out");
            let mut st = self.session.lock().await;
            self.session.lease_ended(&mut st, lost).await;
            return None;
        }
        let span = tracing::info_span!("run", session = %self.session.id, run = %run, inputs = ?request.inputs.iter().map(|i| i.id.0).collect::<Vec<_>>());
        let executor = self.executor.clone();
        let mut apply = pin!(catch_panic(executor.apply(request)).instrument(span));
        let mut cancelled = pin!(cancel.notified());
        // One poll of each first: a run that is already cancelled, or an executor that answers at once, needs no
        // timer. A waiting executor effect goes first, as in the select below, so this is skipped then.
        let first = if self.effects_ready() {
            None
        } else {
            std::future::poll_fn(|cx| {
                if cancelled.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Some(RunEnd::Cancelled));
                }
                match apply.as_mut().poll(cx) {
                    Poll::Ready(result) => Poll::Ready(Some(RunEnd::Finished(result))),
                    Poll::Pending => Poll::Ready(None),
                }
            })
            .await
        };
        let end = match first {
            Some(end) => end,
            // Boxed: an executor that answers at once never needs the timers and effects of a run that waits.
            None => Box::pin(self.wait_run(run, apply.as_mut(), cancelled.as_mut())).await,
        };
        let RunEnd::Finished(result) = end else { return None };
        let session = &self.session;
        let mut observed = observe_run(result);
        if session.planted == Some(crate::planted::ShellDefect::FailureAsNoResult)
            && matches!(observed, Observed::ExecutorFailed(_))
        {
            observed = Observed::Reported { report: burrow_core::session::RunReport::NoResult, snapshot: None };
        }
        if let Observed::ExecutorPanicked(message) = &observed {
            tracing::error!(session = %session.id, %run, %message, "executor panicked; contained");
        }
        let event = feedback(Subject::Run(run), observed)
            .expect("an executor's answer is a result of its run")
            .expect("a run's end is reported");
        let mut st = session.lock().await;
        // Refused only when the run is no longer current (cancelled, expired, or the session stopped meanwhile): the
        // machine has already settled its inputs.
        let _ = session.drive(&mut st, event, None).await;
        if self.effects_ready() {
            return None;
        }
        Some(self.poll_locked(&mut st).await)
    }

    /// Waits for a run that did not end at its first poll, listening meanwhile for its cancellation, executor effects
    /// and its notice and deadline.
    async fn wait_run<A, C>(&mut self, run: RunId, mut apply: Pin<&mut A>, mut cancelled: Pin<&mut C>) -> RunEnd
    where
        A: Future<Output = Result<Result<ExecutorOutput, ExecutorError>, burrow_env::task::JoinError>>,
        C: Future<Output = ()>,
    {
        loop {
            let timer = self.next_timer(run).await;
            let session = self.session.clone();
            burrow_env::select! {
                biased;
                () = cancelled.as_mut() => return RunEnd::Cancelled,
                effect = self.effects.recv(), if self.effects_open => match effect {
                    Some(effect) => self.apply_effect(effect).await,
                    None => self.effects_closed().await,
                },
                () = sleep_until_or_never(timer) => session.tick().await,
                result = apply.as_mut() => return RunEnd::Finished(result),
            }
        }
    }

    async fn finish(&mut self) {
        // The machine chose why (the last stop it asked for, or the unregister in progress).
        let reason = self.session.lock().await.machine.stop_reason();
        self.stop_executor(reason).await;
        self.executor_hook("cleanup_after_stop", self.executor.cleanup_after_stop()).await;
        let mut st = self.session.lock().await;
        let live = st.loop_slot.as_ref().is_some_and(|slot| slot.generation == self.generation);
        if live {
            st.loop_slot = None;
        }
        let exited = SessionEvent::LoopExited { generation: self.generation };
        if self.session.drive(&mut st, exited, None).await.is_ok() {
            tracing::info!(session = %self.session.id, generation = self.generation.0, "loop exited");
        }
    }
}

/// What the executor's answer to a run was, as a fact for the core's table.
pub(crate) fn observe_run(
    result: Result<Result<ExecutorOutput, ExecutorError>, burrow_env::task::JoinError>,
) -> Observed {
    match result {
        Ok(Ok(output)) => Observed::Reported { report: output.report, snapshot: output.snapshot },
        Ok(Err(error)) => {
            crate::metrics::run_failed(false);
            Observed::ExecutorFailed(error.message)
        }
        Err(panic) => {
            crate::metrics::run_failed(true);
            Observed::ExecutorPanicked(panic.panic_message().unwrap_or("the executor panicked").to_owned())
        }
    }
}

/// Sleeps until `at`, or forever when there is no deadline (a `select!` branch that never fires).
pub(crate) async fn sleep_until_or_never(at: Option<Instant>) {
    match at {
        Some(at) => burrow_env::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
