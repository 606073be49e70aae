//! Renders one host's lease machine's (state x event) table into specs/lease.md.
//!
//! spec: specs/lease.md

mod common;

use burrow_core::lease::{HostId, LeaseConfig, LeaseEvent, LeaseMachine};
use burrow_core::{EpochId, Millis};

/// Every cell is applied at this moment (host time, ms).
const NOW: Millis = Millis(20_000);
const CONFIG: LeaseConfig = LeaseConfig { length_ms: 10_000, renew_every_ms: 3_000, margin_ms: 1_000 };

fn machine(steps: &[(u64, LeaseEvent)]) -> LeaseMachine {
    let mut machine = LeaseMachine::new(CONFIG);
    for (at, event) in steps {
        machine.apply(Millis(*at), *event).unwrap_or_else(|r| panic!("building a row: {event:?} refused: {r}"));
    }
    assert_eq!(machine.check(), Ok(()));
    machine
}

fn held(asked: u64) -> Vec<(u64, LeaseEvent)> {
    vec![(asked, LeaseEvent::Claim), (asked + 10, LeaseEvent::Claimed { epoch: EpochId(4) })]
}

fn states() -> Vec<(&'static str, LeaseMachine)> {
    let mut renewing = held(16_000);
    renewing.push((19_000, LeaseEvent::Tick));
    let mut lost = held(19_000);
    lost.push((19_500, LeaseEvent::WriteFenced { owner: Some(HostId(2)) }));
    vec![
        ("Unowned", machine(&[])),
        ("Claiming (asked at 19 s)", machine(&[(19_000, LeaseEvent::Claim)])),
        ("Held (asked at 19 s: fresh)", machine(&held(19_000))),
        ("Held (asked at 16 s: renewal due)", machine(&held(16_000))),
        ("Held (renewal asked at 19 s)", machine(&renewing)),
        ("Held (asked at 10 s: past its end)", machine(&held(10_000))),
        ("Lost (fenced)", machine(&lost)),
    ]
}

fn events() -> Vec<(&'static str, LeaseEvent)> {
    vec![
        ("Claim", LeaseEvent::Claim),
        ("Claimed e5", LeaseEvent::Claimed { epoch: EpochId(5) }),
        ("ClaimRefused (owner h2)", LeaseEvent::ClaimRefused { owner: Some(HostId(2)) }),
        ("ClaimFailed", LeaseEvent::ClaimFailed),
        ("Tick", LeaseEvent::Tick),
        ("Renewed", LeaseEvent::Renewed),
        ("RenewRefused (owner h2)", LeaseEvent::RenewRefused { owner: Some(HostId(2)) }),
        ("RenewFailed", LeaseEvent::RenewFailed),
        ("WriteFenced (owner h2)", LeaseEvent::WriteFenced { owner: Some(HostId(2)) }),
        ("Release", LeaseEvent::Release),
    ]
}

fn outcome(state: &LeaseMachine, event: &LeaseEvent) -> String {
    let mut machine = *state;
    match machine.apply(NOW, *event) {
        Err(refusal) => {
            assert_eq!(&machine, state, "a refusal changed the machine");
            format!("refused: {refusal}")
        }
        Ok(effects) => {
            assert_eq!(machine.check(), Ok(()));
            let after = if &machine == state { "unchanged".to_owned() } else { machine.to_string() };
            let drives = machine.drives(NOW).map_or(String::new(), |e| format!(" (drives at {e})"));
            if effects.is_empty() {
                format!("{after}{drives}")
            } else {
                let names: Vec<String> = effects.iter().map(|e| format!("{e:?}")).collect();
                format!("{after}{drives}; {}", names.join(", "))
            }
        }
    }
}

#[test]
fn lease_table_matches_the_spec_page() {
    let table = burrow_core::table::render("Lease transitions (one host, at 20 s)", &states(), &events(), outcome);
    common::check_spec_page("lease", &table);
}
