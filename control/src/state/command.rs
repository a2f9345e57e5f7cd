//! What changes the state: commands as they travel through the log, and what applying one yields.

use super::*;

/// A command as it travels through the log: with the id its proposer gave it once, reused by
/// every retry. A retry after an answer was lost (a leader change, a forward that timed out)
/// may commit the same command twice; the state machine applies it once and answers the repeat
/// with the first result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Proposal {
    pub id: ProposalId,
    pub command: Command,
}

/// Random per proposal, chosen by the node that took the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ProposalId(pub u64, pub u64);

/// A change of a room's password. An enum rather than `Option<Option<_>>`: commands travel as
/// JSON through the log, where `Some(None)` and `None` would both become `null`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum PasswordChange {
    /// An argon2 PHC string.
    SetHash(String),
    Remove,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Command {
    /// A bridge (re-)registers: idempotent. A draining bridge stays draining; an unreachable or
    /// down one is up again.
    RegisterBridge {
        registration: BridgeRegistration,
        /// `None` for an operator's registration by hand (not failure-detected).
        instance: Option<String>,
        at_ms: u64,
    },
    /// The failure detector's verdict: `up`, `unreachable` (no new participants) or `down` (its
    /// participants are moved). Draining is [`Command::Drain`]'s.
    SetBridgeStatus {
        bridge: BridgeId,
        status: BridgeStatus,
        at_ms: u64,
    },
    ReportLoad {
        bridge: BridgeId,
        load: LoadReport,
        at_ms: u64,
    },
    /// No new participants on the bridge; its participants move once `grace_ms` has passed.
    Drain {
        bridge: BridgeId,
        grace_ms: u64,
        by_operator: bool,
        at_ms: u64,
    },
    /// Ends a drain: the bridge takes participants again.
    Undrain {
        bridge: BridgeId,
        at_ms: u64,
    },
    /// Forgets a bridge that holds nobody (a decommissioned one).
    ForgetBridge {
        bridge: BridgeId,
    },
    SetPlacementPolicy(PlacementPolicy),
    Join(JoinRequestRecord),
    /// The bridge saw the participant connect.
    Confirm {
        room: RoomId,
        participant: ParticipantId,
        /// The bridge reporting it; a report from a bridge the participant has since been
        /// moved off is stale and refused.
        #[serde(default)]
        bridge: Option<BridgeId>,
    },
    Leave {
        room: RoomId,
        participant: ParticipantId,
        /// The bridge reporting it (`None`: the participant itself, e.g. leaving the lobby). A
        /// leave reported by a bridge the participant was moved off is refused.
        #[serde(default)]
        bridge: Option<BridgeId>,
    },
    /// The participant's connection to `bridge` dropped without a leave: it keeps its place as
    /// `placed` (expiring like any unconfirmed placement) so that it can reconnect as itself.
    Unconfirm {
        room: RoomId,
        participant: ParticipantId,
        bridge: BridgeId,
        at_ms: u64,
    },
    Admit {
        room: RoomId,
        /// The moderator acting; checked again when applied.
        by: ParticipantId,
        participant: ParticipantId,
        bridge: BridgeId,
        at_ms: u64,
    },
    Deny {
        room: RoomId,
        /// The moderator acting; checked again when applied.
        by: ParticipantId,
        participant: ParticipantId,
        at_ms: u64,
    },
    Kick {
        room: RoomId,
        /// The moderator acting; checked again when applied.
        by: ParticipantId,
        participant: ParticipantId,
        at_ms: u64,
    },
    /// The operator removes a participant through the admin API (no moderator involved).
    AdminKick {
        room: RoomId,
        participant: ParticipantId,
        at_ms: u64,
    },
    EndRoom {
        room: RoomId,
        /// The moderator acting; checked again when applied.
        by: ParticipantId,
    },
    UpdateSettings {
        room: RoomId,
        /// The moderator acting; checked again when applied.
        by: ParticipantId,
        /// `None` leaves the password as it is.
        password: Option<PasswordChange>,
        lobby_enabled: Option<bool>,
    },
    /// A moderator asks everyone else to mute. Changes nothing; committed so the request reaches
    /// the room's bridges from whichever control node took it.
    MuteAll {
        room: RoomId,
        /// The moderator acting; checked again when applied.
        by: ParticipantId,
    },
    /// Host accounts and invite links (`state/hosts.rs`).
    Hosts(HostCommand),
    /// Time passes: placements never confirmed, abandoned lobby waits and remembered outcomes
    /// expire, and rooms empty for longer than `room_grace_ms` end.
    Tick {
        now_ms: u64,
        room_grace_ms: u64,
        /// How long a placement waits for its bridge's confirmation; `None` (and every tick
        /// logged before this field existed) means [`super::UNCONFIRMED_JOIN_TTL_MS`].
        #[serde(default, skip_serializing_if = "Option::is_none")]
        unconfirmed_join_ttl_ms: Option<u64>,
    },
}

impl Command {
    /// The room and the acting moderator, for commands only a moderator may give.
    pub fn moderator(&self) -> Option<(&RoomId, &ParticipantId)> {
        match self {
            Command::Admit { room, by, .. }
            | Command::Deny { room, by, .. }
            | Command::Kick { room, by, .. }
            | Command::EndRoom { room, by }
            | Command::MuteAll { room, by }
            | Command::UpdateSettings { room, by, .. } => Some((room, by)),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    /// A Raft-internal entry (leader's blank entry, membership change): no state change.
    Nothing,
    BridgeRegistered {
        status: BridgeStatus,
    },
    BridgeStatusChanged {
        bridge: BridgeId,
        status: BridgeStatus,
        /// Participants moved off the bridge (when it went down or its drain's grace ended now).
        moved: Vec<Moved>,
    },
    LoadReported,
    BridgeForgotten,
    PolicySet,
    MuteRequested {
        room: RoomId,
        by: ParticipantId,
        bridges: Vec<BridgeId>,
    },
    Placed {
        bridge: BridgeId,
        role: Role,
    },
    InLobby {
        role: Role,
    },
    Confirmed,
    Unconfirmed,
    Left {
        room_empty: bool,
    },
    Admitted {
        bridge: BridgeId,
    },
    Denied,
    Kicked {
        room: RoomId,
        participant: ParticipantId,
        bridge: Option<BridgeId>,
    },
    RoomEnded {
        room: RoomId,
        participants: Vec<(ParticipantId, Option<BridgeId>)>,
    },
    SettingsUpdated,
    /// A host account or invite was added, changed or removed.
    HostsChanged,
    Ticked {
        expired: usize,
        rooms_ended: Vec<RoomId>,
        /// Participants moved off draining bridges whose grace period ended.
        moved: Vec<Moved>,
    },
}

impl Outcome {
    /// Bridges must act on it: remove, move or tell participants, or learn their own status.
    pub fn concerns_bridges(&self) -> bool {
        match self {
            Outcome::Kicked { bridge, .. } => bridge.is_some(),
            Outcome::RoomEnded { .. }
            | Outcome::MuteRequested { .. }
            | Outcome::BridgeStatusChanged { .. } => true,
            Outcome::Ticked { moved, .. } => !moved.is_empty(),
            _ => false,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[non_exhaustive]
pub enum ApplyError {
    #[error("bridge {0} is not registered")]
    UnknownBridge(BridgeId),
    #[error("bridge {0} is not up")]
    BridgeDown(BridgeId),
    #[error("bridge {0} is at capacity")]
    BridgeFull(BridgeId),
    /// Placed by a proposal that raced another: the bridge took its last seat of the room
    /// meanwhile. Placement tries again; the room may continue on another bridge.
    #[error("bridge {0} holds as many participants of room {1} as it takes")]
    BridgeRoomFull(BridgeId, RoomId),
    #[error("room {0} is full")]
    RoomFull(RoomId),
    #[error("participant {0} already exists")]
    DuplicateParticipant(ParticipantId),
    #[error("participant {0} is not in room {1}")]
    UnknownParticipant(ParticipantId, RoomId),
    #[error("room {0} does not exist")]
    UnknownRoom(RoomId),
    #[error("the room's password is required or has changed")]
    WrongPassword,
    #[error("guests may join only once a moderator has opened the room")]
    WaitingForModerator,
    #[error("you were removed from this meeting")]
    Kicked,
    #[error("participant {0} is not waiting in the lobby")]
    NotInLobby(ParticipantId),
    #[error("participant {0} does not moderate this meeting")]
    NotModerator(ParticipantId),
    #[error("participant {0} is no longer on bridge {1}")]
    NotOnBridge(ParticipantId, BridgeId),
    #[error("bridge {0} still holds participants")]
    BridgeInUse(BridgeId),
    #[error("bridge {0} is down; it must register again")]
    BridgeIsDown(BridgeId),
    #[error("invalid: {0}")]
    Invalid(String),
    #[error("a host account named {0} exists")]
    UserExists(bridgemesh_proto::HostName),
    #[error("there is no host account named {0}")]
    UnknownUser(bridgemesh_proto::HostName),
    #[error("this host login has ended (the account was removed or its password changed); log in again")]
    LoginEnded,
    #[error("this room holds as many invite links as it may; wait for some to expire")]
    TooManyInvites,
    #[error("this invite link has expired or was withdrawn")]
    InviteExpired,
    #[error("this invite link has been used as many times as it may")]
    InviteUsedUp,
    #[error("this invite link is for another room")]
    InviteWrongRoom,
}

impl ApplyError {
    /// The bridge placement chose could not take the participant after all (it filled up, went
    /// down or away between the choice and the commit): place again.
    pub fn is_placement_race(&self) -> bool {
        matches!(
            self,
            ApplyError::BridgeFull(_)
                | ApplyError::BridgeRoomFull(..)
                | ApplyError::BridgeDown(_)
                | ApplyError::UnknownBridge(_)
        )
    }
}
