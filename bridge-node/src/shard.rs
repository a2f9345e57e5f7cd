//! The forwarding engine of one shard: a state machine over the rooms this shard owns.
//!
//! Inputs ([`ShardInput`]) are datagrams, client signaling and timeouts, each with `now`; outputs
//! ([`ShardOutput`]) are datagrams to send, messages for clients and room events. No sockets, no
//! clocks: the driver in `driver.rs` feeds it.
//!
//! Each participant has one `rtc` peer connection. The bridge is always the SDP offerer: a
//! participant's connection starts with recvonly slots for its microphone and camera, and one
//! sendonly leg per (other participant, source). Forwarding takes an RTP packet read from the
//! publisher's connection (or a cascade link), keeps it once in the stream's retransmission ring,
//! and for each subscriber's leg copies it into an output buffer, rewrites SSRC, payload type and
//! header-extension ids in place and protects it with the leg's own SRTP stream
//! ([`crate::fastpath`]); `rtc` never sees the outgoing RTP.
//!
//! Moderation (kick, move elsewhere, ask everyone to mute, end the meeting) is decided and
//! committed by control; it reaches the shard as [`ShardInput::Moderation`] and the shard carries
//! it out.

mod cascade;
#[cfg(test)]
mod consent_tests;
#[cfg(test)]
mod declined_tests;
#[cfg(test)]
mod fastpath_tests;
mod inbound;
#[cfg(test)]
mod inbound_tests;
#[cfg(test)]
mod media_mode_tests;
#[cfg(test)]
mod remote_report_tests;
mod remote_reports;
#[doc(hidden)]
pub mod rig;

pub use cascade::{CascadeInput, LinkIndex, REMOTE_PARTICIPANTS_PER_ROOM_MAX, shard_of_stream};
pub use inbound::InboundStats;

use crate::demux::{ParticipantKey, RouteTable};
use crate::fastpath::retransmit::{
    AUDIO_PACKETS, AUDIO_SLOT_BYTES, RetransmitRing, VIDEO_PACKETS, VIDEO_SLOT_BYTES,
};
use crate::fastpath::srtp::SrtpProfile;
use crate::fastpath::tx::TxArena;
use crate::legs::{resolve_legs, sync_legs};
use crate::participant::{InboundTrack, KEYFRAME_REQUEST_INTERVAL, Participant, RecvSlot};
use crate::peer::{IceCredentials, build_peer_connection};
use crate::removed_participants::{
    REMOVED_PARTICIPANT_RETENTION_S, REMOVED_PARTICIPANTS_MAX, RemovedParticipants,
};
use bridgemesh_proto::api::ErrorCode;
use bridgemesh_proto::cascade::LinkMessage;
use bridgemesh_proto::signaling::{
    ByeReason, ClientMessage, MediaMode, MediaSource, ServerMessage, TrackInfo,
};
use bridgemesh_proto::{PROTOCOL_VERSION, ParticipantId, RoomId};
use bytes::{Bytes, BytesMut};
use cascade::{CascadeIndex, RoomCascade};
use rtc::peer_connection::event::{RTCPeerConnectionEvent, RTCTrackEvent};
use rtc::peer_connection::message::RTCMessage;
use rtc::peer_connection::sdp::RTCSessionDescription;
use rtc::peer_connection::state::{RTCIceConnectionState, RTCPeerConnectionState};
use rtc::rtcp::payload_feedbacks::full_intra_request::FullIntraRequest;
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtcp::sender_report::SenderReport;
use rtc::rtcp::transport_feedbacks::transport_layer_nack::TransportLayerNack;
use rtc::rtp_transceiver::rtp_sender::{RTCRtpCodec, RtpCodecKind};
use rtc::rtp_transceiver::{RTCRtpTransceiverDirection, RTCRtpTransceiverInit};
use rtc::sansio::Protocol;
use rtc::shared::{TaggedBytesMut, TransportContext, TransportProtocol};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Retransmissions sent for one NACK packet at most: a NACK is small and a retransmission is not,
/// so an unbounded answer would let a subscriber amplify its upstream several hundred times.
pub const RETRANSMISSIONS_PER_NACK_MAX: usize = 64;

/// What a kicked participant trying to connect again is told.
pub const REMOVED_MESSAGE: &str = "you were removed from this meeting";

/// A participant admitted by a verified ticket, asking to be connected.
#[derive(Debug, Clone)]
pub struct ConnectRequest {
    pub key: ParticipantKey,
    pub room: RoomId,
    pub participant_id: ParticipantId,
    pub display_name: String,
    /// What the participant publishes and receives, from its `hello`.
    pub media: MediaMode,
}

#[derive(Debug)]
pub enum ShardInput {
    Datagram {
        from: SocketAddr,
        key: ParticipantKey,
        data: BytesMut,
    },
    Connect(ConnectRequest),
    Client {
        key: ParticipantKey,
        message: ClientMessage,
    },
    /// The client's signaling socket is gone.
    Disconnect {
        key: ParticipantKey,
    },
    /// A moderation decision control committed.
    Moderation(ModerationAction),
    /// From another bridge, over a cascade link.
    Cascade(CascadeInput),
}

/// Moderation control decided; the bridge carries it out for the participants it hosts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModerationAction {
    /// `bye{kicked}` and disconnect; the participant cannot connect again with any ticket.
    Kick {
        room: RoomId,
        participant: ParticipantId,
    },
    /// `bye{moved}` and disconnect: control placed the participant on another bridge (this one is
    /// draining or was declared down). Unlike a kick its tickets stay good: it comes back with a
    /// fresh one, possibly to this very bridge.
    Move {
        room: RoomId,
        participant: ParticipantId,
    },
    /// `mute_requested` to everyone in the room but `by`.
    RequestMuteAll { room: RoomId, by: ParticipantId },
    /// `bye{meeting_ended}` to everyone in the room, and the room is gone.
    EndRoom { room: RoomId },
}

impl ModerationAction {
    /// The room whose shard carries the action out.
    pub fn room(&self) -> &RoomId {
        match self {
            ModerationAction::Kick { room, .. }
            | ModerationAction::Move { room, .. }
            | ModerationAction::RequestMuteAll { room, .. }
            | ModerationAction::EndRoom { room } => room,
        }
    }
}

#[derive(Debug)]
pub enum ShardOutput {
    Transmit {
        to: SocketAddr,
        data: BytesMut,
    },
    ToClient {
        key: ParticipantKey,
        message: ServerMessage,
    },
    /// The session ended on the bridge's side; the driver closes the client's socket.
    CloseClient {
        key: ParticipantKey,
    },
    Event(BridgeEvent),
    /// A message for the bridge at the other end of `link`.
    ToLink {
        link: LinkIndex,
        message: LinkMessage,
    },
    /// A media datagram for `link`.
    LinkDatagram {
        link: LinkIndex,
        datagram: Bytes,
    },
}

/// What the bridge tells its control plane.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BridgeEvent {
    ParticipantJoined {
        room: RoomId,
        participant: ParticipantId,
    },
    ParticipantLeft {
        room: RoomId,
        participant: ParticipantId,
        /// Gone without saying `leave`: the client may be reconnecting.
        dropped: bool,
    },
}

/// Counters the driver exports as metrics.
#[derive(Debug, Default, Clone, Copy)]
pub struct ShardStats {
    pub datagrams_in: u64,
    /// Bytes of those datagrams (UDP payloads: SRTP, SRTCP, STUN, DTLS).
    pub datagram_bytes_in: u64,
    /// Datagrams handed to the driver to send (media, RTCP, ICE and DTLS alike).
    pub datagrams_out: u64,
    pub rtp_in: u64,
    /// Bytes of those packets (RTP header and payload, as decrypted).
    pub rtp_in_bytes: u64,
    pub rtp_forwarded: u64,
    pub rtp_dropped_no_leg: u64,
    pub keyframe_requests_sent: u64,
    pub participants: u64,
    pub rooms: u64,
    /// RTP packets of remote publishers arriving over links.
    pub cascade_rtp_in: u64,
    /// Media datagrams of a stream the link never announced (or retired), dropped.
    pub cascade_rtp_unknown_stream: u64,
    /// RTP packets of local publishers handed to links (one per link).
    pub cascade_rtp_out: u64,
    /// Packets resent from a retransmission ring in answer to a subscriber's NACK.
    pub rtp_retransmitted: u64,
    /// NACKed packets no longer (or never) in the ring.
    pub rtp_nack_missed: u64,
    /// Sender reports of publishers written onto subscriber legs.
    pub sender_reports_translated: u64,
    /// Sender reports the bridge wrote onto legs of remote publishers, from its own clock.
    pub sender_reports_generated: u64,
    /// Publisher packets the fast path could not forward (malformed, or no room for the tag).
    pub rtp_forward_failed: u64,
    /// Participants whose SRTP keys could not be exported after DTLS (they are disconnected).
    pub srtp_key_export_failed: u64,
    /// Peer connections whose DTLS negotiated AEAD_AES_128_GCM.
    pub srtp_sessions_gcm: u64,
    /// Peer connections whose DTLS negotiated AES_CM_128_HMAC_SHA1_80.
    pub srtp_sessions_cm: u64,
    /// Times a participant's path went quiet long enough to be called disconnected
    /// ([`crate::consent::DISCONNECTED_AFTER`]).
    pub ice_disconnects: u64,
    /// Packets not sent on legs whose subscriber declined the stream in its answer.
    pub rtp_not_sent_declined: u64,
    /// Publisher media opened by the bridge itself, and the feedback it sends publishers.
    pub inbound: InboundStats,
}

pub struct Room {
    /// Shared with the packet path's indexes so they name the room without copying it.
    pub(crate) name: Arc<RoomId>,
    pub(crate) participants: BTreeMap<ParticipantKey, Participant>,
    pub(crate) cascade: RoomCascade,
    /// One retransmission ring per published stream (local or remote), shared by its subscribers.
    pub(crate) histories: HashMap<(ParticipantKey, MediaSource), RetransmitRing>,
}

impl Room {
    fn new(name: &RoomId) -> Self {
        Room {
            name: Arc::new(name.clone()),
            participants: BTreeMap::new(),
            cascade: RoomCascade::default(),
            histories: HashMap::new(),
        }
    }
}

pub struct Shard {
    index: usize,
    media_addr: SocketAddr,
    /// The IPv6 host candidate of a dual-stack bridge whose `media_addr` is IPv4.
    media_addr_v6: Option<SocketAddr>,
    routes: Arc<RouteTable>,
    max_participants_per_room: usize,
    rooms: HashMap<RoomId, Room>,
    /// Shared handles so the packet path can name a participant's room without copying its name.
    room_of: HashMap<ParticipantKey, Arc<RoomId>>,
    outputs: VecDeque<ShardOutput>,
    stats: ShardStats,
    /// Kicked participants. The ticket verifier refuses them too; this catches a ticket verified
    /// just before the kick whose `Connect` reaches the shard after it.
    removed: RemovedParticipants<Instant>,
    cascade_index: CascadeIndex,
    // Reused across inputs so the packet path does not allocate these per packet.
    scratch_messages: Vec<RTCMessage>,
    scratch_events: Vec<RTCPeerConnectionEvent>,
    scratch_keys: Vec<ParticipantKey>,
    scratch_reports: Vec<remote_reports::DueReport>,
    scratch_feedback: Vec<crate::fastpath::inbound::Feedback>,
    /// The wall clock against the shard's `now`, read once when the first report of a remote
    /// stream is due: its NTP times.
    wall_clock: Option<rtc::shared::time::SystemInstant>,
    /// Output buffers of the fast path.
    tx: TxArena,
}

impl Shard {
    pub fn new(
        index: usize,
        media_addr: SocketAddr,
        routes: Arc<RouteTable>,
        max_participants_per_room: usize,
    ) -> Self {
        Self {
            index,
            media_addr,
            media_addr_v6: None,
            routes,
            max_participants_per_room,
            rooms: HashMap::new(),
            room_of: HashMap::new(),
            outputs: VecDeque::new(),
            stats: ShardStats::default(),
            removed: RemovedParticipants::new(REMOVED_PARTICIPANTS_MAX),
            cascade_index: CascadeIndex::default(),
            scratch_messages: Vec::new(),
            scratch_events: Vec::new(),
            scratch_keys: Vec::new(),
            scratch_reports: Vec::new(),
            scratch_feedback: Vec::new(),
            wall_clock: None,
            tx: TxArena::default(),
        }
    }

    pub fn index(&self) -> usize {
        self.index
    }

    pub fn stats(&self) -> ShardStats {
        ShardStats {
            participants: self.room_of.len() as u64,
            rooms: self.rooms.len() as u64,
            ..self.stats
        }
    }

    pub fn poll_output(&mut self) -> Option<ShardOutput> {
        let output = self.outputs.pop_front();
        // Counted here, where every datagram leaves, rather than at each of the places queueing one.
        if matches!(output, Some(ShardOutput::Transmit { .. })) {
            self.stats.datagrams_out += 1;
        }
        output
    }

    pub fn handle_input(&mut self, now: Instant, input: ShardInput) {
        match input {
            ShardInput::Datagram { from, key, data } => self.handle_datagram(now, from, key, data),
            ShardInput::Connect(request) => self.connect(now, request),
            ShardInput::Client { key, message } => self.handle_client(now, key, message),
            ShardInput::Disconnect { key } => self.remove_participant(now, key, None),
            ShardInput::Moderation(action) => self.moderate(now, action),
            ShardInput::Cascade(input) => self.handle_cascade(now, input),
        }
    }

    fn moderate(&mut self, now: Instant, action: ModerationAction) {
        match action {
            ModerationAction::Kick { room, participant } => {
                let key = self.find(&room, &participant);
                self.removed.insert(
                    now,
                    participant,
                    now + Duration::from_secs(REMOVED_PARTICIPANT_RETENTION_S),
                );
                if let Some(key) = key {
                    self.remove_participant(now, key, Some(ByeReason::Kicked));
                }
            }
            ModerationAction::Move { room, participant } => {
                if let Some(key) = self.find(&room, &participant) {
                    self.remove_participant(now, key, Some(ByeReason::Moved));
                }
            }
            ModerationAction::RequestMuteAll { room, by } => {
                let Some(room) = self.rooms.get(&room) else {
                    return;
                };
                for participant in room.participants.values().filter(|p| p.id != by) {
                    self.outputs.push_back(ShardOutput::ToClient {
                        key: participant.key,
                        message: ServerMessage::MuteRequested { by: by.clone() },
                    });
                }
            }
            ModerationAction::EndRoom { room } => self.end_room(&room, ByeReason::MeetingEnded),
        }
    }

    fn find(&self, room: &RoomId, participant: &ParticipantId) -> Option<ParticipantKey> {
        let room = self.rooms.get(room)?;
        room.participants
            .values()
            .find(|p| p.id == *participant)
            .map(|p| p.key)
    }

    /// Ends every session of the room at once. Unlike removing them one by one, nobody is told
    /// of the others leaving and nobody is renegotiated: they are all going.
    fn end_room(&mut self, room_id: &RoomId, reason: ByeReason) {
        let Some(room) = self.rooms.get_mut(room_id) else {
            return;
        };
        let participants = std::mem::take(&mut room.participants);
        for (key, mut participant) in participants {
            self.retire_streams(room_id, &participant);
            self.tell_peers(
                room_id,
                LinkMessage::ParticipantLeft {
                    room: room_id.clone(),
                    participant: participant.id.clone(),
                },
            );
            self.room_of.remove(&key);
            let _ = participant.pc.close();
            while let Some(datagram) = participant.pc.poll_write() {
                self.outputs.push_back(ShardOutput::Transmit {
                    to: datagram.transport.peer_addr,
                    data: datagram.message,
                });
            }
            self.routes.remove_participant(&participant.ufrag);
            self.outputs.push_back(ShardOutput::ToClient {
                key,
                message: ServerMessage::Bye { reason },
            });
            self.outputs.push_back(ShardOutput::CloseClient { key });
            self.outputs
                .push_back(ShardOutput::Event(BridgeEvent::ParticipantLeft {
                    room: room_id.clone(),
                    participant: participant.id,
                    dropped: false,
                }));
        }
        self.drop_room_if_unused(room_id);
    }

    /// Ends every session with `bye: bridge_shutdown`, so clients rejoin elsewhere at once.
    pub fn shutdown(&mut self, now: Instant) {
        let keys: Vec<ParticipantKey> = self.room_of.keys().copied().collect();
        for key in keys {
            self.remove_participant(now, key, Some(ByeReason::BridgeShutdown));
        }
    }

    /// The earliest instant at which [`Shard::handle_timeout`] has work to do.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let mut earliest: Option<Instant> = self.next_remote_report();
        for room in self.rooms.values() {
            for participant in room.participants.values() {
                let mut consider = |at: Instant| earliest = Some(earliest.map_or(at, |e| e.min(at)));
                if let Some(at) = participant.next_timeout {
                    consider(at);
                }
                if let Some(at) = participant.inbound.poll_timeout() {
                    consider(at);
                }
                for track in participant.slots.iter().filter_map(|s| s.track.as_ref()) {
                    if track.keyframe_request_pending
                        && let Some(at) = track.keyframe_requested_at
                    {
                        consider(at + KEYFRAME_REQUEST_INTERVAL);
                    }
                }
            }
        }
        earliest
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        // Written first: the pumps below send them.
        self.send_remote_sender_reports(now);
        let room_ids: Vec<RoomId> = self.rooms.keys().cloned().collect();
        for room_id in room_ids {
            let Some(room) = self.rooms.get_mut(&room_id) else {
                continue;
            };
            let mut keyframes = Vec::new();
            for participant in room.participants.values_mut() {
                inbound::send_feedback(now, participant, &mut self.stats, &mut self.scratch_feedback);
                if participant.next_timeout.is_some_and(|at| at <= now) {
                    if let Err(err) = participant.pc.handle_timeout(now) {
                        tracing::debug!(participant = %participant.id, %err, "peer connection timeout");
                    }
                    participant.dirty = true;
                }
                for slot in &participant.slots {
                    if let Some(track) = &slot.track
                        && track.keyframe_request_pending
                        && track
                            .keyframe_requested_at
                            .is_none_or(|at| at + KEYFRAME_REQUEST_INTERVAL <= now)
                    {
                        keyframes.push((participant.key, slot.source));
                    }
                }
            }
            for (publisher, source) in keyframes {
                self.request_keyframe(now, &room_id, publisher, source);
            }
            self.pump(now, &room_id);
        }
    }

    fn handle_datagram(&mut self, now: Instant, from: SocketAddr, key: ParticipantKey, data: BytesMut) {
        self.stats.datagrams_in += 1;
        self.stats.datagram_bytes_in += data.len() as u64;
        let Some(room_id) = self.room_of.get(&key).cloned() else {
            return;
        };
        // A publisher's media of a stream the fast path knows never reaches `rtc`.
        let Some(data) = self.open_inbound(now, &room_id, key, data) else {
            return;
        };
        let local_addr = self.local_addr_for(from);
        let Some(room) = self.rooms.get_mut(&*room_id) else {
            return;
        };
        let Some(participant) = room.participants.get_mut(&key) else {
            return;
        };
        let transport = TransportContext {
            local_addr,
            peer_addr: from,
            ecn: None,
            transport_protocol: TransportProtocol::UDP,
        };
        if let Err(err) = participant.pc.handle_read(TaggedBytesMut {
            now,
            transport,
            message: data,
        }) {
            tracing::trace!(participant = %participant.id, %err, "datagram refused by peer connection");
        }
        participant.dirty = true;
        self.pump(now, &room_id);
    }

    fn connect(&mut self, now: Instant, request: ConnectRequest) {
        let ConnectRequest {
            key,
            room: room_id,
            participant_id,
            display_name,
            media,
        } = request;
        if self.removed.contains(&participant_id) {
            // Told like a participant kicked while connected, so the client does not rejoin.
            self.outputs.push_back(ShardOutput::ToClient {
                key,
                message: ServerMessage::Error {
                    code: ErrorCode::TicketRejected,
                    message: REMOVED_MESSAGE.to_owned(),
                },
            });
            self.outputs.push_back(ShardOutput::ToClient {
                key,
                message: ServerMessage::Bye {
                    reason: ByeReason::Kicked,
                },
            });
            self.outputs.push_back(ShardOutput::CloseClient { key });
            return;
        }
        // The same participant connecting again (a reconnect on a new socket) replaces the old session.
        let previous = self.rooms.get(&room_id).and_then(|room| {
            room.participants
                .values()
                .find(|p| p.id == participant_id)
                .map(|p| p.key)
        });
        if let Some(previous) = previous {
            self.remove_participant(now, previous, Some(ByeReason::Replaced));
        }
        // Announced by another bridge until now: it arrived here from there.
        let remote = self.rooms.get(&room_id).and_then(|room| {
            room.cascade
                .remote
                .iter()
                .find(|(_, p)| p.info.id == participant_id)
                .map(|(k, _)| *k)
        });
        if let Some(remote) = remote {
            self.remove_remote(now, &room_id, remote);
        }
        let size = self.rooms.get(&room_id).map_or(0, |room| room.participants.len());
        if size >= self.max_participants_per_room {
            self.refuse(key, ErrorCode::RoomFull, "this room is full on this bridge");
            return;
        }
        let credentials = IceCredentials::random();
        let participant = match self.new_participant(
            now,
            key,
            participant_id.clone(),
            display_name,
            media,
            &credentials,
        ) {
            Ok(participant) => participant,
            Err(err) => {
                tracing::warn!(%err, "could not create a peer connection");
                self.refuse(key, ErrorCode::Internal, "the bridge could not set up media");
                return;
            }
        };
        self.routes.add_participant(
            credentials.ufrag,
            credentials.pwd,
            crate::demux::Route {
                shard: self.index,
                key,
            },
        );
        let room = self
            .rooms
            .entry(room_id.clone())
            .or_insert_with(|| Room::new(&room_id));
        let others = room
            .participants
            .values()
            .map(Participant::info)
            .chain(room.cascade.remote.values().map(|p| p.info.clone()))
            .collect();
        let info = participant.info();
        for other in room.participants.values() {
            self.outputs.push_back(ShardOutput::ToClient {
                key: other.key,
                message: ServerMessage::ParticipantJoined {
                    participant: info.clone(),
                },
            });
        }
        room.participants.insert(key, participant);
        self.room_of.insert(key, room.name.clone());
        self.tell_peers(
            &room_id,
            LinkMessage::Participant {
                room: room_id.clone(),
                participant: info,
            },
        );
        self.outputs.push_back(ShardOutput::ToClient {
            key,
            message: ServerMessage::Welcome {
                protocol_version: PROTOCOL_VERSION,
                room: room_id.clone(),
                participant_id: participant_id.clone(),
                participants: others,
            },
        });
        self.outputs
            .push_back(ShardOutput::Event(BridgeEvent::ParticipantJoined {
                room: room_id.clone(),
                participant: participant_id,
            }));
        self.pump(now, &room_id);
    }

    /// Also offers `media_addr_v6` as a host candidate (a dual-stack bridge).
    pub fn with_ipv6_media_addr(mut self, media_addr_v6: Option<SocketAddr>) -> Self {
        self.media_addr_v6 = media_addr_v6;
        self
    }

    /// The host candidate a datagram from `peer` arrived at: the ICE agent matches it exactly.
    fn local_addr_for(&self, peer: SocketAddr) -> SocketAddr {
        match (peer, self.media_addr_v6) {
            (SocketAddr::V6(_), Some(v6)) => v6,
            _ => self.media_addr,
        }
    }

    fn new_participant(
        &self,
        now: Instant,
        key: ParticipantKey,
        id: ParticipantId,
        display_name: String,
        media: MediaMode,
        credentials: &IceCredentials,
    ) -> Result<Participant, rtc::shared::error::Error> {
        let mut pc = match self.media_addr_v6 {
            Some(v6) => build_peer_connection(now, credentials, &[self.media_addr, v6])?,
            None => build_peer_connection(now, credentials, &[self.media_addr])?,
        };
        let mut slots = Vec::new();
        // A receive-only participant is offered no slot: no recvonly m-line, no receiver.
        let publishes = if media.publishes() { 2 } else { 0 };
        for (source, kind) in [
            (MediaSource::Microphone, RtpCodecKind::Audio),
            (MediaSource::Camera, RtpCodecKind::Video),
        ]
        .into_iter()
        .take(publishes)
        {
            let transceiver = pc.add_transceiver_from_kind(kind, Some(recvonly()))?;
            slots.push(RecvSlot {
                source,
                transceiver,
                active: true,
                track: None,
            });
        }
        Ok(Participant {
            key,
            id,
            display_name,
            ufrag: credentials.ufrag.clone(),
            pc,
            microphone_muted: false,
            camera_muted: false,
            slots,
            legs: BTreeMap::new(),
            awaiting_answer: false,
            renegotiate: true,
            offers_sent: 0,
            connected: false,
            dirty: true,
            next_timeout: None,
            joined_at: now,
            track_counter: 0,
            media_keys: None,
            media_addr: None,
            path: Default::default(),
            media,
            inbound: crate::fastpath::inbound::InboundMedia::new(rand::random()),
        })
    }

    fn refuse(&mut self, key: ParticipantKey, code: ErrorCode, message: &str) {
        self.outputs.push_back(ShardOutput::ToClient {
            key,
            message: ServerMessage::Error {
                code,
                message: message.to_owned(),
            },
        });
        self.outputs.push_back(ShardOutput::CloseClient { key });
    }

    fn handle_client(&mut self, now: Instant, key: ParticipantKey, message: ClientMessage) {
        let Some(room_id) = self.room_of.get(&key).cloned() else {
            return;
        };
        let Some(room) = self.rooms.get_mut(&room_id) else {
            return;
        };
        let Some(participant) = room.participants.get_mut(&key) else {
            return;
        };
        let mut roster_changed = false;
        match message {
            ClientMessage::Hello { .. } => {
                self.protocol_error(now, key, ErrorCode::Conflict, "hello was already received");
                return;
            }
            ClientMessage::Answer { sdp } => {
                if !participant.awaiting_answer {
                    self.outputs.push_back(ShardOutput::ToClient {
                        key,
                        message: ServerMessage::Error {
                            code: ErrorCode::Conflict,
                            message: "no offer is outstanding".into(),
                        },
                    });
                    return;
                }
                let applied = RTCSessionDescription::answer(sdp)
                    .and_then(|answer| participant.pc.set_remote_description(now, answer));
                if let Err(err) = applied {
                    let message = format!("the answer could not be applied: {err}");
                    self.protocol_error(now, key, ErrorCode::InvalidField, &message);
                    return;
                }
                participant.awaiting_answer = false;
                participant.dirty = true;
                let connected = participant.connected;
                let mut newly_ready = resolve_legs(room, key);
                let Some(participant) = room.participants.get_mut(&key) else {
                    return;
                };
                newly_ready.extend(crate::legs::apply_answer_directions(participant));
                let wanted = |leg: &(ParticipantKey, MediaSource)| {
                    participant.legs.get(leg).is_some_and(|l| !l.declined)
                };
                let publishers: Vec<_> = newly_ready
                    .into_iter()
                    .filter(|leg| !leg.1.is_audio() && wanted(leg))
                    .collect();
                // Before the keyframe requests, so a remote publisher's bridge starts sending first.
                self.refresh_demand(&room_id);
                if connected {
                    for (publisher, source) in publishers {
                        self.request_keyframe(now, &room_id, publisher, source);
                    }
                }
            }
            ClientMessage::Mute { microphone, camera } => {
                // Told to the room (and the cascade peers) only when it changes.
                roster_changed =
                    (participant.microphone_muted, participant.camera_muted) != (microphone, camera);
                participant.microphone_muted = microphone;
                participant.camera_muted = camera;
            }
            ClientMessage::Publish { .. } if !participant.media.publishes() => {
                self.outputs.push_back(ShardOutput::ToClient {
                    key,
                    message: ServerMessage::Error {
                        code: ErrorCode::Conflict,
                        message: "a receive_only participant publishes nothing".into(),
                    },
                });
                return;
            }
            ClientMessage::Publish { source } => match participant.slot_mut(source) {
                Some(slot) if slot.active => {}
                Some(slot) => {
                    slot.active = true;
                    roster_changed = true;
                    mark_others_for_renegotiation(room, key);
                }
                None => {
                    let kind = if source.is_audio() {
                        RtpCodecKind::Audio
                    } else {
                        RtpCodecKind::Video
                    };
                    match participant.pc.add_transceiver_from_kind(kind, Some(recvonly())) {
                        Ok(transceiver) => {
                            participant.slots.push(RecvSlot {
                                source,
                                transceiver,
                                active: true,
                                track: None,
                            });
                            participant.renegotiate = true;
                            participant.dirty = true;
                        }
                        Err(err) => {
                            let message = format!("cannot add a slot for {}: {err}", source.as_str());
                            self.protocol_error(now, key, ErrorCode::Internal, &message);
                            return;
                        }
                    }
                }
            },
            ClientMessage::Unpublish { source } => {
                if let Some(slot) = participant.slot_mut(source).filter(|slot| slot.active) {
                    slot.active = false;
                    roster_changed = true;
                    mark_others_for_renegotiation(room, key);
                }
            }
            ClientMessage::Leave => {
                self.remove_participant(now, key, Some(ByeReason::Left));
                return;
            }
            _ => {
                self.outputs.push_back(ShardOutput::ToClient {
                    key,
                    message: ServerMessage::Error {
                        code: ErrorCode::InvalidField,
                        message: "this bridge does not support that message".into(),
                    },
                });
                return;
            }
        }
        if roster_changed {
            self.sync_stream_announcements(&room_id, key);
            self.broadcast_update(&room_id, key);
        }
        self.pump(now, &room_id);
    }

    fn protocol_error(&mut self, now: Instant, key: ParticipantKey, code: ErrorCode, message: &str) {
        self.outputs.push_back(ShardOutput::ToClient {
            key,
            message: ServerMessage::Error {
                code,
                message: message.to_owned(),
            },
        });
        self.remove_participant(now, key, Some(ByeReason::ProtocolError));
    }

    fn broadcast_update(&mut self, room_id: &RoomId, about: ParticipantKey) {
        let Some(room) = self.rooms.get(room_id) else {
            return;
        };
        let Some(participant) = room.participants.get(&about) else {
            return;
        };
        let info = participant.info();
        for other in room.participants.values().filter(|p| p.key != about) {
            self.outputs.push_back(ShardOutput::ToClient {
                key: other.key,
                message: ServerMessage::ParticipantUpdated {
                    participant: info.clone(),
                },
            });
        }
        self.tell_peers(
            room_id,
            LinkMessage::Participant {
                room: room_id.clone(),
                participant: info,
            },
        );
    }

    /// Ends a participant's session. `bye` is sent when the client's socket is still there.
    fn remove_participant(&mut self, now: Instant, key: ParticipantKey, bye: Option<ByeReason>) {
        let Some(room_id) = self.room_of.remove(&key) else {
            return;
        };
        let Some(room) = self.rooms.get_mut(&room_id) else {
            return;
        };
        let Some(mut participant) = room.participants.remove(&key) else {
            return;
        };
        self.retire_streams(&room_id, &participant);
        self.tell_peers(
            &room_id,
            LinkMessage::ParticipantLeft {
                room: RoomId::clone(&room_id),
                participant: participant.id.clone(),
            },
        );
        let Some(room) = self.rooms.get_mut(&*room_id) else {
            return;
        };
        room.histories.retain(|(publisher, _), _| *publisher != key);
        let _ = participant.pc.close();
        while let Some(datagram) = participant.pc.poll_write() {
            self.outputs.push_back(ShardOutput::Transmit {
                to: datagram.transport.peer_addr,
                data: datagram.message,
            });
        }
        self.routes.remove_participant(&participant.ufrag);
        if let Some(reason) = bye {
            self.outputs.push_back(ShardOutput::ToClient {
                key,
                message: ServerMessage::Bye { reason },
            });
        }
        self.outputs.push_back(ShardOutput::CloseClient { key });
        announce_departure(&mut self.outputs, &mut room.participants, key, &participant.id);
        self.outputs
            .push_back(ShardOutput::Event(BridgeEvent::ParticipantLeft {
                room: RoomId::clone(&room_id),
                participant: participant.id,
                dropped: bye != Some(ByeReason::Left),
            }));
        if room.participants.is_empty() {
            self.drop_room_if_unused(&room_id);
        } else {
            self.pump(now, &room_id);
        }
    }

    /// Asks a publisher for a keyframe on one of its tracks, at most once per
    /// [`KEYFRAME_REQUEST_INTERVAL`]; a request inside the window is sent when it ends.
    fn request_keyframe(
        &mut self,
        now: Instant,
        room_id: &RoomId,
        publisher: ParticipantKey,
        source: MediaSource,
    ) {
        let Some(room) = self.rooms.get_mut(room_id) else {
            return;
        };
        if room.cascade.remote.contains_key(&publisher) {
            self.request_remote_keyframe(room_id, publisher, source);
            return;
        }
        let Some(participant) = room.participants.get_mut(&publisher) else {
            return;
        };
        let Some(slot) = participant.slots.iter_mut().find(|s| s.source == source) else {
            return;
        };
        let Some(track) = slot.track.as_mut() else { return };
        if track
            .keyframe_requested_at
            .is_some_and(|at| now < at + KEYFRAME_REQUEST_INTERVAL)
        {
            track.keyframe_request_pending = true;
            return;
        }
        track.keyframe_requested_at = Some(now);
        track.keyframe_request_pending = false;
        let pli = PictureLossIndication {
            sender_ssrc: 0,
            media_ssrc: track.ssrc,
        };
        if let Some(mut receiver) = participant.pc.rtp_receiver(track.receiver_id) {
            match receiver.write_rtcp(now, vec![Box::new(pli)]) {
                Ok(()) => self.stats.keyframe_requests_sent += 1,
                Err(err) => tracing::debug!(%err, "keyframe request not sent"),
            }
        }
        participant.dirty = true;
    }

    /// Drains every participant of the room with queued work until none has any: sends their
    /// datagrams, handles their events, forwards their media, and renegotiates where needed.
    fn pump(&mut self, now: Instant, room_id: &RoomId) {
        // Bounded: each round only drains what earlier rounds queued; media forwarding marks
        // subscribers dirty once and their draining queues nothing back to the publisher.
        for _round in 0..16 {
            let Some(room) = self.rooms.get_mut(room_id) else {
                return;
            };
            let mut dirty = std::mem::take(&mut self.scratch_keys);
            dirty.extend(
                room.participants
                    .values()
                    .filter(|p| p.dirty || (p.renegotiate && !p.awaiting_answer))
                    .map(|p| p.key),
            );
            let quiet = dirty.is_empty();
            for key in dirty.drain(..) {
                self.drain_participant(now, room_id, key);
            }
            self.scratch_keys = dirty;
            if quiet {
                return;
            }
        }
    }

    fn drain_participant(&mut self, now: Instant, room_id: &RoomId, key: ParticipantKey) {
        let mut messages = std::mem::take(&mut self.scratch_messages);
        let mut events = std::mem::take(&mut self.scratch_events);
        {
            let Some(room) = self.rooms.get_mut(room_id) else {
                return;
            };
            let Some(participant) = room.participants.get_mut(&key) else {
                return;
            };
            participant.dirty = false;
            while let Some(message) = participant.pc.poll_read() {
                messages.push(message.message);
            }
            while let Some(event) = participant.pc.poll_event() {
                events.push(event);
            }
        }
        for event in events.drain(..) {
            self.handle_event(now, room_id, key, event);
        }
        for message in messages.drain(..) {
            match message {
                RTCMessage::RtpPacket(track_id, packet) => self.forward(now, room_id, key, &track_id, packet),
                RTCMessage::RtcpPacket(track_id, packets) => {
                    self.handle_rtcp(now, room_id, key, &track_id, &packets)
                }
                _ => {}
            }
        }
        self.scratch_messages = messages;
        self.scratch_events = events;
        let Some(room) = self.rooms.get_mut(room_id) else {
            return;
        };
        let needs_offer = room
            .participants
            .get(&key)
            .is_some_and(|p| p.renegotiate && !p.awaiting_answer);
        if needs_offer {
            self.negotiate(now, room_id, key);
        }
        let Some(room) = self.rooms.get_mut(room_id) else {
            return;
        };
        let Some(participant) = room.participants.get_mut(&key) else {
            return;
        };
        let mut path_moved = false;
        while let Some(datagram) = participant.pc.poll_write() {
            // DTLS and SRTCP (first byte 20..=191, RFC 7983) go to the selected pair; STUN
            // answers go wherever a check came from, which may be a path ICE does not select.
            if datagram.message.first().is_some_and(|b| (20..=191).contains(b)) {
                participant.media_addr = Some(datagram.transport.peer_addr);
                path_moved |= participant.path.on_media_addr(now, datagram.transport.peer_addr);
            }
            self.outputs.push_back(ShardOutput::Transmit {
                to: datagram.transport.peer_addr,
                data: datagram.message,
            });
        }
        participant.next_timeout = participant.pc.poll_timeout();
        if path_moved {
            // Media sent to the old address was lost: the subscriber needs keyframes.
            let video_legs: Vec<_> = participant
                .legs
                .iter()
                .filter(|(k, leg)| !k.1.is_audio() && leg.payload_type.is_some() && !leg.declined)
                .map(|(k, _)| *k)
                .collect();
            for (publisher, source) in video_legs {
                self.request_keyframe(now, room_id, publisher, source);
            }
        }
    }

    fn handle_event(
        &mut self,
        now: Instant,
        room_id: &RoomId,
        key: ParticipantKey,
        event: RTCPeerConnectionEvent,
    ) {
        match event {
            RTCPeerConnectionEvent::OnTrack(RTCTrackEvent::OnOpen(init)) => {
                let Some(room) = self.rooms.get_mut(room_id) else {
                    return;
                };
                let Some(participant) = room.participants.get_mut(&key) else {
                    return;
                };
                let slot_index = participant.slots.iter().position(|slot| {
                    participant
                        .pc
                        .rtp_transceiver(slot.transceiver)
                        .and_then(|t| t.receiver())
                        == Some(init.receiver_id)
                });
                let Some(slot_index) = slot_index else {
                    tracing::debug!(participant = %participant.id, "track on a transceiver that is no slot");
                    return;
                };
                // Each applied answer reports the open tracks again; only a new stream resets the slot.
                if participant.slots[slot_index]
                    .track
                    .as_ref()
                    .is_some_and(|t| t.ssrc == init.ssrc && t.track_id == init.track_id)
                {
                    return;
                }
                let previous = participant.slots[slot_index].track.take();
                let source = participant.slots[slot_index].source;
                // The new stream numbers its packets afresh.
                room.histories.remove(&(key, source));
                participant.inbound.unbind(source);
                participant.slots[slot_index].track = Some(InboundTrack::new(
                    init.track_id,
                    init.receiver_id,
                    init.ssrc,
                    None,
                ));
                // The stream it replaces is retired on the links; this one is announced once its
                // codec is known.
                if let Some(id) = previous.and_then(|t| t.stream_id) {
                    self.retire_stream(room_id, id);
                }
            }
            RTCPeerConnectionEvent::OnConnectionStateChangeEvent(state) => match state {
                RTCPeerConnectionState::Connected => {
                    let Some(room) = self.rooms.get_mut(room_id) else {
                        return;
                    };
                    let Some(participant) = room.participants.get_mut(&key) else {
                        return;
                    };
                    participant.connected = true;
                    if participant.media_keys.is_none() {
                        match export_media_keys(participant) {
                            Ok(keys) => {
                                tracing::debug!(participant = %participant.id, profile = ?keys.local.profile(), "fast path keys exported");
                                match keys.local.profile() {
                                    SrtpProfile::AeadAes128Gcm => self.stats.srtp_sessions_gcm += 1,
                                    SrtpProfile::Aes128CmHmacSha1_80 => self.stats.srtp_sessions_cm += 1,
                                }
                                participant.media_keys = Some(keys);
                            }
                            Err(err) => {
                                tracing::warn!(participant = %participant.id, %err, "no SRTP keys after DTLS");
                                self.stats.srtp_key_export_failed += 1;
                                self.remove_participant(now, key, Some(ByeReason::ProtocolError));
                                return;
                            }
                        }
                    }
                    // Only a connection coming up for the first time needs keyframes: a
                    // returning path lost nothing its subscriber will not ask for (consent.rs).
                    if !participant.path.on_connected(now) {
                        return;
                    }
                    let video_legs: Vec<_> = participant
                        .legs
                        .iter()
                        .filter(|(k, leg)| !k.1.is_audio() && leg.payload_type.is_some() && !leg.declined)
                        .map(|(k, _)| *k)
                        .collect();
                    for (publisher, source) in video_legs {
                        self.request_keyframe(now, room_id, publisher, source);
                    }
                }
                RTCPeerConnectionState::Failed | RTCPeerConnectionState::Closed => {
                    self.remove_participant(now, key, Some(ByeReason::ProtocolError));
                }
                _ => {}
            },
            RTCPeerConnectionEvent::OnIceConnectionStateChangeEvent(RTCIceConnectionState::Disconnected) => {
                self.stats.ice_disconnects += 1;
            }
            RTCPeerConnectionEvent::OnIceConnectionStateChangeEvent(RTCIceConnectionState::Failed) => {
                self.remove_participant(now, key, Some(ByeReason::ProtocolError));
            }
            _ => {}
        }
    }

    fn forward(
        &mut self,
        now: Instant,
        room_id: &RoomId,
        publisher: ParticipantKey,
        track_id: &str,
        packet: rtc::rtp::Packet,
    ) {
        self.stats.rtp_in += 1;
        self.stats.rtp_in_bytes += rtc::shared::marshal::MarshalSize::marshal_size(&packet) as u64;
        let Some(room) = self.rooms.get_mut(room_id) else {
            return;
        };
        let Some(participant) = room.participants.get_mut(&publisher) else {
            return;
        };
        let Some(slot_index) = participant
            .slots
            .iter()
            .position(|s| s.track.as_ref().is_some_and(|t| t.track_id == track_id))
        else {
            return;
        };
        let slot = &participant.slots[slot_index];
        let (source, active) = (slot.source, slot.active);
        if slot.track.as_ref().is_some_and(|t| t.codec.is_none()) {
            // First packet of this track: its payload type names the codec the publisher chose.
            let receiver_id = slot.track.as_ref().map(|t| t.receiver_id).expect("checked above");
            let Some(mut receiver) = participant.pc.rtp_receiver(receiver_id) else {
                return;
            };
            let parameters = receiver.get_parameters().rtp_parameters.clone();
            let Some(codec) = parameters
                .codecs
                .iter()
                .find(|c| c.payload_type == packet.header.payload_type)
                .map(|c| c.rtp_codec.clone())
            else {
                return;
            };
            let track = participant.slots[slot_index]
                .track
                .as_mut()
                .expect("checked above");
            let clock_rate = codec.clock_rate;
            track.codec = Some(codec);
            track.extensions = parameters.header_extensions;
            let extensions = track.extensions.clone();
            inbound::bind_inbound(now, participant, slot_index, &packet, clock_rate, &extensions);
            mark_others_for_renegotiation(room, publisher);
            self.sync_stream_announcements(room_id, publisher);
            self.broadcast_update(room_id, publisher);
            return;
        }
        // A packet of a stream the fast path opens that reached us through `rtc` (a retransmission).
        participant
            .inbound
            .repaired(now, packet.header.ssrc, packet.header.sequence_number);
        if !active {
            return;
        }
        let Some(room) = self.rooms.get_mut(room_id) else {
            return;
        };
        deliver(
            room,
            publisher,
            source,
            Incoming::Parsed(&packet),
            &mut self.tx,
            &mut self.outputs,
            &mut self.stats,
        );
        // Most tracks cross no link: check before touching the packet again.
        if let Some(track) = room
            .participants
            .get(&publisher)
            .and_then(|p| p.slots[slot_index].track.as_ref())
            && !track.links.is_empty()
        {
            cascade::send_to_links(track, &packet, &mut self.outputs, &mut self.stats);
        }
    }

    fn handle_rtcp(
        &mut self,
        now: Instant,
        room_id: &RoomId,
        key: ParticipantKey,
        track_id: &str,
        packets: &[Box<dyn rtc::rtcp::Packet>],
    ) {
        tracing::trace!(%track_id, count = packets.len(), "rtcp from participant");
        for packet in packets {
            let any = packet.as_any();
            if let Some(nack) = any.downcast_ref::<TransportLayerNack>() {
                self.answer_nack(room_id, key, nack);
            } else if let Some(report) = any.downcast_ref::<SenderReport>() {
                if let Some(publisher) = self
                    .rooms
                    .get_mut(room_id)
                    .and_then(|room| room.participants.get_mut(&key))
                {
                    publisher
                        .inbound
                        .on_sender_report(now, report.ssrc, report.ntp_time);
                }
                self.translate_sender_report(now, room_id, key, report);
            }
        }
        let wants_keyframe = packets.iter().any(|p| {
            p.as_any().downcast_ref::<PictureLossIndication>().is_some()
                || p.as_any().downcast_ref::<FullIntraRequest>().is_some()
        });
        if !wants_keyframe {
            return;
        }
        let Some(room) = self.rooms.get(room_id) else {
            return;
        };
        let Some(participant) = room.participants.get(&key) else {
            return;
        };
        if let Some((publisher, source)) = participant.leg_for_track(track_id) {
            self.request_keyframe(now, room_id, publisher, source);
        }
    }

    /// Resends the packets a subscriber's NACK names from the publisher stream's ring, rewritten
    /// and protected for that subscriber's leg (RFC 4585 §6.2.1; on the leg's own SSRC, as no RTX
    /// stream is offered).
    fn answer_nack(&mut self, room_id: &RoomId, key: ParticipantKey, nack: &TransportLayerNack) {
        let Some(room) = self.rooms.get_mut(room_id) else {
            return;
        };
        let Room {
            participants,
            histories,
            ..
        } = room;
        let Some(subscriber) = participants.get_mut(&key) else {
            return;
        };
        let Participant {
            legs,
            media_keys,
            media_addr,
            ..
        } = subscriber;
        let (Some(keys), Some(to)) = (media_keys.as_ref(), *media_addr) else {
            return;
        };
        let Some((leg_key, leg)) = legs
            .iter_mut()
            .find(|(_, leg)| leg.ssrc == nack.media_ssrc && !leg.declined)
        else {
            return;
        };
        let (Some(ring), Some(writer)) = (histories.get(leg_key), leg.writer.as_mut()) else {
            return;
        };
        self.tx.recycle();
        let lost = nack.nacks.iter().flat_map(|pair| {
            std::iter::once(pair.packet_id).chain(
                (0..16u16)
                    .filter(move |bit| pair.lost_packets & (1 << bit) != 0)
                    .map(move |bit| pair.packet_id.wrapping_add(bit + 1)),
            )
        });
        for seq in lost.take(RETRANSMISSIONS_PER_NACK_MAX) {
            let Some(packet) = ring.get(seq) else {
                self.stats.rtp_nack_missed += 1;
                continue;
            };
            match writer.write(&keys.local, packet, &mut self.tx) {
                Ok(data) => {
                    self.stats.rtp_retransmitted += 1;
                    self.outputs.push_back(ShardOutput::Transmit { to, data });
                }
                Err(err) => tracing::trace!(%err, "retransmission not sent"),
            }
        }
    }

    /// Writes a publisher's sender report onto every local leg of that stream: the publisher's
    /// NTP/RTP time pair (timestamps cross the bridge unchanged, so the pair holds on the leg and
    /// the subscriber can synchronise audio and video), with the leg's SSRC and its own counts.
    fn translate_sender_report(
        &mut self,
        now: Instant,
        room_id: &RoomId,
        publisher: ParticipantKey,
        report: &SenderReport,
    ) {
        let Some(room) = self.rooms.get_mut(room_id) else {
            return;
        };
        let Some(source) = room.participants.get(&publisher).and_then(|p| {
            p.slots
                .iter()
                .find(|slot| slot.track.as_ref().is_some_and(|t| t.ssrc == report.ssrc))
                .map(|slot| slot.source)
        }) else {
            return;
        };
        for subscriber in room.participants.values_mut() {
            if subscriber.key == publisher || !subscriber.connected {
                continue;
            }
            let Some(leg) = subscriber.legs.get(&(publisher, source)).filter(|l| !l.declined) else {
                continue;
            };
            let Some(writer) = leg.writer.as_ref() else {
                continue;
            };
            let translated = translate_report(report, writer);
            let sender_id = leg.sender_id;
            if let Some(mut sender) = subscriber.pc.rtp_sender(sender_id) {
                match sender.write_rtcp(now, vec![Box::new(translated)]) {
                    Ok(()) => self.stats.sender_reports_translated += 1,
                    Err(err) => tracing::debug!(%err, "sender report not written"),
                }
                subscriber.dirty = true;
            }
        }
    }

    /// Brings a participant's legs in line with what the room publishes and sends a new offer.
    fn negotiate(&mut self, now: Instant, room_id: &RoomId, key: ParticipantKey) {
        let Some(room) = self.rooms.get_mut(room_id) else {
            return;
        };
        let mut desired: Vec<(ParticipantKey, MediaSource, ParticipantId, RTCRtpCodec)> = room
            .participants
            .values()
            .filter(|p| p.key != key)
            .flat_map(|p| {
                p.slots.iter().filter(|s| s.active).filter_map(move |s| {
                    let codec = s.track.as_ref()?.codec.clone()?;
                    Some((p.key, s.source, p.id.clone(), codec))
                })
            })
            .chain(room.cascade.remote.iter().flat_map(|(remote_key, p)| {
                p.streams
                    .iter()
                    .map(move |(source, s)| (*remote_key, *source, p.info.id.clone(), s.codec.clone()))
            }))
            .collect();
        let Some(participant) = room.participants.get_mut(&key) else {
            return;
        };
        participant.renegotiate = false;
        if !participant.media.receives() {
            // A send-only participant gets no legs.
            desired.clear();
        }
        let result = sync_legs(participant, &desired).and_then(|()| {
            let offer = participant.pc.create_offer(None)?;
            participant.pc.set_local_description(now, offer)?;
            Ok(())
        });
        if let Err(err) = result {
            tracing::warn!(participant = %participant.id, %err, "could not create an offer");
            let message = format!("the bridge could not renegotiate: {err}");
            self.protocol_error(now, key, ErrorCode::Internal, &message);
            return;
        }
        let sdp = participant
            .pc
            .local_description()
            .map(|d| crate::sdp_munge::candidates_in_every_section(&d.sdp))
            .unwrap_or_default();
        let mut tracks = Vec::with_capacity(participant.legs.len());
        let mut publishers: HashMap<ParticipantKey, ParticipantId> = HashMap::new();
        for (publisher, _, id, _) in &desired {
            publishers.insert(*publisher, id.clone());
        }
        let transceivers: Vec<_> = participant.pc.get_transceivers().collect();
        for ((publisher, source), leg) in &participant.legs {
            let mid = transceivers.iter().find_map(|id| {
                let transceiver = participant.pc.rtp_transceiver(*id)?;
                (transceiver.sender() == Some(leg.sender_id))
                    .then(|| transceiver.mid().clone())
                    .flatten()
            });
            if let (Some(mid), Some(id)) = (mid, publishers.get(publisher)) {
                tracks.push(TrackInfo {
                    mid,
                    participant_id: id.clone(),
                    source: *source,
                });
            }
        }
        participant.awaiting_answer = true;
        participant.offers_sent += 1;
        participant.dirty = true;
        self.outputs.push_back(ShardOutput::ToClient {
            key,
            message: ServerMessage::Offer { sdp, tracks },
        });
        // Legs of streams that ended are gone now: their bridges may stop sending.
        self.refresh_demand(room_id);
    }
}

fn recvonly() -> RTCRtpTransceiverInit {
    RTCRtpTransceiverInit {
        direction: RTCRtpTransceiverDirection::Recvonly,
        streams: vec![],
        send_encodings: vec![],
    }
}

/// A publisher's packet as it enters the forwarding code: parsed by `rtc` (a local publisher),
/// or as it crossed a cascade link. Both take the same path from here on.
pub(crate) enum Incoming<'a> {
    Parsed(&'a rtc::rtp::Packet),
    Raw(&'a [u8]),
}

/// Keeps a publisher's packet (local or remote) in its stream's retransmission ring, then sends
/// it on every local subscriber's leg for it, rewritten and protected by the leg's writer.
fn deliver(
    room: &mut Room,
    publisher: ParticipantKey,
    source: MediaSource,
    incoming: Incoming<'_>,
    tx: &mut TxArena,
    outputs: &mut VecDeque<ShardOutput>,
    stats: &mut ShardStats,
) {
    tx.recycle();
    let Room {
        participants,
        histories,
        ..
    } = room;
    let ring = histories.entry((publisher, source)).or_insert_with(|| {
        if source.is_audio() {
            RetransmitRing::new(AUDIO_PACKETS, AUDIO_SLOT_BYTES)
        } else {
            RetransmitRing::new(VIDEO_PACKETS, VIDEO_SLOT_BYTES)
        }
    });
    let stored = match incoming {
        Incoming::Parsed(packet) => ring.store(
            packet.header.sequence_number,
            rtc::shared::marshal::MarshalSize::marshal_size(packet),
            |buf| rtc::shared::marshal::Marshal::marshal_to(packet, buf).ok(),
        ),
        Incoming::Raw(bytes) => match crate::fastpath::srtp::rtp_header_len(bytes) {
            Ok(_) => ring.store(u16::from_be_bytes([bytes[2], bytes[3]]), bytes.len(), |buf| {
                buf.copy_from_slice(bytes);
                Some(bytes.len())
            }),
            Err(_) => None,
        },
    };
    let Some(packet) = stored else {
        stats.rtp_forward_failed += 1;
        return;
    };
    for subscriber in participants.values_mut() {
        let Participant {
            key,
            connected,
            media_keys,
            media_addr,
            legs,
            ..
        } = subscriber;
        if *key == publisher || !*connected {
            continue;
        }
        let Some(leg) = legs.get_mut(&(publisher, source)) else {
            stats.rtp_dropped_no_leg += 1;
            continue;
        };
        if leg.declined {
            stats.rtp_not_sent_declined += 1;
            continue;
        }
        let (Some(writer), Some(keys), Some(to)) = (leg.writer.as_mut(), media_keys.as_ref(), *media_addr)
        else {
            continue;
        };
        match writer.write(&keys.local, packet, tx) {
            Ok(data) => {
                stats.rtp_forwarded += 1;
                outputs.push_back(ShardOutput::Transmit { to, data });
            }
            Err(err) => {
                stats.rtp_forward_failed += 1;
                tracing::trace!(%err, "packet not forwarded");
            }
        }
    }
}

/// The SRTP keys of a participant whose DTLS handshake completed, from any of its transceivers
/// (under BUNDLE they share one transport).
fn export_media_keys(
    participant: &mut Participant,
) -> Result<crate::fastpath::SessionKeys, crate::fastpath::KeyExportError> {
    let receivers: Vec<_> = participant
        .slots
        .iter()
        .filter_map(|slot| participant.pc.rtp_transceiver(slot.transceiver)?.receiver())
        .collect();
    for receiver in receivers {
        let Some(receiver) = participant.pc.rtp_receiver(receiver) else {
            continue;
        };
        if let Some(state) = receiver.transport().and_then(|t| t.connection_state()) {
            return crate::fastpath::export_srtp_keys(state);
        }
    }
    // A receive-only participant has no slot: its legs' senders share the same transport.
    let senders: Vec<_> = participant.legs.values().map(|leg| leg.sender_id).collect();
    for sender in senders {
        let Some(sender) = participant.pc.rtp_sender(sender) else {
            continue;
        };
        if let Some(state) = sender.transport().and_then(|t| t.connection_state()) {
            return crate::fastpath::export_srtp_keys(state);
        }
    }
    Err(crate::fastpath::KeyExportError::Export(
        "no DTLS connection on any transceiver".to_owned(),
    ))
}

/// A publisher's sender report as one leg states it.
fn translate_report(report: &SenderReport, leg: &crate::fastpath::leg::LegWriter) -> SenderReport {
    SenderReport {
        ssrc: leg.ssrc(),
        ntp_time: report.ntp_time,
        rtp_time: report.rtp_time,
        packet_count: leg.packets_sent,
        octet_count: leg.octets_sent,
        ..Default::default()
    }
}

fn mark_others_for_renegotiation(room: &mut Room, publisher: ParticipantKey) {
    for other in room.participants.values_mut().filter(|p| p.key != publisher) {
        other.renegotiate = true;
        other.dirty = true;
    }
}

/// Tells the local `participants` that `left` (publisher `key`, local or behind a cascade link)
/// is gone, and renegotiates those that received its tracks.
fn announce_departure(
    outputs: &mut VecDeque<ShardOutput>,
    participants: &mut BTreeMap<ParticipantKey, Participant>,
    key: ParticipantKey,
    left: &ParticipantId,
) {
    for other in participants.values_mut() {
        if other.legs.keys().any(|(publisher, _)| *publisher == key) {
            other.renegotiate = true;
            other.dirty = true;
        }
        outputs.push_back(ShardOutput::ToClient {
            key: other.key,
            message: ServerMessage::ParticipantLeft {
                participant_id: left.clone(),
            },
        });
    }
}

#[cfg(test)]
mod tests;
