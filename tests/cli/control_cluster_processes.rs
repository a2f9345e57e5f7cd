//! Three `bridgemesh control` processes configured by TOML files, driven with `bridgemesh admin`
//! and `bridgemesh token`: the cluster forms, survives SIGKILL of its leader, and the killed
//! process catches up when started again from its data directory.
//!
//! (An integration test of the root package, so that Cargo builds the `bridgemesh` binary for it;
//! the other end-to-end tests live in the `bridgemesh-tests` crate beside this file.)

use serde_json::{Value, json};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_bridgemesh");
const ADMIN_TOKEN: &str = "an admin token of at least thirty-two bytes";
const APP_SECRET: &str = "an app secret of at least thirty-two bytes";

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Node {
    id: u64,
    port: u16,
    config: PathBuf,
    child: Option<Child>,
}

impl Node {
    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn start(&mut self) {
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

    fn kill(&mut self) {
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
fn ca(args: &[&str]) {
    let output = Command::new(BIN).arg("ca").args(args).output().unwrap();
    assert!(
        output.status.success(),
        "bridgemesh ca {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// `ports` are the public API's, `cluster_ports` the cluster listeners' (Raft over mutual TLS).
fn write_config(dir: &Path, id: u64, ports: &[u16], cluster_ports: &[u16]) -> PathBuf {
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

fn admin(url: &str, args: &[&str]) -> Result<Value, String> {
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

fn token(room: &str) -> String {
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
fn eventually<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(Instant::now() < deadline, "{what}: not within 30 s");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn leader_seen_by(url: &str) -> Option<u64> {
    admin(url, &["cluster", "status"]).ok()?["leader_id"].as_u64()
}

fn join(http: &reqwest::blocking::Client, url: &str, bearer: Option<&str>) -> (u16, Value) {
    let mut request = http
        .post(format!("{url}/api/v1/rooms/standup/join"))
        .json(&json!({"display_name": "Ada"}));
    if let Some(token) = bearer {
        request = request.bearer_auth(token);
    }
    let response = request.send().unwrap();
    (response.status().as_u16(), response.json().unwrap())
}

#[test]
fn three_control_processes_form_a_cluster_survive_a_killed_leader_and_catch_up() {
    let dir = tempfile::tempdir().unwrap();
    let ports = [free_port(), free_port(), free_port()];
    let cluster_ports = [free_port(), free_port(), free_port()];
    let mut nodes: Vec<Node> = (1..=3)
        .map(|id| Node {
            id,
            port: ports[id as usize - 1],
            config: write_config(dir.path(), id, &ports, &cluster_ports),
            child: None,
        })
        .collect();
    for node in &mut nodes {
        node.start();
    }
    let leader = eventually("a leader all three agree on", || {
        let seen: Vec<Option<u64>> = nodes.iter().map(|n| leader_seen_by(&n.url())).collect();
        (seen[0].is_some() && seen.iter().all(|s| *s == seen[0])).then(|| seen[0].unwrap())
    });
    let status = admin(&nodes[0].url(), &["cluster", "status"]).unwrap();
    assert_eq!(status["voters"], json!([1, 2, 3]));
    assert!(
        admin(&nodes[0].url(), &["--token", "wrong", "rooms"]).is_err(),
        "the admin token is checked"
    );

    let http = reqwest::blocking::Client::builder().no_proxy().build().unwrap();
    let bridge = json!({
        "id": "bridge-a", "region": "test", "signaling_url": "ws://127.0.0.1:9/bridge/v1/signal",
        "media_addresses": [], "capacity": 100, "max_participants_per_room": 50
    });
    let registered = http
        .post(format!("{}/api/v1/admin/bridges", nodes[1].url()))
        .bearer_auth(ADMIN_TOKEN)
        .json(&bridge)
        .send()
        .unwrap();
    assert!(registered.status().is_success());

    // Tokens are required by this configuration; `bridgemesh token` makes one that works.
    let (status, body) = join(&http, &nodes[2].url(), None);
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (401, Some("token_required")),
        "{body}"
    );
    let ada = token("standup");
    let (status, body) = join(&http, &nodes[2].url(), Some(&ada));
    assert_eq!(status, 200, "{body}");

    // SIGKILL the leader: the survivors elect another and keep taking joins.
    let killed = nodes.iter().position(|n| n.id == leader).unwrap();
    nodes[killed].kill();
    let survivor = (killed + 1) % 3;
    let new_leader = eventually("a new leader", || {
        leader_seen_by(&nodes[survivor].url()).filter(|l| *l != leader)
    });
    let (status, body) = eventually("a join after the kill", || {
        let answer = join(&http, &nodes[survivor].url(), Some(&ada));
        (answer.0 == 200).then_some(answer)
    });
    assert_eq!(status, 200, "{body}");
    let rooms = admin(&nodes[survivor].url(), &["rooms"]).unwrap();
    assert_eq!(rooms[0]["participants_per_bridge"]["bridge-a"], 2, "{rooms}");
    assert_ne!(new_leader, leader);

    // The killed process comes back from its data directory and catches up.
    nodes[killed].start();
    let applied = |url: &str| admin(url, &["cluster", "status"]).ok()?["last_applied_index"].as_u64();
    eventually("the restarted node catches up", || {
        let target = applied(&nodes[survivor].url())?;
        (applied(&nodes[killed].url())? >= target).then_some(())
    });
    let rooms = admin(&nodes[killed].url(), &["rooms"]).unwrap();
    assert_eq!(rooms[0]["participants_per_bridge"]["bridge-a"], 2, "{rooms}");
}
