//! `bridgemesh bridge`: one bridge (SFU) with its embedded TURN server, registered with a control
//! cluster over the network. Configured by a TOML file with command-line overrides:
//!
//! ```toml
//! control = ["https://10.0.0.1:7701", "https://10.0.0.2:7701"]  # cluster listeners; the leader is found
//! region = "eu-west"
//! id = "eu-west-1"                       # default: <region>-<hostname>
//! location = { latitude = 50.11, longitude = 8.68 }
//! bridge_key_file = "/etc/bridgemesh/bridge-key"   # `bridgemesh bridge-key --bridge-id` prints it
//! metrics_token_file = "/etc/bridgemesh/metrics-token"  # /metrics* then need `Authorization: Bearer`
//! listen = "0.0.0.0:8081"                # signaling, /health, /metrics; media and TURN bind its IP
//! public_host = "eu-west-1.example.org"  # in the signaling and TURN URLs
//! advertise_ip = "203.0.113.7"           # in ICE candidates and TURN relay addresses (1:1 NAT: the public IP)
//! # advertise_ipv6 = "2001:db8::7"       # a second ICE candidate, with listen = "[::]:8081"
//! media_port = 10000
//! capacity = 1000
//! max_per_room = 100
//! turn = true
//! turn_port = 3478
//! cascade_port = 7710                    # UDP, QUIC links to other bridges
//! cascade_cert_dir = "/etc/bridgemesh/cascade"  # `bridgemesh ca issue` writes it; required
//! # cascade_advertise = "203.0.113.7:7710"     # when peers reach the port elsewhere
//! drain_timeout_s = 30
//! ```
//!
//! [`start`] runs it in-process (tests, and `bridgemesh up` later); [`run`] is the command, which
//! drains the bridge on SIGTERM or SIGINT before it stops.

use anyhow::Context as _;
use bridgemesh_bridge::cascade::{BridgeIdentity, CascadeConfig, CascadeEndpoint, CascadeManagerConfig};
use bridgemesh_bridge::control_agent::{AgentError, BRIDGE_KEY_MIN_BYTES, ControlAgent, ControlAgentConfig};
use bridgemesh_bridge::control_session::{SessionStatus, SessionUrl};
use bridgemesh_bridge::load::{CPU_CEILING_DEFAULT, LoadCeilings, PACKETS_PER_S_CEILING_DEFAULT};
use bridgemesh_bridge::{Bridge, BridgeConfig};
use bridgemesh_control::http::MetricsToken;
use bridgemesh_control::http_guard::{HttpGuardStats, HttpLimits, serve_guarded};
use bridgemesh_pki::ClusterIdentity;
use bridgemesh_proto::bridge_session::{GeoPoint, turn_rest_secret};
use bridgemesh_proto::{BridgeId, RegionId};
use bridgemesh_turn::{TurnConfig, TurnServer};
use serde::Deserialize;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Shards at most by default: past this a bridge is better split in two.
const DEFAULT_SHARDS_MAX: usize = 8;
const DRAIN_TIMEOUT_S_MAX: u64 = 24 * 3600;
/// How often a draining bridge looks whether it is empty (its stats refresh every 100 ms).
const DRAIN_POLL: Duration = Duration::from_millis(100);

/// Everything a bridge process needs. A plain struct: the TOML file fills it, flags override it,
/// and `bridgemesh up` or a test can build one in code.
#[derive(Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BridgeNodeConfig {
    /// Control nodes' cluster listeners (`https://host:port`, mutual TLS); any of them, the
    /// leader is found.
    pub control: Vec<String>,
    pub region: Option<RegionId>,
    /// Default: `<region>-<hostname>`, made a valid id.
    pub id: Option<BridgeId>,
    pub location: Option<GeoPoint>,
    /// File holding the bridge key in hex; read into `bridge_key` by [`BridgeNodeConfig::load_bridge_key`].
    pub bridge_key_file: Option<PathBuf>,
    /// This bridge's own key, derived by control from the cluster secret and the bridge id (see
    /// `bridgemesh bridge-key --bridge-id`): it checks this bridge's tickets and its TURN
    /// credentials. Never read from the TOML file itself.
    #[serde(skip)]
    pub bridge_key: Vec<u8>,
    /// Signaling WebSocket, `/health` and `/metrics`. Media and TURN bind the same IP.
    pub listen: SocketAddr,
    /// Host name or IP participants reach the bridge at, for the signaling and TURN URLs.
    /// Default: the advertised IP.
    pub public_host: Option<String>,
    /// The IP in ICE candidates and TURN relay addresses. Default: `public_host` when it is an
    /// IP, else the listen IP when it is not 0.0.0.0 / ::.
    pub advertise_ip: Option<IpAddr>,
    /// The bridge's IPv6 address, offered as a second ICE host candidate on the same media
    /// port, when `advertise_ip` is IPv4 and the bridge listens on `[::]` (both families).
    pub advertise_ipv6: Option<Ipv6Addr>,
    /// The signaling URL as participants reach it, when it is not `ws://public_host:port/...`
    /// (e.g. `wss://` behind a TLS proxy).
    pub signaling_url: Option<String>,
    pub media_port: u16,
    /// Participants this bridge accepts at most.
    pub capacity: u32,
    /// Participants of one room this bridge accepts at most.
    pub max_per_room: u32,
    /// Packet-processing threads; default: the cores, at most 8.
    pub shards: Option<usize>,
    /// `SO_RCVBUF` of each shard's media socket (default 4 MiB; raise `net.core.rmem_max` or
    /// run with CAP_NET_ADMIN for it to take effect).
    pub media_recv_buffer_bytes: Option<usize>,
    /// `SO_SNDBUF` of each shard's media socket (default 1 MiB).
    pub media_send_buffer_bytes: Option<usize>,
    pub turn: bool,
    /// TURN over UDP and TCP.
    pub turn_port: u16,
    /// TCP/TLS connections one source address may hold on the TURN server (default: the TURN
    /// server's own; `bridgemesh up` raises it, as every local browser comes from 127.0.0.1).
    pub turn_connections_per_source_max: Option<usize>,
    /// TURN URLs served by another listener for this bridge's TURN server, named in join
    /// responses after its own (`up --domain`: `turns:DOMAIN:443?transport=tcp`).
    #[serde(skip)]
    pub turn_extra_urls: Vec<String>,
    /// UDP port of cascade links (QUIC) to other bridges, on the listen IP.
    pub cascade_port: u16,
    /// The bridge's cluster certificate, key and CA (`bridgemesh ca issue --out-dir`): it
    /// authenticates the bridge to control (its session) and to other bridges (cascade links).
    #[serde(alias = "cert_dir")]
    pub cascade_cert_dir: Option<PathBuf>,
    /// Where other bridges reach the cascade port, when not the advertised IP and
    /// `cascade_port` (a port forward, a NAT).
    pub cascade_advertise: Option<SocketAddr>,
    /// A cluster certificate made in code (`bridgemesh up`, tests); wins over `cascade_cert_dir`.
    #[serde(skip)]
    pub cascade_identity: Option<BridgeIdentity>,
    /// How long a stopping bridge waits for control to move its participants away.
    pub drain_timeout_s: u64,
    /// A file with the token `/metrics`, `/metrics/turn` and `/metrics/control` demand
    /// (`Authorization: Bearer <token>`); none serves them to anyone who reaches the listener.
    pub metrics_token_file: Option<PathBuf>,
    pub cpu_ceiling: f64,
    pub packets_per_s_ceiling: f64,
}

impl Default for BridgeNodeConfig {
    fn default() -> Self {
        Self {
            control: Vec::new(),
            region: None,
            id: None,
            location: None,
            bridge_key_file: None,
            bridge_key: Vec::new(),
            listen: SocketAddr::from((Ipv4Addr::UNSPECIFIED, 8081)),
            public_host: None,
            advertise_ip: None,
            advertise_ipv6: None,
            signaling_url: None,
            media_port: 10000,
            capacity: 1000,
            max_per_room: 100,
            shards: None,
            media_recv_buffer_bytes: None,
            media_send_buffer_bytes: None,
            turn: true,
            turn_port: 3478,
            turn_connections_per_source_max: None,
            turn_extra_urls: Vec::new(),
            cascade_port: 7710,
            cascade_cert_dir: None,
            cascade_advertise: None,
            cascade_identity: None,
            drain_timeout_s: 30,
            metrics_token_file: None,
            cpu_ceiling: CPU_CEILING_DEFAULT,
            packets_per_s_ceiling: PACKETS_PER_S_CEILING_DEFAULT,
        }
    }
}

impl fmt::Debug for BridgeNodeConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Destructured, so a new field cannot be forgotten here.
        let Self {
            control,
            region,
            id,
            location,
            bridge_key_file,
            bridge_key: _,
            listen,
            public_host,
            advertise_ip,
            advertise_ipv6,
            signaling_url,
            media_port,
            capacity,
            max_per_room,
            shards,
            media_recv_buffer_bytes,
            media_send_buffer_bytes,
            turn,
            turn_port,
            turn_connections_per_source_max,
            turn_extra_urls,
            cascade_port,
            cascade_cert_dir,
            cascade_advertise,
            cascade_identity,
            drain_timeout_s,
            metrics_token_file,
            cpu_ceiling,
            packets_per_s_ceiling,
        } = self;
        f.debug_struct("BridgeNodeConfig")
            .field("control", control)
            .field("region", region)
            .field("id", id)
            .field("location", location)
            .field("bridge_key_file", bridge_key_file)
            .field("bridge_key", &"<redacted>")
            .field("listen", listen)
            .field("public_host", public_host)
            .field("advertise_ip", advertise_ip)
            .field("advertise_ipv6", advertise_ipv6)
            .field("signaling_url", signaling_url)
            .field("media_port", media_port)
            .field("capacity", capacity)
            .field("max_per_room", max_per_room)
            .field("shards", shards)
            .field("media_recv_buffer_bytes", media_recv_buffer_bytes)
            .field("media_send_buffer_bytes", media_send_buffer_bytes)
            .field("turn", turn)
            .field("turn_port", turn_port)
            .field("turn_connections_per_source_max", turn_connections_per_source_max)
            .field("turn_extra_urls", turn_extra_urls)
            .field("cascade_port", cascade_port)
            .field("cascade_cert_dir", cascade_cert_dir)
            .field("cascade_advertise", cascade_advertise)
            .field(
                "cascade_identity",
                &cascade_identity.as_ref().map(|i| i.bridge_id().to_string()),
            )
            .field("drain_timeout_s", drain_timeout_s)
            .field("metrics_token_file", metrics_token_file)
            .field("cpu_ceiling", cpu_ceiling)
            .field("packets_per_s_ceiling", packets_per_s_ceiling)
            .finish()
    }
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BridgeNodeConfigError {
    #[error("no control node: give one or more with --control (or `control` in the file)")]
    NoControl,
    #[error("control URL {url:?}: {reason}")]
    ControlUrl { url: String, reason: String },
    #[error("the region is missing: --region (or `region` in the file)")]
    NoRegion,
    #[error("the bridge key is missing or shorter than {BRIDGE_KEY_MIN_BYTES} bytes: --bridge-key-file")]
    BridgeKey,
    #[error(
        "the bridge's cluster certificate is missing: --cascade-cert-dir (`bridgemesh ca issue --bridge-id ID --out-dir DIR` writes it)"
    )]
    NoCertificate,
    #[error(
        "no address to advertise: set --advertise-ip (or a --public-host that is an IP, or listen on a specific IP)"
    )]
    NoAdvertiseIp,
    #[error("the advertised IP must be one participants reach, not 0.0.0.0 / ::")]
    UnspecifiedAdvertiseIp,
    #[error("the advertised IP {0} is not a unicast address participants can send to")]
    AdvertiseIpNotUnicast(IpAddr),
    #[error(
        "the advertised IP {advertise} and the listen IP {listen} are of different families: media and TURN bind the listen IP and receive only its family (a 1:1 NAT keeps the family; listen on 0.0.0.0 for an IPv4 address, [::] for an IPv6 one)"
    )]
    AdvertiseFamily { listen: IpAddr, advertise: IpAddr },
    #[error(
        "--advertise-ipv6 {0} is a second address for an IPv4 bridge listening on [::] (one dual-stack port for both families); it must be a unicast IPv6 address, not a mapped IPv4 one"
    )]
    AdvertiseIpv6(Ipv6Addr),
    #[error("the cascade address {0} must be one other bridges reach, not 0.0.0.0 / :: or port 0")]
    CascadeAdvertise(SocketAddr),
    #[error("the public host {0:?} is not a host name or IP")]
    PublicHost(String),
    #[error("the location must be a latitude within ±90 and a longitude within ±180")]
    Location,
    #[error("capacity and max_per_room must be positive, and max_per_room at most capacity")]
    Capacity,
    #[error("shards must be between 1 and 64")]
    Shards,
    #[error("the media, TURN and cascade ports are all UDP: give them different numbers")]
    PortClash,
    #[error("drain_timeout_s must be at most {DRAIN_TIMEOUT_S_MAX}")]
    DrainTimeout,
    #[error("load ceilings: {0}")]
    Ceilings(String),
}

impl BridgeNodeConfig {
    /// Reads `bridge_key_file` (hex; surrounding whitespace ignored) into `bridge_key`, unless a
    /// key was set in code.
    pub fn load_bridge_key(&mut self) -> anyhow::Result<()> {
        if !self.bridge_key.is_empty() {
            return Ok(());
        }
        let Some(path) = &self.bridge_key_file else {
            return Ok(());
        };
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the bridge key from {}", path.display()))?;
        self.bridge_key = hex::decode(text.trim())
            .with_context(|| format!("{} does not hold a hex bridge key", path.display()))?;
        Ok(())
    }

    pub fn validate(&self) -> Result<(), BridgeNodeConfigError> {
        if self.control.is_empty() {
            return Err(BridgeNodeConfigError::NoControl);
        }
        for url in &self.control {
            SessionUrl::parse(url).map_err(|err| BridgeNodeConfigError::ControlUrl {
                url: url.clone(),
                reason: err.to_string(),
            })?;
        }
        if self.region.is_none() {
            return Err(BridgeNodeConfigError::NoRegion);
        }
        if self.bridge_key.len() < BRIDGE_KEY_MIN_BYTES {
            return Err(BridgeNodeConfigError::BridgeKey);
        }
        let advertise_ip = self.advertise_ip()?;
        if advertise_ip.is_unspecified() {
            return Err(BridgeNodeConfigError::UnspecifiedAdvertiseIp);
        }
        if !bridgemesh_bridge::config::is_unicast(advertise_ip) {
            return Err(BridgeNodeConfigError::AdvertiseIpNotUnicast(advertise_ip));
        }
        let dual_stack = self.listen.ip() == IpAddr::V6(Ipv6Addr::UNSPECIFIED);
        if advertise_ip.is_ipv4() != self.listen.is_ipv4() && !dual_stack {
            return Err(BridgeNodeConfigError::AdvertiseFamily {
                listen: self.listen.ip(),
                advertise: advertise_ip,
            });
        }
        if let Some(v6) = self.advertise_ipv6
            && (!dual_stack
                || !advertise_ip.is_ipv4()
                || v6.is_unspecified()
                || v6.is_multicast()
                || v6.to_ipv4_mapped().is_some())
        {
            return Err(BridgeNodeConfigError::AdvertiseIpv6(v6));
        }
        if let Some(addr) = self.cascade_advertise
            && (addr.ip().is_unspecified() || addr.port() == 0)
        {
            return Err(BridgeNodeConfigError::CascadeAdvertise(addr));
        }
        if let Some(host) = &self.public_host {
            let name_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '-');
            if host.parse::<IpAddr>().is_err()
                && (host.is_empty() || host.len() > 253 || !host.chars().all(name_char))
            {
                return Err(BridgeNodeConfigError::PublicHost(host.clone()));
            }
        }
        if self.location.is_some_and(|l| !l.is_valid()) {
            return Err(BridgeNodeConfigError::Location);
        }
        if self.capacity == 0 || self.max_per_room == 0 || self.max_per_room > self.capacity {
            return Err(BridgeNodeConfigError::Capacity);
        }
        if self.shards.is_some_and(|n| !(1..=64).contains(&n)) {
            return Err(BridgeNodeConfigError::Shards);
        }
        if self.cascade_identity.is_none() && self.cascade_cert_dir.is_none() {
            return Err(BridgeNodeConfigError::NoCertificate);
        }
        let clash = |a: u16, b: u16| a != 0 && a == b;
        if (self.turn && clash(self.turn_port, self.media_port))
            || clash(self.cascade_port, self.media_port)
            || (self.turn && clash(self.cascade_port, self.turn_port))
        {
            return Err(BridgeNodeConfigError::PortClash);
        }
        if self.drain_timeout_s > DRAIN_TIMEOUT_S_MAX {
            return Err(BridgeNodeConfigError::DrainTimeout);
        }
        self.ceilings()
            .validate()
            .map_err(|err| BridgeNodeConfigError::Ceilings(err.to_string()))?;
        Ok(())
    }

    /// The IP put in ICE candidates: `advertise_ip`, else `public_host` if it is an IP, else the
    /// listen IP if it is a specific one.
    pub fn advertise_ip(&self) -> Result<IpAddr, BridgeNodeConfigError> {
        self.advertise_ip
            .or_else(|| self.public_host.as_ref().and_then(|h| h.parse().ok()))
            .or_else(|| (!self.listen.ip().is_unspecified()).then_some(self.listen.ip()))
            .ok_or(BridgeNodeConfigError::NoAdvertiseIp)
    }

    /// The host in the signaling and TURN URLs: `public_host`, else the advertised IP (IPv6 in
    /// brackets).
    pub fn public_host(&self) -> Result<String, BridgeNodeConfigError> {
        if let Some(host) = &self.public_host {
            return Ok(match host.parse::<IpAddr>() {
                Ok(IpAddr::V6(ip)) => format!("[{ip}]"),
                _ => host.clone(),
            });
        }
        Ok(match self.advertise_ip()? {
            IpAddr::V4(ip) => ip.to_string(),
            IpAddr::V6(ip) => format!("[{ip}]"),
        })
    }

    /// `id`, or `<region>-<hostname>`.
    pub fn bridge_id(&self) -> Result<BridgeId, BridgeNodeConfigError> {
        if let Some(id) = &self.id {
            return Ok(id.clone());
        }
        let region = self.region.as_ref().ok_or(BridgeNodeConfigError::NoRegion)?;
        Ok(default_bridge_id(region, &hostname()))
    }

    fn ceilings(&self) -> LoadCeilings {
        LoadCeilings {
            cpu: self.cpu_ceiling,
            packets_per_s: self.packets_per_s_ceiling,
            participants: self.capacity,
        }
    }
}

/// `<region>-<host>` with the host lower-cased, every character a bridge id refuses made `-`,
/// and cut to fit the id's length.
pub fn default_bridge_id(region: &RegionId, host: &str) -> BridgeId {
    let host: String = host
        .trim()
        .chars()
        .map(|c| c.to_ascii_lowercase())
        .map(|c| {
            if c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '-'
            }
        })
        .collect();
    let host = host.trim_matches(['-', '.']);
    let host = if host.is_empty() { "bridge" } else { host };
    let room = BridgeId::MAX_LEN.saturating_sub(region.as_str().len() + 1);
    let mut id = format!("{region}-{}", &host[..host.len().min(room)]);
    id.truncate(BridgeId::MAX_LEN);
    BridgeId::new(id.trim_end_matches(['-', '.'])).expect("built from valid characters only")
}

/// This machine's name, or `bridge` when none can be read.
fn hostname() -> String {
    ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .find_map(|path| std::fs::read_to_string(path).ok())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "bridge".to_owned())
}

/// `50.11,8.68` → a point on the globe.
pub fn parse_location(text: &str) -> Result<GeoPoint, String> {
    let (latitude, longitude) = text
        .split_once(',')
        .ok_or_else(|| format!("{text:?} is not LATITUDE,LONGITUDE"))?;
    let point = GeoPoint {
        latitude: latitude
            .trim()
            .parse()
            .map_err(|_| format!("{latitude:?} is not a latitude"))?,
        longitude: longitude
            .trim()
            .parse()
            .map_err(|_| format!("{longitude:?} is not a longitude"))?,
    };
    if !point.is_valid() {
        return Err(format!(
            "{text:?} is not on the globe (latitude ±90, longitude ±180)"
        ));
    }
    Ok(point)
}

/// Bridge `bridge_id`'s key, in hex, for the cluster secret in `path`: what `bridgemesh
/// bridge-key` prints. The secret is read exactly as `bridgemesh control` reads it.
pub fn bridge_key_hex(cluster_secret_file: &Path, bridge_id: &BridgeId) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(cluster_secret_file).with_context(|| {
        format!(
            "cannot read the cluster secret from {}",
            cluster_secret_file.display()
        )
    })?;
    let secret = text.trim_end_matches(['\n', '\r']);
    if secret.len() < BRIDGE_KEY_MIN_BYTES {
        anyhow::bail!(
            "the cluster secret in {} has {} bytes; a control node refuses fewer than 32",
            cluster_secret_file.display(),
            secret.len()
        );
    }
    Ok(hex::encode(bridgemesh_control::node::bridge_key(
        secret.as_bytes(),
        bridge_id,
    )))
}

/// Flags of `bridgemesh bridge`; each one given overrides the file.
#[derive(Debug, Default, clap::Args)]
pub struct BridgeArgs {
    /// TOML configuration; flags below override it.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// A control node's cluster listener, `https://host:port`; repeat for several (any of them
    /// will do).
    #[arg(long = "control")]
    pub control: Vec<String>,
    /// This bridge's region, e.g. `eu-west`.
    #[arg(long, value_parser = |s: &str| RegionId::new(s).map_err(|e| e.to_string()))]
    pub region: Option<RegionId>,
    /// This bridge's id (default: `<region>-<hostname>`).
    #[arg(long, value_parser = |s: &str| BridgeId::new(s).map_err(|e| e.to_string()))]
    pub id: Option<BridgeId>,
    /// Where the bridge is, `LATITUDE,LONGITUDE` in degrees.
    #[arg(long, value_parser = parse_location, allow_hyphen_values = true)]
    pub location: Option<GeoPoint>,
    /// File with this bridge's key in hex (`bridgemesh bridge-key --bridge-id` prints it).
    #[arg(long)]
    pub bridge_key_file: Option<PathBuf>,
    /// Signaling, /health and /metrics (default 0.0.0.0:8081); media and TURN bind its IP.
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// Host name or IP participants reach this bridge at (signaling and TURN URLs).
    #[arg(long)]
    pub public_host: Option<String>,
    /// IP put in ICE candidates (default: --public-host if it is an IP). Behind a 1:1 NAT: the
    /// public address, with --listen on the host's own (or 0.0.0.0).
    #[arg(long)]
    pub advertise_ip: Option<IpAddr>,
    /// This bridge's IPv6 address, a second ICE candidate on the same media port, for an IPv4
    /// --advertise-ip with --listen [::]:PORT (participants on either family).
    #[arg(long)]
    pub advertise_ipv6: Option<Ipv6Addr>,
    /// Signaling URL as participants reach it, e.g. `wss://eu-1.example.org/bridge/v1/signal`
    /// behind a TLS proxy (default: ws://PUBLIC_HOST:PORT/bridge/v1/signal).
    #[arg(long)]
    pub signaling_url: Option<String>,
    /// The single UDP media port (default 10000).
    #[arg(long)]
    pub media_port: Option<u16>,
    /// Participants this bridge accepts (default 1000).
    #[arg(long)]
    pub capacity: Option<u32>,
    /// Participants of one room this bridge accepts (default 100).
    #[arg(long)]
    pub max_per_room: Option<u32>,
    /// Packet-processing threads (default: cores, at most 8).
    #[arg(long)]
    pub shards: Option<usize>,
    /// SO_RCVBUF of each shard's media socket, bytes (default 4 MiB).
    #[arg(long)]
    pub media_recv_buffer_bytes: Option<usize>,
    /// SO_SNDBUF of each shard's media socket, bytes (default 1 MiB).
    #[arg(long)]
    pub media_send_buffer_bytes: Option<usize>,
    /// Port of the embedded TURN server, UDP and TCP (default 3478).
    #[arg(long)]
    pub turn_port: Option<u16>,
    /// Run without the embedded TURN server.
    #[arg(long)]
    pub no_turn: bool,
    /// UDP port of QUIC cascade links to other bridges (default 7710).
    #[arg(long)]
    pub cascade_port: Option<u16>,
    /// Directory with this bridge's cluster certificate (`bridgemesh ca issue --out-dir`):
    /// required; it authenticates the bridge to control and to other bridges.
    #[arg(long, alias = "cert-dir")]
    pub cascade_cert_dir: Option<PathBuf>,
    /// File with the token /metrics demands (`Authorization: Bearer <token>`).
    #[arg(long)]
    pub metrics_token_file: Option<PathBuf>,
    /// `IP:PORT` other bridges reach the cascade port at, when not the advertised IP and the
    /// cascade port (a port forward, a NAT).
    #[arg(long)]
    pub cascade_advertise: Option<SocketAddr>,
    /// Seconds a stopping bridge waits for its participants to be moved (default 30).
    #[arg(long)]
    pub drain_timeout_s: Option<u64>,
}

impl BridgeArgs {
    /// The file (if any) with these flags over it, and the bridge key read.
    pub fn config(self) -> anyhow::Result<BridgeNodeConfig> {
        let mut config = match &self.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read {}", path.display()))?;
                toml::from_str(&text)
                    .with_context(|| format!("{} is not a valid bridge configuration", path.display()))?
            }
            None => BridgeNodeConfig::default(),
        };
        if !self.control.is_empty() {
            config.control = self.control;
        }
        config.region = self.region.or(config.region);
        config.id = self.id.or(config.id);
        config.location = self.location.or(config.location);
        config.bridge_key_file = self.bridge_key_file.or(config.bridge_key_file);
        config.listen = self.listen.unwrap_or(config.listen);
        config.public_host = self.public_host.or(config.public_host);
        config.advertise_ip = self.advertise_ip.or(config.advertise_ip);
        config.advertise_ipv6 = self.advertise_ipv6.or(config.advertise_ipv6);
        config.signaling_url = self.signaling_url.or(config.signaling_url);
        config.media_port = self.media_port.unwrap_or(config.media_port);
        config.capacity = self.capacity.unwrap_or(config.capacity);
        config.max_per_room = self.max_per_room.unwrap_or(config.max_per_room);
        config.shards = self.shards.or(config.shards);
        config.media_recv_buffer_bytes = self.media_recv_buffer_bytes.or(config.media_recv_buffer_bytes);
        config.media_send_buffer_bytes = self.media_send_buffer_bytes.or(config.media_send_buffer_bytes);
        config.turn_port = self.turn_port.unwrap_or(config.turn_port);
        config.turn &= !self.no_turn;
        config.cascade_port = self.cascade_port.unwrap_or(config.cascade_port);
        config.cascade_cert_dir = self.cascade_cert_dir.or(config.cascade_cert_dir);
        config.cascade_advertise = self.cascade_advertise.or(config.cascade_advertise);
        config.drain_timeout_s = self.drain_timeout_s.unwrap_or(config.drain_timeout_s);
        config.metrics_token_file = self.metrics_token_file.or(config.metrics_token_file);
        config.load_bridge_key()?;
        config.validate()?;
        Ok(config)
    }
}

/// A bridge running in this process.
pub struct RunningBridge {
    pub bridge: Arc<Bridge>,
    /// Where signaling, `/health` and `/metrics` are served.
    pub http_addr: SocketAddr,
    /// The signaling URL registered with control.
    pub signaling_url: String,
    pub turn: Option<Arc<TurnServer>>,
    /// Keeps the TURN server's peer policy on the cluster's bridges.
    turn_peers: Option<JoinHandle<()>>,
    agent: ControlAgent,
    drain_timeout: Duration,
    stop_http: watch::Sender<bool>,
    http_task: JoinHandle<()>,
}

/// The media sockets' buffers: the defaults, where the file or flags say nothing.
fn media_socket_config(config: &BridgeNodeConfig) -> bridgemesh_bridge::MediaSocketConfig {
    let defaults = bridgemesh_bridge::MediaSocketConfig::default();
    bridgemesh_bridge::MediaSocketConfig {
        recv_buffer_bytes: config
            .media_recv_buffer_bytes
            .unwrap_or(defaults.recv_buffer_bytes),
        send_buffer_bytes: config
            .media_send_buffer_bytes
            .unwrap_or(defaults.send_buffer_bytes),
    }
}

/// Starts the bridge, its HTTP server and TURN server, and its control agent, which registers
/// it with control (in the background: see [`RunningBridge::status`]).
pub async fn start(config: BridgeNodeConfig) -> anyhow::Result<RunningBridge> {
    config.validate()?;
    let bridge_id = config.bridge_id()?;
    let identity = cluster_identity(&config, &bridge_id)?;
    let metrics_token = match &config.metrics_token_file {
        Some(path) => Some(Arc::new(
            MetricsToken::new(read_token(path)?)
                .map_err(|err| anyhow::anyhow!("{}: {err}", path.display()))?,
        )),
        None => None,
    };
    let advertise_ip = config.advertise_ip()?;
    let public_host = config.public_host()?;
    let bind_ip = config.listen.ip();
    check_local(bind_ip)?;
    let listener = TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {} for signaling", config.listen))?;
    let http_addr = listener.local_addr()?;
    let bridge = Bridge::start(BridgeConfig {
        bridge_id: bridge_id.clone(),
        region: config.region.clone().expect("validated"),
        media_bind: SocketAddr::new(bind_ip, config.media_port),
        media_advertised_ip: advertise_ip,
        media_advertised_ipv6: config.advertise_ipv6,
        ticket_key: config.bridge_key.clone(),
        shard_count: config.shards.unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map_or(1, |n| n.get())
                .min(DEFAULT_SHARDS_MAX)
        }),
        max_participants: config.capacity as usize,
        max_participants_per_room: config.max_per_room as usize,
        media_socket: media_socket_config(&config),
        signaling_limits: Default::default(),
    })
    .context("cannot start the bridge")?;
    let turn = if config.turn {
        match start_turn(&bridge, &config, bind_ip, advertise_ip).await {
            Ok(turn) => Some(turn),
            Err(err) => {
                bridge.shutdown().await;
                return Err(err);
            }
        }
    } else {
        None
    };
    let cascade_addr = match start_cascade(&bridge, &config, &identity, bind_ip, advertise_ip) {
        Ok(addr) => addr,
        Err(err) => {
            if let Some(turn) = &turn {
                turn.shutdown().await;
            }
            bridge.shutdown().await;
            return Err(err);
        }
    };
    let signaling_url = config
        .signaling_url
        .clone()
        .unwrap_or_else(|| format!("ws://{public_host}:{}/bridge/v1/signal", http_addr.port()));
    let turn_urls = turn
        .as_ref()
        .map(|server| {
            let mut urls = server.urls(&public_host);
            urls.extend(config.turn_extra_urls.iter().cloned());
            urls
        })
        .unwrap_or_default();
    let mut registration = bridgemesh_bridge::control_agent::registration(
        &bridge,
        signaling_url.clone(),
        turn_urls,
        config.location,
    );
    registration.cascade_addr = cascade_addr;
    // The embedded TURN server asks control for the cluster's bridges under this certificate.
    let turn_peers_client = match bridgemesh_pki::ClusterClient::new(&ClusterIdentity::from(&identity)) {
        Ok(client) => client,
        Err(err) => {
            if let Some(turn) = &turn {
                turn.shutdown().await;
            }
            bridge.shutdown().await;
            return Err(
                anyhow::Error::new(err).context("cannot make a client for control's cluster listener")
            );
        }
    };
    let mut agent_config = ControlAgentConfig::new(
        config.control.clone(),
        ClusterIdentity::from(&identity),
        registration,
    );
    agent_config.ceilings = config.ceilings();
    if let Some(turn) = &turn {
        // Its credentials name the participant: they end with its session on this bridge.
        let turn = turn.clone();
        agent_config.on_session_end = Some(Arc::new(move |participant| {
            turn.end_session(participant.as_str())
        }));
    }
    let agent = match ControlAgent::start(bridge.clone(), agent_config) {
        Ok(agent) => agent,
        Err(err) => {
            if let Some(turn) = &turn {
                turn.shutdown().await;
            }
            bridge.shutdown().await;
            return Err(err.into());
        }
    };

    let turn_peers = turn.as_ref().map(|server| {
        crate::turn_peers::spawn(
            server,
            config.control.clone(),
            crate::turn_peers::Asker::Bridge(turn_peers_client.clone()),
        )
    });

    let mut router = bridgemesh_bridge::signaling::router(bridge.clone());
    if let Some(turn) = turn.clone() {
        router = router.route(
            "/metrics/turn",
            axum::routing::get(move || {
                let turn = turn.clone();
                async move { turn.stats().render_prometheus() }
            }),
        );
    }
    let status = agent.status();
    let id = bridge_id.clone();
    router = router.route(
        "/metrics/control",
        axum::routing::get(move || {
            let registered = matches!(*status.borrow(), SessionStatus::Registered { .. });
            let text = bridgemesh_bridge::metrics::render_gauge(
                &id,
                "bridgemesh_bridge_control_registered",
                "Whether control holds this bridge's registration.",
                u64::from(registered),
            );
            async move { text }
        }),
    );
    // The signaling and metrics server's own guard: what its timeouts and caps refused.
    let http_stats = Arc::new(HttpGuardStats::default());
    let (stats, labels) = (http_stats.clone(), format!("bridge=\"{bridge_id}\""));
    router = router.route(
        "/metrics/http",
        axum::routing::get(move || {
            let text = stats.render_prometheus("bridgemesh_bridge", &labels);
            async move { text }
        }),
    );
    if let Some(token) = metrics_token {
        router = bridgemesh_control::http::require_metrics_token(router, token);
    }
    let (stop_http, stopped) = watch::channel(false);
    let http_task = serve_guarded(listener, router, stopped, HttpLimits::default(), http_stats);
    tracing::info!(bridge = %bridge_id, turn = turn.is_some(), "bridge node started");
    Ok(RunningBridge {
        bridge,
        http_addr,
        signaling_url,
        turn,
        turn_peers,
        agent,
        drain_timeout: Duration::from_secs(config.drain_timeout_s),
        stop_http,
        http_task,
    })
}

/// Refuses a listen IP this host does not have, before anything binds it, with what to do
/// instead: the usual mistake is the public address of a 1:1 NAT given as the listen address.
fn check_local(ip: IpAddr) -> anyhow::Result<()> {
    match std::net::UdpSocket::bind(SocketAddr::new(ip, 0)) {
        Ok(_) => Ok(()),
        Err(err) if err.kind() == std::io::ErrorKind::AddrNotAvailable => anyhow::bail!(
            "cannot listen on {ip}: it is not an address of this host ({err}); behind a 1:1 NAT listen on the host's own address (or 0.0.0.0) and give the public one as --advertise-ip"
        ),
        Err(err) => Err(anyhow::Error::new(err).context(format!("cannot bind {ip}"))),
    }
}

/// The bridge's certificate from the cluster CA, which must name this bridge.
fn cluster_identity(config: &BridgeNodeConfig, bridge_id: &BridgeId) -> anyhow::Result<BridgeIdentity> {
    let identity = match (&config.cascade_identity, &config.cascade_cert_dir) {
        (Some(identity), _) => identity.clone(),
        (None, Some(dir)) => BridgeIdentity::load(dir)
            .with_context(|| format!("cannot load the bridge certificate from {}", dir.display()))?,
        (None, None) => return Err(BridgeNodeConfigError::NoCertificate.into()),
    };
    if identity.bridge_id() != bridge_id {
        anyhow::bail!(
            "the cluster certificate names bridge {}, but this bridge is {bridge_id}; issue one with `bridgemesh ca issue --bridge-id {bridge_id}`",
            identity.bridge_id()
        );
    }
    Ok(identity)
}

/// A token file's first line.
fn read_token(path: &Path) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    Ok(text.trim_end_matches(['\n', '\r']).to_owned())
}

/// Binds the cascade endpoint and starts linking to other bridges; returns the address other
/// bridges reach it at.
fn start_cascade(
    bridge: &Bridge,
    config: &BridgeNodeConfig,
    identity: &BridgeIdentity,
    bind_ip: IpAddr,
    advertise_ip: IpAddr,
) -> anyhow::Result<Option<SocketAddr>> {
    let endpoint = CascadeEndpoint::bind(
        SocketAddr::new(bind_ip, config.cascade_port),
        identity,
        &CascadeConfig::default(),
    )
    .with_context(|| format!("cannot start cascade links on UDP port {}", config.cascade_port))?;
    let handle = bridge
        .start_cascade(endpoint, CascadeManagerConfig::default())
        .context("cannot start cascade links")?;
    Ok(Some(config.cascade_advertise.unwrap_or_else(|| {
        SocketAddr::new(advertise_ip, handle.local_addr().port())
    })))
}

/// Where relay sockets bind: the listen IP, or any address of the advertised family when the
/// bridge listens on all of them. Relays are advertised at the advertised IP either way, so a
/// bridge behind a 1:1 NAT binds its local address and hands out the external one.
fn relay_bind_ip(bind_ip: IpAddr, advertise_ip: IpAddr) -> IpAddr {
    match (bind_ip.is_unspecified(), advertise_ip) {
        (false, _) if bind_ip.is_ipv4() == advertise_ip.is_ipv4() => bind_ip,
        (false, _) => {
            unreachable!("validate refuses an advertised IP of another family than a specific listen IP")
        }
        (true, IpAddr::V4(_)) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        (true, IpAddr::V6(_)) => IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED),
    }
}

/// The embedded TURN server: it listens beside the bridge and relays from the listen IP,
/// advertising the advertised IP. Its secret derives from this bridge's own key, so control
/// issues credentials it accepts and a credential for another bridge's TURN server is worthless
/// here; its peer policy lets it relay to the bridge's own media address and, once control
/// answers ([`crate::turn_peers`]), to every bridge of the cluster, nothing else.
async fn start_turn(
    bridge: &Bridge,
    config: &BridgeNodeConfig,
    bind_ip: IpAddr,
    advertise_ip: IpAddr,
) -> anyhow::Result<Arc<TurnServer>> {
    // TURN serves the advertised family: on a dual-stack bridge ([::]) its listeners and relays
    // take IPv4, as IPv6 participants rarely need TURN.
    let turn_ip = relay_bind_ip(bind_ip, advertise_ip);
    let turn_config = TurnConfig {
        udp_listen: Some(SocketAddr::new(turn_ip, config.turn_port)),
        tcp_listen: Some(SocketAddr::new(turn_ip, config.turn_port)),
        relay_ip: turn_ip,
        external_ip: (turn_ip != advertise_ip).then_some(advertise_ip),
        secret: turn_rest_secret(&config.bridge_key),
        allow_peer_addrs: bridge.media_addrs(),
        stream_connections_per_source_max: config
            .turn_connections_per_source_max
            .unwrap_or(TurnConfig::default().stream_connections_per_source_max),
        ..TurnConfig::default()
    };
    turn_config.validate().context("TURN configuration")?;
    let server = TurnServer::start(turn_config).await.with_context(|| {
        format!(
            "cannot start the TURN server on port {} (--no-turn runs without it)",
            config.turn_port
        )
    })?;
    Ok(Arc::new(server))
}

impl RunningBridge {
    /// The control session's status: `Registered` once control holds the bridge.
    pub fn status(&self) -> watch::Receiver<SessionStatus> {
        self.agent.status()
    }

    /// Drains, then stops: asks control to move every participant elsewhere, waits until none is
    /// left or the drain timeout passes, says goodbye to the rest (`bye{bridge_shutdown}`), and
    /// stops TURN, the control session and the HTTP server. A registration control refused is
    /// returned as the error.
    pub async fn stop(self) -> Result<(), AgentError> {
        self.agent.drain(0).await;
        let deadline = Instant::now() + self.drain_timeout;
        while self.bridge.stats().shards.participants > 0 && Instant::now() < deadline {
            tokio::time::sleep(DRAIN_POLL).await;
        }
        let left = self.bridge.stats().shards.participants;
        if left > 0 {
            tracing::warn!(left, "drain timed out; the participants left are told to rejoin");
        }
        self.stop_now().await
    }

    /// Stops without draining: participants get `bye{bridge_shutdown}` and rejoin elsewhere.
    pub async fn stop_now(self) -> Result<(), AgentError> {
        self.bridge.shutdown().await;
        if let Some(task) = &self.turn_peers {
            task.abort();
        }
        if let Some(turn) = &self.turn {
            turn.shutdown().await;
        }
        // After the bridge: the leaves of its shutdown reach control before the session closes.
        let result = self.agent.stop().await;
        let _ = self.stop_http.send(true);
        // Signaling sockets may hold the server open; do not wait on them for long.
        let _ = tokio::time::timeout(Duration::from_secs(3), self.http_task).await;
        result
    }
}

/// `bridgemesh bridge`: runs until SIGTERM or SIGINT, then drains and stops; a second signal
/// exits at once. Exits with an error if control refuses the bridge.
pub async fn run(config: BridgeNodeConfig) -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    let running = start(config).await?;
    let id = running.bridge.id().clone();
    // Scripts and tests read the bound address from this line.
    println!("bridgemesh bridge {id} is up: http={}", running.http_addr);
    let mut status = running.status();
    let refused = tokio::select! {
        _ = interrupt.recv() => false,
        _ = terminate.recv() => false,
        _ = status.wait_for(|s| matches!(s, SessionStatus::Refused { .. })) => true,
    };
    if refused {
        running.stop_now().await?;
        return Ok(());
    }
    println!("bridge {id}: draining (a second signal stops at once)");
    tokio::select! {
        result = running.stop() => result?,
        _ = interrupt.recv() => std::process::exit(1),
        _ = terminate.recv() => std::process::exit(1),
    }
    println!("bridge {id} stopped");
    Ok(())
}

#[cfg(test)]
mod tests;
