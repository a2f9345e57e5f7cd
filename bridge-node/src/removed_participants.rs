//! Participants a moderator removed, remembered for as long as a ticket issued to them could still
//! be presented.
//!
//! Participant ids are random per join, so a removed id only has to be refused while a ticket
//! carrying it can still pass the expiry check: [`REMOVED_PARTICIPANT_RETENTION_S`]. The set is
//! bounded as well; past [`REMOVED_PARTICIPANTS_MAX`] the oldest entries go first.
//!
//! Generic over the clock so the ticket verifier can use unix seconds and the sans-IO shard its
//! `Instant`s.

use crate::ticket::TICKET_LEEWAY_S;
use bridgemesh_proto::ParticipantId;
use bridgemesh_proto::ticket::TICKET_TTL_S;
use std::collections::{HashMap, VecDeque};

/// Removed participants remembered at once (per set).
pub const REMOVED_PARTICIPANTS_MAX: usize = 100_000;
/// How long a removal is remembered: a ticket issued before it expires within this.
pub const REMOVED_PARTICIPANT_RETENTION_S: u64 = TICKET_TTL_S + TICKET_LEEWAY_S;

#[derive(Debug)]
pub struct RemovedParticipants<T> {
    /// id → when it may be forgotten.
    forget_at: HashMap<ParticipantId, T>,
    /// Insertion order; with one retention for every entry this is also the order of `forget_at`.
    /// An id removed twice has a stale older entry here, skipped when it reaches the front.
    order: VecDeque<(T, ParticipantId)>,
    capacity: usize,
}

impl<T: Copy + Ord> RemovedParticipants<T> {
    pub fn new(capacity: usize) -> Self {
        assert!(
            capacity > 0,
            "a removed-participant set must hold at least one id"
        );
        Self {
            forget_at: HashMap::new(),
            order: VecDeque::new(),
            capacity,
        }
    }

    /// Remembers `id` until `forget_at`, first forgetting what expired by `now` and, when full,
    /// the oldest entries.
    pub fn insert(&mut self, now: T, id: ParticipantId, forget_at: T) {
        while self.order.front().is_some_and(|(at, _)| *at <= now) {
            self.pop_front();
        }
        if self.forget_at.get(&id).is_some_and(|at| *at >= forget_at) {
            return;
        }
        while self.order.len() >= self.capacity {
            self.pop_front();
        }
        self.forget_at.insert(id.clone(), forget_at);
        self.order.push_back((forget_at, id));
    }

    /// Whether `id` was removed. An entry past its time but not yet pruned still counts: refusing
    /// a removed participant late is never wrong, only the memory bound needs the expiry.
    pub fn contains(&self, id: &ParticipantId) -> bool {
        self.forget_at.contains_key(id)
    }

    pub fn len(&self) -> usize {
        self.forget_at.len()
    }

    pub fn is_empty(&self) -> bool {
        self.forget_at.is_empty()
    }

    fn pop_front(&mut self) {
        if let Some((at, id)) = self.order.pop_front()
            && self.forget_at.get(&id) == Some(&at)
        {
            self.forget_at.remove(&id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: usize) -> ParticipantId {
        ParticipantId::new(format!("p-{n}")).unwrap()
    }

    #[test]
    fn forgets_entries_once_their_time_has_passed() {
        let mut removed = RemovedParticipants::new(10);
        removed.insert(0u64, id(1), 32);
        removed.insert(10, id(2), 42);
        assert!(removed.contains(&id(1)) && removed.contains(&id(2)));
        removed.insert(32, id(3), 64);
        assert!(!removed.contains(&id(1)));
        assert!(removed.contains(&id(2)) && removed.contains(&id(3)));
        assert_eq!(removed.len(), 2);
    }

    #[test]
    fn evicts_the_oldest_when_full() {
        let mut removed = RemovedParticipants::new(3);
        for n in 0..5 {
            removed.insert(0u64, id(n), 100);
        }
        assert_eq!(removed.len(), 3);
        assert!(!removed.contains(&id(0)) && !removed.contains(&id(1)));
        assert!((2..5).all(|n| removed.contains(&id(n))));
    }

    #[test]
    fn a_second_removal_extends_the_first() {
        let mut removed = RemovedParticipants::new(10);
        removed.insert(0u64, id(1), 32);
        removed.insert(20, id(1), 52);
        // The stale first entry reaching the front must not forget the renewed one.
        removed.insert(40, id(2), 72);
        assert!(removed.contains(&id(1)));
        removed.insert(52, id(3), 84);
        assert!(!removed.contains(&id(1)));
    }
}
