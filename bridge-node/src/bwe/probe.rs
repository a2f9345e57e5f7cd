//! Probing: a subscriber whose layers all fit under the estimate sends too little for the
//! estimate to grow (it may run ahead of the acknowledged rate by half at most), so a higher
//! layer it could take is never tried. A probe cluster is a short burst of padding at a higher
//! rate; the rate at which the subscriber received it (no more than it was sent at) is what the
//! path carries, and the estimate may jump to it.
//!
//! Bounded: one cluster in flight, [`PROBE_PACKETS_MAX`] packets each, at most one every
//! [`PROBE_INTERVAL_MIN`], backing off to [`PROBE_INTERVAL_MAX`] while probes find nothing.

use super::PacketResult;
use std::time::{Duration, Instant};

/// Padding bytes in one probe packet (RTP padding is at most 255 bytes).
pub const PROBE_PACKET_BYTES: usize = 255;
pub const PROBE_PACKETS_MAX: u32 = 40;
const PROBE_PACKETS_MIN: u32 = 5;
/// How long a cluster lasts at its rate.
const PROBE_DURATION: Duration = Duration::from_millis(15);
pub const PROBE_INTERVAL_MIN: Duration = Duration::from_secs(1);
pub const PROBE_INTERVAL_MAX: Duration = Duration::from_secs(3);
/// A cluster is judged when its feedback is this late at most; later it is given up.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// Share of a cluster that must arrive for its rate to count.
const PROBE_RECEIVED_MIN: f64 = 0.8;
/// A probe aims this far above the estimate at most.
const PROBE_STEP: f64 = 2.0;

/// A burst of padding to send: `packets` of [`PROBE_PACKET_BYTES`], one every `spacing`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProbeCluster {
    pub id: u32,
    pub bitrate_bps: u64,
    pub packets: u32,
    pub spacing: Duration,
}

#[derive(Debug, Clone, Copy)]
struct InFlight {
    cluster: ProbeCluster,
    started: Instant,
    /// Bytes, first and last send and arrival of the packets reported so far.
    reported: u32,
    received: u32,
    bytes_after_first_send: u64,
    bytes_after_first_arrival: u64,
    first_send: Option<Instant>,
    last_send: Option<Instant>,
    first_arrival: Option<Instant>,
    last_arrival: Option<Instant>,
}

#[derive(Debug)]
pub struct ProbeController {
    next_id: u32,
    in_flight: Option<InFlight>,
    next_allowed: Option<Instant>,
    interval: Duration,
}

impl Default for ProbeController {
    fn default() -> Self {
        Self {
            next_id: 1,
            in_flight: None,
            next_allowed: None,
            interval: PROBE_INTERVAL_MIN,
        }
    }
}

impl ProbeController {
    /// A cluster to send now, when the allocation wants more than the estimate gives (`wanted_bps`)
    /// and no probe is in flight or due later.
    pub fn poll_probe(&mut self, now: Instant, estimate_bps: f64, wanted_bps: f64) -> Option<ProbeCluster> {
        if let Some(flight) = self.in_flight
            && now.saturating_duration_since(flight.started) > PROBE_TIMEOUT
        {
            self.in_flight = None;
        }
        if self.in_flight.is_some()
            || wanted_bps <= estimate_bps
            || self.next_allowed.is_some_and(|at| now < at)
        {
            return None;
        }
        let bitrate = wanted_bps.min(estimate_bps * PROBE_STEP).max(estimate_bps * 1.2);
        let bytes = bitrate * PROBE_DURATION.as_secs_f64() / 8.0;
        let packets =
            ((bytes / PROBE_PACKET_BYTES as f64).ceil() as u32).clamp(PROBE_PACKETS_MIN, PROBE_PACKETS_MAX);
        let spacing = Duration::from_secs_f64(PROBE_PACKET_BYTES as f64 * 8.0 / bitrate);
        let cluster = ProbeCluster {
            id: self.next_id,
            bitrate_bps: bitrate as u64,
            packets,
            spacing,
        };
        self.next_id = self.next_id.wrapping_add(1).max(1);
        self.in_flight = Some(InFlight {
            cluster,
            started: now,
            reported: 0,
            received: 0,
            bytes_after_first_send: 0,
            bytes_after_first_arrival: 0,
            first_send: None,
            last_send: None,
            first_arrival: None,
            last_arrival: None,
        });
        self.next_allowed = Some(now + self.interval);
        Some(cluster)
    }

    /// A probe packet's result; returns the rate the path carried once the whole cluster is in.
    pub fn on_result(&mut self, result: &PacketResult, estimate_bps: f64) -> Option<f64> {
        let flight = self.in_flight.as_mut()?;
        if result.probe_cluster != Some(flight.cluster.id) {
            return None;
        }
        flight.reported += 1;
        let bytes = u64::from(result.size_bytes);
        if flight.first_send.is_some() {
            flight.bytes_after_first_send += bytes;
        }
        flight.first_send.get_or_insert(result.send_time);
        flight.last_send = Some(result.send_time);
        if let Some(arrival) = result.arrival {
            flight.received += 1;
            match flight.first_arrival {
                Some(first) if arrival >= first => flight.bytes_after_first_arrival += bytes,
                Some(_) => flight.first_arrival = Some(arrival),
                None => flight.first_arrival = Some(arrival),
            }
            flight.last_arrival = Some(flight.last_arrival.map_or(arrival, |a| a.max(arrival)));
        }
        if flight.reported < flight.cluster.packets {
            return None;
        }
        let flight = self.in_flight.take()?;
        let rate = judge(&flight);
        // Found room: probe again soon; found none: less and less often.
        self.interval = match rate {
            Some(rate) if rate > estimate_bps * 1.1 => PROBE_INTERVAL_MIN,
            _ => (self.interval * 2).min(PROBE_INTERVAL_MAX),
        };
        rate
    }
}

fn judge(flight: &InFlight) -> Option<f64> {
    if f64::from(flight.received) < PROBE_RECEIVED_MIN * f64::from(flight.cluster.packets) {
        return None;
    }
    let send_span = flight.last_send?.saturating_duration_since(flight.first_send?);
    let arrival_span = flight
        .last_arrival?
        .saturating_duration_since(flight.first_arrival?);
    if send_span.is_zero() || arrival_span.is_zero() {
        return None;
    }
    let send_bps = flight.bytes_after_first_send as f64 * 8.0 / send_span.as_secs_f64();
    let receive_bps = flight.bytes_after_first_arrival as f64 * 8.0 / arrival_span.as_secs_f64();
    Some(send_bps.min(receive_bps))
}
