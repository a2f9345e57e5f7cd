//! After recovery, every subscriber receives every publisher it should within a bound: once the
//! last fault is over by [`BOUND_MS`], two participants of a room that have both been connected
//! for that long receive each other — on one bridge, or across a cascade link both bridges
//! opened (from control's `room_bridges`), between regions that can hold a connection, within
//! the link's bandwidth. Checked at every sample and at the end.

use super::Violation;
use crate::simulator::cascade::MediaSample;
use crate::simulator::world::World;

/// Time for media to flow after both ends are connected: control's push (a hub tick), the link's
/// handshake and the announcements over it, a keyframe — a few round trips; 5 s leaves room for
/// the farthest regions.
pub const BOUND_MS: u64 = 5_000;

pub fn check(world: &World, sample: &MediaSample) -> Vec<Violation> {
    if world.now_ms() < world.faults_end_ms() + BOUND_MS || sample.settled_pairs_missing == 0 {
        return Vec::new();
    }
    let named: Vec<String> = sample
        .examples
        .iter()
        .map(|(room, publisher, subscriber)| {
            format!(
                "{} on {} does not receive {} on {} ({room})",
                world.participant_id(*subscriber),
                world.hosting_bridge_id(*subscriber),
                world.participant_id(*publisher),
                world.hosting_bridge_id(*publisher),
            )
        })
        .collect();
    vec![Violation::new(
        world.now_ms(),
        "media_delivery",
        format!(
            "{} subscriber–publisher pairs connected for {} s or more without media: {}",
            sample.settled_pairs_missing,
            BOUND_MS / 1000,
            named.join("; ")
        ),
    )]
}
