//! Counters the server keeps and their Prometheus rendering. Atomics, because the relay path
//! updates them per packet from several tasks.

use std::fmt::Write as _;
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

    /// Prometheus text exposition, metric names prefixed `bridgemesh_turn_`.
    pub fn render_prometheus(&self) -> String {
        let mut out = String::new();
        let mut metric = |name: &str, kind: &str, help: &str, samples: &[(&str, u64)]| {
            let _ = writeln!(out, "# HELP bridgemesh_turn_{name} {help}");
            let _ = writeln!(out, "# TYPE bridgemesh_turn_{name} {kind}");
            for (labels, value) in samples {
                let _ = writeln!(out, "bridgemesh_turn_{name}{labels} {value}");
            }
        };
        metric(
            "requests_total",
            "counter",
            "STUN requests received.",
            &[("", self.requests_total)],
        );
        metric(
            "allocations",
            "gauge",
            "Allocations currently open.",
            &[("", self.allocations_active)],
        );
        metric(
            "allocations_total",
            "counter",
            "Allocations created.",
            &[("", self.allocations_total)],
        );
        metric(
            "allocation_quota_refusals_total",
            "counter",
            "Allocations refused by the per-user or server quota.",
            &[("", self.allocation_quota_refusals_total)],
        );
        metric(
            "relayed_packets_total",
            "counter",
            "Packets relayed.",
            &[
                (
                    "{direction=\"client_to_peer\"}",
                    self.client_to_peer_packets_total,
                ),
                (
                    "{direction=\"peer_to_client\"}",
                    self.peer_to_client_packets_total,
                ),
            ],
        );
        metric(
            "relayed_bytes_total",
            "counter",
            "Payload bytes relayed.",
            &[
                ("{direction=\"client_to_peer\"}", self.client_to_peer_bytes_total),
                ("{direction=\"peer_to_client\"}", self.peer_to_client_bytes_total),
            ],
        );
        metric(
            "denied_peers_total",
            "counter",
            "Permissions refused and packets dropped by the peer-address policy.",
            &[("", self.denied_peers_total)],
        );
        metric(
            "auth_failures_total",
            "counter",
            "Requests with bad, expired or malformed credentials.",
            &[("", self.auth_failures_total)],
        );
        metric(
            "unauthenticated_dropped_total",
            "counter",
            "Unauthenticated requests dropped by the per-source rate limit.",
            &[("", self.unauthenticated_dropped_total)],
        );
        metric(
            "bandwidth_dropped_total",
            "counter",
            "Packets dropped by the per-allocation bandwidth cap.",
            &[("", self.bandwidth_dropped_total)],
        );
        metric(
            "stream_connections",
            "gauge",
            "TCP and TLS client connections open.",
            &[("", self.stream_connections_active)],
        );
        out
    }
}
