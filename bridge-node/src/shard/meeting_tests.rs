//! Chat, raised hands and reactions through the shard: who is told what, locally and over links.

use super::test_support::*;
use super::*;
use bridgemesh_proto::meeting::{ChatMessage, Reaction};

const LINK: LinkIndex = LinkIndex(9);

fn to(outputs: &[ShardOutput], key: u64) -> Vec<&ServerMessage> {
    outputs
        .iter()
        .filter_map(|o| match o {
            ShardOutput::ToClient { key: k, message } if *k == ParticipantKey(key) => Some(message),
            _ => None,
        })
        .collect()
}

fn chats(outputs: &[ShardOutput], key: u64) -> Vec<ChatMessage> {
    to(outputs, key)
        .into_iter()
        .filter_map(|m| match m {
            ServerMessage::Chat { message } => Some(message.clone()),
            _ => None,
        })
        .collect()
}

fn links(outputs: &[ShardOutput]) -> Vec<(LinkIndex, &LinkMessage)> {
    outputs
        .iter()
        .filter_map(|o| match o {
            ShardOutput::ToLink { link, message } => Some((*link, message)),
            _ => None,
        })
        .collect()
}

fn error_code(outputs: &[ShardOutput], key: u64) -> Option<ErrorCode> {
    to(outputs, key).into_iter().find_map(|m| match m {
        ServerMessage::Error { code, .. } => Some(*code),
        _ => None,
    })
}

fn chat(text: &str, target: Option<&str>) -> ClientMessage {
    ClientMessage::Chat {
        text: text.into(),
        to: target.map(id),
    }
}

/// ada (1, moderator), bob (2), cy (3) in room "r".
fn three() -> (Shard, Instant) {
    let now = Instant::now();
    let mut shard = shard();
    connect(&mut shard, now, 1, "ada", true);
    connect(&mut shard, now, 2, "bob", false);
    connect(&mut shard, now, 3, "cy", false);
    (shard, now)
}

#[test]
fn room_chat_reaches_everyone_with_server_name_and_time_and_late_joiners_get_history() {
    let (mut shard, now) = three();
    let out = send(&mut shard, now, 2, chat("hello all", None));
    for key in [1, 2, 3] {
        let got = chats(&out, key);
        assert_eq!(got.len(), 1, "participant {key}");
        assert_eq!(got[0].from, id("bob"));
        assert_eq!(got[0].from_name, "BOB");
        assert_eq!(got[0].text, "hello all");
        assert!(got[0].sent_at_ms > 1_600_000_000_000, "a Unix time in ms");
    }
    send(&mut shard, now, 3, chat("second", None));
    let out = connect(&mut shard, now, 4, "dee", false);
    let history = to(&out, 4)
        .into_iter()
        .find_map(|m| match m {
            ServerMessage::ChatHistory { messages } => Some(messages.clone()),
            _ => None,
        })
        .expect("a late joiner gets the history");
    let texts: Vec<_> = history.iter().map(|m| m.text.as_str()).collect();
    assert_eq!(texts, ["hello all", "second"]);
    assert_eq!(shard.stats().meeting.chat_accepted, 2);
    // After welcome, not before it.
    let order: Vec<_> = to(&out, 4)
        .into_iter()
        .map(|m| matches!(m, ServerMessage::Welcome { .. }))
        .collect();
    assert_eq!(order.first(), Some(&true));
}

#[test]
fn a_private_message_reaches_only_its_target_and_its_sender() {
    let (mut shard, now) = three();
    let out = send(&mut shard, now, 2, chat("just you", Some("cy")));
    assert_eq!(chats(&out, 2).len(), 1);
    assert_eq!(chats(&out, 3)[0].to, Some(id("cy")));
    assert!(chats(&out, 1).is_empty(), "not even a moderator reads it");
    assert!(links(&out).is_empty());
    let out = connect(&mut shard, now, 4, "dee", false);
    assert!(
        !to(&out, 4)
            .iter()
            .any(|m| matches!(m, ServerMessage::ChatHistory { .. })),
        "private messages are not history"
    );
    let out = send(&mut shard, now, 2, chat("hi", Some("nobody")));
    assert_eq!(error_code(&out, 2), Some(ErrorCode::NotFound));
    assert!(chats(&out, 3).is_empty());
}

#[test]
fn too_long_and_empty_messages_are_refused_to_the_sender_only() {
    let (mut shard, now) = three();
    let long = "x".repeat(bridgemesh_proto::meeting::CHAT_TEXT_MAX_BYTES + 1);
    let out = send(&mut shard, now, 2, chat(&long, None));
    assert_eq!(error_code(&out, 2), Some(ErrorCode::InvalidField));
    let text = to(&out, 2)
        .into_iter()
        .find_map(|m| match m {
            ServerMessage::Error { message, .. } => Some(message.clone()),
            _ => None,
        })
        .unwrap();
    assert!(text.contains("at most 2000 bytes"), "{text}");
    assert!(chats(&out, 1).is_empty() && chats(&out, 3).is_empty());
    assert_eq!(shard.stats().meeting.chat_refused, 1);
    assert_eq!(
        error_code(&send(&mut shard, now, 2, chat("  ", None)), 2),
        Some(ErrorCode::InvalidField)
    );
}

#[test]
fn a_moderator_deletes_a_message_for_everyone_and_from_history() {
    let (mut shard, now) = three();
    let out = send(&mut shard, now, 2, chat("oops", None));
    let message = chats(&out, 2).remove(0);
    let out = send(
        &mut shard,
        now,
        3,
        ClientMessage::DeleteChat {
            id: message.id.clone(),
        },
    );
    assert_eq!(error_code(&out, 3), Some(ErrorCode::Forbidden));
    let out = send(
        &mut shard,
        now,
        1,
        ClientMessage::DeleteChat {
            id: message.id.clone(),
        },
    );
    for key in [1, 2, 3] {
        assert!(
            to(&out, key)
                .iter()
                .any(|m| matches!(m, ServerMessage::ChatDeleted { id, by } if *id == message.id && *by == id_of("ada"))),
            "participant {key}"
        );
    }
    let out = connect(&mut shard, now, 4, "dee", false);
    assert!(
        !to(&out, 4)
            .iter()
            .any(|m| matches!(m, ServerMessage::ChatHistory { .. }))
    );
}

fn id_of(name: &str) -> ParticipantId {
    id(name)
}

fn hand_of(outputs: &[ShardOutput], key: u64, whose: &str) -> Option<Option<u64>> {
    to(outputs, key).into_iter().rev().find_map(|m| match m {
        ServerMessage::ParticipantUpdated { participant } if participant.id == id(whose) => {
            Some(participant.hand_raised_at_ms)
        }
        _ => None,
    })
}

#[test]
fn raised_hands_are_seen_by_all_in_order_and_lowered_by_self_or_a_moderator() {
    let (mut shard, now) = three();
    let out = send(&mut shard, now, 3, ClientMessage::RaiseHand);
    let cy_at = hand_of(&out, 1, "cy").unwrap().expect("raised");
    assert_eq!(
        hand_of(&out, 3, "cy"),
        Some(Some(cy_at)),
        "the raiser sees it too"
    );
    let later = now + Duration::from_millis(5);
    let out = send(&mut shard, later, 2, ClientMessage::RaiseHand);
    let bob_at = hand_of(&out, 1, "bob").unwrap().unwrap();
    assert!(bob_at > cy_at, "bob raised after cy");
    // Raising again keeps the place.
    let out = send(
        &mut shard,
        later + Duration::from_millis(5),
        3,
        ClientMessage::RaiseHand,
    );
    assert_eq!(hand_of(&out, 1, "cy"), None);
    // A late joiner sees both hands in welcome.
    let out = connect(&mut shard, later, 4, "dee", false);
    let welcome = to(&out, 4)
        .into_iter()
        .find_map(|m| match m {
            ServerMessage::Welcome { participants, .. } => Some(participants.clone()),
            _ => None,
        })
        .unwrap();
    let mut raised: Vec<_> = welcome
        .iter()
        .filter_map(|p| p.hand_raised_at_ms.map(|at| (at, p.id.clone())))
        .collect();
    raised.sort();
    assert_eq!(raised, vec![(cy_at, id("cy")), (bob_at, id("bob"))]);
    // Only a moderator lowers another's hand.
    let out = send(
        &mut shard,
        later,
        2,
        ClientMessage::LowerHand {
            participant: Some(id("cy")),
        },
    );
    assert_eq!(error_code(&out, 2), Some(ErrorCode::Forbidden));
    let out = send(
        &mut shard,
        later,
        1,
        ClientMessage::LowerHand {
            participant: Some(id("cy")),
        },
    );
    assert_eq!(hand_of(&out, 2, "cy"), Some(None));
    let out = send(
        &mut shard,
        later,
        2,
        ClientMessage::LowerHand { participant: None },
    );
    assert_eq!(hand_of(&out, 3, "bob"), Some(None));
}

#[test]
fn reactions_are_broadcast_and_not_kept() {
    let (mut shard, now) = three();
    let out = send(
        &mut shard,
        now,
        2,
        ClientMessage::React {
            reaction: Reaction::Clap,
        },
    );
    for key in [1, 2, 3] {
        assert!(to(&out, key).iter().any(|m| matches!(
            m,
            ServerMessage::Reaction { participant_id, reaction: Reaction::Clap } if *participant_id == id("bob")
        )));
    }
    let out = connect(&mut shard, now, 4, "dee", false);
    assert!(
        !to(&out, 4)
            .iter()
            .any(|m| matches!(m, ServerMessage::Reaction { .. }))
    );
}

fn remote_info(name: &str) -> bridgemesh_proto::signaling::ParticipantInfo {
    bridgemesh_proto::signaling::ParticipantInfo {
        id: id(name),
        display_name: name.into(),
        microphone_muted: false,
        camera_muted: false,
        sources: Vec::new(),
        hand_raised_at_ms: None,
    }
}

fn from_link(shard: &mut Shard, now: Instant, message: LinkMessage) -> Vec<ShardOutput> {
    shard.handle_input(
        now,
        ShardInput::Cascade(CascadeInput::Message { link: LINK, message }),
    );
    drain(shard)
}

#[test]
fn chat_crosses_links_history_goes_to_a_new_peer_and_private_messages_only_where_the_target_is() {
    let (mut shard, now) = three();
    send(&mut shard, now, 2, chat("before the link", None));
    shard.handle_input(
        now,
        ShardInput::Cascade(CascadeInput::PeerOpened {
            room: room(),
            link: LINK,
        }),
    );
    let out = drain(&mut shard);
    let history: Vec<_> = links(&out)
        .into_iter()
        .filter_map(|(_, m)| match m {
            LinkMessage::Chat { message, .. } => Some(message.text.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(history, ["before the link"]);
    from_link(
        &mut shard,
        now,
        LinkMessage::Participant {
            room: room(),
            participant: remote_info("zed"),
        },
    );

    // A room message goes out on the link; a private one to zed too, but not one to cy.
    let out = send(&mut shard, now, 2, chat("room", None));
    assert_eq!(links(&out).len(), 1);
    let out = send(&mut shard, now, 2, chat("to zed", Some("zed")));
    assert_eq!(links(&out).len(), 1);
    assert!(chats(&out, 1).is_empty());
    let out = send(&mut shard, now, 2, chat("to cy", Some("cy")));
    assert!(links(&out).is_empty());

    // From the link: a room message reaches everyone once, never back out on a link.
    let zed_said = ChatMessage {
        id: bridgemesh_proto::meeting::ChatMessageId::compose(&id("zed"), 5, 1),
        from: id("zed"),
        from_name: "Zed".into(),
        sent_at_ms: 5,
        to: None,
        text: "from afar".into(),
    };
    let out = from_link(
        &mut shard,
        now,
        LinkMessage::Chat {
            room: room(),
            message: zed_said.clone(),
        },
    );
    for key in [1, 2, 3] {
        assert_eq!(chats(&out, key), vec![zed_said.clone()]);
    }
    assert!(links(&out).is_empty());
    let again = from_link(
        &mut shard,
        now,
        LinkMessage::Chat {
            room: room(),
            message: zed_said.clone(),
        },
    );
    assert!(chats(&again, 1).is_empty(), "a duplicate is not shown twice");
    // Kept in order: zed's message was sent first.
    let out = connect(&mut shard, now, 4, "dee", false);
    let history = to(&out, 4)
        .into_iter()
        .find_map(|m| match m {
            ServerMessage::ChatHistory { messages } => Some(messages.clone()),
            _ => None,
        })
        .unwrap();
    assert_eq!(history.first(), Some(&zed_said));
    // A private message from the link reaches its target only.
    let mut private = zed_said.clone();
    private.id = bridgemesh_proto::meeting::ChatMessageId::compose(&id("zed"), 6, 2);
    private.to = Some(id("cy"));
    let out = from_link(
        &mut shard,
        now,
        LinkMessage::Chat {
            room: room(),
            message: private,
        },
    );
    assert_eq!(chats(&out, 3).len(), 1);
    assert!(chats(&out, 1).is_empty() && chats(&out, 2).is_empty());
    // A delete from the link reaches everyone and leaves history.
    let out = from_link(
        &mut shard,
        now,
        LinkMessage::ChatDeleted {
            room: room(),
            id: zed_said.id.clone(),
            by: id("zed"),
        },
    );
    assert!(
        to(&out, 1)
            .iter()
            .any(|m| matches!(m, ServerMessage::ChatDeleted { .. }))
    );
    // A moderator here lowers zed's hand through zed's bridge.
    let out = send(
        &mut shard,
        now,
        1,
        ClientMessage::LowerHand {
            participant: Some(id("zed")),
        },
    );
    assert!(links(&out).iter().any(|(link, m)| *link == LINK
        && matches!(m, LinkMessage::LowerHand { participant, .. } if *participant == id("zed"))));
}
