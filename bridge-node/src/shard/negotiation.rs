//! Offers to a participant whenever the streams it should receive change.

use super::*;

impl Shard {
    /// Brings a participant's legs in line with what the room publishes and sends a new offer.
    pub(super) fn negotiate(&mut self, now: Instant, room_id: &RoomId, key: ParticipantKey) {
        let Some(room) = self.rooms.get_mut(room_id) else {
            return;
        };
        let mut desired: Vec<(ParticipantKey, MediaSource, ParticipantId, RTCRtpCodec)> = room
            .participants
            .values()
            .filter(|p| p.key != key)
            .flat_map(|p| {
                p.slots.iter().filter(|s| s.active).filter_map(move |s| {
                    let codec = s.track.as_ref()?.codec.clone()?;
                    Some((p.key, s.source, p.id.clone(), codec))
                })
            })
            .chain(room.cascade.remote.iter().flat_map(|(remote_key, p)| {
                p.streams
                    .iter()
                    .map(move |(source, s)| (*remote_key, *source, p.info.id.clone(), s.codec.clone()))
            }))
            .collect();
        let Some(participant) = room.participants.get_mut(&key) else {
            return;
        };
        participant.renegotiate = false;
        if !participant.media.receives() {
            // A send-only participant gets no legs.
            desired.clear();
        }
        let result = sync_legs(participant, &desired).and_then(|()| {
            if participant.pc.get_transceivers().next().is_none() {
                // Nothing to send or receive yet (a viewer before the first stream): an offer
                // without m-sections gives the peer connection no transport, and the answer to
                // it closes the connection. The first stream marks this participant again.
                return Ok(false);
            }
            let offer = participant.pc.create_offer(None)?;
            participant.pc.set_local_description(now, offer)?;
            Ok(true)
        });
        match result {
            Ok(true) => {}
            Ok(false) => return,
            Err(err) => {
                tracing::warn!(participant = %participant.id, %err, "could not create an offer");
                let message = format!("the bridge could not renegotiate: {err}");
                self.protocol_error(now, key, ErrorCode::Internal, &message);
                return;
            }
        }
        let sdp = participant
            .pc
            .local_description()
            .map(|d| crate::sdp_munge::candidates_in_every_section(&d.sdp))
            .unwrap_or_default();
        // The camera is received as simulcast layers when the client sends them (a screen is one).
        let camera_mids: Vec<String> = participant
            .slots
            .iter()
            .filter(|slot| slot.source == MediaSource::Camera)
            .filter_map(|slot| participant.pc.rtp_transceiver(slot.transceiver)?.mid().clone())
            .collect();
        let sdp = crate::simulcast::sdp::offer_simulcast(&sdp, &camera_mids);
        let mut tracks = Vec::with_capacity(participant.legs.len());
        let mut publishers: HashMap<ParticipantKey, ParticipantId> = HashMap::new();
        for (publisher, _, id, _) in &desired {
            publishers.insert(*publisher, id.clone());
        }
        let transceivers: Vec<_> = participant.pc.get_transceivers().collect();
        for ((publisher, source), leg) in &participant.legs {
            let mid = transceivers.iter().find_map(|id| {
                let transceiver = participant.pc.rtp_transceiver(*id)?;
                (transceiver.sender() == Some(leg.sender_id))
                    .then(|| transceiver.mid().clone())
                    .flatten()
            });
            if let (Some(mid), Some(id)) = (mid, publishers.get(publisher)) {
                tracks.push(TrackInfo {
                    mid,
                    participant_id: id.clone(),
                    source: *source,
                });
            }
        }
        participant.awaiting_answer = true;
        participant.offers_sent += 1;
        participant.dirty = true;
        self.outputs.push_back(ShardOutput::ToClient {
            key,
            message: ServerMessage::Offer { sdp, tracks },
        });
        // New legs aim at the layer the subscriber's constraints and the sources' heights ask for,
        // within its bandwidth allocation.
        if let Some(room) = self.rooms.get_mut(room_id)
            && room
                .participants
                .get(&key)
                .is_some_and(|p| p.constraints.is_some() || p.bwe.estimate_bps().is_some())
        {
            super::simulcast::retarget_legs(now, room, key);
        }
        // Legs of streams that ended are gone now: their bridges may stop sending.
        self.refresh_demand(room_id);
    }
}

pub(super) fn recvonly() -> RTCRtpTransceiverInit {
    RTCRtpTransceiverInit {
        direction: RTCRtpTransceiverDirection::Recvonly,
        streams: vec![],
        send_encodings: vec![],
    }
}

pub(super) fn mark_others_for_renegotiation(room: &mut Room, publisher: ParticipantKey) {
    for other in room.participants.values_mut().filter(|p| p.key != publisher) {
        other.renegotiate = true;
        other.dirty = true;
    }
}
