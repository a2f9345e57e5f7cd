//! Join click → first remote video frame rendered, in the real web client on headless Chromium,
//! against `bridgemesh up` on loopback.
//!
//! Page A joins a room and stays. Then, ITERATIONS times (default 10): page B opens the room
//! with `?autojoin=1`, and the time from its join click (`bridgemesh.metrics.joinClickedAt`,
//! set after the fake camera and microphone are open) to the first frame of A's video drawn on
//! B's page (`firstRemoteFrameAt`) is one sample; B closes and the room settles for a second.
//! The other `bridgemesh.metrics` fields break each sample down by signaling and connection
//! step.
//!
//! ```sh
//! cargo bench -p bridgemesh-tests --bench first_frame
//! ```
//! Env: ITERATIONS (default 10); FIRST_FRAME_TRACE=1 also prints every step of every join as a
//! wall-clock time (ms since the epoch), to line up with a packet capture or the bridge's log.
//!
//! Chromium's fake camera runs at 20 fps, so answering the bridge's keyframe request for the
//! newcomer takes up to 50 ms of the "1st pkt" step by itself.

use bridgemesh_tests::bench;
use bridgemesh_tests::chromium::{Browser, Page};
use bridgemesh_tests::harness::web::{install_helpers, summary_condition};
use bridgemesh_tests::harness::{room, up};
use serde_json::Value;
use std::time::Duration;

/// The steps recorded by the web client, in the order they happen, with a short label.
const STEPS: [(&str, &str); 10] = [
    ("joinResponseAt", "join API"),
    ("signalingOpenAt", "ws open"),
    ("welcomeAt", "welcome"),
    ("offerAt", "offer"),
    ("remoteVideoTrackAt", "track"),
    ("answerSentAt", "answer"),
    ("iceConnectedAt", "ICE"),
    ("connectedAt", "DTLS"),
    ("remoteVideoUnmutedAt", "1st pkt"),
    ("firstRemoteFrameAt", "frame"),
];
/// What page A's camera stream looks like on the wire: the frame interval bounds how long a
/// keyframe request takes to be answered.
const PUBLISHER_JS: &str = r#"(async () => {
  const stats = await window.bridgemesh.pc.getStats();
  let out = null;
  stats.forEach((r) => {
    if (r.type === 'outbound-rtp' && r.kind === 'video' && r.framesEncoded > 0) {
      out = { width: r.frameWidth, height: r.frameHeight, fps: r.framesPerSecond,
        limitedBy: r.qualityLimitationReason, keyFramesEncoded: r.keyFramesEncoded, plis: r.pliCount,
        encoder: r.encoderImplementation, targetKbps: Math.round((r.targetBitrate || 0) / 1000) };
    }
  });
  return out;
})()"#;
const TIMEOUT: Duration = Duration::from_secs(30);
const SETTLE: Duration = Duration::from_secs(1);

fn main() {
    bench::block_on(run());
}

fn machine() -> String {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .and_then(|rest| rest.split_once(':'))
        .map_or("unknown", |(_, model)| model.trim());
    let chromium = std::process::Command::new(
        std::env::var("BRIDGEMESH_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into()),
    )
    .arg("--version")
    .output()
    .ok()
    .and_then(|out| String::from_utf8(out.stdout).ok())
    .and_then(|text| text.lines().next().map(str::to_owned))
    .unwrap_or_else(|| "chromium version unknown".into());
    format!("{cpus} CPUs (nproc), {model}; {}", chromium.trim())
}

async fn wait_or_die(page: &Page, label: &str, what: &str, expression: &str) {
    bench::wait_or_die(page, label, what, expression, TIMEOUT).await;
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    // Nearest rank: with 10 samples p95 is the largest.
    let rank = ((p / 100.0) * sorted.len() as f64).ceil().max(1.0) as usize;
    sorted[rank.min(sorted.len()) - 1]
}

async fn run() {
    let iterations: usize = std::env::var("ITERATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    println!("first_frame: join click -> first remote video frame, loopback");
    println!("machine: {}", machine());
    let trace = std::env::var_os("FIRST_FRAME_TRACE").is_some();
    // rtc's DTLS logs a warning for every extension of Chromium's ClientHello it does not know.
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,rtc_dtls=error"));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).try_init();
    let running = up().await;
    println!(
        "control: {}, bridge signaling: {}, bridge media: {}",
        running.control_url,
        running.bridge_url,
        running.bridge.media_addr()
    );
    let room = room("first-frame");
    let browser = Browser::launch().await.expect("chromium starts");
    let base = running.room_url(&room);
    let a = browser
        .new_window(&format!("{base}?autojoin=1&name=Ada"))
        .await
        .expect("page A opens");
    install_helpers(&a).await.expect("installing test helpers on A");
    wait_or_die(
        &a,
        "A",
        "A connects",
        "window.bridgemesh && window.bridgemesh.state === 'connected'",
    )
    .await;
    // Until A's first packets reach the bridge it has nothing to forward, and B's first offer
    // would not include A.
    tokio::time::sleep(SETTLE).await;

    // Each row: ms since the join click for every step (None when it did not happen).
    let mut rows: Vec<Vec<Option<f64>>> = Vec::new();
    let mut keyframe_requests = Vec::new();
    for i in 0..iterations {
        let label = format!("B{i:02}");
        let plis_before = running.bridge.stats().shards.keyframe_requests_sent;
        let b = browser
            .new_window(&format!("{base}?autojoin=1&name={label}"))
            .await
            .expect("page B opens");
        install_helpers(&b).await.expect("installing test helpers on B");
        wait_or_die(
            &b,
            &label,
            "the first remote frame",
            "window.bridgemesh && window.bridgemesh.metrics.firstRemoteFrameAt !== null",
        )
        .await;
        let metrics = b
            .eval("window.bridgemesh.metrics")
            .await
            .expect("reading B's metrics");
        if trace {
            // Wall-clock times, to line up with a packet capture or the bridge's log.
            let origin = b.eval("performance.timeOrigin").await.expect("timeOrigin");
            let origin = origin.as_f64().expect("timeOrigin is a number");
            let mut line = format!("trace {label}: epoch ms");
            for (field, _) in std::iter::once(&("joinClickedAt", "click")).chain(STEPS.iter()) {
                if let Some(at) = metrics[*field].as_f64() {
                    line.push_str(&format!(" {field}={:.1}", origin + at));
                }
            }
            println!("{line}");
        }
        let clicked = metrics["joinClickedAt"].as_f64().expect("joinClickedAt is set");
        let row: Vec<Option<f64>> = STEPS
            .iter()
            .map(|(field, _)| metrics[*field].as_f64().map(|at| at - clicked))
            .collect();
        // The bridge's stats are refreshed every 100 ms.
        tokio::time::sleep(Duration::from_millis(150)).await;
        keyframe_requests.push(running.bridge.stats().shards.keyframe_requests_sent - plis_before);
        rows.push(row);
        let reconnects = b
            .eval("window.bridgemesh.reconnects")
            .await
            .unwrap_or(Value::Null);
        if reconnects != 0 {
            println!("{label}: warning: {reconnects} reconnects during the join");
        }
        b.close().await.expect("closing page B");
        wait_or_die(
            &a,
            "A",
            "A sees B leave",
            &summary_condition("s.peers.length === 0 && s.state === 'connected'"),
        )
        .await;
        tokio::time::sleep(SETTLE).await;
    }

    println!();
    println!(
        "ms after the join click (B's performance.now()); PLIs = keyframe requests the bridge sent during the join"
    );
    let mut header = format!("{:>4}", "#");
    for (_, short) in STEPS {
        header.push_str(&format!(" {short:>9}"));
    }
    println!("{header} {:>5}", "PLIs");
    for (i, row) in rows.iter().enumerate() {
        let mut line = format!("{i:>4}");
        for value in row {
            match value {
                Some(ms) => line.push_str(&format!(" {ms:>9.1}")),
                None => line.push_str(&format!(" {:>9}", "-")),
            }
        }
        println!("{line} {:>5}", keyframe_requests[i]);
    }
    println!();
    println!("per step (ms after the previous step):");
    println!("{:>9} {:>9} {:>9} {:>9}", "step", "p50", "p95", "max");
    for (index, (_, short)) in STEPS.iter().enumerate() {
        let mut deltas: Vec<f64> = rows
            .iter()
            .filter_map(|row| {
                let at = row[index]?;
                let before = row[..index].iter().rev().find_map(|v| *v).unwrap_or(0.0);
                Some(at - before)
            })
            .collect();
        if deltas.is_empty() {
            continue;
        }
        deltas.sort_by(f64::total_cmp);
        println!(
            "{short:>9} {:>9.1} {:>9.1} {:>9.1}",
            percentile(&deltas, 50.0),
            percentile(&deltas, 95.0),
            deltas[deltas.len() - 1]
        );
    }
    let mut totals: Vec<f64> = rows.iter().filter_map(|row| row[STEPS.len() - 1]).collect();
    let samples = totals
        .iter()
        .map(|ms| format!("{ms:.1}"))
        .collect::<Vec<_>>()
        .join(", ");
    totals.sort_by(f64::total_cmp);
    println!();
    println!("samples (ms): {samples}");
    println!(
        "join click -> first remote frame: n={} p50={:.1} ms p95={:.1} ms max={:.1} ms (target < 400 ms)",
        totals.len(),
        percentile(&totals, 50.0),
        percentile(&totals, 95.0),
        totals[totals.len() - 1]
    );

    let publisher = a
        .eval(PUBLISHER_JS)
        .await
        .unwrap_or_else(|err| Value::String(format!("{err:#}")));
    println!("A's camera as sent at the end: {publisher}");

    a.close().await.ok();
    drop(browser);
    running.stop().await;
}
