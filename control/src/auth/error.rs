//! Why a join or a token was refused, as the API reports it.

use super::*;

pub(super) fn kid_suffix(kid: &Option<String>) -> String {
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
