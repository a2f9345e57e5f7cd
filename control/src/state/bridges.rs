//! The bridge registry part of the state machine: registration, the failure detector's verdicts,
//! drains, and moving participants off a bridge that is down or drained.

use super::{
    ApplyError, BridgeRecord, BridgeStatus, ControlState, DrainRecord, Moved, Outcome, ParticipantStatus,
};
use crate::placement::choose_bridge;
use bridgemesh_proto::bridge_session::BridgeRegistration;
use bridgemesh_proto::{BridgeId, RoomId};

/// Longest URL or address a registration may carry.
const REGISTRATION_TEXT_MAX: usize = 512;
/// Most media addresses or TURN URLs one bridge may register.
const REGISTRATION_LIST_MAX: usize = 16;

fn validate(registration: &BridgeRegistration) -> Result<(), ApplyError> {
    let invalid = |what: &str| Err(ApplyError::Invalid(format!("bridge registration: {what}")));
    if !(registration.signaling_url.starts_with("ws://") || registration.signaling_url.starts_with("wss://"))
        || registration.signaling_url.len() > REGISTRATION_TEXT_MAX
    {
        return invalid("signaling_url must be a ws:// or wss:// URL");
    }
    if registration.media_addresses.len() > REGISTRATION_LIST_MAX
        || registration.turn_urls.len() > REGISTRATION_LIST_MAX
        || registration
            .media_addresses
            .iter()
            .chain(&registration.turn_urls)
            .any(|text| text.len() > REGISTRATION_TEXT_MAX)
    {
        return invalid("too many or too long media addresses or TURN URLs");
    }
    if registration.capacity == 0 || registration.max_participants_per_room == 0 {
        return invalid("capacity and max_participants_per_room must be positive");
    }
    if registration.location.is_some_and(|p| !p.is_valid()) {
        return invalid("location is not on the globe");
    }
    Ok(())
}

impl ControlState {
    pub(super) fn bridge_mut(&mut self, bridge: &BridgeId) -> Result<&mut BridgeRecord, ApplyError> {
        self.bridges
            .get_mut(bridge)
            .ok_or_else(|| ApplyError::UnknownBridge(bridge.clone()))
    }

    pub(super) fn register_bridge(
        &mut self,
        registration: BridgeRegistration,
        instance: Option<String>,
        at_ms: u64,
    ) -> Result<Outcome, ApplyError> {
        validate(&registration)?;
        let previous = self.bridges.remove(&registration.id);
        // An operator's drain outlasts restarts; a drain the bridge asked for itself (it was
        // stopping) ends when it comes back.
        let drain = previous.as_ref().and_then(|b| b.drain).filter(|d| d.by_operator);
        let status = if drain.is_some() {
            BridgeStatus::Draining
        } else {
            BridgeStatus::Up
        };
        let status_since_ms = match &previous {
            Some(b) if b.status == status => b.status_since_ms,
            _ => at_ms,
        };
        let load = previous.as_ref().map(|b| b.load).unwrap_or_default();
        if previous.as_ref().and_then(|b| b.cascade_addr) != registration.cascade_addr {
            // Every room this bridge hosts has its peers' lists to redo; see `membership_version`.
            self.membership_version += 1;
            self.cascade_addr_version += 1;
        }
        let record = BridgeRecord {
            id: registration.id.clone(),
            region: registration.region,
            signaling_url: registration.signaling_url,
            capacity: registration.capacity,
            max_participants_per_room: registration.max_participants_per_room,
            status,
            location: registration.location,
            media_addresses: registration.media_addresses,
            turn_urls: registration.turn_urls,
            cascade_addr: registration.cascade_addr,
            instance,
            load,
            drain,
            status_since_ms,
        };
        self.bridge_load.entry(record.id.clone()).or_insert(0);
        self.bridges.insert(record.id.clone(), record);
        Ok(Outcome::BridgeRegistered { status })
    }

    pub(super) fn set_bridge_status(
        &mut self,
        bridge: &BridgeId,
        status: BridgeStatus,
        at_ms: u64,
    ) -> Result<Outcome, ApplyError> {
        let record = self.bridge_mut(bridge)?;
        let current = record.status;
        let allowed = match status {
            // Back from a blip; a down bridge comes back by registering again.
            BridgeStatus::Up => matches!(current, BridgeStatus::Up | BridgeStatus::Unreachable),
            BridgeStatus::Unreachable => matches!(current, BridgeStatus::Up | BridgeStatus::Unreachable),
            BridgeStatus::Down => true,
            _ => false,
        };
        if !allowed {
            return Err(if current == BridgeStatus::Down {
                ApplyError::BridgeIsDown(bridge.clone())
            } else {
                ApplyError::Invalid(format!(
                    "bridge {bridge} cannot go from {current:?} to {status:?}"
                ))
            });
        }
        if current != status {
            record.status = status;
            record.status_since_ms = at_ms;
        }
        let moved = if status == BridgeStatus::Down {
            self.move_participants_off(bridge, at_ms)
        } else {
            Vec::new()
        };
        Ok(Outcome::BridgeStatusChanged {
            bridge: bridge.clone(),
            status,
            moved,
        })
    }

    pub(super) fn drain_bridge(
        &mut self,
        bridge: &BridgeId,
        grace_ms: u64,
        by_operator: bool,
        at_ms: u64,
    ) -> Result<Outcome, ApplyError> {
        let record = self.bridge_mut(bridge)?;
        if record.status == BridgeStatus::Down {
            return Err(ApplyError::BridgeIsDown(bridge.clone()));
        }
        let move_at_ms = at_ms.saturating_add(grace_ms);
        // A second drain may shorten the grace period, never lengthen it, and an operator's
        // drain stays an operator's.
        let drain = match record.drain {
            Some(existing) => DrainRecord {
                since_ms: existing.since_ms,
                move_at_ms: existing.move_at_ms.min(move_at_ms),
                by_operator: existing.by_operator || by_operator,
            },
            None => DrainRecord {
                since_ms: at_ms,
                move_at_ms,
                by_operator,
            },
        };
        record.drain = Some(drain);
        if record.status != BridgeStatus::Draining {
            record.status = BridgeStatus::Draining;
            record.status_since_ms = at_ms;
        }
        let moved = if drain.move_at_ms <= at_ms {
            self.move_participants_off(bridge, at_ms)
        } else {
            Vec::new()
        };
        Ok(Outcome::BridgeStatusChanged {
            bridge: bridge.clone(),
            status: BridgeStatus::Draining,
            moved,
        })
    }

    pub(super) fn undrain_bridge(&mut self, bridge: &BridgeId, at_ms: u64) -> Result<Outcome, ApplyError> {
        let record = self.bridge_mut(bridge)?;
        record.drain = None;
        if record.status == BridgeStatus::Draining {
            record.status = BridgeStatus::Up;
            record.status_since_ms = at_ms;
        }
        Ok(Outcome::BridgeStatusChanged {
            bridge: bridge.clone(),
            status: record.status,
            moved: Vec::new(),
        })
    }

    pub(super) fn forget_bridge(&mut self, bridge: &BridgeId) -> Result<Outcome, ApplyError> {
        if !self.bridges.contains_key(bridge) {
            return Err(ApplyError::UnknownBridge(bridge.clone()));
        }
        if self.bridge_load.get(bridge).copied().unwrap_or(0) > 0 {
            return Err(ApplyError::BridgeInUse(bridge.clone()));
        }
        self.bridges.remove(bridge);
        self.bridge_load.remove(bridge);
        Ok(Outcome::BridgeForgotten)
    }

    /// Counts one more participant of `room` on `bridge`, for its capacity, for placement's burst
    /// correction and for the room's cascade membership.
    pub(super) fn take_seat(&mut self, room: &RoomId, bridge: &BridgeId) {
        *self.bridge_load.entry(bridge.clone()).or_insert(0) += 1;
        if let Some(record) = self.bridges.get_mut(bridge) {
            record.load.placed_since_report = record.load.placed_since_report.saturating_add(1);
        }
        self.note_membership_change(room);
    }

    /// Places every participant seated on `bridge` somewhere else, in a fixed order (rooms, then
    /// participants, by id) so that every replica moves them the same way. Participants of one
    /// room follow the first of them that moved, as placement prefers a bridge hosting the room.
    /// Those for whom no bridge has a seat are removed; their clients join again.
    pub(super) fn move_participants_off(&mut self, bridge: &BridgeId, now_ms: u64) -> Vec<Moved> {
        let seated: Vec<_> = self
            .rooms
            .iter()
            .flat_map(|(room, record)| {
                record
                    .participants
                    .iter()
                    .filter(|(_, p)| p.status.on_bridge() && p.bridge.as_ref() == Some(bridge))
                    .map(move |(id, _)| (room.clone(), id.clone()))
            })
            .collect();
        let mut moved = Vec::with_capacity(seated.len());
        for (room, participant) in seated {
            self.release_seat(&room, &participant);
            let client = self.rooms[&room].participants[&participant].client.clone();
            let to = choose_bridge(self, &room, &client, Some(bridge));
            match &to {
                Some(to) => {
                    self.take_seat(&room, to);
                    let record = self
                        .rooms
                        .get_mut(&room)
                        .and_then(|r| r.participants.get_mut(&participant))
                        .expect("listed above");
                    record.bridge = Some(to.clone());
                    // Placed again: the new bridge confirms when the client arrives, or the
                    // placement expires like any unconfirmed one.
                    record.status = ParticipantStatus::Placed;
                    record.since_ms = now_ms;
                    record.dropped = false;
                }
                None => {
                    // The seat was already released above.
                    self.participant_rooms.remove(&participant);
                    if let Some(record) = self.rooms.get_mut(&room) {
                        record.participants.remove(&participant);
                    }
                    self.note_if_empty(&room, now_ms);
                }
            }
            moved.push(Moved {
                room,
                participant,
                from: bridge.clone(),
                to,
            });
        }
        moved
    }
}
