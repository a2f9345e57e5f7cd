//! Participants whose session is over for good (left, kicked, their room ended), and when: the
//! standalone TURN servers read them with the bridges' addresses (`/api/v1/turn/peers`) and
//! refuse the credentials those participants were given before (a REST credential cannot be
//! withdrawn from its holder otherwise). A bridge's embedded TURN server hears of its own
//! participants directly. Kept only while a credential issued before the end could still make
//! allocations, and bounded.

use bridgemesh_proto::ParticipantId;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// How long an ended session is remembered: past the TURN credentials' lifetime for new
/// allocations (10 minutes) with room for the servers' refresh and clock skew.
pub const ENDED_SESSION_MEMORY_MS: u64 = 15 * 60_000;
/// Ended sessions remembered at most; the oldest give way (their credentials then only expire).
pub const ENDED_SESSIONS_MAX: usize = 20_000;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndedSessions {
    /// Participant → when its session ended (unix ms, the state's clock).
    ended_at_ms: BTreeMap<ParticipantId, u64>,
}

impl EndedSessions {
    pub fn end(&mut self, participant: &ParticipantId, at_ms: u64) {
        if !self.ended_at_ms.contains_key(participant)
            && self.ended_at_ms.len() >= ENDED_SESSIONS_MAX
            && let Some(oldest) = self
                .ended_at_ms
                .iter()
                .min_by_key(|(_, at)| **at)
                .map(|(id, _)| id.clone())
        {
            self.ended_at_ms.remove(&oldest);
        }
        let at = self.ended_at_ms.entry(participant.clone()).or_insert(at_ms);
        *at = (*at).max(at_ms);
    }

    /// Forgets the sessions that ended longer than [`ENDED_SESSION_MEMORY_MS`] before `now_ms`.
    pub fn prune(&mut self, now_ms: u64) {
        self.ended_at_ms
            .retain(|_, at| now_ms.saturating_sub(*at) < ENDED_SESSION_MEMORY_MS);
    }

    /// The `limit` most recent ends, newest first.
    pub fn recent(&self, limit: usize) -> Vec<(&ParticipantId, u64)> {
        let mut ends: Vec<_> = self.ended_at_ms.iter().map(|(id, at)| (id, *at)).collect();
        ends.sort_unstable_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
        ends.truncate(limit);
        ends
    }

    pub fn len(&self) -> usize {
        self.ended_at_ms.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ended_at_ms.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pid(name: &str) -> ParticipantId {
        ParticipantId::new(name).unwrap()
    }

    #[test]
    fn ends_are_kept_newest_first_for_their_memory_and_bounded() {
        let mut ended = EndedSessions::default();
        ended.end(&pid("a"), 1_000);
        ended.end(&pid("b"), 2_000);
        // An older report does not move an end back.
        ended.end(&pid("b"), 1_500);
        assert_eq!(ended.recent(10), [(&pid("b"), 2_000), (&pid("a"), 1_000)]);
        assert_eq!(ended.recent(1), [(&pid("b"), 2_000)]);
        ended.prune(1_000 + ENDED_SESSION_MEMORY_MS);
        assert_eq!(ended.recent(10), [(&pid("b"), 2_000)]);

        let mut full = EndedSessions::default();
        for i in 0..ENDED_SESSIONS_MAX as u64 {
            full.end(&pid(&format!("p{i}")), 10 + i);
        }
        full.end(&pid("newest"), 1_000_000);
        assert_eq!(full.len(), ENDED_SESSIONS_MAX);
        assert!(!full.ended_at_ms.contains_key(&pid("p0")), "the oldest gave way");
        assert!(full.ended_at_ms.contains_key(&pid("newest")));
    }
}
