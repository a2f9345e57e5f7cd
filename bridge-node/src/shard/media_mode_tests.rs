//! Publish-only and receive-only participants: a viewer is offered no receiving slot (no
//! recvonly m-line, no receiver, nothing to publish into), a send-only participant no leg.

use super::declined_tests::{open_camera, room};
use super::*;

fn join(shard: &mut Shard, now: Instant, key: u64, name: &str, media: MediaMode) {
    shard.handle_input(
        now,
        ShardInput::Connect(ConnectRequest {
            key: ParticipantKey(key),
            room: room(),
            participant_id: ParticipantId::new(name).unwrap(),
            display_name: name.to_owned(),
            media,
            moderator: false,
        }),
    );
}

/// The SDP of every offer the outputs carry for `key`.
fn offers_to(outputs: &[ShardOutput], key: u64) -> Vec<String> {
    outputs
        .iter()
        .filter_map(|o| match o {
            ShardOutput::ToClient {
                key: k,
                message: ServerMessage::Offer { sdp, .. },
            } if *k == ParticipantKey(key) => Some(sdp.clone()),
            _ => None,
        })
        .collect()
}

fn directions(sdp: &str) -> Vec<&str> {
    sdp.lines()
        .map(|l| l.trim_end())
        .filter(|l| ["a=sendonly", "a=recvonly", "a=sendrecv", "a=inactive"].contains(l))
        .collect()
}

#[test]
fn viewers_get_legs_and_no_slots_and_a_send_only_participant_gets_no_legs() {
    let now = Instant::now();
    let mut shard = Shard::new(
        0,
        "127.0.0.1:40000".parse().unwrap(),
        Arc::new(RouteTable::default()),
        8,
    );
    join(&mut shard, now, 1, "speaker", MediaMode::SendOnly);
    for (key, name) in [(2, "viewer-a"), (3, "viewer-b")] {
        join(&mut shard, now, key, name, MediaMode::ReceiveOnly);
    }
    let outputs: Vec<_> = std::iter::from_fn(|| shard.poll_output()).collect();
    assert_eq!(
        directions(&offers_to(&outputs, 1)[0]),
        ["a=recvonly", "a=recvonly"],
        "the speaker is offered its two publishing slots"
    );
    for viewer in [2, 3] {
        let participant = &shard.rooms[&room()].participants[&ParticipantKey(viewer)];
        assert!(participant.slots.is_empty(), "a viewer has no receiving slot");
        assert_eq!(participant.pc.get_transceivers().count(), 0);
    }
    // The speaker's camera opens: each viewer is offered one sendonly leg and nothing else.
    for key in 1..=3 {
        let p = shard
            .rooms
            .get_mut(&room())
            .unwrap()
            .participants
            .get_mut(&ParticipantKey(key));
        p.unwrap().awaiting_answer = false;
    }
    open_camera(&mut shard, ParticipantKey(1));
    shard.pump(now, &room());
    let outputs: Vec<_> = std::iter::from_fn(|| shard.poll_output()).collect();
    for viewer in [2, 3] {
        let offers = offers_to(&outputs, viewer);
        assert_eq!(offers.len(), 1);
        assert_eq!(directions(&offers[0]), ["a=sendonly"], "one leg, no slot");
        let participant = &shard.rooms[&room()].participants[&ParticipantKey(viewer)];
        assert_eq!(participant.legs.len(), 1);
        assert!(participant.slots.is_empty());
    }
    // A viewer's camera opening too (it cannot: it has no slot) would be the only way the
    // speaker got a leg; and a viewer asking to publish is refused.
    shard.handle_input(
        now,
        ShardInput::Client {
            key: ParticipantKey(2),
            message: ClientMessage::Publish {
                source: MediaSource::Screen,
            },
        },
    );
    let outputs: Vec<_> = std::iter::from_fn(|| shard.poll_output()).collect();
    assert!(outputs.iter().any(|o| matches!(
        o,
        ShardOutput::ToClient {
            key: ParticipantKey(2),
            message: ServerMessage::Error {
                code: ErrorCode::Conflict,
                ..
            }
        }
    )));
    assert!(
        shard.rooms[&room()].participants[&ParticipantKey(2)]
            .slots
            .is_empty()
    );
    // A participant publishing both ways in the same room: the send-only speaker still gets no
    // leg for its camera.
    join(&mut shard, now, 4, "guest", MediaMode::Both);
    {
        let room = shard.rooms.get_mut(&room()).unwrap();
        for p in room.participants.values_mut() {
            p.awaiting_answer = false;
        }
    }
    open_camera(&mut shard, ParticipantKey(4));
    shard.pump(now, &room());
    let room = &shard.rooms[&room()];
    assert!(
        room.participants[&ParticipantKey(1)].legs.is_empty(),
        "send-only: no legs"
    );
    assert_eq!(
        room.participants[&ParticipantKey(2)].legs.len(),
        2,
        "both cameras"
    );
}

/// A viewer who joins before anyone publishes has nothing to receive yet: an offer without a
/// single m-section would leave its peer connection without a transport (the bridge's `rtc`
/// closes it on the empty answer), so the viewer is offered nothing until the first stream opens,
/// and then exactly once.
#[test]
fn a_viewer_alone_in_a_room_is_offered_nothing_until_a_stream_opens() {
    let now = Instant::now();
    let mut shard = Shard::new(
        0,
        "127.0.0.1:40000".parse().unwrap(),
        Arc::new(RouteTable::default()),
        8,
    );
    join(&mut shard, now, 2, "viewer", MediaMode::ReceiveOnly);
    shard.pump(now, &room());
    let outputs: Vec<_> = std::iter::from_fn(|| shard.poll_output()).collect();
    assert!(offers_to(&outputs, 2).is_empty(), "an empty offer was sent");
    assert!(!shard.rooms[&room()].participants[&ParticipantKey(2)].awaiting_answer);

    join(&mut shard, now, 1, "speaker", MediaMode::SendOnly);
    shard
        .rooms
        .get_mut(&room())
        .unwrap()
        .participants
        .get_mut(&ParticipantKey(1))
        .unwrap()
        .awaiting_answer = false;
    open_camera(&mut shard, ParticipantKey(1));
    shard.pump(now, &room());
    let outputs: Vec<_> = std::iter::from_fn(|| shard.poll_output()).collect();
    let offers = offers_to(&outputs, 2);
    assert_eq!(
        offers.len(),
        1,
        "the viewer's first offer comes with the first stream"
    );
    assert_eq!(directions(&offers[0]), ["a=sendonly"]);
}
