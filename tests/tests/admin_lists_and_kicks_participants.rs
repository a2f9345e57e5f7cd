//! The admin API and `bridgemesh admin participants` (the same client code) list who is in a
//! room, with membership from control and media state from the bridges, mute one and kick one.

use bridgemesh::admin::{AdminCall, participants_table, run};
use bridgemesh_proto::signaling::{ByeReason, ClientMessage, MediaSource, ServerMessage};
use bridgemesh_tests::harness::{RawSignal, join, join_raw, room, up, wait_for_camera};
use serde_json::Value;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(20);

async fn list(url: &str, token: &str, room: &str) -> Value {
    let answer = run(url, token, AdminCall::Participants { room: room.into() })
        .await
        .expect("the participant list");
    serde_json::from_str(&answer).unwrap()
}

fn find<'a>(list: &'a Value, name: &str) -> Option<&'a Value> {
    list["participants"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["display_name"] == name)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operators_see_who_is_in_a_room_with_media_state_mute_one_and_kick_one() {
    let running = up().await;
    let room = room("admin-participants");
    let (url, token) = (running.control_url.clone(), running.admin_token.clone());
    let ada = join(&running, &room, "Ada").await;
    let bob = join(&running, &room, "Bob").await;
    wait_for_camera(&ada, &bob, 10).await;
    wait_for_camera(&bob, &ada, 10).await;
    let cy_join = join_raw(&running, &room, "Cy").await;
    let mut cy = RawSignal::hello(&cy_join).await;
    cy.welcome_and_offer().await;
    cy.send(&ClientMessage::Mute {
        microphone: true,
        camera: true,
    })
    .await;
    cy.send(&ClientMessage::RaiseHand).await;

    // Media state reaches control with the bridge's next heartbeats: ask until it shows.
    let deadline = tokio::time::Instant::now() + WAIT;
    let listed = loop {
        let listed = list(&url, &token, room.as_str()).await;
        let ready = |name: &str, check: &dyn Fn(&Value) -> bool| {
            find(&listed, name).is_some_and(|p| check(&p["media"]))
        };
        let ada_ready = ready("Ada", &|m| {
            m["sources"] == serde_json::json!(["microphone", "camera"])
        });
        let cy_ready = ready("Cy", &|m| {
            m["microphone_muted"] == true && m["hand_raised_at_ms"].is_u64()
        });
        if ada_ready && cy_ready && find(&listed, "Bob").is_some() {
            break listed;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "media state never showed: {listed:#}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let ada_row = find(&listed, "Ada").unwrap();
    assert_eq!(ada_row["participant_id"], ada.participant_id().as_str());
    assert_eq!(ada_row["role"], "moderator", "Ada opened the room");
    assert_eq!(ada_row["status"], "connected");
    assert_eq!(ada_row["bridge_id"], ada.bridge_id().as_str());
    assert_eq!(ada_row["media"]["microphone_muted"], false);
    assert!(ada_row["media"]["joined_at_ms"].as_u64().unwrap() > 1_600_000_000_000);
    let cy_row = find(&listed, "Cy").unwrap();
    assert_eq!(cy_row["role"], "guest");
    assert_eq!(cy_row["media"]["camera_muted"], true);
    assert_eq!(
        cy_row["media"]["sources"],
        serde_json::json!([]),
        "Cy sends no media"
    );
    assert_eq!(listed["participants"].as_array().unwrap().len(), 3);

    // The CLI's table: one line per participant, media columns filled in.
    let table = participants_table(&serde_json::to_string(&listed).unwrap()).unwrap();
    let cy_line = table.lines().find(|l| l.contains(" Cy ")).expect("Cy's line");
    assert!(cy_line.contains("off   off   no     up"), "{table}");
    assert!(ada.stats().intact_from(bob.participant_id(), MediaSource::Camera) > 0);

    // Mute Cy: its client is asked (only Cy), then Cy mutes itself as a client does.
    run(
        &url,
        &token,
        AdminCall::MuteParticipant {
            room: room.as_str().into(),
            id: cy_join.participant_id.as_str().into(),
        },
    )
    .await
    .expect("the mute");
    cy.next_matching("the operator's mute request", WAIT, |m| match m {
        ServerMessage::MuteRequestedByOperator => Some(()),
        _ => None,
    })
    .await;

    // Kick Cy: told why, disconnected, and gone from the list.
    run(
        &url,
        &token,
        AdminCall::KickParticipant {
            room: room.as_str().into(),
            id: cy_join.participant_id.as_str().into(),
        },
    )
    .await
    .expect("the kick");
    cy.next_matching("bye kicked", WAIT, |m| match m {
        ServerMessage::Bye {
            reason: ByeReason::Kicked,
        } => Some(()),
        _ => None,
    })
    .await;
    let after = list(&url, &token, room.as_str()).await;
    assert!(find(&after, "Cy").is_none(), "{after:#}");
    assert_eq!(after["participants"].as_array().unwrap().len(), 2);

    // Bad input: an unknown room, an unknown participant, a wrong token.
    let err = run(
        &url,
        &token,
        AdminCall::Participants {
            room: "nobody-here".into(),
        },
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(err.contains("not_found"), "{err}");
    let err = run(
        &url,
        &token,
        AdminCall::KickParticipant {
            room: room.as_str().into(),
            id: "p-nobody".into(),
        },
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(err.contains("404") || err.contains("not_found"), "{err}");
    let err = run(
        &url,
        "wrong",
        AdminCall::Participants {
            room: room.as_str().into(),
        },
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(err.contains("admin_unauthorized"), "{err}");

    ada.leave().await.unwrap();
    bob.leave().await.unwrap();
    running.stop().await;
}
