//! A join is refused only when no bridge could take it: when one that is up had a seat for the
//! room (below its capacity and its per-room cap), the refusal is placement's fault.

use super::Violation;
use crate::simulator::world::World;
use bridgemesh_proto::RoomId;
use bridgemesh_proto::bridge_session::BridgeStatus;

pub fn check(world: &World, room: &RoomId, reason: &str) -> Vec<Violation> {
    let state = world.state();
    let seats_in_room = state
        .rooms
        .get(room)
        .map(|r| r.seats_per_bridge())
        .unwrap_or_default();
    let free = world.bridge_view().find(|bridge| {
        world.bridge_status(bridge.id) == Some(BridgeStatus::Up)
            && state.bridge_load.get(bridge.id).copied().unwrap_or(0) < bridge.capacity
            && (seats_in_room.get(bridge.id).copied().unwrap_or(0) as u32) < bridge.max_per_room
    });
    match free {
        Some(bridge) => vec![Violation::new(
            world.now_ms(),
            "refused_with_room",
            format!(
                "a join to {room} was refused ({reason}) while {} had a seat for it",
                bridge.id
            ),
        )],
        None => Vec::new(),
    }
}
