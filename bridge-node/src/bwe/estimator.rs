//! One subscriber's estimate: the delay-based rate and the loss-based bound combined as
//! libwebrtc's GoogCC does (the lower wins), probe results lifting it, all driven by the
//! subscriber's feedback and `now` alone.

use super::PacketResult;
use super::delay::{BandwidthUsage, DelayDetector};
use super::probe::{ProbeCluster, ProbeController};
use super::rate::{AckedRate, AimdRate, LossBound};
use std::time::{Duration, Instant};

/// The estimator's limits. A plain struct: the bridge uses [`Default`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EstimatorConfig {
    pub start_bps: u64,
    pub min_bps: u64,
    pub max_bps: u64,
}

impl Default for EstimatorConfig {
    fn default() -> Self {
        Self {
            // Enough for every thumbnail and a 360p stage before the first feedback.
            start_bps: 1_000_000,
            min_bps: 50_000,
            max_bps: 20_000_000,
        }
    }
}

impl EstimatorConfig {
    pub fn validate(&self) -> Result<(), String> {
        if self.min_bps == 0 || self.min_bps > self.start_bps || self.start_bps > self.max_bps {
            return Err(format!(
                "bandwidth estimation wants 0 < min ({}) <= start ({}) <= max ({})",
                self.min_bps, self.start_bps, self.max_bps
            ));
        }
        Ok(())
    }
}

/// Acknowledged under this share of the estimate, the sender is limited by what it has to send.
const APP_LIMITED: f64 = 0.9;
/// A probe aims this far above the rate the allocation wants: the media sent during the burst
/// takes its share of the link, so a probe measures less than it was sent at.
const PROBE_ABOVE_WANTED: f64 = 1.5;
/// The round trip assumed until feedback measures one.
const RTT_DEFAULT: Duration = Duration::from_millis(100);

#[derive(Debug)]
pub struct Estimator {
    delay: DelayDetector,
    aimd: AimdRate,
    loss: LossBound,
    acked: AckedRate,
    probes: ProbeController,
    max_bps: f64,
    min_bps: f64,
}

impl Estimator {
    pub fn new(config: EstimatorConfig) -> Self {
        let (start, min, max) = (
            config.start_bps as f64,
            config.min_bps as f64,
            config.max_bps as f64,
        );
        Self {
            delay: DelayDetector::default(),
            aimd: AimdRate::new(start, min, max),
            loss: LossBound::new(start, min, max),
            acked: AckedRate::default(),
            probes: ProbeController::default(),
            max_bps: max,
            min_bps: min,
        }
    }

    /// Bits per second the path toward the subscriber is estimated to carry.
    pub fn estimate_bps(&self) -> u64 {
        self.aimd.rate_bps().min(self.loss.bound_bps()) as u64
    }

    pub fn acked_bps(&self) -> Option<u64> {
        self.acked.bps().map(|b| b as u64)
    }

    pub fn usage(&self) -> BandwidthUsage {
        self.delay.state()
    }

    /// The loss fraction last judged.
    pub fn loss(&self) -> f64 {
        self.loss.last_loss
    }

    /// One feedback's results, in send order, at `now`.
    pub fn on_feedback(&mut self, now: Instant, results: &[PacketResult], rtt: Option<Duration>) {
        let rtt = rtt.unwrap_or(RTT_DEFAULT);
        let mut probed = None;
        for result in results {
            self.loss.count(result.arrival.is_some());
            if let Some(arrival) = result.arrival {
                self.acked.on_arrival(arrival, result.size_bytes);
                self.delay.on_packet(result.send_time, arrival);
            }
            if result.probe_cluster.is_some()
                && let Some(rate) = self.probes.on_result(result, self.estimate_bps() as f64)
            {
                probed = Some(rate);
            }
        }
        let acked = self.acked.bps();
        self.aimd.update(now, self.delay.state(), acked, rtt);
        if let Some(rate) = probed
            && rate > self.aimd.rate_bps()
            && self.delay.state() != BandwidthUsage::Overusing
        {
            // Libwebrtc keeps a margin under what a probe measured.
            let rate = (rate * 0.95).clamp(self.min_bps, self.max_bps);
            self.aimd.set_rate(rate);
            self.loss.raise_to(rate);
        }
        self.loss.update(now, self.aimd.rate_bps(), rtt);
    }

    /// A probe cluster to send now, when the allocation wants `wanted_bps` and the estimate gives
    /// less, and what is sent leaves the estimate partly unused (application-limited: the media
    /// alone cannot show whether more fits). A sender that fills its estimate learns from its
    /// media; probing it would only add to a queue.
    pub fn poll_probe(&mut self, now: Instant, wanted_bps: u64) -> Option<ProbeCluster> {
        let estimate = self.estimate_bps() as f64;
        let app_limited = self
            .acked
            .bps()
            .is_none_or(|acked| acked < APP_LIMITED * estimate);
        if !app_limited {
            return None;
        }
        // Above what is wanted, so that an upgrade that needs headroom finds it.
        let target = (wanted_bps as f64 * PROBE_ABOVE_WANTED).min(self.max_bps);
        self.probes.poll_probe(now, estimate, target)
    }
}
