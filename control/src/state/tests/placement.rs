//! Placements on bridges: seats, capacity, per-room limits, cascade addresses and the membership version.

use super::*;

#[test]
fn join_and_leave_track_rooms_and_bridge_load() {
    let mut state = with_bridge();
    assert!(matches!(
        state.apply(join("r", "p1", "b1", 5)),
        Ok(Outcome::Placed { .. })
    ));
    assert!(matches!(
        state.apply(join("r", "p2", "b1", 6)),
        Ok(Outcome::Placed { .. })
    ));
    assert_eq!(state.bridge_load[&BridgeId::new("b1").unwrap()], 2);
    assert_eq!(
        state.apply(leave("r", "p1")),
        Ok(Outcome::Left { room_empty: false })
    );
    assert_eq!(
        state.apply(leave("r", "p2")),
        Ok(Outcome::Left { room_empty: true })
    );
    assert!(state.participant_rooms.is_empty(), "the index forgets who left");
    assert_eq!(state.participant_count(), 0);
    assert_eq!(state.bridge_load[&BridgeId::new("b1").unwrap()], 0);
    assert!(matches!(
        state.apply(leave("r", "p2")),
        Err(ApplyError::UnknownParticipant(..))
    ));
}

#[test]
fn refuses_what_does_not_fit() {
    let mut state = ControlState::default();
    assert!(matches!(
        state.apply(join("r", "p1", "nope", 0)),
        Err(ApplyError::UnknownBridge(_))
    ));
    state.apply(bridge("b1", 4)).unwrap();
    for p in ["p1", "p2", "p3"] {
        state.apply(join("r", p, "b1", 0)).unwrap();
    }
    assert!(matches!(
        state.apply(join("r", "p4", "b1", 0)),
        Err(ApplyError::BridgeRoomFull(..))
    ));
    assert!(matches!(
        state.apply(join("other", "p1", "b1", 0)),
        Err(ApplyError::DuplicateParticipant(_))
    ));
    state.apply(join("other", "p5", "b1", 0)).unwrap();
    assert!(matches!(
        state.apply(join("third", "p6", "b1", 0)),
        Err(ApplyError::BridgeFull(_))
    ));
    state.apply(bridge("b2", 10)).unwrap();
    state
        .apply(Command::SetBridgeStatus {
            bridge: BridgeId::new("b2").unwrap(),
            status: BridgeStatus::Down,
            at_ms: 0,
        })
        .unwrap();
    assert!(matches!(
        state.apply(join("x", "p7", "b2", 0)),
        Err(ApplyError::BridgeDown(_))
    ));
}

#[test]
fn a_bridge_keeps_the_cascade_address_of_its_latest_registration() {
    let b1 = BridgeId::new("b1").unwrap();
    let addr = |text: &str| Some(text.parse::<std::net::SocketAddr>().unwrap());
    let mut state = ControlState::default();
    for cascade_addr in [addr("192.0.2.1:4433"), addr("192.0.2.1:5544"), None] {
        state
            .apply(register(BridgeRegistration {
                cascade_addr,
                ..registration("b1", 10)
            }))
            .unwrap();
        assert_eq!(state.bridges[&b1].cascade_addr, cascade_addr);
    }
    // A record written before bridges cascaded has no such field.
    let mut record = serde_json::to_value(&state.bridges[&b1]).unwrap();
    record.as_object_mut().unwrap().remove("cascade_addr").unwrap();
    let older: BridgeRecord = serde_json::from_value(record).unwrap();
    assert_eq!(older.cascade_addr, None);
}

#[test]
fn the_membership_version_moves_when_a_seat_is_taken_or_given_back_or_an_address_changes() {
    let mut state = ControlState::default();
    state.apply(bridge("b1", 10)).unwrap();
    state.apply(bridge("b2", 10)).unwrap();
    let b1 = BridgeId::new("b1").unwrap();
    // Applies `command`; says whether the version moved, and checks the rooms stamped with it.
    let mut moves = |command: Command, stamped: &[&str]| {
        let before = state.membership_version;
        state.apply(command).unwrap();
        for (id, record) in &state.rooms {
            let expected = stamped.contains(&id.as_str());
            assert_eq!(
                record.membership_changed_at > before,
                expected,
                "room {id} stamped"
            );
        }
        // The index of recent changes names the same rooms, and a restored copy has none.
        let mut expected = stamped.to_vec();
        expected.sort_unstable();
        let indexed: Vec<&str> = state
            .rooms_changed_since(before)
            .expect("the index reaches back")
            .into_iter()
            .map(RoomId::as_str)
            .collect();
        assert_eq!(indexed, expected);
        let restored: ControlState = serde_json::from_str(&serde_json::to_string(&state).unwrap()).unwrap();
        assert_eq!(restored, state, "the index is not part of the state's value");
        assert!(restored.rooms_changed_since(before).is_none() || state.membership_version == before);
        state.membership_version != before
    };
    assert!(moves(join("r", "a", "b1", 0), &["r"]));
    assert!(moves(join("other", "x", "b1", 0), &["other"]));
    assert!(moves(join("r", "b", "b2", 0), &["r"]));
    let confirm = confirm("r", "a");
    assert!(!moves(confirm, &[]), "connecting keeps the seat");
    assert!(
        !moves(
            Command::Unconfirm {
                room: room("r"),
                participant: pid("a"),
                bridge: b1.clone(),
                at_ms: 1,
            },
            &[]
        ),
        "a drop keeps the seat"
    );
    assert!(!moves(
        Command::ReportLoad {
            bridge: b1.clone(),
            load: LoadReport::default(),
            at_ms: 1,
        },
        &[]
    ));
    assert!(!moves(bridge("b1", 10), &[]), "the same address again");
    let with_addr = |port: u16| {
        register(BridgeRegistration {
            cascade_addr: Some(std::net::SocketAddr::from(([192, 0, 2, 1], port))),
            ..registration("b1", 10)
        })
    };
    assert!(moves(with_addr(4433), &[]), "a new cascade address");
    assert!(!moves(with_addr(4433), &[]));
    assert!(moves(leave("r", "b"), &["r"]));
    assert!(
        moves(
            Command::Drain {
                bridge: b1,
                grace_ms: 0,
                by_operator: true,
                at_ms: 2,
            },
            &["r", "other"]
        ),
        "participants moved off a drained bridge"
    );
    assert!(
        state
            .rooms
            .values()
            .flat_map(|r| r.participants.values())
            .all(|p| p.bridge == Some(BridgeId::new("b2").unwrap()))
    );
}
