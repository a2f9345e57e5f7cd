//! Control's side: messages on the bridges' sessions and committing proposed commands.

use super::*;

impl World {
    pub(super) fn membership_update(&self, message: ControlToBridge) -> MembershipUpdate {
        match message {
            ControlToBridge::RoomBridges { room, peers } => MembershipUpdate::Room(
                room,
                peers
                    .iter()
                    .filter_map(|peer| self.bridge_index.get(&peer.bridge).copied())
                    .collect(),
            ),
            other => unreachable!("the hub's membership sends only room_bridges, not {other:?}"),
        }
    }

    /// Sends on the bridge's session; lost when there is none.
    pub(super) fn tell_bridge(&mut self, bridge: usize, update: MembershipUpdate) {
        let b = &self.bridges[bridge];
        if !b.alive || !b.session_up {
            return;
        }
        let instance = b.instance;
        let lat = self.latency(self.control_region, b.region);
        let at = (self.now_ms + lat).max(self.bridges[bridge].session_arrival_ms);
        self.bridges[bridge].session_arrival_ms = at;
        self.schedule(
            at,
            Event::Membership {
                bridge,
                instance,
                update: Box::new(update),
            },
        );
    }

    pub(super) fn commit(&mut self, command: Command, then: Then) {
        let result = self.state.apply(command);
        match then {
            Then::Join { participant, attempt } => match result {
                Ok(Outcome::Placed { bridge, .. }) => {
                    if !self
                        .network
                        .reaches(self.control_region, self.participants[participant].region)
                    {
                        self.answer_lost(participant);
                        return;
                    }
                    self.joins_ok += 1;
                    self.participants[participant].acked = true;
                    let b = self.bridge_index[&bridge];
                    self.send_to_bridge(participant, b);
                }
                Err(err) if err.is_placement_race() && attempt < JOIN_ATTEMPTS => {
                    self.schedule(
                        self.now_ms,
                        Event::JoinAtControl {
                            participant,
                            attempt: attempt + 1,
                        },
                    );
                }
                Err(err) => self.join_failed(participant, &format!("{err}"), true),
                Ok(other) => self.join_failed(participant, &format!("unexpected {other:?}"), true),
            },
            Then::Hub { generation, id } => {
                if let Ok(outcome) = &result {
                    self.applied(outcome);
                }
                self.hub_committed(generation, id, &result);
            }
            Then::Nothing => {
                if let Ok(outcome) = &result {
                    self.applied(outcome);
                }
            }
        }
    }

    /// What an outcome moved: its participants' bridges tell them to go.
    fn applied(&mut self, outcome: &Outcome) {
        match outcome {
            Outcome::BridgeStatusChanged { moved, status, .. } => {
                if *status == BridgeStatus::Down {
                    self.bridges_declared_down += 1;
                }
                self.moved(moved);
            }
            Outcome::Ticked { moved, .. } => self.moved(moved),
            _ => {}
        }
    }
}
