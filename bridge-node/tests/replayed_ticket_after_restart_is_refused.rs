//! A ticket used once is refused when presented again, including after the bridge restarted:
//! the cache of used tickets lives in memory, so the restarted bridge refuses every ticket issued
//! before it started. Before, a bridge restarted within a ticket's 30 s accepted the replay.

use bridgemesh_bridge::config::BridgeConfig;
use bridgemesh_bridge::driver::Bridge;
use bridgemesh_bridge::ticket::TicketError;
use bridgemesh_proto::ticket::TicketClaims;
use bridgemesh_proto::{BridgeId, ParticipantId, RoomId};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const KEY: &[u8] = b"0123456789abcdef0123456789abcdef";

fn now_unix_s() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

fn ticket(bridge: &BridgeId, jti: &str, iat: u64) -> String {
    let claims = TicketClaims {
        aud: bridge.clone(),
        jti: jti.into(),
        exp: iat + 30,
        iat,
        room: RoomId::new("r").unwrap(),
        participant_id: ParticipantId::new("p-1").unwrap(),
        display_name: "Mallory".into(),
        moderator: false,
    };
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(KEY),
    )
    .unwrap()
}

#[tokio::test]
async fn a_ticket_used_before_a_restart_is_refused_after_it() {
    let id = BridgeId::new("restarting").unwrap();
    let config = BridgeConfig {
        shard_count: 1,
        ..BridgeConfig::loopback(id.clone(), KEY.to_vec(), 0)
    };
    let bridge = Bridge::start(config.clone()).expect("the bridge starts");
    let issued = now_unix_s();
    let used = ticket(&id, "used-once", issued);
    assert!(bridge.verifier().verify(&used, now_unix_s()).is_ok());
    assert_eq!(
        bridge.verifier().verify(&used, now_unix_s()),
        Err(TicketError::Replayed)
    );
    bridge.shutdown().await;
    drop(bridge);

    // A restart comes at least a second after the ticket was issued (whole seconds are what
    // tickets carry); waiting on the clock, bounded.
    let deadline = std::time::Instant::now() + Duration::from_secs(3);
    while now_unix_s() <= issued {
        assert!(
            std::time::Instant::now() < deadline,
            "the wall clock stands still"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let restarted = Bridge::start(config).expect("the bridge starts again");
    let now = now_unix_s();
    assert!(now < issued + 30, "the ticket is still within its lifetime");
    assert_eq!(
        restarted.verifier().verify(&used, now),
        Err(TicketError::IssuedBeforeStart),
        "the replay after the restart is refused"
    );
    // Tickets control issues from now on are accepted, once.
    let fresh = ticket(&id, "fresh", now);
    assert!(restarted.verifier().verify(&fresh, now).is_ok());
    assert_eq!(
        restarted.verifier().verify(&fresh, now),
        Err(TicketError::Replayed)
    );
    restarted.shutdown().await;
}
