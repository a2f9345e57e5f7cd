//! The shard's signaling state machine fed random sequences: participants connecting (fresh
//! sockets, sometimes under an id already in the room), sending any client message (garbage
//! answers included), dropping, being kicked, moved or muted, rooms ending, junk datagrams, time
//! passing. Whatever the order, the shard keeps its books straight: every participant it holds is
//! in exactly one room under a unique id, no room is left empty, the counters agree, nothing is
//! ever sent to a socket after it was closed, and one input never makes more than a room's worth
//! of messages per participant.

use super::*;
use proptest::prelude::*;
use std::collections::HashSet;
use std::time::Duration;

const ROOMS: [&str; 2] = ["r", "s"];
const IDS: [&str; 4] = ["ada", "bob", "cy", "dee"];
const SOURCES: [MediaSource; 3] = [MediaSource::Microphone, MediaSource::Camera, MediaSource::Screen];

#[derive(Debug, Clone)]
enum Step {
    /// A new socket (the next key) says hello.
    Connect {
        room: usize,
        id: usize,
        media: u8,
    },
    /// The `nth` connection ever made (it may be gone) sends a message.
    Client {
        nth: usize,
        message: ClientMessage,
    },
    Disconnect {
        nth: usize,
    },
    Kick {
        room: usize,
        id: usize,
    },
    Move {
        room: usize,
        id: usize,
    },
    MuteAll {
        room: usize,
        id: usize,
    },
    EndRoom {
        room: usize,
    },
    Junk {
        nth: usize,
        bytes: Vec<u8>,
    },
    Wait {
        ms: u64,
    },
}

fn client_message() -> impl Strategy<Value = ClientMessage> {
    prop_oneof![
        (any::<bool>(), any::<bool>())
            .prop_map(|(microphone, camera)| ClientMessage::Mute { microphone, camera }),
        (0..3usize).prop_map(|s| ClientMessage::Publish { source: SOURCES[s] }),
        (0..3usize).prop_map(|s| ClientMessage::Unpublish { source: SOURCES[s] }),
        Just(ClientMessage::Leave),
        ".{0,40}".prop_map(|sdp| ClientMessage::Answer { sdp }),
        Just(ClientMessage::Answer {
            sdp: "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n".to_owned()
        }),
        // Chat, hands and reactions (ada, the first id, is a moderator).
        (".{0,8}", proptest::option::of(0..IDS.len())).prop_map(|(text, to)| ClientMessage::Chat {
            text,
            to: to.map(|i| ParticipantId::new(IDS[i]).unwrap())
        }),
        "[a-z]{1,4}\\.[0-9]{1,3}\\.[0-9]".prop_map(|id| ClientMessage::DeleteChat {
            id: bridgemesh_proto::meeting::ChatMessageId::new(id).unwrap()
        }),
        Just(ClientMessage::RaiseHand),
        proptest::option::of(0..IDS.len()).prop_map(|p| ClientMessage::LowerHand {
            participant: p.map(|i| ParticipantId::new(IDS[i]).unwrap())
        }),
        Just(ClientMessage::React {
            reaction: bridgemesh_proto::meeting::Reaction::Clap
        }),
    ]
}

fn step() -> impl Strategy<Value = Step> {
    let room = 0..ROOMS.len();
    let id = 0..IDS.len();
    prop_oneof![
        4 => (room.clone(), id.clone(), 0u8..3).prop_map(|(room, id, media)| Step::Connect { room, id, media }),
        6 => (0..12usize, client_message()).prop_map(|(nth, message)| Step::Client { nth, message }),
        1 => (0..12usize).prop_map(|nth| Step::Disconnect { nth }),
        1 => (room.clone(), id.clone()).prop_map(|(room, id)| Step::Kick { room, id }),
        1 => (room.clone(), id.clone()).prop_map(|(room, id)| Step::Move { room, id }),
        1 => (room.clone(), id.clone()).prop_map(|(room, id)| Step::MuteAll { room, id }),
        1 => room.prop_map(|room| Step::EndRoom { room }),
        1 => (0..12usize, proptest::collection::vec(any::<u8>(), 0..64)).prop_map(|(nth, bytes)| Step::Junk { nth, bytes }),
        2 => (0u64..20_000).prop_map(|ms| Step::Wait { ms }),
    ]
}

fn room_id(room: usize) -> RoomId {
    RoomId::new(ROOMS[room]).unwrap()
}

fn participant(id: usize) -> ParticipantId {
    ParticipantId::new(IDS[id]).unwrap()
}

/// The shard's books agree with themselves.
fn check_books(shard: &Shard) -> Result<(), TestCaseError> {
    let mut held = 0;
    for (name, room) in &shard.rooms {
        prop_assert!(!room.participants.is_empty(), "room {name} left empty");
        let ids: HashSet<_> = room.participants.values().map(|p| p.id.clone()).collect();
        prop_assert_eq!(ids.len(), room.participants.len(), "an id twice in room {}", name);
        for key in room.participants.keys() {
            prop_assert_eq!(shard.room_of.get(key).map(|r| &**r), Some(name));
        }
        held += room.participants.len();
    }
    prop_assert_eq!(held, shard.room_of.len());
    prop_assert_eq!(shard.stats().participants, held as u64);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn any_sequence_of_sessions_and_messages_keeps_the_books_straight(steps in proptest::collection::vec(step(), 1..60)) {
        let start = Instant::now();
        let mut now = start;
        let mut shard = Shard::new(0, "127.0.0.1:40000".parse().unwrap(), Arc::new(RouteTable::default()), 3);
        let mut keys: Vec<ParticipantKey> = Vec::new();
        let mut closed: HashSet<ParticipantKey> = HashSet::new();
        for step in steps {
            let key_of = |nth: usize| keys.get(nth % keys.len().max(1)).copied();
            let input = match step {
                Step::Connect { room, id, media } => {
                    let key = ParticipantKey(keys.len() as u64 + 1);
                    keys.push(key);
                    Some(ShardInput::Connect(ConnectRequest {
                        key,
                        room: room_id(room),
                        participant_id: participant(id),
                        display_name: IDS[id].to_owned(),
                        media: [MediaMode::Both, MediaMode::SendOnly, MediaMode::ReceiveOnly][usize::from(media)],
                        moderator: id == 0,
                    }))
                }
                Step::Client { nth, message } => key_of(nth).map(|key| ShardInput::Client { key, message }),
                Step::Disconnect { nth } => key_of(nth).map(|key| ShardInput::Disconnect { key }),
                Step::Kick { room, id } => Some(ShardInput::Moderation(ModerationAction::Kick { room: room_id(room), participant: participant(id) })),
                Step::Move { room, id } => Some(ShardInput::Moderation(ModerationAction::Move { room: room_id(room), participant: participant(id) })),
                Step::MuteAll { room, id } => Some(ShardInput::Moderation(ModerationAction::RequestMuteAll { room: room_id(room), by: participant(id) })),
                Step::EndRoom { room } => Some(ShardInput::Moderation(ModerationAction::EndRoom { room: room_id(room) })),
                Step::Junk { nth, bytes } => key_of(nth).map(|key| ShardInput::Datagram {
                    from: "127.0.0.1:50000".parse().unwrap(),
                    key,
                    data: BytesMut::from(&bytes[..]),
                }),
                Step::Wait { ms } => {
                    now += Duration::from_millis(ms);
                    shard.handle_timeout(now);
                    None
                }
            };
            if let Some(input) = input {
                shard.handle_input(now, input);
            }
            let participants = shard.room_of.len() as u64 + 1;
            let mut sent: std::collections::HashMap<ParticipantKey, u64> = std::collections::HashMap::new();
            let mut closing = HashSet::new();
            while let Some(output) = shard.poll_output() {
                match output {
                    ShardOutput::ToClient { key, .. } => {
                        prop_assert!(!closed.contains(&key), "a message to {key:?} after its socket closed");
                        prop_assert!(!closing.contains(&key), "a message to {key:?} after its close");
                        *sent.entry(key).or_default() += 1;
                    }
                    ShardOutput::CloseClient { key } => {
                        closing.insert(key);
                    }
                    _ => {}
                }
            }
            for (key, count) in sent {
                prop_assert!(count <= 2 * participants + 8, "{count} messages to {key:?} for one input");
            }
            closed.extend(closing);
            for key in &closed {
                prop_assert!(!shard.room_of.contains_key(key), "{key:?} closed but still held");
            }
            check_books(&shard)?;
        }
    }
}
