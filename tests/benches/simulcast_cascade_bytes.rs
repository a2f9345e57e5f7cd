//! What a cascade link carries of a simulcast camera, against what its publisher sends: Ada
//! publishes her camera (Chromium's fake 720p device, three layers) on one bridge of three
//! (`up --bridges 3 --max-per-room 1`); Bob and Cy watch from the two other bridges, each in a
//! small window (a browser launched with one), so every far tile is a thumbnail. For HOLD_S
//! seconds the bench reads the RTP bytes Ada's bridge sent over its links, by layer (its
//! `link_bytes_by_layer` counters, both links together), and the bytes Ada's page sent (its
//! `getStats()` outbound video, every layer). Then Cy enlarges his window (one source on stage
//! there) and the same is read again. RUNS times, medians printed.
//!
//! ```sh
//! cargo bench --profile dev -p bridgemesh-tests --bench simulcast_cascade_bytes     # RUNS=3 HOLD_S=15
//! ```

use bridgemesh_tests::bench::{self, env_u64};
use bridgemesh_tests::chromium::{Browser, LaunchOptions, Page};
use bridgemesh_tests::harness::room;
use bridgemesh_tests::harness::web::install_helpers;
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(60);
/// The page's outbound video bytes by simulcast layer (rids q, h, f).
const SENT_JS: &str = r#"(async () => {
  const bytes = [0, 0, 0];
  (await window.bridgemesh.pc.getStats()).forEach((r) => {
    const layer = ['q', 'h', 'f'].indexOf(r.rid);
    if (r.type === 'outbound-rtp' && r.kind === 'video' && layer >= 0) {
      bytes[layer] += (r.bytesSent || 0) + (r.headerBytesSent || 0);
    }
  });
  return bytes;
})()"#;
/// The height of the last frame the page decoded of its inbound video.
const HEIGHT_JS: &str = r#"(async () => {
  let height = 0;
  (await window.bridgemesh.pc.getStats()).forEach((r) => {
    if (r.type === 'inbound-rtp' && r.kind === 'video' && (r.framesDecoded || 0) > 0) height = r.frameHeight || 0;
  });
  return height;
})()"#;

fn main() {
    bench::block_on(run());
}

async fn wait_or_die(page: &Page, label: &str, what: &str, expression: &str) {
    bench::wait_or_die(page, label, what, expression, TIMEOUT).await;
}

async fn open(browser: &Browser, url: &str, label: &str) -> Page {
    let page = browser.new_window(url).await.expect("the page opens");
    install_helpers(&page).await.expect("helpers");
    wait_or_die(
        &page,
        label,
        "connected",
        "window.bridgemesh.state === 'connected'",
    )
    .await;
    page
}

/// Bytes over HOLD, by layer: (what the links carried, what Ada sent).
async fn measure(bridge: &bridgemesh_bridge::Bridge, ada: &Page, hold: Duration) -> ([u64; 3], [u64; 3]) {
    let link = || bridge.stats().shards.simulcast.link_bytes_by_layer;
    let sent = || async {
        let value = ada.eval(SENT_JS).await.expect("Ada's stats");
        [0, 1, 2].map(|l| value[l].as_u64().unwrap_or(0))
    };
    let (link0, sent0) = (link(), sent().await);
    tokio::time::sleep(hold).await;
    let (link1, sent1) = (link(), sent().await);
    (
        [0, 1, 2].map(|l| link1[l] - link0[l]),
        [0, 1, 2].map(|l| sent1[l] - sent0[l]),
    )
}

/// One phase's line; returns (links / published, what two links carrying the top layer would be).
fn report(run: u64, phase: &str, link: [u64; 3], sent: [u64; 3]) -> (f64, f64) {
    let published = sent.iter().sum::<u64>().max(1) as f64;
    let carried = link.iter().sum::<u64>() as f64 / published;
    let top_on_both = 2.0 * sent[2] as f64 / published;
    println!(
        "run {run} {phase:<16} Ada sent q {:>8} h {:>8} f {:>8} B; the links carried q {:>8} h {:>8} f {:>8} B = {carried:.3} of it \
         (the top layer on both links: {top_on_both:.3})",
        sent[0], sent[1], sent[2], link[0], link[1], link[2]
    );
    (carried, top_on_both)
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    values[values.len() / 2]
}

async fn run() {
    let runs = env_u64("RUNS", 3);
    let hold = Duration::from_secs(env_u64("HOLD_S", 15));
    println!(
        "simulcast_cascade_bytes: 3 bridges, a publisher and two far viewers, {}s per phase, {runs} runs",
        hold.as_secs()
    );
    let running = bridgemesh::up::start(bridgemesh::up::UpConfig {
        bridges: 3,
        max_per_room: 1,
        ..bridgemesh::up::UpConfig::ephemeral()
    })
    .await
    .expect("bridgemesh up starts with three bridges");
    let publisher_browser = Browser::launch().await.expect("chromium starts");
    let small = || {
        Browser::launch_with(LaunchOptions {
            args: vec!["--window-size=360,300".into()],
            ..Default::default()
        })
    };
    let (bob_browser, cy_browser) = (
        small().await.expect("chromium starts"),
        small().await.expect("chromium starts"),
    );
    let mut thumbnails = Vec::new();
    let mut on_stage = Vec::new();
    let mut top_on_both = Vec::new();
    for run in 0..runs {
        let room = room(&format!("cascade-bytes-{run}"));
        let base = running.room_url(&room);
        let ada = open(&publisher_browser, &format!("{base}?autojoin=1&name=Ada"), "Ada").await;
        let bob = open(
            &bob_browser,
            &format!("{base}?autojoin=1&name=Bob&viewer=1"),
            "Bob",
        )
        .await;
        let cy = open(&cy_browser, &format!("{base}?autojoin=1&name=Cy&viewer=1"), "Cy").await;
        let ada_bridge = ada.eval("window.bridgemesh.bridgeId").await.unwrap();
        let bridge = &running
            .bridges
            .iter()
            .find(|b| b.bridge.id().as_str() == ada_bridge.as_str().unwrap_or(""))
            .expect("Ada's bridge")
            .bridge;
        let small_picture = format!("{HEIGHT_JS}.then((h) => h > 0 && h <= 270)");
        for (page, label) in [(&bob, "Bob"), (&cy, "Cy")] {
            wait_or_die(page, label, "a thumbnail", &small_picture).await;
        }
        let (link, sent) = measure(bridge, &ada, hold).await;
        let (carried, top) = report(run, "thumbnails only", link, sent);
        thumbnails.push(carried);
        top_on_both.push(top);
        cy.set_window_size(1920, 1200).await.expect("Cy's window grows");
        wait_or_die(
            &cy,
            "Cy",
            "the top layer",
            &format!("{HEIGHT_JS}.then((h) => h >= 540)"),
        )
        .await;
        let (link, sent) = measure(bridge, &ada, hold).await;
        let (carried, top) = report(run, "one on stage", link, sent);
        on_stage.push(carried);
        top_on_both.push(top);
        for page in [ada, bob, cy] {
            page.close().await.expect("the page closes");
        }
    }
    println!(
        "median link bytes / published bytes (both links): thumbnails only {:.3}, one on stage {:.3}; \
         the top layer on both links, as before links asked for a layer: {:.3}",
        median(thumbnails),
        median(on_stage),
        median(top_on_both)
    );
    running.stop().await;
}
