//! The room's end-to-end encryption flag in a room spread over two bridges: set by a moderator on
//! the first, it reaches a participant who joins on the second (the bridge new to the room hears it
//! when the link opens the room), a non-moderator there cannot change it, and turning it off crosses
//! the link too; the admin API shows it with every participant. The bridges carry the flag only;
//! keys never reach them (`docs/e2ee.md`).

use bridgemesh::admin::{AdminCall, run};
use bridgemesh::up::UpConfig;
use bridgemesh_proto::ParticipantId;
use bridgemesh_proto::api::{ErrorCode, Role};
use bridgemesh_proto::signaling::{ClientMessage, ServerMessage};
use bridgemesh_tests::harness::{RawSignal, init_tracing, join_raw, room};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(10);

/// Waits until the admin API lists every participant of `room` with `e2ee` as given (each bridge
/// reports it with its next heartbeat).
async fn wait_for_admin_flag(running: &bridgemesh::up::Running, room: &str, on: bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let answer = run(
            &running.control_url,
            &running.admin_token,
            AdminCall::Participants { room: room.into() },
        )
        .await
        .expect("the participant list");
        let list: serde_json::Value = serde_json::from_str(&answer).unwrap();
        let participants = list["participants"].as_array().unwrap();
        if participants.len() == 2 && participants.iter().all(|p| p["media"]["e2ee"] == on) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "admin list never showed e2ee {on}: {list}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn next_flag(signal: &mut RawSignal, what: &str) -> (bool, ParticipantId) {
    signal
        .next_matching(what, WAIT, |m| match m {
            ServerMessage::E2ee { required, by, .. } => Some((required, by)),
            _ => None,
        })
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_e2ee_flag_reaches_the_other_bridge_and_late_joiners_there() {
    init_tracing();
    // One participant per room and bridge: a room of two spans both bridges.
    let running = bridgemesh::up::start(UpConfig {
        bridges: 2,
        max_per_room: 1,
        ..UpConfig::ephemeral()
    })
    .await
    .expect("bridgemesh up starts with two bridges");
    let room = room("e2ee-cascade");
    let ada_join = join_raw(&running, &room, "Ada").await;
    assert_eq!(ada_join.role, Role::Moderator, "Ada opened the room");
    let mut ada = RawSignal::hello(&ada_join).await;
    ada.welcome_and_offer().await;
    ada.send(&ClientMessage::SetE2ee { required: true }).await;
    assert_eq!(
        next_flag(&mut ada, "Ada's own flag").await,
        (true, ada_join.participant_id.clone())
    );

    // Bob lands on the other bridge, which never saw the room: it learns the flag over the link.
    let bob_join = join_raw(&running, &room, "Bob").await;
    assert_ne!(
        ada_join.bridge_id, bob_join.bridge_id,
        "the room spans both bridges"
    );
    assert_ne!(bob_join.role, Role::Moderator);
    let mut bob = RawSignal::hello(&bob_join).await;
    assert_eq!(
        next_flag(&mut bob, "the flag, on the other bridge").await,
        (true, ada_join.participant_id.clone())
    );

    // Bob is no moderator: refused by his own bridge, nothing changes for Ada.
    bob.send(&ClientMessage::SetE2ee { required: false }).await;
    let code = bob
        .next_matching("Bob refused", WAIT, |m| match m {
            ServerMessage::Error { code, .. } => Some(code),
            _ => None,
        })
        .await;
    assert_eq!(code, ErrorCode::Forbidden);

    // Operators see it on both bridges' participants.
    wait_for_admin_flag(&running, room.as_str(), true).await;

    // Ada turns it off: Bob hears it across the link.
    ada.send(&ClientMessage::SetE2ee { required: false }).await;
    assert!(!next_flag(&mut ada, "off, Ada").await.0);
    assert_eq!(
        next_flag(&mut bob, "off, across the link").await,
        (false, ada_join.participant_id.clone())
    );
    wait_for_admin_flag(&running, room.as_str(), false).await;
    running.stop().await;
}
