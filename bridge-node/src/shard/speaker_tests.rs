//! Audio levels a publisher sends in its packets (RFC 6464 extension) reach the room's dominant
//! speaker detector through the fast path: a publisher who talks is announced to everyone in the
//! room within a second, and a newcomer hears who it is right after its welcome.

use super::fastpath_tests::{PROFILE, PUBLISHER, SUBSCRIBERS, drain, material, room_with_legs};
use super::*;
use crate::fastpath::split_keying_material;
use crate::fastpath::srtp::SrtpSendStream;
use std::time::Duration;

const MIC_SSRC: u32 = 0xABCD_0002;
const AUDIO_LEVEL_ID: u8 = 1;

/// An Opus packet carrying `level` (-dBov) in a one-byte header extension, sealed as the
/// publisher's browser would.
fn audio_packet(send: &mut SrtpSendStream, seq: u16, level: u8) -> BytesMut {
    let mut packet = vec![0x90, 111];
    packet.extend_from_slice(&seq.to_be_bytes());
    packet.extend_from_slice(&(u32::from(seq) * 960).to_be_bytes());
    packet.extend_from_slice(&MIC_SSRC.to_be_bytes());
    // RFC 8285 one-byte form: id 1, one byte of data (length field 0), then padding.
    packet.extend_from_slice(&[0xBE, 0xDE, 0x00, 0x01, AUDIO_LEVEL_ID << 4, 0x80 | level, 0, 0]);
    packet.extend_from_slice(&[0x42; 40]);
    let keys = split_keying_material(PROFILE, &material(PUBLISHER), true).unwrap();
    let len = packet.len();
    packet.resize(len + PROFILE.rtp_tag_len(), 0);
    send.protect(&keys.local, &mut packet, len).unwrap();
    BytesMut::from(&packet[..])
}

fn speakers_told(outputs: &[ShardOutput]) -> Vec<(ParticipantKey, ParticipantId)> {
    outputs
        .iter()
        .filter_map(|o| match o {
            ShardOutput::ToClient {
                key,
                message: ServerMessage::DominantSpeaker { participant_id },
            } => Some((*key, participant_id.clone())),
            _ => None,
        })
        .collect()
}

#[test]
fn a_talking_publisher_is_announced_to_the_room_and_to_newcomers() {
    let (mut shard, start) = room_with_legs();
    let room_id = RoomId::new("r").unwrap();
    let publisher = shard
        .rooms
        .get_mut(&room_id)
        .unwrap()
        .participants
        .get_mut(&PUBLISHER)
        .unwrap();
    publisher.media_keys = Some(split_keying_material(PROFILE, &material(PUBLISHER), false).unwrap());
    assert!(
        publisher
            .inbound
            .bind(start, MIC_SSRC, MediaSource::Microphone, 48_000, (9, 9 * 960))
    );
    publisher.inbound.set_audio_level(Some(AUDIO_LEVEL_ID));

    let mut send = SrtpSendStream::new(MIC_SSRC);
    let mut told = Vec::new();
    let mut told_at = None;
    for i in 0..100u16 {
        let now = start + Duration::from_millis(20) * u32::from(i);
        // Silence for the first 400 ms, then speech at -20 dBov.
        let level = if i < 20 { 127 } else { 20 };
        shard.handle_input(
            now,
            ShardInput::Datagram {
                from: "127.0.0.1:50001".parse().unwrap(),
                key: PUBLISHER,
                data: audio_packet(&mut send, 10 + i, level),
            },
        );
        let heard = speakers_told(&drain(&mut shard));
        if !heard.is_empty() && told_at.is_none() {
            told_at = Some(now - start);
        }
        told.extend(heard);
    }
    let pub_id = ParticipantId::new("pub").unwrap();
    let mut keys: Vec<_> = told.iter().map(|(key, _)| *key).collect();
    keys.sort();
    assert_eq!(keys, [PUBLISHER, SUBSCRIBERS[0], SUBSCRIBERS[1]], "{told:?}");
    assert!(told.iter().all(|(_, id)| *id == pub_id));
    let after_speech = told_at.unwrap() - Duration::from_millis(400);
    assert!(after_speech < Duration::from_secs(1), "{after_speech:?}");

    let later = start + Duration::from_secs(3);
    shard.handle_input(
        later,
        ShardInput::Connect(ConnectRequest {
            key: ParticipantKey(9),
            room: room_id,
            participant_id: ParticipantId::new("late").unwrap(),
            display_name: "late".to_owned(),
            media: Default::default(),
            moderator: false,
        }),
    );
    assert_eq!(
        speakers_told(&drain(&mut shard)),
        [(ParticipantKey(9), pub_id)],
        "the newcomer hears who speaks, and nobody else is told again"
    );
}
