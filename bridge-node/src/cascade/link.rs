//! One cascade link: a verified QUIC connection to a peer bridge, its control stream and its
//! media datagrams.
//!
//! Each link runs one task that owns the link's room state and is the only one handing the
//! shards what the peer says, so the shards see it in the order the peer said it. A room is
//! **shared** on a link while both sides have opened it (`open` sent and received); the shards
//! hear [`CascadeInput::PeerOpened`] when it becomes shared and [`CascadeInput::PeerClosed`] when
//! it stops (either side closed it, or the link ended), and only messages about shared rooms
//! reach them. Media datagrams are read by a second task, straight into the shards' inboxes.
//! What the shards send goes through [`LinkTable`] to a writer task, or out as a datagram.

use crate::driver::ShardInboxes;
use crate::shard::{CascadeInput, LinkIndex, shard_of_stream};
use bridgemesh_proto::cascade::{
    CASCADE_PROTOCOL_VERSION, LINK_MESSAGE_MAX_BYTES, LinkMessage, parse_media_datagram,
};
use bridgemesh_proto::{BridgeId, RoomId};
use bytes::Bytes;
use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use tokio::sync::mpsc;

/// Messages queued toward one peer, coalesced per (room, participant) and bounded per room (see
/// [`crate::cascade::link_outbox`]); a peer this far behind is cut off (its link reconnects and
/// both sides announce everything again).
pub use crate::cascade::link_outbox::{LINK_QUEUE_CAPACITY, LINK_ROOM_BUDGET};
use crate::cascade::link_outbox::{LinkOutboxReceiver, LinkOutboxSender, Pushed};
/// Rooms a peer may open on one link, and streams it may announce.
pub const LINK_ROOMS_MAX: usize = 100_000;
pub const LINK_STREAMS_MAX: usize = 100_000;
/// QUIC application error codes a link closes with.
const CLOSE_NORMAL: u32 = 0;
const CLOSE_PROTOCOL: u32 = 1;
const CLOSE_SLOW: u32 = 2;

/// Counters of one link, shared by the threads that touch it.
#[derive(Debug, Default)]
pub struct LinkCounters {
    pub media_datagrams_out: AtomicU64,
    pub media_bytes_out: AtomicU64,
    /// Datagrams not sent: larger than the path takes, or the connection is gone.
    pub media_dropped_out: AtomicU64,
    pub media_datagrams_in: AtomicU64,
    pub media_bytes_in: AtomicU64,
    /// Datagrams received and dropped: malformed, of an unknown stream, or the shard was full.
    pub media_dropped_in: AtomicU64,
    pub messages_out: AtomicU64,
    pub messages_in: AtomicU64,
    /// Rooms shared on the link now.
    pub shared_rooms: AtomicUsize,
    /// Streams the peer announced that are live now.
    pub streams_in: AtomicUsize,
    /// Rooms closed on the link for passing their budget of pending messages.
    pub rooms_overflowed: AtomicU64,
}

/// A link as the metrics show it.
#[derive(Debug, Clone, PartialEq)]
pub struct LinkStats {
    pub peer: BridgeId,
    pub rtt: Duration,
    /// Every byte of the connection on the wire (QUIC headers, acknowledgements, control).
    pub udp_bytes_out: u64,
    pub udp_bytes_in: u64,
    pub lost_packets: u64,
    pub media_datagrams_out: u64,
    pub media_bytes_out: u64,
    pub media_dropped_out: u64,
    pub media_datagrams_in: u64,
    pub media_bytes_in: u64,
    pub media_dropped_in: u64,
    pub messages_out: u64,
    pub messages_in: u64,
    pub rooms_overflowed: u64,
    pub shared_rooms: usize,
    pub streams_in: usize,
}

struct LinkEntry {
    peer: BridgeId,
    connection: quinn::Connection,
    writer: LinkOutboxSender,
    /// The link task's instructions: a room that overflowed its budget is closed through it.
    instructions: mpsc::Sender<LinkInstruction>,
    counters: Arc<LinkCounters>,
}

/// The live links, for the shard threads to send on.
#[derive(Default)]
pub struct LinkTable {
    links: RwLock<HashMap<LinkIndex, LinkEntry>>,
    /// Links established since the bridge started: a link that restarts counts again.
    established_total: AtomicU64,
}

impl LinkTable {
    /// Queues a control message for the peer. A room past its budget is closed on the link; a
    /// peer whose whole queue is full is cut off.
    pub fn send_message(&self, link: LinkIndex, message: LinkMessage) {
        let links = self.links.read().expect("link table lock");
        let Some(entry) = links.get(&link) else {
            return;
        };
        match entry.writer.push(message) {
            Pushed::Queued | Pushed::Coalesced => {}
            Pushed::RoomOverflow(room) => {
                tracing::warn!(peer = %entry.peer, %room, "a room overflowed its cascade link budget; closing it on the link");
                entry.counters.rooms_overflowed.fetch_add(1, Ordering::Relaxed);
                if entry
                    .instructions
                    .try_send(LinkInstruction::Overflowed(room))
                    .is_err()
                {
                    entry
                        .connection
                        .close(CLOSE_SLOW.into(), b"control queue overflow");
                }
            }
            Pushed::Full => {
                tracing::warn!(peer = %entry.peer, "cascade link queue full; closing the link to start over");
                entry
                    .connection
                    .close(CLOSE_SLOW.into(), b"control queue overflow");
            }
        }
    }

    /// Sends a media datagram; one the path cannot carry is counted and dropped.
    pub fn send_datagram(&self, link: LinkIndex, datagram: Bytes) {
        let links = self.links.read().expect("link table lock");
        let Some(entry) = links.get(&link) else {
            return;
        };
        let len = datagram.len() as u64;
        match entry.connection.send_datagram(datagram) {
            Ok(()) => {
                entry.counters.media_datagrams_out.fetch_add(1, Ordering::Relaxed);
                entry.counters.media_bytes_out.fetch_add(len, Ordering::Relaxed);
            }
            Err(err) => {
                entry.counters.media_dropped_out.fetch_add(1, Ordering::Relaxed);
                tracing::trace!(peer = %entry.peer, %err, "media datagram not sent");
            }
        }
    }

    pub fn stats(&self) -> Vec<LinkStats> {
        let links = self.links.read().expect("link table lock");
        let mut stats: Vec<LinkStats> = links
            .values()
            .map(|entry| {
                let quic = entry.connection.stats();
                let c = &entry.counters;
                LinkStats {
                    peer: entry.peer.clone(),
                    rtt: entry.connection.rtt(),
                    udp_bytes_out: quic.udp_tx.bytes,
                    udp_bytes_in: quic.udp_rx.bytes,
                    lost_packets: quic.path.lost_packets,
                    media_datagrams_out: c.media_datagrams_out.load(Ordering::Relaxed),
                    media_bytes_out: c.media_bytes_out.load(Ordering::Relaxed),
                    media_dropped_out: c.media_dropped_out.load(Ordering::Relaxed),
                    media_datagrams_in: c.media_datagrams_in.load(Ordering::Relaxed),
                    media_bytes_in: c.media_bytes_in.load(Ordering::Relaxed),
                    media_dropped_in: c.media_dropped_in.load(Ordering::Relaxed),
                    messages_out: c.messages_out.load(Ordering::Relaxed),
                    messages_in: c.messages_in.load(Ordering::Relaxed),
                    rooms_overflowed: c.rooms_overflowed.load(Ordering::Relaxed),
                    shared_rooms: c.shared_rooms.load(Ordering::Relaxed),
                    streams_in: c.streams_in.load(Ordering::Relaxed),
                }
            })
            .collect();
        stats.sort_by(|a, b| a.peer.cmp(&b.peer));
        stats
    }

    fn insert(&self, index: LinkIndex, entry: LinkEntry) {
        self.established_total.fetch_add(1, Ordering::Relaxed);
        self.links.write().expect("link table lock").insert(index, entry);
    }

    /// Links established since the bridge started (each restart of a link counts).
    pub fn established_total(&self) -> u64 {
        self.established_total.load(Ordering::Relaxed)
    }

    fn remove(&self, index: LinkIndex) {
        self.links.write().expect("link table lock").remove(&index);
    }
}

/// What the manager tells a link.
#[derive(Debug)]
pub(crate) enum LinkInstruction {
    Open(RoomId),
    Close(RoomId),
    /// The room passed its budget of pending messages: closed on this link (the peer is told,
    /// the shard forgets the peer's side) until control opens it again or the link restarts.
    Overflowed(RoomId),
}

/// What a link tells the manager.
#[derive(Debug)]
pub(crate) enum LinkEvent {
    /// Hello exchanged: the link carries rooms from now on.
    Established {
        peer: BridgeId,
        index: LinkIndex,
        connection: quinn::Connection,
        instructions: mpsc::Sender<LinkInstruction>,
    },
    /// How many rooms the peer has open on the link now.
    TheirRooms { index: LinkIndex, count: usize },
    /// The link ended (or never got established).
    Closed {
        peer: BridgeId,
        index: LinkIndex,
        established: bool,
        reason: String,
    },
}

pub(crate) struct LinkContext {
    pub me: BridgeId,
    pub index: LinkIndex,
    pub dialed: bool,
    pub shards: Arc<ShardInboxes>,
    pub table: Arc<LinkTable>,
    pub events: mpsc::Sender<LinkEvent>,
    pub hello_timeout: Duration,
}

#[derive(Debug, thiserror::Error)]
enum LinkError {
    #[error("control stream: {0}")]
    Stream(String),
    #[error("no hello within {0:?}")]
    HelloTimeout(Duration),
    #[error("protocol: {0}")]
    Protocol(String),
    #[error("the peer closed the link")]
    PeerClosed,
}

/// Runs a link to its end.
pub(crate) async fn run(connection: crate::cascade::CascadeConnection, ctx: LinkContext) {
    let peer = connection.peer().clone();
    let quic = connection.quic().clone();
    // Room by room, as control's updates come: up to every room twice (close and open again).
    let (instructions_tx, instructions) = mpsc::channel(2 * crate::cascade::manager::ROOMS_MAX);
    let mut established = false;
    let result = serve(
        &quic,
        &peer,
        &ctx,
        instructions_tx,
        instructions,
        &mut established,
    )
    .await;
    let (code, reason) = match &result {
        Ok(()) => (CLOSE_NORMAL, "closed".to_owned()),
        Err(err @ LinkError::Protocol(_)) => (CLOSE_PROTOCOL, err.to_string()),
        Err(err) => (CLOSE_NORMAL, err.to_string()),
    };
    quic.close(code.into(), reason.as_bytes());
    ctx.table.remove(ctx.index);
    let _ = ctx
        .events
        .send(LinkEvent::Closed {
            peer,
            index: ctx.index,
            established,
            reason,
        })
        .await;
}

async fn serve(
    quic: &quinn::Connection,
    peer: &BridgeId,
    ctx: &LinkContext,
    instructions_tx: mpsc::Sender<LinkInstruction>,
    mut instructions: mpsc::Receiver<LinkInstruction>,
    established: &mut bool,
) -> Result<(), LinkError> {
    let opened = tokio::time::timeout(ctx.hello_timeout, async {
        if ctx.dialed {
            quic.open_bi().await
        } else {
            quic.accept_bi().await
        }
    })
    .await
    .map_err(|_| LinkError::HelloTimeout(ctx.hello_timeout))?;
    let (send, mut recv) = opened.map_err(|e| LinkError::Stream(e.to_string()))?;
    let counters = Arc::new(LinkCounters::default());
    let (writer, writer_rx) = crate::cascade::link_outbox::channel(LINK_QUEUE_CAPACITY, LINK_ROOM_BUDGET);
    tokio::spawn(write_messages(send, writer_rx, counters.clone(), quic.clone()));
    let _ = writer.push(LinkMessage::Hello {
        bridge: ctx.me.clone(),
        version: CASCADE_PROTOCOL_VERSION,
    });
    let hello = tokio::time::timeout(ctx.hello_timeout, read_message(&mut recv))
        .await
        .map_err(|_| LinkError::HelloTimeout(ctx.hello_timeout))??;
    match hello {
        LinkMessage::Hello { bridge, version } if bridge == *peer && version == CASCADE_PROTOCOL_VERSION => {}
        LinkMessage::Hello { bridge, version } => {
            return Err(LinkError::Protocol(format!(
                "hello from {bridge} version {version}; expected {peer} version {CASCADE_PROTOCOL_VERSION}"
            )));
        }
        other => return Err(LinkError::Protocol(format!("expected hello, got {other:?}"))),
    }
    ctx.table.insert(
        ctx.index,
        LinkEntry {
            peer: peer.clone(),
            connection: quic.clone(),
            writer: writer.clone(),
            instructions: instructions_tx.clone(),
            counters: counters.clone(),
        },
    );
    *established = true;
    tracing::info!(%peer, dialed = ctx.dialed, "cascade link up");
    let _ = ctx
        .events
        .send(LinkEvent::Established {
            peer: peer.clone(),
            index: ctx.index,
            connection: quic.clone(),
            instructions: instructions_tx,
        })
        .await;
    // The peer's streams: id → (room, shard), shared with the datagram reader.
    let streams: Arc<Mutex<HashMap<u32, (RoomId, usize)>>> = Arc::default();
    let reader = tokio::spawn(read_datagrams(
        quic.clone(),
        ctx.index,
        streams.clone(),
        ctx.shards.clone(),
        counters.clone(),
    ));
    // Read by a task of its own: a read cut short by `select!` would lose the bytes it consumed.
    let (messages_tx, mut messages) = mpsc::channel(LINK_QUEUE_CAPACITY);
    let control_reader = tokio::spawn(async move {
        loop {
            let message = read_message(&mut recv).await;
            let failed = message.is_err();
            if messages_tx.send(message).await.is_err() || failed {
                return;
            }
        }
    });
    let mut rooms = LinkRooms {
        ours: BTreeSet::new(),
        theirs: BTreeSet::new(),
        streams,
        counters,
        ctx,
    };
    let result = loop {
        tokio::select! {
            instruction = instructions.recv() => match instruction {
                Some(LinkInstruction::Open(room)) => {
                    if rooms.ours.insert(room.clone()) {
                        push_or_close(&writer, quic, LinkMessage::Open { room: room.clone() });
                        if rooms.theirs.contains(&room) {
                            rooms.shared_opened(room).await;
                        }
                    }
                }
                Some(LinkInstruction::Close(room) | LinkInstruction::Overflowed(room)) => {
                    if rooms.ours.remove(&room) {
                        push_or_close(&writer, quic, LinkMessage::Close { room: room.clone() });
                        if rooms.theirs.contains(&room) {
                            rooms.shared_closed(room).await;
                        }
                    }
                }
                // The manager is gone: the bridge is stopping.
                None => break Ok(()),
            },
            message = messages.recv() => match message {
                Some(Ok(message)) => {
                    rooms.counters.messages_in.fetch_add(1, Ordering::Relaxed);
                    if let Err(err) = rooms.on_message(message).await {
                        break Err(err);
                    }
                }
                Some(Err(err)) => break Err(err),
                None => break Err(LinkError::PeerClosed),
            },
        }
    };
    reader.abort();
    control_reader.abort();
    writer.close();
    // Everything shared ends with the link.
    let shared: Vec<RoomId> = rooms.ours.intersection(&rooms.theirs).cloned().collect();
    for room in shared {
        rooms.shared_closed(room).await;
    }
    result
}

struct LinkRooms<'a> {
    ours: BTreeSet<RoomId>,
    theirs: BTreeSet<RoomId>,
    streams: Arc<Mutex<HashMap<u32, (RoomId, usize)>>>,
    counters: Arc<LinkCounters>,
    ctx: &'a LinkContext,
}

impl LinkRooms<'_> {
    fn shared(&self, room: &RoomId) -> bool {
        self.ours.contains(room) && self.theirs.contains(room)
    }

    async fn to_room_shard(&self, room: &RoomId, input: CascadeInput) {
        let shard = self.ctx.shards.shard_of_room(room);
        self.ctx.shards.deliver(shard, input).await;
    }

    async fn shared_opened(&mut self, room: RoomId) {
        self.counters.shared_rooms.fetch_add(1, Ordering::Relaxed);
        let input = CascadeInput::PeerOpened {
            room: room.clone(),
            link: self.ctx.index,
        };
        self.to_room_shard(&room, input).await;
    }

    async fn shared_closed(&mut self, room: RoomId) {
        self.counters.shared_rooms.fetch_sub(1, Ordering::Relaxed);
        {
            let mut streams = self.streams.lock().expect("streams lock");
            streams.retain(|_, (r, _)| *r != room);
            self.counters.streams_in.store(streams.len(), Ordering::Relaxed);
        }
        let input = CascadeInput::PeerClosed {
            room: room.clone(),
            link: self.ctx.index,
        };
        self.to_room_shard(&room, input).await;
    }

    async fn report_their_rooms(&self) {
        let _ = self
            .ctx
            .events
            .send(LinkEvent::TheirRooms {
                index: self.ctx.index,
                count: self.theirs.len(),
            })
            .await;
    }

    async fn on_message(&mut self, message: LinkMessage) -> Result<(), LinkError> {
        let link = self.ctx.index;
        match message {
            LinkMessage::Hello { .. } => return Err(LinkError::Protocol("a second hello".into())),
            LinkMessage::Open { room } => {
                if self.theirs.len() >= LINK_ROOMS_MAX {
                    return Err(LinkError::Protocol(format!(
                        "more than {LINK_ROOMS_MAX} rooms open"
                    )));
                }
                if self.theirs.insert(room.clone()) {
                    self.report_their_rooms().await;
                    if self.ours.contains(&room) {
                        self.shared_opened(room).await;
                    }
                }
            }
            LinkMessage::Close { room } => {
                if self.theirs.remove(&room) {
                    self.report_their_rooms().await;
                    if self.ours.contains(&room) {
                        self.shared_closed(room).await;
                    }
                }
            }
            LinkMessage::Participant { ref room, .. }
            | LinkMessage::ParticipantLeft { ref room, .. }
            | LinkMessage::Chat { ref room, .. }
            | LinkMessage::ChatDeleted { ref room, .. }
            | LinkMessage::LowerHand { ref room, .. }
            | LinkMessage::Reaction { ref room, .. }
            | LinkMessage::E2ee { ref room, .. }
            | LinkMessage::Recording { ref room, .. } => {
                // About a room no longer shared: said before the peer heard this side close it.
                if self.shared(room) {
                    let room = room.clone();
                    self.to_room_shard(&room, CascadeInput::Message { link, message })
                        .await;
                }
            }
            LinkMessage::Stream { id, ref room, .. } => {
                if self.shared(room) {
                    let room = room.clone();
                    let shard = self.ctx.shards.shard_of_room(&room);
                    {
                        let mut streams = self.streams.lock().expect("streams lock");
                        if streams.len() >= LINK_STREAMS_MAX && !streams.contains_key(&id) {
                            return Err(LinkError::Protocol(format!(
                                "more than {LINK_STREAMS_MAX} streams"
                            )));
                        }
                        streams.insert(id, (room, shard));
                        self.counters.streams_in.store(streams.len(), Ordering::Relaxed);
                    }
                    self.ctx
                        .shards
                        .deliver(shard, CascadeInput::Message { link, message })
                        .await;
                }
            }
            LinkMessage::StreamEnded { id } => {
                let known = {
                    let mut streams = self.streams.lock().expect("streams lock");
                    let known = streams.remove(&id);
                    self.counters.streams_in.store(streams.len(), Ordering::Relaxed);
                    known
                };
                if let Some((_, shard)) = known {
                    self.ctx
                        .shards
                        .deliver(shard, CascadeInput::Message { link, message })
                        .await;
                }
            }
            LinkMessage::Demand { id, .. } | LinkMessage::KeyframeRequest { id } => {
                // Our own stream id: it names its shard.
                let shard = shard_of_stream(id);
                if shard < self.ctx.shards.len() {
                    self.ctx
                        .shards
                        .deliver(shard, CascadeInput::Message { link, message })
                        .await;
                }
            }
        }
        Ok(())
    }
}

async fn read_datagrams(
    quic: quinn::Connection,
    link: LinkIndex,
    streams: Arc<Mutex<HashMap<u32, (RoomId, usize)>>>,
    shards: Arc<ShardInboxes>,
    counters: Arc<LinkCounters>,
) {
    while let Ok(datagram) = quic.read_datagram().await {
        counters.media_datagrams_in.fetch_add(1, Ordering::Relaxed);
        counters
            .media_bytes_in
            .fetch_add(datagram.len() as u64, Ordering::Relaxed);
        let Some((stream, _)) = parse_media_datagram(&datagram) else {
            counters.media_dropped_in.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        let shard = streams
            .lock()
            .expect("streams lock")
            .get(&stream)
            .map(|(_, s)| *s);
        let delivered = shard.is_some_and(|shard| {
            shards.try_deliver(
                shard,
                CascadeInput::Media {
                    link,
                    stream,
                    packet: datagram.slice(bridgemesh_proto::cascade::MEDIA_HEADER_LEN..),
                },
            )
        });
        if !delivered {
            counters.media_dropped_in.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Queues a message of the link task's own (open, close); a full queue ends the link as a slow
/// peer does.
fn push_or_close(writer: &LinkOutboxSender, quic: &quinn::Connection, message: LinkMessage) {
    if writer.push(message) == Pushed::Full {
        quic.close(CLOSE_SLOW.into(), b"control queue overflow");
    }
}

async fn write_messages(
    mut send: quinn::SendStream,
    mut messages: LinkOutboxReceiver,
    counters: Arc<LinkCounters>,
    quic: quinn::Connection,
) {
    while let Some(message) = messages.recv().await {
        let body = match serde_json::to_vec(&message) {
            Ok(body) => body,
            Err(err) => {
                tracing::error!(%err, "link message not serializable");
                continue;
            }
        };
        let mut frame = Vec::with_capacity(4 + body.len());
        frame.extend_from_slice(&(body.len() as u32).to_be_bytes());
        frame.extend_from_slice(&body);
        if let Err(err) = send.write_all(&frame).await {
            tracing::debug!(%err, "link control stream closed");
            quic.close(CLOSE_NORMAL.into(), b"control stream closed");
            return;
        }
        counters.messages_out.fetch_add(1, Ordering::Relaxed);
    }
    let _ = send.finish();
}

async fn read_message(recv: &mut quinn::RecvStream) -> Result<LinkMessage, LinkError> {
    let mut header = [0u8; 4];
    recv.read_exact(&mut header).await.map_err(|err| match err {
        quinn::ReadExactError::FinishedEarly(_) => LinkError::PeerClosed,
        quinn::ReadExactError::ReadError(err) => LinkError::Stream(err.to_string()),
    })?;
    let len = u32::from_be_bytes(header) as usize;
    if len > LINK_MESSAGE_MAX_BYTES {
        return Err(LinkError::Protocol(format!(
            "a {len}-byte message; at most {LINK_MESSAGE_MAX_BYTES}"
        )));
    }
    let mut body = vec![0u8; len];
    recv.read_exact(&mut body)
        .await
        .map_err(|err| LinkError::Stream(err.to_string()))?;
    serde_json::from_slice(&body).map_err(|err| LinkError::Protocol(format!("unreadable message: {err}")))
}
