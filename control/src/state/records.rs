//! What the state holds: bridges, rooms, participants and join requests.

use super::*;

/// Largest room across the whole cluster.
pub const ROOM_PARTICIPANTS_MAX: usize = 500;
/// Guests waiting in one room's lobby; beyond this new ones are refused (`room_full`), so a flood
/// of knocks cannot fill the room for those with a seat.
pub const LOBBY_WAITING_MAX: usize = 100;
/// Users banned from one room by kicks; beyond this the oldest bans are forgotten.
pub const ROOM_KICKED_USERS_MAX: usize = 1_000;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BridgeRecord {
    pub id: BridgeId,
    pub region: RegionId,
    pub signaling_url: String,
    pub capacity: u32,
    pub max_participants_per_room: u32,
    pub status: BridgeStatus,
    #[serde(default)]
    pub location: Option<GeoPoint>,
    /// Where participants send media (`ip:port`), for TURN's allowlist and cascade.
    #[serde(default)]
    pub media_addresses: Vec<String>,
    /// The bridge's embedded TURN server.
    #[serde(default)]
    pub turn_urls: Vec<String>,
    /// Where other bridges open cascade links to this one; `None` for a bridge that does not
    /// cascade (and for records from before cascading existed).
    #[serde(default)]
    pub cascade_addr: Option<std::net::SocketAddr>,
    /// The bridge process's random instance id; `None` for a bridge an operator registered by
    /// hand, which has no session and is not watched by the failure detector.
    #[serde(default)]
    pub instance: Option<String>,
    #[serde(default)]
    pub load: BridgeLoad,
    /// Set while the bridge drains.
    #[serde(default)]
    pub drain: Option<DrainRecord>,
    /// When the status last changed.
    #[serde(default)]
    pub status_since_ms: u64,
}

/// A bridge's last committed load report and the joins placed on it since.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct BridgeLoad {
    pub stress: f64,
    pub cpu: f64,
    pub packets_per_s: f64,
    pub reported_participants: u32,
    pub reported_at_ms: u64,
    /// Participants placed on the bridge since the report (placement's burst correction).
    pub placed_since_report: u32,
}

impl BridgeLoad {
    pub(super) fn from_report(report: &LoadReport, at_ms: u64) -> Self {
        let finite = |x: f64| if x.is_finite() { x.max(0.0) } else { 0.0 };
        Self {
            stress: finite(report.stress),
            cpu: finite(report.cpu),
            packets_per_s: finite(report.packets_per_s),
            reported_participants: report.participants,
            reported_at_ms: at_ms,
            placed_since_report: 0,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DrainRecord {
    pub since_ms: u64,
    /// When its participants are moved (the drain's grace period ends).
    pub move_at_ms: u64,
    /// An operator's drain lasts until an operator ends it; a drain the bridge asked for itself
    /// (because it was stopping) ends when the bridge registers again.
    pub by_operator: bool,
}

/// One participant moved off a bridge that is down or draining.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Moved {
    pub room: RoomId,
    pub participant: ParticipantId,
    pub from: BridgeId,
    /// `None` when no bridge had a seat: the participant was removed and must join again.
    pub to: Option<BridgeId>,
}

pub use bridgemesh_proto::api::Role;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ParticipantStatus {
    /// Waiting for a moderator to admit them; holds no bridge.
    Lobby,
    /// Assigned to a bridge; the bridge has not yet reported them connected.
    Placed,
    /// The bridge reported them connected.
    Connected,
    /// A moderator refused them at the lobby (kept for [`OUTCOME_MEMORY_MS`]).
    Denied,
    /// A moderator removed them (kept for [`OUTCOME_MEMORY_MS`]).
    Kicked,
}

impl ParticipantStatus {
    /// Holds a seat on a bridge.
    pub fn on_bridge(self) -> bool {
        matches!(self, Self::Placed | Self::Connected)
    }

    /// Counts toward the room's size.
    pub fn present(self) -> bool {
        matches!(self, Self::Lobby | Self::Placed | Self::Connected)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParticipantRecord {
    pub display_name: String,
    /// The token's user id, when the participant came with one.
    pub user_id: Option<String>,
    pub role: Role,
    pub status: ParticipantStatus,
    pub bridge: Option<BridgeId>,
    /// When the participant's current status began.
    pub since_ms: u64,
    /// Where the participant is; placement uses it again when the participant has to move.
    #[serde(default)]
    pub client: ClientPlace,
    /// Placed again because its connection dropped: it has [`RECONNECT_GRACE_MS`] to come back.
    #[serde(default)]
    pub dropped: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomSettings {
    /// argon2 PHC string; never logged, never returned by any API.
    pub password_hash: Option<String>,
    /// Bumped on each password change, so a join checked against an older password fails.
    pub password_generation: u64,
    pub lobby_enabled: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomRecord {
    pub created_at_ms: u64,
    /// A moderator has been in this room since it was created (what guest policy
    /// `after_moderator` waits for).
    pub opened_by_moderator: bool,
    pub settings: RoomSettings,
    pub participants: BTreeMap<ParticipantId, ParticipantRecord>,
    /// Set while nobody is present; the room ends when this is older than the grace period.
    pub empty_since_ms: Option<u64>,
    /// Token user ids a moderator kicked, oldest first; they cannot join this meeting again.
    pub kicked_users: Vec<String>,
    /// [`ControlState::membership_version`] when a participant last took or gave back a seat
    /// here: the bridges hosting the room may have changed then.
    #[serde(default)]
    pub membership_changed_at: u64,
}

impl RoomRecord {
    pub fn present(&self) -> usize {
        self.participants.values().filter(|p| p.status.present()).count()
    }

    /// Participants holding a seat on some bridge.
    pub fn seated(&self) -> usize {
        self.participants
            .values()
            .filter(|p| p.status.on_bridge())
            .count()
    }

    /// Participants holding a seat, per bridge: the bridges hosting the room.
    pub fn seats_per_bridge(&self) -> BTreeMap<&BridgeId, usize> {
        let mut seats = BTreeMap::new();
        for p in self.participants.values().filter(|p| p.status.on_bridge()) {
            if let Some(bridge) = &p.bridge {
                *seats.entry(bridge).or_insert(0) += 1;
            }
        }
        seats
    }

    pub fn has_moderator_present(&self) -> bool {
        self.participants
            .values()
            .any(|p| p.role == Role::Moderator && p.status.on_bridge())
    }
}

/// How a join entered the room: what the node decided before proposing it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinRequestRecord {
    pub room: RoomId,
    pub participant: ParticipantId,
    pub display_name: String,
    pub user_id: Option<String>,
    pub role: Role,
    /// Becomes the moderator when no moderator is present (zero-config rooms: whoever opens the
    /// room runs it).
    pub moderator_if_first: bool,
    /// Guests may only enter a room a moderator has opened.
    pub guest_needs_moderator: bool,
    /// The password generation the node checked the given password against.
    pub password_generation: Option<u64>,
    /// The bridge placement chose; unused if the participant goes to the lobby.
    pub bridge: BridgeId,
    pub at_ms: u64,
    #[serde(default)]
    pub client: ClientPlace,
    /// The invite (its record's id, the signed token checked by the node) the participant came
    /// with: skips the lobby and the wait for a moderator, and takes one of its uses.
    #[serde(default)]
    pub invite: Option<String>,
}

impl JoinRequestRecord {
    /// A guest's join placed on `bridge`: no account, password or lobby, named after its id, not
    /// made moderator. Callers change what they need with struct update syntax.
    pub fn guest(room: RoomId, participant: ParticipantId, bridge: BridgeId, at_ms: u64) -> Self {
        JoinRequestRecord {
            display_name: participant.to_string(),
            room,
            participant,
            user_id: None,
            role: Role::Guest,
            moderator_if_first: false,
            guest_needs_moderator: false,
            password_generation: None,
            bridge,
            at_ms,
            client: ClientPlace::default(),
            invite: None,
        }
    }
}
