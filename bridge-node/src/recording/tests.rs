//! The whole recording path (recorder → writer thread → file) on synthetic publishers with known
//! payloads, read back by an independent reader: `ffprobe` from Debian's ffmpeg.

use super::*;
use crate::demux::ParticipantKey;
use bridgemesh_proto::signaling::MediaSource;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// An RTP packet with `payload`.
pub(crate) fn rtp(ssrc: u32, sequence: u16, timestamp: u32, marker: bool, payload: &[u8]) -> Vec<u8> {
    let mut packet = vec![0x80, if marker { 0x80 | 96 } else { 96 }];
    packet.extend_from_slice(&sequence.to_be_bytes());
    packet.extend_from_slice(&timestamp.to_be_bytes());
    packet.extend_from_slice(&ssrc.to_be_bytes());
    packet.extend_from_slice(payload);
    packet
}

/// A VP8 frame's packets: a keyframe of 320×240 or a delta frame, in two packets, its bytes
/// marked with `mark`.
pub(crate) fn vp8_frame(ssrc: u32, sequence: u16, timestamp: u32, keyframe: bool, mark: u8) -> [Vec<u8>; 2] {
    let mut frame = if keyframe {
        vec![0x10, 0x02, 0x00, 0x9D, 0x01, 0x2A, 0x40, 0x01, 0xF0, 0x00]
    } else {
        vec![0x31, 0x00, 0x00]
    };
    frame.extend(std::iter::repeat_n(mark, 200));
    let (first, second) = frame.split_at(frame.len() / 2);
    let mut p1 = vec![0x10];
    p1.extend_from_slice(first);
    let mut p2 = vec![0x00];
    p2.extend_from_slice(second);
    [
        rtp(ssrc, sequence, timestamp, false, &p1),
        rtp(ssrc, sequence.wrapping_add(1), timestamp, true, &p2),
    ]
}

fn origin(name: &str, mime: &str, clock_rate: u32) -> Option<TrackOrigin> {
    Some(TrackOrigin {
        display_name: name.into(),
        mime_type: mime.into(),
        clock_rate,
    })
}

/// Feeds `recorder` one publisher's camera (30 fps) and microphone (20 ms) from `from_ms` to
/// `to_ms` of the recording, with RTP clocks that start at arbitrary values and wrap.
pub(crate) fn publish(
    recorder: &mut RoomRecorder,
    start: Instant,
    key: ParticipantKey,
    name: &str,
    from_ms: u64,
    to_ms: u64,
) {
    let (video_ssrc, audio_ssrc) = (0x1000 + key.0 as u32, 0x2000 + key.0 as u32);
    let mut events: Vec<(u64, bool, u64)> = Vec::new();
    for i in 0.. {
        let at = from_ms + i * 100 / 3;
        if at >= to_ms {
            break;
        }
        events.push((at, true, i));
    }
    for i in 0.. {
        let at = from_ms + i * 20;
        if at >= to_ms {
            break;
        }
        events.push((at, false, i));
    }
    events.sort();
    for (at, video, i) in events {
        let now = start + Duration::from_millis(at);
        if video {
            let timestamp = (u32::MAX - 30_000).wrapping_add((i * 3000) as u32);
            let sequence = (65_500u16).wrapping_add((2 * i) as u16);
            for packet in vp8_frame(video_ssrc, sequence, timestamp, i % 30 == 0, i as u8) {
                recorder.on_packet(now, key, MediaSource::Camera, &packet, || {
                    origin(name, "video/VP8", 90_000)
                });
            }
        } else {
            let timestamp = 12_345u32.wrapping_add((i * 960) as u32);
            let packet = rtp(audio_ssrc, i as u16, timestamp, false, &[0xFC, i as u8, 0xAA]);
            recorder.on_packet(now, key, MediaSource::Microphone, &packet, || {
                origin(name, "audio/opus", 48_000)
            });
        }
    }
}

pub(crate) fn wait_until_finished(store: &RecordingStore) {
    for _ in 0..500 {
        if store.active_count() == 0 {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("the writer did not finish within 5 s");
}

/// `ffprobe`'s streams and packets of `file`.
pub(crate) fn ffprobe(file: &Path) -> serde_json::Value {
    let output = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_streams",
            "-show_packets",
            "-show_format",
            "-of",
            "json",
        ])
        .arg(file)
        .output()
        .expect("ffprobe runs (scripts/test installs Debian's ffmpeg)");
    assert!(
        output.status.success() && output.stderr.is_empty(),
        "ffprobe refused the file: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("ffprobe prints JSON")
}

fn config(directory: &Path) -> RecordingConfig {
    RecordingConfig {
        directory: directory.to_owned(),
        free_bytes_min: 0,
        ..Default::default()
    }
}

#[test]
fn a_recording_holds_every_track_with_its_duration_for_an_independent_reader() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(RecordingStore::new(config(dir.path())));
    let room = bridgemesh_proto::RoomId::new("standup").unwrap();
    let handle = store.start(&room, 1_796_688_062_000).unwrap();
    let start = Instant::now();
    let name = handle.shared.name.clone();
    let mut recorder = RoomRecorder::new(handle.shared, handle.sink, start, Duration::from_secs(60));
    // Alice from the start for 3 s; Bob joins 1 s in and stays to the end.
    publish(&mut recorder, start, ParticipantKey(1), "Alice", 0, 3000);
    publish(&mut recorder, start, ParticipantKey(2), "Bob", 1000, 3000);
    drop(recorder);
    wait_until_finished(&store);

    let probe = ffprobe(&dir.path().join(&name));
    let streams = probe["streams"].as_array().unwrap();
    assert_eq!(streams.len(), 4, "{probe:#}");
    let codecs: Vec<&str> = streams
        .iter()
        .map(|s| s["codec_name"].as_str().unwrap())
        .collect();
    // Tracks in the order their first frames came: each one's microphone frame at 0 ms
    // precedes its camera's.
    assert_eq!(codecs, ["opus", "vp8", "opus", "vp8"]);
    assert_eq!(streams[1]["width"], 320);
    assert_eq!(streams[1]["height"], 240);
    assert_eq!(streams[1]["tags"]["title"], "Alice (camera)");
    assert_eq!(streams[2]["tags"]["title"], "Bob (microphone)");
    let duration: f64 = probe["format"]["duration"].as_str().unwrap().parse().unwrap();
    assert!((duration - 3.0).abs() <= 0.04, "duration {duration}");
    let packets = probe["packets"].as_array().unwrap();
    let of = |index: u64| -> Vec<&serde_json::Value> {
        packets.iter().filter(|p| p["stream_index"] == index).collect()
    };
    // Alice's camera: 90 frames over 3 s, the first a keyframe, each with its known bytes.
    let alice_video = of(1);
    assert_eq!(alice_video.len(), 90);
    assert_eq!(
        alice_video[0]["flags"].as_str().unwrap().chars().next(),
        Some('K')
    );
    assert_eq!(alice_video[0]["size"], "210");
    assert_eq!(alice_video[1]["size"], "203");
    let last: f64 = alice_video[89]["pts_time"].as_str().unwrap().parse().unwrap();
    assert!((last - 2.966).abs() <= 0.002, "last video frame at {last}");
    // Alice's microphone: 150 frames of 20 ms.
    assert_eq!(of(0).len(), 150);
    // Bob's tracks start 1 s in.
    let bob_video = of(3);
    assert_eq!(bob_video.len(), 60);
    let first: f64 = bob_video[0]["pts_time"].as_str().unwrap().parse().unwrap();
    assert!((first - 1.0).abs() <= 0.001, "Bob's first frame at {first}");
    assert_eq!(of(2).len(), 100);

    let list = store.list().unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].file, name);
    assert_eq!(list[0].state, RecordingState::Complete);
    // Dropped without a reason given, as when the room closes.
    assert_eq!(list[0].end_reason, Some(EndReason::RoomClosed));
    assert_eq!(list[0].tracks.len(), 4);
    assert_eq!(list[0].frames, 400);
}

#[test]
fn a_recording_starts_at_a_keyframe_and_asks_for_one_after_a_loss() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(RecordingStore::new(config(dir.path())));
    let room = bridgemesh_proto::RoomId::new("loss").unwrap();
    let handle = store.start(&room, 0).unwrap();
    let start = Instant::now();
    let name = handle.shared.name.clone();
    let mut recorder = RoomRecorder::new(handle.shared, handle.sink, start, Duration::from_secs(60));
    let key = ParticipantKey(7);
    let send = |recorder: &mut RoomRecorder, packets: &[Vec<u8>]| -> Vec<RecorderAction> {
        packets
            .iter()
            .map(|p| {
                recorder.on_packet(start, key, MediaSource::Camera, p, || {
                    origin("Eve", "video/VP8", 90_000)
                })
            })
            .collect()
    };
    // Joined mid-stream: a delta frame first asks for a keyframe, and is not written.
    let actions = send(&mut recorder, &vp8_frame(1, 10, 0, false, 1));
    assert!(actions.contains(&RecorderAction::RequestKeyframe));
    send(&mut recorder, &vp8_frame(1, 12, 3000, true, 2));
    send(&mut recorder, &vp8_frame(1, 14, 6000, false, 3));
    // Seq 16 and 17 (a frame) are lost: the next delta frame is not written, a keyframe is asked.
    let actions = send(&mut recorder, &vp8_frame(1, 18, 12_000, false, 5));
    assert!(actions.contains(&RecorderAction::RequestKeyframe));
    send(&mut recorder, &vp8_frame(1, 20, 15_000, true, 6));
    drop(recorder);
    wait_until_finished(&store);
    let probe = ffprobe(&dir.path().join(&name));
    let sizes: Vec<(&str, &str)> = probe["packets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["size"].as_str().unwrap(), p["flags"].as_str().unwrap()))
        .collect();
    assert_eq!(sizes, [("210", "K_"), ("203", "__"), ("210", "K_")]);
}

#[test]
fn a_start_below_the_free_space_threshold_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(RecordingStore::new(RecordingConfig {
        free_bytes_min: u64::MAX,
        ..config(dir.path())
    }));
    let room = bridgemesh_proto::RoomId::new("full").unwrap();
    assert!(matches!(
        store.start(&room, 0),
        Err(StartError::LowDiskSpace { .. })
    ));
    assert!(store.list().unwrap().is_empty());
}

#[test]
fn the_size_limit_ends_the_recording_with_a_whole_file() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(RecordingStore::new(RecordingConfig {
        file_bytes_max: 120 * 1024,
        ..config(dir.path())
    }));
    let room = bridgemesh_proto::RoomId::new("big").unwrap();
    let handle = store.start(&room, 0).unwrap();
    let start = Instant::now();
    let shared = handle.shared.clone();
    let mut recorder = RoomRecorder::new(handle.shared, handle.sink, start, Duration::from_secs(60));
    publish(&mut recorder, start, ParticipantKey(1), "Alice", 0, 10_000);
    drop(recorder);
    wait_until_finished(&store);
    assert_eq!(shared.ended(), Some(EndReason::SizeLimit));
    let probe = ffprobe(&dir.path().join(&shared.name));
    assert_eq!(probe["streams"].as_array().unwrap().len(), 2);
    let size: u64 = probe["format"]["size"].as_str().unwrap().parse().unwrap();
    assert!(size <= 120 * 1024 + 8 * 1024, "{size}");
}

#[test]
fn configuration_is_validated() {
    assert_eq!(RecordingConfig::default().validate(), Ok(()));
    let zero = RecordingConfig {
        recordings_max: 0,
        ..Default::default()
    };
    assert_eq!(zero.validate(), Err(RecordingConfigError::Zero("recordings_max")));
}

/// Which test runs inside a mount namespace of its own, and where its small tmpfs is.
const TMPFS_ENV: &str = "BRIDGEMESH_TEST_RECORDING_TMPFS";

/// A real ENOSPC: the test runs itself again inside `unshare --mount` (as root, as CI runs) with a
/// 1 MiB tmpfs over a temporary directory, and records there until the file system is full.
#[test]
fn a_full_disk_stops_the_recording_with_a_whole_file_and_its_manifest() {
    if let Ok(dir) = std::env::var(TMPFS_ENV) {
        return fill_the_disk(Path::new(&dir));
    }
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let name = "recording::tests::a_full_disk_stops_the_recording_with_a_whole_file_and_its_manifest";
    let script = r#"mount -t tmpfs -o size=1m bridgemesh-test "$1" && exec "$2" --exact "$3" --nocapture"#;
    let output = Command::new("unshare")
        .args([
            "--mount",
            "--propagation",
            "private",
            "--",
            "sh",
            "-c",
            script,
            "sh",
        ])
        .arg(dir.path())
        .arg(&exe)
        .arg(name)
        .env(TMPFS_ENV, dir.path())
        .output()
        .expect("unshare runs (util-linux)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && stdout.contains("1 passed"),
        "the test inside its mount namespace: {stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // The tmpfs was the namespace's only: nothing was written here.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

fn fill_the_disk(dir: &Path) {
    let store = Arc::new(RecordingStore::new(RecordingConfig {
        queue_frames_max: 100_000,
        ..config(dir)
    }));
    let room = bridgemesh_proto::RoomId::new("full").unwrap();
    let handle = store.start(&room, 0).unwrap();
    let start = Instant::now();
    let shared = handle.shared.clone();
    let mut recorder = RoomRecorder::new(handle.shared, handle.sink, start, Duration::from_secs(600));
    // 2 KB video frames at 30 fps: 1 MiB in about 17 s of media.
    let key = ParticipantKey(1);
    for i in 0..30 * 60u32 {
        let timestamp = i * 3000;
        let sequence = (i * 2) as u16;
        let now = start + Duration::from_millis(u64::from(i) * 100 / 3);
        let mut first = vec![0x10];
        if i % 30 == 0 {
            first.extend_from_slice(&[0x10, 0x02, 0x00, 0x9D, 0x01, 0x2A, 0x40, 0x01, 0xF0, 0x00]);
        } else {
            first.extend_from_slice(&[0x31, 0x00, 0x00]);
        }
        first.extend(std::iter::repeat_n(i as u8, 1000));
        let mut second = vec![0x00];
        second.extend(std::iter::repeat_n(0xA5, 1000));
        for (offset, marker, payload) in [(0, false, &first), (1, true, &second)] {
            let packet = rtp(0xF00D, sequence.wrapping_add(offset), timestamp, marker, payload);
            if recorder.on_packet(now, key, MediaSource::Camera, &packet, || {
                origin("Ada", "video/VP8", 90_000)
            }) == RecorderAction::Ended
            {
                break;
            }
        }
    }
    drop(recorder);
    wait_until_finished(&store);
    assert_eq!(shared.ended(), Some(EndReason::DiskFull));
    let list = store.list().unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(
        list[0].state,
        RecordingState::Complete,
        "the manifest was finished in place"
    );
    assert_eq!(list[0].end_reason, Some(EndReason::DiskFull));
    let probe = ffprobe(&dir.join(&list[0].file));
    let packets = probe["packets"].as_array().unwrap().len() as u64;
    assert_eq!(
        packets, list[0].frames,
        "every frame the manifest counts is in the file"
    );
    assert!(
        (200..1800).contains(&packets),
        "{packets} frames before the disk was full"
    );
    let duration: f64 = probe["format"]["duration"].as_str().unwrap().parse().unwrap();
    assert!(
        (duration * 30.0 - (packets - 1) as f64).abs() <= 1.5,
        "duration {duration} for {packets} frames"
    );
}
