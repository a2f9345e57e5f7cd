//! A guest with a valid seat floods its bridge with `mute` messages. Before the signaling limits,
//! 2,000 mutes in about 10 ms were each re-broadcast to everyone: the other participants'
//! 256-message signaling queues overflowed and the bridge disconnected THEM. Now the flooder is
//! refused (`rate_limited`) and then disconnected; its victims stay connected and keep their media.

use bridgemesh_proto::api::ErrorCode;
use bridgemesh_proto::signaling::{ByeReason, ClientMessage, MediaSource, ServerMessage};
use bridgemesh_tests::harness::{RawSignal, join, join_raw, room, up, wait_for_camera};
use std::time::{Duration, Instant};

const MUTES: usize = 2_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_mutes_disconnect_the_flooder_and_no_one_else() {
    let running = up().await;
    let room = room("mute-flood");
    let a = join(&running, &room, "Ada").await;
    let b = join(&running, &room, "Bob").await;
    wait_for_camera(&a, &b, 20).await;
    wait_for_camera(&b, &a, 20).await;

    // A victim that reads nothing while the flood lasts: the slowest receiver there is.
    let slow_join = join_raw(&running, &room, "Slow").await;
    let mut slow = RawSignal::hello(&slow_join).await;
    slow.welcome_and_offer().await;

    let attacker_join = join_raw(&running, &room, "Flooder").await;
    let mut attacker = RawSignal::hello(&attacker_join).await;
    attacker.welcome_and_offer().await;

    let started = Instant::now();
    let mut sent = 0;
    for i in 0..MUTES {
        let mute = ClientMessage::Mute {
            microphone: i % 2 == 0,
            camera: false,
        };
        if !attacker.try_send(&mute).await {
            break;
        }
        sent += 1;
    }
    let flood_ms = started.elapsed().as_millis();

    // The flooder is refused with a clear error, then disconnected.
    let seen = attacker.until_closed(Duration::from_secs(10)).await;
    let refused = seen
        .iter()
        .filter(|m| {
            matches!(
                m,
                ServerMessage::Error {
                    code: ErrorCode::RateLimited,
                    ..
                }
            )
        })
        .count();
    assert!(refused > 0, "no rate_limited error among {} messages", seen.len());
    assert!(
        seen.iter().any(|m| matches!(
            m,
            ServerMessage::Bye {
                reason: ByeReason::ProtocolError
            }
        )),
        "the flooder was not told why it was cut off"
    );

    // The victims kept their sessions: no bye, no reconnection, and media keeps coming.
    for victim in [&a, &b] {
        let stats = victim.stats();
        assert_eq!(stats.bye, None, "a victim got bye: {}", stats.summary());
        assert_eq!(
            stats.reconnect_count,
            0,
            "a victim reconnected: {}",
            stats.summary()
        );
        assert!(stats.signaling_open, "a victim's signaling closed");
    }
    let a_from_b = a.stats().intact_from(b.participant_id(), MediaSource::Camera);
    let b_from_a = b.stats().intact_from(a.participant_id(), MediaSource::Camera);
    wait_for_camera(&a, &b, a_from_b + 30).await;
    wait_for_camera(&b, &a, b_from_a + 30).await;

    // The slow victim is still connected and, reading now, learns the flooder left.
    let flooder = attacker_join.participant_id.clone();
    let mut slow_messages = 0usize;
    slow.next_matching("the flooder's departure", Duration::from_secs(10), |m| {
        slow_messages += 1;
        match m {
            ServerMessage::Bye { reason } => panic!("the slow victim got bye {reason:?}"),
            ServerMessage::ParticipantLeft { participant_id } if participant_id == flooder => Some(()),
            _ => None,
        }
    })
    .await;
    eprintln!(
        "mute flood: {sent} of {MUTES} mutes sent in {flood_ms} ms; flooder got {refused} rate_limited errors of {} messages; \
         slow victim read {slow_messages} messages up to the flooder's departure; victims disconnected: 0",
        seen.len()
    );
    a.leave().await.unwrap();
    b.leave().await.unwrap();
    running.stop().await;
}
