//! Memory per participant held by the bridge's shard, in process: rooms of participants who
//! all publish a microphone and a camera and receive every other one's (rooms of 11: 20
//! subscribed streams each, 10 of them video), driven through the real shard code by
//! [`RoomRig`] with DTLS taken as done. Counts the heap bytes live in the process (a counting
//! global allocator: bytes allocated minus bytes freed, what the program asked for, not what
//! malloc rounds it to) after each step, and divides each step's growth by the participants:
//! - `join`: `Connect`, the peer connection `rtc` builds (ICE agent, DTLS and SCTP endpoints,
//!   the two receive transceivers) and the participant's own state;
//! - `legs`: the send transceivers `rtc` adds for the subscribed streams and their leg writers;
//! - `bind`: SRTP keys and the inbound fast path's per-stream state;
//! - `publish`: after every participant has sent `FRAMES` rounds of one audio and one video
//!   packet (the retransmission rings full): the rings, receive statistics and what else fills;
//! - `leave`: what stays after every participant left (should be nothing per participant).
//!
//! The DTLS handshake's and ICE's state after a real handshake, the driver's sockets and tasks
//! and the signaling connection are not in this count: `bridgemesh load-replay` measures the
//! whole process's RSS growth with real clients (docs/benchmarks.md).
//!
//! ```sh
//! cargo bench -p bridgemesh-bridge --bench participant_memory
//! ```
//! Env: ROOMS (default 10), PER_ROOM (11), FRAMES (300), VIDEO_BYTES (1100).

use bridgemesh_bridge::fastpath::srtp::SrtpProfile;
use bridgemesh_bridge::shard::room_rig::RoomRig;
use stats_alloc::{INSTRUMENTED_SYSTEM, StatsAlloc};
use std::alloc::System;

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Heap bytes live now (a reallocation already counts its growth as allocated and its
/// shrinking as freed).
fn live() -> i64 {
    let s = GLOBAL.stats();
    s.bytes_allocated as i64 - s.bytes_deallocated as i64
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn main() {
    let rooms = env_or("ROOMS", 10);
    let per_room = env_or("PER_ROOM", 11);
    let frames = env_or("FRAMES", 300) as u32;
    let video_bytes = env_or("VIDEO_BYTES", 1100) as usize;
    let n = (rooms * per_room) as f64;
    let kib = |bytes: i64| bytes as f64 / n / 1024.0;

    let (live_0, rss_0) = (live(), rss_kib());
    let mut rig = RoomRig::connect(rooms, per_room, SrtpProfile::AeadAes128Gcm);
    let after_join = live();
    rig.subscribe();
    let after_legs = live();
    rig.bind();
    let after_bind = live();
    rig.publish(frames, 1, 100, video_bytes);
    let after_publish = live();
    let rss_publish = rss_kib();
    let rings = rig.retransmit_bytes() as i64;
    let forwarded = rig.stats().rtp_forwarded;
    assert_eq!(rig.participants() as f64, n, "every participant joined");
    rig.leave();
    let after_leave = live();
    assert_eq!(rig.participants(), 0, "every participant left");
    assert_eq!(rig.rooms(), 0, "every emptied room is dropped");

    println!(
        "{} participants in {rooms} rooms of {per_room}, each publishing audio + video and receiving \
         {} streams; {frames} rounds of one audio (100 B) and one video ({video_bytes} B) packet \
         each, {forwarded} packets forwarded",
        n,
        2 * (per_room - 1)
    );
    println!("step                          KiB per participant (heap bytes live, counted)");
    println!("join (rtc peer connection)    {:8.1}", kib(after_join - live_0));
    println!(
        "legs (send transceivers)      {:8.1}",
        kib(after_legs - after_join)
    );
    println!(
        "bind (keys, inbound state)    {:8.1}",
        kib(after_bind - after_legs)
    );
    println!(
        "publish                       {:8.1}   of which retransmission rings {:.1}",
        kib(after_publish - after_bind),
        kib(rings)
    );
    println!(
        "total at steady state         {:8.1}",
        kib(after_publish - live_0)
    );
    println!("left after everyone left      {:8.1}", kib(after_leave - live_0));
    println!(
        "RSS growth to steady state    {:8.1}   (the process's VmRSS, {} -> {} KiB)",
        (rss_publish as f64 - rss_0 as f64) / n,
        rss_0,
        rss_publish
    );
}
