//! Tokens made for operators (`bridgemesh token`) and tests.

use super::*;

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
