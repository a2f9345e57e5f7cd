use super::*;
use bridgemesh_proto::api::ErrorCode;
use bridgemesh_proto::signaling::ParticipantInfo;

fn info(id: &str, microphone_muted: bool) -> ParticipantInfo {
    ParticipantInfo {
        id: ParticipantId::new(id).unwrap(),
        display_name: id.into(),
        microphone_muted,
        camera_muted: false,
        sources: Vec::new(),
        hand_raised_at_ms: None,
    }
}

fn updated(id: &str, muted: bool) -> ServerMessage {
    ServerMessage::ParticipantUpdated {
        participant: info(id, muted),
    }
}

fn drain(outbox: &mut Outbox) -> Vec<ServerMessage> {
    let mut out = Vec::new();
    while let Some(ClientCommand::Send(message)) = outbox.pop() {
        out.push(message);
    }
    out
}

#[test]
fn a_flood_of_updates_about_one_participant_leaves_only_the_latest() {
    let mut outbox = Outbox::new(256);
    outbox.push(updated("p-other", false)).unwrap();
    for i in 0..20_000 {
        outbox.push(updated("p-flooder", i % 2 == 0)).unwrap();
    }
    assert_eq!(
        drain(&mut outbox),
        vec![updated("p-other", false), updated("p-flooder", false)]
    );
    assert_eq!(outbox.stats().coalesced, 19_999);
}

#[test]
fn an_update_after_a_join_is_folded_into_the_join() {
    let mut outbox = Outbox::new(8);
    outbox
        .push(ServerMessage::ParticipantJoined {
            participant: info("p-a", false),
        })
        .unwrap();
    outbox.push(updated("p-a", true)).unwrap();
    assert_eq!(
        drain(&mut outbox),
        vec![ServerMessage::ParticipantJoined {
            participant: info("p-a", true)
        }]
    );
}

#[test]
fn a_stay_the_client_never_saw_is_withdrawn_and_a_known_one_ends_with_left() {
    let mut outbox = Outbox::new(8);
    let left = |id: &str| ServerMessage::ParticipantLeft {
        participant_id: ParticipantId::new(id).unwrap(),
    };
    outbox.push(updated("p-known", true)).unwrap();
    outbox.push(left("p-known")).unwrap();
    for _ in 0..100 {
        outbox
            .push(ServerMessage::ParticipantJoined {
                participant: info("p-churn", false),
            })
            .unwrap();
        outbox.push(updated("p-churn", true)).unwrap();
        outbox.push(left("p-churn")).unwrap();
    }
    assert_eq!(drain(&mut outbox), vec![left("p-known")]);
}

#[test]
fn a_rejoin_after_a_pending_leave_keeps_the_order() {
    let mut outbox = Outbox::new(8);
    let left = ServerMessage::ParticipantLeft {
        participant_id: ParticipantId::new("p-a").unwrap(),
    };
    let joined = ServerMessage::ParticipantJoined {
        participant: info("p-a", false),
    };
    outbox.push(left.clone()).unwrap();
    outbox.push(joined).unwrap();
    outbox.push(updated("p-a", true)).unwrap();
    assert_eq!(
        drain(&mut outbox),
        vec![
            left,
            ServerMessage::ParticipantJoined {
                participant: info("p-a", true)
            }
        ]
    );
}

#[test]
fn when_full_the_clients_own_errors_give_way_and_then_it_is_refused() {
    let mut outbox = Outbox::new(3);
    let error = ServerMessage::Error {
        code: ErrorCode::RateLimited,
        message: "slow down".into(),
    };
    outbox.push(error).unwrap();
    outbox.push(updated("p-a", true)).unwrap();
    outbox.push(updated("p-b", true)).unwrap();
    outbox.push(updated("p-c", true)).unwrap();
    assert_eq!(outbox.stats().errors_dropped, 1);
    assert_eq!(outbox.len(), 3);
    // Coalescing still works when full.
    outbox.push(updated("p-a", false)).unwrap();
    assert_eq!(outbox.push(updated("p-d", true)), Err(OutboxFull));
}

#[test]
fn close_delivers_what_is_pending_first() {
    let mut outbox = Outbox::new(4);
    outbox
        .push(ServerMessage::Bye {
            reason: bridgemesh_proto::signaling::ByeReason::Left,
        })
        .unwrap();
    outbox.close();
    outbox.push(updated("p-late", true)).unwrap();
    assert!(matches!(
        outbox.pop(),
        Some(ClientCommand::Send(ServerMessage::Bye { .. }))
    ));
    assert!(matches!(outbox.pop(), Some(ClientCommand::Close)));
}

#[tokio::test]
async fn the_receiver_wakes_for_messages_and_sees_the_sender_dropped() {
    let (tx, mut rx) = channel(4);
    let task = tokio::spawn(async move {
        let mut got = Vec::new();
        while let Some(ClientCommand::Send(message)) = rx.recv().await {
            got.push(message);
        }
        got
    });
    tx.try_send(ClientCommand::Send(updated("p-a", true))).unwrap();
    drop(tx);
    assert_eq!(task.await.unwrap(), vec![updated("p-a", true)]);
}

#[test]
fn only_the_latest_dominant_speaker_waits_for_a_slow_reader() {
    let speaker = |id: &str| ServerMessage::DominantSpeaker {
        participant_id: ParticipantId::new(id).unwrap(),
    };
    let mut outbox = Outbox::new(4);
    outbox.push(updated("p-a", true)).unwrap();
    for i in 0..1_000 {
        outbox
            .push(speaker(if i % 2 == 0 { "p-a" } else { "p-b" }))
            .unwrap();
    }
    assert_eq!(drain(&mut outbox), vec![updated("p-a", true), speaker("p-b")]);
    assert_eq!(outbox.stats().coalesced, 999);
}
