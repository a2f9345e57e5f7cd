//! A shard with one publisher and `n` subscribers whose DTLS is taken as done (keys given, not
//! negotiated), driving the real forwarding code without sockets or `rtc`'s inbound pipeline:
//! for the allocation test and the in-process fast-path benchmark. Not a way to run a bridge.

use super::*;
use crate::fastpath::leg::LegWriter;
use crate::fastpath::split_keying_material;
use crate::fastpath::srtp::SrtpProfile;

const PUBLISHER: ParticipantKey = ParticipantKey(0);

pub struct FanoutRig {
    shard: Shard,
    room: RoomId,
    /// Datagrams sent since the rig was built, and their bytes.
    pub datagrams: u64,
    pub bytes: u64,
}

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
        Self {
            shard,
            room,
            datagrams: 0,
            bytes: 0,
        }
    }

    /// Forwards one publisher packet (plain RTP) to every subscriber, as a packet from a cascade
    /// link enters the shard, and drops the datagrams as a driver does once it has sent them.
    pub fn publish(&mut self, packet: &[u8]) {
        let Some(room) = self.shard.rooms.get_mut(&self.room) else {
            return;
        };
        deliver(
            room,
            PUBLISHER,
            MediaSource::Camera,
            Incoming::Raw(packet),
            &mut self.shard.tx,
            &mut self.shard.outputs,
            &mut self.shard.stats,
        );
        while let Some(output) = self.shard.poll_output() {
            if let ShardOutput::Transmit { data, .. } = output {
                self.datagrams += 1;
                self.bytes += data.len() as u64;
            }
        }
    }

    pub fn stats(&self) -> ShardStats {
        self.shard.stats()
    }
}
