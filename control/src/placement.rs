//! Choosing a bridge for a participant: a pure function of the state.
//!
//! Today every bridge is in one region, so the rule is: a bridge that already hosts the room and
//! has room for one more, else the least-loaded bridge that is up and has room (ties broken by id,
//! so the choice is deterministic). Geography and live load arrive with the regions work.

use crate::state::{BridgeStatus, ControlState};
use bridgemesh_proto::{BridgeId, RoomId};

pub fn choose_bridge(state: &ControlState, room: &RoomId) -> Option<BridgeId> {
    let has_room_for_one_more = |id: &BridgeId| {
        let Some(bridge) = state.bridges.get(id) else {
            return false;
        };
        let load = state.bridge_load.get(id).copied().unwrap_or(0);
        let in_room_here = state.rooms.get(room).map_or(0, |r| {
            r.participants
                .values()
                .filter(|p| p.status.on_bridge() && p.bridge.as_ref() == Some(id))
                .count()
        });
        bridge.status == BridgeStatus::Up
            && load < bridge.capacity
            && in_room_here < bridge.max_participants_per_room as usize
    };
    if let Some(room_record) = state.rooms.get(room) {
        let mut hosting: Vec<&BridgeId> = room_record
            .participants
            .values()
            .filter(|p| p.status.on_bridge())
            .filter_map(|p| p.bridge.as_ref())
            .collect();
        hosting.sort();
        hosting.dedup();
        if let Some(id) = hosting.into_iter().find(|id| has_room_for_one_more(id)) {
            return Some(id.clone());
        }
    }
    state
        .bridges
        .keys()
        .filter(|id| has_room_for_one_more(id))
        .min_by_key(|id| (state.bridge_load.get(*id).copied().unwrap_or(0), (*id).clone()))
        .cloned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{BridgeRecord, Command, JoinRequestRecord, Role};
    use bridgemesh_proto::{ParticipantId, RegionId};

    fn register(state: &mut ControlState, id: &str, capacity: u32) {
        state
            .apply(Command::RegisterBridge(BridgeRecord {
                id: BridgeId::new(id).unwrap(),
                region: RegionId::new("local").unwrap(),
                signaling_url: String::new(),
                capacity,
                max_participants_per_room: 2,
                status: BridgeStatus::Up,
                location: None,
                media_addresses: Vec::new(),
            }))
            .unwrap();
    }

    fn place(state: &mut ControlState, room: &str, participant: &str) -> Option<BridgeId> {
        let room = RoomId::new(room).unwrap();
        let bridge = choose_bridge(state, &room)?;
        state
            .apply(Command::Join(JoinRequestRecord {
                room,
                participant: ParticipantId::new(participant).unwrap(),
                display_name: participant.into(),
                user_id: None,
                role: Role::Guest,
                moderator_if_first: false,
                guest_needs_moderator: false,
                password_generation: None,
                bridge: bridge.clone(),
                at_ms: 0,
            }))
            .unwrap();
        Some(bridge)
    }

    #[test]
    fn keeps_a_room_together_then_spills_to_the_least_loaded() {
        let mut state = ControlState::default();
        assert_eq!(place(&mut state, "r", "p0"), None, "no bridges, no placement");
        register(&mut state, "b1", 10);
        register(&mut state, "b2", 10);
        let b1 = BridgeId::new("b1").unwrap();
        let b2 = BridgeId::new("b2").unwrap();
        assert_eq!(place(&mut state, "r", "p1"), Some(b1.clone()));
        assert_eq!(
            place(&mut state, "r", "p2"),
            Some(b1.clone()),
            "same room stays on its bridge"
        );
        assert_eq!(
            place(&mut state, "r", "p3"),
            Some(b2.clone()),
            "room cap per bridge reached"
        );
        assert_eq!(
            place(&mut state, "s", "p4"),
            Some(b2.clone()),
            "new room goes to the least loaded"
        );
    }

    #[test]
    fn never_places_on_a_full_bridge() {
        let mut state = ControlState::default();
        register(&mut state, "b1", 1);
        assert!(place(&mut state, "r", "p1").is_some());
        assert_eq!(place(&mut state, "s", "p2"), None);
    }
}
