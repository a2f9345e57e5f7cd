//! A second, independent WebRTC stack: aiortc (Debian's python3-aiortc), joining through the
//! documented join API and signaling WebSocket with its default settings, next to a synthetic
//! participant. `tests/interop/aiortc_client.py` is the client; it prints a JSON report.
//!
//! Three aiortc clients share a room with a synthetic participant for a little over a minute:
//! - a participant publishing audio and video that declines the others' video (`inactive`);
//! - a receive-only viewer (`hello` with `media: receive_only`), which publishes nothing and
//!   joins first, before anything is published;
//! - a silent one that publishes nothing and declines everything: it sends the bridge nothing
//!   but aiortc's consent checks (every 4–6 s), the case that made the bridge flap.
//!
//! Needs Debian's python3-aiortc and python3-websockets (`scripts/test` installs them).

use bridgemesh_proto::signaling::MediaSource;
use bridgemesh_tests::harness::{MEDIA_TIMEOUT, join, room, up};
use serde_json::Value;
use std::process::Stdio;
use std::time::Duration;
use tokio::process::Command;

const PYTHON: &str = "/usr/bin/python3";
/// Each client stays this long: a minute of consent checks once connected, and a few seconds
/// to connect on a busy machine.
const CLIENT_SECONDS: u64 = 66;

fn script() -> String {
    format!("{}/interop/aiortc_client.py", env!("CARGO_MANIFEST_DIR"))
}

fn aiortc_client(control: &str, room: &str, name: &str, extra: &[&str]) -> tokio::process::Child {
    Command::new(PYTHON)
        .arg(script())
        .args(["--control", control, "--room", room, "--name", name])
        .args(["--seconds", &CLIENT_SECONDS.to_string()])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("python3 runs")
}

async fn report(child: tokio::process::Child, name: &str) -> Value {
    let output = tokio::time::timeout(Duration::from_secs(CLIENT_SECONDS + 30), child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("{name} never finished"))
        .expect("the client's output");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let report: Value = serde_json::from_str(stdout.trim()).unwrap_or_else(|err| {
        panic!(
            "{name} printed no report ({err}): {stdout}\n{}",
            String::from_utf8_lossy(&output.stderr)
        )
    });
    assert!(report["error"].is_null(), "{name}: {report}");
    report
}

/// The ICE states a client went through before it closed itself.
fn ice_states(report: &Value) -> Vec<String> {
    report["ice_states"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s[1].as_str().unwrap().to_owned())
        .filter(|s| s != "closed")
        .collect()
}

fn packets(report: &Value, kind: &str) -> u64 {
    report["received_packets"][kind].as_u64().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aiortc_publishes_receives_declines_and_keeps_consent_for_a_minute() {
    let installed = std::process::Command::new(PYTHON)
        .args(["-c", "import aiortc, websockets"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        installed,
        "Debian's python3-aiortc and python3-websockets are not installed: run scripts/test"
    );
    let running = up().await;
    let room = room("aiortc-interop");
    let control = running.control_url.clone();
    // The viewer comes first, into a room with nothing to receive: it gets no offer until the
    // synthetic participant's first stream (an empty one used to end its session).
    let viewer = aiortc_client(
        &control,
        room.as_str(),
        "Viewer",
        &["--publish", "none", "--media", "receive_only"],
    );
    let viewer_in = tokio::time::timeout(MEDIA_TIMEOUT, async {
        while running.bridge.stats().shards.participants == 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    viewer_in.await.expect("the viewer reaches the bridge");
    let synthetic = join(&running, &room, "Syn").await;
    let publisher = aiortc_client(&control, room.as_str(), "Aio", &["--decline", "video"]);
    let silent = aiortc_client(
        &control,
        room.as_str(),
        "Silent",
        &["--publish", "none", "--decline", "all"],
    );

    // aiortc's media reaches the synthetic participant through the bridge.
    synthetic
        .wait_until(
            "aiortc's participant in the roster",
            MEDIA_TIMEOUT,
            |_, roster| roster.values().any(|p| p.display_name == "Aio"),
        )
        .await
        .unwrap();
    let aio_id = synthetic
        .roster()
        .values()
        .find(|p| p.display_name == "Aio")
        .map(|p| p.id.clone())
        .expect("seen above");
    synthetic
        .wait_until("aiortc's audio and video", MEDIA_TIMEOUT, |stats, _| {
            [MediaSource::Microphone, MediaSource::Camera]
                .iter()
                .all(|source| {
                    stats
                        .received
                        .get(&(aio_id.clone(), *source))
                        .is_some_and(|r| r.packets > 50)
                })
        })
        .await
        .unwrap();

    let publisher = report(publisher, "Aio").await;
    let viewer = report(viewer, "Viewer").await;
    let silent = report(silent, "Silent").await;
    let bridge = running.bridge.stats();
    let all = [("Aio", &publisher), ("Viewer", &viewer), ("Silent", &silent)];

    // Every offer carries the bridge's candidates in every m-section.
    for (name, report) in all {
        assert_eq!(report["sections_without_candidates"], 0, "{name}: {report}");
    }
    // The synthetic participant's media reaches aiortc; the video it declined does not.
    assert!(packets(&publisher, "audio") > 100, "{publisher}");
    assert_eq!(packets(&publisher, "video"), 0, "declined: {publisher}");
    assert!(bridge.shards.rtp_not_sent_declined > 0, "{bridge:?}");
    // The viewer receives everyone's audio and video and was offered nothing to publish into.
    assert!(
        packets(&viewer, "audio") > 100 && packets(&viewer, "video") > 50,
        "{viewer}"
    );
    assert_eq!(
        viewer["inbound_streams"], 4,
        "two publishers' audio and video: {viewer}"
    );
    assert_eq!(
        publisher["inbound_streams"], 1,
        "the synthetic audio only: {publisher}"
    );
    let offered = viewer["offered_directions"].as_array().unwrap();
    // Legs only (`sendonly`, or `inactive` as `rtc` writes some of them): no `recvonly` slot.
    assert!(offered.iter().any(|d| d == "sendonly"), "{viewer}");
    assert!(
        offered.iter().all(|d| d == "sendonly" || d == "inactive"),
        "{viewer}"
    );
    assert_eq!(
        packets(&silent, "audio") + packets(&silent, "video"),
        0,
        "{silent}"
    );
    // A minute of aiortc's own consent checks: never disconnected, on either side.
    for (name, report) in all {
        // aiortc passes through "new" while a renegotiation's transports are bundled away.
        let states = ice_states(report);
        assert!(states.iter().any(|s| s == "completed"), "{name}: {report}");
        assert!(
            states.iter().all(|s| s != "disconnected" && s != "failed"),
            "{name}: {report}"
        );
        let connection = report["connection_states"].as_array().unwrap();
        assert!(
            connection
                .iter()
                .all(|s| s[1] != "disconnected" && s[1] != "failed"),
            "{name}: {report}"
        );
        assert!(
            report["connected_s"].as_f64().unwrap() >= 60.0,
            "{name} was connected for less than a minute: {report}"
        );
    }
    assert_eq!(
        bridge.shards.ice_disconnects, 0,
        "the bridge called a path with consent checks disconnected"
    );
    synthetic.leave().await.unwrap();
    running.stop().await;
}
