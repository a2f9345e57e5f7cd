//! What packaging/ ships works with the binary it packages: the systemd units pass systemd's
//! own check, and the container image's entry point starts `bridgemesh up` and refuses a state
//! directory it could not keep a certificate in. (No Docker engine runs on the test machines, so
//! the image itself is not built here; its entry point is the part with logic.)

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_bridgemesh");

fn packaging() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging")
}

fn free_port() -> u16 {
    bridgemesh::load::local_cluster::free_port().unwrap()
}

#[test]
fn systemd_units_pass_systemds_check_with_the_real_binary() {
    let dir = tempfile::tempdir().unwrap();
    let mut units = 0;
    for entry in std::fs::read_dir(packaging().join("systemd")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "service") {
            continue;
        }
        units += 1;
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.contains("ExecStart=/usr/local/bin/bridgemesh "),
            "{} starts /usr/local/bin/bridgemesh",
            path.display()
        );
        // The unit as installed, with the binary this test was built with in its place.
        let copy = dir.path().join(path.file_name().unwrap());
        std::fs::write(&copy, text.replace("/usr/local/bin/bridgemesh", BIN)).unwrap();
        let out = Command::new("systemd-analyze")
            .arg("verify")
            .arg(&copy)
            .output()
            .expect("systemd-analyze (Debian's systemd package) runs");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && stderr.trim().is_empty(),
            "systemd-analyze verify {}: {}\n{stderr}",
            path.display(),
            out.status
        );

        // The subcommand and its --config flag exist: a missing file is the only complaint.
        let exec = text
            .lines()
            .find_map(|l| l.strip_prefix("ExecStart=/usr/local/bin/bridgemesh "))
            .unwrap();
        let mut args: Vec<&str> = exec.split_whitespace().collect();
        let config = args
            .iter()
            .position(|a| *a == "--config")
            .expect("units use --config");
        let missing = dir.path().join("missing.toml");
        args[config + 1] = missing.to_str().unwrap();
        let out = Command::new(BIN)
            .args(&args)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{exec} with a missing file must fail");
        assert!(
            stderr.contains("missing.toml"),
            "{exec}: the error names the missing file, not a bad flag: {stderr}"
        );
    }
    assert_eq!(units, 3, "up, control and bridge units");
}

/// The entry point as the image runs it, with the binary under test.
fn entrypoint() -> Command {
    let mut command = Command::new("sh");
    command
        .arg(packaging().join("docker-entrypoint.sh"))
        .env("BRIDGEMESH_BIN", BIN)
        .env_remove("BRIDGEMESH_DOMAIN")
        .env_remove("BRIDGEMESH_CONFIG")
        .stdin(Stdio::null());
    command
}

#[test]
fn entrypoint_runs_up_when_given_only_options() {
    let port = free_port();
    let mut child = entrypoint()
        .args(["--http-port", &port.to_string()])
        .args([
            "--bridge-http-port",
            "0",
            "--media-port",
            "0",
            "--turn-port",
            "0",
            "--cascade-port",
            "0",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}/health");
    let deadline = Instant::now() + Duration::from_secs(30);
    // 503 until the one-node cluster has elected itself; 200 once up is ready.
    let health = loop {
        match reqwest::blocking::get(&url) {
            Ok(response) if response.status().is_success() => break response,
            Ok(_) | Err(_) if Instant::now() < deadline => {
                assert!(
                    child.try_wait().unwrap().is_none(),
                    "the entry point exited early"
                );
                std::thread::sleep(Duration::from_millis(100));
            }
            Ok(response) => panic!("{url}: still {} after 30 s", response.status()),
            Err(err) => panic!("{url}: {err}"),
        }
    };
    assert_eq!(health.status().as_u16(), 200);
    let body: serde_json::Value = health.json().unwrap();
    assert_eq!(body["role"], "control", "{body}");

    // `docker stop` sends SIGTERM to the entry point's process, which is bridgemesh itself
    // (exec): it stops cleanly instead of waiting to be killed.
    let stopped = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(stopped.success());
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("up did not stop on SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "up stopped on SIGTERM with {status}");
}

#[test]
fn entrypoint_refuses_a_state_directory_it_cannot_use() {
    let dir = tempfile::tempdir().unwrap();
    // A path under a regular file: no user, root included, can make a directory there.
    let file = dir.path().join("not-a-directory");
    std::fs::write(&file, "").unwrap();
    let out = entrypoint()
        .env("BRIDGEMESH_DOMAIN", "meet.example.org")
        .env("BRIDGEMESH_STATE_DIR", file.join("state"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "{stderr}");
    assert!(stderr.contains("state directory"), "{stderr}");
    assert!(stderr.contains("mount a volume"), "{stderr}");
}

#[test]
fn the_three_region_example_is_read_by_the_real_parsers() {
    let dir = packaging().join("three-regions");
    let mut controls = 0;
    let mut bridges = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_owned();
        if name.starts_with("control-") {
            let file =
                bridgemesh::control_node::read_file(&path).unwrap_or_else(|err| panic!("{name}: {err:#}"));
            assert!(file.node_id.is_some() && file.cert_dir.is_some(), "{name}");
            controls += 1;
        } else if name.starts_with("bridge-") {
            let text = std::fs::read_to_string(&path).unwrap();
            let mut config: bridgemesh::bridge_node::BridgeNodeConfig =
                toml::from_str(&text).unwrap_or_else(|err| panic!("{name}: {err}"));
            // The key comes from `bridge_key_file` at start; any key of the right size here.
            config.bridge_key = vec![7; 32];
            config.validate().unwrap_or_else(|err| panic!("{name}: {err}"));
            assert_eq!(config.control.len(), 3, "{name} knows every control node");
            bridges += 1;
        }
    }
    assert_eq!((controls, bridges), (3, 3));
}
