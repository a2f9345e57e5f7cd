//! When and how a synthetic participant reconnects after losing its bridge: pure decisions,
//! no I/O. The driver in [`crate::participant`] asks these functions and carries out the answer.
//!
//! - [`after_bye`]: whether a `bye` ends the participant or sends it back to control.
//! - [`ReconnectEpisode`]: the retry schedule of one outage (capped exponential backoff) and its
//!   budget. An outage lasts from the loss until a new peer connection is up, so a session that
//!   fails again before its media connected continues the same schedule instead of starting
//!   over: a bridge that accepts and then drops the participant cannot make it retry forever.
//! - [`classify_refusal`]: what an error answer of the reconnect call means.

use crate::error::ParticipantError;
use bridgemesh_proto::api::ErrorCode;
use bridgemesh_proto::signaling::ByeReason;
use std::time::{Duration, Instant};

/// What a `bye` means for the participant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ByeAction {
    /// The participant is done: it left, was kicked, the meeting ended, or it connected again
    /// elsewhere (`replaced`: reconnecting would kick the newer session out in turn).
    Final,
    /// Ask control where to go.
    Reconnect {
        /// Name the old bridge as lost in the request. Not for `moved`: control moved the
        /// participant on purpose and the bridge is fine.
        report_lost_bridge: bool,
        /// Call control at once, whatever the backoff says: control asked for it.
        immediate: bool,
    },
}

/// What to do after the bridge said `bye{reason}`. Reasons this client does not know are
/// handled like a lost socket, as docs/signaling.md asks of clients.
pub fn after_bye(reason: ByeReason) -> ByeAction {
    match reason {
        ByeReason::Left | ByeReason::Replaced | ByeReason::Kicked | ByeReason::MeetingEnded => {
            ByeAction::Final
        }
        ByeReason::Moved => ByeAction::Reconnect {
            report_lost_bridge: false,
            immediate: true,
        },
        // bridge_shutdown, protocol_error (the bridge sends it when the media connection fails),
        // and anything newer.
        _ => ByeAction::Reconnect {
            report_lost_bridge: true,
            immediate: false,
        },
    }
}

/// Retry timing of the reconnect calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetrySchedule {
    /// Delay before the first retry; doubles with each further one.
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    /// How long one outage may last before the participant gives up.
    pub budget: Duration,
}

/// The wait before a control call when `attempts_made` calls were already made in this outage:
/// none for the first, then `min`, `2·min`, `4·min`, … capped at `max`.
pub fn backoff_delay(attempts_made: u32, min: Duration, max: Duration) -> Duration {
    if attempts_made == 0 {
        return Duration::ZERO;
    }
    let doublings = (attempts_made - 1).min(31);
    min.saturating_mul(1u32 << doublings).min(max)
}

/// One outage: from losing a session until a new peer connection is up (or the budget is spent).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReconnectEpisode {
    started: Instant,
    attempts: u32,
}

impl ReconnectEpisode {
    pub fn new(now: Instant) -> Self {
        Self {
            started: now,
            attempts: 0,
        }
    }

    /// Reconnect calls made so far.
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// When the outage's budget is spent.
    pub fn deadline(&self, schedule: &RetrySchedule) -> Instant {
        self.started + schedule.budget
    }

    /// Books the next control call and says when it may go out, or `None` if it would start
    /// after the budget is spent. `immediate` skips the backoff (`bye{moved}`).
    pub fn next_attempt(
        &mut self,
        schedule: &RetrySchedule,
        now: Instant,
        immediate: bool,
    ) -> Option<Instant> {
        let delay = if immediate {
            Duration::ZERO
        } else {
            backoff_delay(self.attempts, schedule.backoff_min, schedule.backoff_max)
        };
        let at = now + delay;
        if at >= self.deadline(schedule) {
            return None;
        }
        self.attempts += 1;
        Some(at)
    }
}

/// What an error answer to the reconnect call means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Transient (rate limit, no capacity, no leader, a proxy or server error, a timeout, a seat
    /// still held by the lost session): call again after the backoff.
    Retry,
    /// Control no longer holds the participant. A browser joins again as a new participant; a
    /// synthetic participant's identity is its participant id (stamps, test assertions), so it
    /// stops instead.
    NotFound,
    /// Kicked, forbidden, a session token that is no longer accepted, or a request control
    /// cannot take: calling again cannot help.
    Final,
}

/// Classifies an HTTP error answer (`code` from the JSON envelope, if it had one).
pub fn classify_refusal(status: u16, code: Option<ErrorCode>) -> Refusal {
    match (status, code) {
        (_, Some(ErrorCode::RateLimited | ErrorCode::NoCapacity | ErrorCode::NoLeader)) => Refusal::Retry,
        (_, Some(ErrorCode::Kicked | ErrorCode::Forbidden | ErrorCode::Unauthorized)) => Refusal::Final,
        (404, _) => Refusal::NotFound,
        // 409: room_full or a conflicting placement while control still counts the lost session.
        (408 | 409 | 429, _) => Refusal::Retry,
        (500.., _) => Refusal::Retry,
        _ => Refusal::Final,
    }
}

/// Classifies a failed control call: HTTP errors by [`classify_refusal`]; unreachable control,
/// a cut-off or malformed answer and timeouts are transient.
pub fn classify_error(error: &ParticipantError) -> Refusal {
    match error {
        ParticipantError::Http { status, code, .. } => classify_refusal(*status, *code),
        _ => Refusal::Retry,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn schedule() -> RetrySchedule {
        RetrySchedule {
            backoff_min: 100 * MS,
            backoff_max: 2000 * MS,
            budget: Duration::from_secs(30),
        }
    }

    #[test]
    fn only_left_replaced_kicked_and_meeting_ended_are_final() {
        for reason in [
            ByeReason::Left,
            ByeReason::Replaced,
            ByeReason::Kicked,
            ByeReason::MeetingEnded,
        ] {
            assert_eq!(after_bye(reason), ByeAction::Final, "{reason:?}");
        }
        assert_eq!(
            after_bye(ByeReason::Moved),
            ByeAction::Reconnect {
                report_lost_bridge: false,
                immediate: true
            }
        );
        for reason in [ByeReason::BridgeShutdown, ByeReason::ProtocolError] {
            assert_eq!(
                after_bye(reason),
                ByeAction::Reconnect {
                    report_lost_bridge: true,
                    immediate: false
                },
                "{reason:?}"
            );
        }
    }

    #[test]
    fn backoff_starts_at_zero_doubles_and_is_capped() {
        let delays: Vec<u128> = (0..9)
            .map(|n| backoff_delay(n, 100 * MS, 2000 * MS).as_millis())
            .collect();
        assert_eq!(delays, [0, 100, 200, 400, 800, 1600, 2000, 2000, 2000]);
        // No overflow however long it goes on.
        assert_eq!(backoff_delay(u32::MAX, 100 * MS, 2000 * MS), 2000 * MS);
        assert_eq!(backoff_delay(40, Duration::MAX, Duration::MAX), Duration::MAX);
    }

    #[test]
    fn an_episode_retries_on_the_schedule_until_its_budget_is_spent() {
        let s = schedule();
        let t0 = Instant::now();
        let mut episode = ReconnectEpisode::new(t0);
        let mut now = t0;
        let mut waits = Vec::new();
        while let Some(at) = episode.next_attempt(&s, now, false) {
            waits.push((at - now).as_millis());
            // Each call takes 500 ms to fail.
            now = at + 500 * MS;
        }
        assert_eq!(&waits[..7], [0, 100, 200, 400, 800, 1600, 2000]);
        assert!(waits[7..].iter().all(|&w| w == 2000));
        assert_eq!(episode.attempts() as usize, waits.len());
        // Every call started within the budget, and the next would not have.
        assert!(now - 500 * MS < episode.deadline(&s));
        assert!(now + 2000 * MS >= episode.deadline(&s));
        assert_eq!(episode.next_attempt(&s, now, false), None);
        assert_eq!(
            episode.attempts() as usize,
            waits.len(),
            "a refused attempt is not counted"
        );
    }

    #[test]
    fn moved_skips_the_backoff_but_not_the_budget() {
        let s = schedule();
        let t0 = Instant::now();
        let mut episode = ReconnectEpisode::new(t0);
        assert_eq!(episode.next_attempt(&s, t0, false), Some(t0));
        // A second loss in the same outage backs off, unless control asked to move.
        assert_eq!(episode.next_attempt(&s, t0, true), Some(t0));
        assert_eq!(episode.next_attempt(&s, t0, false), Some(t0 + 200 * MS));
        let late = t0 + s.budget;
        assert_eq!(episode.next_attempt(&s, late, true), None);
        let zero = RetrySchedule {
            budget: Duration::ZERO,
            ..s
        };
        assert_eq!(ReconnectEpisode::new(t0).next_attempt(&zero, t0, true), None);
    }

    #[test]
    fn refusals_split_into_retry_rejoin_and_final() {
        let cases = [
            (429, Some(ErrorCode::RateLimited), Refusal::Retry),
            (503, Some(ErrorCode::NoCapacity), Refusal::Retry),
            (503, Some(ErrorCode::NoLeader), Refusal::Retry),
            (500, Some(ErrorCode::Internal), Refusal::Retry),
            (502, None, Refusal::Retry),
            (409, Some(ErrorCode::RoomFull), Refusal::Retry),
            (404, Some(ErrorCode::NotFound), Refusal::NotFound),
            (404, None, Refusal::NotFound),
            (403, Some(ErrorCode::Kicked), Refusal::Final),
            (403, Some(ErrorCode::Forbidden), Refusal::Final),
            (401, Some(ErrorCode::Unauthorized), Refusal::Final),
            (400, Some(ErrorCode::MalformedBody), Refusal::Final),
            (403, None, Refusal::Final),
        ];
        for (status, code, expected) in cases {
            assert_eq!(classify_refusal(status, code), expected, "{status} {code:?}");
        }
    }
}
