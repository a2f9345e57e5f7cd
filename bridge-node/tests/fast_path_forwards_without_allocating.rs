//! The steady-state forwarding path allocates nothing: a publisher's packet kept in its stream's
//! ring, then rewritten, protected and handed out for each of ten subscribers, and the datagrams
//! dropped as the driver does after sending them.
//!
//! Counts every allocation of this test binary (one test, so no other test thread allocates
//! meanwhile). What it covers is the bridge's own per-packet code ([`FanoutRig`] drives the real
//! shard): a packet as it comes from a cascade link into `deliver`, and a local publisher's SRTP
//! datagram entering the shard, opened in place by the inbound fast path and forwarded. The
//! driver's receive buffers are the driver's (made before the measured region here).

use bridgemesh_bridge::fastpath::srtp::SrtpProfile;
use bridgemesh_bridge::shard::rig::{FanoutRig, PUBLISHER_SSRC};
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};
use std::alloc::System;

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

const SUBSCRIBERS: u64 = 10;

/// A VP8-sized packet with a one-byte header extension (id 1, mapped) and sequence `seq`.
fn packet(seq: u16, payload_len: usize) -> Vec<u8> {
    let mut packet = vec![0x90, 100];
    packet.extend_from_slice(&seq.to_be_bytes());
    packet.extend_from_slice(&(u32::from(seq) * 3000).to_be_bytes());
    packet.extend_from_slice(&PUBLISHER_SSRC.to_be_bytes());
    packet.extend_from_slice(&[0xBE, 0xDE, 0, 1, 0x10, 0xAB, 0, 0]);
    packet.extend(std::iter::repeat_n(0x42, payload_len));
    packet
}

#[test]
fn forwarding_a_packet_to_ten_subscribers_allocates_nothing_in_steady_state() {
    for profile in [SrtpProfile::AeadAes128Gcm, SrtpProfile::Aes128CmHmacSha1_80] {
        let mut rig = FanoutRig::new(SUBSCRIBERS, profile);
        let packets: Vec<Vec<u8>> = (0..2000u16)
            .map(|seq| packet(seq, 900 + usize::from(seq % 300)))
            .collect();
        // Warm-up: every ring slot and the output arena reach their working size.
        for packet in &packets[..1000] {
            rig.publish(packet);
        }
        let region = Region::new(GLOBAL);
        for packet in &packets[1000..] {
            rig.publish(packet);
        }
        let change = region.change();
        assert_eq!(
            rig.stats().rtp_forwarded,
            2000 * SUBSCRIBERS,
            "{profile:?}: every packet reached every subscriber"
        );
        assert_eq!(
            (change.allocations, change.reallocations),
            (0, 0),
            "{profile:?}: allocations while forwarding 1000 packets to {SUBSCRIBERS} legs"
        );

        // The same packets (sequence numbers after the ones above), sealed by the publisher and
        // taken in through the shard's inbound fast path.
        let mut datagrams: Vec<_> = (2000..4000u16)
            .map(|seq| rig.seal(&packet(seq, 900 + usize::from(seq % 300))))
            .collect();
        let measured = datagrams.split_off(1000);
        for datagram in datagrams {
            rig.receive(datagram);
        }
        let region = Region::new(GLOBAL);
        for datagram in measured {
            rig.receive(datagram);
        }
        let change = region.change();
        let stats = rig.stats();
        assert_eq!(
            stats.inbound.rtp_opened, 2000,
            "{profile:?}: opened by the fast path"
        );
        assert_eq!(
            stats.rtp_forwarded,
            4000 * SUBSCRIBERS,
            "{profile:?}: every received packet reached every subscriber"
        );
        assert_eq!(
            (change.allocations, change.reallocations),
            (0, 0),
            "{profile:?}: allocations while receiving, opening and forwarding 1000 packets to {SUBSCRIBERS} legs"
        );
    }
}
