//! Each bridge checks tickets with its own key (derived by control from the cluster secret and the
//! bridge's id): a bridge host that is compromised holds its own key only, so a ticket it mints
//! for another bridge is refused there, as is the TURN credential it could mint.

use bridgemesh_bridge::ticket::{TicketError, TicketVerifier};
use bridgemesh_control::node::bridge_key;
use bridgemesh_proto::bridge_session::turn_rest_secret;
use bridgemesh_proto::ticket::TicketClaims;
use bridgemesh_proto::{BridgeId, ParticipantId, RoomId};
use jsonwebtoken::{Algorithm, EncodingKey, Header};

const CLUSTER_SECRET: &[u8] = b"a cluster secret of at least thirty-two bytes";
const NOW: u64 = 1_800_000_000;

fn ticket_for(bridge: &BridgeId, signed_with: &[u8], jti: &str) -> String {
    let claims = TicketClaims {
        aud: bridge.clone(),
        jti: jti.into(),
        exp: NOW + 60,
        iat: NOW,
        room: RoomId::new("r").unwrap(),
        participant_id: ParticipantId::new("p-1").unwrap(),
        display_name: "Mallory".into(),
        moderator: true,
    };
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(signed_with),
    )
    .unwrap()
}

#[test]
fn a_ticket_minted_with_bridge_a_key_is_refused_by_bridge_b() {
    let (a, b) = (BridgeId::new("a").unwrap(), BridgeId::new("b").unwrap());
    let (key_a, key_b) = (bridge_key(CLUSTER_SECRET, &a), bridge_key(CLUSTER_SECRET, &b));
    let verifier_b = TicketVerifier::new(b.clone(), &key_b);

    // Bridge A's host mints a ticket naming bridge B: B refuses it.
    let forged = ticket_for(&b, &key_a, "forged");
    assert_eq!(verifier_b.verify(&forged, NOW), Err(TicketError::Invalid));
    // A ticket for A (as control issues them) is no good on B either.
    let for_a = ticket_for(&a, &key_a, "for-a");
    assert!(verifier_b.verify(&for_a, NOW).is_err());
    // What control signs for B with B's key, B accepts: the refusals are about the key.
    let genuine = ticket_for(&b, &key_b, "genuine");
    assert_eq!(verifier_b.verify(&genuine, NOW).unwrap().aud, b);

    // The embedded TURN servers' secrets differ per bridge as well.
    assert_ne!(turn_rest_secret(&key_a), turn_rest_secret(&key_b));
}
