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

/// A secret string whose `Debug` shows only its length, so configs and requests can be logged.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself; for the few places that must use or show it (signing, first start).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret(<{} bytes redacted>)", self.0.len())
    }
}

/// Who may join without a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GuestPolicy {
    /// Nobody: every join needs a valid token (Jitsi's `allow_empty_token = false`).
    None,
    /// Guests join a room only once a moderator (a token with the moderator flag) has opened it;
    /// until then they are refused with `guest_not_allowed` and may retry (Jitsi's "wait for host").
    AfterModerator,
    /// Anyone may join without a token; a token, when given, must still be valid.
    Open,
}

/// The algorithm a configured public key verifies; tokens under its `kid` must use exactly this.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PublicKeyAlgorithm {
    #[serde(rename = "rs256")]
    Rs256,
    /// Ed25519 only (the one EdDSA curve jsonwebtoken supports).
    #[serde(rename = "eddsa")]
    EdDsa,
}

/// A public key in PEM: SubjectPublicKeyInfo (`BEGIN PUBLIC KEY`, what `openssl pkey -pubout` and
/// Jitsi's key servers hand out) or, for RSA, PKCS#1 (`BEGIN RSA PUBLIC KEY`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublicKeyConfig {
    pub algorithm: PublicKeyAlgorithm,
    pub pem: String,
}

/// How join tokens are checked. Built by the binary from its config file, environment and flags.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// Accepted `iss` values: Jitsi's `app_id` (or its `asap_accepted_issuers`). Compared exactly;
    /// like Jitsi, there is no wildcard for issuers.
    pub accepted_issuers: Vec<String>,
    /// Accepted `aud` values (Jitsi's `asap_accepted_audiences`; tokens commonly say `"jitsi"`).
    /// `"*"` accepts any audience, as in Jitsi.
    pub accepted_audiences: Vec<String>,
    /// Verifies HS256 tokens that carry no `kid`: Jitsi's `app_secret`.
    pub hs256_secret: Option<Secret>,
    /// More HS256 secrets, chosen by the token's `kid` (rotation, several token issuers).
    pub hs256_secrets: BTreeMap<String, Secret>,
    /// Public keys chosen by the token's `kid`.
    pub public_keys: BTreeMap<String, PublicKeyConfig>,
    /// Clock skew tolerated on `exp` and `nbf`; see [`LEEWAY_S_DEFAULT`].
    pub leeway_s: u64,
    /// Who may join without a token. Unset means: [`GuestPolicy::Open`] when no key is configured
    /// (nothing to check tokens with), [`GuestPolicy::None`] as soon as one is — configuring
    /// tokens should not leave the door open by default. See [`AuthConfig::guest_policy`].
    pub guest_policy: Option<GuestPolicy>,
}

impl Default for AuthConfig {
    /// No keys: tokens are not checked and everyone joins as a guest (`bridgemesh up`).
    fn default() -> Self {
        Self {
            accepted_issuers: Vec::new(),
            accepted_audiences: Vec::new(),
            hs256_secret: None,
            hs256_secrets: BTreeMap::new(),
            public_keys: BTreeMap::new(),
            leeway_s: LEEWAY_S_DEFAULT,
            guest_policy: None,
        }
    }
}

impl AuthConfig {
    /// True when at least one key is configured, i.e. tokens are checked at all.
    pub fn tokens_enabled(&self) -> bool {
        self.hs256_secret.is_some() || !self.hs256_secrets.is_empty() || !self.public_keys.is_empty()
    }

    /// The policy in force, with the default resolved (see the field's documentation).
    pub fn guest_policy(&self) -> GuestPolicy {
        match self.guest_policy {
            Some(policy) => policy,
            None if self.tokens_enabled() => GuestPolicy::None,
            None => GuestPolicy::Open,
        }
    }

    /// Checks everything [`TokenVerifier::new`] checks, including that every key parses.
    pub fn validate(&self) -> Result<(), AuthConfigError> {
        TokenVerifier::new(self).map(drop)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthConfigError {
    #[error("leeway_s is {leeway_s}; more than {LEEWAY_S_MAX} s is not clock skew")]
    LeewayTooLarge { leeway_s: u64 },
    #[error("keys are configured but accepted_issuers is empty (put the app id there)")]
    NoIssuers,
    #[error(
        "keys are configured but accepted_audiences is empty (Jitsi tokens usually say \"jitsi\"; \"*\" accepts any)"
    )]
    NoAudiences,
    #[error("{field} contains an empty string")]
    EmptyEntry { field: &'static str },
    #[error(
        "accepted_issuers or accepted_audiences are set but no key is configured, so tokens would not be checked at all"
    )]
    SettingsWithoutKeys,
    #[error("guest_policy {policy:?} needs a key to verify tokens with, and none is configured")]
    PolicyNeedsKeys { policy: GuestPolicy },
    #[error("a key id (kid) is empty")]
    EmptyKid,
    #[error("kid {kid:?} names both an HS256 secret and a public key")]
    DuplicateKid { kid: String },
    #[error("the HS256 secret{} is {bytes} bytes; at least {HS256_SECRET_MIN_BYTES} are required", kid_suffix(.kid))]
    SecretTooShort { kid: Option<String>, bytes: usize },
    #[error("the public key for kid {kid:?} is not a valid {algorithm:?} PEM public key: {reason}")]
    BadPublicKey {
        kid: String,
        algorithm: PublicKeyAlgorithm,
        reason: String,
    },
    #[error("the RSA key for kid {kid:?} has {bits} bits; at least {RSA_BITS_MIN} are required")]
    RsaKeyTooSmall { kid: String, bits: usize },
    #[error("the admin secret is {bytes} bytes; at least {ADMIN_SECRET_MIN_BYTES} are required")]
    AdminSecretTooShort { bytes: usize },
}

fn kid_suffix(kid: &Option<String>) -> String {
    kid.as_ref()
        .map(|kid| format!(" for kid {kid:?}"))
        .unwrap_or_default()
}

/// Why a join (or an admin request) is refused. [`AuthError::code`] is what the client sees; the
/// messages never contain a token or a secret, and repeat at most a short prefix of a `kid`/`alg`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    #[error("a token is required to join")]
    TokenRequired,
    #[error("the token is not a well-formed JWT: {reason}")]
    Malformed { reason: &'static str },
    #[error("the token's signature does not verify")]
    BadSignature,
    #[error("the token's algorithm {alg:?} is not allowed{}", expected_suffix(*.expected))]
    AlgorithmNotAllowed {
        alg: String,
        /// The algorithm of the key the token names, when it names one.
        expected: Option<&'static str>,
    },
    #[error("{}", unknown_key_message(.kid))]
    UnknownKey { kid: Option<String> },
    #[error("the token expired at {exp_unix_s} (now {now_unix_s}, {leeway_s} s of clock skew allowed)")]
    Expired {
        exp_unix_s: u64,
        now_unix_s: u64,
        leeway_s: u64,
    },
    #[error(
        "the token is not valid before {nbf_unix_s} (now {now_unix_s}, {leeway_s} s of clock skew allowed)"
    )]
    NotYetValid {
        nbf_unix_s: u64,
        now_unix_s: u64,
        leeway_s: u64,
    },
    #[error("the token's audience (aud) is not accepted here")]
    WrongAudience,
    #[error("the token's issuer (iss) is not accepted here")]
    WrongIssuer,
    #[error("the token is for another room")]
    WrongRoom,
    #[error("the token has no `{claim}` claim")]
    MissingClaim { claim: &'static str },
    #[error("the token's `{claim}` claim has the wrong type or value")]
    InvalidClaim { claim: &'static str },
    #[error("guests may join this room only after a moderator has opened it")]
    GuestNotAllowed,
    #[error("missing or wrong admin credential")]
    AdminUnauthorized,
}

fn expected_suffix(expected: Option<&'static str>) -> String {
    expected
        .map(|alg| format!(" (the key it names is for {alg})"))
        .unwrap_or_default()
}

fn unknown_key_message(kid: &Option<String>) -> String {
    match kid {
        Some(kid) => format!("no key is configured for the token's kid {kid:?}"),
        None => "the token has no kid and no default HS256 secret is configured".to_owned(),
    }
}

impl AuthError {
    /// The code the client branches on; its HTTP status is [`ErrorCode::http_status`] (401 for
    /// every failure here except [`AuthError::GuestNotAllowed`], 403).
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::TokenRequired => ErrorCode::TokenRequired,
            Self::Malformed { .. } => ErrorCode::TokenMalformed,
            Self::BadSignature => ErrorCode::TokenBadSignature,
            Self::AlgorithmNotAllowed { .. } => ErrorCode::TokenAlgorithmNotAllowed,
            Self::UnknownKey { .. } => ErrorCode::TokenUnknownKey,
            Self::Expired { .. } => ErrorCode::TokenExpired,
            Self::NotYetValid { .. } => ErrorCode::TokenNotYetValid,
            Self::WrongAudience => ErrorCode::TokenWrongAudience,
            Self::WrongIssuer => ErrorCode::TokenWrongIssuer,
            Self::WrongRoom => ErrorCode::TokenWrongRoom,
            Self::MissingClaim { .. } => ErrorCode::TokenMissingClaim,
            Self::InvalidClaim { .. } => ErrorCode::TokenInvalidClaim,
            Self::GuestNotAllowed => ErrorCode::GuestNotAllowed,
            Self::AdminUnauthorized => ErrorCode::AdminUnauthorized,
        }
    }
}

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

/// One configured key, with the only algorithm a token under it may use.
struct VerifyKey {
    algorithm: Algorithm,
    key: DecodingKey,
    /// Signature and algorithm only: the claims are checked by hand below, so that each failure
    /// gets its own error and the room check sits with the others.
    validation: Validation,
}

impl VerifyKey {
    fn new(algorithm: Algorithm, key: DecodingKey) -> Self {
        let mut validation = Validation::new(algorithm);
        validation.required_spec_claims = HashSet::new();
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        Self {
            algorithm,
            key,
            validation,
        }
    }
}

/// Checks join tokens. Build it once (it parses every key) and share it.
pub struct TokenVerifier {
    default_key: Option<VerifyKey>,
    keys_by_kid: HashMap<String, VerifyKey>,
    accepted_issuers: Vec<String>,
    accepted_audiences: Vec<String>,
    leeway_s: u64,
    guest_policy: GuestPolicy,
}

impl fmt::Debug for TokenVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut kids: Vec<(&str, Algorithm)> = self
            .keys_by_kid
            .iter()
            .map(|(kid, key)| (kid.as_str(), key.algorithm))
            .collect();
        kids.sort_unstable_by_key(|(kid, _)| *kid);
        f.debug_struct("TokenVerifier")
            .field("default_hs256_secret", &self.default_key.is_some())
            .field("keys_by_kid", &kids)
            .field("accepted_issuers", &self.accepted_issuers)
            .field("accepted_audiences", &self.accepted_audiences)
            .field("leeway_s", &self.leeway_s)
            .field("guest_policy", &self.guest_policy)
            .finish()
    }
}

fn hs256_key(secret: &Secret, kid: Option<&str>) -> Result<VerifyKey, AuthConfigError> {
    let bytes = secret.expose().len();
    if bytes < HS256_SECRET_MIN_BYTES {
        return Err(AuthConfigError::SecretTooShort {
            kid: kid.map(str::to_owned),
            bytes,
        });
    }
    Ok(VerifyKey::new(
        Algorithm::HS256,
        DecodingKey::from_secret(secret.expose().as_bytes()),
    ))
}

fn public_key(kid: &str, config: &PublicKeyConfig) -> Result<VerifyKey, AuthConfigError> {
    let bad = |reason: String| AuthConfigError::BadPublicKey {
        kid: kid.to_owned(),
        algorithm: config.algorithm,
        reason,
    };
    match config.algorithm {
        PublicKeyAlgorithm::Rs256 => {
            let key = rsa::RsaPublicKey::from_public_key_pem(&config.pem)
                .or_else(|_| rsa::RsaPublicKey::from_pkcs1_pem(&config.pem))
                .map_err(|err| bad(err.to_string()))?;
            let bits = key.n().bits();
            if bits < RSA_BITS_MIN {
                return Err(AuthConfigError::RsaKeyTooSmall {
                    kid: kid.to_owned(),
                    bits,
                });
            }
            let der = key.to_pkcs1_der().map_err(|err| bad(err.to_string()))?;
            Ok(VerifyKey::new(
                Algorithm::RS256,
                DecodingKey::from_rsa_der(der.as_bytes()),
            ))
        }
        PublicKeyAlgorithm::EdDsa => {
            let key = ed25519_dalek::VerifyingKey::from_public_key_pem(&config.pem)
                .map_err(|err| bad(err.to_string()))?;
            // jsonwebtoken's rust_crypto EdDSA verifier takes the raw 32-byte public key.
            Ok(VerifyKey::new(
                Algorithm::EdDSA,
                DecodingKey::from_ed_der(key.as_bytes()),
            ))
        }
    }
}

/// The part of the JOSE header we read before choosing a key. Parsed by hand rather than with
/// `jsonwebtoken::decode_header` because that one fails on `"alg": "none"` with a generic JSON
/// error, and `none` deserves its own answer.
#[derive(Deserialize)]
struct JoseHeader {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
    /// RFC 7515 §4.1.11: extensions the recipient must understand. We understand none.
    #[serde(default)]
    crit: Option<Value>,
}

fn echo(value: &str) -> String {
    value.chars().take(ECHO_MAX_CHARS).collect()
}

fn algorithm_name(algorithm: Algorithm) -> &'static str {
    match algorithm {
        Algorithm::HS256 => "HS256",
        Algorithm::RS256 => "RS256",
        Algorithm::EdDSA => "EdDSA",
        // Only the three above are ever configured.
        _ => "another algorithm",
    }
}

/// A NumericDate claim (RFC 7519 §2): seconds, possibly fractional. Fractions are rounded toward
/// refusal: `exp` down, `nbf` up.
fn numeric_date(
    claims: &Map<String, Value>,
    claim: &'static str,
    round_up: bool,
) -> Result<Option<u64>, AuthError> {
    let invalid = AuthError::InvalidClaim { claim };
    match claims.get(claim) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(number)) => {
            if let Some(seconds) = number.as_u64() {
                return Ok(Some(seconds));
            }
            let seconds = number.as_f64().ok_or(invalid.clone())?;
            if !seconds.is_finite() || seconds < 0.0 {
                return Err(invalid);
            }
            let rounded = if round_up { seconds.ceil() } else { seconds.floor() };
            // `as` saturates at u64::MAX, which is the right reading of an absurdly far date.
            Ok(Some(rounded as u64))
        }
        Some(_) => Err(invalid),
    }
}

fn required_str<'a>(claims: &'a Map<String, Value>, claim: &'static str) -> Result<&'a str, AuthError> {
    match claims.get(claim) {
        None | Some(Value::Null) => Err(AuthError::MissingClaim { claim }),
        Some(Value::String(value)) => Ok(value),
        Some(_) => Err(AuthError::InvalidClaim { claim }),
    }
}

fn optional_str(
    object: &Map<String, Value>,
    field: &str,
    claim: &'static str,
) -> Result<Option<String>, AuthError> {
    match object.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(value)) => Ok(Some(value.clone())),
        Some(_) => Err(AuthError::InvalidClaim { claim }),
    }
}

fn optional_object<'a>(
    object: &'a Map<String, Value>,
    field: &str,
    claim: &'static str,
) -> Result<Option<&'a Map<String, Value>>, AuthError> {
    match object.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(inner)) => Ok(Some(inner)),
        Some(_) => Err(AuthError::InvalidClaim { claim }),
    }
}

/// A moderator flag as generators write it: JSON `true`/`false`, or the strings `"true"`/`"false"`
/// (JaaS's documentation and many Jitsi generators emit the string). Anything else is refused
/// rather than read as "not a moderator", so a generator bug shows up as an error naming the claim.
fn flag(value: Option<&Value>, claim: &'static str) -> Result<bool, AuthError> {
    match value {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(flag)) => Ok(*flag),
        Some(Value::String(text)) if text.eq_ignore_ascii_case("true") => Ok(true),
        Some(Value::String(text)) if text.eq_ignore_ascii_case("false") => Ok(false),
        Some(_) => Err(AuthError::InvalidClaim { claim }),
    }
}

impl TokenVerifier {
    pub fn new(config: &AuthConfig) -> Result<Self, AuthConfigError> {
        if config.leeway_s > LEEWAY_S_MAX {
            return Err(AuthConfigError::LeewayTooLarge {
                leeway_s: config.leeway_s,
            });
        }
        for (field, entries) in [
            ("accepted_issuers", &config.accepted_issuers),
            ("accepted_audiences", &config.accepted_audiences),
        ] {
            if entries.iter().any(String::is_empty) {
                return Err(AuthConfigError::EmptyEntry { field });
            }
        }
        let policy = config.guest_policy();
        if config.tokens_enabled() {
            if config.accepted_issuers.is_empty() {
                return Err(AuthConfigError::NoIssuers);
            }
            if config.accepted_audiences.is_empty() {
                return Err(AuthConfigError::NoAudiences);
            }
        } else {
            if !config.accepted_issuers.is_empty() || !config.accepted_audiences.is_empty() {
                return Err(AuthConfigError::SettingsWithoutKeys);
            }
            // Without keys nobody can show a token, so only an open room can ever be joined.
            if policy != GuestPolicy::Open {
                return Err(AuthConfigError::PolicyNeedsKeys { policy });
            }
        }
        let default_key = config
            .hs256_secret
            .as_ref()
            .map(|secret| hs256_key(secret, None))
            .transpose()?;
        let mut keys_by_kid = HashMap::new();
        for (kid, secret) in &config.hs256_secrets {
            if kid.is_empty() {
                return Err(AuthConfigError::EmptyKid);
            }
            keys_by_kid.insert(kid.clone(), hs256_key(secret, Some(kid))?);
        }
        for (kid, key) in &config.public_keys {
            if kid.is_empty() {
                return Err(AuthConfigError::EmptyKid);
            }
            if keys_by_kid.contains_key(kid) {
                return Err(AuthConfigError::DuplicateKid { kid: kid.clone() });
            }
            keys_by_kid.insert(kid.clone(), public_key(kid, key)?);
        }
        Ok(Self {
            default_key,
            keys_by_kid,
            accepted_issuers: config.accepted_issuers.clone(),
            accepted_audiences: config.accepted_audiences.clone(),
            leeway_s: config.leeway_s,
            guest_policy: policy,
        })
    }

    pub fn tokens_enabled(&self) -> bool {
        self.default_key.is_some() || !self.keys_by_kid.is_empty()
    }

    pub fn guest_policy(&self) -> GuestPolicy {
        self.guest_policy
    }

    /// The whole join decision. `token` is what [`bearer`] returned; `room_opened_by_moderator` is
    /// as in [`guest_admission`].
    ///
    /// A token that is present is always verified, whatever the guest policy: a forged or expired
    /// token is refused, never quietly downgraded to a guest (Jitsi does the same). With no key
    /// configured (`bridgemesh up`), tokens are not looked at and everyone is a guest.
    pub fn admit(
        &self,
        token: Option<&str>,
        room: &RoomId,
        room_opened_by_moderator: bool,
        now_unix_s: u64,
    ) -> Result<Admission, AuthError> {
        if !self.tokens_enabled() {
            return Ok(Admission::Guest);
        }
        match token {
            Some(token) => self.verify(token, room, now_unix_s).map(Admission::Token),
            None => guest_admission(self.guest_policy, room_opened_by_moderator).map(|()| Admission::Guest),
        }
    }

    /// Verifies `token` for `room` at `now_unix_s`.
    ///
    /// Order: shape → header (`alg: none`, key by `kid`, the key's algorithm) → signature → claims
    /// (`iss`, `aud`, `exp`, `nbf`, `room`, then the user context). Nothing in the claims is looked
    /// at before the signature verifies, so an unsigned token learns nothing about our settings.
    pub fn verify(&self, token: &str, room: &RoomId, now_unix_s: u64) -> Result<Identity, AuthError> {
        if token.len() > TOKEN_MAX_BYTES {
            return Err(AuthError::Malformed {
                reason: "longer than any token we issue or accept",
            });
        }
        let mut parts = token.split('.');
        let (Some(header), Some(_claims), Some(_signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(AuthError::Malformed {
                reason: "a JWT has exactly three dot-separated parts",
            });
        };
        let header = URL_SAFE_NO_PAD.decode(header).map_err(|_| AuthError::Malformed {
            reason: "the header is not base64url",
        })?;
        let header: JoseHeader = serde_json::from_slice(&header).map_err(|_| AuthError::Malformed {
            reason: "the header is not a JSON object with a string `alg`",
        })?;
        if header.alg.is_empty() || header.alg.eq_ignore_ascii_case("none") {
            return Err(AuthError::AlgorithmNotAllowed {
                alg: echo(&header.alg),
                expected: None,
            });
        }
        if header.crit.is_some() {
            return Err(AuthError::Malformed {
                reason: "the header lists critical extensions (crit), none of which we implement",
            });
        }
        let key = match &header.kid {
            Some(kid) => self.keys_by_kid.get(kid),
            None => self.default_key.as_ref(),
        }
        .ok_or_else(|| AuthError::UnknownKey {
            kid: header.kid.as_deref().map(echo),
        })?;
        if header.alg != algorithm_name(key.algorithm) {
            return Err(AuthError::AlgorithmNotAllowed {
                alg: echo(&header.alg),
                expected: Some(algorithm_name(key.algorithm)),
            });
        }
        let claims = jsonwebtoken::decode::<Map<String, Value>>(token, &key.key, &key.validation)
            .map_err(|err| match err.kind() {
                ErrorKind::InvalidSignature => AuthError::BadSignature,
                ErrorKind::InvalidAlgorithm
                | ErrorKind::InvalidAlgorithmName
                | ErrorKind::MissingAlgorithm => AuthError::AlgorithmNotAllowed {
                    alg: echo(&header.alg),
                    expected: Some(algorithm_name(key.algorithm)),
                },
                ErrorKind::Base64(_) => AuthError::Malformed {
                    reason: "a part is not base64url",
                },
                ErrorKind::Json(_) | ErrorKind::Utf8(_) => AuthError::Malformed {
                    reason: "the claims are not a JSON object",
                },
                ErrorKind::InvalidToken => AuthError::Malformed { reason: "not a JWT" },
                // Key errors cannot happen with keys parsed at start; anything else the library
                // adds later is, from the client's side, a token that does not verify.
                _ => AuthError::BadSignature,
            })?
            .claims;
        self.check_claims(&claims, room, now_unix_s)
    }

    fn check_claims(
        &self,
        claims: &Map<String, Value>,
        room: &RoomId,
        now_unix_s: u64,
    ) -> Result<Identity, AuthError> {
        let issuer = required_str(claims, "iss")?;
        if !self.accepted_issuers.iter().any(|accepted| accepted == issuer) {
            return Err(AuthError::WrongIssuer);
        }

        // RFC 7519 §4.1.3: `aud` is a string or an array of strings; any accepted one will do.
        // (Jitsi compares a string only; accepting the array form too costs nothing.)
        let audiences: Vec<&str> = match claims.get("aud") {
            None | Some(Value::Null) => return Err(AuthError::MissingClaim { claim: "aud" }),
            Some(Value::String(aud)) => vec![aud.as_str()],
            Some(Value::Array(items)) => items
                .iter()
                .map(|item| item.as_str().ok_or(AuthError::InvalidClaim { claim: "aud" }))
                .collect::<Result<_, _>>()?,
            Some(_) => return Err(AuthError::InvalidClaim { claim: "aud" }),
        };
        let any_audience = self.accepted_audiences.iter().any(|accepted| accepted == "*");
        if !any_audience
            && !audiences
                .iter()
                .any(|aud| self.accepted_audiences.iter().any(|accepted| accepted == aud))
        {
            return Err(AuthError::WrongAudience);
        }

        // RFC 7519 §4.1.4: valid only while now < exp. Jitsi requires `exp`; so do we.
        let exp = numeric_date(claims, "exp", false)?.ok_or(AuthError::MissingClaim { claim: "exp" })?;
        if now_unix_s >= exp.saturating_add(self.leeway_s) {
            return Err(AuthError::Expired {
                exp_unix_s: exp,
                now_unix_s,
                leeway_s: self.leeway_s,
            });
        }
        // RFC 7519 §4.1.5: valid only once now >= nbf. Optional, as in Jitsi.
        if let Some(nbf) = numeric_date(claims, "nbf", true)?
            && now_unix_s.saturating_add(self.leeway_s) < nbf
        {
            return Err(AuthError::NotYetValid {
                nbf_unix_s: nbf,
                now_unix_s,
                leeway_s: self.leeway_s,
            });
        }

        // Jitsi lower-cases the claim and compares it with the room name (ASCII, as Lua's
        // string.lower does); our room ids are already lower-case ASCII.
        let room_claim = required_str(claims, "room")?;
        if room_claim != "*" && !room_claim.eq_ignore_ascii_case(room.as_str()) {
            return Err(AuthError::WrongRoom);
        }

        let subject = match claims.get("sub") {
            None | Some(Value::Null) => None,
            Some(Value::String(sub)) => Some(sub.clone()),
            Some(_) => return Err(AuthError::InvalidClaim { claim: "sub" }),
        };
        let context = optional_object(claims, "context", "context")?;
        let user = match context {
            Some(context) => optional_object(context, "user", "context.user")?,
            None => None,
        };
        let empty = Map::new();
        let user = user.unwrap_or(&empty);
        let user_id = match user.get("id") {
            None | Some(Value::Null) => None,
            Some(Value::String(id)) => Some(id.clone()),
            // Generators often put a database id here as a number.
            Some(Value::Number(id)) => Some(id.to_string()),
            Some(_) => {
                return Err(AuthError::InvalidClaim {
                    claim: "context.user.id",
                });
            }
        };
        // Moderator: `context.user.moderator` (Jitsi/JaaS), a top-level `moderator` (common in
        // self-hosted generators), or `context.user.affiliation` of owner/moderator/teacher (what
        // jitsi-contrib's token_affiliation reads and the jitok generator writes). Any one grants it.
        let affiliation = optional_str(user, "affiliation", "context.user.affiliation")?;
        let moderator = flag(user.get("moderator"), "context.user.moderator")?
            | flag(claims.get("moderator"), "moderator")?
            | matches!(affiliation.as_deref(), Some("owner" | "moderator" | "teacher"));
        Ok(Identity {
            issuer: issuer.to_owned(),
            subject,
            user_id,
            name: optional_str(user, "name", "context.user.name")?,
            email: optional_str(user, "email", "context.user.email")?,
            avatar: optional_str(user, "avatar", "context.user.avatar")?,
            moderator,
            expires_at_unix_s: exp,
        })
    }
}

/// The admin API's credential: one bearer secret, separate from every join token and key, so a
/// leaked app secret cannot drain bridges and an admin secret grants nothing in rooms.
pub struct AdminAuth {
    secret: Secret,
}

impl fmt::Debug for AdminAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdminAuth").field("secret", &self.secret).finish()
    }
}

impl AdminAuth {
    pub fn new(secret: Secret) -> Result<Self, AuthConfigError> {
        let bytes = secret.expose().len();
        if bytes < ADMIN_SECRET_MIN_BYTES {
            return Err(AuthConfigError::AdminSecretTooShort { bytes });
        }
        Ok(Self { secret })
    }

    /// 32 random bytes as 64 hex digits: for the binary when the operator configured none (it
    /// then stores or shows the secret once; this module never logs it).
    pub fn generate<R: rand::CryptoRng + ?Sized>(rng: &mut R) -> Self {
        let mut bytes = [0u8; 32];
        rng.fill_bytes(&mut bytes);
        let hex: String = bytes.iter().map(|byte| format!("{byte:02x}")).collect();
        Self {
            secret: Secret::new(hex),
        }
    }

    pub fn secret(&self) -> &Secret {
        &self.secret
    }

    /// Checks an `Authorization` header value. The comparison takes the same time wherever the
    /// first wrong byte is (it still reveals a length mismatch, which says nothing about a
    /// fixed-length random secret).
    pub fn check_admin(&self, authorization: Option<&str>) -> Result<(), AuthError> {
        let presented = bearer(authorization)
            .ok()
            .flatten()
            .ok_or(AuthError::AdminUnauthorized)?;
        if bool::from(presented.as_bytes().ct_eq(self.secret.expose().as_bytes())) {
            Ok(())
        } else {
            Err(AuthError::AdminUnauthorized)
        }
    }
}

/// The key a token is signed with by [`mint`].
#[derive(Debug, Clone)]
pub enum MintKey {
    Hs256(Secret),
    /// PKCS#8 (`BEGIN PRIVATE KEY`) or PKCS#1 (`BEGIN RSA PRIVATE KEY`) PEM.
    Rs256 {
        private_key_pem: Secret,
    },
    /// PKCS#8 (`BEGIN PRIVATE KEY`) PEM of an Ed25519 key.
    EdDsa {
        private_key_pem: Secret,
    },
}

/// `context.user` of a minted token; empty fields are left out.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct TokenUser {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub avatar: Option<String>,
}

#[derive(Debug, Clone)]
pub struct MintRequest {
    pub key: MintKey,
    /// Header `kid`: required for public-key verification, optional for HS256.
    pub kid: Option<String>,
    pub iss: String,
    pub aud: String,
    /// Jitsi's tenant/domain; `*` when there is none.
    pub sub: String,
    /// A room name or `*`.
    pub room: String,
    pub user: TokenUser,
    pub moderator: bool,
    /// Not valid before this time; `None` means from now.
    pub nbf_unix_s: Option<u64>,
    /// Valid for this long from `nbf` (or now).
    pub ttl_s: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MintError {
    #[error("the token lifetime must be more than 0 seconds")]
    ZeroTtl,
    #[error("the HS256 secret is empty")]
    EmptySecret,
    #[error("the private key is not a valid {algorithm} PEM private key: {reason}")]
    BadPrivateKey { algorithm: &'static str, reason: String },
    #[error("signing failed: {0}")]
    Signing(String),
}

#[derive(Serialize)]
struct MintedUser<'a> {
    #[serde(flatten)]
    user: &'a TokenUser,
    /// A JSON boolean: what our verifier and Jitsi's affiliation modules read; the string form is
    /// accepted on input for generators that write it.
    moderator: bool,
}

#[derive(Serialize)]
struct MintedContext<'a> {
    user: MintedUser<'a>,
}

#[derive(Serialize)]
struct MintedClaims<'a> {
    iss: &'a str,
    aud: &'a str,
    sub: &'a str,
    room: &'a str,
    iat: u64,
    nbf: u64,
    exp: u64,
    context: MintedContext<'a>,
}

/// Signs a Jitsi-format token. Valid from `nbf` (default `now_unix_s`) for `ttl_s` seconds.
pub fn mint(request: &MintRequest, now_unix_s: u64) -> Result<String, MintError> {
    if request.ttl_s == 0 {
        return Err(MintError::ZeroTtl);
    }
    let nbf = request.nbf_unix_s.unwrap_or(now_unix_s);
    let claims = MintedClaims {
        iss: &request.iss,
        aud: &request.aud,
        sub: &request.sub,
        room: &request.room,
        iat: now_unix_s,
        nbf,
        exp: nbf.max(now_unix_s).saturating_add(request.ttl_s),
        context: MintedContext {
            user: MintedUser {
                user: &request.user,
                moderator: request.moderator,
            },
        },
    };
    let (algorithm, key) = match &request.key {
        MintKey::Hs256(secret) => {
            if secret.expose().is_empty() {
                return Err(MintError::EmptySecret);
            }
            (
                Algorithm::HS256,
                EncodingKey::from_secret(secret.expose().as_bytes()),
            )
        }
        MintKey::Rs256 { private_key_pem } => {
            let bad = |reason: String| MintError::BadPrivateKey {
                algorithm: "RS256",
                reason,
            };
            let pem = private_key_pem.expose();
            let key = rsa::RsaPrivateKey::from_pkcs8_pem(pem)
                .or_else(|_| rsa::RsaPrivateKey::from_pkcs1_pem(pem))
                .map_err(|err| bad(err.to_string()))?;
            let der = key.to_pkcs1_der().map_err(|err| bad(err.to_string()))?;
            (Algorithm::RS256, EncodingKey::from_rsa_der(der.as_bytes()))
        }
        MintKey::EdDsa { private_key_pem } => {
            let bad = |reason: String| MintError::BadPrivateKey {
                algorithm: "EdDSA",
                reason,
            };
            let key = ed25519_dalek::SigningKey::from_pkcs8_pem(private_key_pem.expose())
                .map_err(|err| bad(err.to_string()))?;
            let der = key.to_pkcs8_der().map_err(|err| bad(err.to_string()))?;
            (Algorithm::EdDSA, EncodingKey::from_ed_der(der.as_bytes()))
        }
    };
    let mut header = Header::new(algorithm);
    header.kid = request.kid.clone();
    jsonwebtoken::encode(&header, &claims, &key).map_err(|err| MintError::Signing(err.to_string()))
}
