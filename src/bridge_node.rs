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

mod args;
mod config;

pub use args::BridgeArgs;
pub use config::{BridgeNodeConfig, BridgeNodeConfigError};

/// Shards at most by default: past this a bridge is better split in two.
const DEFAULT_SHARDS_MAX: usize = 8;
const DRAIN_TIMEOUT_S_MAX: u64 = 24 * 3600;
/// How often a draining bridge looks whether it is empty (its stats refresh every 100 ms).
const DRAIN_POLL: Duration = Duration::from_millis(100);

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
    let admin_token = match (&config.admin_token, &config.admin_token_file) {
        (Some(token), _) => Some(token.clone()),
        (None, Some(path)) => Some(read_token(path)?),
        (None, None) => None,
    }
    .map(bridgemesh_bridge::recording_http::AdminToken::new)
    .transpose()
    .map_err(|err| anyhow::anyhow!("the bridge's admin token: {err}"))?;
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
        recording: config.recording(),
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
    if let Some(token) = admin_token {
        router = router.merge(bridgemesh_bridge::recording_http::router(bridge.clone(), token));
    }
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
