use super::*;
use bridgemesh_proto::signaling::ParticipantInfo;

fn room(name: &str) -> RoomId {
    RoomId::new(name).unwrap()
}

fn participant(room_name: &str, id: &str, microphone_muted: bool) -> LinkMessage {
    LinkMessage::Participant {
        room: room(room_name),
        participant: ParticipantInfo {
            id: ParticipantId::new(id).unwrap(),
            display_name: id.into(),
            microphone_muted,
            camera_muted: false,
            sources: Vec::new(),
            hand_raised_at_ms: None,
        },
    }
}

fn left(room_name: &str, id: &str) -> LinkMessage {
    LinkMessage::ParticipantLeft {
        room: room(room_name),
        participant: ParticipantId::new(id).unwrap(),
    }
}

fn drain(outbox: &mut LinkOutbox) -> Vec<LinkMessage> {
    std::iter::from_fn(|| outbox.pop()).collect()
}

#[test]
fn twenty_thousand_mutes_of_one_participant_leave_one_pending_message() {
    let mut outbox = LinkOutbox::new(LINK_QUEUE_CAPACITY, LINK_ROOM_BUDGET);
    outbox.push(LinkMessage::Open { room: room("calm") });
    for i in 0..20_000 {
        assert_ne!(
            outbox.push(participant("loud", "p-flooder", i % 2 == 0)),
            Pushed::Full
        );
    }
    assert_eq!(
        drain(&mut outbox),
        vec![
            LinkMessage::Open { room: room("calm") },
            participant("loud", "p-flooder", false)
        ]
    );
    assert_eq!(outbox.stats().coalesced, 19_999);
}

#[test]
fn demand_keeps_its_latest_count_and_keyframe_requests_are_not_repeated() {
    let mut outbox = LinkOutbox::new(16, 16);
    for subscribers in 0..100 {
        outbox.push(LinkMessage::Demand {
            id: 7,
            subscribers,
            max_height: 180,
        });
        outbox.push(LinkMessage::KeyframeRequest { id: 7 });
    }
    assert_eq!(
        drain(&mut outbox),
        vec![
            LinkMessage::Demand {
                id: 7,
                subscribers: 99,
                max_height: 180,
            },
            LinkMessage::KeyframeRequest { id: 7 }
        ]
    );
    // Once written, the next one is queued again.
    assert_eq!(
        outbox.push(LinkMessage::KeyframeRequest { id: 7 }),
        Pushed::Queued
    );
}

#[test]
fn a_room_past_its_budget_is_withdrawn_and_other_rooms_keep_their_messages() {
    let mut outbox = LinkOutbox::new(64, 8);
    outbox.push(participant("calm", "p-a", true));
    let mut overflowed = None;
    // Distinct participants joining and leaving: nothing to coalesce.
    for i in 0..100 {
        let id = format!("p-{i}");
        for message in [participant("loud", &id, false), left("loud", &id)] {
            match outbox.push(message) {
                Pushed::RoomOverflow(room) => {
                    overflowed = Some(room);
                    break;
                }
                Pushed::Full => panic!("the link's queue filled up"),
                _ => {}
            }
        }
        if overflowed.is_some() {
            break;
        }
    }
    assert_eq!(overflowed, Some(room("loud")));
    assert_eq!(outbox.stats().rooms_overflowed, 1);
    assert_eq!(drain(&mut outbox), vec![participant("calm", "p-a", true)]);
    // The withdrawn room starts a fresh budget (its close goes out next).
    assert_eq!(
        outbox.push(LinkMessage::Close { room: room("loud") }),
        Pushed::Queued
    );
}

#[test]
fn a_peer_that_reads_nothing_fills_the_queue_across_rooms() {
    let mut outbox = LinkOutbox::new(8, 4);
    for i in 0..8 {
        assert_eq!(
            outbox.push(participant(&format!("r{i}"), "p-a", true)),
            Pushed::Queued
        );
    }
    assert_eq!(outbox.push(participant("r9", "p-a", true)), Pushed::Full);
    // Coalescing still works when full.
    assert_eq!(outbox.push(participant("r0", "p-a", false)), Pushed::Coalesced);
}

#[tokio::test]
async fn the_writer_gets_messages_in_order_and_ends_after_close() {
    let (tx, mut rx) = channel(8, 8);
    let writer = tokio::spawn(async move {
        let mut got = Vec::new();
        while let Some(message) = rx.recv().await {
            got.push(message);
        }
        got
    });
    tx.push(LinkMessage::Open { room: room("r") });
    tx.push(participant("r", "p-a", true));
    tx.close();
    assert_eq!(
        writer.await.unwrap(),
        vec![
            LinkMessage::Open { room: room("r") },
            participant("r", "p-a", true)
        ]
    );
}
