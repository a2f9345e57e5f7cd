//! Three `bridgemesh control` processes on 127.0.0.1, configured by TOML files as an operator
//! would (`bridgemesh ca` certificates, a cluster secret, JWT with `guest_policy = "none"`), and
//! driven with `bridgemesh admin` and `bridgemesh token`. Shared by the root package's control
//! cluster tests with `#[path]`.

#![allow(dead_code)]

use serde_json::{Value, json};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_bridgemesh");
pub const ADMIN_TOKEN: &str = "an admin token of at least thirty-two bytes";
pub const APP_SECRET: &str = "an app secret of at least thirty-two bytes";

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub struct Node {
    pub id: u64,
    pub port: u16,
    pub config: PathBuf,
    pub child: Option<Child>,
}

impl Node {
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn start(&mut self) {
        let child = Command::new(BIN)
            .arg("control")
            .arg("--config")
            .arg(&self.config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start bridgemesh control");
        self.child = Some(child);
    }

    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Runs `bridgemesh ca <args>`, as an operator sets up the cluster's certificates.
pub fn ca(args: &[&str]) {
    let output = Command::new(BIN).arg("ca").args(args).output().unwrap();
    assert!(
        output.status.success(),
        "bridgemesh ca {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// `ports` are the public API's, `cluster_ports` the cluster listeners' (Raft over mutual TLS).
pub fn write_config(dir: &Path, id: u64, ports: &[u16], cluster_ports: &[u16]) -> PathBuf {
    let ca_dir = dir.join("ca");
    if !ca_dir.exists() {
        ca(&["init", "--dir", &ca_dir.display().to_string()]);
    }
    let certs = dir.join(format!("certs-{id}"));
    ca(&[
        "issue-control",
        "--dir",
        &ca_dir.display().to_string(),
        "--node-id",
        &id.to_string(),
        "--out-dir",
        &certs.display().to_string(),
    ]);
    let secret = dir.join("cluster-secret");
    let admin = dir.join("admin-token");
    std::fs::write(&secret, "0123456789abcdef0123456789abcdef0123456789abcdef\n").unwrap();
    std::fs::write(&admin, format!("{ADMIN_TOKEN}\n")).unwrap();
    let peers: String = cluster_ports
        .iter()
        .enumerate()
        .map(|(i, port)| format!("{} = \"127.0.0.1:{port}\"\n", i + 1))
        .collect();
    let config = format!(
        r#"
node_id = {id}
listen = "127.0.0.1:{port}"
cluster_listen = "127.0.0.1:{cluster_port}"
cert_dir = "{certs}"
data_dir = "{data}"
cluster_secret_file = "{secret}"
admin_token_file = "{admin}"

[peers]
{peers}
[auth]
accepted_issuers = ["my_app"]
accepted_audiences = ["jitsi"]
hs256_secret = "{APP_SECRET}"
guest_policy = "none"
"#,
        port = ports[id as usize - 1],
        cluster_port = cluster_ports[id as usize - 1],
        certs = certs.display(),
        data = dir.join(format!("node-{id}")).display(),
        secret = secret.display(),
        admin = admin.display(),
    );
    let path = dir.join(format!("control-{id}.toml"));
    std::fs::write(&path, config).unwrap();
    path
}

pub fn admin(url: &str, args: &[&str]) -> Result<Value, String> {
    let output = Command::new(BIN)
        .arg("admin")
        .arg("--url")
        .arg(url)
        .args(args)
        .env("BRIDGEMESH_ADMIN_TOKEN", ADMIN_TOKEN)
        .output()
        .unwrap();
    if output.status.success() {
        Ok(serde_json::from_slice(&output.stdout).expect("admin prints JSON"))
    } else {
        Err(String::from_utf8_lossy(&output.stderr).into_owned())
    }
}

pub fn token(room: &str) -> String {
    let output = Command::new(BIN)
        .args([
            "token", "--iss", "my_app", "--aud", "jitsi", "--sub", "*", "--room", room, "--name", "Ada",
        ])
        .env("BRIDGEMESH_TOKEN_SECRET", APP_SECRET)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap().trim().to_owned()
}

/// Polls `check` every 50 ms until it returns `Some`; panics naming `what` after 30 s.
pub fn eventually<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(Instant::now() < deadline, "{what}: not within 30 s");
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub fn leader_seen_by(url: &str) -> Option<u64> {
    admin(url, &["cluster", "status"]).ok()?["leader_id"].as_u64()
}

/// Joins `room` as "Ada" through `url`: the status and the body.
pub fn join(http: &reqwest::blocking::Client, url: &str, room: &str, bearer: Option<&str>) -> (u16, Value) {
    let mut request = http
        .post(format!("{url}/api/v1/rooms/{room}/join"))
        .json(&json!({"display_name": "Ada"}));
    if let Some(token) = bearer {
        request = request.bearer_auth(token);
    }
    let response = request.send().unwrap();
    (response.status().as_u16(), response.json().unwrap())
}

/// Three nodes of one cluster in `dir`, not started yet.
pub fn three_nodes(dir: &Path) -> Vec<Node> {
    let ports = [free_port(), free_port(), free_port()];
    let cluster_ports = [free_port(), free_port(), free_port()];
    (1..=3)
        .map(|id| Node {
            id,
            port: ports[id as usize - 1],
            config: write_config(dir, id, &ports, &cluster_ports),
            child: None,
        })
        .collect()
}

/// The leader all of `nodes` agree on, once they do.
pub fn agreed_leader(nodes: &[Node]) -> u64 {
    eventually("a leader all three agree on", || {
        let seen: Vec<Option<u64>> = nodes.iter().map(|n| leader_seen_by(&n.url())).collect();
        (seen[0].is_some() && seen.iter().all(|s| *s == seen[0])).then(|| seen[0].unwrap())
    })
}

/// Registers a bridge that never connects (placements on it stay unconfirmed) through `url`.
pub fn register_bridge(http: &reqwest::blocking::Client, url: &str, capacity: u32) {
    let bridge = json!({
        "id": "bridge-a", "region": "test", "signaling_url": "ws://127.0.0.1:9/bridge/v1/signal",
        "media_addresses": [], "capacity": capacity, "max_participants_per_room": capacity
    });
    let registered = http
        .post(format!("{url}/api/v1/admin/bridges"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&bridge)
        .send()
        .unwrap();
    assert!(registered.status().is_success());
}

/// Waits until every node in `urls` has applied the registration of `bridge-a` (a join placed
/// through a node that has not would find no bridge).
pub fn wait_bridge_known(http: &reqwest::blocking::Client, urls: &[String]) {
    for url in urls {
        eventually("every node knows the bridge", || {
            let bridges: Value = http
                .get(format!("{url}/api/v1/admin/bridges"))
                .bearer_auth(ADMIN_TOKEN)
                .send()
                .ok()?
                .json()
                .ok()?;
            bridges.to_string().contains("bridge-a").then_some(())
        });
    }
}
