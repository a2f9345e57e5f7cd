//! The admin API's participant list on a three-node cluster: membership comes from Raft, media
//! state from the bridge's reports to the leader, and a follower answers the same list by asking
//! the leader. A mute asked on a follower reaches the participant's bridge.

mod common;

use bridgemesh_control::state::{Command, JoinRequestRecord};
use bridgemesh_pki::ClusterIdentity;
use bridgemesh_proto::bridge_session::{
    BridgeRegistration, BridgeToControl, ControlToBridge, LoadReport, ParticipantMedia,
};
use bridgemesh_proto::signaling::MediaSource;
use bridgemesh_proto::{BridgeId, ParticipantId, RegionId, RoomId};
use common::{TestCluster, open_bridge_session};
use futures_util::{SinkExt, StreamExt};
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

/// Only a guard against a hang: every wait ends as soon as what it waits for arrives.
const WAIT_MAX: Duration = Duration::from_secs(20);

fn text(message: &BridgeToControl) -> Message {
    Message::Text(serde_json::to_string(message).unwrap().into())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_lists_participants_with_the_media_their_bridge_reported_and_relays_a_mute() {
    let cluster = TestCluster::start(&[1, 2, 3]).await;
    let leader = cluster.wait_for_leader().await;
    let follower = [1, 2, 3].into_iter().find(|id| *id != leader).unwrap();
    cluster.wait_caught_up(follower).await;
    let (room, ada) = (RoomId::new("r").unwrap(), ParticipantId::new("p-ada").unwrap());

    // A bridge registers with the leader, hosts Ada, and reports her media with a heartbeat.
    let bridge = BridgeId::new("b1").unwrap();
    let identity = ClusterIdentity::from(&cluster.ca.issue_bridge_cert(&bridge).unwrap());
    let socket = open_bridge_session(cluster.cluster_addrs[&leader], &identity)
        .await
        .unwrap();
    let (mut outgoing, mut incoming) = socket.split();
    let register = BridgeToControl::Register {
        bridge: BridgeRegistration {
            id: bridge.clone(),
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
    outgoing.send(text(&register)).await.unwrap();
    // Registered (committed) before a join may name the bridge.
    tokio::time::timeout(WAIT_MAX, async {
        while let Some(frame) = incoming.next().await {
            if let Ok(Message::Text(text)) = frame
                && matches!(
                    serde_json::from_str::<ControlToBridge>(text.as_str()),
                    Ok(ControlToBridge::Registered { .. })
                )
            {
                return;
            }
        }
        panic!("the session ended before `registered`");
    })
    .await
    .expect("registered in time");
    let raft = cluster.nodes[&leader].node.cluster().clone();
    raft.propose(Command::Join(JoinRequestRecord::guest(
        room.clone(),
        ada.clone(),
        bridge.clone(),
        bridgemesh_control::node::now_unix_ms(),
    )))
    .await
    .unwrap()
    .unwrap();
    let media = ParticipantMedia {
        e2ee: false,
        room: room.clone(),
        participant: ada.clone(),
        connected_at_ms: 1_796_601_590_412,
        microphone_muted: true,
        camera_muted: false,
        sources: vec![MediaSource::Camera, MediaSource::Screen],
        hand_raised_at_ms: Some(1_796_601_600_123),
    };
    let heartbeat = BridgeToControl::Heartbeat {
        load: LoadReport::default(),
    };
    let joined = BridgeToControl::ParticipantJoined {
        room: room.clone(),
        participant: ada.clone(),
    };
    outgoing.send(text(&joined)).await.unwrap();
    outgoing
        .send(text(&BridgeToControl::ParticipantsMedia {
            updates: vec![media.clone()],
        }))
        .await
        .unwrap();
    let beating = tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if outgoing.send(text(&heartbeat)).await.is_err() {
                return;
            }
        }
    });

    // Asked on the follower: the leader's list, with the bridge's media state (once the
    // bridge's join is committed, Ada is `connected`).
    let deadline = tokio::time::Instant::now() + WAIT_MAX;
    let path = "/api/v1/admin/rooms/r/participants";
    let listed = loop {
        let response = cluster.admin(follower, reqwest::Method::GET, path, None).await;
        let status = response.status();
        let body: serde_json::Value = response.json().await.unwrap();
        let row = &body["participants"][0];
        if status.is_success() && !row["media"].is_null() && row["status"] == "connected" {
            break body;
        }
        assert!(tokio::time::Instant::now() < deadline, "{status}: {body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let row = &listed["participants"][0];
    assert_eq!(row["participant_id"], "p-ada");
    assert_eq!(row["bridge_id"], "b1");
    assert_eq!(row["role"], "guest");
    assert_eq!(
        row["media"],
        serde_json::json!({
            "joined_at_ms": 1_796_601_590_412u64,
            "microphone_muted": true,
            "camera_muted": false,
            "sources": ["camera", "screen"],
            "hand_raised_at_ms": 1_796_601_600_123u64,
            "e2ee": false,
        })
    );
    // The leader answers the same.
    let on_leader: serde_json::Value = cluster
        .admin(leader, reqwest::Method::GET, path, None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(on_leader, listed);

    // A mute asked on the follower reaches the bridge.
    let response = cluster
        .admin(
            follower,
            reqwest::Method::POST,
            "/api/v1/admin/rooms/r/participants/p-ada/mute",
            None,
        )
        .await;
    assert!(
        response.status().is_success(),
        "{}",
        response.text().await.unwrap()
    );
    let asked = tokio::time::timeout(WAIT_MAX, async {
        while let Some(frame) = incoming.next().await {
            if let Ok(Message::Text(text)) = frame
                && let Ok(ControlToBridge::RequestMute { room, participant }) =
                    serde_json::from_str::<ControlToBridge>(text.as_str())
            {
                return Some((room, participant));
            }
        }
        None
    })
    .await
    .expect("the bridge was asked to mute in time");
    assert_eq!(asked, Some((room.clone(), ada.clone())));

    // An unknown room is a clear 404 on any node.
    let response = cluster
        .admin(
            follower,
            reqwest::Method::GET,
            "/api/v1/admin/rooms/nobody/participants",
            None,
        )
        .await;
    assert_eq!(response.status(), 404);
    beating.abort();
}
