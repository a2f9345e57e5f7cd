//! Who moderates, the lobby, passwords, kicks and ending a room.

use super::*;

#[test]
fn the_first_participant_moderates_a_zero_config_room() {
    let mut state = with_bridge();
    let first = Command::Join(JoinRequestRecord {
        moderator_if_first: true,
        ..request("r", "p1", "b1", 0)
    });
    let second = Command::Join(JoinRequestRecord {
        moderator_if_first: true,
        ..request("r", "p2", "b1", 0)
    });
    assert_eq!(
        state.apply(first),
        Ok(Outcome::Placed {
            bridge: BridgeId::new("b1").unwrap(),
            role: Role::Moderator
        })
    );
    assert_eq!(
        state.apply(second),
        Ok(Outcome::Placed {
            bridge: BridgeId::new("b1").unwrap(),
            role: Role::Guest
        })
    );
}

#[test]
fn guests_wait_for_a_moderator_when_policy_says_so() {
    let mut state = with_bridge();
    let guest = |p: &str| {
        Command::Join(JoinRequestRecord {
            guest_needs_moderator: true,
            ..request("r", p, "b1", 0)
        })
    };
    assert_eq!(state.apply(guest("g1")), Err(ApplyError::WaitingForModerator));
    state.apply(moderator_join("r", "m", 0)).unwrap();
    assert!(matches!(state.apply(guest("g2")), Ok(Outcome::Placed { .. })));
}

#[test]
fn a_password_checked_against_an_older_generation_is_refused() {
    let mut state = with_bridge();
    state.apply(moderator_join("r", "m", 0)).unwrap();
    state
        .apply(Command::UpdateSettings {
            room: room("r"),
            by: pid("m"),
            password: Some(PasswordChange::SetHash("$argon2id$hash".into())),
            lobby_enabled: None,
        })
        .unwrap();
    let generation = state.rooms[&room("r")].settings.password_generation;
    let with_generation = |p: &str, g: Option<u64>| {
        Command::Join(JoinRequestRecord {
            password_generation: g,
            ..request("r", p, "b1", 0)
        })
    };
    assert_eq!(
        state.apply(with_generation("g1", None)),
        Err(ApplyError::WrongPassword)
    );
    assert!(state.apply(with_generation("g2", Some(generation))).is_ok());
    state
        .apply(Command::UpdateSettings {
            room: room("r"),
            by: pid("m"),
            password: Some(PasswordChange::SetHash("$argon2id$other".into())),
            lobby_enabled: None,
        })
        .unwrap();
    assert_eq!(
        state.apply(with_generation("g3", Some(generation))),
        Err(ApplyError::WrongPassword),
        "the password changed between the check and the commit"
    );
    // A moderator's own join needs no password.
    assert!(state.apply(moderator_join("r", "m2", 0)).is_ok());
}

#[test]
fn lobby_admit_and_deny() {
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
    assert_eq!(
        state.apply(join("r", "g1", "b1", 1)),
        Ok(Outcome::InLobby { role: Role::Guest })
    );
    assert_eq!(
        state.apply(join("r", "g2", "b1", 1)),
        Ok(Outcome::InLobby { role: Role::Guest })
    );
    let b1 = BridgeId::new("b1").unwrap();
    assert_eq!(state.bridge_load[&b1], 1, "the lobby holds no bridge seat");
    let waiting: Vec<_> = lobby_of(&state.rooms[&room("r")])
        .map(|(id, _)| id.clone())
        .collect();
    assert_eq!(waiting, vec![pid("g1"), pid("g2")]);
    assert_eq!(
        state.apply(Command::Admit {
            room: room("r"),
            by: pid("m"),
            participant: pid("g1"),
            bridge: b1.clone(),
            at_ms: 2
        }),
        Ok(Outcome::Admitted { bridge: b1.clone() })
    );
    assert_eq!(status(&state, "r", "g1"), ParticipantStatus::Placed);
    assert_eq!(state.bridge_load[&b1], 2);
    assert_eq!(
        state.apply(Command::Deny {
            room: room("r"),
            by: pid("m"),
            participant: pid("g2"),
            at_ms: 2
        }),
        Ok(Outcome::Denied)
    );
    assert_eq!(status(&state, "r", "g2"), ParticipantStatus::Denied);
    assert_eq!(
        state.apply(Command::Admit {
            room: room("r"),
            by: pid("m"),
            participant: pid("g2"),
            bridge: b1.clone(),
            at_ms: 3
        }),
        Err(ApplyError::NotInLobby(pid("g2"))),
        "a refusal is final"
    );
    state
        .apply(Command::Tick {
            now_ms: 2 + OUTCOME_MEMORY_MS,
            room_grace_ms: 60_000,
            unconfirmed_join_ttl_ms: None,
        })
        .unwrap();
    assert!(!state.rooms[&room("r")].participants.contains_key(&pid("g2")));
}

#[test]
fn a_kicked_user_loses_the_seat_and_cannot_come_back() {
    let mut state = with_bridge();
    state.apply(moderator_join("r", "m", 0)).unwrap();
    let member = |p: &str| {
        Command::Join(JoinRequestRecord {
            role: Role::Member,
            user_id: Some("ada".into()),
            ..request("r", p, "b1", 0)
        })
    };
    state.apply(member("p1")).unwrap();
    state.apply(confirm("r", "p1")).unwrap();
    let b1 = BridgeId::new("b1").unwrap();
    assert_eq!(
        state.apply(Command::Kick {
            room: room("r"),
            by: pid("m"),
            participant: pid("p1"),
            at_ms: 5
        }),
        Ok(Outcome::Kicked {
            room: room("r"),
            participant: pid("p1"),
            bridge: Some(b1.clone())
        })
    );
    assert_eq!(state.bridge_load[&b1], 1);
    assert_eq!(status(&state, "r", "p1"), ParticipantStatus::Kicked);
    assert_eq!(state.apply(member("p2")), Err(ApplyError::Kicked));
    assert!(
        state.apply(confirm("r", "p1")).is_err(),
        "a kicked participant cannot be confirmed back"
    );
}

#[test]
fn ending_a_room_lists_who_was_in_it_and_frees_the_seats() {
    let mut state = with_bridge();
    state.apply(moderator_join("r", "m", 0)).unwrap();
    state.apply(join("r", "p1", "b1", 0)).unwrap();
    let Ok(Outcome::RoomEnded { participants, .. }) = state.apply(Command::EndRoom {
        room: room("r"),
        by: pid("m"),
    }) else {
        panic!("the room ends");
    };
    assert_eq!(participants.len(), 2);
    assert!(state.rooms.is_empty());
    assert!(state.participant_rooms.is_empty());
    assert_eq!(state.bridge_load[&BridgeId::new("b1").unwrap()], 0);
}

#[test]
fn only_a_moderator_in_the_meeting_may_moderate() {
    let mut state = with_bridge();
    state.apply(moderator_join("r", "m", 0)).unwrap();
    state.apply(moderator_join("r", "m2", 0)).unwrap();
    state.apply(join("r", "g", "b1", 0)).unwrap();
    assert_eq!(
        state.apply(Command::EndRoom {
            room: room("r"),
            by: pid("g"),
        }),
        Err(ApplyError::NotModerator(pid("g"))),
        "a guest cannot end the meeting"
    );
    state
        .apply(Command::Kick {
            room: room("r"),
            by: pid("m"),
            participant: pid("m2"),
            at_ms: 1,
        })
        .unwrap();
    assert_eq!(
        state.apply(Command::Kick {
            room: room("r"),
            by: pid("m2"),
            participant: pid("m"),
            at_ms: 2,
        }),
        Err(ApplyError::NotModerator(pid("m2"))),
        "a moderator kicked a moment ago cannot act on a stale copy of the state"
    );
    assert!(state.rooms[&room("r")].participants[&pid("m")].status.on_bridge());
}
