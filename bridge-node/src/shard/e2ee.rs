//! The room's "end-to-end encryption required" flag: set by a moderator, shown to everyone (late
//! joiners too), carried to the room's other bridges. The bridge never holds a key: the pages derive
//! it from a passphrase shared out of band and encrypt frames before the packetizer
//! (`docs/e2ee.md`). For the media path nothing changes: payloads are forwarded untouched and every
//! decision the bridge takes reads RTP headers, header extensions and RTCP only.
//!
//! Bridges may hear of changes in different orders (two moderators on two bridges at once); the
//! flag with the later `changed_at_ms` wins, ties broken by the setter's id, so they all settle on
//! the same value whatever the order.

use super::{LinkIndex, Shard, ShardOutput};
use crate::demux::ParticipantKey;
use bridgemesh_proto::api::ErrorCode;
use bridgemesh_proto::cascade::LinkMessage;
use bridgemesh_proto::signaling::ServerMessage;
use bridgemesh_proto::{ParticipantId, RoomId};
use std::time::Instant;

/// The room's flag as this bridge holds it; absent until a moderator first sets it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct E2eeFlag {
    pub required: bool,
    pub by: ParticipantId,
    pub changed_at_ms: u64,
}

impl E2eeFlag {
    /// Whether this flag replaces `current` (last writer wins; a total order, so every bridge
    /// agrees).
    pub fn supersedes(&self, current: Option<&E2eeFlag>) -> bool {
        current.is_none_or(|c| {
            (self.changed_at_ms, &self.by, self.required) > (c.changed_at_ms, &c.by, c.required)
        })
    }

    fn to_client(&self) -> ServerMessage {
        ServerMessage::E2ee {
            required: self.required,
            by: self.by.clone(),
            changed_at_ms: self.changed_at_ms,
        }
    }

    fn to_link(&self, room: &RoomId) -> LinkMessage {
        LinkMessage::E2ee {
            room: room.clone(),
            required: self.required,
            by: self.by.clone(),
            changed_at_ms: self.changed_at_ms,
        }
    }
}

impl super::Room {
    /// Whether the room's media is end-to-end encrypted by its pages (what a recording of the
    /// room would hold: ciphertext).
    pub fn e2ee_required(&self) -> bool {
        self.e2ee.as_ref().is_some_and(|f| f.required)
    }

    /// A recording in progress while the room requires encryption holds ciphertext: its listing
    /// and manifest say so. Called when either starts.
    pub(super) fn note_encrypted_recording(&self) {
        if let Some(recording) = self.recording.recorder.as_ref().filter(|_| self.e2ee_required()) {
            recording.mark_encrypted();
        }
    }
}

impl Shard {
    /// `set_e2ee` from a local participant: moderators only.
    pub(super) fn set_e2ee(&mut self, now: Instant, room_id: &RoomId, key: ParticipantKey, required: bool) {
        let wall_ms = self.wall_ms_at(now, now);
        let Some(room) = self.rooms.get_mut(room_id) else {
            return;
        };
        let Some(asker) = room.participants.get(&key) else {
            return;
        };
        if !asker.moderator {
            self.outputs.push_back(ShardOutput::ToClient {
                key,
                message: ServerMessage::Error {
                    code: ErrorCode::Forbidden,
                    message: "only a moderator can turn end-to-end encryption on or off".into(),
                },
            });
            return;
        }
        if let Some(current) = room.e2ee.as_ref().filter(|f| f.required == required) {
            // Nothing changes; the asker hears the state it asked for.
            let message = current.to_client();
            self.outputs.push_back(ShardOutput::ToClient { key, message });
            return;
        }
        // Later than what the room holds even if this bridge's clock is behind the setter's.
        let changed_at_ms = room
            .e2ee
            .as_ref()
            .map_or(wall_ms, |c| wall_ms.max(c.changed_at_ms + 1));
        let flag = E2eeFlag {
            required,
            by: asker.id.clone(),
            changed_at_ms,
        };
        tracing::info!(room = %room_id, required, "end-to-end encryption flag set by a moderator");
        room.e2ee = Some(flag.clone());
        room.note_encrypted_recording();
        self.tell_room_e2ee(room_id, &flag);
        self.tell_peers(room_id, flag.to_link(room_id));
        self.report_room_media(now, room_id);
    }

    /// Right after `welcome`: the room's flag, once it was ever set.
    pub(super) fn send_e2ee_state(&mut self, room_id: &RoomId, key: ParticipantKey) {
        if let Some(message) = self
            .rooms
            .get(room_id)
            .and_then(|r| r.e2ee.as_ref())
            .map(E2eeFlag::to_client)
        {
            self.outputs.push_back(ShardOutput::ToClient { key, message });
        }
    }

    /// A newly opened link hears the room's flag, once it was ever set.
    pub(super) fn send_e2ee_to_link(&mut self, room_id: &RoomId, link: LinkIndex) {
        if let Some(message) = self
            .rooms
            .get(room_id)
            .and_then(|r| r.e2ee.as_ref())
            .map(|f| f.to_link(room_id))
        {
            self.outputs.push_back(ShardOutput::ToLink { link, message });
        }
    }

    /// The flag from another bridge of the room: kept and told when it is newer. Not sent on: every
    /// bridge of a room has a link to every other.
    pub(super) fn remote_e2ee(&mut self, now: Instant, room_id: &RoomId, link: LinkIndex, flag: E2eeFlag) {
        let Some(room) = self.rooms.get_mut(room_id) else {
            return;
        };
        if !room.cascade.peers.contains(&link) || !flag.supersedes(room.e2ee.as_ref()) {
            return;
        }
        let told = room.e2ee.as_ref().is_none_or(|c| c.required != flag.required);
        room.e2ee = Some(flag.clone());
        room.note_encrypted_recording();
        if told {
            self.tell_room_e2ee(room_id, &flag);
            self.report_room_media(now, room_id);
        }
    }

    /// Control's admin view shows the flag with each participant's media state.
    fn report_room_media(&mut self, now: Instant, room_id: &RoomId) {
        let keys: Vec<ParticipantKey> = self
            .rooms
            .get(room_id)
            .map(|r| r.participants.keys().copied().collect())
            .unwrap_or_default();
        for key in keys {
            self.report_media(now, room_id, key);
        }
    }

    fn tell_room_e2ee(&mut self, room_id: &RoomId, flag: &E2eeFlag) {
        let Some(room) = self.rooms.get(room_id) else {
            return;
        };
        for participant in room.participants.values() {
            self.outputs.push_back(ShardOutput::ToClient {
                key: participant.key,
                message: flag.to_client(),
            });
        }
    }
}
