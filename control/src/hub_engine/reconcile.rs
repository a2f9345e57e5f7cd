//! What the hub decides without I/O: a client's loss verdict, what a bridge's registration
//! means against the replicated state (reconcile), and which bridges a committed outcome must
//! tell what (instructions).

use crate::state::{ControlState, Moved, Outcome, ParticipantStatus};
use bridgemesh_proto::bridge_session::{ControlToBridge, HostedParticipant};
use bridgemesh_proto::{BridgeId, ParticipantId, RoomId};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// The leader's answer to a client's loss report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LossVerdict {
    /// The participant is no longer on that bridge (it was declared down, or the participant
    /// moved or left).
    Moved,
    /// The bridge is heard from after the report: the client's own path to it broke.
    Alive,
    /// Neither yet.
    Undecided,
}

/// A loss report forwarded to the leader.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LossReport {
    pub room: RoomId,
    pub participant: ParticipantId,
    pub bridge: BridgeId,
}

/// What a bridge that just (re-)registered must be told, and what control must commit, to agree
/// with the replicated state.
#[derive(Debug, Default, PartialEq)]
pub struct Reconciliation {
    pub to_bridge: Vec<ControlToBridge>,
    /// Hosted participants still `placed` here: the bridge saw them arrive.
    pub confirm: Vec<HostedParticipant>,
    /// Participants `connected` here that the bridge no longer hosts: they left or dropped meanwhile.
    pub leave: Vec<HostedParticipant>,
}

/// Compares what `bridge` hosts with what the state says it should.
pub fn reconcile(
    state: &ControlState,
    bridge: &BridgeId,
    hosted: &BTreeSet<HostedParticipant>,
) -> Reconciliation {
    let mut result = Reconciliation::default();
    let mut ended_rooms = BTreeSet::new();
    for entry in hosted {
        let Some(room) = state.rooms.get(&entry.room) else {
            if ended_rooms.insert(entry.room.clone()) {
                result.to_bridge.push(ControlToBridge::EndRoom {
                    room: entry.room.clone(),
                });
            }
            continue;
        };
        match room.participants.get(&entry.participant) {
            Some(p) if p.status.on_bridge() && p.bridge.as_ref() == Some(bridge) => {
                if p.status == ParticipantStatus::Placed {
                    result.confirm.push(entry.clone());
                }
            }
            Some(p) if p.status.on_bridge() => result.to_bridge.push(ControlToBridge::Move {
                room: entry.room.clone(),
                participant: entry.participant.clone(),
            }),
            _ => result.to_bridge.push(ControlToBridge::Kick {
                room: entry.room.clone(),
                participant: entry.participant.clone(),
            }),
        }
    }
    for (room_id, room) in &state.rooms {
        for (participant, p) in &room.participants {
            let entry = HostedParticipant {
                room: room_id.clone(),
                participant: participant.clone(),
            };
            if p.status == ParticipantStatus::Connected
                && p.bridge.as_ref() == Some(bridge)
                && !hosted.contains(&entry)
            {
                result.leave.push(entry);
            }
        }
    }
    result
}

/// What each bridge must be told about an applied outcome.
pub fn instructions_for(outcome: &Outcome) -> Vec<(BridgeId, ControlToBridge)> {
    let moves = |moved: &[Moved]| {
        moved
            .iter()
            .map(|m| {
                (
                    m.from.clone(),
                    ControlToBridge::Move {
                        room: m.room.clone(),
                        participant: m.participant.clone(),
                    },
                )
            })
            .collect::<Vec<_>>()
    };
    match outcome {
        Outcome::Kicked {
            room,
            participant,
            bridge: Some(bridge),
        } => vec![(
            bridge.clone(),
            ControlToBridge::Kick {
                room: room.clone(),
                participant: participant.clone(),
            },
        )],
        Outcome::RoomEnded { room, participants } => {
            let bridges: BTreeSet<&BridgeId> = participants.iter().filter_map(|(_, b)| b.as_ref()).collect();
            bridges
                .into_iter()
                .map(|b| (b.clone(), ControlToBridge::EndRoom { room: room.clone() }))
                .collect()
        }
        Outcome::MuteRequested { room, by, bridges } => bridges
            .iter()
            .map(|b| {
                (
                    b.clone(),
                    ControlToBridge::MuteAll {
                        room: room.clone(),
                        by: by.clone(),
                    },
                )
            })
            .collect(),
        Outcome::BridgeStatusChanged {
            bridge,
            status,
            moved,
        } => {
            let mut out = vec![(bridge.clone(), ControlToBridge::Status { status: *status })];
            out.extend(moves(moved));
            out
        }
        Outcome::Ticked { moved, .. } => moves(moved),
        _ => Vec::new(),
    }
}

#[cfg(test)]
#[path = "reconcile_tests.rs"]
mod tests;
