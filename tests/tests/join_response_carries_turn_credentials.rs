//! `bridgemesh up` hands every participant REST credentials for its bridge's TURN server in the
//! join response, and they work until the participant's session is over; with TURN switched off
//! the response names no server.

use bridgemesh::up::UpConfig;
use bridgemesh_proto::signaling::{ClientMessage, ServerMessage};
use bridgemesh_tests::harness::{RawSignal, eventually, join_raw, room, up};
use bridgemesh_tests::turn::{RawTurnClient, assert_session_ended, unix_now_s};
use bridgemesh_turn::credentials::{parse_username, rest_password};
use bridgemesh_turn::ended_sessions::CLOCK_SKEW_ALLOWANCE_S;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn join_responses_carry_working_turn_credentials_for_the_bridges_turn_server() {
    let running = up().await;
    let turn = running.turn.clone().expect("TURN runs by default");
    let directory = running.turn_directory.clone().expect("and control knows it");
    let join = join_raw(&running, &room("turn-creds"), "Ada").await;

    assert_eq!(
        join.ice_servers.len(),
        1,
        "one bridge, one TURN server: {:?}",
        join.ice_servers
    );
    let server = &join.ice_servers[0];
    let udp = turn.udp_addr().unwrap();
    let tcp = turn.tcp_addr().unwrap();
    assert_eq!(
        server.urls,
        [
            format!("turn:127.0.0.1:{}?transport=udp", udp.port()),
            format!("turn:127.0.0.1:{}?transport=tcp", tcp.port())
        ]
    );
    let username = server.username.clone().expect("a username");
    let password = server.credential.clone().expect("a credential");
    let (user, expires_unix_s) = parse_username(&username, unix_now_s()).expect("a live REST username");
    assert_eq!(
        user,
        join.participant_id.as_str(),
        "the credential names the participant"
    );
    assert!(expires_unix_s <= unix_now_s() + directory.credential_ttl_s);
    assert_eq!(password, rest_password(&directory.secret, &username));

    for over_tcp in [false, true] {
        let mut client = if over_tcp {
            RawTurnClient::tcp(tcp, (username.clone(), password.clone())).await
        } else {
            RawTurnClient::udp(udp, (username.clone(), password.clone())).await
        };
        let answer = client.allocate().await;
        assert_eq!(
            answer.code, 0,
            "allocation with the join's credentials (tcp: {over_tcp})"
        );
        // The bridge's media address is the one loopback peer allowed.
        assert_eq!(
            client.create_permission(running.bridge.media_addr()).await.code,
            0
        );
    }
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_turn_switched_off_join_responses_name_no_server() {
    bridgemesh_tests::harness::init_tracing();
    let running = bridgemesh::up::start(UpConfig {
        turn: false,
        ..UpConfig::ephemeral()
    })
    .await
    .expect("up starts");
    assert!(running.turn.is_none());
    let join = join_raw(&running, &room("no-turn"), "Ada").await;
    assert!(join.ice_servers.is_empty(), "{:?}", join.ice_servers);
    running.stop().await;
}

/// A participant that leaves takes its TURN allocations with it, and the credential it was given
/// stops working: it cannot keep the bridge's relays after its meeting (a kicked guest neither).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leaving_ends_the_participants_allocations_and_credentials() {
    let running = up().await;
    let turn = running.turn.clone().expect("TURN runs by default");
    let directory = running.turn_directory.clone().expect("and control knows it");
    let join = join_raw(&running, &room("turn-ends"), "Ada").await;
    let mut signal = RawSignal::hello(&join).await;
    signal
        .next_matching("welcome", Duration::from_secs(10), |m| {
            matches!(m, ServerMessage::Welcome { .. }).then_some(())
        })
        .await;
    let server = &join.ice_servers[0];
    let credential = (
        server.username.clone().unwrap(),
        server.credential.clone().unwrap(),
    );
    let mut client = RawTurnClient::udp(turn.udp_addr().unwrap(), credential.clone()).await;
    assert_eq!(client.allocate().await.code, 0);
    // A credential issued just before a session ends is let through (control's and the bridge's
    // clocks may differ a little); this one is older than that when the participant leaves.
    let (_, expires_unix_s) = parse_username(&credential.0, unix_now_s()).unwrap();
    let issued_at = expires_unix_s - directory.credential_ttl_s;
    eventually(
        "the credential is older than the skew allowance",
        Duration::from_secs(10),
        || unix_now_s() > issued_at + CLOCK_SKEW_ALLOWANCE_S,
    )
    .await;

    signal.send(&ClientMessage::Leave).await;
    eventually(
        "TURN hears that the session is over",
        Duration::from_secs(10),
        || turn.stats().sessions_ended_total == 1,
    )
    .await;
    assert_session_ended(&turn, &mut client, credential).await;
    running.stop().await;
}
