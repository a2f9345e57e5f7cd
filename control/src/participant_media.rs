//! What the bridges report of their participants' media (mute state, published sources, raised
//! hand, when they connected), as the control leader's bridge hub hears it: the half of "who is
//! in a room" that Raft does not hold. Membership (name, role, bridge, status) is replicated
//! state; this is soft state, rebuilt from the bridges' reports after every registration, so a
//! new leader knows it within a heartbeat of the bridges registering with it.
//!
//! Bounded: a bridge's entries are at most [`REGISTER_PARTICIPANTS_MAX`] (what it may host), and
//! they go when it reports the participant gone or its session ends.

use bridgemesh_proto::bridge_session::{ParticipantMedia, REGISTER_PARTICIPANTS_MAX};
use bridgemesh_proto::{BridgeId, ParticipantId, RoomId};
use std::collections::HashMap;

#[derive(Debug, Default)]
pub struct ParticipantMediaTable {
    entries: HashMap<(RoomId, ParticipantId), (BridgeId, ParticipantMedia)>,
    per_bridge: HashMap<BridgeId, usize>,
}

impl ParticipantMediaTable {
    /// The latest state `bridge` reported for some of its participants.
    pub fn note(&mut self, bridge: &BridgeId, updates: Vec<ParticipantMedia>) {
        for media in updates {
            let key = (media.room.clone(), media.participant.clone());
            match self.entries.get_mut(&key) {
                Some((owner, entry)) if owner == bridge => *entry = media,
                Some(_) => {
                    // It moved: the new bridge's word counts.
                    self.remove(&key);
                    self.insert(bridge, key, media);
                }
                None => self.insert(bridge, key, media),
            }
        }
    }

    fn insert(&mut self, bridge: &BridgeId, key: (RoomId, ParticipantId), media: ParticipantMedia) {
        let count = self.per_bridge.entry(bridge.clone()).or_insert(0);
        if *count >= REGISTER_PARTICIPANTS_MAX {
            return;
        }
        *count += 1;
        self.entries.insert(key, (bridge.clone(), media));
    }

    fn remove(&mut self, key: &(RoomId, ParticipantId)) {
        if let Some((bridge, _)) = self.entries.remove(key)
            && let Some(count) = self.per_bridge.get_mut(&bridge)
        {
            *count -= 1;
            if *count == 0 {
                self.per_bridge.remove(&bridge);
            }
        }
    }

    /// `bridge` no longer hosts the participant.
    pub fn forget(&mut self, bridge: &BridgeId, room: &RoomId, participant: &ParticipantId) {
        let key = (room.clone(), participant.clone());
        if self.entries.get(&key).is_some_and(|(owner, _)| owner == bridge) {
            self.remove(&key);
        }
    }

    /// The bridge's session ended: what it said may be stale.
    pub fn forget_bridge(&mut self, bridge: &BridgeId) {
        self.entries.retain(|_, (owner, _)| owner != bridge);
        self.per_bridge.remove(bridge);
    }

    /// What `bridge` last reported of `participant` of `room`.
    pub fn get(&self, room: &RoomId, participant: &ParticipantId) -> Option<(&BridgeId, &ParticipantMedia)> {
        self.entries
            .get(&(room.clone(), participant.clone()))
            .map(|(bridge, media)| (bridge, media))
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn media(participant: &str, muted: bool) -> ParticipantMedia {
        ParticipantMedia {
            room: RoomId::new("r").unwrap(),
            participant: ParticipantId::new(participant).unwrap(),
            connected_at_ms: 5,
            microphone_muted: muted,
            camera_muted: false,
            sources: Vec::new(),
            hand_raised_at_ms: None,
            e2ee: false,
        }
    }

    #[test]
    fn latest_state_wins_moves_follow_the_new_bridge_and_ended_sessions_are_forgotten() {
        let (a, b) = (BridgeId::new("a").unwrap(), BridgeId::new("b").unwrap());
        let (room, ada) = (RoomId::new("r").unwrap(), ParticipantId::new("ada").unwrap());
        let mut table = ParticipantMediaTable::default();
        table.note(&a, vec![media("ada", false), media("ada", true)]);
        assert_eq!(
            table
                .get(&room, &ada)
                .map(|(br, m)| (br.clone(), m.microphone_muted)),
            Some((a.clone(), true))
        );
        table.note(&b, vec![media("ada", false)]);
        assert_eq!(table.get(&room, &ada).unwrap().0, &b);
        // A late leave from the old bridge does not erase what the new one said.
        table.forget(&a, &room, &ada);
        assert_eq!(table.len(), 1);
        table.forget_bridge(&b);
        assert!(table.is_empty());
    }
}
