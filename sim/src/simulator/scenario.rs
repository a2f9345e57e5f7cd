//! A scenario: the deployment (regions, their bridges, latencies), its users (arrivals, room
//! sizes, where they are) and its faults, read from TOML. Documented in `docs/simulator.md`.

use serde::Deserialize;

/// Most regions, bridges and faults a scenario may hold; past these it is refused.
pub const REGIONS_MAX: usize = 64;
pub const BRIDGES_MAX: usize = 10_000;
pub const FAULTS_MAX: usize = 1_000;
pub const CONTROL_NODES_MAX: usize = 9;
/// Highest loss on a link: past it a TCP connection is as good as cut, which a partition says.
pub const LOSS_PERCENT_MAX: f64 = 50.0;
/// At most this many participants arrive in one run.
pub const PARTICIPANTS_MAX: u64 = 10_000_000;

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    pub name: String,
    /// Simulated time, faults included; a liveness phase without faults follows.
    pub duration_s: u64,
    /// The seed when `--seed` is not given.
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// After the last fault and `duration_s`: time for everything to converge before the
    /// liveness checks.
    #[serde(default = "default_liveness_s")]
    pub liveness_s: u64,
    #[serde(default)]
    pub control: ControlModel,
    pub regions: Vec<Region>,
    #[serde(default)]
    pub latency: Vec<Latency>,
    /// Each message's latency gets up to this much more, uniformly.
    #[serde(default = "default_jitter_ms")]
    pub jitter_ms: u64,
    pub participants: Participants,
    #[serde(default)]
    pub faults: Vec<Fault>,
}

fn default_seed() -> u64 {
    1
}

fn default_liveness_s() -> u64 {
    60
}

fn default_jitter_ms() -> u64 {
    2
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ControlModel {
    /// Where the Raft leader runs at first: its distance to bridges and clients is a region's
    /// latency.
    pub region: Option<String>,
    /// The control nodes' regions, one entry per node (default: three nodes in `region`). Spread
    /// over regions, a partition can cut the leader from the majority: the others elect a new
    /// one after `election_ms`.
    pub nodes: Vec<String>,
    /// From losing the leader (crash or partition) to a new one, when a majority can elect it.
    pub election_ms: u64,
    /// Time from a proposal to its commit (the replicated log's round trips, modeled).
    pub consensus_delay_ms: u64,
    pub heartbeat_interval_ms: u64,
    pub suspect_after_ms: u64,
    pub down_after_ms: u64,
    pub loss_reports_needed: usize,
    /// A new leader's grace for bridges it has not heard from yet (control's
    /// `[regions] leader_grace_ms`).
    pub leader_grace_ms: u64,
}

impl Default for ControlModel {
    fn default() -> Self {
        Self {
            region: None,
            nodes: Vec::new(),
            election_ms: 700,
            consensus_delay_ms: 5,
            heartbeat_interval_ms: 250,
            suspect_after_ms: 1_000,
            down_after_ms: 10_000,
            loss_reports_needed: 2,
            leader_grace_ms: 5_000,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Region {
    pub id: String,
    pub latitude: f64,
    pub longitude: f64,
    /// Share of arriving participants located here (relative to the other regions').
    #[serde(default = "one")]
    pub weight: f64,
    /// Bridges in the region, named `<id>-1`, `<id>-2`, ...
    pub bridges: u32,
    /// Participants each bridge takes.
    pub capacity: u32,
    /// Participants of one room each bridge takes.
    #[serde(default = "default_max_per_room")]
    pub max_per_room: u32,
}

fn one() -> f64 {
    1.0
}

fn default_max_per_room() -> u32 {
    100
}

/// The network between two regions (both directions). Pairs not listed, and `ms` when it is
/// left out, get a one-way latency from the great-circle distance (1 ms per 100 km, plus 2 ms);
/// a region to itself 1 ms.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Latency {
    pub from: String,
    pub to: String,
    /// One-way latency.
    pub ms: Option<u64>,
    /// Share of packets lost on the way, in percent: a control-plane message (TCP) is late by a
    /// retransmission for each loss.
    #[serde(default)]
    pub loss_percent: f64,
    /// What the cascade between the two regions may carry each way, kbit/s; past it the
    /// streams across are impaired.
    pub bandwidth_kbps: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Participants {
    /// Mean arrivals per second (a Poisson process).
    pub arrivals_per_s: f64,
    /// Arrivals in the first `burst_s` seconds of each hour are this many times as frequent.
    #[serde(default = "one")]
    pub burst_factor: f64,
    #[serde(default)]
    pub burst_s: u64,
    /// Mean time a participant stays (exponential).
    pub stay_s_mean: f64,
    pub room_size_min: u32,
    pub room_size_max: u32,
    /// Signaling, ICE, DTLS and the first offer on a bridge, after the answer from control.
    #[serde(default = "default_connect_ms")]
    pub connect_ms: u64,
    /// Each connect takes up to this much longer, uniformly (ICE and DTLS vary).
    #[serde(default = "default_connect_jitter_ms")]
    pub connect_jitter_ms: u64,
    /// How long a client takes to notice its bridge process died (its sockets close).
    #[serde(default = "default_notice_ms")]
    pub notice_ms: u64,
    /// Give up a reconnect after this long.
    #[serde(default = "default_reconnect_budget_ms")]
    pub reconnect_budget_ms: u64,
    /// What each participant publishes, for the cascade bandwidth between bridges.
    #[serde(default = "default_audio_kbps")]
    pub audio_kbps: u32,
    #[serde(default = "default_video_kbps")]
    pub video_kbps: u32,
}

fn default_audio_kbps() -> u32 {
    40
}

fn default_video_kbps() -> u32 {
    500
}

fn default_connect_ms() -> u64 {
    400
}

fn default_connect_jitter_ms() -> u64 {
    200
}

fn default_notice_ms() -> u64 {
    20
}

fn default_reconnect_budget_ms() -> u64 {
    30_000
}

/// One fault on the timeline: `{ at_s = 300, kind = "kill_bridge", bridge = "eu-1" }`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(try_from = "RawFault")]
pub struct Fault {
    pub at_s: u64,
    pub kind: FaultKind,
}

#[derive(Debug, Clone, PartialEq)]
pub enum FaultKind {
    /// The bridge's process dies (its host stays up: clients notice at once).
    KillBridge { bridge: String },
    /// The bridge starts again with the same id.
    RestartBridge { bridge: String },
    /// An operator drains the bridge: its participants move after `grace_s`.
    DrainBridge { bridge: String, grace_s: u64 },
    /// The Raft leader dies: nothing commits until a new leader is elected `election_ms` later
    /// (modeled; measured at about 700 ms on real nodes), whose hub starts from nothing and
    /// hears the bridges register again.
    KillControlLeader { election_ms: u64 },
    /// For `duration_s`, the region is cut from every other, in `direction`: its clients and
    /// bridges reach neither control (when control is elsewhere) nor the other regions' bridges.
    PartitionRegion {
        region: String,
        duration_s: u64,
        direction: CutDirection,
    },
    /// For `duration_s`, the link between two regions (both ways) gets worse: more latency, some
    /// loss, or a bandwidth cap for the cascade across it.
    DegradeLink {
        from: String,
        to: String,
        duration_s: u64,
        extra_latency_ms: u64,
        loss_percent: f64,
        bandwidth_kbps: Option<u64>,
    },
}

/// Which way a partition cuts: everything (`both`), only what leaves the region (`outbound`),
/// or only what enters it (`inbound`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CutDirection {
    Both,
    Outbound,
    Inbound,
}

impl CutDirection {
    pub fn name(self) -> &'static str {
        match self {
            CutDirection::Both => "both",
            CutDirection::Outbound => "outbound",
            CutDirection::Inbound => "inbound",
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFault {
    at_s: u64,
    kind: String,
    bridge: Option<String>,
    grace_s: Option<u64>,
    election_ms: Option<u64>,
    region: Option<String>,
    duration_s: Option<u64>,
    direction: Option<String>,
    from: Option<String>,
    to: Option<String>,
    extra_latency_ms: Option<u64>,
    loss_percent: Option<f64>,
    bandwidth_kbps: Option<u64>,
}

impl RawFault {
    /// The optional fields given, by name, to refuse those the fault kind does not take.
    fn given(&self) -> Vec<&'static str> {
        [
            ("bridge", self.bridge.is_some()),
            ("grace_s", self.grace_s.is_some()),
            ("election_ms", self.election_ms.is_some()),
            ("region", self.region.is_some()),
            ("duration_s", self.duration_s.is_some()),
            ("direction", self.direction.is_some()),
            ("from", self.from.is_some()),
            ("to", self.to.is_some()),
            ("extra_latency_ms", self.extra_latency_ms.is_some()),
            ("loss_percent", self.loss_percent.is_some()),
            ("bandwidth_kbps", self.bandwidth_kbps.is_some()),
        ]
        .into_iter()
        .filter_map(|(name, given)| given.then_some(name))
        .collect()
    }
}

impl TryFrom<RawFault> for Fault {
    type Error = String;

    fn try_from(raw: RawFault) -> Result<Self, String> {
        let takes: &[&str] = match raw.kind.as_str() {
            "kill_bridge" | "restart_bridge" => &["bridge"],
            "drain_bridge" => &["bridge", "grace_s"],
            "kill_control_leader" => &["election_ms"],
            "partition_region" => &["region", "duration_s", "direction"],
            "degrade_link" => &[
                "from",
                "to",
                "duration_s",
                "extra_latency_ms",
                "loss_percent",
                "bandwidth_kbps",
            ],
            other => {
                return Err(format!(
                    "unknown fault kind {other:?}: kill_bridge, restart_bridge, drain_bridge, kill_control_leader, partition_region or degrade_link"
                ));
            }
        };
        if let Some(field) = raw.given().into_iter().find(|field| !takes.contains(field)) {
            return Err(format!(
                "{} takes no {field} (it takes {})",
                raw.kind,
                takes.join(", ")
            ));
        }
        let need =
            |field: Option<String>, name: &str| field.ok_or_else(|| format!("{} needs {name}", raw.kind));
        let duration_s = || {
            raw.duration_s
                .ok_or_else(|| format!("{} needs duration_s", raw.kind))
        };
        let kind = match raw.kind.as_str() {
            "kill_bridge" => FaultKind::KillBridge {
                bridge: need(raw.bridge.clone(), "a bridge")?,
            },
            "restart_bridge" => FaultKind::RestartBridge {
                bridge: need(raw.bridge.clone(), "a bridge")?,
            },
            "drain_bridge" => FaultKind::DrainBridge {
                bridge: need(raw.bridge.clone(), "a bridge")?,
                grace_s: raw.grace_s.unwrap_or(0),
            },
            "kill_control_leader" => FaultKind::KillControlLeader {
                election_ms: raw.election_ms.unwrap_or(700),
            },
            "partition_region" => FaultKind::PartitionRegion {
                region: need(raw.region.clone(), "a region")?,
                duration_s: duration_s()?,
                direction: match raw.direction.as_deref().unwrap_or("both") {
                    "both" => CutDirection::Both,
                    "outbound" => CutDirection::Outbound,
                    "inbound" => CutDirection::Inbound,
                    other => {
                        return Err(format!(
                            "partition direction {other:?}: both, outbound or inbound"
                        ));
                    }
                },
            },
            _ => FaultKind::DegradeLink {
                from: need(raw.from.clone(), "from (a region)")?,
                to: need(raw.to.clone(), "to (a region)")?,
                duration_s: duration_s()?,
                extra_latency_ms: raw.extra_latency_ms.unwrap_or(0),
                loss_percent: raw.loss_percent.unwrap_or(0.0),
                bandwidth_kbps: raw.bandwidth_kbps,
            },
        };
        Ok(Fault { at_s: raw.at_s, kind })
    }
}

impl FaultKind {
    pub fn name(&self) -> &'static str {
        match self {
            FaultKind::KillBridge { .. } => "kill_bridge",
            FaultKind::RestartBridge { .. } => "restart_bridge",
            FaultKind::DrainBridge { .. } => "drain_bridge",
            FaultKind::KillControlLeader { .. } => "kill_control_leader",
            FaultKind::PartitionRegion { .. } => "partition_region",
            FaultKind::DegradeLink { .. } => "degrade_link",
        }
    }

    /// The bridge the fault is about, if any.
    pub fn bridge(&self) -> Option<&str> {
        match self {
            FaultKind::KillBridge { bridge }
            | FaultKind::RestartBridge { bridge }
            | FaultKind::DrainBridge { bridge, .. } => Some(bridge),
            FaultKind::KillControlLeader { .. }
            | FaultKind::PartitionRegion { .. }
            | FaultKind::DegradeLink { .. } => None,
        }
    }

    /// When the fault is over, in ms from the start: a partition or degradation heals, an
    /// election ends, a drain's grace runs out.
    pub fn ends_ms(&self, at_s: u64) -> u64 {
        let at_ms = at_s * 1000;
        match self {
            FaultKind::PartitionRegion { duration_s, .. } | FaultKind::DegradeLink { duration_s, .. } => {
                at_ms + duration_s * 1000
            }
            FaultKind::KillControlLeader { election_ms } => at_ms + election_ms,
            FaultKind::DrainBridge { grace_s, .. } => at_ms + grace_s * 1000,
            FaultKind::KillBridge { .. } | FaultKind::RestartBridge { .. } => at_ms,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ScenarioError {
    #[error("cannot read the scenario: {0}")]
    Toml(String),
    #[error("invalid scenario: {0}")]
    Invalid(String),
}

impl Scenario {
    /// The index of a region the scenario was validated to have.
    pub fn region_index(&self, id: &str) -> usize {
        self.regions
            .iter()
            .position(|r| r.id == id)
            .unwrap_or_else(|| panic!("region {id} was validated to exist"))
    }

    pub fn from_toml(text: &str) -> Result<Self, ScenarioError> {
        let scenario: Scenario = toml::from_str(text).map_err(|e| ScenarioError::Toml(e.to_string()))?;
        scenario.validate()?;
        Ok(scenario)
    }

    pub fn validate(&self) -> Result<(), ScenarioError> {
        let invalid = |m: String| Err(ScenarioError::Invalid(m));
        if self.regions.is_empty() || self.regions.len() > REGIONS_MAX {
            return invalid(format!("between 1 and {REGIONS_MAX} regions"));
        }
        if self.duration_s == 0 || self.duration_s > 7 * 24 * 3600 {
            return invalid("duration_s between 1 and a week".into());
        }
        let bridges: u64 = self.regions.iter().map(|r| u64::from(r.bridges)).sum();
        if bridges == 0 || bridges > BRIDGES_MAX as u64 {
            return invalid(format!("between 1 and {BRIDGES_MAX} bridges"));
        }
        for region in &self.regions {
            if bridgemesh_proto::RegionId::new(&region.id).is_err() {
                return invalid(format!("region id {:?} is not a valid id", region.id));
            }
            if !(-90.0..=90.0).contains(&region.latitude) || !(-180.0..=180.0).contains(&region.longitude) {
                return invalid(format!("region {}: latitude ±90, longitude ±180", region.id));
            }
            if !(region.weight >= 0.0 && region.weight.is_finite()) {
                return invalid(format!("region {}: weight must be 0 or more", region.id));
            }
            if region.bridges > 0 && (region.capacity == 0 || region.max_per_room == 0) {
                return invalid(format!(
                    "region {}: capacity and max_per_room must be positive",
                    region.id
                ));
            }
        }
        if self.regions.iter().map(|r| r.weight).sum::<f64>() <= 0.0 {
            return invalid("some region must have a positive weight".into());
        }
        let known = |id: &str| self.regions.iter().any(|r| r.id == id);
        for latency in &self.latency {
            if !known(&latency.from) || !known(&latency.to) {
                return invalid(format!("latency {}→{}: unknown region", latency.from, latency.to));
            }
            if !(0.0..=LOSS_PERCENT_MAX).contains(&latency.loss_percent) || latency.bandwidth_kbps == Some(0)
            {
                return invalid(format!(
                    "latency {}→{}: loss_percent between 0 and {LOSS_PERCENT_MAX}, bandwidth_kbps positive",
                    latency.from, latency.to
                ));
            }
        }
        if let Some(region) = &self.control.region
            && !known(region)
        {
            return invalid(format!("control region {region} is unknown"));
        }
        if self.control.nodes.len() > CONTROL_NODES_MAX {
            return invalid(format!("at most {CONTROL_NODES_MAX} control nodes"));
        }
        if let Some(node) = self.control.nodes.iter().find(|n| !known(n)) {
            return invalid(format!("control node in unknown region {node}"));
        }
        if let Some(region) = &self.control.region
            && !self.control.nodes.is_empty()
            && !self.control.nodes.contains(region)
        {
            return invalid(format!("no control node in the control region {region}"));
        }
        if !(1..=60_000).contains(&self.control.election_ms) {
            return invalid("control election_ms between 1 and 60000".into());
        }
        let p = &self.participants;
        if !(p.arrivals_per_s > 0.0 && p.arrivals_per_s.is_finite()) {
            return invalid("arrivals_per_s must be positive".into());
        }
        if (self.duration_s as f64) * p.arrivals_per_s * p.burst_factor.max(1.0) > PARTICIPANTS_MAX as f64 {
            return invalid(format!("at most {PARTICIPANTS_MAX} participants per run"));
        }
        if !(p.burst_factor >= 1.0 && p.burst_factor.is_finite()) || p.burst_s > 3600 {
            return invalid("burst_factor at least 1, burst_s at most 3600".into());
        }
        if !(p.stay_s_mean > 0.0 && p.stay_s_mean.is_finite()) {
            return invalid("stay_s_mean must be positive".into());
        }
        if p.room_size_min == 0 || p.room_size_min > p.room_size_max {
            return invalid("1 ≤ room_size_min ≤ room_size_max".into());
        }
        let c = &self.control;
        if c.heartbeat_interval_ms == 0 || c.suspect_after_ms <= c.heartbeat_interval_ms {
            return invalid("heartbeat_interval_ms positive and below suspect_after_ms".into());
        }
        if c.leader_grace_ms < c.suspect_after_ms || c.leader_grace_ms > c.down_after_ms {
            return invalid("leader_grace_ms between suspect_after_ms and down_after_ms".into());
        }
        if self.faults.len() > FAULTS_MAX {
            return invalid(format!("at most {FAULTS_MAX} faults"));
        }
        for fault in &self.faults {
            if fault.at_s > self.duration_s {
                return invalid(format!("a fault at {} s, after the end", fault.at_s));
            }
            if let FaultKind::KillControlLeader { election_ms } = fault.kind
                && !(1..=60_000).contains(&election_ms)
            {
                return invalid("election_ms between 1 and 60000".into());
            }
            if let FaultKind::PartitionRegion {
                region, duration_s, ..
            } = &fault.kind
                && (!known(region) || *duration_s == 0)
            {
                return invalid(format!(
                    "partition of region {region}: a known region and a positive duration_s"
                ));
            }
            if let FaultKind::DegradeLink {
                from,
                to,
                duration_s,
                loss_percent,
                bandwidth_kbps,
                ..
            } = &fault.kind
                && (!known(from)
                    || !known(to)
                    || from == to
                    || *duration_s == 0
                    || !(0.0..=LOSS_PERCENT_MAX).contains(loss_percent)
                    || *bandwidth_kbps == Some(0))
            {
                return invalid(format!(
                    "degrade_link {from}→{to}: two known regions, a positive duration_s, loss_percent between 0 and {LOSS_PERCENT_MAX}, bandwidth_kbps positive"
                ));
            }
            let Some(bridge) = fault.kind.bridge() else {
                continue;
            };
            let exists = self.regions.iter().any(|r| {
                bridge
                    .strip_prefix(&format!("{}-", r.id))
                    .and_then(|n| n.parse::<u32>().ok())
                    .is_some_and(|n| (1..=r.bridges).contains(&n))
            });
            if !exists {
                return invalid(format!("fault on unknown bridge {bridge}"));
            }
        }
        Ok(())
    }

    /// Scales arrivals and bridge counts by `factor` (at least one bridge per region that had
    /// any): the shipped scenarios run in CI at a fraction of their size.
    pub fn scaled(mut self, factor: f64) -> Self {
        self.participants.arrivals_per_s *= factor;
        for region in &mut self.regions {
            if region.bridges > 0 {
                region.bridges = ((f64::from(region.bridges) * factor).round() as u32).max(1);
            }
        }
        // Faults on bridges that no longer exist move to the last one left in their region.
        for fault in &mut self.faults {
            let Some(bridge) = fault.kind.bridge().map(str::to_owned) else {
                continue;
            };
            if let Some(region) = self
                .regions
                .iter()
                .find(|r| bridge.starts_with(&format!("{}-", r.id)))
            {
                let n: u32 = bridge[region.id.len() + 1..].parse().unwrap_or(1);
                let renamed = format!("{}-{}", region.id, n.min(region.bridges).max(1));
                match &mut fault.kind {
                    FaultKind::KillBridge { bridge }
                    | FaultKind::RestartBridge { bridge }
                    | FaultKind::DrainBridge { bridge, .. } => *bridge = renamed,
                    FaultKind::KillControlLeader { .. }
                    | FaultKind::PartitionRegion { .. }
                    | FaultKind::DegradeLink { .. } => {}
                }
            }
        }
        self
    }
}
