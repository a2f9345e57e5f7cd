//! The room state machine fed random command sequences (issue 17): bridges registering, failing
//! and draining, participants joining, confirming, dropping and leaving, moderators kicking and
//! ending rooms, time passing. After every command:
//! - no command seats anyone on a bridge already at its capacity (a bridge that re-registers with a
//!   smaller one keeps who it holds), nor more of one room than its per-room limit;
//! - the bridges' seat counts are the seats the rooms hold, and the participant index matches the
//!   rooms (no participant in two rooms, none missing);
//! - a refused command changed nothing;
//!
//! and the whole run is deterministic (the same commands give the same state, as every Raft
//! replica needs) and survives a snapshot round trip.
//! `PROPTEST_CASES=20000 cargo test -p bridgemesh-control --test room_state_machine_holds_its_invariants`
//! runs the long version; CI runs proptest's default of 256 sequences.

use bridgemesh_control::state::{BridgeStatus, Command, ControlState, JoinRequestRecord, Role};
use bridgemesh_proto::bridge_session::BridgeRegistration;
use bridgemesh_proto::{BridgeId, ParticipantId, RegionId, RoomId};
use proptest::prelude::*;
use std::collections::BTreeMap;

const BRIDGES: [&str; 2] = ["b1", "b2"];
const ROOMS: [&str; 2] = ["r1", "r2"];
const PARTICIPANTS: [&str; 6] = ["p1", "p2", "p3", "p4", "p5", "p6"];

fn bridge_id(index: usize) -> BridgeId {
    BridgeId::new(BRIDGES[index]).unwrap()
}
fn room(index: usize) -> RoomId {
    RoomId::new(ROOMS[index]).unwrap()
}
fn participant(index: usize) -> ParticipantId {
    ParticipantId::new(PARTICIPANTS[index]).unwrap()
}

/// One step: indices into the pools above, and a time offset that only moves forward.
#[derive(Debug, Clone)]
enum Step {
    Register {
        bridge: usize,
        capacity: u32,
    },
    Status {
        bridge: usize,
        status: usize,
    },
    Drain {
        bridge: usize,
    },
    Undrain {
        bridge: usize,
    },
    Join {
        room: usize,
        participant: usize,
        bridge: usize,
        moderator: bool,
    },
    Confirm {
        room: usize,
        participant: usize,
        bridge: usize,
    },
    Unconfirm {
        room: usize,
        participant: usize,
        bridge: usize,
    },
    Leave {
        room: usize,
        participant: usize,
        bridge: Option<usize>,
    },
    Kick {
        room: usize,
        by: usize,
        participant: usize,
    },
    EndRoom {
        room: usize,
        by: usize,
    },
    Tick {
        advance_ms: u64,
    },
}

fn step() -> impl Strategy<Value = Step> {
    let b = 0..BRIDGES.len();
    let r = 0..ROOMS.len();
    let p = 0..PARTICIPANTS.len();
    prop_oneof![
        1 => (b.clone(), 1u32..6).prop_map(|(bridge, capacity)| Step::Register { bridge, capacity }),
        1 => (b.clone(), 0usize..3).prop_map(|(bridge, status)| Step::Status { bridge, status }),
        1 => b.clone().prop_map(|bridge| Step::Drain { bridge }),
        1 => b.clone().prop_map(|bridge| Step::Undrain { bridge }),
        4 => (r.clone(), p.clone(), b.clone(), any::<bool>())
            .prop_map(|(room, participant, bridge, moderator)| Step::Join { room, participant, bridge, moderator }),
        3 => (r.clone(), p.clone(), b.clone())
            .prop_map(|(room, participant, bridge)| Step::Confirm { room, participant, bridge }),
        1 => (r.clone(), p.clone(), b.clone())
            .prop_map(|(room, participant, bridge)| Step::Unconfirm { room, participant, bridge }),
        2 => (r.clone(), p.clone(), proptest::option::of(b.clone()))
            .prop_map(|(room, participant, bridge)| Step::Leave { room, participant, bridge }),
        1 => (r.clone(), p.clone(), p.clone()).prop_map(|(room, by, participant)| Step::Kick { room, by, participant }),
        1 => (r.clone(), p.clone()).prop_map(|(room, by)| Step::EndRoom { room, by }),
        2 => (0u64..90_000).prop_map(|advance_ms| Step::Tick { advance_ms }),
    ]
}

fn command(step: &Step, now_ms: &mut u64) -> Command {
    let at_ms = *now_ms;
    match *step {
        Step::Register { bridge, capacity } => Command::RegisterBridge {
            registration: BridgeRegistration {
                id: bridge_id(bridge),
                region: RegionId::new("local").unwrap(),
                location: None,
                signaling_url: format!("ws://{}", BRIDGES[bridge]),
                media_addresses: Vec::new(),
                turn_urls: Vec::new(),
                capacity,
                max_participants_per_room: 3,
                cascade_addr: None,
            },
            instance: Some("instance".into()),
            at_ms,
        },
        Step::Status { bridge, status } => Command::SetBridgeStatus {
            bridge: bridge_id(bridge),
            status: [BridgeStatus::Up, BridgeStatus::Unreachable, BridgeStatus::Down][status],
            at_ms,
        },
        Step::Drain { bridge } => Command::Drain {
            bridge: bridge_id(bridge),
            grace_ms: 10_000,
            by_operator: true,
            at_ms,
        },
        Step::Undrain { bridge } => Command::Undrain {
            bridge: bridge_id(bridge),
            at_ms,
        },
        Step::Join {
            room: r,
            participant: p,
            bridge,
            moderator,
        } => {
            let guest = JoinRequestRecord::guest(room(r), participant(p), bridge_id(bridge), at_ms);
            Command::Join(if moderator {
                JoinRequestRecord {
                    role: Role::Moderator,
                    user_id: Some(format!("user-{p}")),
                    ..guest
                }
            } else {
                guest
            })
        }
        Step::Confirm {
            room: r,
            participant: p,
            bridge,
        } => Command::Confirm {
            room: room(r),
            participant: participant(p),
            bridge: Some(bridge_id(bridge)),
        },
        Step::Unconfirm {
            room: r,
            participant: p,
            bridge,
        } => Command::Unconfirm {
            room: room(r),
            participant: participant(p),
            bridge: bridge_id(bridge),
            at_ms,
        },
        Step::Leave {
            room: r,
            participant: p,
            bridge,
        } => Command::Leave {
            room: room(r),
            participant: participant(p),
            bridge: bridge.map(bridge_id),
        },
        Step::Kick {
            room: r,
            by,
            participant: p,
        } => Command::Kick {
            room: room(r),
            by: participant(by),
            participant: participant(p),
            at_ms,
        },
        Step::EndRoom { room: r, by } => Command::EndRoom {
            room: room(r),
            by: participant(by),
        },
        Step::Tick { advance_ms } => {
            *now_ms += advance_ms;
            Command::Tick {
                now_ms: *now_ms,
                room_grace_ms: 30_000,
                unconfirmed_join_ttl_ms: None,
            }
        }
    }
}

fn seats(state: &ControlState) -> BTreeMap<BridgeId, usize> {
    let mut seats = BTreeMap::new();
    for room in state.rooms.values() {
        for (bridge, count) in room.seats_per_bridge() {
            *seats.entry(bridge.clone()).or_default() += count;
        }
    }
    seats
}

fn check_invariants(state: &ControlState, before: &ControlState) -> Result<(), TestCaseError> {
    let seated_before = seats(before);
    let mut seats: BTreeMap<&BridgeId, usize> = BTreeMap::new();
    let mut indexed = 0;
    for (room_id, room) in &state.rooms {
        for (bridge, count) in room.seats_per_bridge() {
            *seats.entry(bridge).or_default() += count;
            let record = state.bridges.get(bridge);
            prop_assert!(
                record.is_some(),
                "{room_id} seats participants on unknown bridge {bridge}"
            );
            let per_room = record.unwrap().max_participants_per_room as usize;
            prop_assert!(
                count <= per_room,
                "{room_id} holds {count} seats on {bridge} (limit {per_room})"
            );
        }
        for id in room.participants.keys() {
            indexed += 1;
            prop_assert_eq!(state.participant_rooms.get(id), Some(room_id), "index of {}", id);
        }
    }
    prop_assert_eq!(
        indexed,
        state.participant_rooms.len(),
        "participant index has strays"
    );
    for (bridge, record) in &state.bridges {
        let held = seats.get(bridge).copied().unwrap_or(0);
        let held_before = seated_before.get(bridge).copied().unwrap_or(0);
        prop_assert!(
            held <= held_before || held <= record.capacity as usize,
            "{bridge} went from {held_before} to {held} seats past its capacity {}",
            record.capacity
        );
        let counted = state.bridge_load.get(bridge).copied().unwrap_or(0) as usize;
        prop_assert_eq!(
            counted,
            held,
            "bridge_load of {} disagrees with the rooms",
            bridge
        );
    }
    Ok(())
}

fn run(steps: &[Step]) -> Result<ControlState, TestCaseError> {
    let mut state = ControlState::default();
    let mut now_ms = 1_000;
    for step in steps {
        let command = command(step, &mut now_ms);
        let before = state.clone();
        if let Err(error) = state.apply(command.clone()) {
            prop_assert_eq!(
                &state,
                &before,
                "{:?} was refused ({}) but changed the state",
                command,
                error
            );
        }
        check_invariants(&state, &before)?;
    }
    Ok(state)
}

proptest! {
    #[test]
    fn every_command_sequence_keeps_the_invariants(steps in proptest::collection::vec(step(), 1..60)) {
        let state = run(&steps)?;
        let again = run(&steps)?;
        prop_assert_eq!(&state, &again, "the same commands gave another state");
        let snapshot = serde_json::to_vec(&state).unwrap();
        let restored: ControlState = serde_json::from_slice(&snapshot).unwrap();
        prop_assert_eq!(&restored, &state, "a snapshot round trip changed the state");
    }
}
