//! The ID token's checks and what its claims make of the user, without I/O: the signature under
//! one of the provider's published keys (asymmetric algorithms only), then `iss`, `aud`, `azp`,
//! `exp`, `iat` and `nonce` (OpenID Connect Core §3.1.3.7), then the operator's rule for hosts.

use super::OidcConfig;
use bridgemesh_proto::HostName;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use serde_json::{Map, Value};
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;

/// Longest ID token looked at (a provider with many groups in the token makes a few KiB).
pub const ID_TOKEN_MAX_BYTES: usize = 64 * 1024;
/// Clock skew tolerated on `exp` and `iat` between the provider and us.
pub const LEEWAY_S: u64 = 60;
/// Most keys kept from one JWKS document.
pub const JWKS_KEYS_MAX: usize = 32;
/// Most groups looked at in the groups claim.
pub const GROUPS_MAX: usize = 1_000;

/// The only algorithms an ID token may use: signatures under a published public key. An HMAC
/// key (`kty: oct`) in a JWKS would be public, so `HS*` is never accepted, nor `none`.
const ASYMMETRIC: [Algorithm; 9] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

/// One usable key of the provider's JWKS.
pub struct ProviderKey {
    pub kid: Option<String>,
    /// The algorithm the JWK names, if it names one; then a token must use exactly that.
    pub algorithm: Option<Algorithm>,
    key: DecodingKey,
}

/// The keys of a JWKS document that can verify signatures; the others (encryption keys,
/// symmetric keys, kinds we do not know) are left out rather than failing the whole set.
pub fn parse_jwks(document: &Value) -> Vec<ProviderKey> {
    let Some(keys) = document.get("keys").and_then(Value::as_array) else {
        return Vec::new();
    };
    keys.iter()
        .filter_map(|value| {
            let jwk: Jwk = serde_json::from_value(value.clone()).ok()?;
            if value
                .get("use")
                .and_then(Value::as_str)
                .is_some_and(|u| u != "sig")
            {
                return None;
            }
            if value.get("kty").and_then(Value::as_str) == Some("oct") {
                return None;
            }
            let algorithm = match value.get("alg").and_then(Value::as_str) {
                Some(name) => Some(
                    name.parse::<Algorithm>()
                        .ok()
                        .filter(|a| ASYMMETRIC.contains(a))?,
                ),
                None => None,
            };
            let key = DecodingKey::from_jwk(&jwk).ok()?;
            Some(ProviderKey {
                kid: jwk.common.key_id.clone(),
                algorithm,
                key,
            })
        })
        .take(JWKS_KEYS_MAX)
        .collect()
}

/// Why an ID token is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IdTokenError {
    #[error("the ID token is not a signed JWT ({0})")]
    Malformed(String),
    #[error("the ID token uses algorithm {0:?}; only public-key signatures are accepted")]
    Algorithm(String),
    /// No published key has the token's `kid`: worth fetching the keys again once (rotation).
    #[error("the ID token is signed with a key the provider does not publish (kid {0:?})")]
    UnknownKey(Option<String>),
    #[error("the ID token's signature does not verify under the provider's key")]
    BadSignature,
    #[error("the ID token was issued by {found:?}, not the configured issuer {expected:?}")]
    Issuer { expected: String, found: String },
    #[error("the ID token is not for this client (aud/azp)")]
    Audience,
    #[error("the ID token has expired")]
    Expired,
    #[error("the ID token says it was issued in the future; check the clocks")]
    IssuedInFuture,
    #[error("the ID token's nonce is not this login's (a replayed token?)")]
    Nonce,
    #[error("the ID token's claims are not what OpenID Connect says: {0}")]
    Claims(String),
}

#[derive(Debug, Clone, Deserialize)]
struct StandardClaims {
    iss: String,
    sub: String,
    aud: Value,
    exp: u64,
    iat: u64,
    nonce: Option<String>,
    azp: Option<String>,
}

/// A verified ID token's claims (all of them: the groups claim's name is the operator's).
#[derive(Debug, Clone, PartialEq)]
pub struct IdClaims {
    pub issuer: String,
    pub subject: String,
    pub all: Map<String, Value>,
}

/// Verifies `token` under `keys` for the login whose nonce is `nonce`.
pub fn verify(
    token: &str,
    keys: &[ProviderKey],
    issuer: &str,
    client_id: &str,
    nonce: &str,
    now_unix_s: u64,
) -> Result<IdClaims, IdTokenError> {
    if token.len() > ID_TOKEN_MAX_BYTES {
        return Err(IdTokenError::Malformed(format!(
            "longer than {ID_TOKEN_MAX_BYTES} bytes"
        )));
    }
    let header =
        jsonwebtoken::decode_header(token).map_err(|err| IdTokenError::Malformed(err.to_string()))?;
    if !ASYMMETRIC.contains(&header.alg) {
        return Err(IdTokenError::Algorithm(format!("{:?}", header.alg)));
    }
    let candidates: Vec<&ProviderKey> = match &header.kid {
        Some(kid) => keys.iter().filter(|k| k.kid.as_deref() == Some(kid)).collect(),
        // No kid: only unambiguous when the provider publishes one key.
        None if keys.len() == 1 => keys.iter().collect(),
        None => Vec::new(),
    };
    let key = candidates
        .into_iter()
        .find(|k| k.algorithm.is_none_or(|a| a == header.alg))
        .ok_or_else(|| IdTokenError::UnknownKey(header.kid.clone()))?;
    // The library checks the signature and that the key's family fits the algorithm; the
    // claims are checked below, each with its own error.
    let mut validation = Validation::new(header.alg);
    validation.required_spec_claims.clear();
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.validate_aud = false;
    let data =
        jsonwebtoken::decode::<Map<String, Value>>(token, &key.key, &validation).map_err(|err| match err
            .kind()
        {
            jsonwebtoken::errors::ErrorKind::InvalidSignature => IdTokenError::BadSignature,
            _ => IdTokenError::Malformed(err.to_string()),
        })?;
    let all = data.claims;
    let claims: StandardClaims = serde_json::from_value(Value::Object(all.clone()))
        .map_err(|err| IdTokenError::Claims(err.to_string()))?;
    if claims.iss != issuer {
        return Err(IdTokenError::Issuer {
            expected: issuer.into(),
            found: claims.iss,
        });
    }
    let audiences: Vec<&str> = match &claims.aud {
        Value::String(one) => vec![one.as_str()],
        Value::Array(many) => many.iter().filter_map(Value::as_str).collect(),
        _ => return Err(IdTokenError::Claims("aud is neither a string nor a list".into())),
    };
    if !audiences.contains(&client_id) {
        return Err(IdTokenError::Audience);
    }
    // §3.1.3.7 (4, 5): with other audiences, azp must be us.
    if (audiences.len() > 1 || claims.azp.is_some()) && claims.azp.as_deref() != Some(client_id) {
        return Err(IdTokenError::Audience);
    }
    if now_unix_s >= claims.exp.saturating_add(LEEWAY_S) {
        return Err(IdTokenError::Expired);
    }
    if claims.iat > now_unix_s.saturating_add(LEEWAY_S) {
        return Err(IdTokenError::IssuedInFuture);
    }
    let presented = claims.nonce.unwrap_or_default();
    if !bool::from(presented.as_bytes().ct_eq(nonce.as_bytes())) {
        return Err(IdTokenError::Nonce);
    }
    if claims.sub.is_empty() || claims.sub.len() > 255 {
        return Err(IdTokenError::Claims("sub must have 1 to 255 characters".into()));
    }
    Ok(IdClaims {
        issuer: claims.iss,
        subject: claims.sub,
        all,
    })
}

/// Who a verified user is as a host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SsoHost {
    /// Shown as the host's name: the provider's user name (or the e-mail's local part) where it
    /// fits the rules of host names, else `sso-user`.
    pub name: HostName,
    /// The user's stable identity (`sso:` and a hash of issuer and subject): what a kick bans.
    pub user_id: String,
}

/// Why a verified user is not a host.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NotAHost {
    #[error(
        "{who} is not allowed to host meetings here (not in an allowed group, and no verified e-mail address in an allowed domain)"
    )]
    NotAllowed { who: String },
}

fn groups(claims: &Map<String, Value>, claim: &str) -> Vec<String> {
    match claims.get(claim) {
        Some(Value::String(one)) => vec![one.clone()],
        Some(Value::Array(many)) => many
            .iter()
            .take(GROUPS_MAX)
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect(),
        _ => Vec::new(),
    }
}

fn verified_email(claims: &Map<String, Value>) -> Option<&str> {
    let email = claims.get("email")?.as_str()?;
    let verified = claims.get("email_verified").and_then(|v| match v {
        Value::Bool(b) => Some(*b),
        // Some providers send it as a string.
        Value::String(s) => Some(s == "true"),
        _ => None,
    });
    (verified == Some(true)).then_some(email)
}

/// The name shown for the host: the first of `preferred_username`, the e-mail's local part and
/// `sub` that is a valid host name once lower-cased.
fn display_name(claims: &IdClaims) -> HostName {
    let text = |key: &str| claims.all.get(key).and_then(Value::as_str).map(str::to_lowercase);
    let email_local = text("email").and_then(|e| e.split('@').next().map(str::to_owned));
    [
        text("preferred_username"),
        email_local,
        Some(claims.subject.to_lowercase()),
    ]
    .into_iter()
    .flatten()
    .find_map(|candidate| HostName::new(candidate).ok())
    .unwrap_or_else(|| HostName::new("sso-user").expect("a valid host name"))
}

/// Whether the operator's rule makes the user a host, and as whom.
pub fn decide(config: &OidcConfig, claims: &IdClaims) -> Result<SsoHost, NotAHost> {
    let in_group = || {
        let theirs = groups(&claims.all, &config.groups_claim);
        config.allowed_groups.iter().any(|g| theirs.contains(g))
    };
    let in_domain = || {
        verified_email(&claims.all)
            .and_then(|email| email.rsplit_once('@'))
            .is_some_and(|(_, domain)| {
                config
                    .allowed_email_domains
                    .iter()
                    .any(|allowed| allowed.eq_ignore_ascii_case(domain))
            })
    };
    let name = display_name(claims);
    if !(config.allow_any_user || in_group() || in_domain()) {
        let who = claims
            .all
            .get("email")
            .and_then(Value::as_str)
            .map_or_else(|| name.to_string(), str::to_owned);
        return Err(NotAHost::NotAllowed { who });
    }
    let mut identity = Sha256::new();
    identity.update(claims.issuer.as_bytes());
    identity.update([0]);
    identity.update(claims.subject.as_bytes());
    Ok(SsoHost {
        name,
        user_id: format!("sso:{}", hex::encode(&identity.finalize()[..16])),
    })
}
