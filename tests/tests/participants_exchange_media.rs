//! Synthetic participants on real WebRTC join through the real control API and exchange media
//! through the real bridge over UDP on 127.0.0.1.

use bridgemesh_proto::signaling::{ByeReason, MediaSource};
use bridgemesh_sim::{ParticipantOptions, SessionLoss, SyntheticParticipant};
use bridgemesh_tests::harness::{MEDIA_TIMEOUT, eventually, join, room, up, wait_for_camera};
use std::time::Duration;

/// Packets each stream must deliver intact: about one second of audio, a little video.
const ENOUGH_AUDIO: u64 = 40;
const ENOUGH_VIDEO: u64 = 40;

async fn wait_for_media_from(receiver: &SyntheticParticipant, publishers: &[&SyntheticParticipant]) {
    let ids: Vec<_> = publishers.iter().map(|p| p.participant_id().clone()).collect();
    receiver
        .wait_until(
            "audio and video from every other participant",
            MEDIA_TIMEOUT,
            |stats, _| {
                ids.iter().all(|id| {
                    stats.intact_from(id, MediaSource::Microphone) >= ENOUGH_AUDIO
                        && stats.intact_from(id, MediaSource::Camera) >= ENOUGH_VIDEO
                })
            },
        )
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_participants_receive_each_others_audio_and_video_intact() {
    let running = up().await;
    let room = room("three-way");
    let a = join(&running, &room, "Ada").await;
    let b = join(&running, &room, "Bob").await;
    let c = join(&running, &room, "Cy").await;
    wait_for_media_from(&a, &[&b, &c]).await;
    wait_for_media_from(&b, &[&a, &c]).await;
    wait_for_media_from(&c, &[&a, &b]).await;
    for participant in [&a, &b, &c] {
        let stats = participant.stats();
        assert_eq!(
            stats.total_corrupt(),
            0,
            "corrupt or misattributed packets:\n{}",
            stats.summary()
        );
        assert_eq!(
            participant.roster().len(),
            2,
            "each participant sees the two others"
        );
    }
    assert!(running.bridge.stats().shards.rtp_forwarded > 0);
    // The publishers' sender reports reach the legs, translated. Each publisher sends about one
    // a second per stream, and media may have flowed for less than that by now.
    eventually(
        "a publisher's sender report translated onto a leg",
        Duration::from_secs(10),
        || running.bridge.stats().shards.sender_reports_translated > 0,
    )
    .await;
    for participant in [a, b, c] {
        participant.leave().await.unwrap();
    }
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_joiner_gets_everyones_media_and_a_leaver_disappears() {
    let running = up().await;
    let room = room("late-joiner");
    let a = join(&running, &room, "Ada").await;
    let b = join(&running, &room, "Bob").await;
    wait_for_media_from(&a, &[&b]).await;
    let late = join(&running, &room, "Late").await;
    wait_for_media_from(&late, &[&a, &b]).await;
    wait_for_media_from(&a, &[&late]).await;

    let bob = b.participant_id().clone();
    b.leave().await.unwrap();
    for remaining in [&a, &late] {
        remaining
            .wait_until("bob leaves the roster", Duration::from_secs(10), |_, roster| {
                !roster.contains_key(&bob)
            })
            .await
            .unwrap();
    }
    // Media between those who stayed keeps flowing after the renegotiation the leave caused.
    let before = late.stats().intact_from(a.participant_id(), MediaSource::Camera);
    wait_for_camera(&late, &a, before + 30).await;
    let state = running.control.snapshot();
    let room_record = &state.rooms[&room];
    assert!(
        !room_record.participants.contains_key(&bob),
        "control forgot the leaver"
    );
    assert_eq!(room_record.participants.len(), 2);
    a.leave().await.unwrap();
    late.leave().await.unwrap();
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscribers_keyframe_request_reaches_the_publisher() {
    let running = up().await;
    let room = room("keyframes");
    let publisher = join(&running, &room, "Pub").await;
    let subscriber = join(&running, &room, "Sub").await;
    wait_for_media_from(&subscriber, &[&publisher]).await;
    // Wait out the keyframe-request throttle window of the join itself.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let plis_before = publisher.stats().plis_received;
    let keyframes_before = publisher.stats().keyframes_sent;
    subscriber
        .request_keyframe(publisher.participant_id())
        .await
        .unwrap();
    publisher
        .wait_until(
            "the PLI arrives at the publisher",
            Duration::from_secs(5),
            |stats, _| stats.plis_received > plis_before && stats.keyframes_sent > keyframes_before,
        )
        .await
        .unwrap();
    publisher.leave().await.unwrap();
    subscriber.leave().await.unwrap();
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_the_bridge_tells_every_participant_goodbye() {
    let running = up().await;
    let room = room("shutdown");
    let a = join(&running, &room, "Ada").await;
    let b = join(&running, &room, "Bob").await;
    wait_for_camera(&a, &b, 10).await;
    running.stop().await;
    for participant in [&a, &b] {
        participant
            .wait_until(
                "bye(bridge_shutdown) arrives",
                Duration::from_secs(5),
                // The participant tries to reconnect at once, and a new attempt clears `bye`:
                // its record of the lost session keeps the reason.
                |stats, _| {
                    stats.bye == Some(ByeReason::BridgeShutdown)
                        || stats
                            .reconnects
                            .iter()
                            .any(|r| r.cause == SessionLoss::Bye(ByeReason::BridgeShutdown))
                },
            )
            .await
            .unwrap();
    }
}

/// A peer that offers only AES_CM_128_HMAC_SHA1_80 gets it, next to one that gets the bridge's
/// preferred AEAD_AES_128_GCM, and the two receive each other's media intact: the fast path
/// protects each leg with its subscriber's own profile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cm_only_peer_and_a_gcm_peer_exchange_media_intact() {
    let running = up().await;
    let room = room("cm-and-gcm");
    let gcm = join(&running, &room, "Gus").await;
    let cm = SyntheticParticipant::join(
        &running.control_url,
        &room,
        ParticipantOptions {
            srtp_cm_only: true,
            ..ParticipantOptions::new("Cam")
        },
    )
    .await
    .expect("a CM-only peer joins");
    wait_for_media_from(&gcm, &[&cm]).await;
    wait_for_media_from(&cm, &[&gcm]).await;
    for participant in [&gcm, &cm] {
        let stats = participant.stats();
        assert_eq!(stats.total_corrupt(), 0, "{}", stats.summary());
    }
    let stats = running.bridge.stats().shards;
    assert_eq!((stats.srtp_sessions_gcm, stats.srtp_sessions_cm), (1, 1));
    for participant in [gcm, cm] {
        participant.leave().await.unwrap();
    }
    running.stop().await;
}
