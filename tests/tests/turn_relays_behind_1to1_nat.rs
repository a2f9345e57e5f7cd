//! A TURN server behind a 1:1 NAT (a cloud elastic IP): relay sockets bind an address of this
//! host and XOR-RELAYED-ADDRESS names the external one, as coturn's `--external-ip`. Before the
//! bind address and the external address were separate, the relay sockets bound the advertised
//! address, so a server given an address the host does not have started and then answered every
//! Allocate with 508; now it refuses to start and says why.
//!
//! 198.18.0.77 stands for the public address. No packet is sent to it: it only appears in the
//! server's configuration and answers (the NAT in front, which the netns test builds, is what
//! would forward it to the local address).

use bridgemesh_tests::turn::{RawTurnClient, credential, loopback, turn_lab};
use bridgemesh_turn::stun::attr;
use bridgemesh_turn::{StartError, TurnConfig, TurnServer};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

const EXTERNAL: &str = "198.18.0.77";

#[tokio::test]
async fn relays_bind_locally_and_advertise_the_external_address() {
    let external: IpAddr = EXTERNAL.parse().unwrap();
    let lab = turn_lab(|config| config.external_ip = Some(external)).await;
    let server = lab.server.udp_addr().unwrap();
    let mut client = RawTurnClient::udp(server, credential("ada")).await;
    let answer = client.allocate().await;
    assert_eq!(answer.code, 0, "allocated: {answer:?}");
    let message = answer.message();
    let relayed = message
        .get(attr::XOR_RELAYED_ADDRESS)
        .and_then(|value| message.xor_address(value))
        .expect("a relayed address");
    assert_eq!(relayed.ip(), external, "clients are told the external address");
    assert_ne!(relayed.port(), 0);

    // The relay socket holds the local address: data relayed to the echo peer comes back.
    assert_eq!(client.create_permission(lab.echo).await.code, 0);
    client.send_to_peer(lab.echo, b"through the nat").await;
    let (from, data) = client
        .recv_data(Duration::from_secs(5))
        .await
        .expect("the echo comes back through the relay");
    assert_eq!((from, data.as_slice()), (lab.echo, &b"through the nat"[..]));

    // The external address is the server's own: relaying to it would loop through the NAT.
    let own = SocketAddr::new(external, relayed.port());
    assert_eq!(client.create_permission(own).await.code, 403);
}

#[tokio::test]
async fn an_address_the_host_does_not_have_is_refused_at_start_with_the_reason() {
    let config = TurnConfig {
        udp_listen: Some(SocketAddr::new(loopback(1), 0)),
        tcp_listen: None,
        relay_ip: EXTERNAL.parse().unwrap(),
        secret: b"lab-secret-0123456789abcdef".to_vec(),
        ..TurnConfig::default()
    };
    let err = match TurnServer::start(config).await {
        Ok(_) => panic!("a TURN server whose relays cannot bind must not start"),
        Err(err) => err,
    };
    assert!(matches!(err, StartError::RelayBind { .. }), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains(EXTERNAL) && text.contains("--external-ip"),
        "names the address and the way out: {text}"
    );
}
