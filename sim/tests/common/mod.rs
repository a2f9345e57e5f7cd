//! Shared by the integration tests: a fake bridge peer connection.

#![allow(dead_code)]

use bridgemesh_proto::ParticipantId;
use bridgemesh_proto::signaling::{MediaSource, TrackInfo};
use bridgemesh_sim::ParticipantOptions;
use rtc::ice::mdns::MulticastDnsMode;
use rtc::interceptor::{Attribute, Interceptor, Packet, Slot, StreamInfo, TaggedPacket};
use rtc::media_stream::MediaStreamTrack;
use rtc::peer_connection::configuration::media_engine::{MIME_TYPE_OPUS, MIME_TYPE_VP8};
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtp_transceiver::rtp_sender::{
    RTCRtpCodec, RTCRtpCodecParameters, RTCRtpCodingParameters, RTCRtpEncodingParameters, RtpCodecKind,
};
use rtc::rtp_transceiver::{RTCRtpTransceiverDirection, RTCRtpTransceiverInit};
use rtc::sansio::Protocol;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::watch;
use webrtc::media_stream::track_local::TrackLocal;
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};
use webrtc::peer_connection::{
    MediaEngine, PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler, RTCIceGatheringState,
    RTCSessionDescription, Registry, SettingEngineBuilder, register_default_interceptors,
};

const FWD_AUDIO_SSRC: u32 = 0x0A0D_1001;
const FWD_VIDEO_SSRC: u32 = 0x0B1D_E002;

fn codec(mime: &str) -> RTCRtpCodec {
    let audio = mime == MIME_TYPE_OPUS;
    RTCRtpCodec {
        mime_type: mime.to_owned(),
        clock_rate: if audio { 48_000 } else { 90_000 },
        channels: if audio { 2 } else { 0 },
        sdp_fmtp_line: String::new(),
        rtcp_feedback: vec![],
    }
}

/// Marks inbound PLIs for the application so the fake bridge can relay them upstream.
#[derive(Default)]
struct PliToApp {
    reads: VecDeque<TaggedPacket>,
    writes: VecDeque<TaggedPacket>,
}

impl Protocol<TaggedPacket, TaggedPacket, ()> for PliToApp {
    type Rout = TaggedPacket;
    type Wout = TaggedPacket;
    type Eout = ();
    type Error = rtc::shared::error::Error;
    type Time = Instant;

    fn handle_read(&mut self, mut msg: TaggedPacket) -> Result<(), Self::Error> {
        if let Packet::Rtcp(packets) = &msg.message.packet {
            let plis: Vec<Box<dyn rtc::rtcp::Packet>> = packets
                .iter()
                .filter(|p| p.as_any().is::<PictureLossIndication>())
                .cloned()
                .collect();
            if plis.is_empty() {
                return Ok(());
            }
            msg.message.packet = Packet::Rtcp(plis);
            msg.message.add(Attribute::DeliverToApplication);
        }
        self.reads.push_back(msg);
        Ok(())
    }
    fn poll_read(&mut self) -> Option<TaggedPacket> {
        self.reads.pop_front()
    }
    fn handle_write(&mut self, msg: TaggedPacket) -> Result<(), Self::Error> {
        self.writes.push_back(msg);
        Ok(())
    }
    fn poll_write(&mut self) -> Option<TaggedPacket> {
        self.writes.pop_front()
    }
}

impl Interceptor for PliToApp {
    fn bind_local_stream(&mut self, _: &StreamInfo) {}
    fn unbind_local_stream(&mut self, _: &StreamInfo) {}
    fn bind_remote_stream(&mut self, _: &StreamInfo) {}
    fn unbind_remote_stream(&mut self, _: &StreamInfo) {}
}

struct BridgeHandler {
    gathering: watch::Sender<RTCIceGatheringState>,
    fwd_audio: Arc<TrackLocalStaticRTP>,
    fwd_video: Arc<TrackLocalStaticRTP>,
    /// The participant's camera track as received, for relaying PLIs upstream.
    camera: Arc<Mutex<Option<Arc<dyn TrackRemote>>>>,
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for BridgeHandler {
    async fn on_ice_gathering_state_change(&self, state: RTCIceGatheringState) {
        self.gathering.send_replace(state);
    }

    async fn on_track(&self, track: Arc<dyn TrackRemote>) {
        let video = track.kind().await == RtpCodecKind::Video;
        let (out, ssrc) = if video {
            *self.camera.lock().unwrap() = Some(Arc::clone(&track));
            (Arc::clone(&self.fwd_video), FWD_VIDEO_SSRC)
        } else {
            (Arc::clone(&self.fwd_audio), FWD_AUDIO_SSRC)
        };
        tokio::spawn(async move {
            while let Some(event) = track.poll().await {
                if let TrackRemoteEvent::OnRtpPacket(mut packet) = event {
                    packet.header.ssrc = ssrc;
                    packet.header.extensions.clear();
                    packet.header.extension = false;
                    if out.write_rtp(packet).await.is_err() {
                        break;
                    }
                }
            }
        });
    }
}

pub struct FakeBridge {
    pub pc: Arc<dyn PeerConnection>,
    pub gathering: watch::Receiver<RTCIceGatheringState>,
    pub fwd_video: Arc<TrackLocalStaticRTP>,
    pub camera: Arc<Mutex<Option<Arc<dyn TrackRemote>>>>,
    pub slot_mids: Vec<String>,
    pub fwd_audio_mid: String,
    pub fwd_video_mid: String,
}

impl FakeBridge {
    pub async fn new() -> FakeBridge {
        let mut media_engine = MediaEngine::default();
        for (mime, pt, kind) in [
            (MIME_TYPE_OPUS, 111, RtpCodecKind::Audio),
            (MIME_TYPE_VP8, 96, RtpCodecKind::Video),
        ] {
            media_engine
                .register_codec(
                    RTCRtpCodecParameters {
                        rtp_codec: codec(mime),
                        payload_type: pt,
                    },
                    kind,
                )
                .unwrap();
        }
        let registry = register_default_interceptors(Registry::new(), &mut media_engine)
            .unwrap()
            .with(Slot::Custom(14_000), PliToApp::default());
        let setting_engine = SettingEngineBuilder::new()
            .with_lite(true)
            .with_multicast_dns_mode(MulticastDnsMode::Disabled)
            .build();
        let forward = |mime: &str, ssrc: u32, kind| {
            Arc::new(TrackLocalStaticRTP::new(MediaStreamTrack::new(
                "bridge".to_owned(),
                format!("fwd-{kind}"),
                format!("fwd-{kind}"),
                kind,
                vec![RTCRtpEncodingParameters {
                    rtp_coding_parameters: RTCRtpCodingParameters {
                        ssrc: Some(ssrc),
                        ..Default::default()
                    },
                    codec: codec(mime),
                    ..Default::default()
                }],
            )))
        };
        let fwd_audio = forward(MIME_TYPE_OPUS, FWD_AUDIO_SSRC, RtpCodecKind::Audio);
        let fwd_video = forward(MIME_TYPE_VP8, FWD_VIDEO_SSRC, RtpCodecKind::Video);
        let (gathering_tx, gathering) = watch::channel(RTCIceGatheringState::New);
        let camera = Arc::new(Mutex::new(None));
        let pc = PeerConnectionBuilder::new()
            .with_media_engine(media_engine)
            .with_interceptor_registry(registry)
            .with_setting_engine(setting_engine)
            .with_handler(Arc::new(BridgeHandler {
                gathering: gathering_tx,
                fwd_audio: Arc::clone(&fwd_audio),
                fwd_video: Arc::clone(&fwd_video),
                camera: Arc::clone(&camera),
            }))
            .with_udp_addrs(vec!["127.0.0.1:0".to_owned()])
            .build()
            .await
            .unwrap();
        let pc: Arc<dyn PeerConnection> = Arc::new(pc);

        let recvonly = || {
            Some(RTCRtpTransceiverInit {
                direction: RTCRtpTransceiverDirection::Recvonly,
                ..Default::default()
            })
        };
        let sendonly = || {
            Some(RTCRtpTransceiverInit {
                direction: RTCRtpTransceiverDirection::Sendonly,
                ..Default::default()
            })
        };
        // Forwarding m-lines first: the association must not depend on m-line order.
        let t_fwd_audio = pc
            .add_transceiver_from_track(Arc::clone(&fwd_audio) as Arc<dyn TrackLocal>, sendonly())
            .await
            .unwrap();
        let t_audio = pc
            .add_transceiver_from_kind(RtpCodecKind::Audio, recvonly())
            .await
            .unwrap();
        let t_video = pc
            .add_transceiver_from_kind(RtpCodecKind::Video, recvonly())
            .await
            .unwrap();
        let t_fwd_video = pc
            .add_transceiver_from_track(Arc::clone(&fwd_video) as Arc<dyn TrackLocal>, sendonly())
            .await
            .unwrap();

        let mut bridge = FakeBridge {
            pc,
            gathering,
            fwd_video,
            camera,
            slot_mids: vec![],
            fwd_audio_mid: String::new(),
            fwd_video_mid: String::new(),
        };
        let offer = bridge.offer().await;
        assert!(
            offer.contains("a=ice-lite"),
            "fake bridge should be ICE-lite:\n{offer}"
        );
        let mid = |t: Arc<dyn webrtc::rtp_transceiver::RtpTransceiver>| async move {
            t.mid().await.unwrap().unwrap()
        };
        bridge.slot_mids = vec![mid(t_audio).await, mid(t_video).await];
        bridge.fwd_audio_mid = mid(t_fwd_audio).await;
        bridge.fwd_video_mid = mid(t_fwd_video).await;
        bridge
    }

    /// Creates and applies an offer; returns its SDP with the bridge's candidates.
    pub async fn offer(&mut self) -> String {
        let offer = self.pc.create_offer(None).await.unwrap();
        self.pc.set_local_description(offer).await.unwrap();
        tokio::time::timeout(
            Duration::from_secs(5),
            self.gathering.wait_for(|s| *s == RTCIceGatheringState::Complete),
        )
        .await
        .expect("bridge gathering")
        .unwrap();
        self.pc.local_description().await.unwrap().sdp
    }

    pub async fn answer(&self, sdp: String) {
        self.pc
            .set_remote_description(RTCSessionDescription::answer(sdp).unwrap())
            .await
            .unwrap();
    }

    pub fn tracks(&self, audio_from: &ParticipantId, video_from: &ParticipantId) -> Vec<TrackInfo> {
        vec![
            TrackInfo {
                mid: self.fwd_audio_mid.clone(),
                participant_id: audio_from.clone(),
                source: MediaSource::Microphone,
            },
            TrackInfo {
                mid: self.fwd_video_mid.clone(),
                participant_id: video_from.clone(),
                source: MediaSource::Camera,
            },
        ]
    }
}

pub fn options() -> ParticipantOptions {
    ParticipantOptions {
        video_bitrate_bps: 300_000,
        video_fps: 30,
        keyframe_interval: Duration::from_secs(30),
        ..ParticipantOptions::new("alice")
    }
}

/// The m-section of `sdp` with `a=mid:<mid>`.
pub fn section<'a>(sdp: &'a str, mid: &str) -> &'a str {
    let needle = format!("a=mid:{mid}\r\n");
    let at = sdp
        .find(&needle)
        .unwrap_or_else(|| panic!("no mid {mid} in\n{sdp}"));
    let start = sdp[..at].rfind("m=").unwrap();
    let end = sdp[at..].find("\r\nm=").map_or(sdp.len(), |e| at + e);
    &sdp[start..end]
}
