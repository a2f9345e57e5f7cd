//! The hub engine on virtual time: each test feeds it events at chosen instants and commits its
//! proposals against a real [`ControlState`], as the driver does through openraft.

use super::*;
use crate::state::{BridgeStatus, JoinRequestRecord, ParticipantStatus};
use bridgemesh_proto::RegionId;
use bridgemesh_proto::bridge_session::{BridgeRegistration, BridgeToControl};

const T0: u64 = 1_000_000;

fn bid(name: &str) -> BridgeId {
    BridgeId::new(name).unwrap()
}

fn room(name: &str) -> RoomId {
    RoomId::new(name).unwrap()
}

fn pid(name: &str) -> ParticipantId {
    ParticipantId::new(name).unwrap()
}

fn registration(id: &str, port: u16) -> BridgeRegistration {
    BridgeRegistration {
        id: bid(id),
        region: RegionId::new("eu").unwrap(),
        location: None,
        signaling_url: format!("ws://{id}"),
        media_addresses: vec![],
        turn_urls: vec![],
        capacity: 10,
        max_participants_per_room: 10,
        cascade_addr: Some(format!("127.0.0.1:{port}").parse().unwrap()),
    }
}

fn load(stress: f64) -> LoadReport {
    LoadReport {
        stress,
        ..LoadReport::default()
    }
}

/// One leading engine, the replicated state it reads, and the outputs it gave that are not
/// proposals (those are committed as they come).
struct Hub {
    engine: HubEngine,
    state: ControlState,
    now: u64,
    /// Every command committed, in order.
    committed: Vec<Command>,
    /// Proposals held back by [`Hub::hold`], in order.
    held: Vec<(ProposalId, Command)>,
    holding: bool,
}

impl Hub {
    fn leading() -> Self {
        let mut hub = Self {
            engine: HubEngine::new(HubConfig::default()),
            state: ControlState::default(),
            now: T0,
            committed: Vec::new(),
            held: Vec::new(),
            holding: false,
        };
        hub.engine.handle_leadership(T0, true, None, &hub.state);
        hub.settle();
        hub
    }

    /// Commits what the engine proposed (unless held) and returns its other outputs.
    fn settle(&mut self) -> Vec<HubOutput> {
        let mut others = Vec::new();
        while let Some(output) = self.engine.poll_output() {
            match output {
                HubOutput::Propose { id, command } if self.holding => self.held.push((id, command)),
                HubOutput::Propose { id, command } => self.commit(id, command),
                other => others.push(other),
            }
        }
        others
    }

    fn commit(&mut self, id: ProposalId, command: Command) {
        self.committed.push(command.clone());
        let result = self.state.apply(command);
        if let Ok(outcome) = &result {
            self.engine.handle_applied(outcome);
        }
        self.engine
            .handle_committed(self.now, id, Ok(result), &self.state);
    }

    fn release_held(&mut self) -> Vec<HubOutput> {
        self.holding = false;
        for (id, command) in std::mem::take(&mut self.held) {
            self.commit(id, command);
        }
        self.settle()
    }

    fn connect(
        &mut self,
        bridge: &str,
        port: u16,
        hosted: Vec<HostedParticipant>,
    ) -> (SessionId, Vec<HubOutput>) {
        let session = self.engine.open_session();
        let register = BridgeToControl::Register {
            bridge: registration(bridge, port),
            instance: format!("{bridge}-process"),
            participants: hosted,
            load: load(0.1),
        };
        self.engine
            .handle_register(self.now, session, &bid(bridge), register);
        (session, self.settle())
    }

    fn message(&mut self, session: SessionId, message: BridgeToControl) -> Vec<HubOutput> {
        self.engine.handle_message(self.now, session, message);
        self.settle()
    }

    fn heartbeat(&mut self, session: SessionId, stress: f64) -> Vec<HubOutput> {
        self.message(session, BridgeToControl::Heartbeat { load: load(stress) })
    }

    fn tick_to(&mut self, until: u64, heartbeats: &[SessionId]) -> Vec<HubOutput> {
        let mut out = Vec::new();
        while self.now < until {
            self.now = (self.now + HUB_TICK_MS).min(until);
            if self
                .now
                .is_multiple_of(self.engine.config().heartbeat_interval_ms)
            {
                for &session in heartbeats {
                    out.extend(self.heartbeat(session, 0.1));
                }
            }
            self.engine.handle_tick(self.now, &self.state);
            out.extend(self.settle());
        }
        out
    }

    fn join(&mut self, room_name: &str, participant: &str, bridge: &str) {
        self.state
            .apply(Command::Join(JoinRequestRecord::guest(
                room(room_name),
                pid(participant),
                bid(bridge),
                self.now,
            )))
            .unwrap();
    }

    fn participant(
        &self,
        room_name: &str,
        participant: &str,
    ) -> Option<(ParticipantStatus, Option<BridgeId>)> {
        let p = self
            .state
            .rooms
            .get(&room(room_name))?
            .participants
            .get(&pid(participant))?;
        Some((p.status, p.bridge.clone()))
    }

    fn status_commands(&self) -> Vec<(BridgeId, BridgeStatus)> {
        self.committed
            .iter()
            .filter_map(|c| match c {
                Command::SetBridgeStatus { bridge, status, .. } => Some((bridge.clone(), *status)),
                _ => None,
            })
            .collect()
    }

    fn load_commits(&self) -> usize {
        self.committed
            .iter()
            .filter(|c| matches!(c, Command::ReportLoad { .. }))
            .count()
    }
}

fn hosted(room_name: &str, participant: &str) -> HostedParticipant {
    HostedParticipant {
        room: room(room_name),
        participant: pid(participant),
    }
}

fn sent_to(outputs: &[HubOutput], session: SessionId) -> Vec<ControlToBridge> {
    outputs
        .iter()
        .filter_map(|o| match o {
            HubOutput::Send { session: s, message } if *s == session => Some(message.clone()),
            _ => None,
        })
        .collect()
}

fn registered_batch(outputs: &[HubOutput], session: SessionId) -> Vec<ControlToBridge> {
    outputs
        .iter()
        .find_map(|o| match o {
            HubOutput::Registered { session: s, messages } if *s == session => Some(messages.clone()),
            _ => None,
        })
        .expect("a registered batch")
}

fn closed(outputs: &[HubOutput], session: SessionId) -> Option<Option<ControlToBridge>> {
    outputs.iter().find_map(|o| match o {
        HubOutput::Close { session: s, last } if *s == session => Some(last.clone()),
        _ => None,
    })
}

#[test]
fn a_bridge_registers_and_is_told_its_rooms_then_reconciled() {
    let mut hub = Hub::leading();
    let (_b2, _) = hub.connect("b2", 2, vec![]);
    hub.join("shared", "on-b2", "b2");
    let (b1, out) = hub.connect("b1", 1, vec![hosted("shared", "on-b1"), hosted("gone", "x")]);
    let batch = registered_batch(&out, b1);
    assert!(matches!(
        batch[0],
        ControlToBridge::Registered {
            status: BridgeStatus::Up,
            ..
        }
    ));
    assert_eq!(batch.last(), Some(&ControlToBridge::RoomBridgesComplete));
    // What the bridge hosts but control does not know is ended or kicked.
    let sent = sent_to(&out, b1);
    assert!(
        sent.contains(&ControlToBridge::EndRoom { room: room("gone") }),
        "{sent:?}"
    );
    assert!(
        sent.contains(&ControlToBridge::Kick {
            room: room("shared"),
            participant: pid("on-b1")
        }),
        "{sent:?}"
    );

    // A participant placed on b1 that b1 reports hosting at its next registration is confirmed.
    hub.join("shared", "on-b1", "b1");
    let (b1_again, out) = hub.connect("b1", 1, vec![hosted("shared", "on-b1")]);
    assert_eq!(
        closed(&out, b1)
            .flatten()
            .map(|m| matches!(m, ControlToBridge::Refused { ref code, .. } if code == "replaced")),
        Some(true)
    );
    assert_eq!(
        hub.participant("shared", "on-b1"),
        Some((ParticipantStatus::Connected, Some(bid("b1"))))
    );
    // The room is shared with b2, which has a cascade address: b1 learns it at registration.
    let batch = registered_batch(&out, b1_again);
    assert!(
        batch.iter().any(|m| matches!(m, ControlToBridge::RoomBridges { room: r, peers } if *r == room("shared") && peers.iter().any(|p| p.bridge == bid("b2")))),
        "{batch:?}"
    );
}

#[test]
fn heartbeats_keep_a_bridge_up_silence_makes_it_unreachable_then_down_and_moves_its_participants() {
    let mut hub = Hub::leading();
    let (b1, _) = hub.connect("b1", 1, vec![]);
    let (b2, _) = hub.connect("b2", 2, vec![]);
    hub.join("r", "p", "b1");
    hub.message(
        b1,
        BridgeToControl::ParticipantJoined {
            room: room("r"),
            participant: pid("p"),
        },
    );
    assert_eq!(
        hub.participant("r", "p"),
        Some((ParticipantStatus::Connected, Some(bid("b1"))))
    );

    hub.tick_to(T0 + 20_000, &[b1, b2]);
    assert!(hub.status_commands().is_empty(), "heartbeats keep both up");

    // b1 falls silent.
    let silent_from = hub.now;
    hub.tick_to(silent_from + 900, &[b2]);
    assert!(hub.status_commands().is_empty(), "not yet: suspect_after is 1 s");
    hub.tick_to(silent_from + 1_300, &[b2]);
    assert_eq!(
        hub.status_commands(),
        vec![(bid("b1"), BridgeStatus::Unreachable)]
    );
    assert_eq!(
        hub.participant("r", "p").unwrap().1,
        Some(bid("b1")),
        "unreachable moves nobody"
    );

    let out = hub.tick_to(silent_from + 10_300, &[b2]);
    assert_eq!(
        hub.status_commands(),
        vec![
            (bid("b1"), BridgeStatus::Unreachable),
            (bid("b1"), BridgeStatus::Down)
        ]
    );
    assert_eq!(closed(&out, b1), Some(None), "the silent session is closed");
    assert_eq!(
        hub.participant("r", "p").unwrap().1,
        Some(bid("b2")),
        "down moves its participants"
    );
}

#[test]
fn a_closed_session_makes_its_bridge_unreachable_at_once_and_a_heartbeat_brings_it_back() {
    let mut hub = Hub::leading();
    let (b1, _) = hub.connect("b1", 1, vec![]);
    // Hosting someone, so it stays unreachable without corroboration instead of going down.
    hub.join("r", "p", "b1");
    hub.engine.handle_session_closed(hub.now, b1);
    hub.tick_to(T0 + 100, &[]);
    assert_eq!(
        hub.status_commands(),
        vec![(bid("b1"), BridgeStatus::Unreachable)]
    );
    let (b1, _) = hub.connect("b1", 1, vec![]);
    hub.tick_to(T0 + 400, &[b1]);
    assert_eq!(hub.state.bridges[&bid("b1")].status, BridgeStatus::Up);
}

#[test]
fn load_reports_are_committed_first_on_a_step_and_when_old() {
    let mut hub = Hub::leading();
    let (b1, _) = hub.connect("b1", 1, vec![]);
    assert_eq!(hub.load_commits(), 1, "the registration's load");
    for i in 1..=4 {
        hub.now = T0 + i * 250;
        hub.heartbeat(b1, 0.1);
    }
    assert_eq!(hub.load_commits(), 1, "unchanged load within a second");
    hub.now = T0 + 1_250;
    hub.heartbeat(b1, 0.5);
    assert_eq!(hub.load_commits(), 2, "a step after a second");
    hub.now = T0 + 1_500;
    hub.heartbeat(b1, 0.9);
    assert_eq!(hub.load_commits(), 2, "too soon after the last");
    hub.now = T0 + 6_250;
    hub.heartbeat(b1, 0.5);
    assert_eq!(hub.load_commits(), 3, "five seconds old");
    assert_eq!(hub.state.bridges[&bid("b1")].load.stress, 0.5);
}

/// A new leader gives a bridge it has not heard from `leader_grace_ms`, not `suspect_after_ms`;
/// then it is unreachable, and down after `down_after_ms`.
#[test]
fn a_new_leader_gives_unheard_bridges_a_grace() {
    let mut hub = Hub::leading();
    hub.connect("b1", 1, vec![]);
    let mut follower = Hub {
        engine: HubEngine::new(HubConfig::default()),
        state: hub.state.clone(),
        now: T0 + 1_000,
        committed: Vec::new(),
        held: Vec::new(),
        holding: false,
    };
    follower
        .engine
        .handle_leadership(follower.now, true, None, &follower.state);
    follower.settle();
    follower.tick_to(T0 + 1_000 + 4_900, &[]);
    assert!(follower.status_commands().is_empty(), "within the grace");
    follower.tick_to(T0 + 1_000 + 5_100, &[]);
    // Hosting nobody, it is down as soon as it is unreachable.
    assert_eq!(
        follower.status_commands(),
        vec![
            (bid("b1"), BridgeStatus::Unreachable),
            (bid("b1"), BridgeStatus::Down)
        ]
    );

    // A bridge whose session reaches the new leader within the grace is never suspected.
    let mut other = Hub {
        engine: HubEngine::new(HubConfig::default()),
        state: hub.state.clone(),
        now: T0 + 1_000,
        committed: Vec::new(),
        held: Vec::new(),
        holding: false,
    };
    other
        .engine
        .handle_leadership(other.now, true, None, &other.state);
    other.tick_to(T0 + 3_000, &[]);
    let (b1, _) = other.connect("b1", 1, vec![]);
    other.tick_to(T0 + 12_000, &[b1]);
    assert!(
        other.status_commands().is_empty(),
        "{:?}",
        other.status_commands()
    );
}

#[test]
fn loss_reports_cut_a_new_leaders_grace_short() {
    let mut hub = Hub::leading();
    let (b1, _) = hub.connect("b1", 1, vec![]);
    hub.connect("b2", 2, vec![]);
    for p in ["p1", "p2", "p3"] {
        hub.join("r", p, "b1");
        hub.message(
            b1,
            BridgeToControl::ParticipantJoined {
                room: room("r"),
                participant: pid(p),
            },
        );
    }
    let mut leader = Hub {
        engine: HubEngine::new(HubConfig::default()),
        state: hub.state.clone(),
        now: T0 + 1_000,
        committed: Vec::new(),
        held: Vec::new(),
        holding: false,
    };
    leader
        .engine
        .handle_leadership(leader.now, true, None, &leader.state);
    leader.tick_to(T0 + 1_200, &[]);
    for p in ["p1", "p2"] {
        let report = LossReport {
            room: room("r"),
            participant: pid(p),
            bridge: bid("b1"),
        };
        leader.engine.handle_loss_report(leader.now, &report);
        assert_eq!(
            leader.engine.loss_verdict(&report, leader.now, &leader.state),
            None
        );
    }
    leader.tick_to(T0 + 1_300, &[]);
    assert!(
        leader
            .status_commands()
            .contains(&(bid("b1"), BridgeStatus::Down)),
        "two reports condemn b1 long before the grace ends: {:?}",
        leader.status_commands()
    );
    let report = LossReport {
        room: room("r"),
        participant: pid("p1"),
        bridge: bid("b1"),
    };
    assert_eq!(
        leader.engine.loss_verdict(&report, T0 + 1_200, &leader.state),
        Some(LossVerdict::Moved)
    );
}

#[test]
fn a_loss_report_about_a_bridge_still_heard_from_is_answered_alive() {
    let mut hub = Hub::leading();
    let (b1, _) = hub.connect("b1", 1, vec![]);
    hub.join("r", "p", "b1");
    let report = LossReport {
        room: room("r"),
        participant: pid("p"),
        bridge: bid("b1"),
    };
    let at = hub.now;
    hub.engine.handle_loss_report(at, &report);
    assert_eq!(hub.engine.loss_verdict(&report, at, &hub.state), None);
    hub.tick_to(at + 250, &[b1]);
    assert_eq!(
        hub.engine.loss_verdict(&report, at, &hub.state),
        Some(LossVerdict::Alive)
    );
}

#[test]
fn a_bridge_that_drains_is_committed_draining() {
    let mut hub = Hub::leading();
    let (b1, _) = hub.connect("b1", 1, vec![]);
    hub.message(b1, BridgeToControl::Drain { grace_ms: 30_000 });
    assert!(
        hub.committed
            .iter()
            .any(|c| matches!(c, Command::Drain { bridge, grace_ms: 30_000, by_operator: false, .. } if *bridge == bid("b1")))
    );
    assert_eq!(hub.state.bridges[&bid("b1")].status, BridgeStatus::Draining);
}

#[test]
fn a_bridges_events_are_committed_in_order_one_at_a_time() {
    let mut hub = Hub::leading();
    let (b1, _) = hub.connect("b1", 1, vec![]);
    hub.join("r", "p", "b1");
    hub.holding = true;
    hub.message(
        b1,
        BridgeToControl::ParticipantJoined {
            room: room("r"),
            participant: pid("p"),
        },
    );
    hub.message(
        b1,
        BridgeToControl::ParticipantLeft {
            room: room("r"),
            participant: pid("p"),
            dropped: false,
        },
    );
    assert_eq!(hub.held.len(), 1, "the leave waits for the confirm");
    assert!(matches!(hub.held[0].1, Command::Confirm { .. }));
    hub.release_held();
    // The confirm's result let the leave through; commit it too.
    hub.release_held();
    let kinds: Vec<&str> = hub
        .committed
        .iter()
        .filter_map(|c| match c {
            Command::Confirm { .. } => Some("confirm"),
            Command::Leave { .. } => Some("leave"),
            _ => None,
        })
        .collect();
    assert_eq!(kinds, ["confirm", "leave"]);
    assert_eq!(hub.participant("r", "p"), None);
}

#[test]
fn a_joined_event_for_a_participant_moved_elsewhere_tells_the_bridge_to_move_it() {
    let mut hub = Hub::leading();
    let (b1, _) = hub.connect("b1", 1, vec![]);
    hub.connect("b2", 2, vec![]);
    hub.join("r", "p", "b2");
    let out = hub.message(
        b1,
        BridgeToControl::ParticipantJoined {
            room: room("r"),
            participant: pid("p"),
        },
    );
    assert_eq!(
        sent_to(&out, b1),
        vec![ControlToBridge::Move {
            room: room("r"),
            participant: pid("p")
        }]
    );
    let out = hub.message(
        b1,
        BridgeToControl::ParticipantJoined {
            room: room("gone"),
            participant: pid("q"),
        },
    );
    assert_eq!(
        sent_to(&out, b1),
        vec![ControlToBridge::EndRoom { room: room("gone") }]
    );
}

#[test]
fn kicks_mutes_and_ended_rooms_reach_the_right_bridge() {
    let mut hub = Hub::leading();
    let (b1, _) = hub.connect("b1", 1, vec![]);
    let (b2, _) = hub.connect("b2", 2, vec![]);
    hub.engine.handle_applied(&Outcome::Kicked {
        room: room("r"),
        participant: pid("p"),
        bridge: Some(bid("b2")),
    });
    let out = hub.settle();
    assert!(sent_to(&out, b1).is_empty());
    assert_eq!(
        sent_to(&out, b2),
        vec![ControlToBridge::Kick {
            room: room("r"),
            participant: pid("p")
        }]
    );
    hub.engine.handle_applied(&Outcome::RoomEnded {
        room: room("r"),
        participants: vec![(pid("a"), Some(bid("b1"))), (pid("b"), Some(bid("b1")))],
    });
    let out = hub.settle();
    assert_eq!(
        sent_to(&out, b1),
        vec![ControlToBridge::EndRoom { room: room("r") }]
    );
    assert!(sent_to(&out, b2).is_empty());

    assert!(hub.engine.request_mute(&bid("b1"), &room("r"), &pid("a")));
    assert!(!hub.engine.request_mute(&bid("nowhere"), &room("r"), &pid("a")));
    let out = hub.settle();
    assert_eq!(
        sent_to(&out, b1),
        vec![ControlToBridge::RequestMute {
            room: room("r"),
            participant: pid("a")
        }]
    );
}

#[test]
fn a_follower_refuses_sessions_and_losing_leadership_closes_them() {
    let mut hub = Hub::leading();
    let (b1, _) = hub.connect("b1", 1, vec![]);
    let url = Some("wss://other/leader".to_string());
    hub.engine
        .handle_leadership(hub.now, false, url.clone(), &hub.state);
    let out = hub.settle();
    assert_eq!(
        closed(&out, b1),
        Some(Some(ControlToBridge::NotLeader {
            leader_url: url.clone()
        }))
    );
    let (b1, out) = hub.connect("b1", 1, vec![]);
    assert_eq!(
        closed(&out, b1),
        Some(Some(ControlToBridge::NotLeader { leader_url: url }))
    );
}

#[test]
fn a_session_registers_only_its_own_bridge_and_not_one_held_by_a_live_process() {
    let mut hub = Hub::leading();
    let session = hub.engine.open_session();
    let register = BridgeToControl::Register {
        bridge: registration("b2", 2),
        instance: "x".into(),
        participants: vec![],
        load: load(0.0),
    };
    hub.engine.handle_register(hub.now, session, &bid("b1"), register);
    let out = hub.settle();
    assert!(
        matches!(closed(&out, session), Some(Some(ControlToBridge::Refused { code, .. })) if code == "bridge_id_mismatch")
    );

    let (b1, _) = hub.connect("b1", 1, vec![]);
    hub.tick_to(hub.now + 250, &[b1]);
    let session = hub.engine.open_session();
    let register = BridgeToControl::Register {
        bridge: registration("b1", 1),
        instance: "another-process".into(),
        participants: vec![],
        load: load(0.0),
    };
    hub.engine.handle_register(hub.now, session, &bid("b1"), register);
    let out = hub.settle();
    assert!(
        matches!(closed(&out, session), Some(Some(ControlToBridge::Refused { code, .. })) if code == "bridge_id_in_use")
    );

    let session = hub.engine.open_session();
    hub.engine.handle_register(
        hub.now,
        session,
        &bid("b1"),
        BridgeToControl::Heartbeat { load: load(0.0) },
    );
    let out = hub.settle();
    assert!(
        matches!(closed(&out, session), Some(Some(ControlToBridge::Refused { code, .. })) if code == "register_expected")
    );
}

#[test]
fn a_new_leader_commits_its_placement_policy_when_the_state_differs() {
    let mut engine = HubEngine::new(HubConfig::default());
    engine.handle_leadership(T0, true, None, &ControlState::default());
    assert!(
        engine.poll_output().is_none(),
        "the default policy is already in the state"
    );
    assert_eq!(engine.poll_timeout(), 0, "a tick is due at once");
    engine.handle_tick(T0, &ControlState::default());
    assert_eq!(engine.poll_timeout(), T0 + HUB_TICK_MS);

    let placement = PlacementPolicy {
        overload_stress: 0.6,
        ..PlacementPolicy::default()
    };
    let mut engine = HubEngine::new(HubConfig {
        placement: placement.clone(),
        ..HubConfig::default()
    });
    engine.handle_leadership(T0, true, None, &ControlState::default());
    assert!(matches!(
        engine.poll_output(),
        Some(HubOutput::Propose { command: Command::SetPlacementPolicy(p), .. }) if p == placement
    ));
}
