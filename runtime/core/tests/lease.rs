//! The lease: the store's row rules and one host's machine (specs/lease.md).

use burrow_core::lease::{
    Fenced, HostId, LeaseConfig, LeaseConfigError, LeaseEffect, LeaseEvent, LeaseMachine, LeasePhase, LeaseRefusal,
    LeaseRow, LossReason,
};
use burrow_core::{EpochId, Millis};

const A: HostId = HostId(1);
const B: HostId = HostId(2);
const CONFIG: LeaseConfig = LeaseConfig { length_ms: 10_000, renew_every_ms: 3_000, margin_ms: 1_000 };

#[test]
fn a_claim_takes_a_free_or_expired_row_and_bumps_the_epoch() {
    let row = LeaseRow::default();
    let a = row.claim(A, Millis(0), 10_000).expect("a free row");
    assert_eq!((a.owner, a.epoch, a.expires_at), (Some(A), EpochId(1), Millis(10_000)));
    let refused = a.claim(B, Millis(9_999), 10_000).expect_err("a live owner keeps it");
    assert_eq!(refused, Fenced { presented: EpochId(1), current: EpochId(1), owner: Some(A) });
    let b = a.claim(B, Millis(10_000), 10_000).expect("an expired lease is free");
    assert_eq!((b.owner, b.epoch), (Some(B), EpochId(2)));
    // The old owner's writes, renewals and releases are refused from now on.
    assert_eq!(b.admit_write(EpochId(1)).unwrap_err().owner, Some(B));
    assert!(b.renew(A, EpochId(1), Millis(10_001), 10_000).is_err());
    assert!(b.release(A, EpochId(1)).is_err());
    assert_eq!(b.admit_write(EpochId(2)), Ok(()));
}

#[test]
fn a_renewal_extends_only_a_live_lease_of_its_owner_and_never_shortens_it() {
    let a = LeaseRow::default().claim(A, Millis(0), 10_000).unwrap();
    let renewed = a.renew(A, EpochId(1), Millis(3_000), 10_000).unwrap();
    assert_eq!(renewed.expires_at, Millis(13_000));
    assert_eq!(renewed.renew(A, EpochId(1), Millis(4_000), 1_000).unwrap().expires_at, Millis(13_000));
    assert!(a.renew(A, EpochId(1), Millis(10_000), 10_000).is_err(), "an ended lease is not renewed");
    assert!(a.renew(B, EpochId(1), Millis(1), 10_000).is_err());
    let released = renewed.release(A, EpochId(1)).unwrap();
    assert_eq!((released.owner, released.epoch), (None, EpochId(1)));
    assert!(released.admit_write(EpochId(1)).is_err(), "a released session takes no write");
    assert_eq!(released.claim(B, Millis(5_000), 10_000).unwrap().epoch, EpochId(2));
}

#[test]
fn a_config_that_cannot_renew_in_time_is_refused() {
    assert_eq!(CONFIG.validate(), Ok(()));
    assert_eq!(LeaseConfig::default().validate(), Ok(()));
    let late = LeaseConfig { length_ms: 4_000, renew_every_ms: 3_000, margin_ms: 1_000 };
    assert!(matches!(late.validate(), Err(LeaseConfigError::RenewTooLate { .. })));
    assert_eq!(LeaseConfig { renew_every_ms: 0, ..CONFIG }.validate(), Err(LeaseConfigError::NoRenewalPeriod));
}

fn held_at(asked: u64, answered: u64) -> LeaseMachine {
    let mut host = LeaseMachine::new(CONFIG);
    assert_eq!(host.apply(Millis(asked), LeaseEvent::Claim), Ok(vec![LeaseEffect::SendClaim]));
    let effects = host.apply(Millis(answered), LeaseEvent::Claimed { epoch: EpochId(3) }).unwrap();
    assert_eq!(effects, [LeaseEffect::StartDriving { epoch: EpochId(3) }]);
    host
}

#[test]
fn a_host_reckons_its_lease_from_when_it_asked_less_the_margin() {
    // Asked at 0, answered at 2 s: the store may have granted it at 0, so the host drives until 9 s, not 11 s.
    let host = held_at(0, 2_000);
    assert_eq!(host.drives(Millis(8_999)), Some(EpochId(3)));
    assert_eq!(host.drives(Millis(9_000)), None, "the margin is given up");
    // An answer that arrives after the lease it grants must be given up is no lease.
    let mut late = LeaseMachine::new(CONFIG);
    late.apply(Millis(0), LeaseEvent::Claim).unwrap();
    assert_eq!(late.apply(Millis(9_500), LeaseEvent::Claimed { epoch: EpochId(3) }), Ok(vec![]));
    assert_eq!(late.drives(Millis(9_500)), None);
    assert!(matches!(late.phase(), LeasePhase::Lost { why: LossReason::Expired, .. }));
}

#[test]
fn a_holder_renews_on_time_and_stops_at_once_when_it_cannot() {
    let mut host = held_at(0, 10);
    assert_eq!(host.next_tick(), Some(Millis(3_000)));
    assert_eq!(host.apply(Millis(2_999), LeaseEvent::Tick), Ok(vec![]));
    assert_eq!(host.apply(Millis(3_000), LeaseEvent::Tick), Ok(vec![LeaseEffect::SendRenew { epoch: EpochId(3) }]));
    assert_eq!(host.apply(Millis(4_000), LeaseEvent::Tick), Ok(vec![]), "one renewal in flight at a time");
    assert_eq!(host.apply(Millis(4_100), LeaseEvent::Renewed), Ok(vec![]));
    assert_eq!(host.drives(Millis(11_999)), Some(EpochId(3)), "reckoned from the renewal's request at 3 s");
    // The next renewal fails (the store is unreachable): the lease still ends when it ends, and then the host stops.
    host.apply(Millis(6_000), LeaseEvent::Tick).unwrap();
    assert_eq!(host.apply(Millis(6_500), LeaseEvent::RenewFailed), Ok(vec![]));
    let at_end = host.apply(Millis(12_000), LeaseEvent::Tick).unwrap();
    assert_eq!(at_end, [LeaseEffect::StopDriving { why: LossReason::Expired }]);
    assert_eq!(host.drives(Millis(12_000)), None);
}

#[test]
fn a_fenced_write_or_a_refused_renewal_stops_the_host_and_names_the_new_owner() {
    let mut host = held_at(0, 10);
    let stop = host.apply(Millis(100), LeaseEvent::WriteFenced { owner: Some(B) }).unwrap();
    assert_eq!(stop, [LeaseEffect::StopDriving { why: LossReason::Fenced { owner: Some(B) } }]);
    assert_eq!(host.drives(Millis(101)), None);
    let before = host;
    assert_eq!(
        host.apply(Millis(102), LeaseEvent::WriteFenced { owner: Some(B) }),
        Err(LeaseRefusal::NotHeld { phase: burrow_core::lease::LeasePhaseName::Lost })
    );
    assert_eq!(host, before, "a refusal changes nothing");

    let mut host = held_at(0, 10);
    host.apply(Millis(3_000), LeaseEvent::Tick).unwrap();
    let stop = host.apply(Millis(3_001), LeaseEvent::RenewRefused { owner: None }).unwrap();
    assert_eq!(stop, [LeaseEffect::StopDriving { why: LossReason::Fenced { owner: None } }]);
    // It may claim again later.
    assert_eq!(host.apply(Millis(20_000), LeaseEvent::Claim), Ok(vec![LeaseEffect::SendClaim]));
}

#[test]
fn a_release_stops_driving_before_it_tells_the_store() {
    let mut host = held_at(0, 10);
    let effects = host.apply(Millis(50), LeaseEvent::Release).unwrap();
    assert_eq!(
        effects,
        [LeaseEffect::StopDriving { why: LossReason::Released }, LeaseEffect::SendRelease { epoch: EpochId(3) }]
    );
    assert_eq!(
        host.apply(Millis(60), LeaseEvent::Renewed),
        Err(LeaseRefusal::NoRequest { event: "Renewed", phase: burrow_core::lease::LeasePhaseName::Lost })
    );
}

/// Every interleaving of two hosts' requests over one row, answered by the row's rules, with store time and host
/// time equal: never do both hosts believe they drive, and a host left with an older epoch has its writes refused.
#[test]
fn two_hosts_never_drive_at_once_and_a_stale_epoch_never_writes() {
    let (mut seen, mut stale_refused) = (0usize, 0usize);
    for schedule in 0u32..(1 << 14) {
        let mut row = LeaseRow::default();
        let mut hosts = [(A, LeaseMachine::new(CONFIG), None::<u64>), (B, LeaseMachine::new(CONFIG), None)];
        let mut now = 0u64;
        for step in 0..14 {
            let who = ((schedule >> step) & 1) as usize;
            now += 2_500;
            let (id, machine, _) = &mut hosts[who];
            let effects =
                if machine.drives(Millis(now)).is_none() && !matches!(machine.phase(), LeasePhase::Held { .. }) {
                    machine.apply(Millis(now), LeaseEvent::Claim).unwrap_or_default()
                } else {
                    machine.apply(Millis(now), LeaseEvent::Tick).unwrap()
                };
            for effect in effects {
                let answer = match effect {
                    LeaseEffect::SendClaim => match row.claim(*id, Millis(now), CONFIG.length_ms) {
                        Ok(next) => {
                            row = next;
                            LeaseEvent::Claimed { epoch: next.epoch }
                        }
                        Err(f) => LeaseEvent::ClaimRefused { owner: f.owner },
                    },
                    LeaseEffect::SendRenew { epoch } => match row.renew(*id, epoch, Millis(now), CONFIG.length_ms) {
                        Ok(next) => {
                            row = next;
                            LeaseEvent::Renewed
                        }
                        Err(f) => LeaseEvent::RenewRefused { owner: f.owner },
                    },
                    _ => continue,
                };
                machine.apply(Millis(now), answer).unwrap();
            }
            let driving: Vec<_> = hosts.iter().filter_map(|(_, m, _)| m.drives(Millis(now))).collect();
            assert!(driving.len() <= 1, "with equal clocks the margin keeps two hosts from driving at once");
            // A host that held an older epoch (paused, or late to notice) is refused by the store itself.
            for (_, machine, _) in &hosts {
                let held = match machine.phase() {
                    LeasePhase::Held { epoch, .. } | LeasePhase::Lost { epoch, .. } => Some(epoch),
                    _ => None,
                };
                if let Some(epoch) = held.filter(|e| *e != row.epoch) {
                    assert!(row.admit_write(epoch).is_err(), "a stale epoch's write landed");
                    stale_refused += 1;
                }
            }
            seen += usize::from(!driving.is_empty());
        }
    }
    assert!(seen > 0 && stale_refused > 0, "the schedules reach driving hosts and stale epochs");
}

/// What joins the lease to the session is decided here, for the shell and the model alike: a lease gone stops the
/// session as moved (naming the new owner only when the store did), a run past the lease's end never starts, and a
/// fenced write tells the lease machine the session moved.
#[test]
fn a_lost_lease_stops_the_session_as_moved_and_a_run_past_it_never_starts() {
    use burrow_core::lease::{LossReason, after_fenced_write, before_run};
    use burrow_core::session::SessionEvent;
    let other = HostId(7);
    assert_eq!(
        LossReason::Fenced { owner: Some(other) }.session_event(),
        SessionEvent::OwnershipLost { owner: Some(other) }
    );
    assert_eq!(LossReason::Expired.session_event(), SessionEvent::OwnershipLost { owner: None });
    assert_eq!(LossReason::Released.session_event(), SessionEvent::OwnershipLost { owner: None });
    assert_eq!(before_run(true), None, "a host that still drives gives the run to its executor");
    assert_eq!(before_run(false), Some(SessionEvent::OwnershipLost { owner: None }));
    assert_eq!(after_fenced_write(Some(other)), LeaseEvent::WriteFenced { owner: Some(other) });
}
