//! Three control nodes and two bridges, each a `bridgemesh` process on a host of its own (a
//! network namespace behind the lab's router, `tests/src/netns.rs`), every link between them
//! mutual TLS under the cluster CA: Raft forms a cluster and commits the bridges' registrations
//! across hosts; a bridge and a control node holding certificates of another CA are refused; a
//! bridge's certificate cannot speak Raft; plain HTTP gets no answer. The client for the refusals
//! is curl (OpenSSL), a TLS stack other than ours.

use bridgemesh::load::local_cluster::ChildProcess;
use bridgemesh_tests::netns::{self, Lab};
use serde_json::Value;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_bridgemesh");
const ADMIN_TOKEN: &str = "an admin token of at least thirty-two bytes";
const WAIT_MAX: Duration = Duration::from_secs(30);

fn bridgemesh(args: &[&str]) -> String {
    let output = Command::new(BIN).args(args).output().unwrap();
    assert!(
        output.status.success(),
        "bridgemesh {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// `bridgemesh args` inside the lab host `netns`.
fn spawn_in(netns: &netns::Netns, name: &str, dir: &Path, args: &[String]) -> ChildProcess {
    let mut full = vec!["netns".into(), "exec".into(), netns.name().to_owned(), BIN.into()];
    full.extend(args.iter().cloned());
    ChildProcess::spawn(Path::new("ip"), name, dir, full).unwrap()
}

/// curl inside `netns`: its exit status and stdout.
fn curl(netns: &netns::Netns, args: &[&str]) -> (bool, String) {
    let output = netns
        .command("curl")
        .args(["--silent", "--show-error", "--max-time", "10"])
        .args(args)
        .output()
        .unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
    )
}

fn dir_arg(path: &Path) -> String {
    path.display().to_string()
}

#[test]
fn control_nodes_and_bridges_on_separate_hosts_admit_only_cluster_members() {
    netns::available().expect("this test builds network namespaces: run it as root");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path();
    let mut lab = Lab::new().unwrap();
    let controls: Vec<usize> = (1..=3).map(|i| lab.add_host(&format!("c{i}")).unwrap()).collect();
    let bridges: Vec<usize> = (1..=2).map(|i| lab.add_host(&format!("b{i}")).unwrap()).collect();
    let stranger = lab.add_host("stranger").unwrap();

    // What an operator does: a CA, a certificate per node, a key per bridge.
    let ca = path.join("ca");
    bridgemesh(&["ca", "init", "--dir", &dir_arg(&ca)]);
    let secret = path.join("cluster-secret");
    std::fs::write(&secret, "0123456789abcdef0123456789abcdef0123456789abcdef\n").unwrap();
    let admin = path.join("admin-token");
    std::fs::write(&admin, format!("{ADMIN_TOKEN}\n")).unwrap();
    let peers: Vec<String> = controls
        .iter()
        .enumerate()
        .flat_map(|(i, &h)| ["--peer".into(), format!("{}={}:7701", i + 1, lab.host(h).ipv4)])
        .collect();
    let mut processes = Vec::new();
    for (i, &h) in controls.iter().enumerate() {
        let id = (i + 1).to_string();
        let certs = path.join(format!("control-{id}"));
        bridgemesh(&[
            "ca",
            "issue-control",
            "--dir",
            &dir_arg(&ca),
            "--node-id",
            &id,
            "--out-dir",
            &dir_arg(&certs),
        ]);
        let ip = lab.host(h).ipv4;
        let mut args: Vec<String> = [
            "control",
            "--id",
            &id,
            "--listen",
            &format!("{ip}:7700"),
            "--cluster-listen",
            &format!("{ip}:7701"),
            "--cert-dir",
            &dir_arg(&certs),
            "--data-dir",
            &dir_arg(&path.join(format!("data-{id}"))),
            "--cluster-secret-file",
            &dir_arg(&secret),
            "--admin-token-file",
            &dir_arg(&admin),
        ]
        .map(String::from)
        .to_vec();
        args.extend(peers.iter().cloned());
        processes.push(spawn_in(lab.host(h), &format!("control-{id}"), path, &args));
    }
    let control_urls: Vec<String> = controls
        .iter()
        .flat_map(|&h| ["--control".into(), format!("https://{}:7701", lab.host(h).ipv4)])
        .collect();
    let start_bridge = |host: usize, id: &str, ca_dir: &Path| {
        let certs = path.join(format!("bridge-{id}"));
        bridgemesh(&[
            "ca",
            "issue",
            "--dir",
            &dir_arg(ca_dir),
            "--bridge-id",
            id,
            "--out-dir",
            &dir_arg(&certs),
        ]);
        let key = path.join(format!("bridge-key-{id}"));
        let hex = bridgemesh(&[
            "bridge-key",
            "--bridge-id",
            id,
            "--cluster-secret-file",
            &dir_arg(&secret),
        ]);
        std::fs::write(&key, hex).unwrap();
        let ip = lab.host(host).ipv4;
        let mut args: Vec<String> = [
            "bridge",
            "--id",
            id,
            "--region",
            "eu",
            "--bridge-key-file",
            &dir_arg(&key),
            "--listen",
            &format!("{ip}:8081"),
            "--advertise-ip",
            &ip.to_string(),
            "--no-turn",
            "--cascade-cert-dir",
            &dir_arg(&certs),
        ]
        .map(String::from)
        .to_vec();
        args.extend(control_urls.iter().cloned());
        spawn_in(lab.host(host), id, path, &args)
    };
    for (i, &h) in bridges.iter().enumerate() {
        processes.push(start_bridge(h, &format!("b{}", i + 1), &ca));
    }
    let foreign_ca = path.join("foreign-ca");
    bridgemesh(&["ca", "init", "--dir", &dir_arg(&foreign_ca)]);
    let mut stranger_bridge = start_bridge(stranger, "b3", &foreign_ca);

    // Both bridges registered: each registration is a Raft commit, replicated over mutual TLS to
    // a majority of the three hosts.
    let c1 = lab.host(controls[0]).ipv4;
    let bridges_url = format!("http://{c1}:7700/api/v1/admin/bridges");
    let auth = format!("Authorization: Bearer {ADMIN_TOKEN}");
    let deadline = Instant::now() + WAIT_MAX;
    let listed = loop {
        let (_, text) = curl(lab.host(stranger), &["-H", &auth, &bridges_url]);
        let listed: Vec<Value> = serde_json::from_str(&text).unwrap_or_default();
        let up = |id: &str| listed.iter().any(|b| b["id"] == id && b["status"] == "up");
        if up("b1") && up("b2") {
            break listed;
        }
        if Instant::now() > deadline {
            let logs: String = processes.iter().map(|p| p.log_tail() + "\n").collect();
            panic!("the bridges did not register across hosts: {text}\n{logs}");
        }
        std::thread::sleep(Duration::from_millis(100));
    };

    // The bridge with another CA's certificate says why it cannot register, and never is.
    let deadline = Instant::now() + WAIT_MAX;
    while !stranger_bridge.log_tail().contains("certificates") {
        assert!(
            Instant::now() < deadline,
            "b3 never said why it cannot register:\n{}",
            stranger_bridge.log_tail()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(!listed.iter().any(|b| b["id"] == "b3"), "{listed:?}");
    stranger_bridge.kill();

    // Raft from the stranger's host: plain HTTP, a control certificate of another CA, and a
    // bridge's certificate of the cluster's CA. Only the last gets an HTTP answer: 403.
    let c1_cluster = format!("{c1}:7701");
    let (plain, _) = curl(
        lab.host(stranger),
        &[
            "-X",
            "POST",
            "-d",
            "{}",
            &format!("http://{c1_cluster}/raft/v1/propose"),
        ],
    );
    assert!(!plain, "plain HTTP Raft got an answer");
    let foreign_control = path.join("foreign-control");
    bridgemesh(&[
        "ca",
        "issue-control",
        "--dir",
        &dir_arg(&foreign_ca),
        "--node-id",
        "9",
        "--out-dir",
        &dir_arg(&foreign_control),
    ]);
    let tls_to_c1 = |certs: &Path, cert: &str, key: &str| {
        curl(
            lab.host(stranger),
            &[
                "--resolve",
                &format!("1.control.bridgemesh:7701:{c1}"),
                "--cacert",
                &dir_arg(&ca.join("ca.pem")),
                "--cert",
                &dir_arg(&certs.join(cert)),
                "--key",
                &dir_arg(&certs.join(key)),
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "-X",
                "POST",
                "-d",
                "null",
                "https://1.control.bridgemesh:7701/raft/v1/read-index",
            ],
        )
    };
    let (ok, status) = tls_to_c1(&foreign_control, "control.pem", "control-key.pem");
    assert!(
        !ok || status == "000",
        "a control certificate of another CA got HTTP {status}"
    );
    let (_, status) = tls_to_c1(&path.join("bridge-b1"), "bridge.pem", "bridge-key.pem");
    assert_eq!(status, "403", "a bridge's certificate may not speak Raft");
    let certs = path.join("control-2");
    let (ok, status) = tls_to_c1(&certs, "control.pem", "control-key.pem");
    assert!(ok && status == "200", "a member's certificate gets HTTP {status}");

    for mut process in processes {
        process.kill();
    }
}
