//! The state as a function of the log: replays, the trip through serialization, repeated proposals.

use super::*;

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
        confirm("r", "p1"),
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
