//! Participants arriving: a verified ticket becomes a peer connection and a seat in its room.

use super::*;

impl Shard {
    pub(super) fn connect(&mut self, now: Instant, request: ConnectRequest) {
        let ConnectRequest {
            key,
            room: room_id,
            participant_id,
            display_name,
            media,
            moderator,
        } = request;
        if self.removed.contains(&participant_id) {
            // Told like a participant kicked while connected, so the client does not rejoin.
            self.outputs.push_back(ShardOutput::ToClient {
                key,
                message: ServerMessage::Error {
                    code: ErrorCode::TicketRejected,
                    message: REMOVED_MESSAGE.to_owned(),
                },
            });
            self.outputs.push_back(ShardOutput::ToClient {
                key,
                message: ServerMessage::Bye {
                    reason: ByeReason::Kicked,
                },
            });
            self.outputs.push_back(ShardOutput::CloseClient { key });
            return;
        }
        // The same participant connecting again (a reconnect on a new socket) replaces the old session.
        let previous = self.rooms.get(&room_id).and_then(|room| {
            room.participants
                .values()
                .find(|p| p.id == participant_id)
                .map(|p| p.key)
        });
        if let Some(previous) = previous {
            self.remove_participant(now, previous, Some(ByeReason::Replaced));
        }
        // Announced by another bridge until now: it arrived here from there.
        let remote = self.rooms.get(&room_id).and_then(|room| {
            room.cascade
                .remote
                .iter()
                .find(|(_, p)| p.info.id == participant_id)
                .map(|(k, _)| *k)
        });
        if let Some(remote) = remote {
            self.remove_remote(now, &room_id, remote);
        }
        let size = self.rooms.get(&room_id).map_or(0, |room| room.participants.len());
        if size >= self.max_participants_per_room {
            self.refuse(key, ErrorCode::RoomFull, "this room is full on this bridge");
            return;
        }
        let credentials = IceCredentials::random();
        let mut participant = match self.new_participant(
            now,
            key,
            participant_id.clone(),
            display_name,
            media,
            &credentials,
        ) {
            Ok(participant) => participant,
            Err(err) => {
                tracing::warn!(%err, "could not create a peer connection");
                self.refuse(key, ErrorCode::Internal, "the bridge could not set up media");
                return;
            }
        };
        participant.moderator = moderator;
        self.routes.add_participant(
            credentials.ufrag,
            credentials.pwd,
            crate::demux::Route {
                shard: self.index,
                key,
            },
        );
        let room = self
            .rooms
            .entry(room_id.clone())
            .or_insert_with(|| Room::new(&room_id));
        let others = room
            .participants
            .values()
            .map(Participant::info)
            .chain(room.cascade.remote.values().map(|p| p.info.clone()))
            .collect();
        let info = participant.info();
        for other in room.participants.values() {
            self.outputs.push_back(ShardOutput::ToClient {
                key: other.key,
                message: ServerMessage::ParticipantJoined {
                    participant: info.clone(),
                },
            });
        }
        room.participants.insert(key, participant);
        self.room_of.insert(key, room.name.clone());
        self.tell_peers(
            &room_id,
            LinkMessage::Participant {
                room: room_id.clone(),
                participant: info,
            },
        );
        self.outputs.push_back(ShardOutput::ToClient {
            key,
            message: ServerMessage::Welcome {
                protocol_version: PROTOCOL_VERSION,
                room: room_id.clone(),
                participant_id: participant_id.clone(),
                participants: others,
            },
        });
        self.send_chat_history(&room_id, key);
        self.send_e2ee_state(&room_id, key);
        self.tell_newcomer_recording(&room_id, key);
        if let Some(room) = self.rooms.get(&room_id) {
            super::speakers::tell_newcomer(room, key, &mut self.outputs);
        }
        self.outputs
            .push_back(ShardOutput::Event(BridgeEvent::ParticipantJoined {
                room: room_id.clone(),
                participant: participant_id,
            }));
        // After the join event: the control session keeps media state of hosted participants only.
        self.report_media(now, &room_id, key);
        self.pump(now, &room_id);
    }

    /// Also offers `media_addr_v6` as a host candidate (a dual-stack bridge).
    pub fn with_ipv6_media_addr(mut self, media_addr_v6: Option<SocketAddr>) -> Self {
        self.media_addr_v6 = media_addr_v6;
        self
    }

    /// The host candidate a datagram from `peer` arrived at: the ICE agent matches it exactly.
    pub(super) fn local_addr_for(&self, peer: SocketAddr) -> SocketAddr {
        match (peer, self.media_addr_v6) {
            (SocketAddr::V6(_), Some(v6)) => v6,
            _ => self.media_addr,
        }
    }

    pub(super) fn new_participant(
        &self,
        now: Instant,
        key: ParticipantKey,
        id: ParticipantId,
        display_name: String,
        media: MediaMode,
        credentials: &IceCredentials,
    ) -> Result<Participant, rtc::shared::error::Error> {
        let mut pc = match self.media_addr_v6 {
            Some(v6) => build_peer_connection(now, credentials, &[self.media_addr, v6])?,
            None => build_peer_connection(now, credentials, &[self.media_addr])?,
        };
        let mut slots = Vec::new();
        // A receive-only participant is offered no slot: no recvonly m-line, no receiver.
        let publishes = if media.publishes() { 2 } else { 0 };
        for (source, kind) in [
            (MediaSource::Microphone, RtpCodecKind::Audio),
            (MediaSource::Camera, RtpCodecKind::Video),
        ]
        .into_iter()
        .take(publishes)
        {
            let transceiver = pc.add_transceiver_from_kind(kind, Some(recvonly()))?;
            slots.push(RecvSlot {
                source,
                transceiver,
                active: true,
                track: None,
            });
        }
        Ok(Participant {
            key,
            id,
            display_name,
            ufrag: credentials.ufrag.clone(),
            pc,
            microphone_muted: false,
            camera_muted: false,
            moderator: false,
            hand_raised_at_ms: None,
            slots,
            legs: BTreeMap::new(),
            awaiting_answer: false,
            renegotiate: true,
            offers_sent: 0,
            connected: false,
            dirty: true,
            next_timeout: None,
            joined_at: now,
            track_counter: 0,
            media_keys: None,
            media_addr: None,
            path: Default::default(),
            media,
            inbound: crate::fastpath::inbound::InboundMedia::new(rand::random()),
            constraints: None,
            bwe: Default::default(),
        })
    }

    pub(super) fn refuse(&mut self, key: ParticipantKey, code: ErrorCode, message: &str) {
        self.outputs.push_back(ShardOutput::ToClient {
            key,
            message: ServerMessage::Error {
                code,
                message: message.to_owned(),
            },
        });
        self.outputs.push_back(ShardOutput::CloseClient { key });
    }
}
