//! What a meeting shares besides media: chat (history in [`crate::room_chat`]), raised hands and
//! reactions, for local participants and across cascade links.
//!
//! A raised hand is part of the participant's roster entry (`hand_raised_at_ms`), so it travels
//! with `welcome`, `participant_updated` and the links' `participant` messages like mute state
//! does, and late joiners see it. Times are this bridge's wall clock, read through the shard's one
//! `SystemInstant` anchor, so the shard stays driven by `now`.

use super::{LinkIndex, Shard, ShardOutput};
use crate::demux::ParticipantKey;
use crate::room_chat::{Author, Origin, route};
use bridgemesh_proto::api::ErrorCode;
use bridgemesh_proto::cascade::LinkMessage;
use bridgemesh_proto::meeting::{CHAT_TEXT_MAX_BYTES, ChatMessage, ChatMessageId, Reaction};
use bridgemesh_proto::signaling::{ClientMessage, ServerMessage};
use bridgemesh_proto::{ParticipantId, RoomId};
use rtc::shared::time::SystemInstant;
use std::time::Instant;

/// Longest sender name a chat message from another bridge may carry (names come from tickets).
const CHAT_FROM_NAME_MAX_BYTES: usize = 256;

/// What the room features cost, for `/metrics`.
#[derive(Debug, Default, Clone, Copy)]
pub struct MeetingStats {
    /// Chat messages local participants sent that the bridge accepted (room and private).
    pub chat_accepted: u64,
    /// Chat messages and deletes refused (too long, empty, unknown target, not a moderator).
    pub chat_refused: u64,
    /// Chat messages other bridges of a room sent this one (live or history).
    pub chat_from_links: u64,
    /// Reactions local participants sent.
    pub reactions: u64,
    /// Hands raised by local participants.
    pub hands_raised: u64,
}

impl std::ops::AddAssign for MeetingStats {
    fn add_assign(&mut self, other: Self) {
        self.chat_accepted += other.chat_accepted;
        self.chat_refused += other.chat_refused;
        self.chat_from_links += other.chat_from_links;
        self.reactions += other.reactions;
        self.hands_raised += other.hands_raised;
    }
}

impl Shard {
    /// Milliseconds since the Unix epoch at `now`.
    fn wall_ms(&mut self, now: Instant) -> u64 {
        self.wall_ms_at(now, now)
    }

    /// Milliseconds since the Unix epoch at `at` (not after `now`).
    pub(super) fn wall_ms_at(&mut self, now: Instant, at: Instant) -> u64 {
        let wall_clock = *self.wall_clock.get_or_insert_with(|| SystemInstant::now(now));
        let at = wall_clock
            .unix(now)
            .saturating_sub(now.saturating_duration_since(at));
        at.as_millis() as u64
    }

    /// Reports a local participant's media state to control (the admin API's view).
    pub(super) fn report_media(&mut self, now: Instant, room_id: &RoomId, key: ParticipantKey) {
        let Some(participant) = self.rooms.get(room_id).and_then(|r| r.participants.get(&key)) else {
            return;
        };
        let connected_at = participant.joined_at;
        let info = participant.info();
        let e2ee = self.rooms.get(room_id).is_some_and(|r| r.e2ee_required());
        let connected_at_ms = self.wall_ms_at(now, connected_at);
        self.outputs
            .push_back(ShardOutput::Event(super::BridgeEvent::ParticipantMedia(
                bridgemesh_proto::bridge_session::ParticipantMedia {
                    room: room_id.clone(),
                    participant: info.id,
                    connected_at_ms,
                    microphone_muted: info.microphone_muted,
                    camera_muted: info.camera_muted,
                    sources: info.sources,
                    hand_raised_at_ms: info.hand_raised_at_ms,
                    e2ee,
                },
            )));
    }

    fn tell_client(&mut self, key: ParticipantKey, message: ServerMessage) {
        self.outputs.push_back(ShardOutput::ToClient { key, message });
    }

    fn refuse_request(&mut self, key: ParticipantKey, code: ErrorCode, message: String) {
        self.tell_client(key, ServerMessage::Error { code, message });
    }

    /// Right after `welcome`: the room's chat history, when there is any.
    pub(super) fn send_chat_history(&mut self, room_id: &RoomId, key: ParticipantKey) {
        let Some(room) = self.rooms.get(room_id) else {
            return;
        };
        if room.chat.history().len() == 0 {
            return;
        }
        let messages = room.chat.history().cloned().collect();
        self.tell_client(key, ServerMessage::ChatHistory { messages });
    }

    /// A newly opened link gets the room's history, message by message (each fits a link message).
    pub(super) fn send_chat_history_to_link(&mut self, room_id: &RoomId, link: LinkIndex) {
        let Some(room) = self.rooms.get(room_id) else {
            return;
        };
        for message in room.chat.history() {
            self.outputs.push_back(ShardOutput::ToLink {
                link,
                message: LinkMessage::Chat {
                    room: room_id.clone(),
                    message: message.clone(),
                },
            });
        }
    }

    /// `chat`, `delete_chat`, `raise_hand`, `lower_hand` and `react` from a local participant.
    pub(super) fn handle_meeting_message(
        &mut self,
        now: Instant,
        room_id: &RoomId,
        key: ParticipantKey,
        message: ClientMessage,
    ) {
        match message {
            ClientMessage::Chat { text, to } => self.local_chat(now, room_id, key, text, to),
            ClientMessage::DeleteChat { id } => self.local_delete_chat(room_id, key, id),
            ClientMessage::RaiseHand => {
                self.stats.meeting.hands_raised += 1;
                let at = self.wall_ms(now);
                self.set_hand(now, room_id, key, Some(at));
            }
            ClientMessage::LowerHand { participant } => self.lower_hand(now, room_id, key, participant),
            ClientMessage::React { reaction } => self.local_reaction(room_id, key, reaction),
            other => unreachable!("not a meeting message: {other:?}"),
        }
    }

    fn local_chat(
        &mut self,
        now: Instant,
        room_id: &RoomId,
        key: ParticipantKey,
        text: String,
        to: Option<ParticipantId>,
    ) {
        let sent_at_ms = self.wall_ms(now);
        self.chat_counter += 1;
        let counter = self.chat_counter;
        let Some(room) = self.rooms.get_mut(room_id) else {
            return;
        };
        let Some(sender) = room.participants.get(&key) else {
            return;
        };
        let present = to.as_ref().is_some_and(|target| {
            room.participants.values().any(|p| p.id == *target)
                || room.cascade.remote.values().any(|r| r.info.id == *target)
        });
        let author = Author {
            id: &sender.id,
            display_name: &sender.display_name,
            moderator: sender.moderator,
        };
        match room.chat.accept(author, text, to, present, sent_at_ms, counter) {
            Ok(message) => {
                self.stats.meeting.chat_accepted += 1;
                self.deliver_chat(room_id, &message, Origin::Local(key));
            }
            Err(err) => {
                self.stats.meeting.chat_refused += 1;
                self.refuse_request(key, err.code(), err.to_string());
            }
        }
    }

    fn deliver_chat(
        &mut self,
        room_id: &RoomId,
        message: &ChatMessage,
        origin: Origin<ParticipantKey, LinkIndex>,
    ) {
        let Some(room) = self.rooms.get(room_id) else {
            return;
        };
        let delivery = route(
            message,
            origin,
            room.participants.values().map(|p| (p.key, &p.id)),
            room.cascade.remote.values().map(|r| (r.link, &r.info.id)),
            room.cascade.peers.iter().copied(),
        );
        for key in delivery.clients {
            self.tell_client(
                key,
                ServerMessage::Chat {
                    message: message.clone(),
                },
            );
        }
        for link in delivery.links {
            self.outputs.push_back(ShardOutput::ToLink {
                link,
                message: LinkMessage::Chat {
                    room: room_id.clone(),
                    message: message.clone(),
                },
            });
        }
    }

    fn local_delete_chat(&mut self, room_id: &RoomId, key: ParticipantKey, id: ChatMessageId) {
        let Some(room) = self.rooms.get_mut(room_id) else {
            return;
        };
        let Some(sender) = room.participants.get(&key) else {
            return;
        };
        let author = Author {
            id: &sender.id,
            display_name: &sender.display_name,
            moderator: sender.moderator,
        };
        let by = sender.id.clone();
        if let Err(err) = room.chat.delete(author, &id) {
            self.stats.meeting.chat_refused += 1;
            self.refuse_request(key, err.code(), err.to_string());
            return;
        }
        self.tell_room_deleted(room_id, &id, &by);
        self.tell_peers(
            room_id,
            LinkMessage::ChatDeleted {
                room: room_id.clone(),
                id,
                by,
            },
        );
    }

    fn tell_room_deleted(&mut self, room_id: &RoomId, id: &ChatMessageId, by: &ParticipantId) {
        let Some(room) = self.rooms.get(room_id) else {
            return;
        };
        for participant in room.participants.values() {
            self.outputs.push_back(ShardOutput::ToClient {
                key: participant.key,
                message: ServerMessage::ChatDeleted {
                    id: id.clone(),
                    by: by.clone(),
                },
            });
        }
    }

    /// Raises (`Some(at)`) or lowers a local participant's hand and tells the room when it changed.
    fn set_hand(&mut self, now: Instant, room_id: &RoomId, key: ParticipantKey, raised_at_ms: Option<u64>) {
        let Some(participant) = self
            .rooms
            .get_mut(room_id)
            .and_then(|r| r.participants.get_mut(&key))
        else {
            return;
        };
        // Raising a raised hand keeps its place in the queue.
        if participant.hand_raised_at_ms.is_some() == raised_at_ms.is_some() {
            return;
        }
        participant.hand_raised_at_ms = raised_at_ms;
        self.broadcast_update(room_id, key);
        self.report_media(now, room_id, key);
        // The participant's own view too: its hand is part of what everyone sees.
        if let Some(info) = self
            .rooms
            .get(room_id)
            .and_then(|r| r.participants.get(&key))
            .map(|p| p.info())
        {
            self.tell_client(key, ServerMessage::ParticipantUpdated { participant: info });
        }
    }

    fn lower_hand(
        &mut self,
        now: Instant,
        room_id: &RoomId,
        key: ParticipantKey,
        whose: Option<ParticipantId>,
    ) {
        let Some(room) = self.rooms.get(room_id) else {
            return;
        };
        let Some(asker) = room.participants.get(&key) else {
            return;
        };
        let Some(target) = whose.filter(|id| *id != asker.id) else {
            self.set_hand(now, room_id, key, None);
            return;
        };
        if !asker.moderator {
            let message = "only a moderator can lower another participant's hand".to_owned();
            self.refuse_request(key, ErrorCode::Forbidden, message);
            return;
        }
        if let Some(local) = room.participants.values().find(|p| p.id == target).map(|p| p.key) {
            self.set_hand(now, room_id, local, None);
        } else if let Some(link) = room
            .cascade
            .remote
            .values()
            .find(|r| r.info.id == target)
            .map(|r| r.link)
        {
            self.outputs.push_back(ShardOutput::ToLink {
                link,
                message: LinkMessage::LowerHand {
                    room: room_id.clone(),
                    participant: target,
                },
            });
        } else {
            self.refuse_request(
                key,
                ErrorCode::NotFound,
                format!("no participant {target} is in this room"),
            );
        }
    }

    fn local_reaction(&mut self, room_id: &RoomId, key: ParticipantKey, reaction: Reaction) {
        let Some(room) = self.rooms.get(room_id) else {
            return;
        };
        let Some(participant_id) = room.participants.get(&key).map(|p| p.id.clone()) else {
            return;
        };
        self.stats.meeting.reactions += 1;
        self.tell_room_reaction(room_id, &participant_id, reaction);
        self.tell_peers(
            room_id,
            LinkMessage::Reaction {
                room: room_id.clone(),
                participant: participant_id,
                reaction,
            },
        );
    }

    fn tell_room_reaction(&mut self, room_id: &RoomId, participant_id: &ParticipantId, reaction: Reaction) {
        let Some(room) = self.rooms.get(room_id) else {
            return;
        };
        for local in room.participants.values() {
            self.outputs.push_back(ShardOutput::ToClient {
                key: local.key,
                message: ServerMessage::Reaction {
                    participant_id: participant_id.clone(),
                    reaction,
                },
            });
        }
    }

    /// `chat`, `chat_deleted`, `lower_hand` and `reaction` from another bridge of the room.
    pub(super) fn handle_link_meeting_message(
        &mut self,
        now: Instant,
        link: LinkIndex,
        message: LinkMessage,
    ) {
        match message {
            LinkMessage::Chat { room, message } => self.remote_chat(&room, link, message),
            LinkMessage::ChatDeleted { room, id, by } => {
                let forgotten = self.rooms.get_mut(&room).is_some_and(|r| r.chat.forget(&id));
                if forgotten {
                    self.tell_room_deleted(&room, &id, &by);
                }
            }
            LinkMessage::LowerHand { room, participant } => {
                let local = self
                    .rooms
                    .get(&room)
                    .and_then(|r| r.participants.values().find(|p| p.id == participant))
                    .map(|p| p.key);
                if let Some(key) = local {
                    self.set_hand(now, &room, key, None);
                }
            }
            LinkMessage::Reaction {
                room,
                participant,
                reaction,
            } => {
                // Only from a participant that link announced.
                let known = self.rooms.get(&room).is_some_and(|r| {
                    r.cascade
                        .remote
                        .values()
                        .any(|p| p.link == link && p.info.id == participant)
                });
                if known {
                    self.tell_room_reaction(&room, &participant, reaction);
                }
            }
            other => unreachable!("not a meeting link message: {other:?}"),
        }
    }

    fn remote_chat(&mut self, room_id: &RoomId, link: LinkIndex, message: ChatMessage) {
        // The far side checked its participant's message; a bridge that sends more is dropped from,
        // not believed.
        if message.text.len() > CHAT_TEXT_MAX_BYTES || message.from_name.len() > CHAT_FROM_NAME_MAX_BYTES {
            tracing::debug!(room = %room_id, "oversized chat message from a link dropped");
            return;
        }
        let Some(room) = self.rooms.get_mut(room_id) else {
            return;
        };
        if !room.cascade.peers.contains(&link) {
            return;
        }
        self.stats.meeting.chat_from_links += 1;
        if !message.is_private() && !room.chat.record(message.clone()) {
            return;
        }
        self.deliver_chat(room_id, &message, Origin::Link(link));
    }
}

/// Whether a client message is one [`Shard::handle_meeting_message`] takes.
pub(super) fn is_meeting_message(message: &ClientMessage) -> bool {
    matches!(
        message,
        ClientMessage::Chat { .. }
            | ClientMessage::DeleteChat { .. }
            | ClientMessage::RaiseHand
            | ClientMessage::LowerHand { .. }
            | ClientMessage::React { .. }
    )
}

/// Whether a link message is one [`Shard::handle_link_meeting_message`] takes.
pub(super) fn is_meeting_link_message(message: &LinkMessage) -> bool {
    matches!(
        message,
        LinkMessage::Chat { .. }
            | LinkMessage::ChatDeleted { .. }
            | LinkMessage::LowerHand { .. }
            | LinkMessage::Reaction { .. }
    )
}
