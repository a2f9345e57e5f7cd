//! After the faults, everything converges: once the liveness phase is over, every participant
//! still in the meeting is connected to a live bridge, and control agrees it is connected there.

use super::Violation;
use crate::simulator::world::World;
use bridgemesh_control::state::ParticipantStatus;

pub fn check(world: &World) -> Vec<Violation> {
    let bridges: Vec<_> = world.bridge_view().collect();
    let mut found = Vec::new();
    for participant in world.participant_view().filter(|p| p.active && p.acked) {
        let record = world
            .state()
            .rooms
            .get(participant.room)
            .and_then(|room| room.participants.get(participant.id));
        let converged = match (participant.hosted_on, record) {
            (Some(hosted), Some(record)) => {
                bridges[hosted].alive
                    && record.status == ParticipantStatus::Connected
                    && record.bridge.as_ref() == Some(bridges[hosted].id)
            }
            _ => false,
        };
        if !converged {
            found.push(Violation::new(
                world.now_ms(),
                "liveness",
                format!(
                    "{} has not converged: hosted by {:?}, control says {:?}",
                    participant.id,
                    participant.hosted_on.map(|b| bridges[b].id.to_string()),
                    record.map(|r| (r.status, r.bridge.clone()))
                ),
            ));
        }
    }
    found
}
