//! The shard's side of bandwidth estimation and allocation (`crate::bwe`): a subscriber's
//! transport-cc feedback drives its estimate, and the allocator turns the estimate, the
//! subscriber's constraints (tile heights, on stage, last-N) and the room's speaker order into
//! the layer each of its video legs aims at. It runs on each feedback (every 50–100 ms from
//! Chromium), on new constraints and legs, and when the dominant speaker changes.

use super::*;
use crate::bwe::allocator::{Priority, SourceDemand};
use crate::simulcast::constraints::{max_height_for, target_layer};
use rtc::rtcp::transport_feedbacks::transport_layer_cc::TransportLayerCc;

/// Bits per second set aside for each audio leg (Opus at 32 kbit/s with its headers), taken off
/// the estimate before video is allocated: audio is never paused.
pub const AUDIO_LEG_BPS: u64 = 45_000;

impl Shard {
    /// A subscriber's transport-cc feedback about what the bridge sent it.
    pub(super) fn on_transport_cc_feedback(
        &mut self,
        now: Instant,
        room_id: &RoomId,
        key: ParticipantKey,
        feedback: &TransportLayerCc,
    ) {
        let Some(room) = self.rooms.get_mut(room_id) else {
            return;
        };
        let Some(participant) = room.participants.get_mut(&key) else {
            return;
        };
        participant.bwe.on_feedback(now, feedback);
        self.stats.bandwidth.feedback_received += 1;
        allocate_legs(now, room, key);
    }
}

impl Shard {
    /// The allocation's gauges now.
    pub(super) fn bandwidth_gauges(&self) -> BandwidthStats {
        let mut stats = self.stats.bandwidth;
        stats.legs_paused_by_allocation = self
            .rooms
            .values()
            .flat_map(|room| room.participants.values())
            .flat_map(|p| p.legs.values())
            .filter(|leg| !leg.declined && leg.allocation == Some(None))
            .count() as u64;
        for participant in self.rooms.values().flat_map(|room| room.participants.values()) {
            stats.probe_packets_sent += participant.bwe.probe_packets_sent;
            if let Some(estimate) = participant.bwe.estimate_bps() {
                stats.subscribers_estimated += 1;
                stats.estimates_bps_sum += estimate;
            }
        }
        stats
    }
}

/// Sends the probe packets due at `now` toward one subscriber: padding-only packets on one of its
/// video legs that is sending, each with the next transport-wide sequence number.
pub(super) fn send_probes(
    now: Instant,
    participant: &mut Participant,
    tx: &mut TxArena,
    outputs: &mut VecDeque<ShardOutput>,
) {
    if participant.bwe.probe_due().is_none_or(|at| at > now) {
        return;
    }
    let Participant {
        legs,
        media_keys,
        media_addr,
        bwe,
        connected,
        ..
    } = participant;
    let (Some(keys), Some(to)) = (media_keys.as_ref(), *media_addr) else {
        bwe.abandon_probe();
        return;
    };
    let leg = legs.values_mut().find(|leg| {
        !leg.declined
            && leg.writer.as_ref().is_some_and(|w| w.stamps_transport_cc())
            && leg.selector.as_ref().is_some_and(|s| s.current().is_some())
    });
    let Some(leg) = leg.filter(|_| *connected) else {
        bwe.abandon_probe();
        return;
    };
    let (Some(writer), Some(selector)) = (leg.writer.as_mut(), leg.selector.as_mut()) else {
        return;
    };
    tx.recycle();
    while let Some((cluster, padding)) = bwe.next_probe_packet(now) {
        let Some(numbers) = selector.padding() else {
            bwe.abandon_probe();
            return;
        };
        match writer.write_padding(&keys.local, tx, numbers, padding, &mut bwe.history, now, cluster) {
            Some(Ok(data)) => outputs.push_back(ShardOutput::Transmit { to, data }),
            Some(Err(err)) => tracing::trace!(%err, "probe not sent"),
            None => {
                bwe.abandon_probe();
                return;
            }
        }
    }
}

/// Counters of estimation and allocation, exported as metrics.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct BandwidthStats {
    /// Transport-cc feedback packets from subscribers.
    pub feedback_received: u64,
    /// Video legs paused by the allocator (the estimate or last-N) though their tile shows them
    /// (gauge).
    pub legs_paused_by_allocation: u64,
    /// Padding packets sent to probe the paths of the subscribers connected now.
    pub probe_packets_sent: u64,
    /// Subscribers with an estimate, and the sum of their estimates (gauges: the mean is the
    /// one divided by the other).
    pub subscribers_estimated: u64,
    pub estimates_bps_sum: u64,
}

impl std::ops::AddAssign for BandwidthStats {
    fn add_assign(&mut self, other: Self) {
        self.feedback_received += other.feedback_received;
        self.legs_paused_by_allocation += other.legs_paused_by_allocation;
        self.probe_packets_sent += other.probe_packets_sent;
        self.subscribers_estimated += other.subscribers_estimated;
        self.estimates_bps_sum += other.estimates_bps_sum;
    }
}

/// Runs the allocator for subscriber `key` and aims its video legs at what it gives.
pub(super) fn allocate_legs(now: Instant, room: &mut Room, key: ParticipantKey) {
    let ids = room.publisher_ids();
    let dominant = room.speaker.as_ref().and_then(|s| s.current());
    let recent: Vec<ParticipantKey> = room
        .speaker
        .as_ref()
        .map(|s| s.recent().collect())
        .unwrap_or_default();
    let Room {
        participants,
        source_layers,
        ..
    } = room;
    let Some(participant) = participants.get_mut(&key) else {
        return;
    };
    let constraints = participant.constraints.as_ref();
    let last_n = constraints.and_then(|c| c.last_n);
    // The estimate sees only packets that carry the subscriber's transport-wide sequence: with a
    // leg that cannot (its publisher sends no transport-cc element, e.g. a source from a cascade
    // link, which strips it), what the subscriber receives is more than the estimator knows,
    // and the estimate would starve that leg. Such a subscriber is not limited by it.
    let all_stamped = participant
        .legs
        .values()
        .filter(|leg| !leg.declined)
        .filter_map(|leg| leg.writer.as_ref())
        .all(|writer| writer.stamps_transport_cc());
    let estimate = participant.bwe.estimate_bps().filter(|_| all_stamped);
    if estimate.is_none() && last_n.is_none() && participant.legs.values().all(|l| l.allocation.is_none()) {
        return; // Nothing limits this subscriber: the ceilings stand, as before estimation.
    }
    let bwe = &mut participant.bwe;
    bwe.demands.clear();
    let mut allocated_legs = Vec::new();
    let mut audio_legs = 0u64;
    for ((publisher, source), leg) in participant.legs.iter() {
        if leg.declined {
            continue;
        }
        if source.is_audio() {
            audio_legs += 1;
            continue;
        }
        let (Some(selector), Some(id)) = (leg.selector.as_ref(), ids.get(publisher)) else {
            continue;
        };
        let layers = source_layers
            .get(&(*publisher, *source))
            .copied()
            .unwrap_or_default();
        let on_stage = *source == MediaSource::Screen
            || constraints.is_some_and(|c| {
                c.on_stage
                    .iter()
                    .any(|s| &s.participant_id == id && s.source == *source)
            });
        let priority = if on_stage {
            Priority::OnStage
        } else if dominant == Some(*publisher) {
            Priority::DominantSpeaker
        } else if let Some(rank) = recent.iter().position(|k| k == publisher) {
            Priority::RecentSpeaker(rank as u8)
        } else {
            Priority::Other
        };
        let sent = layers.rates.bps(now);
        allocated_legs.push((*publisher, *source));
        bwe.demands.push(SourceDemand {
            priority,
            ceiling: target_layer(max_height_for(constraints, id, *source), &layers.heights),
            layer_bps: std::array::from_fn(|l| sent[l].filter(|_| layers.activity.is_active(now, l))),
            current: leg.allocation.unwrap_or(selector.target()),
        });
    }
    let audio_bps = audio_legs * AUDIO_LEG_BPS;
    let video_estimate = estimate.map(|e| e.saturating_sub(audio_bps));
    let mut layers = std::mem::take(&mut bwe.layers);
    let demands = std::mem::take(&mut bwe.demands);
    let summary = bwe
        .allocator
        .run(now, video_estimate, last_n, &demands, &mut layers);
    if estimate.is_some() {
        bwe.start_probe(now, summary.wanted_bps + audio_bps);
    }
    for (leg_key, layer) in allocated_legs.iter().zip(&layers) {
        if let Some(leg) = participant.legs.get_mut(leg_key)
            && let Some(selector) = leg.selector.as_mut()
        {
            leg.allocation = Some(*layer);
            selector.set_target(*layer);
        }
    }
    participant.bwe.layers = layers;
    participant.bwe.demands = demands;
}
