//! A `MediaSession` against a fake bridge: a second `webrtc` peer connection, ICE-lite like the
//! real bridge, that offers the bridge's shape — one recvonly audio and one recvonly video
//! m-line (the slots for the participant's tracks) plus two sendonly m-lines — and reflects what
//! it receives on the slots back out of the sendonly m-lines. No signaling, no control.

mod common;

use bridgemesh_proto::ParticipantId;
use bridgemesh_proto::signaling::MediaSource;
use bridgemesh_sim::{MediaSession, ParticipantOptions, ParticipantStats, RTCPeerConnectionState};
use common::{FakeBridge, options, section};
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use std::sync::Arc;
use std::time::{Duration, Instant};
use webrtc::media_stream::track_local::{TrackLocal, TrackLocalEvent};

async fn wait_for(
    session: &MediaSession,
    what: &str,
    timeout: Duration,
    cond: impl Fn(&ParticipantStats) -> bool,
) {
    let deadline = Instant::now() + timeout;
    loop {
        let stats = session.stats();
        if cond(&stats) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: not reached in {timeout:?}\n{}",
            stats.summary()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn media_session_answers_a_bridge_shaped_offer_and_verifies_reflected_media() {
    let alice = ParticipantId::new("alice").unwrap();
    let mallory = ParticipantId::new("mallory").unwrap();
    let mut bridge = FakeBridge::new().await;
    let session = MediaSession::new(&alice, &options(), &[], Instant::now())
        .await
        .unwrap();

    // First offer (made in `FakeBridge::new`, still pending): answer it.
    let offer = bridge.pc.local_description().await.unwrap().sdp;
    let answer = session
        .apply_offer(offer, &bridge.tracks(&alice, &alice))
        .await
        .unwrap();
    assert!(
        answer.contains("a=candidate"),
        "answer carries the host candidate:\n{answer}"
    );
    assert!(answer.contains("127.0.0.1"), "{answer}");
    bridge.answer(answer).await;

    // The local tracks went to the bridge's recvonly slots, whatever the m-line order.
    let stats = session.stats();
    assert_eq!(
        stats.local_mids.get(&MediaSource::Microphone),
        Some(&bridge.slot_mids[0]),
        "{stats:?}"
    );
    assert_eq!(
        stats.local_mids.get(&MediaSource::Camera),
        Some(&bridge.slot_mids[1]),
        "{stats:?}"
    );
    assert_eq!(stats.offers_answered, 1);

    wait_for(
        &session,
        "connected and reflected media verified",
        Duration::from_secs(15),
        |s| {
            s.connection_state == RTCPeerConnectionState::Connected
                && s.intact_from(&alice, MediaSource::Microphone) >= 50
                && s.intact_from(&alice, MediaSource::Camera) >= 60
        },
    )
    .await;
    let stats = session.stats();
    assert_eq!(stats.total_corrupt(), 0, "{}", stats.summary());
    let audio = stats.from(&alice, MediaSource::Microphone).unwrap();
    let video = stats.from(&alice, MediaSource::Camera).unwrap();
    assert!(video.keyframes >= 1, "{}", stats.summary());
    assert!(!audio.latency_us.is_empty() && audio.latency_quantile_us(0.5).unwrap() < 200_000);
    assert!(audio.first_packet_after_join.is_some());
    assert!(audio.lost <= 2 && video.lost <= 5, "{}", stats.summary());
    assert!(stats.sent_packets(MediaSource::Microphone) >= audio.intact);
    assert_eq!(
        stats.keyframes_sent, 1,
        "only the first frame is a keyframe without requests"
    );

    // A PLI from this side travels to the bridge, which relays it upstream: a keyframe follows.
    session.request_keyframe(&alice).await.unwrap();
    assert!(matches!(
        session.request_keyframe(&mallory).await,
        Err(bridgemesh_sim::ParticipantError::NotReceiving { .. })
    ));
    let mut pli_relay = tokio::spawn({
        let fwd_video = Arc::clone(&bridge.fwd_video);
        let camera = Arc::clone(&bridge.camera);
        async move {
            while let Some(event) = fwd_video.poll().await {
                if let TrackLocalEvent::OnRtcpPacket(_) = event {
                    let upstream = camera.lock().unwrap().clone().expect("camera track");
                    let media_ssrc = upstream.ssrcs().await[0];
                    upstream
                        .write_rtcp(vec![Box::new(PictureLossIndication {
                            sender_ssrc: 0,
                            media_ssrc,
                        })])
                        .await
                        .unwrap();
                }
            }
        }
    });
    wait_for(
        &session,
        "PLI answered with a keyframe",
        Duration::from_secs(5),
        |s| s.plis_sent == 1 && s.plis_received >= 1 && s.keyframes_sent >= 2,
    )
    .await;
    wait_for(
        &session,
        "the extra keyframe arrived",
        Duration::from_secs(5),
        |s| {
            s.from(&alice, MediaSource::Camera)
                .is_some_and(|v| v.keyframes >= 2)
        },
    )
    .await;

    // A re-offer that attributes the reflected audio to someone else: intact bytes, wrong tag.
    let offer = bridge.offer().await;
    let answer = session
        .apply_offer(offer, &bridge.tracks(&mallory, &alice))
        .await
        .unwrap();
    bridge.answer(answer).await;
    wait_for(&session, "misattributed audio", Duration::from_secs(5), |s| {
        s.from(&mallory, MediaSource::Microphone)
            .is_some_and(|m| m.misattributed >= 10)
    })
    .await;
    let stats = session.stats();
    let m = stats.from(&mallory, MediaSource::Microphone).unwrap();
    assert_eq!((m.intact, m.corrupt), (0, m.misattributed), "{}", stats.summary());
    assert_eq!(stats.offers_answered, 2);
    assert_eq!(
        stats.from(&alice, MediaSource::Camera).unwrap().corrupt,
        0,
        "{}",
        stats.summary()
    );

    session.close().await;
    assert!(session.apply_offer("v=0".into(), &[]).await.is_err());
    bridge.pc.close().await.unwrap();
    let _ = tokio::time::timeout(Duration::from_secs(2), &mut pli_relay).await;
    pli_relay.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unpublished_sources_answer_inactive() {
    let bob = ParticipantId::new("bob").unwrap();
    let mut bridge = FakeBridge::new().await;
    let options = ParticipantOptions {
        publish_audio: false,
        ..options()
    };
    let session = MediaSession::new(&bob, &options, &[], Instant::now())
        .await
        .unwrap();
    let offer = bridge.pc.local_description().await.unwrap().sdp;
    let answer = session
        .apply_offer(offer, &bridge.tracks(&bob, &bob))
        .await
        .unwrap();
    let audio_slot = section(&answer, &bridge.slot_mids[0]);
    assert!(
        audio_slot.contains("a=inactive") && !audio_slot.contains("a=ssrc"),
        "{audio_slot}"
    );
    let video_slot = section(&answer, &bridge.slot_mids[1]);
    assert!(
        video_slot.contains("a=sendonly") && video_slot.contains("a=ssrc"),
        "{video_slot}"
    );
    let stats = session.stats();
    assert_eq!(stats.local_mids.len(), 1);
    assert!(!stats.sent.contains_key(&MediaSource::Microphone));
    // A re-offer keeps the slot inactive.
    bridge.answer(answer).await;
    let offer = bridge.offer().await;
    let answer = session
        .apply_offer(offer, &bridge.tracks(&bob, &bob))
        .await
        .unwrap();
    assert!(
        section(&answer, &bridge.slot_mids[0]).contains("a=inactive"),
        "{answer}"
    );
    bridge.answer(answer).await;
    session.close().await;
    bridge.pc.close().await.unwrap();
}
