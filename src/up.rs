//! `bridgemesh up`: a control node (a one-voter Raft cluster, the same code a production cluster
//! runs), a bridge and its TURN server in one process on 127.0.0.1, zero configuration.

use anyhow::Context as _;
use bridgemesh_bridge::{Bridge, BridgeConfig, BridgeEvent};
use bridgemesh_control::ControlNode;
use bridgemesh_control::auth::{AdminAuth, AuthConfig};
use bridgemesh_control::http::ApiConfig;
use bridgemesh_control::node::{BridgeAction, RoomPolicy};
use bridgemesh_control::raft::cluster::ClusterConfig;
use bridgemesh_control::rate_limit::JOIN_LIMIT;
use bridgemesh_control::service::{ControlService, ControlServiceConfig, serve_http};
use bridgemesh_control::state::{BridgeRecord, BridgeStatus};
use bridgemesh_proto::{BridgeId, RoomId};
use bridgemesh_turn::{TurnConfig, TurnDirectory, TurnEndpoint, TurnServer};
use rand::RngCore;
use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

#[derive(Debug, Clone)]
pub struct UpConfig {
    /// Control API and web client.
    pub http_port: u16,
    /// The bridge's signaling WebSocket.
    pub bridge_http_port: u16,
    /// The bridge's one media port.
    pub media_port: u16,
    /// Where the control node keeps its Raft log and snapshots; a fresh temporary directory,
    /// removed on stop, when `None`.
    pub data_dir: Option<PathBuf>,
    /// Run the embedded TURN server and hand out credentials for it in join responses.
    pub turn: bool,
    /// TURN over UDP and over TCP (the same port number for both unless 0).
    pub turn_port: u16,
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
        }
    }
}

pub struct Running {
    pub control_url: String,
    pub bridge_url: String,
    pub control: Arc<ControlNode>,
    pub bridge: Arc<Bridge>,
    /// Bearer credential of the admin API, generated for this run.
    pub admin_token: String,
    control_service: ControlService,
    /// The embedded TURN server, unless turned off.
    pub turn: Option<Arc<TurnServer>>,
    /// What control hands out: TURN URLs, secret and credential lifetime.
    pub turn_directory: Option<TurnDirectory>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    _temporary_data: Option<tempfile::TempDir>,
}

pub async fn start(config: UpConfig) -> anyhow::Result<Running> {
    let mut secret = vec![0u8; 32];
    rand::rng().fill_bytes(&mut secret);
    let admin = AdminAuth::generate(&mut rand::rng());
    let admin_token = admin.secret().expose().to_owned();
    let loopback = Ipv4Addr::LOCALHOST;
    let control_listener = TcpListener::bind((loopback, config.http_port))
        .await
        .with_context(|| {
            format!(
                "cannot listen on 127.0.0.1:{} for the control API",
                config.http_port
            )
        })?;
    let bridge_listener = TcpListener::bind((loopback, config.bridge_http_port))
        .await
        .with_context(|| {
            format!(
                "cannot listen on 127.0.0.1:{} for bridge signaling",
                config.bridge_http_port
            )
        })?;
    let control_addr = control_listener.local_addr()?;
    let bridge_addr = bridge_listener.local_addr()?;

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
                advertise_addr: control_addr.to_string(),
                data_dir,
                initial_members: BTreeMap::from([(1, control_addr.to_string())]),
                heartbeat_interval_ms: 50,
                election_timeout_min_ms: 150,
                election_timeout_max_ms: 300,
                ..ClusterConfig::default()
            },
            cluster_secret: secret.clone(),
            api: ApiConfig {
                admin: Some(Arc::new(admin)),
            },
            // No keys: open guest access, the room's first participant moderates it.
            auth: AuthConfig::default(),
            policy: RoomPolicy::default(),
            join_limit: JOIN_LIMIT,
        },
        control_listener,
    )
    .await
    .context("cannot start the control node")?;
    let control = control_service.node.clone();

    let bridge_id = BridgeId::new("local-1").expect("valid literal");
    let bridge_config = BridgeConfig::loopback(
        bridge_id.clone(),
        bridgemesh_control::node::ticket_key(&secret),
        config.media_port,
    );
    let bridge = Bridge::start(bridge_config.clone()).context("cannot start the bridge")?;
    control
        .register_bridge(BridgeRecord {
            id: bridge_id,
            region: bridge_config.region.clone(),
            signaling_url: format!("ws://{bridge_addr}/bridge/v1/signal"),
            capacity: bridge_config.max_participants as u32,
            max_participants_per_room: bridge_config.max_participants_per_room as u32,
            status: BridgeStatus::Up,
            location: None,
            media_addresses: vec![bridge.media_addr().to_string()],
        })
        .await
        .map_err(|err| anyhow::anyhow!("cannot register the bridge with control: {err}"))?;

    let (turn, turn_directory) = if config.turn {
        let (server, directory) = start_turn(&bridge, config.turn_port).await?;
        control.set_turn(Some(directory.clone()));
        (Some(server), Some(directory))
    } else {
        (None, None)
    };

    let (stop, stopped) = watch::channel(false);
    let mut tasks = Vec::new();
    let mut bridge_router = bridgemesh_bridge::signaling::router(bridge.clone());
    if let Some(turn) = turn.clone() {
        // The TURN server is part of the bridge, so its metrics are served beside the bridge's.
        bridge_router = bridge_router.route(
            "/metrics/turn",
            axum::routing::get(move || {
                let turn = turn.clone();
                async move { turn.stats().render_prometheus() }
            }),
        );
    }
    tasks.push(serve_http(bridge_listener, bridge_router, stopped.clone()));
    if let Some(mut events) = bridge.take_events() {
        let control = control.clone();
        let bridge = bridge.clone();
        tasks.push(tokio::spawn(async move {
            while let Some(event) = events.recv().await {
                apply_bridge_event(&control, &bridge, event).await;
            }
        }));
    }
    {
        let mut actions = control.take_bridge_actions();
        let bridge = bridge.clone();
        let mut stopped = stopped.clone();
        tasks.push(tokio::spawn(async move {
            loop {
                tokio::select! {
                    action = actions.recv() => match action {
                        Some(action) => carry_out(&bridge, action),
                        None => return,
                    },
                    _ = stopped.changed() => return,
                }
            }
        }));
    }
    Ok(Running {
        control_url: format!("http://{control_addr}"),
        bridge_url: format!("http://{bridge_addr}"),
        control,
        bridge,
        admin_token,
        control_service,
        turn,
        turn_directory,
        stop,
        tasks,
        _temporary_data: temporary_data,
    })
}

/// A moderator's committed decision, carried out by the one local bridge.
fn carry_out(bridge: &Bridge, action: BridgeAction) {
    match action {
        BridgeAction::Kick {
            room, participant, ..
        } => bridge.kick(&room, &participant),
        BridgeAction::MuteAll { room, by, .. } => bridge.request_mute_all(&room, &by),
        BridgeAction::EndRoom { room, .. } => bridge.end_room(&room),
    }
}

/// The bridge's TURN server on 127.0.0.1, relaying from 127.0.0.1. Its deny policy refuses every
/// loopback address but one: the bridge's media address, exact ip:port.
async fn start_turn(bridge: &Bridge, port: u16) -> anyhow::Result<(Arc<TurnServer>, TurnDirectory)> {
    let loopback = std::net::IpAddr::V4(Ipv4Addr::LOCALHOST);
    let mut secret = vec![0u8; 32];
    rand::rng().fill_bytes(&mut secret);
    let config = TurnConfig {
        udp_listen: Some(SocketAddr::new(loopback, port)),
        tcp_listen: Some(SocketAddr::new(loopback, port)),
        relay_ip: loopback,
        secret: secret.clone(),
        allow_peer_addrs: vec![bridge.media_addr()],
        // Every browser of `up` comes from 127.0.0.1: the per-source cap meant for the internet
        // would stop a demo at 16 tabs relaying over TCP.
        stream_connections_per_source_max: 1_024,
        ..TurnConfig::default()
    };
    let credential_ttl_s = config.credential_ttl_s;
    let server = TurnServer::start(config).await.with_context(|| {
        format!("cannot start the TURN server on 127.0.0.1:{port} (--no-turn runs without it)")
    })?;
    let directory = TurnDirectory {
        secret,
        credential_ttl_s,
        endpoints: vec![TurnEndpoint {
            bridge: Some(bridge.id().to_string()),
            urls: server.urls("127.0.0.1"),
        }],
    };
    Ok((Arc::new(server), directory))
}

async fn apply_bridge_event(control: &ControlNode, bridge: &Bridge, event: BridgeEvent) {
    match event {
        BridgeEvent::ParticipantJoined { room, participant } => {
            if let Err(err) = control
                .participant_connected(room.clone(), participant.clone())
                .await
            {
                // Control no longer holds this participant: its meeting ended, or it was kicked or
                // expired, after its ticket was issued. Its ticket must not outlive that decision.
                if err.code == bridgemesh_proto::api::ErrorCode::NotFound {
                    // No such room any more: its meeting ended, and whoever reaches the bridge
                    // with an older ticket is told so. Otherwise this participant was removed.
                    if control.read(|state| state.rooms.contains_key(&room)) {
                        tracing::info!(%room, %participant, "removing a participant control does not hold");
                        bridge.kick(&room, &participant);
                    } else {
                        tracing::info!(%room, "ending a meeting control has already ended");
                        bridge.end_room(&room);
                    }
                } else {
                    tracing::warn!(%err, "cannot confirm a participant with control");
                }
            }
        }
        BridgeEvent::ParticipantLeft { room, participant } => {
            if let Err(err) = control.participant_left(room, participant).await {
                // Already gone from control: expired, kicked, or its meeting ended.
                tracing::debug!(%err, "a leave did not change the room state");
            }
        }
    }
}

impl Running {
    /// The page to open for `room`.
    pub fn room_url(&self, room: &RoomId) -> String {
        format!("{}/{room}", self.control_url)
    }

    /// Says goodbye to every participant, then stops the servers and the control node.
    pub async fn stop(self) {
        self.bridge.shutdown().await;
        if let Some(turn) = &self.turn {
            turn.shutdown().await;
        }
        let _ = self.stop.send(true);
        for task in self.tasks {
            // WebSocket sessions may hold a server open; do not wait on them forever.
            let _ = tokio::time::timeout(Duration::from_secs(3), task).await;
        }
        self.control_service.stop().await;
    }
}
