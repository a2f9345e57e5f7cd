use super::*;
use bridgemesh_proto::bridge_session::BridgeRegistration;

fn pid(name: &str) -> ParticipantId {
    ParticipantId::new(name).unwrap()
}

fn bridge_id(name: &str) -> BridgeId {
    BridgeId::new(name).unwrap()
}

fn request(room: &str, participant: &str, bridge: &str, at_ms: u64) -> JoinRequestRecord {
    JoinRequestRecord::guest(
        RoomId::new(room).unwrap(),
        pid(participant),
        bridge_id(bridge),
        at_ms,
    )
}

fn state_with_bridge(id: &str, capacity: u32) -> ControlState {
    let mut state = ControlState::default();
    state
        .apply(Command::RegisterBridge {
            registration: BridgeRegistration {
                id: bridge_id(id),
                region: RegionId::new("local").unwrap(),
                location: None,
                signaling_url: format!("ws://{id}"),
                media_addresses: Vec::new(),
                turn_urls: Vec::new(),
                capacity,
                max_participants_per_room: capacity,
                cascade_addr: None,
            },
            instance: Some("instance".into()),
            at_ms: 0,
        })
        .unwrap();
    state
}

fn ada() -> HostName {
    HostName::new("ada").unwrap()
}

fn add_ada(state: &mut ControlState) {
    state
        .apply(Command::Hosts(HostCommand::AddUser {
            name: ada(),
            password_hash: "$argon2id$stand-in".into(),
            at_ms: 1_000,
        }))
        .unwrap();
}

fn invite(state: &mut ControlState, id: &str, room: &str, expires_at_ms: u64, max_uses: Option<u32>) {
    state
        .apply(Command::Hosts(HostCommand::CreateInvite {
            sso: false,
            id: id.into(),
            room: RoomId::new(room).unwrap(),
            by: ada(),
            generation: 1,
            expires_at_ms,
            max_uses,
        }))
        .unwrap();
}

#[test]
fn accounts_are_added_once_and_a_new_password_ends_older_logins() {
    let mut state = ControlState::default();
    add_ada(&mut state);
    assert_eq!(
        state.apply(Command::Hosts(HostCommand::AddUser {
            name: ada(),
            password_hash: "x".into(),
            at_ms: 2_000,
        })),
        Err(ApplyError::UserExists(ada()))
    );
    state
        .apply(Command::Hosts(HostCommand::SetPassword {
            name: ada(),
            password_hash: "$argon2id$other".into(),
            at_ms: 3_000,
        }))
        .unwrap();
    assert_eq!(state.hosts[&ada()].generation, 2);
    // A session from generation 1 can no longer mint invites.
    assert_eq!(
        state.apply(Command::Hosts(HostCommand::CreateInvite {
            sso: false,
            id: "i".into(),
            room: RoomId::new("r").unwrap(),
            by: ada(),
            generation: 1,
            expires_at_ms: 10_000,
            max_uses: None,
        })),
        Err(ApplyError::LoginEnded)
    );
    state
        .apply(Command::Hosts(HostCommand::RemoveUser { name: ada() }))
        .unwrap();
    assert!(state.hosts.is_empty());
    assert_eq!(
        state.apply(Command::Hosts(HostCommand::RemoveUser { name: ada() })),
        Err(ApplyError::UnknownUser(ada()))
    );
}

#[test]
fn an_invite_skips_the_lobby_until_it_is_used_up_or_expired() {
    let mut state = state_with_bridge("b1", 100);
    add_ada(&mut state);
    // A room with a lobby, opened by its moderator.
    let opener = JoinRequestRecord {
        role: Role::Moderator,
        ..request("r", "host", "b1", 1_000)
    };
    state.apply(Command::Join(opener)).unwrap();
    state
        .apply(Command::UpdateSettings {
            room: RoomId::new("r").unwrap(),
            by: pid("host"),
            password: None,
            lobby_enabled: Some(true),
        })
        .unwrap();
    invite(&mut state, "twice", "r", 60_000, Some(2));
    let with_invite = |participant: &str, invite: &str, at_ms: u64| JoinRequestRecord {
        invite: Some(invite.into()),
        ..request("r", participant, "b1", at_ms)
    };
    for guest in ["g1", "g2"] {
        assert!(matches!(
            state.apply(Command::Join(with_invite(guest, "twice", 2_000))),
            Ok(Outcome::Placed { .. })
        ));
    }
    assert_eq!(
        state.apply(Command::Join(with_invite("g3", "twice", 2_000))),
        Err(ApplyError::InviteUsedUp)
    );
    // Without an invite: the lobby.
    assert!(matches!(
        state.apply(Command::Join(request("r", "g4", "b1", 2_000))),
        Ok(Outcome::InLobby { .. })
    ));
    // Expired, for another room, unknown.
    invite(&mut state, "short", "r", 5_000, None);
    assert_eq!(
        state.apply(Command::Join(with_invite("g5", "short", 5_000))),
        Err(ApplyError::InviteExpired)
    );
    invite(&mut state, "elsewhere", "other", 60_000, None);
    assert_eq!(
        state.apply(Command::Join(with_invite("g6", "elsewhere", 2_000))),
        Err(ApplyError::InviteWrongRoom)
    );
    // A tick forgets expired invites; what is left of them is an expired invite.
    state
        .apply(Command::Tick {
            now_ms: 6_000,
            room_grace_ms: 60_000,
            unconfirmed_join_ttl_ms: None,
        })
        .unwrap();
    assert!(!state.invites.contains_key("short"));
    assert_eq!(
        state.apply(Command::Join(with_invite("g7", "short", 6_000))),
        Err(ApplyError::InviteExpired)
    );
}

#[test]
fn an_invite_lets_a_guest_in_before_any_host_and_a_refused_join_spends_no_use() {
    let mut state = state_with_bridge("b1", 100);
    add_ada(&mut state);
    invite(&mut state, "once", "r", 60_000, Some(1));
    let waiting = JoinRequestRecord {
        guest_needs_moderator: true,
        ..request("r", "g1", "b1", 1_000)
    };
    assert_eq!(
        state.apply(Command::Join(waiting.clone())),
        Err(ApplyError::WaitingForModerator)
    );
    // A join refused for another reason (its bridge is gone) keeps the use.
    let invited = JoinRequestRecord {
        invite: Some("once".into()),
        ..waiting
    };
    assert!(matches!(
        state.apply(Command::Join(JoinRequestRecord {
            bridge: bridge_id("nowhere"),
            ..invited.clone()
        })),
        Err(ApplyError::UnknownBridge(_))
    ));
    assert_eq!(state.invites["once"].uses, 0);
    assert!(matches!(
        state.apply(Command::Join(invited)),
        Ok(Outcome::Placed { .. })
    ));
    assert_eq!(state.invites["once"].uses, 1);
}

#[test]
fn invites_per_room_are_bounded() {
    let mut state = ControlState::default();
    add_ada(&mut state);
    for i in 0..ROOM_INVITES_MAX {
        invite(&mut state, &format!("i{i}"), "r", 60_000, None);
    }
    assert_eq!(
        state.apply(Command::Hosts(HostCommand::CreateInvite {
            sso: false,
            id: "one-more".into(),
            room: RoomId::new("r").unwrap(),
            by: ada(),
            generation: 1,
            expires_at_ms: 60_000,
            max_uses: None,
        })),
        Err(ApplyError::TooManyInvites)
    );
}
