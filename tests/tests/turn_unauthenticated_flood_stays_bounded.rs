//! A flood of unauthenticated TURN requests from several source addresses (all in 127.0.0.0/8)
//! leaves the server's state bounded: no allocation, no nonce table (nonces are stateless), a
//! rate-limit table capped at its configured size, answers capped by each source's burst; and
//! a flood of TCP connections is capped by the connection limit.

use bridgemesh_tests::harness::eventually;
use bridgemesh_tests::turn::{RawTurnClient, credential, loopback, turn_lab};
use bridgemesh_turn::rate_limit::RateLimit;
use bridgemesh_turn::stun::{Class, Writer, attr, method};
use std::time::Duration;

const SOURCES: u8 = 8;
const REQUESTS_PER_SOURCE: usize = 2_000;
const BATCH: usize = 200;
const BURST: f64 = 10.0;
const SOURCES_MAX: usize = 4;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_unauthenticated_requests_leaves_state_bounded() {
    let lab = turn_lab(|config| {
        config.unauthenticated_limit = RateLimit {
            burst: BURST,
            // Practically no refill during the test, so the number of answers is exact.
            per_second: 0.001,
            sources_max: SOURCES_MAX,
        };
    })
    .await;
    let server = lab.server.udp_addr().unwrap();
    let mut received = 0usize;
    let mut sent = 0u64;
    let mut buf = [0u8; 1500];
    for source in 1..=SOURCES {
        let socket = tokio::net::UdpSocket::bind((loopback(source), 0)).await.unwrap();
        for batch in 0..REQUESTS_PER_SOURCE / BATCH {
            for i in 0..BATCH {
                let mut request = Vec::new();
                let mut id = [0u8; 12];
                id[..8].copy_from_slice(&((batch * BATCH + i) as u64).to_be_bytes());
                Writer::new(&mut request, method::ALLOCATE, Class::Request, id)
                    .u32_attribute(attr::REQUESTED_TRANSPORT, 17 << 24);
                socket.send_to(&request, server).await.unwrap();
                sent += 1;
            }
            // Let the server read each batch, so no socket buffer overflows and the counts are exact.
            eventually("the server read the batch", Duration::from_secs(10), || {
                lab.server.stats().requests_total == sent
            })
            .await;
        }
        while let Ok(Ok(_)) =
            tokio::time::timeout(Duration::from_millis(200), socket.recv_from(&mut buf)).await
        {
            received += 1;
        }
    }
    let stats = lab.server.stats();
    let answered = sent - stats.unauthenticated_dropped_total;
    assert_eq!(
        answered,
        SOURCES_MAX as u64 * BURST as u64,
        "a burst for each source the table holds, nothing for the rest: {stats:?}"
    );
    assert_eq!(received as u64, answered, "the challenges that were sent arrived");
    assert_eq!(stats.rate_limited_sources as usize, SOURCES_MAX, "{stats:?}");
    assert_eq!(
        (stats.allocations_active, stats.users_active),
        (0, 0),
        "{stats:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_tcp_connections_is_capped() {
    const CONNECTIONS_MAX: usize = 16;
    let lab = turn_lab(|config| config.stream_connections_max = CONNECTIONS_MAX).await;
    let server = lab.server.tcp_addr().unwrap();
    let mut held = Vec::new();
    for _ in 0..CONNECTIONS_MAX + 20 {
        held.push(tokio::net::TcpStream::connect(server).await.unwrap());
    }
    eventually(
        "the extra connections are refused",
        Duration::from_secs(10),
        || lab.server.stats().stream_connections_refused_total == 20,
    )
    .await;
    assert_eq!(
        lab.server.stats().stream_connections_active as usize,
        CONNECTIONS_MAX
    );
    // Closing connections gives their slots back.
    held.clear();
    eventually("the slots are released", Duration::from_secs(10), || {
        lab.server.stats().stream_connections_active == 0
    })
    .await;
    let answer = RawTurnClient::tcp(server, credential("ada"))
        .await
        .allocate()
        .await;
    assert_eq!(answer.code, 0, "a client is served once the flood is gone");
}
