//! What the TURN server refuses, seen on the wire: expired credentials and a wrong HMAC (401),
//! an allocation past the per-user or per-source quota (486), permissions and channels toward
//! loopback addresses outside the allowlist (403), packets to an allowed IP's other ports
//! (dropped), and the credentials of a participant whose session ended (401, its allocations
//! gone). An allocation outlives its credential's expiry. Every address involved is in
//! 127.0.0.0/8.

use bridgemesh_tests::harness::eventually;
use bridgemesh_tests::turn::{RawTurnClient, SECRET, credential, loopback, turn_lab, unix_now_s};
use bridgemesh_turn::credentials::rest_credential;
use bridgemesh_turn::stun::{Class, attr};
use std::net::SocketAddr;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(5);

#[tokio::test]
async fn expired_credentials_are_refused_with_401() {
    let lab = turn_lab(|_| {}).await;
    let server = lab.server.udp_addr().unwrap();
    let expired = rest_credential(SECRET.as_bytes(), "ada", unix_now_s() - 10);
    let answer = RawTurnClient::udp(server, expired).await.allocate().await;
    assert_eq!((answer.class, answer.code), (Class::Error, 401));
    assert_eq!(lab.server.stats().auth_failures_total, 1);
    assert_eq!(lab.server.stats().allocations_active, 0);
    // The same user with a fresh credential is served: the refusal was about the expiry.
    let answer = RawTurnClient::udp(server, credential("ada"))
        .await
        .allocate()
        .await;
    assert_eq!((answer.class, answer.code), (Class::Success, 0));
}

#[tokio::test]
async fn a_wrong_hmac_is_refused_with_401_over_udp_and_tcp() {
    let lab = turn_lab(|_| {}).await;
    let (username, _) = credential("ada");
    let (_, forged) = rest_credential(b"not the cluster secret", "ada", unix_now_s() + 3600);
    let over_udp = RawTurnClient::udp(lab.server.udp_addr().unwrap(), (username.clone(), forged.clone()))
        .await
        .allocate()
        .await;
    assert_eq!((over_udp.class, over_udp.code), (Class::Error, 401));
    let over_tcp = RawTurnClient::tcp(lab.server.tcp_addr().unwrap(), (username, forged))
        .await
        .allocate()
        .await;
    assert_eq!((over_tcp.class, over_tcp.code), (Class::Error, 401));
    assert!(
        !over_tcp.message().has(attr::MESSAGE_INTEGRITY),
        "a refusal of bad credentials cannot be signed"
    );
    let stats = lab.server.stats();
    assert_eq!(
        (stats.auth_failures_total, stats.allocations_active),
        (2, 0),
        "{stats:?}"
    );
}

#[tokio::test]
async fn allocations_past_the_per_user_quota_are_refused_with_486() {
    let lab = turn_lab(|config| config.allocations_per_user_max = 2).await;
    let server = lab.server.udp_addr().unwrap();
    let mut clients = Vec::new();
    for _ in 0..2 {
        let mut client = RawTurnClient::udp(server, credential("ada")).await;
        assert_eq!(client.allocate().await.code, 0);
        clients.push(client);
    }
    let third = RawTurnClient::udp(server, credential("ada"))
        .await
        .allocate()
        .await;
    assert_eq!((third.class, third.code), (Class::Error, 486));
    let other_user = RawTurnClient::udp(server, credential("bob"))
        .await
        .allocate()
        .await;
    assert_eq!(other_user.code, 0, "the quota is per user");
    let stats = lab.server.stats();
    assert_eq!(stats.allocation_quota_refusals_total, 1, "{stats:?}");
    assert_eq!(stats.allocations_active, 3, "{stats:?}");
}

#[tokio::test]
async fn relays_toward_loopback_outside_the_allowlist_are_refused_with_403() {
    let lab = turn_lab(|_| {}).await;
    for over_tcp in [false, true] {
        let mut client = if over_tcp {
            RawTurnClient::tcp(lab.server.tcp_addr().unwrap(), credential("ada")).await
        } else {
            RawTurnClient::udp(lab.server.udp_addr().unwrap(), credential("ada")).await
        };
        assert_eq!(client.allocate().await.code, 0);
        let other_loopback = SocketAddr::new(loopback(2), lab.echo.port());
        let mapped: SocketAddr = format!("[::ffff:127.0.0.1]:{}", lab.echo.port()).parse().unwrap();
        for peer in [other_loopback, mapped] {
            let answer = client.create_permission(peer).await;
            assert_eq!(
                (answer.class, answer.code),
                (Class::Error, 403),
                "permission for {peer}"
            );
            assert!(
                answer.message().has(attr::MESSAGE_INTEGRITY),
                "signed: the request was authentic"
            );
            let answer = client.channel_bind(0x4000, peer).await;
            assert_eq!(
                (answer.class, answer.code),
                (Class::Error, 403),
                "channel to {peer}"
            );
        }
        // The allowlisted peer (exact ip:port) is reachable, and answers through the relay.
        assert_eq!(client.create_permission(lab.echo).await.code, 0);
        client.send_to_peer(lab.echo, b"ping").await;
        let (from, data) = client
            .recv_data(WAIT)
            .await
            .expect("the echo answers through the relay");
        assert_eq!((from, data.as_slice()), (lab.echo, &b"ping"[..]));
    }
    assert_eq!(lab.server.stats().denied_peers_total, 8);
}

#[tokio::test]
async fn an_allowed_ip_does_not_open_its_other_ports() {
    let lab = turn_lab(|_| {}).await;
    let mut client = RawTurnClient::udp(lab.server.udp_addr().unwrap(), credential("ada")).await;
    assert_eq!(client.allocate().await.code, 0);
    // The permission is for the echo's IP, 127.0.0.1, as permissions are.
    assert_eq!(client.create_permission(lab.echo).await.code, 0);
    let other_port = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let before = lab.server.stats();
    client
        .send_to_peer(other_port.local_addr().unwrap(), b"should not arrive")
        .await;
    eventually("the packet to another port is dropped", WAIT, || {
        lab.server.stats().denied_peers_total == before.denied_peers_total + 1
    })
    .await;
    assert_eq!(
        lab.server.stats().client_to_peer_packets_total,
        before.client_to_peer_packets_total
    );
    let mut buf = [0u8; 64];
    assert!(
        other_port.try_recv_from(&mut buf).is_err(),
        "nothing was sent to the other port"
    );
}

#[tokio::test]
async fn allocations_past_the_per_source_quota_are_refused_with_486() {
    let lab = turn_lab(|config| config.allocations_per_source_max = 2).await;
    let server = lab.server.udp_addr().unwrap();
    let mut clients = Vec::new();
    // Three participants' credentials from one host: the host, not each user, is the limit.
    for user in ["ada", "bob"] {
        let mut client = RawTurnClient::udp_from(loopback(3), server, credential(user)).await;
        assert_eq!(client.allocate().await.code, 0);
        clients.push(client);
    }
    let third = RawTurnClient::udp_from(loopback(3), server, credential("cyd"))
        .await
        .allocate()
        .await;
    assert_eq!((third.class, third.code), (Class::Error, 486));
    let elsewhere = RawTurnClient::udp_from(loopback(4), server, credential("cyd"))
        .await
        .allocate()
        .await;
    assert_eq!(elsewhere.code, 0, "another host is not affected");
    // An allocation that ends gives its slot back.
    assert_eq!(clients[0].refresh(0).await.code, 0);
    let again = RawTurnClient::udp_from(loopback(3), server, credential("dan"))
        .await
        .allocate()
        .await;
    assert_eq!(again.code, 0, "{:?}", lab.server.stats());
}

#[tokio::test]
async fn an_allocation_outlives_its_credential_but_a_new_one_needs_a_fresh_credential() {
    let lab = turn_lab(|_| {}).await;
    let server = lab.server.udp_addr().unwrap();
    let expires = unix_now_s() + 2;
    let short = rest_credential(SECRET.as_bytes(), "ada", expires);
    let mut client = RawTurnClient::udp(server, short.clone()).await;
    assert_eq!(client.allocate().await.code, 0);
    eventually("the credential expires", Duration::from_secs(5), || {
        unix_now_s() > expires
    })
    .await;
    let refreshed = client.refresh(600).await;
    assert_eq!(
        (refreshed.class, refreshed.code),
        (Class::Success, 0),
        "the call goes on"
    );
    assert_eq!(client.create_permission(lab.echo).await.code, 0);
    client.send_to_peer(lab.echo, b"still here").await;
    let (_, data) = client.recv_data(WAIT).await.expect("relayed after the expiry");
    assert_eq!(data, b"still here");
    let fresh_allocation = RawTurnClient::udp(server, short).await.allocate().await;
    assert_eq!(
        (fresh_allocation.class, fresh_allocation.code),
        (Class::Error, 401),
        "a new allocation needs a valid credential"
    );
}

#[tokio::test]
async fn an_ended_session_loses_its_allocations_and_its_older_credentials() {
    let ttl = 3600;
    let lab = turn_lab(|config| config.credential_ttl_s = ttl).await;
    let server = lab.server.udp_addr().unwrap();
    // Issued a minute before the session ends (expiry = issue time + TTL).
    let issued_at_join = rest_credential(SECRET.as_bytes(), "ada", unix_now_s() - 60 + ttl);
    let mut client = RawTurnClient::udp(server, issued_at_join.clone()).await;
    assert_eq!(client.allocate().await.code, 0);
    let mut bob = RawTurnClient::udp(server, credential("bob")).await;
    assert_eq!(bob.allocate().await.code, 0);

    lab.server.end_session("ada");
    let stats = lab.server.stats();
    assert_eq!(
        (
            stats.allocations_active,
            stats.allocations_ended_with_session_total
        ),
        (1, 1),
        "{stats:?}"
    );
    let refresh = client.refresh(600).await;
    assert_eq!(
        (refresh.class, refresh.code),
        (Class::Error, 401),
        "the allocation is gone"
    );
    let again = RawTurnClient::udp(server, issued_at_join).await.allocate().await;
    assert_eq!(
        (again.class, again.code),
        (Class::Error, 401),
        "the old credential is refused"
    );
    assert!(lab.server.stats().ended_session_refusals_total >= 2);
    // The participant reconnecting gets a credential issued now, which is served; so is Bob.
    let reconnected = RawTurnClient::udp(server, credential("ada"))
        .await
        .allocate()
        .await;
    assert_eq!(reconnected.code, 0);
    assert_eq!(
        bob.refresh(600).await.code,
        0,
        "another participant is not affected"
    );
}

/// An end a standalone server reads from control (again at every refresh) ends what was issued
/// before it, not the participant's next session, and counts once.
#[tokio::test]
async fn an_end_control_reports_ends_only_what_was_issued_before_it() {
    let ttl = 3600;
    let lab = turn_lab(|config| config.credential_ttl_s = ttl).await;
    let server = lab.server.udp_addr().unwrap();
    let now = unix_now_s();
    let before = rest_credential(SECRET.as_bytes(), "ada", now - 100 + ttl);
    let after = rest_credential(SECRET.as_bytes(), "ada", now + ttl);
    let mut old_session = RawTurnClient::udp(server, before.clone()).await;
    assert_eq!(old_session.allocate().await.code, 0);
    let mut new_session = RawTurnClient::udp(server, after).await;
    assert_eq!(new_session.allocate().await.code, 0);

    for _ in 0..3 {
        lab.server.end_session_at("ada", now - 50);
    }
    let stats = lab.server.stats();
    assert_eq!(
        (
            stats.sessions_ended_total,
            stats.allocations_active,
            stats.allocations_ended_with_session_total
        ),
        (1, 1, 1),
        "{stats:?}"
    );
    assert_eq!(old_session.refresh(600).await.code, 401);
    assert_eq!(
        new_session.refresh(600).await.code,
        0,
        "the later session keeps its relay"
    );
    let again = RawTurnClient::udp(server, before).await.allocate().await;
    assert_eq!((again.class, again.code), (Class::Error, 401));
}
