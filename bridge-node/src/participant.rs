//! One participant's connection on the bridge: its peer connection, the slots it publishes into,
//! and the legs on which it receives everybody else.

use crate::demux::ParticipantKey;
use crate::fastpath::SessionKeys;
use crate::fastpath::leg::LegWriter;
use bridgemesh_proto::ParticipantId;
use bridgemesh_proto::signaling::{MediaSource, ParticipantInfo};
use rtc::peer_connection::RTCPeerConnection;
use rtc::rtp_transceiver::rtp_sender::{RTCRtpCodec, RTCRtpHeaderExtensionParameters};
use rtc::rtp_transceiver::{RTCRtpReceiverId, RTCRtpSenderId, RTCRtpTransceiverId};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Keyframe requests toward one publisher's track are sent at most this often; requests in
/// between are merged into one sent when the window ends.
pub const KEYFRAME_REQUEST_INTERVAL: Duration = Duration::from_millis(300);

/// Header extensions never forwarded: they describe the publisher's own leg (its mid, its rids, its
/// transport-wide sequence), and a subscriber reading them would demultiplex or estimate wrongly.
pub const LEG_LOCAL_EXTENSIONS: [&str; 4] = [
    "urn:ietf:params:rtp-hdrext:sdes:mid",
    "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id",
    "urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id",
    "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01",
];

/// A receiving slot: one recvonly m-line the bridge offered for one source of this participant.
pub struct RecvSlot {
    pub source: MediaSource,
    pub transceiver: RTCRtpTransceiverId,
    /// The client said it publishes this source (microphone and camera always; screen on request).
    pub active: bool,
    pub track: Option<InboundTrack>,
}

/// Media arriving from the participant on one slot.
pub struct InboundTrack {
    pub track_id: String,
    pub receiver_id: RTCRtpReceiverId,
    pub ssrc: u32,
    /// Known from the first packet's payload type; forwarding starts then.
    pub codec: Option<RTCRtpCodec>,
    pub extensions: Vec<RTCRtpHeaderExtensionParameters>,
    pub keyframe_requested_at: Option<Instant>,
    pub keyframe_request_pending: bool,
    /// The id this track's datagrams carry on cascade links, once announced to them.
    pub stream_id: Option<u32>,
    /// Links whose far side has subscribers for this track, and the largest height they show it at.
    pub links: Vec<LinkDemand>,
    /// Ids of the header extensions stripped before a packet crosses a link (the leg-local ones).
    pub link_dropped_extensions: Vec<u8>,
    /// The SSRC of each simulcast layer, by layer; a stream without simulcast is layer 0.
    pub layer_ssrcs: [Option<u32>; crate::simulcast::LAYERS_MAX],
    /// The client sends layers named by RID (RFC 8852), `ssrc` being the first one seen.
    pub simulcast: bool,
    /// The codec is VP8: its payload descriptor is read and rewritten on layer switches.
    pub vp8: bool,
    /// Keyframe requests held back by the throttle, by layer (bit per layer).
    pub keyframe_layers_pending: u8,
}

/// A link that asked for a track: its far side's subscribers show it at most this high.
pub struct LinkDemand {
    pub link: crate::shard::LinkIndex,
    pub max_height: u16,
    /// Of a simulcast track: the one layer that crosses this link, renumbered as one stream
    /// for it (made at the first packet).
    pub selector: Option<crate::simulcast::LayerSelector>,
}

impl InboundTrack {
    /// A track as rtc announces it: nothing forwarded, requested or announced on links yet.
    pub fn new(
        track_id: String,
        receiver_id: RTCRtpReceiverId,
        ssrc: u32,
        codec: Option<RTCRtpCodec>,
    ) -> Self {
        Self {
            track_id,
            receiver_id,
            ssrc,
            codec,
            extensions: Vec::new(),
            keyframe_requested_at: None,
            keyframe_request_pending: false,
            stream_id: None,
            links: Vec::new(),
            link_dropped_extensions: Vec::new(),
            layer_ssrcs: [Some(ssrc), None, None],
            simulcast: false,
            vp8: false,
            keyframe_layers_pending: 0,
        }
    }

    /// The layer an SSRC of this track carries.
    pub fn layer_of(&self, ssrc: u32) -> Option<crate::simulcast::Layer> {
        self.layer_ssrcs
            .iter()
            .position(|s| *s == Some(ssrc))
            .map(|l| l as crate::simulcast::Layer)
    }
}

/// A leg: media of one remote (publisher, source) sent to this participant.
pub struct SendLeg {
    pub sender_id: RTCRtpSenderId,
    pub track_id: String,
    pub ssrc: u32,
    /// This leg's payload type for the publisher's codec; `None` until the answer names it.
    pub payload_type: Option<u8>,
    /// (publisher's extension id, this leg's id) for every extension both legs negotiated.
    pub extension_map: Vec<(u8, u8)>,
    /// Rewrites and protects the publisher's packets for this leg; set once the answer names the
    /// payload type. The only writer of RTP on this leg's SSRC.
    pub writer: Option<LegWriter>,
    /// The subscriber's latest answer does not receive this leg (`inactive`, or a rejected
    /// m-line): nothing is sent on it. Its writer is kept, so the SRTP stream's packet index
    /// never restarts (a restarted index under the same key would reuse keystream).
    pub declined: bool,
    /// Video: which layer of the source this leg carries and how it is renumbered
    /// (`crate::simulcast`); `None` for audio, which is forwarded as it comes.
    pub selector: Option<crate::simulcast::LayerSelector>,
    /// Video: the layer the bandwidth allocator gives this leg (`Some(None)`: paused, by the
    /// estimate or last-N); `None` until it has run. The selector's target is this, within the
    /// layer the receiver's constraints ask for.
    pub allocation: Option<Option<crate::simulcast::Layer>>,
}

pub struct Participant {
    pub key: ParticipantKey,
    pub id: ParticipantId,
    pub display_name: String,
    pub ufrag: String,
    pub pc: RTCPeerConnection,
    pub microphone_muted: bool,
    pub camera_muted: bool,
    /// A moderator of the room, as its ticket says: may delete chat messages and lower hands.
    pub moderator: bool,
    /// When it raised its hand (Unix ms, this bridge's clock); `None` while the hand is down.
    pub hand_raised_at_ms: Option<u64>,
    pub slots: Vec<RecvSlot>,
    pub legs: BTreeMap<(ParticipantKey, MediaSource), SendLeg>,
    pub awaiting_answer: bool,
    pub renegotiate: bool,
    pub offers_sent: u64,
    pub connected: bool,
    /// Set when the peer connection has queued work (datagrams, events, reads) to drain.
    pub dirty: bool,
    pub next_timeout: Option<Instant>,
    pub joined_at: Instant,
    pub track_counter: u64,
    /// SRTP keys exported once DTLS completed: the bridge protects every leg's RTP itself.
    pub media_keys: Option<SessionKeys>,
    /// Where the peer connection sends DTLS and RTCP, i.e. the selected candidate pair's remote
    /// address: where the fast path sends media.
    pub media_addr: Option<SocketAddr>,
    /// Whether the connection was up before and where its media went: what decides the
    /// keyframe requests a (re)connection costs the publishers.
    pub path: crate::consent::PathWatch,
    /// What it publishes and receives (`hello`'s `media`).
    pub media: bridgemesh_proto::signaling::MediaMode,
    /// The participant's published streams as the fast path opens them, and the receive-side
    /// RTCP the bridge owes it.
    pub inbound: crate::fastpath::inbound::InboundMedia,
    /// What its layout shows (`receiver_constraints`); `None` until it says: every source's top layer.
    pub constraints: Option<bridgemesh_proto::signaling::ReceiverConstraints>,
    /// The transport-wide sequence of what it is sent and the bandwidth estimate its feedback
    /// drives (`crate::bwe`).
    pub bwe: crate::bwe::subscriber::SubscriberBwe,
}

impl Participant {
    pub fn info(&self) -> ParticipantInfo {
        ParticipantInfo {
            id: self.id.clone(),
            display_name: self.display_name.clone(),
            microphone_muted: self.microphone_muted,
            camera_muted: self.camera_muted,
            sources: self.forwardable_sources().collect(),
            hand_raised_at_ms: self.hand_raised_at_ms,
        }
    }

    /// Sources whose media can be forwarded now.
    pub fn forwardable_sources(&self) -> impl Iterator<Item = MediaSource> + '_ {
        self.slots
            .iter()
            .filter(|slot| slot.active && slot.track.as_ref().is_some_and(|t| t.codec.is_some()))
            .map(|slot| slot.source)
    }

    pub fn slot(&self, source: MediaSource) -> Option<&RecvSlot> {
        self.slots.iter().find(|slot| slot.source == source)
    }

    pub fn slot_mut(&mut self, source: MediaSource) -> Option<&mut RecvSlot> {
        self.slots.iter_mut().find(|slot| slot.source == source)
    }

    pub fn slot_for_track(&self, track_id: &str) -> Option<&RecvSlot> {
        self.slots
            .iter()
            .find(|slot| slot.track.as_ref().is_some_and(|t| t.track_id == track_id))
    }

    pub fn leg_for_track(&self, track_id: &str) -> Option<(ParticipantKey, MediaSource)> {
        self.legs
            .iter()
            .find(|(_, leg)| leg.track_id == track_id)
            .map(|(k, _)| *k)
    }
}
