//! Control HTTP API bodies (`/api/v1/...`) and the error envelope every endpoint uses.

use crate::ids::{BridgeId, ParticipantId, RoomId};
use serde::{Deserialize, Serialize};

/// Longest display name accepted; longer names are refused, not truncated.
pub const DISPLAY_NAME_MAX_CHARS: usize = 64;
/// Largest request body control accepts on any endpoint.
pub const REQUEST_BODY_MAX_BYTES: usize = 16 * 1024;

/// `POST /api/v1/rooms/{room}/join`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JoinRequest {
    pub display_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
}

/// Answer to a successful join: where to connect and with what.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JoinResponse {
    pub room: RoomId,
    pub participant_id: ParticipantId,
    pub bridge_id: BridgeId,
    /// WebSocket URL of the bridge's signaling endpoint.
    pub signaling_url: String,
    /// Single-use, short-lived credential for `signaling_url`; sent as the first signaling message.
    pub ticket: String,
    pub ticket_expires_in_s: u64,
    pub ice_servers: Vec<IceServer>,
    pub role: Role,
    /// Bearer credential for this participant's later calls about its room (lobby status,
    /// moderator actions); valid for [`SESSION_TTL_S`].
    pub session_token: String,
}

/// How long a participant's session token stays valid.
pub const SESSION_TTL_S: u64 = 12 * 3600;

/// What a participant may do in its room.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Came without a token.
    Guest,
    /// Came with a valid token that does not make them a moderator.
    Member,
    Moderator,
}

/// `202 Accepted` answer to a join when the room has a lobby: wait for a moderator, polling
/// `GET /api/v1/rooms/{room}/lobby/{participant_id}` with the session token.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LobbyWait {
    pub room: RoomId,
    pub participant_id: ParticipantId,
    pub session_token: String,
    pub status: LobbyState,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LobbyState {
    Waiting,
}

/// `PATCH /api/v1/rooms/{room}/settings` (moderators). Absent fields stay as they are;
/// `"password": null` removes the password.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoomSettingsUpdate {
    #[serde(default, with = "double_option", skip_serializing_if = "Option::is_none")]
    pub password: Option<Option<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lobby_enabled: Option<bool>,
}

/// Tells "absent" (`None`) apart from "null" (`Some(None)`).
mod double_option {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(
        value: &Option<Option<String>>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        value.as_ref().map_or(None, Option::as_ref).serialize(serializer)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<Option<String>>, D::Error> {
        Option::<String>::deserialize(deserializer).map(Some)
    }
}

/// Longest room password accepted.
pub const PASSWORD_MAX_CHARS: usize = 128;

/// `GET /api/v1/rooms/{room}` for a participant of the room.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoomView {
    pub room: RoomId,
    pub you: ParticipantId,
    pub your_role: Role,
    pub password_set: bool,
    pub lobby_enabled: bool,
    pub participants: Vec<ParticipantView>,
    /// Who waits in the lobby; shown to moderators only (empty for others).
    pub lobby: Vec<ParticipantView>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ParticipantView {
    pub participant_id: ParticipantId,
    pub display_name: String,
    pub role: Role,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bridge_id: Option<BridgeId>,
    /// Unix time in milliseconds the participant entered its current state.
    pub since_ms: u64,
}

/// One entry of `RTCConfiguration.iceServers`, in the browser's own shape.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IceServer {
    pub urls: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
}

/// `GET /health` on every node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Health {
    pub status: HealthStatus,
    pub role: String,
    pub version: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HealthStatus {
    Ok,
    Degraded,
}

/// Codes a client can branch on. The HTTP status comes from [`ErrorCode::http_status`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ErrorCode {
    /// The body is not JSON or not the expected shape.
    MalformedBody,
    /// The body is larger than [`REQUEST_BODY_MAX_BYTES`].
    BodyTooLarge,
    /// A field is present but its value is not acceptable (e.g. an empty display name).
    InvalidField,
    InvalidRoomName,
    /// Missing, forged, expired or otherwise unacceptable credential.
    Unauthorized,
    /// A ticket that was already used, or issued for another bridge.
    TicketRejected,
    Forbidden,
    WrongPassword,
    NotFound,
    Conflict,
    RoomFull,
    RateLimited,
    /// No healthy bridge with room for another participant.
    NoCapacity,
    Internal,
    /// No control leader could be reached to commit the request; retry shortly.
    NoLeader,
    /// The room has a password and none was given.
    PasswordRequired,
    /// Guests may join only a room a moderator has opened; retry later.
    WaitingForModerator,
    /// A moderator refused this participant at the lobby.
    LobbyDenied,
    /// A moderator removed this participant from the meeting.
    Kicked,
}

impl ErrorCode {
    pub fn http_status(self) -> u16 {
        match self {
            Self::MalformedBody | Self::InvalidField | Self::InvalidRoomName => 400,
            Self::BodyTooLarge => 413,
            Self::Unauthorized | Self::TicketRejected => 401,
            Self::Forbidden
            | Self::WrongPassword
            | Self::PasswordRequired
            | Self::WaitingForModerator
            | Self::LobbyDenied
            | Self::Kicked => 403,
            Self::NotFound => 404,
            Self::Conflict | Self::RoomFull => 409,
            Self::RateLimited => 429,
            Self::NoCapacity | Self::NoLeader => 503,
            Self::Internal => 500,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::MalformedBody => "malformed_body",
            Self::BodyTooLarge => "body_too_large",
            Self::InvalidField => "invalid_field",
            Self::InvalidRoomName => "invalid_room_name",
            Self::Unauthorized => "unauthorized",
            Self::TicketRejected => "ticket_rejected",
            Self::Forbidden => "forbidden",
            Self::WrongPassword => "wrong_password",
            Self::NotFound => "not_found",
            Self::Conflict => "conflict",
            Self::RoomFull => "room_full",
            Self::RateLimited => "rate_limited",
            Self::NoCapacity => "no_capacity",
            Self::Internal => "internal",
            Self::NoLeader => "no_leader",
            Self::PasswordRequired => "password_required",
            Self::WaitingForModerator => "waiting_for_moderator",
            Self::LobbyDenied => "lobby_denied",
            Self::Kicked => "kicked",
        }
    }
}

/// `{"error": {"code": "...", "message": "..."}}`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorDetail {
    pub code: ErrorCode,
    pub message: String,
}

impl ErrorBody {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            error: ErrorDetail {
                code,
                message: message.into(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_codes_serialize_as_their_names() {
        for code in [
            ErrorCode::MalformedBody,
            ErrorCode::NoCapacity,
            ErrorCode::TicketRejected,
            ErrorCode::WaitingForModerator,
        ] {
            let json = serde_json::to_string(&code).unwrap();
            assert_eq!(json, format!("\"{}\"", code.as_str()));
        }
    }

    #[test]
    fn join_request_refuses_unknown_fields() {
        assert!(serde_json::from_str::<JoinRequest>(r#"{"display_name":"a","admin":true}"#).is_err());
        let ok: JoinRequest = serde_json::from_str(r#"{"display_name":"Ada"}"#).unwrap();
        assert_eq!(ok.password, None);
    }
}
