//! Cascade endpoints on real UDP sockets on 127.0.0.1: bridges of one cluster connect, learn each
//! other's ids from their certificates and exchange full-size datagrams and streams; a bridge of
//! another cluster, a client without a certificate and a bridge that is not the one asked for are
//! refused; a peer that dies without a word is noticed by the idle timeout.

use bridgemesh_bridge::cascade::{
    BridgeIdentity, CASCADE_ALPN, CascadeConfig, CascadeConnectError, CascadeConnection, CascadeEndpoint,
    ClusterCa,
};
use bridgemesh_proto::BridgeId;
use bytes::Bytes;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Only a guard against a hang: every wait ends as soon as what it waits for happens.
const WAIT: Duration = Duration::from_secs(10);
const DATAGRAM_BYTES: usize = 1400;

fn id(value: &str) -> BridgeId {
    BridgeId::new(value).unwrap()
}

fn endpoint(identity: &BridgeIdentity) -> CascadeEndpoint {
    CascadeEndpoint::bind(
        "127.0.0.1:0".parse().unwrap(),
        identity,
        &CascadeConfig::default(),
    )
    .unwrap()
}

fn addr(endpoint: &CascadeEndpoint) -> SocketAddr {
    endpoint.local_addr().unwrap()
}

async fn within<T>(future: impl Future<Output = T>) -> T {
    tokio::time::timeout(WAIT, future).await.expect("timed out")
}

/// Connects `client` to `server` (expected to be bridge `server_id`) and accepts on `server`.
async fn connect_pair(
    client: &CascadeEndpoint,
    server: &CascadeEndpoint,
    server_id: &BridgeId,
) -> (
    Result<CascadeConnection, CascadeConnectError>,
    Result<CascadeConnection, CascadeConnectError>,
) {
    let (client_side, server_side) =
        within(async { tokio::join!(client.connect(addr(server), server_id), server.accept()) }).await;
    (client_side, server_side.expect("endpoint open"))
}

/// A refused peer may see its own handshake finish before the server rejects its certificate
/// (TLS 1.3 client authentication comes last); then its connection must end right after.
async fn assert_ends(result: Result<CascadeConnection, CascadeConnectError>) {
    if let Ok(connection) = result {
        let reason = within(connection.quic().closed()).await;
        assert!(
            !matches!(reason, quinn::ConnectionError::TimedOut),
            "ended by timeout, not refusal: {reason}"
        );
    }
}

async fn datagram_arrives(from: &CascadeConnection, to: &CascadeConnection, payload: Bytes) {
    // Datagrams are unreliable even on loopback in principle: resend until one arrives.
    within(async {
        loop {
            from.quic().send_datagram(payload.clone()).unwrap();
            if let Ok(received) =
                tokio::time::timeout(Duration::from_millis(200), to.quic().read_datagram()).await
            {
                assert_eq!(received.unwrap(), payload);
                return;
            }
        }
    })
    .await;
}

#[tokio::test]
async fn bridges_of_one_cluster_connect_and_exchange_full_size_datagrams_and_streams() {
    let ca = ClusterCa::generate().unwrap();
    let a = endpoint(&ca.issue_bridge_cert(&id("bridge-a")).unwrap());
    let b = endpoint(&ca.issue_bridge_cert(&id("bridge-b")).unwrap());

    let (a_to_b, b_from_a) = connect_pair(&a, &b, &id("bridge-b")).await;
    let (a_to_b, b_from_a) = (a_to_b.unwrap(), b_from_a.unwrap());
    assert_eq!(a_to_b.peer(), &id("bridge-b"));
    assert_eq!(b_from_a.peer(), &id("bridge-a"));
    assert_eq!(
        a_to_b
            .quic()
            .handshake_data()
            .unwrap()
            .downcast::<quinn::crypto::rustls::HandshakeData>()
            .unwrap()
            .protocol
            .as_deref(),
        Some(CASCADE_ALPN)
    );

    for side in [&a_to_b, &b_from_a] {
        let max = side.quic().max_datagram_size().expect("datagrams enabled");
        assert!(max >= 1300, "max datagram size {max}");
    }
    datagram_arrives(&a_to_b, &b_from_a, Bytes::from(vec![0xa5; DATAGRAM_BYTES])).await;
    datagram_arrives(&b_from_a, &a_to_b, Bytes::from(vec![0x5a; DATAGRAM_BYTES])).await;

    // A reliable control stream, opened by either side.
    within(async {
        let (mut send, mut recv) = a_to_b.quic().open_bi().await.unwrap();
        send.write_all(b"hello from a").await.unwrap();
        send.finish().unwrap();
        let (mut b_send, mut b_recv) = b_from_a.quic().accept_bi().await.unwrap();
        assert_eq!(b_recv.read_to_end(1024).await.unwrap(), b"hello from a");
        b_send.write_all(b"hello from b").await.unwrap();
        b_send.finish().unwrap();
        assert_eq!(recv.read_to_end(1024).await.unwrap(), b"hello from b");
    })
    .await;
}

#[tokio::test]
async fn bridge_of_another_cluster_is_refused_as_client() {
    let ca = ClusterCa::generate().unwrap();
    let stranger_ca = ClusterCa::generate().unwrap();
    let server = endpoint(&ca.issue_bridge_cert(&id("bridge-a")).unwrap());
    let intruder = endpoint(&stranger_ca.issue_bridge_cert(&id("bridge-b")).unwrap());

    let (client_side, server_side) = connect_pair(&intruder, &server, &id("bridge-a")).await;
    // The intruder does not trust the server either (its CA is not the intruder's).
    assert!(client_side.is_err(), "intruder accepted the server");
    assert!(
        server_side.is_err(),
        "server accepted a bridge of another cluster"
    );
}

#[tokio::test]
async fn bridge_of_another_cluster_is_refused_as_server() {
    let ca = ClusterCa::generate().unwrap();
    let stranger_ca = ClusterCa::generate().unwrap();
    let client = endpoint(&ca.issue_bridge_cert(&id("bridge-a")).unwrap());
    // Same id as the bridge the client means to reach: only the CA differs.
    let impostor = endpoint(&stranger_ca.issue_bridge_cert(&id("bridge-b")).unwrap());

    let (client_side, server_side) = connect_pair(&client, &impostor, &id("bridge-b")).await;
    assert!(
        matches!(client_side, Err(CascadeConnectError::Handshake(_))),
        "client accepted an impostor: {client_side:?}"
    );
    assert!(server_side.is_err());
}

#[tokio::test]
async fn client_without_certificate_is_refused() {
    let ca = ClusterCa::generate().unwrap();
    let server_identity = ca.issue_bridge_cert(&id("bridge-a")).unwrap();
    let server = endpoint(&server_identity);

    // A client that trusts the cluster CA and says the right ALPN but has no certificate.
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots.add(server_identity.ca_cert().clone()).unwrap();
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    tls.alpn_protocols = vec![CASCADE_ALPN.to_vec()];
    let client_config = quinn::ClientConfig::new(Arc::new(
        quinn::crypto::rustls::QuicClientConfig::try_from(tls).unwrap(),
    ));
    let anonymous = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();

    let (client_side, server_side) = within(async {
        tokio::join!(
            async {
                anonymous
                    .connect_with(client_config, addr(&server), "bridge-a.bridge.bridgemesh")
                    .unwrap()
                    .await
            },
            server.accept()
        )
    })
    .await;
    assert!(
        server_side.expect("endpoint open").is_err(),
        "server accepted a client without certificate"
    );
    if let Ok(connection) = client_side {
        let reason = within(connection.closed()).await;
        assert!(!matches!(reason, quinn::ConnectionError::TimedOut), "{reason}");
    }
}

#[tokio::test]
async fn client_reaching_another_bridge_than_it_asked_for_is_refused() {
    let ca = ClusterCa::generate().unwrap();
    let client = endpoint(&ca.issue_bridge_cert(&id("bridge-a")).unwrap());
    let other = endpoint(&ca.issue_bridge_cert(&id("bridge-y")).unwrap());

    let (client_side, server_side) = connect_pair(&client, &other, &id("bridge-x")).await;
    assert!(
        matches!(client_side, Err(CascadeConnectError::Handshake(_))),
        "client accepted bridge-y as bridge-x: {client_side:?}"
    );
    assert_ends(server_side).await;
}

#[tokio::test]
async fn connection_to_a_dead_bridge_ends_within_the_idle_timeout() {
    let ca = ClusterCa::generate().unwrap();
    let survivor = endpoint(&ca.issue_bridge_cert(&id("bridge-a")).unwrap());
    let victim_identity = ca.issue_bridge_cert(&id("bridge-b")).unwrap();

    // The victim runs on a runtime of its own, so that it can be killed as a crash would: the
    // runtime is dropped with its tasks unpolled, so no CONNECTION_CLOSE ever leaves its socket.
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    let (kill_tx, kill_rx) = std::sync::mpsc::channel::<()>();
    let victim = std::thread::spawn(move || {
        // Multi-thread: its worker keeps driving the victim while this thread waits for the kill.
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let (connected_tx, connected_rx) = tokio::sync::oneshot::channel();
        runtime.spawn(async move {
            let endpoint = endpoint(&victim_identity);
            addr_tx.send(addr(&endpoint)).unwrap();
            let connection = endpoint.accept().await.unwrap().unwrap();
            connected_tx.send(()).unwrap();
            // Holds the endpoint and the connection until the runtime goes.
            let _alive = (endpoint, connection);
            std::future::pending::<()>().await;
        });
        runtime.block_on(async { connected_rx.await.unwrap() });
        kill_rx.recv().unwrap();
        runtime.shutdown_background();
    });

    let victim_addr = tokio::task::spawn_blocking(move || addr_rx.recv_timeout(WAIT).unwrap())
        .await
        .unwrap();
    let connection = within(survivor.connect(victim_addr, &id("bridge-b")))
        .await
        .unwrap();
    // Alive for a while: keep-alives hold an idle connection open past the idle timeout.
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    assert!(
        connection.quic().close_reason().is_none(),
        "{:?}",
        connection.quic().close_reason()
    );

    kill_tx.send(()).unwrap();
    tokio::task::spawn_blocking(move || victim.join().unwrap())
        .await
        .unwrap();
    let killed_at = Instant::now();
    let reason = within(connection.quic().closed()).await;
    assert!(matches!(reason, quinn::ConnectionError::TimedOut), "{reason}");
    eprintln!("dead peer noticed after {:?}", killed_at.elapsed());
}

#[tokio::test]
async fn connections_beyond_the_cap_are_refused() {
    let ca = ClusterCa::generate().unwrap();
    let config = CascadeConfig {
        max_connections: 1,
        ..CascadeConfig::default()
    };
    let server = CascadeEndpoint::bind(
        "127.0.0.1:0".parse().unwrap(),
        &ca.issue_bridge_cert(&id("hub")).unwrap(),
        &config,
    )
    .unwrap();
    let first = endpoint(&ca.issue_bridge_cert(&id("first")).unwrap());
    let second = endpoint(&ca.issue_bridge_cert(&id("second")).unwrap());

    let (first_side, server_side) = connect_pair(&first, &server, &id("hub")).await;
    let (_first_side, _server_side) = (first_side.unwrap(), server_side.unwrap());
    let (second_side, server_side) = connect_pair(&second, &server, &id("hub")).await;
    assert!(
        matches!(
            second_side,
            // Refusal is a CONNECTION_CLOSE carrying CONNECTION_REFUSED.
            Err(CascadeConnectError::Handshake(
                quinn::ConnectionError::ConnectionClosed(_)
            ))
        ),
        "{second_side:?}"
    );
    assert!(
        matches!(server_side, Err(CascadeConnectError::TooManyConnections(1))),
        "{server_side:?}"
    );
}
