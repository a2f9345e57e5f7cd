//! The shard's cascade side fed random sequences of what peer bridges may send: rooms opened and
//! closed on several links, participant and stream announcements (naming rooms a link never
//! opened, local participants, unknown streams, stream ids reused), demands, keyframe requests,
//! chat, hands, reactions, media datagrams of junk, local participants coming and going, time.
//! Whatever a peer sends, the shard keeps its books straight: a remote participant belongs to a
//! link that opened its room and is not also local, the stream index and the rooms agree both
//! ways, no room outlives everyone who used it, nothing about a room goes to a link that did not
//! open it, and one input makes a bounded amount of output.

use super::*;
use crate::demux::RouteTable;
use crate::shard::{ConnectRequest, ShardInput};
use bridgemesh_proto::ParticipantId;
use bridgemesh_proto::meeting::{ChatMessage, ChatMessageId, Reaction};
use proptest::prelude::*;
use std::collections::HashSet;
use std::time::Duration;

const ROOMS: [&str; 2] = ["r", "s"];
const IDS: [&str; 4] = ["ada", "bob", "cy", "dee"];
const LINKS: u32 = 2;
const SOURCES: [MediaSource; 3] = [MediaSource::Microphone, MediaSource::Camera, MediaSource::Screen];

#[derive(Debug, Clone)]
enum Step {
    Local { room: usize, id: usize },
    LocalLeaves { nth: usize },
    Opened { room: usize, link: u32 },
    Closed { room: usize, link: u32 },
    Message { link: u32, message: LinkMessage },
    Media { link: u32, stream: u32, packet: Vec<u8> },
    Wait { ms: u64 },
}

fn room_id(room: usize) -> RoomId {
    RoomId::new(ROOMS[room]).unwrap()
}

fn participant(id: usize) -> ParticipantId {
    ParticipantId::new(IDS[id]).unwrap()
}

fn info(id: usize, sources: u8) -> ParticipantInfo {
    ParticipantInfo {
        id: participant(id),
        display_name: IDS[id].to_owned(),
        microphone_muted: sources & 8 != 0,
        camera_muted: false,
        sources: SOURCES
            .iter()
            .enumerate()
            .filter(|(i, _)| sources & (1 << i) != 0)
            .map(|(_, s)| *s)
            .collect(),
        hand_raised_at_ms: None,
    }
}

/// Stream ids from a small range, so announcements, ends, demands and media collide.
fn stream_id() -> impl Strategy<Value = u32> {
    prop_oneof![4 => 0u32..4, 1 => any::<u32>()]
}

/// Mostly the first room, so that a link's announcements meet the room it opened.
fn some_room() -> impl Strategy<Value = usize> + Clone {
    prop_oneof![3 => Just(0), 1 => Just(1)]
}

/// Mostly two ids, so that announcements, streams and departures meet.
fn some_id() -> impl Strategy<Value = usize> + Clone {
    prop_oneof![3 => 1..3usize, 1 => 0..IDS.len()]
}

fn codec(audio: bool) -> LinkCodec {
    if audio {
        LinkCodec {
            mime_type: "audio/opus".into(),
            clock_rate: 48_000,
            channels: 2,
            sdp_fmtp_line: "minptime=10;useinbandfec=1".into(),
        }
    } else {
        LinkCodec {
            mime_type: "video/VP8".into(),
            clock_rate: 90_000,
            channels: 0,
            sdp_fmtp_line: String::new(),
        }
    }
}

fn link_message() -> impl Strategy<Value = LinkMessage> {
    let room = some_room().prop_map(room_id);
    let id = some_id().prop_map(participant);
    prop_oneof![
        3 => (room.clone(), some_id(), any::<u8>())
            .prop_map(|(room, id, sources)| LinkMessage::Participant { room, participant: info(id, sources) }),
        1 => (room.clone(), id.clone()).prop_map(|(room, participant)| LinkMessage::ParticipantLeft { room, participant }),
        3 => (stream_id(), room.clone(), id.clone(), 0..2usize, any::<bool>(), 0u8..20)
            .prop_map(|(id, room, participant, source, audio, extension_id)| LinkMessage::Stream {
                id,
                room,
                participant,
                source: SOURCES[source],
                codec: codec(audio),
                extensions: vec![LinkExtension {
                    uri: crate::dominant_speaker::AUDIO_LEVEL_URI.to_owned(),
                    id: extension_id,
                }],
            }),
        1 => stream_id().prop_map(|id| LinkMessage::StreamEnded { id }),
        1 => (stream_id(), 0u32..4, prop_oneof![Just(u16::MAX), 0u16..800]).prop_map(|(id, subscribers, max_height)| {
            LinkMessage::Demand { id, subscribers, max_height }
        }),
        1 => stream_id().prop_map(|id| LinkMessage::KeyframeRequest { id }),
        1 => (room.clone(), id.clone(), proptest::option::of(id.clone()), ".{0,8}", "[a-z]{1,3}\\.[0-9]{1,2}")
            .prop_map(|(room, from, to, text, message_id)| LinkMessage::Chat {
                room,
                message: ChatMessage {
                    id: ChatMessageId::new(message_id).unwrap(),
                    from_name: from.to_string(),
                    from,
                    sent_at_ms: 1,
                    to,
                    text,
                },
            }),
        1 => (room.clone(), "[a-z]{1,3}\\.[0-9]{1,2}", id.clone()).prop_map(|(room, message_id, by)| LinkMessage::ChatDeleted {
            room,
            id: ChatMessageId::new(message_id).unwrap(),
            by,
        }),
        1 => (room.clone(), id.clone()).prop_map(|(room, participant)| LinkMessage::LowerHand { room, participant }),
        1 => (room.clone(), id.clone()).prop_map(|(room, participant)| LinkMessage::Reaction {
            room,
            participant,
            reaction: Reaction::Clap,
        }),
        // The link task handles these; a shard must shrug them off.
        1 => room.clone().prop_map(|room| LinkMessage::Open { room }),
        1 => room.clone().prop_map(|room| LinkMessage::Close { room }),
        1 => (room.clone(), any::<bool>()).prop_map(|(room, active)| LinkMessage::Recording { room, active }),
        1 => (room, any::<bool>(), id.clone(), 0u64..4).prop_map(|(room, required, by, changed_at_ms)| {
            LinkMessage::E2ee { room, required, by, changed_at_ms }
        }),
    ]
}

/// Junk, or an RTP-shaped packet.
fn packet() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..40),
        (
            any::<u16>(),
            any::<u32>(),
            any::<u32>(),
            proptest::collection::vec(any::<u8>(), 0..40)
        )
            .prop_map(|(seq, timestamp, ssrc, payload)| {
                let mut packet = vec![0x80, 96];
                packet.extend_from_slice(&seq.to_be_bytes());
                packet.extend_from_slice(&timestamp.to_be_bytes());
                packet.extend_from_slice(&ssrc.to_be_bytes());
                packet.extend_from_slice(&payload);
                packet
            }),
    ]
}

fn step() -> impl Strategy<Value = Step> {
    let room = some_room();
    let link = 0..LINKS;
    prop_oneof![
        2 => (room.clone(), 0..IDS.len()).prop_map(|(room, id)| Step::Local { room, id }),
        1 => (0..8usize).prop_map(|nth| Step::LocalLeaves { nth }),
        3 => (room.clone(), link.clone()).prop_map(|(room, link)| Step::Opened { room, link }),
        1 => (room, link.clone()).prop_map(|(room, link)| Step::Closed { room, link }),
        10 => (link.clone(), link_message()).prop_map(|(link, message)| Step::Message { link, message }),
        2 => (link, stream_id(), packet()).prop_map(|(link, stream, packet)| Step::Media { link, stream, packet }),
        1 => (0u64..20_000).prop_map(|ms| Step::Wait { ms }),
    ]
}

/// The shard's cascade books agree with themselves.
fn check_books(shard: &Shard) -> Result<(), TestCaseError> {
    let mut indexed = 0;
    for (name, room) in &shard.rooms {
        prop_assert!(
            !room.participants.is_empty()
                || !room.cascade.peers.is_empty()
                || !room.cascade.remote.is_empty(),
            "room {} kept with nobody using it",
            name
        );
        prop_assert!(room.cascade.remote.len() <= REMOTE_PARTICIPANTS_PER_ROOM_MAX);
        let local: HashSet<_> = room.participants.values().map(|p| &p.id).collect();
        let mut remote_ids = HashSet::new();
        for (key, remote) in &room.cascade.remote {
            prop_assert!(
                room.cascade.peers.contains(&remote.link),
                "{:?} of room {} held for a link that did not open it",
                remote.info.id,
                name
            );
            prop_assert!(
                !local.contains(&remote.info.id),
                "{:?} both local and remote",
                remote.info.id
            );
            prop_assert!(
                remote_ids.insert(&remote.info.id),
                "{:?} twice in room {}",
                remote.info.id,
                name
            );
            for (source, stream) in &remote.streams {
                let entry = shard.cascade_index.remote_streams.get(&(remote.link, stream.id));
                prop_assert!(
                    entry.is_some_and(|(r, k, s)| &**r == name && k == key && s == source),
                    "stream {} of {:?} not indexed as such",
                    stream.id,
                    remote.info.id
                );
                indexed += 1;
            }
        }
    }
    prop_assert_eq!(
        indexed,
        shard.cascade_index.remote_streams.len(),
        "the index names streams no remote participant holds"
    );
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn whatever_peer_bridges_send_the_cascade_books_stay_straight(steps in proptest::collection::vec(step(), 1..120)) {
        let mut now = Instant::now();
        let mut shard = Shard::new(0, "127.0.0.1:40000".parse().unwrap(), Arc::new(RouteTable::default()), 3);
        let mut keys: Vec<ParticipantKey> = Vec::new();
        for step in steps {
            let input = match step {
                Step::Local { room, id } => {
                    let key = ParticipantKey(keys.len() as u64 + 1);
                    keys.push(key);
                    ShardInput::Connect(ConnectRequest {
                        key,
                        room: room_id(room),
                        participant_id: participant(id),
                        display_name: IDS[id].to_owned(),
                        media: Default::default(),
                        moderator: id == 0,
                    })
                }
                Step::LocalLeaves { nth } => match keys.get(nth % keys.len().max(1)) {
                    Some(&key) => ShardInput::Disconnect { key },
                    None => continue,
                },
                Step::Opened { room, link } => ShardInput::Cascade(CascadeInput::PeerOpened { room: room_id(room), link: LinkIndex(link) }),
                Step::Closed { room, link } => ShardInput::Cascade(CascadeInput::PeerClosed { room: room_id(room), link: LinkIndex(link) }),
                Step::Message { link, message } => ShardInput::Cascade(CascadeInput::Message { link: LinkIndex(link), message }),
                Step::Media { link, stream, packet } => ShardInput::Cascade(CascadeInput::Media {
                    link: LinkIndex(link),
                    stream,
                    packet: Bytes::from(packet),
                }),
                Step::Wait { ms } => {
                    now += Duration::from_millis(ms);
                    shard.handle_timeout(now);
                    continue;
                }
            };
            shard.handle_input(now, input);
            let mut outputs = 0;
            while let Some(output) = shard.poll_output() {
                outputs += 1;
                if let ShardOutput::ToLink { link, message } = &output
                    && let Some(room) = message.room()
                {
                    prop_assert!(
                        shard.rooms.get(room).is_some_and(|r| r.cascade.peers.contains(link)),
                        "{:?} about room {} sent to {:?}, which did not open it",
                        message,
                        room,
                        link
                    );
                }
            }
            // A room's worth of announcements to every link, and of messages to every local client.
            prop_assert!(outputs <= 200, "{} outputs for one input", outputs);
            check_books(&shard)?;
        }
    }
}
