//! What the operator configures: issuers, audiences, keys, leeway and the guest policy.

use super::*;

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
    /// Nobody: every join needs a valid token (Jitsi's `allow_empty_token = false`), a host login
    /// or an invite link.
    None,
    /// Guests join a room only once a moderator (a token with the moderator flag, or a logged-in
    /// host) has opened it;
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
    /// `[auth.oidc]`: hosts log in through an OpenID Connect provider (docs/hosts.md).
    pub oidc: Option<crate::oidc::OidcConfig>,
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
            oidc: None,
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
        TokenVerifier::new(self)?;
        match &self.oidc {
            Some(oidc) => oidc.validate().map_err(AuthConfigError::Oidc),
            None => Ok(()),
        }
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
    #[error("{0}")]
    Oidc(String),
}
