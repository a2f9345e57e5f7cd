//! Control's cluster listener (Raft peers and bridge sessions) over real sockets: plain HTTP gets
//! nowhere, a certificate of another CA fails the handshake, a bridge's certificate cannot speak
//! Raft, a control node's cannot open a bridge session, and a bridge's certificate registers that
//! bridge only. The public API no longer serves Raft at all.

mod common;

use bridgemesh_pki::rustls;
use bridgemesh_pki::{ClusterCa, ClusterClient, ClusterIdentity};
use bridgemesh_proto::bridge_session::{BridgeRegistration, BridgeToControl, ControlToBridge, LoadReport};
use bridgemesh_proto::{BridgeId, RegionId};
use common::{TestCluster, open_bridge_session};
use futures_util::{SinkExt, StreamExt};
use std::sync::Arc;
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

const WAIT_MAX: Duration = Duration::from_secs(20);

fn registration(id: &str) -> BridgeToControl {
    BridgeToControl::Register {
        bridge: BridgeRegistration {
            id: BridgeId::new(id).unwrap(),
            region: RegionId::new("test").unwrap(),
            location: None,
            signaling_url: format!("ws://127.0.0.1:9/{id}"),
            media_addresses: Vec::new(),
            turn_urls: Vec::new(),
            capacity: 100,
            max_participants_per_room: 100,
            cascade_addr: None,
        },
        instance: format!("{id}-instance"),
        participants: Vec::new(),
        load: LoadReport::default(),
    }
}

/// Registers as `claimed` over a session authenticated by `identity`; control's first answer.
async fn register(
    cluster: &TestCluster,
    leader: u64,
    identity: &ClusterIdentity,
    claimed: &str,
) -> ControlToBridge {
    let mut socket = open_bridge_session(cluster.cluster_addrs[&leader], identity)
        .await
        .unwrap();
    let text = serde_json::to_string(&registration(claimed)).unwrap();
    socket.send(Message::Text(text.into())).await.unwrap();
    loop {
        let frame = tokio::time::timeout(WAIT_MAX, socket.next())
            .await
            .expect("control answers")
            .expect("an answer before the socket closes")
            .unwrap();
        if let Message::Text(text) = frame {
            return serde_json::from_str(text.as_str()).unwrap();
        }
    }
}

fn bridge_identity(ca: &ClusterCa, id: &str) -> ClusterIdentity {
    ClusterIdentity::from(&ca.issue_bridge_cert(&BridgeId::new(id).unwrap()).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bridge_certificate_registers_its_own_bridge_and_no_other() {
    let cluster = TestCluster::start(&[1]).await;
    let leader = cluster.wait_for_leader().await;
    let b1 = bridge_identity(&cluster.ca, "b1");

    // b1's certificate claiming b2 (one compromised bridge host speaking for another) is refused,
    // and nothing is registered.
    let answer = register(&cluster, leader, &b1, "b2").await;
    assert!(
        matches!(&answer, ControlToBridge::Refused { code, .. } if code == "bridge_id_mismatch"),
        "{answer:?}"
    );
    assert!(
        !cluster
            .state(leader)
            .bridges
            .contains_key(&BridgeId::new("b2").unwrap())
    );

    // Under its own id it registers.
    let answer = register(&cluster, leader, &b1, "b1").await;
    assert!(matches!(answer, ControlToBridge::Registered { .. }), "{answer:?}");

    // A control node's certificate is no bridge's: the upgrade is refused with 403.
    let control = cluster.ca.issue_control_cert(7).unwrap();
    let err = open_bridge_session(cluster.cluster_addrs[&leader], &control)
        .await
        .unwrap_err();
    assert!(err.contains("403"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raft_requests_need_a_control_certificate_of_the_cluster_ca() {
    let cluster = TestCluster::start(&[1]).await;
    let leader = cluster.wait_for_leader().await;
    let cluster_addr = cluster.cluster_addrs[&leader].to_string();
    let body = b"{}".to_vec();

    // Plain HTTP to the cluster listener: no TLS handshake, no answer.
    let plain = cluster
        .http
        .post(format!("http://{cluster_addr}/raft/v1/propose"))
        .body("{}")
        .timeout(Duration::from_secs(5))
        .send()
        .await;
    assert!(plain.is_err(), "plain HTTP got an answer: {plain:?}");
    // The public API does not serve Raft.
    let public = cluster
        .http
        .post(format!("{}/raft/v1/propose", cluster.url(leader)))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(public.status(), 404);

    // A bridge's certificate is the cluster's, but not a control node's.
    let bridge = ClusterClient::new(&bridge_identity(&cluster.ca, "b1")).unwrap();
    let answer = bridge
        .post_json(&cluster_addr, "/raft/v1/read-index", body.clone(), WAIT_MAX)
        .await
        .unwrap();
    assert_eq!(answer.status, 403);

    // A control certificate of another CA: the listener refuses the handshake. (The client trusts
    // the cluster's CA here, so the refusal is the server's.)
    let stranger_ca = ClusterCa::generate().unwrap();
    let stranger = stranger_ca.issue_control_cert(2).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cluster.ca.cert_der().clone()).unwrap();
    let config =
        rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .with_root_certificates(roots)
            .with_client_auth_cert(stranger.cert_chain().to_vec(), stranger.key().clone_key())
            .unwrap();
    let refused = async {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let tcp = tokio::net::TcpStream::connect(&cluster_addr).await?;
        let name = rustls::pki_types::ServerName::try_from("1.control.bridgemesh").unwrap();
        let mut tls = bridgemesh_pki::tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(name, tcp)
            .await?;
        // TLS 1.3 clients finish before the server has checked their certificate: the refusal
        // arrives as the first read.
        tls.write_all(b"POST /raft/v1/read-index HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\n\r\n{}")
            .await?;
        let mut buffer = Vec::new();
        tls.read_to_end(&mut buffer).await?;
        Ok::<_, std::io::Error>(buffer)
    };
    let result = tokio::time::timeout(WAIT_MAX, refused).await.unwrap();
    assert!(
        result.is_err(),
        "a certificate of another CA got an answer: {:?}",
        result.map(|b| String::from_utf8_lossy(&b).into_owned())
    );

    // A control certificate of the cluster's CA is what peers use.
    let member = ClusterClient::new(&cluster.ca.issue_control_cert(2).unwrap()).unwrap();
    let answer = member
        .post_json(&cluster_addr, "/raft/v1/read-index", b"null".to_vec(), WAIT_MAX)
        .await
        .unwrap();
    assert_eq!(answer.status, 200, "{}", String::from_utf8_lossy(&answer.body));
}
