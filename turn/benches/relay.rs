//! Relayed packets per second and server CPU per relayed packet: our TURN server and coturn
//! (Debian's `turnserver`) side by side, same machine, same load.
//!
//! ```sh
//! cargo bench -p bridgemesh-turn --bench relay
//! ```
//! Env: RATE (packets/s offered, default 100000), SECONDS (10), ALLOCATIONS (4), PAYLOAD (1200 bytes),
//! WORKERS (tokio worker threads of our server, 2).
//!
//! Each server runs in its own process (ours: this binary re-executed with `BENCH_ROLE=server`,
//! a 2-worker tokio runtime as a node runs it). The load: ALLOCATIONS clients, each with one
//! channel bound to its own sink socket, send ChannelData of PAYLOAD bytes at RATE in total; the
//! server relays client → peer. CPU is the server process's user+system time from
//! /proc/<pid>/stat over the window; the relayed count is what the sinks received.
//! Everything is on loopback: the servers on 127.0.0.1, the sinks on 127.0.0.2 (our server refuses
//! to relay to its own IP).

use bridgemesh_turn::credentials::{long_term_key, rest_credential};
use bridgemesh_turn::stun::{Class, Message, Writer, attr, method, write_channel_data};
use bridgemesh_turn::{Cidr, TurnConfig, TurnServer};
use std::io::{BufRead as _, BufReader};
use std::net::{SocketAddr, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const SECRET: &str = "bench-secret-0123456789abcdef";
const REALM: &str = "bridgemesh";
const TICKS_PER_S: f64 = 100.0;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    if std::env::var("BENCH_ROLE").as_deref() == Ok("server") {
        run_our_server();
        return;
    }
    // `cargo bench` passes `--bench`; nothing else to parse.
    let rate = env_or("RATE", 100_000);
    let seconds = env_or("SECONDS", 10);
    let allocations = env_or("ALLOCATIONS", 4) as usize;
    let payload = env_or("PAYLOAD", 1200) as usize;
    println!(
        "TURN relay benchmark: {allocations} allocations, {payload}-byte ChannelData, {rate} packets/s offered, {seconds} s"
    );
    println!(
        "{:<12} {:>14} {:>12} {:>16} {:>10}",
        "server", "relayed pkt/s", "server CPU", "CPU / packet", "loss"
    );
    let ours = {
        let (child, port) = spawn_our_server();
        measure("bridgemesh", child, port, rate, seconds, allocations, payload)
    };
    let coturn = match spawn_coturn() {
        Some((child, port)) => Some(measure(
            "coturn",
            child,
            port,
            rate,
            seconds,
            allocations,
            payload,
        )),
        None => {
            println!("coturn: `turnserver` not found (apt-get install coturn); no comparison");
            None
        }
    };
    if let (Some(ours), Some(Some(coturn))) = (ours, coturn) {
        println!("CPU per relayed packet, ours / coturn: {:.2}", ours / coturn);
    }
}

/// The child process: our server on 127.0.0.1, allowing relays to 127.0.0.2 (the sinks).
fn run_our_server() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(env_or("WORKERS", 2) as usize)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let config = TurnConfig {
            udp_listen: Some("127.0.0.1:0".parse().unwrap()),
            tcp_listen: None,
            relay_ip: "127.0.0.1".parse().unwrap(),
            relay_port_min: 40000,
            relay_port_max: 44999,
            secret: SECRET.as_bytes().to_vec(),
            realm: REALM.to_owned(),
            allow_peer_nets: vec!["127.0.0.2/32".parse::<Cidr>().unwrap()],
            // The cap is a safety limit, not what is measured.
            allocation_bandwidth_bytes_per_s: 10_000_000_000,
            ..TurnConfig::default()
        };
        let server = TurnServer::start(config).await.expect("our server starts");
        println!("ready {}", server.udp_addr().unwrap().port());
        std::future::pending::<()>().await;
    });
}

fn spawn_our_server() -> (Child, u16) {
    let exe = std::env::current_exe().expect("bench executable");
    let mut child = Command::new(exe)
        .env("BENCH_ROLE", "server")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .expect("re-executing the bench as the server");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .expect("the server's ready line");
    let port = line
        .trim()
        .strip_prefix("ready ")
        .and_then(|p| p.parse().ok())
        .expect("ready <port>");
    (child, port)
}

fn spawn_coturn() -> Option<(Child, u16)> {
    let port = 34_878;
    let dir = std::env::temp_dir().join(format!("bridgemesh-bench-coturn-{}", std::process::id()));
    std::fs::create_dir_all(&dir).ok()?;
    let child = Command::new("turnserver")
        .args(["-n", "--no-cli", "--no-tls", "--no-dtls", "--no-tcp"])
        .args(["--listening-ip=127.0.0.1", "--relay-ip=127.0.0.1"])
        .arg(format!("--listening-port={port}"))
        .args(["--min-port=45000", "--max-port=49999"])
        .args(["--use-auth-secret", &format!("--static-auth-secret={SECRET}")])
        .arg(format!("--realm={REALM}"))
        .args(["--allow-loopback-peers", "--no-multicast-peers"])
        .arg(format!("--userdb={}", dir.join("turndb").display()))
        .arg(format!("--pidfile={}", dir.join("turn.pid").display()))
        .args(["--log-file=stdout", "--simple-log", "--no-stdout-log"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    // coturn prints nothing useful to wait on; poll until it answers a Binding request.
    let probe = UdpSocket::bind("127.0.0.1:0").unwrap();
    probe.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
    let server: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    for _ in 0..50 {
        let mut request = Vec::new();
        Writer::new(&mut request, method::BINDING, Class::Request, [1; 12]);
        let _ = probe.send_to(&request, server);
        let mut buf = [0u8; 1500];
        if probe.recv_from(&mut buf).is_ok() {
            return Some((child, port));
        }
    }
    panic!("coturn did not answer on {server}");
}

/// Server process CPU seconds (all threads).
fn process_cpu_s(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let Some(close) = stat.rfind(')') else {
        return 0.0;
    };
    let fields: Vec<&str> = stat[close + 2..].split(' ').collect();
    let utime: f64 = fields[11].parse().unwrap_or(0.0);
    let stime: f64 = fields[12].parse().unwrap_or(0.0);
    (utime + stime) / TICKS_PER_S
}

/// Allocates and binds channel 0x4000 toward `peer`; returns the client socket.
fn setup_client(server: SocketAddr, peer: SocketAddr, user: &str) -> UdpSocket {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let expiry = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() + 3600;
    let (username, password) = rest_credential(SECRET.as_bytes(), user, expiry);
    let key = long_term_key(&username, REALM, &password);
    let mut nonce = String::new();
    let mut next_id = 0u8;
    let mut request = |method: u16, attributes: &dyn Fn(&mut Writer<'_>), nonce: &mut String| -> u16 {
        loop {
            next_id += 1;
            let id = [next_id; 12];
            let mut buf = Vec::new();
            let mut w = Writer::new(&mut buf, method, Class::Request, id);
            attributes(&mut w);
            if !nonce.is_empty() {
                w.attribute(attr::USERNAME, username.as_bytes())
                    .attribute(attr::REALM, REALM.as_bytes())
                    .attribute(attr::NONCE, nonce.as_bytes());
                w.finish_with_integrity(&key, false);
            }
            socket.send_to(&buf, server).unwrap();
            let mut answer = [0u8; 1500];
            let (len, _) = socket.recv_from(&mut answer).expect("an answer during setup");
            let message = Message::decode(&answer[..len]).expect("STUN");
            let code = message
                .get(attr::ERROR_CODE)
                .map_or(0, |v| u16::from(v[2]) * 100 + u16::from(v[3]));
            if code == 438 || (code == 401 && nonce.is_empty()) {
                *nonce = message.text(attr::NONCE).expect("a nonce").to_owned();
                continue;
            }
            return code;
        }
    };
    let code = request(
        method::ALLOCATE,
        &|w| {
            w.u32_attribute(attr::REQUESTED_TRANSPORT, 17 << 24);
        },
        &mut nonce,
    );
    assert_eq!(code, 0, "allocate");
    let code = request(
        method::CHANNEL_BIND,
        &|w| {
            w.attribute(attr::CHANNEL_NUMBER, &[0x40, 0x00, 0, 0])
                .xor_address(attr::XOR_PEER_ADDRESS, peer);
        },
        &mut nonce,
    );
    assert_eq!(code, 0, "channel bind");
    socket
}

/// Runs the load against one server; prints a row and returns CPU µs per relayed packet.
fn measure(
    name: &str,
    mut child: Child,
    port: u16,
    rate: u64,
    seconds: u64,
    allocations: usize,
    payload: usize,
) -> Option<f64> {
    let server: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let received = Arc::new(AtomicU64::new(0));
    let running = Arc::new(AtomicBool::new(true));
    let mut clients = Vec::new();
    let mut sinks = Vec::new();
    for i in 0..allocations {
        let sink = UdpSocket::bind("127.0.0.2:0").unwrap();
        sink.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
        clients.push(setup_client(
            server,
            sink.local_addr().unwrap(),
            &format!("user{i}"),
        ));
        let received = received.clone();
        let running = running.clone();
        sinks.push(std::thread::spawn(move || {
            let mut buf = [0u8; 2048];
            while running.load(Ordering::Relaxed) {
                if sink.recv_from(&mut buf).is_ok() {
                    received.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    let mut frame = Vec::new();
    write_channel_data(&mut frame, 0x4000, &vec![0xab; payload], false);
    // Warm-up, then the measured window.
    let send = |duration: Duration| -> u64 {
        let start = Instant::now();
        let mut sent = 0u64;
        while start.elapsed() < duration {
            let due = (start.elapsed().as_secs_f64() * rate as f64) as u64;
            while sent < due {
                let _ = clients[(sent as usize) % clients.len()].send_to(&frame, server);
                sent += 1;
            }
            std::thread::yield_now();
        }
        sent
    };
    send(Duration::from_secs(1));
    std::thread::sleep(Duration::from_millis(300));
    let received_before = received.load(Ordering::Relaxed);
    let cpu_before = process_cpu_s(child.id());
    let sent = send(Duration::from_secs(seconds));
    // Packets still in flight are counted below; the rate is over the sending window.
    std::thread::sleep(Duration::from_millis(300));
    let elapsed = seconds as f64;
    let cpu = process_cpu_s(child.id()) - cpu_before;
    let relayed = received.load(Ordering::Relaxed) - received_before;
    running.store(false, Ordering::Relaxed);
    for sink in sinks {
        let _ = sink.join();
    }
    let _ = child.kill();
    let _ = child.wait();
    if relayed == 0 {
        println!("{name:<12} nothing relayed");
        return None;
    }
    let per_packet_us = cpu * 1e6 / relayed as f64;
    println!(
        "{name:<12} {:>14.0} {:>11.0}% {:>13.2} µs {:>9.2}%",
        relayed as f64 / elapsed,
        cpu / elapsed * 100.0,
        per_packet_us,
        100.0 * (sent.saturating_sub(relayed)) as f64 / sent as f64
    );
    Some(per_packet_us)
}
