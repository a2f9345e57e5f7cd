//! `bridgemesh control`: one node of a replicated control cluster, configured by a TOML file with
//! command-line overrides.
//!
//! ```toml
//! node_id = 1
//! listen = "0.0.0.0:7700"            # public: API, web client, /health, /metrics
//! cluster_listen = "0.0.0.0:7701"    # mutual TLS: Raft peers and bridge sessions (default: port 7701)
//! advertise = "10.0.0.1:7701"        # how the other control nodes and bridges reach cluster_listen
//! cert_dir = "/etc/bridgemesh/control-1"  # `bridgemesh ca issue-control --node-id 1` writes it
//! data_dir = "/var/lib/bridgemesh/control"
//! cluster_secret_file = "/etc/bridgemesh/cluster-secret"
//! admin_token_file = "/etc/bridgemesh/admin-token"
//! metrics_token_file = "/etc/bridgemesh/metrics-token"  # optional: /metrics then needs it
//!
//! [peers]                            # the voters a new cluster starts with (cluster addresses)
//! 1 = "10.0.0.1:7701"
//! 2 = "10.0.0.2:7701"
//! 3 = "10.0.0.3:7701"
//!
//! [raft]                             # across regions: heartbeat a few round trips, election several more
//! heartbeat_interval_ms = 100
//! election_timeout_min_ms = 400
//! election_timeout_max_ms = 800
//!
//! [auth]                             # see docs/auth.md
//! accepted_issuers = ["my-app"]
//! accepted_audiences = ["jitsi"]
//! hs256_secret = "…"
//!
//! [rooms]
//! room_grace_ms = 60000
//!
//! [regions]                          # placement and bridge failure detection (docs/regions.md)
//! geoip_db = "/var/lib/bridgemesh/GeoLite2-City.mmdb"
//! trusted_proxies = ["10.0.0.0/8"]   # whose X-Forwarded-For / Forwarded headers are believed
//! default_region = "eu-central"
//! countries = { BR = "us-east" }     # ISO country → region, over coordinates
//!
//! [limits]                           # join budgets (docs/abuse.md); these are the defaults
//! join_burst = 20                    # per client address: at once, then
//! join_per_second = 5
//! room_join_burst = 100              # per room, from anyone, per control node
//! room_join_per_second = 20
//! join_ipv6_prefix_len = 64          # an IPv6 client's budget covers its whole /64
//!
//! [turn]                             # TURN servers join responses name (see docs/turn.md)
//! secret_file = "/etc/bridgemesh/turn-secret"
//! servers = [{ bridge = "eu-1", urls = ["turn:turn-eu.example.org:3478?transport=udp"] }]
//! ```

use anyhow::Context as _;
use bridgemesh_control::auth::{AdminAuth, AuthConfig, Secret};
use bridgemesh_control::bridge_hub::HubConfig;
use bridgemesh_control::client_ip::TrustedProxies;
use bridgemesh_control::geo::GeoIp;
use bridgemesh_control::http::{ApiConfig, MetricsToken};
use bridgemesh_control::locator::Locator;
use bridgemesh_control::node::{RegionsConfig, RoomPolicy};
use bridgemesh_control::placement::PlacementPolicy;
use bridgemesh_control::raft::NodeId;
use bridgemesh_control::raft::cluster::ClusterConfig;
use bridgemesh_control::rate_limit::{JoinLimits, RateLimit};
use bridgemesh_control::service::{ControlService, ControlServiceConfig};
use bridgemesh_pki::{ClusterIdentity, ClusterName};
use bridgemesh_proto::RegionId;
use bridgemesh_turn::{TurnDirectory, TurnEndpoint};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Shortest cluster secret accepted: every bridge's key derives from it.
const CLUSTER_SECRET_MIN_BYTES: usize = 32;
/// The cluster listener's port when `cluster_listen` is not given.
pub const CLUSTER_PORT_DEFAULT: u16 = 7701;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControlFile {
    pub node_id: Option<NodeId>,
    pub listen: Option<SocketAddr>,
    pub cluster_listen: Option<SocketAddr>,
    pub advertise: Option<String>,
    pub cert_dir: Option<PathBuf>,
    pub data_dir: Option<PathBuf>,
    pub cluster_secret_file: Option<PathBuf>,
    pub admin_token_file: Option<PathBuf>,
    pub metrics_token_file: Option<PathBuf>,
    #[serde(default)]
    pub peers: BTreeMap<NodeId, String>,
    #[serde(default)]
    pub raft: RaftTiming,
    #[serde(default)]
    pub auth: AuthConfig,
    #[serde(default)]
    pub rooms: RoomsSection,
    /// TURN servers join responses name, with fresh REST credentials.
    pub turn: Option<TurnSection>,
    #[serde(default)]
    pub regions: RegionsSection,
    #[serde(default)]
    pub limits: LimitsSection,
}

/// `[limits]`: the join endpoint's budgets (docs/abuse.md); each key left out keeps its default.
/// The same as `bridgemesh up` flags.
#[derive(Debug, Clone, Default, Deserialize, clap::Args)]
#[serde(deny_unknown_fields)]
pub struct LimitsSection {
    /// Joins one client address may make at once (default 20)...
    #[arg(long)]
    pub join_burst: Option<f64>,
    /// ...then per second (default 5).
    #[arg(long)]
    pub join_per_second: Option<f64>,
    /// Joins into one room, from anyone, at once (default 100)...
    #[arg(long)]
    pub room_join_burst: Option<f64>,
    /// ...then per second (default 20), per control node.
    #[arg(long)]
    pub room_join_per_second: Option<f64>,
    /// IPv6 prefix length one address budget covers (default 64).
    #[arg(long)]
    pub join_ipv6_prefix_len: Option<u8>,
}

impl LimitsSection {
    /// The budgets, checked; an error names them as `what` (the file's section or the flags).
    pub fn into_limits(self, what: &str) -> anyhow::Result<JoinLimits> {
        let defaults = JoinLimits::default();
        let limits = JoinLimits {
            per_address: RateLimit {
                burst: self.join_burst.unwrap_or(defaults.per_address.burst),
                per_second: self.join_per_second.unwrap_or(defaults.per_address.per_second),
                ..defaults.per_address
            },
            per_room: RateLimit {
                burst: self.room_join_burst.unwrap_or(defaults.per_room.burst),
                per_second: self.room_join_per_second.unwrap_or(defaults.per_room.per_second),
                ..defaults.per_room
            },
            ipv6_prefix_len: self.join_ipv6_prefix_len.unwrap_or(defaults.ipv6_prefix_len),
        };
        limits
            .validate()
            .map_err(|err| anyhow::anyhow!("{what}: {err}"))?;
        Ok(limits)
    }
}

/// `[regions]`: geolocation, placement and bridge failure detection.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegionsSection {
    /// A MaxMind City or Country database (`bridgemesh geoip test-db` writes a test one).
    pub geoip_db: Option<PathBuf>,
    #[serde(default)]
    pub trusted_proxies: Vec<String>,
    pub default_region: Option<String>,
    /// ISO country code → region.
    #[serde(default)]
    pub countries: BTreeMap<String, String>,
    /// Continent code → region.
    #[serde(default)]
    pub continents: BTreeMap<String, String>,
    pub overload_stress: Option<f64>,
    pub stress_per_join: Option<f64>,
    pub heartbeat_interval_ms: Option<u64>,
    pub suspect_after_ms: Option<u64>,
    pub down_after_ms: Option<u64>,
    pub loss_reports_needed: Option<usize>,
    pub leader_grace_ms: Option<u64>,
}

impl RegionsSection {
    fn into_config(self) -> anyhow::Result<RegionsConfig> {
        let region = |name: String| RegionId::new(name).map_err(|err| anyhow::anyhow!("[regions]: {err}"));
        let geoip = match &self.geoip_db {
            Some(path) => Some(Arc::new(
                GeoIp::open(path).map_err(|err| anyhow::anyhow!("[regions] geoip_db: {err}"))?,
            )),
            None => None,
        };
        let trusted_proxies = TrustedProxies::parse(self.trusted_proxies.iter().map(String::as_str))
            .map_err(|err| anyhow::anyhow!("[regions] trusted_proxies: {err}"))?;
        let map = |table: BTreeMap<String, String>| -> anyhow::Result<BTreeMap<String, RegionId>> {
            table
                .into_iter()
                .map(|(code, name)| Ok((code.to_ascii_uppercase(), region(name)?)))
                .collect()
        };
        let placement_defaults = PlacementPolicy::default();
        let hub_defaults = HubConfig::default();
        let hub = HubConfig {
            heartbeat_interval_ms: self
                .heartbeat_interval_ms
                .unwrap_or(hub_defaults.heartbeat_interval_ms),
            detector: bridgemesh_control::failure_detector::FailureDetectorConfig {
                suspect_after_ms: self
                    .suspect_after_ms
                    .unwrap_or(hub_defaults.detector.suspect_after_ms),
                down_after_ms: self.down_after_ms.unwrap_or(hub_defaults.detector.down_after_ms),
                loss_reports_needed: self
                    .loss_reports_needed
                    .unwrap_or(hub_defaults.detector.loss_reports_needed),
                leader_grace_ms: self
                    .leader_grace_ms
                    .unwrap_or(hub_defaults.detector.leader_grace_ms),
                ..hub_defaults.detector
            },
            placement: PlacementPolicy {
                default_region: self.default_region.map(region).transpose()?,
                overload_stress: self.overload_stress.unwrap_or(placement_defaults.overload_stress),
                stress_per_join: self.stress_per_join.unwrap_or(placement_defaults.stress_per_join),
            },
        };
        hub.validate()
            .map_err(|err| anyhow::anyhow!("[regions]: {err}"))?;
        Ok(RegionsConfig {
            locator: Locator {
                geoip,
                trusted_proxies,
                country_regions: map(self.countries)?,
                continent_regions: map(self.continents)?,
            },
            hub,
        })
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TurnSection {
    /// The REST secret the TURN servers were started with (`bridgemesh turn --secret-file`).
    pub secret_file: PathBuf,
    #[serde(default = "default_credential_ttl_s")]
    pub credential_ttl_s: u64,
    pub servers: Vec<TurnServerEntry>,
}

fn default_credential_ttl_s() -> u64 {
    bridgemesh_turn::TurnConfig::default().credential_ttl_s
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TurnServerEntry {
    /// The bridge this TURN server runs beside: its participants get it first.
    pub bridge: Option<String>,
    pub urls: Vec<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RaftTiming {
    pub heartbeat_interval_ms: Option<u64>,
    pub election_timeout_min_ms: Option<u64>,
    pub election_timeout_max_ms: Option<u64>,
    pub snapshot_every_entries: Option<u64>,
    pub logs_kept_after_snapshot: Option<u64>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoomsSection {
    pub room_grace_ms: Option<u64>,
    pub first_participant_moderates: Option<bool>,
}

/// Command-line values; each one set overrides the file.
#[derive(Debug, Clone, Default)]
pub struct ControlOverrides {
    pub node_id: Option<NodeId>,
    pub listen: Option<SocketAddr>,
    pub cluster_listen: Option<SocketAddr>,
    pub advertise: Option<String>,
    pub cert_dir: Option<PathBuf>,
    pub data_dir: Option<PathBuf>,
    pub cluster_secret_file: Option<PathBuf>,
    pub admin_token_file: Option<PathBuf>,
    pub metrics_token_file: Option<PathBuf>,
    pub peers: Vec<(NodeId, String)>,
}

/// `1=10.0.0.1:7700` → `(1, "10.0.0.1:7700")`.
pub fn parse_peer(text: &str) -> Result<(NodeId, String), String> {
    let (id, addr) = text
        .split_once('=')
        .ok_or_else(|| format!("{text:?} is not ID=HOST:PORT"))?;
    let id: NodeId = id
        .trim()
        .parse()
        .map_err(|_| format!("{id:?} is not a node id (a positive integer)"))?;
    if addr.trim().is_empty() {
        return Err(format!("peer {id} has no address"));
    }
    Ok((id, addr.trim().to_owned()))
}

fn read_secret(path: &Path, what: &str) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the {what} from {}", path.display()))?;
    Ok(text.trim_end_matches(['\n', '\r']).to_owned())
}

/// Everything `bridgemesh control` needs, checked, ready to start.
pub struct ControlPlan {
    pub listen: SocketAddr,
    pub cluster_listen: SocketAddr,
    pub service: ControlServiceConfig,
    pub turn: Option<TurnDirectory>,
}

fn turn_directory(section: TurnSection) -> anyhow::Result<TurnDirectory> {
    let secret = read_secret(&section.secret_file, "TURN secret")?;
    if section.servers.is_empty() {
        anyhow::bail!("[turn] names no servers");
    }
    if let Some(entry) = section.servers.iter().find(|e| e.urls.is_empty()) {
        anyhow::bail!("[turn] server {:?} has no urls", entry.bridge);
    }
    Ok(TurnDirectory {
        secret: secret.into_bytes(),
        credential_ttl_s: section.credential_ttl_s,
        endpoints: section
            .servers
            .into_iter()
            .map(|e| TurnEndpoint {
                bridge: e.bridge,
                urls: e.urls,
            })
            .collect(),
    })
}

pub fn plan(file: ControlFile, overrides: ControlOverrides) -> anyhow::Result<ControlPlan> {
    let node_id = overrides
        .node_id
        .or(file.node_id)
        .context("the node id is missing: node_id in the file or --id")?;
    let listen = overrides
        .listen
        .or(file.listen)
        .context("the listen address is missing: listen in the file or --listen")?;
    let cluster_listen = overrides
        .cluster_listen
        .or(file.cluster_listen)
        .unwrap_or_else(|| SocketAddr::new(listen.ip(), CLUSTER_PORT_DEFAULT));
    if cluster_listen == listen {
        anyhow::bail!(
            "listen and cluster_listen are both {listen}: the public API and the cluster listener need ports of their own"
        );
    }
    let advertise = overrides
        .advertise
        .or(file.advertise)
        .unwrap_or_else(|| cluster_listen.to_string());
    if cluster_listen.ip().is_unspecified() && advertise == cluster_listen.to_string() {
        anyhow::bail!(
            "listening on {cluster_listen} needs an advertise address the other nodes and bridges can reach (--advertise)"
        );
    }
    let cert_dir = overrides
        .cert_dir
        .or(file.cert_dir)
        .context("the node's cluster certificate is missing: cert_dir in the file or --cert-dir (`bridgemesh ca issue-control --node-id ID --out-dir DIR` writes it)")?;
    let identity = ClusterIdentity::load_control(&cert_dir)
        .with_context(|| format!("cannot load the control certificate from {}", cert_dir.display()))?;
    if identity.name() != &ClusterName::Control(node_id) {
        anyhow::bail!(
            "the certificate in {} names {}, but this is control node {node_id}; issue one with `bridgemesh ca issue-control --node-id {node_id}`",
            cert_dir.display(),
            identity.name()
        );
    }
    let metrics_token = match overrides.metrics_token_file.or(file.metrics_token_file) {
        Some(path) => Some(Arc::new(
            MetricsToken::new(read_secret(&path, "metrics token")?)
                .map_err(|err| anyhow::anyhow!("{}: {err}", path.display()))?,
        )),
        None => None,
    };
    let data_dir = overrides
        .data_dir
        .or(file.data_dir)
        .context("the data directory is missing: data_dir in the file or --data-dir")?;
    let secret_path = overrides
        .cluster_secret_file
        .or(file.cluster_secret_file)
        .context("the cluster secret is missing: cluster_secret_file in the file or --cluster-secret-file")?;
    let cluster_secret = read_secret(&secret_path, "cluster secret")?;
    if cluster_secret.len() < CLUSTER_SECRET_MIN_BYTES {
        anyhow::bail!(
            "the cluster secret in {} has {} bytes; use at least {CLUSTER_SECRET_MIN_BYTES} (e.g. `openssl rand -hex 32`)",
            secret_path.display(),
            cluster_secret.len()
        );
    }
    let admin = match overrides.admin_token_file.or(file.admin_token_file) {
        Some(path) => Some(Arc::new(
            AdminAuth::new(Secret::new(read_secret(&path, "admin token")?))
                .map_err(|err| anyhow::anyhow!("admin token in {}: {err}", path.display()))?,
        )),
        None => None,
    };
    let mut peers = file.peers;
    peers.extend(overrides.peers);
    let defaults = ClusterConfig::default();
    let cluster = ClusterConfig {
        node_id,
        advertise_addr: advertise,
        data_dir,
        initial_members: peers,
        heartbeat_interval_ms: file
            .raft
            .heartbeat_interval_ms
            .unwrap_or(defaults.heartbeat_interval_ms),
        election_timeout_min_ms: file
            .raft
            .election_timeout_min_ms
            .unwrap_or(defaults.election_timeout_min_ms),
        election_timeout_max_ms: file
            .raft
            .election_timeout_max_ms
            .unwrap_or(defaults.election_timeout_max_ms),
        snapshot_every_entries: file
            .raft
            .snapshot_every_entries
            .unwrap_or(defaults.snapshot_every_entries),
        logs_kept_after_snapshot: file
            .raft
            .logs_kept_after_snapshot
            .unwrap_or(defaults.logs_kept_after_snapshot),
        ..defaults
    };
    cluster.validate()?;
    file.auth
        .validate()
        .map_err(|err| anyhow::anyhow!("[auth]: {err}"))?;
    let room_defaults = RoomPolicy::default();
    let policy = RoomPolicy {
        room_grace_ms: file.rooms.room_grace_ms.unwrap_or(room_defaults.room_grace_ms),
        first_participant_moderates: file
            .rooms
            .first_participant_moderates
            .unwrap_or(room_defaults.first_participant_moderates),
        ..room_defaults
    };
    let turn = file.turn.map(turn_directory).transpose()?;
    let regions = file.regions.into_config()?;
    let join_limits = file.limits.into_limits("[limits]")?;
    Ok(ControlPlan {
        listen,
        cluster_listen,
        turn,
        service: ControlServiceConfig {
            cluster,
            cluster_secret: cluster_secret.into_bytes(),
            identity,
            api: ApiConfig { admin, metrics_token },
            auth: file.auth,
            policy,
            join_limits,
            regions,
        },
    })
}

pub fn read_file(path: &Path) -> anyhow::Result<ControlFile> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("{} is not a valid control configuration", path.display()))
}

/// Runs a control node until Ctrl-C or SIGTERM.
pub async fn run(plan: ControlPlan) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(plan.listen)
        .await
        .with_context(|| format!("cannot listen on {}", plan.listen))?;
    let cluster_listener = tokio::net::TcpListener::bind(plan.cluster_listen)
        .await
        .with_context(|| format!("cannot listen on {} for the cluster links", plan.cluster_listen))?;
    let node_id = plan.service.cluster.node_id;
    let service = ControlService::start(plan.service, listener, cluster_listener)
        .await
        .context("cannot start the control node")?;
    service.node.set_turn(plan.turn);
    println!(
        "bridgemesh control node {node_id} is up: {} (cluster links on {}, mutual TLS)",
        service.url(),
        service.cluster_addr
    );
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
    println!("stopping control node {node_id}");
    service.stop().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A control certificate for node `id` in `dir`, as `bridgemesh ca issue-control` writes it.
    fn certs(dir: &Path, id: u64) -> PathBuf {
        let out = dir.join(format!("control-{id}"));
        bridgemesh_pki::ClusterCa::generate()
            .unwrap()
            .issue_control_cert(id)
            .unwrap()
            .save_control(&out)
            .unwrap();
        out
    }

    #[test]
    fn a_file_and_overrides_make_a_plan() {
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("secret");
        std::fs::write(&secret, "0123456789abcdef0123456789abcdef\n").unwrap();
        let metrics_token = dir.path().join("metrics-token");
        std::fs::write(&metrics_token, "0123456789abcdef-token\n").unwrap();
        let file: ControlFile = toml::from_str(&format!(
            r#"
            node_id = 2
            listen = "127.0.0.1:7702"
            cert_dir = "{}"
            metrics_token_file = "{}"
            data_dir = "{}"
            cluster_secret_file = "{}"
            [peers]
            1 = "127.0.0.1:7801"
            2 = "127.0.0.1:7701"
            [raft]
            election_timeout_min_ms = 900
            election_timeout_max_ms = 1800
            [limits]
            join_burst = 40
            join_ipv6_prefix_len = 56
            [turn]
            secret_file = "{}"
            servers = [{{ bridge = "eu-1", urls = ["turns:turn.example.org:443?transport=tcp"] }}]
            "#,
            certs(dir.path(), 2).display(),
            metrics_token.display(),
            dir.path().join("data").display(),
            secret.display(),
            secret.display()
        ))
        .unwrap();
        let plan = plan(
            file,
            ControlOverrides {
                peers: vec![parse_peer("3=127.0.0.1:7901").unwrap()],
                ..Default::default()
            },
        )
        .unwrap();
        let cluster = &plan.service.cluster;
        assert_eq!(cluster.node_id, 2);
        assert_eq!(plan.listen.to_string(), "127.0.0.1:7702");
        assert_eq!(
            plan.cluster_listen.to_string(),
            "127.0.0.1:7701",
            "the cluster listener defaults to port 7701 on the listen IP"
        );
        assert_eq!(
            cluster.advertise_addr, "127.0.0.1:7701",
            "peers and bridges reach the cluster listener"
        );
        assert!(plan.service.api.metrics_token.is_some());
        assert_eq!(cluster.initial_members.len(), 3);
        assert_eq!(cluster.election_timeout_min_ms, 900);
        assert_eq!(
            plan.service.cluster_secret.len(),
            32,
            "the trailing newline is not part of it"
        );
        assert!(plan.service.api.admin.is_none());
        let turn = plan.turn.unwrap();
        assert_eq!(turn.endpoints[0].bridge.as_deref(), Some("eu-1"));
        assert_eq!(turn.credential_ttl_s, 600);
        let limits = plan.service.join_limits;
        assert_eq!(limits.per_address.burst, 40.0);
        assert_eq!(limits.per_address.per_second, 5.0, "unset keys keep the default");
        assert_eq!(limits.per_room.burst, 100.0);
        assert_eq!(limits.ipv6_prefix_len, 56);
        for (bad, named) in [
            ("join_ipv6_prefix_len = 8", "between 32 and 128"),
            ("room_join_per_second = 0", "per room"),
            ("join_burst = 0.5", "per address"),
        ] {
            let section: LimitsSection = toml::from_str(bad).unwrap();
            let err = section.into_limits("[limits]").unwrap_err().to_string();
            assert!(err.starts_with("[limits]: "), "{err}");
            assert!(err.contains(named), "{bad}: {err}");
        }
    }

    #[test]
    fn mistakes_are_named() {
        assert!(
            toml::from_str::<ControlFile>("nodeid = 1").is_err(),
            "unknown keys are refused"
        );
        assert!(parse_peer("x=1.2.3.4:5").is_err());
        assert!(parse_peer("1").is_err());
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("secret");
        std::fs::write(&secret, "short").unwrap();
        let file = ControlFile {
            node_id: Some(1),
            listen: Some("127.0.0.1:1".parse().unwrap()),
            cert_dir: Some(certs(dir.path(), 1)),
            data_dir: Some(dir.path().into()),
            cluster_secret_file: Some(secret),
            ..Default::default()
        };
        let err = plan(file.clone(), ControlOverrides::default()).err().unwrap();
        assert!(err.to_string().contains("at least 32"), "{err}");
        let err = plan(
            ControlFile {
                cert_dir: None,
                ..file.clone()
            },
            ControlOverrides::default(),
        )
        .err()
        .unwrap();
        assert!(
            err.to_string().contains("cluster certificate is missing"),
            "{err}"
        );
        let err = plan(
            ControlFile {
                cert_dir: Some(certs(dir.path(), 2)),
                ..file.clone()
            },
            ControlOverrides::default(),
        )
        .err()
        .unwrap();
        assert!(format!("{err:#}").contains("names control node 2"), "{err:#}");
        let err = plan(
            ControlFile {
                cluster_listen: Some("127.0.0.1:1".parse().unwrap()),
                ..file
            },
            ControlOverrides::default(),
        )
        .err()
        .unwrap();
        assert!(err.to_string().contains("ports of their own"), "{err}");
        let err = plan(ControlFile::default(), ControlOverrides::default())
            .err()
            .unwrap();
        assert!(err.to_string().contains("node id"), "{err}");
    }
}
