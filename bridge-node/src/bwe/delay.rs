//! The delay-based half of the estimator (after GCC, draft-ietf-rmcat-gcc-02 §5, and libwebrtc's
//! trendline estimator): is the path's queue growing, steady or draining?
//!
//! Packets sent within [`GROUP_SPAN`] of each other form a group (a frame's packets leave in a
//! burst); for two consecutive groups the delay variation is how much longer their arrivals were
//! apart than their sends. Summed, it is the queue's growth; a least-squares slope over the last
//! [`TRENDLINE_WINDOW`] sums, scaled, is compared with a threshold that adapts to the path's
//! jitter, so a noisy path does not read as congested and a clean one reacts early.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Sends closer together than this are one group.
pub const GROUP_SPAN: Duration = Duration::from_millis(5);
/// Delay samples the slope is fitted over.
pub const TRENDLINE_WINDOW: usize = 20;
const SMOOTHING: f64 = 0.9;
const THRESHOLD_GAIN: f64 = 4.0;
/// Samples past which the slope is no longer scaled up further.
const DELTA_COUNTER_MAX: u32 = 60;
/// Overuse must last this long before it is signalled.
const OVERUSE_TIME_MS: f64 = 10.0;
const THRESHOLD_INITIAL_MS: f64 = 12.5;
const THRESHOLD_MIN_MS: f64 = 6.0;
const THRESHOLD_MAX_MS: f64 = 600.0;
/// How fast the threshold follows the trend up (rarely) and down.
const K_UP: f64 = 0.0087;
const K_DOWN: f64 = 0.039;
/// A trend this far past the threshold is a spike the threshold does not learn from.
const THRESHOLD_OUTLIER_MS: f64 = 15.0;

/// What the detector makes of the path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BandwidthUsage {
    Normal,
    Overusing,
    Underusing,
}

#[derive(Debug, Clone, Copy)]
struct Group {
    first_send: Instant,
    last_send: Instant,
    last_arrival: Instant,
}

/// Groups, their delay variation, the trendline and the detector.
#[derive(Debug)]
pub struct DelayDetector {
    current: Option<Group>,
    previous: Option<Group>,
    first_arrival: Option<Instant>,
    accumulated_ms: f64,
    smoothed_ms: f64,
    /// (arrival ms since the first, smoothed accumulated delay ms).
    samples: VecDeque<(f64, f64)>,
    deltas: u32,
    threshold_ms: f64,
    last_threshold_update: Option<Instant>,
    overuse_ms: f64,
    overuse_count: u32,
    previous_trend: f64,
    state: BandwidthUsage,
}

impl Default for DelayDetector {
    fn default() -> Self {
        Self {
            current: None,
            previous: None,
            first_arrival: None,
            accumulated_ms: 0.0,
            smoothed_ms: 0.0,
            samples: VecDeque::new(),
            deltas: 0,
            threshold_ms: THRESHOLD_INITIAL_MS,
            last_threshold_update: None,
            overuse_ms: -1.0,
            overuse_count: 0,
            previous_trend: 0.0,
            state: BandwidthUsage::Normal,
        }
    }
}

impl DelayDetector {
    pub fn state(&self) -> BandwidthUsage {
        self.state
    }

    pub fn threshold_ms(&self) -> f64 {
        self.threshold_ms
    }

    /// One received packet, in send order; returns the state after it.
    pub fn on_packet(&mut self, send: Instant, arrival: Instant) -> BandwidthUsage {
        let Some(mut current) = self.current else {
            self.current = Some(Group {
                first_send: send,
                last_send: send,
                last_arrival: arrival,
            });
            return self.state;
        };
        if send < current.first_send {
            return self.state; // Reordered across groups: libwebrtc drops these too.
        }
        if send.duration_since(current.first_send) <= GROUP_SPAN {
            current.last_send = current.last_send.max(send);
            current.last_arrival = current.last_arrival.max(arrival);
            self.current = Some(current);
            return self.state;
        }
        // `current` is complete: compare it with the one before.
        if let Some(previous) = self.previous {
            let send_delta = ms(current.last_send, previous.last_send);
            let arrival_delta = ms(current.last_arrival, previous.last_arrival);
            self.on_delta(arrival_delta - send_delta, send_delta, current.last_arrival);
        }
        self.previous = Some(current);
        self.current = Some(Group {
            first_send: send,
            last_send: send,
            last_arrival: arrival,
        });
        self.state
    }

    fn on_delta(&mut self, variation_ms: f64, send_delta_ms: f64, arrival: Instant) {
        self.deltas = (self.deltas + 1).min(DELTA_COUNTER_MAX);
        let first = *self.first_arrival.get_or_insert(arrival);
        self.accumulated_ms += variation_ms;
        self.smoothed_ms = SMOOTHING * self.smoothed_ms + (1.0 - SMOOTHING) * self.accumulated_ms;
        if self.samples.len() == TRENDLINE_WINDOW {
            self.samples.pop_front();
        }
        self.samples.push_back((ms(arrival, first), self.smoothed_ms));
        if self.samples.len() < TRENDLINE_WINDOW {
            return;
        }
        let Some(slope) = slope(&self.samples) else {
            return;
        };
        self.detect(slope, send_delta_ms, arrival);
    }

    fn detect(&mut self, slope: f64, send_delta_ms: f64, now: Instant) {
        let trend = f64::from(self.deltas) * slope * THRESHOLD_GAIN;
        if trend > self.threshold_ms {
            if self.overuse_ms < 0.0 {
                self.overuse_ms = send_delta_ms / 2.0;
            } else {
                self.overuse_ms += send_delta_ms;
            }
            self.overuse_count += 1;
            if self.overuse_ms > OVERUSE_TIME_MS && self.overuse_count > 1 && trend >= self.previous_trend {
                self.overuse_ms = 0.0;
                self.overuse_count = 0;
                self.state = BandwidthUsage::Overusing;
            }
        } else if trend < -self.threshold_ms {
            self.overuse_ms = -1.0;
            self.overuse_count = 0;
            self.state = BandwidthUsage::Underusing;
        } else {
            self.overuse_ms = -1.0;
            self.overuse_count = 0;
            self.state = BandwidthUsage::Normal;
        }
        self.previous_trend = trend;
        self.adapt_threshold(trend, now);
    }

    fn adapt_threshold(&mut self, trend: f64, now: Instant) {
        let last = *self.last_threshold_update.get_or_insert(now);
        if trend.abs() > self.threshold_ms + THRESHOLD_OUTLIER_MS {
            self.last_threshold_update = Some(now);
            return;
        }
        let k = if trend.abs() < self.threshold_ms {
            K_DOWN
        } else {
            K_UP
        };
        let elapsed_ms = ms(now, last).clamp(0.0, 100.0);
        self.threshold_ms += k * (trend.abs() - self.threshold_ms) * elapsed_ms;
        self.threshold_ms = self.threshold_ms.clamp(THRESHOLD_MIN_MS, THRESHOLD_MAX_MS);
        self.last_threshold_update = Some(now);
    }
}

/// `a - b` in milliseconds, negative when `a` is earlier.
fn ms(a: Instant, b: Instant) -> f64 {
    if a >= b {
        a.duration_since(b).as_secs_f64() * 1000.0
    } else {
        -(b.duration_since(a).as_secs_f64() * 1000.0)
    }
}

/// The least-squares slope of y over x; `None` when every x is the same.
fn slope(samples: &VecDeque<(f64, f64)>) -> Option<f64> {
    let n = samples.len() as f64;
    let (sum_x, sum_y) = samples.iter().fold((0.0, 0.0), |(x, y), s| (x + s.0, y + s.1));
    let (mean_x, mean_y) = (sum_x / n, sum_y / n);
    let (mut numerator, mut denominator) = (0.0, 0.0);
    for (x, y) in samples {
        numerator += (x - mean_x) * (y - mean_y);
        denominator += (x - mean_x) * (x - mean_x);
    }
    (denominator != 0.0).then(|| numerator / denominator)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Groups every 20 ms; `extra_ms(i)` is how much later than its send group `i` arrives.
    fn run(groups: u32, extra_ms: impl Fn(u32) -> f64) -> Vec<BandwidthUsage> {
        let t = Instant::now();
        let mut detector = DelayDetector::default();
        (0..groups)
            .map(|i| {
                let send = t + Duration::from_millis(u64::from(i) * 20);
                let arrival = send + Duration::from_micros((50_000.0 + extra_ms(i) * 1000.0) as u64);
                detector.on_packet(send, arrival)
            })
            .collect()
    }

    #[test]
    fn a_steady_path_is_normal_a_growing_queue_overuse_a_draining_one_underuse() {
        assert!(run(200, |_| 0.0).iter().all(|s| *s == BandwidthUsage::Normal));
        // The queue grows 2 ms per group after a second of steady sending.
        let growing = run(120, |i| if i < 50 { 0.0 } else { f64::from(i - 50) * 2.0 });
        assert_eq!(growing.last(), Some(&BandwidthUsage::Overusing));
        assert!(growing[..50].iter().all(|s| *s == BandwidthUsage::Normal));
        // It drains again.
        let draining = run(120, |i| {
            if i < 50 {
                200.0
            } else {
                (200.0 - f64::from(i - 50) * 3.0).max(0.0)
            }
        });
        assert!(draining[50..].contains(&BandwidthUsage::Underusing));
    }

    #[test]
    fn jitter_alone_is_not_overuse() {
        // ±4 ms of jitter around a steady queue.
        let noisy = run(500, |i| if i % 2 == 0 { 4.0 } else { 0.0 });
        assert!(!noisy.contains(&BandwidthUsage::Overusing));
    }
}
