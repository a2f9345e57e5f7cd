use super::*;
use proptest::prelude::*;

fn pid(name: &str) -> ParticipantId {
    ParticipantId::new(name).unwrap()
}

fn author(id: &ParticipantId, moderator: bool) -> Author<'_> {
    Author {
        id,
        display_name: "Ann",
        moderator,
    }
}

fn remote_message(from: &str, sent_at_ms: u64, counter: u64) -> ChatMessage {
    let from = pid(from);
    ChatMessage {
        id: ChatMessageId::compose(&from, sent_at_ms, counter),
        from,
        from_name: "Remote".into(),
        sent_at_ms,
        to: None,
        text: format!("message {counter}"),
    }
}

#[test]
fn room_messages_are_kept_with_the_senders_name_and_time_private_ones_are_not() {
    let mut chat = RoomChat::default();
    let ann = pid("ann");
    let message = chat
        .accept(author(&ann, false), "hello".into(), None, true, 1_000, 1)
        .unwrap();
    assert_eq!(message.from, ann);
    assert_eq!(message.from_name, "Ann");
    assert_eq!(message.sent_at_ms, 1_000);
    let private = chat
        .accept(
            author(&ann, false),
            "psst".into(),
            Some(pid("bob")),
            true,
            1_001,
            2,
        )
        .unwrap();
    assert_ne!(private.id, message.id);
    assert_eq!(chat.history().cloned().collect::<Vec<_>>(), vec![message]);
}

#[test]
fn bad_messages_get_clear_errors() {
    let mut chat = RoomChat::default();
    let ann = pid("ann");
    let too_long = "é".repeat(CHAT_TEXT_MAX_BYTES / 2 + 1);
    let err = chat
        .accept(author(&ann, false), too_long, None, true, 0, 1)
        .unwrap_err();
    assert_eq!(
        err,
        ChatError::TooLong {
            bytes: CHAT_TEXT_MAX_BYTES + 2
        }
    );
    assert!(err.to_string().contains(&CHAT_TEXT_MAX_BYTES.to_string()));
    assert_eq!(err.code(), ErrorCode::InvalidField);
    let at_limit = "a".repeat(CHAT_TEXT_MAX_BYTES);
    assert!(
        chat.accept(author(&ann, false), at_limit, None, true, 0, 2)
            .is_ok()
    );
    assert_eq!(
        chat.accept(author(&ann, false), " \n\t".into(), None, true, 0, 3),
        Err(ChatError::Empty)
    );
    assert_eq!(
        chat.accept(author(&ann, false), "hi".into(), Some(pid("ghost")), false, 0, 4),
        Err(ChatError::UnknownRecipient(pid("ghost")))
    );
    assert_eq!(
        chat.accept(author(&ann, false), "hi".into(), Some(ann.clone()), true, 0, 5),
        Err(ChatError::ToSelf)
    );
    assert_eq!(chat.history().len(), 1);
}

#[test]
fn only_a_moderator_deletes_and_the_message_leaves_history() {
    let mut chat = RoomChat::default();
    let ann = pid("ann");
    let first = chat
        .accept(author(&ann, false), "one".into(), None, true, 1, 1)
        .unwrap();
    let second = chat
        .accept(author(&ann, false), "two".into(), None, true, 2, 2)
        .unwrap();
    assert_eq!(
        chat.delete(author(&ann, false), &first.id),
        Err(ChatError::NotModerator)
    );
    assert_eq!(chat.delete(author(&ann, true), &first.id), Ok(()));
    assert_eq!(
        chat.delete(author(&ann, true), &first.id),
        Err(ChatError::UnknownMessage(first.id.clone()))
    );
    assert_eq!(chat.history().cloned().collect::<Vec<_>>(), vec![second.clone()]);
    assert!(chat.forget(&second.id));
    assert!(!chat.forget(&second.id));
    assert_eq!(chat.history().len(), 0);
}

#[test]
fn remote_messages_are_recorded_once_and_in_send_order() {
    let mut chat = RoomChat::default();
    let late = remote_message("bob", 20, 1);
    let early = remote_message("carl", 10, 1);
    assert!(chat.record(late.clone()));
    assert!(chat.record(early.clone()));
    assert!(!chat.record(late.clone()), "a duplicate is not recorded twice");
    let mut private = remote_message("bob", 30, 2);
    private.to = Some(pid("ann"));
    assert!(!chat.record(private));
    assert_eq!(chat.history().cloned().collect::<Vec<_>>(), vec![early, late]);
}

#[test]
fn routing_room_and_private_messages() {
    let (ann, bob, carl, dora) = (pid("ann"), pid("bob"), pid("carl"), pid("dora"));
    // ann (1) and bob (2) are local; carl is behind link 7, dora behind link 8.
    let locals = || [(1u64, &ann), (2u64, &bob)];
    let remotes = || [(7u32, &carl), (8u32, &dora)];
    let peers = || [7u32, 8u32];
    let mut message = remote_message("ann", 1, 1);
    message.from = ann.clone();

    let room = route(&message, Origin::Local(1), locals(), remotes(), peers());
    assert_eq!(
        room,
        Delivery {
            clients: vec![1, 2],
            links: vec![7, 8]
        }
    );
    let arrived = route(
        &message,
        Origin::<u64, u32>::Link(7),
        locals(),
        remotes(),
        peers(),
    );
    assert_eq!(
        arrived,
        Delivery {
            clients: vec![1, 2],
            links: vec![]
        },
        "never relayed to a link"
    );

    message.to = Some(bob.clone());
    let to_local = route(&message, Origin::Local(1), locals(), remotes(), peers());
    assert_eq!(
        to_local,
        Delivery {
            clients: vec![1, 2],
            links: vec![]
        }
    );
    message.to = Some(dora.clone());
    let to_remote = route(&message, Origin::Local(1), locals(), remotes(), peers());
    assert_eq!(
        to_remote,
        Delivery {
            clients: vec![1],
            links: vec![8]
        },
        "only dora's link"
    );
    message.to = Some(bob.clone());
    let from_link = route(
        &message,
        Origin::<u64, u32>::Link(7),
        locals(),
        remotes(),
        peers(),
    );
    assert_eq!(
        from_link,
        Delivery {
            clients: vec![2],
            links: vec![]
        }
    );
    message.to = Some(carl.clone());
    let not_here = route(
        &message,
        Origin::<u64, u32>::Link(8),
        locals(),
        remotes(),
        peers(),
    );
    assert_eq!(
        not_here,
        Delivery {
            clients: vec![],
            links: vec![]
        }
    );
}

proptest! {
    /// Whatever arrives, in whatever order: the history never exceeds its bound, holds no
    /// duplicate, stays in send order, keeps the newest messages, and never holds a deleted one.
    #[test]
    fn history_stays_bounded_ordered_and_without_deleted_messages(
        ops in proptest::collection::vec((0u64..400, 0u8..4, 0u64..5), 1..600),
        capacity in 1usize..40,
    ) {
        let mut chat = RoomChat::new(capacity);
        let mut deleted = std::collections::HashSet::new();
        let mut recorded = std::collections::BTreeSet::new();
        for (sent_at_ms, op, who) in ops {
            let message = remote_message(&format!("p{who}"), sent_at_ms, sent_at_ms % 7);
            if op == 0 {
                if chat.forget(&message.id) {
                    deleted.insert(message.id.clone());
                }
            } else if !deleted.contains(&message.id) && chat.record(message.clone()) {
                recorded.insert((message.sent_at_ms, message.id.clone()));
            }
            let history: Vec<_> = chat.history().collect();
            prop_assert!(history.len() <= capacity);
            for pair in history.windows(2) {
                prop_assert!((pair[0].sent_at_ms, &pair[0].id) < (pair[1].sent_at_ms, &pair[1].id));
            }
            for m in &history {
                prop_assert!(!deleted.contains(&m.id));
            }
        }
        // Without deletes the history is exactly the newest `capacity` messages recorded; with
        // them, it is still made only of recorded, undeleted messages.
        let alive: Vec<_> = recorded
            .iter()
            .filter(|(_, id)| !deleted.contains(id))
            .map(|(_, id)| id.clone())
            .collect();
        let kept: Vec<_> = chat.history().map(|m| m.id.clone()).collect();
        if deleted.is_empty() {
            prop_assert_eq!(&kept[..], &alive[alive.len().saturating_sub(capacity)..]);
        } else {
            prop_assert!(kept.iter().all(|id| alive.contains(id)));
        }
    }
}
