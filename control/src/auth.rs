//! Who may join: Jitsi-format join tokens, the guest policy, and the admin API's own credential.
//!
//! Pure: no clock, no files, no sockets. The caller passes `now_unix_s` and key material as text,
//! so the simulator can run it under virtual time and tests can pin every boundary.
//!
//! # Layout
//! - [`AuthConfig`]: accepted issuers and audiences, HS256 secrets, public keys by `kid`, clock
//!   leeway, [`GuestPolicy`]. `AuthConfig::default()` configures nothing: open guest access, which is
//!   what `bridgemesh up` runs with.
//! - [`TokenVerifier`]: built once from the config (every key parsed once); [`TokenVerifier::admit`]
//!   decides a join from the bearer token (or its absence), [`TokenVerifier::verify`] checks a token.
//! - [`bearer`]: `Authorization: Bearer <token>` → the token.
//! - [`AdminAuth`]: the admin API's bearer secret, compared in constant time.
//! - [`mint`]: makes tokens for operators (`bridgemesh token`) and tests.
//!
//! # Token format (Jitsi's; docs/auth.md has the whole story)
//! ```text
//! header  {"alg": "HS256" | "RS256" | "EdDSA", "kid"?: "..."}
//! claims  {"iss": app id, "aud": "jitsi", "sub": tenant or "*", "room": name or "*",
//!          "exp": .., "nbf"?: .., "context"?: {"user": {"id","name","email","avatar","moderator"}},
//!          "moderator"?: bool}
//! ```
//! The key is chosen by `kid` (no `kid`: the default HS256 secret, Jitsi's `app_secret`), and the
//! key alone decides the algorithm: a header asking for another one is refused before any
//! signature is computed. That is what closes `alg: none` and the HS/RS confusion (an HS256 token
//! "signed" with a published RSA public key).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bridgemesh_proto::RoomId;
use bridgemesh_proto::api::ErrorCode;
// One pkcs8 crate serves both rsa and ed25519-dalek, so these traits cover both key types.
use ed25519_dalek::pkcs8::{DecodePrivateKey as _, DecodePublicKey as _, EncodePrivateKey as _};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rsa::pkcs1::{DecodeRsaPrivateKey as _, DecodeRsaPublicKey as _};
use rsa::pkcs1::{EncodeRsaPrivateKey as _, EncodeRsaPublicKey as _};
use rsa::traits::PublicKeyParts as _;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use subtle::ConstantTimeEq as _;

/// Clock skew tolerated on `exp` and `nbf`. Tokens are usually minted by the site's backend just
/// before the browser joins, often with `nbf` = now; if this node's clock is a little behind the
/// minting server's, a zero leeway would refuse fresh tokens. NTP-synced hosts agree to well under a
/// second, a drifting VM by a few seconds; 10 s covers that while adding little to a stolen
/// token's life (Jitsi deployments hand out tokens valid for minutes to hours).
pub const LEEWAY_S_DEFAULT: u64 = 10;
/// Beyond this a leeway stops being clock skew and starts being a longer token lifetime.
pub const LEEWAY_S_MAX: u64 = 300;
/// RFC 7518 §3.2: an HS256 key MUST be at least as long as the hash output (256 bits).
pub const HS256_SECRET_MIN_BYTES: usize = 32;
/// Smallest RSA public key accepted (NIST SP 800-131A; also what RFC 7518 §3.3 requires).
pub const RSA_BITS_MIN: usize = 2048;
/// Longest token looked at. Jitsi tokens with a full `context` are around 1 KiB; the bound keeps
/// an unauthenticated caller from making us base64-decode and parse megabytes.
pub const TOKEN_MAX_BYTES: usize = 8 * 1024;
/// Shortest admin secret accepted; a generated one is 32 random bytes as 64 hex digits.
pub const ADMIN_SECRET_MIN_BYTES: usize = 32;
/// How much of an attacker-chosen header value (`kid`, `alg`) an error message repeats.
const ECHO_MAX_CHARS: usize = 64;

mod admin;
mod config;
mod error;
mod mint;
mod verify;

pub use admin::*;
pub use config::*;
pub use error::*;
pub use mint::*;
pub use verify::*;

/// What a valid token says about its holder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// `iss`: the app that issued the token.
    pub issuer: String,
    /// `sub`: Jitsi's tenant or domain (often `*`). Recorded, not checked: bridgemesh has no tenants.
    pub subject: Option<String>,
    /// `context.user.id` (a number there is accepted and written in decimal).
    pub user_id: Option<String>,
    /// `context.user.name`: the display name to use.
    pub name: Option<String>,
    pub email: Option<String>,
    pub avatar: Option<String>,
    pub moderator: bool,
    /// `exp`, for callers that bound a session by its token.
    pub expires_at_unix_s: u64,
}

/// The outcome of [`TokenVerifier::admit`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    Token(Identity),
    Guest,
}

impl Admission {
    pub fn is_moderator(&self) -> bool {
        matches!(self, Self::Token(identity) if identity.moderator)
    }
}

/// `Authorization: Bearer <token>` → `Some(token)`; no header → `None`. The scheme is
/// case-insensitive (RFC 7235 §2.1); anything else is refused rather than read as "no token", so a
/// client that sends its token wrongly learns why instead of being let in as a guest.
pub fn bearer(authorization: Option<&str>) -> Result<Option<&str>, AuthError> {
    let Some(value) = authorization else {
        return Ok(None);
    };
    let not_bearer = AuthError::Malformed {
        reason: "the Authorization header is not `Bearer <token>`",
    };
    let (scheme, token) = value.trim().split_once(' ').ok_or(not_bearer.clone())?;
    let token = token.trim();
    if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() {
        return Err(not_bearer);
    }
    Ok(Some(token))
}

/// Whether a participant without a token may join now. `room_opened_by_moderator`: a moderator has
/// joined this room since it was created (it need not still be there, as in Jitsi's wait-for-host).
///
/// Refusals: [`GuestPolicy::None`] → `token_required` (401: a token is the only way in);
/// [`GuestPolicy::AfterModerator`] before a moderator → `guest_not_allowed` (403: the request is
/// understood and refused by room policy for now; retrying later without a token can succeed).
pub fn guest_admission(policy: GuestPolicy, room_opened_by_moderator: bool) -> Result<(), AuthError> {
    match policy {
        GuestPolicy::Open => Ok(()),
        GuestPolicy::AfterModerator if room_opened_by_moderator => Ok(()),
        GuestPolicy::AfterModerator => Err(AuthError::GuestNotAllowed),
        GuestPolicy::None => Err(AuthError::TokenRequired),
    }
}

#[cfg(test)]
mod tests;
