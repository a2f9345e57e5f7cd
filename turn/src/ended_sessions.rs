//! Credentials whose participant's session has ended. A REST credential cannot be withdrawn
//! from its holder, so the server remembers, per user, when the session ended, and refuses the
//! user's credentials issued before then (the issue time is the expiry written in the username
//! minus the issuers' `credential_ttl_s`). Credentials issued afterwards, for the same participant
//! reconnecting, are served. An entry is useless once every credential it refuses has expired,
//! and is dropped then; the table is bounded besides.

use std::collections::HashMap;

/// Clocks of control (which issues credentials) and bridges (which end sessions) may differ by
/// this much: a credential issued this close before the end is not refused, so that a participant
/// reconnecting at once is never refused because of clock skew.
pub const CLOCK_SKEW_ALLOWANCE_S: u64 = 2;

pub struct EndedSessions {
    /// User → when its session ended (unix seconds).
    ended_at: HashMap<String, u64>,
    credential_ttl_s: u64,
    max: usize,
}

impl EndedSessions {
    pub fn new(credential_ttl_s: u64, max: usize) -> Self {
        Self {
            ended_at: HashMap::new(),
            credential_ttl_s,
            max,
        }
    }

    /// Records that `user`'s session ended at `now_unix_s`; false if the table is full of entries
    /// still in force (the user's credentials then only expire).
    pub fn end(&mut self, user: &str, now_unix_s: u64) -> bool {
        if !self.ended_at.contains_key(user) && self.ended_at.len() >= self.max {
            self.prune(now_unix_s);
            if self.ended_at.len() >= self.max {
                return false;
            }
        }
        self.ended_at.insert(user.to_owned(), now_unix_s);
        true
    }

    /// When `user`'s session ended, if it is remembered.
    pub fn ended_at(&self, user: &str) -> Option<u64> {
        self.ended_at.get(user).copied()
    }

    /// Whether the credential of `user` expiring at `expires_unix_s` was issued before its
    /// session ended.
    pub fn refuses(&self, user: &str, expires_unix_s: u64) -> bool {
        let Some(ended_at) = self.ended_at.get(user) else {
            return false;
        };
        let issued_at = expires_unix_s.saturating_sub(self.credential_ttl_s);
        issued_at + CLOCK_SKEW_ALLOWANCE_S < *ended_at
    }

    /// Drops the entries whose refused credentials have all expired.
    pub fn prune(&mut self, now_unix_s: u64) {
        let ttl = self.credential_ttl_s;
        self.ended_at.retain(|_, ended_at| *ended_at + ttl >= now_unix_s);
    }

    pub fn len(&self) -> usize {
        self.ended_at.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ended_at.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TTL: u64 = 600;

    #[test]
    fn credentials_issued_before_the_end_are_refused_and_later_ones_served() {
        let mut ended = EndedSessions::new(TTL, 10);
        assert!(!ended.refuses("ada", 1_000 + TTL), "no session ended yet");
        assert!(ended.end("ada", 1_000));
        assert!(ended.refuses("ada", 900 + TTL), "issued 100 s before the end");
        assert!(
            !ended.refuses("ada", 1_000 - CLOCK_SKEW_ALLOWANCE_S + TTL),
            "within the clock skew allowance"
        );
        assert!(!ended.refuses("ada", 1_001 + TTL), "issued for the reconnect");
        assert!(!ended.refuses("bob", 900 + TTL), "another participant");
    }

    #[test]
    fn entries_go_once_their_credentials_expired_and_the_table_is_bounded() {
        let mut ended = EndedSessions::new(TTL, 2);
        assert!(ended.end("a", 1_000) && ended.end("b", 1_100));
        assert!(!ended.end("c", 1_200), "full of entries in force");
        assert!(ended.end("a", 1_300), "an entry already there is updated");
        // Every credential "b"'s end (1_100) refuses has expired by 1_100 + TTL + 1; "a" ended
        // again at 1_300, so its entry stays.
        ended.prune(1_100 + TTL + 1);
        assert_eq!(ended.len(), 1);
        assert!(ended.end("c", 1_100 + TTL + 1));
        assert!(!ended.is_empty());
    }
}
