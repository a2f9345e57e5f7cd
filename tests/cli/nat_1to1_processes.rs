//! A bridge behind a 1:1 NAT, as on a cloud VM with an elastic IP: real `bridgemesh control`,
//! `bridgemesh bridge` and `bridgemesh load` processes in network namespaces of a lab
//! (`tests/src/netns.rs`).
//!
//! ```text
//!   control 198.18.1.2 ──┐
//!   bridge  198.18.2.2 ──┼── router: 198.18.200.2 ⇄ 198.18.2.2 (DNAT in, SNAT out, hairpin too);
//!   alice   198.18.3.2 ──┤          198.18.2.2 itself is refused to anyone who names it
//!   corp    198.18.4.2 ──┘   corp: no UDP to the bridge's media port (TURN only)
//! ```
//!
//! The bridge listens on [::] and advertises the NAT address, which no namespace owns, and its
//! own IPv6 address. Alice's
//! participants join through control and exchange media directly with the bridge through the
//! NAT; corp's can only reach the media port through the bridge's TURN server, whose relay
//! sockets bind the bridge's local address while clients are told the NAT address, and whose
//! relayed packets reach the bridge's media port by hairpinning through the router's NAT.

use bridgemesh::load::local_cluster::ChildProcess;
use bridgemesh_tests::netns::{Host, Lab};
use std::io::{Read as _, Write as _};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_bridgemesh");
const NAT_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 200, 2);
const CONTROL_PORT: u16 = 7700;
/// Control's cluster listener: mutual TLS under the cluster CA, for the bridge's session.
const CLUSTER_PORT: u16 = 7701;
const CONTROL_NAME: &str = "control.lab.example";
const BRIDGE_HTTP_PORT: u16 = 8081;
const MEDIA_PORT: u16 = 10000;
const TURN_PORT: u16 = 3478;
const ADMIN_TOKEN: &str = "an admin token of at least thirty-two bytes";
const CLUSTER_SECRET: &str = "0123456789abcdef0123456789abcdef0123456789abcdef";
/// Bound on one `bridgemesh load` run of about 10 s (joins, a 4 s hold, leaves).
const LOAD_TIMEOUT: Duration = Duration::from_secs(90);

/// The router's NAT: the bridge's address is reached only as `NAT_IP`, and what the bridge sends
/// leaves as `NAT_IP`, hairpin included (the bridge's TURN relay sending to the NAT address).
fn nat_rules(bridge: Ipv4Addr) -> String {
    format!(
        "table ip lab_nat {{
  chain prerouting {{
    type nat hook prerouting priority dstnat;
    ip daddr {NAT_IP} dnat to {bridge}
  }}
  chain postrouting {{
    type nat hook postrouting priority srcnat;
    ip saddr {bridge} snat to {NAT_IP}
  }}
  chain forward {{
    type filter hook forward priority filter;
    ct direction original ip daddr {bridge} ct status & dnat == 0 reject
  }}
}}
"
    )
}

/// A GET from inside `host`'s namespace; the body.
fn http_get(host: &Host, addr: SocketAddr, path: &str, token: Option<&str>) -> anyhow::Result<String> {
    let mut stream = host.connect_tcp(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    write!(
        stream,
        "GET {path} HTTP/1.0\r\nHost: {addr}\r\n{auth}Connection: close\r\n\r\n"
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let (head, body) = response
        .split_once("\r\n\r\n")
        .ok_or_else(|| anyhow::anyhow!("no HTTP response: {response:?}"))?;
    anyhow::ensure!(
        head.starts_with("HTTP/1.1 200") || head.starts_with("HTTP/1.0 200"),
        "{head}"
    );
    Ok(body.to_owned())
}

/// `name{direction="…"}` of the TURN metrics.
fn relayed(metrics: &str, direction: &str) -> u64 {
    let series = format!("bridgemesh_turn_relayed_packets_total{{direction=\"{direction}\"}} ");
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(&series)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {series} in\n{metrics}"))
}

fn spawn_in(host: &Host, name: &str, dir: &Path, args: &[&str]) -> ChildProcess {
    let mut all: Vec<String> = vec!["netns".into(), "exec".into(), host.name().into(), BIN.into()];
    all.extend(args.iter().map(|a| a.to_string()));
    ChildProcess::spawn(Path::new("ip"), name, dir, all)
        .unwrap_or_else(|err| panic!("cannot start {name}: {err}"))
}

/// `bridgemesh load` with two participants in one room, from `host`, sending from its IPv4
/// address or from its two addresses in turn; panics unless it passed. Returns the RTP packets
/// the participants received, every one verified.
async fn load_passes(host: &Host, room_prefix: &str, dir: &Path, control: &str, both_families: bool) -> u64 {
    let mut bind_ips = vec![host.ipv4.to_string()];
    if both_families {
        bind_ips.push(host.ipv6.to_string());
    }
    let json = dir.join(format!("{room_prefix}.json"));
    let child = tokio::process::Command::from(host.command(BIN))
        .args(["load", "--control", control, "--rooms", "1", "--per-room", "2"])
        .args([
            "--duration-s",
            "4",
            "--ramp-up-s",
            "1",
            "--room-prefix",
            room_prefix,
        ])
        .arg("--bind-ip")
        .args(&bind_ips)
        .arg("--json")
        .arg(&json)
        .env("RUST_LOG", "warn")
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(LOAD_TIMEOUT, child)
        .await
        .expect("bridgemesh load ends")
        .expect("bridgemesh load runs");
    let report = std::fs::read_to_string(&json).unwrap_or_default();
    assert!(
        output.status.success(),
        "{room_prefix}: status {}\nstdout:\n{}\nstderr:\n{}\nreport: {report}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );
    let value: serde_json::Value = serde_json::from_str(&report).expect("a JSON report");
    assert_eq!(value["joins"]["ok"], 2, "{report}");
    assert_eq!(value["streams"]["missing"], 0, "{report}");
    let received = value["media"]["packets"].as_u64().expect("packets received");
    assert!(received >= 100, "{report}");
    received
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn media_and_turn_relays_reach_a_bridge_behind_1to1_nat() {
    let mut lab = Lab::new().expect("a network lab (root, iproute2, nftables)");
    let control_host = lab.add_host("control").unwrap();
    let bridge_host = lab.add_host("bridge").unwrap();
    let alice_host = lab.add_host("alice").unwrap();
    let corp_host = lab.add_host("corp").unwrap();
    let bridge_ip = lab.host(bridge_host).ipv4;
    lab.router.nft(&nat_rules(bridge_ip)).unwrap();
    // corp's firewall: nothing reaches the bridge's media port directly.
    lab.host(corp_host)
        .nft(&format!(
            "table ip corp {{
  chain output {{
    type filter hook output priority filter;
    ip daddr {NAT_IP} udp dport {MEDIA_PORT} drop
  }}
}}
"
        ))
        .unwrap();

    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("cluster-secret");
    let admin = dir.path().join("admin-token");
    std::fs::write(&secret, format!("{CLUSTER_SECRET}\n")).unwrap();
    std::fs::write(&admin, format!("{ADMIN_TOKEN}\n")).unwrap();
    let control_ip = lab.host(control_host).ipv4;
    let control_addr = SocketAddr::new(IpAddr::V4(control_ip), CONTROL_PORT);
    let cluster_addr = SocketAddr::new(IpAddr::V4(control_ip), CLUSTER_PORT);
    // The cluster CA, control's certificate and the bridge's, as an operator makes them.
    let ca = dir.path().join("ca");
    let control_certs = dir.path().join("control-certs");
    let bridge_certs = dir.path().join("bridge-certs");
    for args in [
        vec!["ca", "init", "--dir", ca.to_str().unwrap()],
        vec![
            "ca",
            "issue-control",
            "--dir",
            ca.to_str().unwrap(),
            "--node-id",
            "1",
            "--out-dir",
            control_certs.to_str().unwrap(),
        ],
        vec![
            "ca",
            "issue",
            "--dir",
            ca.to_str().unwrap(),
            "--bridge-id",
            "nat-1",
            "--out-dir",
            bridge_certs.to_str().unwrap(),
        ],
    ] {
        let out = Command::new(BIN).args(&args).output().unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let control_toml = dir.path().join("control.toml");
    std::fs::write(
        &control_toml,
        format!(
            "node_id = 1\nlisten = \"[::]:{CONTROL_PORT}\"\ncluster_listen = \"[::]:{CLUSTER_PORT}\"\nadvertise = \"{cluster_addr}\"\ncert_dir = \"{}\"\ndata_dir = \"{}\"\ncluster_secret_file = \"{}\"\nadmin_token_file = \"{}\"\n\n[peers]\n1 = \"{cluster_addr}\"\n",
            control_certs.display(),
            dir.path().join("control").display(),
            secret.display(),
            admin.display()
        ),
    )
    .unwrap();
    let control = spawn_in(
        lab.host(control_host),
        "control",
        dir.path(),
        &["control", "--config", &control_toml.display().to_string()],
    );
    let key = Command::new(BIN)
        .args(["bridge-key", "--bridge-id", "nat-1", "--cluster-secret-file"])
        .arg(&secret)
        .output()
        .unwrap();
    assert!(key.status.success(), "{}", String::from_utf8_lossy(&key.stderr));
    let key_file = dir.path().join("bridge-key");
    std::fs::write(&key_file, &key.stdout).unwrap();
    // A name with both of control's addresses: participants sending from an IPv6 address reach
    // it over IPv6, the others over IPv4.
    lab.resolve(CONTROL_NAME, IpAddr::V4(control_ip)).unwrap();
    lab.resolve(CONTROL_NAME, IpAddr::V6(lab.host(control_host).ipv6))
        .unwrap();
    let control_url = format!("http://{CONTROL_NAME}:{CONTROL_PORT}");
    let bridge = spawn_in(
        lab.host(bridge_host),
        "bridge",
        dir.path(),
        &[
            "bridge",
            "--control",
            &format!("https://{CONTROL_NAME}:{CLUSTER_PORT}"),
            "--cascade-cert-dir",
            &bridge_certs.display().to_string(),
            "--id",
            "nat-1",
            "--region",
            "eu",
            "--bridge-key-file",
            &key_file.display().to_string(),
            "--listen",
            &format!("[::]:{BRIDGE_HTTP_PORT}"),
            "--advertise-ip",
            &NAT_IP.to_string(),
            "--advertise-ipv6",
            &lab.host(bridge_host).ipv6.to_string(),
            "--media-port",
            &MEDIA_PORT.to_string(),
            "--turn-port",
            &TURN_PORT.to_string(),
            "--capacity",
            "10",
            "--max-per-room",
            "10",
        ],
    );
    let logs = || format!("control:\n{}\nbridge:\n{}", control.log_tail(), bridge.log_tail());

    // Control lists the bridge up, with the NAT address as its media address.
    let deadline = Instant::now() + Duration::from_secs(30);
    let view = loop {
        let bridges = http_get(
            lab.host(control_host),
            control_addr,
            "/api/v1/admin/bridges",
            Some(ADMIN_TOKEN),
        );
        if let Ok(text) = &bridges
            && let Ok(value) = serde_json::from_str::<serde_json::Value>(text)
            && value[0]["status"] == "up"
        {
            break value;
        }
        assert!(
            Instant::now() < deadline,
            "the bridge did not come up: {bridges:?}\n{}",
            logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(view[0]["id"], "nat-1", "{view}");

    // The bridge is reached only through the NAT address: its own is refused.
    let alice = lab.host(alice_host);
    let through_nat = SocketAddr::new(IpAddr::V4(NAT_IP), BRIDGE_HTTP_PORT);
    assert!(
        http_get(alice, through_nat, "/health", None).is_ok(),
        "{}",
        logs()
    );
    assert!(
        alice
            .connect_tcp(SocketAddr::new(IpAddr::V4(bridge_ip), BRIDGE_HTTP_PORT))
            .is_err(),
        "the bridge's own address must not be reachable from outside"
    );
    let turn_metrics = || {
        http_get(alice, through_nat, "/metrics/turn", None)
            .unwrap_or_else(|err| panic!("TURN metrics: {err:#}\n{}", logs()))
    };

    // Directly: the ICE candidate names the NAT address, the bridge's socket holds its own.
    let direct_received = load_passes(alice, "direct", dir.path(), &control_url, false).await;
    let after_direct = turn_metrics();
    let direct_relayed = relayed(&after_direct, "client_to_peer");
    assert!(
        direct_relayed * 10 < direct_received,
        "direct media does not go through TURN (a few checks may): {direct_relayed} relayed, {direct_received} received\n{after_direct}"
    );

    // Through the bridge's TURN server only: relays bind the bridge's address, are advertised at
    // the NAT address, and reach the media port by hairpinning through the router. Every packet
    // the participants received was sent through it and came back through it.
    let relayed_received = load_passes(lab.host(corp_host), "relayed", dir.path(), &control_url, false).await;
    let after_relay = turn_metrics();
    for direction in ["client_to_peer", "peer_to_client"] {
        let packets = relayed(&after_relay, direction) - relayed(&after_direct, direction);
        println!(
            "relayed {direction}: {packets} packets for {relayed_received} received (direct run: {direct_relayed} relayed for {direct_received})"
        );
        assert!(
            packets >= relayed_received,
            "{direction}: {packets} packets relayed, {relayed_received} received by the participants\n{after_relay}\n{}",
            logs()
        );
    }

    // Both families on the one media port: the bridge listens on [::] and offers its IPv6
    // address as a second candidate. One participant sends from alice's IPv4 address (through
    // the NAT), the other from her IPv6 address, whose socket cannot reach an IPv4 candidate or
    // the IPv4 TURN server: its media can only have used the bridge's IPv6 candidate.
    let dual_received = load_passes(alice, "dual", dir.path(), &control_url, true).await;
    let after_dual = turn_metrics();
    let dual_relayed = relayed(&after_dual, "client_to_peer") - relayed(&after_relay, "client_to_peer");
    println!("dual stack: {dual_received} received, {dual_relayed} relayed");
    assert!(
        dual_relayed * 10 < dual_received,
        "IPv4 and IPv6 participants reach the media port directly: {dual_relayed} relayed, {dual_received} received"
    );

    let denied = after_relay.lines().find_map(|l| {
        l.strip_prefix("bridgemesh_turn_denied_peers_total ")?
            .trim()
            .parse::<u64>()
            .ok()
    });
    assert_eq!(
        denied,
        Some(0),
        "nothing the clients asked for was refused\n{after_relay}"
    );
    drop(lab);
}
