//! Threads, the media socket and timers around the shards: the [`Bridge`] handle and its start-up
//! here; one shard's thread in `worker.rs`, the batched media sockets in `socket.rs`, datagrams
//! handed between shards in `handoff.rs`.

use crate::cascade::{CascadeEndpoint, CascadeHandle, CascadeManagerConfig, LinkStats, LinkTable};
use crate::client_outbox::OutboxSender;
use crate::config::{BridgeConfig, ConfigError};
use crate::demux::{ParticipantKey, RouteTable};
use crate::fastpath::tx::TxArena;
use crate::shard::{
    BridgeEvent, CascadeInput, ConnectRequest, ModerationAction, Shard, ShardInput, ShardOutput, ShardStats,
};
use crate::ticket::{TicketVerifier, now_unix_s};
use bridgemesh_proto::bridge_session::CascadePeer;
use bridgemesh_proto::signaling::{ClientMessage, ServerMessage};
use bridgemesh_proto::{BridgeId, ParticipantId, RoomId};
use handoff::{Handed, HandoffReceiver, HandoffSenders};
use socket::{MediaSocket, RecvBatch, SendBatch, SendOutcome};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;

/// Inputs queued per shard; datagrams past it are dropped (as the network would) rather than
/// letting a burst grow memory.
const SHARD_INBOX_CAPACITY: usize = 8192;
/// Messages queued toward one client's socket. Room state is coalesced (see [`crate::client_outbox`]),
/// so only a client that reads nothing while the room keeps changing fills it, and is cut off.
pub const CLIENT_QUEUE_CAPACITY: usize = 256;
const BRIDGE_EVENTS_CAPACITY: usize = 65_536;
/// Batches read per wake-up before the shard looks at its inbox and timers again.
const RECV_BATCHES_PER_WAKE_MAX: usize = 4;
/// Datagrams other shards handed over taken per wake-up; the rest wait for the next turn.
const HANDED_PER_WAKE_MAX: usize = 256;

pub mod handoff;
pub mod recording;
pub mod socket;

/// What the signaling task receives for its client.
#[derive(Debug)]
pub enum ClientCommand {
    Send(ServerMessage),
    Close,
}

enum DriverInput {
    Shard(ShardInput),
    Connect {
        request: ConnectRequest,
        client: OutboxSender,
    },
    Shutdown,
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    #[error("invalid configuration: {0}")]
    Config(#[from] ConfigError),
    #[error("cannot bind the media port {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot start a shard thread: {0}")]
    Thread(std::io::Error),
}

/// How often each shard publishes its stats for `/metrics` and [`Bridge::stats`].
const STATS_PERIOD: Duration = Duration::from_millis(100);

#[derive(Debug, Default, Clone, Copy)]
pub struct BridgeStats {
    pub shards: ShardStats,
    pub datagrams_unroutable: u64,
    pub datagrams_dropped_inbox_full: u64,
    pub datagrams_send_failed: u64,
    /// `sendmmsg` (or, for an oversized datagram, `sendto`) calls.
    pub send_syscalls: u64,
    /// Datagrams read by a shard whose socket is not its participant's shard's, and handed over.
    pub datagrams_handed_over: u64,
    /// Datagrams dropped because the owning shard's handoff channel was full.
    pub datagrams_handoff_dropped: u64,
    /// Datagrams the kernel dropped at the media sockets for a full receive buffer.
    pub datagrams_dropped_by_kernel: u64,
    /// Remote addresses currently routed to a participant.
    pub media_routes: u64,
    /// Client signaling messages refused by [`crate::signaling_limits`].
    pub signaling_refused: u64,
    /// Clients disconnected for spending their refusal budget.
    pub signaling_flood_disconnects: u64,
}

/// The shards' inboxes, as the cascade links hand them what peers send.
pub(crate) struct ShardInboxes {
    inboxes: Vec<mpsc::Sender<DriverInput>>,
    counters: Arc<DriverCounters>,
}

impl ShardInboxes {
    pub(crate) fn len(&self) -> usize {
        self.inboxes.len()
    }

    pub(crate) fn shard_of_room(&self, room: &RoomId) -> usize {
        shard_of(room, self.inboxes.len())
    }

    /// Queues a control input in order, waiting for space: announcements must not be lost.
    pub(crate) async fn deliver(&self, shard: usize, input: CascadeInput) {
        if let Some(inbox) = self.inboxes.get(shard) {
            let _ = inbox.send(DriverInput::Shard(ShardInput::Cascade(input))).await;
        }
    }

    /// Queues media unless the shard is that far behind; `false` when dropped.
    pub(crate) fn try_deliver(&self, shard: usize, input: CascadeInput) -> bool {
        let delivered = self.inboxes.get(shard).is_some_and(|inbox| {
            inbox
                .try_send(DriverInput::Shard(ShardInput::Cascade(input)))
                .is_ok()
        });
        if !delivered {
            self.counters.inbox_full.fetch_add(1, Ordering::Relaxed);
        }
        delivered
    }
}

pub struct Bridge {
    config: BridgeConfig,
    media_addr: SocketAddr,
    media_addr_v6: Option<SocketAddr>,
    routes: Arc<RouteTable>,
    inboxes: Vec<mpsc::Sender<DriverInput>>,
    links: Arc<LinkTable>,
    cascade: OnceLock<CascadeHandle>,
    next_key: AtomicU64,
    verifier: TicketVerifier,
    events: Mutex<Option<mpsc::Receiver<BridgeEvent>>>,
    shard_stats: Vec<Arc<Mutex<ShardStats>>>,
    counters: Arc<DriverCounters>,
    /// Each shard socket's inode, to read its kernel drop counter.
    socket_inodes: Vec<u64>,
    threads: Mutex<Vec<std::thread::JoinHandle<()>>>,
    stopping: AtomicBool,
    /// The recordings directory and the recordings in progress; `None`: not recording.
    recordings: Option<Arc<crate::recording::RecordingStore>>,
}

#[derive(Default)]
struct DriverCounters {
    unroutable: AtomicU64,
    inbox_full: AtomicU64,
    send_failed: AtomicU64,
    send_syscalls: AtomicU64,
    handed_over: AtomicU64,
    handoff_dropped: AtomicU64,
    /// Datagrams read from each shard's socket.
    socket_reads: Vec<AtomicU64>,
    signaling_refused: AtomicU64,
    signaling_flood_disconnects: AtomicU64,
}

impl DriverCounters {
    fn new(shards: usize) -> Self {
        Self {
            unroutable: AtomicU64::new(0),
            inbox_full: AtomicU64::new(0),
            send_failed: AtomicU64::new(0),
            send_syscalls: AtomicU64::new(0),
            handed_over: AtomicU64::new(0),
            handoff_dropped: AtomicU64::new(0),
            socket_reads: (0..shards).map(|_| AtomicU64::new(0)).collect(),
            signaling_refused: AtomicU64::new(0),
            signaling_flood_disconnects: AtomicU64::new(0),
        }
    }
}

impl Bridge {
    /// Binds the media port (one `SO_REUSEPORT` socket per shard) and starts one thread per shard.
    pub fn start(config: BridgeConfig) -> Result<Arc<Bridge>, StartError> {
        config.validate()?;
        let sockets = socket::bind_media_sockets(
            config.media_bind,
            config.binds_dual_stack(),
            config.shard_count,
            &config.media_socket,
        )
        .map_err(|source| StartError::Bind {
            addr: config.media_bind,
            source,
        })?;
        let bound = sockets[0].local_addr().map_err(|source| StartError::Bind {
            addr: config.media_bind,
            source,
        })?;
        let socket_inodes = sockets
            .iter()
            .map(socket::inode_of)
            .collect::<std::io::Result<Vec<_>>>()
            .map_err(|source| StartError::Bind { addr: bound, source })?;
        let media_addr = SocketAddr::new(config.media_advertised_ip, bound.port());
        let media_addr_v6 = config
            .media_advertised_ipv6
            .map(|ip| SocketAddr::new(ip.into(), bound.port()));
        let dual_stack = config.binds_dual_stack();
        let routes = Arc::new(RouteTable::default());
        let (events_tx, events_rx) = mpsc::channel(BRIDGE_EVENTS_CAPACITY);
        let counters = Arc::new(DriverCounters::new(config.shard_count));
        let (handoff_senders, handoff_receivers) = handoff::handoff_channels(config.shard_count);
        let mut inboxes = Vec::new();
        let mut receivers = Vec::new();
        for _ in 0..config.shard_count {
            let (tx, rx) = mpsc::channel(SHARD_INBOX_CAPACITY);
            inboxes.push(tx);
            receivers.push(rx);
        }
        let links = Arc::new(LinkTable::default());
        let recordings = config
            .recording
            .clone()
            .map(|recording| Arc::new(crate::recording::RecordingStore::new(recording)));
        let shard_stats: Vec<_> = (0..config.shard_count)
            .map(|_| Arc::new(Mutex::new(ShardStats::default())))
            .collect();
        let mut threads = Vec::new();
        let per_shard = receivers
            .into_iter()
            .zip(sockets)
            .zip(handoff_senders.into_iter().zip(handoff_receivers));
        for (index, ((inbox, socket), (handoff, handed))) in per_shard.enumerate() {
            let worker = ShardWorker {
                shard: Shard::new(
                    index,
                    media_addr,
                    routes.clone(),
                    config.max_participants_per_room,
                )
                .with_ipv6_media_addr(media_addr_v6),
                dual_stack,
                routes: routes.clone(),
                links: links.clone(),
                events: events_tx.clone(),
                clients: HashMap::new(),
                stats: shard_stats[index].clone(),
                counters: counters.clone(),
                handoff,
                rx_arena: TxArena::default(),
                send: SendBatch::default(),
                recordings: recordings.clone(),
            };
            let thread = std::thread::Builder::new()
                .name(format!("bridge-shard-{index}"))
                .spawn(move || worker.run(socket, inbox, handed))
                .map_err(StartError::Thread)?;
            threads.push(thread);
        }
        // The port only: addresses stay out of info logs.
        tracing::info!(bridge = %config.bridge_id, media_port = media_addr.port(), shards = config.shard_count, "bridge started");
        tracing::debug!(media = %media_addr, "bridge media address");
        Ok(Arc::new(Bridge {
            verifier: TicketVerifier::new(config.bridge_id.clone(), &config.ticket_key)
                .refusing_issued_before(now_unix_s()),
            config,
            media_addr,
            media_addr_v6,
            routes,
            inboxes,
            links,
            cascade: OnceLock::new(),
            next_key: AtomicU64::new(1),
            events: Mutex::new(Some(events_rx)),
            shard_stats,
            counters,
            socket_inodes,
            threads: Mutex::new(threads),
            stopping: AtomicBool::new(false),
            recordings,
        }))
    }

    pub fn id(&self) -> &BridgeId {
        &self.config.bridge_id
    }

    pub fn config(&self) -> &BridgeConfig {
        &self.config
    }

    /// The address in every participant's ICE candidate.
    pub fn media_addr(&self) -> SocketAddr {
        self.media_addr
    }

    /// Every host candidate: [`Bridge::media_addr`], and the IPv6 one of a dual-stack bridge.
    pub fn media_addrs(&self) -> Vec<SocketAddr> {
        std::iter::once(self.media_addr)
            .chain(self.media_addr_v6)
            .collect()
    }

    pub fn verifier(&self) -> &TicketVerifier {
        &self.verifier
    }

    /// Links this bridge to others on `endpoint`, so its rooms can span bridges. Must be called
    /// within a Tokio runtime; a second call changes nothing and returns the running cascade.
    pub fn start_cascade(
        &self,
        endpoint: CascadeEndpoint,
        config: CascadeManagerConfig,
    ) -> std::io::Result<CascadeHandle> {
        if let Some(handle) = self.cascade.get() {
            return Ok(handle.clone());
        }
        let shards = Arc::new(ShardInboxes {
            inboxes: self.inboxes.clone(),
            counters: self.counters.clone(),
        });
        let handle = crate::cascade::manager::start(endpoint, shards, self.links.clone(), config)?;
        Ok(self.cascade.get_or_init(|| handle).clone())
    }

    /// The running cascade, once [`Bridge::start_cascade`] was called.
    pub fn cascade(&self) -> Option<&CascadeHandle> {
        self.cascade.get()
    }

    /// What control says: the other bridges hosting `room` now. Without a cascade the bridge
    /// serves its own participants only.
    pub fn set_room_bridges(&self, room: RoomId, peers: Vec<CascadePeer>) {
        match self.cascade.get() {
            Some(cascade) => cascade.set_room_bridges(room, peers),
            None if !peers.is_empty() => {
                tracing::warn!(%room, "control lists other bridges for a room, but this bridge has no cascade");
            }
            None => {}
        }
    }

    /// The live cascade links.
    pub fn cascade_links(&self) -> Vec<LinkStats> {
        self.links.stats()
    }

    /// Cascade links established since the bridge started; a link that restarts counts again.
    pub fn cascade_links_established(&self) -> u64 {
        self.links.established_total()
    }

    /// The stream of joins and leaves for control; can be taken once.
    pub fn take_events(&self) -> Option<mpsc::Receiver<BridgeEvent>> {
        self.events.lock().expect("events lock").take()
    }

    pub fn stats(&self) -> BridgeStats {
        let mut total = ShardStats::default();
        for stats in &self.shard_stats {
            let s = *stats.lock().expect("stats lock");
            total.datagrams_in += s.datagrams_in;
            total.datagram_bytes_in += s.datagram_bytes_in;
            total.datagrams_out += s.datagrams_out;
            total.rtp_in += s.rtp_in;
            total.rtp_in_bytes += s.rtp_in_bytes;
            total.rtp_forwarded += s.rtp_forwarded;
            total.rtp_dropped_no_leg += s.rtp_dropped_no_leg;
            total.keyframe_requests_sent += s.keyframe_requests_sent;
            total.participants += s.participants;
            total.rooms += s.rooms;
            total.cascade_rtp_in += s.cascade_rtp_in;
            total.cascade_rtp_unknown_stream += s.cascade_rtp_unknown_stream;
            total.cascade_rtp_out += s.cascade_rtp_out;
            total.rtp_retransmitted += s.rtp_retransmitted;
            total.rtp_nack_missed += s.rtp_nack_missed;
            total.sender_reports_translated += s.sender_reports_translated;
            total.sender_reports_generated += s.sender_reports_generated;
            total.rtp_forward_failed += s.rtp_forward_failed;
            total.srtp_key_export_failed += s.srtp_key_export_failed;
            total.inbound += s.inbound;
            total.srtp_sessions_gcm += s.srtp_sessions_gcm;
            total.srtp_sessions_cm += s.srtp_sessions_cm;
            total.ice_disconnects += s.ice_disconnects;
            total.rtp_not_sent_declined += s.rtp_not_sent_declined;
            total.meeting += s.meeting;
            total.simulcast += s.simulcast;
            total.bandwidth += s.bandwidth;
        }
        BridgeStats {
            shards: total,
            datagrams_unroutable: self.counters.unroutable.load(Ordering::Relaxed),
            datagrams_dropped_inbox_full: self.counters.inbox_full.load(Ordering::Relaxed),
            datagrams_send_failed: self.counters.send_failed.load(Ordering::Relaxed),
            send_syscalls: self.counters.send_syscalls.load(Ordering::Relaxed),
            datagrams_handed_over: self.counters.handed_over.load(Ordering::Relaxed),
            datagrams_handoff_dropped: self.counters.handoff_dropped.load(Ordering::Relaxed),
            datagrams_dropped_by_kernel: self
                .socket_inodes
                .iter()
                .filter_map(|inode| socket::kernel_drops_of(*inode))
                .sum(),
            media_routes: self.routes.address_route_count() as u64,
            signaling_refused: self.counters.signaling_refused.load(Ordering::Relaxed),
            signaling_flood_disconnects: self.counters.signaling_flood_disconnects.load(Ordering::Relaxed),
        }
    }

    /// Datagrams read from each shard's socket so far, by shard.
    pub fn socket_reads(&self) -> Vec<u64> {
        self.counters
            .socket_reads
            .iter()
            .map(|reads| reads.load(Ordering::Relaxed))
            .collect()
    }

    pub fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::Relaxed)
    }

    pub(crate) fn count_signaling_refused(&self) {
        self.counters.signaling_refused.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn count_signaling_flood_disconnect(&self) {
        self.counters
            .signaling_flood_disconnects
            .fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn new_key(&self) -> ParticipantKey {
        ParticipantKey(self.next_key.fetch_add(1, Ordering::Relaxed))
    }

    fn inbox_for(&self, room: &RoomId) -> &mpsc::Sender<DriverInput> {
        &self.inboxes[shard_of(room, self.inboxes.len())]
    }

    pub(crate) async fn connect(&self, request: ConnectRequest, client: OutboxSender) -> bool {
        let inbox = self.inbox_for(&request.room);
        inbox.send(DriverInput::Connect { request, client }).await.is_ok()
    }

    pub(crate) async fn client_message(&self, room: &RoomId, key: ParticipantKey, message: ClientMessage) {
        let _ = self
            .inbox_for(room)
            .send(DriverInput::Shard(ShardInput::Client { key, message }))
            .await;
    }

    pub(crate) async fn disconnect(&self, room: &RoomId, key: ParticipantKey) {
        let _ = self
            .inbox_for(room)
            .send(DriverInput::Shard(ShardInput::Disconnect { key }))
            .await;
    }

    /// Removes `participant` from `room`: it gets `bye{kicked}` and is disconnected, the room is
    /// told it left, and from this call on every ticket of that participant is refused, used or
    /// not. A participant not (yet) on this bridge only has its tickets refused.
    ///
    /// Returns at once; the shard that owns the room carries it out.
    pub fn kick(&self, room: &RoomId, participant: &ParticipantId) {
        // Before the shard hears of it: a ticket presented from here on is refused at `hello`, and
        // one verified just before reaches the shard after the kick, which refuses it too.
        self.verifier.remove_participant(participant, now_unix_s());
        self.moderate(ModerationAction::Kick {
            room: room.clone(),
            participant: participant.clone(),
        });
    }

    /// Sends `participant` elsewhere: it gets `bye{moved}` and is disconnected, and the room is
    /// told it left. Unlike [`Bridge::kick`] its tickets stay valid: control placed it on another
    /// bridge (or on this one again) and it comes back with a fresh ticket. A participant not on
    /// this bridge is left alone. Returns at once.
    pub fn move_participant(&self, room: &RoomId, participant: &ParticipantId) {
        self.moderate(ModerationAction::Move {
            room: room.clone(),
            participant: participant.clone(),
        });
    }

    /// Sends `mute_requested{by}` to everyone in `room` but `by`. Clients mute themselves; the
    /// bridge cannot switch off a remote microphone. Returns at once.
    pub fn request_mute_all(&self, room: &RoomId, by: &ParticipantId) {
        self.moderate(ModerationAction::RequestMuteAll {
            room: room.clone(),
            by: by.clone(),
        });
    }

    /// Ends the meeting on this bridge: everyone in `room` gets `bye{meeting_ended}` and is
    /// disconnected, and the room is torn down. Returns at once.
    pub fn end_room(&self, room: &RoomId) {
        self.moderate(ModerationAction::EndRoom { room: room.clone() });
    }

    /// Carries out a decision control took: [`Bridge::kick`], [`Bridge::move_participant`],
    /// [`Bridge::request_mute_all`] or [`Bridge::end_room`]. Returns at once.
    pub fn carry_out(&self, action: ModerationAction) {
        match action {
            ModerationAction::Kick { room, participant } => self.kick(&room, &participant),
            ModerationAction::Move { room, participant } => self.move_participant(&room, &participant),
            ModerationAction::RequestMuteAll { room, by } => self.request_mute_all(&room, &by),
            ModerationAction::EndRoom { room } => self.end_room(&room),
            action @ ModerationAction::RequestMute { .. } => self.moderate(action),
        }
    }

    /// Queues `action` for the room's shard without waiting. Moderation is never dropped for a
    /// full inbox (datagrams are, and make room quickly): it is then sent from a task that waits
    /// for space, or, called outside a runtime, by blocking this thread until there is some.
    /// Actions sent that way may overtake one another; each is complete on its own.
    fn moderate(&self, action: ModerationAction) {
        let inbox = self.inbox_for(action.room());
        let input = DriverInput::Shard(ShardInput::Moderation(action));
        match inbox.try_send(input) {
            Ok(()) => {}
            Err(TrySendError::Closed(_)) => {
                tracing::debug!("bridge stopped; moderation not carried out");
            }
            Err(TrySendError::Full(input)) => {
                tracing::warn!("shard inbox full; moderation waits for space");
                let inbox = inbox.clone();
                match tokio::runtime::Handle::try_current() {
                    Ok(runtime) => {
                        runtime.spawn(async move {
                            if inbox.send(input).await.is_err() {
                                tracing::debug!("bridge stopped; moderation not carried out");
                            }
                        });
                    }
                    Err(_) => {
                        if inbox.blocking_send(input).is_err() {
                            tracing::debug!("bridge stopped; moderation not carried out");
                        }
                    }
                }
            }
        }
    }

    /// Tells every participant to go elsewhere, closes the cascade links and stops the shard
    /// threads.
    pub async fn shutdown(&self) {
        self.stopping.store(true, Ordering::Relaxed);
        if let Some(cascade) = self.cascade.get() {
            cascade.close();
        }
        for inbox in &self.inboxes {
            let _ = inbox.send(DriverInput::Shutdown).await;
        }
        let threads: Vec<_> = std::mem::take(&mut *self.threads.lock().expect("threads lock"));
        let _ = tokio::task::spawn_blocking(move || {
            for thread in threads {
                let _ = thread.join();
            }
        })
        .await;
        self.finish_recordings().await;
        tracing::info!(bridge = %self.config.bridge_id, "bridge stopped");
    }
}

/// Stable across processes so a room always lands on the same shard for a given shard count.
pub fn shard_of(room: &RoomId, shard_count: usize) -> usize {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in room.as_str().bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    (hash % shard_count as u64) as usize
}

mod worker;

use worker::ShardWorker;

#[cfg(test)]
mod tests;
