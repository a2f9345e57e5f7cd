//! The media half of a synthetic participant: one `webrtc` peer connection that answers the
//! bridge's offers, sends stamped audio/video, and verifies and accounts what it receives.
//!
//! It knows nothing about signaling: [`MediaSession::apply_offer`] takes an offer SDP and the
//! offer's `tracks` map and returns the answer SDP. The signaling driver
//! ([`crate::SyntheticParticipant`]) feeds it; tests can feed it from any offerer.
//!
//! A reconnect needs a new peer connection (another bridge, new ICE and DTLS) but one participant:
//! [`MediaSession::renew`] builds it on the same accounting, so received streams, counters and
//! gaps accumulate across connections, and each published source keeps its SSRC and continues
//! its RTP sequence numbers, timestamps (advanced by the time the outage lasted) and stamp
//! sequences, which is what receivers' loss accounting and jitter buffers need.
//!
//! # How the local tracks reach the bridge's recvonly m-lines
//!
//! The tracks are added with `add_track` before any offer. In `rtc` 0.21.1 that creates a
//! `sendrecv` transceiver without a mid. `set_remote_description(offer)` then walks the offered
//! m-lines; one without a matching mid is matched by `satisfy_type_and_direction`: for a
//! remote `recvonly` m-line it takes the first mid-less local transceiver of the same kind whose
//! direction is `sendonly`, else `sendrecv`, sets its direction to `sendonly` and gives it the
//! offer's mid. Remote `sendonly` m-lines only match local `recvonly` transceivers, so the
//! bridge's forwarding m-lines never steal the local tracks and get fresh `recvonly`
//! transceivers, whatever their order in the offer. [`MediaSession::apply_offer`] checks the
//! outcome (see [`crate::ParticipantStats::local_mids`]) and fails if a recvonly slot was
//! offered but not associated. A recvonly slot for a source this participant does not publish
//! gets a transceiver without a sender; it is set `inactive` so the answer says so (the core
//! would otherwise answer `sendonly` with no SSRC).

use crate::error::ParticipantError;
use crate::participant::ParticipantOptions;
use crate::payload::{self, FrameSizes};
use crate::stats::{ParticipantStats, SentStats, StreamAccumulator};
use bridgemesh_bridge::keyframe_requests::{self, KeyframeRequestForwarder};
use bridgemesh_proto::ParticipantId;
use bridgemesh_proto::api::IceServer;
use bridgemesh_proto::signaling::{MediaSource, TrackInfo};
use bytes::Bytes;
use rtc::ice::mdns::MulticastDnsMode;
use rtc::media_stream::MediaStreamTrack;
use rtc::peer_connection::configuration::media_engine::{MIME_TYPE_OPUS, MIME_TYPE_VP8};
use rtc::rtcp::payload_feedbacks::full_intra_request::FullIntraRequest;
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtp;
use rtc::rtp_transceiver::RTCRtpTransceiverDirection;
use rtc::rtp_transceiver::rtp_sender::{
    RTCRtpCodec, RTCRtpCodecParameters, RTCRtpCodingParameters, RTCRtpEncodingParameters, RtpCodecKind,
};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::MissedTickBehavior;
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;
use webrtc::media_stream::track_local::{TrackLocal, TrackLocalEvent};
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};
use webrtc::peer_connection::{
    MediaEngine, PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler, RTCConfigurationBuilder,
    RTCIceGatheringState, RTCIceServer, RTCPeerConnectionState, RTCSessionDescription, Registry,
    SettingEngineBuilder, register_default_interceptors,
};
use webrtc::rtp_transceiver::RtpSender;

/// Most remote streams (and receive tasks) one participant tracks.
pub const MAX_REMOTE_STREAMS: usize = 1024;
/// Most `tracks` entries taken from one offer.
pub const MAX_TRACK_MAPPINGS: usize = 1024;
/// How long an answer waits for local ICE gathering (host candidates only: instant).
const GATHER_TIMEOUT: Duration = Duration::from_secs(2);
/// How long `close` lets tasks finish before aborting them.
const TASK_DRAIN_TIMEOUT: Duration = Duration::from_secs(1);
/// The address the peer connection binds unless [`ParticipantOptions::bind_ip`] names another.
const BIND_IP: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const AUDIO_PAYLOAD_TYPE: u8 = 111;
const AUDIO_CLOCK_RATE: u32 = 48_000;
const VIDEO_PAYLOAD_TYPE: u8 = 96;
const NO_PAYLOAD_TYPE: u16 = u16::MAX;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

mod publish;
mod receive;

use publish::*;
use receive::*;

#[derive(Default)]
struct Counters {
    keyframes_sent: AtomicU64,
    plis_received: AtomicU64,
    firs_received: AtomicU64,
    plis_sent: AtomicU64,
    offers_answered: AtomicU64,
    offers_failed: AtomicU64,
    unattributed_packets: AtomicU64,
    dropped_streams: AtomicU64,
}

type StreamKey = (ParticipantId, MediaSource);

/// What outlives one peer connection: the accounting of every stream received and sent, and the
/// publishing state each new connection continues from (see [`MediaSession::renew`]).
struct Accounting {
    local: ParticipantId,
    local_tag: u64,
    options: ParticipantOptions,
    /// The instant latency-to-first-packet and gaps are measured from.
    started: Instant,
    streams: Mutex<HashMap<StreamKey, Arc<Mutex<StreamAccumulator>>>>,
    counters: Counters,
    /// Touched only when a connection is built.
    sources: Mutex<BTreeMap<MediaSource, Arc<SourceState>>>,
}

/// State of one peer connection shared by the session, the event handler and the tasks.
struct Shared {
    accounting: Arc<Accounting>,
    pc: OnceLock<Weak<dyn PeerConnection>>,
    /// mid → remote participant and source, from the latest offer.
    mapping: Mutex<HashMap<String, TrackInfo>>,
    /// Bumped whenever `mapping` changes, so receive tasks re-resolve.
    mapping_epoch: AtomicU64,
    /// Remote tracks being read, by track id.
    receivers: Mutex<HashMap<String, ReceiverEntry>>,
    local_mids: Mutex<BTreeMap<MediaSource, String>>,
    keyframe_requested: AtomicBool,
    rtcp_sender_ssrc: AtomicU64,
    connection: watch::Sender<RTCPeerConnectionState>,
    gathering: watch::Sender<RTCIceGatheringState>,
    shutdown: watch::Sender<bool>,
    tasks: Mutex<JoinSet<()>>,
    /// When the first attributed media packet arrived on this connection.
    first_media: watch::Sender<Option<Instant>>,
    /// Fast path for `first_media`, read once per packet.
    got_media: AtomicBool,
}

impl Shared {
    fn is_connected(&self) -> bool {
        *self.connection.borrow() == RTCPeerConnectionState::Connected
    }

    fn is_shut_down(&self) -> bool {
        *self.shutdown.borrow()
    }

    fn spawn<F>(&self, task: F) -> bool
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        let mut tasks = lock(&self.tasks);
        while tasks.try_join_next().is_some() {}
        if self.is_shut_down() {
            return false;
        }
        tasks.spawn(task);
        true
    }

    fn spawn_receiver(self: &Arc<Self>, track: Arc<dyn TrackRemote>) {
        {
            let mut tasks = lock(&self.tasks);
            while tasks.try_join_next().is_some() {}
            // A few tasks are the senders; the rest read remote tracks.
            if tasks.len() >= MAX_REMOTE_STREAMS + 4 {
                self.accounting
                    .counters
                    .dropped_streams
                    .fetch_add(1, Ordering::Relaxed);
                tracing::warn!("not reading another remote track: {MAX_REMOTE_STREAMS} already");
                return;
            }
        }
        self.spawn(receive_loop(Arc::clone(self), track));
    }

    /// The mid of the transceiver whose receiver carries `track_id`.
    async fn resolve_mid(&self, track_id: &str) -> Option<String> {
        let pc = self.pc.get()?.upgrade()?;
        for t in pc.get_transceivers().await {
            let Ok(Some(receiver)) = t.receiver().await else {
                continue;
            };
            if receiver.track().track_id().await == track_id {
                return t.mid().await.ok().flatten();
            }
        }
        None
    }

    /// Where packets on `mid` go under the current mapping.
    fn bind(&self, mid: &str, track_id: &str) -> Option<Binding> {
        let info = lock(&self.mapping).get(mid).cloned();
        let key = info.map(|info| (info.participant_id, info.source));
        if let Some(entry) = lock(&self.receivers).get_mut(track_id) {
            entry.key = key.clone();
        }
        let key = key?;
        let accumulator = {
            let mut streams = lock(&self.accounting.streams);
            match streams.get(&key) {
                Some(acc) => Arc::clone(acc),
                None if streams.len() >= MAX_REMOTE_STREAMS => {
                    self.accounting
                        .counters
                        .dropped_streams
                        .fetch_add(1, Ordering::Relaxed);
                    return None;
                }
                None => {
                    let acc = Arc::new(Mutex::new(StreamAccumulator::new()));
                    streams.insert(key.clone(), Arc::clone(&acc));
                    acc
                }
            }
        };
        Some(Binding {
            tag: payload::publisher_tag(&key.0),
            source: key.1,
            accumulator,
        })
    }
}

/// What one m-line of an offer asks for.
struct OfferedSection {
    mid: String,
    kind: RtpCodecKind,
    /// The offerer's direction (`recvonly`: it wants this participant to send).
    direction: RTCRtpTransceiverDirection,
}

fn offered_sections(offer: &RTCSessionDescription) -> Result<Vec<OfferedSection>, ParticipantError> {
    let parsed = offer
        .unmarshal()
        .map_err(|e| ParticipantError::Protocol(format!("offer SDP: {e}")))?;
    let mut out = Vec::new();
    for media in &parsed.media_descriptions {
        let Some(Some(mid)) = media.attribute("mid") else {
            continue;
        };
        let kind = RtpCodecKind::from(media.media_name.media.as_str());
        let direction = if media.media_name.port.value == 0 || media.attribute("inactive").is_some() {
            RTCRtpTransceiverDirection::Inactive
        } else if media.attribute("recvonly").is_some() {
            RTCRtpTransceiverDirection::Recvonly
        } else if media.attribute("sendonly").is_some() {
            RTCRtpTransceiverDirection::Sendonly
        } else {
            RTCRtpTransceiverDirection::Sendrecv
        };
        out.push(OfferedSection {
            mid: mid.to_owned(),
            kind,
            direction,
        });
    }
    Ok(out)
}

/// One peer connection to the bridge, answering its offers. See the module docs.
pub struct MediaSession {
    shared: Arc<Shared>,
    pc: Arc<dyn PeerConnection>,
    sources: Vec<Arc<LocalSource>>,
    closed: AtomicBool,
}

impl MediaSession {
    /// Builds the peer connection (bound to port 0 of [`ParticipantOptions::bind_ip`], by
    /// default `127.0.0.1`, only), adds the published tracks and starts the sender tasks; they
    /// send once the connection is up and the source negotiated. `started` is the instant
    /// latency-to-first-packet and gaps are measured from.
    pub async fn new(
        local: &ParticipantId,
        options: &ParticipantOptions,
        ice_servers: &[IceServer],
        started: Instant,
    ) -> Result<Self, ParticipantError> {
        let accounting = Arc::new(Accounting {
            local: local.clone(),
            local_tag: payload::publisher_tag(local),
            options: options.clone(),
            started,
            streams: Mutex::new(HashMap::new()),
            counters: Counters::default(),
            sources: Mutex::new(BTreeMap::new()),
        });
        Self::connect(accounting, ice_servers).await
    }

    /// A new peer connection (new ICE and DTLS, as another bridge needs) that continues this
    /// session: the same SSRCs with RTP sequence numbers, timestamps and stamp sequences going
    /// on, and the same received streams and counters accumulating. Close this session first,
    /// or both send at once.
    pub async fn renew(&self, ice_servers: &[IceServer]) -> Result<Self, ParticipantError> {
        Self::connect(Arc::clone(&self.shared.accounting), ice_servers).await
    }

    async fn connect(
        accounting: Arc<Accounting>,
        ice_servers: &[IceServer],
    ) -> Result<Self, ParticipantError> {
        let (shutdown, _) = watch::channel(false);
        let shared = Arc::new(Shared {
            accounting: Arc::clone(&accounting),
            pc: OnceLock::new(),
            mapping: Mutex::new(HashMap::new()),
            mapping_epoch: AtomicU64::new(0),
            receivers: Mutex::new(HashMap::new()),
            local_mids: Mutex::new(BTreeMap::new()),
            keyframe_requested: AtomicBool::new(false),
            rtcp_sender_ssrc: AtomicU64::new(0),
            connection: watch::channel(RTCPeerConnectionState::New).0,
            gathering: watch::channel(RTCIceGatheringState::New).0,
            shutdown,
            tasks: Mutex::new(JoinSet::new()),
            first_media: watch::channel(None).0,
            got_media: AtomicBool::new(false),
        });
        let local = &accounting.local;
        let options = &accounting.options;

        let mut media_engine = MediaEngine::default();
        media_engine.register_codec(
            RTCRtpCodecParameters {
                rtp_codec: opus(),
                payload_type: AUDIO_PAYLOAD_TYPE,
            },
            RtpCodecKind::Audio,
        )?;
        media_engine.register_codec(
            RTCRtpCodecParameters {
                rtp_codec: vp8(),
                payload_type: VIDEO_PAYLOAD_TYPE,
            },
            RtpCodecKind::Video,
        )?;
        let registry = register_default_interceptors(Registry::new(), &mut media_engine)?
            .with(keyframe_requests::SLOT, KeyframeRequestForwarder::default());
        let mut setting_engine =
            SettingEngineBuilder::new().with_multicast_dns_mode(MulticastDnsMode::Disabled);
        if options.srtp_cm_only {
            setting_engine = setting_engine.with_srtp_protection_profiles(vec![
                rtc::dtls::extension::extension_use_srtp::SrtpProtectionProfile::Srtp_Aes128_Cm_Hmac_Sha1_80,
            ]);
        }
        let setting_engine = setting_engine.build();
        let config = RTCConfigurationBuilder::new()
            .with_ice_servers(
                ice_servers
                    .iter()
                    .map(|s| RTCIceServer {
                        urls: s.urls.clone(),
                        username: s.username.clone().unwrap_or_default(),
                        credential: s.credential.clone().unwrap_or_default(),
                    })
                    .collect(),
            )
            .build();
        let pc = PeerConnectionBuilder::new()
            .with_configuration(config)
            .with_media_engine(media_engine)
            .with_interceptor_registry(registry)
            .with_setting_engine(setting_engine)
            .with_handler(Arc::new(Handler {
                shared: Arc::clone(&shared),
            }))
            .with_udp_addrs(vec![
                SocketAddr::new(options.bind_ip.unwrap_or(BIND_IP), 0).to_string(),
            ])
            .build()
            .await?;
        let pc: Arc<dyn PeerConnection> = Arc::new(pc);
        let weak: Weak<dyn PeerConnection> = Arc::downgrade(&pc);
        let _ = shared.pc.set(weak);

        let mut session = MediaSession {
            shared,
            pc,
            sources: Vec::new(),
            closed: AtomicBool::new(false),
        };
        // From here on a failure must close the connection: `Drop` does.
        let wanted = [
            (
                options.publish_audio,
                MediaSource::Microphone,
                RtpCodecKind::Audio,
                opus(),
                MIME_TYPE_OPUS,
            ),
            (
                options.publish_video,
                MediaSource::Camera,
                RtpCodecKind::Video,
                vp8(),
                MIME_TYPE_VP8,
            ),
        ];
        for (publish, source, kind, codec, mime) in wanted {
            if !publish {
                continue;
            }
            let state = Arc::clone(
                lock(&accounting.sources)
                    .entry(source)
                    .or_insert_with(|| Arc::new(SourceState::new())),
            );
            let ssrc = state.ssrc;
            let track_id = format!("{local}-{}", source.as_str());
            let track = Arc::new(TrackLocalStaticRTP::new(MediaStreamTrack::new(
                format!("bridgemesh-{local}"),
                track_id.clone(),
                format!("synthetic {}", source.as_str()),
                kind,
                vec![RTCRtpEncodingParameters {
                    rtp_coding_parameters: RTCRtpCodingParameters {
                        ssrc: Some(ssrc),
                        ..Default::default()
                    },
                    codec,
                    ..Default::default()
                }],
            )));
            let sender = session
                .pc
                .add_track(Arc::clone(&track) as Arc<dyn TrackLocal>)
                .await?;
            session
                .shared
                .rtcp_sender_ssrc
                .compare_exchange(0, u64::from(ssrc), Ordering::AcqRel, Ordering::Acquire)
                .ok();
            session.sources.push(Arc::new(LocalSource {
                source,
                mime,
                state,
                track_id,
                track,
                sender,
                payload_type: AtomicU16::new(NO_PAYLOAD_TYPE),
            }));
        }

        let sizes = payload::frame_sizes(
            options.video_bitrate_bps,
            options.video_fps,
            options.keyframe_interval,
        );
        for src in &session.sources {
            let shared = Arc::clone(&session.shared);
            if src.source.is_audio() {
                shared.spawn(audio_loop(Arc::clone(&shared), Arc::clone(src)));
            } else {
                shared.spawn(video_loop(
                    Arc::clone(&shared),
                    Arc::clone(src),
                    options.video_fps,
                    options.keyframe_interval,
                    sizes,
                ));
                shared.spawn(video_rtcp_loop(Arc::clone(&shared), Arc::clone(src)));
            }
        }
        Ok(session)
    }

    /// Applies one offer from the bridge and returns the answer SDP (with this side's host
    /// candidate). `tracks` maps the offer's sending mids to remote participants and sources;
    /// it replaces the previous offer's map. Offers must be applied one at a time, in order.
    pub async fn apply_offer(&self, sdp: String, tracks: &[TrackInfo]) -> Result<String, ParticipantError> {
        let result = self.apply_offer_inner(sdp, tracks).await;
        let counter = match result {
            Ok(_) => &self.shared.accounting.counters.offers_answered,
            Err(_) => &self.shared.accounting.counters.offers_failed,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        result
    }

    async fn apply_offer_inner(&self, sdp: String, tracks: &[TrackInfo]) -> Result<String, ParticipantError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(ParticipantError::WebRtc("media session is closed".into()));
        }
        let offer = RTCSessionDescription::offer(sdp)
            .map_err(|e| ParticipantError::Protocol(format!("offer SDP: {e}")))?;
        let sections = offered_sections(&offer)?;

        if tracks.len() > MAX_TRACK_MAPPINGS {
            tracing::warn!(
                "offer maps {} tracks; keeping the first {MAX_TRACK_MAPPINGS}",
                tracks.len()
            );
        }
        {
            let mut mapping = lock(&self.shared.mapping);
            *mapping = tracks
                .iter()
                .take(MAX_TRACK_MAPPINGS)
                .map(|t| (t.mid.clone(), t.clone()))
                .collect();
        }
        self.shared.mapping_epoch.fetch_add(1, Ordering::AcqRel);

        self.pc.set_remote_description(offer).await?;

        // Which transceiver got which offered m-line.
        let recvonly: HashSet<&str> = sections
            .iter()
            .filter(|s| s.direction == RTCRtpTransceiverDirection::Recvonly)
            .map(|s| s.mid.as_str())
            .collect();
        let mut local_mids = BTreeMap::new();
        let mut unused_slots = Vec::new();
        for t in self.pc.get_transceivers().await {
            let Some(mid) = t.mid().await? else { continue };
            match t.sender().await? {
                Some(sender) => {
                    let track_id = sender.track().track_id().await;
                    let direction = t.direction().await?;
                    let sending = matches!(
                        direction,
                        RTCRtpTransceiverDirection::Sendonly | RTCRtpTransceiverDirection::Sendrecv
                    );
                    if let Some(src) = self.sources.iter().find(|s| s.track_id == track_id)
                        && sending
                    {
                        local_mids.insert(src.source, mid);
                    }
                }
                None if recvonly.contains(mid.as_str()) => unused_slots.push((t, mid)),
                None => {}
            }
        }
        for src in &self.sources {
            let kind = if src.source.is_audio() {
                RtpCodecKind::Audio
            } else {
                RtpCodecKind::Video
            };
            if !local_mids.contains_key(&src.source)
                && let Some(slot) = sections
                    .iter()
                    .find(|s| s.kind == kind && s.direction == RTCRtpTransceiverDirection::Recvonly)
            {
                return Err(ParticipantError::WebRtc(format!(
                    "the offer's recvonly {kind} m-line (mid {}) was not associated with the local {} track",
                    slot.mid,
                    src.source.as_str()
                )));
            }
        }
        for (t, mid) in unused_slots {
            if t.direction().await? == RTCRtpTransceiverDirection::Sendonly {
                tracing::debug!(mid, "nothing to send on recvonly slot; answering inactive");
                t.set_direction(RTCRtpTransceiverDirection::Inactive).await?;
            }
        }

        let answer = self.pc.create_answer(None).await?;
        self.pc.set_local_description(answer).await?;
        let mut gathering = self.shared.gathering.subscribe();
        if tokio::time::timeout(
            GATHER_TIMEOUT,
            gathering.wait_for(|s| *s == RTCIceGatheringState::Complete),
        )
        .await
        .is_err()
        {
            tracing::warn!("ICE gathering not complete after {GATHER_TIMEOUT:?}; answering anyway");
        }
        let local = self
            .pc
            .local_description()
            .await
            .ok_or_else(|| ParticipantError::WebRtc("no local description after answering".into()))?;

        for src in &self.sources {
            let payload_type = if local_mids.contains_key(&src.source) {
                let parameters = src.sender.get_parameters().await?;
                parameters
                    .rtp_parameters
                    .codecs
                    .iter()
                    .find(|c| c.rtp_codec.mime_type.eq_ignore_ascii_case(src.mime))
                    .map_or(NO_PAYLOAD_TYPE, |c| u16::from(c.payload_type))
            } else {
                NO_PAYLOAD_TYPE
            };
            src.payload_type.store(payload_type, Ordering::Release);
        }
        *lock(&self.shared.local_mids) = local_mids;
        Ok(local.sdp)
    }

    /// Sends a PLI for the camera track received from `from`.
    pub async fn request_keyframe(&self, from: &ParticipantId) -> Result<(), ParticipantError> {
        let wanted = (from.clone(), MediaSource::Camera);
        let found = lock(&self.shared.receivers)
            .values()
            .find(|r| r.key.as_ref() == Some(&wanted))
            .map(|r| (Arc::clone(&r.track), r.ssrc));
        let Some((track, ssrc)) = found else {
            return Err(ParticipantError::NotReceiving {
                participant: from.clone(),
                media: MediaSource::Camera,
            });
        };
        let media_ssrc = match ssrc {
            Some(ssrc) => ssrc,
            None => track
                .ssrcs()
                .await
                .first()
                .copied()
                .ok_or_else(|| ParticipantError::NotReceiving {
                    participant: from.clone(),
                    media: MediaSource::Camera,
                })?,
        };
        let sender_ssrc = self.shared.rtcp_sender_ssrc.load(Ordering::Acquire) as u32;
        track
            .write_rtcp(vec![Box::new(PictureLossIndication {
                sender_ssrc,
                media_ssrc,
            })])
            .await?;
        self.shared
            .accounting
            .counters
            .plis_sent
            .fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// The peer connection's current state.
    pub fn connection_state(&self) -> RTCPeerConnectionState {
        *self.shared.connection.borrow()
    }

    /// Follows the peer connection's state.
    pub(crate) fn watch_connection(&self) -> watch::Receiver<RTCPeerConnectionState> {
        self.shared.connection.subscribe()
    }

    /// Becomes `Some(arrival)` with the first media packet attributed to a remote stream on this
    /// connection.
    pub(crate) fn watch_first_media(&self) -> watch::Receiver<Option<Instant>> {
        self.shared.first_media.subscribe()
    }

    /// Snapshot of the media counters, accumulated over this session and the ones it renewed
    /// (signaling fields left at their defaults).
    pub fn stats(&self) -> ParticipantStats {
        let accounting = &self.shared.accounting;
        let c = &accounting.counters;
        let streams: Vec<(StreamKey, Arc<Mutex<StreamAccumulator>>)> = lock(&accounting.streams)
            .iter()
            .map(|(k, v)| (k.clone(), Arc::clone(v)))
            .collect();
        ParticipantStats {
            sent: lock(&accounting.sources)
                .iter()
                .map(|(source, state)| (*source, state.stats()))
                .collect(),
            received: streams
                .into_iter()
                .map(|(k, acc)| (k, lock(&acc).snapshot()))
                .collect(),
            keyframes_sent: c.keyframes_sent.load(Ordering::Relaxed),
            plis_received: c.plis_received.load(Ordering::Relaxed),
            firs_received: c.firs_received.load(Ordering::Relaxed),
            plis_sent: c.plis_sent.load(Ordering::Relaxed),
            offers_answered: c.offers_answered.load(Ordering::Relaxed),
            offers_failed: c.offers_failed.load(Ordering::Relaxed),
            local_mids: lock(&self.shared.local_mids).clone(),
            unattributed_packets: c.unattributed_packets.load(Ordering::Relaxed),
            dropped_streams: c.dropped_streams.load(Ordering::Relaxed),
            connection_state: self.connection_state(),
            ..Default::default()
        }
    }

    /// Stops every task and closes the peer connection (DTLS close_notify is sent). Idempotent.
    pub async fn close(&self) {
        if self.closed.swap(true, Ordering::AcqRel) {
            return;
        }
        self.shared.shutdown.send_replace(true);
        if let Err(e) = self.pc.close().await {
            tracing::debug!("closing the peer connection: {e}");
        }
        // The handler is not always told of a close it did not see coming; stats should say it.
        self.shared
            .connection
            .send_replace(RTCPeerConnectionState::Closed);
        let mut tasks = std::mem::take(&mut *lock(&self.shared.tasks));
        let drained = tokio::time::timeout(TASK_DRAIN_TIMEOUT, async {
            while tasks.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!("media tasks still running after {TASK_DRAIN_TIMEOUT:?}; aborting them");
        }
        tasks.shutdown().await;
    }
}

impl Drop for MediaSession {
    fn drop(&mut self) {
        if self.closed.swap(true, Ordering::AcqRel) {
            return;
        }
        self.shared.shutdown.send_replace(true);
        lock(&self.shared.tasks).abort_all();
        // Without `close` the connection's driver would keep running on the runtime.
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            let pc = Arc::clone(&self.pc);
            handle.spawn(async move {
                let _ = pc.close().await;
            });
        }
    }
}
