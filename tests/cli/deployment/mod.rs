//! A deployment of real processes on 127.0.0.1 for end-to-end tests and benchmarks: one
//! `bridgemesh control` node and any number of `bridgemesh bridge` processes that register with
//! it. Shared by the tests and benches of the root package with `#[path]`.

#![allow(dead_code)]

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_bridgemesh");
pub const ADMIN_TOKEN: &str = "an admin token of at least thirty-two bytes";
const CLUSTER_SECRET: &str = "0123456789abcdef0123456789abcdef0123456789abcdef";

pub fn free_port() -> u16 {
    bridgemesh::load::local_cluster::free_port().unwrap()
}

/// One bridge to start.
#[derive(Debug, Clone)]
pub struct BridgeSpec {
    pub id: String,
    pub region: String,
    pub location: Option<(f64, f64)>,
    pub capacity: u32,
    pub max_per_room: u32,
    /// Where the bridge reaches control, when not directly (e.g. through a [`PausableProxy`]).
    pub control_url: Option<String>,
    /// The cascade UDP port; any free one when `None`.
    pub cascade_port: Option<u16>,
    /// The address registered for the cascade port, when other bridges reach it elsewhere
    /// (through a [`PausableUdpRelay`]).
    pub cascade_advertise: Option<String>,
    /// Its certificate comes from a CA of its own, not the deployment's: a stranger to the
    /// cluster.
    pub foreign_ca: bool,
}

impl BridgeSpec {
    pub fn new(id: &str, region: &str) -> Self {
        Self {
            id: id.into(),
            region: region.into(),
            location: None,
            capacity: 100,
            max_per_room: 100,
            control_url: None,
            cascade_port: None,
            cascade_advertise: None,
            foreign_ca: false,
        }
    }

    /// A certificate from a CA that is not the cluster's.
    pub fn foreign_ca(mut self) -> Self {
        self.foreign_ca = true;
        self
    }

    /// Cascade port `port`, registered as `advertise` (`ip:port`) for the other bridges.
    pub fn cascade_via(mut self, port: u16, advertise: String) -> Self {
        self.cascade_port = Some(port);
        self.cascade_advertise = Some(advertise);
        self
    }

    pub fn via(mut self, control_url: String) -> Self {
        self.control_url = Some(control_url);
        self
    }

    pub fn at(mut self, latitude: f64, longitude: f64) -> Self {
        self.location = Some((latitude, longitude));
        self
    }

    pub fn capacity(mut self, capacity: u32) -> Self {
        self.capacity = capacity;
        self.max_per_room = self.max_per_room.min(capacity);
        self
    }
}

/// A child process of the harness: the load generator's, which `bridgemesh load
/// --local-cluster` starts its processes with.
pub use bridgemesh::load::local_cluster::ChildProcess as Process;

fn spawn(name: &str, dir: &Path, args: &[String]) -> Process {
    Process::spawn(Path::new(BIN), name, dir, args.to_vec())
        .unwrap_or_else(|err| panic!("cannot start {name}: {err}"))
}

pub struct Deployment {
    pub dir: tempfile::TempDir,
    pub control_port: u16,
    /// Control's cluster listener (mutual TLS): Raft and the bridges' sessions.
    pub cluster_port: u16,
    pub control: Process,
    pub bridges: Vec<(BridgeSpec, Process)>,
    secret_file: PathBuf,
    /// The cluster CA (`bridgemesh ca init`), which issues each node's certificate.
    ca_dir: PathBuf,
    http: reqwest::Client,
}

/// The value of the series `name{...}` whose labels include each of `labels` (`key="value"`)
/// in a Prometheus text, if it is there.
pub fn metric_value(metrics: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    metrics.lines().find_map(|line| {
        let (series_labels, value) = line.strip_prefix(name)?.strip_prefix('{')?.split_once("} ")?;
        labels
            .iter()
            .all(|(key, expected)| series_labels.contains(&format!("{key}=\"{expected}\"")))
            .then(|| value.trim().parse().ok())
            .flatten()
    })
}

/// A benchmark's setting from the environment.
pub fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The `q`-quantile of sorted samples (NaN when there are none).
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

/// A UDP port nothing listens on at the moment of asking.
pub fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Writes the loopback test GeoIP database (`bridgemesh geoip test-db`) into a new directory,
/// which must live as long as the control node that reads it; returns the directory and the file.
pub fn test_geoip_db() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("test-city.mmdb");
    run_ok(&["geoip", "test-db", "--out", &db.display().to_string()]);
    (dir, db)
}

fn run_ok(args: &[&str]) {
    let output = Command::new(BIN).args(args).output().unwrap();
    assert!(
        output.status.success(),
        "bridgemesh {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

impl Deployment {
    /// Starts a one-node control cluster with `regions` as its `[regions]` section (TOML body).
    pub async fn start(regions: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("cluster-secret");
        let admin = dir.path().join("admin-token");
        std::fs::write(&secret, format!("{CLUSTER_SECRET}\n")).unwrap();
        std::fs::write(&admin, format!("{ADMIN_TOKEN}\n")).unwrap();
        let control_port = free_port();
        let cluster_port = free_port();
        // What an operator does once per cluster: create the CA, then a certificate per node.
        let ca_dir = dir.path().join("ca");
        run_ok(&["ca", "init", "--dir", &ca_dir.display().to_string()]);
        let control_certs = dir.path().join("control-1");
        run_ok(&[
            "ca",
            "issue-control",
            "--dir",
            &ca_dir.display().to_string(),
            "--node-id",
            "1",
            "--out-dir",
            &control_certs.display().to_string(),
        ]);
        let config = format!(
            r#"
node_id = 1
listen = "127.0.0.1:{control_port}"
cluster_listen = "127.0.0.1:{cluster_port}"
cert_dir = "{certs}"
data_dir = "{data}"
cluster_secret_file = "{secret}"
admin_token_file = "{admin}"

[peers]
1 = "127.0.0.1:{cluster_port}"

[regions]
{regions}
"#,
            data = dir.path().join("control").display(),
            certs = control_certs.display(),
            secret = secret.display(),
            admin = admin.display(),
        );
        let config_path = dir.path().join("control.toml");
        std::fs::write(&config_path, config).unwrap();
        let control = spawn(
            "control",
            dir.path(),
            &[
                "control".into(),
                "--config".into(),
                config_path.display().to_string(),
            ],
        );
        let deployment = Self {
            dir,
            control_port,
            cluster_port,
            control,
            bridges: Vec::new(),
            secret_file: secret,
            ca_dir,
            http: reqwest::Client::builder().no_proxy().build().unwrap(),
        };
        let health = format!("{}/health", deployment.control_url());
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let ok = deployment
                .http
                .get(&health)
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if ok {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "control did not come up:\n{}",
                deployment.control.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        deployment
    }

    pub fn control_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.control_port)
    }

    /// Where bridges reach control: its cluster listener.
    pub fn cluster_url(&self) -> String {
        format!("https://127.0.0.1:{}", self.cluster_port)
    }

    /// What an operator does per bridge: print its key from the cluster secret.
    fn bridge_key_file(&self, id: &str) -> PathBuf {
        let output = Command::new(BIN)
            .args(["bridge-key", "--bridge-id", id, "--cluster-secret-file"])
            .arg(&self.secret_file)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let file = self.dir.path().join(format!("bridge-key-{id}"));
        std::fs::write(&file, &output.stdout).unwrap();
        file
    }

    /// Starts a bridge process and waits until control lists it `up`.
    pub async fn add_bridge(&mut self, spec: BridgeSpec) {
        let process = self.spawn_bridge(&spec);
        self.bridges.push((spec.clone(), process));
        self.wait_for_status(&spec.id, "up").await;
    }

    pub fn spawn_bridge(&self, spec: &BridgeSpec) -> Process {
        let mut args = bridgemesh::load::local_cluster::loopback_bridge_args(
            &[spec.control_url.clone().unwrap_or_else(|| self.cluster_url())],
            &spec.id,
            &spec.region,
            &self.bridge_key_file(&spec.id),
            spec.capacity,
            spec.max_per_room,
        );
        if let Some((lat, lon)) = spec.location {
            args.push("--location".into());
            args.push(format!("{lat},{lon}"));
        }
        {
            // What an operator does per bridge: issue its certificate (reissuing is harmless).
            let certs = self.dir.path().join("certs").join(&spec.id);
            let ca_dir = if spec.foreign_ca {
                let foreign = self.dir.path().join(format!("foreign-ca-{}", spec.id));
                if !foreign.exists() {
                    run_ok(&["ca", "init", "--dir", &foreign.display().to_string()]);
                }
                foreign
            } else {
                self.ca_dir.clone()
            };
            run_ok(&[
                "ca",
                "issue",
                "--dir",
                &ca_dir.display().to_string(),
                "--bridge-id",
                &spec.id,
                "--out-dir",
                &certs.display().to_string(),
            ]);
            args.extend([
                "--cascade-cert-dir".into(),
                certs.display().to_string(),
                "--cascade-port".into(),
                spec.cascade_port.unwrap_or(0).to_string(),
            ]);
            if let Some(advertise) = &spec.cascade_advertise {
                args.extend(["--cascade-advertise".into(), advertise.clone()]);
            }
        }
        spawn(&spec.id, self.dir.path(), &args)
    }

    pub fn bridge(&mut self, id: &str) -> &mut Process {
        &mut self
            .bridges
            .iter_mut()
            .find(|(spec, _)| spec.id == id)
            .unwrap_or_else(|| panic!("no bridge {id}"))
            .1
    }

    /// Starts again a bridge that was stopped, with the same id.
    pub async fn restart_bridge(&mut self, id: &str) {
        let spec = self.bridges.iter().find(|(s, _)| s.id == id).unwrap().0.clone();
        let process = self.spawn_bridge(&spec);
        *self.bridge(id) = process;
        self.wait_for_status(id, "up").await;
    }

    /// `GET /api/v1/admin/bridges`.
    pub async fn bridges_view(&self) -> Vec<Value> {
        self.admin_get("/api/v1/admin/bridges")
            .await
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    pub async fn admin_get(&self, path: &str) -> Value {
        let response = self
            .http
            .get(format!("{}{path}", self.control_url()))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await;
        match response {
            Ok(response) => response.json().await.unwrap_or(Value::Null),
            Err(_) => Value::Null,
        }
    }

    /// Runs `bridgemesh admin <args>` against the control node.
    pub fn admin_cli(&self, args: &[&str]) -> String {
        let output = Command::new(BIN)
            .arg("admin")
            .arg("--url")
            .arg(self.control_url())
            .args(args)
            .env("BRIDGEMESH_ADMIN_TOKEN", ADMIN_TOKEN)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "bridgemesh admin {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// The bridge's `/metrics` text (its HTTP port is in the signaling URL it registered).
    pub async fn bridge_metrics(&self, id: &str) -> String {
        let signaling = self.bridge_field(id, "signaling_url").await;
        let signaling = signaling.as_str().unwrap_or_default();
        let base = signaling
            .strip_prefix("ws://")
            .and_then(|rest| rest.split('/').next())
            .unwrap_or_else(|| panic!("bridge {id} registered no ws:// signaling URL: {signaling:?}"));
        match self.http.get(format!("http://{base}/metrics")).send().await {
            Ok(response) => response.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        }
    }

    pub async fn bridge_field(&self, id: &str, field: &str) -> Value {
        self.bridges_view()
            .await
            .into_iter()
            .find(|b| b["id"] == id)
            .map_or(Value::Null, |b| b[field].clone())
    }

    pub async fn wait_for_status(&self, id: &str, status: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.bridge_field(id, "status").await != status {
            if Instant::now() > deadline {
                self.fail(&format!("bridge {id} to be {status}")).await;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Panics saying what was awaited, with the bridges as control sees them and the logs.
    pub async fn fail(&self, what: &str) -> ! {
        let mut logs = format!("control:\n{}\n", self.control.log_tail());
        for (spec, process) in &self.bridges {
            logs.push_str(&format!("{}:\n{}\n", spec.id, process.log_tail()));
        }
        panic!(
            "timed out waiting for {what}\nbridges: {:#?}\n{logs}",
            self.bridges_view().await
        );
    }
}

/// A TCP relay on 127.0.0.1 in front of `target` that the test can pause: while paused, bytes
/// stop flowing both ways but connections stay open, as on a network path that went silent.
pub struct PausableProxy {
    pub port: u16,
    paused: std::sync::Arc<tokio::sync::watch::Sender<bool>>,
    task: tokio::task::JoinHandle<()>,
}

impl PausableProxy {
    pub async fn start(target: u16) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let paused = std::sync::Arc::new(tokio::sync::watch::channel(false).0);
        let switch = paused.clone();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(upstream) = tokio::net::TcpStream::connect(("127.0.0.1", target)).await else {
                    continue;
                };
                let (client_read, client_write) = client.into_split();
                let (upstream_read, upstream_write) = upstream.into_split();
                tokio::spawn(relay(client_read, upstream_write, switch.subscribe()));
                tokio::spawn(relay(upstream_read, client_write, switch.subscribe()));
            }
        });
        Self { port, paused, task }
    }

    /// The proxy as a bridge's control URL (the bytes it relays are control's mutual TLS).
    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    pub fn pause(&self, paused: bool) {
        self.paused.send_replace(paused);
    }
}

impl Drop for PausableProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn relay(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut paused: tokio::sync::watch::Receiver<bool>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        if paused.wait_for(|p| !*p).await.is_err() {
            return;
        }
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        // Read before the pause began: hold it until the path comes back.
        if paused.wait_for(|p| !*p).await.is_err() || to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

/// A UDP relay on 127.0.0.1 in front of `target` that the test can pause: while paused,
/// datagrams are dropped both ways, as on a path that went dark. Relays for one client at a time
/// (the last address that sent to it), which is all a cascade link needs.
pub struct PausableUdpRelay {
    pub port: u16,
    paused: std::sync::Arc<std::sync::atomic::AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl PausableUdpRelay {
    pub async fn start(target: u16) -> Self {
        use std::sync::atomic::Ordering;
        let front = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let back = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        back.connect(("127.0.0.1", target)).await.unwrap();
        let port = front.local_addr().unwrap().port();
        let paused = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let switch = paused.clone();
        let task = tokio::spawn(async move {
            let mut client = None;
            let mut from_client = vec![0u8; 65_536];
            let mut from_target = vec![0u8; 65_536];
            loop {
                tokio::select! {
                    Ok((n, from)) = front.recv_from(&mut from_client) => {
                        client = Some(from);
                        if !switch.load(Ordering::Relaxed) {
                            let _ = back.send(&from_client[..n]).await;
                        }
                    }
                    Ok(n) = back.recv(&mut from_target) => {
                        if let (Some(client), false) = (client, switch.load(Ordering::Relaxed)) {
                            let _ = front.send_to(&from_target[..n], client).await;
                        }
                    }
                }
            }
        });
        Self { port, paused, task }
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn pause(&self, paused: bool) {
        self.paused.store(paused, std::sync::atomic::Ordering::Relaxed);
    }
}

impl Drop for PausableUdpRelay {
    fn drop(&mut self) {
        self.task.abort();
    }
}
