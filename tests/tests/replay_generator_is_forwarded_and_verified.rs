//! The cheap load generator of `bridgemesh load-replay` (`bridgemesh_sim::replay`) against the
//! real bridge: its participants join through the control API and signaling, complete ICE and
//! DTLS, and what the publisher seals with the exported keys is opened by the bridge, forwarded,
//! counted by the viewers and verified in samples. Sealed with keys the bridge does not hold, the
//! same stream is refused, so the generator cannot pass with packets the bridge would drop.

use bridgemesh_bridge::fastpath::srtp::{SrtpKeys, SrtpProfile};
use bridgemesh_sim::replay::{PacerCounters, Publishing, ReplayParticipant, pacer, rx::SAMPLE_EVERY};
use bridgemesh_tests::harness::{MEDIA_TIMEOUT, eventually, room, up};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

const JOIN_TIMEOUT: Duration = Duration::from_secs(20);
/// Packets per second the publisher sends: a test rate, not a benchmark.
const RATE: f64 = 400.0;

fn start_pacer(publishing: Publishing) -> (Arc<PacerCounters>, tokio::sync::watch::Sender<bool>) {
    let counters = Arc::new(PacerCounters::default());
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(pacer::run(vec![publishing], RATE, Arc::clone(&counters), stop_rx));
    (counters, stop)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replayed_srtp_is_forwarded_counted_and_verified_and_wrong_keys_are_refused() {
    let running = up().await;
    let room = room("replay-generator");
    let url = &running.control_url;
    let mut publisher = ReplayParticipant::join(url, &room, "publisher", true, JOIN_TIMEOUT)
        .await
        .unwrap();
    let viewers = [
        ReplayParticipant::join(url, &room, "viewer-1", false, JOIN_TIMEOUT)
            .await
            .unwrap(),
        ReplayParticipant::join(url, &room, "viewer-2", false, JOIN_TIMEOUT)
            .await
            .unwrap(),
    ];
    let publishing = publisher.take_publishing().expect("a publisher publishes");

    // Sealed with the keys exported from the publisher's own DTLS handshake.
    let (socket, bridge, ssrc, payload_type, tag) = (
        Arc::clone(&publishing.socket),
        publishing.bridge,
        publishing.ssrc,
        publishing.payload_type,
        publishing.tag,
    );
    let (counters, stop) = start_pacer(publishing);
    for viewer in &viewers {
        eventually("viewers count and verify the stream", MEDIA_TIMEOUT, || {
            let c = viewer.counters();
            c.packets >= 4 * SAMPLE_EVERY && c.verified >= 4
        })
        .await;
    }
    let _ = stop.send(true);
    let sent = counters.sent.load(Ordering::Relaxed);
    for viewer in &viewers {
        let c = viewer.counters();
        assert_eq!((c.auth_failed, c.corrupt), (0, 0), "{c:?}");
        assert_eq!(c.streams, 1, "one forwarded stream: {c:?}");
        assert!(c.packets <= sent, "{c:?} but {sent} sent");
        assert!(
            viewer.latency_us().iter().all(|&us| us < 10_000_000),
            "sample latencies are stamps of this run"
        );
        assert!(viewer.error().is_none(), "{:?}", viewer.error());
    }
    // The bridge's statistics are published periodically: wait for them to cover the count.
    let counted: u64 = viewers.iter().map(|v| v.counters().packets).sum();
    eventually(
        "the bridge counted what the viewers counted",
        MEDIA_TIMEOUT,
        || running.bridge.stats().shards.rtp_forwarded >= counted,
    )
    .await;
    assert_eq!(publisher.counters().packets, 0, "nobody else publishes");
    // Then the same stream, continued, sealed with keys the bridge does not hold: refused. (The
    // counters are copied out every 100 ms; what was in flight has long arrived after 300.)
    tokio::time::sleep(Duration::from_millis(300)).await;
    let counted_before: Vec<u64> = viewers.iter().map(|v| v.counters().packets).collect();
    let forwarded_before = running.bridge.stats().shards.rtp_forwarded;
    let wrong = SrtpKeys::new(SrtpProfile::AeadAes128Gcm, &[7; 16], &[9; 12]).unwrap();
    let forged = Publishing {
        socket,
        bridge,
        keys: wrong,
        ssrc,
        payload_type,
        tag,
        first_seq: 0,
    };
    let (counters, stop) = start_pacer(forged);
    eventually("200 forged packets sent", MEDIA_TIMEOUT, || {
        counters.sent.load(Ordering::Relaxed) >= 200
    })
    .await;
    // What the bridge forwards arrives within milliseconds on loopback; give it a margin.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let _ = stop.send(true);
    for (viewer, before) in viewers.iter().zip(counted_before) {
        assert_eq!(viewer.counters().packets, before, "a forged packet was forwarded");
    }
    assert_eq!(running.bridge.stats().shards.rtp_forwarded, forwarded_before);

    for participant in viewers.into_iter().chain([publisher]) {
        participant.leave().await;
    }
}

/// Packets sealed with keys the bridge does not hold, on a publisher's SSRC and from its address,
/// arriving before the bridge has opened one real packet of that stream (an off-path attacker who
/// spoofs the address, or a buggy client), must not keep the real stream out: they are refused,
/// and the real packets that follow, numbered far below them, are opened and forwarded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_packets_before_a_stream_is_opened_do_not_keep_it_out() {
    let running = up().await;
    let room = room("replay-forged-first");
    let url = &running.control_url;
    let mut publisher = ReplayParticipant::join(url, &room, "publisher", true, JOIN_TIMEOUT)
        .await
        .unwrap();
    let viewer = ReplayParticipant::join(url, &room, "viewer", false, JOIN_TIMEOUT)
        .await
        .unwrap();
    let mut real = publisher.take_publishing().expect("a publisher publishes");
    // The real stream starts 30,000 numbers below the forged one: a receiver that let the
    // forged packets set its replay window would refuse the real ones for 75 s at this rate.
    real.first_seq = 10_000;
    let forged = Publishing {
        socket: Arc::clone(&real.socket),
        bridge: real.bridge,
        keys: SrtpKeys::new(SrtpProfile::AeadAes128Gcm, &[7; 16], &[9; 12]).unwrap(),
        ssrc: real.ssrc,
        payload_type: real.payload_type,
        tag: real.tag,
        first_seq: 40_000,
    };
    let (forged_counters, stop) = start_pacer(forged);
    eventually("50 forged packets sent", MEDIA_TIMEOUT, || {
        forged_counters.sent.load(Ordering::Relaxed) >= 50
    })
    .await;
    let _ = stop.send(true);

    let (_counters, stop) = start_pacer(real);
    eventually(
        "the viewer counts and verifies the real stream",
        MEDIA_TIMEOUT,
        || {
            let c = viewer.counters();
            c.packets >= 4 * SAMPLE_EVERY && c.verified >= 4
        },
    )
    .await;
    let _ = stop.send(true);
    let c = viewer.counters();
    assert_eq!((c.auth_failed, c.corrupt), (0, 0), "{c:?}");
    for participant in [viewer, publisher] {
        participant.leave().await;
    }
}
