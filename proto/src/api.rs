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
    /// An invite link's token (`#invite=` of the link, see [`crate::hosts`]): skips the lobby and
    /// the wait for a host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invite: Option<String>,
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

/// `POST /api/v1/rooms/{room}/participants/{participant}/reconnect`, with the participant's
/// session token: a participant that lost its bridge (or was told `bye moved`) asks where to go.
/// The answer is a [`JoinResponse`] for the same participant id and role: a fresh ticket for its
/// bridge, which is another one if its old bridge was declared down or is draining. 404 means
/// control no longer holds the participant: join again.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReconnectRequest {
    /// The bridge the client could no longer reach; counts as one report against it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lost_bridge: Option<BridgeId>,
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
        value.as_ref().and_then(Option::as_ref).serialize(serializer)
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
    // Join tokens (Jitsi-format JWTs, see docs/auth.md): one code per reason so a client or an
    // operator can tell a clock problem from a key problem from a wrong room.
    /// No token, and this deployment does not admit guests.
    TokenRequired,
    /// Not a JWT: wrong number of parts, bad base64, header or claims not JSON objects.
    TokenMalformed,
    /// The signature does not verify with the key the token names.
    TokenBadSignature,
    /// `alg` is `none`, or not the algorithm of the key the token names (HS/RS confusion).
    TokenAlgorithmNotAllowed,
    /// The token's `kid` names no configured key (or it has no `kid` and there is no default secret).
    TokenUnknownKey,
    /// `exp` is in the past, beyond the allowed clock skew.
    TokenExpired,
    /// `nbf` is in the future, beyond the allowed clock skew.
    TokenNotYetValid,
    /// `aud` is none of the accepted audiences.
    TokenWrongAudience,
    /// `iss` is none of the accepted issuers (app ids).
    TokenWrongIssuer,
    /// `room` is neither `*` nor this room.
    TokenWrongRoom,
    /// A required claim (`iss`, `aud`, `exp`, `room`) is absent; the message names it.
    TokenMissingClaim,
    /// A claim is present with the wrong type (e.g. `exp` as text); the message names it.
    TokenInvalidClaim,
    /// No token, and room policy admits guests only once a moderator has opened the room.
    GuestNotAllowed,
    /// The admin API's own credential is missing or wrong.
    AdminUnauthorized,
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
    /// A moderator refused this participant at the lobby.
    LobbyDenied,
    /// A moderator removed this participant from the meeting.
    Kicked,
    /// No credential, and this deployment lets only logged-in hosts (or invitees) into rooms.
    HostsOnly,
    /// A host login with a wrong user name or password.
    LoginFailed,
    /// Too many failed logins for this account from here: wait `Retry-After` seconds.
    LoginLocked,
    /// A host session that is expired, forged, or ended (the account was removed or its
    /// password changed): log in again.
    LoginRequired,
    /// An invite link that is damaged or not for this room.
    InviteInvalid,
    /// An invite link past its validity (or withdrawn).
    InviteExpired,
    /// An invite link whose uses are all taken.
    InviteUsedUp,
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
            | Self::LobbyDenied
            | Self::Kicked
            | Self::HostsOnly
            | Self::InviteExpired
            | Self::InviteUsedUp => 403,
            Self::LoginFailed | Self::LoginRequired | Self::InviteInvalid => 401,
            Self::LoginLocked => 429,
            Self::TokenRequired
            | Self::TokenMalformed
            | Self::TokenBadSignature
            | Self::TokenAlgorithmNotAllowed
            | Self::TokenUnknownKey
            | Self::TokenExpired
            | Self::TokenNotYetValid
            | Self::TokenWrongAudience
            | Self::TokenWrongIssuer
            | Self::TokenWrongRoom
            | Self::TokenMissingClaim
            | Self::TokenInvalidClaim
            | Self::AdminUnauthorized => 401,
            // The guest is understood and is refused by room policy, not for a bad credential.
            Self::GuestNotAllowed => 403,
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
            Self::TokenRequired => "token_required",
            Self::TokenMalformed => "token_malformed",
            Self::TokenBadSignature => "token_bad_signature",
            Self::TokenAlgorithmNotAllowed => "token_algorithm_not_allowed",
            Self::TokenUnknownKey => "token_unknown_key",
            Self::TokenExpired => "token_expired",
            Self::TokenNotYetValid => "token_not_yet_valid",
            Self::TokenWrongAudience => "token_wrong_audience",
            Self::TokenWrongIssuer => "token_wrong_issuer",
            Self::TokenWrongRoom => "token_wrong_room",
            Self::TokenMissingClaim => "token_missing_claim",
            Self::TokenInvalidClaim => "token_invalid_claim",
            Self::GuestNotAllowed => "guest_not_allowed",
            Self::AdminUnauthorized => "admin_unauthorized",
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
            Self::LobbyDenied => "lobby_denied",
            Self::Kicked => "kicked",
            Self::HostsOnly => "hosts_only",
            Self::LoginFailed => "login_failed",
            Self::LoginLocked => "login_locked",
            Self::LoginRequired => "login_required",
            Self::InviteInvalid => "invite_invalid",
            Self::InviteExpired => "invite_expired",
            Self::InviteUsedUp => "invite_used_up",
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
            ErrorCode::GuestNotAllowed,
        ] {
            let json = serde_json::to_string(&code).unwrap();
            assert_eq!(json, format!("\"{}\"", code.as_str()));
        }
    }

    #[test]
    fn auth_codes_serialize_as_their_names_and_are_unauthorized_except_guest_refusal() {
        let auth_codes = [
            ErrorCode::TokenRequired,
            ErrorCode::TokenMalformed,
            ErrorCode::TokenBadSignature,
            ErrorCode::TokenAlgorithmNotAllowed,
            ErrorCode::TokenUnknownKey,
            ErrorCode::TokenExpired,
            ErrorCode::TokenNotYetValid,
            ErrorCode::TokenWrongAudience,
            ErrorCode::TokenWrongIssuer,
            ErrorCode::TokenWrongRoom,
            ErrorCode::TokenMissingClaim,
            ErrorCode::TokenInvalidClaim,
            ErrorCode::GuestNotAllowed,
            ErrorCode::AdminUnauthorized,
        ];
        // Seeded with the older credential codes so a new name cannot repeat one of them either.
        let mut names = std::collections::HashSet::from([
            ErrorCode::Unauthorized.as_str(),
            ErrorCode::TicketRejected.as_str(),
            ErrorCode::Forbidden.as_str(),
        ]);
        for code in auth_codes {
            let json = serde_json::to_string(&code).unwrap();
            assert_eq!(json, format!("\"{}\"", code.as_str()));
            assert_eq!(serde_json::from_str::<ErrorCode>(&json).unwrap(), code);
            assert!(names.insert(code.as_str()), "{} used twice", code.as_str());
            let expected = if code == ErrorCode::GuestNotAllowed {
                403
            } else {
                401
            };
            assert_eq!(code.http_status(), expected, "{code:?}");
        }
    }

    #[test]
    fn join_request_refuses_unknown_fields() {
        assert!(serde_json::from_str::<JoinRequest>(r#"{"display_name":"a","admin":true}"#).is_err());
        let ok: JoinRequest = serde_json::from_str(r#"{"display_name":"Ada"}"#).unwrap();
        assert_eq!(ok.password, None);
    }
}

#[cfg(test)]
mod settings_tests {
    use super::*;

    #[test]
    fn a_null_password_removes_it_and_an_absent_one_keeps_it() {
        let remove: RoomSettingsUpdate =
            serde_json::from_str(r#"{"password": null, "lobby_enabled": true}"#).unwrap();
        assert_eq!(remove.password, Some(None));
        let keep: RoomSettingsUpdate = serde_json::from_str(r#"{"lobby_enabled": true}"#).unwrap();
        assert_eq!(keep.password, None);
        let set: RoomSettingsUpdate = serde_json::from_str(r#"{"password": "x"}"#).unwrap();
        assert_eq!(set.password, Some(Some("x".into())));
    }
}
