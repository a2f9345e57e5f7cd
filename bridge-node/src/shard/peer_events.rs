//! Each participant's peer connection driven: datagrams in, rtc's events and keys out.

use super::*;

impl Shard {
    /// Drains every participant of the room with queued work until none has any: sends their
    /// datagrams, handles their events, forwards their media, and renegotiates where needed.
    pub(super) fn pump(&mut self, now: Instant, room_id: &RoomId) {
        // Bounded: each round only drains what earlier rounds queued; media forwarding marks
        // subscribers dirty once and their draining queues nothing back to the publisher.
        for _round in 0..16 {
            let Some(room) = self.rooms.get_mut(room_id) else {
                return;
            };
            let mut dirty = std::mem::take(&mut self.scratch_keys);
            dirty.extend(
                room.participants
                    .values()
                    .filter(|p| p.dirty || (p.renegotiate && !p.awaiting_answer))
                    .map(|p| p.key),
            );
            let quiet = dirty.is_empty();
            for key in dirty.drain(..) {
                self.drain_participant(now, room_id, key);
            }
            self.scratch_keys = dirty;
            if quiet {
                return;
            }
        }
    }

    pub(super) fn drain_participant(&mut self, now: Instant, room_id: &RoomId, key: ParticipantKey) {
        let mut messages = std::mem::take(&mut self.scratch_messages);
        let mut events = std::mem::take(&mut self.scratch_events);
        {
            let Some(room) = self.rooms.get_mut(room_id) else {
                return;
            };
            let Some(participant) = room.participants.get_mut(&key) else {
                return;
            };
            participant.dirty = false;
            while let Some(message) = participant.pc.poll_read() {
                messages.push(message.message);
            }
            while let Some(event) = participant.pc.poll_event() {
                events.push(event);
            }
        }
        for event in events.drain(..) {
            self.handle_event(now, room_id, key, event);
        }
        for message in messages.drain(..) {
            match message {
                RTCMessage::RtpPacket(track_id, packet) => self.forward(now, room_id, key, &track_id, packet),
                RTCMessage::RtcpPacket(track_id, packets) => {
                    self.handle_rtcp(now, room_id, key, &track_id, &packets)
                }
                _ => {}
            }
        }
        self.scratch_messages = messages;
        self.scratch_events = events;
        let Some(room) = self.rooms.get_mut(room_id) else {
            return;
        };
        let needs_offer = room
            .participants
            .get(&key)
            .is_some_and(|p| p.renegotiate && !p.awaiting_answer);
        if needs_offer {
            self.negotiate(now, room_id, key);
        }
        let Some(room) = self.rooms.get_mut(room_id) else {
            return;
        };
        let Some(participant) = room.participants.get_mut(&key) else {
            return;
        };
        let mut path_moved = false;
        while let Some(datagram) = participant.pc.poll_write() {
            // DTLS and SRTCP (first byte 20..=191, RFC 7983) go to the selected pair; STUN
            // answers go wherever a check came from, which may be a path ICE does not select.
            if datagram.message.first().is_some_and(|b| (20..=191).contains(b)) {
                participant.media_addr = Some(datagram.transport.peer_addr);
                path_moved |= participant.path.on_media_addr(now, datagram.transport.peer_addr);
            }
            self.outputs.push_back(ShardOutput::Transmit {
                to: datagram.transport.peer_addr,
                data: datagram.message,
            });
        }
        participant.next_timeout = participant.pc.poll_timeout();
        if path_moved {
            // Media sent to the old address was lost: the subscriber needs keyframes.
            let video_legs: Vec<_> = participant
                .legs
                .iter()
                .filter(|(k, leg)| !k.1.is_audio() && leg.payload_type.is_some() && !leg.declined)
                .map(|(k, _)| *k)
                .collect();
            for (publisher, source) in video_legs {
                self.request_keyframe(now, room_id, publisher, source);
            }
        }
    }

    pub(super) fn handle_event(
        &mut self,
        now: Instant,
        room_id: &RoomId,
        key: ParticipantKey,
        event: RTCPeerConnectionEvent,
    ) {
        match event {
            RTCPeerConnectionEvent::OnTrack(RTCTrackEvent::OnOpen(init)) => {
                let Some(room) = self.rooms.get_mut(room_id) else {
                    return;
                };
                let Some(participant) = room.participants.get_mut(&key) else {
                    return;
                };
                let slot_index = participant.slots.iter().position(|slot| {
                    participant
                        .pc
                        .rtp_transceiver(slot.transceiver)
                        .and_then(|t| t.receiver())
                        == Some(init.receiver_id)
                });
                let Some(slot_index) = slot_index else {
                    tracing::debug!(participant = %participant.id, "track on a transceiver that is no slot");
                    return;
                };
                // Another simulcast layer of the slot's track: one more SSRC of the same source.
                if let Some(rid) = init.rid.as_deref()
                    && super::simulcast::add_layer(
                        participant.slots[slot_index].track.as_mut(),
                        &init.track_id,
                        init.ssrc,
                        rid,
                    )
                {
                    return;
                }
                // Each applied answer reports the open tracks again; only a new stream resets the slot.
                if participant.slots[slot_index]
                    .track
                    .as_ref()
                    .is_some_and(|t| t.ssrc == init.ssrc && t.track_id == init.track_id)
                {
                    return;
                }
                let previous = participant.slots[slot_index].track.take();
                let source = participant.slots[slot_index].source;
                // The new stream numbers its packets afresh.
                room.histories.retain(|k, _| (k.0, k.1) != (key, source));
                room.source_layers.remove(&(key, source));
                participant.inbound.unbind(source);
                let mut track = InboundTrack::new(init.track_id, init.receiver_id, init.ssrc, None);
                if let Some(rid) = init.rid.as_deref() {
                    super::simulcast::first_layer(&mut track, rid);
                }
                participant.slots[slot_index].track = Some(track);
                // The stream it replaces is retired on the links; this one is announced once its
                // codec is known.
                if let Some(id) = previous.and_then(|t| t.stream_id) {
                    self.retire_stream(room_id, id);
                }
            }
            RTCPeerConnectionEvent::OnConnectionStateChangeEvent(state) => match state {
                RTCPeerConnectionState::Connected => {
                    let Some(room) = self.rooms.get_mut(room_id) else {
                        return;
                    };
                    let Some(participant) = room.participants.get_mut(&key) else {
                        return;
                    };
                    participant.connected = true;
                    if participant.media_keys.is_none() {
                        match export_media_keys(participant) {
                            Ok(keys) => {
                                tracing::debug!(participant = %participant.id, profile = ?keys.local.profile(), "fast path keys exported");
                                match keys.local.profile() {
                                    SrtpProfile::AeadAes128Gcm => self.stats.srtp_sessions_gcm += 1,
                                    SrtpProfile::Aes128CmHmacSha1_80 => self.stats.srtp_sessions_cm += 1,
                                }
                                participant.media_keys = Some(keys);
                            }
                            Err(err) => {
                                tracing::warn!(participant = %participant.id, %err, "no SRTP keys after DTLS");
                                self.stats.srtp_key_export_failed += 1;
                                self.remove_participant(now, key, Some(ByeReason::ProtocolError));
                                return;
                            }
                        }
                    }
                    // Only a connection coming up for the first time needs keyframes: a
                    // returning path lost nothing its subscriber will not ask for (consent.rs).
                    if !participant.path.on_connected(now) {
                        return;
                    }
                    let video_legs: Vec<_> = participant
                        .legs
                        .iter()
                        .filter(|(k, leg)| !k.1.is_audio() && leg.payload_type.is_some() && !leg.declined)
                        .map(|(k, _)| *k)
                        .collect();
                    for (publisher, source) in video_legs {
                        self.request_keyframe(now, room_id, publisher, source);
                    }
                }
                RTCPeerConnectionState::Failed | RTCPeerConnectionState::Closed => {
                    self.remove_participant(now, key, Some(ByeReason::ProtocolError));
                }
                _ => {}
            },
            RTCPeerConnectionEvent::OnIceConnectionStateChangeEvent(RTCIceConnectionState::Disconnected) => {
                self.stats.ice_disconnects += 1;
            }
            RTCPeerConnectionEvent::OnIceConnectionStateChangeEvent(RTCIceConnectionState::Failed) => {
                self.remove_participant(now, key, Some(ByeReason::ProtocolError));
            }
            _ => {}
        }
    }
}

/// The SRTP keys of a participant whose DTLS handshake completed, from any of its transceivers
/// (under BUNDLE they share one transport).
pub(super) fn export_media_keys(
    participant: &mut Participant,
) -> Result<crate::fastpath::SessionKeys, crate::fastpath::KeyExportError> {
    let receivers: Vec<_> = participant
        .slots
        .iter()
        .filter_map(|slot| participant.pc.rtp_transceiver(slot.transceiver)?.receiver())
        .collect();
    for receiver in receivers {
        let Some(receiver) = participant.pc.rtp_receiver(receiver) else {
            continue;
        };
        if let Some(state) = receiver.transport().and_then(|t| t.connection_state()) {
            return crate::fastpath::export_srtp_keys(state);
        }
    }
    // A receive-only participant has no slot: its legs' senders share the same transport.
    let senders: Vec<_> = participant.legs.values().map(|leg| leg.sender_id).collect();
    for sender in senders {
        let Some(sender) = participant.pc.rtp_sender(sender) else {
            continue;
        };
        if let Some(state) = sender.transport().and_then(|t| t.connection_state()) {
            return crate::fastpath::export_srtp_keys(state);
        }
    }
    Err(crate::fastpath::KeyExportError::Export(
        "no DTLS connection on any transceiver".to_owned(),
    ))
}
