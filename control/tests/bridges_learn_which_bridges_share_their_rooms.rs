//! Control tells each bridge which other bridges host its rooms (`room_bridges`), over real bridge
//! sessions with a real control node: a join that puts a room on a second bridge reaches both
//! bridges, a bridge that registers hears of its shared rooms right after `registered`, and a
//! bridge whose last participant of a room leaves hears it shares the room with nobody.

mod common;

use bridgemesh_control::state::{Command, JoinRequestRecord};
use bridgemesh_pki::{ClusterCa, ClusterIdentity};
use bridgemesh_proto::bridge_session::{
    BridgeRegistration, BridgeToControl, CascadePeer, ControlToBridge, HostedParticipant, LoadReport,
};
use bridgemesh_proto::{BridgeId, ParticipantId, RegionId, RoomId};
use common::{BridgeSocket, TestCluster, open_bridge_session};
use futures_util::stream::SplitStream;
use futures_util::{SinkExt, StreamExt};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

/// Only a guard against a hang: every wait ends as soon as what it waits for arrives.
const WAIT_MAX: Duration = Duration::from_secs(20);

fn cascade_addr(bridge: &str) -> SocketAddr {
    let port = match bridge {
        "b1" => 4001,
        _ => 4002,
    };
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn peer(bridge: &str) -> CascadePeer {
    CascadePeer {
        bridge: BridgeId::new(bridge).unwrap(),
        addr: cascade_addr(bridge),
    }
}

/// A bridge's side of the session: registers, heartbeats in the background, and reads what
/// control sends.
struct StandInBridge {
    incoming: SplitStream<BridgeSocket>,
    heartbeats: tokio::task::JoinHandle<()>,
}

impl StandInBridge {
    /// Connects to the cluster listener at `control` with a certificate of `ca` for bridge `id`.
    async fn connect(control: SocketAddr, ca: &ClusterCa, id: &str, hosted: Vec<HostedParticipant>) -> Self {
        let identity = ClusterIdentity::from(&ca.issue_bridge_cert(&BridgeId::new(id).unwrap()).unwrap());
        let socket = open_bridge_session(control, &identity).await.unwrap();
        let (mut outgoing, incoming) = socket.split();
        let register = BridgeToControl::Register {
            bridge: BridgeRegistration {
                id: BridgeId::new(id).unwrap(),
                region: RegionId::new("test").unwrap(),
                location: None,
                signaling_url: format!("ws://127.0.0.1:9/{id}"),
                media_addresses: Vec::new(),
                turn_urls: Vec::new(),
                capacity: 100,
                max_participants_per_room: 100,
                cascade_addr: Some(cascade_addr(id)),
            },
            // The same on every connection: a reconnecting process, not a second one.
            instance: format!("{id}-instance"),
            participants: hosted,
            load: LoadReport::default(),
        };
        let text = serde_json::to_string(&register).unwrap();
        outgoing.send(Message::Text(text.into())).await.unwrap();
        let heartbeats = tokio::spawn(async move {
            let heartbeat = serde_json::to_string(&BridgeToControl::Heartbeat {
                load: LoadReport::default(),
            })
            .unwrap();
            loop {
                tokio::time::sleep(Duration::from_millis(100)).await;
                if outgoing
                    .send(Message::Text(heartbeat.clone().into()))
                    .await
                    .is_err()
                {
                    return;
                }
            }
        });
        Self { incoming, heartbeats }
    }

    async fn next(&mut self) -> ControlToBridge {
        loop {
            let frame = tokio::time::timeout(WAIT_MAX, self.incoming.next())
                .await
                .expect("control said nothing")
                .expect("the session ended")
                .unwrap();
            if let Message::Text(text) = frame {
                return serde_json::from_str(text.as_str()).unwrap();
            }
        }
    }

    /// The next `room_bridges`, past status changes (the failure detector's business) and
    /// kicks or moves (reconciliation's: a stand-in that registered hosting a participant who
    /// left meanwhile is told to drop it).
    async fn next_room_bridges(&mut self) -> ControlToBridge {
        loop {
            match self.next().await {
                ControlToBridge::Status { .. }
                | ControlToBridge::RoomBridgesComplete
                | ControlToBridge::Kick { .. }
                | ControlToBridge::Move { .. } => {}
                message @ ControlToBridge::RoomBridges { .. } => return message,
                other => panic!("unexpected {other:?}"),
            }
        }
    }

    async fn expect_registered(&mut self) {
        let first = self.next().await;
        assert!(matches!(first, ControlToBridge::Registered { .. }), "{first:?}");
    }

    /// Drops the socket without a close frame, as a bridge losing its connection does.
    async fn disconnect(self) {
        self.heartbeats.abort();
        let _ = self.heartbeats.await;
    }
}

fn room_bridges(peers: &[CascadePeer]) -> ControlToBridge {
    ControlToBridge::RoomBridges {
        room: RoomId::new("r").unwrap(),
        peers: peers.to_vec(),
    }
}

async fn commit(cluster: &Arc<bridgemesh_control::raft::cluster::ClusterNode>, command: Command) {
    cluster.propose(command).await.unwrap().unwrap();
}

fn join(participant: &str, bridge: &str) -> Command {
    Command::Join(JoinRequestRecord::guest(
        RoomId::new("r").unwrap(),
        ParticipantId::new(participant).unwrap(),
        BridgeId::new(bridge).unwrap(),
        bridgemesh_control::node::now_unix_ms(),
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bridges_sharing_a_room_are_told_of_each_other_on_joins_registrations_and_leaves() {
    let cluster = TestCluster::start(&[1]).await;
    let leader = cluster.wait_for_leader().await;
    let control = cluster.cluster_addrs[&leader];
    let raft = cluster.nodes[&leader].node.cluster().clone();

    let mut b1 = StandInBridge::connect(control, &cluster.ca, "b1", Vec::new()).await;
    b1.expect_registered().await;
    let mut b2 = StandInBridge::connect(control, &cluster.ca, "b2", Vec::new()).await;
    b2.expect_registered().await;

    // The room on one bridge concerns nobody; on a second one, both.
    commit(&raft, join("p1", "b1")).await;
    commit(&raft, join("p2", "b2")).await;
    assert_eq!(b1.next_room_bridges().await, room_bridges(&[peer("b2")]));
    assert_eq!(b2.next_room_bridges().await, room_bridges(&[peer("b1")]));

    // b2 loses its session and registers again: its rooms' bridges come right after
    // `registered`.
    b2.disconnect().await;
    let hosting_p2 = HostedParticipant {
        room: RoomId::new("r").unwrap(),
        participant: ParticipantId::new("p2").unwrap(),
    };
    let mut b2 = StandInBridge::connect(control, &cluster.ca, "b2", vec![hosting_p2]).await;
    b2.expect_registered().await;
    assert_eq!(b2.next().await, room_bridges(&[peer("b1")]));
    // And then the word that the list is complete.
    assert_eq!(b2.next().await, ControlToBridge::RoomBridgesComplete);

    // p2 leaves: neither bridge shares the room any more.
    commit(
        &raft,
        Command::Leave {
            room: RoomId::new("r").unwrap(),
            participant: ParticipantId::new("p2").unwrap(),
            bridge: None,
        },
    )
    .await;
    assert_eq!(b2.next_room_bridges().await, room_bridges(&[]));
    assert_eq!(b1.next_room_bridges().await, room_bridges(&[]));

    b1.disconnect().await;
    b2.disconnect().await;
}
