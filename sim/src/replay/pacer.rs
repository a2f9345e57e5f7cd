//! Sends every publisher's stream at a fixed packet rate: one task for all publishers, a tick
//! every [`TICK`], each tick one frame per publisher of the packets due since the start, sealed
//! and written with `sendmmsg` ([`SendBatch`], 32 datagrams per call).

use super::session::Publishing;
use super::tx::Source;
use bridgemesh_bridge::driver::socket::{MediaSocket, SendBatch};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// One frame per publisher per tick: 200 frames/s.
pub const TICK: Duration = Duration::from_millis(5);
/// Most packets one publisher sends in one tick, whatever fell behind (a stalled generator
/// skips what it missed rather than bursting it).
const MAX_FRAME_PACKETS: u64 = 1024;

/// Packets sent and failed by a pacer, read while it runs.
#[derive(Debug, Default)]
pub struct PacerCounters {
    pub sent: AtomicU64,
    /// Datagrams the kernel refused (full send buffer) or the pacer skipped after a stall.
    pub dropped: AtomicU64,
}

struct Stream {
    socket: Arc<MediaSocket>,
    bridge: SocketAddr,
    source: Source,
    due_sent: u64,
}

/// Runs until `stop` turns true: each publisher sends `packets_per_s`.
pub async fn run(
    publishers: Vec<Publishing>,
    packets_per_s: f64,
    counters: Arc<PacerCounters>,
    mut stop: watch::Receiver<bool>,
) {
    let mut streams: Vec<Stream> = publishers
        .into_iter()
        .map(|p| Stream {
            socket: p.socket,
            bridge: p.bridge,
            source: Source::new(p.ssrc, p.payload_type, p.tag, p.keys, p.first_seq, rand::random()),
            due_sent: 0,
        })
        .collect();
    let mut batch = SendBatch::default();
    let started = Instant::now();
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            _ = stop.changed() => return,
            _ = tick.tick() => {}
        }
        let due = (started.elapsed().as_secs_f64() * packets_per_s) as u64;
        let sent_at_us = crate::payload::unix_micros();
        for stream in &mut streams {
            let behind = due.saturating_sub(stream.due_sent);
            let packets = behind.min(MAX_FRAME_PACKETS);
            stream.due_sent = due;
            counters.dropped.fetch_add(behind - packets, Ordering::Relaxed);
            let socket = &stream.socket;
            let to = stream.bridge;
            let mut failed = 0;
            stream
                .source
                .frame(packets as usize, sent_at_us, &mut |datagram| {
                    failed += batch.push(socket, to, datagram).failed;
                });
            let outcome = batch.flush(socket);
            failed += outcome.failed;
            counters
                .sent
                .fetch_add(packets - failed.min(packets), Ordering::Relaxed);
            counters.dropped.fetch_add(failed, Ordering::Relaxed);
        }
    }
}
