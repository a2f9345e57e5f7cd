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
}

impl ErrorCode {
    pub fn http_status(self) -> u16 {
        match self {
            Self::MalformedBody | Self::InvalidField | Self::InvalidRoomName => 400,
            Self::BodyTooLarge => 413,
            Self::Unauthorized | Self::TicketRejected => 401,
            Self::Forbidden | Self::WrongPassword => 403,
            Self::NotFound => 404,
            Self::Conflict | Self::RoomFull => 409,
            Self::RateLimited => 429,
            Self::NoCapacity => 503,
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
