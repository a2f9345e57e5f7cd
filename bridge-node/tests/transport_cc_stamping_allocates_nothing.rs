//! Stamping each subscriber's transport-wide sequence number into the packets sent to it (for
//! the bridge's bandwidth estimator) allocates nothing on the forwarding path: the number is
//! written in place where the publisher's was, and the send history is a ring made on the
//! first packet.
//!
//! Counts every allocation of this test binary (one test, so no other test thread allocates
//! meanwhile), as `fast_path_forwards_without_allocating` does for legs that do not stamp.

use bridgemesh_bridge::fastpath::srtp::SrtpProfile;
use bridgemesh_bridge::shard::rig::{FanoutRig, PUBLISHER_SSRC};
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};
use std::alloc::System;

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

const SUBSCRIBERS: u64 = 10;

/// A VP8-sized packet with a mapped extension (id 1) and the publisher's transport-cc element
/// (id 3, two bytes), as Chromium sends them.
fn packet(seq: u16, payload_len: usize) -> Vec<u8> {
    let mut packet = vec![0x90, 100];
    packet.extend_from_slice(&seq.to_be_bytes());
    packet.extend_from_slice(&(u32::from(seq) * 3000).to_be_bytes());
    packet.extend_from_slice(&PUBLISHER_SSRC.to_be_bytes());
    packet.extend_from_slice(&[0xBE, 0xDE, 0, 2, 0x10, 0xAB, 0x31]);
    packet.extend_from_slice(&seq.to_be_bytes());
    packet.extend_from_slice(&[0, 0, 0]);
    packet.extend(std::iter::repeat_n(0x42, payload_len));
    packet
}

#[test]
fn stamping_transport_wide_sequence_numbers_allocates_nothing_in_steady_state() {
    let mut rig = FanoutRig::new(SUBSCRIBERS, SrtpProfile::AeadAes128Gcm).with_transport_cc();
    // Packet 0 went through `rtc` when the stream was bound.
    let mut datagrams: Vec<_> = (1..=4000u16)
        .map(|seq| rig.seal(&packet(seq, 900 + usize::from(seq % 300))))
        .collect();
    let measured = datagrams.split_off(2000);
    for datagram in datagrams {
        rig.receive(datagram);
    }
    let region = Region::new(GLOBAL);
    for datagram in measured {
        rig.receive(datagram);
    }
    let change = region.change();
    assert_eq!(rig.stats().rtp_forwarded, 4000 * SUBSCRIBERS);
    for key in 1..=SUBSCRIBERS {
        assert_eq!(rig.transport_cc_sent(key), 4000, "every packet to {key} stamped");
    }
    assert_eq!(
        (change.allocations, change.reallocations),
        (0, 0),
        "allocations while stamping and forwarding 2000 packets to {SUBSCRIBERS} legs"
    );
}
