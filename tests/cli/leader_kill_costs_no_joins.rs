//! Three control processes and one healthy bridge process; the control leader is SIGKILLed while
//! joins keep coming, one every 250 ms for 6 s after the kill (`bridgemesh load --local-cluster
//! --kill-leader-at`). No join may be refused for capacity (the bridge has seats all along, so a
//! new leader must not take it for unreachable before it has re-registered), none may fail, and
//! control must hold exactly the participants that were told they joined: none lost with the old
//! leader, none committed twice.

use bridgemesh::load::LoadReport;
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_bridgemesh");
/// Bound on a run of about 20 s (startup, 1 s ramp-up, 10 s hold, the probes, teardown).
const RUN_TIMEOUT: Duration = Duration::from_secs(120);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_leader_refuses_loses_and_duplicates_no_join() {
    let dir = tempfile::tempdir().unwrap();
    let json_path = dir.path().join("report.json");
    let child = tokio::process::Command::new(BIN)
        .args([
            "load",
            "--local-cluster",
            "--control-nodes",
            "3",
            "--bridges",
            "1",
        ])
        .args([
            "--rooms",
            "1",
            "--per-room",
            "2",
            "--ramp-up-s",
            "1",
            "--duration-s",
            "10",
        ])
        .args(["--kill-leader-at", "2", "--json"])
        .arg(&json_path)
        .env("RUST_LOG", "warn")
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(RUN_TIMEOUT, child)
        .await
        .expect("bridgemesh load ends")
        .expect("bridgemesh load runs");
    let shown = format!(
        "status {}\nstdout:\n{}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let text = std::fs::read_to_string(&json_path).unwrap_or_else(|e| panic!("{e}\n{shown}"));
    let report: LoadReport = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    let shown = format!("{shown}\n{text}");

    let faults = report.faults.as_ref().expect("a faults section");
    assert!(faults.errors.is_empty(), "{shown}");
    let leader = faults.leader_kill.as_ref().expect("the leader kill");
    assert!(leader.new_leader.is_some(), "{shown}");
    let probes = &leader.probe_joins;
    assert_eq!(probes.attempted, 25, "joins for 6 s after the kill\n{shown}");
    assert_eq!(probes.refused_no_capacity, 0, "refused for capacity\n{shown}");
    assert_eq!((probes.ok, probes.failed), (25, 0), "{shown}");
    assert_eq!(probes.duplicate_ids, 0, "{shown}");
    assert_eq!(
        probes.in_control,
        Some(probes.ok),
        "control holds exactly the joins it answered\n{shown}"
    );
    assert_eq!(leader.sessions_lost, 0, "{shown}");
    assert!(output.status.success(), "{shown}");
    assert!(report.passed(), "{shown}");
}
