//! No acknowledged join is lost: a participant control said `placed` to, and that has not left
//! or given up, is still in the replicated state.

use super::Violation;
use crate::simulator::world::World;

pub fn check(world: &World) -> Vec<Violation> {
    world
        .participant_view()
        .filter(|p| p.acked && p.active)
        .filter(|p| {
            world
                .state()
                .rooms
                .get(p.room)
                .is_none_or(|room| !room.participants.contains_key(p.id))
        })
        .map(|p| {
            Violation::new(
                world.now_ms(),
                "acked_joins",
                format!(
                    "{} was placed in {} and is gone from control's state",
                    p.id, p.room
                ),
            )
        })
        .collect()
}
