//! Rates: what the subscriber acknowledged receiving, the AIMD controller the delay detector
//! drives, and the bound that loss puts on both (after libwebrtc's `AimdRateControl` and its
//! classic loss-based estimation; GCC draft §5.5 and §6).

use super::delay::BandwidthUsage;
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// The window the acknowledged rate is measured over.
pub const ACKED_WINDOW: Duration = Duration::from_millis(500);
/// Arrivals kept for it at most (a 500 ms window at 2,000 packets a second, about 20 Mbit/s);
/// past that the oldest go first.
const ACKED_SAMPLES_MAX: usize = 1024;
/// A decrease goes to this share of the acknowledged rate.
const BETA: f64 = 0.85;
/// Multiplicative increase per second far from the last known capacity.
const INCREASE_PER_SECOND: f64 = 1.08;
/// The estimate may run ahead of what was acknowledged by this much at most: an estimate the
/// sender never used is a guess (probing fills that gap).
const ACKED_HEADROOM: f64 = 1.5;
const ACKED_HEADROOM_BPS: f64 = 10_000.0;
/// Loss fractions below which the loss-based bound rises, above which it falls.
const LOSS_LOW: f64 = 0.02;
const LOSS_HIGH: f64 = 0.10;
/// Packets a loss fraction is judged on at least.
const LOSS_PACKETS_MIN: u32 = 20;
/// How often the loss-based bound may fall at most.
const LOSS_DECREASE_INTERVAL: Duration = Duration::from_millis(300);

/// The rate the subscriber acknowledged receiving: bytes by arrival time over [`ACKED_WINDOW`].
#[derive(Debug, Default)]
pub struct AckedRate {
    /// (arrival in µs since `epoch`, bytes), in the order reported: 8 bytes a packet, so a full
    /// window costs a subscriber 8 KiB.
    samples: VecDeque<(u32, u32)>,
    epoch: Option<Instant>,
    newest_us: u32,
    bytes: u64,
}

impl AckedRate {
    pub fn on_arrival(&mut self, arrival: Instant, bytes: u16) {
        let epoch = *self.epoch.get_or_insert(arrival);
        // Earlier than the first arrival (reordered): counted at it.
        let at_us = arrival
            .saturating_duration_since(epoch)
            .as_micros()
            .min(u128::from(u32::MAX)) as u32;
        if self.samples.len() == ACKED_SAMPLES_MAX
            && let Some((_, old)) = self.samples.pop_front()
        {
            self.bytes -= u64::from(old);
        }
        self.samples.push_back((at_us, u32::from(bytes)));
        self.bytes += u64::from(bytes);
        self.newest_us = self.newest_us.max(at_us);
        let newest = self.newest_us;
        let window_us = ACKED_WINDOW.as_micros() as u32;
        while let Some(&(at, old)) = self.samples.front() {
            if newest.saturating_sub(at) <= window_us {
                break;
            }
            self.samples.pop_front();
            self.bytes -= u64::from(old);
        }
    }

    /// Bits per second over the window, once it spans at least half of it.
    pub fn bps(&self) -> Option<f64> {
        let first = self.samples.front()?.0;
        let span = Duration::from_micros(u64::from(self.newest_us.saturating_sub(first)));
        if span < ACKED_WINDOW / 2 {
            return None;
        }
        Some(self.bytes as f64 * 8.0 / ACKED_WINDOW.max(span).as_secs_f64())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AimdState {
    Hold,
    Increase,
    Decrease,
}

/// Additive-increase, multiplicative-decrease on the delay detector's signal.
#[derive(Debug)]
pub struct AimdRate {
    rate_bps: f64,
    min_bps: f64,
    max_bps: f64,
    state: AimdState,
    last_update: Option<Instant>,
    /// The acknowledged rate at recent decreases (the link's capacity as last seen), with its
    /// variance: near it the increase is additive, far from it multiplicative.
    capacity_bps: Option<f64>,
    capacity_var: f64,
    last_decrease: Option<Instant>,
}

impl AimdRate {
    pub fn new(start_bps: f64, min_bps: f64, max_bps: f64) -> Self {
        Self {
            rate_bps: start_bps,
            min_bps,
            max_bps,
            state: AimdState::Hold,
            last_update: None,
            capacity_bps: None,
            capacity_var: 0.4,
            last_decrease: None,
        }
    }

    pub fn rate_bps(&self) -> f64 {
        self.rate_bps
    }

    /// Moves the rate to `bps` (a probe found more room): the capacity seen before is forgotten.
    pub fn set_rate(&mut self, bps: f64) {
        self.rate_bps = bps.clamp(self.min_bps, self.max_bps);
        self.capacity_bps = None;
    }

    /// The detector's signal at `now`, with the acknowledged rate and the round-trip time.
    pub fn update(&mut self, now: Instant, usage: BandwidthUsage, acked_bps: Option<f64>, rtt: Duration) {
        let elapsed = self
            .last_update
            .map_or(Duration::ZERO, |at| now.saturating_duration_since(at))
            .min(Duration::from_secs(1));
        self.last_update = Some(now);
        self.state = match (usage, self.state) {
            (BandwidthUsage::Overusing, _) => AimdState::Decrease,
            (BandwidthUsage::Underusing, _) => AimdState::Hold,
            (BandwidthUsage::Normal, AimdState::Hold | AimdState::Decrease) => AimdState::Increase,
            (BandwidthUsage::Normal, AimdState::Increase) => AimdState::Increase,
        };
        match self.state {
            AimdState::Hold => {}
            AimdState::Increase => {
                if let (Some(capacity), Some(acked)) = (self.capacity_bps, acked_bps)
                    && acked > capacity + 3.0 * (self.capacity_var * capacity).sqrt().max(capacity * 0.1)
                {
                    // Well past the capacity seen before: it has changed, search again.
                    self.capacity_bps = None;
                }
                let near = self.capacity_bps.is_some();
                let increase = if near {
                    // About one packet per response time.
                    let response = rtt + Duration::from_millis(100);
                    (1200.0 * 8.0 / response.as_secs_f64()).max(4000.0) * elapsed.as_secs_f64()
                } else {
                    self.rate_bps * (INCREASE_PER_SECOND.powf(elapsed.as_secs_f64()) - 1.0)
                };
                let mut rate = self.rate_bps + increase.max(0.0);
                if let Some(acked) = acked_bps {
                    rate = rate
                        .min(ACKED_HEADROOM * acked + ACKED_HEADROOM_BPS)
                        .max(self.rate_bps.min(rate));
                }
                self.rate_bps = rate;
            }
            AimdState::Decrease => {
                // One decrease per round trip: the signal lags the queue by that much.
                let recently = self.last_decrease.is_some_and(|at| {
                    now.saturating_duration_since(at) < rtt.max(Duration::from_millis(100))
                });
                if !recently && let Some(acked) = acked_bps {
                    let decreased = BETA * acked;
                    if decreased < self.rate_bps {
                        self.rate_bps = decreased;
                    }
                    self.learn_capacity(acked);
                    self.last_decrease = Some(now);
                }
                self.state = AimdState::Hold;
            }
        }
        self.rate_bps = self.rate_bps.clamp(self.min_bps, self.max_bps);
    }

    fn learn_capacity(&mut self, acked: f64) {
        match self.capacity_bps {
            None => self.capacity_bps = Some(acked),
            Some(capacity) => {
                let updated = 0.95 * capacity + 0.05 * acked;
                let error = (acked - updated) / updated.max(1.0);
                self.capacity_var = (0.95 * self.capacity_var + 0.05 * error * error).clamp(0.4, 2.5);
                self.capacity_bps = Some(updated);
            }
        }
    }
}

/// The bound loss puts on the estimate: it rises while loss is low, holds between, and falls in
/// proportion to loss above [`LOSS_HIGH`].
#[derive(Debug)]
pub struct LossBound {
    bound_bps: f64,
    min_bps: f64,
    max_bps: f64,
    received: u32,
    lost: u32,
    last_decrease: Option<Instant>,
    last_update: Option<Instant>,
    /// The loss fraction last judged.
    pub last_loss: f64,
}

impl LossBound {
    pub fn new(start_bps: f64, min_bps: f64, max_bps: f64) -> Self {
        Self {
            bound_bps: start_bps,
            min_bps,
            max_bps,
            received: 0,
            lost: 0,
            last_decrease: None,
            last_update: None,
            last_loss: 0.0,
        }
    }

    pub fn bound_bps(&self) -> f64 {
        self.bound_bps
    }

    /// A probe measured `bps` arriving without loss: the bound starts from there.
    pub fn raise_to(&mut self, bps: f64) {
        self.bound_bps = self.bound_bps.max(bps).clamp(self.min_bps, self.max_bps);
    }

    pub fn count(&mut self, received: bool) {
        if received {
            self.received += 1;
        } else {
            self.lost += 1;
        }
    }

    /// Judges the packets counted since the last judgement, once there are enough; `current_bps`
    /// is the estimate the bound constrains (it follows it up, never leads it).
    pub fn update(&mut self, now: Instant, current_bps: f64, rtt: Duration) {
        let total = self.received + self.lost;
        if total < LOSS_PACKETS_MIN {
            return;
        }
        let loss = f64::from(self.lost) / f64::from(total);
        self.last_loss = loss;
        self.received = 0;
        self.lost = 0;
        let elapsed = self
            .last_update
            .map_or(Duration::ZERO, |at| now.saturating_duration_since(at))
            .min(Duration::from_secs(1));
        self.last_update = Some(now);
        if loss < LOSS_LOW {
            // Low loss: the bound grows 8 % a second (plus a little, so a low one gets going).
            // It may sit above the delay-based rate; it only ever caps it.
            self.bound_bps = self.bound_bps * INCREASE_PER_SECOND.powf(elapsed.as_secs_f64()) + 1000.0;
        } else if loss > LOSS_HIGH {
            let interval = LOSS_DECREASE_INTERVAL + rtt;
            if self
                .last_decrease
                .is_none_or(|at| now.saturating_duration_since(at) >= interval)
            {
                self.bound_bps = current_bps.min(self.bound_bps) * (1.0 - 0.5 * loss);
                self.last_decrease = Some(now);
            }
        }
        self.bound_bps = self.bound_bps.clamp(self.min_bps, self.max_bps);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_acked_rate_is_bytes_over_the_window() {
        let t = Instant::now();
        let mut acked = AckedRate::default();
        assert_eq!(acked.bps(), None);
        // 1,000 bytes every 10 ms: 800 kbit/s.
        for i in 0..200u64 {
            acked.on_arrival(t + Duration::from_millis(i * 10), 1000);
        }
        let bps = acked.bps().unwrap();
        assert!((780_000.0..=820_000.0).contains(&bps), "{bps}");
    }

    #[test]
    fn overuse_decreases_to_beta_of_acked_and_normal_increases() {
        let t = Instant::now();
        let rtt = Duration::from_millis(50);
        let mut aimd = AimdRate::new(1_000_000.0, 50_000.0, 10_000_000.0);
        aimd.update(t, BandwidthUsage::Overusing, Some(600_000.0), rtt);
        assert_eq!(aimd.rate_bps(), 0.85 * 600_000.0);
        let mut now = t;
        for _ in 0..50 {
            now += Duration::from_millis(100);
            aimd.update(now, BandwidthUsage::Normal, Some(600_000.0), rtt);
        }
        assert!(aimd.rate_bps() > 0.85 * 600_000.0);
        assert!(
            aimd.rate_bps() <= 1.5 * 600_000.0 + 10_000.0,
            "bounded by the acked rate"
        );
    }

    #[test]
    fn heavy_loss_lowers_the_bound_and_low_loss_lets_it_follow() {
        let t = Instant::now();
        let rtt = Duration::from_millis(50);
        let mut loss = LossBound::new(1_000_000.0, 50_000.0, 10_000_000.0);
        for i in 0..100 {
            loss.count(i % 5 != 0); // 20 % lost
        }
        loss.update(t, 1_000_000.0, rtt);
        assert_eq!(loss.bound_bps(), 900_000.0);
        for _ in 0..100 {
            loss.count(true);
        }
        loss.update(t + Duration::from_secs(1), 2_000_000.0, rtt);
        assert_eq!(loss.bound_bps(), 900_000.0 * 1.08 + 1000.0, "8 % a second");
    }
}
