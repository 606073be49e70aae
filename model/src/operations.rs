//! The operations model: burrow-core's `OperationsRegistry` (SPEC 2.4, specs/operations.md) under every event,
//! with small limits so that the concurrency limit, retention and eviction, watchers, wait_all and the feed are all
//! reached. Beside it runs the observable specification of a registry (`burrow_spec::OpsSpec`), fed what callers,
//! watchers, wait_all and a feed consumer (reading after every step) saw.

use std::collections::{BTreeMap, BTreeSet};

use burrow_core::ids::{Millis, OperationId, RunId};
use burrow_core::operations::{
    CompletionSeq, OpEffect, OpEvent, OpRefusal, OpResult, OperationKind, OperationSpec, OperationsRegistry, OpsConfig,
    WaitId, WatcherId,
};
use burrow_core::protocol::Refusal;
use burrow_core::session::Effect;
use burrow_spec::{FeedItem, Observation, OpObservation, OpsBounds, OpsSpec};
use stateright::{Model, Property};

use crate::observe::{op_call, op_end};
use crate::{NO_PANIC, contained};

/// The property the specification's verdict is reported under (the session model's name for it).
pub const SPEC_HOLDS: &str = "every observation is allowed by the specification";
/// The specification's liveness: every state of this model is settled (nothing runs between steps).
pub const SPEC_SETTLED: &str = "at quiescence the specification's liveness holds";

/// One step.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum OpAction {
    /// Register an operation of this kind (a child session expects a peer).
    Register(OperationKind),
    /// A capacity slot's work is done: complete it with the empty result.
    Release(u64),
    /// Provisioning succeeded.
    Provisioned(u64),
    /// Provisioning failed.
    ProvisioningFailed(u64),
    /// The peer channel is ready.
    PeerReady(u64),
    /// Complete.
    Complete(u64),
    /// Fail.
    Fail(u64),
    /// Cancel.
    Cancel(u64),
    /// Abort provisioning.
    Abort(u64),
    /// Request retirement.
    RequestRetire(u64),
    /// Retirement finished.
    MarkRetired(u64),
    /// Register a watcher.
    Watch(u64),
    /// wait_all over every operation registered so far.
    WaitAll,
    /// Drop the wait_all future.
    CancelWait,
    /// Collect ended records.
    Collect,
    /// Acknowledge the whole feed.
    Acknowledge,
    /// Terminate the owner.
    TerminateOwner,
}

/// What the world remembers.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct OpEnv {
    /// Operations registered so far.
    pub registered: u64,
    /// Watchers: their operation and answers received.
    pub watchers: BTreeMap<WatcherId, (OperationId, u8)>,
    /// Ends reported per operation.
    pub ended: BTreeMap<OperationId, u8>,
    /// The wait in flight: its members, whether it resolved, whether it was cancelled.
    pub wait: Option<(WaitId, Vec<OperationId>, bool, bool)>,
    /// Waits started so far.
    pub waits: u8,
    /// An eviction hit a live record.
    pub evicted_live: bool,
    /// Some record was evicted.
    pub evicted: bool,
    /// A watcher registered after the end resolved at once.
    pub late_watcher_resolved: bool,
    /// The concurrency limit refused a registration.
    pub limit_refused: bool,
    /// Watchers registered.
    pub watches: u8,
    /// Operations ended while the wait was active, by id.
    pub ended_set: BTreeSet<OperationId>,
    /// The action during which the checked code panicked, and the panic's message.
    pub panicked: Option<String>,
    /// The feed consumer's cursor: the position it last acknowledged through.
    pub cursor: u64,
    /// The first observation the specification did not allow, and why.
    pub deviation: Option<String>,
}

/// The registry and its world.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct OpWorld {
    /// burrow-core's registry.
    pub registry: OperationsRegistry,
    /// The world.
    pub env: OpEnv,
    /// The specification of what the outside saw.
    pub spec: OpsSpec,
}

/// The operations model.
#[derive(Clone, Debug)]
pub struct OperationsModel {
    /// Operations registered at most.
    pub operations: u64,
    /// Watchers registered at most.
    pub watchers: u8,
    /// The registry's limits.
    pub config: OpsConfig,
}

impl OperationsModel {
    fn apply(&self, world: &mut OpWorld, event: OpEvent) -> Option<Vec<OpEffect>> {
        let taken = world.registry.apply(Millis(0), event.clone());
        match taken {
            Ok(effects) => {
                let wrapped: Vec<Effect> = effects.iter().cloned().map(Effect::Operation).collect();
                Self::judge(world, &op_call(&event, Ok(&wrapped)));
                Some(effects)
            }
            Err(refusal) => {
                let limit = matches!(refusal, OpRefusal::LimitReached { .. });
                Self::judge(world, &op_call(&event, Err(&Refusal::Operations(refusal))));
                if limit {
                    world.env.limit_refused = true;
                    return Some(Vec::new());
                }
                // A refusal the specification allows changes nothing; one it does not is a state of its own.
                world.env.deviation.is_some().then(Vec::new)
            }
        }
    }

    /// Feeds one observation to the specification; the first it does not allow is kept, and nothing after it.
    fn judge(world: &mut OpWorld, observation: &Observation) {
        if world.env.deviation.is_some() {
            return;
        }
        let Observation::Op(observation) = observation else { return };
        if let Err(deviation) = world.spec.observe(observation, false) {
            world.env.deviation = Some(format!("{observation:?}: {deviation}"));
        }
    }

    /// What watchers, a wait_all caller and the feed's consumer see after a step: each resolution, then a read of
    /// the feed after the consumer's cursor.
    fn tell(world: &mut OpWorld, effects: &[OpEffect]) {
        for effect in effects {
            match effect {
                OpEffect::ResolveWatchers { op, watchers, outcome } => {
                    for _ in watchers {
                        let seen = OpObservation::Watched { op: op.0, end: Some(op_end(outcome)) };
                        Self::judge(world, &Observation::Op(seen));
                    }
                }
                OpEffect::ResolveWaitAll { outcomes, .. } => {
                    let ends = outcomes.iter().map(|(op, outcome)| (op.0, op_end(outcome))).collect();
                    Self::judge(world, &Observation::Op(OpObservation::WaitedAll { ends }));
                }
                OpEffect::FeedAcknowledged { through, .. } => world.env.cursor = through.0,
                _ => {}
            }
        }
        let after = world.env.cursor;
        let entries = world
            .registry
            .feed_since(CompletionSeq(after))
            .map(|e| FeedItem { seq: e.seq.0, op: e.op.0, end: op_end(&e.outcome) })
            .collect();
        Self::judge(world, &Observation::Op(OpObservation::FeedRead { after, entries }));
    }

    fn observe(world: &mut OpWorld, effects: &[OpEffect]) {
        let env = &mut world.env;
        for effect in effects {
            match effect {
                OpEffect::WatcherRegistered { op, watcher } => {
                    env.watchers.insert(*watcher, (*op, 0));
                }
                OpEffect::ResolveWatchers { watchers, .. } => {
                    for watcher in watchers {
                        if let Some((_, received)) = env.watchers.get_mut(watcher) {
                            *received += 1;
                        }
                    }
                }
                OpEffect::OperationEnded { op, .. } => {
                    *env.ended.entry(*op).or_default() += 1;
                    env.ended_set.insert(*op);
                }
                OpEffect::WaitStarted { wait, .. } => {
                    let members = (1..=env.registered).map(OperationId).collect();
                    env.wait = Some((*wait, members, false, false));
                    env.waits += 1;
                }
                OpEffect::ResolveWaitAll { wait, .. } => {
                    if let Some((w, _, resolved, _)) = env.wait.as_mut() {
                        if w == wait {
                            *resolved = true;
                        }
                    }
                }
                OpEffect::WaitCancelled { wait } => {
                    if let Some((w, _, _, cancelled)) = env.wait.as_mut() {
                        if w == wait {
                            *cancelled = true;
                        }
                    }
                }
                OpEffect::Evicted { op } => {
                    env.evicted = true;
                    if !env.ended.contains_key(op) {
                        env.evicted_live = true;
                    }
                }
                _ => {}
            }
        }
    }
}

impl Model for OperationsModel {
    type State = OpWorld;
    type Action = OpAction;

    fn init_states(&self) -> Vec<OpWorld> {
        let bounds = OpsBounds {
            live: self.config.max_concurrent,
            feed: self.config.feed_max,
            watchers: burrow_core::operations::WATCHERS_PER_OPERATION_MAX,
            wait_ids: burrow_core::operations::WAIT_ALL_IDS_MAX,
        };
        vec![OpWorld {
            registry: OperationsRegistry::new(self.config),
            env: OpEnv::default(),
            spec: OpsSpec::new(bounds, false),
        }]
    }

    fn actions(&self, world: &OpWorld, actions: &mut Vec<OpAction>) {
        if world.env.panicked.is_some() || world.env.deviation.is_some() {
            return;
        }
        if world.env.registered < self.operations {
            // A detached job follows the background tool's rules inside the registry (they differ only across a
            // restart and in whom they wake, which the session model explores), so it is not drawn here.
            actions.extend(
                [OperationKind::BackgroundTool, OperationKind::ChildSession, OperationKind::CapacitySlot]
                    .map(OpAction::Register),
            );
        }
        for id in 1..=world.env.registered {
            actions.extend([
                OpAction::Provisioned(id),
                OpAction::ProvisioningFailed(id),
                OpAction::PeerReady(id),
                OpAction::Complete(id),
                OpAction::Fail(id),
                OpAction::Cancel(id),
                OpAction::Abort(id),
                OpAction::RequestRetire(id),
                OpAction::MarkRetired(id),
            ]);
            if world.env.watches < self.watchers {
                actions.push(OpAction::Watch(id));
            }
            let slot = world.registry.snapshot(OperationId(id), Millis(0)).map(|s| s.kind);
            if slot == Some(OperationKind::CapacitySlot) {
                actions.push(OpAction::Release(id));
            }
        }
        if world.env.registered > 0 && world.env.waits < 1 {
            actions.push(OpAction::WaitAll);
        }
        if world.env.wait.as_ref().is_some_and(|(_, _, resolved, cancelled)| !resolved && !cancelled) {
            actions.push(OpAction::CancelWait);
        }
        actions.extend([OpAction::Collect, OpAction::Acknowledge, OpAction::TerminateOwner]);
    }

    fn next_state(&self, last: &OpWorld, action: OpAction) -> Option<OpWorld> {
        contained(|| self.step(last, action)).unwrap_or_else(|message| {
            let mut world = last.clone();
            world.env.panicked = Some(format!("{action:?} panicked: {message}"));
            Some(world)
        })
    }

    fn properties(&self) -> Vec<Property<Self>> {
        operations_properties()
    }
}

impl OperationsModel {
    fn step(&self, last: &OpWorld, action: OpAction) -> Option<OpWorld> {
        let mut world = last.clone();
        let op = |id: u64| OperationId(id);
        let event = match action {
            OpAction::Register(kind) => {
                let spec = OperationSpec::new(kind, "op");
                OpEvent::Register { spec: if kind.supports_peer() { spec.expecting_peer() } else { spec } }
            }
            OpAction::Release(id) => OpEvent::Complete { op: op(id), result: OpResult::empty() },
            OpAction::Provisioned(id) => OpEvent::ProvisioningSucceeded { op: op(id) },
            OpAction::ProvisioningFailed(id) => OpEvent::ProvisioningFailed { op: op(id), error: "e".into() },
            OpAction::PeerReady(id) => OpEvent::PeerReady { op: op(id), peer: "p".into() },
            OpAction::Complete(id) => {
                OpEvent::Complete { op: op(id), result: OpResult { content: "c".into(), is_error: false } }
            }
            OpAction::Fail(id) => OpEvent::Fail { op: op(id), error: "e".into() },
            OpAction::Cancel(id) => OpEvent::Cancel { op: op(id), reason: None },
            OpAction::Abort(id) => OpEvent::AbortProvisioning { op: op(id), reason: None },
            OpAction::RequestRetire(id) => OpEvent::RequestRetire { op: op(id) },
            OpAction::MarkRetired(id) => OpEvent::MarkRetired { op: op(id) },
            OpAction::Watch(id) => {
                world.env.watches += 1;
                OpEvent::RegisterWatcher { op: op(id) }
            }
            OpAction::WaitAll => {
                OpEvent::WaitAll { run: RunId(1), ids: (1..=world.env.registered).map(OperationId).collect() }
            }
            OpAction::CancelWait => OpEvent::CancelWait { wait: world.env.wait.as_ref()?.0 },
            OpAction::Collect => OpEvent::CollectCompleted,
            OpAction::Acknowledge => OpEvent::AcknowledgeFeed { through: world.registry.completion_seq_last() },
            OpAction::TerminateOwner => OpEvent::TerminateOwner { reason: "t".into() },
        };
        let watching_ended = matches!(action, OpAction::Watch(id) if world.env.ended.contains_key(&op(id)));
        let effects = self.apply(&mut world, event)?;
        if matches!(action, OpAction::Register(_)) && effects.iter().any(|e| matches!(e, OpEffect::Registered { .. })) {
            world.env.registered += 1;
        }
        Self::observe(&mut world, &effects);
        Self::tell(&mut world, &effects);
        if watching_ended && effects.iter().any(|e| matches!(e, OpEffect::ResolveWatchers { .. })) {
            world.env.late_watcher_resolved = true;
        }
        if world == *last {
            return None;
        }
        Some(world)
    }
}

fn operations_properties() -> Vec<Property<OperationsModel>> {
    vec![
        Property::always(NO_PANIC, |_, w: &OpWorld| w.env.panicked.is_none()),
        Property::always(SPEC_HOLDS, |_, w: &OpWorld| w.env.deviation.is_none()),
        Property::always(SPEC_SETTLED, |_, w: &OpWorld| w.spec.quiescent().is_ok()),
        Property::always("registry invariants hold", |_, w: &OpWorld| w.registry.check().is_ok()),
        Property::always("an operation ends only once", |_, w: &OpWorld| w.env.ended.values().all(|n| *n <= 1)),
        Property::always("watchers resolve exactly once", |_, w: &OpWorld| {
            w.env.watchers.values().all(|(op, received)| {
                let ended = w.env.ended.contains_key(op);
                *received <= 1 && (!ended || *received == 1)
            })
        }),
        Property::always("eviction only of terminal records", |_, w: &OpWorld| !w.env.evicted_live),
        Property::always("wait_all resolves iff all members are terminal", |_, w: &OpWorld| match &w.env.wait {
            Some((_, members, resolved, cancelled)) => {
                let all_ended = members.iter().all(|m| w.env.ended.contains_key(m));
                if *resolved { all_ended } else { *cancelled || !all_ended }
            }
            None => true,
        }),
        Property::sometimes("wait_all resolves", |_, w: &OpWorld| w.env.wait.as_ref().is_some_and(|(_, _, r, _)| *r)),
        Property::sometimes("an ended record is evicted", |_, w: &OpWorld| w.env.evicted),
        Property::sometimes("a late watcher resolves at once", |_, w: &OpWorld| w.env.late_watcher_resolved),
        Property::sometimes("the concurrency limit refuses", |_, w: &OpWorld| w.env.limit_refused),
        Property::sometimes("a capacity slot is released", |_, w: &OpWorld| {
            w.registry.list(Millis(0)).iter().any(|s| {
                s.kind == OperationKind::CapacitySlot && s.status == burrow_core::operations::OpStatus::Completed
            })
        }),
    ]
}
