use super::*;
use bridgemesh_proto::{BridgeId, ParticipantId, RegionId, RoomId};

const MS: Duration = Duration::from_millis(1);

fn url(name: &str) -> SessionUrl {
    SessionUrl::parse(&format!("https://{name}:7700")).unwrap()
}

fn registration() -> BridgeRegistration {
    BridgeRegistration {
        id: BridgeId::new("eu-1").unwrap(),
        region: RegionId::new("eu").unwrap(),
        location: None,
        signaling_url: "wss://eu-1.example.org:8081/bridge/v1/signal".into(),
        media_addresses: vec!["192.0.2.1:10000".into()],
        turn_urls: vec![],
        capacity: 1000,
        max_participants_per_room: 100,
        cascade_addr: None,
    }
}

fn config(nodes: &[&str]) -> ControlSessionConfig {
    ControlSessionConfig::new(
        nodes.iter().map(|n| url(n)).collect(),
        registration(),
        "instance-1".into(),
        7,
    )
}

fn hosted(room: &str, participant: &str) -> HostedParticipant {
    HostedParticipant {
        room: RoomId::new(room).unwrap(),
        participant: ParticipantId::new(participant).unwrap(),
    }
}

fn joined(room: &str, participant: &str) -> BridgeEvent {
    let HostedParticipant { room, participant } = hosted(room, participant);
    BridgeEvent::ParticipantJoined { room, participant }
}

fn left(room: &str, participant: &str) -> BridgeEvent {
    let HostedParticipant { room, participant } = hosted(room, participant);
    BridgeEvent::ParticipantLeft {
        room,
        participant,
        dropped: false,
        over: true,
    }
}

fn drain(session: &mut ControlSession) -> Vec<SessionOutput> {
    std::iter::from_fn(|| session.poll_output()).collect()
}

/// The one connection the outputs ask for, and where.
fn connect_request(outputs: &[SessionOutput]) -> (ConnectionId, SessionUrl) {
    let requests: Vec<_> = outputs
        .iter()
        .filter_map(|o| match o {
            SessionOutput::Connect { connection, url } => Some((*connection, url.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(requests.len(), 1, "{outputs:?}");
    requests[0].clone()
}

fn sent(outputs: &[SessionOutput], on: ConnectionId) -> Vec<BridgeToControl> {
    outputs
        .iter()
        .filter_map(|o| match o {
            SessionOutput::Send { connection, message } if *connection == on => Some(message.clone()),
            _ => None,
        })
        .collect()
}

fn disconnected(outputs: &[SessionOutput], connection: ConnectionId) -> bool {
    outputs.contains(&SessionOutput::Disconnect { connection })
}

fn registered(interval_ms: u64) -> ControlToBridge {
    ControlToBridge::Registered {
        heartbeat_interval_ms: interval_ms,
        status: BridgeStatus::Up,
    }
}

/// Runs the session to its next timeout (there must be one) and returns that instant.
fn advance(session: &mut ControlSession) -> Instant {
    let at = session.poll_timeout().expect("a pending timeout");
    session.handle_timeout(at);
    at
}

/// A session registered through node `a` at `t0` with a 1 s heartbeat; its connection.
fn registered_session(nodes: &[&str]) -> (ControlSession, Instant, ConnectionId) {
    let t0 = Instant::now();
    let mut session = ControlSession::new(config(nodes), t0).unwrap();
    let (connection, _) = connect_request(&drain(&mut session));
    session.handle_input(t0, SessionInput::Connected(connection));
    session.handle_input(t0, SessionInput::Message(connection, registered(1000)));
    drain(&mut session);
    assert_eq!(
        session.status(),
        &SessionStatus::Registered {
            status: BridgeStatus::Up
        }
    );
    (session, t0, connection)
}

#[test]
fn says_register_first_with_the_hosted_participants_then_heartbeats_at_controls_interval() {
    let t0 = Instant::now();
    let mut session = ControlSession::new(config(&["a", "b"]), t0).unwrap();
    let outputs = drain(&mut session);
    let (connection, to) = connect_request(&outputs);
    assert_eq!(to, url("a"));
    assert_eq!(to.as_str(), "wss://a:7700/api/v1/bridges/session");
    // A join before the socket opens is in the first register.
    session.handle_input(t0, SessionInput::Event(joined("r", "ada")));
    let load = LoadReport {
        participants: 1,
        cpu: 0.5,
        packets_per_s: 10.0,
        stress: 0.625,
    };
    session.handle_input(t0, SessionInput::Load(load));
    assert!(
        sent(&drain(&mut session), connection).is_empty(),
        "nothing before the socket opens"
    );
    session.handle_input(t0, SessionInput::Connected(connection));
    assert_eq!(
        sent(&drain(&mut session), connection),
        [BridgeToControl::Register {
            bridge: registration(),
            instance: "instance-1".into(),
            participants: vec![hosted("r", "ada")],
            load,
        }]
    );
    assert_eq!(session.status(), &SessionStatus::Connecting);
    // No heartbeat before control said how often.
    assert_eq!(
        session.poll_timeout(),
        Some(t0 + Duration::from_millis(REGISTER_TIMEOUT_MS_DEFAULT))
    );

    let t1 = t0 + 30 * MS;
    session.handle_input(t1, SessionInput::Message(connection, registered(500)));
    assert_eq!(
        drain(&mut session),
        [SessionOutput::Status(SessionStatus::Registered {
            status: BridgeStatus::Up
        })]
    );
    assert_eq!(session.poll_timeout(), Some(t1 + 500 * MS));
    session.handle_timeout(t1 + 499 * MS);
    assert!(drain(&mut session).is_empty(), "a heartbeat came early");
    for beat in 1..=6u32 {
        let at = advance(&mut session);
        assert_eq!(at, t1 + 500 * MS * beat);
        assert_eq!(
            drain(&mut session),
            [
                SessionOutput::Send {
                    connection,
                    message: BridgeToControl::Heartbeat { load }
                },
                SessionOutput::Ping { connection }
            ]
        );
        session.handle_input(at + MS, SessionInput::Pong(connection));
    }
    // A late wake-up sends one heartbeat, not the missed ones, and the cadence resumes.
    let late = t1 + 500 * MS * 6 + 1_200 * MS;
    session.handle_input(late - MS, SessionInput::Pong(connection));
    session.handle_timeout(late);
    assert_eq!(sent(&drain(&mut session), connection).len(), 1);
    assert_eq!(session.poll_timeout(), Some(late + 500 * MS));
}

#[test]
fn reconnects_to_the_leader_first_then_the_others_with_capped_jittered_backoff() {
    let t0 = Instant::now();
    let mut session = ControlSession::new(config(&["a", "b", "c"]), t0).unwrap();
    let (first, _) = connect_request(&drain(&mut session));
    session.handle_input(t0, SessionInput::Connected(first));
    // a is a follower and names b: b at once, no backoff.
    session.handle_input(
        t0,
        SessionInput::Message(
            first,
            ControlToBridge::NotLeader {
                leader_url: Some("https://b:7700".into()),
            },
        ),
    );
    let outputs = drain(&mut session);
    assert!(disconnected(&outputs, first));
    let (second, to) = connect_request(&outputs);
    assert_eq!(to, url("b"));
    session.handle_input(t0, SessionInput::Connected(second));
    session.handle_input(t0, SessionInput::Message(second, registered(1000)));
    drain(&mut session);

    // b drops the socket: b again (the leader last known), then a, c, b, a, c, ...
    let mut now = t0 + 10 * MS;
    session.handle_input(now, SessionInput::Disconnected(second));
    assert_eq!(
        drain(&mut session),
        [SessionOutput::Status(SessionStatus::Connecting)]
    );
    let expected_order = ["b", "a", "c", "b", "a", "c", "b", "a"];
    let ceilings_ms = [100, 200, 400, 800, 1600, 2000, 2000, 2000];
    let mut delays = Vec::new();
    for (node, ceiling_ms) in expected_order.into_iter().zip(ceilings_ms) {
        let at = advance(&mut session);
        let delay = at - now;
        assert!(
            delay >= ceiling_ms / 2 * MS && delay <= ceiling_ms * MS,
            "waited {delay:?} before trying {node}; expected {ceiling_ms} ms halved to full"
        );
        delays.push(delay);
        let (connection, to) = connect_request(&drain(&mut session));
        assert_eq!(to, url(node));
        // The connection fails a little later.
        now = at + 3 * MS;
        session.handle_input(now, SessionInput::Disconnected(connection));
        drain(&mut session);
    }
    // Jittered: the capped delays are not all the same.
    assert!(delays[5..].windows(2).any(|w| w[0] != w[1]), "{delays:?}");

    // A registration resets the backoff: the next loss waits the minimum again.
    let at = advance(&mut session);
    let (connection, to) = connect_request(&drain(&mut session));
    assert_eq!(to, url("c"));
    session.handle_input(at, SessionInput::Connected(connection));
    session.handle_input(at, SessionInput::Message(connection, registered(1000)));
    session.handle_input(at, SessionInput::Disconnected(connection));
    drain(&mut session);
    let retry_at = session.poll_timeout().unwrap();
    assert!(retry_at - at <= 100 * MS, "{:?}", retry_at - at);
    session.handle_timeout(retry_at);
    assert_eq!(
        connect_request(&drain(&mut session)).1,
        url("c"),
        "the new leader first"
    );
}

#[test]
fn the_same_seed_gives_the_same_delays() {
    let delays = || {
        let t0 = Instant::now();
        let mut session = ControlSession::new(config(&["a"]), t0).unwrap();
        let mut now = t0;
        let mut delays = Vec::new();
        for _ in 0..8 {
            let (connection, _) = connect_request(&drain(&mut session));
            session.handle_input(now, SessionInput::Disconnected(connection));
            let at = session.poll_timeout().unwrap();
            delays.push(at - now);
            session.handle_timeout(at);
            now = at;
        }
        delays
    };
    assert_eq!(delays(), delays());
}

#[test]
fn not_leader_without_a_leader_waits_and_tries_the_next_node() {
    let (mut session, t0, connection) = registered_session(&["a", "b"]);
    session.handle_input(
        t0,
        SessionInput::Message(connection, ControlToBridge::NotLeader { leader_url: None }),
    );
    let outputs = drain(&mut session);
    assert!(disconnected(&outputs, connection));
    assert!(
        outputs
            .iter()
            .all(|o| !matches!(o, SessionOutput::Connect { .. }))
    );
    assert_eq!(session.status(), &SessionStatus::Connecting);
    advance(&mut session);
    // a no longer leads, so it is not tried first.
    assert_eq!(connect_request(&drain(&mut session)).1, url("b"));
}

#[test]
fn a_leader_url_the_bridge_cannot_use_counts_as_none() {
    let (mut session, t0, connection) = registered_session(&["a", "b"]);
    session.handle_input(
        t0,
        SessionInput::Message(
            connection,
            ControlToBridge::NotLeader {
                leader_url: Some("gopher://elsewhere".into()),
            },
        ),
    );
    drain(&mut session);
    advance(&mut session);
    assert_eq!(connect_request(&drain(&mut session)).1, url("b"));
}

#[test]
fn redirects_going_round_in_circles_back_off() {
    let t0 = Instant::now();
    let mut session = ControlSession::new(config(&["a", "b"]), t0).unwrap();
    let mut outputs = drain(&mut session);
    let mut immediate = 0;
    for hop in 0..6 {
        let (connection, to) = connect_request(&outputs);
        let other = if to == url("a") { "b" } else { "a" };
        session.handle_input(t0, SessionInput::Connected(connection));
        session.handle_input(
            t0,
            SessionInput::Message(
                connection,
                ControlToBridge::NotLeader {
                    leader_url: Some(format!("wss://{other}:7700/api/v1/bridges/session")),
                },
            ),
        );
        outputs = drain(&mut session);
        if outputs.iter().any(|o| matches!(o, SessionOutput::Connect { .. })) {
            immediate += 1;
        } else {
            assert!(hop >= 3, "hop {hop} was delayed");
            assert!(session.poll_timeout().unwrap() > t0);
            advance(&mut session);
            outputs = drain(&mut session);
        }
    }
    assert_eq!(immediate, 3);
}

#[test]
fn joins_and_leaves_reach_control_once_registered_and_the_next_register_carries_the_rest() {
    let (mut session, t0, connection) = registered_session(&["a"]);
    session.handle_input(t0, SessionInput::Event(joined("r", "ada")));
    session.handle_input(t0, SessionInput::Event(joined("r", "bob")));
    session.handle_input(t0, SessionInput::Event(left("r", "ada")));
    assert_eq!(
        sent(&drain(&mut session), connection),
        [
            BridgeToControl::ParticipantJoined {
                room: RoomId::new("r").unwrap(),
                participant: ParticipantId::new("ada").unwrap()
            },
            BridgeToControl::ParticipantJoined {
                room: RoomId::new("r").unwrap(),
                participant: ParticipantId::new("bob").unwrap()
            },
            BridgeToControl::ParticipantLeft {
                room: RoomId::new("r").unwrap(),
                participant: ParticipantId::new("ada").unwrap(),
                dropped: false,
            },
        ]
    );

    // Disconnected: changes are not queued, only the hosted set changes.
    session.handle_input(t0, SessionInput::Disconnected(connection));
    for n in 0..50 {
        session.handle_input(t0, SessionInput::Event(joined("s", &format!("p-{n}"))));
        session.handle_input(t0, SessionInput::Event(left("s", &format!("p-{n}"))));
    }
    session.handle_input(t0, SessionInput::Event(joined("s", "cy")));
    session.handle_input(t0, SessionInput::Event(left("r", "bob")));
    let outputs = drain(&mut session);
    assert!(
        outputs.iter().all(|o| !matches!(o, SessionOutput::Send { .. })),
        "{outputs:?}"
    );

    let at = advance(&mut session);
    let (second, _) = connect_request(&drain(&mut session));
    session.handle_input(at, SessionInput::Connected(second));
    let outputs = drain(&mut session);
    let messages: [BridgeToControl; 1] = sent(&outputs, second).try_into().unwrap();
    let [BridgeToControl::Register { participants, .. }] = messages else {
        panic!("{outputs:?}");
    };
    assert_eq!(participants, [hosted("s", "cy")]);

    // Changes while the registration is in flight follow `registered`, once per participant.
    session.handle_input(at, SessionInput::Event(joined("t", "dee")));
    session.handle_input(at, SessionInput::Event(left("s", "cy")));
    session.handle_input(at, SessionInput::Event(joined("s", "cy")));
    session.handle_input(at, SessionInput::Event(left("s", "cy")));
    assert!(sent(&drain(&mut session), second).is_empty());
    session.handle_input(at, SessionInput::Message(second, registered(1000)));
    assert_eq!(
        sent(&drain(&mut session), second),
        [
            BridgeToControl::ParticipantLeft {
                room: RoomId::new("s").unwrap(),
                participant: ParticipantId::new("cy").unwrap(),
                dropped: true,
            },
            BridgeToControl::ParticipantJoined {
                room: RoomId::new("t").unwrap(),
                participant: ParticipantId::new("dee").unwrap()
            },
        ]
    );
    assert_eq!(
        session.hosted().cloned().collect::<Vec<_>>(),
        [hosted("t", "dee")]
    );
}

#[test]
fn the_hosted_set_is_bounded() {
    let (mut session, t0, _) = registered_session(&["a"]);
    for n in 0..REGISTER_PARTICIPANTS_MAX + 10 {
        session.handle_input(t0, SessionInput::Event(joined("r", &format!("p-{n}"))));
    }
    drain(&mut session);
    assert_eq!(session.hosted().len(), REGISTER_PARTICIPANTS_MAX);
    // Room again once someone leaves.
    session.handle_input(t0, SessionInput::Event(left("r", "p-0")));
    session.handle_input(t0, SessionInput::Event(joined("r", "late")));
    assert!(session.hosted().any(|p| *p == hosted("r", "late")));
}

#[test]
fn controls_instructions_become_actions_on_the_bridge() {
    let (mut session, t0, connection) = registered_session(&["a"]);
    let room = RoomId::new("r").unwrap();
    let bob = ParticipantId::new("bob").unwrap();
    for (message, action) in [
        (
            ControlToBridge::Move {
                room: room.clone(),
                participant: bob.clone(),
            },
            ModerationAction::Move {
                room: room.clone(),
                participant: bob.clone(),
            },
        ),
        (
            ControlToBridge::Kick {
                room: room.clone(),
                participant: bob.clone(),
            },
            ModerationAction::Kick {
                room: room.clone(),
                participant: bob.clone(),
            },
        ),
        (
            ControlToBridge::MuteAll {
                room: room.clone(),
                by: bob.clone(),
            },
            ModerationAction::RequestMuteAll {
                room: room.clone(),
                by: bob.clone(),
            },
        ),
        (
            ControlToBridge::EndRoom { room: room.clone() },
            ModerationAction::EndRoom { room: room.clone() },
        ),
    ] {
        session.handle_input(t0, SessionInput::Message(connection, message));
        assert_eq!(drain(&mut session), [SessionOutput::Moderate(action)]);
    }
    // From a connection the session has left behind: nothing.
    session.handle_input(
        t0,
        SessionInput::Message(ConnectionId(999), ControlToBridge::EndRoom { room }),
    );
    assert!(drain(&mut session).is_empty());
}

#[test]
fn rooms_listed_after_registration_are_reported_complete_once() {
    let (mut session, t0, connection) = registered_session(&["a"]);
    let shared = RoomId::new("shared").unwrap();
    let peers = vec![bridgemesh_proto::bridge_session::CascadePeer {
        bridge: BridgeId::new("b2").unwrap(),
        addr: "127.0.0.1:7710".parse().unwrap(),
    }];
    for message in [
        ControlToBridge::RoomBridges {
            room: shared.clone(),
            peers: peers.clone(),
        },
        ControlToBridge::RoomBridges {
            room: RoomId::new("alone").unwrap(),
            peers: Vec::new(),
        },
        ControlToBridge::RoomBridgesComplete,
    ] {
        session.handle_input(t0, SessionInput::Message(connection, message));
    }
    let outputs = drain(&mut session);
    assert_eq!(
        outputs.last(),
        Some(&SessionOutput::RoomBridgesComplete {
            rooms: BTreeSet::from([shared.clone()])
        }),
        "{outputs:?}"
    );
    assert!(outputs.contains(&SessionOutput::RoomBridges { room: shared, peers }));
    // A stray marker outside a registration says nothing.
    session.handle_input(
        t0,
        SessionInput::Message(connection, ControlToBridge::RoomBridgesComplete),
    );
    assert!(drain(&mut session).is_empty());
}

#[test]
fn status_changes_are_reported() {
    let (mut session, t0, connection) = registered_session(&["a"]);
    session.handle_input(
        t0,
        SessionInput::Message(
            connection,
            ControlToBridge::Status {
                status: BridgeStatus::Draining,
            },
        ),
    );
    let draining = SessionStatus::Registered {
        status: BridgeStatus::Draining,
    };
    assert_eq!(drain(&mut session), [SessionOutput::Status(draining.clone())]);
    assert_eq!(session.status(), &draining);
    // The same status again is no change.
    session.handle_input(
        t0,
        SessionInput::Message(
            connection,
            ControlToBridge::Status {
                status: BridgeStatus::Draining,
            },
        ),
    );
    assert!(drain(&mut session).is_empty());
}

#[test]
fn refused_stops_the_session_for_good() {
    let t0 = Instant::now();
    let mut session = ControlSession::new(config(&["a", "b"]), t0).unwrap();
    let (connection, _) = connect_request(&drain(&mut session));
    session.handle_input(t0, SessionInput::Connected(connection));
    session.handle_input(
        t0,
        SessionInput::Message(
            connection,
            ControlToBridge::Refused {
                code: "conflict".into(),
                message: "bridge eu-1 is registered by another live instance".into(),
            },
        ),
    );
    let refused = SessionStatus::Refused {
        code: "conflict".into(),
        message: "bridge eu-1 is registered by another live instance".into(),
    };
    let outputs = drain(&mut session);
    assert!(disconnected(&outputs, connection));
    assert!(outputs.contains(&SessionOutput::Status(refused.clone())));
    assert!(refused.is_final());
    assert_eq!(session.poll_timeout(), None);
    for input in [
        SessionInput::Disconnected(connection),
        SessionInput::Event(joined("r", "ada")),
        SessionInput::Drain { grace_ms: 0 },
        SessionInput::Close,
    ] {
        session.handle_input(t0, input);
    }
    session.handle_timeout(t0 + Duration::from_secs(3600));
    assert!(drain(&mut session).is_empty());
    assert_eq!(session.status(), &refused);
}

#[test]
fn a_registration_that_does_not_come_is_given_up_and_retried() {
    let t0 = Instant::now();
    let mut session = ControlSession::new(config(&["a", "b"]), t0).unwrap();
    let (connection, _) = connect_request(&drain(&mut session));
    session.handle_input(t0, SessionInput::Connected(connection));
    drain(&mut session);
    let at = advance(&mut session);
    assert_eq!(at, t0 + Duration::from_millis(REGISTER_TIMEOUT_MS_DEFAULT));
    assert!(disconnected(&drain(&mut session), connection));
    advance(&mut session);
    let (next, to) = connect_request(&drain(&mut session));
    assert_eq!(to, url("b"));
    // The old connection's late reports change nothing.
    session.handle_input(at, SessionInput::Disconnected(connection));
    session.handle_input(at, SessionInput::Message(connection, registered(1000)));
    assert!(drain(&mut session).is_empty());
    session.handle_input(at, SessionInput::Connected(next));
    assert!(matches!(
        sent(&drain(&mut session), next).as_slice(),
        [BridgeToControl::Register { .. }]
    ));
}

#[test]
fn a_control_node_gone_silent_is_left_but_pongs_keep_it() {
    let (mut session, t0, connection) = registered_session(&["a", "b"]);
    // Pongs every heartbeat: ten seconds without a reconnect.
    let mut now = t0;
    while now < t0 + Duration::from_secs(10) {
        now = advance(&mut session);
        assert!(!disconnected(&drain(&mut session), connection));
        session.handle_input(now + 20 * MS, SessionInput::Pong(connection));
    }
    // Then nothing: after three intervals the session gives up on it.
    let last_heard = now + 20 * MS;
    loop {
        now = advance(&mut session);
        if disconnected(&drain(&mut session), connection) {
            break;
        }
        assert!(now < last_heard + Duration::from_secs(4), "never gave up");
    }
    assert_eq!(now, last_heard + Duration::from_secs(3));
    assert_eq!(session.status(), &SessionStatus::Connecting);
    advance(&mut session);
    assert_eq!(
        connect_request(&drain(&mut session)).1,
        url("a"),
        "the leader first"
    );
}

#[test]
fn drain_is_sent_now_and_after_every_reconnect() {
    let (mut session, t0, connection) = registered_session(&["a"]);
    session.handle_input(t0, SessionInput::Drain { grace_ms: 0 });
    assert_eq!(
        sent(&drain(&mut session), connection),
        [BridgeToControl::Drain { grace_ms: 0 }]
    );
    session.handle_input(t0, SessionInput::Disconnected(connection));
    let at = advance(&mut session);
    let (second, _) = connect_request(&drain(&mut session));
    session.handle_input(at, SessionInput::Connected(second));
    session.handle_input(at, SessionInput::Message(second, registered(1000)));
    let messages = sent(&drain(&mut session), second);
    assert!(
        matches!(messages[0], BridgeToControl::Register { .. }),
        "{messages:?}"
    );
    assert_eq!(messages[1..], [BridgeToControl::Drain { grace_ms: 0 }]);
}

#[test]
fn close_ends_the_connection_and_the_session() {
    let (mut session, t0, connection) = registered_session(&["a"]);
    session.handle_input(t0, SessionInput::Close);
    assert_eq!(
        drain(&mut session),
        [
            SessionOutput::Disconnect { connection },
            SessionOutput::Status(SessionStatus::Closed)
        ]
    );
    assert_eq!(session.poll_timeout(), None);
    session.handle_input(t0, SessionInput::Event(joined("r", "ada")));
    assert!(drain(&mut session).is_empty());
}

#[test]
fn control_urls_become_session_urls() {
    for (given, expected) in [
        (
            "https://10.0.0.1:7700",
            "wss://10.0.0.1:7700/api/v1/bridges/session",
        ),
        (
            "https://10.0.0.1:7700/",
            "wss://10.0.0.1:7700/api/v1/bridges/session",
        ),
        (
            "wss://c1:7700/api/v1/bridges/session",
            "wss://c1:7700/api/v1/bridges/session",
        ),
        (
            "c1.example.org:7700",
            "wss://c1.example.org:7700/api/v1/bridges/session",
        ),
        (
            "HTTPS://[2001:db8::1]:7700",
            "wss://[2001:db8::1]:7700/api/v1/bridges/session",
        ),
        (
            "https://proxy/control/",
            "wss://proxy/control/api/v1/bridges/session",
        ),
    ] {
        assert_eq!(SessionUrl::parse(given).unwrap().as_str(), expected, "{given}");
    }
    for plain in ["http://c1:7701", "ws://c1:7701"] {
        assert_eq!(
            SessionUrl::parse(plain),
            Err(SessionUrlError::PlainText),
            "{plain}"
        );
    }
    assert!(matches!(
        SessionUrl::parse("ftp://c1"),
        Err(SessionUrlError::Scheme(_))
    ));
    assert_eq!(SessionUrl::parse("https://"), Err(SessionUrlError::NoHost));
    assert_eq!(SessionUrl::parse("https:///x"), Err(SessionUrlError::NoHost));
    for bad in [
        "https://user:pw@c1",
        "https://c1/?x=1",
        "https://c1/#x",
        "https://c 1",
    ] {
        assert_eq!(SessionUrl::parse(bad), Err(SessionUrlError::Malformed), "{bad}");
    }
    let long = format!("https://{}", "c".repeat(SESSION_URL_MAX_BYTES));
    assert_eq!(SessionUrl::parse(&long), Err(SessionUrlError::TooLong));
}

#[test]
fn configurations_are_validated() {
    assert!(config(&["a"]).validate().is_ok());
    assert_eq!(config(&[]).validate(), Err(SessionConfigError::NoControlUrls));
    let mut bad = config(&["a"]);
    bad.backoff_min_ms = 3_000;
    assert_eq!(bad.validate(), Err(SessionConfigError::Backoff));
    let mut bad = config(&["a"]);
    bad.instance.clear();
    assert_eq!(bad.validate(), Err(SessionConfigError::Instance));
    assert!(ControlSession::new(config(&[]), Instant::now()).is_err());
}
