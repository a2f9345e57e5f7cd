//! A participant publishing audio and video and receiving ten others' (rooms of 11) holds less
//! than 256 KiB of heap in the shard once its streams' retransmission rings hold a second of
//! media, and gives it back when it leaves.
//!
//! Counts the heap bytes live in this test binary (one test, so no other test thread allocates
//! meanwhile): what the shard asks the allocator for, the figure the `participant_memory` bench
//! breaks down by step. The rooms are driven through the real shard code by `RoomRig` with DTLS
//! taken as done; 60 rounds of 20 ms on the shard's clock are past the rings' one-second history,
//! so they are at their steady size (a ring grows only over packets younger than a second).

use bridgemesh_bridge::fastpath::srtp::SrtpProfile;
use bridgemesh_bridge::shard::room_rig::RoomRig;
use stats_alloc::{INSTRUMENTED_SYSTEM, StatsAlloc};
use std::alloc::System;

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

const ROOMS: u64 = 2;
const PER_ROOM: u64 = 11;
const BUDGET_BYTES: i64 = 256 * 1024;
/// What may stay per participant after all left: shard-wide buffers that keep their capacity.
const LEFT_BYTES: i64 = 16 * 1024;

fn live() -> i64 {
    let s = GLOBAL.stats();
    s.bytes_allocated as i64 - s.bytes_deallocated as i64
}

#[test]
fn a_participant_in_a_room_of_eleven_holds_under_256_kib_and_releases_it_on_leaving() {
    let before = live();
    let mut rig = RoomRig::connect(ROOMS, PER_ROOM, SrtpProfile::AeadAes128Gcm);
    rig.subscribe();
    rig.bind();
    rig.publish(60, 1, 100, 1100);
    let held = live() - before;
    let participants = (ROOMS * PER_ROOM) as i64;
    assert_eq!(rig.participants() as i64, participants);
    assert_eq!(
        rig.stats().rtp_forwarded,
        (ROOMS * PER_ROOM * (PER_ROOM - 1) * 2 * 60),
        "every packet reached the ten others in its room"
    );
    assert!(
        held / participants < BUDGET_BYTES,
        "{} KiB per participant (rings {} KiB)",
        held / participants / 1024,
        rig.retransmit_bytes() as i64 / participants / 1024
    );
    rig.leave();
    assert_eq!(rig.rooms(), 0, "every emptied room is dropped");
    let left = live() - before;
    assert!(
        left / participants < LEFT_BYTES,
        "{} bytes per participant stayed after all left",
        left / participants
    );
}
