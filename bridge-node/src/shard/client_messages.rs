//! What a participant's signaling asks of the shard, what the room is told, and leaving.

use super::*;

impl Shard {
    pub(super) fn handle_client(&mut self, now: Instant, key: ParticipantKey, message: ClientMessage) {
        let Some(room_id) = self.room_of.get(&key).cloned() else {
            return;
        };
        let Some(room) = self.rooms.get_mut(&room_id) else {
            return;
        };
        let Some(participant) = room.participants.get_mut(&key) else {
            return;
        };
        let mut roster_changed = false;
        match message {
            ClientMessage::Hello { .. } => {
                self.protocol_error(now, key, ErrorCode::Conflict, "hello was already received");
                return;
            }
            ClientMessage::Answer { sdp } => {
                if !participant.awaiting_answer {
                    self.outputs.push_back(ShardOutput::ToClient {
                        key,
                        message: ServerMessage::Error {
                            code: ErrorCode::Conflict,
                            message: "no offer is outstanding".into(),
                        },
                    });
                    return;
                }
                let sdp = crate::simulcast::sdp::answer_without_unsent_simulcast(&sdp);
                let applied = RTCSessionDescription::answer(sdp)
                    .and_then(|answer| participant.pc.set_remote_description(now, answer));
                if let Err(err) = applied {
                    let message = format!("the answer could not be applied: {err}");
                    self.protocol_error(now, key, ErrorCode::InvalidField, &message);
                    return;
                }
                participant.awaiting_answer = false;
                participant.dirty = true;
                let connected = participant.connected;
                let mut newly_ready = resolve_legs(room, key);
                let Some(participant) = room.participants.get_mut(&key) else {
                    return;
                };
                newly_ready.extend(crate::legs::apply_answer_directions(participant));
                let wanted = |leg: &(ParticipantKey, MediaSource)| {
                    participant.legs.get(leg).is_some_and(|l| !l.declined)
                };
                let publishers: Vec<_> = newly_ready
                    .into_iter()
                    .filter(|leg| !leg.1.is_audio() && wanted(leg))
                    .collect();
                // Before the keyframe requests, so a remote publisher's bridge starts sending first.
                self.refresh_demand(&room_id);
                if connected {
                    for (publisher, source) in publishers {
                        self.request_keyframe(now, &room_id, publisher, source);
                    }
                }
            }
            ClientMessage::Mute { microphone, camera } => {
                // Told to the room (and the cascade peers) only when it changes.
                roster_changed =
                    (participant.microphone_muted, participant.camera_muted) != (microphone, camera);
                participant.microphone_muted = microphone;
                participant.camera_muted = camera;
            }
            ClientMessage::Publish { .. } if !participant.media.publishes() => {
                self.outputs.push_back(ShardOutput::ToClient {
                    key,
                    message: ServerMessage::Error {
                        code: ErrorCode::Conflict,
                        message: "a receive_only participant publishes nothing".into(),
                    },
                });
                return;
            }
            ClientMessage::Publish { source } => match participant.slot_mut(source) {
                Some(slot) if slot.active => {}
                Some(slot) => {
                    slot.active = true;
                    roster_changed = true;
                    mark_others_for_renegotiation(room, key);
                }
                None => {
                    let kind = if source.is_audio() {
                        RtpCodecKind::Audio
                    } else {
                        RtpCodecKind::Video
                    };
                    match participant.pc.add_transceiver_from_kind(kind, Some(recvonly())) {
                        Ok(transceiver) => {
                            participant.slots.push(RecvSlot {
                                source,
                                transceiver,
                                active: true,
                                track: None,
                            });
                            participant.renegotiate = true;
                            participant.dirty = true;
                        }
                        Err(err) => {
                            let message = format!("cannot add a slot for {}: {err}", source.as_str());
                            self.protocol_error(now, key, ErrorCode::Internal, &message);
                            return;
                        }
                    }
                }
            },
            ClientMessage::Unpublish { source } => {
                if let Some(slot) = participant.slot_mut(source).filter(|slot| slot.active) {
                    slot.active = false;
                    roster_changed = true;
                    mark_others_for_renegotiation(room, key);
                }
            }
            ClientMessage::Leave => {
                self.remove_participant(now, key, Some(ByeReason::Left));
                return;
            }
            ClientMessage::ReceiverConstraints(constraints) => {
                self.apply_constraints(now, &room_id, key, constraints);
                return;
            }
            ClientMessage::SetE2ee { required } => {
                self.set_e2ee(now, &room_id, key, required);
                return;
            }
            ClientMessage::StartRecording | ClientMessage::StopRecording => {
                let start = matches!(message, ClientMessage::StartRecording);
                self.recording_request(&room_id, key, start);
                return;
            }
            message if super::meeting::is_meeting_message(&message) => {
                self.handle_meeting_message(now, &room_id, key, message);
                return;
            }
            _ => {
                self.outputs.push_back(ShardOutput::ToClient {
                    key,
                    message: ServerMessage::Error {
                        code: ErrorCode::InvalidField,
                        message: "this bridge does not support that message".into(),
                    },
                });
                return;
            }
        }
        if roster_changed {
            self.sync_stream_announcements(&room_id, key);
            self.broadcast_update(&room_id, key);
            self.report_media(now, &room_id, key);
        }
        self.pump(now, &room_id);
    }

    pub(super) fn protocol_error(
        &mut self,
        now: Instant,
        key: ParticipantKey,
        code: ErrorCode,
        message: &str,
    ) {
        self.outputs.push_back(ShardOutput::ToClient {
            key,
            message: ServerMessage::Error {
                code,
                message: message.to_owned(),
            },
        });
        self.remove_participant(now, key, Some(ByeReason::ProtocolError));
    }

    pub(super) fn broadcast_update(&mut self, room_id: &RoomId, about: ParticipantKey) {
        let Some(room) = self.rooms.get(room_id) else {
            return;
        };
        let Some(participant) = room.participants.get(&about) else {
            return;
        };
        let info = participant.info();
        for other in room.participants.values().filter(|p| p.key != about) {
            self.outputs.push_back(ShardOutput::ToClient {
                key: other.key,
                message: ServerMessage::ParticipantUpdated {
                    participant: info.clone(),
                },
            });
        }
        self.tell_peers(
            room_id,
            LinkMessage::Participant {
                room: room_id.clone(),
                participant: info,
            },
        );
    }

    /// Ends a participant's session. `bye` is sent when the client's socket is still there.
    pub(super) fn remove_participant(&mut self, now: Instant, key: ParticipantKey, bye: Option<ByeReason>) {
        let Some(room_id) = self.room_of.remove(&key) else {
            return;
        };
        let Some(room) = self.rooms.get_mut(&room_id) else {
            return;
        };
        let Some(mut participant) = room.participants.remove(&key) else {
            return;
        };
        self.retire_streams(&room_id, &participant);
        self.tell_peers(
            &room_id,
            LinkMessage::ParticipantLeft {
                room: RoomId::clone(&room_id),
                participant: participant.id.clone(),
            },
        );
        let Some(room) = self.rooms.get_mut(&*room_id) else {
            return;
        };
        room.histories.retain(|(publisher, _, _), _| *publisher != key);
        room.source_layers.retain(|(publisher, _), _| *publisher != key);
        super::speakers::forget(room, key);
        let _ = participant.pc.close();
        while let Some(datagram) = participant.pc.poll_write() {
            self.outputs.push_back(ShardOutput::Transmit {
                to: datagram.transport.peer_addr,
                data: datagram.message,
            });
        }
        self.routes.remove_participant(&participant.ufrag);
        if let Some(reason) = bye {
            self.outputs.push_back(ShardOutput::ToClient {
                key,
                message: ServerMessage::Bye { reason },
            });
        }
        self.outputs.push_back(ShardOutput::CloseClient { key });
        announce_departure(&mut self.outputs, &mut room.participants, key, &participant.id);
        self.outputs
            .push_back(ShardOutput::Event(BridgeEvent::ParticipantLeft {
                room: RoomId::clone(&room_id),
                participant: participant.id,
                dropped: bye != Some(ByeReason::Left),
                over: super::session_over(bye),
            }));
        if room.participants.is_empty() {
            self.drop_room_if_unused(&room_id);
        } else {
            self.pump(now, &room_id);
        }
    }
}

/// Tells the local `participants` that `left` (publisher `key`, local or behind a cascade link)
/// is gone, and renegotiates those that received its tracks.
pub(super) fn announce_departure(
    outputs: &mut VecDeque<ShardOutput>,
    participants: &mut BTreeMap<ParticipantKey, Participant>,
    key: ParticipantKey,
    left: &ParticipantId,
) {
    for other in participants.values_mut() {
        if other.legs.keys().any(|(publisher, _)| *publisher == key) {
            other.renegotiate = true;
            other.dirty = true;
        }
        outputs.push_back(ShardOutput::ToClient {
            key: other.key,
            message: ServerMessage::ParticipantLeft {
                participant_id: left.clone(),
            },
        });
    }
}
