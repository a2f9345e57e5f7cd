//! The bridge names the dominant speaker from the audio levels Chromium puts in its packets
//! (RFC 6464): of two pages, the one whose microphone is on becomes the speaker on both, and when
//! they swap (one mutes, the other unmutes) the highlight follows. The microphone plays a tone
//! (`bridgemesh_tests::tone`, `--use-file-for-fake-audio-capture`): Chromium's own fake microphone
//! only beeps briefly, which the bridge rightly does not take for speech.

use bridgemesh_tests::chromium::{Browser, LaunchOptions};
use bridgemesh_tests::harness::web::Participant;
use bridgemesh_tests::harness::{room, up};
use bridgemesh_tests::tone::write_tone;
use std::time::Duration;

const MEDIA_TIMEOUT: Duration = Duration::from_secs(30);
/// The bridge needs half a second of speech; the rest is room for a busy CI machine.
const SPEAKER_TIMEOUT: Duration = Duration::from_secs(15);

/// Whether the page highlights tile `key` ('local' or a participant id) as the speaker's.
async fn highlighted(page: &Participant, key: &str) -> bool {
    let key = serde_json::to_string(key).unwrap();
    page.page
        .eval(&format!(
            "window.bridgemesh.activeSpeaker === {key} && document.querySelectorAll('.tile.speaking').length === 1"
        ))
        .await
        .unwrap()
        == serde_json::Value::Bool(true)
}

/// Waits until the page's client says `participant_id` is the dominant speaker.
async fn wait_for_speaker(page: &Participant, participant_id: &str, whose: &str) {
    let id = serde_json::to_string(participant_id).unwrap();
    page.page
        .wait_for(
            &format!("window.bridgemesh.dominantSpeaker === {id}"),
            SPEAKER_TIMEOUT,
            "JSON.stringify({speaker: window.bridgemesh.dominantSpeaker, me: window.bridgemesh.participantId})",
        )
        .await
        .unwrap_or_else(|err| panic!("{}: {whose} never became the speaker: {err:#}", page.name));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_that_talks_becomes_the_dominant_speaker_on_both_pages() {
    let dir = tempfile::tempdir().unwrap();
    let tone = dir.path().join("tone.wav");
    write_tone(&tone);
    let running = up().await;
    let room = room("speaker");
    let browser = Browser::launch_with(LaunchOptions {
        args: vec![format!("--use-file-for-fake-audio-capture={}", tone.display())],
        ..LaunchOptions::default()
    })
    .await
    .expect("chromium starts");
    let ada = Participant::open(&browser, &running, &room, "Ada").await;
    let bob = Participant::open_with_query(&browser, &running, &room, "Bob", "&mic=0").await;
    let bob_id = ada.wait_for_media_from(&bob, MEDIA_TIMEOUT).await;
    let ada_id = bob.wait_for_media_from(&ada, MEDIA_TIMEOUT).await;

    wait_for_speaker(&bob, &ada_id, "Ada").await;
    wait_for_speaker(&ada, &ada_id, "Ada, herself").await;
    assert!(
        highlighted(&bob, &ada_id).await,
        "Bob's page highlights Ada's tile"
    );
    assert!(
        highlighted(&ada, "local").await,
        "Ada's page highlights her own tile"
    );

    // They swap: Ada mutes, Bob unmutes.
    ada.click("mic-button").await;
    bob.click("mic-button").await;
    wait_for_speaker(&ada, &bob_id, "Bob").await;
    wait_for_speaker(&bob, &bob_id, "Bob, himself").await;
    assert!(
        highlighted(&ada, &bob_id).await,
        "Ada's page highlights Bob's tile"
    );

    ada.page.close().await.unwrap();
    bob.page.close().await.unwrap();
    drop(browser);
    running.stop().await;
}
