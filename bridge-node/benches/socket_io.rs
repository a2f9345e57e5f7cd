//! CPU per datagram of the bridge's media socket calls over loopback, one thread: sending a
//! fan-out one `sendto` at a time (the driver before issue 15) against the driver's `sendmmsg`
//! batches ([`SendBatch`]) and against GSO (`quinn-udp` `try_send` with a segment size, for a
//! burst to one destination); receiving with one `recvfrom` per datagram against the driver's
//! `recvmmsg` batches ([`RecvBatch`]).
//!
//! CPU is the sending (or receiving) thread's own time on CPU from `/proc/thread-self/schedstat`
//! around each measured chunk; it includes the kernel's loopback delivery done on that thread.
//! The receivers are drained between chunks, outside the measurement.
//!
//! ```sh
//! cargo bench -p bridgemesh-bridge --bench socket_io
//! ```
//! Env: PACKETS (default 100000 per run), RUNS (3); prints the median of the runs.

use bridgemesh_bridge::MediaSocketConfig;
use bridgemesh_bridge::driver::socket::{MediaSocket, RecvBatch, SendBatch, bind_media_sockets};
use quinn_udp::{Transmit, UdpSockRef, UdpSocketState};
use std::net::{SocketAddr, UdpSocket};

const PAYLOAD_BYTES: usize = 1200;
const DESTINATIONS: usize = 10;
/// Datagrams per measured chunk: what the receivers' buffers hold until drained.
const CHUNK: usize = 1000;
const GSO_SEGMENTS: usize = 32;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// This thread's time on CPU so far, in ns.
fn thread_cpu_ns() -> u64 {
    let schedstat = std::fs::read_to_string("/proc/thread-self/schedstat").expect("schedstat");
    schedstat
        .split_whitespace()
        .next()
        .and_then(|ns| ns.parse().ok())
        .expect("schedstat's first field")
}

fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

fn media_socket() -> MediaSocket {
    let mut sockets = bind_media_sockets(loopback(), false, 1, &MediaSocketConfig::default()).expect("bind");
    MediaSocket::new(sockets.remove(0)).expect("register")
}

fn receivers(count: usize) -> Vec<UdpSocket> {
    (0..count)
        .map(|_| {
            let mut sockets =
                bind_media_sockets(loopback(), false, 1, &MediaSocketConfig::default()).expect("bind");
            let socket = sockets.remove(0);
            socket.set_nonblocking(true).expect("nonblocking");
            socket
        })
        .collect()
}

/// Reads everything queued; returns how many datagrams.
fn drain(receivers: &[UdpSocket]) -> u64 {
    let mut buf = [0u8; 65_536];
    let mut count = 0;
    for receiver in receivers {
        while receiver.recv_from(&mut buf).is_ok() {
            count += 1;
        }
    }
    count
}

/// ns of CPU per datagram sent by `send_chunk` (which sends CHUNK datagrams), and the share of
/// them that arrived.
fn measure_send(packets: u64, receivers: &[UdpSocket], mut send_chunk: impl FnMut()) -> (f64, f64) {
    let mut cpu_ns = 0;
    let mut sent = 0;
    let mut arrived = 0;
    while sent < packets {
        let before = thread_cpu_ns();
        send_chunk();
        cpu_ns += thread_cpu_ns() - before;
        sent += CHUNK as u64;
        arrived += drain(receivers);
    }
    (cpu_ns as f64 / sent as f64, arrived as f64 / sent as f64)
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    values[values.len() / 2]
}

fn main() {
    let packets = env_or("PACKETS", 100_000);
    let runs = env_or("RUNS", 3);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let _guard = runtime.enter();
    let payload = [0x80u8; PAYLOAD_BYTES];
    let fan_out = receivers(DESTINATIONS);
    let fan_out_addrs: Vec<SocketAddr> = fan_out.iter().map(|r| r.local_addr().unwrap()).collect();
    let sender = media_socket();
    let plain = UdpSocket::bind(loopback()).expect("bind");

    println!("socket call                                  ns CPU/datagram (median of {runs})  arrived");
    let report = |name: &str, results: Vec<(f64, f64)>| {
        let arrived = results.iter().map(|r| r.1).fold(1.0, f64::min);
        println!(
            "{name:<44} {:>10.0}                        {:>5.1} %",
            median(results.iter().map(|r| r.0).collect()),
            arrived * 100.0
        );
    };

    let results = (0..runs)
        .map(|_| {
            measure_send(packets, &fan_out, || {
                for i in 0..CHUNK {
                    let _ = plain.send_to(&payload, fan_out_addrs[i % DESTINATIONS]);
                }
            })
        })
        .collect();
    report("sendto, 1 → 10 round robin", results);

    let mut batch = SendBatch::default();
    let results = (0..runs)
        .map(|_| {
            measure_send(packets, &fan_out, || {
                for i in 0..CHUNK {
                    batch.push(&sender, fan_out_addrs[i % DESTINATIONS], &payload);
                }
                batch.flush(&sender);
            })
        })
        .collect();
    report("sendmmsg (SendBatch), 1 → 10 round robin", results);

    // GSO: one destination per call, bursts of equal-size segments.
    let gso_socket = UdpSocket::bind(loopback()).expect("bind");
    gso_socket.set_nonblocking(true).expect("nonblocking");
    let state = UdpSocketState::new(UdpSockRef::from(&gso_socket)).expect("quinn-udp state");
    let segments = GSO_SEGMENTS.min(state.max_gso_segments());
    let burst = vec![0x80u8; PAYLOAD_BYTES * segments];
    let results = (0..runs)
        .map(|_| {
            measure_send(packets, &fan_out, || {
                let mut sent = 0;
                let mut dest = 0;
                while sent < CHUNK {
                    let n = segments.min(CHUNK - sent);
                    let transmit = Transmit {
                        destination: fan_out_addrs[dest % DESTINATIONS],
                        ecn: None,
                        contents: &burst[..n * PAYLOAD_BYTES],
                        segment_size: (n > 1).then_some(PAYLOAD_BYTES),
                        src_ip: None,
                    };
                    let _ = state.try_send(UdpSockRef::from(&gso_socket), &transmit);
                    sent += n;
                    dest += 1;
                }
            })
        })
        .collect();
    report(&format!("GSO ({segments} segments to one destination)"), results);

    // Receiving: CHUNK datagrams queued at one socket, then read: a plain socket one datagram
    // per call (the driver before), the driver's media socket in batches.
    let old_receiver = receivers(1).remove(0);
    let old_addr = old_receiver.local_addr().expect("local address");
    let receiver = media_socket();
    let receiver_addr = receiver.local_addr().expect("local address");
    let mut recv_results = vec![];
    let mut recvmmsg_results = vec![];
    let mut batch = RecvBatch::new(receiver.gro_segments());
    let mut buf = [0u8; 2048];
    for _ in 0..runs {
        for (mode, results) in [(0, &mut recv_results), (1, &mut recvmmsg_results)] {
            let mut cpu_ns = 0;
            let mut read = 0u64;
            while read < packets {
                let to = if mode == 0 { old_addr } else { receiver_addr };
                for _ in 0..CHUNK {
                    let _ = plain.send_to(&payload, to);
                }
                if mode == 1 {
                    // Tokio learns of readiness from its reactor; not measured.
                    runtime.block_on(receiver.readable()).expect("readable");
                }
                let before = thread_cpu_ns();
                let mut got = 0;
                if mode == 0 {
                    while old_receiver.recv_from(&mut buf).is_ok() {
                        got += 1;
                    }
                } else {
                    while receiver.try_recv(&mut batch).is_ok() {
                        got += batch.datagrams().count();
                    }
                }
                cpu_ns += thread_cpu_ns() - before;
                read += got as u64;
            }
            results.push((cpu_ns as f64 / read as f64, 1.0));
        }
    }
    report("recvfrom, one at a time", recv_results);
    report("recvmmsg (RecvBatch), 32 per call", recvmmsg_results);
}
