//! Sender reports on the legs of a remote (cascade) publisher: the shard states the remote
//! streams' RTP clocks against its own, with each leg's SSRC and counts.

use super::cascade::{CascadeInput, LinkIndex};
use super::remote_reports::{SENDER_REPORT_INTERVAL, remote_reports_due};
use super::*;
use crate::fastpath::leg::LegWriter;
use crate::fastpath::split_keying_material;
use bridgemesh_proto::cascade::LinkCodec;
use bridgemesh_proto::signaling::ParticipantInfo;
use rtc::shared::time::SystemInstant;

const LINK: LinkIndex = LinkIndex(3);
const SUBSCRIBER: ParticipantKey = ParticipantKey(1);
const AUDIO_PAYLOAD: usize = 80;
const VIDEO_PAYLOAD: usize = 600;

fn room() -> RoomId {
    RoomId::new("r").unwrap()
}

fn rtp(seq: u16, timestamp: u32, payload: usize) -> Bytes {
    let mut packet = vec![0x80, 0x60];
    packet.extend_from_slice(&seq.to_be_bytes());
    packet.extend_from_slice(&timestamp.to_be_bytes());
    packet.extend_from_slice(&0x5555_0001u32.to_be_bytes());
    packet.extend(std::iter::repeat_n(7u8, payload));
    Bytes::from(packet)
}

fn stream(id: u32, source: MediaSource, mime_type: &str, clock_rate: u32, channels: u16) -> ShardInput {
    ShardInput::Cascade(CascadeInput::Message {
        link: LINK,
        message: LinkMessage::Stream {
            id,
            room: room(),
            participant: ParticipantId::new("bob").unwrap(),
            source,
            codec: LinkCodec {
                mime_type: mime_type.into(),
                clock_rate,
                channels,
                sdp_fmtp_line: String::new(),
            },
            extensions: Vec::new(),
        },
    })
}

/// Ada is local; Bob is behind a link and publishes his microphone (stream 1, Opus) and camera
/// (stream 2, VP8). Ada's legs for both are negotiated and her DTLS is done (keys given).
fn ada_and_remote_bob(now: Instant) -> (Shard, ParticipantKey) {
    let mut shard = Shard::new(
        0,
        "127.0.0.1:40000".parse().unwrap(),
        Arc::new(RouteTable::default()),
        16,
    );
    shard.handle_input(
        now,
        ShardInput::Connect(ConnectRequest {
            key: SUBSCRIBER,
            room: room(),
            participant_id: ParticipantId::new("ada").unwrap(),
            display_name: "ada".into(),
            media: Default::default(),
            moderator: false,
        }),
    );
    shard.handle_input(
        now,
        ShardInput::Cascade(CascadeInput::PeerOpened {
            room: room(),
            link: LINK,
        }),
    );
    shard.handle_input(
        now,
        ShardInput::Cascade(CascadeInput::Message {
            link: LINK,
            message: LinkMessage::Participant {
                room: room(),
                participant: ParticipantInfo {
                    id: ParticipantId::new("bob").unwrap(),
                    display_name: "bob".into(),
                    microphone_muted: false,
                    camera_muted: false,
                    sources: vec![MediaSource::Microphone, MediaSource::Camera],
                    hand_raised_at_ms: None,
                },
            },
        }),
    );
    shard.handle_input(now, stream(1, MediaSource::Microphone, "audio/opus", 48_000, 2));
    shard.handle_input(now, stream(2, MediaSource::Camera, "video/VP8", 90_000, 0));
    while shard.poll_output().is_some() {}
    let state = shard.rooms.get_mut(&room()).unwrap();
    let (bob, remote) = state.cascade.remote.iter().next().unwrap();
    let bob = *bob;
    let desired: Vec<_> = remote
        .streams
        .iter()
        .map(|(source, s)| (bob, *source, remote.info.id.clone(), s.codec.clone()))
        .collect();
    let ada = state.participants.get_mut(&SUBSCRIBER).unwrap();
    sync_legs(ada, &desired).unwrap();
    for (payload_type, source) in [(111, MediaSource::Microphone), (96, MediaSource::Camera)] {
        let leg = ada.legs.get_mut(&(bob, source)).unwrap();
        leg.payload_type = Some(payload_type);
        leg.writer = Some(LegWriter::new(leg.ssrc, payload_type, Vec::new()));
    }
    ada.connected = true;
    ada.media_addr = Some("127.0.0.1:50001".parse().unwrap());
    let material: Vec<u8> = (0..SrtpProfile::AeadAes128Gcm.keying_material_len() as u8).collect();
    ada.media_keys = Some(split_keying_material(SrtpProfile::AeadAes128Gcm, &material, false).unwrap());
    (shard, bob)
}

fn media(shard: &mut Shard, at: Instant, stream: u32, packet: Bytes) {
    shard.handle_input(
        at,
        ShardInput::Cascade(CascadeInput::Media {
            link: LINK,
            stream,
            packet,
        }),
    );
    while shard.poll_output().is_some() {}
}

/// Seconds from `earlier` to `later`, either way round.
fn seconds_between(earlier: Instant, later: Instant) -> f64 {
    if later >= earlier {
        later.duration_since(earlier).as_secs_f64()
    } else {
        -earlier.duration_since(later).as_secs_f64()
    }
}

#[test]
fn legs_of_a_remote_publisher_get_sender_reports_from_the_bridge_clock() {
    let t0 = Instant::now();
    let (mut shard, bob) = ada_and_remote_bob(t0);
    assert_eq!(shard.next_remote_report(), None, "no report before any media");

    // Audio: 20 ms frames. Video: one frame of two packets, then the next frame 33 ms later.
    let audio_frame = t0 + Duration::from_millis(20);
    let video_frame = t0 + Duration::from_millis(33);
    media(&mut shard, t0, 1, rtp(10, 1_000, AUDIO_PAYLOAD));
    media(&mut shard, t0, 2, rtp(20, 5_000, VIDEO_PAYLOAD));
    media(&mut shard, audio_frame, 1, rtp(11, 1_960, AUDIO_PAYLOAD));
    media(&mut shard, video_frame, 2, rtp(21, 8_000, VIDEO_PAYLOAD));
    // The rest of that frame arrives later; it must not move the frame's arrival.
    media(
        &mut shard,
        video_frame + Duration::from_millis(6),
        2,
        rtp(22, 8_000, VIDEO_PAYLOAD),
    );
    // A late, reordered packet of an earlier frame neither.
    media(
        &mut shard,
        video_frame + Duration::from_millis(7),
        2,
        rtp(19, 2_000, VIDEO_PAYLOAD),
    );
    assert_eq!(shard.stats().rtp_forwarded, 6);

    // The first report is due at once, and the shard asks to be woken for it.
    assert_eq!(shard.next_remote_report(), Some(t0));
    assert!(shard.poll_timeout().is_some_and(|at| at <= t0));
    let t1 = t0 + Duration::from_millis(100);
    shard.handle_timeout(t1);
    while shard.poll_output().is_some() {}
    // Through each leg's RTP sender, as translated reports go (`rtc` protects and sends them).
    assert_eq!(shard.stats().sender_reports_generated, 2);
    assert_eq!(shard.next_remote_report(), Some(t1 + SENDER_REPORT_INTERVAL));
    assert!(
        shard
            .poll_timeout()
            .is_some_and(|at| at <= t1 + SENDER_REPORT_INTERVAL)
    );

    // A second later, one report per leg, under the leg's SSRC with the leg's counts.
    let t2 = t1 + SENDER_REPORT_INTERVAL;
    let wall_clock = SystemInstant::now(t0);
    let mut due = Vec::new();
    let state = shard.rooms.get_mut(&room()).unwrap();
    remote_reports_due(state, t2 - Duration::from_millis(1), wall_clock, &mut due);
    assert!(due.is_empty(), "nothing is due early");
    remote_reports_due(state, t2, wall_clock, &mut due);
    assert_eq!(due.len(), 2, "{due:?}");
    let ada = &state.participants[&SUBSCRIBER];
    let report_of = |source: MediaSource| {
        let found = due.iter().find(|d| d.source == source).unwrap();
        assert_eq!((found.subscriber, found.publisher), (SUBSCRIBER, bob));
        let leg = &ada.legs[&(bob, source)];
        assert_eq!(found.sender, leg.sender_id);
        assert_eq!(found.report.ssrc, leg.ssrc);
        found.report.clone()
    };
    let audio = report_of(MediaSource::Microphone);
    let video = report_of(MediaSource::Camera);
    assert_eq!(
        (audio.packet_count, audio.octet_count),
        (2, 2 * AUDIO_PAYLOAD as u32)
    );
    assert_eq!(
        (video.packet_count, video.octet_count),
        (4, 4 * VIDEO_PAYLOAD as u32)
    );
    assert_eq!(audio.ntp_time, wall_clock.ntp(t2));
    assert_eq!(video.ntp_time, audio.ntp_time);

    // Mapped back through its report, each stream's latest frame began when it arrived: audio
    // and video of the same participant sit on one time line, 13 ms apart.
    let report_time = SystemInstant::ntp2unix(audio.ntp_time).as_secs_f64();
    let arrival = |report: &SenderReport, timestamp: u32, clock_rate: f64| {
        report_time - f64::from(report.rtp_time.wrapping_sub(timestamp)) / clock_rate
    };
    let audio_at = arrival(&audio, 1_960, 48_000.0);
    let video_at = arrival(&video, 8_000, 90_000.0);
    let expected = |at: Instant| wall_clock.unix(t0).as_secs_f64() + seconds_between(t0, at);
    assert!(
        (audio_at - expected(audio_frame)).abs() < 1e-4,
        "{audio_at} vs {}",
        expected(audio_frame)
    );
    assert!(
        (video_at - expected(video_frame)).abs() < 1e-4,
        "{video_at} vs {}",
        expected(video_frame)
    );
    assert!((video_at - audio_at - 0.013).abs() < 1e-4);
}
