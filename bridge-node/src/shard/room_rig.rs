//! A shard holding rooms of participants who all publish a microphone and a camera and receive
//! everyone else's, with DTLS taken as done (keys given, not negotiated): the real shard code
//! from `Connect` to `Disconnect`, in steps a caller can measure between ([`RoomRig::connect`],
//! [`RoomRig::subscribe`], [`RoomRig::bind`], [`RoomRig::publish`], [`RoomRig::leave`]). For the
//! per-participant memory benchmark and the test that a participant's memory is released when
//! it leaves. Not a way to run a bridge.

use super::*;
use crate::fastpath::leg::LegWriter;
use crate::fastpath::split_keying_material;
use crate::fastpath::srtp::{SrtpKeys, SrtpProfile, SrtpSendStream};

/// Payload types of the legs (as a browser's answer maps them).
const AUDIO_PT: u8 = 111;
const VIDEO_PT: u8 = 96;

/// One participant's sending side: its SRTP keys and one stream per source.
struct Sender {
    keys: SrtpKeys,
    audio: SrtpSendStream,
    video: SrtpSendStream,
    /// The next sequence number of the audio and the video stream.
    seq: [u16; 2],
}

pub struct RoomRig {
    shard: Shard,
    rooms: Vec<RoomId>,
    per_room: u64,
    senders: Vec<Sender>,
    profile: SrtpProfile,
    /// The shard's clock: [`RoomRig::publish`] advances it by a frame's 20 ms per round.
    now: Instant,
    /// Datagrams the shard handed out since the rig was built.
    pub datagrams: u64,
}

fn ssrc_of(key: u64, audio: bool) -> u32 {
    0x4000_0000 | ((key as u32) << 1) | u32::from(audio)
}

fn codec(audio: bool) -> RTCRtpCodec {
    if audio {
        RTCRtpCodec {
            mime_type: "audio/opus".to_owned(),
            clock_rate: 48_000,
            channels: 2,
            ..Default::default()
        }
    } else {
        RTCRtpCodec {
            mime_type: "video/VP8".to_owned(),
            clock_rate: 90_000,
            ..Default::default()
        }
    }
}

impl RoomRig {
    /// `rooms` rooms of `per_room` participants each join (`Connect`, the real admission: a
    /// peer connection with a receive slot per source).
    pub fn connect(rooms: u64, per_room: u64, profile: SrtpProfile) -> Self {
        let now = Instant::now();
        let total = rooms * per_room;
        let mut shard = Shard::new(
            0,
            SocketAddr::from(([127, 0, 0, 1], 40_000)),
            Arc::new(RouteTable::default()),
            total as usize,
        );
        let room_ids: Vec<RoomId> = (0..rooms)
            .map(|r| RoomId::new(format!("mem-{r}")).expect("valid room name"))
            .collect();
        for key in 0..total {
            let name = format!("p{key}");
            shard.handle_input(
                now,
                ShardInput::Connect(ConnectRequest {
                    key: ParticipantKey(key),
                    room: room_ids[(key / per_room) as usize].clone(),
                    participant_id: ParticipantId::new(&name).expect("valid participant name"),
                    display_name: name,
                    media: Default::default(),
                    moderator: false,
                }),
            );
        }
        while shard.poll_output().is_some() {}
        Self {
            shard,
            rooms: room_ids,
            per_room,
            senders: Vec::new(),
            profile,
            now,
            datagrams: 0,
        }
    }

    /// Every participant gets a leg for every other one's microphone and camera in its room,
    /// as renegotiation adds them (a send-only transceiver each), with its payload type and
    /// writer as after the answer.
    pub fn subscribe(&mut self) {
        for (r, room) in self.rooms.iter().enumerate() {
            let first = r as u64 * self.per_room;
            let state = self.shard.rooms.get_mut(room).expect("the room exists");
            for key in first..first + self.per_room {
                let desired: Vec<_> = (first..first + self.per_room)
                    .filter(|k| *k != key)
                    .flat_map(|k| {
                        let id = ParticipantId::new(format!("p{k}")).expect("valid participant name");
                        [
                            (
                                ParticipantKey(k),
                                MediaSource::Microphone,
                                id.clone(),
                                codec(true),
                            ),
                            (ParticipantKey(k), MediaSource::Camera, id, codec(false)),
                        ]
                    })
                    .collect();
                let subscriber = state
                    .participants
                    .get_mut(&ParticipantKey(key))
                    .expect("connected");
                sync_legs(subscriber, &desired).expect("legs are added");
                for ((_, source), leg) in subscriber.legs.iter_mut() {
                    let pt = if source.is_audio() { AUDIO_PT } else { VIDEO_PT };
                    leg.payload_type = Some(pt);
                    leg.writer = Some(LegWriter::new(leg.ssrc, pt, vec![(1, 1)]));
                }
            }
        }
    }

    /// Every participant's DTLS is done (keys set, media address known) and its microphone and
    /// camera are bound to the fast path, as after their first packets.
    pub fn bind(&mut self) {
        let now = self.now;
        let material: Vec<u8> = (0..self.profile.keying_material_len() as u8).collect();
        for (r, room) in self.rooms.iter().enumerate() {
            let first = r as u64 * self.per_room;
            let state = self.shard.rooms.get_mut(room).expect("the room exists");
            for key in first..first + self.per_room {
                let participant = state
                    .participants
                    .get_mut(&ParticipantKey(key))
                    .expect("connected");
                for slot in participant.slots.iter_mut() {
                    let audio = slot.source.is_audio();
                    let receiver_id = participant
                        .pc
                        .rtp_transceiver(slot.transceiver)
                        .and_then(|t| t.receiver())
                        .expect("a receiver");
                    let mut track = InboundTrack::new(
                        format!("p{key}-{}", slot.source.as_str()),
                        receiver_id,
                        ssrc_of(key, audio),
                        Some(codec(audio)),
                    );
                    track.vp8 = !audio;
                    slot.track = Some(track);
                    let clock_rate = if audio { 48_000 } else { 90_000 };
                    participant
                        .inbound
                        .bind(now, ssrc_of(key, audio), slot.source, clock_rate, (0, 0));
                }
                participant.connected = true;
                participant.media_addr = Some(Self::addr(key));
                participant.media_keys =
                    Some(split_keying_material(self.profile, &material, false).expect("key lengths"));
                self.senders.push(Sender {
                    keys: split_keying_material(self.profile, &material, true)
                        .expect("key lengths")
                        .local,
                    audio: SrtpSendStream::new(ssrc_of(key, true)),
                    video: SrtpSendStream::new(ssrc_of(key, false)),
                    seq: [1, 1],
                });
            }
        }
    }

    fn addr(key: u64) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 20_000 + key as u16))
    }

    /// `frames` rounds, 20 ms apart on the shard's clock, in which every participant sends one
    /// audio packet of `audio_bytes` and `video_packets` video packets of `video_bytes` payload,
    /// each sealed and taken in at the shard's front door, opened by the fast path and forwarded
    /// to the room.
    pub fn publish(&mut self, frames: u32, video_packets: u32, audio_bytes: usize, video_bytes: usize) {
        let total = self.senders.len() as u64;
        let mut packet = Vec::with_capacity(video_bytes.max(audio_bytes) + 64);
        for _ in 0..frames {
            self.now += Duration::from_millis(20);
            for key in 0..total {
                for n in 0..=video_packets {
                    let audio = n == 0;
                    let sender = &mut self.senders[key as usize];
                    let seq = &mut sender.seq[usize::from(!audio)];
                    *seq = seq.wrapping_add(1);
                    let seq = *seq;
                    packet.clear();
                    packet.extend_from_slice(&[0x90, if audio { AUDIO_PT } else { VIDEO_PT } | 0x80]);
                    packet.extend_from_slice(&seq.to_be_bytes());
                    packet.extend_from_slice(&(u32::from(seq) * 960).to_be_bytes());
                    packet.extend_from_slice(&ssrc_of(key, audio).to_be_bytes());
                    packet.extend_from_slice(&[0xBE, 0xDE, 0, 1, 0x10, 0xAB, 0, 0]);
                    // A VP8 payload descriptor (start of a partition) then the frame's bytes.
                    packet.extend_from_slice(&[0x10, 0x00]);
                    packet.resize(packet.len() + if audio { audio_bytes } else { video_bytes }, 0x42);
                    let mut datagram = BytesMut::zeroed(packet.len() + self.profile.rtp_tag_len());
                    datagram[..packet.len()].copy_from_slice(&packet);
                    let stream = if audio {
                        &mut sender.audio
                    } else {
                        &mut sender.video
                    };
                    stream
                        .protect(&sender.keys, &mut datagram, packet.len())
                        .expect("room for the tag");
                    self.shard.handle_input(
                        self.now,
                        ShardInput::Datagram {
                            from: Self::addr(key),
                            key: ParticipantKey(key),
                            data: datagram,
                        },
                    );
                    self.drain();
                }
            }
        }
    }

    /// Every participant's signaling socket closes: the shard removes them as it does a client
    /// that left.
    pub fn leave(&mut self) {
        for key in 0..self.rooms.len() as u64 * self.per_room {
            self.shard.handle_input(
                self.now,
                ShardInput::Disconnect {
                    key: ParticipantKey(key),
                },
            );
            self.drain();
        }
        self.senders.clear();
    }

    fn drain(&mut self) {
        while let Some(output) = self.shard.poll_output() {
            if let ShardOutput::Transmit { .. } = output {
                self.datagrams += 1;
            }
        }
    }

    /// Participants the shard holds.
    pub fn participants(&self) -> usize {
        self.shard.rooms.values().map(|r| r.participants.len()).sum()
    }

    /// Rooms the shard holds (an emptied room is removed).
    pub fn rooms(&self) -> usize {
        self.shard.rooms.len()
    }

    /// Bytes held by the retransmission rings of the shard's rooms.
    pub fn retransmit_bytes(&self) -> usize {
        self.shard
            .rooms
            .values()
            .flat_map(|r| r.histories.values())
            .map(RetransmitRing::capacity_bytes)
            .sum()
    }

    pub fn stats(&self) -> ShardStats {
        self.shard.stats()
    }
}
