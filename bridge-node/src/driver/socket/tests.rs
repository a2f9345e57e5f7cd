use super::*;
use std::time::Duration;

fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

fn bind_one() -> MediaSocket {
    let mut sockets = bind_media_sockets(loopback(), false, 1, &MediaSocketConfig::default()).unwrap();
    MediaSocket::new(sockets.remove(0)).unwrap()
}

/// Reads until `want` datagrams arrived (bounded by a deadline), as `(from, bytes)`.
async fn read(socket: &MediaSocket, want: usize) -> Vec<(SocketAddr, Vec<u8>)> {
    let mut batch = RecvBatch::new(socket.gro_segments());
    let mut got = vec![];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while got.len() < want {
        tokio::time::timeout_at(deadline, socket.readable())
            .await
            .unwrap_or_else(|_| panic!("only {} of {want} datagrams arrived", got.len()))
            .unwrap();
        match socket.try_recv(&mut batch) {
            Ok(_) => got.extend(batch.datagrams().map(|(from, data)| (from, data.to_vec()))),
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => {}
            Err(err) => panic!("{err}"),
        }
    }
    got
}

#[test]
fn every_shard_socket_binds_the_one_port_in_both_families() {
    let sockets = bind_media_sockets(loopback(), false, 3, &MediaSocketConfig::default()).unwrap();
    let port = sockets[0].local_addr().unwrap().port();
    assert_ne!(port, 0);
    assert!(sockets.iter().all(|s| s.local_addr().unwrap().port() == port));
    let any_v6 = SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, 0));
    let dual = bind_media_sockets(any_v6, true, 2, &MediaSocketConfig::default()).unwrap();
    let v4_peer = std::net::UdpSocket::bind(loopback()).unwrap();
    let port = dual[0].local_addr().unwrap().port();
    v4_peer.send_to(b"v4 to [::]", ("127.0.0.1", port)).unwrap();
    let mut buf = [0u8; 64];
    let from = loop {
        // One of the two sockets got it; the kernel chose which by the 4-tuple.
        dual.iter().for_each(|s| s.set_nonblocking(true).unwrap());
        if let Some(Ok((_, from))) = dual.iter().map(|s| s.recv_from(&mut buf)).find(Result::is_ok) {
            break from;
        }
        std::thread::yield_now();
    };
    assert_eq!(from.ip().to_canonical(), v4_peer.local_addr().unwrap().ip());
}

#[tokio::test]
async fn a_batch_reaches_every_destination_in_order_with_few_syscalls() {
    let sender = bind_one();
    let receivers: Vec<MediaSocket> = (0..3).map(|_| bind_one()).collect();
    let mut batch = SendBatch::default();
    let mut outcome = SendOutcome::default();
    let count = 70usize;
    for i in 0..count {
        let to = receivers[i % 3].io.local_addr().unwrap();
        let payload = vec![i as u8; 100 + i];
        outcome.add(batch.push(&sender, to, &payload));
    }
    outcome.add(batch.flush(&sender));
    assert!(batch.is_empty());
    assert_eq!((outcome.sent, outcome.failed), (count as u64, 0));
    assert_eq!(
        outcome.syscalls,
        count.div_ceil(SEND_BATCH) as u64,
        "one sendmmsg per full batch"
    );
    let from = sender.io.local_addr().unwrap();
    for (r, receiver) in receivers.iter().enumerate() {
        let got = read(receiver, count / 3 + usize::from(r < count % 3)).await;
        let expected: Vec<_> = (r..count)
            .step_by(3)
            .map(|i| (from, vec![i as u8; 100 + i]))
            .collect();
        assert_eq!(got, expected, "receiver {r}");
    }
}

#[tokio::test]
async fn an_oversized_datagram_goes_after_what_is_queued_and_a_refused_one_alone_is_lost() {
    let sender = bind_one();
    let receiver = bind_one();
    let to = receiver.io.local_addr().unwrap();
    let mut batch = SendBatch::default();
    let mut outcome = batch.push(&sender, to, b"first");
    // Port 0 is refused by the kernel (EINVAL): that datagram alone is dropped and counted.
    outcome.add(batch.push(&sender, SocketAddr::from(([127, 0, 0, 1], 0)), b"refused"));
    outcome.add(batch.push(&sender, to, b"second"));
    let long = vec![7u8; SEND_SLOT_BYTES + 1];
    outcome.add(batch.push(&sender, to, &long));
    outcome.add(batch.push(&sender, to, b"last"));
    outcome.add(batch.flush(&sender));
    assert_eq!((outcome.sent, outcome.failed), (4, 1));
    let got: Vec<Vec<u8>> = read(&receiver, 4).await.into_iter().map(|(_, d)| d).collect();
    let long_as_read = long[..DATAGRAM_MAX_BYTES].to_vec();
    assert_eq!(
        got,
        vec![
            b"first".to_vec(),
            b"second".to_vec(),
            long_as_read,
            b"last".to_vec()
        ]
    );
}

#[test]
fn a_full_receive_buffer_shows_in_the_kernel_drop_counter() {
    let config = MediaSocketConfig {
        recv_buffer_bytes: MediaSocketConfig::BUFFER_BYTES_MIN,
        ..MediaSocketConfig::default()
    };
    let mut sockets = bind_media_sockets(loopback(), false, 1, &config).unwrap();
    let socket = sockets.remove(0);
    let inode = inode_of(&socket).unwrap();
    assert_eq!(kernel_drops_of(inode), Some(0));
    let to = socket.local_addr().unwrap();
    let flood = std::net::UdpSocket::bind(loopback()).unwrap();
    // Far more than a 64 KiB buffer (128 KiB as the kernel counts it) holds, and nobody reads.
    for _ in 0..2000 {
        flood.send_to(&[0u8; 1000], to).unwrap();
    }
    let drops = kernel_drops_of(inode).expect("the socket is listed");
    assert!(drops > 0, "no drops counted");
}

#[test]
fn the_drop_column_is_read_from_the_row_of_the_inode() {
    let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
  511: 0100007F:A4C6 00000000:0000 07 00000000:00000000 00:00000000 00000000  1000        0 4242 2 0000000000000000 17
  512: 0100007F:A4C7 00000000:0000 07 00000000:00000000 00:00000000 00000000  1000        0 4343 2 0000000000000000 0
";
    assert_eq!(parse_drops(table, 4242), Some(17));
    assert_eq!(parse_drops(table, 4343), Some(0));
    assert_eq!(parse_drops(table, 1), None);
    assert_eq!(parse_drops("header only\n", 4242), None);
}

#[test]
fn another_reuseport_socket_on_the_port_is_refused() {
    let sockets = bind_media_sockets(loopback(), false, 2, &MediaSocketConfig::default()).unwrap();
    let taken = sockets[0].local_addr().unwrap();
    // As a second bridge on the same port would: same user, SO_REUSEPORT, so the kernel lets it in.
    let err = bind_media_sockets(taken, false, 2, &MediaSocketConfig::default()).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::AddrInUse, "{err}");
    // Without the check the kernel would have accepted it.
    let intruder = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None).unwrap();
    intruder.set_reuse_port(true).unwrap();
    intruder.bind(&taken.into()).unwrap();
    drop(sockets);
}

#[test]
fn sockets_sharing_our_port_and_address_are_found() {
    let row = |addr, port, inode| ProcUdpRow { addr, port, inode };
    let rows = [
        row("0100007F", 5000, 1),
        row("0100007F", 5000, 2),
        row("0200007F", 5000, 3),
        row("0100007F", 5001, 4),
    ];
    assert_eq!(
        find_foreign(&rows, 5000, &[1, 2]),
        None,
        "127.0.0.2 and another port do not overlap"
    );
    assert_eq!(find_foreign(&rows, 5000, &[1]), Some(2));
    let with_wildcard = [row("0100007F", 5000, 1), row("00000000", 5000, 9)];
    assert_eq!(find_foreign(&with_wildcard, 5000, &[1]), Some(9));
    let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
 1350: 0100007F:E536 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 1345420 2 0000000006598385 0
";
    let parsed: Vec<_> = proc_udp_rows(table).map(|r| (r.addr, r.port, r.inode)).collect();
    assert_eq!(parsed, vec![("0100007F", 0xE536, 1_345_420)]);
}
