//! Simulcast end to end with Chromium: Ada publishes her (fake, 720p) camera as the three layers
//! the bridge's offer asks for; two receive-only viewers show her tile at different sizes — Bob
//! in a small window (a tile under 100 px tall), Cy in a large one (over 400 px) — and their pages
//! send the bridge `receiver_constraints` from that layout. Each receives one layer: Bob's decoded
//! frames are 180 pixels tall, Cy's 720, and both keep decoding. The sizes come from the real
//! layout code, nothing is forced.

use bridgemesh_tests::chromium::{Browser, LaunchOptions};
use bridgemesh_tests::harness::web::Participant;
use bridgemesh_tests::harness::{room, up};
use serde_json::Value;
use std::time::{Duration, Instant};

const SETTLE_TIMEOUT: Duration = Duration::from_secs(40);

/// The page's inbound video (height of the last decoded frame, frames decoded) and outbound video
/// layers, from its own `RTCPeerConnection.getStats()`, with what it told the bridge.
const VIDEO_STATS_JS: &str = r#"(async () => {
  const bm = window.bridgemesh;
  const pc = bm && bm.pc;
  if (!pc) return { error: 'no peer connection' };
  const stats = await pc.getStats();
  const inbound = [];
  const outbound = [];
  stats.forEach((r) => {
    if (r.type === 'inbound-rtp' && r.kind === 'video' && (r.framesDecoded || 0) > 0) {
      inbound.push({ height: r.frameHeight || 0, decoded: r.framesDecoded || 0 });
    }
    if (r.type === 'outbound-rtp' && r.kind === 'video') {
      outbound.push({ rid: r.rid || null, height: r.frameHeight || 0, active: r.active !== false });
    }
  });
  const tile = [...document.querySelectorAll('.tile:not(.local)')].map((el) => Math.round(el.getBoundingClientRect().height));
  return { inbound, outbound, tile, visibility: document.visibilityState, constraints: bm.receiverConstraints || null };
})()"#;

/// Ada's side of the negotiation, for a failure's report.
const NEGOTIATION_JS: &str = r#"(() => {
  const pc = window.bridgemesh && window.bridgemesh.pc;
  if (!pc) return null;
  return {
    offer: pc.remoteDescription && pc.remoteDescription.sdp,
    answer: pc.localDescription && pc.localDescription.sdp,
    senders: pc.getTransceivers().map((t) => ({ mid: t.mid, direction: t.currentDirection,
      track: t.sender.track && t.sender.track.kind, encodings: t.sender.getParameters().encodings })),
  };
})()"#;

async fn video_stats(who: &Participant) -> Value {
    who.page
        .eval(VIDEO_STATS_JS)
        .await
        .unwrap_or_else(|err| panic!("{}: getStats: {err:#}", who.name))
}

/// The one inbound video stream's (height, frames decoded), if it decodes.
fn inbound(stats: &Value) -> Option<(u64, u64)> {
    let first = stats["inbound"].as_array()?.first()?;
    Some((first["height"].as_u64()?, first["decoded"].as_u64()?))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_viewer_receives_the_simulcast_layer_its_tile_needs() {
    let running = up().await;
    let room = room("simulcast-layout");
    let window = |size: &str| LaunchOptions {
        args: vec![format!("--window-size={size}")],
        ..Default::default()
    };
    let small = Browser::launch_with(window("360,300"))
        .await
        .expect("chromium starts");
    let large = Browser::launch_with(window("1920,1200"))
        .await
        .expect("a second chromium starts");
    // Ada's tab goes to the background when Bob's opens: a hidden page still publishes.
    let ada = Participant::open(&small, &running, &room, "Ada").await;
    let bob = Participant::open_with_query(&small, &running, &room, "Bob", "&viewer=1").await;
    let cy = Participant::open_with_query(&large, &running, &room, "Cy", "&viewer=1").await;

    // Settle: Bob decodes small frames, Cy large ones.
    let deadline = Instant::now() + SETTLE_TIMEOUT;
    let (mut bob_stats, mut cy_stats);
    loop {
        bob_stats = video_stats(&bob).await;
        cy_stats = video_stats(&cy).await;
        let settled = matches!(
            (inbound(&bob_stats), inbound(&cy_stats)),
            (Some((b, _)), Some((c, _))) if b > 0 && b <= 270 && c >= 540
        );
        if settled {
            break;
        }
        if Instant::now() > deadline {
            let ada_stats = video_stats(&ada).await;
            let ada_sdp = ada.page.eval(NEGOTIATION_JS).await.unwrap_or_default();
            panic!(
                "the viewers did not settle on their layers:\nBob {bob_stats}\nCy {cy_stats}\nAda {ada_stats}\n\
                 Ada's negotiation {ada_sdp}\nbridge {:?}",
                running.bridge.stats().shards.simulcast
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let ada_stats = video_stats(&ada).await;
    eprintln!("Ada sends {}", ada_stats["outbound"]);
    eprintln!("Bob {bob_stats}\nCy {cy_stats}");
    let layers = ada_stats["outbound"].as_array().map_or(0, |o| o.len());
    assert!(
        layers >= 2,
        "Ada's camera goes out as simulcast layers: {ada_stats}"
    );

    // Both keep decoding, each on its own layer, for a few seconds.
    let (_, bob_before) = inbound(&bob_stats).expect("Bob decodes");
    let (_, cy_before) = inbound(&cy_stats).expect("Cy decodes");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let bob_after = video_stats(&bob).await;
    let cy_after = video_stats(&cy).await;
    let (bob_height, bob_decoded) = inbound(&bob_after).expect("Bob still decodes");
    let (cy_height, cy_decoded) = inbound(&cy_after).expect("Cy still decodes");
    assert!(
        bob_height <= 270,
        "Bob's small tile gets a small layer: {bob_after}"
    );
    assert!(
        cy_height >= 540,
        "Cy's large tile gets the large layer: {cy_after}"
    );
    assert!(
        bob_decoded > bob_before + 30 && cy_decoded > cy_before + 30,
        "both keep decoding: Bob {bob_before} -> {bob_decoded}, Cy {cy_before} -> {cy_decoded}"
    );
    let simulcast = running.bridge.stats().shards.simulcast;
    eprintln!("bridge simulcast counters: {simulcast:?}");
    eprintln!("bridge bandwidth: {:?}", running.bridge.stats().shards.bandwidth);
    assert!(
        simulcast.constraints_applied >= 2,
        "the pages sent their constraints: {simulcast:?}"
    );
    assert!(
        simulcast.legs_on_layer[0] >= 1 && simulcast.legs_on_layer[2] >= 1,
        "one leg on the low layer, one on the top: {simulcast:?}"
    );

    // Bob's tab goes to the background: his page asks for nothing, the bridge pauses his leg
    // and his decoder starves; back in front, it resumes (on a keyframe) and decodes again.
    let cover = small.new_page("about:blank").await.expect("a tab over Bob's");
    let mut paused = None;
    for _ in 0..40 {
        let stats = video_stats(&bob).await;
        let legs_paused = running.bridge.stats().shards.simulcast.legs_paused;
        if stats["visibility"] == "hidden" && legs_paused == 1 {
            paused = inbound(&stats).map(|(_, decoded)| decoded);
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let paused = paused.expect("Bob's hidden page paused his leg");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (_, still) = inbound(&video_stats(&bob).await).expect("Bob's stream still listed");
    assert!(
        still <= paused + 3,
        "nothing reaches a hidden page: {paused} -> {still} frames"
    );
    cover.close().await.expect("the cover tab closes");
    let resumed = format!(
        "(async () => {{ const s = await ({VIDEO_STATS_JS}); \
         return s.visibility === 'visible' && s.inbound.length > 0 && s.inbound[0].decoded > {still} + 30; }})()"
    );
    bob.page
        .wait_for(&resumed, SETTLE_TIMEOUT, VIDEO_STATS_JS)
        .await
        .expect("Bob decodes again once his page is visible");
    let (bob_height, _) = inbound(&video_stats(&bob).await).expect("Bob decodes");
    assert!(bob_height <= 270, "back on the small layer");

    for who in [ada, bob, cy] {
        who.page.close().await.unwrap();
    }
    drop(small);
    drop(large);
    running.stop().await;
}
