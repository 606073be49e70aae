//! A session's operations registry as the outside sees it (SPEC 2.4, 5, 6.9): the calls on it and their answers,
//! what watchers and wait_all callers are told, what a consumer reads from the completion feed, and the cursor a
//! restart reports.
//!
//! [`OpsSpec`] is part of [`crate::SessionSpec`]: the session's crashes, rebuilds, destroys and operations
//! writes reach it from there, so an unanswered operations write is followed as two histories like a lifecycle
//! write ([`crate::SessionSpecs`]).
//!
//! spec: specs/observable.md#operations

use std::collections::BTreeMap;

use crate::session::Deviation;

/// An operation, by the id its register call answered.
pub type OpRef = u64;

/// How an operation ended (SPEC 2.4).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum End {
    /// complete: the job produced a result.
    Completed,
    /// fail, or provisioning failed.
    Failed,
    /// cancel.
    Cancelled,
    /// Abandoned while still provisioning.
    Aborted,
    /// A retiring job finished winding down.
    Retired,
    /// The owner was terminated (terminate_owner, or the session destroyed).
    Terminated,
}

/// The sort of operation, as far as its rules go (SPEC 2.4; specs/operations.md#kinds).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum OpKind {
    /// A background tool call.
    Tool,
    /// A child session.
    Child,
    /// A capacity slot: it completes only with no result.
    Slot,
    /// A detached job: a running one outlives a restart.
    Detached,
}

/// A call on the registry.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum OpCall {
    /// register (a valid specification) of an operation of this kind.
    Register(OpKind),
    /// provisioning_succeeded.
    ProvisionOk(OpRef),
    /// provisioning_failed.
    ProvisionFailed(OpRef),
    /// abort_provisioning.
    Abort(OpRef),
    /// peer_ready.
    PeerReady(OpRef),
    /// report_progress.
    Progress(OpRef),
    /// complete, with a result.
    Complete(OpRef),
    /// complete with the empty result (release, for a capacity slot).
    Release(OpRef),
    /// fail.
    Fail(OpRef),
    /// cancel.
    Cancel(OpRef),
    /// request_retire.
    RequestRetire(OpRef),
    /// mark_retired.
    MarkRetired(OpRef),
    /// register_watcher.
    Watch(OpRef),
    /// wait_all over these operations.
    WaitAll(Vec<OpRef>),
    /// A wait_all future dropped before it resolved cancels its wait.
    CancelWait,
    /// collect_completed.
    Collect,
    /// acknowledge: the feed is consumed through this position.
    Acknowledge(u64),
    /// terminate_owner.
    TerminateOwner,
}

/// The registry's answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OpAnswer {
    /// register: the new operation's id.
    Registered(OpRef),
    /// Any other call taken.
    Done,
    /// Refused; nothing changed.
    Refused(OpRefused),
}

/// Why a call was refused, in SPEC's terms.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OpRefused {
    /// max_concurrent live operations.
    Limit,
    /// The completion feed has no room for one more end (acknowledge first).
    FeedFull,
    /// The owner was terminated.
    Terminated,
    /// The call does not fit the operation: unknown, already ended, wrong stage, a bad cursor, a wait conflict.
    Invalid,
    /// The session refused before the registry saw the call (it is being unregistered or was released).
    Session,
}

/// One entry of the completion feed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FeedItem {
    /// Its position.
    pub seq: u64,
    /// The operation that ended.
    pub op: OpRef,
    /// How.
    pub end: End,
}

/// What the outside of a registry sees.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum OpObservation {
    /// A call and its answer.
    Call {
        /// The call.
        call: OpCall,
        /// The answer.
        answer: OpAnswer,
    },
    /// A watcher was told how its operation ended, or (None) its registry went away first.
    Watched {
        /// The operation watched.
        op: OpRef,
        /// What it was told.
        end: Option<End>,
    },
    /// A wait_all resolved with each member's end, in the order the ids were given.
    WaitedAll {
        /// The members and their ends.
        ends: Vec<(OpRef, End)>,
    },
    /// A consumer read the completion feed after position `after`.
    FeedRead {
        /// The position the consumer read after.
        after: u64,
        /// What it read, in order.
        entries: Vec<FeedItem>,
    },
    /// A restart (or a prepare that rebuilt the session) reported the feed's acknowledged cursor.
    Cursor {
        /// The cursor.
        acknowledged: u64,
    },
}

/// The registry's bounds: reaching one is the only reason a register may be refused for room.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct OpsBounds {
    /// Most live operations at once (max_concurrent).
    pub live: usize,
    /// Most feed entries outstanding: unacknowledged ends plus one reserved per live operation.
    pub feed: usize,
    /// Most watchers waiting on one operation.
    pub watchers: usize,
    /// Most operations one wait_all names.
    pub wait_ids: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Stage {
    Provisioning,
    Running,
    Retiring,
    Ended(End),
}

/// An end not yet acknowledged.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct Pending {
    op: OpRef,
    end: End,
    /// Its kind wakes the owner and it is not a termination (specs/operations.md#kinds).
    waking: bool,
    /// A continuation made since covers it (not durable: a restart or a recover drops the continuation).
    covered: bool,
    /// The call that ended it, counted (only calls that end something count): ends of one call (an owner's termination) may come in any order among
    /// themselves, but after every end of an earlier call.
    call: u64,
}

/// What the registry holds as far as the outside can tell. The durable part is what a restart brings back.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
struct Registry {
    ops: BTreeMap<OpRef, Stage>,
    /// The kind each operation was registered with.
    kinds: BTreeMap<OpRef, OpKind>,
    /// Ends that wake the owner, counted as they happen.
    waking_ends: u64,
    pending: Vec<Pending>,
    acknowledged: u64,
    /// The highest feed position any read showed.
    seen_seq: u64,
    /// The position each end a read showed has (a position never changes, so this outlives the entry): an
    /// unacknowledged end's position, once shown, is read from here.
    seqs: BTreeMap<OpRef, u64>,
    terminated: bool,
    calls: u64,
    // ----- not durable: the callers of these died with their process -----
    watchers: BTreeMap<OpRef, u32>,
    wait: Option<Vec<OpRef>>,
    /// Waits that resolved and whose caller has not said so yet.
    waits_resolved: Vec<Vec<(OpRef, End)>>,
    /// Watchers of a registry a restart or a rebuild replaced, by operation: how many, and the end the operation
    /// had there (none if it had not ended). Their callers may still say what they were told.
    late_watchers: BTreeMap<OpRef, (u32, Option<End>)>,
    /// Waits of such a registry that had resolved.
    late_waits: Vec<Vec<(OpRef, End)>>,
    /// The last read showed every unacknowledged end (None: no read since the last end).
    read_complete: Option<bool>,
}

impl Registry {
    /// Where a read showed `op`'s end, if one did.
    fn seq_of(&self, op: OpRef) -> Option<u64> {
        self.seqs.get(&op).copied()
    }

    fn live(&self) -> usize {
        self.ops.values().filter(|s| !matches!(s, Stage::Ended(_))).count()
    }

    /// What a restart brings back (SPEC 5): ended records, the feed and its cursor, the terminated flag, and a
    /// running detached job (its job lives outside the process); other live operations died with their jobs, and so
    /// did every watcher and wait.
    fn recovered(&self) -> Registry {
        let kept = |op: &OpRef, stage: &Stage| {
            matches!(stage, Stage::Ended(_))
                || (self.kinds.get(op) == Some(&OpKind::Detached) && matches!(stage, Stage::Running | Stage::Retiring))
        };
        let ops: BTreeMap<OpRef, Stage> = self.ops.iter().filter(|(k, v)| kept(k, v)).map(|(k, v)| (*k, *v)).collect();
        let mut next = Registry {
            kinds: self.kinds.iter().filter(|(k, _)| ops.contains_key(k)).map(|(k, v)| (*k, *v)).collect(),
            ops,
            pending: self.pending.iter().map(|p| Pending { covered: false, ..*p }).collect(),
            waking_ends: self.waking_ends,
            acknowledged: self.acknowledged,
            seen_seq: self.seen_seq,
            seqs: self.seqs.clone(),
            terminated: self.terminated,
            calls: self.calls,
            ..Registry::default()
        };
        next.read_complete = None;
        next
    }

    /// `op` ended by a call of its own (an owner's termination ends several in one: see [`OpsSpec::terminate`]).
    fn end(&mut self, op: OpRef, end: End) {
        self.calls += 1;
        self.end_in_call(op, end);
    }

    fn end_in_call(&mut self, op: OpRef, end: End) {
        self.ops.insert(op, Stage::Ended(end));
        let waking = matches!(self.kinds.get(&op), Some(OpKind::Tool | OpKind::Detached)) && end != End::Terminated;
        self.pending.push(Pending { op, end, call: self.calls, waking, covered: false });
        if waking {
            self.waking_ends += 1;
        }
        self.read_complete = None;
        self.settle_wait();
    }

    /// The active wait resolves once every member ended, with each member's end.
    fn settle_wait(&mut self) {
        let Some(members) = &self.wait else { return };
        let ends: Option<Vec<(OpRef, End)>> = members
            .iter()
            .map(|m| match self.ops.get(m) {
                Some(Stage::Ended(e)) => Some((*m, *e)),
                _ => None,
            })
            .collect();
        if let Some(ends) = ends {
            self.waits_resolved.push(ends);
            self.wait = None;
        }
    }
}

/// The specification of one session's operations registry.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct OpsSpec {
    bounds: OpsBounds,
    store: bool,
    now: Registry,
    /// What the last operations write that landed recorded (None: none landed).
    stored: Option<Registry>,
    /// What the write asked of the store and not answered yet records.
    writing: Option<Registry>,
}

type Verdict = Result<(), Deviation>;

fn ensure(ok: bool, rule: &'static str, detail: impl FnOnce() -> String) -> Verdict {
    if ok { Ok(()) } else { Err(Deviation { rule, detail: detail() }) }
}

impl OpsSpec {
    /// An empty registry.
    #[must_use]
    pub fn new(bounds: OpsBounds, store: bool) -> OpsSpec {
        OpsSpec { bounds, store, now: Registry::default(), stored: None, writing: None }
    }

    /// How many ends that wake the owner this registry has seen (the session may make one continuation for each).
    pub(crate) fn waking_ends(&self) -> u64 {
        self.now.waking_ends
    }

    /// Whether an unacknowledged end that wakes the owner has no continuation made since: a quiescent session that
    /// admits inputs owes one (specs/operations.md#cursors).
    pub(crate) fn wake_owed(&self) -> bool {
        self.now.pending.iter().any(|p| p.waking && !p.covered)
    }

    /// A continuation was made: it covers every end seen so far.
    pub(crate) fn cover_wakes(&mut self) {
        for p in &mut self.now.pending {
            p.covered = true;
        }
    }

    /// The continuations made were dropped (a recover): every unacknowledged end is looked at again.
    pub(crate) fn uncover_wakes(&mut self) {
        for p in &mut self.now.pending {
            p.covered = false;
        }
    }

    /// Judges the next observation; `session_closed` says whether the session itself may refuse calls now (an
    /// unregister began). On a deviation the state is unspecified: the caller keeps its own copy.
    ///
    /// # Errors
    ///
    /// The rule the observation breaks.
    pub fn observe(&mut self, observation: &OpObservation, session_closed: bool) -> Result<(), Deviation> {
        match observation {
            OpObservation::Call { call, answer } => self.on_call(call, *answer, session_closed),
            OpObservation::Watched { op, end } => self.on_watched(*op, *end),
            OpObservation::WaitedAll { ends } => {
                let r = &mut self.now;
                let current = r.waits_resolved.iter().any(|w| w == ends);
                if let Some(late) = r.late_waits.iter().position(|w| w == ends).filter(|_| !current) {
                    r.late_waits.remove(late);
                    return Ok(());
                }
                let at = r.waits_resolved.iter().position(|w| w == ends);
                ensure(at.is_some(), "wait_all resolves iff all members ended", || {
                    format!("resolved {ends:?}; resolved waits {:?}, active {:?}", r.waits_resolved, r.wait)
                })?;
                r.waits_resolved.remove(at.expect("checked"));
                Ok(())
            }
            OpObservation::FeedRead { after, entries } => self.on_read(*after, entries),
            OpObservation::Cursor { acknowledged } => {
                ensure(*acknowledged == self.now.acknowledged, "the acknowledged cursor survives a restart", || {
                    format!("reported {acknowledged}, acknowledged and stored {}", self.now.acknowledged)
                })
            }
        }
    }

    fn on_call(&mut self, call: &OpCall, answer: OpAnswer, session_closed: bool) -> Verdict {
        let r = &mut self.now;
        let stage = |op: &OpRef| r.ops.get(op).copied();
        if answer == OpAnswer::Refused(OpRefused::Session) {
            return ensure(session_closed, "a call is refused only where SPEC refuses it", || {
                format!("{call:?} refused by an open session")
            });
        }
        if r.terminated || answer == OpAnswer::Refused(OpRefused::Terminated) {
            return ensure(
                r.terminated && answer == OpAnswer::Refused(OpRefused::Terminated),
                "a terminated registry refuses every call, and only it",
                || format!("{call:?} answered {answer:?}, terminated {}", r.terminated),
            );
        }
        // Whether SPEC 2.4 lets the call be taken now.
        let live = |s: Option<Stage>| matches!(s, Some(Stage::Provisioning | Stage::Running | Stage::Retiring));
        let allowed = match call {
            OpCall::Register(kind) => {
                let (live_n, feed_n) = (r.live(), r.pending.len());
                return match answer {
                    OpAnswer::Registered(op) => {
                        ensure(!r.ops.contains_key(&op), "an operation id is new", || format!("{op} again"))?;
                        ensure(
                            live_n < self.bounds.live && feed_n + live_n < self.bounds.feed,
                            "a register is taken only below the registry's bounds",
                            || format!("{live_n} live, {feed_n} unacknowledged ends, bounds {:?}", self.bounds),
                        )?;
                        r.ops.insert(op, Stage::Provisioning);
                        r.kinds.insert(op, *kind);
                        Ok(())
                    }
                    OpAnswer::Refused(OpRefused::Limit) => {
                        ensure(live_n >= self.bounds.live, "a register is refused for room only at a bound", || {
                            format!("limit with {live_n} live of {}", self.bounds.live)
                        })
                    }
                    OpAnswer::Refused(OpRefused::FeedFull) => ensure(
                        live_n + feed_n >= self.bounds.feed,
                        "a register is refused for room only at a bound",
                        || format!("feed full with {feed_n} unacknowledged + {live_n} live of {}", self.bounds.feed),
                    ),
                    other => Err(Deviation {
                        rule: "a call answers as SPEC says",
                        detail: format!("a valid register answered {other:?}"),
                    }),
                };
            }
            OpCall::ProvisionOk(op) | OpCall::ProvisionFailed(op) | OpCall::Abort(op) => {
                stage(op) == Some(Stage::Provisioning)
            }
            // spec: specs/operations.md#kinds: a capacity slot carries no result.
            OpCall::Complete(op) => {
                matches!(stage(op), Some(Stage::Running | Stage::Retiring)) && r.kinds.get(op) != Some(&OpKind::Slot)
            }
            OpCall::Release(op) | OpCall::Fail(op) => matches!(stage(op), Some(Stage::Running | Stage::Retiring)),
            OpCall::Cancel(op) | OpCall::Progress(op) => live(stage(op)),
            OpCall::RequestRetire(op) => stage(op) == Some(Stage::Running),
            OpCall::MarkRetired(op) => stage(op) == Some(Stage::Retiring),
            // Only a child session may announce a peer; whether it said it would is not in the vocabulary, so either
            // answer is allowed for a live one.
            OpCall::PeerReady(op) => {
                let child = r.kinds.get(op) == Some(&OpKind::Child);
                return ensure(
                    (live(stage(op)) && child) || answer != OpAnswer::Done,
                    "a call answers as SPEC says",
                    || format!("peer_ready of {op} ({:?}, {:?}) taken", stage(op), r.kinds.get(op)),
                );
            }
            // An ended record may have been evicted or collected: a watch of it may be refused.
            OpCall::Watch(op) => {
                let known = stage(op).is_some();
                if answer == OpAnswer::Done {
                    ensure(known, "a call answers as SPEC says", || format!("a watch of unknown {op} taken"))?;
                    *r.watchers.entry(*op).or_default() += 1;
                    return Ok(());
                }
                let full = r.watchers.get(op).copied().unwrap_or(0) as usize >= self.bounds.watchers;
                return ensure(!live(stage(op)) || full, "a call is refused only where SPEC refuses it", || {
                    format!("a watch of live {op} refused")
                });
            }
            OpCall::WaitAll(ids) => {
                let mut sorted = ids.clone();
                sorted.sort_unstable();
                sorted.dedup();
                let fine = r.wait.is_none()
                    && sorted.len() == ids.len()
                    && ids.len() <= self.bounds.wait_ids
                    && ids.iter().all(|id| stage(id).is_some());
                if answer == OpAnswer::Done {
                    ensure(fine, "one wait_all at a time, over known operations", || {
                        format!("wait_all {ids:?} taken; active {:?}", r.wait)
                    })?;
                    r.wait = Some(ids.clone());
                    // Members that all ended already resolve it at once.
                    r.settle_wait();
                    return Ok(());
                }
                // Ids evicted since may be unknown to the registry: a refusal is allowed unless all are live.
                return ensure(
                    !fine || !ids.iter().all(|id| live(stage(id))),
                    "a call is refused only where SPEC refuses it",
                    || format!("wait_all {ids:?} over live operations refused with no wait active"),
                );
            }
            OpCall::CancelWait => {
                // A cancel may come after its wait resolved (it is then refused): only a taken one is judged.
                if answer == OpAnswer::Done {
                    ensure(r.wait.is_some(), "a call answers as SPEC says", || "a cancel with no wait active".into())?;
                    r.wait = None;
                }
                return Ok(());
            }
            OpCall::Collect => true,
            OpCall::Acknowledge(through) => {
                let known = *through == r.acknowledged || r.pending.iter().any(|p| r.seq_of(p.op) == Some(*through));
                if answer == OpAnswer::Done {
                    ensure(*through >= r.acknowledged, "the acknowledged cursor never moves back", || {
                        format!("acknowledged through {through} after {}", r.acknowledged)
                    })?;
                    ensure(known, "an acknowledgement names a position the feed showed", || {
                        format!("through {through}; shown {:?}", r.pending)
                    })?;
                    // Everything ended by the call of the acknowledged entry or before it is consumed.
                    let last_call = r
                        .pending
                        .iter()
                        .filter(|p| r.seq_of(p.op).is_some_and(|s| s <= *through))
                        .map(|p| p.call)
                        .max();
                    let seqs = &r.seqs;
                    r.pending.retain(|p| match seqs.get(&p.op).copied() {
                        Some(seq) => seq > *through,
                        None => last_call.is_none_or(|c| p.call > c),
                    });
                    r.acknowledged = *through;
                    return Ok(());
                }
                return ensure(
                    *through < r.acknowledged || *through > r.seen_seq,
                    "a call is refused only where SPEC refuses it",
                    || format!("acknowledge through {through} refused; acknowledged {}", r.acknowledged),
                );
            }
            OpCall::TerminateOwner => true,
        };
        match answer {
            OpAnswer::Done => {
                ensure(allowed, "an operation moves only as SPEC 2.4 draws it", || {
                    let op = match call {
                        OpCall::ProvisionOk(op)
                        | OpCall::ProvisionFailed(op)
                        | OpCall::Abort(op)
                        | OpCall::Complete(op)
                        | OpCall::Release(op)
                        | OpCall::Fail(op)
                        | OpCall::Cancel(op)
                        | OpCall::Progress(op)
                        | OpCall::RequestRetire(op)
                        | OpCall::MarkRetired(op) => Some(*op),
                        _ => None,
                    };
                    format!("{call:?} taken while {:?}", op.map(|op| r.ops.get(&op).copied()))
                })?;
                self.take(call);
                Ok(())
            }
            OpAnswer::Refused(_) => ensure(!allowed, "a call is refused only where SPEC refuses it", || {
                format!("{call:?} refused ({answer:?})")
            }),
            OpAnswer::Registered(_) => Err(Deviation {
                rule: "a call answers as SPEC says",
                detail: format!("{call:?} answered with a new operation"),
            }),
        }
    }

    /// A call the registry took (already judged allowed).
    fn take(&mut self, call: &OpCall) {
        let r = &mut self.now;
        match call {
            OpCall::ProvisionOk(op) => {
                r.ops.insert(*op, Stage::Running);
            }
            OpCall::RequestRetire(op) => {
                r.ops.insert(*op, Stage::Retiring);
            }
            OpCall::ProvisionFailed(op) | OpCall::Fail(op) => r.end(*op, End::Failed),
            OpCall::Abort(op) => r.end(*op, End::Aborted),
            OpCall::Complete(op) | OpCall::Release(op) => r.end(*op, End::Completed),
            OpCall::Cancel(op) => r.end(*op, End::Cancelled),
            OpCall::MarkRetired(op) => r.end(*op, End::Retired),
            OpCall::TerminateOwner => self.terminate(),
            _ => {}
        }
    }

    /// The owner is terminated (terminate_owner, or the session destroyed): every live operation ends Terminated,
    /// and the registry refuses everything after.
    pub(crate) fn terminate(&mut self) {
        let r = &mut self.now;
        if r.terminated {
            return;
        }
        let live: Vec<OpRef> = r.ops.iter().filter(|(_, s)| !matches!(s, Stage::Ended(_))).map(|(op, _)| *op).collect();
        r.calls += 1;
        for op in live {
            r.end_in_call(op, End::Terminated);
        }
        r.terminated = true;
    }

    fn on_watched(&mut self, op: OpRef, end: Option<End>) -> Verdict {
        let r = &mut self.now;
        let stage = r.ops.get(&op).copied();
        let waiting = r.watchers.get(&op).copied().unwrap_or(0);
        if let Some((n, had)) = r.late_watchers.get_mut(&op).filter(|(n, _)| *n > 0) {
            if waiting == 0 && (end.is_none() || end == *had) {
                // A watcher of the replaced registry, told what that registry knew.
                *n -= 1;
                return Ok(());
            }
        }
        if end.is_none() && waiting == 0 {
            // A watcher of a registry that went away (a restart or a rebuild dropped it): told nothing.
            return Ok(());
        }
        ensure(waiting > 0, "watchers resolve exactly once", || format!("a watcher of {op} told {end:?}, none waits"))?;
        match end {
            Some(end) => ensure(stage == Some(Stage::Ended(end)), "a watcher learns how its operation ended", || {
                format!("watcher of {op} told {end:?}; the operation is {stage:?}")
            })?,
            None => {
                ensure(!matches!(stage, Some(Stage::Ended(_))), "a watcher learns how its operation ended", || {
                    format!("watcher of {op} told nothing; the operation is {stage:?}")
                })?
            }
        }
        *r.watchers.get_mut(&op).expect("waiting") -= 1;
        Ok(())
    }

    fn on_read(&mut self, after: u64, entries: &[FeedItem]) -> Verdict {
        let r = &mut self.now;
        let floor = after.max(r.acknowledged);
        let mut last: Option<(u64, u64)> = None;
        let mut shown = Vec::with_capacity(entries.len());
        for item in entries {
            ensure(item.seq > floor, "a feed read shows only ends not yet acknowledged", || {
                format!("{item:?} read after {after}, acknowledged {}", r.acknowledged)
            })?;
            let at = r.pending.iter().position(|p| p.op == item.op);
            let Some(at) = at else {
                return Err(Deviation {
                    rule: "a feed entry is an end that happened, once",
                    detail: format!("{item:?}; unacknowledged ends {:?}", r.pending),
                });
            };
            let pending = r.pending[at];
            ensure(pending.end == item.end, "a feed entry is an end that happened, once", || {
                format!("{item:?}, but {} ended {:?}", item.op, pending.end)
            })?;
            let shown_at = r.seq_of(item.op);
            ensure(shown_at.is_none_or(|s| s == item.seq), "an end keeps its feed position", || {
                format!("{item:?}, earlier shown at {shown_at:?}")
            })?;
            ensure(
                r.pending.iter().all(|p| p.op == item.op || r.seq_of(p.op) != Some(item.seq)),
                "an end keeps its feed position",
                || format!("{item:?}: position taken by another end"),
            )?;
            if let Some((seq, call)) = last {
                ensure(item.seq > seq && pending.call >= call, "the feed keeps the order of ends", || {
                    format!("{item:?} after position {seq}; ends {:?}", r.pending)
                })?;
            }
            last = Some((item.seq, pending.call));
            shown.push(at);
        }
        // Ends of earlier calls than the last one shown, not yet acknowledged and past `after`, must all be there.
        if let Some((_, last_call)) = last {
            let missing =
                r.pending.iter().enumerate().find(|(i, p)| {
                    p.call < last_call && !shown.contains(i) && r.seq_of(p.op).is_none_or(|s| s > floor)
                });
            ensure(missing.is_none(), "a feed read misses no end before the last it shows", || {
                format!("{:?} not read; read {entries:?}", missing.map(|(_, p)| p))
            })?;
        }
        for (item, at) in entries.iter().zip(&shown) {
            debug_assert_eq!(r.pending[*at].op, item.op);
            r.seqs.insert(item.op, item.seq);
            r.seen_seq = r.seen_seq.max(item.seq);
        }
        let complete = r
            .pending
            .iter()
            .all(|p| r.seq_of(p.op).is_some_and(|s| s <= floor) || entries.iter().any(|e| e.op == p.op));
        r.read_complete = Some(complete);
        Ok(())
    }

    /// An operations write was asked of the store.
    pub(crate) fn writing(&mut self) {
        self.writing = Some(self.now.recovered());
    }

    /// The store answered the operations write.
    pub(crate) fn written(&mut self, ok: bool) {
        let asked = self.writing.take().unwrap_or_else(|| self.now.recovered());
        if ok {
            self.stored = Some(asked);
        }
    }

    /// Whether an operations write has no answer yet.
    pub(crate) fn writing_unanswered(&self) -> bool {
        self.writing.is_some()
    }

    /// The process died (or a released session was made again from the store): what the store kept comes back.
    pub(crate) fn restart(&mut self) {
        self.writing = None;
        let known = std::mem::take(&mut self.now.seqs);
        let old = &self.now;
        let mut late_watchers = old.late_watchers.clone();
        for (op, n) in old.watchers.iter().filter(|(_, n)| **n > 0) {
            let had = match old.ops.get(op) {
                Some(Stage::Ended(end)) => Some(*end),
                _ => None,
            };
            late_watchers.entry(*op).or_insert((0, had)).0 += n;
        }
        let mut late_waits = old.late_waits.clone();
        late_waits.extend(old.waits_resolved.iter().cloned());
        let stored = self.stored.as_ref().filter(|_| self.store);
        self.now = stored.map(Registry::recovered).unwrap_or_default();
        // A read after the store's copy was made may have shown where its ends stand: the positions still hold. An
        // operation the copy does not know may have its id given again, so only the copy's own ends keep theirs.
        let r = &mut self.now;
        r.late_watchers = late_watchers;
        r.late_waits = late_waits;
        r.seqs = known.into_iter().filter(|(op, _)| matches!(r.ops.get(op), Some(Stage::Ended(_)))).collect();
        let shown = r.pending.iter().filter_map(|p| r.seqs.get(&p.op)).max().copied();
        r.seen_seq = r.seen_seq.max(shown.unwrap_or(0));
    }

    /// What must have happened once nothing more will: every watcher of an ended operation was told, every resolved
    /// wait was delivered, and a read since the last end showed every unacknowledged end.
    ///
    /// # Errors
    ///
    /// The rule that does not hold.
    pub fn quiescent(&self) -> Result<(), Deviation> {
        let r = &self.now;
        let untold = r.watchers.iter().find(|(op, n)| **n > 0 && matches!(r.ops.get(op), Some(Stage::Ended(_))));
        ensure(untold.is_none(), "quiescent implies watchers of ended operations told", || {
            format!("{untold:?} watchers of an ended operation wait")
        })?;
        ensure(r.waits_resolved.is_empty(), "quiescent implies resolved waits delivered", || {
            format!("{:?} never delivered", r.waits_resolved)
        })?;
        ensure(r.read_complete != Some(false), "a settled feed read shows every unacknowledged end", || {
            format!("unacknowledged {:?}", r.pending)
        })
    }
}
