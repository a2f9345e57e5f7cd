//! Counters the server keeps and their Prometheus rendering. Atomics, because the relay path
//! updates them per packet from several tasks.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric as _};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub requests_total: AtomicU64,
    pub allocations_total: AtomicU64,
    pub allocation_quota_refusals_total: AtomicU64,
    pub client_to_peer_packets_total: AtomicU64,
    pub client_to_peer_bytes_total: AtomicU64,
    pub peer_to_client_packets_total: AtomicU64,
    pub peer_to_client_bytes_total: AtomicU64,
    pub denied_peers_total: AtomicU64,
    pub auth_failures_total: AtomicU64,
    pub unauthenticated_dropped_total: AtomicU64,
    pub bandwidth_dropped_total: AtomicU64,
    pub stream_connections_refused_total: AtomicU64,
    pub sessions_ended_total: AtomicU64,
    pub allocations_ended_with_session_total: AtomicU64,
    pub ended_session_refusals_total: AtomicU64,
}

pub(crate) fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Relaxed);
}

/// A snapshot of the server's counters and table sizes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TurnStats {
    /// STUN requests read (valid framing), authenticated or not.
    pub requests_total: u64,
    pub allocations_active: u64,
    pub allocations_total: u64,
    /// Allocations refused because the user or the server was at its quota.
    pub allocation_quota_refusals_total: u64,
    pub client_to_peer_packets_total: u64,
    pub client_to_peer_bytes_total: u64,
    pub peer_to_client_packets_total: u64,
    pub peer_to_client_bytes_total: u64,
    /// Permissions refused (403) and packets dropped because of the peer-address policy.
    pub denied_peers_total: u64,
    /// Requests with a malformed or expired username or a wrong MESSAGE-INTEGRITY.
    pub auth_failures_total: u64,
    /// Requests without valid credentials dropped by the per-source rate limit.
    pub unauthenticated_dropped_total: u64,
    pub bandwidth_dropped_total: u64,
    pub stream_connections_active: u64,
    pub stream_connections_refused_total: u64,
    /// Entries in the per-source rate-limit table (bounded by `unauthenticated_limit.sources_max`).
    pub rate_limited_sources: u64,
    /// Users holding at least one allocation.
    pub users_active: u64,
    /// Participants' sessions ended (`TurnServer::end_session`), and the allocations that ended
    /// with them.
    pub sessions_ended_total: u64,
    pub allocations_ended_with_session_total: u64,
    /// Requests refused because their credential was issued before its session ended.
    pub ended_session_refusals_total: u64,
    /// Entries in the table of ended sessions (bounded by `ended_sessions_max`).
    pub ended_sessions_remembered: u64,
}

impl Counters {
    pub(crate) fn snapshot(&self) -> TurnStats {
        TurnStats {
            requests_total: self.requests_total.load(Relaxed),
            allocations_total: self.allocations_total.load(Relaxed),
            allocation_quota_refusals_total: self.allocation_quota_refusals_total.load(Relaxed),
            client_to_peer_packets_total: self.client_to_peer_packets_total.load(Relaxed),
            client_to_peer_bytes_total: self.client_to_peer_bytes_total.load(Relaxed),
            peer_to_client_packets_total: self.peer_to_client_packets_total.load(Relaxed),
            peer_to_client_bytes_total: self.peer_to_client_bytes_total.load(Relaxed),
            denied_peers_total: self.denied_peers_total.load(Relaxed),
            auth_failures_total: self.auth_failures_total.load(Relaxed),
            unauthenticated_dropped_total: self.unauthenticated_dropped_total.load(Relaxed),
            bandwidth_dropped_total: self.bandwidth_dropped_total.load(Relaxed),
            stream_connections_refused_total: self.stream_connections_refused_total.load(Relaxed),
            sessions_ended_total: self.sessions_ended_total.load(Relaxed),
            allocations_ended_with_session_total: self.allocations_ended_with_session_total.load(Relaxed),
            ended_session_refusals_total: self.ended_session_refusals_total.load(Relaxed),
            ..TurnStats::default()
        }
    }
}

impl TurnStats {
    pub fn relayed_packets_total(&self) -> u64 {
        self.client_to_peer_packets_total + self.peer_to_client_packets_total
    }

    pub fn relayed_bytes_total(&self) -> u64 {
        self.client_to_peer_bytes_total + self.peer_to_client_bytes_total
    }

    /// Prometheus text exposition (0.0.4, by `prometheus-client`), metric names prefixed
    /// `bridgemesh_turn_`.
    pub fn render_prometheus(&self) -> String {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(*self));
        let mut out = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut out, &registry)
            .expect("writing to a String cannot fail");
        out
    }
}

/// One series of a family, with its labels.
type Sample<'a> = (&'a [(&'a str, &'a str)], u64);

fn family(
    encoder: &mut DescriptorEncoder,
    name: &str,
    kind: MetricType,
    help: &str,
    samples: &[Sample],
) -> std::fmt::Result {
    let mut family = encoder.encode_descriptor(name, help, None, kind)?;
    for (labels, value) in samples {
        let series = family.encode_family(labels)?;
        match kind {
            MetricType::Counter => ConstCounter::new(*value).encode(series)?,
            _ => ConstGauge::new(i64::try_from(*value).unwrap_or(i64::MAX)).encode(series)?,
        }
    }
    Ok(())
}

impl Collector for TurnStats {
    fn encode(&self, mut encoder: DescriptorEncoder) -> std::fmt::Result {
        use MetricType::{Counter, Gauge};
        let e = &mut encoder;
        // Counters are named without `_total`: the encoder appends it.
        family(
            e,
            "bridgemesh_turn_requests",
            Counter,
            "STUN requests received.",
            &[(&[], self.requests_total)],
        )?;
        family(
            e,
            "bridgemesh_turn_allocations",
            Gauge,
            "Allocations currently open.",
            &[(&[], self.allocations_active)],
        )?;
        family(
            e,
            "bridgemesh_turn_allocations",
            Counter,
            "Allocations created.",
            &[(&[], self.allocations_total)],
        )?;
        family(
            e,
            "bridgemesh_turn_allocation_quota_refusals",
            Counter,
            "Allocations refused by the per-user or server quota.",
            &[(&[], self.allocation_quota_refusals_total)],
        )?;
        let client_to_peer: &[(&str, &str)] = &[("direction", "client_to_peer")];
        let peer_to_client: &[(&str, &str)] = &[("direction", "peer_to_client")];
        family(
            e,
            "bridgemesh_turn_relayed_packets",
            Counter,
            "Packets relayed.",
            &[
                (client_to_peer, self.client_to_peer_packets_total),
                (peer_to_client, self.peer_to_client_packets_total),
            ],
        )?;
        family(
            e,
            "bridgemesh_turn_relayed_bytes",
            Counter,
            "Payload bytes relayed.",
            &[
                (client_to_peer, self.client_to_peer_bytes_total),
                (peer_to_client, self.peer_to_client_bytes_total),
            ],
        )?;
        family(
            e,
            "bridgemesh_turn_denied_peers",
            Counter,
            "Permissions refused and packets dropped by the peer-address policy.",
            &[(&[], self.denied_peers_total)],
        )?;
        family(
            e,
            "bridgemesh_turn_auth_failures",
            Counter,
            "Requests with bad, expired or malformed credentials.",
            &[(&[], self.auth_failures_total)],
        )?;
        family(
            e,
            "bridgemesh_turn_unauthenticated_dropped",
            Counter,
            "Unauthenticated requests dropped by the per-source rate limit.",
            &[(&[], self.unauthenticated_dropped_total)],
        )?;
        family(
            e,
            "bridgemesh_turn_bandwidth_dropped",
            Counter,
            "Packets dropped by the per-allocation bandwidth cap.",
            &[(&[], self.bandwidth_dropped_total)],
        )?;
        family(
            e,
            "bridgemesh_turn_stream_connections",
            Gauge,
            "TCP and TLS client connections open.",
            &[(&[], self.stream_connections_active)],
        )?;
        family(
            e,
            "bridgemesh_turn_sessions_ended",
            Counter,
            "Participants' sessions ended; their allocations ended and older credentials refused.",
            &[(&[], self.sessions_ended_total)],
        )?;
        family(
            e,
            "bridgemesh_turn_allocations_ended_with_session",
            Counter,
            "Allocations closed because their participant's session ended.",
            &[(&[], self.allocations_ended_with_session_total)],
        )?;
        family(
            e,
            "bridgemesh_turn_ended_session_refusals",
            Counter,
            "Requests refused because their credential was issued before its session ended.",
            &[(&[], self.ended_session_refusals_total)],
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_keeps_every_series_name_and_label() {
        let stats = TurnStats {
            requests_total: 11,
            allocations_active: 2,
            allocations_total: 5,
            allocation_quota_refusals_total: 1,
            client_to_peer_packets_total: 3,
            client_to_peer_bytes_total: 300,
            peer_to_client_packets_total: 4,
            peer_to_client_bytes_total: 400,
            denied_peers_total: 6,
            auth_failures_total: 7,
            unauthenticated_dropped_total: 8,
            bandwidth_dropped_total: 9,
            stream_connections_active: 10,
            sessions_ended_total: 12,
            allocations_ended_with_session_total: 13,
            ended_session_refusals_total: 14,
            ..TurnStats::default()
        };
        let text = stats.render_prometheus();
        for series in [
            "bridgemesh_turn_requests_total 11",
            "bridgemesh_turn_allocations 2",
            "bridgemesh_turn_allocations_total 5",
            "bridgemesh_turn_allocation_quota_refusals_total 1",
            "bridgemesh_turn_relayed_packets_total{direction=\"client_to_peer\"} 3",
            "bridgemesh_turn_relayed_packets_total{direction=\"peer_to_client\"} 4",
            "bridgemesh_turn_relayed_bytes_total{direction=\"client_to_peer\"} 300",
            "bridgemesh_turn_relayed_bytes_total{direction=\"peer_to_client\"} 400",
            "bridgemesh_turn_denied_peers_total 6",
            "bridgemesh_turn_auth_failures_total 7",
            "bridgemesh_turn_unauthenticated_dropped_total 8",
            "bridgemesh_turn_sessions_ended_total 12",
            "bridgemesh_turn_allocations_ended_with_session_total 13",
            "bridgemesh_turn_ended_session_refusals_total 14",
            "bridgemesh_turn_bandwidth_dropped_total 9",
            "bridgemesh_turn_stream_connections 10",
            "# TYPE bridgemesh_turn_allocations gauge",
            "# TYPE bridgemesh_turn_allocations_total counter",
        ] {
            assert!(
                text.lines().any(|line| line == series),
                "no line {series:?} in\n{text}"
            );
        }
    }
}
