//! `bridgemesh up` takes the join endpoint's budgets from its flags, as `bridgemesh control`
//! takes them from `[limits]`: a nonsense value is refused before anything starts, and a budget
//! of two joins lets two in and turns the third away with 429.

use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};

const BIN: &str = env!("CARGO_BIN_EXE_bridgemesh");
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// Every port chosen by the OS.
const EPHEMERAL_PORTS: [&str; 10] = [
    "--http-port",
    "0",
    "--bridge-http-port",
    "0",
    "--media-port",
    "0",
    "--turn-port",
    "0",
    "--cascade-port",
    "0",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_takes_the_join_budget_from_its_flags() {
    let refused = tokio::process::Command::new(BIN)
        .arg("up")
        .args(EPHEMERAL_PORTS)
        .args(["--join-burst", "0.5"])
        .output()
        .await
        .expect("bridgemesh runs");
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "{stderr}");
    assert!(
        stderr.contains("the join budget flags") && stderr.contains("per address"),
        "{stderr}"
    );

    let mut child = tokio::process::Command::new(BIN)
        .arg("up")
        .args(EPHEMERAL_PORTS)
        .args(["--join-burst", "2", "--join-per-second", "0.01"])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("bridgemesh up starts");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let control_url = tokio::time::timeout(START_TIMEOUT, async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some(rest) = line.strip_prefix("bridgemesh is up: open ") {
                return rest.split('/').take(3).collect::<Vec<_>>().join("/");
            }
        }
        panic!("up ended before it said where it listens");
    })
    .await
    .expect("up says where it listens");

    let client = reqwest::Client::new();
    let mut statuses = Vec::new();
    for name in ["Ada", "Bob", "Cy"] {
        let response = client
            .post(format!("{control_url}/api/v1/rooms/budget/join"))
            .json(&serde_json::json!({ "display_name": name }))
            .send()
            .await
            .expect("control answers");
        statuses.push(response.status().as_u16());
    }
    assert_eq!(statuses, [200, 200, 429]);
    child.kill().await.unwrap();
}
