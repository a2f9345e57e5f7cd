//! Building one participant's peer connection on the sans-IO `rtc` core, as an ICE-lite offerer
//! whose only candidates are the bridge's shared media port (one per address family).

use crate::keyframe_requests::{self, KeyframeRequestForwarder};
use rand::Rng;
use rand::distr::Alphanumeric;
use rtc::interceptor::Registry;
use rtc::peer_connection::configuration::RTCConfigurationBuilder;
use rtc::peer_connection::configuration::interceptor_registry::configure_simulcast_extension_headers;
use rtc::peer_connection::configuration::media_engine::MediaEngine;
use rtc::peer_connection::configuration::setting_engine::SettingEngineBuilder;
use rtc::peer_connection::transport::{CandidateConfig, CandidateHostConfig, RTCIceCandidate};
use rtc::peer_connection::{RTCPeerConnection, RTCPeerConnectionBuilder};
use rtc::rtp_transceiver::rtp_sender::{RTCPFeedback, RTCRtpHeaderExtensionCapability, RtpCodecKind};
use std::net::SocketAddr;
use std::time::Instant;

/// ICE credentials of one connection. The ufrag is how the demultiplexer finds the connection.
pub struct IceCredentials {
    pub ufrag: String,
    pub pwd: String,
}

impl IceCredentials {
    pub fn random() -> Self {
        let mut rng = rand::rng();
        let mut text = |len| {
            (&mut rng)
                .sample_iter(Alphanumeric)
                .take(len)
                .map(char::from)
                .collect()
        };
        // 16 characters of ufrag make collisions across a bridge's connections vanishingly rare;
        // the route table still asserts uniqueness.
        Self {
            ufrag: text(16),
            pwd: text(32),
        }
    }
}

/// Only the forwarder of the RTCP the bridge acts on: no interceptor of `rtc`'s own.
///
/// No receive-side interceptors: once a publisher's stream is bound, the fast path opens its
/// packets and `rtc` never sees them, so the bridge generates the receiver reports, NACKs and
/// transport-wide congestion feedback itself (`crate::fastpath::inbound`; `rtc`'s would report a
/// stream stopped after its first packets, and two TWCC writers would confuse the publisher's
/// estimator). The SDP still offers `nack`, `nack pli` and `transport-cc` with its extension.
/// No send-side interceptors: the fast path writes every leg's RTP itself. NACKs from
/// subscribers are answered from the fast path's retransmission rings, and sender reports are
/// the publishers' own, translated per leg.
fn bridge_interceptors(media_engine: &mut MediaEngine) -> Result<Registry, rtc::shared::error::Error> {
    for parameter in ["", "pli"] {
        media_engine.register_feedback(
            RTCPFeedback {
                typ: "nack".to_owned(),
                parameter: parameter.to_owned(),
            },
            RtpCodecKind::Video,
        );
    }
    // What `configure_twcc_receiver_only` negotiates, without its interceptor.
    for kind in [RtpCodecKind::Video, RtpCodecKind::Audio] {
        media_engine.register_feedback(
            RTCPFeedback {
                typ: "transport-cc".to_owned(),
                parameter: String::new(),
            },
            kind,
        );
        media_engine.register_header_extension(
            RTCRtpHeaderExtensionCapability {
                uri: crate::fastpath::twcc::TRANSPORT_CC_URI.to_owned(),
            },
            kind,
            None,
        )?;
    }
    // Audio levels, in the clear, for the dominant speaker (`crate::dominant_speaker`).
    media_engine.register_header_extension(
        RTCRtpHeaderExtensionCapability {
            uri: crate::dominant_speaker::AUDIO_LEVEL_URI.to_owned(),
        },
        RtpCodecKind::Audio,
        None,
    )?;
    configure_simulcast_extension_headers(media_engine)?;
    Ok(Registry::new().with(keyframe_requests::SLOT, KeyframeRequestForwarder::default()))
}

/// `media_addrs`: the bridge's host candidates, one per family it is reachable on (the same
/// port); the participant's ICE agent pairs its own candidates with those of their family.
pub fn build_peer_connection(
    now: Instant,
    credentials: &IceCredentials,
    media_addrs: &[SocketAddr],
) -> Result<RTCPeerConnection, rtc::shared::error::Error> {
    let mut media_engine = MediaEngine::default();
    media_engine.register_default_codecs()?;
    let registry = bridge_interceptors(&mut media_engine)?;
    let (disconnected, failed, keepalive) = crate::consent::ice_timeouts();
    let setting_engine = SettingEngineBuilder::new()
        .with_lite(true)
        .with_ice_credentials(credentials.ufrag.clone(), credentials.pwd.clone())
        .with_srtp_protection_profiles(crate::fastpath::SRTP_PROFILES.to_vec())
        .with_ice_timeouts(disconnected, failed, keepalive)
        .build();
    let mut pc = RTCPeerConnectionBuilder::new()
        .with_configuration(RTCConfigurationBuilder::new().build())
        .with_setting_engine(setting_engine)
        .with_media_engine(media_engine)
        .with_interceptor_registry(registry)
        .build(now)?;
    for media_addr in media_addrs {
        let candidate = CandidateHostConfig {
            base_config: CandidateConfig {
                network: "udp".to_owned(),
                address: media_addr.ip().to_string(),
                port: media_addr.port(),
                component: 1,
                ..Default::default()
            },
            ..Default::default()
        }
        .new_candidate_host()?;
        pc.add_local_candidate(RTCIceCandidate::from(&candidate).to_json()?)?;
    }
    Ok(pc)
}
