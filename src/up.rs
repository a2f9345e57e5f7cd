//! `bridgemesh up`: a control node (a one-voter Raft cluster, the same code a production cluster
//! runs) and one or more bridges with their TURN servers, in one process on 127.0.0.1, zero
//! configuration. The bridges are the same as `bridgemesh bridge` runs: each registers with
//! control over its WebSocket session and heartbeats, so failure detection, drains and moves work
//! here as in a deployment (`--bridges 2` to try them).

use anyhow::Context as _;
use bridgemesh_bridge::Bridge;
use bridgemesh_bridge::cascade::ClusterCa;
use bridgemesh_bridge::control_session::SessionStatus;
use bridgemesh_control::ControlNode;
use bridgemesh_control::auth::{AdminAuth, AuthConfig};
use bridgemesh_control::http::ApiConfig;
use bridgemesh_control::node::{RoomPolicy, bridge_key};
use bridgemesh_control::raft::cluster::ClusterConfig;
use bridgemesh_control::rate_limit::JOIN_LIMIT;
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

pub async fn start(config: UpConfig) -> anyhow::Result<Running> {
    if !(1..=UP_BRIDGES_MAX).contains(&config.bridges) {
        anyhow::bail!("--bridges must be between 1 and {UP_BRIDGES_MAX}");
    }
    let mut secret = vec![0u8; 32];
    rand::rng().fill_bytes(&mut secret);
    let admin = AdminAuth::generate(&mut rand::rng());
    let admin_token = admin.secret().expose().to_owned();
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

    let (data_dir, temporary_data) = match &config.data_dir {
        Some(dir) => (dir.clone(), None),
        None => {
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
            api: ApiConfig {
                admin: Some(Arc::new(admin)),
                // Loopback only: whoever can reach it can also read the process.
                metrics_token: None,
            },
            // No keys: open guest access, the room's first participant moderates it.
            auth: AuthConfig::default(),
            policy: RoomPolicy::default(),
            join_limit: JOIN_LIMIT,
            // No GeoIP database: every bridge is in region `local` anyway.
            regions: Default::default(),
        },
        control_listener,
        cluster_listener,
    )
    .await
    .context("cannot start the control node")?;
    let control = control_service.node.clone();

    let mut bridges = Vec::with_capacity(config.bridges);
    for index in 0..config.bridges {
        let id = BridgeId::new(format!("local-{}", index + 1)).expect("valid id");
        let cascade_identity = cluster_ca
            .issue_bridge_cert(&id)
            .context("cannot issue a bridge certificate")?;
        let bridge_config = BridgeNodeConfig {
            control: vec![format!("https://{cluster_addr}")],
            region: Some(RegionId::new("local").expect("valid literal")),
            bridge_key: bridge_key(&secret, &id),
            id: Some(id),
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
            capacity: BridgeNodeConfig::default().capacity.max(config.max_per_room),
            ..BridgeNodeConfig::default()
        };
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
    let turn_directory = first.turn.as_ref().map(|server| TurnDirectory {
        secret: turn_rest_secret(&bridge_key(&secret, first.bridge.id())),
        credential_ttl_s: TurnConfig::default().credential_ttl_s,
        endpoints: vec![TurnEndpoint {
            bridge: Some(first.bridge.id().to_string()),
            urls: server.urls("127.0.0.1"),
        }],
    });
    Ok(Running {
        control_url: format!("http://{control_addr}"),
        bridge_url: format!("http://{}", first.http_addr),
        control,
        bridge: first.bridge.clone(),
        turn: first.turn.clone(),
        bridges,
        admin_token,
        control_service,
        turn_directory,
        _temporary_data: temporary_data,
    })
}

impl Running {
    /// The page to open for `room`.
    pub fn room_url(&self, room: &RoomId) -> String {
        format!("{}/{room}", self.control_url)
    }

    /// Says goodbye to every participant, then stops the bridges and the control node.
    pub async fn stop(self) {
        for bridge in self.bridges {
            if let Err(err) = bridge.stop_now().await {
                tracing::warn!(%err, "a bridge stopped with an error");
            }
        }
        self.control_service.stop().await;
    }
}
