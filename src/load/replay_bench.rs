//! `bridgemesh load-replay`: CPU per forwarded packet of a bridge at high packet rates, loaded by
//! the cheap generator of [`bridgemesh_sim::replay`].
//!
//! 1. Start the bridge under test as its own process: `<binary> up` on ephemeral loopback ports
//!    without TURN (`--bridge-binary` for another build, e.g. the bridge before a change; by
//!    default this executable), `--shards N` if asked.
//! 2. Join every room's participants through its control API: publishers (one paced video
//!    stream each) and receive-only viewers; publishers receive each other too.
//! 3. Pace every publisher at the rate that makes the bridge forward the asked packets/s,
//!    warm up, then measure a window: the bridge process's CPU time (`/proc/PID/stat`, and its
//!    `bridge-shard-*` threads alone), its `bridgemesh_bridge_rtp_forwarded_total` delta, what
//!    the receivers counted and lost (sequence gaps) and verified (sampled), and this
//!    process's own CPU time (the generator's cost, which must stay below the bridge's).
//! 4. Leave, stop the bridge, report.

use anyhow::Context as _;
use bridgemesh_proto::RoomId;
use bridgemesh_sim::replay::{PacerCounters, ReplayParticipant, RxCounters, pacer};
use serde::Serialize;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Most participants one run joins.
pub const MAX_PARTICIPANTS: usize = 2_000;
/// Highest forwarded rate asked for.
pub const MAX_FORWARDED_PPS: f64 = 2_000_000.0;
/// Clock ticks per second of `/proc` stat times (100 on every Linux this runs on).
const TICKS_PER_S: f64 = 100.0;
/// How long `up` may take to print its addresses.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// What one run does. `Default` + [`validate`](Self::validate).
#[derive(Debug, Clone, PartialEq)]
pub struct ReplayBenchConfig {
    /// The `bridgemesh` executable whose `up` is measured; `None`: this one.
    pub bridge_binary: Option<PathBuf>,
    /// `up --shards`; `None`: the bridge's default (one per core).
    pub shards: Option<usize>,
    pub rooms: usize,
    pub publishers_per_room: usize,
    /// Receive-only participants per room (they publish nothing).
    pub viewers_per_room: usize,
    /// Packets/s the bridge is to forward in total; each publisher sends this divided by the
    /// number of (publisher, receiver) pairs.
    pub forwarded_pps: f64,
    pub warmup_s: f64,
    pub duration_s: f64,
    pub join_timeout_s: f64,
}

impl Default for ReplayBenchConfig {
    fn default() -> Self {
        Self {
            bridge_binary: None,
            shards: None,
            rooms: 1,
            publishers_per_room: 1,
            viewers_per_room: 4,
            forwarded_pps: 100_000.0,
            warmup_s: 3.0,
            duration_s: 10.0,
            join_timeout_s: 20.0,
        }
    }
}

impl ReplayBenchConfig {
    pub fn participants(&self) -> usize {
        self.rooms * (self.publishers_per_room + self.viewers_per_room)
    }

    /// Forwarded streams: every publisher to every other participant of its room.
    pub fn legs(&self) -> usize {
        self.rooms * self.publishers_per_room * (self.publishers_per_room + self.viewers_per_room - 1)
    }

    pub fn publisher_pps(&self) -> f64 {
        self.forwarded_pps / self.legs().max(1) as f64
    }

    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(self.rooms >= 1, "--rooms must be at least 1");
        anyhow::ensure!(
            self.publishers_per_room >= 1,
            "--publishers-per-room must be at least 1"
        );
        anyhow::ensure!(
            self.legs() >= 1,
            "nobody would receive anything: add a viewer or a second publisher"
        );
        anyhow::ensure!(
            self.participants() <= MAX_PARTICIPANTS,
            "at most {MAX_PARTICIPANTS} participants per run"
        );
        anyhow::ensure!(
            self.forwarded_pps > 0.0 && self.forwarded_pps <= MAX_FORWARDED_PPS,
            "--forwarded-pps must be in (0, {MAX_FORWARDED_PPS}]"
        );
        anyhow::ensure!(
            self.shards.is_none_or(|n| (1..=64).contains(&n)),
            "--shards must be in 1..=64"
        );
        for (name, value) in [
            ("--warmup-s", self.warmup_s),
            ("--duration-s", self.duration_s),
            ("--join-timeout-s", self.join_timeout_s),
        ] {
            anyhow::ensure!(
                value.is_finite() && (0.0..=3600.0).contains(&value),
                "{name} must be in 0..=3600"
            );
        }
        anyhow::ensure!(self.duration_s >= 1.0, "--duration-s must be at least 1");
        Ok(())
    }
}

/// What one run measured over its window.
#[derive(Debug, Clone, Serialize)]
pub struct ReplayBenchReport {
    pub bridge_binary: String,
    pub shards: Option<usize>,
    pub rooms: usize,
    pub publishers_per_room: usize,
    pub viewers_per_room: usize,
    pub asked_forwarded_pps: f64,
    pub window_s: f64,
    /// The bridge's own count (`bridgemesh_bridge_rtp_forwarded_total`) per second.
    pub forwarded_pps: f64,
    /// What the receivers counted per second.
    pub received_pps: f64,
    /// What the publishers sent per second.
    pub published_pps: f64,
    /// The bridge process's CPU time per forwarded packet, and its shard threads' alone.
    pub bridge_us_per_packet: f64,
    pub shard_us_per_packet: f64,
    /// Shares of one core.
    pub bridge_cpu: f64,
    pub generator_cpu: f64,
    pub generator_us_per_packet: f64,
    /// Lost over the window, as a share of what should have arrived (sequence gaps).
    pub loss: f64,
    pub lost: u64,
    pub verified_samples: u64,
    pub failed_samples: u64,
    pub publisher_dropped: u64,
    pub sample_latency_p50_us: Option<u32>,
    pub sample_latency_p99_us: Option<u32>,
    pub bridge_rss_kib: u64,
    /// The bridge's RSS before the first participant joined.
    pub bridge_rss_idle_kib: u64,
    pub participants: usize,
}

impl ReplayBenchReport {
    /// One line for a table.
    pub fn line(&self) -> String {
        format!(
            "forwarded {:.0}/s (asked {:.0}, receivers counted {:.0}/s), bridge {:.2} µs/packet \
             (shard threads {:.2}), bridge {:.0}% of a core, generator {:.0}% ({:.2} µs/packet), \
             loss {:.3}% ({} lost), samples verified {} failed {}, sample latency p50/p99 {}/{} µs, \
             publisher drops {}, bridge RSS {} KiB (idle {} KiB, {:.0} KiB more per participant)",
            self.forwarded_pps,
            self.asked_forwarded_pps,
            self.received_pps,
            self.bridge_us_per_packet,
            self.shard_us_per_packet,
            self.bridge_cpu * 100.0,
            self.generator_cpu * 100.0,
            self.generator_us_per_packet,
            self.loss * 100.0,
            self.lost,
            self.verified_samples,
            self.failed_samples,
            self.sample_latency_p50_us
                .map_or("-".to_owned(), |v| v.to_string()),
            self.sample_latency_p99_us
                .map_or("-".to_owned(), |v| v.to_string()),
            self.publisher_dropped,
            self.bridge_rss_kib,
            self.bridge_rss_idle_kib,
            self.bridge_rss_kib.saturating_sub(self.bridge_rss_idle_kib) as f64
                / self.participants.max(1) as f64,
        )
    }
}

struct BridgeProcess {
    child: Child,
    control_url: String,
    metrics_url: String,
}

impl Drop for BridgeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_bridge(config: &ReplayBenchConfig) -> anyhow::Result<BridgeProcess> {
    let binary = match &config.bridge_binary {
        Some(binary) => binary.clone(),
        None => std::env::current_exe().context("this executable's path")?,
    };
    let mut command = Command::new(&binary);
    command.args([
        "up",
        "--http-port",
        "0",
        "--bridge-http-port",
        "0",
        "--media-port",
        "0",
        "--cascade-port",
        "0",
        "--no-turn",
    ]);
    if let Some(shards) = config.shards {
        command.args(["--shards", &shards.to_string()]);
    }
    let mut child = command
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| format!("starting {} up", binary.display()))?;
    let stdout = child.stdout.take().context("up's stdout")?;
    let (lines_tx, lines_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if lines_tx.send(line).is_err() {
                // Nobody listens any more: keep draining so that `up` never blocks on stdout.
                continue;
            }
        }
    });
    let mut process = BridgeProcess {
        child,
        control_url: String::new(),
        metrics_url: String::new(),
    };
    let deadline = Instant::now() + START_TIMEOUT;
    while process.control_url.is_empty() || process.metrics_url.is_empty() {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = lines_rx.recv_timeout(left).map_err(|_| {
            anyhow::anyhow!(
                "{} up printed no addresses within {START_TIMEOUT:?}",
                binary.display()
            )
        })?;
        // "bridgemesh is up: open http://127.0.0.1:PORT/ in a browser …"
        if let Some(rest) = line.split("open ").nth(1) {
            process.control_url = rest.split('/').take(3).collect::<Vec<_>>().join("/");
        }
        // "bridge <id>: signaling and metrics at http://ADDR/metrics"
        if let Some(rest) = line.split("signaling and metrics at ").nth(1)
            && process.metrics_url.is_empty()
        {
            process.metrics_url = rest.trim().to_owned();
        }
    }
    Ok(process)
}

/// CPU seconds of `pid`'s threads whose name starts with `prefix` ("" for the whole process).
fn cpu_s(pid: u32, prefix: &str) -> f64 {
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
        let utime: f64 = fields.get(11).and_then(|f| f.parse().ok()).unwrap_or(0.0);
        let stime: f64 = fields.get(12).and_then(|f| f.parse().ok()).unwrap_or(0.0);
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

async fn forwarded_total(http: &reqwest::Client, metrics_url: &str) -> anyhow::Result<f64> {
    let text = http
        .get(metrics_url)
        .send()
        .await
        .and_then(|r| r.error_for_status())
        .with_context(|| format!("scraping {metrics_url}"))?
        .text()
        .await?;
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| {
            let value = l.strip_prefix("bridgemesh_bridge_rtp_forwarded_total")?;
            // Either no labels or a label set; the value is the last field.
            value.rsplit(' ').next()?.parse().ok()
        })
        .context("the bridge's metrics have no bridgemesh_bridge_rtp_forwarded_total")
}

fn sum(counters: impl Iterator<Item = RxCounters>) -> RxCounters {
    counters.fold(RxCounters::default(), |a, c| RxCounters {
        packets: a.packets + c.packets,
        bytes: a.bytes + c.bytes,
        lost: a.lost + c.lost,
        verified: a.verified + c.verified,
        auth_failed: a.auth_failed + c.auth_failed,
        corrupt: a.corrupt + c.corrupt,
        untracked: a.untracked + c.untracked,
        streams: a.streams + c.streams,
    })
}

fn percentile(sorted: &[u32], q: f64) -> Option<u32> {
    if sorted.is_empty() {
        return None;
    }
    let at = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted.get(at).copied()
}

/// Runs one measurement (see the module documentation).
pub async fn run(config: &ReplayBenchConfig) -> anyhow::Result<ReplayBenchReport> {
    config.validate()?;
    let bridge = start_bridge(config)?;
    let pid = bridge.child.id();
    // For a profiler to attach to (`perf record -p PID`).
    eprintln!("bridge under test: pid {pid}, control {}", bridge.control_url);
    let http = reqwest::Client::builder().no_proxy().build()?;
    let bridge_rss_idle_kib = rss_kib(pid);
    let join_timeout = Duration::from_secs_f64(config.join_timeout_s);

    let mut participants = Vec::with_capacity(config.participants());
    let mut publishers = Vec::new();
    for room in 0..config.rooms {
        let room_id = RoomId::new(format!("replay-{room}")).context("room name")?;
        for n in 0..config.publishers_per_room + config.viewers_per_room {
            let publish = n < config.publishers_per_room;
            let name = format!("{}{room}-{n}", if publish { "pub" } else { "view" });
            let mut participant =
                ReplayParticipant::join(&bridge.control_url, &room_id, &name, publish, join_timeout)
                    .await
                    .with_context(|| format!("{name} joining {room_id}"))?;
            publishers.extend(participant.take_publishing());
            participants.push(participant);
        }
    }
    let counters = Arc::new(PacerCounters::default());
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let pacer = tokio::spawn(pacer::run(
        publishers,
        config.publisher_pps(),
        Arc::clone(&counters),
        stop_rx,
    ));
    tokio::time::sleep(Duration::from_secs_f64(config.warmup_s)).await;

    let forwarded_0 = forwarded_total(&http, &bridge.metrics_url).await?;
    let rx_0 = sum(participants.iter().map(ReplayParticipant::counters));
    let sent_0 = counters.sent.load(std::sync::atomic::Ordering::Relaxed);
    let dropped_0 = counters.dropped.load(std::sync::atomic::Ordering::Relaxed);
    let (bridge_cpu_0, shard_cpu_0, own_cpu_0) = (
        cpu_s(pid, ""),
        cpu_s(pid, "bridge-shard"),
        cpu_s(std::process::id(), ""),
    );
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs_f64(config.duration_s)).await;
    let (bridge_cpu_1, shard_cpu_1, own_cpu_1) = (
        cpu_s(pid, ""),
        cpu_s(pid, "bridge-shard"),
        cpu_s(std::process::id(), ""),
    );
    let window = started.elapsed().as_secs_f64();
    let forwarded = forwarded_total(&http, &bridge.metrics_url).await? - forwarded_0;
    // The counters are copied out every 100 ms: wait for a fresh copy.
    tokio::time::sleep(Duration::from_millis(150)).await;
    let rx_1 = sum(participants.iter().map(ReplayParticipant::counters));
    let sent = counters.sent.load(std::sync::atomic::Ordering::Relaxed) - sent_0;
    let dropped = counters.dropped.load(std::sync::atomic::Ordering::Relaxed) - dropped_0;
    let bridge_rss_kib = rss_kib(pid);
    let _ = stop.send(true);
    let _ = pacer.await;

    let mut latency: Vec<u32> = participants.iter().flat_map(|p| p.latency_us()).collect();
    latency.sort_unstable();
    for participant in &participants {
        if let Some(err) = participant.error() {
            tracing::warn!(participant = %participant.participant_id, %err, "session ended during the run");
        }
    }
    for participant in participants {
        participant.leave().await;
    }
    drop(bridge);

    let received = (rx_1.packets - rx_0.packets) as f64;
    let lost = rx_1.lost.saturating_sub(rx_0.lost);
    let bridge_cpu = bridge_cpu_1 - bridge_cpu_0;
    let generator_cpu = own_cpu_1 - own_cpu_0;
    let per_packet = |cpu: f64| {
        if forwarded > 0.0 {
            cpu / forwarded * 1e6
        } else {
            f64::NAN
        }
    };
    Ok(ReplayBenchReport {
        bridge_binary: config
            .bridge_binary
            .as_ref()
            .map_or_else(|| "this executable".to_owned(), |p| p.display().to_string()),
        shards: config.shards,
        rooms: config.rooms,
        publishers_per_room: config.publishers_per_room,
        viewers_per_room: config.viewers_per_room,
        asked_forwarded_pps: config.forwarded_pps,
        window_s: window,
        forwarded_pps: forwarded / window,
        received_pps: received / window,
        published_pps: sent as f64 / window,
        bridge_us_per_packet: per_packet(bridge_cpu),
        shard_us_per_packet: per_packet(shard_cpu_1 - shard_cpu_0),
        bridge_cpu: bridge_cpu / window,
        generator_cpu: generator_cpu / window,
        generator_us_per_packet: per_packet(generator_cpu),
        loss: if received + lost as f64 > 0.0 {
            lost as f64 / (received + lost as f64)
        } else {
            0.0
        },
        lost,
        verified_samples: rx_1.verified - rx_0.verified,
        failed_samples: (rx_1.auth_failed + rx_1.corrupt) - (rx_0.auth_failed + rx_0.corrupt),
        publisher_dropped: dropped,
        sample_latency_p50_us: percentile(&latency, 0.5),
        sample_latency_p99_us: percentile(&latency, 0.99),
        bridge_rss_kib,
        bridge_rss_idle_kib,
        participants: config.participants(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_follow_the_rooms_shape_and_bad_configs_are_refused() {
        let four_by_four = ReplayBenchConfig {
            rooms: 4,
            publishers_per_room: 4,
            viewers_per_room: 0,
            forwarded_pps: 96_000.0,
            ..Default::default()
        };
        assert_eq!(four_by_four.legs(), 48);
        assert_eq!(four_by_four.publisher_pps(), 2_000.0);
        four_by_four.validate().unwrap();
        let alone = ReplayBenchConfig {
            viewers_per_room: 0,
            ..Default::default()
        };
        assert!(alone.validate().is_err());
        let too_fast = ReplayBenchConfig {
            forwarded_pps: f64::INFINITY,
            ..Default::default()
        };
        assert!(too_fast.validate().is_err());
        let no_window = ReplayBenchConfig {
            duration_s: 0.5,
            ..Default::default()
        };
        assert!(no_window.validate().is_err());
    }
}
