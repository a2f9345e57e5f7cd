//! A Chromium publisher's send-side bandwidth estimate holds up through the bridge: the bridge
//! answers its media with transport-wide congestion control feedback, receiver reports and NACKs
//! of its own (the inbound fast path), and libwebrtc's estimator, which lowers the rate of a
//! sender that hears nothing back, keeps its estimate above its start value for the whole call.

use bridgemesh_tests::chromium::Browser;
use bridgemesh_tests::harness::web::Participant;
use bridgemesh_tests::harness::{room, up};
use std::time::Duration;

const MEDIA_TIMEOUT: Duration = Duration::from_secs(30);
/// libwebrtc starts its estimate at 300 kbit/s and only goes above it on feedback that confirms
/// its probes and its sending rate.
const START_BITRATE: f64 = 300_000.0;
const SAMPLES: usize = 12;

/// The estimate on the selected pair and the video bytes sent so far, from the page's own
/// `RTCPeerConnection.getStats()`.
const SEND_STATS_JS: &str = r#"(async () => {
  const pc = window.bridgemesh && window.bridgemesh.pc;
  if (!pc) return { error: 'no peer connection' };
  const stats = await pc.getStats();
  let available = null, bytes = 0, packets = 0;
  stats.forEach((r) => {
    if (r.type === 'candidate-pair' && r.nominated && r.state === 'succeeded'
        && r.availableOutgoingBitrate !== undefined) available = r.availableOutgoingBitrate;
    if (r.type === 'outbound-rtp' && r.kind === 'video') { bytes += r.bytesSent || 0; packets += r.packetsSent || 0; }
  });
  return { available, bytes, packets };
})()"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chromium_publishers_bandwidth_estimate_does_not_collapse_through_the_bridge() {
    let running = up().await;
    let room = room("bitrate-holds");
    let browser = Browser::launch().await.expect("chromium starts");
    let ada = Participant::open(&browser, &running, &room, "Ada").await;
    let bob = Participant::open(&browser, &running, &room, "Bob").await;
    bob.wait_for_media_from(&ada, MEDIA_TIMEOUT).await;

    let mut samples = Vec::new();
    for _ in 0..SAMPLES {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let stats = ada
            .page
            .eval(SEND_STATS_JS)
            .await
            .expect("getStats on Ada's page");
        let available = stats["available"].as_f64();
        let bytes = stats["bytes"].as_f64().unwrap_or(0.0);
        samples.push((available, bytes));
    }
    let estimates: Vec<f64> = samples.iter().filter_map(|(a, _)| *a).collect();
    let sent_kbps: Vec<f64> = samples
        .windows(2)
        .map(|w| (w[1].1 - w[0].1) * 8.0 / 1000.0)
        .collect();
    eprintln!("Ada's estimate (bit/s) each second: {estimates:?}");
    eprintln!("Ada's video sent (kbit/s) each second: {sent_kbps:?}");
    let inbound = running.bridge.stats().shards.inbound;
    eprintln!("bridge inbound counters: {inbound:?}");

    assert_eq!(
        estimates.len(),
        SAMPLES,
        "Chromium reports an estimate on the selected pair"
    );
    let last = &estimates[SAMPLES / 2..];
    assert!(
        last.iter().all(|e| *e > START_BITRATE),
        "the estimate stays above libwebrtc's start value: {estimates:?}"
    );
    let peak = estimates.iter().copied().fold(0.0, f64::max);
    assert!(
        estimates[SAMPLES - 1] >= peak / 2.0,
        "the estimate does not fall to half its peak: {estimates:?}"
    );
    let late_kbps: f64 = sent_kbps[sent_kbps.len() - 4..].iter().sum::<f64>() / 4.0;
    assert!(
        late_kbps > 150.0,
        "Ada still sends video at a useful rate: {sent_kbps:?}"
    );
    assert!(
        inbound.transport_cc_feedback_sent > 50 && inbound.receiver_reports_sent > 5,
        "the bridge answered with its own feedback: {inbound:?}"
    );
    assert!(
        inbound.rtp_opened > 100,
        "the fast path opened the media: {inbound:?}"
    );

    ada.page.close().await.unwrap();
    bob.page.close().await.unwrap();
    drop(browser);
    running.stop().await;
}
