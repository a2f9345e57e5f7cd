//! A publisher's packets to every subscriber leg, and the RTCP that flows back: NACKs, keyframe requests, sender reports.

use super::*;

impl Shard {
    /// Asks a publisher for a keyframe on one of its tracks, at most once per
    /// [`KEYFRAME_REQUEST_INTERVAL`]; a request inside the window is sent when it ends.
    pub(super) fn request_keyframe(
        &mut self,
        now: Instant,
        room_id: &RoomId,
        publisher: ParticipantKey,
        source: MediaSource,
    ) {
        let Some(room) = self.rooms.get_mut(room_id) else {
            return;
        };
        if room.cascade.remote.contains_key(&publisher) {
            self.request_remote_keyframe(room_id, publisher, source);
            return;
        }
        let Some(participant) = room.participants.get_mut(&publisher) else {
            return;
        };
        let Some(slot) = participant.slots.iter_mut().find(|s| s.source == source) else {
            return;
        };
        let Some(track) = slot.track.as_mut() else { return };
        if track
            .keyframe_requested_at
            .is_some_and(|at| now < at + KEYFRAME_REQUEST_INTERVAL)
        {
            track.keyframe_request_pending = true;
            return;
        }
        track.keyframe_requested_at = Some(now);
        track.keyframe_request_pending = false;
        let pli = PictureLossIndication {
            sender_ssrc: 0,
            media_ssrc: track.ssrc,
        };
        if let Some(mut receiver) = participant.pc.rtp_receiver(track.receiver_id) {
            match receiver.write_rtcp(now, vec![Box::new(pli)]) {
                Ok(()) => self.stats.keyframe_requests_sent += 1,
                Err(err) => tracing::debug!(%err, "keyframe request not sent"),
            }
        }
        participant.dirty = true;
    }

    pub(super) fn forward(
        &mut self,
        now: Instant,
        room_id: &RoomId,
        publisher: ParticipantKey,
        track_id: &str,
        packet: rtc::rtp::Packet,
    ) {
        self.stats.rtp_in += 1;
        self.stats.rtp_in_bytes += rtc::shared::marshal::MarshalSize::marshal_size(&packet) as u64;
        let Some(room) = self.rooms.get_mut(room_id) else {
            return;
        };
        let Some(participant) = room.participants.get_mut(&publisher) else {
            return;
        };
        let Some(slot_index) = participant
            .slots
            .iter()
            .position(|s| s.track.as_ref().is_some_and(|t| t.track_id == track_id))
        else {
            return;
        };
        let slot = &participant.slots[slot_index];
        let (source, active) = (slot.source, slot.active);
        if slot.track.as_ref().is_some_and(|t| t.codec.is_none()) {
            // First packet of this track: its payload type names the codec the publisher chose.
            let receiver_id = slot.track.as_ref().map(|t| t.receiver_id).expect("checked above");
            let Some(mut receiver) = participant.pc.rtp_receiver(receiver_id) else {
                return;
            };
            let parameters = receiver.get_parameters().rtp_parameters.clone();
            let Some(codec) = parameters
                .codecs
                .iter()
                .find(|c| c.payload_type == packet.header.payload_type)
                .map(|c| c.rtp_codec.clone())
            else {
                return;
            };
            let track = participant.slots[slot_index]
                .track
                .as_mut()
                .expect("checked above");
            let clock_rate = codec.clock_rate;
            track.codec = Some(codec);
            track.extensions = parameters.header_extensions;
            let extensions = track.extensions.clone();
            inbound::bind_inbound(now, participant, slot_index, &packet, clock_rate, &extensions);
            mark_others_for_renegotiation(room, publisher);
            self.sync_stream_announcements(room_id, publisher);
            self.broadcast_update(room_id, publisher);
            self.report_media(now, room_id, publisher);
            return;
        }
        // A packet of a stream the fast path opens that reached us through `rtc` (a retransmission).
        participant
            .inbound
            .repaired(now, packet.header.ssrc, packet.header.sequence_number);
        if !active {
            return;
        }
        let Some(room) = self.rooms.get_mut(room_id) else {
            return;
        };
        deliver(
            now,
            room,
            publisher,
            source,
            Incoming::Parsed(&packet),
            &mut self.tx,
            &mut self.outputs,
            &mut self.stats,
        );
        // Most tracks cross no link: check before touching the packet again.
        if let Some(track) = room
            .participants
            .get(&publisher)
            .and_then(|p| p.slots[slot_index].track.as_ref())
            && !track.links.is_empty()
        {
            cascade::send_to_links(track, &packet, &mut self.outputs, &mut self.stats);
        }
    }

    pub(super) fn handle_rtcp(
        &mut self,
        now: Instant,
        room_id: &RoomId,
        key: ParticipantKey,
        track_id: &str,
        packets: &[Box<dyn rtc::rtcp::Packet>],
    ) {
        tracing::trace!(%track_id, count = packets.len(), "rtcp from participant");
        for packet in packets {
            let any = packet.as_any();
            if let Some(nack) = any.downcast_ref::<TransportLayerNack>() {
                self.answer_nack(room_id, key, nack);
            } else if let Some(report) = any.downcast_ref::<SenderReport>() {
                if let Some(publisher) = self
                    .rooms
                    .get_mut(room_id)
                    .and_then(|room| room.participants.get_mut(&key))
                {
                    publisher
                        .inbound
                        .on_sender_report(now, report.ssrc, report.ntp_time);
                }
                self.translate_sender_report(now, room_id, key, report);
            }
        }
        let wants_keyframe = packets.iter().any(|p| {
            p.as_any().downcast_ref::<PictureLossIndication>().is_some()
                || p.as_any().downcast_ref::<FullIntraRequest>().is_some()
        });
        if !wants_keyframe {
            return;
        }
        let Some(room) = self.rooms.get(room_id) else {
            return;
        };
        let Some(participant) = room.participants.get(&key) else {
            return;
        };
        if let Some((publisher, source)) = participant.leg_for_track(track_id) {
            self.request_keyframe(now, room_id, publisher, source);
        }
    }

    /// Resends the packets a subscriber's NACK names from the publisher stream's ring, rewritten
    /// and protected for that subscriber's leg (RFC 4585 §6.2.1; on the leg's own SSRC, as no RTX
    /// stream is offered).
    pub(super) fn answer_nack(&mut self, room_id: &RoomId, key: ParticipantKey, nack: &TransportLayerNack) {
        let Some(room) = self.rooms.get_mut(room_id) else {
            return;
        };
        let Room {
            participants,
            histories,
            ..
        } = room;
        let Some(subscriber) = participants.get_mut(&key) else {
            return;
        };
        let Participant {
            legs,
            media_keys,
            media_addr,
            ..
        } = subscriber;
        let (Some(keys), Some(to)) = (media_keys.as_ref(), *media_addr) else {
            return;
        };
        let Some((leg_key, leg)) = legs
            .iter_mut()
            .find(|(_, leg)| leg.ssrc == nack.media_ssrc && !leg.declined)
        else {
            return;
        };
        let (Some(ring), Some(writer)) = (histories.get(leg_key), leg.writer.as_mut()) else {
            return;
        };
        self.tx.recycle();
        let lost = nack.nacks.iter().flat_map(|pair| {
            std::iter::once(pair.packet_id).chain(
                (0..16u16)
                    .filter(move |bit| pair.lost_packets & (1 << bit) != 0)
                    .map(move |bit| pair.packet_id.wrapping_add(bit + 1)),
            )
        });
        for seq in lost.take(RETRANSMISSIONS_PER_NACK_MAX) {
            let Some(packet) = ring.get(seq) else {
                self.stats.rtp_nack_missed += 1;
                continue;
            };
            match writer.write(&keys.local, packet, &mut self.tx) {
                Ok(data) => {
                    self.stats.rtp_retransmitted += 1;
                    self.outputs.push_back(ShardOutput::Transmit { to, data });
                }
                Err(err) => tracing::trace!(%err, "retransmission not sent"),
            }
        }
    }

    /// Writes a publisher's sender report onto every local leg of that stream: the publisher's
    /// NTP/RTP time pair (timestamps cross the bridge unchanged, so the pair holds on the leg and
    /// the subscriber can synchronise audio and video), with the leg's SSRC and its own counts.
    pub(super) fn translate_sender_report(
        &mut self,
        now: Instant,
        room_id: &RoomId,
        publisher: ParticipantKey,
        report: &SenderReport,
    ) {
        let Some(room) = self.rooms.get_mut(room_id) else {
            return;
        };
        let Some(source) = room.participants.get(&publisher).and_then(|p| {
            p.slots
                .iter()
                .find(|slot| slot.track.as_ref().is_some_and(|t| t.ssrc == report.ssrc))
                .map(|slot| slot.source)
        }) else {
            return;
        };
        for subscriber in room.participants.values_mut() {
            if subscriber.key == publisher || !subscriber.connected {
                continue;
            }
            let Some(leg) = subscriber.legs.get(&(publisher, source)).filter(|l| !l.declined) else {
                continue;
            };
            let Some(writer) = leg.writer.as_ref() else {
                continue;
            };
            let translated = translate_report(report, writer);
            let sender_id = leg.sender_id;
            if let Some(mut sender) = subscriber.pc.rtp_sender(sender_id) {
                match sender.write_rtcp(now, vec![Box::new(translated)]) {
                    Ok(()) => self.stats.sender_reports_translated += 1,
                    Err(err) => tracing::debug!(%err, "sender report not written"),
                }
                subscriber.dirty = true;
            }
        }
    }
}

/// A publisher's packet as it enters the forwarding code: parsed by `rtc` (a local publisher),
/// or as it crossed a cascade link. Both take the same path from here on.
pub(crate) enum Incoming<'a> {
    Parsed(&'a rtc::rtp::Packet),
    Raw(&'a [u8]),
}

/// Keeps a publisher's packet (local or remote) in its stream's retransmission ring, then sends
/// it on every local subscriber's leg for it, rewritten and protected by the leg's writer.
// The shard's fields, borrowed apart (the room mutably, the arena, the queue, the counters).
#[allow(clippy::too_many_arguments)]
pub(super) fn deliver(
    now: Instant,
    room: &mut Room,
    publisher: ParticipantKey,
    source: MediaSource,
    incoming: Incoming<'_>,
    tx: &mut TxArena,
    outputs: &mut VecDeque<ShardOutput>,
    stats: &mut ShardStats,
) {
    tx.recycle();
    let Room {
        participants,
        histories,
        recording,
        cascade,
        ..
    } = room;
    let ring = histories.entry((publisher, source)).or_insert_with(|| {
        if source.is_audio() {
            RetransmitRing::new(AUDIO_PACKETS, AUDIO_SLOT_BYTES)
        } else {
            RetransmitRing::new(VIDEO_PACKETS, VIDEO_SLOT_BYTES)
        }
    });
    let stored = match incoming {
        Incoming::Parsed(packet) => ring.store(
            packet.header.sequence_number,
            rtc::shared::marshal::MarshalSize::marshal_size(packet),
            |buf| rtc::shared::marshal::Marshal::marshal_to(packet, buf).ok(),
        ),
        Incoming::Raw(bytes) => match crate::fastpath::srtp::rtp_header_len(bytes) {
            Ok(_) => ring.store(u16::from_be_bytes([bytes[2], bytes[3]]), bytes.len(), |buf| {
                buf.copy_from_slice(bytes);
                Some(bytes.len())
            }),
            Err(_) => None,
        },
    };
    let Some(packet) = stored else {
        stats.rtp_forward_failed += 1;
        return;
    };
    for subscriber in participants.values_mut() {
        let Participant {
            key,
            connected,
            media_keys,
            media_addr,
            legs,
            ..
        } = subscriber;
        if *key == publisher || !*connected {
            continue;
        }
        let Some(leg) = legs.get_mut(&(publisher, source)) else {
            stats.rtp_dropped_no_leg += 1;
            continue;
        };
        if leg.declined {
            stats.rtp_not_sent_declined += 1;
            continue;
        }
        let (Some(writer), Some(keys), Some(to)) = (leg.writer.as_mut(), media_keys.as_ref(), *media_addr)
        else {
            continue;
        };
        match writer.write(&keys.local, packet, tx) {
            Ok(data) => {
                stats.rtp_forwarded += 1;
                outputs.push_back(ShardOutput::Transmit { to, data });
            }
            Err(err) => {
                stats.rtp_forward_failed += 1;
                tracing::trace!(%err, "packet not forwarded");
            }
        }
    }
    // A room not recorded pays this one check.
    if let Some(recording) = recording.recorder.as_mut() {
        recording.on_packet(now, publisher, source, packet, participants, cascade);
    }
}

/// A publisher's sender report as one leg states it.
pub(super) fn translate_report(report: &SenderReport, leg: &crate::fastpath::leg::LegWriter) -> SenderReport {
    SenderReport {
        ssrc: leg.ssrc(),
        ntp_time: report.ntp_time,
        rtp_time: report.rtp_time,
        packet_count: leg.packets_sent,
        octet_count: leg.octets_sent,
        ..Default::default()
    }
}
