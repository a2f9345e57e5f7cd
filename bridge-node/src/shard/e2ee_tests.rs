//! The room's end-to-end encryption flag through the shard: who may set it, who is told, late
//! joiners, and links (both directions, and bridges agreeing whatever order changes arrive in).

use super::test_support::*;
use super::*;

const LINK: LinkIndex = LinkIndex(4);

fn set(shard: &mut Shard, now: Instant, key: u64, required: bool) -> Vec<ShardOutput> {
    shard.handle_input(
        now,
        ShardInput::Client {
            key: ParticipantKey(key),
            message: ClientMessage::SetE2ee { required },
        },
    );
    drain(shard)
}

fn from_link(shard: &mut Shard, now: Instant, message: LinkMessage) -> Vec<ShardOutput> {
    shard.handle_input(
        now,
        ShardInput::Cascade(CascadeInput::Message { link: LINK, message }),
    );
    drain(shard)
}

fn open_link(shard: &mut Shard, now: Instant) -> Vec<ShardOutput> {
    shard.handle_input(
        now,
        ShardInput::Cascade(CascadeInput::PeerOpened {
            room: room(),
            link: LINK,
        }),
    );
    drain(shard)
}

/// The e2ee messages `key` was sent: (required, by).
fn told(outputs: &[ShardOutput], key: u64) -> Vec<(bool, ParticipantId)> {
    outputs
        .iter()
        .filter_map(|o| match o {
            ShardOutput::ToClient {
                key: k,
                message: ServerMessage::E2ee { required, by, .. },
            } if *k == ParticipantKey(key) => Some((*required, by.clone())),
            _ => None,
        })
        .collect()
}

fn link_flags(outputs: &[ShardOutput]) -> Vec<(bool, ParticipantId, u64)> {
    outputs
        .iter()
        .filter_map(|o| match o {
            ShardOutput::ToLink {
                message:
                    LinkMessage::E2ee {
                        required,
                        by,
                        changed_at_ms,
                        ..
                    },
                ..
            } => Some((*required, by.clone(), *changed_at_ms)),
            _ => None,
        })
        .collect()
}

fn error_code(outputs: &[ShardOutput], key: u64) -> Option<ErrorCode> {
    outputs.iter().find_map(|o| match o {
        ShardOutput::ToClient {
            key: k,
            message: ServerMessage::Error { code, .. },
        } if *k == ParticipantKey(key) => Some(*code),
        _ => None,
    })
}

fn flag(room: &Room) -> Option<bool> {
    room.e2ee.as_ref().map(|f| f.required)
}

fn link_flag(required: bool, by: &str, changed_at_ms: u64) -> LinkMessage {
    LinkMessage::E2ee {
        room: room(),
        required,
        by: id(by),
        changed_at_ms,
    }
}

#[test]
fn only_a_moderator_sets_the_flag_and_everyone_and_late_joiners_are_told() {
    let now = Instant::now();
    let mut shard = shard();
    let out = connect(&mut shard, now, 1, "ada", true);
    assert!(told(&out, 1).is_empty(), "no flag until a moderator sets it");
    connect(&mut shard, now, 2, "bob", false);

    let out = set(&mut shard, now, 2, true);
    assert_eq!(error_code(&out, 2), Some(ErrorCode::Forbidden));
    assert!(told(&out, 1).is_empty() && told(&out, 2).is_empty());
    assert_eq!(flag(&shard.rooms[&room()]), None);

    let out = set(&mut shard, now, 1, true);
    for key in [1, 2] {
        assert_eq!(told(&out, key), [(true, id("ada"))], "participant {key}");
    }
    assert!(shard.rooms[&room()].e2ee_required());
    // Control's admin view hears it with every participant's media state.
    let reported: Vec<_> = out
        .iter()
        .filter_map(|o| match o {
            ShardOutput::Event(BridgeEvent::ParticipantMedia(media)) => {
                Some((media.participant.clone(), media.e2ee))
            }
            _ => None,
        })
        .collect();
    assert_eq!(reported, [(id("ada"), true), (id("bob"), true)]);

    let out = connect(&mut shard, now, 3, "cy", false);
    assert_eq!(told(&out, 3), [(true, id("ada"))], "a late joiner is told");
    let position = |pred: &dyn Fn(&ServerMessage) -> bool| {
        out.iter()
            .position(|o| matches!(o, ShardOutput::ToClient { key, message } if *key == ParticipantKey(3) && pred(message)))
            .unwrap()
    };
    let welcome = position(&|m| matches!(m, ServerMessage::Welcome { .. }));
    let e2ee = position(&|m| matches!(m, ServerMessage::E2ee { .. }));
    let offer = out.iter().position(|o| {
        matches!(o, ShardOutput::ToClient { key, message: ServerMessage::Offer { .. } } if *key == ParticipantKey(3))
    });
    assert!(welcome < e2ee, "after welcome");
    assert!(
        offer.is_none_or(|offer| e2ee < offer),
        "before any media is negotiated"
    );

    // Setting it again changes nothing; the asker alone hears the state.
    let out = set(&mut shard, now, 1, true);
    assert_eq!(told(&out, 1).len(), 1);
    assert!(told(&out, 2).is_empty());

    let out = set(&mut shard, now, 1, false);
    for key in [1, 2, 3] {
        assert_eq!(told(&out, key), [(false, id("ada"))], "participant {key}");
    }
    assert!(!shard.rooms[&room()].e2ee_required());
}

#[test]
fn the_flag_crosses_links_and_a_new_peer_hears_it() {
    let now = Instant::now();
    let mut shard = shard();
    connect(&mut shard, now, 1, "ada", true);
    connect(&mut shard, now, 2, "bob", false);
    let out = open_link(&mut shard, now);
    assert!(
        link_flags(&out).is_empty(),
        "nothing to tell while it was never set"
    );

    let out = set(&mut shard, now, 1, true);
    let sent = link_flags(&out);
    assert_eq!(sent.len(), 1);
    assert_eq!((sent[0].0, &sent[0].1), (true, &id("ada")));
    let set_at = sent[0].2;

    // A moderator on the far side turns it off later: both local pages are told, nothing is sent back.
    let out = from_link(&mut shard, now, link_flag(false, "zed", set_at + 5));
    assert_eq!(told(&out, 1), [(false, id("zed"))]);
    assert_eq!(told(&out, 2), [(false, id("zed"))]);
    assert!(link_flags(&out).is_empty());
    assert_eq!(flag(&shard.rooms[&room()]), Some(false));

    // An older change arriving late is ignored.
    let out = from_link(&mut shard, now, link_flag(true, "yan", set_at + 1));
    assert!(told(&out, 1).is_empty());
    assert_eq!(flag(&shard.rooms[&room()]), Some(false));

    // A bridge newly opening the room on a link hears the current flag.
    let mut other = shard_with_flag(now);
    let out = open_link(&mut other, now);
    assert_eq!(link_flags(&out).len(), 1);
    assert!(link_flags(&out)[0].0);

    // A local moderator's change is later than anything the room holds, even with a clock behind.
    let out = set(&mut shard, now, 1, true);
    assert!(link_flags(&out)[0].2 > set_at + 5);
}

fn shard_with_flag(now: Instant) -> Shard {
    let mut shard = shard();
    connect(&mut shard, now, 1, "ada", true);
    set(&mut shard, now, 1, true);
    shard
}

#[test]
fn a_link_that_does_not_host_the_room_cannot_set_the_flag() {
    let now = Instant::now();
    let mut shard = shard();
    connect(&mut shard, now, 1, "ada", false);
    let out = from_link(&mut shard, now, link_flag(true, "zed", 10));
    assert!(told(&out, 1).is_empty());
    assert_eq!(flag(&shard.rooms[&room()]), None);
}

#[test]
fn bridges_agree_on_the_flag_whatever_order_changes_arrive_in() {
    let changes = [
        (true, "ada", 100u64),
        (false, "bob", 100),
        (false, "ada", 101),
        (true, "cy", 99),
        (true, "bob", 101),
    ];
    let now = Instant::now();
    let mut finals = Vec::new();
    // Every rotation and its reverse.
    for start in 0..changes.len() {
        for reverse in [false, true] {
            let mut order: Vec<_> = changes.iter().cycle().skip(start).take(changes.len()).collect();
            if reverse {
                order.reverse();
            }
            let mut shard = shard();
            connect(&mut shard, now, 1, "local", false);
            open_link(&mut shard, now);
            for (required, by, at) in order {
                from_link(&mut shard, now, link_flag(*required, by, *at));
            }
            finals.push(shard.rooms[&room()].e2ee.clone().unwrap());
        }
    }
    assert!(finals.windows(2).all(|w| w[0] == w[1]), "{finals:?}");
    assert_eq!(
        (finals[0].required, finals[0].by.as_str(), finals[0].changed_at_ms),
        (true, "bob", 101)
    );
}
