//! Session tokens: what a participant shows control after joining (to poll the lobby, or to act
//! as a moderator). They name the room and participant only; what the participant may do is read
//! from the replicated state at each call, so a demoted or kicked participant loses its powers at
//! once even though its token is still valid.

use bridgemesh_proto::api::SESSION_TTL_S;
use bridgemesh_proto::{ParticipantId, RoomId};
use hmac::{Hmac, Mac};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

const SESSION_AUDIENCE: &str = "bridgemesh-session";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionClaims {
    pub aud: String,
    pub exp: u64,
    pub room: RoomId,
    pub participant_id: ParticipantId,
}

pub struct SessionKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
}

impl SessionKeys {
    /// Keys derived from the cluster secret for this one use, so a session token can never pass
    /// as a bridge ticket or the reverse.
    pub fn derive(cluster_secret: &[u8]) -> Self {
        let mut mac = Hmac::<Sha256>::new_from_slice(cluster_secret).expect("HMAC takes any key length");
        mac.update(b"bridgemesh control session v1");
        let key = mac.finalize().into_bytes();
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_audience(&[SESSION_AUDIENCE]);
        validation.set_required_spec_claims(&["exp", "aud"]);
        validation.leeway = 5;
        Self {
            encoding: EncodingKey::from_secret(&key),
            decoding: DecodingKey::from_secret(&key),
            validation,
        }
    }

    pub fn issue(&self, room: &RoomId, participant: &ParticipantId, now_unix_s: u64) -> String {
        let claims = SessionClaims {
            aud: SESSION_AUDIENCE.into(),
            exp: now_unix_s + SESSION_TTL_S,
            room: room.clone(),
            participant_id: participant.clone(),
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .expect("HS256 signing of plain claims cannot fail")
    }

    /// The claims if the token is ours, unexpired, and for `room`.
    pub fn check(&self, token: &str, room: &RoomId) -> Option<SessionClaims> {
        let claims = jsonwebtoken::decode::<SessionClaims>(token, &self.decoding, &self.validation)
            .ok()?
            .claims;
        (claims.room == *room).then_some(claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_is_bound_to_its_room_and_key() {
        let keys = SessionKeys::derive(b"secret");
        let room = RoomId::new("r").unwrap();
        let participant = ParticipantId::new("p").unwrap();
        let now = jsonwebtoken::get_current_timestamp();
        let token = keys.issue(&room, &participant, now);
        assert_eq!(keys.check(&token, &room).unwrap().participant_id, participant);
        assert!(keys.check(&token, &RoomId::new("other").unwrap()).is_none());
        assert!(
            SessionKeys::derive(b"other secret")
                .check(&token, &room)
                .is_none()
        );
        let expired = keys.issue(&room, &participant, now - SESSION_TTL_S - 60);
        assert!(keys.check(&expired, &room).is_none());
    }
}
