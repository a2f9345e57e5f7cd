use super::*;
use crate::demux::RouteTable;
use crate::shard::{ConnectRequest, ShardInput};
use bridgemesh_proto::ParticipantId;

const LINK: LinkIndex = LinkIndex(7);

fn room() -> RoomId {
    RoomId::new("r").unwrap()
}

fn id(name: &str) -> ParticipantId {
    ParticipantId::new(name).unwrap()
}

fn info(name: &str) -> ParticipantInfo {
    ParticipantInfo {
        id: id(name),
        display_name: name.into(),
        microphone_muted: false,
        camera_muted: false,
        sources: vec![MediaSource::Microphone, MediaSource::Camera],
        hand_raised_at_ms: None,
    }
}

fn shard() -> Shard {
    Shard::new(
        0,
        "127.0.0.1:40000".parse().unwrap(),
        Arc::new(RouteTable::default()),
        16,
    )
}

fn drain(shard: &mut Shard) -> Vec<ShardOutput> {
    std::iter::from_fn(|| shard.poll_output()).collect()
}

fn connect(shard: &mut Shard, now: Instant, key: u64, name: &str) -> Vec<ShardOutput> {
    shard.handle_input(
        now,
        ShardInput::Connect(ConnectRequest {
            key: ParticipantKey(key),
            room: room(),
            participant_id: id(name),
            display_name: name.into(),
            media: Default::default(),
            moderator: false,
        }),
    );
    drain(shard)
}

fn cascade(shard: &mut Shard, now: Instant, input: CascadeInput) -> Vec<ShardOutput> {
    shard.handle_input(now, ShardInput::Cascade(input));
    drain(shard)
}

fn from_link(message: LinkMessage) -> CascadeInput {
    CascadeInput::Message { link: LINK, message }
}

fn to_link(outputs: &[ShardOutput]) -> Vec<&LinkMessage> {
    outputs
        .iter()
        .filter_map(|o| match o {
            ShardOutput::ToLink { link, message } if *link == LINK => Some(message),
            _ => None,
        })
        .collect()
}

fn to_client(outputs: &[ShardOutput], key: u64) -> Vec<&ServerMessage> {
    outputs
        .iter()
        .filter_map(|o| match o {
            ShardOutput::ToClient { key: k, message } if *k == ParticipantKey(key) => Some(message),
            _ => None,
        })
        .collect()
}

/// The link opens the room and announces its participant Bob.
fn open_with_bob(shard: &mut Shard, now: Instant) {
    cascade(
        shard,
        now,
        CascadeInput::PeerOpened {
            room: room(),
            link: LINK,
        },
    );
    cascade(
        shard,
        now,
        from_link(LinkMessage::Participant {
            room: room(),
            participant: info("bob"),
        }),
    );
}

#[test]
fn remote_participants_look_local_and_local_ones_are_announced_to_the_link() {
    let now = Instant::now();
    let mut shard = shard();
    connect(&mut shard, now, 1, "ada");
    // The peer opened the room: it hears of ada.
    let outputs = cascade(
        &mut shard,
        now,
        CascadeInput::PeerOpened {
            room: room(),
            link: LINK,
        },
    );
    assert!(matches!(
        to_link(&outputs).as_slice(),
        [LinkMessage::Participant { participant, .. }] if participant.id == id("ada")
    ));
    // The peer's bob: ada hears he joined.
    let outputs = cascade(
        &mut shard,
        now,
        from_link(LinkMessage::Participant {
            room: room(),
            participant: info("bob"),
        }),
    );
    assert_eq!(
        to_client(&outputs, 1),
        [&ServerMessage::ParticipantJoined {
            participant: info("bob")
        }]
    );
    // A newcomer is welcomed with bob among the others, and announced to the peer.
    let outputs = connect(&mut shard, now, 2, "cy");
    let welcome = to_client(&outputs, 2)
        .into_iter()
        .find_map(|m| match m {
            ServerMessage::Welcome { participants, .. } => Some(participants.clone()),
            _ => None,
        })
        .unwrap();
    let mut names: Vec<_> = welcome.iter().map(|p| p.id.to_string()).collect();
    names.sort();
    assert_eq!(names, ["ada", "bob"]);
    assert!(matches!(
        to_link(&outputs).as_slice(),
        [LinkMessage::Participant { participant, .. }] if participant.id == id("cy")
    ));
    // Bob leaves over the link: both locals hear it, nothing goes back to the link.
    let outputs = cascade(
        &mut shard,
        now,
        from_link(LinkMessage::ParticipantLeft {
            room: room(),
            participant: id("bob"),
        }),
    );
    for key in [1, 2] {
        assert_eq!(
            to_client(&outputs, key),
            [&ServerMessage::ParticipantLeft {
                participant_id: id("bob")
            }]
        );
    }
    assert!(to_link(&outputs).is_empty(), "{outputs:?}");
}

#[test]
fn a_closed_link_takes_its_participants_and_hears_nothing_more() {
    let now = Instant::now();
    let mut shard = shard();
    connect(&mut shard, now, 1, "ada");
    open_with_bob(&mut shard, now);
    cascade(
        &mut shard,
        now,
        from_link(LinkMessage::Stream {
            id: 1,
            room: room(),
            participant: id("bob"),
            source: MediaSource::Camera,
            codec: LinkCodec {
                mime_type: "video/VP8".into(),
                clock_rate: 90_000,
                channels: 0,
                sdp_fmtp_line: String::new(),
            },
            extensions: Vec::new(),
        }),
    );
    let media = || CascadeInput::Media {
        link: LINK,
        stream: 1,
        packet: Bytes::from_static(&[0x80, 0x60, 0, 1, 0, 0, 0, 1, 0, 0, 0, 9, 1, 2, 3]),
    };
    cascade(&mut shard, now, media());
    assert_eq!(
        shard.stats().cascade_rtp_unknown_stream,
        0,
        "an announced stream is known"
    );
    let outputs = cascade(
        &mut shard,
        now,
        CascadeInput::PeerClosed {
            room: room(),
            link: LINK,
        },
    );
    assert_eq!(
        to_client(&outputs, 1),
        [&ServerMessage::ParticipantLeft {
            participant_id: id("bob")
        }]
    );
    let outputs = connect(&mut shard, now, 2, "cy");
    assert!(
        to_link(&outputs).is_empty(),
        "announced to a closed link: {outputs:?}"
    );
    // Media of the stream the link announced before it closed is dropped, not forwarded.
    cascade(&mut shard, now, media());
    assert_eq!(shard.stats().cascade_rtp_unknown_stream, 1);
}

#[test]
fn a_room_held_only_by_the_cascade_is_forgotten_when_the_link_closes() {
    let now = Instant::now();
    let mut shard = shard();
    open_with_bob(&mut shard, now);
    assert_eq!(shard.stats().rooms, 1);
    cascade(
        &mut shard,
        now,
        CascadeInput::PeerClosed {
            room: room(),
            link: LINK,
        },
    );
    assert_eq!(shard.stats().rooms, 0);
}

#[test]
fn an_announcement_naming_a_local_participant_is_ignored() {
    let now = Instant::now();
    let mut shard = shard();
    connect(&mut shard, now, 1, "ada");
    connect(&mut shard, now, 2, "bob");
    cascade(
        &mut shard,
        now,
        CascadeInput::PeerOpened {
            room: room(),
            link: LINK,
        },
    );
    let outputs = cascade(
        &mut shard,
        now,
        from_link(LinkMessage::Participant {
            room: room(),
            participant: info("bob"),
        }),
    );
    assert!(to_client(&outputs, 1).is_empty(), "{outputs:?}");
}

fn camera_of(stream: u32, who: &str) -> LinkMessage {
    LinkMessage::Stream {
        id: stream,
        room: room(),
        participant: id(who),
        source: MediaSource::Camera,
        codec: LinkCodec {
            mime_type: "video/VP8".into(),
            clock_rate: 90_000,
            channels: 0,
            sdp_fmtp_line: String::new(),
        },
        extensions: Vec::new(),
    }
}

/// The remote streams as the shard's books hold them: (holder, stream id).
fn remote_streams(shard: &Shard) -> Vec<(String, u32)> {
    let room = &shard.rooms[&room()];
    let mut held: Vec<_> = room
        .cascade
        .remote
        .values()
        .flat_map(|p| p.streams.values().map(|s| (p.info.id.to_string(), s.id)))
        .collect();
    held.sort();
    held
}

// Found by `property_tests`.
#[test]
fn a_link_announcing_into_a_room_it_did_not_open_is_ignored() {
    let now = Instant::now();
    let mut shard = shard();
    connect(&mut shard, now, 1, "ada");
    let outputs = cascade(
        &mut shard,
        now,
        from_link(LinkMessage::Participant {
            room: room(),
            participant: info("bob"),
        }),
    );
    assert!(to_client(&outputs, 1).is_empty(), "{outputs:?}");
    assert!(shard.rooms[&room()].cascade.remote.is_empty());
}

// Found by `property_tests`.
#[test]
fn a_stream_id_announced_again_for_someone_else_ends_the_first_stream() {
    let now = Instant::now();
    let mut shard = shard();
    open_with_bob(&mut shard, now);
    cascade(
        &mut shard,
        now,
        from_link(LinkMessage::Participant {
            room: room(),
            participant: info("cy"),
        }),
    );
    cascade(&mut shard, now, from_link(camera_of(1, "bob")));
    cascade(&mut shard, now, from_link(camera_of(1, "cy")));
    assert_eq!(remote_streams(&shard), [("cy".to_owned(), 1)]);
    assert_eq!(shard.cascade_index.remote_streams.len(), 1);
}

// Found by `property_tests`.
#[test]
fn a_participant_announced_by_another_link_keeps_none_of_the_first_links_streams() {
    let now = Instant::now();
    let mut shard = shard();
    open_with_bob(&mut shard, now);
    cascade(&mut shard, now, from_link(camera_of(1, "bob")));
    let other = LinkIndex(8);
    cascade(
        &mut shard,
        now,
        CascadeInput::PeerOpened {
            room: room(),
            link: other,
        },
    );
    cascade(
        &mut shard,
        now,
        CascadeInput::Message {
            link: other,
            message: LinkMessage::Participant {
                room: room(),
                participant: info("bob"),
            },
        },
    );
    assert!(remote_streams(&shard).is_empty());
    assert!(shard.cascade_index.remote_streams.is_empty());
    // Media the first bridge still sends for it is dropped.
    cascade(
        &mut shard,
        now,
        CascadeInput::Media {
            link: LINK,
            stream: 1,
            packet: Bytes::from_static(&[0x80, 0x60, 0, 1, 0, 0, 0, 1, 0, 0, 0, 9, 1, 2, 3]),
        },
    );
    assert_eq!(shard.stats().cascade_rtp_unknown_stream, 1);
}

#[test]
fn stream_ids_name_their_shard() {
    let mut index = CascadeIndex::default();
    let id = index.allocate_stream(5);
    assert_eq!(shard_of_stream(id), 5);
    assert_ne!(index.allocate_stream(5), id);
}
