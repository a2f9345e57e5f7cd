//! Two pages of the real web client in one headless Chromium join the same room through the
//! real control API and bridge, and each receives and decodes the other's audio and video.

use bridgemesh_tests::chromium::Browser;
use bridgemesh_tests::harness::web::Participant;
use bridgemesh_tests::harness::{room, up};
use std::time::Duration;

/// Generous: CI runs this on two cores next to other end-to-end tests.
const MEDIA_TIMEOUT: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_browser_pages_in_one_room_receive_each_others_audio_and_video() {
    let running = up().await;
    let room = room("two-pages");
    let browser = Browser::launch().await.expect("chromium starts");
    let ada = Participant::open(&browser, &running, &room, "Ada").await;
    let bob = Participant::open(&browser, &running, &room, "Bob").await;

    let bob_id = ada.wait_for_media_from(&bob, MEDIA_TIMEOUT).await;
    let ada_id = bob.wait_for_media_from(&ada, MEDIA_TIMEOUT).await;
    assert_eq!(
        ada.summary().await["me"],
        ada_id.as_str(),
        "Bob sees Ada's own id"
    );
    assert_eq!(
        bob.summary().await["me"],
        bob_id.as_str(),
        "Ada sees Bob's own id"
    );
    // Chromium lists AES_CM_128_HMAC_SHA1_80 first; the bridge, as DTLS server, picks GCM.
    let stats = running.bridge.stats().shards;
    assert_eq!(
        (stats.srtp_sessions_gcm, stats.srtp_sessions_cm),
        (2, 0),
        "both pages' media is protected with AEAD_AES_128_GCM"
    );
    for participant in [&ada, &bob] {
        assert_eq!(
            participant.summary().await["reconnects"],
            0,
            "{} never had to reconnect",
            participant.name
        );
    }

    ada.page.close().await.unwrap();
    bob.page.close().await.unwrap();
    drop(browser);
    running.stop().await;
}
