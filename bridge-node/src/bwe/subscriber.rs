//! One subscriber's estimation state: the transport-wide sequence it is sent, the estimator its
//! feedback drives, and the counts the metrics show.

use super::PacketResult;
use super::allocator::{Allocator, SourceDemand};
use super::estimator::{Estimator, EstimatorConfig};
use super::history::SendHistory;
use crate::simulcast::Layer;
use rtc::rtcp::transport_feedbacks::transport_layer_cc::TransportLayerCc;
use std::time::Instant;

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
}
