//! Joins committed through a 3-node control cluster on this machine, and time to a new leader
//! after the leader is killed.
//!
//! `cargo bench -p bridgemesh-control --bench raft_joins`
//! Environment: `SECONDS` (load phase, default 10), `CLIENTS` (concurrent HTTP clients, default
//! 48), `KILLS` (leader kills, default 5).
//!
//! Three real control nodes in this process, each with its own redb store (fsync on every commit
//! batch) and HTTP server on 127.0.0.1; clients send real `POST /api/v1/rooms/{room}/join`
//! requests spread over all three nodes, so two thirds of them are forwarded to the leader.

#[path = "../tests/common/mod.rs"]
mod common;

use bridgemesh_control::auth::AuthConfig;
use bridgemesh_control::raft::cluster::ClusterConfig;
use common::TestCluster;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let seconds = env_or("SECONDS", 10);
    let clients = env_or("CLIENTS", 48) as usize;
    let kills = env_or("KILLS", 5);
    // The production defaults: timing and snapshot spacing an operator gets without configuring.
    let config = ClusterConfig::default();
    let (election_min_ms, election_max_ms) = (config.election_timeout_min_ms, config.election_timeout_max_ms);
    let mut cluster = TestCluster::start_with(&[1, 2, 3], AuthConfig::default(), config).await;
    let leader = cluster.wait_for_leader().await;
    cluster.register_bridge(leader).await;
    let urls: Vec<String> = [1, 2, 3].iter().map(|id| cluster.url(*id)).collect();

    // Load: every client loops join after join for `seconds`.
    let latencies = Arc::new(Mutex::new(Vec::<Duration>::new()));
    let failures = Arc::new(Mutex::new(Vec::<String>::new()));
    let counter = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let end = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let http = cluster.http.clone();
        let urls = urls.clone();
        let latencies = latencies.clone();
        let failures = failures.clone();
        let counter = counter.clone();
        tasks.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            while Instant::now() < end {
                let i = counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let url = format!("{}/api/v1/rooms/bench-{}/join", urls[i % urls.len()], i % 1000);
                let sent = Instant::now();
                let response = http
                    .post(url)
                    .json(&serde_json::json!({"display_name": "bench"}))
                    .send()
                    .await;
                match response {
                    Ok(r) if r.status().is_success() => {
                        let _ = r.bytes().await;
                        mine.push(sent.elapsed());
                    }
                    Ok(r) => {
                        let status = r.status();
                        let body = r.text().await.unwrap_or_default();
                        failures.lock().unwrap().push(format!("{status} {body}"));
                    }
                    Err(err) => failures.lock().unwrap().push(err.to_string()),
                }
            }
            latencies.lock().unwrap().extend(mine);
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let elapsed = started.elapsed();
    let mut latencies = latencies.lock().unwrap().clone();
    latencies.sort();
    let committed = cluster.state(leader).participant_count();
    println!(
        "joins: {} acknowledged in {:.1} s = {:.0} joins/s ({} clients, {} failed); latency p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms; {} in the state",
        latencies.len(),
        elapsed.as_secs_f64(),
        latencies.len() as f64 / elapsed.as_secs_f64(),
        clients,
        failures.lock().unwrap().len(),
        ms(percentile(&latencies, 0.50)),
        ms(percentile(&latencies, 0.99)),
        ms(latencies.last().copied().unwrap_or_default()),
        committed,
    );

    if let Some(first) = failures.lock().unwrap().first() {
        println!("first failure: {first}");
    }

    // Failover: kill the leader, time until the survivors agree on a new one and until a join
    // through a survivor succeeds; then bring the node back.
    let mut elections = Vec::new();
    let mut first_joins = Vec::new();
    for round in 0..kills {
        let leader = cluster.wait_for_leader().await;
        for id in [1, 2, 3] {
            cluster.wait_caught_up(id).await;
        }
        let survivor = [1, 2, 3].into_iter().find(|id| *id != leader).unwrap();
        let killed_at = Instant::now();
        cluster.kill(leader).await;
        let kill_took = killed_at.elapsed();
        let new_leader = cluster.wait_for_leader().await;
        let elected = killed_at.elapsed();
        loop {
            let response = cluster
                .http
                .post(format!(
                    "{}/api/v1/rooms/failover-{round}/join",
                    cluster.url(survivor)
                ))
                .json(&serde_json::json!({"display_name": "after"}))
                .send()
                .await
                .unwrap();
            if response.status().is_success() {
                break;
            }
        }
        let joined = killed_at.elapsed();
        println!(
            "kill {round}: node {leader} killed (stopping it took {:.0} ms); node {new_leader} leads after {:.0} ms; first join through node {survivor} after {:.0} ms",
            ms(kill_took),
            ms(elected),
            ms(joined)
        );
        elections.push(elected);
        first_joins.push(joined);
        cluster.start_node(leader).await;
    }
    elections.sort();
    first_joins.sort();
    if !elections.is_empty() {
        println!(
            "new leader after a kill: median {:.0} ms, worst {:.0} ms; first join: median {:.0} ms, worst {:.0} ms (election timeout {}–{} ms)",
            ms(percentile(&elections, 0.5)),
            ms(*elections.last().unwrap()),
            ms(percentile(&first_joins, 0.5)),
            ms(*first_joins.last().unwrap()),
            election_min_ms,
            election_max_ms
        );
    }
    for id in [1, 2, 3] {
        cluster.stop(id).await;
    }
}
