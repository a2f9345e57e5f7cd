//! Host sessions and invite tokens: HS256 JWTs under keys derived from the cluster secret (as
//! participants' session tokens are, `session.rs`), each with its own derivation and audience so
//! that neither can pass as the other, as a session token, or as a bridge ticket.
//!
//! A signature proves only that a control node issued the token. Whether it still counts is the
//! replicated state's to say: a host session names its account's password generation (a new
//! password or a removed account ends every session), an invite names its record (uses, expiry).

use bridgemesh_proto::hosts::HOST_SESSION_TTL_S;
use bridgemesh_proto::{HostName, RoomId};
use hmac::{Hmac, Mac};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

const HOST_AUDIENCE: &str = "bridgemesh-host";
const INVITE_AUDIENCE: &str = "bridgemesh-invite";
/// Longest token looked at (ours are a few hundred bytes).
const TOKEN_MAX_BYTES: usize = 2 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostSessionClaims {
    pub aud: String,
    pub sub: HostName,
    /// The account's password generation when the session began (0 for single sign-on).
    pub generation: u64,
    /// Set for a host who logged in through the OIDC provider: their stable `user_id`
    /// (`sso:...`). Such a session names no local account; it lasts until `exp`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sso: Option<String>,
    pub iat: u64,
    pub exp: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InviteClaims {
    pub aud: String,
    /// The invite's record in the replicated state.
    pub jti: String,
    pub room: RoomId,
    pub exp: u64,
}

/// What checking one of our tokens found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenCheck<T> {
    Valid(T),
    /// Signed by us, but past its `exp`.
    Expired,
    /// Not ours (another key or audience), or not a token at all.
    NotOurs,
}

struct Keys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
}

impl Keys {
    fn derive(cluster_secret: &[u8], label: &[u8], audience: &str) -> Self {
        let mut mac = Hmac::<Sha256>::new_from_slice(cluster_secret).expect("HMAC takes any key length");
        mac.update(label);
        let key = mac.finalize().into_bytes();
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_audience(&[audience]);
        validation.set_required_spec_claims(&["exp", "aud"]);
        validation.leeway = 0;
        Self {
            encoding: EncodingKey::from_secret(&key),
            decoding: DecodingKey::from_secret(&key),
            validation,
        }
    }

    fn sign<T: Serialize>(&self, claims: &T) -> String {
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &self.encoding)
            .expect("HS256 signing of plain claims cannot fail")
    }

    /// `jsonwebtoken` checks the signature before `exp`, so `Expired` is only ever ours.
    fn check<T: serde::de::DeserializeOwned>(&self, token: &str, now_unix_s: u64) -> TokenCheck<T> {
        if token.len() > TOKEN_MAX_BYTES {
            return TokenCheck::NotOurs;
        }
        // Validate `exp` against the caller's clock rather than the library's.
        let mut validation = self.validation.clone();
        validation.validate_exp = false;
        match jsonwebtoken::decode::<serde_json::Value>(token, &self.decoding, &validation) {
            Ok(data) => {
                let exp = data.claims.get("exp").and_then(serde_json::Value::as_u64);
                if exp.is_none_or(|exp| now_unix_s >= exp) {
                    return TokenCheck::Expired;
                }
                serde_json::from_value(data.claims).map_or(TokenCheck::NotOurs, TokenCheck::Valid)
            }
            Err(err) if matches!(err.kind(), ErrorKind::ExpiredSignature) => TokenCheck::Expired,
            Err(_) => TokenCheck::NotOurs,
        }
    }
}

/// The keys of host sessions and invites, derived from the cluster secret.
pub struct HostKeys {
    sessions: Keys,
    invites: Keys,
}

impl HostKeys {
    pub fn derive(cluster_secret: &[u8]) -> Self {
        Self {
            sessions: Keys::derive(cluster_secret, b"bridgemesh host session v1", HOST_AUDIENCE),
            invites: Keys::derive(cluster_secret, b"bridgemesh invite v1", INVITE_AUDIENCE),
        }
    }

    pub fn issue_session(&self, host: &HostName, generation: u64, now_unix_s: u64) -> String {
        self.sessions.sign(&HostSessionClaims {
            aud: HOST_AUDIENCE.into(),
            sub: host.clone(),
            generation,
            sso: None,
            iat: now_unix_s,
            exp: now_unix_s + HOST_SESSION_TTL_S,
        })
    }

    /// The session of a host who logged in through the OIDC provider (`oidc.rs`).
    pub fn issue_sso_session(&self, host: &HostName, user_id: &str, now_unix_s: u64) -> String {
        self.sessions.sign(&HostSessionClaims {
            aud: HOST_AUDIENCE.into(),
            sub: host.clone(),
            generation: 0,
            sso: Some(user_id.to_owned()),
            iat: now_unix_s,
            exp: now_unix_s + HOST_SESSION_TTL_S,
        })
    }

    pub fn check_session(&self, token: &str, now_unix_s: u64) -> TokenCheck<HostSessionClaims> {
        self.sessions.check(token, now_unix_s)
    }

    pub fn issue_invite(&self, jti: &str, room: &RoomId, expires_at_unix_s: u64) -> String {
        self.invites.sign(&InviteClaims {
            aud: INVITE_AUDIENCE.into(),
            jti: jti.to_owned(),
            room: room.clone(),
            exp: expires_at_unix_s,
        })
    }

    pub fn check_invite(&self, token: &str, now_unix_s: u64) -> TokenCheck<InviteClaims> {
        self.invites.check(token, now_unix_s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_and_invites_are_bound_to_their_key_audience_and_time() {
        let keys = HostKeys::derive(b"cluster secret");
        let ada = HostName::new("ada").unwrap();
        let room = RoomId::new("standup").unwrap();
        let now = 1_800_000_000;
        let session = keys.issue_session(&ada, 3, now);
        let TokenCheck::Valid(claims) = keys.check_session(&session, now + 10) else {
            panic!("valid");
        };
        assert_eq!((claims.sub, claims.generation), (ada.clone(), 3));
        assert_eq!(
            keys.check_session(&session, now + HOST_SESSION_TTL_S),
            TokenCheck::Expired
        );
        assert_eq!(
            HostKeys::derive(b"another secret").check_session(&session, now),
            TokenCheck::NotOurs
        );
        // One kind never passes as the other.
        assert_eq!(keys.check_invite(&session, now), TokenCheck::NotOurs);
        let invite = keys.issue_invite("i-1", &room, now + 60);
        assert_eq!(keys.check_session(&invite, now), TokenCheck::NotOurs);
        let TokenCheck::Valid(claims) = keys.check_invite(&invite, now) else {
            panic!("valid");
        };
        assert_eq!((claims.jti.as_str(), claims.room), ("i-1", room));
        assert_eq!(keys.check_invite(&invite, now + 60), TokenCheck::Expired);
        assert_eq!(keys.check_invite("not a token", now), TokenCheck::NotOurs);
        // A participant session token (same cluster secret, other derivation) is not a host's.
        let participant = crate::session::SessionKeys::derive(b"cluster secret").issue(
            &RoomId::new("standup").unwrap(),
            &bridgemesh_proto::ParticipantId::new("p").unwrap(),
            now,
        );
        assert_eq!(keys.check_session(&participant, now), TokenCheck::NotOurs);
    }
}
