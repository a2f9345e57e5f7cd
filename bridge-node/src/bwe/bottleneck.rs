//! A simulated bottleneck to run the estimator against (its tests and the `bwe_bottleneck`
//! example that measures how fast it follows a cap): a link of a fixed rate with a drop-tail queue
//! (what `tc tbf` does), a propagation delay each way, the bridge's own transport-cc recorder
//! (`crate::fastpath::twcc`) as the subscriber reporting arrivals every 100 ms, and the send
//! history pairing them with the sends. Virtual time in 1 ms steps; nothing sleeps.

use super::estimator::{Estimator, EstimatorConfig};
use super::history::SendHistory;
use super::probe::PROBE_PACKET_BYTES;
use crate::fastpath::twcc::TwccRecorder;
use rtc::rtcp::transport_feedbacks::transport_layer_cc::TransportLayerCc;
use std::collections::VecDeque;
use std::time::{Duration, Instant};

const MEDIA_PACKET_BYTES: usize = 1200;
const PROPAGATION: Duration = Duration::from_millis(25);
const FEEDBACK_INTERVAL: Duration = Duration::from_millis(100);
/// The queue in front of the link (tbf's `limit`).
const QUEUE_LIMIT_BYTES: f64 = 30_000.0;

/// A sender that sends the media an allocation chooses (never more than the estimate) and the
/// estimator's probes, through a link of a given rate.
pub struct Bottleneck {
    pub t0: Instant,
    pub now: Instant,
    pub estimator: Estimator,
    history: SendHistory,
    receiver: TwccRecorder,
    /// When the queue's last byte leaves the link.
    link_free: Instant,
    in_flight: VecDeque<(Instant, u16)>,
    feedback: VecDeque<(Instant, TransportLayerCc)>,
    next_feedback: Instant,
    budget_bytes: f64,
    probe: VecDeque<Instant>,
    probe_id: Option<u32>,
    results: Vec<super::PacketResult>,
    pub lost: u64,
}

impl Default for Bottleneck {
    fn default() -> Self {
        Self::new()
    }
}

impl Bottleneck {
    pub fn new() -> Self {
        let t0 = Instant::now();
        Self {
            t0,
            now: t0,
            estimator: Estimator::new(EstimatorConfig::default()),
            history: SendHistory::default(),
            receiver: TwccRecorder::new(1),
            link_free: t0,
            in_flight: VecDeque::new(),
            feedback: VecDeque::new(),
            next_feedback: t0 + FEEDBACK_INTERVAL,
            budget_bytes: 0.0,
            probe: VecDeque::new(),
            probe_id: None,
            results: Vec::new(),
            lost: 0,
        }
    }

    fn send(&mut self, bytes: usize, capacity_bps: f64, probe: Option<u32>) {
        let seq = self.history.stamp(self.now, bytes, probe);
        let queued = self.link_free.saturating_duration_since(self.now).as_secs_f64() * capacity_bps / 8.0;
        if queued + bytes as f64 > QUEUE_LIMIT_BYTES {
            self.lost += 1;
            return;
        }
        let start = self.link_free.max(self.now);
        self.link_free = start + Duration::from_secs_f64(bytes as f64 * 8.0 / capacity_bps);
        self.in_flight.push_back((self.link_free + PROPAGATION, seq));
    }

    /// Runs until `until` (from the start) with the link at `capacity_bps`; `choose` turns the
    /// estimate into the media rate sent and the rate wanted (an allocation); `watch` is called
    /// every 100 ms with the time since the start and the estimate.
    pub fn run(
        &mut self,
        until: Duration,
        capacity_bps: f64,
        mut choose: impl FnMut(u64) -> (f64, f64),
        mut watch: impl FnMut(Duration, u64),
    ) {
        let step = Duration::from_millis(1);
        while self.now < self.t0 + until {
            self.now += step;
            let now = self.now;
            let (media_bps, wants_bps) = choose(self.estimator.estimate_bps());
            // Media, paced: the budget fills at the sending rate.
            let rate = (self.estimator.estimate_bps() as f64).min(media_bps);
            self.budget_bytes =
                (self.budget_bytes + rate * step.as_secs_f64() / 8.0).min(10.0 * MEDIA_PACKET_BYTES as f64);
            while self.budget_bytes >= MEDIA_PACKET_BYTES as f64 {
                self.budget_bytes -= MEDIA_PACKET_BYTES as f64;
                self.send(MEDIA_PACKET_BYTES, capacity_bps, None);
            }
            if self.probe.is_empty()
                && let Some(cluster) = self.estimator.poll_probe(now, wants_bps as u64)
            {
                for i in 0..cluster.packets {
                    self.probe.push_back(now + cluster.spacing * i);
                }
                self.probe_id = Some(cluster.id);
            }
            while self.probe.front().is_some_and(|at| *at <= now) {
                self.probe.pop_front();
                self.send(PROBE_PACKET_BYTES + 12, capacity_bps, self.probe_id);
            }
            while self.in_flight.front().is_some_and(|(at, _)| *at <= now) {
                let (at, seq) = self.in_flight.pop_front().expect("checked");
                self.receiver.record(at, seq);
            }
            if now >= self.next_feedback {
                self.next_feedback = now + FEEDBACK_INTERVAL;
                while let Some(feedback) = self.receiver.feedback(1) {
                    self.feedback.push_back((now + PROPAGATION, feedback));
                }
                watch(now - self.t0, self.estimator.estimate_bps());
            }
            while self.feedback.front().is_some_and(|(at, _)| *at <= now) {
                let (_, feedback) = self.feedback.pop_front().expect("checked");
                self.results.clear();
                self.history.on_feedback(now, &feedback, &mut self.results);
                self.estimator.on_feedback(now, &self.results, self.history.rtt());
            }
        }
    }
}

/// The web client's simulcast layers as a sender of one camera has them (kbit/s, roughly what
/// Chromium sends for 180p, 360p and 720p VP8).
pub const LADDER_BPS: [f64; 3] = [150_000.0, 500_000.0, 1_500_000.0];

/// An allocation over [`LADDER_BPS`]: the highest layer that fits the estimate with 10 % to spare
/// (the lowest always), and the next one up as what it wants. Returns (media, wanted) and the layer.
pub fn ladder(estimate_bps: u64) -> (f64, f64, usize) {
    let estimate = estimate_bps as f64;
    let layer = (0..LADDER_BPS.len())
        .rev()
        .find(|&l| LADDER_BPS[l] * 1.1 <= estimate)
        .unwrap_or(0);
    let wanted = LADDER_BPS[(layer + 1).min(LADDER_BPS.len() - 1)];
    (LADDER_BPS[layer], wanted, layer)
}
