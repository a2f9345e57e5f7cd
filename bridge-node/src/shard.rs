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
//!
//! # Layout
//! `shard.rs` holds the types, the inputs' dispatch, moderation and timers; the rest of
//! [`Shard`]'s methods live beside it by what they do: `admission.rs` (a ticket becomes a peer
//! connection), `client_messages.rs` (signaling, the roster, leaving), `peer_events.rs` (each
//! connection's datagrams and `rtc` events), `inbound.rs` (publishers' SRTP opened by the bridge
//! and the feedback it owes them), `forwarding.rs` (packets to legs, RTCP back),
//! `negotiation.rs` (offers), `cascade.rs` and `remote_reports.rs` (streams of other bridges),
//! `meeting.rs` (chat, raised hands, reactions).

mod admission;
mod bandwidth;
#[cfg(test)]
mod bandwidth_tests;
mod cascade;
#[cfg(test)]
mod cascade_demand_tests;
mod client_messages;
#[cfg(test)]
mod consent_tests;
#[cfg(test)]
mod declined_tests;
mod e2ee;
#[cfg(test)]
mod e2ee_tests;
#[cfg(test)]
mod fastpath_tests;
mod forwarding;
mod inbound;
#[cfg(test)]
mod inbound_tests;
#[cfg(test)]
mod media_mode_tests;
mod meeting;
#[cfg(test)]
mod meeting_tests;
mod negotiation;
mod peer_events;
mod recording;
#[cfg(test)]
mod recording_tests;
#[cfg(test)]
mod remote_report_tests;
mod remote_reports;
#[doc(hidden)]
pub mod rig;
#[doc(hidden)]
pub mod room_rig;
#[cfg(test)]
mod session_property_tests;
mod simulcast;
#[cfg(test)]
mod simulcast_tests;
#[cfg(test)]
mod speaker_tests;
mod speakers;

pub use bandwidth::BandwidthStats;
pub use cascade::{CascadeInput, LinkIndex, REMOTE_PARTICIPANTS_PER_ROOM_MAX, shard_of_stream};
pub use inbound::InboundStats;
pub use meeting::MeetingStats;
pub use recording::{RecordingInput, RecordingRequester};
pub use simulcast::SimulcastStats;

use client_messages::announce_departure;
use forwarding::{Incoming, StreamRef, deliver};
use negotiation::{mark_others_for_renegotiation, recvonly};

use crate::demux::{ParticipantKey, RouteTable};
use crate::dominant_speaker::DominantSpeaker;
use crate::fastpath::retransmit::RetransmitRing;
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
    /// The ticket's moderator claim.
    pub moderator: bool,
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
    /// Recording the room: started, stopped, or the driver's answer to `StartRecording`.
    Recording(RecordingInput),
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
    /// `mute_requested_by_operator` to one participant (the admin API).
    RequestMute {
        room: RoomId,
        participant: ParticipantId,
    },
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
            | ModerationAction::RequestMute { room, .. }
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
    /// Start a recording of `room` (the writer and its file are the driver's): answer with
    /// [`RecordingInput::Started`] or [`RecordingInput::Refused`].
    StartRecording {
        room: RoomId,
        requester: RecordingRequester,
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
        /// Over for good (left, kicked, meeting ended): the participant will not come back under
        /// this id, so whatever was issued to it may be withdrawn (its TURN credentials).
        over: bool,
    },
    /// A local participant's media state, after it joined and whenever it changed (for the admin
    /// API; the control session coalesces these).
    ParticipantMedia(bridgemesh_proto::bridge_session::ParticipantMedia),
}

/// Whether a session that ended with `bye` is over for good (see `BridgeEvent::ParticipantLeft`).
pub(crate) fn session_over(bye: Option<ByeReason>) -> bool {
    matches!(
        bye,
        Some(ByeReason::Left | ByeReason::Kicked | ByeReason::MeetingEnded)
    )
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
    /// Chat, reactions and hands (`meeting.rs`).
    pub meeting: MeetingStats,
    /// Layer selection (`simulcast.rs`).
    pub simulcast: SimulcastStats,
    /// Bandwidth estimation and allocation (`bandwidth.rs`).
    pub bandwidth: BandwidthStats,
}

pub struct Room {
    /// Shared with the packet path's indexes so they name the room without copying it.
    pub(crate) name: Arc<RoomId>,
    pub(crate) participants: BTreeMap<ParticipantKey, Participant>,
    pub(crate) cascade: RoomCascade,
    /// One retransmission ring per published stream (local or remote) and simulcast layer,
    /// shared by its subscribers.
    pub(crate) histories: HashMap<(ParticipantKey, MediaSource, crate::simulcast::Layer), RetransmitRing>,
    /// Each published video source's layers: when each last sent, the heights their keyframes tell.
    pub(crate) source_layers: HashMap<(ParticipantKey, MediaSource), crate::simulcast::SourceLayers>,
    /// The room's chat history (`meeting.rs`).
    pub(crate) chat: crate::room_chat::RoomChat,
    /// From the first audio level heard in the room.
    pub(crate) speaker: Option<DominantSpeaker<ParticipantKey>>,
    /// Whether a moderator requires end-to-end encryption (`e2ee.rs`); absent until first set.
    pub(crate) e2ee: Option<e2ee::E2eeFlag>,
    /// Its recording here, and whether another bridge records it (`recording.rs`).
    pub(crate) recording: recording::RoomRecordingState,
}

impl Room {
    fn new(name: &RoomId) -> Self {
        Room {
            name: Arc::new(name.clone()),
            participants: BTreeMap::new(),
            cascade: RoomCascade::default(),
            histories: HashMap::new(),
            source_layers: HashMap::new(),
            chat: Default::default(),
            speaker: None,
            e2ee: None,
            recording: Default::default(),
        }
    }

    /// Every publisher's participant id by key, this bridge's and other bridges': for code that
    /// holds one participant mutably while it names the others.
    pub(crate) fn publisher_ids(&self) -> HashMap<ParticipantKey, ParticipantId> {
        self.participants
            .values()
            .map(|p| (p.key, p.id.clone()))
            .chain(self.cascade.remote.iter().map(|(k, p)| (*k, p.info.id.clone())))
            .collect()
    }
}

/// The participant id of `key`, a participant of this bridge's or of another bridge's.
pub(crate) fn publisher_id<'a>(
    participants: &'a BTreeMap<ParticipantKey, Participant>,
    cascade: &'a RoomCascade,
    key: ParticipantKey,
) -> Option<&'a ParticipantId> {
    participants
        .get(&key)
        .map(|p| &p.id)
        .or_else(|| cascade.remote.get(&key).map(|p| &p.info.id))
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
    /// Chat messages this shard accepted: the last part of their ids.
    chat_counter: u64,
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
            chat_counter: 0,
        }
    }

    pub fn index(&self) -> usize {
        self.index
    }

    pub fn stats(&self) -> ShardStats {
        ShardStats {
            participants: self.room_of.len() as u64,
            rooms: self.rooms.len() as u64,
            simulcast: self.simulcast_gauges(),
            bandwidth: self.bandwidth_gauges(),
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
            ShardInput::Recording(input) => self.handle_recording(now, input),
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
            ModerationAction::RequestMute { room, participant } => {
                if let Some(key) = self.find(&room, &participant) {
                    self.outputs.push_back(ShardOutput::ToClient {
                        key,
                        message: ServerMessage::MuteRequestedByOperator,
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
                    over: session_over(Some(reason)),
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
        if let Some(at) = self.recording_timeout() {
            earliest = Some(earliest.map_or(at, |e| e.min(at)));
        }
        for room in self.rooms.values() {
            for participant in room.participants.values() {
                let mut consider = |at: Instant| earliest = Some(earliest.map_or(at, |e| e.min(at)));
                if let Some(at) = participant.next_timeout {
                    consider(at);
                }
                if let Some(at) = participant.inbound.poll_timeout() {
                    consider(at);
                }
                if let Some(at) = participant.bwe.probe_due() {
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
        self.handle_recording_timeout(now);
        let room_ids: Vec<RoomId> = self.rooms.keys().cloned().collect();
        for room_id in room_ids {
            let Some(room) = self.rooms.get_mut(&room_id) else {
                continue;
            };
            let mut keyframes = Vec::new();
            for participant in room.participants.values_mut() {
                inbound::send_feedback(now, participant, &mut self.stats, &mut self.scratch_feedback);
                bandwidth::send_probes(now, participant, &mut self.tx, &mut self.outputs);
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
                // The layers the throttle held back (all of them for a source without simulcast).
                self.request_keyframe_layers(now, &room_id, publisher, source, 0);
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
}

#[cfg(test)]
mod test_support;
#[cfg(test)]
mod tests;
