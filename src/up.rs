//! `bridgemesh up`: a control node (a one-voter Raft cluster, the same code a production cluster
//! runs) and one or more bridges with their TURN servers, in one process on 127.0.0.1, zero
//! configuration. The bridges are the same as `bridgemesh bridge` runs: each registers with
//! control over its WebSocket session and heartbeats, so failure detection, drains and moves work
//! here as in a deployment (`--bridges 2` to try them).
//!
//! With a [`PublicConfig`] (`--domain`) the same process faces the internet instead: HTTPS/WSS and
//! TURN over TLS on 443 with a certificate from ACME or files, port 80 for ACME and redirects,
//! media and TURN on the public interfaces, secrets and Raft data in the state directory (see
//! [`crate::public`]). Control and the bridges' own HTTP servers stay internal.

use anyhow::Context as _;
use bridgemesh_bridge::Bridge;
use bridgemesh_bridge::cascade::ClusterCa;
use bridgemesh_bridge::control_session::SessionStatus;
use bridgemesh_control::ControlNode;
use bridgemesh_control::auth::{AdminAuth, AuthConfig, Secret};
use bridgemesh_control::http::{ApiConfig, MetricsToken};
use bridgemesh_control::node::{RoomPolicy, bridge_key};
use bridgemesh_control::raft::cluster::ClusterConfig;
use bridgemesh_control::rate_limit::JoinLimits;
use bridgemesh_control::service::{ControlService, ControlServiceConfig};
use bridgemesh_proto::bridge_session::turn_rest_secret;
use bridgemesh_proto::{BridgeId, RegionId, RoomId};
use bridgemesh_turn::{TurnConfig, TurnDirectory, TurnEndpoint, TurnServer};
use rand::RngCore;
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

use crate::bridge_node::{self, BridgeNodeConfig, RunningBridge};
use crate::public::state_dir::StateDir;
use crate::public::{BoundFront, PublicConfig, PublicFront};

/// Most bridges `up` starts.
pub const UP_BRIDGES_MAX: usize = 16;
/// How long `up` waits for its bridges to register.
const REGISTRATION_TIMEOUT: Duration = Duration::from_secs(15);

#[derive(Debug, Clone)]
pub struct UpConfig {
    /// Control API and web client.
    pub http_port: u16,
    /// The first bridge's signaling WebSocket (further bridges take the next ports, or any
    /// free port when this is 0).
    pub bridge_http_port: u16,
    /// The first bridge's one media port (further bridges as above).
    pub media_port: u16,
    /// Where the control node keeps its Raft log and snapshots; a fresh temporary directory,
    /// removed on stop, when `None`.
    pub data_dir: Option<PathBuf>,
    /// Run the embedded TURN server beside each bridge and hand out credentials for it.
    pub turn: bool,
    /// The first bridge's TURN over UDP and over TCP (further bridges as above).
    pub turn_port: u16,
    /// Bridges to start (all in region `local`).
    pub bridges: usize,
    /// The first bridge's UDP port for cascade links (further bridges as above).
    pub cascade_port: u16,
    /// Participants of one room a bridge takes; past it the room spans another bridge (when
    /// there is one), cascading between them.
    pub max_per_room: u32,
    /// Shard threads per bridge (`--shards`); `None`: one per core, at most 8.
    pub shards: Option<usize>,
    /// Face the internet under this domain (`--domain`); `None`: loopback only, zero config.
    pub public: Option<PublicConfig>,
    /// The join endpoint's budgets (`--join-burst` and friends; docs/abuse.md).
    pub join_limits: JoinLimits,
    /// Where the bridges record rooms (a directory per bridge inside); `None`: `recordings` in
    /// the state directory with `--domain`, else `bridgemesh-recordings` in the current one.
    pub recordings_dir: Option<PathBuf>,
}

impl Default for UpConfig {
    fn default() -> Self {
        Self {
            http_port: 8080,
            bridge_http_port: 8081,
            media_port: 10000,
            data_dir: None,
            turn: true,
            turn_port: 3478,
            bridges: 1,
            cascade_port: 7710,
            max_per_room: 100,
            shards: None,
            public: None,
            join_limits: JoinLimits::default(),
            recordings_dir: None,
        }
    }
}

impl UpConfig {
    /// Every port chosen by the OS, for tests running side by side.
    pub fn ephemeral() -> Self {
        Self {
            http_port: 0,
            bridge_http_port: 0,
            media_port: 0,
            data_dir: None,
            turn: true,
            turn_port: 0,
            bridges: 1,
            cascade_port: 0,
            max_per_room: 100,
            shards: None,
            public: None,
            join_limits: JoinLimits::default(),
            recordings_dir: None,
        }
    }
}

pub struct Running {
    pub control_url: String,
    /// The first bridge's HTTP server (signaling, `/metrics`).
    pub bridge_url: String,
    pub control: Arc<ControlNode>,
    /// The first bridge.
    pub bridge: Arc<Bridge>,
    /// Every bridge, the first one first.
    pub bridges: Vec<RunningBridge>,
    /// Bearer credential of the admin API, generated for this run.
    pub admin_token: String,
    control_service: ControlService,
    /// The first bridge's embedded TURN server, unless turned off.
    pub turn: Option<Arc<TurnServer>>,
    /// What control hands out for the first bridge: TURN URLs, secret and credential lifetime.
    pub turn_directory: Option<TurnDirectory>,
    /// HTTPS, TURN over TLS and port 80, with `--domain`.
    pub public: Option<PublicFront>,
    _temporary_data: Option<tempfile::TempDir>,
}

/// The port for bridge `index`: the configured one plus `index`, or any free one.
fn nth_port(first: u16, index: usize) -> u16 {
    if first == 0 {
        0
    } else {
        first.saturating_add(index as u16)
    }
}

/// The public side of a start with `--domain`, prepared before anything else starts: settings
/// checked, state directory open, public listeners bound.
struct PublicStart {
    config: PublicConfig,
    state: StateDir,
    public_ip: IpAddr,
    front: BoundFront,
}

impl PublicStart {
    async fn prepare(config: &PublicConfig) -> anyhow::Result<Self> {
        config.validate()?;
        let state = StateDir::open(&config.state_dir)?;
        let public_ip = public_ip(config).await?;
        let front = BoundFront::bind(config).await?;
        Ok(Self {
            config: config.clone(),
            state,
            public_ip,
            front,
        })
    }

    /// `wss://domain[:port]/bridges/<id>/bridge/v1/signal`: the bridge's signaling under the
    /// web client's origin, so one certificate and one open port serve both.
    fn signaling_url(&self, bridge: &BridgeId) -> String {
        let origin = self.front.origin(&self.config);
        let origin = origin.strip_prefix("https://").expect("https origin");
        format!("wss://{origin}{}{SIGNALING_PATH}", bridge_prefix(bridge))
    }
}

/// Where a bridge's signaling routes are mounted on the public listener.
fn bridge_prefix(bridge: &BridgeId) -> String {
    format!("/bridges/{bridge}")
}

const SIGNALING_PATH: &str = "/bridge/v1/signal";

/// The address participants reach media and TURN at: `--public-ip`, else what the domain
/// resolves to. A mismatch or an address this host does not have is only warned about: DNS may
/// not have caught up yet, and a 1:1 NAT address is not on the host by design.
async fn public_ip(config: &PublicConfig) -> anyhow::Result<IpAddr> {
    let resolved: Vec<IpAddr> = match tokio::net::lookup_host((config.domain.as_str(), 443)).await {
        Ok(addrs) => addrs.map(|addr| addr.ip()).collect(),
        Err(err) => {
            tracing::warn!(domain = %config.domain, %err, "the domain does not resolve from this host");
            Vec::new()
        }
    };
    let ip = match config.public_ip {
        Some(ip) => {
            if !resolved.is_empty() && !resolved.contains(&ip) {
                tracing::warn!(
                    domain = %config.domain, public_ip = %ip, ?resolved,
                    "the domain does not resolve to the public IP: browsers will not reach this host"
                );
            }
            ip
        }
        None => resolved
            .iter()
            .find(|ip| ip.is_ipv4())
            .or(resolved.first())
            .copied()
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "{} does not resolve to an address here; set its DNS record or pass --public-ip",
                    config.domain
                )
            })?,
    };
    if std::net::UdpSocket::bind((ip, 0)).is_err() {
        tracing::warn!(
            public_ip = %ip,
            "the public IP is not an address of this host (a NAT in front?): media is advertised there but bound to {}",
            config.bind_ip
        );
    }
    Ok(ip)
}

pub async fn start(config: UpConfig) -> anyhow::Result<Running> {
    start_with_auth(config, AuthConfig::default()).await
}

/// [`start`] with join tokens or a guest policy (`up --guest-policy`: with host accounts,
/// `after_moderator` or `none`; docs/hosts.md).
pub async fn start_with_auth(config: UpConfig, auth: AuthConfig) -> anyhow::Result<Running> {
    auth.validate().map_err(|err| anyhow::anyhow!("{err}"))?;
    if !(1..=UP_BRIDGES_MAX).contains(&config.bridges) {
        anyhow::bail!("--bridges must be between 1 and {UP_BRIDGES_MAX}");
    }
    let public = match &config.public {
        Some(public) => Some(PublicStart::prepare(public).await?),
        None => None,
    };
    let (secret, admin) = match &public {
        // Kept in the state directory: tokens, tickets in flight and the admin credential
        // survive a restart.
        Some(public) => (
            public.state.cluster_secret()?,
            AdminAuth::new(Secret::new(public.state.admin_token()?))
                .context("the stored admin token is unusable")?,
        ),
        None => {
            let mut secret = vec![0u8; 32];
            rand::rng().fill_bytes(&mut secret);
            (secret, AdminAuth::generate(&mut rand::rng()))
        }
    };
    let admin_token = admin.secret().expose().to_owned();
    let public_metrics_token = match &public {
        Some(public) => Some(
            public
                .state
                .metrics_token()
                .and_then(|token| MetricsToken::new(token).map_err(anyhow::Error::msg))
                .map(Arc::new)
                .context("the stored metrics token is unusable")?,
        ),
        None => None,
    };
    let api = ApiConfig {
        admin: Some(Arc::new(admin)),
        // Control's own listener is on loopback, where whoever can reach it can read the process
        // anyway; with --domain the public front demands the state directory's metrics token.
        metrics_token: None,
    };
    // With --domain too: control's own listener is internal; the public one serves its routes.
    let loopback = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let control_listener = TcpListener::bind((loopback, config.http_port))
        .await
        .with_context(|| {
            format!(
                "cannot listen on 127.0.0.1:{} for the control API",
                config.http_port
            )
        })?;
    let control_addr = control_listener.local_addr()?;
    let mut auth = auth;
    if let Some(oidc) = auth.oidc.as_mut()
        && oidc.public_url.is_none()
    {
        // Single sign-on's redirect URL: the address users open.
        oidc.public_url = Some(match &public {
            Some(public) => public.front.origin(&public.config),
            None => format!("http://{control_addr}"),
        });
    }
    // Raft and the bridges' sessions: mutual TLS on a port of its own, chosen by the system.
    let cluster_listener = TcpListener::bind((loopback, 0))
        .await
        .context("cannot listen on 127.0.0.1 for the cluster links")?;
    let cluster_addr = cluster_listener.local_addr()?;
    // A cluster CA for this run only: control's cluster listener, the bridges' sessions with it
    // and their cascade links all authenticate with it.
    let cluster_ca = ClusterCa::generate().context("cannot create the cluster CA")?;
    let control_identity = cluster_ca
        .issue_control_cert(1)
        .context("cannot issue the control node's certificate")?;

    let (data_dir, temporary_data) = match (&public, &config.data_dir) {
        (Some(public), _) => (public.state.raft_dir(), None),
        (None, Some(dir)) => (dir.clone(), None),
        (None, None) => {
            let dir = tempfile::Builder::new()
                .prefix("bridgemesh-up-")
                .tempdir()
                .context("cannot create a temporary data directory")?;
            (dir.path().to_owned(), Some(dir))
        }
    };
    // The same replicated control plane as a production cluster, with one voter.
    let control_service = ControlService::start(
        ControlServiceConfig {
            cluster: ClusterConfig {
                node_id: 1,
                advertise_addr: cluster_addr.to_string(),
                data_dir,
                initial_members: BTreeMap::from([(1, cluster_addr.to_string())]),
                heartbeat_interval_ms: 50,
                election_timeout_min_ms: 150,
                election_timeout_max_ms: 300,
                ..ClusterConfig::default()
            },
            cluster_secret: secret.clone(),
            identity: control_identity,
            api: api.clone(),
            // By default no keys: open guest access, the room's first participant moderates it.
            auth,
            policy: RoomPolicy::default(),
            join_limits: config.join_limits,
            // No GeoIP database: every bridge is in region `local` anyway.
            regions: Default::default(),
        },
        control_listener,
        cluster_listener,
    )
    .await
    .context("cannot start the control node")?;
    let control = control_service.node.clone();

    let recordings_dir = match (&config.recordings_dir, &public) {
        (Some(dir), _) => dir.clone(),
        (None, Some(public)) => public.config.state_dir.join("recordings"),
        (None, None) => PathBuf::from("bridgemesh-recordings"),
    };
    let mut bridges = Vec::with_capacity(config.bridges);
    for index in 0..config.bridges {
        let id = BridgeId::new(format!("local-{}", index + 1)).expect("valid id");
        let cascade_identity = cluster_ca
            .issue_bridge_cert(&id)
            .context("cannot issue a bridge certificate")?;
        let mut bridge_config = BridgeNodeConfig {
            control: vec![format!("https://{cluster_addr}")],
            region: Some(RegionId::new("local").expect("valid literal")),
            bridge_key: bridge_key(&secret, &id),
            id: Some(id.clone()),
            listen: SocketAddr::new(loopback, nth_port(config.bridge_http_port, index)),
            advertise_ip: Some(loopback),
            media_port: nth_port(config.media_port, index),
            turn: config.turn,
            turn_port: nth_port(config.turn_port, index),
            // Every browser of `up` comes from 127.0.0.1: the per-source cap meant for the
            // internet would stop a demo at 16 tabs relaying over TCP.
            turn_connections_per_source_max: Some(1_024),
            cascade_port: nth_port(config.cascade_port, index),
            cascade_identity: Some(cascade_identity),
            max_per_room: config.max_per_room,
            shards: config.shards,
            capacity: BridgeNodeConfig::default().capacity.max(config.max_per_room),
            recordings_dir: Some(recordings_dir.join(id.as_str())),
            admin_token: Some(admin_token.clone()),
            ..BridgeNodeConfig::default()
        };
        if let Some(public) = &public {
            bridge_config.listen =
                SocketAddr::new(public.config.bind_ip, nth_port(config.bridge_http_port, index));
            bridge_config.advertise_ip = Some(public.public_ip);
            bridge_config.public_host = Some(public.config.domain.clone());
            bridge_config.signaling_url = Some(public.signaling_url(&id));
            bridge_config.turn_connections_per_source_max = None;
            // TURN over TLS on the HTTPS port reaches the first bridge's TURN server, which
            // relays to that bridge only.
            if index == 0 && public.config.turn_tls {
                bridge_config.turn_extra_urls = vec![format!(
                    "turns:{}:{}?transport=tcp",
                    public.config.domain,
                    public.front.https_addr.port()
                )];
            }
        }
        let running = match bridge_node::start(bridge_config).await {
            Ok(running) => running,
            Err(err) => {
                for started in bridges {
                    let _ = RunningBridge::stop_now(started).await;
                }
                control_service.stop().await;
                return Err(err.context(format!("cannot start bridge local-{}", index + 1)));
            }
        };
        bridges.push(running);
    }
    for running in &bridges {
        let mut status = running.status();
        let registered = tokio::time::timeout(
            REGISTRATION_TIMEOUT,
            status.wait_for(|s| {
                matches!(
                    s,
                    SessionStatus::Registered { .. } | SessionStatus::Refused { .. }
                )
            }),
        )
        .await;
        let ok = matches!(&registered, Ok(Ok(s)) if matches!(**s, SessionStatus::Registered { .. }));
        drop(registered);
        if !ok {
            anyhow::bail!(
                "bridge {} did not register with the control node",
                running.bridge.id()
            );
        }
    }

    let first = &bridges[0];
    let host = match &public {
        Some(public) => public.config.domain.clone(),
        None => "127.0.0.1".to_owned(),
    };
    let turn_directory = first.turn.as_ref().map(|server| TurnDirectory {
        secret: turn_rest_secret(&bridge_key(&secret, first.bridge.id())),
        credential_ttl_s: TurnConfig::default().credential_ttl_s,
        endpoints: vec![TurnEndpoint {
            bridge: Some(first.bridge.id().to_string()),
            urls: server.urls(&host),
        }],
    });
    let (control_url, public_front) = match public {
        None => (format!("http://{control_addr}"), None),
        Some(public) => {
            let origin = public.front.origin(&public.config);
            let mut router = bridgemesh_control::http::router(control.clone(), api);
            for running in &bridges {
                let mut bridge_router = bridgemesh_bridge::signaling::router(running.bridge.clone());
                // The recordings admin API (`bridgemesh admin recordings --bridge
                // https://DOMAIN/bridges/ID`), behind the admin token.
                if let Ok(token) = bridgemesh_bridge::recording_http::AdminToken::new(admin_token.clone()) {
                    bridge_router = bridge_router.merge(bridgemesh_bridge::recording_http::router(
                        running.bridge.clone(),
                        token,
                    ));
                }
                router = router.nest(&bridge_prefix(running.bridge.id()), bridge_router);
            }
            // On the internet /metrics (control's and the bridges') needs a token.
            if let Some(token) = public_metrics_token.clone() {
                router = bridgemesh_control::http::require_metrics_token(router, token);
            }
            let turn = first.turn.clone().filter(|_| public.config.turn_tls);
            match public
                .front
                .serve(&public.config, &public.state, router, turn)
                .await
            {
                Ok(front) => (origin, Some(front)),
                Err(err) => {
                    for started in bridges {
                        let _ = RunningBridge::stop_now(started).await;
                    }
                    control_service.stop().await;
                    return Err(err);
                }
            }
        }
    };
    let first = &bridges[0];
    Ok(Running {
        control_url,
        bridge_url: format!("http://{}", first.http_addr),
        control,
        bridge: first.bridge.clone(),
        turn: first.turn.clone(),
        turn_directory,
        public: public_front,
        bridges,
        admin_token,
        control_service,
        _temporary_data: temporary_data,
    })
}

impl Running {
    /// What must be open inbound for participants on other networks, one line each.
    pub fn firewall(&self) -> Vec<String> {
        let mut lines = Vec::new();
        if let Some(front) = &self.public {
            lines.push(format!(
                "TCP {}: HTTPS, WSS signaling and TURN over TLS",
                front.https_addr.port()
            ));
            lines.push(format!(
                "TCP {}: ACME validation and the redirect to https",
                front.http_addr.port()
            ));
        }
        for bridge in &self.bridges {
            let id = bridge.bridge.id();
            lines.push(format!(
                "UDP {}: media of bridge {id}",
                bridge.bridge.media_addr().port()
            ));
            if let Some(turn) = &bridge.turn {
                let ports: Vec<String> = [
                    turn.udp_addr().map(|a| format!("UDP {}", a.port())),
                    turn.tcp_addr().map(|a| format!("TCP {}", a.port())),
                ]
                .into_iter()
                .flatten()
                .collect();
                lines.push(format!("{}: TURN of bridge {id}", ports.join(", ")));
            }
        }
        lines
    }

    /// The page to open for `room`.
    pub fn room_url(&self, room: &RoomId) -> String {
        format!("{}/{room}", self.control_url)
    }

    /// Says goodbye to every participant, then stops the bridges and the control node.
    pub async fn stop(self) {
        if let Some(front) = self.public {
            front.stop().await;
        }
        for bridge in self.bridges {
            if let Err(err) = bridge.stop_now().await {
                tracing::warn!(%err, "a bridge stopped with an error");
            }
        }
        self.control_service.stop().await;
    }
}
