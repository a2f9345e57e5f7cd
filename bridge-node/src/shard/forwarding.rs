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
        self.request_keyframe_layers(now, room_id, publisher, source, u8::MAX);
    }

    /// [`Shard::request_keyframe`] for the simulcast layers in `layers` (a bit per layer; every
    /// bit for all): one PLI per layer SSRC, so a thumbnail's request costs the publisher a
    /// keyframe of the small layer only. Requests held back by the throttle add up and go when
    /// it ends.
    pub(super) fn request_keyframe_layers(
        &mut self,
        now: Instant,
        room_id: &RoomId,
        publisher: ParticipantKey,
        source: MediaSource,
        layers: u8,
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
            track.keyframe_layers_pending |= layers;
            return;
        }
        let layers = layers | track.keyframe_layers_pending;
        track.keyframe_requested_at = Some(now);
        track.keyframe_request_pending = false;
        track.keyframe_layers_pending = 0;
        let plis: Vec<Box<dyn rtc::rtcp::Packet>> = track
            .layer_ssrcs
            .iter()
            .enumerate()
            .filter(|(layer, _)| layers & (1 << layer) != 0)
            .filter_map(|(layer, ssrc)| Some((layer, (*ssrc)?)))
            .map(|(layer, media_ssrc)| {
                self.stats.simulcast.keyframe_requests_by_layer[layer] += 1;
                Box::new(PictureLossIndication {
                    sender_ssrc: 0,
                    media_ssrc,
                }) as Box<dyn rtc::rtcp::Packet>
            })
            .collect();
        if plis.is_empty() {
            return;
        }
        if let Some(mut receiver) = participant.pc.rtp_receiver(track.receiver_id) {
            match receiver.write_rtcp(now, plis) {
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
        let ssrc = packet.header.ssrc;
        let layer = slot.track.as_ref().and_then(|t| t.layer_of(ssrc)).unwrap_or(0);
        let vp8 = slot.track.as_ref().is_some_and(|t| t.vp8);
        if slot
            .track
            .as_ref()
            .is_some_and(|t| t.codec.is_some() && t.simulcast && !participant.inbound.is_bound(ssrc))
        {
            // A further simulcast layer's first packet: its later ones are opened by the bridge.
            if let Some(track) = participant.slots[slot_index].track.as_ref()
                && let Some(codec) = track.codec.as_ref()
            {
                let (clock_rate, extensions) = (codec.clock_rate, track.extensions.clone());
                inbound::bind_inbound(now, participant, slot_index, &packet, clock_rate, &extensions);
            }
            return;
        }
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
            track.vp8 = codec.mime_type.eq_ignore_ascii_case("video/VP8");
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
        let stream = StreamRef {
            publisher,
            source,
            layer,
            vp8,
        };
        let keyframes = deliver(
            now,
            room,
            stream,
            Incoming::Parsed(&packet),
            &mut self.tx,
            &mut self.outputs,
            &mut self.stats,
        );
        // Most tracks cross no link: check before touching the packet again. A simulcast
        // track's links get their one layer from the fast path (`inbound.rs`), not these
        // retransmissions.
        if let Some(track) = room
            .participants
            .get(&publisher)
            .and_then(|p| p.slots[slot_index].track.as_ref())
            && !track.links.is_empty()
            && !track.simulcast
        {
            cascade::send_to_links(track, &packet, &mut self.outputs, &mut self.stats);
        }
        if keyframes != 0 {
            self.request_keyframe_layers(now, room_id, publisher, source, keyframes);
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
                self.answer_nack(now, room_id, key, nack);
            } else if let Some(feedback) =
                any.downcast_ref::<rtc::rtcp::transport_feedbacks::transport_layer_cc::TransportLayerCc>()
            {
                self.on_transport_cc_feedback(now, room_id, key, feedback);
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
    pub(super) fn answer_nack(
        &mut self,
        now: Instant,
        room_id: &RoomId,
        key: ParticipantKey,
        nack: &TransportLayerNack,
    ) {
        let Some(room) = self.rooms.get_mut(room_id) else {
            return;
        };
        let Some(leg_key) = room.participants.get(&key).and_then(|subscriber| {
            subscriber
                .legs
                .iter()
                .find(|(_, leg)| leg.ssrc == nack.media_ssrc && !leg.declined)
                .map(|(leg_key, _)| *leg_key)
        }) else {
            return;
        };
        let vp8 = is_vp8(room, leg_key.0, leg_key.1);
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
            bwe,
            ..
        } = subscriber;
        let (Some(keys), Some(to)) = (media_keys.as_ref(), *media_addr) else {
            return;
        };
        let Some(leg) = legs.get_mut(&leg_key) else {
            return;
        };
        let (publisher, source) = leg_key;
        let Some(writer) = leg.writer.as_mut() else {
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
            // A video leg's numbers are its selector's: back to the layer and number first sent.
            let (layer, origin_seq) = match leg.selector.as_ref() {
                Some(selector) => match selector.origin_of(seq) {
                    Some(origin) => origin,
                    None => {
                        self.stats.rtp_nack_missed += 1;
                        continue;
                    }
                },
                None => (0, seq),
            };
            let Some(packet) = histories
                .get(&(publisher, source, layer))
                .and_then(|ring| ring.get(origin_seq))
            else {
                self.stats.rtp_nack_missed += 1;
                continue;
            };
            let renumbered = match leg.selector.as_ref() {
                Some(selector) => {
                    let Some((facts, descriptor)) = crate::simulcast::facts_of(packet, layer, vp8) else {
                        continue;
                    };
                    let Some(rewrite) = selector.rewrite_retransmission(seq, &facts) else {
                        self.stats.rtp_nack_missed += 1;
                        continue;
                    };
                    Some((rewrite, descriptor))
                }
                None => None,
            };
            let renumber = renumbered.as_ref().map(|(r, d)| (r, d.as_ref()));
            let stamp = writer.stamps_transport_cc().then_some((&mut bwe.history, now));
            match writer.write_stamped(&keys.local, packet, &mut self.tx, renumber, stamp) {
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
        let Some((source, layer)) = room.participants.get(&publisher).and_then(|p| {
            p.slots.iter().find_map(|slot| {
                let layer = slot.track.as_ref()?.layer_of(report.ssrc)?;
                Some((slot.source, layer))
            })
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
            let mut translated = translate_report(report, writer);
            if let Some(selector) = leg.selector.as_ref() {
                // The leg's timestamps are the layer's moved by the selector's offset; a report
                // of a layer the leg does not carry now says nothing about the leg.
                let Some(rtp_time) = selector.translate_rtp_time(layer, report.rtp_time) else {
                    continue;
                };
                translated.rtp_time = rtp_time;
            }
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

/// Which published stream a packet is of: the publisher's source, the simulcast layer (0 for a
/// stream that does not simulcast) and whether its payload is VP8 (read for layer switching).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct StreamRef {
    pub publisher: ParticipantKey,
    pub source: MediaSource,
    pub layer: crate::simulcast::Layer,
    pub vp8: bool,
}

impl StreamRef {
    /// A stream without simulcast.
    pub fn single(publisher: ParticipantKey, source: MediaSource, vp8: bool) -> Self {
        Self {
            publisher,
            source,
            layer: 0,
            vp8,
        }
    }
}

/// Whether a published source (local or remote) is VP8.
pub(super) fn is_vp8(room: &Room, publisher: ParticipantKey, source: MediaSource) -> bool {
    if let Some(participant) = room.participants.get(&publisher) {
        return participant
            .slot(source)
            .and_then(|slot| slot.track.as_ref())
            .is_some_and(|t| t.vp8);
    }
    room.cascade
        .remote
        .get(&publisher)
        .and_then(|p| p.streams.get(&source))
        .is_some_and(|s| s.codec.mime_type.eq_ignore_ascii_case("video/VP8"))
}

/// Keeps a publisher's packet (local or remote) in its stream's (its layer's) retransmission
/// ring, then sends it on every local subscriber's leg for it whose layer selector takes it,
/// renumbered, rewritten and protected by the leg's writer. Returns the layers whose keyframes
/// some leg waits for (a bit per layer), for the caller to request.
pub(super) fn deliver(
    now: Instant,
    room: &mut Room,
    stream: StreamRef,
    incoming: Incoming<'_>,
    tx: &mut TxArena,
    outputs: &mut VecDeque<ShardOutput>,
    stats: &mut ShardStats,
) -> u8 {
    tx.recycle();
    let StreamRef {
        publisher,
        source,
        layer,
        vp8,
    } = stream;
    let Room {
        participants,
        histories,
        source_layers,
        recording,
        cascade,
        ..
    } = room;
    let ring = histories.entry((publisher, source, layer)).or_insert_with(|| {
        if source.is_audio() {
            RetransmitRing::audio()
        } else {
            RetransmitRing::video()
        }
    });
    let stored = match incoming {
        Incoming::Parsed(packet) => ring.store(
            now,
            packet.header.sequence_number,
            rtc::shared::marshal::MarshalSize::marshal_size(packet),
            |buf| rtc::shared::marshal::Marshal::marshal_to(packet, buf).ok(),
        ),
        Incoming::Raw(bytes) => match crate::fastpath::srtp::rtp_header_len(bytes) {
            Ok(_) => ring.store(
                now,
                u16::from_be_bytes([bytes[2], bytes[3]]),
                bytes.len(),
                |buf| {
                    buf.copy_from_slice(bytes);
                    Some(bytes.len())
                },
            ),
            Err(_) => None,
        },
    };
    let Some(packet) = stored else {
        stats.rtp_forward_failed += 1;
        return 0;
    };
    // Read once for every leg: the selectors' facts and the VP8 descriptor's places.
    let parsed = if source.is_audio() {
        None
    } else {
        let Some(parsed) = crate::simulcast::facts_of(packet, layer, vp8) else {
            stats.rtp_forward_failed += 1;
            return 0;
        };
        Some(parsed)
    };
    // The source's layers: this one active now; a keyframe showing it at a new height (rare)
    // has every leg's target worked out again.
    let mut retarget = None;
    let mut activity = crate::simulcast::LayerActivity::default();
    if !source.is_audio() {
        let layers = source_layers.entry((publisher, source)).or_default();
        layers.activity.record(now, layer);
        layers.rates.record(now, layer, packet.len());
        activity = layers.activity;
        if let Some(height) = parsed.and_then(|(_, d)| d?.height)
            && layers.heights.record(layer, height)
        {
            retarget =
                super::publisher_id(participants, cascade, publisher).map(|id| (id.clone(), layers.heights));
        }
    }
    let mut keyframes_wanted = 0u8;
    for subscriber in participants.values_mut() {
        let Participant {
            key,
            connected,
            media_keys,
            media_addr,
            legs,
            constraints,
            bwe,
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
        let mut rewrite = None;
        if let (Some(selector), Some((facts, _))) = (leg.selector.as_mut(), parsed.as_ref()) {
            if let Some((id, heights)) = retarget.as_ref() {
                let max_height =
                    crate::simulcast::constraints::max_height_for(constraints.as_ref(), id, source);
                let ceiling = crate::simulcast::constraints::target_layer(max_height, heights);
                selector.set_target(crate::bwe::allocator::capped(ceiling, leg.allocation));
            }
            let before = selector.current();
            let decision = selector.on_packet(now, facts, &activity);
            if let Some(wanted) = selector.poll_keyframe_request(now, &activity) {
                keyframes_wanted |= 1 << wanted;
            }
            if selector.current() != before && before.is_some() {
                stats.simulcast.layer_switches += 1;
            }
            match decision {
                Some(numbers) => rewrite = Some(numbers),
                None => {
                    stats.simulcast.packets_not_selected += 1;
                    continue;
                }
            }
        }
        let descriptor = parsed.as_ref().and_then(|(_, d)| d.as_ref());
        let renumber = rewrite.as_ref().map(|r| (r, descriptor));
        let stamp = writer.stamps_transport_cc().then_some((&mut bwe.history, now));
        match writer.write_stamped(&keys.local, packet, tx, renumber, stamp) {
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
    // A room not recorded pays this one check. A simulcast camera is recorded from its lowest
    // layer, the one it always sends (its layers have their own numbering and clocks).
    if layer == 0
        && let Some(recording) = recording.recorder.as_mut()
    {
        recording.on_packet(now, publisher, source, packet, participants, cascade);
    }
    keyframes_wanted
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
