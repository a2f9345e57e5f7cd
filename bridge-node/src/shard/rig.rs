//! A shard with one publisher and `n` subscribers whose DTLS is taken as done (keys given, not
//! negotiated), driving the real forwarding code without sockets: plain RTP into the forwarding
//! code ([`FanoutRig::publish`], as from a cascade link) or SRTP datagrams through the shard's
//! inbound fast path ([`FanoutRig::receive`]). For the allocation test and the in-process
//! fast-path benchmark. Not a way to run a bridge.

use super::*;
use crate::fastpath::leg::LegWriter;
use crate::fastpath::split_keying_material;
use crate::fastpath::srtp::{SrtpKeys, SrtpProfile, SrtpSendStream};

const PUBLISHER: ParticipantKey = ParticipantKey(0);
/// The SSRC of the publisher's camera in [`FanoutRig::seal`]ed packets.
pub const PUBLISHER_SSRC: u32 = 0x5555_0001;

pub struct FanoutRig {
    shard: Shard,
    room: RoomId,
    /// Datagrams sent since the rig was built, and their bytes.
    pub datagrams: u64,
    pub bytes: u64,
    /// The publisher's side of its SRTP session, to seal what [`FanoutRig::receive`] takes.
    publisher_keys: SrtpKeys,
    /// One SRTP stream per SSRC the publisher sends (three for a simulcast camera).
    publisher_streams: Vec<SrtpSendStream>,
}

/// The SSRCs of a simulcast publisher's camera layers in [`FanoutRig::simulcast`], layer 0 first.
pub const LAYER_SSRCS: [u32; 3] = [PUBLISHER_SSRC, PUBLISHER_SSRC + 1, PUBLISHER_SSRC + 2];

impl FanoutRig {
    /// Participant 0 publishes its camera to `subscribers` others, each leg negotiated with
    /// payload type 96 and protected with `profile`.
    pub fn new(subscribers: u64, profile: SrtpProfile) -> Self {
        let now = Instant::now();
        let room = RoomId::new("rig").expect("valid room name");
        let mut shard = Shard::new(
            0,
            SocketAddr::from(([127, 0, 0, 1], 40_000)),
            Arc::new(RouteTable::default()),
            subscribers as usize + 1,
        );
        for key in 0..=subscribers {
            let name = format!("p{key}");
            shard.handle_input(
                now,
                ShardInput::Connect(ConnectRequest {
                    key: ParticipantKey(key),
                    room: room.clone(),
                    participant_id: ParticipantId::new(&name).expect("valid participant name"),
                    display_name: name,
                    media: Default::default(),
                    moderator: false,
                }),
            );
        }
        while shard.poll_output().is_some() {}
        let codec = RTCRtpCodec {
            mime_type: "video/VP8".to_owned(),
            clock_rate: 90_000,
            ..Default::default()
        };
        let publisher_id = ParticipantId::new("p0").expect("valid participant name");
        let material: Vec<u8> = (0..profile.keying_material_len() as u8).collect();
        let state = shard.rooms.get_mut(&room).expect("the room exists");
        for key in 1..=subscribers {
            let subscriber = state
                .participants
                .get_mut(&ParticipantKey(key))
                .expect("connected above");
            let desired = [(
                PUBLISHER,
                MediaSource::Camera,
                publisher_id.clone(),
                codec.clone(),
            )];
            sync_legs(subscriber, &desired).expect("a leg is added");
            let leg = subscriber
                .legs
                .get_mut(&(PUBLISHER, MediaSource::Camera))
                .expect("added above");
            leg.payload_type = Some(96);
            leg.writer = Some(LegWriter::new(leg.ssrc, 96, vec![(1, 1)]));
            subscriber.connected = true;
            subscriber.media_addr = Some(SocketAddr::from(([127, 0, 0, 1], 50_000 + key as u16)));
            subscriber.media_keys =
                Some(split_keying_material(profile, &material, false).expect("key lengths"));
        }
        // The publisher's camera is announced, its first packet (0) went through `rtc`, and its
        // DTLS is done: the fast path opens the rest.
        let publisher = state.participants.get_mut(&PUBLISHER).expect("connected above");
        let slot = publisher
            .slots
            .iter_mut()
            .find(|s| s.source == MediaSource::Camera)
            .expect("a camera slot");
        let receiver_id = publisher
            .pc
            .rtp_transceiver(slot.transceiver)
            .and_then(|t| t.receiver())
            .expect("a receiver");
        let mut track = InboundTrack::new("camera".to_owned(), receiver_id, PUBLISHER_SSRC, Some(codec));
        // As the shard marks a VP8 track on its first packet: its descriptor is read per packet.
        track.vp8 = true;
        slot.track = Some(track);
        publisher
            .inbound
            .bind(now, PUBLISHER_SSRC, MediaSource::Camera, 90_000, (0, 0));
        publisher.connected = true;
        publisher.media_keys = Some(split_keying_material(profile, &material, false).expect("key lengths"));
        let publisher_keys = split_keying_material(profile, &material, true)
            .expect("key lengths")
            .local;
        Self {
            shard,
            room,
            datagrams: 0,
            bytes: 0,
            publisher_keys,
            publisher_streams: vec![SrtpSendStream::new(PUBLISHER_SSRC)],
        }
    }

    /// [`FanoutRig::new`] with the camera published as three VP8 simulcast layers
    /// ([`LAYER_SSRCS`], all bound to the fast path), and the subscribers' tiles asking, in
    /// turn, for 180, 360 and 720 pixels and nothing (a hidden tile).
    pub fn simulcast(subscribers: u64, profile: SrtpProfile) -> Self {
        let mut rig = Self::new(subscribers, profile);
        let now = Instant::now();
        let state = rig.shard.rooms.get_mut(&rig.room).expect("the room exists");
        let publisher = state.participants.get_mut(&PUBLISHER).expect("connected");
        let slot = publisher
            .slots
            .iter_mut()
            .find(|s| s.source == MediaSource::Camera)
            .expect("a camera slot");
        let track = slot.track.as_mut().expect("a camera track");
        track.vp8 = true;
        track.simulcast = true;
        track.layer_ssrcs = LAYER_SSRCS.map(Some);
        for (layer, ssrc) in LAYER_SSRCS.into_iter().enumerate() {
            publisher
                .inbound
                .bind_layer(now, ssrc, (MediaSource::Camera, layer as u8), 90_000, (0, 0));
        }
        rig.publisher_streams = LAYER_SSRCS.into_iter().map(SrtpSendStream::new).collect();
        for key in 1..=subscribers {
            let height = [180, 360, 720, 0][(key as usize - 1) % 4];
            rig.shard.handle_input(
                now,
                ShardInput::Client {
                    key: ParticipantKey(key),
                    message: ClientMessage::ReceiverConstraints(
                        bridgemesh_proto::signaling::ReceiverConstraints {
                            default_max_height: height,
                            on_stage_max_height: height,
                            sources: Vec::new(),
                            on_stage: Vec::new(),
                            last_n: None,
                        },
                    ),
                },
            );
        }
        while rig.shard.poll_output().is_some() {}
        rig
    }

    /// Every leg stamps its subscriber's transport-wide sequence number into the element the
    /// publisher's packets carry under extension id 3 (as the leg's id 5), as legs do for
    /// subscribers that negotiated transport-cc.
    pub fn with_transport_cc(mut self) -> Self {
        let state = self.shard.rooms.get_mut(&self.room).expect("the room exists");
        for subscriber in state.participants.values_mut().filter(|p| p.key != PUBLISHER) {
            for leg in subscriber.legs.values_mut() {
                let payload_type = leg.payload_type.expect("negotiated");
                leg.writer =
                    Some(LegWriter::new(leg.ssrc, payload_type, vec![(1, 1)]).with_transport_cc(3, 5));
            }
        }
        self
    }

    /// Transport-wide sequence numbers stamped for subscriber `key` so far.
    pub fn transport_cc_sent(&self, key: u64) -> u64 {
        self.shard
            .rooms
            .get(&self.room)
            .and_then(|room| room.participants.get(&ParticipantKey(key)))
            .map_or(0, |p| p.bwe.history.sent())
    }

    /// Protects a publisher packet (plain RTP, SSRC [`PUBLISHER_SSRC`], or one of
    /// [`LAYER_SSRCS`] for a simulcast rig) as the publisher's own stack would, into a datagram
    /// for [`FanoutRig::receive`].
    pub fn seal(&mut self, packet: &[u8]) -> BytesMut {
        let mut datagram = BytesMut::zeroed(packet.len() + self.publisher_keys.profile().rtp_tag_len());
        datagram[..packet.len()].copy_from_slice(packet);
        let ssrc = u32::from_be_bytes([packet[8], packet[9], packet[10], packet[11]]);
        let index = LAYER_SSRCS
            .iter()
            .position(|s| *s == ssrc)
            .filter(|i| *i < self.publisher_streams.len())
            .expect("a publisher SSRC");
        self.publisher_streams[index]
            .protect(&self.publisher_keys, &mut datagram, packet.len())
            .expect("room for the tag");
        datagram
    }

    /// Takes a sealed publisher datagram in at the shard's front door, as the driver hands it
    /// over: opened in place by the fast path and forwarded to every subscriber; the datagrams
    /// are dropped as a driver does once it has sent them.
    pub fn receive(&mut self, datagram: BytesMut) {
        self.shard.handle_input(
            Instant::now(),
            ShardInput::Datagram {
                from: SocketAddr::from(([127, 0, 0, 1], 50_000)),
                key: PUBLISHER,
                data: datagram,
            },
        );
        self.count_outputs();
    }

    /// Forwards one publisher packet (plain RTP) to every subscriber, as a packet from a cascade
    /// link enters the shard, and drops the datagrams as a driver does once it has sent them.
    pub fn publish(&mut self, packet: &[u8]) {
        let Some(room) = self.shard.rooms.get_mut(&self.room) else {
            return;
        };
        deliver(
            Instant::now(),
            room,
            StreamRef::single(PUBLISHER, MediaSource::Camera, true),
            Incoming::Raw(packet),
            &mut self.shard.tx,
            &mut self.shard.outputs,
            &mut self.shard.stats,
        );
        self.count_outputs();
    }

    fn count_outputs(&mut self) {
        while let Some(output) = self.shard.poll_output() {
            if let ShardOutput::Transmit { data, .. } = output {
                self.datagrams += 1;
                self.bytes += data.len() as u64;
            }
        }
    }

    /// The shard, for tests driving it further (recording a rig's room).
    pub fn shard_mut(&mut self) -> &mut Shard {
        &mut self.shard
    }

    pub fn stats(&self) -> ShardStats {
        self.shard.stats()
    }
}
