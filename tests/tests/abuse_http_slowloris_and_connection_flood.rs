//! Clients that hold HTTP connections instead of using them. Before, control's and the bridges'
//! servers had no header timeout and no connection cap: an unfinished request stayed open for
//! over 40 s, and one source held 3,000 half-open requests. Now an unfinished request is closed
//! when the header read timeout passes, one address's connections past its cap are closed at once
//! (and counted), and normal joins are served all along.

use bridgemesh_control::http::{ApiConfig, router};
use bridgemesh_control::http_guard::{HttpGuardStats, HttpLimits, serve_guarded};
use bridgemesh_tests::harness::{join_raw, post_join_raw, room, up};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

const SLOW_CLIENTS: usize = 50;

/// Sends a request's headers one byte a second and never finishes them; returns how long the
/// server kept the connection, or `None` if it was still open after `give_up`.
async fn slowloris(addr: SocketAddr, give_up: Duration) -> Option<Duration> {
    let started = Instant::now();
    let mut tcp = TcpStream::connect(addr).await.expect("connects");
    tcp.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        .await
        .ok()?;
    let mut buf = [0u8; 512];
    while started.elapsed() < give_up {
        if tcp.write_all(b"a").await.is_err() {
            return Some(started.elapsed());
        }
        match tokio::time::timeout(Duration::from_secs(1), tcp.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return Some(started.elapsed()),
            // A 408 or 400 before the close.
            Ok(Ok(_)) => {}
            Err(_) => {}
        }
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unfinished_requests_are_closed_within_the_header_timeout_and_joins_go_on() {
    let running = up().await;
    let timeout = HttpLimits::default().header_read_timeout;
    let give_up = timeout + Duration::from_secs(10);
    let control: SocketAddr = running.control_url.trim_start_matches("http://").parse().unwrap();
    let bridge: SocketAddr = running.bridge_url.trim_start_matches("http://").parse().unwrap();
    let mut slow = Vec::new();
    for i in 0..SLOW_CLIENTS {
        let addr = if i % 2 == 0 { control } else { bridge };
        slow.push(tokio::spawn(slowloris(addr, give_up)));
    }
    // Served while the slow clients hang on.
    let joined = join_raw(&running, &room("during-slowloris"), "Ada").await;
    assert!(!joined.ticket.is_empty());
    let mut held = Vec::new();
    for task in slow {
        held.push(task.await.unwrap());
    }
    let open_after: Vec<_> = held.iter().filter(|h| h.is_none()).collect();
    assert!(
        open_after.is_empty(),
        "{} of {SLOW_CLIENTS} unfinished requests still open after {give_up:?}",
        open_after.len()
    );
    let longest = held.iter().flatten().max().copied().unwrap_or_default();
    assert!(
        longest >= timeout - Duration::from_millis(500),
        "closed before the timeout: {longest:?}"
    );
    eprintln!(
        "slowloris: {SLOW_CLIENTS} unfinished requests (control and bridge), all closed, the last after {longest:?} \
         (header timeout {timeout:?}); a join during it succeeded"
    );
    // The bridge counts what it closed, on its own metrics page.
    let metrics = reqwest::get(format!("{}/metrics/http", running.bridge_url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let header_timeouts = metrics
        .lines()
        .find(|l| l.starts_with("bridgemesh_bridge_http_timeouts_total{") && l.contains("phase=\"header\""))
        .and_then(|l| l.rsplit(' ').next()?.parse::<u64>().ok());
    assert_eq!(header_timeouts, Some(SLOW_CLIENTS as u64 / 2), "{metrics}");
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_flooding_connections_is_capped_and_others_still_join() {
    let running = up().await;
    // Control's API on a second listener, with loopback held to the per-address cap, so that
    // 127.0.0.2 can play a remote flooder and 127.0.0.1 a normal client.
    let limits = HttpLimits {
        connections_per_address_max: 64,
        loopback_exempt_from_per_address_max: false,
        ..HttpLimits::default()
    };
    let stats = Arc::new(HttpGuardStats::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (_stop, stopped) = tokio::sync::watch::channel(false);
    let api = ApiConfig {
        admin: None,
        metrics_token: None,
    };
    let _server = serve_guarded(
        listener,
        router(running.control.clone(), api),
        stopped,
        limits.clone(),
        stats.clone(),
    );

    const FLOOD: usize = 400;
    let mut flood = Vec::new();
    for _ in 0..FLOOD {
        let socket = TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.2:0".parse().unwrap()).unwrap();
        flood.push(socket.connect(addr).await.expect("the flooder connects"));
    }
    // A refused connection is closed at once; a held one stays open (until its header timeout).
    let mut reads = Vec::new();
    for mut tcp in flood {
        reads.push(tokio::spawn(async move {
            let mut buf = [0u8; 1];
            let closed = matches!(
                tokio::time::timeout(Duration::from_secs(2), tcp.read(&mut buf)).await,
                Ok(Ok(0)) | Ok(Err(_))
            );
            (closed, tcp)
        }));
    }
    let mut held = Vec::new();
    let mut closed = 0;
    for read in reads {
        let (was_closed, tcp) = read.await.unwrap();
        if was_closed {
            closed += 1;
        } else {
            held.push(tcp);
        }
    }
    assert_eq!(
        held.len(),
        limits.connections_per_address_max,
        "connections the flooder holds"
    );
    assert_eq!(closed, FLOOD - limits.connections_per_address_max);
    assert_eq!(
        stats.refused_per_address_max.load(Ordering::Relaxed),
        closed as u64,
        "every refusal is counted"
    );
    // A normal client still joins while the flooder holds its share.
    let (status, body) = post_join_raw(
        &format!("http://{addr}"),
        "during-flood",
        r#"{"display_name":"Bob"}"#,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    eprintln!(
        "connection flood: {FLOOD} connections from one address; {} held (cap {}), {closed} closed at once and counted; \
         a join from another address succeeded",
        held.len(),
        limits.connections_per_address_max
    );
    drop(held);
    running.stop().await;
}
