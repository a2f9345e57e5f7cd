//! A running control node: Raft on its data directory, the HTTP server, and the ticker. This is
//! what `bridgemesh control` and `bridgemesh up` start, and what tests start several of.

use crate::auth::{AuthConfig, TokenVerifier};
use crate::http::{ApiConfig, cluster_router, router};
use crate::http_guard::{HttpGuardStats, HttpLimits, serve_guarded};
use crate::node::{ControlNode, RegionsConfig, RoomPolicy};
use crate::raft::cluster::{ClusterConfig, ClusterNode, StartError};
use crate::rate_limit::JoinLimits;
use axum::serve::Listener as _;
use bridgemesh_pki::{ClusterIdentity, ClusterListener, ClusterPeer};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// How often the leader lets time pass in the state (expiries, empty rooms ending).
const TICK_INTERVAL: Duration = Duration::from_secs(2);

#[derive(Clone)]
pub struct ControlServiceConfig {
    pub cluster: ClusterConfig,
    /// Shared by every control node (never by bridges): each bridge's key derives from it, and
    /// the participants' session tokens.
    pub cluster_secret: Vec<u8>,
    /// This node's certificate from the cluster CA (`bridgemesh ca issue-control`): the cluster
    /// listener serves it, Raft requests to peers present it.
    pub identity: ClusterIdentity,
    pub api: ApiConfig,
    /// Which tokens are accepted and whether guests may join.
    pub auth: AuthConfig,
    pub policy: RoomPolicy,
    pub join_limits: JoinLimits,
    /// Geolocation, bridge heartbeats and failure detection, placement policy.
    pub regions: RegionsConfig,
}

pub struct ControlService {
    pub node: Arc<ControlNode>,
    /// The public listener: API, web client, `/health`, `/metrics`.
    pub local_addr: SocketAddr,
    /// The cluster listener (mutual TLS): Raft peers and bridge sessions.
    pub cluster_addr: SocketAddr,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl ControlService {
    /// Starts the node serving its public API on `listener` and its cluster routes on
    /// `cluster_listener` (both already bound, so their ports can be advertised).
    pub async fn start(
        config: ControlServiceConfig,
        listener: TcpListener,
        cluster_listener: TcpListener,
    ) -> Result<Self, StartError> {
        let local_addr = listener.local_addr()?;
        let tokens = TokenVerifier::new(&config.auth).map_err(|err| StartError::Auth(err.to_string()))?;
        let tls = bridgemesh_pki::tls::server_config(&config.identity)
            .map_err(|err| StartError::Certificate(err.to_string()))?;
        let cluster_listener = ClusterListener::new(cluster_listener, tls, config.identity.name().clone())?;
        let cluster_addr = cluster_listener.local_addr()?.addr;
        let cluster = Arc::new(ClusterNode::start(config.cluster.clone(), &config.identity).await?);
        let mut node = ControlNode::new(
            cluster,
            &config.cluster_secret,
            tokens,
            config.policy.clone(),
            config.join_limits,
            config.regions.clone(),
        );
        if let Some(oidc) = &config.auth.oidc {
            let oidc =
                crate::oidc::Oidc::new(oidc.clone(), &config.cluster_secret).map_err(StartError::Auth)?;
            node.set_oidc(oidc);
        }
        let node = Arc::new(node);
        let (stop, stopped) = watch::channel(false);
        let mut tasks = vec![
            serve_http(
                listener,
                router(node.clone(), config.api.clone()),
                stopped.clone(),
            ),
            serve_cluster(cluster_listener, cluster_router(node.clone()), stopped.clone()),
            node.hub().run(stopped.clone()),
        ];
        {
            let node = node.clone();
            let mut stopped = stopped.clone();
            tasks.push(tokio::spawn(async move {
                let mut tick = tokio::time::interval(TICK_INTERVAL);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tokio::select! {
                        _ = tick.tick() => node.tick().await,
                        _ = stopped.changed() => return,
                    }
                }
            }));
        }
        Ok(Self {
            node,
            local_addr,
            cluster_addr,
            stop,
            tasks,
        })
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.local_addr)
    }

    /// Stops serving and shuts Raft down cleanly.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        for task in self.tasks {
            let _ = tokio::time::timeout(Duration::from_secs(3), task).await;
        }
        self.node.cluster().shutdown().await;
    }

    /// Stops at once as far as peers can tell: connections drop mid-request and Raft stops without
    /// handing over. It is not a process crash (closing the store flushes writes not yet synced);
    /// `tests/cli/control_cluster_processes.rs` SIGKILLs a real process for that.
    pub async fn kill(self) {
        for task in &self.tasks {
            task.abort();
        }
        // Bridge sessions run on their own tasks; drop them so their bridges find the new leader.
        self.node.hub().close_all_sessions(None);
        self.node.cluster().shutdown().await;
    }
}

/// Serves `router` on `listener` (with each client's address, and without Nagle's delay) until
/// `stopped` changes, then lets requests in flight finish. Shared by every HTTP server of a node:
/// header and body timeouts and connection caps of [`HttpLimits::default`] (see
/// [`crate::http_guard`]); handlers find the server's [`HttpGuardStats`] in each request's
/// extensions.
pub fn serve_http(
    listener: TcpListener,
    router: axum::Router,
    stopped: watch::Receiver<bool>,
) -> JoinHandle<()> {
    serve_guarded(
        listener,
        router,
        stopped,
        HttpLimits::default(),
        Arc::new(HttpGuardStats::default()),
    )
}

/// Serves the cluster routes on the mutual-TLS listener until `stopped` changes; handlers learn
/// who the peer is from `ConnectInfo<ClusterPeer>`.
fn serve_cluster(
    listener: ClusterListener,
    router: axum::Router,
    mut stopped: watch::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let shutdown = async move {
            let _ = stopped.changed().await;
        };
        let service = router.into_make_service_with_connect_info::<ClusterPeer>();
        if let Err(err) = axum::serve(listener, service)
            .with_graceful_shutdown(shutdown)
            .await
        {
            tracing::error!(%err, "cluster listener stopped");
        }
    })
}
