//! Control's hub on the simulated leader: the real [`HubEngine`], fed by the simulated bridges'
//! sessions (registrations, heartbeats carrying their load, closes) and clients' loss reports on
//! virtual time; its proposals go through the consensus model and its results come back to it.
//! Its `room_bridges` reach the bridges over their sessions, and the `move`s its reconcile sends
//! a returning bridge reach that bridge.
//!
//! A new leader is a new process: the engine is made anew at each election (its generation
//! tells the results of the old one's proposals from the new one's).

use super::*;
use bridgemesh_control::hub_engine::{HubEngine, HubOutput, LossReport, ProposalId};
use bridgemesh_proto::bridge_session::{BridgeToControl, HostedParticipant};

impl World {
    /// A new leader's engine: it has heard from no bridge yet.
    pub(super) fn new_hub(&mut self) {
        self.hub = HubEngine::new(self.hub.config().clone());
        self.hub_generation += 1;
        self.hub_sessions.clear();
        for bridge in &mut self.bridges {
            bridge.hub_session = None;
        }
        self.hub.handle_leadership(self.now_ms, true, None, &self.state);
        self.flush_hub();
    }

    /// The bridge's session reaches the leader and says `register`, listing what it hosts.
    pub(super) fn open_hub_session(&mut self, bridge: usize) {
        if let Some(old) = self.bridges[bridge].hub_session.take() {
            self.hub_sessions.remove(&old);
        }
        let session = self.hub.open_session();
        self.bridges[bridge].hub_session = Some(session);
        self.hub_sessions.insert(session, bridge);
        let participants = self
            .participants
            .iter()
            .filter(|p| p.active && p.hosted_on == Some(bridge))
            .map(|p| HostedParticipant {
                room: p.room.clone(),
                participant: p.id.clone(),
            })
            .collect();
        let b = &self.bridges[bridge];
        let register = BridgeToControl::Register {
            bridge: b.registration.clone(),
            instance: b.instance.to_string(),
            participants,
            load: self.load_of(bridge),
        };
        let id = b.id.clone();
        self.hub.handle_register(self.now_ms, session, &id, register);
        self.flush_hub();
    }

    /// The bridge's session ended as control sees it.
    pub(super) fn close_hub_session(&mut self, bridge: usize) {
        if let Some(session) = self.bridges[bridge].hub_session.take() {
            self.hub_sessions.remove(&session);
            self.hub.handle_session_closed(self.now_ms, session);
            self.flush_hub();
        }
    }

    /// A heartbeat from `bridge`, heard at control at `heard_ms` (its latency from now).
    pub(super) fn hub_heartbeat(&mut self, bridge: usize, heard_ms: u64) {
        if let Some(session) = self.bridges[bridge].hub_session {
            let load = self.load_of(bridge);
            self.hub
                .handle_message(heard_ms, session, BridgeToControl::Heartbeat { load });
            self.flush_hub();
        }
    }

    pub(super) fn hub_loss_report(&mut self, lost: usize, participant: usize) {
        let p = &self.participants[participant];
        let report = LossReport {
            room: p.room.clone(),
            participant: p.id.clone(),
            bridge: self.bridges[lost].id.clone(),
        };
        self.hub.handle_loss_report(self.now_ms, &report);
    }

    pub(super) fn hub_tick(&mut self) {
        self.hub.handle_tick(self.now_ms, &self.state);
        self.flush_hub();
    }

    pub(super) fn hub_committed(
        &mut self,
        generation: u64,
        id: ProposalId,
        result: &Result<Outcome, ApplyError>,
    ) {
        if generation == self.hub_generation {
            self.hub
                .handle_committed(self.now_ms, id, Ok(result.clone()), &self.state);
            self.flush_hub();
        }
    }

    /// Carries out what the engine decided.
    fn flush_hub(&mut self) {
        while let Some(output) = self.hub.poll_output() {
            match output {
                HubOutput::Propose { id, command } => {
                    let generation = self.hub_generation;
                    self.propose(command, Then::Hub { generation, id });
                }
                HubOutput::Send { session, message } => {
                    let Some(&bridge) = self.hub_sessions.get(&session) else {
                        continue;
                    };
                    self.bridge_hears(bridge, message);
                }
                HubOutput::Registered { session, messages } => {
                    let Some(&bridge) = self.hub_sessions.get(&session) else {
                        continue;
                    };
                    let rooms = messages
                        .into_iter()
                        .filter(|m| matches!(m, ControlToBridge::RoomBridges { .. }))
                        .filter_map(|message| match self.membership_update(message) {
                            MembershipUpdate::Room(room, peers) => Some((room, peers)),
                            MembershipUpdate::Full(_) => None,
                        })
                        .collect();
                    self.tell_bridge(bridge, MembershipUpdate::Full(rooms));
                }
                HubOutput::Close { session, .. } => {
                    let Some(bridge) = self.hub_sessions.remove(&session) else {
                        continue;
                    };
                    self.hub_session_closed_by_control(bridge);
                }
            }
        }
    }

    /// Control closed the bridge's session (silent too long, or its registration refused): the
    /// bridge opens a new one when control is reachable, else when the partition heals.
    fn hub_session_closed_by_control(&mut self, bridge: usize) {
        self.bridges[bridge].hub_session = None;
        let b = &self.bridges[bridge];
        if !b.alive || !std::mem::take(&mut self.bridges[bridge].session_up) {
            return;
        }
        let region = self.bridges[bridge].region;
        if self.control_reachable(region) {
            let lat = self.latency(region, self.control_region);
            self.schedule(self.now_ms + 2 * lat, Event::Reregistered { bridge });
        }
    }

    /// What a bridge does with a message on its session. The simulated bridges act on
    /// membership and on `move`; what else control tells them the model does not need (moves
    /// of a down or drained bridge's participants are carried by the outcome, see `moved`).
    fn bridge_hears(&mut self, bridge: usize, message: ControlToBridge) {
        match message {
            ControlToBridge::RoomBridges { .. } => {
                let update = self.membership_update(message);
                self.tell_bridge(bridge, update);
            }
            ControlToBridge::Move { participant, .. } => {
                let Some(&participant) = self.participant_index.get(&participant) else {
                    return;
                };
                if !self.participants[participant].active
                    || self.participants[participant].hosted_on != Some(bridge)
                {
                    return;
                }
                let lat = self.latency(self.control_region, self.bridges[bridge].region);
                self.schedule(self.now_ms + lat, Event::MoveArrives { participant, bridge });
            }
            _ => {}
        }
    }

    /// What the bridge's heartbeats and registration say of its load.
    fn load_of(&self, bridge: usize) -> LoadReport {
        let b = &self.bridges[bridge];
        let stress = b.hosted as f64 / f64::from(b.capacity.max(1));
        LoadReport {
            participants: b.hosted as u32,
            cpu: stress * 0.8,
            packets_per_s: 0.0,
            stress,
        }
    }
}
