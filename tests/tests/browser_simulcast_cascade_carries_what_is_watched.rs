//! Simulcast across a cascade link with Chromium (`up --bridges 2 --max-per-room 1`): Ada
//! publishes her camera as three layers on one bridge; Bob watches from the other bridge in a
//! small window (a browser launched with one), so his page asks for a thumbnail and the link
//! between the bridges carries only the lowest layer (bytes by layer from Ada's bridge's
//! counters). Bob enlarges his window: his tile grows, his bridge asks for more, and the top
//! layer crosses the link and reaches him. The sizes come from the real layout code.

use bridgemesh_tests::chromium::{Browser, LaunchOptions};
use bridgemesh_tests::harness::web::Participant;
use bridgemesh_tests::harness::{eventually, room};
use serde_json::Value;
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(40);

/// The height of the last frame the page decoded of its one inbound video, and how many.
const INBOUND_JS: &str = r#"(async () => {
  const pc = window.bridgemesh && window.bridgemesh.pc;
  if (!pc) return null;
  let found = null;
  (await pc.getStats()).forEach((r) => {
    if (r.type === 'inbound-rtp' && r.kind === 'video' && (r.framesDecoded || 0) > 0) {
      found = { height: r.frameHeight || 0, decoded: r.framesDecoded };
    }
  });
  return found;
})()"#;

async fn inbound(page: &Participant) -> Value {
    page.page.eval(INBOUND_JS).await.unwrap_or(Value::Null)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_link_carries_the_layer_the_far_side_shows() {
    let running = bridgemesh::up::start(bridgemesh::up::UpConfig {
        bridges: 2,
        max_per_room: 1,
        ..bridgemesh::up::UpConfig::ephemeral()
    })
    .await
    .expect("bridgemesh up starts with two bridges");
    let room = room("simulcast-cascade");
    let browser = Browser::launch().await.expect("chromium starts");
    let ada = Participant::open(&browser, &running, &room, "Ada").await;
    ada.page
        .wait_for(
            "window.bridgemesh.state === 'connected'",
            TIMEOUT,
            "window.bridgemesh.state",
        )
        .await
        .expect("Ada connects");
    // Bob's browser has small windows, as on a phone: his tile of Ada is a thumbnail.
    let small = Browser::launch_with(LaunchOptions {
        args: vec!["--window-size=360,300".into()],
        ..Default::default()
    })
    .await
    .expect("a second chromium starts");
    let bob = Participant::open_with_query(&small, &running, &room, "Bob", "&viewer=1").await;

    let ada_bridge = ada.summary().await["bridgeId"].clone();
    let bob_bridge = bob.summary().await["bridgeId"].clone();
    assert_ne!(ada_bridge, bob_bridge, "the room spans the two bridges");
    let publisher_bridge = &running
        .bridges
        .iter()
        .find(|b| b.bridge.id().as_str() == ada_bridge.as_str().unwrap())
        .expect("Ada's bridge")
        .bridge;
    let link_bytes = || publisher_bridge.stats().shards.simulcast.link_bytes_by_layer;

    // Bob decodes a thumbnail; from then on only the lowest layer crosses the link.
    bob.page
        .wait_for(
            &format!(
                "{INBOUND_JS}.then((v) => Boolean(v && v.height > 0 && v.height <= 270 && v.decoded > 30))"
            ),
            TIMEOUT,
            INBOUND_JS,
        )
        .await
        .unwrap_or_else(|err| {
            panic!(
                "Bob decodes a small layer: {err:#}; link bytes {:?}",
                link_bytes()
            )
        });
    let before = link_bytes();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = link_bytes();
    let grew = |layer: usize, from: [u64; 3], to: [u64; 3]| to[layer] - from[layer];
    assert!(
        grew(0, before, after) > 10_000 && grew(1, before, after) == 0 && grew(2, before, after) == 0,
        "thumbnails only: the low layer crosses, {before:?} -> {after:?}"
    );

    // Bob enlarges his window: the top layer crosses and he decodes it.
    bob.page
        .set_window_size(1920, 1200)
        .await
        .expect("Bob's window grows");
    bob.page
        .wait_for(
            &format!("{INBOUND_JS}.then((v) => Boolean(v && v.height >= 540))"),
            TIMEOUT,
            INBOUND_JS,
        )
        .await
        .unwrap_or_else(|err| {
            panic!(
                "Bob decodes the top layer: {err:#}; link bytes {:?}",
                link_bytes()
            )
        });
    let before = link_bytes();
    eventually("the top layer crossing the link", TIMEOUT, || {
        grew(2, before, link_bytes()) > 10_000
    })
    .await;
    eprintln!(
        "link bytes by layer: {:?}; Bob {}",
        link_bytes(),
        inbound(&bob).await
    );

    for page in [ada, bob] {
        page.page.close().await.unwrap();
    }
    drop(browser);
    drop(small);
    running.stop().await;
}
