//! The shard's side of the dominant speaker ([`crate::dominant_speaker`]): audio levels of local
//! publishers (opened on the fast path) and of remote ones (arriving over cascade links) feed one
//! detector per room, and a change is told to every local participant of the room. Each bridge of
//! a cascaded room decides from the audio it receives, which is everyone's.

use super::{Room, ShardOutput};
use crate::demux::ParticipantKey;
use crate::dominant_speaker::DominantSpeaker;
use bridgemesh_proto::ParticipantId;
use bridgemesh_proto::signaling::ServerMessage;
use std::collections::VecDeque;
use std::time::Instant;

/// `publisher` (local or remote) sent audio at `level_dbov`.
pub(super) fn heard(
    now: Instant,
    room: &mut Room,
    publisher: ParticipantKey,
    level_dbov: u8,
    outputs: &mut VecDeque<ShardOutput>,
) {
    let detector = room.speaker.get_or_insert_with(|| DominantSpeaker::new(now));
    if detector.record(now, publisher, level_dbov).is_none() {
        return;
    }
    // Last-N and the allocation follow speaker order.
    let keys: Vec<ParticipantKey> = room.participants.keys().copied().collect();
    for key in keys {
        super::bandwidth::allocate_legs(now, room, key);
    }
    let Some(speaker) = speaker_id(room) else {
        return;
    };
    for participant in room.participants.values() {
        outputs.push_back(ShardOutput::ToClient {
            key: participant.key,
            message: ServerMessage::DominantSpeaker {
                participant_id: speaker.clone(),
            },
        });
    }
}

/// Tells a participant who just joined who is speaking, if anyone has yet.
pub(super) fn tell_newcomer(room: &Room, key: ParticipantKey, outputs: &mut VecDeque<ShardOutput>) {
    if let Some(speaker) = speaker_id(room) {
        outputs.push_back(ShardOutput::ToClient {
            key,
            message: ServerMessage::DominantSpeaker {
                participant_id: speaker,
            },
        });
    }
}

/// `publisher` left the room (or its link did): no longer a candidate.
pub(super) fn forget(room: &mut Room, publisher: ParticipantKey) {
    if let Some(detector) = room.speaker.as_mut() {
        detector.remove(publisher);
    }
}

fn speaker_id(room: &Room) -> Option<ParticipantId> {
    let key = room.speaker.as_ref()?.current()?;
    super::publisher_id(&room.participants, &room.cascade, key).cloned()
}
