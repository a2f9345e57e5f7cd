//! Two pages of the real web client in one headless Chromium join one room of
//! `bridgemesh up --bridges 2 --max-per-room 1`: the second page is placed on the other bridge,
//! and the two bridges cascade the room over QUIC. Each page receives and decodes the other's
//! audio and video, and sees the other in its roster like any participant.

use bridgemesh_tests::chromium::Browser;
use bridgemesh_tests::harness::web::Participant;
use bridgemesh_tests::harness::{init_tracing, room};
use std::time::Duration;

/// Generous: CI runs this on two cores next to other end-to-end tests.
const MEDIA_TIMEOUT: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_browser_pages_on_two_bridges_receive_each_others_audio_and_video() {
    init_tracing();
    let running = bridgemesh::up::start(bridgemesh::up::UpConfig {
        bridges: 2,
        max_per_room: 1,
        ..bridgemesh::up::UpConfig::ephemeral()
    })
    .await
    .expect("bridgemesh up starts with two bridges");
    let room = room("two-bridges");
    let browser = Browser::launch().await.expect("chromium starts");
    let ada = Participant::open(&browser, &running, &room, "Ada").await;
    let bob = Participant::open(&browser, &running, &room, "Bob").await;

    let bob_id = ada.wait_for_media_from(&bob, MEDIA_TIMEOUT).await;
    let ada_id = bob.wait_for_media_from(&ada, MEDIA_TIMEOUT).await;
    let ada_bridge = ada.summary().await["bridgeId"].clone();
    let bob_bridge = bob.summary().await["bridgeId"].clone();
    assert!(ada_bridge.is_string() && bob_bridge.is_string());
    assert_ne!(ada_bridge, bob_bridge, "the room spans the two bridges");
    assert_eq!(ada.summary().await["me"], ada_id.as_str());
    assert_eq!(bob.summary().await["me"], bob_id.as_str());
    // Each page hears sender reports on both streams of the other, a remote publisher for its
    // bridge: the bridge writes them from its own clock, so the page can lip-sync the two.
    for page in [&ada, &bob] {
        page.wait_until(
            "sender reports on the other's audio and video",
            "['audio', 'video'].every((kind) => s.inbound.some((r) => r.kind === kind \
             && r.from === s.peers[0].id && r.reports > 0))",
            MEDIA_TIMEOUT,
            &[],
        )
        .await;
    }
    // The pages saw both bridges' reports; the bridges' counters are published every 100 ms.
    for bridge in &running.bridges {
        bridgemesh_tests::harness::eventually("the bridge counts its sender reports", MEDIA_TIMEOUT, || {
            bridge.bridge.stats().shards.sender_reports_generated > 0
        })
        .await;
    }
    // The media crossed the link between the bridges, both ways.
    for bridge in &running.bridges {
        let links = bridge.bridge.cascade_links();
        assert_eq!(links.len(), 1, "one link between the two bridges: {links:?}");
        assert!(
            links[0].media_datagrams_out > 0 && links[0].media_datagrams_in > 0,
            "{links:?}"
        );
    }

    ada.page.close().await.unwrap();
    bob.page.close().await.unwrap();
    drop(browser);
    running.stop().await;
}
