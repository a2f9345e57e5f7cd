//! `bridgemesh load --local-cluster`: the binary starts three control processes and two bridges
//! of its own, puts a room of three on one bridge, SIGKILLs that bridge and then the control
//! leader during the hold, and reports what the participants felt. The report must name both
//! kills, every participant of the killed bridge must have media again on the other one, no
//! packet may be corrupt, the figures must agree with each other, and nothing of the cluster may
//! outlive the command. Bad fault flags are refused before anything starts.

use bridgemesh::load::LoadReport;
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_bridgemesh");
/// Bound on the run of about 25 s (startup, 1 s ramp-up, 15 s hold, leaving, teardown).
const RUN_TIMEOUT: Duration = Duration::from_secs(120);

async fn load(args: &[&str]) -> std::process::Output {
    let child = tokio::process::Command::new(BIN)
        .arg("load")
        .args(args)
        .env("RUST_LOG", "warn")
        // Set, as an operator's shell may have it: --local-cluster must not mind it.
        .env("BRIDGEMESH_CONTROL_URL", "http://127.0.0.1:9")
        .kill_on_drop(true)
        .output();
    tokio::time::timeout(RUN_TIMEOUT, child)
        .await
        .expect("bridgemesh load ends")
        .expect("bridgemesh load runs")
}

fn shown(output: &std::process::Output) -> String {
    format!(
        "status {}\nstdout:\n{}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_bridge_and_a_killed_leader_are_survived_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    let json_path = dir.path().join("report.json");
    let output = load(&[
        "--local-cluster",
        "--control-nodes",
        "3",
        "--bridges",
        "2",
        "--rooms",
        "1",
        "--per-room",
        "3",
        "--ramp-up-s",
        "1",
        "--duration-s",
        "15",
        "--kill-bridge-at",
        "3",
        "--kill-leader-at",
        "8",
        // The killed bridge's participants lose what was sent while they moved.
        "--max-loss-percent",
        "40",
        "--json",
        json_path.to_str().unwrap(),
    ])
    .await;
    let shown = shown(&output);
    let text = std::fs::read_to_string(&json_path).unwrap_or_else(|e| panic!("{e}\n{shown}"));
    let report: LoadReport = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    let shown = format!("{shown}\n{text}");
    assert!(output.status.success(), "{shown}");
    assert!(report.passed(), "{shown}");

    // Joins: all three, with a throughput over a window.
    assert_eq!((report.joins.ok, report.joins.failed), (3, 0), "{shown}");
    assert!(report.joins.window_s > 0.0, "{shown}");
    let per_s = report.joins.ok as f64 / report.joins.window_s;
    assert!((report.joins.per_s - per_s).abs() < 1e-6, "{shown}");
    assert_eq!(report.joins.join_ms.count, 3, "{shown}");

    // Media: every stream delivered, nothing corrupt.
    assert_eq!(report.streams.expected, 3 * 2 * 2, "{shown}");
    assert_eq!(report.streams.missing, 0, "{shown}");
    assert_eq!(report.media.corrupt, 0, "{shown}");
    assert_eq!(report.participants_disconnected, 0, "{shown}");

    let faults = report.faults.as_ref().expect("a faults section");
    assert!(faults.errors.is_empty(), "{shown}");
    // The bridge kill: the room's bridge, its three participants, all back on the other one.
    let bridge = faults.bridge_kill.as_ref().expect("the bridge kill");
    assert!(
        ["bridge-1", "bridge-2"].contains(&bridge.bridge.as_str()),
        "{shown}"
    );
    assert!((3.0..8.0).contains(&bridge.at_s), "{shown}");
    assert_eq!(bridge.affected, 3, "one room, on one bridge\n{shown}");
    assert_eq!((bridge.recovered, bridge.not_recovered), (3, 0), "{shown}");
    assert_eq!(bridge.media_again_ms.count, 3, "{shown}");
    assert_eq!(bridge.placed_ms.count, 3, "{shown}");
    assert!(
        bridge.placed_ms.max <= bridge.media_again_ms.max,
        "placed before media flows\n{shown}"
    );
    assert_eq!(bridge.moved_to.values().sum::<u64>(), 3, "{shown}");
    assert!(!bridge.moved_to.contains_key(&bridge.bridge), "{shown}");
    assert!(
        report.reconnects.participants >= 3,
        "the report's reconnects count the moves\n{shown}"
    );
    // The leader kill: a node of the three, a new leader among the others, probe joins counted.
    let leader = faults.leader_kill.as_ref().expect("the leader kill");
    assert!((1..=3).contains(&leader.node_id), "{shown}");
    assert!((8.0..15.0).contains(&leader.at_s), "{shown}");
    let new_leader = leader.new_leader.expect("a new leader");
    assert!(
        new_leader != leader.node_id && (1..=3).contains(&new_leader),
        "{shown}"
    );
    let probes = &leader.probe_joins;
    assert_eq!(probes.attempted, 25, "{shown}");
    assert_eq!(probes.ok + probes.failed, probes.attempted, "{shown}");
    assert!(probes.ok > 0, "joins work again with a new leader\n{shown}");
    assert_eq!(leader.participants_watched, 3, "{shown}");
    assert_eq!(leader.sessions_lost, 0, "calls do not depend on control\n{shown}");

    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains(&format!("fault:      bridge {} killed", bridge.bridge)),
        "{shown}"
    );
    assert!(
        stdout.contains(&format!("fault:      control leader {} killed", leader.node_id)),
        "{shown}"
    );

    // Nothing of the cluster outlives the command.
    let cluster = report.cluster.as_ref().expect("the cluster section");
    let names: Vec<&str> = cluster.processes.iter().map(|p| p.name.as_str()).collect();
    for name in ["control-1", "control-2", "control-3", "bridge-1", "bridge-2"] {
        assert!(names.contains(&name), "{name}\n{shown}");
    }
    assert!(!cluster.dir.exists(), "{} was left behind", cluster.dir.display());
    for process in &cluster.processes {
        let pid = process.pid.expect("a pid");
        let stat = std::fs::read_to_string(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        assert!(
            !stat.contains("bridgemesh"),
            "{} (pid {pid}) still runs: {stat:?}",
            process.name
        );
    }
}

#[tokio::test]
async fn bad_fault_flags_are_refused_before_anything_starts() {
    let cases: [(&[&str], &str); 7] = [
        (
            &["--local-cluster", "--duration-s", "5", "--kill-bridge-at", "5"],
            "within the hold",
        ),
        (
            &[
                "--local-cluster",
                "--duration-s",
                "5",
                "--kill-bridge-at",
                "3",
                "--restart-after",
                "2",
            ],
            "restart must come within the hold",
        ),
        (
            &["--local-cluster", "--control-nodes", "2", "--kill-leader-at", "1"],
            "needs --control-nodes 3",
        ),
        (
            &["--control", "http://127.0.0.1:9", "--kill-leader-at", "1"],
            "--local-cluster",
        ),
        (
            &["--control", "http://127.0.0.1:9", "--local-cluster"],
            "cannot be used with",
        ),
        (&["--local-cluster", "--bridges", "0"], "bridges must be 1 to"),
        (
            &["--control", "http://127.0.0.1:9", "--bridges", "2"],
            "need --local-cluster",
        ),
    ];
    for (args, expected) in cases {
        let output = load(args).await;
        let shown = shown(&output);
        assert!(!output.status.success(), "{args:?}\n{shown}");
        assert!(
            String::from_utf8_lossy(&output.stderr).contains(expected),
            "{args:?}: expected {expected:?}\n{shown}"
        );
    }
}
