//! Control nodes join and leave a running cluster through the admin API while joins flow.

mod common;

use common::{JoinStream, TestCluster, assert_each_exactly_once};
use reqwest::Method;
use std::time::{Duration, Instant};

async fn wait_for_more_joins(stream: &JoinStream, more: usize) {
    let target = stream.acknowledged_count() + more;
    let deadline = Instant::now() + Duration::from_secs(30);
    while stream.acknowledged_count() < target {
        assert!(
            Instant::now() < deadline,
            "joins stopped succeeding; last failures: {:?}",
            stream.recent_failures()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn add(cluster: &TestCluster, via: u64, id: u64) {
    let addr = cluster.cluster_addrs[&id].to_string();
    let response = cluster
        .admin(
            via,
            Method::POST,
            "/api/v1/admin/cluster/nodes",
            Some(serde_json::json!({"id": id, "addr": addr})),
        )
        .await;
    let status = response.status();
    assert!(
        status.is_success(),
        "adding {id}: {status} {}",
        response.text().await.unwrap()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cluster_grows_from_one_to_three_and_replaces_a_node_while_joins_flow() {
    let mut cluster = TestCluster::start(&[1]).await;
    cluster.wait_for_leader().await;
    cluster.register_bridge(1).await;
    let stream = JoinStream::start(cluster.http.clone(), vec![cluster.url(1)], 4);
    wait_for_more_joins(&stream, 100).await;

    // Grow 1 → 3: the new nodes start empty and are added through the admin API of node 1.
    cluster.start_node(2).await;
    cluster.start_node(3).await;
    add(&cluster, 1, 2).await;
    // Any node accepts admin calls: node 2 forwards this one to the leader.
    add(&cluster, 2, 3).await;
    assert_eq!(cluster.health(1).voters, vec![1, 2, 3]);
    stream.set_targets(vec![cluster.url(1), cluster.url(2), cluster.url(3)]);
    wait_for_more_joins(&stream, 200).await;

    // Replace node 1 (the leader) by node 4 while joins keep flowing.
    cluster.start_node(4).await;
    add(&cluster, 3, 4).await;
    stream.set_targets(vec![cluster.url(2), cluster.url(3), cluster.url(4)]);
    let response = cluster
        .admin(2, Method::DELETE, "/api/v1/admin/cluster/nodes/1", None)
        .await;
    let status = response.status();
    assert!(
        status.is_success(),
        "removing 1: {status} {}",
        response.text().await.unwrap()
    );
    cluster.kill(1).await;
    let leader = cluster.wait_for_leader().await;
    assert_ne!(leader, 1);
    assert_eq!(cluster.health(leader).voters, vec![2, 3, 4]);
    wait_for_more_joins(&stream, 200).await;

    let (acknowledged, failed) = stream.stop().await;
    for error in &failed {
        assert!(
            error.contains("503") || error.contains("error sending request") || error.contains("connection"),
            "only a missing leader or a stopped node may fail a join: {error}"
        );
    }
    for id in [2, 3, 4] {
        cluster.wait_caught_up(id).await;
        assert_each_exactly_once(&cluster.state(id), &acknowledged);
    }
    for id in [2, 3, 4] {
        cluster.stop(id).await;
    }
}
