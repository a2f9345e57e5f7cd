//! Verifying the tickets control issues: signature, audience (this bridge), expiry, single use.

use bridgemesh_proto::BridgeId;
use bridgemesh_proto::ticket::TicketClaims;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use std::collections::HashMap;
use std::sync::Mutex;

/// Ticket ids remembered at once; past it new tickets are refused until old ones expire, which
/// bounds memory under a flood of valid-looking tickets.
pub const SEEN_TICKETS_MAX: usize = 200_000;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TicketError {
    #[error("ticket is malformed or its signature is wrong")]
    Invalid,
    #[error("ticket has expired")]
    Expired,
    #[error("ticket was issued for another bridge")]
    WrongBridge,
    #[error("ticket was already used")]
    Replayed,
    #[error("too many tickets in flight; try again shortly")]
    Overloaded,
}

pub struct TicketVerifier {
    bridge_id: BridgeId,
    key: DecodingKey,
    validation: Validation,
    /// jti → exp (unix seconds)
    seen: Mutex<HashMap<String, u64>>,
}

impl TicketVerifier {
    pub fn new(bridge_id: BridgeId, cluster_secret: &[u8]) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_audience(&[bridge_id.as_str()]);
        validation.set_required_spec_claims(&["exp", "aud"]);
        validation.leeway = 2;
        // jsonwebtoken would read the system clock for `exp`; `verify` checks it against its `now`.
        validation.validate_exp = false;
        Self {
            bridge_id,
            key: DecodingKey::from_secret(cluster_secret),
            validation,
            seen: Mutex::default(),
        }
    }

    /// Accepts `ticket` once. `now_unix_s` is the wall clock, passed in so tests can move it.
    pub fn verify(&self, ticket: &str, now_unix_s: u64) -> Result<TicketClaims, TicketError> {
        let claims = jsonwebtoken::decode::<TicketClaims>(ticket, &self.key, &self.validation)
            .map_err(|err| match err.kind() {
                jsonwebtoken::errors::ErrorKind::InvalidAudience => TicketError::WrongBridge,
                _ => TicketError::Invalid,
            })?
            .claims;
        if claims.aud != self.bridge_id {
            return Err(TicketError::WrongBridge);
        }
        if claims.exp + self.validation.leeway < now_unix_s {
            return Err(TicketError::Expired);
        }
        let mut seen = self.seen.lock().expect("ticket cache lock");
        if seen.len() >= SEEN_TICKETS_MAX {
            let leeway = self.validation.leeway;
            seen.retain(|_, exp| *exp + leeway >= now_unix_s);
            if seen.len() >= SEEN_TICKETS_MAX {
                return Err(TicketError::Overloaded);
            }
        }
        if seen.insert(claims.jti.clone(), claims.exp).is_some() {
            return Err(TicketError::Replayed);
        }
        Ok(claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bridgemesh_proto::{ParticipantId, RoomId};
    use jsonwebtoken::{EncodingKey, Header};

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

    fn ticket(aud: &str, jti: &str, exp: u64, secret: &[u8]) -> String {
        let claims = TicketClaims {
            aud: BridgeId::new(aud).unwrap(),
            jti: jti.into(),
            exp,
            iat: exp - 30,
            room: RoomId::new("r").unwrap(),
            participant_id: ParticipantId::new("p-1").unwrap(),
            display_name: "Ada".into(),
            moderator: false,
        };
        jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(secret),
        )
        .unwrap()
    }

    #[test]
    fn accepts_a_fresh_ticket_once() {
        let verifier = TicketVerifier::new(BridgeId::new("b1").unwrap(), SECRET);
        let t = ticket("b1", "j1", 1_000, SECRET);
        assert_eq!(verifier.verify(&t, 990).unwrap().display_name, "Ada");
        assert_eq!(verifier.verify(&t, 991), Err(TicketError::Replayed));
    }

    #[test]
    fn refuses_forged_expired_and_foreign_tickets() {
        let verifier = TicketVerifier::new(BridgeId::new("b1").unwrap(), SECRET);
        let forged = ticket("b1", "j2", 1_000, b"another-secret-another-secret-xx");
        assert_eq!(verifier.verify(&forged, 990), Err(TicketError::Invalid));
        assert_eq!(
            verifier.verify(&ticket("b1", "j3", 1_000, SECRET), 1_010),
            Err(TicketError::Expired)
        );
        assert_eq!(
            verifier.verify(&ticket("b2", "j4", 1_000, SECRET), 990),
            Err(TicketError::WrongBridge)
        );
        assert_eq!(verifier.verify("garbage", 990), Err(TicketError::Invalid));
        let unsigned = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJhdWQiOiJiMSJ9.";
        assert_eq!(verifier.verify(unsigned, 990), Err(TicketError::Invalid));
    }
}
