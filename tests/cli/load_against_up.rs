//! `bridgemesh load` against `bridgemesh up` in this process: the library run with two rooms of
//! three, each participant checked on its own stats (every other participant's audio and video
//! arrived, nothing lost or corrupt) and the report checked to say the same, with the bridge's
//! CPU and memory read from its `/metrics`; and the binary once, with its JSON report.

use bridgemesh::load::{BridgeFigures, LoadConfig, LoadReport, LoadRun, Progress};
use bridgemesh::up::UpConfig;
use bridgemesh_control::auth::Secret;
use bridgemesh_proto::signaling::MediaSource;
use std::collections::BTreeMap;
use std::time::Duration;

/// Bound on the binary's run of about 10 s (5 s ramp-up, 3 s hold, leaving).
const BINARY_TIMEOUT: Duration = Duration::from_secs(90);

fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_test_writer()
        .try_init();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_rooms_of_three_receive_every_stream_of_their_room_without_loss() {
    init_tracing();
    let running = bridgemesh::up::start(UpConfig::ephemeral())
        .await
        .expect("bridgemesh up starts");
    let config = LoadConfig {
        control_url: running.control_url.clone(),
        rooms: 2,
        per_room: 3,
        duration_s: 10,
        ramp_up_s: 2,
        room_prefix: "load-test".into(),
        admin_token: Some(Secret::new(running.admin_token.clone())),
        ..LoadConfig::default()
    };
    let (progress, _) = tokio::sync::watch::channel(Progress::default());
    let mut run = LoadRun::start(config.clone(), progress)
        .await
        .expect("the run starts");
    run.hold(Duration::from_secs(config.duration_s)).await;

    // Each participant's own account, before the report's.
    let mut rooms: BTreeMap<String, Vec<_>> = BTreeMap::new();
    for participant in run.participants() {
        let room = participant.join_response().room.to_string();
        rooms.entry(room).or_default().push(participant);
    }
    assert_eq!(rooms.len(), 2, "rooms: {:?}", rooms.keys().collect::<Vec<_>>());
    for (room, members) in &rooms {
        assert_eq!(members.len(), 3, "{room}");
        for receiver in members {
            let stats = receiver.stats();
            for publisher in members
                .iter()
                .filter(|p| p.participant_id() != receiver.participant_id())
            {
                for source in [MediaSource::Microphone, MediaSource::Camera] {
                    let stream = stats.from(publisher.participant_id(), source);
                    assert!(
                        stream.is_some_and(|s| s.intact > 0 && s.lost == 0 && s.corrupt == 0),
                        "{} in {room} from {} {}: {stream:?}\n{}",
                        receiver.participant_id(),
                        publisher.participant_id(),
                        source.as_str(),
                        stats.summary()
                    );
                }
            }
            assert_eq!(stats.total_corrupt(), 0, "{}", stats.summary());
        }
    }

    let report = run.finish().await;
    let shown = format!("{report}\n{report:#?}");
    assert_eq!(report.joins.ok, 6, "{shown}");
    assert_eq!(report.joins.failed, 0, "{shown}");
    assert_eq!(
        report.streams.expected,
        2 * 3 * 2 * 2,
        "rooms × receivers × publishers × sources\n{shown}"
    );
    assert_eq!(report.streams.received, report.streams.expected, "{shown}");
    assert_eq!(report.streams.missing, 0, "{shown}");
    assert!(report.media.packets > 0, "{shown}");
    assert_eq!(report.media.lost, 0, "{shown}");
    assert_eq!(report.media.loss_percent, 0.0, "{shown}");
    assert_eq!(report.media.corrupt, 0, "{shown}");
    assert_eq!(report.time_to_first_packet_ms.count, 24, "{shown}");
    assert!(report.latency_ms.p50.is_some(), "{shown}");
    assert_eq!(report.participants_disconnected, 0, "{shown}");
    let bridges: Vec<_> = report.bridges.measured().collect();
    assert_eq!(bridges.len(), 1, "up runs one bridge\n{shown}");
    let bridge = bridges[0];
    assert_eq!(bridge.id.as_str(), "local-1", "{shown}");
    assert!(bridge.cpu_seconds.is_some_and(|s| s > 0.0), "{shown}");
    assert!(bridge.cpu_cores.is_some_and(|c| c > 0.0), "{shown}");
    assert!(
        bridge
            .resident_memory_bytes_after
            .is_some_and(|b| b > 1024 * 1024),
        "{shown}"
    );
    assert!(bridge.rtp_forwarded_per_s.is_some_and(|n| n > 0.0), "{shown}");
    assert_eq!(bridge.participants_after, Some(6), "{shown}");
    assert!(report.passed(), "{shown}");

    // The report survives its JSON form.
    let json = serde_json::to_string(&report).unwrap();
    assert_eq!(serde_json::from_str::<LoadReport>(&json).unwrap(), report);
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_binary_writes_a_json_report_and_exits_zero() {
    init_tracing();
    let running = bridgemesh::up::start(UpConfig::ephemeral())
        .await
        .expect("bridgemesh up starts");
    let dir = tempfile::tempdir().unwrap();
    let json_path = dir.path().join("report.json");
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_bridgemesh"))
        .args(["load", "--control", &running.control_url])
        .args(["--rooms", "1", "--per-room", "2", "--duration-s", "3", "--json"])
        .arg(&json_path)
        .env("BRIDGEMESH_ADMIN_TOKEN", &running.admin_token)
        .env("RUST_LOG", "warn")
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(BINARY_TIMEOUT, child)
        .await
        .expect("bridgemesh load ends")
        .expect("bridgemesh load runs");
    let shown = format!(
        "status {}\nstdout:\n{}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "{shown}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("joins:      2 ok, 0 failed of 2"), "{shown}");
    assert!(!stdout.contains('\r'), "no progress line on a pipe\n{shown}");

    let text = std::fs::read_to_string(&json_path).unwrap_or_else(|e| panic!("{e}\n{shown}"));
    let report: LoadReport = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert_eq!(report.joins.ok, 2, "{text}");
    assert_eq!(report.joins.failed, 0, "{text}");
    assert_eq!(report.streams.expected, 4, "{text}");
    assert_eq!(report.streams.missing, 0, "{text}");
    assert!(
        matches!(report.bridges, BridgeFigures::Measured { .. }) && report.bridges.measured().count() == 1,
        "the token from the environment lists the bridge\n{text}"
    );
    let value: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(value["joins"]["ok"], 2, "{text}");
    assert_eq!(value["bridges"]["status"], "measured", "{text}");
    running.stop().await;
}
