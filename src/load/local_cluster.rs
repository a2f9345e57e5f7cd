//! A cluster of real processes on 127.0.0.1 that `bridgemesh load --local-cluster` starts for
//! itself, so that it can kill parts of it: `control_nodes` `bridgemesh control` processes (one
//! openraft cluster) and `bridges` `bridgemesh bridge` processes registered with all of them,
//! each a child of this process running the same binary, in a fresh temporary directory with
//! generated secrets and a cascade CA. Dropping the [`LocalCluster`] SIGKILLs every child and
//! removes the directory.
//!
//! The participants reach control through a [`ControlFront`]: a TCP relay that hands each
//! connection to the first control node accepting it, as a load balancer in front of a control
//! cluster does, so that a killed control node costs them no more than it would behind one.

use super::{LoadError, bridge_metrics};
use bridgemesh_bridge::cascade::pki::ClusterCa;
use bridgemesh_control::auth::Secret;
use bridgemesh_proto::{BridgeId, RoomId};
use rand::RngCore as _;
use serde::{Deserialize, Serialize};
use std::net::{IpAddr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

mod child_process;
mod control_front;

pub use child_process::ChildProcess;
pub use control_front::ControlFront;

/// Most control nodes: a Raft cluster larger than 7 voters buys nothing but slower commits.
pub const CONTROL_NODES_MAX: usize = 7;
/// Most bridges (each is a process with its own threads on this machine).
pub const BRIDGES_MAX: usize = 16;
/// Most connections the control front relays at once; more wait for a slot.
const FRONT_CONNECTIONS_MAX: usize = 1024;
/// A relayed connection that carries nothing for this long is closed, so the participants' idle
/// keep-alive connections give their slots back (their HTTP client opens a new one when needed).
const FRONT_IDLE_TIMEOUT: Duration = Duration::from_secs(5);
/// Bytes one read moves through the front.
const FRONT_BUFFER_BYTES: usize = 16 * 1024;
/// Bound on one admin call while starting or watching the cluster.
const ADMIN_TIMEOUT: Duration = Duration::from_secs(2);
/// How often startup polls control.
const POLL_INTERVAL: Duration = Duration::from_millis(50);
/// How much of a process's log an error shows.
const LOG_TAIL_BYTES: usize = 4000;

/// What cluster to start.
#[derive(Debug, Clone)]
pub struct LocalClusterConfig {
    pub control_nodes: usize,
    pub bridges: usize,
    /// The `bridgemesh` binary the children run; `None`: this process's own executable
    /// (`std::env::current_exe`), which is right for `bridgemesh load` but not for a test
    /// binary.
    pub binary: Option<PathBuf>,
    /// Participants each bridge takes.
    pub bridge_capacity: u32,
    /// Participants of one room each bridge takes.
    pub max_per_room: u32,
    /// Bound on the cluster electing a leader and every bridge registering.
    pub startup_timeout_s: u64,
}

impl Default for LocalClusterConfig {
    fn default() -> Self {
        Self {
            control_nodes: 3,
            bridges: 3,
            binary: None,
            bridge_capacity: 1000,
            max_per_room: 100,
            startup_timeout_s: 30,
        }
    }
}

impl LocalClusterConfig {
    pub fn validate(&self) -> Result<(), LocalClusterError> {
        let bad = |message: String| Err(LocalClusterError::Config(message));
        if !(1..=CONTROL_NODES_MAX).contains(&self.control_nodes) {
            return bad(format!("control nodes must be 1 to {CONTROL_NODES_MAX}"));
        }
        if !(1..=BRIDGES_MAX).contains(&self.bridges) {
            return bad(format!("bridges must be 1 to {BRIDGES_MAX}"));
        }
        if self.bridge_capacity == 0 || self.max_per_room == 0 {
            return bad("bridge capacity and participants per room must be at least 1".into());
        }
        if !(1..=600).contains(&self.startup_timeout_s) {
            return bad("the startup timeout must be 1 to 600 s".into());
        }
        if let Some(binary) = &self.binary
            && !binary.is_file()
        {
            return bad(format!("no bridgemesh binary at {}", binary.display()));
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LocalClusterError {
    #[error("invalid local cluster settings: {0}")]
    Config(String),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cluster CA: {0}")]
    Ca(String),
    /// The cluster did not come up; `logs` holds the tails of its processes' logs.
    #[error("the local cluster did not start: {what}\n{logs}")]
    Startup { what: String, logs: String },
}

impl From<LocalClusterError> for LoadError {
    fn from(error: LocalClusterError) -> Self {
        LoadError::LocalCluster(error.to_string())
    }
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> LocalClusterError {
    let what = what.into();
    move |source| LocalClusterError::Io { what, source }
}

/// A TCP port nothing listens on at the moment of asking.
pub fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// One control node of the cluster.
struct ControlProcess {
    id: u64,
    port: u16,
    /// The cluster listener (mutual TLS): Raft peers and bridge sessions.
    cluster_port: u16,
    process: ChildProcess,
}

impl ControlProcess {
    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn cluster_url(&self) -> String {
        format!("https://127.0.0.1:{}", self.cluster_port)
    }
}

/// A process of the cluster, as the report names it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClusterProcess {
    /// `control-1`, `bridge-2`, …
    pub name: String,
    /// While it ran; `None` if it was not running when the report was made.
    pub pid: Option<u32>,
}

/// The cluster a run started, as the report names it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClusterReport {
    /// Where its secrets, data and logs were (removed at the end).
    pub dir: PathBuf,
    /// Every process started, with the pid of its last start.
    pub processes: Vec<ClusterProcess>,
}

/// The running cluster. Dropping it kills every process and removes the directory.
pub struct LocalCluster {
    // Field order matters for Drop: the processes die before their directory goes.
    controls: Vec<ControlProcess>,
    bridges: Vec<(BridgeId, ChildProcess)>,
    front: ControlFront,
    admin_token: String,
    http: reqwest::Client,
    /// Every pid any start gave, for the report (a restarted process has a new one).
    pids: Vec<(String, u32)>,
    dir: tempfile::TempDir,
}

/// A hex string of `bytes` random bytes.
fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut buf);
    hex::encode(buf)
}

/// Writes `text` to a file only its owner may read.
fn write_private(path: &Path, text: &str) -> Result<(), LocalClusterError> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o600)
        .open(path)
        .map_err(io(format!("cannot create {}", path.display())))?;
    file.write_all(text.as_bytes())
        .map_err(io(format!("cannot write {}", path.display())))
}

impl LocalCluster {
    /// Generates the secrets and the CA, starts the control nodes and waits for a leader, starts
    /// the bridges and waits until control lists each one `up`, then opens the front. On an
    /// error (or when the future is dropped) whatever was started is killed again.
    pub async fn start(config: &LocalClusterConfig) -> Result<Self, LocalClusterError> {
        config.validate()?;
        let binary = match &config.binary {
            Some(binary) => binary.clone(),
            None => std::env::current_exe().map_err(io("cannot find this program's executable"))?,
        };
        let dir = tempfile::Builder::new()
            .prefix("bridgemesh-load-")
            .tempdir()
            .map_err(io("cannot create a temporary directory"))?;
        let path = dir.path().to_owned();
        let secret = path.join("cluster-secret");
        let admin = path.join("admin-token");
        let admin_token = bridgemesh_control::auth::AdminAuth::generate(&mut rand::rng())
            .secret()
            .expose()
            .to_owned();
        write_private(&secret, &format!("{}\n", random_hex(32)))?;
        write_private(&admin, &format!("{admin_token}\n"))?;
        let ca = ClusterCa::generate().map_err(|e| LocalClusterError::Ca(e.to_string()))?;
        ca.save(&path.join("ca"))
            .map_err(|e| LocalClusterError::Ca(e.to_string()))?;

        let free_ports = || {
            (0..config.control_nodes)
                .map(|_| free_port())
                .collect::<Result<Vec<u16>, _>>()
                .map_err(io("cannot find a free port"))
        };
        let ports = free_ports()?;
        let cluster_ports = free_ports()?;
        let peers: String = cluster_ports
            .iter()
            .enumerate()
            .map(|(i, port)| format!("{} = \"127.0.0.1:{port}\"\n", i + 1))
            .collect();
        let mut controls = Vec::with_capacity(ports.len());
        for (i, (&port, &cluster_port)) in ports.iter().zip(&cluster_ports).enumerate() {
            let id = i as u64 + 1;
            let certs = path.join("certs").join(format!("control-{id}"));
            ca.issue_control_cert(id)
                .and_then(|identity| identity.save_control(&certs))
                .map_err(|e| LocalClusterError::Ca(e.to_string()))?;
            let toml = format!(
                "node_id = {id}\nlisten = \"127.0.0.1:{port}\"\n\
                 cluster_listen = \"127.0.0.1:{cluster_port}\"\ncert_dir = {certs:?}\ndata_dir = {data:?}\n\
                 cluster_secret_file = {secret:?}\nadmin_token_file = {admin:?}\n\n[peers]\n{peers}",
                certs = certs.display().to_string(),
                data = path.join(format!("control-{id}")).display().to_string(),
                secret = secret.display().to_string(),
                admin = admin.display().to_string(),
            );
            let config_path = path.join(format!("control-{id}.toml"));
            std::fs::write(&config_path, toml).map_err(io("cannot write a control configuration"))?;
            let name = format!("control-{id}");
            let process = ChildProcess::spawn(
                &binary,
                &name,
                &path,
                vec![
                    "control".into(),
                    "--config".into(),
                    config_path.display().to_string(),
                ],
            )
            .map_err(io(format!("cannot start {}", binary.display())))?;
            controls.push(ControlProcess {
                id,
                port,
                cluster_port,
                process,
            });
        }
        let front = ControlFront::start(ports.clone())
            .await
            .map_err(io("cannot open the control front"))?;
        let mut cluster = Self {
            controls,
            bridges: Vec::with_capacity(config.bridges),
            front,
            admin_token,
            http: reqwest::Client::builder()
                .no_proxy()
                .timeout(ADMIN_TIMEOUT)
                .build()
                .map_err(|e| LocalClusterError::Config(format!("HTTP client: {e}")))?,
            pids: Vec::new(),
            dir,
        };
        cluster.note_pids();
        let deadline = Instant::now() + Duration::from_secs(config.startup_timeout_s);
        while cluster.leader().await.is_none() {
            cluster.check_startup("a control leader all nodes agree on", deadline)?;
            tokio::time::sleep(POLL_INTERVAL).await;
        }

        let cluster_urls: Vec<String> = cluster.controls.iter().map(ControlProcess::cluster_url).collect();
        for i in 1..=config.bridges {
            let id =
                BridgeId::new(format!("bridge-{i}")).map_err(|e| LocalClusterError::Config(e.to_string()))?;
            // Each bridge's own key: it checks that bridge's tickets and no other's.
            let bridge_key = crate::bridge_node::bridge_key_hex(&secret, &id)
                .map_err(|e| LocalClusterError::Config(format!("bridge key: {e:#}")))?;
            let bridge_key_file = path.join(format!("bridge-key-{id}"));
            write_private(&bridge_key_file, &format!("{bridge_key}\n"))?;
            let certs = path.join("certs").join(id.as_str());
            ca.issue_bridge_cert(&id)
                .and_then(|identity| identity.save(&certs))
                .map_err(|e| LocalClusterError::Ca(e.to_string()))?;
            let mut args = loopback_bridge_args(
                &cluster_urls,
                id.as_str(),
                "local",
                &bridge_key_file,
                config.bridge_capacity,
                config.max_per_room.min(config.bridge_capacity),
            );
            args.extend([
                "--cascade-cert-dir".into(),
                certs.display().to_string(),
                "--cascade-port".into(),
                "0".into(),
            ]);
            let process = ChildProcess::spawn(&binary, id.as_str(), &path, args)
                .map_err(io(format!("cannot start {}", binary.display())))?;
            cluster.bridges.push((id, process));
        }
        cluster.note_pids();
        loop {
            let up = cluster.bridges_up().await;
            if cluster.bridges.iter().all(|(id, _)| up.contains(id)) {
                break;
            }
            cluster.check_startup("every bridge registered and up", deadline)?;
            tokio::time::sleep(POLL_INTERVAL).await;
        }
        Ok(cluster)
    }

    /// An error naming `what` with the logs if the deadline passed or a process exited.
    fn check_startup(&mut self, what: &str, deadline: Instant) -> Result<(), LocalClusterError> {
        let exited = self
            .controls
            .iter_mut()
            .map(|c| &mut c.process)
            .chain(self.bridges.iter_mut().map(|(_, p)| p))
            .find_map(|p| p.exited().map(|status| format!("{} exited ({status})", p.name)));
        if exited.is_none() && Instant::now() < deadline {
            return Ok(());
        }
        let mut logs = String::new();
        for process in self.processes_mut() {
            logs.push_str(&format!("--- {} log:\n{}\n", process.name, process.log_tail()));
        }
        Err(LocalClusterError::Startup {
            what: match exited {
                Some(exited) => format!("waiting for {what}, {exited}"),
                None => format!("no {what} in time"),
            },
            logs,
        })
    }

    fn processes_mut(&mut self) -> impl Iterator<Item = &mut ChildProcess> {
        self.controls
            .iter_mut()
            .map(|c| &mut c.process)
            .chain(self.bridges.iter_mut().map(|(_, p)| p))
    }

    fn note_pids(&mut self) {
        let started: Vec<(String, u32)> = self
            .controls
            .iter()
            .map(|c| &c.process)
            .chain(self.bridges.iter().map(|(_, p)| p))
            .filter_map(|p| Some((p.name.clone(), p.pid()?)))
            .collect();
        for entry in started {
            if !self.pids.contains(&entry) {
                self.pids.push(entry);
            }
        }
    }

    /// Where participants reach control: the front.
    pub fn control_url(&self) -> String {
        self.front.url()
    }

    /// Each control node directly.
    pub fn control_urls(&self) -> Vec<String> {
        self.controls.iter().map(ControlProcess::url).collect()
    }

    pub fn admin_token(&self) -> Secret {
        Secret::new(self.admin_token.clone())
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The leader every running control node names, if they agree on one.
    pub async fn leader(&self) -> Option<u64> {
        let mut agreed = None;
        for control in self.controls.iter().filter(|c| c.process.is_running()) {
            let seen = self.leader_seen_by(control).await?;
            if agreed.is_some_and(|a| a != seen) {
                return None;
            }
            agreed = Some(seen);
        }
        agreed
    }

    /// A leader named by any running control node other than `except`.
    pub async fn leader_other_than(&self, except: u64) -> Option<u64> {
        for control in self.controls.iter().filter(|c| c.process.is_running()) {
            if let Some(leader) = self.leader_seen_by(control).await
                && leader != except
            {
                return Some(leader);
            }
        }
        None
    }

    async fn leader_seen_by(&self, control: &ControlProcess) -> Option<u64> {
        let health: serde_json::Value = self
            .http
            .get(format!("{}/api/v1/admin/cluster", control.url()))
            .bearer_auth(&self.admin_token)
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        health["leader_id"].as_u64()
    }

    /// How many participants control holds in `room` (placed or connected), by a linearizable
    /// read through the front; `None` if control did not answer.
    pub async fn room_participants(&self, room: &RoomId) -> Option<u64> {
        let rooms: serde_json::Value = self
            .http
            .get(format!("{}/api/v1/admin/rooms", self.control_url()))
            .bearer_auth(&self.admin_token)
            .send()
            .await
            .ok()?
            .error_for_status()
            .ok()?
            .json()
            .await
            .ok()?;
        rooms
            .as_array()?
            .iter()
            .find(|r| r["room"].as_str() == Some(room.as_str()))
            .map_or(Some(0), |r| r["participants"].as_u64())
    }

    /// The bridges control lists `up` (asking the front).
    async fn bridges_up(&self) -> Vec<BridgeId> {
        match bridge_metrics::list_bridges(&self.control_url(), &self.admin_token()).await {
            Ok(bridges) => bridges
                .into_iter()
                .filter(|b| b.status == "up")
                .map(|b| b.id)
                .collect(),
            Err(_) => Vec::new(),
        }
    }

    /// SIGKILLs control node `id`; false if it is not running.
    pub fn kill_control(&mut self, id: u64) -> bool {
        match self.controls.iter_mut().find(|c| c.id == id) {
            Some(control) if control.process.is_started() => {
                control.process.kill();
                true
            }
            _ => false,
        }
    }

    /// SIGKILLs bridge `id`; false if it is not running.
    pub fn kill_bridge(&mut self, id: &BridgeId) -> bool {
        match self.bridges.iter_mut().find(|(b, _)| b == id) {
            Some((_, process)) if process.is_started() => {
                process.kill();
                true
            }
            _ => false,
        }
    }

    /// Starts control node `id` again from its data directory.
    pub fn restart_control(&mut self, id: u64) -> Result<(), LocalClusterError> {
        let control = self
            .controls
            .iter_mut()
            .find(|c| c.id == id)
            .ok_or_else(|| LocalClusterError::Config(format!("no control node {id}")))?;
        control
            .process
            .start()
            .map_err(io("cannot restart a control node"))?;
        self.note_pids();
        Ok(())
    }

    /// Starts bridge `id` again with the same id and certificate.
    pub fn restart_bridge(&mut self, id: &BridgeId) -> Result<(), LocalClusterError> {
        let (_, process) = self
            .bridges
            .iter_mut()
            .find(|(b, _)| b == id)
            .ok_or_else(|| LocalClusterError::Config(format!("no bridge {id}")))?;
        process.start().map_err(io("cannot restart a bridge"))?;
        self.note_pids();
        Ok(())
    }

    pub fn report(&self) -> ClusterReport {
        ClusterReport {
            dir: self.dir.path().to_owned(),
            processes: self
                .pids
                .iter()
                .map(|(name, pid)| ClusterProcess {
                    name: name.clone(),
                    pid: Some(*pid),
                })
                .collect(),
        }
    }

    /// Kills every process and removes the directory (what dropping does, said out loud).
    pub fn stop(self) {
        drop(self);
    }
}

/// The arguments of a `bridgemesh bridge` on 127.0.0.1 with every port chosen by the OS and no
/// TURN, registering with `control_urls`: the local cluster's bridges and the process tests'.
pub fn loopback_bridge_args(
    control_urls: &[String],
    id: &str,
    region: &str,
    bridge_key_file: &Path,
    capacity: u32,
    max_per_room: u32,
) -> Vec<String> {
    let mut args: Vec<String> = vec!["bridge".into()];
    for url in control_urls {
        args.extend(["--control".into(), url.clone()]);
    }
    args.extend([
        "--id".into(),
        id.to_owned(),
        "--region".into(),
        region.to_owned(),
        "--bridge-key-file".into(),
        bridge_key_file.display().to_string(),
        "--listen".into(),
        "127.0.0.1:0".into(),
        "--advertise-ip".into(),
        "127.0.0.1".into(),
        "--media-port".into(),
        "0".into(),
        "--capacity".into(),
        capacity.to_string(),
        "--max-per-room".into(),
        max_per_room.to_string(),
        "--no-turn".into(),
    ]);
    args
}
