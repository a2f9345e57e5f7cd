//! `bridgemesh sim run`: the same scenario and seed print the same stdout, byte for byte, as
//! docs/simulator.md promises; how long the run took (which differs every time) goes to stderr.

use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_bridgemesh");

fn sim_run(seed: &str) -> std::process::Output {
    let scenario = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/sim/scenarios/three_regions_losing_a_bridge.toml"
    );
    let output = Command::new(BIN)
        .args(["sim", "run", scenario, "--scale", "0.2", "--seed", seed])
        .env("RUST_LOG", "warn")
        .output()
        .expect("bridgemesh sim run runs");
    assert!(
        output.status.success(),
        "status {}\nstdout:\n{}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

#[test]
fn the_same_seed_prints_the_same_stdout_and_the_wall_time_on_stderr() {
    let first = sim_run("7");
    let second = sim_run("7");
    let stdout = String::from_utf8_lossy(&first.stdout);
    assert!(stdout.contains("seed 7"), "{stdout}");
    assert!(!stdout.contains("wall time"), "{stdout}");
    assert_eq!(
        stdout,
        String::from_utf8_lossy(&second.stdout),
        "same scenario, same seed"
    );
    for output in [&first, &second] {
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("wall time "), "{stderr}");
    }
    let other = sim_run("8");
    assert_ne!(
        stdout,
        String::from_utf8_lossy(&other.stdout),
        "another seed, another run"
    );
}
