//! Threads, the media socket and timers around the shards.

use crate::config::{BridgeConfig, ConfigError};
use crate::demux::{ParticipantKey, RouteTable};
use crate::shard::{BridgeEvent, ConnectRequest, Shard, ShardInput, ShardOutput, ShardStats};
use crate::ticket::TicketVerifier;
use bridgemesh_proto::signaling::{ClientMessage, ServerMessage};
use bridgemesh_proto::{BridgeId, RoomId};
use bytes::BytesMut;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

/// Inputs queued per shard; datagrams past it are dropped (as the network would) rather than
/// letting a burst grow memory.
const SHARD_INBOX_CAPACITY: usize = 8192;
/// Messages queued toward one client's socket; a client that falls this far behind is cut off.
pub const CLIENT_QUEUE_CAPACITY: usize = 256;
const BRIDGE_EVENTS_CAPACITY: usize = 65_536;
/// Datagrams read per wake-up before the shard looks at its inbox and timers again.
const DATAGRAMS_PER_WAKE_MAX: usize = 64;
const DATAGRAM_MAX_BYTES: usize = 1500;

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
        client: mpsc::Sender<ClientCommand>,
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

#[derive(Debug, Default, Clone, Copy)]
pub struct BridgeStats {
    pub shards: ShardStats,
    pub datagrams_unroutable: u64,
    pub datagrams_dropped_inbox_full: u64,
    pub datagrams_send_failed: u64,
    /// Remote addresses currently routed to a participant.
    pub media_routes: u64,
}

pub struct Bridge {
    config: BridgeConfig,
    media_addr: SocketAddr,
    routes: Arc<RouteTable>,
    inboxes: Vec<mpsc::Sender<DriverInput>>,
    next_key: AtomicU64,
    verifier: TicketVerifier,
    events: Mutex<Option<mpsc::Receiver<BridgeEvent>>>,
    shard_stats: Vec<Arc<Mutex<ShardStats>>>,
    counters: Arc<DriverCounters>,
    threads: Mutex<Vec<std::thread::JoinHandle<()>>>,
    stopping: AtomicBool,
}

#[derive(Default)]
struct DriverCounters {
    unroutable: AtomicU64,
    inbox_full: AtomicU64,
    send_failed: AtomicU64,
}

impl Bridge {
    /// Binds the media port and starts one thread per shard.
    pub fn start(config: BridgeConfig) -> Result<Arc<Bridge>, StartError> {
        config.validate()?;
        let socket = std::net::UdpSocket::bind(config.media_bind).map_err(|source| StartError::Bind {
            addr: config.media_bind,
            source,
        })?;
        let bound = socket.local_addr().map_err(|source| StartError::Bind {
            addr: config.media_bind,
            source,
        })?;
        socket
            .set_nonblocking(true)
            .map_err(|source| StartError::Bind { addr: bound, source })?;
        let media_addr = SocketAddr::new(config.media_advertised_ip, bound.port());
        let routes = Arc::new(RouteTable::default());
        let (events_tx, events_rx) = mpsc::channel(BRIDGE_EVENTS_CAPACITY);
        let counters = Arc::new(DriverCounters::default());
        let mut inboxes = Vec::new();
        let mut receivers = Vec::new();
        for _ in 0..config.shard_count {
            let (tx, rx) = mpsc::channel(SHARD_INBOX_CAPACITY);
            inboxes.push(tx);
            receivers.push(rx);
        }
        let shard_stats: Vec<_> = (0..config.shard_count)
            .map(|_| Arc::new(Mutex::new(ShardStats::default())))
            .collect();
        let mut threads = Vec::new();
        for (index, inbox) in receivers.into_iter().enumerate() {
            let socket = socket
                .try_clone()
                .map_err(|source| StartError::Bind { addr: bound, source })?;
            let worker = ShardWorker {
                shard: Shard::new(
                    index,
                    media_addr,
                    routes.clone(),
                    config.max_participants_per_room,
                ),
                routes: routes.clone(),
                peers: inboxes.clone(),
                events: events_tx.clone(),
                clients: HashMap::new(),
                stats: shard_stats[index].clone(),
                counters: counters.clone(),
            };
            let thread = std::thread::Builder::new()
                .name(format!("bridge-shard-{index}"))
                .spawn(move || worker.run(socket, inbox))
                .map_err(StartError::Thread)?;
            threads.push(thread);
        }
        tracing::info!(bridge = %config.bridge_id, media = %media_addr, shards = config.shard_count, "bridge started");
        Ok(Arc::new(Bridge {
            verifier: TicketVerifier::new(config.bridge_id.clone(), &config.cluster_secret),
            config,
            media_addr,
            routes,
            inboxes,
            next_key: AtomicU64::new(1),
            events: Mutex::new(Some(events_rx)),
            shard_stats,
            counters,
            threads: Mutex::new(threads),
            stopping: AtomicBool::new(false),
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

    pub fn verifier(&self) -> &TicketVerifier {
        &self.verifier
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
            total.rtp_in += s.rtp_in;
            total.rtp_forwarded += s.rtp_forwarded;
            total.rtp_dropped_no_leg += s.rtp_dropped_no_leg;
            total.keyframe_requests_sent += s.keyframe_requests_sent;
            total.participants += s.participants;
            total.rooms += s.rooms;
        }
        BridgeStats {
            shards: total,
            datagrams_unroutable: self.counters.unroutable.load(Ordering::Relaxed),
            datagrams_dropped_inbox_full: self.counters.inbox_full.load(Ordering::Relaxed),
            datagrams_send_failed: self.counters.send_failed.load(Ordering::Relaxed),
            media_routes: self.routes.address_route_count() as u64,
        }
    }

    pub fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::Relaxed)
    }

    pub(crate) fn new_key(&self) -> ParticipantKey {
        ParticipantKey(self.next_key.fetch_add(1, Ordering::Relaxed))
    }

    fn inbox_for(&self, room: &RoomId) -> &mpsc::Sender<DriverInput> {
        &self.inboxes[shard_of(room, self.inboxes.len())]
    }

    pub(crate) async fn connect(&self, request: ConnectRequest, client: mpsc::Sender<ClientCommand>) -> bool {
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

    /// Tells every participant to go elsewhere and stops the shard threads.
    pub async fn shutdown(&self) {
        self.stopping.store(true, Ordering::Relaxed);
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

struct ShardWorker {
    shard: Shard,
    routes: Arc<RouteTable>,
    peers: Vec<mpsc::Sender<DriverInput>>,
    events: mpsc::Sender<BridgeEvent>,
    clients: HashMap<ParticipantKey, mpsc::Sender<ClientCommand>>,
    stats: Arc<Mutex<ShardStats>>,
    counters: Arc<DriverCounters>,
}

impl ShardWorker {
    fn run(mut self, socket: std::net::UdpSocket, inbox: mpsc::Receiver<DriverInput>) {
        let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
            Ok(runtime) => runtime,
            Err(err) => {
                tracing::error!(%err, "shard runtime failed to start");
                return;
            }
        };
        runtime.block_on(async move {
            let socket = match UdpSocket::from_std(socket) {
                Ok(socket) => socket,
                Err(err) => {
                    tracing::error!(%err, "shard cannot register the media socket");
                    return;
                }
            };
            self.event_loop(socket, inbox).await;
        });
    }

    async fn event_loop(&mut self, socket: UdpSocket, mut inbox: mpsc::Receiver<DriverInput>) {
        let mut buf = vec![0u8; DATAGRAM_MAX_BYTES];
        let far_future = Duration::from_secs(3600);
        let mut last_stats = Instant::now();
        // One reader keeps each participant's datagrams in arrival order: were several shards to
        // read the shared socket, a packet read by a non-owning shard would be queued behind
        // later ones the owner read itself, and a reordered DTLS flight costs a retransmission.
        // The reader hands other shards their datagrams through their inboxes, FIFO.
        let reads_socket = self.shard.index() == 0;
        loop {
            let deadline = self
                .shard
                .poll_timeout()
                .unwrap_or_else(|| Instant::now() + far_future);
            tokio::select! {
                readable = socket.readable(), if reads_socket => {
                    if readable.is_err() {
                        continue;
                    }
                    let now = Instant::now();
                    for _ in 0..DATAGRAMS_PER_WAKE_MAX {
                        match socket.try_recv_from(&mut buf) {
                            Ok((len, from)) => self.on_datagram(now, from, &buf[..len]),
                            Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => break,
                            // ICMP errors surface here on some systems; they concern one peer only.
                            Err(_) => continue,
                        }
                    }
                }
                input = inbox.recv() => {
                    let now = Instant::now();
                    match input {
                        Some(DriverInput::Shutdown) | None => {
                            self.shard.shutdown(now);
                            self.flush(&socket);
                            return;
                        }
                        Some(input) => self.on_input(now, input),
                    }
                    // Drain what else is queued without another trip through select.
                    while let Ok(input) = inbox.try_recv() {
                        if matches!(input, DriverInput::Shutdown) {
                            self.shard.shutdown(now);
                            self.flush(&socket);
                            return;
                        }
                        self.on_input(now, input);
                    }
                }
                _ = tokio::time::sleep_until(deadline.into()) => {
                    self.shard.handle_timeout(Instant::now());
                }
            }
            self.flush(&socket);
            if last_stats.elapsed() >= Duration::from_millis(100) {
                last_stats = Instant::now();
                *self.stats.lock().expect("stats lock") = self.shard.stats();
            }
        }
    }

    fn on_datagram(&mut self, now: Instant, from: SocketAddr, datagram: &[u8]) {
        let Some(route) = self.routes.resolve(from, datagram) else {
            self.counters.unroutable.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let input = ShardInput::Datagram {
            from,
            key: route.key,
            data: BytesMut::from(datagram),
        };
        if route.shard == self.shard.index() {
            self.shard.handle_input(now, input);
        } else if self
            .peers
            .get(route.shard)
            .is_none_or(|peer| peer.try_send(DriverInput::Shard(input)).is_err())
        {
            self.counters.inbox_full.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn on_input(&mut self, now: Instant, input: DriverInput) {
        match input {
            DriverInput::Shard(input) => self.shard.handle_input(now, input),
            DriverInput::Connect { request, client } => {
                self.clients.insert(request.key, client);
                self.shard.handle_input(now, ShardInput::Connect(request));
            }
            DriverInput::Shutdown => {}
        }
    }

    fn flush(&mut self, socket: &UdpSocket) {
        while let Some(output) = self.shard.poll_output() {
            match output {
                ShardOutput::Transmit { to, data } => {
                    if socket.try_send_to(&data, to).is_err() {
                        self.counters.send_failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
                ShardOutput::ToClient { key, message } => {
                    let Some(client) = self.clients.get(&key) else {
                        continue;
                    };
                    if client.try_send(ClientCommand::Send(message)).is_err() {
                        // A client this far behind on signaling cannot follow the room; drop it.
                        tracing::debug!(?key, "client signaling queue full; disconnecting");
                        self.clients.remove(&key);
                        self.shard
                            .handle_input(Instant::now(), ShardInput::Disconnect { key });
                    }
                }
                ShardOutput::CloseClient { key } => {
                    if let Some(client) = self.clients.remove(&key) {
                        let _ = client.try_send(ClientCommand::Close);
                    }
                }
                ShardOutput::Event(event) => self.emit(event),
            }
        }
    }

    fn emit(&self, event: BridgeEvent) {
        if self.events.try_send(event).is_err() {
            tracing::warn!("bridge event queue full or closed; control will learn of this change late");
        }
    }
}
