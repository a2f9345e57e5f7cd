//! Bridge killed → its participants receiving media again: `cargo bench -p bridgemesh --bench
//! bridge_failover` (env KILLS, PARTICIPANTS). Real processes on 127.0.0.1: one control node,
//! three bridges; each round puts PARTICIPANTS synthetic participants (real WebRTC, audio and
//! video) in one room on one bridge, SIGKILLs that bridge, and measures per participant:
//! - detection: the kill → control's answer to the client's reconnect call (the client noticed
//!   the loss, reported it, control declared the bridge down and placed it elsewhere);
//! - reconnection: that answer → the first media packet from the new bridge;
//! - total: the kill → media again.
//!
//! The killed bridge is started again before the next round.

#[path = "deployment/mod.rs"]
mod deployment;

use bridgemesh_proto::RoomId;
use bridgemesh_proto::signaling::MediaSource;
use bridgemesh_sim::participant::{ParticipantOptions, SyntheticParticipant};
use deployment::{BridgeSpec, Deployment, env_usize, quantile};
use std::time::{Duration, Instant};

fn report(name: &str, mut samples: Vec<f64>) {
    samples.sort_by(f64::total_cmp);
    println!(
        "{name:<14} n={:<3} p50 {:>6.0} ms  p95 {:>6.0} ms  max {:>6.0} ms",
        samples.len(),
        quantile(&samples, 0.5),
        quantile(&samples, 0.95),
        samples.last().copied().unwrap_or(f64::NAN)
    );
}

fn main() {
    let kills = env_usize("KILLS", 10);
    let participants = env_usize("PARTICIPANTS", 4);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let mut deployment = Deployment::start("").await;
        for id in ["b1", "b2", "b3"] {
            deployment.add_bridge(BridgeSpec::new(id, "eu")).await;
        }
        let (mut detection, mut reconnection, mut total) = (Vec::new(), Vec::new(), Vec::new());
        for round in 0..kills {
            let room = RoomId::new(format!("round-{round}")).unwrap();
            let mut group = Vec::new();
            let mut join_started = Vec::new();
            for i in 0..participants {
                // Each participant from its own loopback address: control rate-limits joins (and
                // reconnects) per source address, as it would on the internet.
                let options = ParticipantOptions {
                    bind_ip: Some(std::net::IpAddr::from([
                        127,
                        0,
                        10 + (round % 200) as u8,
                        1 + i as u8,
                    ])),
                    ..ParticipantOptions::new(format!("p{i}"))
                };
                join_started.push(Instant::now());
                group.push(
                    SyntheticParticipant::join(&deployment.control_url(), &room, options)
                        .await
                        .unwrap(),
                );
            }
            let victim = group[0].bridge_id();
            for p in &group {
                let from = group
                    .iter()
                    .find(|o| o.participant_id() != p.participant_id())
                    .unwrap();
                let from = from.participant_id().clone();
                p.wait_until("media before the kill", Duration::from_secs(20), |s, _| {
                    s.intact_from(&from, MediaSource::Camera) > 10
                })
                .await
                .unwrap();
            }
            let killed_at = Instant::now();
            deployment.bridge(victim.as_str()).kill();
            for (p, join_started) in group.iter().zip(&join_started) {
                p.wait_until("media again", Duration::from_secs(30), |s, _| {
                    s.reconnects.last().is_some_and(|r| r.first_media_ms.is_some())
                })
                .await
                .unwrap();
                let record = p.stats().reconnects.last().cloned().unwrap();
                // The record's times count from when the participant noticed the loss, itself
                // counted from the start of its join.
                let lost_at = *join_started + record.lost_after_join;
                let noticed_after_kill_ms = lost_at.saturating_duration_since(killed_at).as_secs_f64() * 1e3;
                let answer = noticed_after_kill_ms + record.answer_ms.unwrap() as f64;
                let media = noticed_after_kill_ms + record.first_media_ms.unwrap() as f64;
                detection.push(answer);
                reconnection.push(media - answer);
                total.push(media);
            }
            println!(
                "round {round}: killed {victim}, {} participants back",
                group.len()
            );
            for p in group {
                p.leave().await.unwrap();
            }
            deployment.restart_bridge(victim.as_str()).await;
        }
        println!("bridge killed → media restored ({kills} kills × {participants} participants):");
        report("detection", detection);
        report("reconnection", reconnection);
        report("total", total);
    });
}
