//! `ControlService::stop` returns only once nothing holds the node's Raft store any more, so the
//! same data directory opens again at once in the same process (an in-process restart, as tests
//! and `bridgemesh up`'s restart do). A bridge session that stays open across the stop (its bridge
//! neither closes nor reads) must not keep the store locked.

mod common;

use bridgemesh_pki::ClusterIdentity;
use bridgemesh_proto::bridge_session::{BridgeRegistration, BridgeToControl, ControlToBridge, LoadReport};
use bridgemesh_proto::{BridgeId, RegionId};
use common::{TestCluster, open_bridge_session};
use futures_util::{SinkExt, StreamExt};
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

const WAIT_MAX: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_node_with_an_open_bridge_session_starts_again_at_once() {
    let mut cluster = TestCluster::start(&[1]).await;
    cluster.wait_for_leader().await;
    let id = BridgeId::new("b1").unwrap();
    let identity = ClusterIdentity::from(&cluster.ca.issue_bridge_cert(&id).unwrap());
    let mut socket = open_bridge_session(cluster.cluster_addrs[&1], &identity)
        .await
        .unwrap();
    let register = BridgeToControl::Register {
        bridge: BridgeRegistration {
            id: id.clone(),
            region: RegionId::new("test").unwrap(),
            location: None,
            signaling_url: "ws://127.0.0.1:9/b1".into(),
            media_addresses: Vec::new(),
            turn_urls: Vec::new(),
            capacity: 100,
            max_participants_per_room: 100,
            cascade_addr: None,
        },
        instance: "b1-instance".into(),
        participants: Vec::new(),
        load: LoadReport::default(),
    };
    socket
        .send(Message::Text(serde_json::to_string(&register).unwrap().into()))
        .await
        .unwrap();
    // Registered: control's handler for this session is running and holds the node.
    tokio::time::timeout(WAIT_MAX, async {
        loop {
            let Some(Ok(Message::Text(text))) = socket.next().await else {
                panic!("the session ended before registration");
            };
            if let Ok(ControlToBridge::Registered { .. }) = serde_json::from_str(text.as_str()) {
                return;
            }
        }
    })
    .await
    .expect("registered");

    // The bridge neither reads nor closes from here on: control's side must end the session
    // itself, and `stop` must wait for it.
    tokio::time::timeout(WAIT_MAX, cluster.stop(1))
        .await
        .expect("stop is bounded");
    // No retry: the store is free the moment `stop` returned.
    tokio::time::timeout(WAIT_MAX, cluster.start_node(1))
        .await
        .expect("the node starts again");
    cluster.wait_for_leader().await;
    drop(socket);
}
