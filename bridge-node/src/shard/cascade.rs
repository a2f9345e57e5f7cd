//! The shard's side of the cascade: remote participants and streams of the rooms it owns, and
//! what it tells other bridges about its own.
//!
//! A room spanning bridges has, on each of them, its local participants and the remote ones
//! other bridges announced over their links. Remote publishers look to local subscribers like
//! local ones: they are in `welcome`, `participant_joined/updated/left`, and get a leg in each
//! subscriber's offer. Their media arrives as [`CascadeInput::Media`] and goes to local
//! subscribers only, never to another link: every bridge of a room talks to every other directly
//! (full mesh), so nothing needs relaying and nothing can loop.
//!
//! Toward the other bridges a local stream crosses a link only while the far side reports
//! subscribers for it ([`LinkMessage::Demand`]), and once whatever their number.

use super::{Room, Shard, ShardOutput};
use crate::demux::ParticipantKey;
use crate::participant::LEG_LOCAL_EXTENSIONS;
use bridgemesh_proto::RoomId;
use bridgemesh_proto::cascade::{LinkCodec, LinkExtension, LinkMessage};
use bridgemesh_proto::signaling::{MediaSource, ParticipantInfo, ServerMessage};
use bytes::Bytes;
use rtc::rtp_transceiver::rtp_sender::RTCRtpCodec;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Instant;

/// One cascade connection, numbered by the cascade manager and never reused: a message meant for
/// a connection that has since closed cannot reach the one that replaced it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LinkIndex(pub u32);

/// Remote participants one room may hold; announcements past it are ignored.
pub const REMOTE_PARTICIPANTS_PER_ROOM_MAX: usize = 1000;
/// Stream ids carry the shard index above this many bits, so a demand or keyframe request naming
/// a stream id reaches the shard that owns it without a lookup.
const STREAM_SHARD_SHIFT: u32 = 24;
/// Keys of remote participants have this bit set; local keys count up from 1 and never reach it.
const REMOTE_KEY_BIT: u64 = 1 << 63;

#[derive(Debug)]
pub enum CascadeInput {
    /// The bridge at the other end of `link` hosts participants of `room` and wants ours.
    PeerOpened { room: RoomId, link: LinkIndex },
    /// The room is no longer shared over `link` (either side closed it, or the link went down).
    PeerClosed { room: RoomId, link: LinkIndex },
    /// A `participant`, `participant_left`, `stream`, `stream_ended`, `demand` or
    /// `keyframe_request` message from `link` about a room of this shard.
    Message { link: LinkIndex, message: LinkMessage },
    /// One RTP packet of a stream `link` announced.
    Media {
        link: LinkIndex,
        stream: u32,
        packet: Bytes,
    },
}

/// The shard that owns the stream id `stream` (one this bridge allocated).
pub fn shard_of_stream(stream: u32) -> usize {
    (stream >> STREAM_SHARD_SHIFT) as usize
}

/// A room's cascade state on this bridge.
#[derive(Default)]
pub struct RoomCascade {
    /// Links whose far side opened the room: they get our announcements.
    pub peers: BTreeSet<LinkIndex>,
    pub remote: BTreeMap<ParticipantKey, RemoteParticipant>,
}

pub struct RemoteParticipant {
    pub link: LinkIndex,
    pub info: ParticipantInfo,
    pub streams: BTreeMap<MediaSource, RemoteStream>,
}

pub struct RemoteStream {
    pub id: u32,
    pub codec: RTCRtpCodec,
    /// (URI, id) of the header extensions its packets carry.
    pub extensions: Vec<(String, u8)>,
    /// Subscribers and the largest height they show it at, last reported to the publisher's bridge.
    pub demand_sent: (u32, u16),
    /// Its RTP clock against the bridge's, for the sender reports of its legs.
    pub clock: super::remote_reports::RemoteStreamClock,
}

/// What the shard keeps of the streams crossing links.
#[derive(Default)]
pub struct CascadeIndex {
    /// Remote streams by (link, the far side's id).
    pub remote_streams:
        std::collections::HashMap<(LinkIndex, u32), (Arc<RoomId>, ParticipantKey, MediaSource)>,
    /// Local streams by the id this shard gave them.
    pub local_streams: std::collections::HashMap<u32, (Arc<RoomId>, ParticipantKey, MediaSource)>,
    next_stream: u32,
    next_remote_key: u64,
}

impl CascadeIndex {
    fn allocate_stream(&mut self, shard: usize) -> u32 {
        loop {
            self.next_stream = (self.next_stream + 1) & ((1 << STREAM_SHARD_SHIFT) - 1);
            let id = ((shard as u32) << STREAM_SHARD_SHIFT) | self.next_stream;
            if !self.local_streams.contains_key(&id) {
                return id;
            }
        }
    }

    fn allocate_remote_key(&mut self) -> ParticipantKey {
        self.next_remote_key += 1;
        ParticipantKey(REMOTE_KEY_BIT | self.next_remote_key)
    }
}

fn link_codec(codec: &RTCRtpCodec) -> LinkCodec {
    LinkCodec {
        mime_type: codec.mime_type.clone(),
        clock_rate: codec.clock_rate,
        channels: codec.channels,
        sdp_fmtp_line: codec.sdp_fmtp_line.clone(),
    }
}

fn rtp_codec(codec: LinkCodec) -> RTCRtpCodec {
    RTCRtpCodec {
        mime_type: codec.mime_type,
        clock_rate: codec.clock_rate,
        channels: codec.channels,
        sdp_fmtp_line: codec.sdp_fmtp_line,
        rtcp_feedback: Vec::new(),
    }
}

impl Shard {
    pub(super) fn handle_cascade(&mut self, now: Instant, input: CascadeInput) {
        match input {
            CascadeInput::PeerOpened { room, link } => self.peer_opened(now, room, link),
            CascadeInput::PeerClosed { room, link } => self.peer_closed(now, &room, link),
            CascadeInput::Media { link, stream, packet } => self.remote_media(now, link, stream, &packet),
            CascadeInput::Message { link, message } => match message {
                LinkMessage::Participant { room, participant } => {
                    self.remote_participant(now, room, link, participant);
                }
                LinkMessage::ParticipantLeft { room, participant } => {
                    let key = self.rooms.get(&room).and_then(|r| {
                        r.cascade
                            .remote
                            .iter()
                            .find(|(_, p)| p.link == link && p.info.id == participant)
                            .map(|(k, _)| *k)
                    });
                    if let Some(key) = key {
                        self.remove_remote(now, &room, key);
                        self.drop_room_if_unused(&room);
                    }
                }
                LinkMessage::Stream {
                    id,
                    room,
                    participant,
                    source,
                    codec,
                    extensions,
                } => self.remote_stream(now, link, id, &room, &participant, source, codec, extensions),
                LinkMessage::StreamEnded { id } => self.remote_stream_ended(now, link, id),
                LinkMessage::Demand {
                    id,
                    subscribers,
                    max_height,
                } => self.demand(link, id, subscribers, max_height),
                LinkMessage::KeyframeRequest { id } => {
                    if let Some((room, key, source)) = self.cascade_index.local_streams.get(&id).cloned()
                        && self
                            .rooms
                            .get(&*room)
                            .is_some_and(|r| r.cascade.peers.contains(&link))
                    {
                        self.request_keyframe(now, &room, key, source);
                        self.pump(now, &room);
                    }
                }
                LinkMessage::E2ee {
                    room,
                    required,
                    by,
                    changed_at_ms,
                } => {
                    let flag = super::e2ee::E2eeFlag {
                        required,
                        by,
                        changed_at_ms,
                    };
                    self.remote_e2ee(now, &room, link, flag);
                }
                LinkMessage::Recording { room, active } => self.link_recording(&room, link, active),
                message if super::meeting::is_meeting_link_message(&message) => {
                    self.handle_link_meeting_message(now, link, message);
                }
                other => tracing::debug!(?other, "link message the shard does not handle"),
            },
        }
    }

    fn peer_opened(&mut self, now: Instant, room_id: RoomId, link: LinkIndex) {
        let room = self
            .rooms
            .entry(room_id.clone())
            .or_insert_with(|| Room::new(&room_id));
        if !room.cascade.peers.insert(link) {
            return;
        }
        let mut messages = Vec::new();
        for participant in room.participants.values() {
            messages.push(LinkMessage::Participant {
                room: room_id.clone(),
                participant: participant.info(),
            });
        }
        for participant in room.participants.values() {
            for slot in &participant.slots {
                if let Some(message) = stream_announcement(&room_id, participant, slot) {
                    messages.push(message);
                }
            }
        }
        for message in messages {
            self.outputs.push_back(ShardOutput::ToLink { link, message });
        }
        self.send_chat_history_to_link(&room_id, link);
        self.send_e2ee_to_link(&room_id, link);
        self.tell_link_recording(&room_id, link);
        self.pump(now, &room_id);
    }

    fn peer_closed(&mut self, now: Instant, room_id: &RoomId, link: LinkIndex) {
        self.link_recording(room_id, link, false);
        let Some(room) = self.rooms.get_mut(room_id) else {
            return;
        };
        room.cascade.peers.remove(&link);
        for participant in room.participants.values_mut() {
            for track in participant.slots.iter_mut().filter_map(|s| s.track.as_mut()) {
                track.links.retain(|d| d.link != link);
            }
        }
        let gone: Vec<ParticipantKey> = room
            .cascade
            .remote
            .iter()
            .filter(|(_, p)| p.link == link)
            .map(|(k, _)| *k)
            .collect();
        for key in gone {
            self.remove_remote(now, room_id, key);
        }
        self.drop_room_if_unused(room_id);
    }

    /// Forgets a room nobody uses any more: no local participant, no link that opened it, no
    /// remote participant.
    pub(super) fn drop_room_if_unused(&mut self, room_id: &RoomId) {
        if self.rooms.get(room_id).is_some_and(|room| {
            room.participants.is_empty() && room.cascade.peers.is_empty() && room.cascade.remote.is_empty()
        }) {
            self.rooms.remove(room_id);
        }
    }

    fn remote_participant(&mut self, now: Instant, room_id: RoomId, link: LinkIndex, info: ParticipantInfo) {
        // The link task passes on only rooms both sides opened; the shard holds to the same rule
        // itself, so a participant never outlives the link that announced it.
        let Some(room) = self
            .rooms
            .get_mut(&room_id)
            .filter(|room| room.cascade.peers.contains(&link))
        else {
            tracing::debug!(room = %room_id, ?link, "participant announced for a room the link did not open");
            return;
        };
        // A participant connected here is the one that counts: the far side is about to say it left.
        if room.participants.values().any(|p| p.id == info.id) {
            return;
        }
        // Announced by another bridge now (it moved there): what it published through the bridge
        // it left has ended; the new one announces its streams anew.
        let moved_from = room
            .cascade
            .remote
            .values()
            .find(|p| p.info.id == info.id && p.link != link)
            .map(|p| (p.link, p.streams.values().map(|s| s.id).collect::<Vec<_>>()));
        if let Some((old_link, ids)) = moved_from {
            for id in ids {
                self.remote_stream_ended(now, old_link, id);
            }
        }
        let Some(room) = self.rooms.get_mut(&room_id) else {
            return;
        };
        let existing = room
            .cascade
            .remote
            .iter()
            .find(|(_, p)| p.info.id == info.id)
            .map(|(k, _)| *k);
        let message = match existing {
            Some(key) => {
                let remote = room.cascade.remote.get_mut(&key).expect("found above");
                // The bridge it moved to has the word from now on.
                remote.link = link;
                remote.info = info.clone();
                ServerMessage::ParticipantUpdated { participant: info }
            }
            None => {
                if room.cascade.remote.len() >= REMOTE_PARTICIPANTS_PER_ROOM_MAX {
                    tracing::warn!(room = %room_id, "remote participants per room at the limit; announcement ignored");
                    return;
                }
                let key = self.cascade_index.allocate_remote_key();
                room.cascade.remote.insert(
                    key,
                    RemoteParticipant {
                        link,
                        info: info.clone(),
                        streams: BTreeMap::new(),
                    },
                );
                ServerMessage::ParticipantJoined { participant: info }
            }
        };
        for local in room.participants.values() {
            self.outputs.push_back(ShardOutput::ToClient {
                key: local.key,
                message: message.clone(),
            });
        }
        self.pump(now, &room_id);
    }

    /// Removes a remote participant, its streams and the legs carrying them, and tells the local
    /// participants it left.
    pub(super) fn remove_remote(&mut self, now: Instant, room_id: &RoomId, key: ParticipantKey) {
        let Some(room) = self.rooms.get_mut(room_id) else {
            return;
        };
        let Some(remote) = room.cascade.remote.remove(&key) else {
            return;
        };
        for stream in remote.streams.values() {
            self.cascade_index
                .remote_streams
                .remove(&(remote.link, stream.id));
        }
        room.histories.retain(|(publisher, _, _), _| *publisher != key);
        room.source_layers.retain(|(publisher, _), _| *publisher != key);
        super::speakers::forget(room, key);
        super::announce_departure(&mut self.outputs, &mut room.participants, key, &remote.info.id);
        self.pump(now, room_id);
    }

    #[allow(clippy::too_many_arguments)]
    fn remote_stream(
        &mut self,
        now: Instant,
        link: LinkIndex,
        id: u32,
        room_id: &RoomId,
        participant: &bridgemesh_proto::ParticipantId,
        source: MediaSource,
        codec: LinkCodec,
        extensions: Vec<LinkExtension>,
    ) {
        // An id the link gave another participant's or source's stream: that stream has ended
        // (a peer reusing ids must not leave two streams behind one id).
        let reused = self
            .cascade_index
            .remote_streams
            .get(&(link, id))
            .is_some_and(|(r, key, s)| {
                &**r != room_id
                    || *s != source
                    || self
                        .rooms
                        .get(room_id)
                        .and_then(|room| room.cascade.remote.get(key))
                        .is_none_or(|p| p.info.id != *participant)
            });
        if reused {
            self.remote_stream_ended(now, link, id);
        }
        let Some(room) = self.rooms.get_mut(room_id) else {
            return;
        };
        let Some((key, remote)) = room
            .cascade
            .remote
            .iter_mut()
            .find(|(_, p)| p.link == link && p.info.id == *participant)
        else {
            tracing::debug!(%participant, "stream of a participant the link did not announce");
            return;
        };
        let key = *key;
        let codec = rtp_codec(codec);
        let extensions: Vec<(String, u8)> = extensions.into_iter().map(|e| (e.uri, e.id)).collect();
        let previous = remote.streams.insert(
            source,
            RemoteStream {
                id,
                codec: codec.clone(),
                extensions: extensions.clone(),
                demand_sent: (0, 0),
                clock: Default::default(),
            },
        );
        if let Some(previous) = &previous {
            self.cascade_index.remote_streams.remove(&(link, previous.id));
        }
        // Packets kept so far may belong to the stream this announcement replaces.
        room.histories.retain(|k, _| (k.0, k.1) != (key, source));
        let room_name = room.name.clone();
        self.cascade_index
            .remote_streams
            .insert((link, id), (room_name, key, source));
        // The same media again (a repeated announcement, a new id): the legs carry on as they are.
        let same = previous.is_some_and(|p| p.codec == codec && p.extensions == extensions);
        for local in room.participants.values_mut() {
            if same {
                continue;
            }
            // A stream with another codec replaces the leg, so the subscriber gets a fresh one.
            if let Some(leg) = local.legs.remove(&(key, source)) {
                let _ = local.pc.remove_track(leg.sender_id);
            }
            local.renegotiate = true;
            local.dirty = true;
        }
        if same {
            // The new id needs the subscribers reported again.
            self.refresh_demand(room_id);
        }
        self.pump(now, room_id);
    }

    fn remote_stream_ended(&mut self, now: Instant, link: LinkIndex, id: u32) {
        let Some((room_id, key, source)) = self.cascade_index.remote_streams.remove(&(link, id)) else {
            return;
        };
        let Some(room) = self.rooms.get_mut(&*room_id) else {
            return;
        };
        if let Some(remote) = room.cascade.remote.get_mut(&key) {
            remote.streams.remove(&source);
        }
        room.histories.retain(|k, _| (k.0, k.1) != (key, source));
        for local in room.participants.values_mut() {
            if local.legs.contains_key(&(key, source)) {
                local.renegotiate = true;
                local.dirty = true;
            }
        }
        self.pump(now, &room_id);
    }

    fn demand(&mut self, link: LinkIndex, id: u32, subscribers: u32, max_height: u16) {
        let Some((room_id, key, source)) = self.cascade_index.local_streams.get(&id).cloned() else {
            return;
        };
        let Some(room) = self.rooms.get_mut(&*room_id) else {
            return;
        };
        if !room.cascade.peers.contains(&link) {
            return;
        }
        let Some(track) = room
            .participants
            .get_mut(&key)
            .and_then(|p| p.slot_mut(source))
            .and_then(|s| s.track.as_mut())
        else {
            return;
        };
        // Kept in place while asked for: a simulcast track's selector for the link keeps its
        // numbering, and aims at the new height from its next packet.
        match track.links.iter().position(|d| d.link == link) {
            Some(index) if subscribers == 0 => {
                track.links.swap_remove(index);
            }
            Some(index) => track.links[index].max_height = max_height,
            None if subscribers > 0 => track.links.push(crate::participant::LinkDemand {
                link,
                max_height,
                selector: None,
            }),
            None => {}
        }
    }

    fn remote_media(&mut self, now: Instant, link: LinkIndex, stream: u32, packet: &[u8]) {
        self.stats.cascade_rtp_in += 1;
        let Some((room_id, key, source)) = self.cascade_index.remote_streams.get(&(link, stream)).cloned()
        else {
            self.stats.cascade_rtp_unknown_stream += 1;
            return;
        };
        let Some(room) = self.rooms.get_mut(&*room_id) else {
            return;
        };
        let mut audio_level = None;
        if let Some(stream) = room
            .cascade
            .remote
            .get_mut(&key)
            .and_then(|p| p.streams.get_mut(&source))
        {
            stream.clock.on_packet(now, packet);
            audio_level = source
                .is_audio()
                .then(|| audio_level_of(stream, packet))
                .flatten();
        }
        if let Some(level) = audio_level {
            super::speakers::heard(now, room, key, level, &mut self.outputs);
        }
        let vp8 = super::forwarding::is_vp8(room, key, source);
        let keyframes = super::deliver(
            now,
            room,
            super::StreamRef::single(key, source, vp8),
            super::Incoming::Raw(packet),
            &mut self.tx,
            &mut self.outputs,
            &mut self.stats,
        );
        if keyframes != 0 {
            // A leg resuming a paused remote source: its bridge asks the publisher.
            self.request_keyframe(now, &room_id, key, source);
        }
        self.pump(now, &room_id);
    }

    /// Announces (or retires) a local participant's streams as they become forwardable (or stop
    /// being so), to every link that opened the room.
    pub(super) fn sync_stream_announcements(&mut self, room_id: &RoomId, key: ParticipantKey) {
        let shard = self.index;
        let Some(room) = self.rooms.get_mut(room_id) else {
            return;
        };
        let room_name = room.name.clone();
        let Some(participant) = room.participants.get_mut(&key) else {
            return;
        };
        let mut messages = Vec::new();
        for index in 0..participant.slots.len() {
            let slot = &participant.slots[index];
            let forwardable = slot.active && slot.track.as_ref().is_some_and(|t| t.codec.is_some());
            let announced = slot.track.as_ref().and_then(|t| t.stream_id);
            match (forwardable, announced) {
                (true, None) => {
                    let id = self.cascade_index.allocate_stream(shard);
                    let source = slot.source;
                    self.cascade_index
                        .local_streams
                        .insert(id, (room_name.clone(), key, source));
                    let track = participant.slots[index].track.as_mut().expect("forwardable");
                    track.stream_id = Some(id);
                    track.link_dropped_extensions = track
                        .extensions
                        .iter()
                        .filter(|e| LEG_LOCAL_EXTENSIONS.contains(&e.uri.as_str()))
                        .map(|e| e.id as u8)
                        .collect();
                    if let Some(message) =
                        stream_announcement(room_id, participant, &participant.slots[index])
                    {
                        messages.push(message);
                    }
                }
                (false, Some(id)) => {
                    self.cascade_index.local_streams.remove(&id);
                    let track = participant.slots[index].track.as_mut().expect("announced");
                    track.stream_id = None;
                    track.links.clear();
                    messages.push(LinkMessage::StreamEnded { id });
                }
                _ => {}
            }
        }
        let peers: Vec<LinkIndex> = room.cascade.peers.iter().copied().collect();
        for message in messages {
            for link in &peers {
                self.outputs.push_back(ShardOutput::ToLink {
                    link: *link,
                    message: message.clone(),
                });
            }
        }
    }

    /// Sends `message` to every link that opened the room.
    pub(super) fn tell_peers(&mut self, room_id: &RoomId, message: LinkMessage) {
        let Some(room) = self.rooms.get(room_id) else {
            return;
        };
        for link in &room.cascade.peers {
            self.outputs.push_back(ShardOutput::ToLink {
                link: *link,
                message: message.clone(),
            });
        }
    }

    /// Tells every link that opened the room that a stream of this bridge's is gone.
    pub(super) fn retire_stream(&mut self, room_id: &RoomId, id: u32) {
        self.cascade_index.local_streams.remove(&id);
        self.tell_peers(room_id, LinkMessage::StreamEnded { id });
    }

    /// Retires a leaving local participant's streams on every link.
    pub(super) fn retire_streams(&mut self, room_id: &RoomId, participant: &crate::participant::Participant) {
        for track in participant.slots.iter().filter_map(|s| s.track.as_ref()) {
            if let Some(id) = track.stream_id {
                self.retire_stream(room_id, id);
            }
        }
    }

    /// Tells each remote stream's bridge how many local subscribers can receive it, when that
    /// changed: a stream nobody here receives stops crossing the link.
    pub(super) fn refresh_demand(&mut self, room_id: &RoomId) {
        let Some(room) = self.rooms.get_mut(room_id) else {
            return;
        };
        let Room {
            participants,
            cascade,
            recording,
            ..
        } = room;
        // A room recorded here receives every remote stream, watched or not, at its best.
        let recorded = recording.recorder.is_some();
        for (key, remote) in &mut cascade.remote {
            for (source, stream) in &mut remote.streams {
                // Subscribers that show the stream (a paused tile needs nothing), and the largest
                // height they show it at: of a simulcast camera, only the layer covering that
                // crosses the link.
                let mut subscribers = u32::from(recorded);
                let mut max_height = if recorded || source.is_audio() {
                    u16::MAX
                } else {
                    0
                };
                for participant in participants.values() {
                    let receives = participant
                        .legs
                        .get(&(*key, *source))
                        .is_some_and(|l| l.payload_type.is_some() && !l.declined);
                    if !receives {
                        continue;
                    }
                    let height = if source.is_audio() {
                        u16::MAX
                    } else {
                        crate::simulcast::constraints::max_height_for(
                            participant.constraints.as_ref(),
                            &remote.info.id,
                            *source,
                        )
                    };
                    if height > 0 {
                        subscribers += 1;
                        max_height = max_height.max(height);
                    }
                }
                let demand = (subscribers, if subscribers == 0 { 0 } else { max_height });
                if demand != stream.demand_sent {
                    stream.demand_sent = demand;
                    self.outputs.push_back(ShardOutput::ToLink {
                        link: remote.link,
                        message: LinkMessage::Demand {
                            id: stream.id,
                            subscribers: demand.0,
                            max_height: demand.1,
                        },
                    });
                }
            }
        }
    }

    /// Asks a remote publisher's bridge for a keyframe. Not limited here: the publisher's bridge
    /// merges requests into at most one per [`KEYFRAME_REQUEST_INTERVAL`] toward the publisher,
    /// and sends a late one when the window ends, which a limit here would lose.
    ///
    /// [`KEYFRAME_REQUEST_INTERVAL`]: crate::participant::KEYFRAME_REQUEST_INTERVAL
    pub(super) fn request_remote_keyframe(
        &mut self,
        room_id: &RoomId,
        key: ParticipantKey,
        source: MediaSource,
    ) {
        let Some(remote) = self.rooms.get(room_id).and_then(|r| r.cascade.remote.get(&key)) else {
            return;
        };
        let Some(stream) = remote.streams.get(&source) else {
            return;
        };
        let (link, id) = (remote.link, stream.id);
        self.stats.keyframe_requests_sent += 1;
        self.outputs.push_back(ShardOutput::ToLink {
            link,
            message: LinkMessage::KeyframeRequest { id },
        });
    }
}

fn stream_announcement(
    room_id: &RoomId,
    participant: &crate::participant::Participant,
    slot: &crate::participant::RecvSlot,
) -> Option<LinkMessage> {
    let track = slot.track.as_ref()?;
    let id = track.stream_id?;
    Some(LinkMessage::Stream {
        id,
        room: room_id.clone(),
        participant: participant.id.clone(),
        source: slot.source,
        codec: link_codec(track.codec.as_ref()?),
        extensions: track
            .extensions
            .iter()
            .filter(|e| !LEG_LOCAL_EXTENSIONS.contains(&e.uri.as_str()))
            .map(|e| LinkExtension {
                uri: e.uri.clone(),
                id: e.id as u8,
            })
            .collect(),
    })
}

/// The audio level a remote publisher's packet carries, under the id its stream announced.
fn audio_level_of(stream: &RemoteStream, packet: &[u8]) -> Option<u8> {
    let id = stream
        .extensions
        .iter()
        .find(|(uri, _)| uri == crate::dominant_speaker::AUDIO_LEVEL_URI)?
        .1;
    let value = crate::fastpath::inbound::find_extension(packet, id)?;
    value.first().map(|byte| byte & 0x7F)
}

mod outbound;
pub(super) use outbound::{cross_links, send_to_links};

#[cfg(test)]
mod property_tests;
#[cfg(test)]
mod tests;
