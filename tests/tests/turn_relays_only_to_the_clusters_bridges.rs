//! TURN is a way to reach the cluster's bridges, not a general relay: by default a bridge's
//! embedded TURN server relays to the media address of every bridge control lists, as bridges
//! come and go, and to nothing else; control serves that list only to the cluster's TURN servers
//! (a bridge's under its cluster certificate, on the cluster listener).
//!
//! `bridgemesh up --bridges 2` on 127.0.0.1: bridge 1's TURN server relays toward bridge 2's
//! media port while control lists bridge 2, and stops once bridge 2 is forgotten. Every packet
//! stays on 127.0.0.0/8 (a public address is only named in a refused CREATE-PERMISSION).

use bridgemesh::up::UpConfig;
use bridgemesh_proto::bridge_session::{TURN_PEERS_PATH, turn_peers_credential};
use bridgemesh_tests::turn::RawTurnClient;
use bridgemesh_turn::TurnServer;
use bridgemesh_turn::credentials::rest_credential;
use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// A bridge list change reaches the TURN servers within a refresh (2 s); generous for CI.
const POLICY_TIMEOUT: Duration = Duration::from_secs(20);

/// Sends a packet toward `peer`, then one toward a peer nobody allows: once the second is
/// counted as denied the first was handled too (one socket, one task, in order). Whether the
/// first was relayed.
async fn relayed_to(client: &mut RawTurnClient, server: &TurnServer, peer: SocketAddr) -> bool {
    let denied_before = server.stats().denied_peers_total;
    client.send_to_peer(peer, b"to a bridge").await;
    let nobody = SocketAddr::new(peer.ip(), 9);
    client.send_to_peer(nobody, b"to nobody").await;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let denied = server.stats().denied_peers_total - denied_before;
        if denied >= 1 {
            return denied == 1;
        }
        assert!(
            Instant::now() < deadline,
            "the TURN server did not handle the packets"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relays_follow_the_clusters_bridges_and_reach_nothing_else() {
    bridgemesh_tests::harness::init_tracing();
    let mut running = bridgemesh::up::start(UpConfig {
        bridges: 2,
        ..UpConfig::ephemeral()
    })
    .await
    .expect("bridgemesh up starts");
    let turn = running.turn.clone().expect("TURN runs by default");
    let secret = running.turn_directory.as_ref().unwrap().secret.clone();
    let second = running.bridges[1].bridge.media_addr();
    let http = reqwest::Client::new();

    // Control lists the bridges to the cluster's TURN servers only.
    let url = format!("{}{TURN_PEERS_PATH}", running.control_url);
    let refused = http.get(&url).send().await.unwrap();
    assert_eq!(refused.status(), 401);
    let refused = http
        .get(&url)
        .bearer_auth("not-a-credential")
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
    // A bridge's own TURN secret is not a standalone server's: the public API refuses its
    // credential (a bridge's TURN server asks on the cluster listener, under its certificate).
    let refused = http
        .get(&url)
        .bearer_auth(turn_peers_credential(&secret))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
    let first = running.bridge.media_addr();

    let expires = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() + 3600;
    let mut client =
        RawTurnClient::udp(turn.udp_addr().unwrap(), rest_credential(&secret, "ada", expires)).await;
    assert_eq!(client.allocate().await.code, 0);
    // Not a general relay: a public address is refused.
    let public: SocketAddr = "8.8.8.8:53".parse().unwrap();
    assert_eq!(client.create_permission(public).await.code, 403);
    assert_eq!(client.create_permission(second).await.code, 0);

    // The other bridge is reachable (once the policy has heard of it).
    let deadline = Instant::now() + POLICY_TIMEOUT;
    while !relayed_to(&mut client, &turn, second).await {
        assert!(Instant::now() < deadline, "bridge 2 never became reachable");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // It leaves the cluster: relays toward it stop.
    let leaving = running.bridges.pop().unwrap();
    let id = leaving.bridge.id().clone();
    leaving.stop_now().await.unwrap();
    let forgotten = http
        .delete(format!("{}/api/v1/admin/bridges/{id}", running.control_url))
        .bearer_auth(&running.admin_token)
        .send()
        .await
        .unwrap();
    assert!(
        forgotten.status().is_success(),
        "{}",
        forgotten.text().await.unwrap()
    );
    let deadline = Instant::now() + POLICY_TIMEOUT;
    while relayed_to(&mut client, &turn, second).await {
        assert!(
            Instant::now() < deadline,
            "bridge 2 stayed reachable after it left"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Its own bridge stays reachable.
    assert!(relayed_to(&mut client, &turn, first).await);
    running.stop().await;
}
