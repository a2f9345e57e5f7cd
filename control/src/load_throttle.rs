//! When the leader commits a bridge's load report. Heartbeats carry the load four times a second;
//! committing each would fill the Raft log with reports placement does not need. A report is
//! committed when it is the first of a session, when the stress moved by
//! [`LOAD_COMMIT_STRESS_STEP`] (but not more often than [`LOAD_COMMIT_MIN_INTERVAL_MS`]), or when
//! the last commit is [`LOAD_COMMIT_MAX_INTERVAL_MS`] old. Pure: the bridge hub drives it per
//! session, and the simulator per simulated bridge, with the same rule.

/// Load reports are committed at least this often while a bridge heartbeats...
pub const LOAD_COMMIT_MAX_INTERVAL_MS: u64 = 5_000;
/// ...and sooner when the stress moved by this much, but not more often than this.
pub const LOAD_COMMIT_STRESS_STEP: f64 = 0.05;
pub const LOAD_COMMIT_MIN_INTERVAL_MS: u64 = 1_000;

/// One bridge session's last committed load.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct LoadCommitThrottle {
    /// When, and the stress then.
    last: Option<(u64, f64)>,
}

impl LoadCommitThrottle {
    /// Whether a report of `stress` at `now_ms` is to be committed; if so it counts as the last
    /// committed one from now on.
    pub fn take(&mut self, now_ms: u64, stress: f64) -> bool {
        let due = match self.last {
            None => true,
            Some((at, last_stress)) => {
                let age = now_ms.saturating_sub(at);
                age >= LOAD_COMMIT_MAX_INTERVAL_MS
                    || (age >= LOAD_COMMIT_MIN_INTERVAL_MS
                        && (stress - last_stress).abs() >= LOAD_COMMIT_STRESS_STEP)
            }
        };
        if due {
            self.last = Some((now_ms, stress));
        }
        due
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_report_is_committed_then_only_changes_and_old_ones() {
        let mut throttle = LoadCommitThrottle::default();
        assert!(throttle.take(0, 0.10), "the session's first");
        assert!(!throttle.take(250, 0.50), "a big change, but too soon");
        assert!(!throttle.take(1_000, 0.14), "a second later, a small change");
        assert!(throttle.take(1_000, 0.16), "a second later, a step");
        assert!(!throttle.take(2_000, 0.12), "not a step from the last committed");
        assert!(!throttle.take(5_999, 0.15));
        assert!(throttle.take(6_000, 0.15), "five seconds old: committed anyway");
    }

    #[test]
    fn a_fresh_throttle_commits_at_once() {
        let mut throttle = LoadCommitThrottle::default();
        assert!(throttle.take(10_000, 0.5));
        throttle = LoadCommitThrottle::default();
        assert!(throttle.take(10_001, 0.5), "a new session starts over");
    }
}
