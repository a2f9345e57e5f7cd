//! CPU per forwarded packet of the bridge's own forwarding code, in process: one publisher
//! packet kept in its ring, then rewritten, protected and handed out for each subscriber leg
//! ([`FanoutRig`] drives the shard's real code). Two entries: `plain`, an RTP packet handed to
//! `deliver` as from a cascade link; `srtp`, a publisher's sealed datagram taken in at the
//! shard's front door, opened in place by the inbound fast path, then forwarded (sealing it, the
//! publisher's work, is outside the timing). No sockets: what the fast path itself costs, the
//! floor under what `bridgemesh up` measures end to end.
//!
//! ```sh
//! cargo bench -p bridgemesh-bridge --bench fast_path
//! ```
//! Env: PACKETS (default 200000 forwarded per run), RUNS (7); prints the median of the runs.

use bridgemesh_bridge::fastpath::srtp::SrtpProfile;
use bridgemesh_bridge::shard::rig::{FanoutRig, PUBLISHER_SSRC};
use std::time::{Duration, Instant};

/// Datagrams sealed ahead of each timed stretch of the `srtp` entry.
const SEAL_BATCH: u64 = 4096;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A VP8-sized packet (1,100 bytes of payload) with one mapped one-byte header extension.
fn packet(seq: u16) -> Vec<u8> {
    let mut packet = vec![0x90, 100];
    packet.extend_from_slice(&seq.to_be_bytes());
    packet.extend_from_slice(&(u32::from(seq) * 3000).to_be_bytes());
    packet.extend_from_slice(&PUBLISHER_SSRC.to_be_bytes());
    packet.extend_from_slice(&[0xBE, 0xDE, 0, 1, 0x10, 0xAB, 0, 0]);
    packet.extend(std::iter::repeat_n(0x42, 1100));
    packet
}

fn main() {
    let forwarded_per_run = env_or("PACKETS", 200_000);
    let runs = env_or("RUNS", 7);
    let packets: Vec<Vec<u8>> = (0..4096u16).map(packet).collect();
    println!(
        "fan-out  profile                entry  ns/forwarded packet (median of {runs})   forwarded/s of one core"
    );
    for subscribers in [1u64, 4, 10] {
        for profile in [SrtpProfile::AeadAes128Gcm, SrtpProfile::Aes128CmHmacSha1_80] {
            for entry in ["plain", "srtp"] {
                let mut rig = FanoutRig::new(subscribers, profile);
                for packet in &packets {
                    rig.publish(packet);
                }
                // The sealed stream continues the sequence numbers the warm-up used.
                let mut next_seq = packets.len() as u64;
                let published = forwarded_per_run / subscribers;
                let mut samples: Vec<f64> = (0..runs)
                    .map(|_| {
                        let before = rig.stats().rtp_forwarded;
                        let elapsed = if entry == "plain" {
                            let started = Instant::now();
                            for i in 0..published {
                                rig.publish(&packets[i as usize % packets.len()]);
                            }
                            started.elapsed()
                        } else {
                            let mut elapsed = Duration::ZERO;
                            let mut left = published;
                            while left > 0 {
                                let batch: Vec<_> = (0..left.min(SEAL_BATCH))
                                    .map(|i| rig.seal(&packet((next_seq + i) as u16)))
                                    .collect();
                                next_seq += batch.len() as u64;
                                left -= batch.len() as u64;
                                let started = Instant::now();
                                for datagram in batch {
                                    rig.receive(datagram);
                                }
                                elapsed += started.elapsed();
                            }
                            elapsed
                        };
                        let forwarded = rig.stats().rtp_forwarded - before;
                        assert_eq!(forwarded, published * subscribers, "every packet forwarded");
                        elapsed.as_nanos() as f64 / forwarded as f64
                    })
                    .collect();
                samples.sort_by(f64::total_cmp);
                let median = samples[samples.len() / 2];
                println!(
                    "1→{subscribers:<5} {:<22} {entry:<6} {median:>8.0}                               {:>10.0}",
                    format!("{profile:?}"),
                    1e9 / median
                );
            }
        }
    }
}
