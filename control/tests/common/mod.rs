//! A control cluster of real nodes in this process, each on its own 127.0.0.1 ports (the public
//! API, and the cluster listener) and data directory, talking Raft over HTTP on mutual TLS with
//! certificates of the cluster's own CA.

#![allow(dead_code)]

use bridgemesh_control::auth::{AdminAuth, AuthConfig, Secret};
use bridgemesh_control::http::ApiConfig;
use bridgemesh_control::node::RoomPolicy;
use bridgemesh_control::raft::NodeId;
use bridgemesh_control::raft::cluster::{ClusterConfig, ClusterHealth, RaftRole};
use bridgemesh_control::rate_limit::JoinLimits;
use bridgemesh_control::service::{ControlService, ControlServiceConfig};
use bridgemesh_control::state::ControlState;
use bridgemesh_pki::ClusterCa;
use bridgemesh_proto::api::JoinResponse;
use bridgemesh_proto::bridge_session::BridgeRegistration;
use bridgemesh_proto::{BridgeId, ParticipantId, RegionId};
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;

pub const ADMIN_TOKEN: &str = "test-admin-token-of-at-least-32-bytes";
pub const SECRET: &[u8] = b"test cluster secret, 32 bytes ok";

pub struct TestCluster {
    pub auth: AuthConfig,
    /// Timing and snapshot spacing every node gets.
    pub template: ClusterConfig,
    pub dir: tempfile::TempDir,
    /// The public API of each node.
    pub addrs: BTreeMap<NodeId, SocketAddr>,
    /// The cluster listener of each node: Raft peers and bridge sessions, mutual TLS.
    pub cluster_addrs: BTreeMap<NodeId, SocketAddr>,
    /// The cluster CA every node's certificate comes from.
    pub ca: ClusterCa,
    pub nodes: BTreeMap<NodeId, ControlService>,
    pub http: reqwest::Client,
    join_limits: JoinLimits,
    /// Whose forwarding headers name the client (none by default).
    pub trusted_proxies: Vec<&'static str>,
}

/// Production timing, with snapshots so frequent, and the log compacted so eagerly, that tests
/// also exercise building, sending, installing and restarting from snapshots.
pub fn test_template() -> ClusterConfig {
    ClusterConfig {
        snapshot_every_entries: 200,
        // Nothing kept: a node that restarts or joins behind gets a snapshot installed.
        logs_kept_after_snapshot: 0,
        ..ClusterConfig::default()
    }
}

impl TestCluster {
    /// `ids` start together as the initial voters.
    pub async fn start(ids: &[NodeId]) -> Self {
        Self::start_with_auth(ids, AuthConfig::default()).await
    }

    pub async fn start_with_auth(ids: &[NodeId], auth: AuthConfig) -> Self {
        Self::start_with(ids, auth, test_template()).await
    }

    pub async fn start_with(ids: &[NodeId], auth: AuthConfig, template: ClusterConfig) -> Self {
        Self::start_with_join_limits(ids, auth, template, JoinLimits::UNLIMITED).await
    }

    pub async fn start_with_join_limits(
        ids: &[NodeId],
        auth: AuthConfig,
        template: ClusterConfig,
        join_limits: JoinLimits,
    ) -> Self {
        Self::start_with_everything(ids, auth, template, join_limits, Vec::new()).await
    }

    pub async fn start_with_everything(
        ids: &[NodeId],
        auth: AuthConfig,
        template: ClusterConfig,
        join_limits: JoinLimits,
        trusted_proxies: Vec<&'static str>,
    ) -> Self {
        let mut cluster = Self {
            join_limits,
            trusted_proxies,
            auth,
            template,
            dir: tempfile::tempdir().unwrap(),
            addrs: BTreeMap::new(),
            cluster_addrs: BTreeMap::new(),
            ca: ClusterCa::generate().unwrap(),
            nodes: BTreeMap::new(),
            http: reqwest::Client::builder().no_proxy().build().unwrap(),
        };
        let mut listeners = Vec::new();
        for id in ids {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let cluster_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            cluster.addrs.insert(*id, listener.local_addr().unwrap());
            cluster
                .cluster_addrs
                .insert(*id, cluster_listener.local_addr().unwrap());
            listeners.push((*id, listener, cluster_listener));
        }
        let members: BTreeMap<NodeId, String> = cluster
            .cluster_addrs
            .iter()
            .map(|(id, addr)| (*id, addr.to_string()))
            .collect();
        for (id, listener, cluster_listener) in listeners {
            cluster
                .launch(id, listener, cluster_listener, members.clone())
                .await;
        }
        cluster
    }

    pub fn data_dir(&self, id: NodeId) -> PathBuf {
        self.dir.path().join(format!("node-{id}"))
    }

    async fn launch(
        &mut self,
        id: NodeId,
        listener: TcpListener,
        cluster_listener: TcpListener,
        initial_members: BTreeMap<NodeId, String>,
    ) {
        let cluster_addr = cluster_listener.local_addr().unwrap();
        let config = ControlServiceConfig {
            cluster: ClusterConfig {
                node_id: id,
                advertise_addr: cluster_addr.to_string(),
                data_dir: self.data_dir(id),
                initial_members,
                ..self.template.clone()
            },
            cluster_secret: SECRET.to_vec(),
            identity: self.ca.issue_control_cert(id).unwrap(),
            api: ApiConfig {
                admin: Some(Arc::new(AdminAuth::new(Secret::new(ADMIN_TOKEN)).unwrap())),
                metrics_token: None,
            },
            auth: self.auth.clone(),
            // The tests' bridges never confirm a placement, and a loaded run can last longer than
            // the default minute after which unconfirmed placements are (rightly) forgotten.
            policy: RoomPolicy {
                unconfirmed_join_ttl_ms: 30 * 60_000,
                ..RoomPolicy::default()
            },
            join_limits: self.join_limits,
            regions: bridgemesh_control::node::RegionsConfig {
                locator: bridgemesh_control::locator::Locator {
                    trusted_proxies: bridgemesh_control::client_ip::TrustedProxies::parse(
                        self.trusted_proxies.iter().copied(),
                    )
                    .unwrap(),
                    ..Default::default()
                },
                ..Default::default()
            },
        };
        // `stop` returns once nothing holds the store: a restart opens it at once.
        let service = ControlService::start(config, listener, cluster_listener)
            .await
            .unwrap_or_else(|err| panic!("node {id} does not start: {err:?}"));
        self.nodes.insert(id, service);
    }

    /// Starts a node that is not yet a member (to be added through the admin API), or restarts a
    /// stopped one from its data directory, on its old port.
    pub async fn start_node(&mut self, id: NodeId) {
        let addr = |addrs: &mut BTreeMap<NodeId, SocketAddr>| match addrs.get(&id) {
            Some(addr) => *addr,
            None => {
                let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
                let addr = probe.local_addr().unwrap();
                drop(probe);
                addrs.insert(id, addr);
                addr
            }
        };
        let (api_addr, cluster_addr) = (addr(&mut self.addrs), addr(&mut self.cluster_addrs));
        let listener = bind_retrying(api_addr).await;
        let cluster_listener = bind_retrying(cluster_addr).await;
        self.launch(id, listener, cluster_listener, BTreeMap::new()).await;
    }

    pub async fn kill(&mut self, id: NodeId) {
        if let Some(node) = self.nodes.remove(&id) {
            node.kill().await;
        }
    }

    pub async fn stop(&mut self, id: NodeId) {
        if let Some(node) = self.nodes.remove(&id) {
            node.stop().await;
        }
    }

    pub fn url(&self, id: NodeId) -> String {
        format!("http://{}", self.addrs[&id])
    }

    pub fn health(&self, id: NodeId) -> ClusterHealth {
        self.nodes[&id].node.cluster().health()
    }

    /// The leader the live nodes agree on, once they do.
    pub async fn wait_for_leader(&self) -> NodeId {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let leaders: BTreeSet<NodeId> = self
                .nodes
                .keys()
                .filter(|id| self.health(**id).role == RaftRole::Leader)
                .copied()
                .collect();
            let known: BTreeSet<Option<NodeId>> =
                self.nodes.keys().map(|id| self.health(*id).leader_id).collect();
            if leaders.len() == 1 && known.len() == 1 {
                return *leaders.iter().next().unwrap();
            }
            assert!(
                Instant::now() < deadline,
                "no leader agreed on within 20 s: {known:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until node `id` has applied everything the leader has.
    pub async fn wait_caught_up(&self, id: NodeId) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let leader = self.wait_for_leader().await;
            let target = self.health(leader).last_applied_index;
            if self.health(id).last_applied_index >= target {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "node {id} did not catch up within 30 s"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn state(&self, id: NodeId) -> ControlState {
        self.nodes[&id].node.snapshot()
    }

    pub async fn register_bridge(&self, via: NodeId) {
        let record = BridgeRegistration {
            id: BridgeId::new("bridge-a").unwrap(),
            region: RegionId::new("test").unwrap(),
            location: None,
            signaling_url: "ws://127.0.0.1:9/bridge/v1/signal".into(),
            media_addresses: Vec::new(),
            turn_urls: Vec::new(),
            capacity: 1_000_000,
            max_participants_per_room: 500,
            cascade_addr: None,
        };
        let response = self
            .http
            .post(format!("{}/api/v1/admin/bridges", self.url(via)))
            .bearer_auth(ADMIN_TOKEN)
            .json(&record)
            .send()
            .await
            .unwrap();
        assert!(
            response.status().is_success(),
            "{}",
            response.text().await.unwrap()
        );
    }

    pub async fn admin(
        &self,
        via: NodeId,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> reqwest::Response {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.url(via)))
            .bearer_auth(ADMIN_TOKEN);
        if let Some(body) = body {
            request = request.json(&body);
        }
        request.send().await.unwrap()
    }
}

/// A bridge's session socket: the WebSocket upgrade on the cluster listener at `cluster_addr`,
/// over mutual TLS as `identity`.
pub type BridgeSocket = tokio_tungstenite::WebSocketStream<
    bridgemesh_pki::tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
>;

pub async fn open_bridge_session(
    cluster_addr: SocketAddr,
    identity: &bridgemesh_pki::ClusterIdentity,
) -> Result<BridgeSocket, String> {
    let config = bridgemesh_pki::tls::control_client_config(identity).map_err(|e| e.to_string())?;
    let tls = bridgemesh_pki::client::connect(&cluster_addr.to_string(), config)
        .await
        .map_err(|e| format!("TLS: {e}"))?;
    let url = format!(
        "wss://{cluster_addr}{}",
        bridgemesh_proto::bridge_session::BRIDGE_SESSION_PATH
    );
    tokio_tungstenite::client_async(url, tls)
        .await
        .map(|(socket, _)| socket)
        .map_err(|e| format!("WebSocket: {e}"))
}

async fn bind_retrying(addr: SocketAddr) -> TcpListener {
    for _ in 0..100 {
        if let Ok(listener) = TcpListener::bind(addr).await {
            return listener;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("cannot bind {addr} again");
}

/// Joins flowing against a changing set of nodes; remembers every acknowledged participant.
pub struct JoinStream {
    pub acknowledged: Arc<Mutex<Vec<ParticipantId>>>,
    pub failed: Arc<Mutex<Vec<String>>>,
    pub targets: Arc<Mutex<Vec<String>>>,
    stop: tokio::sync::watch::Sender<bool>,
    workers: Vec<tokio::task::JoinHandle<()>>,
}

impl JoinStream {
    pub fn start(http: reqwest::Client, targets: Vec<String>, workers: usize) -> Self {
        let acknowledged = Arc::new(Mutex::new(Vec::new()));
        let failed = Arc::new(Mutex::new(Vec::new()));
        let targets = Arc::new(Mutex::new(targets));
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let counter = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let workers = (0..workers)
            .map(|_| {
                let counter = counter.clone();
                let http = http.clone();
                let acknowledged = acknowledged.clone();
                let failed = failed.clone();
                let targets = targets.clone();
                let stopped = stopped.clone();
                tokio::spawn(async move {
                    loop {
                        if *stopped.borrow() {
                            break;
                        }
                        let i = counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let target = {
                            let targets = targets.lock().unwrap();
                            targets[i % targets.len()].clone()
                        };
                        let url = format!("{target}/api/v1/rooms/room-{}/join", i % 97);
                        let answer = http
                            .post(url)
                            .json(&serde_json::json!({"display_name": format!("user {i}")}))
                            .timeout(Duration::from_secs(10))
                            .send()
                            .await;
                        match answer {
                            Ok(response) if response.status().is_success() => {
                                let join: JoinResponse = response.json().await.unwrap();
                                acknowledged.lock().unwrap().push(join.participant_id);
                            }
                            Ok(response) => {
                                let status = response.status();
                                let text = response.text().await.unwrap_or_default();
                                failed.lock().unwrap().push(format!("{status}: {text}"));
                                tokio::time::sleep(Duration::from_millis(20)).await;
                            }
                            Err(err) => {
                                failed.lock().unwrap().push(err.to_string());
                                tokio::time::sleep(Duration::from_millis(20)).await;
                            }
                        }
                    }
                })
            })
            .collect();
        Self {
            acknowledged,
            failed,
            targets,
            stop,
            workers,
        }
    }

    pub fn set_targets(&self, targets: Vec<String>) {
        *self.targets.lock().unwrap() = targets;
    }

    pub fn recent_failures(&self) -> Vec<String> {
        let failed = self.failed.lock().unwrap();
        failed.iter().rev().take(3).cloned().collect()
    }

    pub fn acknowledged_count(&self) -> usize {
        self.acknowledged.lock().unwrap().len()
    }

    pub async fn stop(self) -> (Vec<ParticipantId>, Vec<String>) {
        let _ = self.stop.send(true);
        for worker in self.workers {
            worker.await.unwrap();
        }
        let acknowledged = self.acknowledged.lock().unwrap().clone();
        let failed = self.failed.lock().unwrap().clone();
        (acknowledged, failed)
    }
}

/// Every acknowledged participant is in `state` exactly once.
pub fn assert_each_exactly_once(state: &ControlState, acknowledged: &[ParticipantId]) {
    let mut seen: BTreeMap<&ParticipantId, usize> = BTreeMap::new();
    for room in state.rooms.values() {
        for id in room.participants.keys() {
            *seen.entry(id).or_insert(0) += 1;
        }
    }
    let unique: BTreeSet<&ParticipantId> = acknowledged.iter().collect();
    assert_eq!(unique.len(), acknowledged.len(), "an id was acknowledged twice");
    for id in acknowledged {
        let times = seen.get(id).copied().unwrap_or(0);
        assert_eq!(
            times, 1,
            "acknowledged join {id} is in the state {times} times, not once"
        );
    }
}
