use super::*;
use crate::credentials::rest_credential;
use tokio::net::TcpStream;

const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

fn config() -> TurnConfig {
    let loopback = IpAddr::from([127, 0, 0, 1]);
    TurnConfig {
        udp_listen: Some(SocketAddr::new(loopback, 0)),
        tcp_listen: Some(SocketAddr::new(loopback, 0)),
        relay_ip: loopback,
        secret: SECRET.to_vec(),
        ..TurnConfig::default()
    }
}

fn binding(id: u8) -> Vec<u8> {
    let mut request = Vec::new();
    Writer::new(&mut request, method::BINDING, Class::Request, [id; 12]);
    request
}

/// The next STUN message from the server, or `None` if the connection closed or stayed
/// silent for `wait`.
async fn read_message(tcp: &mut TcpStream, wait: Duration) -> Option<Vec<u8>> {
    let read = async {
        let mut head = [0u8; 4];
        tcp.read_exact(&mut head).await.ok()?;
        let mut frame = vec![0u8; stream_frame_len(head)?];
        frame[..4].copy_from_slice(&head);
        tcp.read_exact(&mut frame[4..]).await.ok()?;
        Some(frame)
    };
    tokio::time::timeout(wait, read).await.ok().flatten()
}

async fn binding_answered(tcp: &mut TcpStream, id: u8) -> bool {
    if tcp.write_all(&binding(id)).await.is_err() {
        return false;
    }
    match read_message(tcp, Duration::from_secs(5)).await {
        Some(answer) => {
            let answer = Message::decode(&answer).expect("valid STUN");
            assert_eq!((answer.class, answer.transaction_id), (Class::Success, [id; 12]));
            true
        }
        None => false,
    }
}

#[tokio::test]
async fn the_framer_reads_a_frame_of_the_largest_announced_length() {
    // `00 01 FF FC` + cookie: a Binding whose header announces the largest body, unauthenticated.
    let mut bytes = vec![0x00, 0x01, 0xFF, 0xFC];
    bytes.extend_from_slice(&stun::MAGIC_COOKIE.to_be_bytes());
    bytes.resize(stun::STREAM_FRAME_MAX_BYTES, 0);
    bytes.extend_from_slice(&binding(1));
    let mut reader = &bytes[..];
    let mut framer = StreamFramer::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    assert_eq!(
        framer.next(&mut reader, deadline).await.map(<[u8]>::len),
        Some(stun::STREAM_FRAME_MAX_BYTES)
    );
    assert_eq!(framer.next(&mut reader, deadline).await, Some(&binding(1)[..]));
    assert_eq!(framer.next(&mut reader, deadline).await, None, "end of stream");
}

#[tokio::test]
async fn a_stream_survives_the_largest_frame_and_keeps_answering() {
    let server = TurnServer::start(config()).await.unwrap();
    let mut tcp = TcpStream::connect(server.tcp_addr().unwrap()).await.unwrap();
    let mut frame = vec![0x00, 0x01, 0xFF, 0xFC];
    frame.extend_from_slice(&stun::MAGIC_COOKIE.to_be_bytes());
    frame.resize(stun::STREAM_FRAME_MAX_BYTES, 0);
    tcp.write_all(&frame).await.unwrap();
    assert!(
        binding_answered(&mut tcp, 2).await,
        "the connection's task is alive"
    );
}

#[tokio::test]
async fn a_stream_without_allocation_is_closed_at_its_deadline_however_much_it_sends() {
    let server = TurnServer::start(TurnConfig {
        stream_idle_without_allocation_s: 1,
        ..config()
    })
    .await
    .unwrap();
    let mut tcp = TcpStream::connect(server.tcp_addr().unwrap()).await.unwrap();
    let started = Instant::now();
    let mut answered = 0;
    // A Binding every 100 ms: with an idle timer this would keep the connection forever.
    while started.elapsed() < Duration::from_secs(5) {
        if !binding_answered(&mut tcp, answered as u8).await {
            break;
        }
        answered += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let open_for = started.elapsed();
    assert!(answered > 0, "served before the deadline");
    assert!(
        open_for < Duration::from_secs(3),
        "closed ~1 s after accept, not after {open_for:?}"
    );
}

#[tokio::test]
async fn connections_per_source_are_capped() {
    let server = TurnServer::start(TurnConfig {
        stream_connections_per_source_max: 2,
        ..config()
    })
    .await
    .unwrap();
    let addr = server.tcp_addr().unwrap();
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(TcpStream::connect(addr).await.unwrap());
    }
    assert!(binding_answered(&mut held[0], 1).await);
    assert!(binding_answered(&mut held[1], 2).await);
    assert!(
        !binding_answered(&mut held[2], 3).await,
        "the third from 127.0.0.1"
    );
    assert_eq!(server.stats().stream_connections_refused_total, 1);
    // Another source still gets in.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.2:0".parse().unwrap()).unwrap();
    let mut other = socket.connect(addr).await.unwrap();
    assert!(binding_answered(&mut other, 4).await, "127.0.0.2");
    // A closed connection gives its source slot back.
    held.truncate(1);
    let mut again = None;
    for _ in 0..50 {
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        if binding_answered(&mut tcp, 5).await {
            again = Some(tcp);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(again.is_some(), "a slot of 127.0.0.1 was released");
}

#[tokio::test]
async fn a_connection_open_before_shutdown_is_not_answered_after() {
    let server = TurnServer::start(config()).await.unwrap();
    let mut tcp = TcpStream::connect(server.tcp_addr().unwrap()).await.unwrap();
    assert!(binding_answered(&mut tcp, 1).await, "answered while running");
    server.shutdown().await;
    assert_eq!(
        server.shared.stream_permits.available_permits(),
        10_000,
        "every slot back"
    );
    assert!(!binding_answered(&mut tcp, 2).await, "silent after shutdown");
}

#[tokio::test]
async fn the_queue_toward_a_stream_client_is_bounded_in_bytes() {
    let (tx, _frames) = StreamTx::new();
    let client = ClientTx::Stream(tx);
    let to: SocketAddr = "192.0.2.1:1".parse().unwrap();
    let frame = vec![0u8; 64 * 1024];
    let accepted = (0..STREAM_QUEUE_FRAMES)
        .take_while(|_| client.send(to, &frame))
        .count();
    assert_eq!(accepted, STREAM_QUEUE_BYTES / frame.len());
    assert!(!client.send(to, &[0u8; 4]), "the budget is spent");
}

/// Sends `request` over UDP and returns the answer.
async fn exchange(socket: &UdpSocket, server: SocketAddr, request: &[u8]) -> Vec<u8> {
    socket.send_to(request, server).await.unwrap();
    let mut buf = vec![0u8; 1500];
    let (len, _) = tokio::time::timeout(Duration::from_secs(5), socket.recv_from(&mut buf))
        .await
        .expect("an answer")
        .unwrap();
    buf.truncate(len);
    buf
}

#[tokio::test]
async fn packets_the_policy_drops_do_not_spend_the_bandwidth_budget() {
    let peer = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let peer_addr = peer.local_addr().unwrap();
    let server = TurnServer::start(TurnConfig {
        allow_peer_addrs: vec![peer_addr],
        // Practically no refill: two 1000-byte packets, then nothing.
        allocation_bandwidth_bytes_per_s: 1,
        allocation_bandwidth_burst_bytes: 2000,
        ..config()
    })
    .await
    .unwrap();
    let to = server.udp_addr().unwrap();
    let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let (username, password) = rest_credential(SECRET, "ada", unix_now_s() + 3600);
    let mut request = Vec::new();
    Writer::new(&mut request, method::ALLOCATE, Class::Request, [1; 12])
        .u32_attribute(attr::REQUESTED_TRANSPORT, 17 << 24);
    let challenge = exchange(&client, to, &request).await;
    let nonce = Message::decode(&challenge)
        .unwrap()
        .get(attr::NONCE)
        .unwrap()
        .to_vec();
    let key = long_term_key(&username, "bridgemesh", &password);
    let signed = |request: &mut Vec<u8>, method: u16, id: u8, add: &dyn Fn(&mut Writer<'_>)| {
        let mut w = Writer::new(request, method, Class::Request, [id; 12]);
        add(&mut w);
        w.attribute(attr::USERNAME, username.as_bytes())
            .attribute(attr::REALM, b"bridgemesh")
            .attribute(attr::NONCE, &nonce);
        w.finish_with_integrity(&key, false);
    };
    signed(&mut request, method::ALLOCATE, 2, &|w| {
        w.u32_attribute(attr::REQUESTED_TRANSPORT, 17 << 24);
    });
    let answer = exchange(&client, to, &request).await;
    assert_eq!(Message::decode(&answer).unwrap().class, Class::Success);
    signed(&mut request, method::CREATE_PERMISSION, 3, &|w| {
        w.xor_address(attr::XOR_PEER_ADDRESS, peer_addr);
    });
    let answer = exchange(&client, to, &request).await;
    assert_eq!(Message::decode(&answer).unwrap().class, Class::Success);
    // The permission covers 127.0.0.1; only the allowlisted port may be relayed to.
    let denied = SocketAddr::new(peer_addr.ip(), peer_addr.port().wrapping_add(1).max(1024));
    for (i, target) in [denied, denied, denied, peer_addr].into_iter().enumerate() {
        let mut send = Vec::new();
        Writer::new(&mut send, method::SEND, Class::Indication, [10 + i as u8; 12])
            .xor_address(attr::XOR_PEER_ADDRESS, target)
            .attribute(attr::DATA, &[0xab; 1000]);
        client.send_to(&send, to).await.unwrap();
    }
    let mut buf = [0u8; 1500];
    let (len, _) = tokio::time::timeout(Duration::from_secs(5), peer.recv_from(&mut buf))
        .await
        .expect("the allowed packet is relayed despite the denied ones before it")
        .unwrap();
    assert_eq!(len, 1000);
    let stats = server.stats();
    assert_eq!((stats.denied_peers_total, stats.bandwidth_dropped_total), (3, 0));
}
