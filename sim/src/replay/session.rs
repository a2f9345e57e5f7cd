//! One replay participant's connection: the documented join (`POST …/join`, the signaling
//! WebSocket, `hello` → `welcome` → `offer` → `answer`, every later offer answered too), a
//! sans-IO `rtc` peer connection on a socket of its own for ICE, DTLS, consent and RTCP, and the
//! SRTP keys exported from its DTLS handshake (RFC 5764 §4.2, the bridge's own
//! [`export_srtp_keys`]). RTP never enters `rtc`: datagrams whose first byte says RTP (RFC 7983)
//! go to the [`Receiver`]; what the participant publishes is sealed by [`super::tx::Source`] and
//! written by the pacer straight onto the same socket.

use super::rx::{Receiver, RxCounters};
use crate::control_api::{ControlClient, JoinAnswer};
use crate::error::ParticipantError;
use crate::participant::ParticipantOptions;
use bridgemesh_bridge::driver::socket::{MediaSocket, RecvBatch, SendBatch};
use bridgemesh_bridge::fastpath::{SRTP_PROFILES, SessionKeys, export_srtp_keys};
use bridgemesh_proto::signaling::{ClientMessage, ServerMessage};
use bridgemesh_proto::{ParticipantId, RoomId};
use bytes::BytesMut;
use futures_util::{SinkExt, StreamExt};
use rtc::media_stream::MediaStreamTrack;
use rtc::peer_connection::RTCPeerConnection;
use rtc::peer_connection::RTCPeerConnectionBuilder;
use rtc::peer_connection::configuration::RTCConfigurationBuilder;
use rtc::peer_connection::configuration::media_engine::{MIME_TYPE_VP8, MediaEngine};
use rtc::peer_connection::configuration::setting_engine::SettingEngineBuilder;
use rtc::peer_connection::event::RTCPeerConnectionEvent;
use rtc::peer_connection::sdp::RTCSessionDescription;
use rtc::peer_connection::state::RTCPeerConnectionState;
use rtc::peer_connection::transport::{CandidateConfig, CandidateHostConfig, RTCIceCandidate};
use rtc::rtp_transceiver::RTCRtpTransceiverDirection;
use rtc::rtp_transceiver::rtp_sender::{
    RTCRtpCodec, RTCRtpCodingParameters, RTCRtpEncodingParameters, RtpCodecKind,
};
use rtc::sansio::Protocol;
use rtc::shared::{TaggedBytesMut, TransportContext, TransportProtocol};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{oneshot, watch};
use tokio_tungstenite::tungstenite::Message;

/// Largest server → client signaling message accepted.
const SERVER_MESSAGE_MAX_BYTES: usize = 8 * 1024 * 1024;
/// Socket buffers asked for (the kernel caps them at its `rmem_max`/`wmem_max`).
const SOCKET_BUFFER_BYTES: usize = 8 << 20;
/// How often the counters are copied out for [`ReplayParticipant::counters`].
const SNAPSHOT_INTERVAL: Duration = Duration::from_millis(100);
/// Longest wait between two timer checks of the peer connection.
const MAX_IDLE: Duration = Duration::from_millis(200);

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// What a publishing participant hands the pacer once DTLS is done.
pub struct Publishing {
    pub socket: Arc<MediaSocket>,
    pub bridge: SocketAddr,
    pub keys: bridgemesh_bridge::fastpath::srtp::SrtpKeys,
    pub ssrc: u32,
    pub payload_type: u8,
    pub tag: u64,
    /// The sequence number of the first packet (random, as a browser's is).
    pub first_seq: u16,
}

/// The connected state `join` returns for: keys in hand, the publishing half if any.
struct Connected {
    publishing: Option<Publishing>,
}

struct Shared {
    counters: Mutex<RxCounters>,
    latency_us: Mutex<Vec<u32>>,
    error: Mutex<Option<String>>,
}

/// A participant of the cheap load generator (see the [module](super) documentation).
pub struct ReplayParticipant {
    pub participant_id: ParticipantId,
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
    publishing: Option<Publishing>,
}

impl ReplayParticipant {
    /// Joins `room` through control at `control_url` and returns once DTLS has completed and
    /// the SRTP keys are exported. `publish`: offer one video stream the pacer will feed.
    pub async fn join(
        control_url: &str,
        room: &RoomId,
        display_name: &str,
        publish: bool,
        timeout: Duration,
    ) -> Result<Self, ParticipantError> {
        tokio::time::timeout(
            timeout,
            Self::join_inner(control_url, room, display_name, publish),
        )
        .await
        .map_err(|_| ParticipantError::Timeout(format!("replay join of {room} after {timeout:?}")))?
    }

    async fn join_inner(
        control_url: &str,
        room: &RoomId,
        display_name: &str,
        publish: bool,
    ) -> Result<Self, ParticipantError> {
        let options = ParticipantOptions::new(display_name);
        let control = ControlClient::new(control_url, None)?;
        let join = match control.join(room, &options).await? {
            JoinAnswer::Joined(join) => *join,
            JoinAnswer::Lobby(_) => {
                return Err(ParticipantError::Protocol(format!("{room} has a lobby")));
            }
        };
        let config = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
            .max_message_size(Some(SERVER_MESSAGE_MAX_BYTES))
            .max_frame_size(Some(SERVER_MESSAGE_MAX_BYTES));
        let (mut ws, _) =
            tokio_tungstenite::connect_async_with_config(join.signaling_url.as_str(), Some(config), true)
                .await
                .map_err(|e| {
                    ParticipantError::Signaling(format!("connecting to {}: {e}", join.signaling_url))
                })?;
        // `media` left at its default (publish and receive), which every bridge version reads.
        send(
            &mut ws,
            &ClientMessage::Hello {
                ticket: join.ticket.clone(),
                media: Default::default(),
            },
        )
        .await?;

        let socket = bind_socket()?;
        let local_addr = socket.local_addr().map_err(io_error)?;
        let socket = Arc::new(MediaSocket::new(socket).map_err(io_error)?);
        let tag = crate::payload::publisher_tag(&join.participant_id);
        let ssrc = rand::random::<u32>() | 1;
        let pc = build_peer_connection(local_addr, publish.then_some(ssrc), &join.participant_id)
            .map_err(|e| ParticipantError::WebRtc(e.to_string()))?;
        let shared = Arc::new(Shared {
            counters: Mutex::new(RxCounters::default()),
            latency_us: Mutex::new(Vec::new()),
            error: Mutex::new(None),
        });
        let (stop, stop_rx) = watch::channel(false);
        let (connected_tx, connected_rx) = oneshot::channel();
        let gro = socket.gro_segments();
        let driver = Driver {
            pc,
            ws,
            socket: Arc::clone(&socket),
            local_addr,
            send: SendBatch::default(),
            batch: RecvBatch::new(gro),
            rx: Receiver::new(),
            media_addr: None,
            publish_ssrc: publish.then_some(ssrc),
            payload_type: None,
            tag,
            connected: Some(connected_tx),
            keys_pending: false,
            shared: Arc::clone(&shared),
            stop: stop_rx,
            last_snapshot: Instant::now(),
        };
        let task = tokio::spawn(driver.run());
        let connected = match connected_rx.await {
            Ok(Ok(connected)) => connected,
            Ok(Err(err)) => {
                task.abort();
                return Err(err);
            }
            Err(_) => {
                let ended = task.await;
                let why = shared.error.lock().map(|e| e.clone()).ok().flatten();
                return Err(ParticipantError::Signaling(why.unwrap_or_else(|| {
                    format!("session ended before DTLS completed ({ended:?})")
                })));
            }
        };
        Ok(Self {
            participant_id: join.participant_id,
            shared,
            stop,
            task,
            publishing: connected.publishing,
        })
    }

    /// The publishing half, for the pacer (once; `None` for a receiver).
    pub fn take_publishing(&mut self) -> Option<Publishing> {
        self.publishing.take()
    }

    /// What was received so far (copied out every 100 ms).
    pub fn counters(&self) -> RxCounters {
        *self.shared.counters.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Latency of the verified samples so far, µs.
    pub fn latency_us(&self) -> Vec<u32> {
        self.shared
            .latency_us
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Why the session ended, if it did.
    pub fn error(&self) -> Option<String> {
        self.shared
            .error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Sends `leave` and waits (briefly) for the session to end.
    pub async fn leave(self) {
        let _ = self.stop.send(true);
        let mut task = self.task;
        if tokio::time::timeout(Duration::from_secs(2), &mut task)
            .await
            .is_err()
        {
            task.abort();
        }
    }
}

fn io_error(err: std::io::Error) -> ParticipantError {
    ParticipantError::Connect(format!("media socket: {err}"))
}

fn bind_socket() -> Result<std::net::UdpSocket, ParticipantError> {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None).map_err(io_error)?;
    // Best effort: the kernel caps both; a smaller buffer shows up as the generator's own loss.
    let _ = socket.set_recv_buffer_size(SOCKET_BUFFER_BYTES);
    let _ = socket.set_send_buffer_size(SOCKET_BUFFER_BYTES);
    let addr: SocketAddr = ([127, 0, 0, 1], 0).into();
    socket.bind(&addr.into()).map_err(io_error)?;
    Ok(socket.into())
}

fn build_peer_connection(
    local_addr: SocketAddr,
    publish_ssrc: Option<u32>,
    participant_id: &ParticipantId,
) -> Result<RTCPeerConnection, rtc::shared::error::Error> {
    let mut media_engine = MediaEngine::default();
    media_engine.register_default_codecs()?;
    let setting_engine = SettingEngineBuilder::new()
        .with_srtp_protection_profiles(SRTP_PROFILES.to_vec())
        .build();
    let mut pc = RTCPeerConnectionBuilder::new()
        .with_configuration(RTCConfigurationBuilder::new().build())
        .with_setting_engine(setting_engine)
        .with_media_engine(media_engine)
        .build(Instant::now())?;
    if let Some(ssrc) = publish_ssrc {
        let codec = RTCRtpCodec {
            mime_type: MIME_TYPE_VP8.to_owned(),
            clock_rate: crate::payload::VIDEO_CLOCK_RATE,
            channels: 0,
            sdp_fmtp_line: String::new(),
            rtcp_feedback: vec![],
        };
        pc.add_track(MediaStreamTrack::new(
            format!("bridgemesh-{participant_id}"),
            format!("{participant_id}-camera"),
            "replay camera".to_owned(),
            RtpCodecKind::Video,
            vec![RTCRtpEncodingParameters {
                rtp_coding_parameters: RTCRtpCodingParameters {
                    ssrc: Some(ssrc),
                    ..Default::default()
                },
                codec,
                ..Default::default()
            }],
        ))?;
    }
    let candidate = CandidateHostConfig {
        base_config: CandidateConfig {
            network: "udp".to_owned(),
            address: local_addr.ip().to_string(),
            port: local_addr.port(),
            component: 1,
            ..Default::default()
        },
        ..Default::default()
    }
    .new_candidate_host()?;
    pc.add_local_candidate(RTCIceCandidate::from(&candidate).to_json()?)?;
    Ok(pc)
}

async fn send(ws: &mut Ws, message: &ClientMessage) -> Result<(), ParticipantError> {
    let text = serde_json::to_string(message).map_err(|e| ParticipantError::Protocol(e.to_string()))?;
    ws.send(Message::text(text))
        .await
        .map_err(|e| ParticipantError::Signaling(e.to_string()))
}

/// The mids of the offer's m-sections the bridge receives on (`recvonly`): its receiving slots.
fn recvonly_mids(sdp: &str) -> Vec<String> {
    let mut mids = Vec::new();
    for section in sdp.split("\nm=").skip(1) {
        let mut mid = None;
        let mut recvonly = false;
        for line in section.lines() {
            let line = line.trim_end();
            if let Some(m) = line.strip_prefix("a=mid:") {
                mid = Some(m.to_owned());
            }
            recvonly |= line == "a=recvonly";
        }
        if let (Some(mid), true) = (mid, recvonly) {
            mids.push(mid);
        }
    }
    mids
}

/// The payload type the answer gives VP8 (what the bridge expects on the published stream).
fn vp8_payload_type(sdp: &str) -> Option<u8> {
    sdp.lines().find_map(|line| {
        let rest = line.trim_end().strip_prefix("a=rtpmap:")?;
        let (pt, codec) = rest.split_once(' ')?;
        codec.eq_ignore_ascii_case("VP8/90000").then(|| pt.parse().ok())?
    })
}

/// First byte of an RTP or RTCP datagram (RFC 7983).
fn is_rtp_or_rtcp(datagram: &[u8]) -> bool {
    datagram.first().is_some_and(|b| (128..=191).contains(b))
}

/// RTCP packet types 192..=223 sit where RTP has its marker bit and payload type (RFC 5761).
fn is_rtcp(datagram: &[u8]) -> bool {
    datagram.get(1).is_some_and(|b| (192..=223).contains(b))
}

fn unix_micros() -> u64 {
    crate::payload::unix_micros()
}

struct Driver {
    pc: RTCPeerConnection,
    ws: Ws,
    socket: Arc<MediaSocket>,
    local_addr: SocketAddr,
    send: SendBatch,
    batch: RecvBatch,
    rx: Receiver,
    /// Where DTLS and SRTCP go: the bridge's media address on the selected pair.
    media_addr: Option<SocketAddr>,
    publish_ssrc: Option<u32>,
    payload_type: Option<u8>,
    tag: u64,
    connected: Option<oneshot::Sender<Result<Connected, ParticipantError>>>,
    /// Connected, but the keys could not be reached yet (no sender or receiver).
    keys_pending: bool,
    shared: Arc<Shared>,
    stop: watch::Receiver<bool>,
    last_snapshot: Instant,
}

impl Driver {
    async fn run(mut self) {
        let result = self.serve().await;
        self.snapshot();
        if let Err(err) = result {
            *self.shared.error.lock().unwrap_or_else(|e| e.into_inner()) = Some(err.to_string());
            if let Some(connected) = self.connected.take() {
                let _ = connected.send(Err(err));
            }
        }
        let _ = self.pc.close();
    }

    async fn serve(&mut self) -> Result<(), ParticipantError> {
        loop {
            self.flush_pc()?;
            if self.last_snapshot.elapsed() >= SNAPSHOT_INTERVAL {
                self.snapshot();
            }
            let now = Instant::now();
            let deadline = self
                .pc
                .poll_timeout()
                .map_or(now + MAX_IDLE, |at| at.min(now + MAX_IDLE));
            tokio::select! {
                biased;
                _ = self.stop.changed() => {
                    let _ = send(&mut self.ws, &ClientMessage::Leave).await;
                    let _ = tokio::time::timeout(Duration::from_millis(500), self.ws.close(None)).await;
                    return Ok(());
                }
                readable = self.socket.readable() => {
                    readable.map_err(io_error)?;
                    self.read_socket()?;
                }
                message = self.ws.next() => self.on_signaling(message).await?,
                () = tokio::time::sleep_until(deadline.into()) => {
                    let now = Instant::now();
                    if self.pc.poll_timeout().is_some_and(|at| at <= now) {
                        self.pc.handle_timeout(now).map_err(|e| ParticipantError::WebRtc(e.to_string()))?;
                    }
                }
            }
        }
    }

    fn snapshot(&mut self) {
        self.last_snapshot = Instant::now();
        *self.shared.counters.lock().unwrap_or_else(|e| e.into_inner()) = self.rx.counters();
        let latency = self.rx.latency_us();
        let mut kept = self.shared.latency_us.lock().unwrap_or_else(|e| e.into_inner());
        if kept.len() != latency.len() {
            kept.clear();
            kept.extend_from_slice(latency);
        }
    }

    fn read_socket(&mut self) -> Result<(), ParticipantError> {
        loop {
            match self.socket.try_recv(&mut self.batch) {
                Ok(_) => {}
                Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => return Ok(()),
                Err(err) => return Err(io_error(err)),
            }
            let now = Instant::now();
            let now_us = unix_micros();
            for (from, datagram) in self.batch.datagrams() {
                if is_rtp_or_rtcp(datagram) && !is_rtcp(datagram) {
                    self.rx.on_rtp(datagram, now_us);
                    continue;
                }
                let read = self.pc.handle_read(TaggedBytesMut {
                    now,
                    transport: TransportContext {
                        local_addr: self.local_addr,
                        peer_addr: from,
                        ecn: None,
                        transport_protocol: TransportProtocol::UDP,
                    },
                    message: BytesMut::from(datagram),
                });
                if let Err(err) = read {
                    tracing::trace!(%err, "datagram refused by the peer connection");
                }
            }
        }
    }

    /// Sends what the peer connection wrote and acts on its events.
    fn flush_pc(&mut self) -> Result<(), ParticipantError> {
        while let Some(datagram) = self.pc.poll_write() {
            if datagram.message.first().is_some_and(|b| (20..=191).contains(b)) {
                self.media_addr = Some(datagram.transport.peer_addr);
            }
            self.send
                .push(&self.socket, datagram.transport.peer_addr, &datagram.message);
        }
        self.send.flush(&self.socket);
        while self.pc.poll_read().is_some() {}
        while let Some(event) = self.pc.poll_event() {
            if let RTCPeerConnectionEvent::OnConnectionStateChangeEvent(state) = event {
                match state {
                    RTCPeerConnectionState::Connected => self.on_connected()?,
                    RTCPeerConnectionState::Failed | RTCPeerConnectionState::Closed => {
                        return Err(ParticipantError::WebRtc(format!("peer connection {state}")));
                    }
                    _ => {}
                }
            }
        }
        Ok(())
    }

    fn on_connected(&mut self) -> Result<(), ParticipantError> {
        let Some(connected) = self.connected.take() else {
            return Ok(());
        };
        // `rtc` reaches the DTLS transport only through a sender or a receiver: a participant
        // that publishes nothing has none until the bridge offers it a first stream, and needs
        // the keys only from then on (see `answer`).
        let keys = match self.export_keys() {
            Ok(keys) => keys,
            Err(_) if self.publish_ssrc.is_none() => {
                self.keys_pending = true;
                let _ = connected.send(Ok(Connected { publishing: None }));
                return Ok(());
            }
            Err(err) => return Err(err),
        };
        self.rx.set_keys(keys.remote);
        let publishing = match self.publish_ssrc {
            Some(ssrc) => Some(Publishing {
                socket: Arc::clone(&self.socket),
                bridge: self
                    .media_addr
                    .ok_or_else(|| ParticipantError::WebRtc("connected without a media address".into()))?,
                keys: keys.local,
                ssrc,
                payload_type: self
                    .payload_type
                    .ok_or_else(|| ParticipantError::Protocol("the answer has no VP8 payload type".into()))?,
                tag: self.tag,
                first_seq: rand::random(),
            }),
            None => None,
        };
        let _ = connected.send(Ok(Connected { publishing }));
        Ok(())
    }

    fn export_keys(&mut self) -> Result<SessionKeys, ParticipantError> {
        let transceivers: Vec<_> = self.pc.get_transceivers().collect();
        for id in transceivers {
            let Some(transceiver) = self.pc.rtp_transceiver(id) else {
                continue;
            };
            let (sender, receiver) = (transceiver.sender(), transceiver.receiver());
            if let Some(sender) = sender
                && let Some(sender) = self.pc.rtp_sender(sender)
                && let Some(state) = sender.transport().and_then(|t| t.connection_state())
            {
                return export_srtp_keys(state).map_err(|e| ParticipantError::WebRtc(e.to_string()));
            }
            if let Some(receiver) = receiver
                && let Some(receiver) = self.pc.rtp_receiver(receiver)
                && let Some(state) = receiver.transport().and_then(|t| t.connection_state())
            {
                return export_srtp_keys(state).map_err(|e| ParticipantError::WebRtc(e.to_string()));
            }
        }
        Err(ParticipantError::WebRtc(
            "no DTLS connection on any transceiver".into(),
        ))
    }

    async fn on_signaling(
        &mut self,
        message: Option<Result<Message, tokio_tungstenite::tungstenite::Error>>,
    ) -> Result<(), ParticipantError> {
        let text = match message {
            None => return Err(ParticipantError::Signaling("signaling closed".into())),
            Some(Err(err)) => return Err(ParticipantError::Signaling(err.to_string())),
            Some(Ok(Message::Text(text))) => text,
            Some(Ok(Message::Close(frame))) => {
                return Err(ParticipantError::Signaling(format!(
                    "signaling closed: {frame:?}"
                )));
            }
            Some(Ok(_)) => return Ok(()),
        };
        let Ok(message) = serde_json::from_str::<ServerMessage>(text.as_str()) else {
            // A message this client does not know: not its business.
            return Ok(());
        };
        match message {
            ServerMessage::Offer { sdp, .. } => {
                let answer = self.answer(sdp)?;
                send(&mut self.ws, &ClientMessage::Answer { sdp: answer }).await?;
            }
            ServerMessage::Bye { reason } => {
                return Err(ParticipantError::Signaling(format!("bye ({reason:?})")));
            }
            ServerMessage::Error { code, message } => {
                return Err(ParticipantError::Server { code, message });
            }
            _ => {}
        }
        Ok(())
    }

    fn answer(&mut self, sdp: String) -> Result<String, ParticipantError> {
        let webrtc = |e: rtc::shared::error::Error| ParticipantError::WebRtc(e.to_string());
        let slots = recvonly_mids(&sdp);
        let offer = RTCSessionDescription::offer(sdp)
            .map_err(|e| ParticipantError::Protocol(format!("offer SDP: {e}")))?;
        self.pc
            .set_remote_description(Instant::now(), offer)
            .map_err(webrtc)?;
        // A receiving slot this participant sends nothing on is declined (`inactive`), as the
        // web client does for a source it does not publish.
        let transceivers: Vec<_> = self.pc.get_transceivers().collect();
        for id in transceivers {
            let Some(mut transceiver) = self.pc.rtp_transceiver(id) else {
                continue;
            };
            let unused_slot = transceiver.mid().as_ref().is_some_and(|mid| slots.contains(mid))
                && transceiver.sender().is_none()
                && transceiver.direction() == RTCRtpTransceiverDirection::Sendonly;
            if unused_slot {
                transceiver.set_direction(RTCRtpTransceiverDirection::Inactive);
            }
        }
        let answer = self.pc.create_answer(None).map_err(webrtc)?;
        self.pc
            .set_local_description(Instant::now(), answer.clone())
            .map_err(webrtc)?;
        if self.payload_type.is_none() {
            self.payload_type = vp8_payload_type(&answer.sdp);
        }
        if self.keys_pending
            && let Ok(keys) = self.export_keys()
        {
            self.keys_pending = false;
            self.rx.set_keys(keys.remote);
        }
        Ok(answer.sdp)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offer_slots_and_vp8_payload_type_are_read_from_sdp() {
        let sdp = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\na=recvonly\r\n\
                   m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:1\r\na=rtpmap:96 VP8/90000\r\na=recvonly\r\n\
                   m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:2\r\na=sendonly\r\n";
        assert_eq!(recvonly_mids(sdp), ["0", "1"]);
        assert_eq!(vp8_payload_type(sdp), Some(96));
        assert!(is_rtp_or_rtcp(&[0x80, 96]) && !is_rtcp(&[0x80, 96]));
        assert!(is_rtcp(&[0x80, 200]) && !is_rtp_or_rtcp(&[22]));
    }
}
