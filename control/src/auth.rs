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
                    reason: "the header or the claims are not JSON of the expected shape",
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const NOW: u64 = 1_750_000_000;
    const SECRET: &str = "a-test-secret-of-at-least-32-bytes!!";
    const SECOND_SECRET: &str = "another-test-secret-32-bytes-long!!!";
    const RS_PRIVATE: &str = include_str!("../tests/data/rs256-private.pem");
    const RS_PUBLIC: &str = include_str!("../tests/data/rs256-public.pem");
    const RS_OTHER_PRIVATE: &str = include_str!("../tests/data/rs256-other-private.pem");
    const RS_1024_PUBLIC: &str = include_str!("../tests/data/rs1024-public.pem");
    const ED_PRIVATE: &str = include_str!("../tests/data/ed25519-private.pem");
    const ED_PUBLIC: &str = include_str!("../tests/data/ed25519-public.pem");

    fn config() -> AuthConfig {
        AuthConfig {
            accepted_issuers: vec!["my_app".into(), "other_app".into()],
            accepted_audiences: vec!["jitsi".into()],
            hs256_secret: Some(Secret::new(SECRET)),
            hs256_secrets: BTreeMap::from([("hs-2".into(), Secret::new(SECOND_SECRET))]),
            public_keys: BTreeMap::from([
                (
                    "rs-1".into(),
                    PublicKeyConfig {
                        algorithm: PublicKeyAlgorithm::Rs256,
                        pem: RS_PUBLIC.into(),
                    },
                ),
                (
                    "ed-1".into(),
                    PublicKeyConfig {
                        algorithm: PublicKeyAlgorithm::EdDsa,
                        pem: ED_PUBLIC.into(),
                    },
                ),
            ]),
            guest_policy: Some(GuestPolicy::None),
            ..AuthConfig::default()
        }
    }

    fn verifier() -> TokenVerifier {
        TokenVerifier::new(&config()).unwrap()
    }

    fn room(name: &str) -> RoomId {
        RoomId::new(name).unwrap()
    }

    /// The payload of lib-jitsi-meet's doc/tokens.md example, with our issuer and times.
    fn claims() -> Value {
        json!({
            "context": {
                "user": {
                    "avatar": "https://gravatar.com/avatar/abc123",
                    "name": "John Doe",
                    "email": "jdoe@example.com",
                    "id": "abcd:a1b2c3-d4e5f6-0abc1-23de-abcdef01fedcba"
                },
                "group": "a123-123-456-789"
            },
            "aud": "jitsi",
            "iss": "my_app",
            "sub": "meet.example.com",
            "room": "standup",
            "exp": NOW + 3600,
            "nbf": NOW - 5
        })
    }

    fn with(mut claims: Value, field: &str, value: Value) -> Value {
        claims[field] = value;
        claims
    }

    fn without(mut claims: Value, field: &str) -> Value {
        claims.as_object_mut().unwrap().remove(field);
        claims
    }

    fn sign(algorithm: Algorithm, key: &EncodingKey, kid: Option<&str>, claims: &Value) -> String {
        let mut header = Header::new(algorithm);
        header.kid = kid.map(str::to_owned);
        jsonwebtoken::encode(&header, claims, key).unwrap()
    }

    fn hs(secret: &str, kid: Option<&str>, claims: &Value) -> String {
        sign(
            Algorithm::HS256,
            &EncodingKey::from_secret(secret.as_bytes()),
            kid,
            claims,
        )
    }

    fn rs_key(pem: &str) -> EncodingKey {
        let key = rsa::RsaPrivateKey::from_pkcs8_pem(pem).unwrap();
        EncodingKey::from_rsa_der(key.to_pkcs1_der().unwrap().as_bytes())
    }

    fn ed_key() -> EncodingKey {
        let key = ed25519_dalek::SigningKey::from_pkcs8_pem(ED_PRIVATE).unwrap();
        EncodingKey::from_ed_der(key.to_pkcs8_der().unwrap().as_bytes())
    }

    /// A token assembled by hand: for headers jsonwebtoken will not write.
    fn raw(header: &Value, claims: &Value, signature: &[u8]) -> String {
        format!(
            "{}.{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string()),
            URL_SAFE_NO_PAD.encode(signature)
        )
    }

    fn verify(token: &str) -> Result<Identity, AuthError> {
        verifier().verify(token, &room("standup"), NOW)
    }

    #[test]
    fn accepts_a_jitsi_hs256_token_without_kid_and_reads_the_user() {
        let identity = verify(&hs(SECRET, None, &claims())).unwrap();
        assert_eq!(
            identity,
            Identity {
                issuer: "my_app".into(),
                subject: Some("meet.example.com".into()),
                user_id: Some("abcd:a1b2c3-d4e5f6-0abc1-23de-abcdef01fedcba".into()),
                name: Some("John Doe".into()),
                email: Some("jdoe@example.com".into()),
                avatar: Some("https://gravatar.com/avatar/abc123".into()),
                moderator: false,
                expires_at_unix_s: NOW + 3600,
            }
        );
    }

    #[test]
    fn accepts_hs256_rs256_and_eddsa_tokens_under_their_kids() {
        let tokens = [
            hs(SECOND_SECRET, Some("hs-2"), &claims()),
            sign(Algorithm::RS256, &rs_key(RS_PRIVATE), Some("rs-1"), &claims()),
            sign(Algorithm::EdDSA, &ed_key(), Some("ed-1"), &claims()),
        ];
        for token in tokens {
            assert_eq!(verify(&token).unwrap().name.as_deref(), Some("John Doe"));
        }
    }

    #[test]
    fn accepts_a_token_without_context_sub_or_nbf() {
        let bare = without(without(without(claims(), "context"), "sub"), "nbf");
        let identity = verify(&hs(SECRET, None, &bare)).unwrap();
        assert_eq!(
            (identity.name, identity.subject, identity.moderator),
            (None, None, false)
        );
    }

    #[test]
    fn room_star_admits_any_room_and_a_named_room_only_itself() {
        let any = hs(SECRET, None, &with(claims(), "room", json!("*")));
        for name in ["standup", "other", "x"] {
            assert!(verifier().verify(&any, &room(name), NOW).is_ok(), "{name}");
        }
        let one = hs(SECRET, None, &claims());
        assert_eq!(
            verifier().verify(&one, &room("other"), NOW),
            Err(AuthError::WrongRoom)
        );
        assert_eq!(
            verifier().verify(&one, &room("standup2"), NOW),
            Err(AuthError::WrongRoom)
        );
        // Jitsi compares the claim lower-cased.
        let mixed = hs(SECRET, None, &with(claims(), "room", json!("StandUp")));
        assert!(verify(&mixed).is_ok());
    }

    #[test]
    fn moderator_flag_is_read_from_every_place_generators_put_it() {
        let user_flag = |value: Value| {
            let mut claims = claims();
            claims["context"]["user"]["moderator"] = value;
            claims
        };
        let affiliation = |value: &str| {
            let mut claims = claims();
            claims["context"]["user"]["affiliation"] = json!(value);
            claims
        };
        let cases = [
            (user_flag(json!(true)), true),
            (user_flag(json!("true")), true),
            (user_flag(json!("TRUE")), true),
            (user_flag(json!(false)), false),
            (user_flag(json!("false")), false),
            (user_flag(Value::Null), false),
            (with(claims(), "moderator", json!(true)), true),
            (with(claims(), "moderator", json!("true")), true),
            (with(claims(), "moderator", json!(false)), false),
            (affiliation("owner"), true),
            (affiliation("moderator"), true),
            (affiliation("member"), false),
            (claims(), false),
        ];
        for (claims, moderator) in cases {
            let identity = verify(&hs(SECRET, None, &claims)).unwrap();
            assert_eq!(identity.moderator, moderator, "{claims}");
        }
        for bad in [user_flag(json!("yes")), user_flag(json!(1))] {
            assert_eq!(
                verify(&hs(SECRET, None, &bad)),
                Err(AuthError::InvalidClaim {
                    claim: "context.user.moderator"
                })
            );
        }
        assert_eq!(
            verify(&hs(SECRET, None, &with(claims(), "moderator", json!("maybe")))),
            Err(AuthError::InvalidClaim { claim: "moderator" })
        );
    }

    #[test]
    fn wrong_signatures_are_refused() {
        assert_eq!(
            verify(&hs("not-the-secret-but-32-bytes-long!!!!", None, &claims())),
            Err(AuthError::BadSignature)
        );
        // The default secret's token presented under another HS kid.
        assert_eq!(
            verify(&hs(SECRET, Some("hs-2"), &claims())),
            Err(AuthError::BadSignature)
        );
        let other_rsa = sign(
            Algorithm::RS256,
            &rs_key(RS_OTHER_PRIVATE),
            Some("rs-1"),
            &claims(),
        );
        assert_eq!(verify(&other_rsa), Err(AuthError::BadSignature));
        // A valid token whose claims were edited after signing (room "*" for one room).
        let token = hs(SECRET, None, &claims());
        let parts: Vec<&str> = token.split('.').collect();
        let forged_claims = URL_SAFE_NO_PAD.encode(with(claims(), "room", json!("*")).to_string());
        let forged = format!("{}.{}.{}", parts[0], forged_claims, parts[2]);
        assert_eq!(verify(&forged), Err(AuthError::BadSignature));
        let truncated = format!("{}.{}.{}", parts[0], parts[1], &parts[2][..40]);
        assert_eq!(verify(&truncated), Err(AuthError::BadSignature));
    }

    #[test]
    fn alg_none_is_refused_whatever_its_case_and_kid() {
        for (alg, kid) in [
            ("none", None),
            ("None", None),
            ("NONE", Some("hs-2")),
            ("none", Some("rs-1")),
            ("", None),
        ] {
            let mut header = json!({"alg": alg, "typ": "JWT"});
            if let Some(kid) = kid {
                header["kid"] = json!(kid);
            }
            for signature in [&b""[..], b"anything"] {
                let error = verify(&raw(&header, &claims(), signature)).unwrap_err();
                assert_eq!(
                    error.code(),
                    ErrorCode::TokenAlgorithmNotAllowed,
                    "{alg:?} {kid:?}"
                );
            }
        }
    }

    #[test]
    fn the_key_decides_the_algorithm_not_the_header() {
        // Classic HS/RS confusion: HMAC keyed with the published RSA public key, under its kid.
        let confused = hs(RS_PUBLIC, Some("rs-1"), &claims());
        assert_eq!(
            verify(&confused),
            Err(AuthError::AlgorithmNotAllowed {
                alg: "HS256".into(),
                expected: Some("RS256")
            })
        );
        // The same without a kid lands on the default secret, where it cannot verify.
        assert_eq!(
            verify(&hs(RS_PUBLIC, None, &claims())),
            Err(AuthError::BadSignature)
        );
        // An RS256 token without kid (default key is HS256), an EdDSA token under an RSA kid, an
        // RS256 token under an HS kid, and HS384 under the HS256 secret.
        let rs_no_kid = sign(Algorithm::RS256, &rs_key(RS_PRIVATE), None, &claims());
        let ed_as_rs = sign(Algorithm::EdDSA, &ed_key(), Some("rs-1"), &claims());
        let rs_as_hs = sign(Algorithm::RS256, &rs_key(RS_PRIVATE), Some("hs-2"), &claims());
        let hs384 = sign(
            Algorithm::HS384,
            &EncodingKey::from_secret(SECRET.as_bytes()),
            None,
            &claims(),
        );
        for token in [rs_no_kid, ed_as_rs, rs_as_hs, hs384] {
            assert_eq!(
                verify(&token).unwrap_err().code(),
                ErrorCode::TokenAlgorithmNotAllowed
            );
        }
    }

    #[test]
    fn unknown_kid_is_refused_and_no_kid_needs_a_default_secret() {
        assert_eq!(
            verify(&hs(SECRET, Some("nope"), &claims())),
            Err(AuthError::UnknownKey {
                kid: Some("nope".into())
            })
        );
        let mut no_default = config();
        no_default.hs256_secret = None;
        let verifier = TokenVerifier::new(&no_default).unwrap();
        assert_eq!(
            verifier.verify(&hs(SECRET, None, &claims()), &room("standup"), NOW),
            Err(AuthError::UnknownKey { kid: None })
        );
        // A long attacker-chosen kid is not echoed whole.
        let long_kid = "k".repeat(1000);
        let AuthError::UnknownKey { kid: Some(echoed) } =
            verify(&hs(SECRET, Some(&long_kid), &claims())).unwrap_err()
        else {
            panic!("expected UnknownKey");
        };
        assert_eq!(echoed.len(), ECHO_MAX_CHARS);
    }

    #[test]
    fn exp_is_enforced_with_the_leeway_and_no_more() {
        let leeway = LEEWAY_S_DEFAULT;
        let at = |exp: u64| verify(&hs(SECRET, None, &with(claims(), "exp", json!(exp))));
        assert!(at(NOW + 1).is_ok());
        assert!(at(NOW - leeway + 1).is_ok(), "inside the leeway");
        assert_eq!(
            at(NOW - leeway),
            Err(AuthError::Expired {
                exp_unix_s: NOW - leeway,
                now_unix_s: NOW,
                leeway_s: leeway
            })
        );
        assert_eq!(at(NOW - 3600).unwrap_err().code(), ErrorCode::TokenExpired);
        // Fractional dates are rounded toward refusal.
        let fractional = verify(&hs(
            SECRET,
            None,
            &with(claims(), "exp", json!((NOW - leeway) as f64 + 0.9)),
        ));
        assert_eq!(fractional.unwrap_err().code(), ErrorCode::TokenExpired);
    }

    #[test]
    fn nbf_is_enforced_with_the_leeway_and_no_more() {
        let leeway = LEEWAY_S_DEFAULT;
        let at = |nbf: u64| verify(&hs(SECRET, None, &with(claims(), "nbf", json!(nbf))));
        assert!(at(NOW).is_ok());
        assert!(at(NOW + leeway).is_ok(), "inside the leeway");
        assert_eq!(
            at(NOW + leeway + 1),
            Err(AuthError::NotYetValid {
                nbf_unix_s: NOW + leeway + 1,
                now_unix_s: NOW,
                leeway_s: leeway
            })
        );
        let fractional = verify(&hs(
            SECRET,
            None,
            &with(claims(), "nbf", json!((NOW + leeway) as f64 + 0.1)),
        ));
        assert_eq!(fractional.unwrap_err().code(), ErrorCode::TokenNotYetValid);
    }

    #[test]
    fn zero_leeway_is_exact() {
        let mut strict = config();
        strict.leeway_s = 0;
        let verifier = TokenVerifier::new(&strict).unwrap();
        let check = |claims: Value| verifier.verify(&hs(SECRET, None, &claims), &room("standup"), NOW);
        assert_eq!(
            check(with(claims(), "exp", json!(NOW))).unwrap_err().code(),
            ErrorCode::TokenExpired
        );
        assert!(check(with(claims(), "exp", json!(NOW + 1))).is_ok());
        assert_eq!(
            check(with(claims(), "nbf", json!(NOW + 1))).unwrap_err().code(),
            ErrorCode::TokenNotYetValid
        );
        assert!(check(with(claims(), "nbf", json!(NOW))).is_ok());
    }

    #[test]
    fn audience_must_be_accepted() {
        assert_eq!(
            verify(&hs(SECRET, None, &with(claims(), "aud", json!("someone-else")))),
            Err(AuthError::WrongAudience)
        );
        assert_eq!(
            verify(&hs(SECRET, None, &with(claims(), "aud", json!([])))),
            Err(AuthError::WrongAudience)
        );
        assert!(verify(&hs(SECRET, None, &with(claims(), "aud", json!(["x", "jitsi"])))).is_ok());
        assert_eq!(
            verify(&hs(SECRET, None, &with(claims(), "aud", json!(["x", 3])))),
            Err(AuthError::InvalidClaim { claim: "aud" })
        );
        let mut any = config();
        any.accepted_audiences = vec!["*".into()];
        let verifier = TokenVerifier::new(&any).unwrap();
        let token = hs(SECRET, None, &with(claims(), "aud", json!("someone-else")));
        assert!(verifier.verify(&token, &room("standup"), NOW).is_ok());
    }

    #[test]
    fn issuer_must_be_accepted_exactly() {
        assert!(verify(&hs(SECRET, None, &with(claims(), "iss", json!("other_app")))).is_ok());
        for iss in ["not_my_app", "MY_APP", "*", ""] {
            assert_eq!(
                verify(&hs(SECRET, None, &with(claims(), "iss", json!(iss)))),
                Err(AuthError::WrongIssuer),
                "{iss}"
            );
        }
    }

    #[test]
    fn missing_required_claims_are_named() {
        for claim in ["iss", "aud", "exp", "room"] {
            assert_eq!(
                verify(&hs(SECRET, None, &without(claims(), claim))),
                Err(AuthError::MissingClaim { claim }),
            );
            assert_eq!(
                verify(&hs(SECRET, None, &with(claims(), claim, Value::Null))),
                Err(AuthError::MissingClaim { claim }),
            );
        }
    }

    #[test]
    fn claims_of_the_wrong_type_are_named() {
        let user = |field: &str, value: Value| {
            let mut claims = claims();
            claims["context"]["user"][field] = value;
            claims
        };
        let cases = [
            (with(claims(), "exp", json!("17")), "exp"),
            (with(claims(), "exp", json!(-5)), "exp"),
            (with(claims(), "nbf", json!(true)), "nbf"),
            (with(claims(), "iss", json!(7)), "iss"),
            (with(claims(), "aud", json!({"a": 1})), "aud"),
            (with(claims(), "room", json!(["standup"])), "room"),
            (with(claims(), "sub", json!(1)), "sub"),
            (with(claims(), "context", json!("user")), "context"),
            (with(claims(), "context", json!({"user": 5})), "context.user"),
            (user("name", json!(5)), "context.user.name"),
            (user("email", json!(["a"])), "context.user.email"),
            (user("id", json!({})), "context.user.id"),
        ];
        for (claims, claim) in cases {
            assert_eq!(
                verify(&hs(SECRET, None, &claims)),
                Err(AuthError::InvalidClaim { claim }),
                "{claims}"
            );
        }
        // A numeric user id is common and accepted.
        let numeric = verify(&hs(SECRET, None, &user("id", json!(42)))).unwrap();
        assert_eq!(numeric.user_id.as_deref(), Some("42"));
    }

    #[test]
    fn malformed_tokens_are_refused_before_any_key_is_chosen() {
        let good = hs(SECRET, None, &claims());
        let header_part = good.split('.').next().unwrap();
        let cases = [
            String::new(),
            "abc".into(),
            "a.b".into(),
            format!("{good}.extra.parts"),
            "!!!.e30.sig".into(),
            format!("{}.e30.sig", URL_SAFE_NO_PAD.encode("not json")),
            format!("{}.e30.sig", URL_SAFE_NO_PAD.encode(r#"{"typ":"JWT"}"#)),
            format!("{}.e30.sig", URL_SAFE_NO_PAD.encode(r#"["HS256"]"#)),
            raw(&json!({"alg": "HS256", "crit": ["exp"]}), &claims(), b"x"),
            format!("{header_part}.{}", "A".repeat(TOKEN_MAX_BYTES)),
        ];
        for token in cases {
            assert_eq!(
                verify(&token).unwrap_err().code(),
                ErrorCode::TokenMalformed,
                "{}",
                &token[..token.len().min(60)]
            );
        }
        // Claims that are validly signed but not a JSON object.
        let array = sign(
            Algorithm::HS256,
            &EncodingKey::from_secret(SECRET.as_bytes()),
            None,
            &json!(["iss"]),
        );
        assert_eq!(verify(&array).unwrap_err().code(), ErrorCode::TokenMalformed);
    }

    #[test]
    fn every_failure_has_its_own_code_and_status() {
        let errors = [
            AuthError::TokenRequired,
            AuthError::Malformed { reason: "x" },
            AuthError::BadSignature,
            AuthError::AlgorithmNotAllowed {
                alg: "none".into(),
                expected: None,
            },
            AuthError::UnknownKey { kid: None },
            AuthError::Expired {
                exp_unix_s: 0,
                now_unix_s: 0,
                leeway_s: 0,
            },
            AuthError::NotYetValid {
                nbf_unix_s: 0,
                now_unix_s: 0,
                leeway_s: 0,
            },
            AuthError::WrongAudience,
            AuthError::WrongIssuer,
            AuthError::WrongRoom,
            AuthError::MissingClaim { claim: "exp" },
            AuthError::InvalidClaim { claim: "exp" },
            AuthError::GuestNotAllowed,
            AuthError::AdminUnauthorized,
        ];
        let codes: HashSet<ErrorCode> = errors.iter().map(AuthError::code).collect();
        assert_eq!(codes.len(), errors.len());
        for error in &errors {
            let expected = if *error == AuthError::GuestNotAllowed {
                403
            } else {
                401
            };
            assert_eq!(error.code().http_status(), expected, "{error:?}");
        }
    }

    #[test]
    fn guest_admission_follows_the_policy() {
        use GuestPolicy::*;
        assert_eq!(guest_admission(Open, false), Ok(()));
        assert_eq!(guest_admission(Open, true), Ok(()));
        assert_eq!(
            guest_admission(AfterModerator, false),
            Err(AuthError::GuestNotAllowed)
        );
        assert_eq!(guest_admission(AfterModerator, true), Ok(()));
        assert_eq!(guest_admission(None, false), Err(AuthError::TokenRequired));
        assert_eq!(guest_admission(None, true), Err(AuthError::TokenRequired));
    }

    #[test]
    fn admit_verifies_any_token_given_and_applies_the_guest_policy_otherwise() {
        let standup = room("standup");
        let moderator_token = hs(SECRET, None, &with(claims(), "moderator", json!(true)));
        for policy in [GuestPolicy::None, GuestPolicy::AfterModerator, GuestPolicy::Open] {
            let mut config = config();
            config.guest_policy = Some(policy);
            let verifier = TokenVerifier::new(&config).unwrap();
            let admitted = verifier
                .admit(Some(&moderator_token), &standup, false, NOW)
                .unwrap();
            assert!(admitted.is_moderator());
            // A bad token is never downgraded to a guest, even where guests are welcome.
            let forged = hs("not-the-secret-but-32-bytes-long!!!!", None, &claims());
            assert_eq!(
                verifier.admit(Some(&forged), &standup, true, NOW),
                Err(AuthError::BadSignature)
            );
            let guest = verifier.admit(None, &standup, false, NOW);
            let guest_after_moderator = verifier.admit(None, &standup, true, NOW);
            match policy {
                GuestPolicy::None => {
                    assert_eq!(guest, Err(AuthError::TokenRequired));
                    assert_eq!(guest_after_moderator, Err(AuthError::TokenRequired));
                }
                GuestPolicy::AfterModerator => {
                    assert_eq!(guest, Err(AuthError::GuestNotAllowed));
                    assert_eq!(guest_after_moderator, Ok(Admission::Guest));
                }
                GuestPolicy::Open => {
                    assert_eq!(guest, Ok(Admission::Guest));
                    assert_eq!(guest_after_moderator, Ok(Admission::Guest));
                }
            }
        }
    }

    #[test]
    fn without_keys_everyone_is_a_guest_and_tokens_are_not_read() {
        let config = AuthConfig::default();
        assert_eq!(config.validate(), Ok(()));
        assert_eq!(config.guest_policy(), GuestPolicy::Open);
        let verifier = TokenVerifier::new(&config).unwrap();
        assert!(!verifier.tokens_enabled());
        for token in [None, Some("garbage"), Some(hs(SECRET, None, &claims()).as_str())] {
            assert_eq!(
                verifier.admit(token, &room("standup"), false, NOW),
                Ok(Admission::Guest)
            );
        }
    }

    #[test]
    fn configuring_a_key_requires_tokens_unless_guests_are_allowed_explicitly() {
        let mut config = config();
        config.guest_policy = Option::None;
        assert_eq!(config.guest_policy(), GuestPolicy::None);
        config.guest_policy = Some(GuestPolicy::Open);
        assert_eq!(config.guest_policy(), GuestPolicy::Open);
    }

    #[test]
    fn config_mistakes_are_refused() {
        let refused = |change: &dyn Fn(&mut AuthConfig)| {
            let mut config = config();
            change(&mut config);
            config.validate().unwrap_err()
        };
        assert_eq!(
            refused(&|c| c.accepted_issuers.clear()),
            AuthConfigError::NoIssuers
        );
        assert_eq!(
            refused(&|c| c.accepted_audiences.clear()),
            AuthConfigError::NoAudiences
        );
        assert_eq!(
            refused(&|c| c.accepted_issuers.push(String::new())),
            AuthConfigError::EmptyEntry {
                field: "accepted_issuers"
            }
        );
        assert_eq!(
            refused(&|c| c.leeway_s = LEEWAY_S_MAX + 1),
            AuthConfigError::LeewayTooLarge {
                leeway_s: LEEWAY_S_MAX + 1
            }
        );
        assert_eq!(
            refused(&|c| c.hs256_secret = Some(Secret::new("short"))),
            AuthConfigError::SecretTooShort { kid: None, bytes: 5 }
        );
        assert_eq!(
            refused(&|c| {
                c.hs256_secrets.insert("rs-1".into(), Secret::new(SECOND_SECRET));
            }),
            AuthConfigError::DuplicateKid { kid: "rs-1".into() }
        );
        assert_eq!(
            refused(&|c| {
                c.hs256_secrets.insert(String::new(), Secret::new(SECOND_SECRET));
            }),
            AuthConfigError::EmptyKid
        );
        fn public_key(algorithm: PublicKeyAlgorithm, pem: &'static str) -> impl Fn(&mut AuthConfig) {
            move |c: &mut AuthConfig| {
                c.public_keys.insert(
                    "k".into(),
                    PublicKeyConfig {
                        algorithm,
                        pem: pem.into(),
                    },
                );
            }
        }
        assert!(matches!(
            refused(&public_key(PublicKeyAlgorithm::Rs256, ED_PUBLIC)),
            AuthConfigError::BadPublicKey { .. }
        ));
        assert!(matches!(
            refused(&public_key(PublicKeyAlgorithm::EdDsa, RS_PUBLIC)),
            AuthConfigError::BadPublicKey { .. }
        ));
        assert!(matches!(
            refused(&public_key(PublicKeyAlgorithm::Rs256, "not a pem")),
            AuthConfigError::BadPublicKey { .. }
        ));
        assert_eq!(
            refused(&public_key(PublicKeyAlgorithm::Rs256, RS_1024_PUBLIC)),
            AuthConfigError::RsaKeyTooSmall {
                kid: "k".into(),
                bits: 1024
            }
        );

        // Without keys: a policy that needs tokens, or token settings, are mistakes.
        let mut keyless = AuthConfig {
            guest_policy: Some(GuestPolicy::AfterModerator),
            ..AuthConfig::default()
        };
        assert_eq!(
            keyless.validate(),
            Err(AuthConfigError::PolicyNeedsKeys {
                policy: GuestPolicy::AfterModerator
            })
        );
        keyless.guest_policy = Option::None;
        keyless.accepted_issuers = vec!["my_app".into()];
        assert_eq!(keyless.validate(), Err(AuthConfigError::SettingsWithoutKeys));
    }

    #[test]
    fn config_reads_from_serde_with_snake_case_names() {
        let config: AuthConfig = serde_json::from_value(json!({
            "accepted_issuers": ["my_app"],
            "accepted_audiences": ["jitsi"],
            "hs256_secret": SECRET,
            "public_keys": {"ed-1": {"algorithm": "eddsa", "pem": ED_PUBLIC}},
            "guest_policy": "after_moderator"
        }))
        .unwrap();
        assert_eq!(config.guest_policy(), GuestPolicy::AfterModerator);
        assert_eq!(config.leeway_s, LEEWAY_S_DEFAULT);
        assert_eq!(config.public_keys["ed-1"].algorithm, PublicKeyAlgorithm::EdDsa);
        assert_eq!(config.validate(), Ok(()));
        assert!(serde_json::from_value::<AuthConfig>(json!({"secret": "x"})).is_err());
        assert!(serde_json::from_value::<AuthConfig>(json!({"guest_policy": "sometimes"})).is_err());
    }

    #[test]
    fn secrets_stay_out_of_debug_output() {
        let mut config = config();
        config
            .hs256_secrets
            .insert("hs-3".into(), Secret::new("third-secret-which-is-32-bytes-long!"));
        let shown = format!("{config:?} {:?}", TokenVerifier::new(&config).unwrap());
        for secret in [SECRET, SECOND_SECRET, "third-secret"] {
            assert!(!shown.contains(secret), "{shown}");
        }
        let admin = AdminAuth::generate(&mut rand::rng());
        assert!(!format!("{admin:?}").contains(admin.secret().expose()));
        let request = MintRequest {
            key: MintKey::Hs256(Secret::new(SECRET)),
            ..mint_request()
        };
        assert!(!format!("{request:?}").contains(SECRET));
    }

    #[test]
    fn bearer_reads_the_authorization_header() {
        assert_eq!(bearer(Option::None), Ok(Option::None));
        assert_eq!(bearer(Some("Bearer abc.def.ghi")), Ok(Some("abc.def.ghi")));
        assert_eq!(bearer(Some("bearer   abc ")), Ok(Some("abc")));
        for bad in ["", "Bearer", "Bearer ", "Basic dXNlcjpwYXNz", "abc.def.ghi"] {
            assert_eq!(
                bearer(Some(bad)).unwrap_err().code(),
                ErrorCode::TokenMalformed,
                "{bad:?}"
            );
        }
    }

    #[test]
    fn admin_credential_is_checked() {
        let admin = AdminAuth::new(Secret::new("an-admin-secret-of-32-bytes-or-more")).unwrap();
        assert_eq!(
            admin.check_admin(Some("Bearer an-admin-secret-of-32-bytes-or-more")),
            Ok(())
        );
        for bad in [
            Option::None,
            Some(""),
            Some("Bearer"),
            Some("Bearer an-admin-secret-of-32-bytes-or-morE"),
            Some("Bearer an-admin-secret-of-32-bytes-or-mor"),
            Some("Bearer an-admin-secret-of-32-bytes-or-more-and-more"),
            Some("Basic an-admin-secret-of-32-bytes-or-more"),
        ] {
            assert_eq!(
                admin.check_admin(bad),
                Err(AuthError::AdminUnauthorized),
                "{bad:?}"
            );
        }
        assert_eq!(
            AdminAuth::new(Secret::new("short")).unwrap_err(),
            AuthConfigError::AdminSecretTooShort { bytes: 5 }
        );
        let first = AdminAuth::generate(&mut rand::rng());
        let second = AdminAuth::generate(&mut rand::rng());
        assert_eq!(first.secret().expose().len(), 64);
        assert!(first.secret().expose().chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(first.secret(), second.secret());
        let header = format!("Bearer {}", first.secret().expose());
        assert_eq!(first.check_admin(Some(&header)), Ok(()));
        assert_eq!(
            second.check_admin(Some(&header)),
            Err(AuthError::AdminUnauthorized)
        );
    }

    fn mint_request() -> MintRequest {
        MintRequest {
            key: MintKey::Hs256(Secret::new(SECRET)),
            kid: Option::None,
            iss: "my_app".into(),
            aud: "jitsi".into(),
            sub: "*".into(),
            room: "standup".into(),
            user: TokenUser {
                id: Some("u-1".into()),
                name: Some("Ada".into()),
                email: Some("ada@example.com".into()),
                avatar: Option::None,
            },
            moderator: true,
            nbf_unix_s: Option::None,
            ttl_s: 3600,
        }
    }

    #[test]
    fn minted_tokens_verify_with_every_key_type() {
        let requests = [
            mint_request(),
            MintRequest {
                key: MintKey::Hs256(Secret::new(SECOND_SECRET)),
                kid: Some("hs-2".into()),
                ..mint_request()
            },
            MintRequest {
                key: MintKey::Rs256 {
                    private_key_pem: Secret::new(RS_PRIVATE),
                },
                kid: Some("rs-1".into()),
                ..mint_request()
            },
            MintRequest {
                key: MintKey::EdDsa {
                    private_key_pem: Secret::new(ED_PRIVATE),
                },
                kid: Some("ed-1".into()),
                ..mint_request()
            },
        ];
        for request in requests {
            let token = mint(&request, NOW).unwrap();
            let identity = verifier().verify(&token, &room("standup"), NOW).unwrap();
            assert_eq!(
                identity,
                Identity {
                    issuer: "my_app".into(),
                    subject: Some("*".into()),
                    user_id: Some("u-1".into()),
                    name: Some("Ada".into()),
                    email: Some("ada@example.com".into()),
                    avatar: Option::None,
                    moderator: true,
                    expires_at_unix_s: NOW + 3600,
                },
                "{:?}",
                request.kid
            );
        }
    }

    #[test]
    fn minted_validity_window_follows_nbf_and_ttl() {
        let request = MintRequest {
            nbf_unix_s: Some(NOW + 600),
            ttl_s: 60,
            moderator: false,
            ..mint_request()
        };
        let token = mint(&request, NOW).unwrap();
        let at = |now| verifier().verify(&token, &room("standup"), now);
        assert_eq!(at(NOW).unwrap_err().code(), ErrorCode::TokenNotYetValid);
        assert!(!at(NOW + 600).unwrap().moderator);
        assert_eq!(
            at(NOW + 660 + LEEWAY_S_DEFAULT).unwrap_err().code(),
            ErrorCode::TokenExpired
        );
        let payload: Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(token.split('.').nth(1).unwrap()).unwrap())
                .unwrap();
        assert_eq!(
            (payload["nbf"].as_u64(), payload["exp"].as_u64()),
            (Some(NOW + 600), Some(NOW + 660))
        );
        assert_eq!(payload["context"]["user"]["moderator"], json!(false));
        assert!(payload["context"]["user"].get("avatar").is_none());
    }

    #[test]
    fn minting_refuses_bad_input() {
        assert_eq!(
            mint(
                &MintRequest {
                    ttl_s: 0,
                    ..mint_request()
                },
                NOW
            ),
            Err(MintError::ZeroTtl)
        );
        assert_eq!(
            mint(
                &MintRequest {
                    key: MintKey::Hs256(Secret::new("")),
                    ..mint_request()
                },
                NOW
            ),
            Err(MintError::EmptySecret)
        );
        for key in [
            MintKey::Rs256 {
                private_key_pem: Secret::new(ED_PRIVATE),
            },
            MintKey::EdDsa {
                private_key_pem: Secret::new(RS_PRIVATE),
            },
            MintKey::Rs256 {
                private_key_pem: Secret::new(RS_PUBLIC),
            },
        ] {
            let error = mint(
                &MintRequest {
                    key,
                    ..mint_request()
                },
                NOW,
            )
            .unwrap_err();
            assert!(matches!(error, MintError::BadPrivateKey { .. }), "{error:?}");
        }
    }
}
