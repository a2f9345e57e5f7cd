//! A 3-node control cluster keeps accepting joins while its leader is killed, loses none of
//! them, and keeps its state through restarts.

mod common;

use common::{JoinStream, TestCluster, assert_each_exactly_once};
use std::time::Duration;

async fn wait_for_more_joins(stream: &JoinStream, more: usize) {
    let target = stream.acknowledged_count() + more;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while stream.acknowledged_count() < target {
        assert!(
            std::time::Instant::now() < deadline,
            "joins stopped succeeding; last failures: {:?}",
            stream.recent_failures()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn joins_keep_succeeding_while_the_leader_is_killed_and_state_survives_restarts() {
    let mut cluster = TestCluster::start(&[1, 2, 3]).await;
    let leader = cluster.wait_for_leader().await;
    cluster.register_bridge(leader).await;

    let urls: Vec<String> = [1, 2, 3].iter().map(|id| cluster.url(*id)).collect();
    let stream = JoinStream::start(cluster.http.clone(), urls, 6);
    wait_for_more_joins(&stream, 300).await;

    // Kill the leader mid-stream; the two survivors must elect a new one and keep committing.
    let applied_before_kill = cluster.health(leader).last_applied_index.unwrap_or(0);
    cluster.kill(leader).await;
    let survivors: Vec<u64> = [1, 2, 3].into_iter().filter(|id| *id != leader).collect();
    stream.set_targets(survivors.iter().map(|id| cluster.url(*id)).collect());
    let new_leader = cluster.wait_for_leader().await;
    assert_ne!(new_leader, leader);
    wait_for_more_joins(&stream, 300).await;
    let (acknowledged, failed) = stream.stop().await;
    // Requests in flight to the killed node fail; the rest keep flowing.
    assert!(acknowledged.len() >= 600);
    eprintln!(
        "{} joins acknowledged, {} failed around the kill",
        acknowledged.len(),
        failed.len()
    );
    for error in &failed {
        assert!(
            error.contains("503") || error.contains("error sending request") || error.contains("connection"),
            "only unreachable nodes or a missing leader may fail a join: {error}"
        );
    }

    for id in &survivors {
        cluster.wait_caught_up(*id).await;
        assert_each_exactly_once(&cluster.state(*id), &acknowledged);
    }

    // The killed node comes back from its data directory and catches up.
    cluster.start_node(leader).await;
    cluster.wait_caught_up(leader).await;
    // The survivors compacted the entries it missed: it caught up by installing a snapshot.
    let snapshot = cluster.health(leader).snapshot_index.unwrap_or(0);
    assert!(
        snapshot > applied_before_kill,
        "snapshot at {snapshot}, applied before the kill {applied_before_kill}"
    );
    assert_each_exactly_once(&cluster.state(leader), &acknowledged);
    assert_eq!(cluster.state(leader), cluster.state(new_leader));

    // All three stop and start again: the state is still there.
    let before = cluster.state(new_leader);
    for id in [1, 2, 3] {
        cluster.stop(id).await;
    }
    for id in [1, 2, 3] {
        cluster.start_node(id).await;
    }
    let leader = cluster.wait_for_leader().await;
    for id in [1, 2, 3] {
        cluster.wait_caught_up(id).await;
    }
    assert_each_exactly_once(&cluster.state(leader), &acknowledged);
    assert_eq!(cluster.state(leader).rooms, before.rooms);
    for id in [1, 2, 3] {
        cluster.stop(id).await;
    }
}
