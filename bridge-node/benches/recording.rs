//! What recording a room costs the bridge, in process: the shard's real forwarding code
//! ([`FanoutRig`], one publisher's camera to one subscriber) with the room not recorded and
//! recorded, alternating in one run; and the writer thread's CPU and the bytes on disk per
//! second of a publisher's media.
//!
//! ```sh
//! cargo bench -p bridgemesh-bridge --bench recording
//! ```
//! Env: MEDIA_SECONDS (default 60: seconds of media per run, 30 fps of 2-packet VP8 frames of 2,200
//! bytes, about 530 kbit/s), RUNS (5); prints medians. Times are CPU times (the shard's
//! thread, and the whole process with the writer's thread), not wall time: the machine is shared.

use bridgemesh_bridge::fastpath::srtp::SrtpProfile;
use bridgemesh_bridge::recording::{RecordingConfig, RecordingStore};
use bridgemesh_bridge::shard::rig::{FanoutRig, PUBLISHER_SSRC};
use bridgemesh_bridge::shard::{RecordingInput, RecordingRequester, ShardInput, ShardOutput};
use bridgemesh_proto::RoomId;
use std::sync::Arc;
use std::time::{Duration, Instant};

const FPS: u64 = 30;
const PAYLOAD: usize = 1100;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// CPU time of the whole process, every thread (exited ones too: the writer's), in ns.
fn process_cpu() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ProcessCPUTime);
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

/// CPU time of this thread (the one driving the shard), in ns.
fn thread_cpu() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

/// Frame `i` of the camera as its two RTP packets (a keyframe every 2 s).
fn frame(i: u64) -> [Vec<u8>; 2] {
    let seq = (2 * i) as u16;
    let timestamp = (i * 3000) as u32;
    let mut packets = [Vec::new(), Vec::new()];
    for (k, packet) in packets.iter_mut().enumerate() {
        packet.extend_from_slice(&[0x80, if k == 1 { 0x80 | 100 } else { 100 }]);
        packet.extend_from_slice(&seq.wrapping_add(k as u16).to_be_bytes());
        packet.extend_from_slice(&timestamp.to_be_bytes());
        packet.extend_from_slice(&PUBLISHER_SSRC.to_be_bytes());
        if k == 0 {
            packet.push(0x10);
            if i.is_multiple_of(2 * FPS) {
                packet.extend_from_slice(&[0x10, 0x02, 0x00, 0x9D, 0x01, 0x2A, 0x80, 0x02, 0x68, 0x01]);
            } else {
                packet.extend_from_slice(&[0x31, 0x00, 0x00]);
            }
        } else {
            packet.push(0x00);
        }
        packet.resize(12 + PAYLOAD, i as u8);
    }
    packets
}

/// Forwards `seconds` of the camera; with `store`, the room is recorded (started before, stopped
/// and its file finished after). Returns (the shard thread's CPU forwarding, the process's CPU
/// including the writer's, bytes written).
fn run(frames: &[[Vec<u8>; 2]], store: Option<&Arc<RecordingStore>>) -> (Duration, Duration, u64) {
    let mut rig = FanoutRig::new(1, SrtpProfile::AeadAes128Gcm);
    let room = RoomId::new("rig").unwrap();
    if let Some(store) = store {
        let shard = rig.shard_mut();
        let now = Instant::now();
        shard.handle_input(
            now,
            ShardInput::Recording(RecordingInput::Start {
                room: room.clone(),
                requester: RecordingRequester::default(),
            }),
        );
        while let Some(output) = shard.poll_output() {
            if let ShardOutput::StartRecording { room, requester } = output {
                let handle = store.start(&room, 0).expect("recording starts");
                shard.handle_input(
                    now,
                    ShardInput::Recording(RecordingInput::Started {
                        room,
                        handle,
                        requester,
                    }),
                );
            }
        }
        while shard.poll_output().is_some() {}
    }
    let cpu = process_cpu();
    let start = thread_cpu();
    for packets in frames {
        for packet in packets {
            rig.publish(packet);
        }
    }
    let shard = thread_cpu() - start;
    let mut bytes = 0;
    if let Some(store) = store {
        let shard = rig.shard_mut();
        shard.handle_input(
            Instant::now(),
            ShardInput::Recording(RecordingInput::Stop {
                room,
                requester: RecordingRequester::default(),
            }),
        );
        while shard.poll_output().is_some() {}
        while store.active_count() > 0 {
            std::thread::sleep(Duration::from_millis(5));
        }
        let list = store.list().unwrap();
        bytes = list[0].bytes;
        assert_eq!(
            list[0].frames,
            frames.len() as u64,
            "every frame written: {:?}",
            list[0]
        );
        std::fs::remove_file(store.file(&list[0].file).unwrap()).unwrap();
        std::fs::remove_file(store.directory().join(list[0].file.replace(".webm", ".json"))).unwrap();
    }
    (shard, process_cpu() - cpu, bytes)
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn main() {
    let seconds = env_or("MEDIA_SECONDS", 60);
    let runs = env_or("RUNS", 5);
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(RecordingStore::new(RecordingConfig {
        directory: dir.path().to_owned(),
        free_bytes_min: 0,
        queue_frames_max: 1_000_000,
        ..Default::default()
    }));
    let frames: Vec<[Vec<u8>; 2]> = (0..seconds * FPS).map(frame).collect();
    let packets = (frames.len() * 2) as f64;
    let (mut plain, mut recorded, mut recorded_cpu, mut rates) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..runs {
        let (shard, _, _) = run(&frames, None);
        plain.push(shard.as_nanos() as f64 / packets);
        let (shard, cpu, bytes) = run(&frames, Some(&store));
        recorded.push(shard.as_nanos() as f64 / packets);
        recorded_cpu.push(cpu.as_nanos() as f64 / packets);
        rates.push(bytes as f64 / seconds as f64);
    }
    let (plain, recorded, cpu, rate) = (
        median(plain),
        median(recorded),
        median(recorded_cpu),
        median(rates),
    );
    println!(
        "recording bench: {seconds} s of a 30 fps camera (2 x {PAYLOAD} B packets per frame), {runs} runs, medians"
    );
    let per_second = packets / seconds as f64;
    println!("  shard thread, room not recorded: {plain:8.0} ns CPU per packet");
    println!(
        "  shard thread, room recorded:     {recorded:8.0} ns CPU per packet ({:.2}x)",
        recorded / plain
    );
    println!("  process, room recorded:          {cpu:8.0} ns CPU per packet (shard + writer thread)");
    println!(
        "  recording's CPU per second of this camera: {:.3} ms on the shard, {:.3} ms in all ({:.3} % of a core); disk {:.1} KB/s",
        (recorded - plain) * per_second / 1e6,
        (cpu - plain) * per_second / 1e6,
        (cpu - plain) * per_second / 1e7,
        rate / 1000.0
    );
}
