//! One cascade hop: `cargo bench -p bridgemesh --bench cascade` (env PUBLISHERS, SECONDS).
//!
//! Real processes on 127.0.0.1 (release builds): one control node with the generated GeoIP
//! database, bridge eu-1 (Frankfurt) and bridge us-1 (Ashburn) linked by QUIC. PUBLISHERS
//! synthetic participants publish audio (50 packets/s) and 500 kbit/s video from Frankfurt
//! addresses, so they are on eu-1; one subscriber is on eu-1 too (it gets the media straight)
//! and one on us-1 (it gets it over the link). Over SECONDS of steady state it reports:
//! - the added latency of the hop: one-way latency (send stamp to arrival, same machine) at the
//!   far subscriber minus at the near one, p50 and p99;
//! - CPU per packet: us-1's process CPU time over the packets it received from the link (and
//!   forwarded to its one subscriber), and eu-1's over the packets it sent (to every local leg:
//!   the publishers subscribe to each other, and once over the link), with and without the CPU
//!   the bridges burn idle;
//! - the link overhead: bytes eu-1's QUIC connection sent to us-1 (everything on the wire) over
//!   the RTP bytes (header and payload) eu-1 received from its publishers, and over the bytes of
//!   the UDP datagrams they sent it (SRTP, RTCP, consent checks: what they put on the wire).

#[path = "deployment/mod.rs"]
mod deployment;

use bridgemesh_proto::RoomId;
use bridgemesh_proto::signaling::MediaSource;
use bridgemesh_sim::participant::{ParticipantOptions, SyntheticParticipant};
use deployment::{BridgeSpec, Deployment, env_usize, metric_value, quantile};
use std::time::Duration;

/// A bridge-wide metric.
fn metric(metrics: &str, name: &str) -> f64 {
    metric_value(metrics, name, &[]).unwrap_or_else(|| panic!("no {name} in the metrics"))
}

/// A per-link metric toward `peer`.
fn link_metric(metrics: &str, name: &str, peer: &str) -> f64 {
    metric_value(metrics, name, &[("peer", peer)])
        .unwrap_or_else(|| panic!("no {name} toward {peer} in the metrics"))
}

/// The bridge process's CPU seconds, from its own metrics.
fn cpu_seconds(metrics: &str) -> f64 {
    metric(metrics, "bridgemesh_process_cpu_seconds_total")
}

/// Latency samples (ms) `receiver` kept for every publisher's audio and video.
fn latencies_ms(receiver: &SyntheticParticipant, publishers: &[SyntheticParticipant]) -> Vec<f64> {
    let stats = receiver.stats();
    let mut samples: Vec<f64> = publishers
        .iter()
        .flat_map(|p| {
            [MediaSource::Microphone, MediaSource::Camera]
                .into_iter()
                .filter_map(|source| stats.from(p.participant_id(), source))
                .flat_map(|s| s.latency_us.iter().map(|us| f64::from(*us) / 1000.0))
                .collect::<Vec<_>>()
        })
        .collect();
    samples.sort_by(f64::total_cmp);
    samples
}

fn main() {
    let publishers = env_usize("PUBLISHERS", 4);
    let seconds = env_usize("SECONDS", 10) as u64;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let (_db_dir, db) = deployment::test_geoip_db();
        let mut deployment =
            Deployment::start(&format!("geoip_db = \"{}\"\ndefault_region = \"us\"\n", db.display())).await;
        deployment
            .add_bridge(BridgeSpec::new("eu-1", "eu").at(50.11, 8.68))
            .await;
        deployment
            .add_bridge(BridgeSpec::new("us-1", "us").at(39.04, -77.49))
            .await;
        // What the bridges burn with nobody on them (timers, heartbeats, load sampling), so the
        // figures per packet can be given without it too.
        let cpu_now = |id: &'static str| {
            let deployment = &deployment;
            async move { cpu_seconds(&deployment.bridge_metrics(id).await) }
        };
        let idle_window = Duration::from_secs(3);
        let (eu_idle_start, us_idle_start) = (cpu_now("eu-1").await, cpu_now("us-1").await);
        tokio::time::sleep(idle_window).await;
        let eu_idle_per_s = (cpu_now("eu-1").await - eu_idle_start) / idle_window.as_secs_f64();
        let us_idle_per_s = (cpu_now("us-1").await - us_idle_start) / idle_window.as_secs_f64();
        let room = RoomId::new("hop").unwrap();
        let join = |name: String, ip: String, publish: bool| {
            let url = deployment.control_url();
            let room = room.clone();
            async move {
                let options = ParticipantOptions {
                    bind_ip: Some(ip.parse().unwrap()),
                    publish_audio: publish,
                    publish_video: publish,
                    ..ParticipantOptions::new(name)
                };
                SyntheticParticipant::join(&url, &room, options).await.unwrap()
            }
        };
        let mut senders = Vec::new();
        for n in 0..publishers {
            senders.push(join(format!("publisher-{n}"), format!("127.1.0.{}", n + 1), true).await);
        }
        let near = join("near".into(), "127.1.0.200".into(), false).await;
        let far = join("far".into(), "127.2.0.1".into(), false).await;
        assert_eq!(near.bridge_id().as_str(), "eu-1");
        assert_eq!(far.bridge_id().as_str(), "us-1");
        for receiver in [&near, &far] {
            let ids: Vec<_> = senders.iter().map(|p| p.participant_id().clone()).collect();
            receiver
                .wait_until("media from every publisher", Duration::from_secs(30), |stats, _| {
                    ids.iter()
                        .all(|id| stats.intact_from(id, MediaSource::Camera) >= 50)
                })
                .await
                .unwrap();
        }
        let eu_before = deployment.bridge_metrics("eu-1").await;
        let us_before = deployment.bridge_metrics("us-1").await;
        tokio::time::sleep(Duration::from_secs(seconds)).await;
        let eu_after = deployment.bridge_metrics("eu-1").await;
        let us_after = deployment.bridge_metrics("us-1").await;
        let (eu_cpu, us_cpu) = (
            cpu_seconds(&eu_after) - cpu_seconds(&eu_before),
            cpu_seconds(&us_after) - cpu_seconds(&us_before),
        );

        let near_ms = latencies_ms(&near, &senders);
        let far_ms = latencies_ms(&far, &senders);
        let delta = |name: &str| metric(&eu_after, name) - metric(&eu_before, name);
        let us_delta = |name: &str| metric(&us_after, name) - metric(&us_before, name);
        let published_packets = delta("bridgemesh_bridge_rtp_received_total");
        let published_bytes = delta("bridgemesh_bridge_rtp_received_bytes_total");
        let published_udp_bytes = delta("bridgemesh_bridge_datagram_received_bytes_total");
        let relayed = us_delta("bridgemesh_bridge_cascade_rtp_received_total");
        let link_bytes = link_metric(&eu_after, "bridgemesh_cascade_link_udp_sent_bytes_total", "us-1")
            - link_metric(&eu_before, "bridgemesh_cascade_link_udp_sent_bytes_total", "us-1");
        let link_media_bytes =
            link_metric(&eu_after, "bridgemesh_cascade_link_media_sent_bytes_total", "us-1")
                - link_metric(&eu_before, "bridgemesh_cascade_link_media_sent_bytes_total", "us-1");

        println!("cascade hop: {publishers} publishers on eu-1, one subscriber on eu-1 and one on us-1, {seconds} s");
        for (name, samples) in [("near (eu-1)", &near_ms), ("far (us-1)", &far_ms)] {
            println!(
                "latency {name:<12} n={:<5} p50 {:>6.3} ms  p99 {:>6.3} ms",
                samples.len(),
                quantile(samples, 0.5),
                quantile(samples, 0.99)
            );
        }
        println!(
            "added by the hop      p50 {:>6.3} ms  p99 {:>6.3} ms",
            quantile(&far_ms, 0.5) - quantile(&near_ms, 0.5),
            quantile(&far_ms, 0.99) - quantile(&near_ms, 0.99)
        );
        let window = seconds as f64;
        println!(
            "us-1 CPU per packet from the link: {:.1} µs, {:.1} µs above idle ({relayed:.0} packets, {us_cpu:.2} CPU s, idle {us_idle_per_s:.3} CPU s/s)",
            us_cpu / relayed * 1e6,
            (us_cpu - us_idle_per_s * window) / relayed * 1e6
        );
        // Every publisher subscribes to the others too: each packet goes to every other local
        // leg and once to the link.
        let sent = delta("bridgemesh_bridge_rtp_forwarded_total") + delta("bridgemesh_bridge_cascade_rtp_sent_total");
        println!(
            "eu-1 CPU per packet sent (local legs and the link): {:.1} µs, {:.1} µs above idle ({published_packets:.0} packets in, {sent:.0} out, {eu_cpu:.2} CPU s, idle {eu_idle_per_s:.3} CPU s/s)",
            eu_cpu / sent * 1e6,
            (eu_cpu - eu_idle_per_s * window) / sent * 1e6
        );
        println!(
            "link overhead: {:.3}× the RTP published, {:.3}× the publishers' UDP bytes ({link_bytes:.0} bytes on the wire, {link_media_bytes:.0} in media datagrams; {published_bytes:.0} RTP bytes, {published_udp_bytes:.0} UDP bytes published)",
            link_bytes / published_bytes,
            link_bytes / published_udp_bytes
        );
        for participant in senders.into_iter().chain([near, far]) {
            let _ = participant.leave().await;
        }
    });
}
