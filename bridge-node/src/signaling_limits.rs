//! Per-client rate limits on signaling messages: a token bucket per message kind, and a budget of
//! refusals past which the client is disconnected.
//!
//! A guest with a valid seat can send as fast as its socket allows; every accepted `mute` or
//! `publish` changes room state that the bridge then tells everyone else (and the cascade peers)
//! about. The limits keep one client's cost to the others bounded: a message past its kind's rate
//! is refused with an error, and a client that keeps sending refused messages is cut off. Only the
//! sender pays. Sans-IO: the caller passes `now`.

use bridgemesh_proto::signaling::ClientMessage;
use std::time::{Duration, Instant};

/// What a client's message kind may cost: `burst` at once, then `per_second` on average.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    pub burst: u32,
    pub per_second: u32,
}

/// Signaling limits per client. Defaults leave a real client (a few mutes a second, one answer per
/// offer, a screen share now and then) far below every limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignalingLimits {
    pub mute: RateLimit,
    /// `publish` and `unpublish` together: each one makes the bridge re-offer to the whole room.
    pub publish: RateLimit,
    pub answer: RateLimit,
    /// `chat` and `delete_chat`: each one reaches everyone in the room (and its history).
    pub chat: RateLimit,
    /// `react`, `raise_hand` and `lower_hand`: each one is shown to everyone in the room.
    pub reaction: RateLimit,
    /// Anything else a client may send after `hello` (a second `hello`, `leave`).
    pub other: RateLimit,
    /// Refused messages tolerated (this many at once, refilled by one per second) before the
    /// client is disconnected.
    pub refusals: RateLimit,
}

impl Default for SignalingLimits {
    fn default() -> Self {
        Self {
            mute: RateLimit {
                burst: 20,
                per_second: 10,
            },
            publish: RateLimit {
                burst: 10,
                per_second: 2,
            },
            answer: RateLimit {
                burst: 20,
                per_second: 10,
            },
            chat: RateLimit {
                burst: 10,
                per_second: 2,
            },
            reaction: RateLimit {
                burst: 10,
                per_second: 3,
            },
            other: RateLimit {
                burst: 10,
                per_second: 5,
            },
            refusals: RateLimit {
                burst: 50,
                per_second: 1,
            },
        }
    }
}

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum SignalingLimitsError {
    #[error("signaling limit `{0}`: burst and per_second must be at least 1")]
    Zero(&'static str),
}

impl SignalingLimits {
    pub fn validate(&self) -> Result<(), SignalingLimitsError> {
        for (name, limit) in [
            ("mute", self.mute),
            ("publish", self.publish),
            ("answer", self.answer),
            ("chat", self.chat),
            ("reaction", self.reaction),
            ("other", self.other),
            ("refusals", self.refusals),
        ] {
            if limit.burst == 0 || limit.per_second == 0 {
                return Err(SignalingLimitsError::Zero(name));
            }
        }
        Ok(())
    }
}

/// The kinds of client message, each with its own bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageKind {
    Mute,
    Publish,
    Answer,
    Chat,
    Reaction,
    Other,
}

impl MessageKind {
    pub fn of(message: &ClientMessage) -> Self {
        match message {
            ClientMessage::Mute { .. } => Self::Mute,
            ClientMessage::Publish { .. } | ClientMessage::Unpublish { .. } => Self::Publish,
            ClientMessage::Answer { .. } => Self::Answer,
            ClientMessage::Chat { .. } | ClientMessage::DeleteChat { .. } => Self::Chat,
            ClientMessage::React { .. } | ClientMessage::RaiseHand | ClientMessage::LowerHand { .. } => {
                Self::Reaction
            }
            _ => Self::Other,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Mute => "mute",
            Self::Publish => "publish/unpublish",
            Self::Answer => "answer",
            Self::Chat => "chat",
            Self::Reaction => "reaction/hand",
            Self::Other => "signaling",
        }
    }
}

/// What to do with one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Accept,
    /// Refuse it with a `rate_limited` error; the client stays.
    Refuse,
    /// The refusal budget is spent: disconnect the client.
    Disconnect,
}

/// A token bucket in thousandths of a token, so sub-token refills are not lost between calls.
#[derive(Debug, Clone)]
struct Bucket {
    limit: RateLimit,
    milli_tokens: u64,
    refilled_at: Instant,
}

impl Bucket {
    fn new(limit: RateLimit, now: Instant) -> Self {
        Self {
            limit,
            milli_tokens: u64::from(limit.burst) * 1000,
            refilled_at: now,
        }
    }

    fn take(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.refilled_at);
        // per_second tokens a second is per_second thousandths of a token a millisecond.
        let refill = (elapsed.as_micros() * u128::from(self.limit.per_second) / 1000) as u64;
        if refill > 0 {
            let cap = u64::from(self.limit.burst) * 1000;
            self.milli_tokens = self.milli_tokens.saturating_add(refill).min(cap);
            self.refilled_at = now;
        }
        if self.milli_tokens >= 1000 {
            self.milli_tokens -= 1000;
            true
        } else {
            false
        }
    }

    /// How long until one token is back.
    fn retry_after(&self) -> Duration {
        let missing = 1000u64.saturating_sub(self.milli_tokens);
        Duration::from_millis(missing.div_ceil(u64::from(self.limit.per_second)))
    }
}

/// One client's buckets.
#[derive(Debug, Clone)]
pub struct ClientLimiter {
    mute: Bucket,
    publish: Bucket,
    answer: Bucket,
    chat: Bucket,
    reaction: Bucket,
    other: Bucket,
    refusals: Bucket,
    refused_total: u64,
}

impl ClientLimiter {
    pub fn new(limits: &SignalingLimits, now: Instant) -> Self {
        Self {
            mute: Bucket::new(limits.mute, now),
            publish: Bucket::new(limits.publish, now),
            answer: Bucket::new(limits.answer, now),
            chat: Bucket::new(limits.chat, now),
            reaction: Bucket::new(limits.reaction, now),
            other: Bucket::new(limits.other, now),
            refusals: Bucket::new(limits.refusals, now),
            refused_total: 0,
        }
    }

    fn bucket(&mut self, kind: MessageKind) -> &mut Bucket {
        match kind {
            MessageKind::Mute => &mut self.mute,
            MessageKind::Publish => &mut self.publish,
            MessageKind::Answer => &mut self.answer,
            MessageKind::Chat => &mut self.chat,
            MessageKind::Reaction => &mut self.reaction,
            MessageKind::Other => &mut self.other,
        }
    }

    pub fn check(&mut self, now: Instant, kind: MessageKind) -> Verdict {
        if self.bucket(kind).take(now) {
            return Verdict::Accept;
        }
        self.refused_total += 1;
        if self.refusals.take(now) {
            Verdict::Refuse
        } else {
            Verdict::Disconnect
        }
    }

    /// The error text for a refused message of `kind`.
    pub fn refusal_message(&mut self, kind: MessageKind) -> String {
        let bucket = self.bucket(kind);
        format!(
            "too many {} messages: at most {} at once and {} per second; retry in {} ms",
            kind.as_str(),
            bucket.limit.burst,
            bucket.limit.per_second,
            bucket.retry_after().as_millis()
        )
    }

    pub fn refused_total(&self) -> u64 {
        self.refused_total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mute() -> ClientMessage {
        ClientMessage::Mute {
            microphone: true,
            camera: false,
        }
    }

    #[test]
    fn a_burst_is_accepted_then_refused_then_the_client_is_cut_off() {
        let limits = SignalingLimits::default();
        let now = Instant::now();
        let mut limiter = ClientLimiter::new(&limits, now);
        let kind = MessageKind::of(&mute());
        let verdicts: Vec<_> = (0..100).map(|_| limiter.check(now, kind)).collect();
        let accepted = verdicts.iter().filter(|v| **v == Verdict::Accept).count();
        let refused = verdicts.iter().filter(|v| **v == Verdict::Refuse).count();
        assert_eq!(accepted, limits.mute.burst as usize);
        assert_eq!(refused, limits.refusals.burst as usize);
        assert_eq!(verdicts.last(), Some(&Verdict::Disconnect));
        assert!(limiter.refusal_message(kind).contains("mute"));
    }

    #[test]
    fn kinds_have_separate_buckets_and_refill_with_time() {
        let limits = SignalingLimits::default();
        let start = Instant::now();
        let mut limiter = ClientLimiter::new(&limits, start);
        for _ in 0..limits.mute.burst {
            assert_eq!(limiter.check(start, MessageKind::Mute), Verdict::Accept);
        }
        assert_eq!(limiter.check(start, MessageKind::Mute), Verdict::Refuse);
        assert_eq!(limiter.check(start, MessageKind::Answer), Verdict::Accept);
        // 10 per second: one token back after 100 ms, not before.
        assert_eq!(
            limiter.check(start + Duration::from_millis(99), MessageKind::Mute),
            Verdict::Refuse
        );
        assert_eq!(
            limiter.check(start + Duration::from_millis(100), MessageKind::Mute),
            Verdict::Accept
        );
    }

    #[test]
    fn a_client_at_the_steady_rate_is_never_refused() {
        let limits = SignalingLimits::default();
        let start = Instant::now();
        let mut limiter = ClientLimiter::new(&limits, start);
        for i in 0..10_000u64 {
            let now = start + Duration::from_millis(i * 100);
            assert_eq!(
                limiter.check(now, MessageKind::Mute),
                Verdict::Accept,
                "message {i}"
            );
        }
        assert_eq!(limiter.refused_total(), 0);
    }

    #[test]
    fn zero_limits_are_refused() {
        let mut limits = SignalingLimits::default();
        limits.publish.per_second = 0;
        assert_eq!(limits.validate(), Err(SignalingLimitsError::Zero("publish")));
        assert_eq!(SignalingLimits::default().validate(), Ok(()));
    }
}
