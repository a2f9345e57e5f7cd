//! Recording through the shard: who may start and stop it, the indicator on every page (late
//! joiners, other bridges), and the room's forwarded media, local and remote, in the file.

use super::cascade::{CascadeInput, LinkIndex};
use super::rig::FanoutRig;
use super::test_support::*;
use super::*;
use crate::fastpath::srtp::SrtpProfile;
use crate::recording::tests::{ffprobe, rtp, vp8_frame, wait_until_finished};
use crate::recording::{RecordingConfig, RecordingState, RecordingStore};

const LINK: LinkIndex = LinkIndex(4);

/// The recording indicator each client was sent, in order.
fn indicators(outputs: &[ShardOutput], key: u64) -> Vec<bool> {
    outputs
        .iter()
        .filter_map(|o| match o {
            ShardOutput::ToClient {
                key: k,
                message: ServerMessage::Recording { active },
            } if *k == ParticipantKey(key) => Some(*active),
            _ => None,
        })
        .collect()
}

fn errors(outputs: &[ShardOutput], key: u64) -> Vec<ErrorCode> {
    outputs
        .iter()
        .filter_map(|o| match o {
            ShardOutput::ToClient {
                key: k,
                message: ServerMessage::Error { code, .. },
            } if *k == ParticipantKey(key) => Some(*code),
            _ => None,
        })
        .collect()
}

/// Carries out the shard's `start_recording` output as the driver does, with `store`; returns
/// the outputs of the shard's answer.
fn start_writers(
    shard: &mut Shard,
    now: Instant,
    outputs: Vec<ShardOutput>,
    store: &Arc<RecordingStore>,
) -> Vec<ShardOutput> {
    let mut answered = Vec::new();
    for output in outputs {
        match output {
            ShardOutput::StartRecording { room, requester } => {
                let input = match store.start(&room, 0) {
                    Ok(handle) => RecordingInput::Started {
                        room,
                        handle,
                        requester,
                    },
                    Err(err) => RecordingInput::Refused {
                        room,
                        code: ErrorCode::NoCapacity,
                        message: err.to_string(),
                        requester,
                    },
                };
                shard.handle_input(now, ShardInput::Recording(input));
                answered.extend(drain(shard));
            }
            other => answered.push(other),
        }
    }
    answered
}

fn store(dir: &std::path::Path) -> Arc<RecordingStore> {
    Arc::new(RecordingStore::new(RecordingConfig {
        directory: dir.to_owned(),
        free_bytes_min: 0,
        ..Default::default()
    }))
}

#[test]
fn a_moderator_starts_and_stops_recording_and_every_page_sees_it_late_joiners_too() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path());
    let now = Instant::now();
    let mut shard = shard();
    connect(&mut shard, now, 1, "p1", true);
    connect(&mut shard, now, 2, "p2", false);
    shard.handle_input(
        now,
        ShardInput::Cascade(CascadeInput::PeerOpened {
            room: room(),
            link: LINK,
        }),
    );
    drain(&mut shard);

    let out = send(&mut shard, now, 2, ClientMessage::StartRecording);
    assert_eq!(errors(&out, 2), [ErrorCode::Forbidden]);
    assert!(
        !out.iter()
            .any(|o| matches!(o, ShardOutput::StartRecording { .. }))
    );

    let out = send(&mut shard, now, 1, ClientMessage::StartRecording);
    let out = start_writers(&mut shard, now, out, &store);
    assert_eq!(indicators(&out, 1), [true]);
    assert_eq!(indicators(&out, 2), [true]);
    assert!(out.iter().any(|o| matches!(
        o,
        ShardOutput::ToLink {
            link: LINK,
            message: LinkMessage::Recording { active: true, .. }
        }
    )));
    // A second start is refused while it records.
    let out = send(&mut shard, now, 1, ClientMessage::StartRecording);
    assert_eq!(errors(&out, 1), [ErrorCode::Conflict]);

    let out = connect(&mut shard, now, 3, "p3", false);
    assert_eq!(indicators(&out, 3), [true], "a late joiner sees the indicator");

    let out = send(&mut shard, now, 1, ClientMessage::StopRecording);
    for key in [1, 2, 3] {
        assert_eq!(indicators(&out, key), [false]);
    }
    wait_until_finished(&store);
    let list = store.list().unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].state, RecordingState::Complete);
    let out = send(&mut shard, now, 1, ClientMessage::StopRecording);
    assert_eq!(errors(&out, 1), [ErrorCode::Conflict]);
}

#[test]
fn a_room_recorded_by_another_bridge_shows_the_indicator_until_that_bridge_stops_or_leaves() {
    let now = Instant::now();
    let mut shard = shard();
    connect(&mut shard, now, 1, "p1", true);
    shard.handle_input(
        now,
        ShardInput::Cascade(CascadeInput::PeerOpened {
            room: room(),
            link: LINK,
        }),
    );
    drain(&mut shard);
    let recording = |active| {
        ShardInput::Cascade(CascadeInput::Message {
            link: LINK,
            message: LinkMessage::Recording { room: room(), active },
        })
    };
    shard.handle_input(now, recording(true));
    assert_eq!(indicators(&drain(&mut shard), 1), [true]);
    assert_eq!(indicators(&connect(&mut shard, now, 2, "p2", false), 2), [true]);
    // One recording per room: this bridge does not start a second.
    assert_eq!(
        errors(&send(&mut shard, now, 1, ClientMessage::StartRecording), 1),
        [ErrorCode::Conflict]
    );
    shard.handle_input(
        now,
        ShardInput::Cascade(CascadeInput::PeerClosed {
            room: room(),
            link: LINK,
        }),
    );
    let out = drain(&mut shard);
    assert_eq!(indicators(&out, 1), [false]);
    assert_eq!(indicators(&out, 2), [false]);
}

#[test]
fn a_recorded_room_writes_the_forwarded_media_of_a_local_publisher() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path());
    let mut rig = FanoutRig::new(2, SrtpProfile::AeadAes128Gcm);
    let now = Instant::now();
    let rig_room = RoomId::new("rig").unwrap();
    let shard = rig.shard_mut();
    shard.handle_input(
        now,
        ShardInput::Recording(RecordingInput::Start {
            room: rig_room.clone(),
            requester: RecordingRequester::default(),
        }),
    );
    let out = drain(shard);
    start_writers(shard, now, out, &store);
    // One second of camera at 30 fps, a keyframe first, through the shard's forwarding code.
    for i in 0..30u16 {
        for packet in vp8_frame(
            super::rig::PUBLISHER_SSRC,
            2 * i,
            3000 * u32::from(i),
            i == 0,
            i as u8,
        ) {
            rig.publish(&packet);
        }
    }
    let shard = rig.shard_mut();
    shard.handle_input(
        now,
        ShardInput::Recording(RecordingInput::Stop {
            room: rig_room,
            requester: RecordingRequester::default(),
        }),
    );
    drain(shard);
    wait_until_finished(&store);
    let list = store.list().unwrap();
    let probe = ffprobe(&dir.path().join(&list[0].file));
    let streams = probe["streams"].as_array().unwrap();
    assert_eq!(streams.len(), 1);
    assert_eq!(streams[0]["codec_name"], "vp8");
    assert_eq!(streams[0]["tags"]["title"], "p0 (camera)");
    assert_eq!(probe["packets"].as_array().unwrap().len(), 30);
}

#[test]
fn a_cascaded_room_records_the_remote_publishers_and_asks_their_bridge_for_every_stream() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path());
    let now = Instant::now();
    let mut shard = shard();
    // Ada (local, a moderator, receiving nothing) records; Bob is behind the link.
    connect(&mut shard, now, 1, "p1", true);
    announce_remote(
        &mut shard,
        now,
        LINK,
        "bob",
        &[
            (1, MediaSource::Microphone, "audio/opus", 48_000),
            (2, MediaSource::Camera, "video/VP8", 90_000),
        ],
    );
    let out = send(&mut shard, now, 1, ClientMessage::StartRecording);
    let out = start_writers(&mut shard, now, out, &store);
    let mut demanded: Vec<(u32, u32)> = out
        .iter()
        .filter_map(|o| match o {
            ShardOutput::ToLink {
                link: LINK,
                message: LinkMessage::Demand { id, subscribers, .. },
            } => Some((*id, *subscribers)),
            _ => None,
        })
        .collect();
    demanded.sort();
    assert_eq!(demanded, [(1, 1), (2, 1)], "the recorder counts as a subscriber");
    let media = |stream, packet: Vec<u8>| {
        ShardInput::Cascade(CascadeInput::Media {
            link: LINK,
            stream,
            packet: Bytes::from(packet),
        })
    };
    for i in 0..50u16 {
        let at = now + Duration::from_millis(u64::from(i) * 20);
        let packet = rtp(0xB0B1, i, 960 * u32::from(i), false, &[0xFC, i as u8]);
        shard.handle_input(at, media(1, packet));
        if i % 2 == 0 {
            let frame = i / 2;
            for packet in vp8_frame(
                0xB0B2,
                2 * frame,
                3600 * u32::from(frame),
                frame == 0,
                frame as u8,
            ) {
                shard.handle_input(at, media(2, packet));
            }
        }
    }
    drain(&mut shard);
    let out = send(
        &mut shard,
        now + Duration::from_secs(1),
        1,
        ClientMessage::StopRecording,
    );
    assert_eq!(indicators(&out, 1), [false]);
    wait_until_finished(&store);
    let list = store.list().unwrap();
    let probe = ffprobe(&dir.path().join(&list[0].file));
    let titles: Vec<&str> = probe["streams"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["tags"]["title"].as_str().unwrap())
        .collect();
    assert_eq!(titles, ["Bob (microphone)", "Bob (camera)"]);
    let packets = probe["packets"].as_array().unwrap();
    assert_eq!(packets.iter().filter(|p| p["stream_index"] == 0).count(), 50);
    assert_eq!(packets.iter().filter(|p| p["stream_index"] == 1).count(), 25);
    let duration: f64 = probe["format"]["duration"].as_str().unwrap().parse().unwrap();
    assert!((duration - 0.98).abs() <= 0.04, "duration {duration}");
}

#[test]
fn a_refused_start_tells_the_moderator_and_leaves_the_room_free_to_try_again() {
    let dir = tempfile::tempdir().unwrap();
    let full = Arc::new(RecordingStore::new(RecordingConfig {
        directory: dir.path().to_owned(),
        free_bytes_min: u64::MAX,
        ..Default::default()
    }));
    let now = Instant::now();
    let mut shard = shard();
    connect(&mut shard, now, 1, "p1", true);
    let out = send(&mut shard, now, 1, ClientMessage::StartRecording);
    let out = start_writers(&mut shard, now, out, &full);
    assert_eq!(errors(&out, 1), [ErrorCode::NoCapacity]);
    assert!(indicators(&out, 1).is_empty());
    let store = store(dir.path());
    let out = send(&mut shard, now, 1, ClientMessage::StartRecording);
    let out = start_writers(&mut shard, now, out, &store);
    assert_eq!(indicators(&out, 1), [true]);
    send(&mut shard, now, 1, ClientMessage::StopRecording);
    wait_until_finished(&store);
}

#[test]
fn the_recordings_time_limit_ends_it_on_the_shards_timer() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(RecordingStore::new(RecordingConfig {
        directory: dir.path().to_owned(),
        free_bytes_min: 0,
        duration_max_s: 60,
        ..Default::default()
    }));
    let now = Instant::now();
    let mut shard = shard();
    connect(&mut shard, now, 1, "p1", true);
    let out = send(&mut shard, now, 1, ClientMessage::StartRecording);
    start_writers(&mut shard, now, out, &store);
    let due = shard.poll_timeout().expect("the recording's timer");
    assert!(due <= now + Duration::from_secs(1), "checked often: {due:?}");
    shard.handle_timeout(now + Duration::from_secs(30));
    assert!(
        indicators(&drain(&mut shard), 1).is_empty(),
        "still recording at 30 s"
    );
    shard.handle_timeout(now + Duration::from_secs(60));
    assert_eq!(indicators(&drain(&mut shard), 1), [false]);
    wait_until_finished(&store);
    assert_eq!(
        store.list().unwrap()[0].end_reason,
        Some(crate::recording::EndReason::DurationLimit)
    );
}

#[test]
fn a_recording_of_an_end_to_end_encrypted_room_is_listed_as_ciphertext() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path());
    let now = Instant::now();
    let mut shard = shard();
    connect(&mut shard, now, 1, "p1", true);
    // Records with `during` sent while it runs; says whether the recording is listed as ciphertext.
    let mut seen = std::collections::HashSet::new();
    let mut record = |shard: &mut Shard, during: &[ClientMessage]| -> bool {
        let out = send(shard, now, 1, ClientMessage::StartRecording);
        start_writers(shard, now, out, &store);
        for message in during {
            send(shard, now, 1, message.clone());
        }
        send(shard, now, 1, ClientMessage::StopRecording);
        wait_until_finished(&store);
        let new: Vec<_> = store
            .list()
            .unwrap()
            .into_iter()
            .filter(|info| seen.insert(info.file.clone()))
            .collect();
        assert_eq!(new.len(), 1, "{new:?}");
        new[0].encrypted
    };
    assert!(!record(&mut shard, &[]), "in the clear");
    assert!(
        record(&mut shard, &[ClientMessage::SetE2ee { required: true }]),
        "encryption turned on while recording"
    );
    assert!(record(&mut shard, &[]), "started while encryption is on");
    assert!(
        record(&mut shard, &[ClientMessage::SetE2ee { required: false }]),
        "turned off while recording: its start is ciphertext"
    );
    assert!(!record(&mut shard, &[]), "in the clear again");
}
