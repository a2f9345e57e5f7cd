//! The bridge names the dominant speaker from the audio levels Chromium puts in its packets
//! (RFC 6464): of two pages, the one whose microphone is on becomes the speaker on both, and when
//! they swap (one mutes, the other unmutes) the highlight follows. The microphone plays a tone
//! generated here (`--use-file-for-fake-audio-capture`): Chromium's own fake microphone only
//! beeps briefly, which the bridge rightly does not take for speech.

use bridgemesh_tests::chromium::{Browser, LaunchOptions};
use bridgemesh_tests::harness::web::Participant;
use bridgemesh_tests::harness::{room, up};
use std::path::Path;
use std::time::Duration;

const MEDIA_TIMEOUT: Duration = Duration::from_secs(30);
/// The bridge needs half a second of speech; the rest is room for a busy CI machine.
const SPEAKER_TIMEOUT: Duration = Duration::from_secs(15);

/// Ten seconds of a 440 Hz tone at a third of full scale (about -13 dBov), 48 kHz mono 16-bit
/// PCM: what a talking person is to the audio level extension. Chromium loops the file.
fn write_tone(path: &Path) {
    const RATE: u32 = 48_000;
    let samples: Vec<i16> = (0..RATE * 10)
        .map(|n| {
            let t = f64::from(n) / f64::from(RATE);
            ((2.0 * std::f64::consts::PI * 440.0 * t).sin() * f64::from(i16::MAX) / 3.0) as i16
        })
        .collect();
    let data_len = (samples.len() * 2) as u32;
    let mut wav = Vec::with_capacity(44 + data_len as usize);
    wav.extend_from_slice(b"RIFF");
    wav.extend_from_slice(&(36 + data_len).to_le_bytes());
    wav.extend_from_slice(b"WAVEfmt ");
    wav.extend_from_slice(&16u32.to_le_bytes()); // fmt chunk size
    wav.extend_from_slice(&1u16.to_le_bytes()); // PCM
    wav.extend_from_slice(&1u16.to_le_bytes()); // mono
    wav.extend_from_slice(&RATE.to_le_bytes());
    wav.extend_from_slice(&(RATE * 2).to_le_bytes()); // bytes per second
    wav.extend_from_slice(&2u16.to_le_bytes()); // block align
    wav.extend_from_slice(&16u16.to_le_bytes()); // bits per sample
    wav.extend_from_slice(b"data");
    wav.extend_from_slice(&data_len.to_le_bytes());
    for sample in samples {
        wav.extend_from_slice(&sample.to_le_bytes());
    }
    std::fs::write(path, wav).unwrap();
}

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
