//! What time does to the state: unconfirmed placements, dropped participants, empty rooms, and clocks that are off.

use super::*;

#[test]
fn unconfirmed_placements_expire_and_connected_ones_stay() {
    let mut state = with_bridge();
    state.apply(join("r", "p1", "b1", 1_000)).unwrap();
    state.apply(join("r", "p2", "b1", 1_000)).unwrap();
    state.apply(confirm("r", "p2")).unwrap();
    expire_exactly_at(&mut state, 1_000 + UNCONFIRMED_JOIN_TTL_MS, 1);
    assert_eq!(state.participant_count(), 1);
    assert_eq!(status(&state, "r", "p2"), ParticipantStatus::Connected);
}

#[test]
fn a_tick_may_carry_its_own_placement_lifetime_and_old_ticks_read_as_the_default() {
    let mut state = with_bridge();
    state.apply(join("r", "p1", "b1", 1_000)).unwrap();
    let tick = |now_ms| Command::Tick {
        now_ms,
        room_grace_ms: 3_600_000,
        unconfirmed_join_ttl_ms: Some(5 * UNCONFIRMED_JOIN_TTL_MS),
    };
    state.apply(tick(1_000 + UNCONFIRMED_JOIN_TTL_MS)).unwrap();
    assert_eq!(state.participant_count(), 1, "still within its own lifetime");
    state.apply(tick(1_000 + 5 * UNCONFIRMED_JOIN_TTL_MS)).unwrap();
    assert_eq!(state.participant_count(), 0);
    // A tick in a log written before the field existed.
    let logged: Command = serde_json::from_str(r#"{"Tick":{"now_ms":1,"room_grace_ms":2}}"#).unwrap();
    assert!(matches!(
        logged,
        Command::Tick {
            unconfirmed_join_ttl_ms: None,
            ..
        }
    ));
}

#[test]
fn an_empty_room_ends_after_its_grace_period_and_keeps_settings_until_then() {
    let mut state = with_bridge();
    state.apply(moderator_join("r", "m", 0)).unwrap();
    state
        .apply(Command::UpdateSettings {
            room: room("r"),
            by: pid("m"),
            password: None,
            lobby_enabled: Some(true),
        })
        .unwrap();
    state.apply(leave("r", "m")).unwrap();
    let tick = |now_ms| Command::Tick {
        now_ms,
        room_grace_ms: 30_000,
        unconfirmed_join_ttl_ms: None,
    };
    state.apply(tick(10_000)).unwrap();
    assert!(
        state.rooms[&room("r")].settings.lobby_enabled,
        "a quick return finds the room as it was"
    );
    assert_eq!(
        state.apply(tick(39_999)),
        Ok(Outcome::Ticked {
            expired: 0,
            rooms_ended: vec![],
            moved: vec![]
        })
    );
    assert_eq!(
        state.apply(tick(40_000)),
        Ok(Outcome::Ticked {
            expired: 0,
            rooms_ended: vec![room("r")],
            moved: vec![]
        })
    );
    assert!(state.rooms.is_empty());
}

#[test]
fn a_node_with_a_wrong_clock_cannot_make_placements_expire_at_once_or_never() {
    let mut state = with_bridge();
    let tick = |now_ms| Command::Tick {
        now_ms,
        room_grace_ms: 60_000,
        unconfirmed_join_ttl_ms: None,
    };
    state.apply(tick(1_000_000)).unwrap();
    // Two minutes behind, and an hour ahead, of the cluster's clock.
    state
        .apply(join("r", "behind", "b1", 1_000_000 - 120_000))
        .unwrap();
    state
        .apply(join("r", "ahead", "b1", 1_000_000 + 3_600_000))
        .unwrap();
    state.apply(tick(1_000_000 + 2_000)).unwrap();
    assert_eq!(
        status(&state, "r", "behind"),
        ParticipantStatus::Placed,
        "not expired at once"
    );
    state
        .apply(tick(
            1_000_000 + CLOCK_SKEW_TOLERATED_MS + UNCONFIRMED_JOIN_TTL_MS,
        ))
        .unwrap();
    assert!(
        state.participant_rooms.is_empty(),
        "both expire within the TTL plus the tolerance"
    );
}

#[test]
fn a_dropped_participant_keeps_its_place_for_the_reconnect_grace_then_goes() {
    let mut state = with_bridge();
    let b1 = BridgeId::new("b1").unwrap();
    for p in ["stays", "returns", "gone"] {
        state.apply(join("r", p, "b1", 1_000)).unwrap();
        state
            .apply(Command::Confirm {
                room: room("r"),
                participant: pid(p),
                bridge: Some(b1.clone()),
            })
            .unwrap();
    }
    for p in ["returns", "gone"] {
        assert_eq!(
            state.apply(Command::Unconfirm {
                room: room("r"),
                participant: pid(p),
                bridge: b1.clone(),
                at_ms: 2_000,
            }),
            Ok(Outcome::Unconfirmed)
        );
        assert_eq!(status(&state, "r", p), ParticipantStatus::Placed);
    }
    assert_eq!(state.bridge_load[&b1], 3, "a dropped participant keeps its seat");
    assert!(
        matches!(
            state.apply(Command::Unconfirm {
                room: room("r"),
                participant: pid("stays"),
                bridge: BridgeId::new("elsewhere").unwrap(),
                at_ms: 2_000,
            }),
            Err(ApplyError::NotOnBridge(..))
        ),
        "only the participant's own bridge can report it dropped"
    );
    // "returns" reconnects (its bridge confirms it again); "gone" never does.
    state
        .apply(Command::Confirm {
            room: room("r"),
            participant: pid("returns"),
            bridge: Some(b1.clone()),
        })
        .unwrap();
    expire_exactly_at(&mut state, 2_000 + RECONNECT_GRACE_MS, 1);
    assert!(!state.rooms[&room("r")].participants.contains_key(&pid("gone")));
    assert_eq!(status(&state, "r", "returns"), ParticipantStatus::Connected);
    assert_eq!(status(&state, "r", "stays"), ParticipantStatus::Connected);
    assert_eq!(state.bridge_load[&b1], 2);
}
