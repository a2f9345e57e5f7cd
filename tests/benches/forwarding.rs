//! Bridge CPU per forwarded RTP packet and memory per participant.
//!
//! Runs `bridgemesh up` as its own process (so its CPU and memory are its own), joins synthetic
//! participants that publish audio (50 packets/s) and video, and reads the bridge's shard threads'
//! CPU time from /proc and its forwarded-packet counter from /metrics over a measured window.
//!
//! ```sh
//! cargo build --release && cargo bench -p bridgemesh-tests --bench forwarding
//! ```
//! Env: ROOMS (default 2), PER_ROOM (5), VIDEO_KBPS (500), BENCH_SECONDS (20), BRIDGEMESH_BINARY.

use bridgemesh_proto::RoomId;
use bridgemesh_proto::signaling::MediaSource;
use bridgemesh_sim::{ParticipantOptions, SyntheticParticipant};
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// `target/release/bridgemesh`, or the binary `BRIDGEMESH_BINARY` names (to measure another
/// build, e.g. the bridge before a change, under the same load in the same run).
fn bridgemesh_binary() -> PathBuf {
    if let Some(binary) = std::env::var_os("BRIDGEMESH_BINARY") {
        return PathBuf::from(binary);
    }
    let exe = std::env::current_exe().expect("bench executable path");
    let release = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target/release");
    let binary = release.join("bridgemesh");
    assert!(
        binary.exists(),
        "{} is missing: run `cargo build --release` first",
        binary.display()
    );
    binary
}

/// Clock ticks per second for /proc stat times; 100 on every Linux this runs on.
const TICKS_PER_S: f64 = 100.0;

/// CPU seconds of the process's threads whose name starts with `prefix`.
fn thread_cpu_s(pid: u32, prefix: &str) -> f64 {
    let mut total = 0.0;
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0.0;
    };
    for task in tasks.flatten() {
        let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else {
            continue;
        };
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        if !stat[open + 1..close].starts_with(prefix) {
            continue;
        }
        let fields: Vec<&str> = stat[close + 2..].split(' ').collect();
        let utime: f64 = fields[11].parse().unwrap_or(0.0);
        let stime: f64 = fields[12].parse().unwrap_or(0.0);
        total += (utime + stime) / TICKS_PER_S;
    }
    total
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

async fn metric(client: &reqwest::Client, bridge_url: &str, name: &str) -> u64 {
    let text = client
        .get(format!("{bridge_url}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find(|l| l.starts_with(name) && !l.starts_with('#'))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0)
}

struct Up {
    child: Child,
    control_url: String,
    bridge_url: String,
}

fn start_up() -> Up {
    let mut child = Command::new(bridgemesh_binary())
        .args([
            "up",
            "--http-port",
            "0",
            "--bridge-http-port",
            "0",
            "--media-port",
            "0",
        ])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .expect("start bridgemesh up");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut control_url = None;
    let mut bridge_url = None;
    while control_url.is_none() || bridge_url.is_none() {
        let line = lines.next().expect("bridgemesh up exited early").unwrap();
        if let Some(rest) = line.split("open ").nth(1) {
            control_url = rest.split('/').take(3).collect::<Vec<_>>().join("/").into();
        }
        // "bridge <id>: signaling and metrics at <url>/metrics" (the first bridge's line).
        if let Some(rest) = line.split("signaling and metrics at ").nth(1)
            && bridge_url.is_none()
        {
            bridge_url = Some(rest.trim().trim_end_matches("/metrics").to_owned());
        }
    }
    std::thread::spawn(move || for _ in lines {});
    Up {
        child,
        control_url: control_url.unwrap(),
        bridge_url: bridge_url.unwrap(),
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let rooms = env_or("ROOMS", 2);
    let per_room = env_or("PER_ROOM", 5);
    let video_kbps = env_or("VIDEO_KBPS", 500) as u32;
    let seconds = env_or("BENCH_SECONDS", 20);
    let mut up = start_up();
    let pid = up.child.id();
    let http = reqwest::Client::new();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_idle = rss_kib(pid);

    let mut participants = Vec::new();
    for room in 0..rooms {
        let room_id = RoomId::new(format!("bench-{room}")).unwrap();
        for n in 0..per_room {
            let mut options = ParticipantOptions::new(format!("p{room}-{n}"));
            options.video_bitrate_bps = video_kbps * 1000;
            let participant = SyntheticParticipant::join(&up.control_url, &room_id, options)
                .await
                .expect("join");
            participants.push(participant);
        }
    }
    for participant in &participants {
        participant
            .wait_until(
                "media from everyone in the room",
                Duration::from_secs(30),
                |stats, _| {
                    stats.received.len() as u64 == 2 * (per_room - 1)
                        && stats.received.values().all(|r| r.intact > 20)
                },
            )
            .await
            .expect("media flowing");
    }
    // Warm-up done: measure a steady window.
    let forwarded_0 = metric(&http, &up.bridge_url, "bridgemesh_bridge_rtp_forwarded_total").await;
    let received_0 = metric(&http, &up.bridge_url, "bridgemesh_bridge_rtp_received_total").await;
    let shard_cpu_0 = thread_cpu_s(pid, "bridge-shard");
    let process_cpu_0 = thread_cpu_s(pid, "");
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let elapsed = started.elapsed().as_secs_f64();
    let forwarded =
        metric(&http, &up.bridge_url, "bridgemesh_bridge_rtp_forwarded_total").await - forwarded_0;
    let received = metric(&http, &up.bridge_url, "bridgemesh_bridge_rtp_received_total").await - received_0;
    let shard_cpu = thread_cpu_s(pid, "bridge-shard") - shard_cpu_0;
    let process_cpu = thread_cpu_s(pid, "") - process_cpu_0;
    let rss_busy = rss_kib(pid);

    let mut lost = 0;
    let mut corrupt = 0;
    let mut latency = Vec::new();
    for participant in &participants {
        let stats = participant.stats();
        corrupt += stats.total_corrupt();
        for ((_, source), r) in &stats.received {
            lost += r.lost;
            if *source == MediaSource::Camera {
                latency.extend(r.latency_us.iter().copied());
            }
        }
    }
    latency.sort_unstable();
    let quantile = |q: f64| {
        latency
            .get(((latency.len() as f64 - 1.0) * q) as usize)
            .copied()
            .unwrap_or(0)
    };
    let count = participants.len() as u64;
    let cpu_model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_default();

    println!(
        "machine: {} cores, {cpu_model}",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!(
        "load: {rooms} rooms x {per_room} participants, audio 50 pkt/s + video {video_kbps} kbit/s each, {elapsed:.1} s window"
    );
    println!(
        "received from publishers: {:.0} pkt/s; forwarded: {:.0} pkt/s",
        received as f64 / elapsed,
        forwarded as f64 / elapsed
    );
    println!(
        "bridge shard threads CPU: {:.1}% of one core",
        100.0 * shard_cpu / elapsed
    );
    println!(
        "CPU per forwarded packet: {:.2} us (shard threads), {:.2} us (whole process)",
        1e6 * shard_cpu / forwarded as f64,
        1e6 * process_cpu / forwarded as f64
    );
    println!(
        "memory: idle RSS {} KiB, with {count} participants {} KiB => {:.0} KiB per participant",
        rss_idle,
        rss_busy,
        (rss_busy.saturating_sub(rss_idle)) as f64 / count as f64
    );
    println!(
        "subscribers: lost {lost}, corrupt {corrupt}; video one-way latency p50 {} us p99 {} us (client→bridge→client, loopback)",
        quantile(0.5),
        quantile(0.99)
    );

    for participant in participants {
        let _ = participant.leave().await;
    }
    let _ = up.child.kill();
    let _ = up.child.wait();
}
