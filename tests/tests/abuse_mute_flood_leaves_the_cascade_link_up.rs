//! A guest floods `mute` in a room that spans two bridges. Before, every mute crossed the cascade
//! link: 20,000 of them filled the link's 4,096-message queue and the bridge closed the link, for
//! every room on it. Now the flood is stopped at the flooder's socket, what crosses the link is
//! coalesced per (room, participant) with a budget per room, and the link, with the other room
//! on it, stays up. (Before, the link closed and restarted, and the loud room's other
//! participant, reading nothing during the flood, was disconnected.)

use bridgemesh::up::{Running, UpConfig};
use bridgemesh_proto::signaling::{ClientMessage, MediaSource, ServerMessage};
use bridgemesh_tests::harness::{RawSignal, init_tracing, join, join_raw, room, wait_for_camera};
use std::time::{Duration, Instant};

const MUTES: usize = 20_000;

/// Control bytes each bridge's link has sent so far; a link that restarted starts again near 0.
fn link_bytes_out(running: &Running) -> Vec<u64> {
    running
        .bridges
        .iter()
        .map(|b| {
            let links = b.bridge.cascade_links();
            assert_eq!(links.len(), 1, "one link between the two bridges");
            links[0].udp_bytes_out
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mute_flood_in_one_room_leaves_the_link_up_for_another() {
    init_tracing();
    // One participant per room and bridge: every room of two spans both bridges.
    let running = bridgemesh::up::start(UpConfig {
        bridges: 2,
        max_per_room: 1,
        ..UpConfig::ephemeral()
    })
    .await
    .expect("bridgemesh up starts with two bridges");
    let calm = room("calm");
    let a = join(&running, &calm, "Ada").await;
    let b = join(&running, &calm, "Bob").await;
    assert_ne!(a.bridge_id(), b.bridge_id(), "the calm room spans both bridges");
    wait_for_camera(&a, &b, 20).await;
    wait_for_camera(&b, &a, 20).await;

    let loud = room("loud");
    let attacker_join = join_raw(&running, &loud, "Flooder").await;
    let mut attacker = RawSignal::hello(&attacker_join).await;
    attacker.welcome_and_offer().await;
    let listener_join = join_raw(&running, &loud, "Listener").await;
    assert_ne!(
        attacker_join.bridge_id, listener_join.bridge_id,
        "the loud room spans both bridges"
    );
    let mut listener = RawSignal::hello(&listener_join).await;
    listener.welcome_and_offer().await;

    let established = |running: &Running| -> Vec<u64> {
        running
            .bridges
            .iter()
            .map(|b| b.bridge.cascade_links_established())
            .collect()
    };
    let established_before = established(&running);
    let before = link_bytes_out(&running);
    let started = Instant::now();
    let mut sent = 0;
    for i in 0..MUTES {
        let mute = ClientMessage::Mute {
            microphone: i % 2 == 0,
            camera: i % 3 == 0,
        };
        if !attacker.try_send(&mute).await {
            break;
        }
        sent += 1;
    }
    let flood_ms = started.elapsed().as_millis();
    attacker.until_closed(Duration::from_secs(10)).await;

    // The calm room's media keeps crossing the same link.
    let a_from_b = a.stats().intact_from(b.participant_id(), MediaSource::Camera);
    let b_from_a = b.stats().intact_from(a.participant_id(), MediaSource::Camera);
    wait_for_camera(&a, &b, a_from_b + 50).await;
    wait_for_camera(&b, &a, b_from_a + 50).await;
    assert_eq!(
        established(&running),
        established_before,
        "a cascade link restarted"
    );
    let after = link_bytes_out(&running);
    for (before, after) in before.iter().zip(&after) {
        assert!(
            after > before,
            "a link restarted: {before} bytes sent before the flood, {after} after"
        );
    }
    for victim in [&a, &b] {
        let stats = victim.stats();
        assert_eq!(
            stats.reconnect_count,
            0,
            "a victim reconnected: {}",
            stats.summary()
        );
        assert_eq!(stats.bye, None);
    }
    let overflowed: u64 = running
        .bridges
        .iter()
        .flat_map(|b| b.bridge.cascade_links())
        .map(|l| l.rooms_overflowed)
        .sum();
    eprintln!(
        "cascade mute flood: {sent} of {MUTES} mutes sent in {flood_ms} ms; link bytes out {before:?} -> {after:?}; \
         rooms overflowed: {overflowed}; links restarted: 0; calm-room participants reconnected: 0"
    );
    // The loud room's other participant, behind the link and reading nothing during the flood,
    // is still connected and learns the flooder left.
    let flooder = attacker_join.participant_id.clone();
    listener
        .next_matching("the flooder's departure", Duration::from_secs(10), |m| match m {
            ServerMessage::Bye { reason } => panic!("the listener got bye {reason:?}"),
            ServerMessage::ParticipantLeft { participant_id } if participant_id == flooder => Some(()),
            _ => None,
        })
        .await;
    a.leave().await.unwrap();
    b.leave().await.unwrap();
    running.stop().await;
}
