//! No bridge holds more participants than its capacity: neither in control's count of seats nor
//! in the sessions it hosts.

use super::Violation;
use crate::simulator::world::World;

pub fn check(world: &World) -> Vec<Violation> {
    let mut found = Vec::new();
    for bridge in world.bridge_view() {
        let seats = world.state().bridge_load.get(bridge.id).copied().unwrap_or(0);
        if seats > bridge.capacity || bridge.hosted > bridge.capacity as usize {
            found.push(Violation::new(
                world.now_ms(),
                "capacity",
                format!(
                    "{} has {seats} seats and hosts {} sessions; capacity {}",
                    bridge.id, bridge.hosted, bridge.capacity
                ),
            ));
        }
    }
    found
}
