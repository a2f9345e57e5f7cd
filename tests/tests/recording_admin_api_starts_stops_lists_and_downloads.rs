//! The bridge's admin API for recordings, driven the way `bridgemesh admin recordings` drives it
//! (`bridgemesh::recordings_cli`), with two synthetic publishers in a room of `bridgemesh up`:
//! refusals without the token, for a room the bridge does not host and for a second start; a
//! start, a stop, the list, and a download byte for byte equal to the file, which ffprobe reads.

use bridgemesh::recordings_cli::{RecordingsCommand, run};
use bridgemesh_proto::api::ErrorCode;
use bridgemesh_tests::harness::{
    assert_error_envelope, eventually, init_tracing, join, room, wait_for_camera,
};
use std::process::Command;
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recordings_are_started_stopped_listed_and_downloaded_through_the_bridges_admin_api() {
    init_tracing();
    let recordings = tempfile::tempdir().unwrap();
    let running = bridgemesh::up::start(bridgemesh::up::UpConfig {
        recordings_dir: Some(recordings.path().to_owned()),
        ..bridgemesh::up::UpConfig::ephemeral()
    })
    .await
    .expect("bridgemesh up starts");
    let room = room("admin-recorded");
    let ada = join(&running, &room, "ada").await;
    let bob = join(&running, &room, "bob").await;
    wait_for_camera(&bob, &ada, 20).await;
    wait_for_camera(&ada, &bob, 20).await;
    let (bridge, token) = (running.bridge_url.as_str(), running.admin_token.as_str());

    // Without the token, or with another one: refused.
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    for presented in [None, Some("not-the-admin-token-at-all")] {
        let mut request = http.get(format!("{bridge}/bridge/v1/admin/recordings"));
        if let Some(presented) = presented {
            request = request.bearer_auth(presented);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 401);
        assert_error_envelope(&response.json().await.unwrap(), ErrorCode::AdminUnauthorized);
    }
    // A room this bridge does not host.
    let nobody = run(
        bridge,
        token,
        RecordingsCommand::Start {
            room: "nobody-here".into(),
        },
    )
    .await;
    let err = nobody.expect_err("no such room on the bridge").to_string();
    assert!(err.contains("404") && err.contains("not_found"), "{err}");

    let started = run(
        bridge,
        token,
        RecordingsCommand::Start {
            room: room.to_string(),
        },
    )
    .await
    .expect("the recording starts");
    let started: serde_json::Value = serde_json::from_str(&started).unwrap();
    let file = started["file"].as_str().expect("the file's name").to_owned();
    let again = run(
        bridge,
        token,
        RecordingsCommand::Start {
            room: room.to_string(),
        },
    )
    .await;
    let err = again.expect_err("one recording per room").to_string();
    assert!(err.contains("409") && err.contains("conflict"), "{err}");

    let store = running.bridge.recordings().expect("up records").clone();
    eventually("two seconds of both publishers", TIMEOUT, || {
        store
            .list()
            .unwrap()
            .first()
            .is_some_and(|r| r.frames > 2 * 2 * 50)
    })
    .await;
    run(
        bridge,
        token,
        RecordingsCommand::Stop {
            room: room.to_string(),
        },
    )
    .await
    .expect("the recording stops");
    eventually("the recording finished", TIMEOUT, || {
        store
            .list()
            .unwrap()
            .first()
            .is_some_and(|r| r.state == bridgemesh_bridge::recording::RecordingState::Complete)
    })
    .await;

    let listed = run(bridge, token, RecordingsCommand::List { json: true })
        .await
        .unwrap();
    let listed: serde_json::Value = serde_json::from_str(&listed).unwrap();
    let recording = &listed["recordings"][0];
    assert_eq!(recording["file"], file.as_str());
    assert_eq!(recording["room"], room.as_str());
    assert_eq!(recording["state"], "complete");
    assert_eq!(recording["end_reason"], "stopped");
    let mut tracks: Vec<&str> = recording["tracks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    tracks.sort();
    assert_eq!(
        tracks,
        [
            "ada (camera)",
            "ada (microphone)",
            "bob (camera)",
            "bob (microphone)"
        ]
    );
    let table = run(bridge, token, RecordingsCommand::List { json: false })
        .await
        .unwrap();
    assert!(table.contains(&file) && table.contains("complete"), "{table}");

    let downloads = tempfile::tempdir().unwrap();
    let out = downloads.path().join("copy.webm");
    run(
        bridge,
        token,
        RecordingsCommand::Download {
            file: file.clone(),
            out: Some(out.clone()),
        },
    )
    .await
    .expect("the download");
    let original = std::fs::read(store.file(&file).unwrap()).unwrap();
    assert_eq!(std::fs::read(&out).unwrap(), original, "the download is the file");
    let probe = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "stream=codec_name",
            "-of",
            "csv=p=0",
        ])
        .arg(&out)
        .output()
        .expect("ffprobe runs (scripts/test installs Debian's ffmpeg)");
    assert!(
        probe.status.success(),
        "{}",
        String::from_utf8_lossy(&probe.stderr)
    );
    let mut codecs: Vec<String> = String::from_utf8_lossy(&probe.stdout)
        .lines()
        .map(str::to_owned)
        .collect();
    codecs.sort();
    assert_eq!(codecs, ["opus", "opus", "vp8", "vp8"]);

    // Names that are not a recording's are refused before the file system is asked.
    let response = http
        .get(format!(
            "{bridge}/bridge/v1/admin/recordings/..%2F..%2Fetc%2Fpasswd.webm"
        ))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let missing = run(
        bridge,
        token,
        RecordingsCommand::Download {
            file: "gone-20260101T000000Z-00000000.webm".into(),
            out: Some(downloads.path().join("gone.webm")),
        },
    )
    .await;
    assert!(missing.expect_err("no such file").to_string().contains("404"));
    drop((ada, bob));
}
