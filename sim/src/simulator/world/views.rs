//! Read-only views of the world for the invariants and tests.

use super::*;

impl World {
    pub(in crate::simulator) fn now_ms(&self) -> u64 {
        self.now_ms
    }

    pub(in crate::simulator) fn participant_view(&self) -> impl Iterator<Item = ParticipantView<'_>> {
        self.participants.iter().map(|p| ParticipantView {
            id: &p.id,
            room: &p.room,
            acked: p.acked,
            active: p.active,
            hosted_on: p.hosted_on,
        })
    }

    pub(in crate::simulator) fn control_cluster(&self) -> &ControlCluster {
        &self.cluster
    }

    pub(in crate::simulator) fn network(&self) -> &Network {
        &self.network
    }

    /// Replaces the control cluster's quorum rule: tests inject broken ones.
    pub fn with_quorum(mut self, quorum: Quorum) -> Self {
        self.cluster.set_quorum(quorum);
        self
    }

    /// When the last fault is over.
    pub(in crate::simulator) fn faults_end_ms(&self) -> u64 {
        self.faults_end_ms
    }

    pub(in crate::simulator) fn participant_id(&self, index: usize) -> &ParticipantId {
        &self.participants[index].id
    }

    /// The bridge hosting a participant that has a session.
    pub(in crate::simulator) fn hosting_bridge_id(&self, participant: usize) -> &BridgeId {
        let participant = &self.participants[participant];
        &self.bridges[participant.hosted_on.expect("a settled participant is hosted")].id
    }

    pub(in crate::simulator) fn bridge_view(&self) -> impl Iterator<Item = BridgeView<'_>> {
        self.bridges.iter().enumerate().map(|(index, b)| BridgeView {
            index,
            id: &b.id,
            alive: b.alive,
            hosted: b.hosted,
            capacity: b.capacity,
            max_per_room: b.registration.max_participants_per_room,
        })
    }
}

/// What an invariant may look at of a participant.
pub struct ParticipantView<'a> {
    pub id: &'a ParticipantId,
    pub room: &'a RoomId,
    pub acked: bool,
    pub active: bool,
    pub hosted_on: Option<usize>,
}

/// What an invariant may look at of a bridge.
pub struct BridgeView<'a> {
    pub index: usize,
    pub id: &'a BridgeId,
    pub alive: bool,
    pub hosted: usize,
    pub capacity: u32,
    pub max_per_room: u32,
}

impl World {
    pub(in crate::simulator) fn state(&self) -> &ControlState {
        &self.state
    }

    pub(in crate::simulator) fn bridge_status(&self, id: &BridgeId) -> Option<BridgeStatus> {
        self.state.bridges.get(id).map(|b| b.status)
    }
}
