//! The participants' media state the session owes control, coalesced: only the latest state of
//! each hosted participant is kept, and those that changed go out with the next heartbeat, at
//! most [`MEDIA_UPDATES_PER_MESSAGE_MAX`] at a time. A guest flipping its mute costs control one
//! entry per heartbeat, not one message per flip.

use bridgemesh_proto::bridge_session::{HostedParticipant, MEDIA_UPDATES_PER_MESSAGE_MAX, ParticipantMedia};
use std::collections::{BTreeMap, BTreeSet};

#[derive(Debug, Default)]
pub struct MediaReports {
    latest: BTreeMap<HostedParticipant, ParticipantMedia>,
    dirty: BTreeSet<HostedParticipant>,
}

impl MediaReports {
    /// Keeps `media` of a participant in `hosted` (the hosted set bounds what is kept).
    pub fn note(&mut self, media: ParticipantMedia, hosted: &BTreeSet<HostedParticipant>) {
        let key = HostedParticipant {
            room: media.room.clone(),
            participant: media.participant.clone(),
        };
        if !hosted.contains(&key) {
            return;
        }
        self.dirty.insert(key.clone());
        self.latest.insert(key, media);
    }

    pub fn forget(&mut self, participant: &HostedParticipant) {
        self.latest.remove(participant);
        self.dirty.remove(participant);
    }

    /// A new registration: control (perhaps another node) knows none of it.
    pub fn all_dirty(&mut self) {
        self.dirty = self.latest.keys().cloned().collect();
    }

    /// The next batch to send, if anything changed.
    pub fn take_batch(&mut self) -> Option<Vec<ParticipantMedia>> {
        if self.dirty.is_empty() {
            return None;
        }
        let mut batch = Vec::new();
        while batch.len() < MEDIA_UPDATES_PER_MESSAGE_MAX {
            let Some(key) = self.dirty.pop_first() else {
                break;
            };
            if let Some(media) = self.latest.get(&key) {
                batch.push(media.clone());
            }
        }
        Some(batch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bridgemesh_proto::{ParticipantId, RoomId};

    fn media(name: &str, muted: bool) -> ParticipantMedia {
        ParticipantMedia {
            e2ee: false,
            room: RoomId::new("r").unwrap(),
            participant: ParticipantId::new(name).unwrap(),
            connected_at_ms: 1,
            microphone_muted: muted,
            camera_muted: false,
            sources: Vec::new(),
            hand_raised_at_ms: None,
        }
    }

    fn hosted(names: &[&str]) -> BTreeSet<HostedParticipant> {
        names
            .iter()
            .map(|n| HostedParticipant {
                room: RoomId::new("r").unwrap(),
                participant: ParticipantId::new(*n).unwrap(),
            })
            .collect()
    }

    #[test]
    fn a_thousand_flips_are_one_update_and_strangers_are_not_kept() {
        let hosted = hosted(&["ada"]);
        let mut reports = MediaReports::default();
        for i in 0..1000 {
            reports.note(media("ada", i % 2 == 0), &hosted);
        }
        reports.note(media("ghost", true), &hosted);
        let batch = reports.take_batch().unwrap();
        assert_eq!(batch, vec![media("ada", false)]);
        assert_eq!(reports.take_batch(), None);
        reports.all_dirty();
        assert_eq!(reports.take_batch().unwrap().len(), 1);
        reports.forget(&hosted.first().unwrap().clone());
        reports.all_dirty();
        assert_eq!(reports.take_batch(), None);
    }
}
