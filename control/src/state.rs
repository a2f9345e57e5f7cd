//! The control plane's state machine: rooms, participants, bridges and assignments.
//!
//! Every change is a typed [`Command`] applied by [`ControlState::apply`], deterministically and
//! without I/O or clocks (times arrive inside commands). Decisions that need judgement or slow
//! work — which bridge a participant goes to, whether a password matches its argon2 hash — are
//! made before the command is built (see `placement.rs`, `node.rs`); the command carries what was
//! decided and `apply` re-checks what could have changed since (capacity, the password's
//! generation, who moderates). Replaying the same commands always yields the same state, which is
//! what lets the Raft log, a restarted node and the simulator all run this same code.

use crate::placement::{ClientPlace, PlacementPolicy};
use bridgemesh_proto::bridge_session::{BridgeRegistration, LoadReport};
pub use bridgemesh_proto::bridge_session::{BridgeStatus, GeoPoint};
use bridgemesh_proto::{BridgeId, ParticipantId, RegionId, RoomId};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, VecDeque};

mod bridges;
mod command;
mod ended_sessions;
mod hosts;
mod membership_log;
mod records;

pub use command::*;
pub use ended_sessions::*;
pub use hosts::*;
pub use membership_log::*;
pub use records::*;

/// A participant control placed but whose bridge has not reported it connected is forgotten after
/// this long (the ticket expired unused, or the client never made it to the bridge).
pub const UNCONFIRMED_JOIN_TTL_MS: u64 = 60_000;
/// A participant whose connection dropped (no `leave`) keeps its place this long to reconnect as
/// itself; its client asks control where to go within milliseconds of noticing, so this only
/// has to cover a client that is slow to notice or briefly offline.
pub const RECONNECT_GRACE_MS: u64 = 20_000;
/// A guest waiting in a lobby nobody answers is dropped after this long.
pub const LOBBY_WAIT_MAX_MS: u64 = 15 * 60_000;
/// Denied and kicked participants are remembered this long, so that the waiting client and the
/// bridge can learn what happened to them, then forgotten.
pub const OUTCOME_MEMORY_MS: u64 = 120_000;
/// Proposals whose results are remembered, so a retried proposal is answered, not applied twice.
pub const REMEMBERED_PROPOSALS_MAX: usize = 20_000;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ControlState {
    pub rooms: BTreeMap<RoomId, RoomRecord>,
    pub bridges: BTreeMap<BridgeId, BridgeRecord>,
    /// Participants holding a seat on each bridge.
    pub bridge_load: BTreeMap<BridgeId, u32>,
    /// Which room each participant is in: an index over `rooms` so a join checks for a duplicate
    /// id without visiting every room.
    pub participant_rooms: BTreeMap<ParticipantId, RoomId>,
    /// Results of the last [`REMEMBERED_PROPOSALS_MAX`] proposals, oldest first in the order.
    #[serde(with = "map_as_pairs")]
    pub proposal_results: BTreeMap<ProposalId, Result<Outcome, ApplyError>>,
    pub proposal_order: VecDeque<ProposalId>,
    /// The latest time a tick brought (the leader's clock); 0 before the first tick.
    pub clock_ms: u64,
    #[serde(default)]
    pub placement: PlacementPolicy,
    /// Bumped each time a participant takes or gives back a bridge seat (the room is stamped
    /// with it, [`RoomRecord::membership_changed_at`]) and each time a bridge registers another
    /// cascade address. The leader's cascade membership push ([`crate::cascade_membership`])
    /// compares it to skip its work when no room's set of bridges can have changed; like the rest
    /// of the state it is a function of the log, so it never goes back on one leader.
    #[serde(default)]
    pub membership_version: u64,
    /// Bumped each time a bridge registers another cascade address (with
    /// `membership_version`): the push then compares the addresses, and only then.
    #[serde(default)]
    pub cascade_addr_version: u64,
    /// Which rooms' seats changed at which version, so the push visits only those.
    #[serde(skip)]
    pub membership_log: MembershipLog,
    /// Host accounts (`state/hosts.rs`): who may open rooms without a token.
    #[serde(default)]
    pub hosts: BTreeMap<bridgemesh_proto::HostName, HostRecord>,
    /// Invite links by id, until they expire.
    #[serde(default)]
    pub invites: BTreeMap<String, InviteRecord>,
    /// Sessions over for good lately, for the standalone TURN servers.
    #[serde(default)]
    pub ended_sessions: EndedSessions,
}

/// How far a command's time may lead the last tick before it is pulled back. Times in commands
/// come from the clock of whichever node took the request; a node whose clock is far off must
/// not make its placements expire at once, or never.
pub const CLOCK_SKEW_TOLERATED_MS: u64 = 10_000;

impl Eq for BridgeRecord {}
impl Eq for BridgeLoad {}

impl ControlState {
    /// The rooms whose seats changed since membership version `seen` (ended ones included), in
    /// order, when the local index still holds them all; `None` when it does not (then every
    /// room must be looked at).
    pub fn rooms_changed_since(&self, seen: u64) -> Option<BTreeSet<&RoomId>> {
        if seen >= self.membership_version {
            return Some(BTreeSet::new());
        }
        self.membership_log.changed_since(seen)
    }

    /// Applies a proposal once: a repeat of a remembered proposal gets the first result again.
    pub fn apply_proposal(&mut self, proposal: Proposal) -> Result<Outcome, ApplyError> {
        if let Some(result) = self.proposal_results.get(&proposal.id) {
            return result.clone();
        }
        let result = self.apply(proposal.command);
        if self.proposal_order.len() >= REMEMBERED_PROPOSALS_MAX
            && let Some(oldest) = self.proposal_order.pop_front()
        {
            self.proposal_results.remove(&oldest);
        }
        self.proposal_order.push_back(proposal.id);
        self.proposal_results.insert(proposal.id, result.clone());
        result
    }

    pub fn apply(&mut self, command: Command) -> Result<Outcome, ApplyError> {
        // The node that took a moderator's request checked the role on its own copy of the state;
        // that copy may be behind (the moderator was just kicked, or left). Check again here.
        if let Some((room, by)) = command.moderator() {
            self.check_moderator(room, by)?;
        }
        match command {
            Command::RegisterBridge {
                registration,
                instance,
                at_ms,
            } => {
                let at_ms = self.stamp(at_ms);
                self.register_bridge(registration, instance, at_ms)
            }
            Command::SetBridgeStatus {
                bridge,
                status,
                at_ms,
            } => {
                let at_ms = self.stamp(at_ms);
                self.set_bridge_status(&bridge, status, at_ms)
            }
            Command::ReportLoad { bridge, load, at_ms } => {
                let at_ms = self.stamp(at_ms);
                self.bridge_mut(&bridge)?.load = BridgeLoad::from_report(&load, at_ms);
                Ok(Outcome::LoadReported)
            }
            Command::Drain {
                bridge,
                grace_ms,
                by_operator,
                at_ms,
            } => {
                let at_ms = self.stamp(at_ms);
                self.drain_bridge(&bridge, grace_ms, by_operator, at_ms)
            }
            Command::Undrain { bridge, at_ms } => {
                let at_ms = self.stamp(at_ms);
                self.undrain_bridge(&bridge, at_ms)
            }
            Command::ForgetBridge { bridge } => self.forget_bridge(&bridge),
            Command::SetPlacementPolicy(policy) => {
                policy.validate().map_err(ApplyError::Invalid)?;
                self.placement = policy;
                Ok(Outcome::PolicySet)
            }
            Command::Join(request) => self.join(request),
            Command::Confirm {
                room,
                participant,
                bridge,
            } => {
                let record = self.participant_mut(&room, &participant)?;
                if !record.status.on_bridge() {
                    // Only a placement can be confirmed; a kicked participant stays kicked.
                    return Err(ApplyError::UnknownParticipant(participant, room));
                }
                if let Some(bridge) = bridge
                    && record.bridge.as_ref() != Some(&bridge)
                {
                    return Err(ApplyError::NotOnBridge(participant, bridge));
                }
                // Confirming a connected participant again (it reconnected to the same bridge
                // before the drop was reported) changes nothing.
                record.dropped = false;
                record.status = ParticipantStatus::Connected;
                Ok(Outcome::Confirmed)
            }
            Command::Unconfirm {
                room,
                participant,
                bridge,
                at_ms,
            } => {
                let at_ms = self.stamp(at_ms);
                let record = self.participant_mut(&room, &participant)?;
                if record.bridge.as_ref() != Some(&bridge) || !record.status.on_bridge() {
                    return Err(ApplyError::NotOnBridge(participant, bridge));
                }
                if record.status == ParticipantStatus::Connected {
                    record.status = ParticipantStatus::Placed;
                    record.since_ms = at_ms;
                    record.dropped = true;
                }
                Ok(Outcome::Unconfirmed)
            }
            Command::Leave {
                room,
                participant,
                bridge,
            } => {
                let room_record = self
                    .rooms
                    .get_mut(&room)
                    .ok_or_else(|| ApplyError::UnknownParticipant(participant.clone(), room.clone()))?;
                let Some(record) = room_record
                    .participants
                    .get(&participant)
                    .filter(|p| p.status.present())
                else {
                    return Err(ApplyError::UnknownParticipant(participant, room));
                };
                if let Some(bridge) = bridge
                    && record.bridge.as_ref() != Some(&bridge)
                {
                    return Err(ApplyError::NotOnBridge(participant, bridge));
                }
                self.remove_participant(&room, &participant, None);
                // A leave carries no time: the last tick's, which is never later than the leave.
                self.ended_sessions.end(&participant, self.clock_ms);
                let room_empty = self.rooms.get(&room).is_none_or(|r| r.present() == 0);
                Ok(Outcome::Left { room_empty })
            }
            Command::Admit {
                room,
                participant,
                bridge,
                at_ms,
                ..
            } => {
                let waiting = self.participant(&room, &participant)?.status == ParticipantStatus::Lobby;
                if !waiting {
                    return Err(ApplyError::NotInLobby(participant));
                }
                self.check_bridge_seat(&room, &bridge)?;
                self.take_seat(&room, &bridge);
                let at_ms = self.stamp(at_ms);
                let record = self.participant_mut(&room, &participant)?;
                record.status = ParticipantStatus::Placed;
                record.bridge = Some(bridge.clone());
                record.since_ms = at_ms;
                Ok(Outcome::Admitted { bridge })
            }
            Command::Deny {
                room,
                participant,
                at_ms,
                ..
            } => {
                let at_ms = self.stamp(at_ms);
                let record = self.participant_mut(&room, &participant)?;
                if record.status != ParticipantStatus::Lobby {
                    return Err(ApplyError::NotInLobby(participant));
                }
                record.status = ParticipantStatus::Denied;
                record.since_ms = at_ms;
                self.note_if_empty(&room, at_ms);
                Ok(Outcome::Denied)
            }
            Command::Kick {
                room,
                participant,
                at_ms,
                ..
            }
            | Command::AdminKick {
                room,
                participant,
                at_ms,
            } => {
                let record = self.participant(&room, &participant)?;
                if !record.status.present() {
                    return Err(ApplyError::UnknownParticipant(participant, room));
                }
                let bridge = record.bridge.clone();
                let user_id = record.user_id.clone();
                let at_ms = self.stamp(at_ms);
                self.release_seat(&room, &participant);
                let room_record = self.rooms.get_mut(&room).expect("checked above");
                if let Some(user_id) = user_id
                    && !room_record.kicked_users.contains(&user_id)
                {
                    if room_record.kicked_users.len() >= ROOM_KICKED_USERS_MAX {
                        room_record.kicked_users.remove(0);
                    }
                    room_record.kicked_users.push(user_id);
                }
                let record = room_record
                    .participants
                    .get_mut(&participant)
                    .expect("checked above");
                record.status = ParticipantStatus::Kicked;
                record.since_ms = at_ms;
                self.note_if_empty(&room, at_ms);
                self.ended_sessions.end(&participant, at_ms);
                Ok(Outcome::Kicked {
                    room,
                    participant,
                    bridge,
                })
            }
            Command::EndRoom { room, .. } => {
                let record = self
                    .rooms
                    .get(&room)
                    .ok_or(ApplyError::UnknownRoom(room.clone()))?;
                let participants: Vec<_> = record
                    .participants
                    .iter()
                    .filter(|(_, p)| p.status.present())
                    .map(|(id, p)| (id.clone(), p.bridge.clone()))
                    .collect();
                self.end_room(&room);
                for (participant, _) in &participants {
                    self.ended_sessions.end(participant, self.clock_ms);
                }
                Ok(Outcome::RoomEnded { room, participants })
            }
            Command::UpdateSettings {
                room,
                password,
                lobby_enabled,
                ..
            } => {
                let record = self.rooms.get_mut(&room).ok_or(ApplyError::UnknownRoom(room))?;
                if let Some(change) = password {
                    record.settings.password_hash = match change {
                        PasswordChange::SetHash(hash) => Some(hash),
                        PasswordChange::Remove => None,
                    };
                    record.settings.password_generation += 1;
                }
                if let Some(lobby_enabled) = lobby_enabled {
                    record.settings.lobby_enabled = lobby_enabled;
                }
                Ok(Outcome::SettingsUpdated)
            }
            Command::MuteAll { room, by } => {
                let record = self
                    .rooms
                    .get(&room)
                    .ok_or_else(|| ApplyError::UnknownRoom(room.clone()))?;
                let bridges = record.seats_per_bridge().into_keys().cloned().collect();
                Ok(Outcome::MuteRequested { room, by, bridges })
            }
            Command::Hosts(command) => self.apply_hosts(command),
            Command::Tick {
                now_ms,
                room_grace_ms,
                unconfirmed_join_ttl_ms,
            } => Ok(self.tick(
                now_ms,
                room_grace_ms,
                unconfirmed_join_ttl_ms.unwrap_or(UNCONFIRMED_JOIN_TTL_MS),
            )),
        }
    }

    fn join(&mut self, mut request: JoinRequestRecord) -> Result<Outcome, ApplyError> {
        request.at_ms = self.stamp(request.at_ms);
        if self.participant_rooms.contains_key(&request.participant) {
            return Err(ApplyError::DuplicateParticipant(request.participant));
        }
        let existing = self.rooms.get(&request.room);
        if let (Some(room), Some(user)) = (existing, &request.user_id)
            && room.kicked_users.contains(user)
        {
            return Err(ApplyError::Kicked);
        }
        // An invite stands in for a moderator's "yes": no lobby, no wait for the host.
        let invited = match &request.invite {
            Some(invite) => {
                self.check_invite(invite, &request.room, request.at_ms)?;
                true
            }
            None => false,
        };
        let moderator_present = existing.is_some_and(RoomRecord::has_moderator_present);
        let mut role = request.role;
        if request.moderator_if_first && !moderator_present {
            role = Role::Moderator;
        }
        if role == Role::Guest
            && request.guest_needs_moderator
            && !invited
            && !existing.is_some_and(|r| r.opened_by_moderator)
        {
            return Err(ApplyError::WaitingForModerator);
        }
        let settings = existing.map(|r| r.settings.clone()).unwrap_or_default();
        if settings.password_hash.is_some()
            && role != Role::Moderator
            && request.password_generation != Some(settings.password_generation)
        {
            return Err(ApplyError::WrongPassword);
        }
        let to_lobby = settings.lobby_enabled && role != Role::Moderator && !invited;
        let full = if to_lobby {
            existing.map_or(0, |r| lobby_of(r).count()) >= LOBBY_WAITING_MAX
        } else {
            existing.map_or(0, RoomRecord::seated) >= ROOM_PARTICIPANTS_MAX
        };
        if full {
            return Err(ApplyError::RoomFull(request.room));
        }
        if !to_lobby {
            self.check_bridge_seat(&request.room, &request.bridge)?;
        }
        let room = self
            .rooms
            .entry(request.room.clone())
            .or_insert_with(|| RoomRecord {
                created_at_ms: request.at_ms,
                ..Default::default()
            });
        room.empty_since_ms = None;
        if role == Role::Moderator {
            room.opened_by_moderator = true;
        }
        let (status, bridge) = if to_lobby {
            (ParticipantStatus::Lobby, None)
        } else {
            (ParticipantStatus::Placed, Some(request.bridge.clone()))
        };
        room.participants.insert(
            request.participant.clone(),
            ParticipantRecord {
                display_name: request.display_name,
                user_id: request.user_id,
                role,
                status,
                bridge,
                since_ms: request.at_ms,
                client: request.client,
                dropped: false,
            },
        );
        self.participant_rooms
            .insert(request.participant, request.room.clone());
        if let Some(invite) = &request.invite {
            self.use_invite(invite);
        }
        if to_lobby {
            return Ok(Outcome::InLobby { role });
        }
        self.take_seat(&request.room, &request.bridge);
        Ok(Outcome::Placed {
            bridge: request.bridge,
            role,
        })
    }

    /// A command's time, within [`CLOCK_SKEW_TOLERATED_MS`] of the cluster's clock.
    fn stamp(&self, at_ms: u64) -> u64 {
        if self.clock_ms == 0 {
            return at_ms;
        }
        at_ms.clamp(self.clock_ms, self.clock_ms + CLOCK_SKEW_TOLERATED_MS)
    }

    fn check_moderator(&self, room: &RoomId, by: &ParticipantId) -> Result<(), ApplyError> {
        let moderates = self
            .rooms
            .get(room)
            .and_then(|r| r.participants.get(by))
            .is_some_and(|p| p.role == Role::Moderator && p.status.on_bridge());
        if moderates {
            Ok(())
        } else {
            Err(ApplyError::NotModerator(by.clone()))
        }
    }

    /// Can `bridge` take one more participant of `room`?
    fn check_bridge_seat(&self, room: &RoomId, bridge: &BridgeId) -> Result<(), ApplyError> {
        let record = self
            .bridges
            .get(bridge)
            .ok_or_else(|| ApplyError::UnknownBridge(bridge.clone()))?;
        if record.status != BridgeStatus::Up {
            return Err(ApplyError::BridgeDown(bridge.clone()));
        }
        if self.bridge_load.get(bridge).copied().unwrap_or(0) >= record.capacity {
            return Err(ApplyError::BridgeFull(bridge.clone()));
        }
        let on_bridge_in_room = self
            .rooms
            .get(room)
            .and_then(|r| r.seats_per_bridge().get(bridge).copied())
            .unwrap_or(0);
        if on_bridge_in_room >= record.max_participants_per_room as usize {
            return Err(ApplyError::BridgeRoomFull(bridge.clone(), room.clone()));
        }
        Ok(())
    }

    fn participant(
        &self,
        room: &RoomId,
        participant: &ParticipantId,
    ) -> Result<&ParticipantRecord, ApplyError> {
        self.rooms
            .get(room)
            .and_then(|r| r.participants.get(participant))
            .ok_or_else(|| ApplyError::UnknownParticipant(participant.clone(), room.clone()))
    }

    fn participant_mut(
        &mut self,
        room: &RoomId,
        participant: &ParticipantId,
    ) -> Result<&mut ParticipantRecord, ApplyError> {
        self.rooms
            .get_mut(room)
            .and_then(|r| r.participants.get_mut(participant))
            .ok_or_else(|| ApplyError::UnknownParticipant(participant.clone(), room.clone()))
    }

    /// Gives back the participant's bridge seat, if it holds one. With [`Self::take_seat`], the
    /// only way a participant arrives on or leaves a bridge.
    fn release_seat(&mut self, room: &RoomId, participant: &ParticipantId) {
        let Some(record) = self.rooms.get(room).and_then(|r| r.participants.get(participant)) else {
            return;
        };
        let (true, Some(bridge)) = (record.status.on_bridge(), &record.bridge) else {
            return;
        };
        if let Some(load) = self.bridge_load.get_mut(bridge) {
            *load = load.saturating_sub(1);
        }
        self.note_membership_change(room);
    }

    /// The bridges hosting `room` may have changed.
    fn note_membership_change(&mut self, room: &RoomId) {
        self.membership_version += 1;
        self.membership_log.record(self.membership_version, room);
        if let Some(record) = self.rooms.get_mut(room) {
            record.membership_changed_at = self.membership_version;
        }
    }

    fn remove_participant(&mut self, room: &RoomId, participant: &ParticipantId, now_ms: Option<u64>) {
        self.release_seat(room, participant);
        self.participant_rooms.remove(participant);
        if let Some(record) = self.rooms.get_mut(room) {
            record.participants.remove(participant);
        }
        // A leave carries no time: the room then starts its grace period at the next tick.
        if let Some(now_ms) = now_ms {
            self.note_if_empty(room, now_ms);
        }
    }

    fn note_if_empty(&mut self, room: &RoomId, now_ms: u64) {
        if let Some(record) = self.rooms.get_mut(room)
            && record.present() == 0
            && record.empty_since_ms.is_none()
        {
            record.empty_since_ms = Some(now_ms);
        }
    }

    fn end_room(&mut self, room: &RoomId) {
        let Some(record) = self.rooms.get(room) else {
            return;
        };
        let ids: Vec<ParticipantId> = record.participants.keys().cloned().collect();
        for id in &ids {
            self.release_seat(room, id);
            self.participant_rooms.remove(id);
        }
        self.rooms.remove(room);
    }

    fn tick(&mut self, now_ms: u64, room_grace_ms: u64, unconfirmed_join_ttl_ms: u64) -> Outcome {
        self.clock_ms = self.clock_ms.max(now_ms);
        let now_ms = self.clock_ms;
        let mut expired = Vec::new();
        for (room_id, room) in &self.rooms {
            for (participant, record) in &room.participants {
                let age_ms = now_ms.saturating_sub(record.since_ms);
                let due = match record.status {
                    ParticipantStatus::Placed if record.dropped => age_ms >= RECONNECT_GRACE_MS,
                    ParticipantStatus::Placed => age_ms >= unconfirmed_join_ttl_ms,
                    ParticipantStatus::Lobby => age_ms >= LOBBY_WAIT_MAX_MS,
                    ParticipantStatus::Denied | ParticipantStatus::Kicked => age_ms >= OUTCOME_MEMORY_MS,
                    ParticipantStatus::Connected => false,
                };
                if due {
                    expired.push((room_id.clone(), participant.clone()));
                }
            }
        }
        for (room, participant) in &expired {
            self.remove_participant(room, participant, Some(now_ms));
        }
        for record in self.rooms.values_mut() {
            if record.present() == 0 && record.empty_since_ms.is_none() {
                record.empty_since_ms = Some(now_ms);
            }
        }
        let rooms_ended: Vec<RoomId> = self
            .rooms
            .iter()
            .filter(|(_, r)| {
                r.present() == 0
                    && r.empty_since_ms
                        .is_some_and(|t| now_ms.saturating_sub(t) >= room_grace_ms)
            })
            .map(|(id, _)| id.clone())
            .collect();
        for room in &rooms_ended {
            self.end_room(room);
        }
        self.drop_expired_invites(now_ms);
        self.ended_sessions.prune(now_ms);
        let drained: Vec<BridgeId> = self
            .bridges
            .values()
            .filter(|b| b.status == BridgeStatus::Draining)
            .filter(|b| b.drain.is_some_and(|d| d.move_at_ms <= now_ms))
            .map(|b| b.id.clone())
            .collect();
        let mut moved = Vec::new();
        for bridge in &drained {
            moved.extend(self.move_participants_off(bridge, now_ms));
        }
        Outcome::Ticked {
            expired: expired.len(),
            rooms_ended,
            moved,
        }
    }

    /// Participants present in some room (in the lobby or on a bridge).
    pub fn participant_count(&self) -> usize {
        self.rooms.values().map(RoomRecord::present).sum()
    }
}

/// A map whose keys are not strings, as a JSON list of pairs (JSON object keys must be strings).
mod map_as_pairs {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use std::collections::BTreeMap;

    pub fn serialize<K: Serialize, V: Serialize, S: Serializer>(
        map: &BTreeMap<K, V>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(map.iter())
    }

    pub fn deserialize<'de, K, V, D>(deserializer: D) -> Result<BTreeMap<K, V>, D::Error>
    where
        K: Deserialize<'de> + Ord,
        V: Deserialize<'de>,
        D: Deserializer<'de>,
    {
        Vec::<(K, V)>::deserialize(deserializer).map(|pairs| pairs.into_iter().collect())
    }
}

/// The guests waiting for a moderator's answer.
pub fn lobby_of(room: &RoomRecord) -> impl Iterator<Item = (&ParticipantId, &ParticipantRecord)> {
    room.participants
        .iter()
        .filter(|(_, p)| p.status == ParticipantStatus::Lobby)
}

#[cfg(test)]
mod tests;
