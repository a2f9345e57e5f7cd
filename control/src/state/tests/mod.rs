use super::*;
use bridgemesh_proto::bridge_session::BridgeRegistration;

fn registration(id: &str, capacity: u32) -> BridgeRegistration {
    BridgeRegistration {
        id: BridgeId::new(id).unwrap(),
        region: RegionId::new("local").unwrap(),
        location: None,
        signaling_url: format!("ws://{id}"),
        media_addresses: Vec::new(),
        turn_urls: Vec::new(),
        capacity,
        max_participants_per_room: 3,
        cascade_addr: None,
    }
}

fn register(registration: BridgeRegistration) -> Command {
    Command::RegisterBridge {
        registration,
        instance: Some("instance".into()),
        at_ms: 0,
    }
}

fn bridge(id: &str, capacity: u32) -> Command {
    register(registration(id, capacity))
}

fn room(name: &str) -> RoomId {
    RoomId::new(name).unwrap()
}

fn pid(name: &str) -> ParticipantId {
    ParticipantId::new(name).unwrap()
}

fn request(room_name: &str, participant: &str, bridge: &str, at_ms: u64) -> JoinRequestRecord {
    JoinRequestRecord {
        display_name: participant.to_uppercase(),
        ..JoinRequestRecord::guest(
            room(room_name),
            pid(participant),
            BridgeId::new(bridge).unwrap(),
            at_ms,
        )
    }
}

fn join(room_name: &str, participant: &str, bridge: &str, at_ms: u64) -> Command {
    Command::Join(request(room_name, participant, bridge, at_ms))
}

fn moderator_join(room_name: &str, participant: &str, at_ms: u64) -> Command {
    Command::Join(JoinRequestRecord {
        role: Role::Moderator,
        user_id: Some(format!("user-{participant}")),
        ..request(room_name, participant, "b1", at_ms)
    })
}

fn leave(room_name: &str, participant: &str) -> Command {
    Command::Leave {
        room: room(room_name),
        participant: pid(participant),
        bridge: None,
    }
}

fn with_bridge() -> ControlState {
    let mut state = ControlState::default();
    state.apply(bridge("b1", 10)).unwrap();
    state
}

/// Nothing expires a millisecond before `deadline_ms`; `count` participants expire at it.
fn expire_exactly_at(state: &mut ControlState, deadline_ms: u64, count: usize) {
    let tick = |now_ms| Command::Tick {
        now_ms,
        room_grace_ms: 3_600_000,
        unconfirmed_join_ttl_ms: None,
    };
    assert!(matches!(
        state.apply(tick(deadline_ms - 1)),
        Ok(Outcome::Ticked { expired: 0, .. })
    ));
    assert_eq!(
        state.apply(tick(deadline_ms)).map(|o| match o {
            Outcome::Ticked { expired, .. } => expired,
            _ => usize::MAX,
        }),
        Ok(count)
    );
}

fn status(state: &ControlState, room_name: &str, participant: &str) -> ParticipantStatus {
    state.rooms[&room(room_name)].participants[&pid(participant)].status
}

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
fn unconfirmed_placements_expire_and_connected_ones_stay() {
    let mut state = with_bridge();
    state.apply(join("r", "p1", "b1", 1_000)).unwrap();
    state.apply(join("r", "p2", "b1", 1_000)).unwrap();
    state
        .apply(Command::Confirm {
            room: room("r"),
            participant: pid("p2"),
            bridge: None,
        })
        .unwrap();
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
    state
        .apply(Command::Confirm {
            room: room("r"),
            participant: pid("p1"),
            bridge: None,
        })
        .unwrap();
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
        state
            .apply(Command::Confirm {
                room: room("r"),
                participant: pid("p1"),
                bridge: None,
            })
            .is_err(),
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
fn replaying_commands_gives_the_same_state() {
    let commands = vec![
        (bridge("b1", 10)),
        join("r", "p1", "b1", 1),
        join("s", "p2", "b1", 2),
        moderator_join("s", "m", 2),
        leave("r", "p1"),
        Command::Kick {
            room: room("s"),
            by: pid("m"),
            participant: pid("p2"),
            at_ms: 3,
        },
        Command::Tick {
            now_ms: 100_000,
            room_grace_ms: 10,
            unconfirmed_join_ttl_ms: None,
        },
    ];
    let mut a = ControlState::default();
    let mut b = ControlState::default();
    let mut outcomes_a = Vec::new();
    let mut outcomes_b = Vec::new();
    for command in &commands {
        outcomes_a.push(a.apply(command.clone()));
        // The second replica gets the command as the log stores it.
        let stored = serde_json::to_vec(command).unwrap();
        outcomes_b.push(b.apply(serde_json::from_slice(&stored).unwrap()));
    }
    assert_eq!(a, b);
    assert_eq!(outcomes_a, outcomes_b);
    let json = serde_json::to_string(&a).unwrap();
    let restored: ControlState = serde_json::from_str(&json).unwrap();
    assert_eq!(restored, a, "a snapshot round-trips");
}

#[test]
fn every_command_survives_the_trip_through_the_log() {
    // Commands are stored as JSON; a shape that loses information there would make replicas and
    // restarted nodes disagree with the node that proposed.
    let mut located = registration("b9", 10);
    located.location = Some(GeoPoint {
        latitude: 52.520_008_1,
        longitude: 13.404_954_3,
    });
    located.media_addresses = vec!["127.0.0.1:10000".into()];
    let commands = vec![
        register(located),
        Command::SetBridgeStatus {
            bridge: BridgeId::new("b9").unwrap(),
            status: BridgeStatus::Down,
            at_ms: 0,
        },
        Command::Confirm {
            room: room("r"),
            participant: pid("p1"),
            bridge: None,
        },
        leave("r", "p1"),
        Command::Admit {
            room: room("r"),
            by: pid("m"),
            participant: pid("g"),
            bridge: BridgeId::new("b1").unwrap(),
            at_ms: 7,
        },
        Command::Deny {
            room: room("r"),
            by: pid("m"),
            participant: pid("g"),
            at_ms: 8,
        },
        Command::Kick {
            room: room("r"),
            by: pid("m"),
            participant: pid("g"),
            at_ms: 9,
        },
        Command::EndRoom {
            room: room("r"),
            by: pid("m"),
        },
        Command::UpdateSettings {
            room: room("r"),
            by: pid("m"),
            password: Some(PasswordChange::SetHash("$argon2id$v=19$x".into())),
            lobby_enabled: Some(true),
        },
        Command::UpdateSettings {
            room: room("r"),
            by: pid("m"),
            password: Some(PasswordChange::Remove),
            lobby_enabled: None,
        },
        Command::UpdateSettings {
            room: room("r"),
            by: pid("m"),
            password: None,
            lobby_enabled: Some(false),
        },
        join("r", "p1", "b1", 1),
        Command::Tick {
            now_ms: 5,
            room_grace_ms: 6,
            unconfirmed_join_ttl_ms: None,
        },
    ];
    for command in commands {
        let json = serde_json::to_string(&command).unwrap();
        assert_eq!(serde_json::from_str::<Command>(&json).unwrap(), command, "{json}");
    }
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

#[test]
fn a_repeated_proposal_is_answered_not_applied_again() {
    let mut state = with_bridge();
    let proposal = Proposal {
        id: ProposalId(1, 2),
        command: join("r", "p1", "b1", 0),
    };
    let first = state.apply_proposal(proposal.clone());
    assert!(matches!(first, Ok(Outcome::Placed { .. })), "{first:?}");
    assert_eq!(
        state.apply_proposal(proposal),
        first,
        "the retry gets the first answer"
    );
    assert_eq!(state.bridge_load[&BridgeId::new("b1").unwrap()], 1);
    let snapshot = serde_json::to_string(&state).unwrap();
    assert_eq!(
        serde_json::from_str::<ControlState>(&snapshot).unwrap(),
        state,
        "remembered results travel in snapshots"
    );
    let other = Proposal {
        id: ProposalId(3, 4),
        command: join("r", "p1", "b1", 0),
    };
    assert_eq!(
        state.apply_proposal(other),
        Err(ApplyError::DuplicateParticipant(pid("p1"))),
        "a different proposal is applied"
    );
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
    let confirm = Command::Confirm {
        room: room("r"),
        participant: pid("a"),
        bridge: None,
    };
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

mod ended_sessions;
