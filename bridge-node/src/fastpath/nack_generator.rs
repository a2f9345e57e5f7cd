//! NACKs toward a publisher (RFC 4585 §6.2.1) for the sequence numbers missing from one published
//! stream: a gap is asked for again every [`NackConfig::retry_interval`] up to
//! [`NackConfig::max_retries`] times, and given up once older than [`NackConfig::max_age`] (a
//! retransmission arriving later than that is of no use to a subscriber's jitter buffer).
//!
//! Sans-IO and bounded: at most [`NackConfig::max_missing`] sequence numbers are tracked, in a list
//! allocated once; a gap wider than that is a burst no NACK would repair, and only its newest part
//! is asked for.

use super::srtp::nearest_index;
use std::collections::VecDeque;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NackConfig {
    /// Sequence numbers tracked as missing at most.
    pub max_missing: usize,
    /// A missing packet is first asked for this long after the gap appeared (reordering on the
    /// path fills most gaps in a few milliseconds).
    pub first_delay: Duration,
    pub retry_interval: Duration,
    pub max_retries: u8,
    pub max_age: Duration,
}

impl Default for NackConfig {
    fn default() -> Self {
        Self {
            max_missing: 256,
            first_delay: Duration::from_millis(5),
            retry_interval: Duration::from_millis(100),
            max_retries: 8,
            max_age: Duration::from_secs(1),
        }
    }
}

impl NackConfig {
    pub fn validate(&self) -> Result<(), String> {
        if self.max_missing == 0 || self.max_missing > 4096 {
            return Err(format!("max_missing must be 1..=4096, not {}", self.max_missing));
        }
        if self.retry_interval.is_zero() || self.max_retries == 0 {
            return Err("retry_interval and max_retries must be positive".to_owned());
        }
        if self.max_age < self.first_delay {
            return Err("max_age must not be shorter than first_delay".to_owned());
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy)]
struct Missing {
    /// Extended sequence number (wraps counted).
    index: u64,
    since: Instant,
    next_at: Instant,
    sent: u8,
}

#[derive(Debug)]
pub struct NackGenerator {
    config: NackConfig,
    highest: Option<u64>,
    /// Oldest first.
    missing: VecDeque<Missing>,
    /// Sequence numbers given up on (too old, or asked for too often): lost to the subscribers.
    pub given_up: u64,
    /// Sequence numbers NACKed (each request counted).
    pub requested: u64,
}

impl NackGenerator {
    pub fn new(config: NackConfig) -> Self {
        Self {
            config,
            highest: None,
            missing: VecDeque::with_capacity(config.max_missing),
            given_up: 0,
            requested: 0,
        }
    }

    /// A packet of the stream arrived (new, late or retransmitted).
    pub fn record(&mut self, now: Instant, seq: u16) {
        let Some(highest) = self.highest else {
            self.highest = Some(u64::from(seq));
            return;
        };
        let index = nearest_index(highest, seq);
        if index <= highest {
            if let Some(at) = self.missing.iter().position(|m| m.index == index) {
                self.missing.remove(at);
            }
            return;
        }
        let gap = index - highest - 1;
        let max = self.config.max_missing as u64;
        if gap >= max {
            // A burst too wide to repair: forget older gaps, ask for the newest part only.
            self.given_up += self.missing.len() as u64 + (gap - max);
            self.missing.clear();
        }
        let first = index - gap.min(max);
        for lost in first..index {
            if self.missing.len() == self.config.max_missing {
                self.missing.pop_front();
                self.given_up += 1;
            }
            self.missing.push_back(Missing {
                index: lost,
                since: now,
                next_at: now + self.config.first_delay,
                sent: 0,
            });
        }
        self.highest = Some(index);
    }

    /// Sequence numbers to NACK now, into `out` (cleared first); gives up what is too old or
    /// asked for too often.
    pub fn poll(&mut self, now: Instant, out: &mut Vec<u16>) {
        out.clear();
        let NackConfig {
            max_age,
            max_retries,
            retry_interval,
            ..
        } = self.config;
        let before = self.missing.len();
        self.missing
            .retain(|m| now.saturating_duration_since(m.since) <= max_age && m.sent < max_retries);
        self.given_up += (before - self.missing.len()) as u64;
        for missing in self.missing.iter_mut().filter(|m| m.next_at <= now) {
            out.push(missing.index as u16);
            missing.sent += 1;
            missing.next_at = now + retry_interval;
        }
        self.requested += out.len() as u64;
    }

    /// When [`NackGenerator::poll`] has work next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.missing.iter().map(|m| m.next_at).min()
    }

    pub fn missing(&self) -> usize {
        self.missing.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn generator() -> NackGenerator {
        NackGenerator::new(NackConfig::default())
    }

    #[test]
    fn a_gap_is_nacked_after_the_first_delay_and_again_after_the_retry_interval() {
        let t = Instant::now();
        let mut nacks = generator();
        let mut out = Vec::new();
        for seq in [10u16, 11, 14] {
            nacks.record(t, seq);
        }
        nacks.poll(t, &mut out);
        assert!(out.is_empty(), "reordering gets its moment");
        assert_eq!(nacks.poll_timeout(), Some(t + 5 * MS));
        nacks.poll(t + 5 * MS, &mut out);
        assert_eq!(out, [12, 13]);
        nacks.poll(t + 50 * MS, &mut out);
        assert!(out.is_empty(), "not asked again before the retry interval");
        nacks.poll(t + 105 * MS, &mut out);
        assert_eq!(out, [12, 13]);
        assert_eq!(nacks.requested, 4);
    }

    #[test]
    fn a_late_or_retransmitted_packet_fills_its_gap() {
        let t = Instant::now();
        let mut nacks = generator();
        let mut out = Vec::new();
        for seq in [65_534u16, 1] {
            nacks.record(t, seq);
        }
        assert_eq!(nacks.missing(), 2, "65535 and 0, across the wrap");
        nacks.record(t + MS, 65_535);
        nacks.poll(t + 10 * MS, &mut out);
        assert_eq!(out, [0]);
        nacks.record(t + 20 * MS, 0);
        nacks.poll(t + 200 * MS, &mut out);
        assert!(out.is_empty());
        assert_eq!((nacks.missing(), nacks.given_up), (0, 0));
    }

    #[test]
    fn a_packet_is_given_up_after_the_retries_or_once_too_old() {
        let t = Instant::now();
        let config = NackConfig {
            max_retries: 2,
            ..NackConfig::default()
        };
        let mut nacks = NackGenerator::new(config);
        let mut out = Vec::new();
        nacks.record(t, 1);
        nacks.record(t, 3);
        nacks.poll(t + 5 * MS, &mut out);
        nacks.poll(t + 105 * MS, &mut out);
        assert_eq!(out, [2]);
        nacks.poll(t + 205 * MS, &mut out);
        assert!(out.is_empty(), "two retries, then given up");
        assert_eq!(nacks.given_up, 1);

        let mut nacks = generator();
        nacks.record(t, 1);
        nacks.record(t, 3);
        nacks.poll(t + 1001 * MS, &mut out);
        assert!(out.is_empty(), "older than a second: never asked for");
        assert_eq!((nacks.given_up, nacks.poll_timeout()), (1, None));
    }

    #[test]
    fn a_burst_wider_than_the_list_is_bounded() {
        let t = Instant::now();
        let mut nacks = generator();
        let mut out = Vec::new();
        nacks.record(t, 0);
        nacks.record(t, 1000);
        assert_eq!(nacks.missing(), 256);
        nacks.poll(t + 5 * MS, &mut out);
        assert_eq!(out.first(), Some(&744), "only the newest part is asked for");
        assert_eq!(out.last(), Some(&999));
        assert_eq!(nacks.given_up, 999 - 256);
        assert!(NackConfig::default().validate().is_ok());
        assert!(
            NackConfig {
                max_missing: 0,
                ..NackConfig::default()
            }
            .validate()
            .is_err()
        );
    }
}
