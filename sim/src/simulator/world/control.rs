//! Control's side: the hub's cascade membership pushes to bridges and committing proposed commands.

use super::*;

impl World {
    /// Control's hub, at every poll: the `room_bridges` due since the last one go out on the
    /// bridges' sessions.
    pub(super) fn hub_push(&mut self) {
        for (id, message) in self.cascade.push.poll(&self.state) {
            let Some(&bridge) = self.bridge_index.get(&id) else {
                continue;
            };
            let update = self.membership_update(message);
            self.tell_bridge(bridge, update);
        }
    }

    /// A bridge registered: the hub sends it every room it shares (after a poll, as the hub).
    pub(super) fn registered_push(&mut self, bridge: usize) {
        self.hub_push();
        let rooms = self
            .cascade
            .push
            .room_bridges_of(&self.bridges[bridge].id)
            .into_iter()
            .filter_map(|message| match self.membership_update(message) {
                MembershipUpdate::Room(room, peers) => Some((room, peers)),
                MembershipUpdate::Full(_) => None,
            })
            .collect();
        self.tell_bridge(bridge, MembershipUpdate::Full(rooms));
    }

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
            Then::Status { bridge } => {
                self.bridges[bridge].verdict_in_flight = false;
                if let Ok(Outcome::BridgeStatusChanged { moved, status, .. }) = result {
                    if status == BridgeStatus::Down {
                        self.bridges_declared_down += 1;
                    }
                    self.moved(&moved);
                }
            }
            Then::Registered { bridge } => {
                if result.is_ok() {
                    self.registered_push(bridge);
                }
            }
            Then::Nothing => {
                if let Ok(Outcome::Ticked { moved, .. }) = result {
                    self.moved(&moved);
                }
            }
        }
    }
}
