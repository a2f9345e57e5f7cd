use super::*;
use crate::state::{Command, JoinRequestRecord, Role};
use bridgemesh_proto::bridge_session::{BridgeRegistration, LoadReport};
use bridgemesh_proto::{ParticipantId, RegionId};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

fn bid(name: &str) -> BridgeId {
    BridgeId::new(name).unwrap()
}

fn rid(name: &str) -> RoomId {
    RoomId::new(name).unwrap()
}

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([192, 0, 2, 1], port))
}

fn peer(bridge: &str, port: u16) -> CascadePeer {
    CascadePeer {
        bridge: bid(bridge),
        addr: addr(port),
    }
}

fn room_bridges(room: &str, peers: &[CascadePeer]) -> ControlToBridge {
    ControlToBridge::RoomBridges {
        room: rid(room),
        peers: peers.to_vec(),
    }
}

fn to(bridge: &str, room: &str, peers: &[CascadePeer]) -> (BridgeId, ControlToBridge) {
    (bid(bridge), room_bridges(room, peers))
}

fn register(bridge: &str, cascade_addr: Option<SocketAddr>) -> Command {
    Command::RegisterBridge {
        registration: BridgeRegistration {
            id: bid(bridge),
            region: RegionId::new("eu").unwrap(),
            location: None,
            signaling_url: format!("ws://{bridge}"),
            media_addresses: vec![],
            turn_urls: vec![],
            capacity: 100,
            max_participants_per_room: 100,
            cascade_addr,
        },
        instance: Some(bridge.into()),
        at_ms: 0,
    }
}

fn join(room: &str, participant: &str, bridge: &str) -> Command {
    Command::Join(JoinRequestRecord::guest(
        rid(room),
        ParticipantId::new(participant).unwrap(),
        bid(bridge),
        0,
    ))
}

fn leave(room: &str, participant: &str) -> Command {
    Command::Leave {
        room: rid(room),
        participant: ParticipantId::new(participant).unwrap(),
        bridge: None,
    }
}

/// Bridges b1, b2, b3 with cascade addresses on ports 1, 2, 3.
fn three_bridges() -> ControlState {
    let mut state = ControlState::default();
    for (bridge, port) in [("b1", 1), ("b2", 2), ("b3", 3)] {
        state.apply(register(bridge, Some(addr(port)))).unwrap();
    }
    state
}

fn apply(state: &mut ControlState, commands: impl IntoIterator<Item = Command>) {
    for command in commands {
        state.apply(command).unwrap();
    }
}

#[test]
fn two_bridges_sharing_a_room_each_learn_the_other() {
    let mut state = three_bridges();
    let mut push = MembershipPush::default();
    apply(&mut state, [join("r", "a", "b1"), join("r", "a2", "b1")]);
    assert_eq!(
        push.poll(&state),
        vec![],
        "a room on one bridge is nobody's business"
    );
    apply(&mut state, [join("r", "b", "b2")]);
    assert_eq!(
        push.poll(&state),
        vec![to("b1", "r", &[peer("b2", 2)]), to("b2", "r", &[peer("b1", 1)])]
    );
    let peers = cascade_peers(&state);
    assert_eq!(peers[&rid("r")][&bid("b1")], vec![peer("b2", 2)]);
}

#[test]
fn a_third_bridge_joining_updates_all_three() {
    let mut state = three_bridges();
    let mut push = MembershipPush::default();
    apply(&mut state, [join("r", "a", "b1"), join("r", "b", "b2")]);
    push.poll(&state);
    apply(&mut state, [join("r", "c", "b3")]);
    assert_eq!(
        push.poll(&state),
        vec![
            to("b1", "r", &[peer("b2", 2), peer("b3", 3)]),
            to("b2", "r", &[peer("b1", 1), peer("b3", 3)]),
            to("b3", "r", &[peer("b1", 1), peer("b2", 2)]),
        ]
    );
}

#[test]
fn a_bridge_whose_last_seat_goes_gets_an_empty_list_once_and_the_others_lose_it() {
    let mut state = three_bridges();
    let mut push = MembershipPush::default();
    apply(
        &mut state,
        [
            join("r", "a", "b1"),
            join("r", "b", "b2"),
            join("r", "b-too", "b2"),
            join("r", "c", "b3"),
        ],
    );
    push.poll(&state);
    apply(&mut state, [leave("r", "b")]);
    assert_eq!(
        push.poll(&state),
        vec![],
        "b2 still hosts one participant of the room"
    );
    apply(&mut state, [leave("r", "b-too")]);
    assert_eq!(
        push.poll(&state),
        vec![
            to("b1", "r", &[peer("b3", 3)]),
            to("b2", "r", &[]),
            to("b3", "r", &[peer("b1", 1)]),
        ]
    );
    apply(&mut state, [leave("r", "c")]);
    assert_eq!(
        push.poll(&state),
        vec![to("b1", "r", &[]), to("b3", "r", &[])],
        "down to one bridge: both hear they share the room with nobody"
    );
    assert!(push.shared.is_empty(), "a room on one bridge is not remembered");
    apply(&mut state, [join("r", "d", "b1")]);
    assert_eq!(
        push.poll(&state),
        vec![],
        "nothing more for a bridge that was told []"
    );
}

#[test]
fn a_bridge_without_a_cascade_address_is_nobodys_peer() {
    let mut state = three_bridges();
    apply(&mut state, [register("b3", None)]);
    let mut push = MembershipPush::default();
    apply(&mut state, [join("r", "a", "b1"), join("r", "c", "b3")]);
    assert_eq!(
        push.poll(&state),
        vec![to("b3", "r", &[peer("b1", 1)])],
        "b3 may dial b1; b1 learns of no peer it could dial"
    );
    apply(&mut state, [register("b3", Some(addr(33)))]);
    assert_eq!(
        push.poll(&state),
        vec![to("b1", "r", &[peer("b3", 33)])],
        "once b3 cascades, b1 learns of it"
    );
}

#[test]
fn a_peer_that_registers_another_address_is_pushed_to_the_bridges_sharing_its_rooms() {
    let mut state = three_bridges();
    let mut push = MembershipPush::default();
    apply(
        &mut state,
        [
            join("r", "a", "b1"),
            join("r", "b", "b2"),
            join("s", "c", "b2"),
            join("s", "d", "b3"),
            join("alone", "e", "b1"),
        ],
    );
    push.poll(&state);
    apply(&mut state, [register("b2", Some(addr(22)))]);
    assert_eq!(
        push.poll(&state),
        vec![to("b1", "r", &[peer("b2", 22)]), to("b3", "s", &[peer("b2", 22)])]
    );
    apply(&mut state, [register("b2", Some(addr(22)))]);
    assert_eq!(push.poll(&state), vec![], "the same address again");
    apply(&mut state, [register("b2", None)]);
    assert_eq!(
        push.poll(&state),
        vec![to("b1", "r", &[]), to("b3", "s", &[])],
        "a peer that stopped cascading is dropped"
    );
}

#[test]
fn an_ended_room_empties_its_bridges_lists_and_is_forgotten() {
    let mut state = three_bridges();
    let mut push = MembershipPush::default();
    apply(
        &mut state,
        [
            join("r", "a", "b1"),
            join("r", "b", "b2"),
            join("other", "c", "b1"),
            join("other", "d", "b3"),
        ],
    );
    push.poll(&state);
    assert!(push.shared.contains_key(&rid("r")));
    apply(&mut state, [leave("r", "a"), leave("r", "b")]);
    apply(
        &mut state,
        [Command::Tick {
            now_ms: 1_000,
            room_grace_ms: 0,
            unconfirmed_join_ttl_ms: None,
        }],
    );
    assert!(!state.rooms.contains_key(&rid("r")), "the room ended");
    assert_eq!(push.poll(&state), vec![to("b1", "r", &[]), to("b2", "r", &[])]);
    assert!(!push.shared.contains_key(&rid("r")), "its memory is dropped");
    assert!(push.shared.contains_key(&rid("other")));
}

#[test]
fn a_room_its_moderator_ends_is_emptied_too() {
    let mut state = three_bridges();
    let mut push = MembershipPush::default();
    let Command::Join(moderator) = join("r", "m", "b1") else {
        unreachable!()
    };
    apply(
        &mut state,
        [
            Command::Join(JoinRequestRecord {
                role: Role::Moderator,
                ..moderator
            }),
            join("r", "b", "b2"),
        ],
    );
    push.poll(&state);
    apply(
        &mut state,
        [Command::EndRoom {
            room: rid("r"),
            by: ParticipantId::new("m").unwrap(),
        }],
    );
    assert_eq!(push.poll(&state), vec![to("b1", "r", &[]), to("b2", "r", &[])]);
    assert!(push.shared.is_empty());
}

#[test]
fn nothing_is_sent_when_nothing_changed() {
    let mut state = three_bridges();
    let mut push = MembershipPush::default();
    apply(&mut state, [join("r", "a", "b1"), join("r", "b", "b2")]);
    assert_eq!(push.poll(&state).len(), 2);
    assert_eq!(push.poll(&state), vec![], "a second poll of the same state");
    apply(
        &mut state,
        [
            Command::Confirm {
                room: rid("r"),
                participant: ParticipantId::new("a").unwrap(),
                bridge: None,
            },
            Command::ReportLoad {
                bridge: bid("b1"),
                load: LoadReport::default(),
                at_ms: 1,
            },
            join("r", "a-too", "b1"),
            join("elsewhere", "x", "b3"),
            register("b1", Some(addr(1))),
        ],
    );
    assert_eq!(push.poll(&state), vec![], "no room's set of bridges changed");
}

#[test]
fn a_registering_bridge_gets_the_rooms_it_shares_and_only_those() {
    let mut state = three_bridges();
    let mut push = MembershipPush::default();
    apply(
        &mut state,
        [
            join("r", "a", "b1"),
            join("r", "b", "b2"),
            join("s", "c", "b1"),
            join("s", "d", "b3"),
            join("alone", "e", "b1"),
        ],
    );
    push.poll(&state);
    let expected = vec![
        room_bridges("r", &[peer("b2", 2)]),
        room_bridges("s", &[peer("b3", 3)]),
    ];
    assert_eq!(room_bridges_for(&state, &bid("b1")), expected);
    assert_eq!(push.room_bridges_of(&bid("b1")), expected);
    apply(&mut state, [register("b1", None)]);
    push.poll(&state);
    assert_eq!(
        push.room_bridges_of(&bid("b1")),
        expected,
        "without its own address it still learns its peers"
    );
    assert_eq!(push.room_bridges_of(&bid("b2")), vec![], "b1 is no longer a peer");
    assert_eq!(room_bridges_for(&state, &bid("b2")), vec![]);
}

/// Random joins, leaves, moves, address changes and ended rooms, polled now and then (through
/// the state's index of recent changes, or by a full scan): a bridge that applies every message
/// it is sent always ends up believing exactly the current peers, and is never told what it
/// already believes.
#[test]
fn bridges_that_apply_the_pushes_always_know_their_current_peers() {
    for seed in 0..20 {
        let mut rng = StdRng::seed_from_u64(seed);
        let bridges = ["b1", "b2", "b3", "b4"];
        let rooms = ["r1", "r2", "r3"];
        let mut state = ControlState::default();
        for (port, bridge) in (1..).zip(bridges) {
            state.apply(register(bridge, Some(addr(port)))).unwrap();
        }
        let mut push = MembershipPush::default();
        let mut believed: BTreeMap<(BridgeId, RoomId), Vec<CascadePeer>> = BTreeMap::new();
        for step in 0..300 {
            let bridge = bridges[rng.random_range(0..bridges.len())];
            let room = rooms[rng.random_range(0..rooms.len())];
            let participant = format!("p{}", rng.random_range(0..12));
            let command = match rng.random_range(0..10) {
                0..4 => join(room, &participant, bridge),
                4..7 => leave(room, &participant),
                7 => {
                    let cascade_addr = rng.random_bool(0.8).then(|| addr(rng.random_range(1..6)));
                    register(bridge, cascade_addr)
                }
                // Moves the bridge's participants elsewhere; its next registration ends it.
                8 => Command::Drain {
                    bridge: bid(bridge),
                    grace_ms: 0,
                    by_operator: false,
                    at_ms: step,
                },
                _ => Command::Tick {
                    now_ms: step,
                    room_grace_ms: 0,
                    unconfirmed_join_ttl_ms: None,
                },
            };
            // Refusals (a duplicate participant, a draining bridge) are part of the mix.
            let _ = state.apply(command);
            if rng.random_bool(0.3) {
                // Half the polls read a copy restored from a snapshot, without the index of
                // recent changes: the full scan must tell the same.
                let restored: ControlState;
                let polled = if rng.random_bool(0.5) {
                    &state
                } else {
                    restored = serde_json::from_str(&serde_json::to_string(&state).unwrap()).unwrap();
                    assert!(restored.rooms_changed_since(0).is_none() || state.membership_version == 0);
                    &restored
                };
                for (bridge, message) in push.poll(polled) {
                    let ControlToBridge::RoomBridges { room, peers } = message else {
                        panic!("only room_bridges: {message:?}");
                    };
                    let key = (bridge, room);
                    let before = believed.get(&key).cloned().unwrap_or_default();
                    assert_ne!(before, peers, "seed {seed} step {step}: {key:?} told again");
                    if peers.is_empty() {
                        believed.remove(&key);
                    } else {
                        believed.insert(key, peers);
                    }
                }
                let current: BTreeMap<(BridgeId, RoomId), Vec<CascadePeer>> = cascade_peers(&state)
                    .into_iter()
                    .flat_map(|(room, by_bridge)| {
                        by_bridge
                            .into_iter()
                            .filter(|(_, peers)| !peers.is_empty())
                            .map(move |(bridge, peers)| ((bridge, room.clone()), peers))
                    })
                    .collect();
                assert_eq!(believed, current, "seed {seed} step {step}");
                for bridge in bridges {
                    assert_eq!(
                        push.room_bridges_of(&bid(bridge)),
                        room_bridges_for(&state, &bid(bridge)),
                        "seed {seed} step {step}"
                    );
                }
            }
        }
    }
}
