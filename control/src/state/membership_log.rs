//! The leader's local index of recent seat changes by room.

use super::*;

/// Room membership changes kept by [`MembershipLog`]; past it the oldest go, and a poll older
/// than what is left visits every room instead.
pub const MEMBERSHIP_LOG_MAX: usize = 16_384;

/// An index of recent seat changes by room, beside the state: not replicated (a node restored
/// from a snapshot starts it empty) and not part of the state's value (two states that differ
/// only here are equal). It lets the leader's cascade push cost the rooms that changed, not all
/// rooms, at every hub tick.
#[derive(Clone, Default)]
pub struct MembershipLog {
    changes: VecDeque<(u64, RoomId)>,
    /// Every room change with a version above this is in `changes`; `None` until the first.
    complete_after: Option<u64>,
}

impl MembershipLog {
    pub(super) fn record(&mut self, version: u64, room: &RoomId) {
        self.complete_after.get_or_insert(version - 1);
        self.changes.push_back((version, room.clone()));
        if self.changes.len() > MEMBERSHIP_LOG_MAX
            && let Some((dropped, _)) = self.changes.pop_front()
        {
            self.complete_after = Some(dropped);
        }
    }

    /// The rooms changed after version `seen`, when every such change is still here.
    pub(super) fn changed_since(&self, seen: u64) -> Option<BTreeSet<&RoomId>> {
        if self.complete_after.is_none_or(|after| seen < after) {
            return None;
        }
        let first = self.changes.partition_point(|(version, _)| *version <= seen);
        Some(self.changes.range(first..).map(|(_, room)| room).collect())
    }
}

impl PartialEq for MembershipLog {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for MembershipLog {}

impl std::fmt::Debug for MembershipLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MembershipLog({} changes)", self.changes.len())
    }
}
