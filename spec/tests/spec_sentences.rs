//! The specification against SPEC's own sentences: for each, a history SPEC allows passes, and the nearest history
//! it forbids is refused by the named rule.

use burrow_spec::{
    AcceptAnswer, Answer, Bounds, Call, Class, Kind, Observation, OpAnswer, OpCall, OpKind, OpObservation, OpsBounds,
    Refused, Report, SessionSpec, SessionSpecs, SpecConfig, Standing, Submission, Write,
};

/// The bounds the runtime documents.
const BOUNDS: Bounds = Bounds {
    waiters_per_input: 64,
    waiters_per_session: 8_192,
    active_inputs: 4_096,
    batch_inputs: 16,
    operations: OpsBounds { live: 64, feed: 1_024, watchers: 64, wait_ids: 256 },
};

fn spec() -> SessionSpec {
    SessionSpec::new(SpecConfig { max_attempts: 2, store: true, bounds: BOUNDS })
}

/// Feeds `history`; the rule of the first deviation, if any. A history that ends settled says so with
/// [`Observation::Quiescent`].
fn judge(history: &[Observation]) -> Result<(), &'static str> {
    let mut spec = spec();
    for observation in history {
        spec.observe(observation).map_err(|d| d.rule)?;
    }
    Ok(())
}

fn accepted(input: u64, waiter: Option<u64>) -> Observation {
    Observation::Accept { submission: Submission::prompt(), answer: AcceptAnswer::Accepted { input, waiter } }
}

/// A durable prompt accepted without a handle (its caller did not ask for one).
fn unwaited(input: u64) -> Observation {
    let submission = Submission { waiter: false, ..Submission::prompt() };
    Observation::Accept { submission, answer: AcceptAnswer::Accepted { input, waiter: None } }
}

/// Operation `op`, of `kind`, is registered, starts and completes: three calls and their answers.
fn op_completes(op: u64, kind: OpKind) -> [Observation; 3] {
    let obs = |call, answer| Observation::Op(OpObservation::Call { call, answer });
    [
        obs(OpCall::Register(kind), OpAnswer::Registered(op)),
        obs(OpCall::ProvisionOk(op), OpAnswer::Done),
        obs(if kind == OpKind::Slot { OpCall::Release(op) } else { OpCall::Complete(op) }, OpAnswer::Done),
    ]
}

fn call(call: Call, answer: Answer) -> Observation {
    Observation::Call { call, answer }
}

fn handed(run: u64, inputs: &[u64]) -> Observation {
    Observation::HandedOut { run, inputs: inputs.to_vec(), inline: false }
}

fn reported(run: u64, report: Report) -> Observation {
    Observation::Reported { run, report }
}

fn written(write: Write, ok: bool) -> Observation {
    Observation::Written { write, ok }
}

fn resolved(waiter: u64, class: Class) -> Observation {
    Observation::Resolved { waiter, class }
}

/// An attached session whose input 1 (handle 1) ran as run 1 and committed with a result.
fn completed_once() -> Vec<Observation> {
    vec![
        call(Call::Attach, Answer::Done),
        accepted(1, Some(1)),
        handed(1, &[1]),
        reported(1, Report::Result),
        written(Write::Boundary(1), true),
        resolved(1, Class::Completed),
        written(Write::Lifecycle, true),
        Observation::Quiescent,
    ]
}

#[test]
fn a_round_trip_completes() {
    assert_eq!(judge(&completed_once()), Ok(()));
}

#[test]
fn admission_is_closed_after_retire() {
    // SPEC 2.1: "Retire: closes admission of new inputs".
    let mut history = vec![call(Call::Retire, Answer::Done)];
    history
        .push(Observation::Accept { submission: Submission::prompt(), answer: AcceptAnswer::Refused(Refused::Closed) });
    assert_eq!(judge(&history), Ok(()));
    history.push(accepted(1, Some(1)));
    assert_eq!(judge(&history), Err("admission by phase"));
}

#[test]
fn an_open_session_does_not_claim_to_be_closed() {
    // SPEC 2.1: "Admission of new inputs: Idle, Attached, Running."
    let refused =
        Observation::Accept { submission: Submission::prompt(), answer: AcceptAnswer::Refused(Refused::Closed) };
    assert_eq!(judge(&[refused]), Err("admission closes only by phase"));
}

#[test]
fn retire_without_an_executor_abandons_the_queue() {
    // SPEC 2.1: "queued inputs are still drained if an executor is attached, else they are abandoned (Retired)".
    let history = [accepted(1, Some(1)), call(Call::Retire, Answer::Done), resolved(1, Class::Abandoned)];
    assert_eq!(judge(&history), Ok(()));
    let told_terminated =
        [accepted(1, Some(1)), call(Call::Retire, Answer::Done), resolved(1, Class::RuntimeTerminated)];
    assert_eq!(judge(&told_terminated), Err("an outcome follows from what happened"));
    let never_told = [accepted(1, Some(1)), call(Call::Retire, Answer::Done), Observation::Quiescent];
    assert_eq!(judge(&never_told), Err("quiescent implies settled waiters resolved"));
}

#[test]
fn retire_with_an_executor_drains_but_admits_nothing_new() {
    // SPEC 2.1: "Retired -> Running to drain work that was queued before retirement".
    let mut history = vec![call(Call::Attach, Answer::Done), accepted(1, Some(1)), call(Call::Retire, Answer::Done)];
    history.extend([handed(1, &[1]), reported(1, Report::NoResult), written(Write::Boundary(1), true)]);
    history.push(resolved(1, Class::CompletedWithoutResult));
    assert_eq!(judge(&history), Ok(()));
    // Left queued beside the executor, it is a stranded backlog.
    let stranded = [
        call(Call::Attach, Answer::Done),
        accepted(1, Some(1)),
        call(Call::Retire, Answer::Done),
        Observation::Quiescent,
    ];
    assert_eq!(judge(&stranded), Err("no backlog stranded"));
}

#[test]
fn a_stopped_session_is_revived_by_a_new_executor() {
    // SPEC 2.1: "Stopped is not absorbing: attaching a new executor (or re-registering) revives the session."
    let stop = [call(Call::Attach, Answer::Done), call(Call::Stop, Answer::Done), Observation::ExecutorReleased];
    let mut revived = stop.to_vec();
    revived.extend([call(Call::Attach, Answer::Done), accepted(1, Some(1))]);
    revived.extend([handed(1, &[1]), reported(1, Report::Result), written(Write::Boundary(1), true)]);
    revived.push(resolved(1, Class::Completed));
    assert_eq!(judge(&revived), Ok(()));
    let mut refused = stop.to_vec();
    refused.push(call(Call::Attach, Answer::Refused(Refused::Other)));
    assert_eq!(judge(&refused), Err("a call is refused only where SPEC refuses it"));
}

#[test]
fn a_stop_during_a_run_waits_for_its_end_and_terminates_every_waiter() {
    // SPEC 2.1: "Asked during a run, it is deferred until the run reaches its end ... waiters resolve
    // RuntimeTerminated."
    let mut history = vec![call(Call::Attach, Answer::Done), accepted(1, Some(1)), accepted(2, Some(2))];
    history.extend([handed(1, &[1]), call(Call::Stop, Answer::Deferred)]);
    history.extend([reported(1, Report::Result), written(Write::Boundary(1), true)]);
    history.extend([resolved(1, Class::Completed), resolved(2, Class::RuntimeTerminated)]);
    assert_eq!(judge(&history), Ok(()));
    // No run starts while the stop is deferred or after it.
    let mut late = history.clone();
    late.push(handed(2, &[2]));
    assert_eq!(judge(&late), Err("no run after stop or destroy"));
}

#[test]
fn a_queue_lane_runs_in_the_order_it_was_accepted_and_steering_goes_first() {
    // SPEC 2.2: "FIFO queue lane"; "Steer lane: ... processed immediately".
    let steer = Observation::Accept {
        submission: Submission { steer: true, waiter: false, ..Submission::prompt() },
        answer: AcceptAnswer::Accepted { input: 3, waiter: None },
    };
    let base = vec![call(Call::Attach, Answer::Done), accepted(1, Some(1)), accepted(2, Some(2))];
    let mut in_order = base.clone();
    in_order.extend([handed(1, &[1]), reported(1, Report::Failed), handed(2, &[1])]);
    assert_eq!(judge(&in_order), Ok(()));
    let mut newest_first = base.clone();
    newest_first.push(handed(1, &[2]));
    assert_eq!(judge(&newest_first), Err("a lane runs in the order it was accepted"));
    let mut steer_waits = base;
    steer_waits.extend([steer, handed(1, &[1])]);
    assert_eq!(judge(&steer_waits), Err("the steer lane goes first"));
}

#[test]
fn attempts_are_bounded() {
    // SPEC 2.2: "A failed run rolls its staged inputs back to Queued while attempts < max ... else abandons them
    // (MaxAttemptsExhausted)."
    let mut history = vec![call(Call::Attach, Answer::Done), accepted(1, Some(1))];
    history.extend([handed(1, &[1]), reported(1, Report::Failed), handed(2, &[1]), reported(2, Report::Panicked)]);
    history.push(resolved(1, Class::AbandonedWithError));
    assert_eq!(judge(&history), Ok(()));
    let mut third = history[..history.len() - 1].to_vec();
    third.push(handed(3, &[1]));
    assert_eq!(judge(&third), Err("a run holds only queued inputs"));
}

#[test]
fn a_failed_commit_is_never_a_success() {
    // SPEC 2.3: "CompletedWithFinalizationFailure{error} (the result is withheld: a failed durable commit is never a
    // success)"; SPEC 3: "a boundary-commit failure stops the executor and rolls the input back".
    let mut history = vec![call(Call::Attach, Answer::Done), accepted(1, Some(1))];
    history.extend([handed(1, &[1]), reported(1, Report::Result), written(Write::Boundary(1), false)]);
    let mut told_failure = history.clone();
    told_failure.push(resolved(1, Class::CompletedWithFinalizationFailure));
    assert_eq!(judge(&told_failure), Ok(()));
    history.push(resolved(1, Class::Completed));
    assert_eq!(judge(&history), Err("an outcome follows from what happened"));
}

#[test]
fn a_known_key_deduplicates_and_joins() {
    // SPEC 2.2: "a second input with the key of a non-terminal input is Deduplicated and its caller joins the same
    // waiters (all get the same outcome); with the key of a terminal input it is Deduplicated with no handle."
    let keyed = || Submission { idempotency_key: Some("k".into()), ..Submission::prompt() };
    let first =
        Observation::Accept { submission: keyed(), answer: AcceptAnswer::Accepted { input: 1, waiter: Some(1) } };
    let join = Observation::Accept {
        submission: keyed(),
        answer: AcceptAnswer::Deduplicated { existing: 1, waiter: Some(2) },
    };
    let mut history = vec![call(Call::Attach, Answer::Done), first.clone(), join];
    history.extend([handed(1, &[1]), reported(1, Report::Result), written(Write::Boundary(1), true)]);
    history.extend([resolved(1, Class::Completed), resolved(2, Class::Completed)]);
    let late =
        Observation::Accept { submission: keyed(), answer: AcceptAnswer::Deduplicated { existing: 1, waiter: None } };
    history.push(late);
    assert_eq!(judge(&history), Ok(()));
    let fresh = Observation::Accept { submission: keyed(), answer: AcceptAnswer::Accepted { input: 2, waiter: None } };
    assert_eq!(judge(&[first, fresh]), Err("a known idempotency key deduplicates"));
}

#[test]
fn supersession_moves_the_waiter_to_the_newer_input() {
    // SPEC 2.2: "ExternalEvent with a supersession key supersedes an earlier pending input of the same kind and key".
    let event = |input, waiter| Observation::Accept {
        submission: Submission { supersession_key: Some("s".into()), ..Submission::of(Kind::ExternalEvent) },
        answer: AcceptAnswer::Accepted { input, waiter: Some(waiter) },
    };
    let mut history = vec![event(1, 1), event(2, 2), call(Call::Attach, Answer::Done)];
    history.extend([handed(1, &[2]), reported(1, Report::Result), written(Write::Boundary(1), true)]);
    history.extend([resolved(2, Class::Completed), resolved(1, Class::Completed)]);
    assert_eq!(judge(&history), Ok(()));
    let mut superseded_runs = history[..3].to_vec();
    superseded_runs.push(handed(1, &[1]));
    assert_eq!(judge(&superseded_runs), Err("a run holds only queued inputs"));
}

#[test]
fn supersession_ends_every_pending_input_of_the_kind_and_key() {
    // SPEC 2.2, "supersedes an earlier pending input of the same kind and key": input 1 was staged when input 2 took
    // the key, and its run failed, so both are pending; input 3 supersedes both (the newest content is what runs).
    let event = |input, waiter| Observation::Accept {
        submission: Submission { supersession_key: Some("s".into()), ..Submission::of(Kind::ExternalEvent) },
        answer: AcceptAnswer::Accepted { input, waiter: Some(waiter) },
    };
    let mut history = vec![event(1, 1), call(Call::Attach, Answer::Done), handed(1, &[1]), event(2, 2)];
    history.extend([reported(1, Report::Failed), event(3, 3)]);
    let mut stale = history.clone();
    history.extend([handed(2, &[3]), reported(2, Report::Result), written(Write::Boundary(2), true)]);
    history.extend([resolved(1, Class::Completed), resolved(2, Class::Completed), resolved(3, Class::Completed)]);
    assert_eq!(judge(&history), Ok(()));
    stale.push(handed(2, &[1]));
    assert_eq!(judge(&stale), Err("a run holds only queued inputs"), "the older one is superseded too");
}

#[test]
fn reset_and_destroy_answer_every_waiter() {
    // SPEC 2.1: "Reset: ... abandons every non-terminal input (Reset), resolves their waiters"; "Destroy: ... all
    // waiters resolve RuntimeTerminated."
    let reset = [accepted(1, Some(1)), call(Call::Reset, Answer::Done), resolved(1, Class::Abandoned)];
    assert_eq!(judge(&reset), Ok(()));
    let destroyed = [accepted(1, Some(1)), call(Call::Destroy, Answer::Done), resolved(1, Class::Completed)];
    assert_eq!(judge(&destroyed), Err("an outcome follows from what happened"));
    let forgotten = [accepted(1, Some(1)), call(Call::Destroy, Answer::Done), Observation::Quiescent];
    assert_eq!(judge(&forgotten), Err("quiescent implies settled waiters resolved"));
    // SPEC 6.1: "Every waiter resolves at most once".
    let twice = [
        accepted(1, Some(1)),
        call(Call::Reset, Answer::Done),
        resolved(1, Class::Abandoned),
        resolved(1, Class::Abandoned),
    ];
    assert_eq!(judge(&twice), Err("a waiter resolves exactly once"));
}

#[test]
fn a_committed_input_never_runs_again_across_a_crash() {
    // SPEC 6.3: "No input is applied twice across a committed boundary, including across crash and recovery."
    let mut history = completed_once();
    history.extend([Observation::Crash, Observation::Active { inputs: vec![], continuations: vec![] }]);
    assert_eq!(judge(&history), Ok(()));
    let mut again = completed_once();
    again.extend([Observation::Crash, Observation::Active { inputs: vec![1], continuations: vec![] }]);
    assert_eq!(judge(&again), Err("terminal states are absorbing"));
}

#[test]
fn an_acknowledged_durable_input_survives_a_crash_and_keeps_its_attempts() {
    // SPEC 5: "Staged -> Queued (attempts kept)"; SPEC 6.2: "No accepted durable input is lost".
    let mut history = vec![call(Call::Attach, Answer::Done), accepted(1, Some(1)), handed(1, &[1]), Observation::Crash];
    let mut kept = history.clone();
    kept.extend([
        Observation::Active { inputs: vec![1], continuations: vec![] },
        call(Call::Attach, Answer::Done),
        handed(2, &[1]),
    ]);
    kept.extend([reported(2, Report::Failed)]);
    // Its second attempt failed: out of attempts (max 2); nobody waits since the crash.
    assert_eq!(judge(&kept), Ok(()));
    history.push(Observation::Active { inputs: vec![], continuations: vec![] });
    assert_eq!(judge(&history), Err("no accepted durable input is lost"));
}

#[test]
fn an_ended_input_whose_record_was_not_written_may_come_back() {
    // SPEC 5 replays durable state: a reset whose lifecycle write failed left the input queued in the store.
    let mut history = vec![accepted(1, Some(1)), call(Call::Reset, Answer::Done), resolved(1, Class::Abandoned)];
    history.extend([
        written(Write::Lifecycle, false),
        Observation::Crash,
        Observation::Active { inputs: vec![1], continuations: vec![] },
    ]);
    assert_eq!(judge(&history), Ok(()));
    // Had the write landed, it would be gone for good.
    let mut durable = history[..3].to_vec();
    durable.extend([
        written(Write::Lifecycle, true),
        Observation::Crash,
        Observation::Active { inputs: vec![1], continuations: vec![] },
    ]);
    assert_eq!(judge(&durable), Err("terminal states are absorbing"));
}

#[test]
fn no_run_starts_after_unregister_began() {
    // SPEC 6.5: "No new run starts ... after unregister began".
    let history = [call(Call::Attach, Answer::Done), accepted(1, Some(1)), call(Call::Unregister, Answer::Done)];
    let mut run = history.to_vec();
    run.push(handed(1, &[1]));
    assert_eq!(judge(&run), Err("no run after unregister began"));
    let mut answered = history.to_vec();
    answered.push(resolved(1, Class::RuntimeTerminated));
    assert_eq!(judge(&answered), Ok(()));
}

#[test]
fn an_operation_record_has_no_handle_and_no_run() {
    // SPEC 2.2: "Operation: consumed on accept (no run)."
    let record = |waiter| Observation::Accept {
        submission: Submission::of(Kind::Operation),
        answer: AcceptAnswer::Accepted { input: 1, waiter },
    };
    assert_eq!(judge(&[record(None)]), Ok(()));
    assert_eq!(judge(&[record(Some(1))]), Err("a handle exactly when asked for and the input can end later"));
    assert_eq!(
        judge(&[record(None), call(Call::Attach, Answer::Done), handed(1, &[1])]),
        Err("a run holds only queued inputs")
    );
}

#[test]
fn a_restart_back_into_a_retirement_still_drains_what_was_queued_before_it() {
    // Found by the model_walk fuzz target: a recover reopened admission, the process died before the recover's
    // lifecycle write, and the restart came back retired: the inputs it holds were all queued before the retire.
    let mut history = vec![call(Call::Attach, Answer::Done), written(Write::Lifecycle, true), accepted(1, Some(1))];
    history.extend([call(Call::Retire, Answer::Done), written(Write::Lifecycle, true)]);
    history.extend([
        call(Call::Recover, Answer::Done),
        Observation::Crash,
        Observation::Active { inputs: vec![1], continuations: vec![] },
    ]);
    history.extend([call(Call::Attach, Answer::Done), handed(1, &[1])]);
    assert_eq!(judge(&history), Ok(()));
}

#[test]
fn a_released_session_admits_again_only_once_prepared_and_keeps_only_what_the_store_kept() {
    // SPEC 2.6: an unregister ends with the session released; a later prepare registers it again. SPEC 5: what it
    // comes back with is what the store kept, so an ephemeral input does not survive the release.
    let ephemeral = Submission { durable: false, waiter: false, ..Submission::prompt() };
    let mut history = vec![
        unwaited(1),
        Observation::Accept { submission: ephemeral, answer: AcceptAnswer::Accepted { input: 2, waiter: None } },
        written(Write::Lifecycle, true),
        call(Call::Unregister, Answer::Done),
        Observation::Released,
        written(Write::Lifecycle, true),
        Observation::Accept { submission: Submission::prompt(), answer: AcceptAnswer::Refused(Refused::Closed) },
    ];
    assert_eq!(judge(&history), Ok(()));
    let mut too_soon = history.clone();
    too_soon.push(unwaited(3));
    assert_eq!(judge(&too_soon), Err("admission by phase"));
    history.push(Observation::Rebuilt);
    history.push(call(Call::Prepare, Answer::Done));
    let mut kept = history.clone();
    kept.push(Observation::Active { inputs: vec![1], continuations: vec![] });
    kept.push(unwaited(3));
    assert_eq!(judge(&kept), Ok(()));
    history.push(Observation::Active { inputs: vec![1, 2], continuations: vec![] });
    assert_eq!(judge(&history), Err("only admitted inputs are active"), "the ephemeral input left no trace");
}

#[test]
fn a_prepare_during_an_unregister_is_refused_and_one_after_release_is_not_refused() {
    // specs/registration.md: a prepare is refused while an unregister is in progress.
    let history = vec![call(Call::Unregister, Answer::Done), call(Call::Prepare, Answer::Refused(Refused::Other))];
    assert_eq!(judge(&history), Ok(()));
    let done = vec![call(Call::Unregister, Answer::Done), call(Call::Prepare, Answer::Done)];
    assert_eq!(judge(&done), Err("no prepare during an unregister"));
}

#[test]
fn a_recover_forgets_the_keys_of_ephemeral_inputs() {
    // SPEC 5: recovery replays from the store; an ephemeral input was never there, nor was its idempotency key.
    let keyed = Submission { durable: false, idempotency_key: Some("k".into()), ..Submission::prompt() };
    let accept = |input| Observation::Accept {
        submission: keyed.clone(),
        answer: AcceptAnswer::Accepted { input, waiter: Some(input) },
    };
    let mut history = vec![call(Call::Attach, Answer::Done), accept(1), call(Call::Reset, Answer::Done)];
    history.push(resolved(1, Class::Abandoned));
    let mut before = history.clone();
    before.push(accept(2));
    assert_eq!(judge(&before), Err("a known idempotency key deduplicates"));
    history.push(call(Call::Recover, Answer::Done));
    history.push(accept(2));
    assert_eq!(judge(&history), Ok(()));
}

#[test]
fn a_fail_stop_right_after_a_restart_keeps_what_the_store_still_holds_revivable() {
    // SPEC 5: a durable input whose end never reached the store comes back with the next rebuild. A restart whose
    // first write fails stops the session again before any listing, so a listing then cannot show what the store
    // kept; the next restart may still bring the input back.
    let history = vec![
        call(Call::Attach, Answer::Done),
        unwaited(1),
        written(Write::Lifecycle, true),
        Observation::Crash,
        written(Write::Lifecycle, false),
        Observation::Active { inputs: vec![], continuations: vec![] },
        Observation::Crash,
        Observation::Active { inputs: vec![1], continuations: vec![] },
    ];
    assert_eq!(judge(&history), Ok(()));
    let mut listed_late = history[..6].to_vec();
    listed_late.push(Observation::Active { inputs: vec![1], continuations: vec![] });
    assert_eq!(judge(&listed_late), Err("terminal states are absorbing"));
}

#[test]
fn accept_and_run_may_be_refused_as_busy_while_a_rebuilt_input_may_be_back() {
    // SPEC 3: accept_and_run needs nothing active; after a recover, an input whose end never reached the store is
    // active again.
    let history = vec![
        call(Call::Attach, Answer::Done),
        unwaited(1),
        // The row fails; the fail-stop's own row fails too.
        written(Write::Lifecycle, false),
        written(Write::Lifecycle, false),
        call(Call::Recover, Answer::Done),
        Observation::AcceptAndRun { submission: Submission::prompt(), answer: AcceptAnswer::Refused(Refused::Busy) },
    ];
    assert_eq!(judge(&history), Ok(()));
    let mut idle = history[..2].to_vec();
    idle.push(Observation::AcceptAndRun {
        submission: Submission::prompt(),
        answer: AcceptAnswer::Refused(Refused::Busy),
    });
    idle.insert(2, call(Call::Reset, Answer::Done));
    idle.insert(3, written(Write::Lifecycle, true));
    assert_eq!(judge(&idle), Err("accept_and_run runs on an idle session"));
}

#[test]
fn a_continuation_made_before_a_retire_may_still_run_after_it() {
    // SPEC 2.1: a retired session drains what was queued before the retire; SPEC 2.4: a background operation that
    // ends while its session is idle queues a continuation, which the outside first sees when it runs.
    let mut history = vec![call(Call::Attach, Answer::Done)];
    history.extend(op_completes(1, OpKind::Tool));
    history.extend([call(Call::Retire, Answer::Done), handed(1, &[1])]);
    assert_eq!(judge(&history), Ok(()));
    let mut after = vec![call(Call::Attach, Answer::Done), call(Call::Retire, Answer::Done)];
    after.extend(op_completes(1, OpKind::Tool));
    after.push(handed(1, &[1]));
    assert_eq!(judge(&after), Err("no run after retire except work queued before it"));
}

#[test]
fn an_accept_that_died_with_the_process_may_still_own_its_key() {
    // SPEC 2.2 and 5: an accept whose durable write landed before the process died admitted its input, so its
    // idempotency key deduplicates afterwards, even though its caller never heard.
    let keyed = Submission { idempotency_key: Some("k".into()), kind: Kind::Operation, ..Submission::prompt() };
    let history = vec![
        call(Call::Attach, Answer::Done),
        Observation::Accept { submission: keyed.clone(), answer: AcceptAnswer::Lost },
        Observation::Crash,
        Observation::Active { inputs: vec![], continuations: vec![] },
        Observation::Accept {
            submission: Submission { idempotency_key: Some("k".into()), ..Submission::prompt() },
            answer: AcceptAnswer::Deduplicated { existing: 4, waiter: None },
        },
    ];
    assert_eq!(judge(&history), Ok(()));
    let mut unknown = history.clone();
    unknown.remove(1);
    assert_eq!(judge(&unknown), Err("dedup names the input that owns the key"));
}

#[test]
fn a_report_whose_loop_is_gone_before_its_commit_counts_for_nothing() {
    // SPEC 2.2: only a committed boundary consumes an input. The executor answered run 1, its loop let the executor
    // go before the boundary was written: the input is queued again (one attempt used) and a new loop may hand it out.
    let mut history = vec![
        call(Call::Attach, Answer::Done),
        accepted(1, Some(1)),
        handed(1, &[1]),
        reported(1, Report::Result),
        Observation::ExecutorReleased,
        call(Call::Attach, Answer::Done),
        handed(2, &[1]),
    ];
    assert_eq!(judge(&history), Ok(()));
    // The commit of the run that is gone may not land after all.
    history.push(written(Write::Boundary(1), true));
    assert!(judge(&history).is_err());
}

#[test]
fn an_unregister_that_outlives_its_grace_keeps_queued_work_for_the_next_registration() {
    // SPEC 2.6: the unregister answers every caller, and the store keeps the session's inputs for whoever registers
    // it next. Here the loop died between run 1's report and its commit, a stop was deferred behind that run, and the
    // grace expired: the deferred stop never took effect, so input 2 is still queued after the rebuild, and input 1
    // (its commit's fate unknown) may run again.
    let history = vec![
        call(Call::Attach, Answer::Done),
        accepted(1, Some(1)),
        handed(1, &[1]),
        reported(1, Report::Result),
        accepted(2, Some(2)),
        call(Call::Unregister, Answer::Done),
        resolved(1, Class::RuntimeTerminated),
        resolved(2, Class::RuntimeTerminated),
        call(Call::Stop, Answer::Deferred),
        Observation::GraceExpired,
        Observation::Released,
        written(Write::Lifecycle, true),
        Observation::Rebuilt,
        call(Call::Prepare, Answer::Done),
        call(Call::Attach, Answer::Done),
        handed(2, &[2]),
        reported(2, Report::Result),
        written(Write::Boundary(2), true),
        handed(3, &[1]),
    ];
    assert_eq!(judge(&history), Ok(()));
}

/// Feeds `history` to the specification that follows every history SPEC allows; the rule of the first deviation.
fn judge_all(history: &[Observation]) -> Result<(), &'static str> {
    let mut specs = SessionSpecs::new(SpecConfig { max_attempts: 2, store: true, bounds: BOUNDS });
    for observation in history {
        specs.observe(observation).map_err(|d| d.rule)?;
    }
    Ok(())
}

#[test]
fn a_lifecycle_write_left_unanswered_by_a_crash_may_have_landed_or_not() {
    // SPEC 5 promises what was acknowledged. A retire whose lifecycle write was asked and never answered (the process
    // died) may come back retired or open; once the session shows which, it stays so.
    let mut history = vec![call(Call::Attach, Answer::Done), written(Write::Lifecycle, true), accepted(1, Some(1))];
    history.extend([call(Call::Retire, Answer::Done), Observation::Writing { write: Write::Lifecycle }]);
    history.push(Observation::Crash);
    let closed =
        Observation::Accept { submission: Submission::prompt(), answer: AcceptAnswer::Refused(Refused::Closed) };
    let mut landed = history.clone();
    landed.push(closed.clone());
    assert_eq!(judge_all(&landed), Ok(()));
    let mut lost = history.clone();
    lost.push(accepted(2, Some(2)));
    assert_eq!(judge_all(&lost), Ok(()));
    // Once refused as retired, the restart kept the retire: nothing is admitted after it.
    landed.push(accepted(2, Some(2)));
    assert_eq!(judge_all(&landed), Err("admission by phase"));
    // A single history that ignores the unanswered write refuses the closed answer.
    let mut single = history.clone();
    single.push(closed);
    assert_eq!(judge(&single), Err("admission closes only by phase"));
}

#[test]
fn an_acknowledged_lifecycle_write_is_what_a_restart_comes_back_to() {
    // The write was answered before the crash: only its standing is possible, for the store and for the callers.
    let mut history = vec![call(Call::Attach, Answer::Done), written(Write::Lifecycle, true)];
    history.extend([call(Call::Retire, Answer::Done), Observation::Writing { write: Write::Lifecycle }]);
    history.extend([written(Write::Lifecycle, true), Observation::Crash]);
    let mut specs = SessionSpecs::new(SpecConfig { max_attempts: 2, store: true, bounds: BOUNDS });
    for observation in &history {
        specs.observe(observation).unwrap();
    }
    assert_eq!(specs.histories(), 1);
    assert_eq!(specs.standings(), vec![Standing::Retired]);
    history.push(accepted(1, Some(1)));
    assert_eq!(judge_all(&history), Err("admission by phase"));
    // Unanswered, both standings are possible.
    let mut unanswered = vec![call(Call::Attach, Answer::Done), written(Write::Lifecycle, true)];
    unanswered.extend([call(Call::Retire, Answer::Done), Observation::Writing { write: Write::Lifecycle }]);
    unanswered.push(Observation::Crash);
    let mut specs = SessionSpecs::new(SpecConfig { max_attempts: 2, store: true, bounds: BOUNDS });
    for observation in &unanswered {
        specs.observe(observation).unwrap();
    }
    assert_eq!(specs.standings(), vec![Standing::Open, Standing::Retired]);
}

/// Feeds `history` to a session with small bounds; the rule of the first deviation, if any.
fn judge_bounded(history: &[Observation]) -> Result<(), &'static str> {
    let bounds = Bounds { waiters_per_input: 2, waiters_per_session: 3, active_inputs: 3, batch_inputs: 2, ..BOUNDS };
    let mut spec = SessionSpec::new(SpecConfig { max_attempts: 2, store: true, bounds });
    for observation in history {
        spec.observe(observation).map_err(|d| d.rule)?;
    }
    Ok(())
}

fn keyed(answer: AcceptAnswer) -> Observation {
    Observation::Accept { submission: Submission { idempotency_key: Some("k".into()), ..Submission::prompt() }, answer }
}

#[test]
fn a_join_past_the_waiters_bound_is_refused_as_full_and_only_then() {
    // SPEC 2.3 and 6: every wait has a bound; a caller past it is told so and nothing is lost.
    let two = [
        keyed(AcceptAnswer::Accepted { input: 1, waiter: Some(1) }),
        keyed(AcceptAnswer::Deduplicated { existing: 1, waiter: Some(2) }),
    ];
    let mut history = two.to_vec();
    history.push(keyed(AcceptAnswer::Refused(Refused::Full)));
    assert_eq!(judge_bounded(&history), Ok(()));
    let mut past = two.to_vec();
    past.push(keyed(AcceptAnswer::Deduplicated { existing: 1, waiter: Some(3) }));
    assert_eq!(judge_bounded(&past), Err("waiters are bounded"));
    let early =
        [keyed(AcceptAnswer::Accepted { input: 1, waiter: Some(1) }), keyed(AcceptAnswer::Refused(Refused::Full))];
    assert_eq!(judge_bounded(&early), Err("an accept is refused as full only at a bound"));
    // Once its input ended, a handle no longer counts.
    let mut later = vec![call(Call::Attach, Answer::Done)];
    later.extend(two.iter().cloned());
    later.extend([handed(1, &[1]), reported(1, Report::Result), written(Write::Boundary(1), true)]);
    later.extend([resolved(1, Class::Completed), resolved(2, Class::Completed), accepted(2, Some(3))]);
    assert_eq!(judge_bounded(&later), Ok(()));
}

#[test]
fn a_run_holds_at_most_a_batch() {
    // SPEC 2.2: a run takes a bounded batch from its lane, in order.
    let mut history = vec![call(Call::Attach, Answer::Done), unwaited(1), unwaited(2), unwaited(3)];
    history.push(handed(1, &[1, 2]));
    assert_eq!(judge_bounded(&history), Ok(()));
    history.pop();
    history.push(handed(1, &[1, 2, 3]));
    assert_eq!(judge_bounded(&history), Err("a batch is bounded"));
    // Past the active-input bound a new input is refused as full.
    let mut full = vec![unwaited(1), unwaited(2), unwaited(3)];
    full.push(Observation::Accept { submission: Submission::prompt(), answer: AcceptAnswer::Refused(Refused::Full) });
    assert_eq!(judge_bounded(&full), Ok(()));
}

// ----- notices (specs/observable.md#notices) ----------------------------------------

fn admission_told(input: u64) -> Observation {
    Observation::AdmissionTold { input, continuation: false }
}

fn end_told(input: u64, class: Option<Class>) -> Observation {
    Observation::EndTold { input, class }
}

/// `completed_once`, with what a subscriber is told where the session tells it.
fn completed_once_told() -> Vec<Observation> {
    let mut history = completed_once();
    history.insert(2, admission_told(1));
    let at = history.iter().position(|o| *o == resolved(1, Class::Completed)).expect("resolved") + 1;
    history.insert(at, end_told(1, Some(Class::Completed)));
    history
}

#[test]
fn an_input_is_told_admitted_then_ended_once_with_its_waiters_class() {
    assert_eq!(judge(&completed_once_told()), Ok(()));
    // Told twice.
    let mut again = completed_once_told();
    again.insert(3, admission_told(1));
    assert_eq!(judge(&again), Err("each admission and end is told once, in order"));
    let mut ended_twice = completed_once_told();
    let at = ended_twice.iter().position(|o| matches!(o, Observation::EndTold { .. })).expect("told") + 1;
    ended_twice.insert(at, end_told(1, Some(Class::Completed)));
    assert_eq!(judge(&ended_twice), Err("each admission and end is told once, in order"));
}

#[test]
fn an_end_is_told_only_once_it_happened_and_as_the_waiters_heard_it() {
    // Told before the boundary committed.
    let mut early = completed_once_told();
    early.retain(|o| !matches!(o, Observation::EndTold { .. }));
    let at = early.iter().position(|o| *o == reported(1, Report::Result)).expect("reported") + 1;
    early.insert(at, end_told(1, Some(Class::Completed)));
    assert_eq!(judge(&early), Err("an end is told only for an input that ended"));
    // Told with another class than its waiter received.
    let mut other = completed_once_told();
    for o in &mut other {
        if matches!(o, Observation::EndTold { .. }) {
            *o = end_told(1, Some(Class::CompletedWithoutResult));
        }
    }
    assert_eq!(judge(&other), Err("a told end agrees with the waiters"));
    // Told with no class, though it has an outcome of its own (a reset abandoned it; its row is not written yet).
    let reset = |class| {
        [
            unwaited(1),
            admission_told(1),
            call(Call::Reset, Answer::Done),
            end_told(1, class),
            written(Write::Lifecycle, true),
        ]
    };
    assert_eq!(judge(&reset(Some(Class::Abandoned))), Ok(()));
    assert_eq!(judge(&reset(None)), Err("an end is told with a class exactly when the input has its own outcome"));
}

#[test]
fn a_terminal_peer_response_supersedes_the_pending_progress_of_its_request_only() {
    // specs/input.md#peer-responses.
    let peer = |input: u64, waiter: u64, kind: Kind| Observation::Accept {
        submission: Submission { kind, ..Submission::prompt() },
        answer: AcceptAnswer::Accepted { input, waiter: Some(waiter) },
    };
    let progress = |request| Kind::PeerResponseProgress { request };
    let terminal = |request| Kind::PeerResponseTerminal { request };
    let start = [call(Call::Attach, Answer::Done), peer(1, 1, progress(7)), peer(2, 2, progress(8))];
    let mut replied = start.to_vec();
    replied.push(peer(3, 3, terminal(7)));
    // The other request's progress runs; the superseded one never does.
    let mut fine = replied.clone();
    fine.extend([handed(1, &[2]), reported(1, Report::Result), written(Write::Boundary(1), true)]);
    fine.push(resolved(2, Class::Completed));
    assert_eq!(judge(&fine), Ok(()));
    let mut superseded_ran = replied.clone();
    superseded_ran.push(handed(1, &[1]));
    assert_eq!(judge(&superseded_ran), Err("a run holds only queued inputs"));
    // Its caller learns the reply's outcome.
    let mut answered = replied;
    answered.extend([handed(1, &[2]), reported(1, Report::Result), written(Write::Boundary(1), true)]);
    answered.extend([resolved(2, Class::Completed), handed(2, &[3]), reported(2, Report::Result)]);
    answered.extend([written(Write::Boundary(2), true), resolved(3, Class::Completed), resolved(1, Class::Completed)]);
    assert_eq!(judge(&answered), Ok(()));
}

#[test]
fn a_background_end_may_wake_the_session_again_after_a_crash_and_a_listing_names_its_continuations() {
    // SPEC 2.4 with specs/operations.md#cursors: the continuation made for an end died with the process; the restored
    // session may make another, which its listing shows as a continuation.
    let mut history = vec![call(Call::Attach, Answer::Done)];
    history.extend(op_completes(1, OpKind::Tool));
    history.extend([
        Observation::Active { inputs: vec![1], continuations: vec![1] },
        Observation::Crash,
        Observation::Active { inputs: vec![1], continuations: vec![1] },
    ]);
    assert_eq!(judge(&history), Ok(()));
    // A capacity slot's end wakes nobody: no continuation is owed for it.
    let mut slot = vec![call(Call::Attach, Answer::Done)];
    slot.extend(op_completes(1, OpKind::Slot));
    slot.push(Observation::Active { inputs: vec![1], continuations: vec![1] });
    assert_eq!(judge(&slot), Err("only admitted inputs are active"));
    // With no waking end ever seen, a listed continuation is nothing the session could have made.
    let unowed =
        vec![call(Call::Attach, Answer::Done), Observation::Active { inputs: vec![1], continuations: vec![1] }];
    assert_eq!(judge(&unowed), Err("only admitted inputs are active"));
    // An input whose accept died with the process is not taken for the session's continuation, nor the reverse.
    let mut lost = vec![call(Call::Attach, Answer::Done)];
    lost.extend(op_completes(1, OpKind::Tool));
    lost.extend([
        Observation::Accept { submission: Submission::prompt(), answer: AcceptAnswer::Lost },
        Observation::Crash,
        Observation::Active { inputs: vec![1, 2], continuations: vec![2] },
        call(Call::Attach, Answer::Done),
        handed(1, &[2]),
    ]);
    assert_eq!(judge(&lost), Ok(()));
}

#[test]
fn a_derived_input_is_ended_not_replayed_by_a_crash() {
    // specs/input.md#derived: written like a durable input, but a restart ends it.
    let derived = Submission { derived: true, kind: Kind::ExternalEvent, waiter: false, ..Submission::prompt() };
    let history = vec![
        Observation::Accept { submission: derived, answer: AcceptAnswer::Accepted { input: 1, waiter: None } },
        Observation::Crash,
        Observation::Active { inputs: vec![], continuations: vec![] },
    ];
    assert_eq!(judge(&history), Ok(()));
    let mut replayed = history.clone();
    replayed[2] = Observation::Active { inputs: vec![1], continuations: vec![] };
    assert_eq!(judge(&replayed), Err("terminal states are absorbing"));
}

#[test]
fn a_run_that_expires_before_it_is_handed_out_fails_its_attempt() {
    // SPEC 3: "Inputs of a run that was prepared but never handed to the executor are ... requeued, never left
    // Staged"; past the deadline a run "counts as a failed attempt". Its start record was asked of the store, so the
    // attempt counts, whether that record lands before or after the expiry.
    let stage =
        |run: u64| [Observation::Staged { run, inputs: vec![1] }, Observation::Writing { write: Write::Lifecycle }];
    let mut history = vec![call(Call::Attach, Answer::Done), accepted(1, Some(1))];
    history.extend(stage(1));
    history.extend([Observation::DeadlinePassed { run: 1 }, written(Write::Lifecycle, true)]);
    let expired = history.clone();
    history.extend(stage(2));
    history.extend([written(Write::Lifecycle, true), handed(2, &[1]), reported(2, Report::Failed)]);
    // Its second attempt failed: out of attempts (max 2).
    history.push(resolved(1, Class::AbandonedWithError));
    assert_eq!(judge(&history), Ok(()));

    // The expired run is never handed out afterwards.
    let mut late = expired.clone();
    late.push(handed(1, &[1]));
    assert_eq!(judge(&late), Err("run ids are never reused"));
    // The expiry counted an attempt: a third hand-out exceeds the bound.
    let mut third = expired.clone();
    third.extend(stage(2));
    third.extend([written(Write::Lifecycle, true), handed(2, &[1]), reported(2, Report::Failed)]);
    third.extend(stage(3));
    third.extend([written(Write::Lifecycle, true), handed(3, &[1])]);
    assert_eq!(judge(&third), Err("a run holds only queued inputs"));
    // A second expiry before the hand-out is the last attempt.
    let mut twice = expired;
    twice.extend(stage(2));
    twice.extend([Observation::DeadlinePassed { run: 2 }, resolved(1, Class::AbandonedWithError)]);
    assert_eq!(judge(&twice), Ok(()));
    // With nothing staged, an unheld run does not expire.
    let nothing = [call(Call::Attach, Answer::Done), accepted(1, Some(1)), Observation::DeadlinePassed { run: 1 }];
    assert_eq!(judge(&nothing), Err("only the run in flight reports"));
}
