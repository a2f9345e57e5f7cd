use super::*;
use crate::state::{Command, JoinRequestRecord};
use bridgemesh_proto::RegionId;
use bridgemesh_proto::bridge_session::{BridgeRegistration, BridgeStatus};

fn bid(name: &str) -> BridgeId {
    BridgeId::new(name).unwrap()
}

fn hosted(room: &str, participant: &str) -> HostedParticipant {
    HostedParticipant {
        room: RoomId::new(room).unwrap(),
        participant: ParticipantId::new(participant).unwrap(),
    }
}

fn state_with_two_bridges() -> ControlState {
    let mut state = ControlState::default();
    for id in ["b1", "b2"] {
        state
            .apply(Command::RegisterBridge {
                registration: BridgeRegistration {
                    id: bid(id),
                    region: RegionId::new("eu").unwrap(),
                    location: None,
                    signaling_url: format!("ws://{id}"),
                    media_addresses: vec![],
                    turn_urls: vec![],
                    capacity: 10,
                    max_participants_per_room: 10,
                    cascade_addr: None,
                },
                instance: Some(id.into()),
                at_ms: 0,
            })
            .unwrap();
    }
    state
}

fn join(state: &mut ControlState, room: &str, participant: &str, bridge: &str) {
    state
        .apply(Command::Join(JoinRequestRecord::guest(
            RoomId::new(room).unwrap(),
            ParticipantId::new(participant).unwrap(),
            bid(bridge),
            0,
        )))
        .unwrap();
}

fn confirm(state: &mut ControlState, room: &str, participant: &str) {
    let h = hosted(room, participant);
    state
        .apply(Command::Confirm {
            room: h.room,
            participant: h.participant,
            bridge: None,
        })
        .unwrap();
}

#[test]
fn reconcile_tells_a_returning_bridge_what_changed_while_it_was_away() {
    let mut state = state_with_two_bridges();
    join(&mut state, "r", "placed-here", "b1");
    join(&mut state, "r", "connected-here", "b1");
    confirm(&mut state, "r", "connected-here");
    join(&mut state, "r", "left-meanwhile", "b1");
    confirm(&mut state, "r", "left-meanwhile");
    join(&mut state, "r", "moved-away", "b2");
    let on_bridge: BTreeSet<_> = [
        hosted("r", "placed-here"),
        hosted("r", "connected-here"),
        hosted("r", "moved-away"),
        hosted("r", "unknown"),
        hosted("gone-room", "x"),
        hosted("gone-room", "y"),
    ]
    .into_iter()
    .collect();
    let plan = reconcile(&state, &bid("b1"), &on_bridge);
    assert_eq!(plan.confirm, vec![hosted("r", "placed-here")]);
    assert_eq!(plan.leave, vec![hosted("r", "left-meanwhile")]);
    assert_eq!(
        plan.to_bridge,
        vec![
            ControlToBridge::EndRoom {
                room: RoomId::new("gone-room").unwrap()
            },
            ControlToBridge::Move {
                room: RoomId::new("r").unwrap(),
                participant: ParticipantId::new("moved-away").unwrap()
            },
            ControlToBridge::Kick {
                room: RoomId::new("r").unwrap(),
                participant: ParticipantId::new("unknown").unwrap()
            },
        ],
        "one end_room per room; moved participants are moved, unknown ones removed"
    );
}

#[test]
fn a_bridge_going_down_tells_nobody_but_its_moves_reach_the_old_bridge() {
    let mut state = state_with_two_bridges();
    join(&mut state, "r", "p1", "b1");
    join(&mut state, "r", "p2", "b1");
    let outcome = state
        .apply(Command::Drain {
            bridge: bid("b1"),
            grace_ms: 0,
            by_operator: true,
            at_ms: 5,
        })
        .unwrap();
    let instructions = instructions_for(&outcome);
    assert_eq!(
        instructions[0],
        (
            bid("b1"),
            ControlToBridge::Status {
                status: BridgeStatus::Draining
            }
        )
    );
    let moves: Vec<_> = instructions[1..].to_vec();
    assert_eq!(moves.len(), 2);
    assert!(
        moves
            .iter()
            .all(|(b, m)| b == &bid("b1") && matches!(m, ControlToBridge::Move { .. }))
    );
    let room = &state.rooms[&RoomId::new("r").unwrap()];
    assert!(room.participants.values().all(|p| p.bridge == Some(bid("b2"))));
}

#[test]
fn kicks_ended_rooms_and_mute_requests_go_to_the_bridges_concerned() {
    let kicked = Outcome::Kicked {
        room: RoomId::new("r").unwrap(),
        participant: ParticipantId::new("p").unwrap(),
        bridge: Some(bid("b2")),
    };
    assert_eq!(
        instructions_for(&kicked),
        vec![(
            bid("b2"),
            ControlToBridge::Kick {
                room: RoomId::new("r").unwrap(),
                participant: ParticipantId::new("p").unwrap()
            }
        )]
    );
    let ended = Outcome::RoomEnded {
        room: RoomId::new("r").unwrap(),
        participants: vec![
            (ParticipantId::new("a").unwrap(), Some(bid("b1"))),
            (ParticipantId::new("b").unwrap(), Some(bid("b1"))),
            (ParticipantId::new("c").unwrap(), Some(bid("b2"))),
            (ParticipantId::new("d").unwrap(), None),
        ],
    };
    let bridges: Vec<BridgeId> = instructions_for(&ended).into_iter().map(|(b, _)| b).collect();
    assert_eq!(bridges, vec![bid("b1"), bid("b2")], "each bridge once");
    assert!(instructions_for(&Outcome::Confirmed).is_empty());
}
