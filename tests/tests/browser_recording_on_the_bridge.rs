//! Recording on the bridge with three pages of the real web client on two bridges
//! (`up --bridges 2 --max-per-room 2`): the moderator's record button starts it on her bridge,
//! every page shows the indicator (the page on the other bridge through the cascade, and a late
//! joiner), the file holds every page's audio and video (the other bridge's page's arrived over
//! the cascade), and ffmpeg decodes every frame of it: Chromium's real VP8 and Opus, cut into
//! frames by the bridge without decoding, play.

use bridgemesh_tests::chromium::Browser;
use bridgemesh_tests::harness::web::Participant;
use bridgemesh_tests::harness::{eventually, init_tracing, room};
use std::process::Command;
use std::time::Duration;

/// Generous: CI runs this on two cores next to other end-to-end tests.
const TIMEOUT: Duration = Duration::from_secs(30);

async fn wait(page: &Participant, what: &str, condition: &str) {
    let expression =
        format!("(() => {{ const r = window.bridgemesh.recording; return Boolean({condition}); }})()");
    let describe = "JSON.stringify(window.bridgemesh && window.bridgemesh.recording)";
    if let Err(err) = page.page.wait_for(&expression, TIMEOUT, describe).await {
        panic!(
            "{}: {what}: {err:#}\n{}",
            page.name,
            page.page.console_log().join("\n")
        );
    }
}

async fn shown(page: &Participant) -> bool {
    let hidden = page
        .page
        .eval("document.getElementById('recording-indicator').hidden")
        .await
        .unwrap();
    hidden == false
}

async fn click(page: &Participant, id: &str) {
    let script = format!(
        "(() => {{ const b = document.getElementById('{id}'); if (!b || b.hidden) throw new Error('no {id}'); b.click(); return true; }})()"
    );
    page.page
        .eval(&script)
        .await
        .unwrap_or_else(|err| panic!("{} clicks {id}: {err:#}", page.name));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_moderators_recording_shows_on_every_page_and_holds_every_pages_media_decodable() {
    init_tracing();
    let recordings = tempfile::tempdir().unwrap();
    let running = bridgemesh::up::start(bridgemesh::up::UpConfig {
        bridges: 2,
        max_per_room: 2,
        recordings_dir: Some(recordings.path().to_owned()),
        ..bridgemesh::up::UpConfig::ephemeral()
    })
    .await
    .expect("bridgemesh up starts with two bridges");
    let room = room("recorded");
    let browser = Browser::launch().await.expect("chromium starts");
    // Ada opens the room: she moderates it.
    let ada = Participant::open(&browser, &running, &room, "Ada").await;
    // Connected (on her bridge) before Bob joins, so he finds a moderator there and is a guest.
    if let Err(err) = ada
        .page
        .wait_for(
            "window.bridgemesh.state === 'connected'",
            TIMEOUT,
            "window.bridgemesh.state",
        )
        .await
    {
        panic!("Ada connects: {err:#}");
    }
    let bob = Participant::open(&browser, &running, &room, "Bob").await;
    ada.wait_for_media_from(&bob, TIMEOUT).await;
    bob.wait_for_media_from(&ada, TIMEOUT).await;
    let bob_button = bob
        .page
        .eval("document.getElementById('record-button').hidden")
        .await
        .unwrap();
    assert_eq!(bob_button, true, "only moderators have the record button");

    click(&ada, "record-button").await;
    for page in [&ada, &bob] {
        wait(page, "the recording indicator", "r.active === true").await;
        assert!(shown(page).await, "{}: the indicator is shown", page.name);
    }
    // Cy joins late, past the first bridge's two seats: on the other bridge.
    let cy = Participant::open(&browser, &running, &room, "Cy").await;
    wait(
        &cy,
        "the indicator, as a late joiner on the other bridge",
        "r.active === true",
    )
    .await;
    let ada_bridge = ada.summary().await["bridgeId"].clone();
    let cy_bridge = cy.summary().await["bridgeId"].clone();
    assert_ne!(ada_bridge, cy_bridge, "the room spans the two bridges");
    let recorder = running
        .bridges
        .iter()
        .find(|b| b.bridge.id().as_str() == ada_bridge.as_str().unwrap())
        .expect("Ada's bridge");
    let store = recorder.bridge.recordings().expect("up records").clone();
    // Cy's media crossed the link into the recording: some six seconds of every page's media
    // (50 audio frames a second from each, and video) are written.
    eventually("three pages' media in the recording", TIMEOUT, || {
        store
            .list()
            .unwrap()
            .first()
            .is_some_and(|r| r.frames > 6 * 3 * 50)
    })
    .await;

    click(&ada, "record-button").await;
    for page in [&ada, &bob, &cy] {
        wait(page, "the indicator gone", "r.active === false").await;
        assert!(!shown(page).await, "{}: the indicator is hidden", page.name);
    }
    eventually("the recording finished", TIMEOUT, || {
        store
            .list()
            .unwrap()
            .first()
            .is_some_and(|r| r.state == bridgemesh_bridge::recording::RecordingState::Complete)
    })
    .await;
    let info = store.list().unwrap().remove(0);
    let file = store.file(&info.file).unwrap();

    let probe = Command::new("ffprobe")
        .args(["-v", "error", "-count_packets", "-show_streams", "-of", "json"])
        .arg(&file)
        .output()
        .expect("ffprobe runs (scripts/test installs Debian's ffmpeg)");
    assert!(
        probe.status.success(),
        "{}",
        String::from_utf8_lossy(&probe.stderr)
    );
    let probe: serde_json::Value = serde_json::from_slice(&probe.stdout).unwrap();
    let streams = probe["streams"].as_array().unwrap();
    let mut titles: Vec<String> = streams
        .iter()
        .map(|s| s["tags"]["title"].as_str().unwrap().to_owned())
        .collect();
    titles.sort();
    assert_eq!(
        titles,
        [
            "Ada (camera)",
            "Ada (microphone)",
            "Bob (camera)",
            "Bob (microphone)",
            "Cy (camera)",
            "Cy (microphone)"
        ],
        "every page's audio and video, Cy's from the other bridge"
    );
    for stream in streams {
        let packets: u64 = stream["nb_read_packets"].as_str().unwrap().parse().unwrap();
        assert!(packets > 30, "{}: {packets} frames", stream["tags"]["title"]);
    }
    // Every frame decodes: ffmpeg says nothing at the error level. Frames keep their own times
    // (`passthrough`, the file's time base): the camera's rate varies, and an output at a guessed
    // constant rate would complain of two frames falling on one of its ticks.
    let decode = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(&file)
        .args([
            "-map",
            "0",
            "-fps_mode",
            "passthrough",
            "-enc_time_base",
            "-1",
            "-f",
            "null",
            "-",
        ])
        .output()
        .expect("ffmpeg runs");
    assert!(
        decode.status.success() && decode.stderr.is_empty(),
        "ffmpeg could not decode the recording: {}",
        String::from_utf8_lossy(&decode.stderr)
    );

    // With end-to-end encryption on, the bridge records ciphertext: every page says so, the
    // other bridge's too, and so does the listing.
    ada.page
        .eval("window.bridgemesh.sendSignal({ type: 'set_e2ee', required: true })")
        .await
        .unwrap();
    click(&ada, "record-button").await;
    for page in [&ada, &bob, &cy] {
        wait(
            page,
            "the indicator saying ciphertext",
            "r.active === true && r.encrypted === true \
             && document.getElementById('recording-indicator').textContent.includes('ciphertext')",
        )
        .await;
    }
    eventually("an encrypted recording listed", TIMEOUT, || {
        store
            .list()
            .unwrap()
            .iter()
            .any(|r| r.encrypted && r.state == bridgemesh_bridge::recording::RecordingState::Recording)
    })
    .await;
    click(&ada, "record-button").await;
    wait(&ada, "the indicator gone", "r.active === false").await;
}
