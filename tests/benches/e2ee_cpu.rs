//! What end-to-end encryption costs the browser: two pages of the web client in one headless
//! Chromium call each other (camera and microphone, Chromium's fake devices) against `bridgemesh
//! up` on loopback, once in the clear and once with E2EE on (a fresh room each time), alternating,
//! RUNS times each. For each phase the CPU time every Chromium process used over HOLD_S seconds is
//! read from CDP (`SystemInfo.getProcessInfo`): the renderers (each page's JavaScript, its
//! encryption worker and its WebRTC threads: encoding, decoding, packetizing) and the whole browser.
//!
//! ```sh
//! cargo bench -p bridgemesh-tests --bench e2ee_cpu        # RUNS=3 HOLD_S=20
//! ```

use bridgemesh_tests::bench::{self, env_u64};
use bridgemesh_tests::chromium::{Browser, Page};
use bridgemesh_tests::harness::web::{install_helpers, summary_condition};
use bridgemesh_tests::harness::{room, up};
use std::time::{Duration, Instant};

const TIMEOUT: Duration = Duration::from_secs(60);
const SETTLE: Duration = Duration::from_secs(3);
const PASSPHRASE: &str = "benchmark passphrase words";
/// The camera stream a page sends: what is being encrypted.
const OUTBOUND_JS: &str = r#"(async () => {
  let out = null;
  (await window.bridgemesh.pc.getStats()).forEach((r) => {
    if (r.type === 'outbound-rtp' && r.kind === 'video' && r.framesEncoded > 0) {
      out = { width: r.frameWidth, height: r.frameHeight, fps: r.framesPerSecond,
        kbps: Math.round((r.targetBitrate || 0) / 1000), encoder: r.encoderImplementation };
    }
  });
  return out;
})()"#;

fn main() {
    bench::block_on(run());
}

async fn wait_or_die(page: &Page, label: &str, what: &str, expression: &str) {
    bench::wait_or_die(page, label, what, expression, TIMEOUT).await;
}

/// CPU seconds so far: (renderers, every process).
async fn cpu(browser: &Browser) -> (f64, f64) {
    let processes = browser
        .process_cpu_seconds()
        .await
        .expect("SystemInfo.getProcessInfo");
    let renderers = processes
        .iter()
        .filter(|(kind, _, _)| kind == "renderer")
        .map(|(_, _, s)| s)
        .sum();
    let all = processes.iter().map(|(_, _, s)| s).sum();
    (renderers, all)
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "?".into())
}

struct Sample {
    renderers_pct: f64,
    all_pct: f64,
    frames_per_s: f64,
}

/// One phase: two pages in a new room, E2EE on or not, held HOLD_S seconds.
async fn phase(browser: &Browser, base: &str, index: u64, e2ee: bool, hold: Duration) -> Sample {
    let room = room(&format!("e2ee-cpu-{index}"));
    let url = format!("{base}/{}", room.as_str());
    let ada = browser
        .new_window(&format!("{url}?autojoin=1&name=Ada"))
        .await
        .expect("Ada's page opens");
    install_helpers(&ada).await.expect("helpers");
    wait_or_die(
        &ada,
        "Ada",
        "moderator",
        "window.bridgemesh.role && window.bridgemesh.role() === 'moderator'",
    )
    .await;
    let bob = browser
        .new_window(&format!("{url}?autojoin=1&name=Bob"))
        .await
        .expect("Bob's page opens");
    install_helpers(&bob).await.expect("helpers");
    let both = "s.state === 'connected' && s.peers.length === 1 \
                && s.inbound.some((r) => r.kind === 'video' && r.frames > 30)";
    for (page, label) in [(&ada, "Ada"), (&bob, "Bob")] {
        wait_or_die(page, label, "media", &summary_condition(both)).await;
    }
    if e2ee {
        let passphrase = serde_json::to_string(PASSPHRASE).unwrap();
        ada.eval(&format!(
            "window.bridgemesh.e2ee.enable({passphrase}).then(() => true)"
        ))
        .await
        .expect("E2EE on");
        wait_or_die(&bob, "Bob", "told", "window.bridgemesh.e2ee.required === true").await;
        bob.eval(&format!(
            "window.bridgemesh.e2ee.setPassphrase({passphrase}).then(() => true)"
        ))
        .await
        .expect("Bob's key");
        let decrypting = "(() => { const r = Object.values(window.bridgemesh.e2ee.remote)[0]; \
                          return Boolean(r && r.camera && r.camera.decrypted > 60 && !r.camera.failing); })()";
        for (page, label) in [(&ada, "Ada"), (&bob, "Bob")] {
            wait_or_die(page, label, "decrypting", decrypting).await;
        }
    }
    tokio::time::sleep(SETTLE).await;
    let frames = "window.__bmSummary().then((s) => s.inbound.filter((r) => r.kind === 'video').reduce((n, r) => n + r.frames, 0))";
    let frames_before = ada.eval(frames).await.unwrap().as_f64().unwrap_or(0.0)
        + bob.eval(frames).await.unwrap().as_f64().unwrap_or(0.0);
    let (r0, a0) = cpu(browser).await;
    let started = Instant::now();
    tokio::time::sleep(hold).await;
    let (r1, a1) = cpu(browser).await;
    let elapsed = started.elapsed().as_secs_f64();
    let frames_after = ada.eval(frames).await.unwrap().as_f64().unwrap_or(0.0)
        + bob.eval(frames).await.unwrap().as_f64().unwrap_or(0.0);
    let sent = ada
        .eval(OUTBOUND_JS)
        .await
        .unwrap_or_else(|err| serde_json::Value::String(format!("{err:#}")));
    println!("  Ada's camera as sent: {sent}");
    if e2ee {
        let failing = "JSON.stringify(window.bridgemesh.e2ee.remote)";
        println!(
            "  e2ee state: Ada {} / Bob {}",
            ada.eval(failing).await.unwrap(),
            bob.eval(failing).await.unwrap()
        );
    }
    ada.close().await.expect("close");
    bob.close().await.expect("close");
    tokio::time::sleep(Duration::from_secs(1)).await;
    Sample {
        renderers_pct: 100.0 * (r1 - r0) / elapsed,
        all_pct: 100.0 * (a1 - a0) / elapsed,
        frames_per_s: (frames_after - frames_before) / elapsed,
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

async fn run() {
    let runs = env_u64("RUNS", 3);
    let hold = Duration::from_secs(env_u64("HOLD_S", 20));
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,rtc_dtls=error"));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).try_init();
    let running = up().await;
    let browser = Browser::launch().await.expect("chromium starts");
    let base = running.control_url.clone();
    println!(
        "e2ee_cpu: two pages calling each other, {}s per phase, {runs} runs each, alternating",
        hold.as_secs()
    );
    let mut plain = Vec::new();
    let mut e2ee = Vec::new();
    for run in 0..runs {
        for encrypted in [false, true] {
            let load = load_average();
            let sample = phase(&browser, &base, run * 2 + u64::from(encrypted), encrypted, hold).await;
            println!(
                "run {run} {:>5}: renderers {:6.1} % of a core, all Chromium {:6.1} %, {:5.1} decoded frames/s (both pages), load average {load}",
                if encrypted { "e2ee" } else { "plain" },
                sample.renderers_pct,
                sample.all_pct,
                sample.frames_per_s
            );
            if encrypted { &mut e2ee } else { &mut plain }.push(sample);
        }
    }
    let summary = |name: &str, samples: &[Sample]| {
        let r = median(samples.iter().map(|s| s.renderers_pct).collect());
        let a = median(samples.iter().map(|s| s.all_pct).collect());
        let f = median(samples.iter().map(|s| s.frames_per_s).collect());
        println!("median {name:>5}: renderers {r:6.1} %, all Chromium {a:6.1} %, {f:5.1} frames/s");
        (r, a)
    };
    let (pr, pa) = summary("plain", &plain);
    let (er, ea) = summary("e2ee", &e2ee);
    println!(
        "e2ee / plain: renderers {:.2}x, all Chromium {:.2}x; per page with E2EE: +{:.1} % of a core (renderers)",
        er / pr,
        ea / pa,
        (er - pr) / 2.0
    );
    drop(browser);
    running.stop().await;
}
