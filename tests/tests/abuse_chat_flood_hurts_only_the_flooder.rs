//! A guest with a valid seat floods the room's chat with the longest messages the bridge takes.
//! Each accepted message reaches everyone and the history, so without a limit 2,000 of them
//! would overflow a slow reader's 256-message signaling queue and cost THAT reader its session.
//! The chat limit refuses the flooder (`rate_limited`), then disconnects it; the victims keep
//! their sessions and media, the history holds only what was accepted, and chat still works.

use bridgemesh_proto::api::ErrorCode;
use bridgemesh_proto::meeting::CHAT_TEXT_MAX_BYTES;
use bridgemesh_proto::signaling::{ByeReason, ClientMessage, MediaSource, ServerMessage};
use bridgemesh_tests::harness::{RawSignal, join, join_raw, room, up, wait_for_camera};
use std::time::{Duration, Instant};

const MESSAGES: usize = 2_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_chat_messages_disconnect_the_flooder_and_no_one_else() {
    let running = up().await;
    let room = room("chat-flood");
    let a = join(&running, &room, "Ada").await;
    let b = join(&running, &room, "Bob").await;
    wait_for_camera(&a, &b, 20).await;
    wait_for_camera(&b, &a, 20).await;

    // A victim that reads nothing while the flood lasts.
    let slow_join = join_raw(&running, &room, "Slow").await;
    let mut slow = RawSignal::hello(&slow_join).await;
    slow.welcome_and_offer().await;

    let attacker_join = join_raw(&running, &room, "Flooder").await;
    let mut attacker = RawSignal::hello(&attacker_join).await;
    attacker.welcome_and_offer().await;

    let text = "x".repeat(CHAT_TEXT_MAX_BYTES);
    let started = Instant::now();
    let mut sent = 0;
    for _ in 0..MESSAGES {
        let message = ClientMessage::Chat {
            text: text.clone(),
            to: None,
        };
        if !attacker.try_send(&message).await {
            break;
        }
        sent += 1;
    }
    let flood_ms = started.elapsed().as_millis();

    let seen = attacker.until_closed(Duration::from_secs(10)).await;
    let refused = seen
        .iter()
        .filter(|m| matches!(m, ServerMessage::Error { code: ErrorCode::RateLimited, message } if message.contains("chat")))
        .count();
    assert!(
        refused > 0,
        "no rate_limited chat error among {} messages",
        seen.len()
    );
    assert!(
        seen.iter().any(|m| matches!(
            m,
            ServerMessage::Bye {
                reason: ByeReason::ProtocolError
            }
        )),
        "the flooder was not told why it was cut off"
    );
    // The victims kept their sessions and media.
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
    wait_for_camera(&a, &b, a_from_b + 30).await;

    // The slow victim, reading now, got only the accepted messages, then the flooder's departure.
    let flooder = attacker_join.participant_id.clone();
    let mut flood_seen = 0usize;
    slow.next_matching("the flooder's departure", Duration::from_secs(10), |m| match m {
        ServerMessage::Bye { reason } => panic!("the slow victim got bye {reason:?}"),
        ServerMessage::Chat { message } if message.from == flooder => {
            flood_seen += 1;
            None
        }
        ServerMessage::ParticipantLeft { participant_id } if participant_id == flooder => Some(()),
        _ => None,
    })
    .await;
    // The burst, and what refilled at the chat rate while the flood lasted.
    let limit = bridgemesh_bridge::signaling_limits::SignalingLimits::default().chat;
    let most = limit.burst as usize + (flood_ms as usize / 1000 + 1) * limit.per_second as usize;
    assert!(
        (1..=most).contains(&flood_seen),
        "{flood_seen} flood messages reached the room; at most {most} may"
    );

    // Chat still works for the victims, and a late joiner's history holds only accepted messages.
    slow.send(&ClientMessage::Chat {
        text: "still here".into(),
        to: None,
    })
    .await;
    slow.next_matching("its own message", Duration::from_secs(10), |m| match m {
        ServerMessage::Chat { message } if message.text == "still here" => Some(()),
        _ => None,
    })
    .await;
    let late_join = join_raw(&running, &room, "Late").await;
    let mut late = RawSignal::hello(&late_join).await;
    let history = late
        .next_matching("the history", Duration::from_secs(10), |m| match m {
            ServerMessage::ChatHistory { messages } => Some(messages),
            _ => None,
        })
        .await;
    assert_eq!(
        history.len(),
        flood_seen + 1,
        "accepted flood messages and the victim's"
    );
    eprintln!(
        "chat flood: {sent} of {MESSAGES} messages of {CHAT_TEXT_MAX_BYTES} B sent in {flood_ms} ms; {flood_seen} accepted; \
         flooder got {refused} rate_limited errors; victims disconnected: 0"
    );
    a.leave().await.unwrap();
    b.leave().await.unwrap();
    running.stop().await;
}
