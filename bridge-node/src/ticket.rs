//! Verifying the tickets control issues: signature, audience (this bridge), expiry, single use,
//! and not held by a participant a moderator removed.

use crate::removed_participants::{
    REMOVED_PARTICIPANT_RETENTION_S, REMOVED_PARTICIPANTS_MAX, RemovedParticipants,
};
use bridgemesh_proto::ticket::TicketClaims;
use bridgemesh_proto::{BridgeId, ParticipantId};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

/// Ticket ids remembered at once; past it new tickets are refused until old ones expire, which
/// bounds memory under a flood of valid-looking tickets.
pub const SEEN_TICKETS_MAX: usize = 200_000;
/// Seconds past `exp` a ticket is still accepted, for clock skew between control and the bridge.
pub const TICKET_LEEWAY_S: u64 = 2;

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
    #[error("you were removed from this meeting")]
    ParticipantRemoved,
    #[error("ticket was issued before this bridge started; join again for a new one")]
    IssuedBeforeStart,
}

pub struct TicketVerifier {
    bridge_id: BridgeId,
    key: DecodingKey,
    validation: Validation,
    /// jti → exp (unix seconds)
    seen: Mutex<HashMap<String, u64>>,
    /// Participants kicked by a moderator, by unix seconds.
    removed: Mutex<RemovedParticipants<u64>>,
    /// Tickets issued (`iat`) before this second are refused: the cache of used ones did not
    /// survive the restart, so one of them could otherwise be replayed until it expires.
    issued_floor_unix_s: u64,
}

impl TicketVerifier {
    pub fn new(bridge_id: BridgeId, ticket_key: &[u8]) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_audience(&[bridge_id.as_str()]);
        validation.set_required_spec_claims(&["exp", "aud"]);
        validation.leeway = TICKET_LEEWAY_S;
        // jsonwebtoken would read the system clock for `exp`; `verify` checks it against its `now`.
        validation.validate_exp = false;
        Self {
            bridge_id,
            key: DecodingKey::from_secret(ticket_key),
            validation,
            seen: Mutex::default(),
            removed: Mutex::new(RemovedParticipants::new(REMOVED_PARTICIPANTS_MAX)),
            issued_floor_unix_s: 0,
        }
    }

    /// Refuses tickets issued before `started_unix_s`, the second the bridge started. The
    /// single-use cache lives in memory, so without this a ticket used before a restart could be
    /// used again after it, for the rest of its 30 s. Whole seconds: a ticket issued in the start
    /// second itself is accepted (control cannot place anyone on the bridge before it registers,
    /// which takes longer), so the replay window left is under a second plus the clock skew
    /// between control and the bridge, which NTP keeps well under that. A bridge whose clock runs
    /// ahead refuses tickets control issued just after its start for the skew; their clients join
    /// again.
    pub fn refusing_issued_before(mut self, started_unix_s: u64) -> Self {
        self.issued_floor_unix_s = started_unix_s;
        self
    }

    /// Refuses every ticket of `participant` from now on, used or not. Remembered for as long as a
    /// ticket issued before this call can pass the expiry check.
    pub fn remove_participant(&self, participant: &ParticipantId, now_unix_s: u64) {
        self.removed.lock().expect("removed participants lock").insert(
            now_unix_s,
            participant.clone(),
            now_unix_s + REMOVED_PARTICIPANT_RETENTION_S,
        );
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
        if claims.iat < self.issued_floor_unix_s {
            return Err(TicketError::IssuedBeforeStart);
        }
        if self
            .removed
            .lock()
            .expect("removed participants lock")
            .contains(&claims.participant_id)
        {
            return Err(TicketError::ParticipantRemoved);
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

/// The wall clock in unix seconds, as tickets count time.
pub(crate) fn now_unix_s() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;
    use bridgemesh_proto::{ParticipantId, RoomId};
    use jsonwebtoken::{EncodingKey, Header};

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

    fn ticket(aud: &str, jti: &str, exp: u64, secret: &[u8]) -> String {
        ticket_for("p-1", aud, jti, exp, secret)
    }

    fn ticket_for(participant: &str, aud: &str, jti: &str, exp: u64, secret: &[u8]) -> String {
        let claims = TicketClaims {
            aud: BridgeId::new(aud).unwrap(),
            jti: jti.into(),
            exp,
            iat: exp - 30,
            room: RoomId::new("r").unwrap(),
            participant_id: ParticipantId::new(participant).unwrap(),
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

    #[test]
    fn refuses_every_ticket_of_a_removed_participant() {
        let verifier = TicketVerifier::new(BridgeId::new("b1").unwrap(), SECRET);
        let kicked = ParticipantId::new("p-kicked").unwrap();
        // Issued before the kick and never used.
        let unused = ticket_for("p-kicked", "b1", "j1", 1_030, SECRET);
        let other = ticket_for("p-other", "b1", "j2", 1_030, SECRET);
        verifier.remove_participant(&kicked, 1_000);
        assert_eq!(
            verifier.verify(&unused, 1_001),
            Err(TicketError::ParticipantRemoved)
        );
        // Refused for as long as the ticket could otherwise pass the expiry check.
        let later = ticket_for("p-kicked", "b1", "j3", 1_030, SECRET);
        assert_eq!(
            verifier.verify(&later, 1_030 + TICKET_LEEWAY_S),
            Err(TicketError::ParticipantRemoved)
        );
        assert_eq!(
            verifier.verify(&other, 1_001).unwrap().participant_id.as_str(),
            "p-other"
        );
    }
}
