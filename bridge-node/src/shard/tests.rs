use super::*;

fn shard() -> Shard {
    Shard::new(
        0,
        "127.0.0.1:40000".parse().unwrap(),
        Arc::new(RouteTable::default()),
        16,
    )
}

fn room(name: &str) -> RoomId {
    RoomId::new(name).unwrap()
}

fn id(name: &str) -> ParticipantId {
    ParticipantId::new(name).unwrap()
}

fn drain(shard: &mut Shard) -> Vec<ShardOutput> {
    std::iter::from_fn(|| shard.poll_output()).collect()
}

fn connect(shard: &mut Shard, now: Instant, key: u64, room_name: &str, participant: &str) {
    shard.handle_input(
        now,
        ShardInput::Connect(ConnectRequest {
            key: ParticipantKey(key),
            room: room(room_name),
            participant_id: id(participant),
            display_name: participant.to_owned(),
            media: Default::default(),
            moderator: false,
        }),
    );
}

/// Signaling messages the outputs carry for `key`, in order.
fn messages_to(outputs: &[ShardOutput], key: u64) -> Vec<&ServerMessage> {
    outputs
        .iter()
        .filter_map(|o| match o {
            ShardOutput::ToClient { key: k, message } if *k == ParticipantKey(key) => Some(message),
            _ => None,
        })
        .collect()
}

fn closed(outputs: &[ShardOutput], key: u64) -> bool {
    outputs
        .iter()
        .any(|o| matches!(o, ShardOutput::CloseClient { key: k } if *k == ParticipantKey(key)))
}

fn left_events(outputs: &[ShardOutput]) -> Vec<(RoomId, ParticipantId)> {
    outputs
        .iter()
        .filter_map(|o| match o {
            ShardOutput::Event(BridgeEvent::ParticipantLeft {
                room, participant, ..
            }) => Some((room.clone(), participant.clone())),
            _ => None,
        })
        .collect()
}

/// For each `ParticipantLeft` event: the participant, and whether its session is over for good.
fn left_for_good(outputs: &[ShardOutput]) -> Vec<(ParticipantId, bool)> {
    outputs
        .iter()
        .filter_map(|o| match o {
            ShardOutput::Event(BridgeEvent::ParticipantLeft {
                participant, over, ..
            }) => Some((participant.clone(), *over)),
            _ => None,
        })
        .collect()
}

fn welcomed(outputs: &[ShardOutput], key: u64) -> bool {
    messages_to(outputs, key)
        .iter()
        .any(|m| matches!(m, ServerMessage::Welcome { .. }))
}

/// Ada (1), Bob (2) and Cy (3) in room "r"; Dee (4) in room "other" on the same shard.
fn populated() -> (Shard, Instant) {
    let now = Instant::now();
    let mut shard = shard();
    connect(&mut shard, now, 1, "r", "ada");
    connect(&mut shard, now, 2, "r", "bob");
    connect(&mut shard, now, 3, "r", "cy");
    connect(&mut shard, now, 4, "other", "dee");
    let outputs = drain(&mut shard);
    assert!((1..=4).all(|key| welcomed(&outputs, key)));
    assert_eq!(shard.stats().participants, 4);
    (shard, now)
}

fn moderate(shard: &mut Shard, now: Instant, action: ModerationAction) -> Vec<ShardOutput> {
    shard.handle_input(now, ShardInput::Moderation(action));
    drain(shard)
}

/// Bob (participant 2 of room `r`) is gone: his session closed, the rest of `r` told, room
/// `s` (participant 4) untouched, control told.
fn assert_bob_removed(shard: &Shard, outputs: &[ShardOutput]) {
    assert!(closed(outputs, 2));
    for other in [1, 3] {
        assert!(
            messages_to(outputs, other).contains(&&ServerMessage::ParticipantLeft {
                participant_id: id("bob")
            }),
            "participant {other} was not told bob left"
        );
        assert!(!closed(outputs, other));
    }
    assert!(messages_to(outputs, 4).is_empty() && !closed(outputs, 4));
    assert_eq!(left_events(outputs), [(room("r"), id("bob"))]);
    assert_eq!(shard.stats().participants, 3);
}

#[test]
fn kick_says_bye_kicked_closes_the_session_and_tells_the_room() {
    let (mut shard, now) = populated();
    let outputs = moderate(
        &mut shard,
        now,
        ModerationAction::Kick {
            room: room("r"),
            participant: id("bob"),
        },
    );
    assert_eq!(
        messages_to(&outputs, 2),
        [&ServerMessage::Bye {
            reason: ByeReason::Kicked
        }]
    );
    assert_bob_removed(&shard, &outputs);
}

#[test]
fn a_kicked_participant_cannot_connect_again() {
    let (mut shard, now) = populated();
    moderate(
        &mut shard,
        now,
        ModerationAction::Kick {
            room: room("r"),
            participant: id("bob"),
        },
    );
    // A ticket verified just before the kick, whose connect arrives after it.
    connect(&mut shard, now, 5, "r", "bob");
    let outputs = drain(&mut shard);
    assert!(!welcomed(&outputs, 5));
    assert!(matches!(
        messages_to(&outputs, 5).as_slice(),
        [
            ServerMessage::Error { code: ErrorCode::TicketRejected, message },
            ServerMessage::Bye { reason: ByeReason::Kicked },
        ] if message.contains("removed")
    ));
    assert!(closed(&outputs, 5));
    assert!(
        messages_to(&outputs, 1).is_empty(),
        "the room heard of a refused participant"
    );
    assert_eq!(shard.stats().participants, 3);
}

#[test]
fn a_kick_before_connecting_refuses_the_connect() {
    let now = Instant::now();
    let mut shard = shard();
    let outputs = moderate(
        &mut shard,
        now,
        ModerationAction::Kick {
            room: room("r"),
            participant: id("eve"),
        },
    );
    assert!(outputs.is_empty(), "{outputs:?}");
    connect(&mut shard, now, 1, "r", "eve");
    connect(&mut shard, now, 2, "r", "fay");
    let outputs = drain(&mut shard);
    assert!(!welcomed(&outputs, 1) && closed(&outputs, 1));
    assert!(welcomed(&outputs, 2));
}

#[test]
fn move_says_bye_moved_and_the_participant_may_connect_again() {
    let (mut shard, now) = populated();
    let outputs = moderate(
        &mut shard,
        now,
        ModerationAction::Move {
            room: room("r"),
            participant: id("bob"),
        },
    );
    assert_eq!(
        messages_to(&outputs, 2),
        [&ServerMessage::Bye {
            reason: ByeReason::Moved
        }]
    );
    assert_bob_removed(&shard, &outputs);
    // Moved, not banned: placed here again, it comes back with a fresh ticket and is welcomed.
    connect(&mut shard, now, 5, "r", "bob");
    let outputs = drain(&mut shard);
    assert!(welcomed(&outputs, 5) && !closed(&outputs, 5));
    assert_eq!(shard.stats().participants, 4);
}

#[test]
fn moving_a_participant_the_shard_does_not_host_changes_nothing() {
    let (mut shard, now) = populated();
    let outputs = moderate(
        &mut shard,
        now,
        ModerationAction::Move {
            room: room("other"),
            participant: id("bob"),
        },
    );
    assert!(outputs.is_empty(), "{outputs:?}");
    assert_eq!(shard.stats().participants, 4);
}

#[test]
fn mute_all_reaches_everyone_in_the_room_but_the_requester() {
    let (mut shard, now) = populated();
    let outputs = moderate(
        &mut shard,
        now,
        ModerationAction::RequestMuteAll {
            room: room("r"),
            by: id("ada"),
        },
    );
    let requested = ServerMessage::MuteRequested { by: id("ada") };
    assert_eq!(messages_to(&outputs, 2), [&requested]);
    assert_eq!(messages_to(&outputs, 3), [&requested]);
    assert!(messages_to(&outputs, 1).is_empty());
    assert!(messages_to(&outputs, 4).is_empty());
    assert!((1..=4).all(|key| !closed(&outputs, key)));
    assert_eq!(shard.stats().participants, 4);
}

#[test]
fn end_room_says_bye_meeting_ended_to_everyone_and_tears_the_room_down() {
    let (mut shard, now) = populated();
    let outputs = moderate(&mut shard, now, ModerationAction::EndRoom { room: room("r") });
    let bye = ServerMessage::Bye {
        reason: ByeReason::MeetingEnded,
    };
    for key in 1..=3 {
        assert_eq!(messages_to(&outputs, key), [&bye], "participant {key}");
        assert!(closed(&outputs, key));
    }
    assert!(messages_to(&outputs, 4).is_empty() && !closed(&outputs, 4));
    let mut left = left_events(&outputs);
    left.sort();
    assert_eq!(
        left,
        [
            (room("r"), id("ada")),
            (room("r"), id("bob")),
            (room("r"), id("cy"))
        ]
    );
    let stats = shard.stats();
    assert_eq!((stats.rooms, stats.participants), (1, 1));
    // The room can start again, as a new meeting.
    connect(&mut shard, now, 5, "r", "gus");
    let outputs = drain(&mut shard);
    assert!(matches!(
        messages_to(&outputs, 5).first(),
        Some(ServerMessage::Welcome { participants, .. }) if participants.is_empty()
    ));
}

#[test]
fn a_mute_is_told_to_the_room_only_when_it_changes_something() {
    let (mut shard, now) = populated();
    let mute = |microphone| ShardInput::Client {
        key: ParticipantKey(1),
        message: ClientMessage::Mute {
            microphone,
            camera: false,
        },
    };
    let updates_to_bob = |outputs: &[ShardOutput]| {
        messages_to(outputs, 2)
            .iter()
            .filter(|m| matches!(m, ServerMessage::ParticipantUpdated { .. }))
            .count()
    };
    // Ada is unmuted: saying so again changes nothing.
    for _ in 0..100 {
        shard.handle_input(now, mute(false));
    }
    assert_eq!(updates_to_bob(&drain(&mut shard)), 0);
    shard.handle_input(now, mute(true));
    for _ in 0..100 {
        shard.handle_input(now, mute(true));
    }
    assert_eq!(updates_to_bob(&drain(&mut shard)), 1);
}

/// Only a session that is over for good (kicked, left, meeting ended) withdraws what was issued
/// to the participant (its TURN credentials); after a drop or a replacement it comes back under
/// the same id, with credentials that may predate the drop's report.
#[test]
fn a_session_is_over_for_good_when_kicked_or_left_not_when_dropped_or_replaced() {
    let (mut shard, now) = populated();
    let kick = ModerationAction::Kick {
        room: room("r"),
        participant: id("bob"),
    };
    assert_eq!(
        left_for_good(&moderate(&mut shard, now, kick)),
        [(id("bob"), true)]
    );
    shard.handle_input(
        now,
        ShardInput::Client {
            key: ParticipantKey(1),
            message: ClientMessage::Leave,
        },
    );
    assert_eq!(left_for_good(&drain(&mut shard)), [(id("ada"), true)]);
    connect(&mut shard, now, 5, "r", "cy");
    assert_eq!(left_for_good(&drain(&mut shard)), [(id("cy"), false)], "replaced");
    shard.handle_input(
        now,
        ShardInput::Disconnect {
            key: ParticipantKey(5),
        },
    );
    assert_eq!(left_for_good(&drain(&mut shard)), [(id("cy"), false)], "dropped");
    let end = ModerationAction::EndRoom { room: room("other") };
    assert_eq!(
        left_for_good(&moderate(&mut shard, now, end)),
        [(id("dee"), true)]
    );
}
