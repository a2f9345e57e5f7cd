//! The shard's side of inbound media on the fast path ([`crate::fastpath::inbound`]): a
//! publisher's SRTP datagram of a bound stream is opened in place and handed to the same
//! forwarding code as everything else, without passing through `rtc`; the receive-side RTCP the
//! bridge owes publishers (receiver reports, NACKs, transport-wide feedback) goes out on a timer
//! through the peer connection, which owns SRTCP.

use super::{Incoming, Shard, ShardStats, StreamRef, cascade, deliver};
use crate::demux::ParticipantKey;
use crate::fastpath::inbound::{Feedback, OpenError, Opened, is_rtp};
use crate::fastpath::twcc::TRANSPORT_CC_URI;
use crate::participant::Participant;
use bridgemesh_proto::RoomId;
use bytes::BytesMut;
use rtc::rtp_transceiver::rtp_sender::RTCRtpHeaderExtensionParameters;
use std::ops::AddAssign;
use std::time::Instant;

/// Counters of the inbound fast path, exported as metrics.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct InboundStats {
    /// Publisher RTP packets the bridge opened itself (not through `rtc`).
    pub rtp_opened: u64,
    /// Datagrams of a bound stream whose tag did not verify.
    pub unprotect_bad_tag: u64,
    /// Datagrams of a bound stream already received, or older than the replay window.
    pub unprotect_replayed: u64,
    /// Datagrams of a bound stream too short or with a header running past their end.
    pub unprotect_malformed: u64,
    pub receiver_reports_sent: u64,
    /// Sequence numbers asked for again in NACKs to publishers (each request counted).
    pub nacks_sent: u64,
    pub transport_cc_feedback_sent: u64,
    /// RTCP toward publishers that the peer connection refused to write.
    pub feedback_failed: u64,
}

impl AddAssign for InboundStats {
    fn add_assign(&mut self, other: Self) {
        self.rtp_opened += other.rtp_opened;
        self.unprotect_bad_tag += other.unprotect_bad_tag;
        self.unprotect_replayed += other.unprotect_replayed;
        self.unprotect_malformed += other.unprotect_malformed;
        self.receiver_reports_sent += other.receiver_reports_sent;
        self.nacks_sent += other.nacks_sent;
        self.transport_cc_feedback_sent += other.transport_cc_feedback_sent;
        self.feedback_failed += other.feedback_failed;
    }
}

impl Shard {
    /// Opens a publisher's datagram on the fast path when it is RTP of a stream bound there, and
    /// forwards it; gives the datagram back when `rtc` must take it (DTLS, STUN, RTCP, a stream
    /// not bound yet), `None` when it was handled or dropped.
    pub(super) fn open_inbound(
        &mut self,
        now: Instant,
        room_id: &RoomId,
        key: ParticipantKey,
        mut data: BytesMut,
    ) -> Option<BytesMut> {
        if !is_rtp(&data) {
            return Some(data);
        }
        let room = self.rooms.get_mut(room_id)?;
        let Participant {
            inbound, media_keys, ..
        } = room.participants.get_mut(&key)?;
        let Some(keys) = media_keys.as_ref() else {
            return Some(data);
        };
        let (source, layer, len) = match inbound.open(now, &keys.remote, &mut data) {
            // `rtc` opens it (its repair streams carry the publisher's own bandwidth probes, which
            // `rtc` never hands on). Its arrival counts for the publisher's estimator once a copy
            // authenticates: a forged datagram from the publisher's address must not shape the
            // feedback that publisher's rate follows.
            Opened::NotOurs => {
                inbound.record_unbound(now, &keys.remote, &data);
                return Some(data);
            }
            Opened::Dropped(reason) => {
                let counters = &mut self.stats.inbound;
                match reason {
                    OpenError::BadTag => counters.unprotect_bad_tag += 1,
                    OpenError::Replayed => counters.unprotect_replayed += 1,
                    OpenError::Malformed => counters.unprotect_malformed += 1,
                }
                return None;
            }
            Opened::Media {
                source,
                layer,
                len,
                audio_level,
            } => {
                if let Some(level) = audio_level {
                    super::speakers::heard(now, room, key, level, &mut self.outputs);
                }
                (source, layer, len)
            }
        };
        self.stats.rtp_in += 1;
        self.stats.rtp_in_bytes += len as u64;
        self.stats.inbound.rtp_opened += 1;
        let slot = room.participants.get(&key)?.slot(source)?;
        if !slot.active {
            return None;
        }
        let vp8 = slot.track.as_ref().is_some_and(|t| t.vp8);
        let packet = &mut data[..len];
        let stream = StreamRef {
            publisher: key,
            source,
            layer,
            vp8,
        };
        let mut keyframes = deliver(
            now,
            room,
            stream,
            Incoming::Raw(packet),
            &mut self.tx,
            &mut self.outputs,
            &mut self.stats,
        );
        let (activity, heights) = room
            .source_layers
            .get(&(key, source))
            .map(|layers| (layers.activity, layers.heights))
            .unwrap_or_default();
        // Most tracks cross no link: the parse below is for those that do.
        if let Some(track) = room
            .participants
            .get_mut(&key)
            .and_then(|p| p.slot_mut(source)?.track.as_mut())
            && !track.links.is_empty()
        {
            keyframes |= cascade::cross_links(
                now,
                track,
                packet,
                layer,
                (activity, heights),
                &mut self.outputs,
                &mut self.stats,
            );
        }
        if keyframes != 0 {
            self.request_keyframe_layers(now, room_id, key, source, keyframes);
        }
        None
    }
}

/// Binds a track's stream to the fast path once its first packet (through `rtc`) named the
/// codec: its later packets are opened by the bridge.
pub(super) fn bind_inbound(
    now: Instant,
    participant: &mut Participant,
    slot_index: usize,
    packet: &rtc::rtp::Packet,
    clock_rate: u32,
    extensions: &[RTCRtpHeaderExtensionParameters],
) {
    let slot = &participant.slots[slot_index];
    let Some(track) = slot.track.as_ref() else {
        return;
    };
    let Some(layer) = super::simulcast::layer_for_binding(track, packet.header.ssrc) else {
        return;
    };
    let last = (packet.header.sequence_number, packet.header.timestamp);
    if !participant
        .inbound
        .bind_layer(now, packet.header.ssrc, (slot.source, layer), clock_rate, last)
    {
        tracing::debug!(participant = %participant.id, "too many inbound streams: left to rtc");
        return;
    }
    let twcc = extensions
        .iter()
        .find(|e| e.uri == TRANSPORT_CC_URI)
        .and_then(|e| u8::try_from(e.id).ok());
    if twcc.is_some() {
        participant.inbound.set_transport_cc(now, twcc);
    }
    if slot.source.is_audio() {
        let audio_level = extensions
            .iter()
            .find(|e| e.uri == crate::dominant_speaker::AUDIO_LEVEL_URI)
            .and_then(|e| u8::try_from(e.id).ok());
        participant.inbound.set_audio_level(audio_level);
    }
}

/// Writes the receive-side RTCP due at `now` toward one participant through its peer connection
/// (marked dirty so the shard sends what it queued).
pub(super) fn send_feedback(
    now: Instant,
    participant: &mut Participant,
    stats: &mut ShardStats,
    scratch: &mut Vec<Feedback>,
) {
    if participant.inbound.poll_timeout().is_none_or(|at| at > now) {
        return;
    }
    scratch.clear();
    participant.inbound.poll_feedback(now, scratch);
    // Any receiver of the connection: under BUNDLE they share one transport and SRTCP context.
    let Some(receiver_id) = participant
        .slots
        .iter()
        .find_map(|slot| slot.track.as_ref().map(|t| t.receiver_id))
    else {
        return;
    };
    let mut compound: Vec<Box<dyn rtc::rtcp::Packet>> = Vec::new();
    let mut batches: Vec<Vec<Box<dyn rtc::rtcp::Packet>>> = Vec::new();
    let counters = &mut stats.inbound;
    for feedback in scratch.drain(..) {
        match feedback {
            Feedback::Report(report) => {
                counters.receiver_reports_sent += 1;
                // A compound packet starts with its report (RFC 3550 §6.1).
                compound.insert(0, Box::new(report));
            }
            Feedback::Nack(nack) => {
                counters.nacks_sent += nack
                    .nacks
                    .iter()
                    .map(|pair| 1 + u64::from(pair.lost_packets.count_ones()))
                    .sum::<u64>();
                compound.push(Box::new(nack));
            }
            Feedback::TransportCc(twcc) => {
                // One datagram each: a feedback after a stall can be near the MTU on its own.
                counters.transport_cc_feedback_sent += 1;
                batches.push(vec![Box::new(twcc)]);
            }
        }
    }
    if !compound.is_empty() {
        batches.push(compound);
    }
    let Some(mut receiver) = participant.pc.rtp_receiver(receiver_id) else {
        return;
    };
    for batch in batches {
        if let Err(err) = receiver.write_rtcp(now, batch) {
            counters.feedback_failed += 1;
            tracing::debug!(%err, "feedback to a publisher not written");
        }
    }
    participant.dirty = true;
}
