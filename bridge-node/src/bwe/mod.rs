//! Send-side bandwidth estimation toward each subscriber, and the allocation of that estimate
//! among the sources it receives (issue 16 parts 2 and 3).
//!
//! # Layout
//! - [`history`]: the transport-wide sequence numbers the bridge stamps into every packet it
//!   sends a subscriber, what it sent under each (a bounded ring), and the subscriber's
//!   transport-cc feedback turned into [`PacketResult`]s.
//! - [`delay`]: the delay-based detector, GCC-style: packets grouped by send time, the variation
//!   of the inter-group delay, a trendline over it and an overuse detector with an adaptive
//!   threshold.
//! - [`rate`]: the AIMD rate controller the detector drives, the rate the subscriber acknowledged,
//!   and the loss-based bound.
//! - [`probe`]: probe clusters that let a subscriber whose layers all fit under the estimate
//!   find out whether more would fit, and their results.
//! - [`estimator`]: the three combined as libwebrtc's GoogCC does: the estimate is the lower of
//!   the delay-based and loss-based rates.
//! - [`bottleneck`]: a simulated link (fixed rate, drop-tail queue) the estimator's tests and
//!   the `bwe_bottleneck` example run it against.
//! - [`layer_rates`]: the bitrate each simulcast layer is published at, measured.
//! - [`subscriber`]: one subscriber's history, estimator and counts.
//! - [`allocator`]: a pure function from the estimate, the receiver's constraints and the room's
//!   speaker order to a layer (or a pause) per source.
//!
//! Sans-IO throughout: every input carries `now`, nothing reads a clock or a socket.

pub mod allocator;
pub mod bottleneck;
pub mod delay;
pub mod estimator;
pub mod history;
pub mod layer_rates;
pub mod probe;
pub mod rate;
pub mod subscriber;

#[cfg(test)]
mod bottleneck_tests;

use std::time::Instant;

/// One packet the bridge sent a subscriber, as the subscriber's feedback told of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PacketResult {
    pub send_time: Instant,
    pub size_bytes: u16,
    /// When it arrived on the subscriber's clock, which is not the bridge's: only differences
    /// between arrivals mean anything. `None`: lost.
    pub arrival: Option<Instant>,
    /// The probe cluster the packet belonged to, if any.
    pub probe_cluster: Option<u32>,
}
