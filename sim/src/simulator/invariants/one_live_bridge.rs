//! A participant is on at most one live bridge, and where control says it is when it is
//! connected: a participant hosted by a live bridge is seated there in the replicated state.
//! (Checked as sessions open too, in the world: a session opening elsewhere while a live bridge
//! still hosts it is a violation on the spot.)

use super::Violation;
use crate::simulator::world::World;

pub fn check(world: &World) -> Vec<Violation> {
    let bridges: Vec<_> = world.bridge_view().collect();
    let mut found = Vec::new();
    for participant in world.participant_view().filter(|p| p.active) {
        let Some(hosted) = participant.hosted_on else {
            continue;
        };
        if !bridges[hosted].alive {
            continue;
        }
        let seat = world
            .state()
            .rooms
            .get(participant.room)
            .and_then(|room| room.participants.get(participant.id))
            .and_then(|record| record.bridge.clone());
        if seat.as_ref() != Some(bridges[hosted].id) {
            found.push(Violation::new(
                world.now_ms(),
                "one_live_bridge",
                format!(
                    "{} is hosted by {} but control seats it on {seat:?}",
                    participant.id, bridges[hosted].id
                ),
            ));
        }
    }
    found
}
