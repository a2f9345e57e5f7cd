//! The control plane's state machine: rooms, participants, bridges and assignments.
//!
//! Every change is a typed [`Command`] applied by [`ControlState::apply`], deterministically and
//! without I/O or clocks (times arrive inside commands). Decisions that need judgement, such as
//! which bridge a participant goes to, are made before the command is built (see `placement.rs`),
//! so replaying the same commands always yields the same state — which is what lets a later
//! replicated log, and the simulator, run this same code.

use bridgemesh_proto::{BridgeId, ParticipantId, RegionId, RoomId};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A participant control placed but whose bridge has not reported it connected is forgotten after
/// this long (the ticket expired unused, or the client never made it to the bridge).
pub const UNCONFIRMED_JOIN_TTL_MS: u64 = 60_000;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BridgeRecord {
    pub id: BridgeId,
    pub region: RegionId,
    pub signaling_url: String,
    pub capacity: u32,
    pub max_participants_per_room: u32,
    pub status: BridgeStatus,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BridgeStatus {
    Up,
    Down,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParticipantRecord {
    pub display_name: String,
    pub bridge: BridgeId,
    pub joined_at_ms: u64,
    /// The bridge reported the participant connected.
    pub confirmed: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomRecord {
    pub created_at_ms: u64,
    pub participants: BTreeMap<ParticipantId, ParticipantRecord>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    RegisterBridge(BridgeRecord),
    Join {
        room: RoomId,
        participant: ParticipantId,
        display_name: String,
        bridge: BridgeId,
        at_ms: u64,
    },
    /// The bridge saw the participant connect.
    Confirm {
        room: RoomId,
        participant: ParticipantId,
    },
    Leave {
        room: RoomId,
        participant: ParticipantId,
    },
    /// Forget placements never confirmed within [`UNCONFIRMED_JOIN_TTL_MS`] of `now_ms`.
    ExpireUnconfirmed {
        now_ms: u64,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    BridgeRegistered,
    Joined,
    Confirmed,
    Left { room_ended: bool },
    Expired { participants: usize },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ApplyError {
    #[error("bridge {0} is not registered")]
    UnknownBridge(BridgeId),
    #[error("bridge {0} is not up")]
    BridgeDown(BridgeId),
    #[error("bridge {0} is at capacity")]
    BridgeFull(BridgeId),
    #[error("room {0} is full")]
    RoomFull(RoomId),
    #[error("participant {0} already exists")]
    DuplicateParticipant(ParticipantId),
    #[error("participant {0} is not in room {1}")]
    UnknownParticipant(ParticipantId, RoomId),
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ControlState {
    pub rooms: BTreeMap<RoomId, RoomRecord>,
    pub bridges: BTreeMap<BridgeId, BridgeRecord>,
    /// Participants currently assigned to each bridge.
    pub bridge_load: BTreeMap<BridgeId, u32>,
    /// Which room each participant is in: an index over `rooms` so a join checks for a duplicate
    /// id without visiting every room.
    pub participant_rooms: BTreeMap<ParticipantId, RoomId>,
}

/// Largest room across the whole cluster.
pub const ROOM_PARTICIPANTS_MAX: usize = 500;

impl ControlState {
    pub fn apply(&mut self, command: Command) -> Result<Outcome, ApplyError> {
        match command {
            Command::RegisterBridge(record) => {
                self.bridge_load.entry(record.id.clone()).or_insert(0);
                self.bridges.insert(record.id.clone(), record);
                Ok(Outcome::BridgeRegistered)
            }
            Command::Join {
                room,
                participant,
                display_name,
                bridge,
                at_ms,
            } => {
                let record = self
                    .bridges
                    .get(&bridge)
                    .ok_or_else(|| ApplyError::UnknownBridge(bridge.clone()))?;
                if record.status != BridgeStatus::Up {
                    return Err(ApplyError::BridgeDown(bridge));
                }
                let load = self.bridge_load.get(&bridge).copied().unwrap_or(0);
                if load >= record.capacity {
                    return Err(ApplyError::BridgeFull(bridge));
                }
                let room_record = self.rooms.get(&room);
                let in_room = room_record.map_or(0, |r| r.participants.len());
                let on_bridge_in_room = room_record.map_or(0, |r| {
                    r.participants.values().filter(|p| p.bridge == bridge).count()
                });
                if in_room >= ROOM_PARTICIPANTS_MAX
                    || on_bridge_in_room >= record.max_participants_per_room as usize
                {
                    return Err(ApplyError::RoomFull(room));
                }
                if self.participant_rooms.contains_key(&participant) {
                    return Err(ApplyError::DuplicateParticipant(participant));
                }
                self.participant_rooms.insert(participant.clone(), room.clone());
                let room_record = self.rooms.entry(room).or_insert_with(|| RoomRecord {
                    created_at_ms: at_ms,
                    ..Default::default()
                });
                room_record.participants.insert(
                    participant,
                    ParticipantRecord {
                        display_name,
                        bridge: bridge.clone(),
                        joined_at_ms: at_ms,
                        confirmed: false,
                    },
                );
                *self.bridge_load.entry(bridge).or_insert(0) += 1;
                Ok(Outcome::Joined)
            }
            Command::Confirm { room, participant } => {
                let record = self
                    .rooms
                    .get_mut(&room)
                    .and_then(|r| r.participants.get_mut(&participant))
                    .ok_or_else(|| ApplyError::UnknownParticipant(participant.clone(), room.clone()))?;
                record.confirmed = true;
                Ok(Outcome::Confirmed)
            }
            Command::Leave { room, participant } => {
                let room_record = self
                    .rooms
                    .get_mut(&room)
                    .ok_or_else(|| ApplyError::UnknownParticipant(participant.clone(), room.clone()))?;
                let record = room_record
                    .participants
                    .remove(&participant)
                    .ok_or_else(|| ApplyError::UnknownParticipant(participant.clone(), room.clone()))?;
                self.participant_rooms.remove(&participant);
                if let Some(load) = self.bridge_load.get_mut(&record.bridge) {
                    *load = load.saturating_sub(1);
                }
                let room_ended = room_record.participants.is_empty();
                if room_ended {
                    self.rooms.remove(&room);
                }
                Ok(Outcome::Left { room_ended })
            }
            Command::ExpireUnconfirmed { now_ms } => {
                let mut expired = Vec::new();
                for (room_id, room) in &self.rooms {
                    for (participant, record) in &room.participants {
                        if !record.confirmed && record.joined_at_ms + UNCONFIRMED_JOIN_TTL_MS <= now_ms {
                            expired.push((room_id.clone(), participant.clone()));
                        }
                    }
                }
                let participants = expired.len();
                for (room, participant) in expired {
                    self.apply(Command::Leave { room, participant })?;
                }
                Ok(Outcome::Expired { participants })
            }
        }
    }

    pub fn participant_count(&self) -> usize {
        self.participant_rooms.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bridge(id: &str, capacity: u32) -> BridgeRecord {
        BridgeRecord {
            id: BridgeId::new(id).unwrap(),
            region: RegionId::new("local").unwrap(),
            signaling_url: format!("ws://{id}"),
            capacity,
            max_participants_per_room: 3,
            status: BridgeStatus::Up,
        }
    }

    fn join(room: &str, participant: &str, bridge: &str, at_ms: u64) -> Command {
        Command::Join {
            room: RoomId::new(room).unwrap(),
            participant: ParticipantId::new(participant).unwrap(),
            display_name: participant.to_uppercase(),
            bridge: BridgeId::new(bridge).unwrap(),
            at_ms,
        }
    }

    fn leave(room: &str, participant: &str) -> Command {
        Command::Leave {
            room: RoomId::new(room).unwrap(),
            participant: ParticipantId::new(participant).unwrap(),
        }
    }

    #[test]
    fn join_and_leave_track_rooms_and_bridge_load() {
        let mut state = ControlState::default();
        state.apply(Command::RegisterBridge(bridge("b1", 10))).unwrap();
        assert_eq!(state.apply(join("r", "p1", "b1", 5)), Ok(Outcome::Joined));
        assert_eq!(state.apply(join("r", "p2", "b1", 6)), Ok(Outcome::Joined));
        assert_eq!(state.bridge_load[&BridgeId::new("b1").unwrap()], 2);
        assert_eq!(
            state.apply(leave("r", "p1")),
            Ok(Outcome::Left { room_ended: false })
        );
        assert_eq!(
            state.apply(leave("r", "p2")),
            Ok(Outcome::Left { room_ended: true })
        );
        assert!(state.rooms.is_empty());
        assert!(state.participant_rooms.is_empty(), "the index forgets who left");
        assert_eq!(state.participant_count(), 0);
        assert_eq!(state.bridge_load[&BridgeId::new("b1").unwrap()], 0);
        assert!(matches!(
            state.apply(leave("r", "p2")),
            Err(ApplyError::UnknownParticipant(..))
        ));
    }

    #[test]
    fn refuses_what_does_not_fit() {
        let mut state = ControlState::default();
        assert!(matches!(
            state.apply(join("r", "p1", "nope", 0)),
            Err(ApplyError::UnknownBridge(_))
        ));
        state.apply(Command::RegisterBridge(bridge("b1", 4))).unwrap();
        for p in ["p1", "p2", "p3"] {
            state.apply(join("r", p, "b1", 0)).unwrap();
        }
        assert!(matches!(
            state.apply(join("r", "p4", "b1", 0)),
            Err(ApplyError::RoomFull(_))
        ));
        assert!(matches!(
            state.apply(join("other", "p1", "b1", 0)),
            Err(ApplyError::DuplicateParticipant(_))
        ));
        state.apply(join("other", "p5", "b1", 0)).unwrap();
        assert!(matches!(
            state.apply(join("third", "p6", "b1", 0)),
            Err(ApplyError::BridgeFull(_))
        ));
        let mut down = bridge("b2", 10);
        down.status = BridgeStatus::Down;
        state.apply(Command::RegisterBridge(down)).unwrap();
        assert!(matches!(
            state.apply(join("x", "p7", "b2", 0)),
            Err(ApplyError::BridgeDown(_))
        ));
    }

    #[test]
    fn unconfirmed_joins_expire_and_confirmed_ones_stay() {
        let mut state = ControlState::default();
        state.apply(Command::RegisterBridge(bridge("b1", 10))).unwrap();
        state.apply(join("r", "p1", "b1", 1_000)).unwrap();
        state.apply(join("r", "p2", "b1", 1_000)).unwrap();
        state
            .apply(Command::Confirm {
                room: RoomId::new("r").unwrap(),
                participant: ParticipantId::new("p2").unwrap(),
            })
            .unwrap();
        let before = 1_000 + UNCONFIRMED_JOIN_TTL_MS - 1;
        assert_eq!(
            state.apply(Command::ExpireUnconfirmed { now_ms: before }),
            Ok(Outcome::Expired { participants: 0 })
        );
        let after = 1_000 + UNCONFIRMED_JOIN_TTL_MS;
        assert_eq!(
            state.apply(Command::ExpireUnconfirmed { now_ms: after }),
            Ok(Outcome::Expired { participants: 1 })
        );
        assert_eq!(state.participant_count(), 1);
    }

    #[test]
    fn replaying_commands_gives_the_same_state() {
        let commands = vec![
            Command::RegisterBridge(bridge("b1", 10)),
            join("r", "p1", "b1", 1),
            join("s", "p2", "b1", 2),
            leave("r", "p1"),
            Command::ExpireUnconfirmed { now_ms: 100_000 },
        ];
        let mut a = ControlState::default();
        let mut b = ControlState::default();
        for command in &commands {
            let _ = a.apply(command.clone());
            let _ = b.apply(command.clone());
        }
        assert_eq!(a, b);
    }
}
