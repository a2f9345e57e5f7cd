//! The control state machine, fed commands as the Raft log would: the helpers the files below share.

use super::*;
use bridgemesh_proto::bridge_session::BridgeRegistration;

fn registration(id: &str, capacity: u32) -> BridgeRegistration {
    BridgeRegistration {
        id: BridgeId::new(id).unwrap(),
        region: RegionId::new("local").unwrap(),
        location: None,
        signaling_url: format!("ws://{id}"),
        media_addresses: Vec::new(),
        turn_urls: Vec::new(),
        capacity,
        max_participants_per_room: 3,
        cascade_addr: None,
    }
}

fn register(registration: BridgeRegistration) -> Command {
    Command::RegisterBridge {
        registration,
        instance: Some("instance".into()),
        at_ms: 0,
    }
}

fn bridge(id: &str, capacity: u32) -> Command {
    register(registration(id, capacity))
}

fn room(name: &str) -> RoomId {
    RoomId::new(name).unwrap()
}

fn pid(name: &str) -> ParticipantId {
    ParticipantId::new(name).unwrap()
}

fn request(room_name: &str, participant: &str, bridge: &str, at_ms: u64) -> JoinRequestRecord {
    JoinRequestRecord {
        display_name: participant.to_uppercase(),
        ..JoinRequestRecord::guest(
            room(room_name),
            pid(participant),
            BridgeId::new(bridge).unwrap(),
            at_ms,
        )
    }
}

fn join(room_name: &str, participant: &str, bridge: &str, at_ms: u64) -> Command {
    Command::Join(request(room_name, participant, bridge, at_ms))
}

fn moderator_join(room_name: &str, participant: &str, at_ms: u64) -> Command {
    Command::Join(JoinRequestRecord {
        role: Role::Moderator,
        user_id: Some(format!("user-{participant}")),
        ..request(room_name, participant, "b1", at_ms)
    })
}

fn leave(room_name: &str, participant: &str) -> Command {
    Command::Leave {
        room: room(room_name),
        participant: pid(participant),
        bridge: None,
    }
}

/// The bridge reports `participant` connected.
fn confirm(room_name: &str, participant: &str) -> Command {
    Command::Confirm {
        room: room(room_name),
        participant: pid(participant),
        bridge: None,
    }
}

fn with_bridge() -> ControlState {
    let mut state = ControlState::default();
    state.apply(bridge("b1", 10)).unwrap();
    state
}

/// Nothing expires a millisecond before `deadline_ms`; `count` participants expire at it.
fn expire_exactly_at(state: &mut ControlState, deadline_ms: u64, count: usize) {
    let tick = |now_ms| Command::Tick {
        now_ms,
        room_grace_ms: 3_600_000,
        unconfirmed_join_ttl_ms: None,
    };
    assert!(matches!(
        state.apply(tick(deadline_ms - 1)),
        Ok(Outcome::Ticked { expired: 0, .. })
    ));
    assert_eq!(
        state.apply(tick(deadline_ms)).map(|o| match o {
            Outcome::Ticked { expired, .. } => expired,
            _ => usize::MAX,
        }),
        Ok(count)
    );
}

fn status(state: &ControlState, room_name: &str, participant: &str) -> ParticipantStatus {
    state.rooms[&room(room_name)].participants[&pid(participant)].status
}

mod ended_sessions;
mod expiry;
mod log;
mod moderation;
mod placement;
