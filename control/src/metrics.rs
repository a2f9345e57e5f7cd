//! Control's Prometheus metrics (`GET /metrics`), through `prometheus-client`.
//!
//! Two kinds: what happened at this node's API (joins and reconnects by outcome, how long they
//! took), counted by the HTTP layer as requests finish; and what the replicated state says now
//! (rooms, participants, bridges by status and load, Raft), read under the state lock at each
//! scrape by [`StateCollector`], so a scrape copies nothing out of the state.
//!
//! The exposition is the Prometheus text format 0.0.4, which every Prometheus-compatible scraper
//! reads. Counters are named with their `_total` suffix by the crate.

use crate::node::{ApiError, ControlNode, JoinAnswer};
use crate::raft::cluster::RaftRole;
use crate::state::ControlState;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::sync::Arc;
use std::time::Duration;

/// `Content-Type` of [`ControlMetrics::render`].
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// Which API call a [`RequestOutcome`] counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JoinKind {
    /// `POST /api/v1/rooms/{room}/join`.
    Join,
    /// `POST .../participants/{id}/reconnect`: a participant whose bridge was lost or drained.
    Reconnect,
}

/// The labels of a finished join or reconnect: `outcome` is `joined`, `lobby` or the error code.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RequestOutcome {
    outcome: &'static str,
}

impl RequestOutcome {
    fn of(answer: &Result<JoinAnswer, ApiError>) -> Self {
        let outcome = match answer {
            Ok(JoinAnswer::Joined(_)) => "joined",
            Ok(JoinAnswer::Lobby(_)) => "lobby",
            Err(err) => err.code.as_str(),
        };
        Self { outcome }
    }
}

/// Every metric of one control node; the HTTP layer holds one and renders it at each scrape.
pub struct ControlMetrics {
    registry: Registry,
    joins: Family<RequestOutcome, Counter>,
    reconnects: Family<RequestOutcome, Counter>,
    join_duration: Histogram,
    reconnect_duration: Histogram,
    host_logins: Family<RequestOutcome, Counter>,
}

/// Buckets of the join and reconnect durations: 1 ms doubling to about 4 s.
fn duration_buckets() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 13))
}

impl ControlMetrics {
    pub fn new(node: Arc<ControlNode>) -> Self {
        let mut registry = Registry::default();
        let joins = Family::<RequestOutcome, Counter>::default();
        let reconnects = Family::<RequestOutcome, Counter>::default();
        let join_duration = duration_buckets();
        let reconnect_duration = duration_buckets();
        registry.register(
            "bridgemesh_control_joins",
            "Joins answered by this node, by outcome (joined, lobby, or the error code).",
            joins.clone(),
        );
        registry.register(
            "bridgemesh_control_join_duration_seconds",
            "Time from a join request's arrival to its answer (placement and the Raft commit included).",
            join_duration.clone(),
        );
        registry.register(
            "bridgemesh_control_reconnects",
            "Reconnects answered by this node (participants whose bridge was lost or drained), by outcome.",
            reconnects.clone(),
        );
        registry.register(
            "bridgemesh_control_reconnect_duration_seconds",
            "Time from a reconnect request's arrival to its answer.",
            reconnect_duration.clone(),
        );
        let host_logins = Family::<RequestOutcome, Counter>::default();
        registry.register(
            "bridgemesh_control_host_logins",
            "Host logins answered by this node, by outcome (ok, or the error code: login_failed, login_locked, ...).",
            host_logins.clone(),
        );
        registry.register_collector(Box::new(StateCollector { node }));
        Self {
            registry,
            joins,
            reconnects,
            join_duration,
            reconnect_duration,
            host_logins,
        }
    }

    /// Counts a finished host login (docs/hosts.md): `Ok` or the error's code.
    pub fn observe_login(&self, outcome: Result<(), bridgemesh_proto::api::ErrorCode>) {
        let outcome = match outcome {
            Ok(()) => "ok",
            Err(code) => code.as_str(),
        };
        self.host_logins.get_or_create(&RequestOutcome { outcome }).inc();
    }

    /// Counts a finished join or reconnect.
    pub fn observe(&self, kind: JoinKind, answer: &Result<JoinAnswer, ApiError>, elapsed: Duration) {
        let (counters, durations) = match kind {
            JoinKind::Join => (&self.joins, &self.join_duration),
            JoinKind::Reconnect => (&self.reconnects, &self.reconnect_duration),
        };
        counters.get_or_create(&RequestOutcome::of(answer)).inc();
        durations.observe(elapsed.as_secs_f64());
    }

    /// The Prometheus text of every metric, the state's read now.
    pub fn render(&self) -> String {
        let mut text = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut text, &self.registry)
            .expect("writing to a String cannot fail");
        text
    }
}

/// The replicated state's figures and this node's Raft role, read at each scrape.
struct StateCollector {
    node: Arc<ControlNode>,
}

impl std::fmt::Debug for StateCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StateCollector")
    }
}

/// One gauge without labels; counts are written as integers.
fn gauge(encoder: &mut DescriptorEncoder, name: &str, help: &str, value: u64) -> std::fmt::Result {
    let metric = ConstGauge::new(i64::try_from(value).unwrap_or(i64::MAX));
    metric.encode(encoder.encode_descriptor(name, help, None, metric.metric_type())?)
}

impl Collector for StateCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> std::fmt::Result {
        self.node.read(|state| encode_state(state, &mut encoder))?;
        let health = self.node.cluster().health();
        gauge(
            &mut encoder,
            "bridgemesh_control_raft_leader",
            "1 on the node that leads the control cluster.",
            u64::from(health.role == RaftRole::Leader),
        )?;
        gauge(
            &mut encoder,
            "bridgemesh_control_raft_term",
            "The Raft term this node is in.",
            health.term,
        )?;
        gauge(
            &mut encoder,
            "bridgemesh_control_raft_applied_index",
            "The last Raft log index this node applied.",
            health.last_applied_index.unwrap_or(0),
        )?;
        gauge(
            &mut encoder,
            "bridgemesh_control_raft_lagging",
            "1 when this node knows no leader or is far behind it (its /health answers 503).",
            u64::from(health.lagging),
        )
    }
}

fn encode_state(state: &ControlState, encoder: &mut DescriptorEncoder) -> std::fmt::Result {
    gauge(
        encoder,
        "bridgemesh_control_rooms",
        "Rooms with participants.",
        state.rooms.len() as u64,
    )?;
    gauge(
        encoder,
        "bridgemesh_control_participants",
        "Participants placed.",
        state.participant_count() as u64,
    )?;

    let mut family = encoder.encode_descriptor(
        "bridgemesh_control_bridge_participants",
        "Participants assigned per bridge.",
        None,
        MetricType::Gauge,
    )?;
    for (bridge, load) in &state.bridge_load {
        let labels = [("bridge", bridge.as_str())];
        ConstGauge::new(i64::from(*load)).encode(family.encode_family(&labels)?)?;
    }

    let mut family = encoder.encode_descriptor(
        "bridgemesh_control_bridge_status",
        "1 for each bridge's current status (up, unreachable, draining, down).",
        None,
        MetricType::Gauge,
    )?;
    for bridge in state.bridges.values() {
        let labels = [
            ("bridge", bridge.id.as_str()),
            ("region", bridge.region.as_str()),
            ("status", bridge.status.as_str()),
        ];
        ConstGauge::new(1i64).encode(family.encode_family(&labels)?)?;
    }

    let mut family = encoder.encode_descriptor(
        "bridgemesh_control_bridge_stress",
        "Reported stress plus the burst correction, as placement sees it.",
        None,
        MetricType::Gauge,
    )?;
    for bridge in state.bridges.values() {
        let stress = crate::placement::effective_stress(bridge, &state.placement);
        let labels = [("bridge", bridge.id.as_str())];
        ConstGauge::new(stress).encode(family.encode_family(&labels)?)?;
    }
    Ok(())
}
