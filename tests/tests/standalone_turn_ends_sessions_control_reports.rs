//! A standalone TURN server (`bridgemesh turn --control`) is not beside any bridge, so it cannot
//! hear a participant leave; it reads the ended sessions from control with the bridges'
//! addresses. A participant who leaves loses the allocation it made there with the credential its
//! join gave it, and that credential is refused from then on.

use bridgemesh_proto::signaling::{ClientMessage, ServerMessage};
use bridgemesh_tests::harness::{RawSignal, eventually, join_raw, room, up};
use bridgemesh_tests::turn::{REALM, RawTurnClient, SECRET, assert_session_ended, loopback, unix_now_s};
use bridgemesh_turn::credentials::parse_username;
use bridgemesh_turn::directory::{TurnDirectory, TurnEndpoint};
use bridgemesh_turn::ended_sessions::CLOCK_SKEW_ALLOWANCE_S;
use bridgemesh_turn::{TurnConfig, TurnServer};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// Control stamps a leave with the time of its last tick, up to this long before the leave.
const CONTROL_TICK: Duration = Duration::from_secs(2);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standalone_turn_server_ends_what_a_participant_who_left_was_given() {
    let running = up().await;
    let standalone = Arc::new(
        TurnServer::start(TurnConfig {
            udp_listen: Some(SocketAddr::new(loopback(1), 0)),
            tcp_listen: None,
            relay_ip: loopback(1),
            secret: SECRET.as_bytes().to_vec(),
            realm: REALM.to_owned(),
            ..TurnConfig::default()
        })
        .await
        .expect("the standalone TURN server starts"),
    );
    let udp = standalone.udp_addr().unwrap();
    let credential_ttl_s = TurnConfig::default().credential_ttl_s;
    running.control.set_turn(Some(TurnDirectory {
        secret: SECRET.as_bytes().to_vec(),
        credential_ttl_s,
        endpoints: vec![TurnEndpoint {
            bridge: None,
            urls: vec![format!("turn:{udp}?transport=udp")],
        }],
    }));
    let refresher = bridgemesh::turn_peers::spawn(
        &standalone,
        vec![running.control_url.clone()],
        bridgemesh::turn_peers::Asker::standalone(SECRET.as_bytes()),
    );

    let join = join_raw(&running, &room("standalone-turn"), "Ada").await;
    let server = join
        .ice_servers
        .iter()
        .find(|s| s.urls.iter().any(|u| u.contains(&udp.to_string())))
        .expect("the join names the standalone server");
    let credential = (
        server.username.clone().unwrap(),
        server.credential.clone().unwrap(),
    );
    let mut signal = RawSignal::hello(&join).await;
    signal
        .next_matching("welcome", Duration::from_secs(10), |m| {
            matches!(m, ServerMessage::Welcome { .. }).then_some(())
        })
        .await;
    let mut client = RawTurnClient::udp(udp, credential.clone()).await;
    assert_eq!(client.allocate().await.code, 0, "the join's credential works");

    // Refused are credentials issued before the end control reports less the skew allowance.
    let (_, expires_unix_s) = parse_username(&credential.0, unix_now_s()).unwrap();
    let issued_at = expires_unix_s - credential_ttl_s;
    eventually(
        "the credential is older than a tick and the skew allowance",
        Duration::from_secs(10),
        || unix_now_s() > issued_at + CONTROL_TICK.as_secs() + CLOCK_SKEW_ALLOWANCE_S,
    )
    .await;
    assert_eq!(standalone.stats().sessions_ended_total, 0, "nothing ended yet");

    signal.send(&ClientMessage::Leave).await;
    eventually(
        "the standalone server hears from control that the session ended",
        Duration::from_secs(15),
        || standalone.stats().sessions_ended_total == 1,
    )
    .await;
    assert_session_ended(&standalone, &mut client, credential).await;
    // Reported again at every refresh, the end is counted once.
    tokio::time::sleep(bridgemesh::turn_peers::REFRESH_INTERVAL * 2).await;
    assert_eq!(standalone.stats().sessions_ended_total, 1);

    refresher.abort();
    running.stop().await;
}
