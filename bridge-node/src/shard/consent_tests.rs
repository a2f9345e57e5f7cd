//! Consent freshness at the shard level: a real ICE/DTLS client (`rtc`, full ICE, controlling)
//! connected to the shard in one process, datagrams handed across by hand, time virtual.

use super::*;
use rtc::peer_connection::configuration::RTCConfigurationBuilder;
use rtc::peer_connection::configuration::media_engine::MediaEngine;
use rtc::peer_connection::configuration::setting_engine::SettingEngineBuilder;
use rtc::peer_connection::transport::{CandidateConfig, CandidateHostConfig, RTCIceCandidate};
use rtc::peer_connection::{RTCPeerConnection, RTCPeerConnectionBuilder};

const BRIDGE: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 40_000);
const CLIENT: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 50_000);
const KEY: ParticipantKey = ParticipantKey(1);

/// A client that sends nothing but its consent checks, one every `check_interval` once
/// connected: it publishes nothing and the room has nobody else, so no media and no RTCP.
pub(super) fn client(now: Instant, check_interval: Duration) -> RTCPeerConnection {
    let mut media_engine = MediaEngine::default();
    media_engine.register_default_codecs().unwrap();
    let setting_engine = SettingEngineBuilder::new()
        .with_ice_timeouts(None, None, Some(check_interval))
        .build();
    let mut pc = RTCPeerConnectionBuilder::new()
        .with_configuration(RTCConfigurationBuilder::new().build())
        .with_setting_engine(setting_engine)
        .with_media_engine(media_engine)
        .build(now)
        .unwrap();
    let candidate = CandidateHostConfig {
        base_config: CandidateConfig {
            network: "udp".to_owned(),
            address: CLIENT.ip().to_string(),
            port: CLIENT.port(),
            component: 1,
            ..Default::default()
        },
        ..Default::default()
    }
    .new_candidate_host()
    .unwrap();
    pc.add_local_candidate(RTCIceCandidate::from(&candidate).to_json().unwrap())
        .unwrap();
    pc
}

struct Pair {
    shard: Shard,
    client: RTCPeerConnection,
    now: Instant,
    /// Whether the client's datagrams reach the bridge (false: its path is cut).
    path_up: bool,
    /// When the bridge last received anything from the client.
    last_delivered: Instant,
    left: bool,
}

impl Pair {
    fn new(check_interval: Duration) -> Self {
        let now = Instant::now();
        let mut shard = Shard::new(0, BRIDGE, Arc::new(RouteTable::default()), 4);
        shard.handle_input(
            now,
            ShardInput::Connect(ConnectRequest {
                key: KEY,
                room: RoomId::new("consent").unwrap(),
                participant_id: ParticipantId::new("ada").unwrap(),
                display_name: "Ada".to_owned(),
                media: Default::default(),
                moderator: false,
            }),
        );
        let mut pair = Pair {
            shard,
            client: client(now, check_interval),
            now,
            path_up: true,
            last_delivered: now,
            left: false,
        };
        pair.exchange();
        pair
    }

    /// Moves datagrams and signaling both ways until neither side has anything more to say.
    fn exchange(&mut self) {
        for _ in 0..1_000 {
            let mut progressed = false;
            while let Some(datagram) = self.client.poll_write() {
                progressed = true;
                if self.path_up {
                    self.last_delivered = self.now;
                    self.shard.handle_input(
                        self.now,
                        ShardInput::Datagram {
                            from: CLIENT,
                            key: KEY,
                            data: datagram.message,
                        },
                    );
                }
            }
            while let Some(output) = self.shard.poll_output() {
                progressed = true;
                match output {
                    ShardOutput::Transmit { to, data } if to == CLIENT => {
                        let transport = TransportContext {
                            local_addr: CLIENT,
                            peer_addr: BRIDGE,
                            ecn: None,
                            transport_protocol: TransportProtocol::UDP,
                        };
                        // The bridge's answers to checks that got through reach the client.
                        let _ = self.client.handle_read(TaggedBytesMut {
                            now: self.now,
                            transport,
                            message: data,
                        });
                    }
                    ShardOutput::ToClient {
                        message: ServerMessage::Offer { sdp, .. },
                        ..
                    } => {
                        let offer = RTCSessionDescription::offer(sdp).unwrap();
                        self.client.set_remote_description(self.now, offer).unwrap();
                        let answer = self.client.create_answer(None).unwrap();
                        self.client
                            .set_local_description(self.now, answer.clone())
                            .unwrap();
                        self.shard.handle_input(
                            self.now,
                            ShardInput::Client {
                                key: KEY,
                                message: ClientMessage::Answer { sdp: answer.sdp },
                            },
                        );
                    }
                    ShardOutput::Event(BridgeEvent::ParticipantLeft { .. }) => self.left = true,
                    _ => {}
                }
            }
            while self.client.poll_read().is_some() {}
            while self.client.poll_event().is_some() {}
            if !progressed {
                return;
            }
        }
        panic!("the exchange never settled");
    }

    /// Runs both sides' timers up to `until`, exchanging after each.
    fn run_until(&mut self, until: Instant) {
        for _ in 0..1_000_000 {
            let next = [self.shard.poll_timeout(), self.client.poll_timeout()]
                .into_iter()
                .flatten()
                .min()
                .unwrap_or(until)
                // A timer due now (the client's, once its checks go unanswered) is run at the
                // next millisecond: virtual time always moves.
                .max(self.now + Duration::from_millis(1));
            if next > until {
                self.now = until;
                return;
            }
            self.now = next;
            self.shard.handle_timeout(self.now);
            let _ = self.client.handle_timeout(self.now);
            self.exchange();
        }
        panic!("timers never reached {until:?}");
    }

    fn participant(&self) -> Option<&Participant> {
        self.shard
            .rooms
            .values()
            .find_map(|room| room.participants.get(&KEY))
    }
}

#[test]
fn a_client_checking_every_six_seconds_stays_connected() {
    // aiortc and browsers check every 5 s ± 20 %: 6 s is the latest a healthy check comes.
    let mut pair = Pair::new(Duration::from_secs(6));
    let start = pair.now;
    pair.run_until(start + Duration::from_secs(2));
    let participant = pair.participant().expect("connected");
    assert!(participant.connected, "ICE and DTLS completed");
    assert!(participant.media_keys.is_some(), "DTLS completed");
    pair.run_until(start + Duration::from_secs(45));
    assert!(!pair.left, "the participant was removed");
    assert!(pair.participant().is_some());
    assert_eq!(
        pair.shard.stats().ice_disconnects,
        0,
        "a path with a consent check every 6 s was called disconnected"
    );
}

#[test]
fn consent_expires_thirty_seconds_after_the_last_check() {
    let mut pair = Pair::new(Duration::from_secs(5));
    let start = pair.now;
    pair.run_until(start + Duration::from_secs(7));
    assert!(pair.participant().is_some_and(|p| p.connected));
    pair.path_up = false;
    let last = pair.last_delivered;
    pair.run_until(last + Duration::from_secs(16));
    assert_eq!(
        pair.shard.stats().ice_disconnects,
        1,
        "15 s of silence is a disconnect"
    );
    assert!(!pair.left, "consent lasts 30 s");
    pair.run_until(last + Duration::from_millis(29_500));
    assert!(!pair.left, "consent lasts 30 s");
    pair.run_until(last + Duration::from_secs(31));
    assert!(
        pair.left,
        "consent expired 30 s after the last check; the participant is gone"
    );
    assert!(pair.participant().is_none());
}
