//! One subscriber's estimation state: the transport-wide sequence it is sent, the estimator its
//! feedback drives, and the counts the metrics show.

use super::PacketResult;
use super::allocator::{Allocator, SourceDemand};
use super::estimator::{Estimator, EstimatorConfig};
use super::history::SendHistory;
use super::probe::{PROBE_PACKET_BYTES, ProbeCluster};
use crate::simulcast::Layer;
use rtc::rtcp::transport_feedbacks::transport_layer_cc::TransportLayerCc;
use std::time::Instant;

/// A probe cluster being paced out: its packets go one every `cluster.spacing`.
#[derive(Debug, Clone, Copy)]
pub struct ProbeSchedule {
    pub cluster: ProbeCluster,
    sent: u32,
    next_at: Instant,
}

/// Results one feedback is turned into at most before they reach the estimator (Chromium
/// describes 50–100 ms of packets in one).
const RESULTS_MAX: usize = 4096;

#[derive(Debug)]
pub struct SubscriberBwe {
    /// Every packet sent to the subscriber with a transport-wide sequence number.
    pub history: SendHistory,
    pub estimator: Estimator,
    results: Vec<PacketResult>,
    /// Transport-cc feedback packets received from the subscriber.
    pub feedback_received: u64,
    pub allocator: Allocator,
    /// The probe cluster being sent, if any.
    pub probe: Option<ProbeSchedule>,
    /// Probe packets sent.
    pub probe_packets_sent: u64,
    /// Scratch for the allocator's inputs and outputs, kept between runs.
    pub demands: Vec<SourceDemand>,
    pub layers: Vec<Option<Layer>>,
}

impl Default for SubscriberBwe {
    fn default() -> Self {
        Self {
            history: SendHistory::default(),
            estimator: Estimator::new(EstimatorConfig::default()),
            results: Vec::new(),
            feedback_received: 0,
            allocator: Allocator::default(),
            probe: None,
            probe_packets_sent: 0,
            demands: Vec::new(),
            layers: Vec::new(),
        }
    }
}

impl SubscriberBwe {
    /// A transport-cc feedback from the subscriber, received at `now`.
    pub fn on_feedback(&mut self, now: Instant, feedback: &TransportLayerCc) {
        self.feedback_received += 1;
        self.results.clear();
        self.history.on_feedback(now, feedback, &mut self.results);
        self.results.truncate(RESULTS_MAX);
        self.estimator.on_feedback(now, &self.results, self.history.rtt());
    }

    /// The estimate, once the subscriber's feedback has said anything: a subscriber that sends
    /// none (no transport-cc negotiated) is not limited by the bridge.
    pub fn estimate_bps(&self) -> Option<u64> {
        (self.feedback_received > 0).then(|| self.estimator.estimate_bps())
    }

    /// Starts a probe cluster when the allocation wants `wanted_bps` and the estimator agrees
    /// that probing is due (see [`super::estimator::Estimator::poll_probe`]).
    pub fn start_probe(&mut self, now: Instant, wanted_bps: u64) {
        if self.probe.is_some() || self.feedback_received == 0 {
            return;
        }
        if let Some(cluster) = self.estimator.poll_probe(now, wanted_bps) {
            self.probe = Some(ProbeSchedule {
                cluster,
                sent: 0,
                next_at: now,
            });
        }
    }

    /// When the next probe packet is due.
    pub fn probe_due(&self) -> Option<Instant> {
        self.probe.map(|p| p.next_at)
    }

    /// The probe cluster a packet due at `now` belongs to, with its padding length; `None` when
    /// none is due. The caller sends it (or calls [`SubscriberBwe::abandon_probe`]).
    pub fn next_probe_packet(&mut self, now: Instant) -> Option<(u32, u8)> {
        let probe = self.probe.as_mut().filter(|p| p.next_at <= now)?;
        let id = probe.cluster.id;
        probe.sent += 1;
        probe.next_at += probe.cluster.spacing;
        if probe.sent >= probe.cluster.packets {
            self.probe = None;
        }
        self.probe_packets_sent += 1;
        Some((id, PROBE_PACKET_BYTES as u8))
    }

    /// Nothing can carry the probe (no video leg sending): it is dropped.
    pub fn abandon_probe(&mut self) {
        self.probe = None;
    }
}
