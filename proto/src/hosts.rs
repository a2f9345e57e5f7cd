//! Host accounts: who may open rooms without a token server of their own (docs/hosts.md).
//!
//! ```text
//! POST /api/v1/login                  {username, password}      → HostLogin (a host session)
//! GET  /api/v1/login                  Bearer <host session>     → HostLogin (who am I)
//! POST /api/v1/rooms/{room}/invites   Bearer <host session>, CreateInvite → Invite
//! GET|POST /api/v1/admin/users, PUT /api/v1/admin/users/{name}/password,
//! DELETE /api/v1/admin/users/{name}   (admin credential)        → HostUser / [HostUser]
//! ```
//! A host session is sent as `Authorization: Bearer` on joins; an invite's token goes in the
//! join body's `invite` field. Passwords travel only in request bodies and are never answered.

use crate::ids::{HostName, RoomId};
use serde::{Deserialize, Serialize};
use std::fmt;

/// Shortest host password accepted (NIST SP 800-63B's floor for user-chosen secrets).
pub const HOST_PASSWORD_MIN_CHARS: usize = 8;
/// Longest host password accepted; argon2 takes any length, this bounds the work per request.
pub const HOST_PASSWORD_MAX_CHARS: usize = 256;
/// How long a host session lasts; logging in again starts a new one.
pub const HOST_SESSION_TTL_S: u64 = 12 * 3600;
/// Longest validity of an invite link.
pub const INVITE_VALID_MAX_S: u64 = 30 * 24 * 3600;
/// Most uses an invite link can be given.
pub const INVITE_USES_MAX: u32 = 1_000;

/// A password in a request body: its `Debug` never shows it, so a logged request leaks nothing.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ClearPassword(pub String);

impl fmt::Debug for ClearPassword {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClearPassword(<redacted>)")
    }
}

/// `POST /api/v1/login`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    pub username: String,
    pub password: ClearPassword,
}

/// A host session: send `token` as `Authorization: Bearer` when joining to open rooms and
/// moderate them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HostLogin {
    pub username: HostName,
    pub token: String,
    pub expires_in_s: u64,
}

/// `POST /api/v1/admin/users`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddHostUser {
    pub username: String,
    pub password: ClearPassword,
}

/// `PUT /api/v1/admin/users/{name}/password`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetHostPassword {
    pub password: ClearPassword,
}

/// A host account as the admin API shows it: never its password or hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostUser {
    pub username: HostName,
    pub created_at_ms: u64,
    pub password_changed_at_ms: u64,
}

/// `POST /api/v1/rooms/{room}/invites`: at least one bound is wise; `valid_for_s` is required.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateInvite {
    /// 1 to [`INVITE_VALID_MAX_S`].
    pub valid_for_s: u64,
    /// 1 to [`INVITE_USES_MAX`] joins; absent: any number while valid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_uses: Option<u32>,
}

/// A minted invite: the link is `https://host/<room>#invite=<token>`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Invite {
    pub room: RoomId,
    pub token: String,
    /// The room's path with the token in the fragment (which browsers never send to servers).
    pub path: String,
    pub expires_at_unix_s: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_uses: Option<u32>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_login_request_never_debug_prints_its_password() {
        let request: LoginRequest =
            serde_json::from_str(r#"{"username":"ada","password":"hunter2-long"}"#).unwrap();
        assert_eq!(request.password.0, "hunter2-long");
        assert!(!format!("{request:?}").contains("hunter2"));
        assert!(serde_json::from_str::<LoginRequest>(r#"{"username":"a","password":"b","x":1}"#).is_err());
    }
}
