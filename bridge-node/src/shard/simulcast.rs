//! The shard's side of simulcast (`crate::simulcast`): receiver constraints applied to the
//! legs' layer selectors, the layers of a publisher's simulcast track as `rtc` announces them,
//! and the counters.

use super::*;
use crate::simulcast::constraints::{self, max_height_for, target_layer};
use crate::simulcast::{LAYERS_MAX, Layer};
use bridgemesh_proto::signaling::ReceiverConstraints;
use std::ops::AddAssign;

/// Counters and gauges of layer selection, exported as metrics.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SimulcastStats {
    /// Times a leg moved from one layer to another (on the new layer's keyframe).
    pub layer_switches: u64,
    /// Publisher video packets not sent on a leg: another layer than the leg's, a paused source,
    /// or a switch waiting for its keyframe.
    pub packets_not_selected: u64,
    pub constraints_applied: u64,
    pub constraints_refused: u64,
    /// Keyframe requests (PLI) sent to publishers, by the layer they name (0 without simulcast).
    pub keyframe_requests_by_layer: [u64; LAYERS_MAX],
    /// Video legs by the layer they carry now (gauge).
    pub legs_on_layer: [u64; LAYERS_MAX],
    /// Video legs whose receiver asked for nothing of the source (gauge).
    pub legs_paused: u64,
    /// RTP bytes of simulcast sources sent over cascade links, by layer (once per link).
    pub link_bytes_by_layer: [u64; LAYERS_MAX],
}

impl AddAssign for SimulcastStats {
    fn add_assign(&mut self, other: Self) {
        self.layer_switches += other.layer_switches;
        self.packets_not_selected += other.packets_not_selected;
        self.constraints_applied += other.constraints_applied;
        self.constraints_refused += other.constraints_refused;
        for (mine, theirs) in self
            .keyframe_requests_by_layer
            .iter_mut()
            .zip(other.keyframe_requests_by_layer)
        {
            *mine += theirs;
        }
        for (mine, theirs) in self.legs_on_layer.iter_mut().zip(other.legs_on_layer) {
            *mine += theirs;
        }
        self.legs_paused += other.legs_paused;
        for (mine, theirs) in self.link_bytes_by_layer.iter_mut().zip(other.link_bytes_by_layer) {
            *mine += theirs;
        }
    }
}

impl Shard {
    /// Keeps a participant's new constraints and aims each of its video legs at the layer they
    /// ask for; a bad message is refused with an error and changes nothing.
    pub(super) fn apply_constraints(
        &mut self,
        now: Instant,
        room_id: &RoomId,
        key: ParticipantKey,
        wanted: ReceiverConstraints,
    ) {
        if let Err(err) = constraints::validate(&wanted) {
            self.stats.simulcast.constraints_refused += 1;
            self.outputs.push_back(ShardOutput::ToClient {
                key,
                message: ServerMessage::Error {
                    code: ErrorCode::InvalidField,
                    message: format!("receiver_constraints: {err}"),
                },
            });
            return;
        }
        let Some(room) = self.rooms.get_mut(room_id) else {
            return;
        };
        let Some(participant) = room.participants.get_mut(&key) else {
            return;
        };
        participant.constraints = Some(wanted);
        retarget_legs(now, room, key);
        self.stats.simulcast.constraints_applied += 1;
        // What this participant shows of remote sources changes what the links must carry.
        self.refresh_demand(room_id);
    }

    /// The legs' layers now, for the gauges.
    pub(super) fn simulcast_gauges(&self) -> SimulcastStats {
        let mut stats = self.stats.simulcast;
        stats.legs_on_layer = [0; LAYERS_MAX];
        stats.legs_paused = 0;
        let selectors = self
            .rooms
            .values()
            .flat_map(|room| room.participants.values())
            .flat_map(|p| p.legs.values())
            .filter(|leg| !leg.declined)
            .filter_map(|leg| leg.selector.as_ref());
        for selector in selectors {
            match (selector.target(), selector.current()) {
                (None, _) => stats.legs_paused += 1,
                (Some(_), Some(layer)) => {
                    if let Some(count) = stats.legs_on_layer.get_mut(usize::from(layer)) {
                        *count += 1;
                    }
                }
                (Some(_), None) => {}
            }
        }
        stats
    }
}

/// Aims each video leg of `key` at the layer its constraints and the source's layer heights
/// ask for (after new constraints, and for legs a renegotiation added), then at what the
/// bandwidth allocation gives it within that (`super::bandwidth`).
pub(super) fn retarget_legs(now: Instant, room: &mut Room, key: ParticipantKey) {
    retarget_to_ceilings(room, key);
    super::bandwidth::allocate_legs(now, room, key);
}

fn retarget_to_ceilings(room: &mut Room, key: ParticipantKey) {
    let ids = room.publisher_ids();
    let Room {
        participants,
        source_layers,
        ..
    } = room;
    let Some(participant) = participants.get_mut(&key) else {
        return;
    };
    let constraints = participant.constraints.as_ref();
    for ((publisher, source), leg) in participant.legs.iter_mut() {
        let (Some(selector), Some(id)) = (leg.selector.as_mut(), ids.get(publisher)) else {
            continue;
        };
        let heights = source_layers
            .get(&(*publisher, *source))
            .map(|layers| layers.heights)
            .unwrap_or_default();
        let ceiling = target_layer(max_height_for(constraints, id, *source), &heights);
        selector.set_target(crate::bwe::allocator::capped(ceiling, leg.allocation));
    }
}

/// A track `rtc` opened for a RID (one simulcast layer): recorded as a layer of the slot's track
/// when the slot already carries that track; true when it was (the caller then keeps the track).
pub(super) fn add_layer(track: Option<&mut InboundTrack>, track_id: &str, ssrc: u32, rid: &str) -> bool {
    let Some(track) = track.filter(|t| t.track_id == track_id) else {
        return false;
    };
    let Some(layer) = crate::simulcast::layer_of_rid(rid) else {
        tracing::debug!(%rid, "a RID the bridge did not offer: not forwarded");
        return true;
    };
    if !track.simulcast {
        // The first layer `rtc` opened made the track; it was numbered 0 until its RID was known.
        track.layer_ssrcs = [None; LAYERS_MAX];
        track.simulcast = true;
    }
    track.layer_ssrcs[usize::from(layer)] = Some(ssrc);
    true
}

/// A new track opened for a RID: its layer table starts with that layer only.
pub(super) fn first_layer(track: &mut InboundTrack, rid: &str) {
    track.layer_ssrcs = [None; LAYERS_MAX];
    track.simulcast = true;
    if let Some(layer) = crate::simulcast::layer_of_rid(rid) {
        track.layer_ssrcs[usize::from(layer)] = Some(track.ssrc);
    }
}

/// The layer of a track's SSRC for binding; `None` for an SSRC that is no layer of it.
pub(super) fn layer_for_binding(track: &InboundTrack, ssrc: u32) -> Option<Layer> {
    track.layer_of(ssrc)
}
