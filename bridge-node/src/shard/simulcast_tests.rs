//! Simulcast through the shard: a synthetic publisher sends three VP8 layers (own SSRCs, own
//! numbering, as a browser does) as SRTP datagrams into the inbound fast path; two subscribers
//! with different receiver constraints each get one layer, renumbered into one stream.

use super::fastpath_tests::{PROFILE, PUBLISHER, SUBSCRIBERS, drain, material, room_with_legs};
use super::*;
use crate::fastpath::split_keying_material;
use crate::fastpath::srtp::{SrtpKeys, SrtpRecvStream, SrtpSendStream};
use crate::simulcast::vp8;
use bridgemesh_proto::signaling::{ReceiverConstraints, SourceConstraint};

const LAYER_SSRCS: [u32; 3] = [0x5100_0000, 0x5100_0001, 0x5100_0002];
const HEIGHTS: [u16; 3] = [180, 360, 720];
const SMALL: ParticipantKey = SUBSCRIBERS[0];
const LARGE: ParticipantKey = SUBSCRIBERS[1];
const LINK: LinkIndex = LinkIndex(3);
const OTHER_LINK: LinkIndex = LinkIndex(4);

fn room_id() -> RoomId {
    RoomId::new("r").unwrap()
}

/// One layer of the synthetic publisher.
struct Layer {
    ssrc: u32,
    seq: u16,
    rtp_time: u32,
    picture_id: u16,
    tl0: u8,
    send: SrtpSendStream,
}

struct Simulcast {
    shard: Shard,
    now: Instant,
    layers: Vec<Layer>,
    keys: SrtpKeys,
    /// Each subscriber's SRTP receive state, as its stack keeps it.
    streams: HashMap<ParticipantKey, SrtpRecvStream>,
    /// What each subscriber received, decrypted: (layer written in the payload, RTP packet).
    got: HashMap<ParticipantKey, Vec<(u8, Vec<u8>)>>,
    /// What crossed each cascade link, as [`Simulcast::got`] (after [`Simulcast::cross_a_link`]).
    crossed: HashMap<LinkIndex, Vec<(u8, Vec<u8>)>>,
}

impl Simulcast {
    /// The room of `room_with_legs` with the publisher's camera a simulcast VP8 track whose three
    /// layers are bound to the fast path, as after `rtc` opened each layer's first packet.
    fn new() -> Self {
        let (mut shard, now) = room_with_legs();
        let room = shard.rooms.get_mut(&room_id()).unwrap();
        let publisher = room.participants.get_mut(&PUBLISHER).unwrap();
        let slot_index = publisher
            .slots
            .iter()
            .position(|s| s.source == MediaSource::Camera)
            .unwrap();
        let receiver_id = publisher
            .pc
            .rtp_transceiver(publisher.slots[slot_index].transceiver)
            .and_then(|t| t.receiver())
            .unwrap();
        let mut track = InboundTrack::new(
            "camera".to_owned(),
            receiver_id,
            LAYER_SSRCS[1],
            Some(RTCRtpCodec {
                mime_type: "video/VP8".to_owned(),
                clock_rate: 90_000,
                ..Default::default()
            }),
        );
        track.vp8 = true;
        super::simulcast::first_layer(&mut track, "h");
        for (rid, ssrc) in [("q", LAYER_SSRCS[0]), ("f", LAYER_SSRCS[2])] {
            assert!(super::simulcast::add_layer(Some(&mut track), "camera", ssrc, rid));
        }
        assert_eq!(track.layer_ssrcs, LAYER_SSRCS.map(Some));
        publisher.slots[slot_index].track = Some(track);
        publisher.connected = true;
        publisher.media_keys = Some(split_keying_material(PROFILE, &material(PUBLISHER), false).unwrap());
        let mut layers = Vec::new();
        for (layer, ssrc) in LAYER_SSRCS.into_iter().enumerate() {
            // Each layer its own numbering, far apart, as independent encoders have.
            let seq = 1000 + 20_000 * layer as u16;
            assert!(publisher.inbound.bind_layer(
                now,
                ssrc,
                (MediaSource::Camera, layer as u8),
                90_000,
                (seq, 0)
            ));
            layers.push(Layer {
                ssrc,
                seq: seq + 1,
                rtp_time: 777_777 * (layer as u32 + 1),
                picture_id: 30_000 + 100 * layer as u16,
                tl0: 250,
                send: SrtpSendStream::new(ssrc),
            });
        }
        let keys = split_keying_material(PROFILE, &material(PUBLISHER), true)
            .unwrap()
            .local;
        Self {
            shard,
            now,
            layers,
            keys,
            streams: SUBSCRIBERS.iter().map(|k| (*k, SrtpRecvStream::new())).collect(),
            got: HashMap::new(),
            crossed: HashMap::new(),
        }
    }

    /// The camera is announced (stream 7) on cascade `link`, whose far side watches it in tiles
    /// up to `max_height` high.
    fn cross_a_link(&mut self, link: LinkIndex, max_height: u16) {
        let room = self.shard.rooms.get_mut(&room_id()).unwrap();
        room.cascade.peers.insert(link);
        let publisher = room.participants.get_mut(&PUBLISHER).unwrap();
        let track = publisher
            .slot_mut(MediaSource::Camera)
            .unwrap()
            .track
            .as_mut()
            .unwrap();
        track.stream_id = Some(7);
        self.shard
            .cascade_index
            .local_streams
            .insert(7, (Arc::new(room_id()), PUBLISHER, MediaSource::Camera));
        self.demand(link, 1, max_height);
    }

    /// The far side of `link` says how many of its subscribers show the camera, at most how high.
    fn demand(&mut self, link: LinkIndex, subscribers: u32, max_height: u16) {
        self.shard.handle_input(
            self.now,
            ShardInput::Cascade(cascade::CascadeInput::Message {
                link,
                message: LinkMessage::Demand {
                    id: 7,
                    subscribers,
                    max_height,
                },
            }),
        );
        self.collect();
    }

    /// What crossed `link`.
    fn crossed(&self, link: LinkIndex) -> &[(u8, Vec<u8>)] {
        self.crossed.get(&link).map_or(&[], |c| c.as_slice())
    }

    /// The layers that crossed `link`, in order, each once per run.
    fn crossed_layers(&self, link: LinkIndex) -> Vec<u8> {
        let mut layers: Vec<u8> = self.crossed(link).iter().map(|(l, _)| *l).collect();
        layers.dedup();
        layers
    }

    fn constrain(&mut self, key: ParticipantKey, constraints: ReceiverConstraints) {
        self.shard.handle_input(
            self.now,
            ShardInput::Client {
                key,
                message: ClientMessage::ReceiverConstraints(constraints),
            },
        );
        self.collect();
    }

    fn max_height(&mut self, key: ParticipantKey, height: u16) {
        self.constrain(
            key,
            ReceiverConstraints {
                default_max_height: height,
                on_stage_max_height: height,
                sources: Vec::new(),
                on_stage: Vec::new(),
                last_n: None,
            },
        );
    }

    /// One frame time: every layer sends a frame of two packets, a keyframe on the layers in
    /// `keyframes`. The layer index rides in the payload so the test can tell what arrived.
    // By index: the loop also hands each packet to `self.shard`, which an iterator over
    // `self.layers` would keep borrowed.
    #[allow(clippy::needless_range_loop)]
    fn frame(&mut self, keyframes: &[usize]) {
        self.now += Duration::from_millis(33);
        for index in 0..self.layers.len() {
            for part in 0..2 {
                let layer = &mut self.layers[index];
                let keyframe = keyframes.contains(&index);
                let mut packet = vec![0x80, if part == 1 { 0xE0 } else { 0x60 }];
                packet.extend_from_slice(&layer.seq.to_be_bytes());
                packet.extend_from_slice(&layer.rtp_time.to_be_bytes());
                packet.extend_from_slice(&layer.ssrc.to_be_bytes());
                packet.push(if part == 0 { 0x90 } else { 0x80 });
                packet.push(0xC0); // I, L
                packet.extend_from_slice(&(0x8000 | layer.picture_id).to_be_bytes());
                packet.push(layer.tl0);
                if part == 0 && keyframe {
                    let [h0, h1] = HEIGHTS[index].to_le_bytes();
                    packet.extend_from_slice(&[0x10, 0, 0, 0x9D, 0x01, 0x2A, 0, 1, h0, h1]);
                } else {
                    packet.extend_from_slice(&[0x11, 0, 0]);
                }
                packet.extend_from_slice(&[index as u8; 100]);
                let len = packet.len();
                packet.resize(len + PROFILE.rtp_tag_len(), 0);
                layer.send.protect(&self.keys, &mut packet, len).unwrap();
                layer.seq = layer.seq.wrapping_add(1);
                self.shard.handle_input(
                    self.now,
                    ShardInput::Datagram {
                        from: "127.0.0.1:50001".parse().unwrap(),
                        key: PUBLISHER,
                        data: BytesMut::from(&packet[..]),
                    },
                );
                self.collect();
            }
            let layer = &mut self.layers[index];
            layer.rtp_time = layer.rtp_time.wrapping_add(2970);
            layer.picture_id = (layer.picture_id + 1) % 0x8000;
            layer.tl0 = layer.tl0.wrapping_add(1);
        }
    }

    fn collect(&mut self) {
        for output in drain(&mut self.shard) {
            if let ShardOutput::LinkDatagram { link, datagram } = &output {
                let packet = datagram[bridgemesh_proto::cascade::MEDIA_HEADER_LEN..].to_vec();
                let crossed = self.crossed.entry(*link).or_default();
                crossed.push((*packet.last().unwrap(), packet));
                continue;
            }
            let ShardOutput::Transmit { to, data } = output else {
                continue;
            };
            let Some(key) = SUBSCRIBERS
                .into_iter()
                .find(|k| super::fastpath_tests::subscriber_addr(*k) == to)
            else {
                continue;
            };
            let keys = split_keying_material(PROFILE, &material(key), true)
                .unwrap()
                .remote;
            let mut packet = data.to_vec();
            let stream = self.streams.get_mut(&key).unwrap();
            let Ok(len) = stream.unprotect(&keys, &mut packet) else {
                continue; // RTCP and DTLS of the peer connection
            };
            packet.truncate(len);
            self.got
                .entry(key)
                .or_default()
                .push((*packet.last().unwrap(), packet));
        }
    }

    fn layers_of(&self, key: ParticipantKey) -> Vec<u8> {
        let mut layers: Vec<u8> = self
            .got
            .get(&key)
            .map_or(Vec::new(), |g| g.iter().map(|(l, _)| *l).collect());
        layers.dedup();
        layers
    }

    fn layer_requests(&self) -> [u64; 3] {
        self.shard.stats().simulcast.keyframe_requests_by_layer
    }
}

/// The subscriber's stream: one SSRC, sequence +1 each, timestamps and PictureIDs moving on
/// per frame, TL0PICIDX +1 per frame; each change of layer on a keyframe.
fn assert_one_continuous_stream(got: &[(u8, Vec<u8>)]) {
    assert!(!got.is_empty());
    for pair in got.windows(2) {
        let ((l0, a), (l1, b)) = (&pair[0], &pair[1]);
        assert_eq!(a[8..12], b[8..12], "one SSRC");
        let seq = |p: &[u8]| u16::from_be_bytes([p[2], p[3]]);
        let time = |p: &[u8]| u32::from_be_bytes([p[4], p[5], p[6], p[7]]);
        assert_eq!(seq(b), seq(a).wrapping_add(1), "sequence continuous");
        let da = vp8::parse(a, 12).unwrap();
        let db = vp8::parse(b, 12).unwrap();
        let (pa, pb) = (da.picture_id.unwrap().value, db.picture_id.unwrap().value);
        let (ta, tb) = (da.tl0_pic_idx.unwrap().1, db.tl0_pic_idx.unwrap().1);
        if db.keyframe_start || b[12] & 0x10 != 0 {
            assert_eq!(pb, (pa + 1) % 0x8000, "PictureID continuous");
            assert_eq!(tb, ta.wrapping_add(1), "TL0PICIDX continuous");
            let step = time(b).wrapping_sub(time(a));
            assert!(step > 0 && step < 90_000, "timestamp step {step}");
        } else {
            assert_eq!((pb, tb, time(b)), (pa, ta, time(a)), "same frame");
        }
        if l0 != l1 {
            assert!(db.keyframe_start, "layer {l0} -> {l1} switched off a keyframe");
        }
    }
}

#[test]
fn each_subscriber_gets_the_layer_its_tile_needs_switching_on_keyframes() {
    let mut call = Simulcast::new();
    call.max_height(SMALL, 180);
    call.max_height(LARGE, 720);
    // The publisher's first frame makes its layers known (a leg made before that asked for the
    // layers as they appeared); past the keyframe throttles, requests name what each leg needs.
    call.frame(&[]);
    call.now += Duration::from_millis(600);
    let before = call.layer_requests();
    for _ in 0..3 {
        call.frame(&[]);
    }
    // Both legs start on the lowest layer; the large one waits for the top layer's keyframe and
    // asks for it, and for nothing else.
    assert_eq!(call.layers_of(SMALL), [0]);
    assert_eq!(call.layers_of(LARGE), [0]);
    let delta = |now: [u64; 3], then: [u64; 3]| [0, 1, 2].map(|l| now[l] - then[l]);
    assert_eq!(delta(call.layer_requests(), before), [0, 0, 1]);
    call.frame(&[0, 1, 2]);
    for _ in 0..5 {
        call.frame(&[]);
    }
    assert_eq!(
        call.layers_of(SMALL),
        [0],
        "a 180p tile never gets the 720p layer"
    );
    assert_eq!(call.layers_of(LARGE), [0, 2]);
    // The large tile shrinks: down to the middle layer on its keyframe, not before.
    call.now += Duration::from_millis(400);
    let before = call.layer_requests();
    call.max_height(LARGE, 300);
    call.frame(&[]);
    assert_eq!(call.layers_of(LARGE), [0, 2]);
    assert_eq!(delta(call.layer_requests(), before), [0, 1, 0]);
    call.frame(&[1]);
    call.frame(&[]);
    assert_eq!(call.layers_of(LARGE), [0, 2, 1]);
    for key in SUBSCRIBERS {
        assert_one_continuous_stream(&call.got[&key]);
    }
    let stats = call.shard.stats().simulcast;
    assert_eq!(stats.layer_switches, 2);
    assert_eq!(stats.legs_on_layer, [1, 1, 0]);
    assert_eq!(stats.constraints_applied, 3);
}

#[test]
fn a_simulcast_camera_crosses_a_link_as_one_stream_under_one_ssrc() {
    // The far bridge records and forwards it as one source: a new SSRC at each change of layer
    // made it two tracks in a recording.
    let mut call = Simulcast::new();
    call.cross_a_link(LINK, u16::MAX);
    call.frame(&[0]);
    call.frame(&[]);
    call.now += Duration::from_millis(600);
    call.frame(&[0, 1, 2]);
    for _ in 0..3 {
        call.frame(&[]);
    }
    assert_eq!(
        call.crossed_layers(LINK),
        [0, 2],
        "the link starts low and moves to the top layer"
    );
    assert_one_continuous_stream(call.crossed(LINK));
}

#[test]
fn each_link_carries_the_layer_its_far_side_shows_and_nothing_when_nobody_watches() {
    let mut call = Simulcast::new();
    // The far sides show the camera as thumbnails only: the low layer crosses, whatever comes.
    call.cross_a_link(LINK, 180);
    call.cross_a_link(OTHER_LINK, 180);
    call.frame(&[0, 1, 2]);
    call.now += Duration::from_millis(600);
    for _ in 0..3 {
        call.frame(&[0, 1, 2]);
    }
    for link in [LINK, OTHER_LINK] {
        assert_eq!(call.crossed_layers(link), [0], "thumbnails only: the low layer");
    }
    let bytes = call.shard.stats().simulcast.link_bytes_by_layer;
    assert!(bytes[0] > 0 && bytes[1] == 0 && bytes[2] == 0, "{bytes:?}");
    // Someone behind one link puts it on stage: the top layer follows there on its keyframe,
    // asked for; the other link stays on the low layer.
    call.now += Duration::from_millis(600);
    let before = call.layer_requests();
    call.demand(LINK, 2, 720);
    call.frame(&[]);
    assert_eq!(
        call.layer_requests()[2],
        before[2] + 1,
        "the top layer's keyframe asked for"
    );
    call.frame(&[2]);
    call.frame(&[]);
    assert_eq!(call.crossed_layers(LINK), [0, 2]);
    assert_eq!(
        call.crossed_layers(OTHER_LINK),
        [0],
        "the other link keeps the low layer"
    );
    for link in [LINK, OTHER_LINK] {
        assert_one_continuous_stream(call.crossed(link));
    }
    // Nobody behind the first link watches any more: nothing crosses it.
    let (sent, sent_other) = (call.crossed(LINK).len(), call.crossed(OTHER_LINK).len());
    call.demand(LINK, 0, 0);
    call.frame(&[0, 1, 2]);
    assert_eq!(
        call.crossed(LINK).len(),
        sent,
        "no demand, no packets over the link"
    );
    assert!(
        call.crossed(OTHER_LINK).len() > sent_other,
        "the other link goes on"
    );
}

#[test]
fn a_paused_source_sends_nothing_and_resumes_on_a_keyframe() {
    let mut call = Simulcast::new();
    call.max_height(SMALL, 720);
    call.frame(&[2]);
    let before = call.got[&SMALL].len();
    call.constrain(
        SMALL,
        ReceiverConstraints {
            default_max_height: 720,
            on_stage_max_height: 720,
            sources: vec![SourceConstraint {
                participant_id: ParticipantId::new("pub").unwrap(),
                source: MediaSource::Camera,
                max_height: 0,
            }],
            on_stage: Vec::new(),
            last_n: None,
        },
    );
    for _ in 0..5 {
        call.frame(&[0, 1, 2]);
    }
    assert_eq!(call.got[&SMALL].len(), before, "paused: nothing");
    assert_eq!(call.shard.stats().simulcast.legs_paused, 1);
    call.max_height(SMALL, 720);
    call.frame(&[]);
    assert_eq!(call.got[&SMALL].len(), before, "resumes on a keyframe only");
    call.frame(&[2]);
    assert!(call.got[&SMALL].len() > before);
    assert!(
        vp8::parse(&call.got[&SMALL][before].1, 12)
            .unwrap()
            .keyframe_start
    );
    assert_one_continuous_stream(&call.got[&SMALL]);
}

#[test]
fn a_nack_is_answered_from_the_layer_the_packet_came_from() {
    let mut call = Simulcast::new();
    call.max_height(LARGE, 720);
    call.frame(&[]);
    call.frame(&[2]);
    call.frame(&[]);
    let got = call.got[&LARGE].clone();
    let leg_ssrc = u32::from_be_bytes(got[0].1[8..12].try_into().unwrap());
    // One packet of layer 0 (before the switch) and one of layer 2 (after it).
    let wanted: Vec<(u16, Vec<u8>)> = [0, got.len() - 1]
        .into_iter()
        .map(|i| (u16::from_be_bytes([got[i].1[2], got[i].1[3]]), got[i].1.clone()))
        .collect();
    for (seq, original) in wanted {
        let nack = TransportLayerNack {
            sender_ssrc: 1,
            media_ssrc: leg_ssrc,
            nacks: rtc::rtcp::transport_feedbacks::transport_layer_nack::nack_pairs_from_sequence_numbers(&[
                seq,
            ]),
        };
        call.shard.answer_nack(Instant::now(), &room_id(), LARGE, &nack);
        // The subscriber's stack drops it as a replay of what it has: decrypt with a fresh state.
        call.streams.insert(LARGE, SrtpRecvStream::new());
        let before = call.got[&LARGE].len();
        call.collect();
        let resent = &call.got[&LARGE][before..];
        assert_eq!(resent.len(), 1);
        assert_eq!(resent[0].1, original, "the same bytes as first sent on the leg");
    }
}

#[test]
fn constraints_naming_audio_or_too_many_sources_are_refused() {
    let mut call = Simulcast::new();
    call.shard.handle_input(
        call.now,
        ShardInput::Client {
            key: SMALL,
            message: ClientMessage::ReceiverConstraints(ReceiverConstraints {
                default_max_height: 0,
                on_stage_max_height: 0,
                sources: vec![SourceConstraint {
                    participant_id: ParticipantId::new("pub").unwrap(),
                    source: MediaSource::Microphone,
                    max_height: 0,
                }],
                on_stage: Vec::new(),
                last_n: None,
            }),
        },
    );
    let refused = drain(&mut call.shard).into_iter().any(|o| {
        matches!(
            o,
            ShardOutput::ToClient {
                message: ServerMessage::Error { .. },
                ..
            }
        )
    });
    assert!(refused);
    assert_eq!(call.shard.stats().simulcast.constraints_refused, 1);
    // Nothing changed: the leg still aims at the top layer.
    call.frame(&[2]);
    assert_eq!(call.layers_of(SMALL), [0, 2]);
}
