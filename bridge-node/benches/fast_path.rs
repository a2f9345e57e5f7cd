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
//!
//! A last table compares a publisher with and without simulcast, through the inbound fast path
//! (GCM): `single`, one 720p-sized stream sent whole to every subscriber; `simulcast`, three
//! layers (small, medium, large packets) of which each subscriber's layer selector takes one, the
//! subscribers' tiles asking in turn for 180, 360 and 720 pixels and nothing (`FanoutRig::simulcast`).
//! It prints the CPU per packet the publisher sent and per packet forwarded, and the bytes
//! forwarded per publisher frame.

use bridgemesh_bridge::fastpath::srtp::SrtpProfile;
use bridgemesh_bridge::shard::rig::{FanoutRig, LAYER_SSRCS, PUBLISHER_SSRC};
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
    simulcast_table(runs);
}

/// Packet `part` (of 3) of frame `frame` of `layer`: a VP8 descriptor, 300/600/900 bytes of
/// payload by layer, a keyframe every 300 frames carrying the layer's height.
fn layer_packet(layer: usize, frame: u32, part: u32) -> Vec<u8> {
    let seq = (frame * 3 + part) as u16;
    let mut packet = vec![0x80, if part == 2 { 0xE0 } else { 0x60 }];
    packet.extend_from_slice(&seq.to_be_bytes());
    packet.extend_from_slice(&(frame * 3000).to_be_bytes());
    packet.extend_from_slice(&LAYER_SSRCS[layer].to_be_bytes());
    packet.extend_from_slice(&[if part == 0 { 0x90 } else { 0x80 }, 0xC0]);
    packet.extend_from_slice(&(0x8000 | (frame % 0x8000) as u16).to_be_bytes());
    packet.push(frame as u8);
    if part == 0 && frame.is_multiple_of(300) {
        let [h0, h1] = [180u16, 360, 720][layer].to_le_bytes();
        packet.extend_from_slice(&[0x10, 0, 0, 0x9D, 0x01, 0x2A, 0, 1, h0, h1]);
    } else {
        packet.extend_from_slice(&[0x11, 0, 0]);
    }
    packet.extend(std::iter::repeat_n(0x42, 300 * (layer + 1)));
    packet
}

fn simulcast_table(runs: u64) {
    const FRAMES: u32 = 600;
    println!();
    println!(
        "fan-out  publisher   ns/sent packet  ns/forwarded packet  forwarded bytes/frame  (median of {runs}, GCM, srtp entry)"
    );
    for subscribers in [4u64, 12] {
        for simulcast in [false, true] {
            let mut rig = if simulcast {
                FanoutRig::simulcast(subscribers, SrtpProfile::AeadAes128Gcm)
            } else {
                FanoutRig::new(subscribers, SrtpProfile::AeadAes128Gcm)
            };
            let layers: &[usize] = if simulcast { &[0, 1, 2] } else { &[2] };
            let mut frame = 1u32;
            let mut samples: Vec<(f64, f64, f64)> = (0..runs + 1)
                .map(|_| {
                    let mut datagrams = Vec::new();
                    for _ in 0..FRAMES {
                        for &layer in layers {
                            for part in 0..3 {
                                let mut packet = layer_packet(layer, frame, part);
                                if !simulcast {
                                    packet[8..12].copy_from_slice(&PUBLISHER_SSRC.to_be_bytes());
                                }
                                datagrams.push(rig.seal(&packet));
                            }
                        }
                        frame += 1;
                    }
                    let sent = datagrams.len() as f64;
                    let (forwarded_before, bytes_before) = (rig.stats().rtp_forwarded, rig.bytes);
                    let started = Instant::now();
                    for datagram in datagrams {
                        rig.receive(datagram);
                    }
                    let elapsed = started.elapsed().as_nanos() as f64;
                    let forwarded = (rig.stats().rtp_forwarded - forwarded_before) as f64;
                    let bytes = (rig.bytes - bytes_before) as f64;
                    (elapsed / sent, elapsed / forwarded, bytes / f64::from(FRAMES))
                })
                .skip(1) // the first run warms rings and arenas up
                .collect();
            samples.sort_by(|a, b| a.1.total_cmp(&b.1));
            let (per_sent, per_forwarded, bytes) = samples[samples.len() / 2];
            println!(
                "1→{subscribers:<5} {:<11} {per_sent:>14.0}  {per_forwarded:>19.0}  {bytes:>21.0}",
                if simulcast { "simulcast" } else { "single" }
            );
        }
    }
}
