//! Simulcast on the steady-state forwarding path allocates nothing: a publisher's three VP8
//! layers (their SRTP datagrams opened in place by the inbound fast path), each subscriber's
//! layer selector choosing one of them by its tile's height, renumbering sequence, timestamp,
//! PictureID and TL0PICIDX in its leg's copy, switching on keyframes.
//!
//! Counts every allocation of this test binary (one test, so no other test thread allocates
//! meanwhile), as `fast_path_forwards_without_allocating` does for a publisher without simulcast.

use bridgemesh_bridge::fastpath::srtp::SrtpProfile;
use bridgemesh_bridge::shard::rig::{FanoutRig, LAYER_SSRCS};
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};
use std::alloc::System;

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

const SUBSCRIBERS: u64 = 12;
const HEIGHTS: [u16; 3] = [180, 360, 720];

/// Packet `part` of frame `frame` of `layer`: a VP8 descriptor with a 15-bit PictureID and
/// TL0PICIDX; every 30th frame a keyframe whose first packet carries the layer's height.
fn packet(layer: usize, frame: u32, part: u32) -> Vec<u8> {
    let seq = (frame * 3 + part) as u16;
    let mut packet = vec![0x80, if part == 2 { 0xE0 } else { 0x60 }];
    packet.extend_from_slice(&seq.to_be_bytes());
    packet.extend_from_slice(&(frame * 3000 + layer as u32 * 77).to_be_bytes());
    packet.extend_from_slice(&LAYER_SSRCS[layer].to_be_bytes());
    packet.push(if part == 0 { 0x90 } else { 0x80 });
    packet.push(0xC0);
    packet.extend_from_slice(&(0x8000 | (frame % 0x8000) as u16).to_be_bytes());
    packet.push(frame as u8);
    if part == 0 && frame.is_multiple_of(30) {
        let [h0, h1] = HEIGHTS[layer].to_le_bytes();
        packet.extend_from_slice(&[0x10, 0, 0, 0x9D, 0x01, 0x2A, 0, 1, h0, h1]);
    } else {
        packet.extend_from_slice(&[0x11, 0, 0]);
    }
    packet.extend(std::iter::repeat_n(0x42, 300 + 300 * layer));
    packet
}

#[test]
fn selecting_and_renumbering_simulcast_layers_allocates_nothing_in_steady_state() {
    let mut rig = FanoutRig::simulcast(SUBSCRIBERS, SrtpProfile::AeadAes128Gcm);
    let frames = |from: u32, to: u32| -> Vec<_> {
        (from..to)
            .flat_map(|frame| (0..3).flat_map(move |layer| (0..3).map(move |part| (layer, frame, part))))
            .collect()
    };
    let warm_up: Vec<_> = frames(1, 400)
        .into_iter()
        .map(|(layer, frame, part)| rig.seal(&packet(layer, frame, part)))
        .collect();
    let measured: Vec<_> = frames(400, 800)
        .into_iter()
        .map(|(layer, frame, part)| rig.seal(&packet(layer, frame, part)))
        .collect();
    for datagram in warm_up {
        rig.receive(datagram);
    }
    let before = rig.stats();
    let region = Region::new(GLOBAL);
    for datagram in measured {
        rig.receive(datagram);
    }
    let change = region.change();
    let stats = rig.stats();
    // Each of the 9 subscribers with a tile gets one layer's packets: 3 per frame.
    let forwarded = stats.rtp_forwarded - before.rtp_forwarded;
    assert_eq!(forwarded, 400 * 3 * 9, "one layer per visible subscriber");
    assert_eq!(stats.simulcast.legs_on_layer, [3, 3, 3]);
    assert_eq!(stats.simulcast.legs_paused, 3);
    assert_eq!(
        (change.allocations, change.reallocations),
        (0, 0),
        "allocations while receiving 3 layers and forwarding one each to {SUBSCRIBERS} legs"
    );
}
