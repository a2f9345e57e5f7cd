//! The TURN server's driver: sockets, tasks and the tables they share.
//!
//! Tasks: one per UDP listener, one accept loop per TCP/TLS listener plus one reader and one
//! writer per stream connection (the readers in a [`JoinSet`] that shutdown ends, each aborting
//! its writer when it ends), one per allocation reading its relay socket, and a sweeper that
//! expires allocations once a second. Protocol state is in `allocation.rs` (per allocation,
//! behind its own lock) and in [`Tables`] (the 5-tuple → allocation map, per-user counts and the
//! rate limiter, behind one lock taken once per client packet).

use crate::allocation::{AllocationState, BindError, DEFAULT_LIFETIME_S};
use crate::config::{ConfigError, TurnConfig};
use crate::credentials::{long_term_key, parse_username, rest_password};
use crate::nonce::{NonceCheck, NonceKey};
use crate::peer_policy::PeerPolicy;
use crate::rate_limit::RateLimiter;
use crate::stats::{Counters, TurnStats, add};
use crate::stun::{
    self, Class, FrameKind, Message, Writer, attr, frame_kind, method, parse_channel_data, stream_frame_len,
};
use rand::RngCore as _;
use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _, BufReader, BufWriter};
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::{Semaphore, mpsc};
use tokio::task::{AbortHandle, JoinHandle, JoinSet};

/// Frames queued toward one TCP/TLS client before new ones are dropped (media: late is useless).
const STREAM_QUEUE_FRAMES: usize = 512;
/// Bytes queued toward one TCP/TLS client before new frames are dropped: 512 frames of 64 KiB
/// would be 32 MiB per connection; 1 MiB is over a second of a 5 Mbit/s allocation.
const STREAM_QUEUE_BYTES: usize = 1 << 20;
/// How long a closing stream's writer may take to flush what is queued before it is aborted: a
/// client that does not read must not keep its task and connection slot.
const WRITER_DRAIN_TIMEOUT: Duration = Duration::from_secs(1);
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
const SWEEP_INTERVAL: Duration = Duration::from_secs(1);
/// Relay ports tried before an Allocate is answered with 508.
const RELAY_BIND_ATTEMPTS: usize = 64;
/// Socket buffers for listeners and relays: absorbs bursts while a task waits for a core.
const SOCKET_BUFFER_BYTES: usize = 1 << 20;
/// Room reserved before a relayed payload for the ChannelData header, so it is written in place.
const CHANNEL_HEADER_BYTES: usize = 4;
const DATAGRAM_MAX_BYTES: usize = 65_536;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    #[error("invalid TURN configuration: {0}")]
    Config(#[from] ConfigError),
    #[error("TURN is disabled in the configuration")]
    Disabled,
    #[error("cannot listen on {addr} ({what}): {source}")]
    Bind {
        what: &'static str,
        addr: SocketAddr,
        source: io::Error,
    },
    #[error("cannot load the TLS certificate or key: {0}")]
    Tls(String),
    /// Checked at start, so a relay address the host does not have is not found out by every
    /// Allocate failing with 508.
    #[error(
        "cannot bind relay sockets to {ip}: {source}. Relay sockets bind an address of this host; behind a 1:1 NAT bind the local address (relay_ip, --relay-ip; 0.0.0.0 or :: for any) and advertise the public one with external_ip (--external-ip)"
    )]
    RelayBind { ip: IpAddr, source: io::Error },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Transport {
    Udp,
    Tcp,
    Tls,
}

/// RFC 5766's 5-tuple: what identifies an allocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct FiveTuple {
    client: SocketAddr,
    listener: SocketAddr,
    transport: Transport,
}

/// How to reach a client: the shared UDP listener socket, or its stream connection's queue.
#[derive(Clone)]
enum ClientTx {
    Udp(Arc<UdpSocket>),
    Stream(StreamTx),
}

/// The queue toward one stream client, bounded in frames and in bytes: the writer subtracts a
/// frame's bytes once it is written.
#[derive(Clone)]
struct StreamTx {
    queue: mpsc::Sender<Vec<u8>>,
    queued_bytes: Arc<AtomicUsize>,
}

impl StreamTx {
    fn new() -> (Self, mpsc::Receiver<Vec<u8>>) {
        let (queue, frames) = mpsc::channel(STREAM_QUEUE_FRAMES);
        let queued_bytes = Arc::new(AtomicUsize::new(0));
        (Self { queue, queued_bytes }, frames)
    }

    fn try_send(&self, frame: &[u8]) -> bool {
        let len = frame.len();
        if self.queued_bytes.fetch_add(len, Relaxed) + len > STREAM_QUEUE_BYTES {
            self.queued_bytes.fetch_sub(len, Relaxed);
            return false;
        }
        // One copy per frame toward TCP clients; TURN over TCP is the fallback path.
        if self.queue.try_send(frame.to_vec()).is_err() {
            self.queued_bytes.fetch_sub(len, Relaxed);
            return false;
        }
        true
    }
}

impl ClientTx {
    /// Sends without waiting; a full socket buffer or queue drops the frame, as UDP would.
    fn send(&self, to: SocketAddr, frame: &[u8]) -> bool {
        match self {
            Self::Udp(socket) => socket.try_send_to(frame, to).is_ok(),
            Self::Stream(tx) => tx.try_send(frame),
        }
    }

    fn is_stream(&self) -> bool {
        matches!(self, Self::Stream(_))
    }
}

struct Allocation {
    five_tuple: FiveTuple,
    /// The full REST username: later requests on this allocation must use the same (RFC 5766 §4).
    username: String,
    user: String,
    relay: UdpSocket,
    relay_addr: SocketAddr,
    client: ClientTx,
    allocate_transaction: [u8; 12],
    state: Mutex<AllocationState>,
    relay_task: OnceLock<AbortHandle>,
}

impl Allocation {
    fn close(&self) {
        if let Some(task) = self.relay_task.get() {
            task.abort();
        }
    }
}

/// Tables shared by every task, each bounded: allocations by `allocations_max`, users by the
/// allocations, the limiter by `sources_max`.
struct Tables {
    allocations: HashMap<FiveTuple, Arc<Allocation>>,
    allocations_of_user: HashMap<String, usize>,
    limiter: RateLimiter,
}

impl Tables {
    fn remove(&mut self, five_tuple: &FiveTuple) -> bool {
        let Some(allocation) = self.allocations.remove(five_tuple) else {
            return false;
        };
        allocation.close();
        if let Some(count) = self.allocations_of_user.get_mut(&allocation.user) {
            *count -= 1;
            if *count == 0 {
                self.allocations_of_user.remove(&allocation.user);
            }
        }
        true
    }
}

struct Shared {
    config: TurnConfig,
    nonces: NonceKey,
    /// Written only when control reports the cluster's bridges; read for every relayed packet.
    policy: RwLock<PeerPolicy>,
    counters: Counters,
    tables: Mutex<Tables>,
    stream_permits: Arc<Semaphore>,
    /// Stream connections open per source (see [`source_key`]); bounded by `stream_permits`, as
    /// an entry exists only while a connection holding a permit does.
    stream_sources: Mutex<HashMap<IpAddr, usize>>,
    /// Every stream connection's task; `None` once the server is stopped, so none is started
    /// after [`TurnServer::shutdown`] took them.
    connections: Mutex<Option<JoinSet<()>>>,
}

/// A running TURN server. Dropping it stops every listener and closes every allocation.
pub struct TurnServer {
    shared: Arc<Shared>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    udp_addr: Option<SocketAddr>,
    tcp_addr: Option<SocketAddr>,
    tls_addr: Option<SocketAddr>,
}

fn unix_now_s() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A UDP socket with large buffers, non-blocking, for tokio.
fn bind_udp(addr: SocketAddr) -> io::Result<UdpSocket> {
    let std_socket = std::net::UdpSocket::bind(addr)?;
    std_socket.set_nonblocking(true)?;
    let socket = socket2::SockRef::from(&std_socket);
    let _ = socket.set_recv_buffer_size(SOCKET_BUFFER_BYTES);
    let _ = socket.set_send_buffer_size(SOCKET_BUFFER_BYTES);
    UdpSocket::from_std(std_socket)
}

impl TurnServer {
    /// Binds every configured listener and starts serving. Must run inside a tokio runtime.
    pub async fn start(config: TurnConfig) -> Result<TurnServer, StartError> {
        if !config.enabled {
            return Err(StartError::Disabled);
        }
        config.validate()?;
        let tls = match config.tls_listen {
            Some(_) => Some(crate::tls::acceptor(
                config.tls_cert_path.as_deref().expect("validated"),
                config.tls_key_path.as_deref().expect("validated"),
            )?),
            None => None,
        };
        bind_udp(SocketAddr::new(config.relay_ip, 0)).map_err(|source| StartError::RelayBind {
            ip: config.relay_ip,
            source,
        })?;
        let mut nonce_key = [0u8; 32];
        rand::rng().fill_bytes(&mut nonce_key);
        let shared = Arc::new(Shared {
            nonces: NonceKey::new(nonce_key, config.nonce_lifetime_s),
            policy: RwLock::new(
                PeerPolicy::new(
                    config.allow_peer_addrs.iter().copied(),
                    config.allow_peer_nets.clone(),
                )
                .with_public(config.allow_public_peers)
                .with_own_ips(
                    [config.udp_listen, config.tcp_listen, config.tls_listen]
                        .into_iter()
                        .flatten()
                        .map(|addr| addr.ip())
                        .chain([config.relay_ip])
                        .chain(config.external_ip),
                ),
            ),
            counters: Counters::default(),
            tables: Mutex::new(Tables {
                allocations: HashMap::new(),
                allocations_of_user: HashMap::new(),
                limiter: RateLimiter::new(config.unauthenticated_limit),
            }),
            stream_permits: Arc::new(Semaphore::new(config.stream_connections_max)),
            stream_sources: Mutex::new(HashMap::new()),
            connections: Mutex::new(Some(JoinSet::new())),
            config,
        });
        let mut server = TurnServer {
            shared: shared.clone(),
            tasks: Mutex::new(Vec::new()),
            udp_addr: None,
            tcp_addr: None,
            tls_addr: None,
        };
        if let Some(addr) = shared.config.udp_listen {
            let socket = Arc::new(bind_udp(addr).map_err(|source| StartError::Bind {
                what: "TURN over UDP",
                addr,
                source,
            })?);
            let local = socket.local_addr().expect("bound socket has an address");
            server.udp_addr = Some(local);
            server.spawn(udp_loop(shared.clone(), socket, local));
        }
        for (listen, transport) in [
            (shared.config.tcp_listen, Transport::Tcp),
            (shared.config.tls_listen, Transport::Tls),
        ] {
            let Some(addr) = listen else { continue };
            let what = if transport == Transport::Tcp {
                "TURN over TCP"
            } else {
                "TURN over TLS"
            };
            let listener =
                TcpListener::bind(addr)
                    .await
                    .map_err(|source| StartError::Bind { what, addr, source })?;
            let local = listener.local_addr().expect("bound listener has an address");
            if transport == Transport::Tcp {
                server.tcp_addr = Some(local);
            } else {
                server.tls_addr = Some(local);
            }
            let acceptor = if transport == Transport::Tls {
                tls.clone()
            } else {
                None
            };
            server.spawn(accept_loop(shared.clone(), listener, local, transport, acceptor));
        }
        server.spawn(sweep_loop(shared.clone()));
        tracing::info!(
            udp = ?server.udp_addr,
            tcp = ?server.tcp_addr,
            tls = ?server.tls_addr,
            relay_ip = %shared.config.relay_ip,
            "TURN server listening"
        );
        Ok(server)
    }

    /// The cluster's bridge media addresses as control reports them now (participants' view:
    /// external addresses behind a NAT), replacing the previous report; the configured
    /// `allow_peer_addrs` stay. Relays toward a bridge that left stop at its next packet.
    pub fn set_bridges(&self, bridges: impl IntoIterator<Item = SocketAddr>) {
        self.shared
            .policy
            .write()
            .expect("policy lock")
            .set_bridges(bridges);
    }

    pub fn udp_addr(&self) -> Option<SocketAddr> {
        self.udp_addr
    }

    pub fn tcp_addr(&self) -> Option<SocketAddr> {
        self.tcp_addr
    }

    pub fn tls_addr(&self) -> Option<SocketAddr> {
        self.tls_addr
    }

    /// The URLs of this server for an `RTCIceServer`, with `host` as clients reach it.
    pub fn urls(&self, host: &str) -> Vec<String> {
        let mut urls = Vec::new();
        if let Some(addr) = self.udp_addr {
            urls.push(format!("turn:{host}:{}?transport=udp", addr.port()));
        }
        if let Some(addr) = self.tcp_addr {
            urls.push(format!("turn:{host}:{}?transport=tcp", addr.port()));
        }
        if let Some(addr) = self.tls_addr {
            urls.push(format!("turns:{host}:{}?transport=tcp", addr.port()));
        }
        urls
    }

    /// Serves a TURN-over-TLS connection whose TLS another listener terminated (the public HTTPS
    /// listener on 443 hands over the connections whose first bytes are STUN). `client` is the
    /// peer's address and `listener` the local address it connected to. The connection counts
    /// against the same connection caps as this server's own listeners; past them it is dropped.
    pub fn serve_tls_stream<S>(&self, stream: S, client: SocketAddr, listener: SocketAddr)
    where
        S: AsyncRead + AsyncWrite + Send + 'static,
    {
        let shared = &self.shared;
        let Ok(permit) = shared.stream_permits.clone().try_acquire_owned() else {
            add(&shared.counters.stream_connections_refused_total, 1);
            return;
        };
        let Some(source_slot) = SourceSlot::take(shared, client.ip()) else {
            add(&shared.counters.stream_connections_refused_total, 1);
            return;
        };
        let five_tuple = FiveTuple {
            client,
            listener,
            transport: Transport::Tls,
        };
        let task_shared = shared.clone();
        let accepted_at = tokio::time::Instant::now();
        let task = async move {
            let (_permit, _source_slot) = (permit, source_slot);
            serve_stream(task_shared, stream, five_tuple, accepted_at).await;
        };
        let mut connections = shared.connections.lock().expect("connections lock");
        if let Some(connections) = connections.as_mut() {
            while connections.try_join_next().is_some() {}
            connections.spawn(task);
        }
    }

    pub fn stats(&self) -> TurnStats {
        let mut stats = self.shared.counters.snapshot();
        {
            let tables = self.shared.tables.lock().expect("tables lock");
            stats.allocations_active = tables.allocations.len() as u64;
            stats.users_active = tables.allocations_of_user.len() as u64;
            stats.rate_limited_sources = tables.limiter.tracked_sources() as u64;
        }
        stats.stream_connections_active = (self.shared.config.stream_connections_max
            - self.shared.stream_permits.available_permits())
            as u64;
        stats
    }

    fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        self.tasks.lock().expect("tasks lock").push(tokio::spawn(task));
    }

    /// Stops listening, ends every stream connection and closes every allocation; the server
    /// answers nothing afterwards.
    pub async fn shutdown(&self) {
        let (tasks, connections) = self.stop();
        for task in tasks {
            let _ = task.await;
        }
        if let Some(mut connections) = connections {
            while connections.join_next().await.is_some() {}
        }
    }

    /// Aborts every task; what is returned is for [`shutdown`](Self::shutdown) to wait on (a
    /// dropped [`JoinSet`] aborts its tasks too, which is what [`Drop`] relies on).
    fn stop(&self) -> (Vec<JoinHandle<()>>, Option<JoinSet<()>>) {
        let tasks = std::mem::take(&mut *self.tasks.lock().expect("tasks lock"));
        for task in &tasks {
            task.abort();
        }
        // Taken after the accept loops were aborted, and under the lock they spawn under: a loop
        // that was mid-accept finds `None` and drops its connection.
        let mut connections = self.shared.connections.lock().expect("connections lock").take();
        if let Some(connections) = &mut connections {
            connections.abort_all();
        }
        let mut tables = self.shared.tables.lock().expect("tables lock");
        for (_, allocation) in tables.allocations.drain() {
            allocation.close();
        }
        tables.allocations_of_user.clear();
        (tasks, connections)
    }
}

impl Drop for TurnServer {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn udp_loop(shared: Arc<Shared>, socket: Arc<UdpSocket>, local: SocketAddr) {
    let client = ClientTx::Udp(socket.clone());
    let mut packet = vec![0u8; DATAGRAM_MAX_BYTES];
    let mut out = Vec::with_capacity(1500);
    loop {
        let (len, from) = match socket.recv_from(&mut packet).await {
            Ok(received) => received,
            // ICMP errors surface here on some systems; they concern one peer, not the socket.
            Err(_) => continue,
        };
        let five_tuple = FiveTuple {
            client: from,
            listener: local,
            transport: Transport::Udp,
        };
        handle_client_packet(&shared, five_tuple, &client, &packet[..len], &mut out);
    }
}

async fn accept_loop(
    shared: Arc<Shared>,
    listener: TcpListener,
    local: SocketAddr,
    transport: Transport,
    tls: Option<tokio_rustls::TlsAcceptor>,
) {
    loop {
        let Ok((tcp, from)) = listener.accept().await else {
            // Out of file descriptors, usually: back off rather than spin.
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let accepted_at = tokio::time::Instant::now();
        let Ok(permit) = shared.stream_permits.clone().try_acquire_owned() else {
            add(&shared.counters.stream_connections_refused_total, 1);
            continue;
        };
        let Some(source_slot) = SourceSlot::take(&shared, from.ip()) else {
            add(&shared.counters.stream_connections_refused_total, 1);
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let five_tuple = FiveTuple {
            client: from,
            listener: local,
            transport,
        };
        let task_shared = shared.clone();
        let tls = tls.clone();
        let task = async move {
            let (_permit, _source_slot) = (permit, source_slot);
            let shared = task_shared;
            match tls {
                None => serve_stream(shared, tcp, five_tuple, accepted_at).await,
                Some(acceptor) => {
                    match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                        Ok(Ok(stream)) => serve_stream(shared, stream, five_tuple, accepted_at).await,
                        _ => tracing::debug!("TURN TLS handshake failed or timed out"),
                    }
                }
            }
        };
        let mut connections = shared.connections.lock().expect("connections lock");
        // `None`: the server is stopping; the connection is dropped with `task`.
        if let Some(connections) = connections.as_mut() {
            // Reaped here, so the set holds at most the open connections and those that ended
            // since the last accept.
            while connections.try_join_next().is_some() {}
            connections.spawn(task);
        }
    }
}

/// What per-source connection counts are keyed by: the IP, or an IPv6 address's /64, as one
/// IPv6 host usually holds a whole /64.
fn source_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & !u128::from(u64::MAX))),
        v4 => v4,
    }
}

/// One stream connection counted against its source's `stream_connections_per_source_max`,
/// until dropped.
struct SourceSlot {
    shared: Arc<Shared>,
    key: IpAddr,
}

impl SourceSlot {
    fn take(shared: &Arc<Shared>, ip: IpAddr) -> Option<Self> {
        let key = source_key(ip);
        let mut sources = shared.stream_sources.lock().expect("sources lock");
        let count = sources.entry(key).or_insert(0);
        if *count >= shared.config.stream_connections_per_source_max {
            return None;
        }
        *count += 1;
        Some(Self {
            shared: shared.clone(),
            key,
        })
    }
}

impl Drop for SourceSlot {
    fn drop(&mut self) {
        // Not `expect`: this may run while a connection's task unwinds.
        let Ok(mut sources) = self.shared.stream_sources.lock() else {
            return;
        };
        if let Some(count) = sources.get_mut(&self.key) {
            *count -= 1;
            if *count == 0 {
                sources.remove(&self.key);
            }
        }
    }
}

/// Aborts a task when dropped: the stream writer must not outlive its connection's reader,
/// whether that ends, panics or is aborted by shutdown.
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Removes a stream's allocation when the connection's task ends, however it ends.
struct AllocationOfStream<'s> {
    shared: &'s Shared,
    five_tuple: FiveTuple,
}

impl Drop for AllocationOfStream<'_> {
    fn drop(&mut self) {
        // Not `expect`: a panic while unwinding would abort the process.
        if let Ok(mut tables) = self.shared.tables.lock() {
            tables.remove(&self.five_tuple);
        }
    }
}

/// Reads RFC 5766 §2.1 frames off a stream into a buffer that holds the largest frame
/// [`stream_frame_len`] accepts.
struct StreamFramer {
    frame: Vec<u8>,
}

impl StreamFramer {
    fn new() -> Self {
        Self {
            frame: vec![0u8; stun::STREAM_FRAME_MAX_BYTES],
        }
    }

    /// The next frame, or `None` when the stream ends, fails, passes `deadline`, or sends bytes
    /// that are neither STUN nor ChannelData (there is then no way to find the next frame).
    async fn next<R: AsyncRead + Unpin>(
        &mut self,
        reader: &mut R,
        deadline: tokio::time::Instant,
    ) -> Option<&[u8]> {
        let mut head = [0u8; 4];
        match tokio::time::timeout_at(deadline, reader.read_exact(&mut head)).await {
            Ok(Ok(_)) => {}
            _ => return None,
        }
        let len = stream_frame_len(head)?;
        // Cannot happen while the buffer is STREAM_FRAME_MAX_BYTES; refusing beats slicing past it.
        if len > self.frame.len() {
            return None;
        }
        self.frame[..4].copy_from_slice(&head);
        match tokio::time::timeout_at(deadline, reader.read_exact(&mut self.frame[4..len])).await {
            Ok(Ok(_)) => Some(&self.frame[..len]),
            _ => None,
        }
    }
}

/// One TCP or TLS client: STUN messages and ChannelData frames back to back (RFC 5766 §2.1).
/// The allocation it creates lives as long as the connection (RFC 6062 §5.1 does the same).
/// Without an allocation, the connection has `stream_idle_without_allocation_s` from its accept
/// (or from the end of its allocation) to make one: a fixed deadline, not an idle timer, so a
/// client cannot hold a connection slot with a trickle of unauthenticated Bindings.
async fn serve_stream<S>(
    shared: Arc<Shared>,
    stream: S,
    five_tuple: FiveTuple,
    accepted_at: tokio::time::Instant,
) where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (reader, writer) = tokio::io::split(stream);
    let (tx, mut frames) = StreamTx::new();
    let queued_bytes = tx.queued_bytes.clone();
    let mut writer_task = AbortOnDrop(tokio::spawn(async move {
        let mut writer = BufWriter::new(writer);
        while let Some(frame) = frames.recv().await {
            let written = writer.write_all(&frame).await;
            queued_bytes.fetch_sub(frame.len(), Relaxed);
            if written.is_err() {
                return;
            }
            // Coalesce what is already queued into one write, then flush.
            while let Ok(frame) = frames.try_recv() {
                let written = writer.write_all(&frame).await;
                queued_bytes.fetch_sub(frame.len(), Relaxed);
                if written.is_err() {
                    return;
                }
            }
            if writer.flush().await.is_err() {
                return;
            }
        }
    }));
    let allocation_guard = AllocationOfStream {
        shared: &shared,
        five_tuple,
    };
    let client = ClientTx::Stream(tx);
    let mut reader = BufReader::with_capacity(64 * 1024, reader);
    let mut framer = StreamFramer::new();
    let mut out = Vec::with_capacity(1500);
    let without_allocation = Duration::from_secs(shared.config.stream_idle_without_allocation_s);
    let idle_with_allocation = Duration::from_secs(u64::from(shared.config.allocation_lifetime_max_s));
    let mut allocation_deadline = accepted_at + without_allocation;
    let mut had_allocation = false;
    loop {
        let now = tokio::time::Instant::now();
        let deadline = if shared.has_allocation(&five_tuple) {
            had_allocation = true;
            now + idle_with_allocation
        } else {
            if had_allocation {
                had_allocation = false;
                allocation_deadline = now + without_allocation;
            }
            allocation_deadline
        };
        let Some(frame) = framer.next(&mut reader, deadline).await else {
            break;
        };
        handle_client_packet(&shared, five_tuple, &client, frame, &mut out);
    }
    drop(allocation_guard);
    drop(client);
    // The writer ends once every queue sender is gone (the allocation's relay task holds one
    // until its abort lands); a client that does not read leaves it blocked, so it is aborted.
    let _ = tokio::time::timeout(WRITER_DRAIN_TIMEOUT, &mut writer_task.0).await;
}

async fn sweep_loop(shared: Arc<Shared>) {
    let mut tick = tokio::time::interval(SWEEP_INTERVAL);
    loop {
        tick.tick().await;
        let now = Instant::now();
        let mut tables = shared.tables.lock().expect("tables lock");
        let expired: Vec<FiveTuple> = tables
            .allocations
            .iter()
            .filter_map(|(five_tuple, allocation)| {
                let mut state = allocation.state.lock().expect("allocation lock");
                state.sweep(now);
                (state.expires_at <= now).then_some(*five_tuple)
            })
            .collect();
        for five_tuple in expired {
            tables.remove(&five_tuple);
        }
    }
}

/// Reads one peer's datagrams from an allocation's relay socket and passes them to the client.
async fn relay_loop(shared: Arc<Shared>, allocation: Arc<Allocation>) {
    // The payload is received after room for a ChannelData header, which is then written in place.
    let mut packet = vec![0u8; CHANNEL_HEADER_BYTES + DATAGRAM_MAX_BYTES];
    let mut indication = Vec::with_capacity(1500);
    let to_client = allocation.five_tuple.client;
    let pad = allocation.client.is_stream();
    loop {
        let Ok((len, peer)) = allocation
            .relay
            .recv_from(&mut packet[CHANNEL_HEADER_BYTES..])
            .await
        else {
            continue;
        };
        let now = Instant::now();
        let channel = {
            let mut state = allocation.state.lock().expect("allocation lock");
            if !state.has_permission(peer.ip(), now) {
                continue;
            }
            let channel = state.channel_of(peer, now);
            // What cannot be delivered must not cost the budget: checked before it is spent.
            let fits = match channel {
                Some(_) => len <= usize::from(u16::MAX),
                None => stun::data_indication_fits(peer, len),
            };
            if !fits {
                continue;
            }
            // A permission names an IP; the port must be allowed too (bridge media port only, on up).
            if shared.policy().permits_addr(peer).is_err() {
                add(&shared.counters.denied_peers_total, 1);
                continue;
            }
            if !state.take_bandwidth(len, now) {
                add(&shared.counters.bandwidth_dropped_total, 1);
                continue;
            }
            channel
        };
        let sent = match channel {
            Some(channel) => {
                packet[..2].copy_from_slice(&channel.to_be_bytes());
                packet[2..4].copy_from_slice(&(len as u16).to_be_bytes());
                let mut frame_len = CHANNEL_HEADER_BYTES + len;
                if pad {
                    let padded = frame_len.div_ceil(4) * 4;
                    packet[frame_len..padded].fill(0);
                    frame_len = padded;
                }
                allocation.client.send(to_client, &packet[..frame_len])
            }
            None => {
                let payload = &packet[CHANNEL_HEADER_BYTES..CHANNEL_HEADER_BYTES + len];
                let mut transaction_id = [0u8; 12];
                rand::rng().fill_bytes(&mut transaction_id);
                let mut w = Writer::new(&mut indication, method::DATA, Class::Indication, transaction_id);
                w.xor_address(attr::XOR_PEER_ADDRESS, peer)
                    .attribute(attr::DATA, payload);
                allocation.client.send(to_client, &indication)
            }
        };
        if sent {
            add(&shared.counters.peer_to_client_packets_total, 1);
            add(&shared.counters.peer_to_client_bytes_total, len as u64);
        }
    }
}

impl Shared {
    fn policy(&self) -> std::sync::RwLockReadGuard<'_, PeerPolicy> {
        self.policy.read().expect("policy lock")
    }

    fn allocation(&self, five_tuple: &FiveTuple) -> Option<Arc<Allocation>> {
        self.tables
            .lock()
            .expect("tables lock")
            .allocations
            .get(five_tuple)
            .cloned()
    }

    fn has_allocation(&self, five_tuple: &FiveTuple) -> bool {
        self.tables
            .lock()
            .expect("tables lock")
            .allocations
            .contains_key(five_tuple)
    }

    /// Takes a token from `source`'s unauthenticated budget; false means drop the request.
    fn allow_unauthenticated(&self, source: IpAddr) -> bool {
        let allowed = self
            .tables
            .lock()
            .expect("tables lock")
            .limiter
            .allow(source, Instant::now());
        if !allowed {
            add(&self.counters.unauthenticated_dropped_total, 1);
        }
        allowed
    }

    /// Sends `payload` from the allocation to `peer`, if a permission and the policy allow it.
    fn relay_to_peer(&self, allocation: &Allocation, peer: SocketAddr, payload: &[u8], now: Instant) {
        {
            let mut state = allocation.state.lock().expect("allocation lock");
            if !state.has_permission(peer.ip(), now) {
                return;
            }
            // Before the budget: a packet the policy drops must not spend it.
            if self.policy().permits_addr(peer).is_err() {
                add(&self.counters.denied_peers_total, 1);
                return;
            }
            if !state.take_bandwidth(payload.len(), now) {
                add(&self.counters.bandwidth_dropped_total, 1);
                return;
            }
        }
        if allocation.relay.try_send_to(payload, peer).is_ok() {
            add(&self.counters.client_to_peer_packets_total, 1);
            add(&self.counters.client_to_peer_bytes_total, payload.len() as u64);
        }
    }
}

fn handle_client_packet(
    shared: &Arc<Shared>,
    five_tuple: FiveTuple,
    client: &ClientTx,
    packet: &[u8],
    out: &mut Vec<u8>,
) {
    match frame_kind(packet) {
        FrameKind::ChannelData => {
            let Some((channel, payload)) = parse_channel_data(packet) else {
                return;
            };
            let Some(allocation) = shared.allocation(&five_tuple) else {
                return;
            };
            let now = Instant::now();
            let peer = allocation
                .state
                .lock()
                .expect("allocation lock")
                .channel_peer(channel, now);
            if let Some(peer) = peer {
                shared.relay_to_peer(&allocation, peer, payload, now);
            }
        }
        FrameKind::Stun => {
            if let Ok(message) = Message::decode(packet) {
                handle_stun(shared, five_tuple, client, &message, out);
            }
        }
        FrameKind::Other => {}
    }
}

/// An authenticated request's user and the key its answer is signed with.
struct Authenticated<'m> {
    username: &'m str,
    user: &'m str,
    key: [u8; 16],
}

/// Why a request is answered without being served.
enum Refusal {
    /// Over the source's unauthenticated budget: no answer at all.
    Drop,
    /// 400, 401 or 438, unsigned, with REALM and NONCE for 401/438.
    Error(u16),
}

fn handle_stun(
    shared: &Arc<Shared>,
    five_tuple: FiveTuple,
    client: &ClientTx,
    message: &Message<'_>,
    out: &mut Vec<u8>,
) {
    if message.class == Class::Request {
        add(&shared.counters.requests_total, 1);
    }
    match (message.class, message.method) {
        (Class::Indication, method::SEND) => {
            handle_send_indication(shared, five_tuple, message);
            return;
        }
        (Class::Request, method::BINDING) => {
            if shared.allow_unauthenticated(five_tuple.client.ip()) {
                let mut w = Writer::new(out, method::BINDING, Class::Success, message.transaction_id);
                w.xor_address(attr::XOR_MAPPED_ADDRESS, five_tuple.client);
                w.finish_with_fingerprint();
                client.send(five_tuple.client, out);
            }
            return;
        }
        (
            Class::Request,
            method::ALLOCATE | method::REFRESH | method::CREATE_PERMISSION | method::CHANNEL_BIND,
        ) => {}
        _ => return,
    }
    let now_unix_s = unix_now_s();
    let auth = match authenticate(shared, five_tuple.client.ip(), message, now_unix_s) {
        Ok(auth) => auth,
        Err(Refusal::Drop) => return,
        Err(Refusal::Error(code)) => {
            let mut w = Writer::new(out, message.method, Class::Error, message.transaction_id);
            w.error_code(code);
            if code != 400 {
                let nonce = shared.nonces.issue(five_tuple.client.ip(), now_unix_s);
                w.attribute(attr::REALM, shared.config.realm.as_bytes())
                    .attribute(attr::NONCE, nonce.as_bytes());
            }
            if message.has(attr::FINGERPRINT) {
                w.finish_with_fingerprint();
            }
            client.send(five_tuple.client, out);
            return;
        }
    };
    let fingerprint = message.has(attr::FINGERPRINT);
    let unknown: Vec<u16> = message.unknown_required().take(8).collect();
    let result = if !unknown.is_empty() {
        Err(Answer::Unknown(unknown))
    } else {
        let now = Instant::now();
        match message.method {
            method::ALLOCATE => allocate(shared, five_tuple, client, message, &auth, now),
            method::REFRESH => refresh(shared, five_tuple, message, &auth, now),
            method::CREATE_PERMISSION => create_permission(shared, five_tuple, message, &auth, now),
            _ => channel_bind(shared, five_tuple, message, &auth, now),
        }
    };
    let mut w = Writer::new(out, message.method, Class::Success, message.transaction_id);
    match result {
        Ok(success) => match success {
            Success::Allocated { relay, lifetime_s } => {
                w.xor_address(attr::XOR_RELAYED_ADDRESS, relay)
                    .u32_attribute(attr::LIFETIME, lifetime_s)
                    .xor_address(attr::XOR_MAPPED_ADDRESS, five_tuple.client);
            }
            Success::Refreshed { lifetime_s } => {
                w.u32_attribute(attr::LIFETIME, lifetime_s);
            }
            Success::Empty => {}
        },
        Err(answer) => {
            let mut w2 = Writer::new(out, message.method, Class::Error, message.transaction_id);
            match answer {
                Answer::Code(code) => {
                    w2.error_code(code);
                }
                Answer::Unknown(types) => {
                    let value: Vec<u8> = types.iter().flat_map(|t| t.to_be_bytes()).collect();
                    w2.error_code(420).attribute(attr::UNKNOWN_ATTRIBUTES, &value);
                }
            }
            w2.finish_with_integrity(&auth.key, fingerprint);
            client.send(five_tuple.client, out);
            return;
        }
    }
    w.finish_with_integrity(&auth.key, fingerprint);
    client.send(five_tuple.client, out);
}

fn authenticate<'m>(
    shared: &Shared,
    source: IpAddr,
    message: &Message<'m>,
    now_unix_s: u64,
) -> Result<Authenticated<'m>, Refusal> {
    let refuse = |code: u16, auth_failure: bool| {
        if auth_failure {
            add(&shared.counters.auth_failures_total, 1);
        }
        if shared.allow_unauthenticated(source) {
            Refusal::Error(code)
        } else {
            Refusal::Drop
        }
    };
    if !message.has(attr::MESSAGE_INTEGRITY) {
        // The normal first request of every client: a challenge, not a failure.
        return Err(refuse(401, false));
    }
    let (Some(username), Some(realm), Some(nonce)) = (
        message.text(attr::USERNAME),
        message.text(attr::REALM),
        message.text(attr::NONCE),
    ) else {
        return Err(refuse(400, true));
    };
    if shared.nonces.check(nonce, source, now_unix_s) != NonceCheck::Valid {
        return Err(refuse(438, false));
    }
    if realm != shared.config.realm {
        return Err(refuse(401, true));
    }
    let Ok((user, _expires_unix_s)) = parse_username(username, now_unix_s) else {
        // Expired or not a REST username; which one is not said, to the client or the log.
        tracing::debug!("TURN request with an expired or malformed username");
        return Err(refuse(401, true));
    };
    let password = rest_password(&shared.config.secret, username);
    let key = long_term_key(username, realm, &password);
    if !message.integrity_ok(&key) {
        tracing::debug!("TURN request with a wrong MESSAGE-INTEGRITY");
        return Err(refuse(401, true));
    }
    Ok(Authenticated { username, user, key })
}

enum Success {
    Allocated { relay: SocketAddr, lifetime_s: u32 },
    Refreshed { lifetime_s: u32 },
    Empty,
}

enum Answer {
    Code(u16),
    Unknown(Vec<u16>),
}

fn requested_lifetime_s(shared: &Shared, message: &Message<'_>) -> u32 {
    let requested = message
        .get(attr::LIFETIME)
        .and_then(|v| v.try_into().ok())
        .map(u32::from_be_bytes);
    match requested {
        Some(0) => 0,
        // Shorter than the default is raised to it (RFC 5766 §6.2), longer is capped.
        Some(s) => s
            .max(DEFAULT_LIFETIME_S)
            .min(shared.config.allocation_lifetime_max_s),
        None => DEFAULT_LIFETIME_S.min(shared.config.allocation_lifetime_max_s),
    }
}

fn allocate(
    shared: &Arc<Shared>,
    five_tuple: FiveTuple,
    client: &ClientTx,
    message: &Message<'_>,
    auth: &Authenticated<'_>,
    now: Instant,
) -> Result<Success, Answer> {
    let config = &shared.config;
    let mut tables = shared.tables.lock().expect("tables lock");
    if let Some(existing) = tables.allocations.get(&five_tuple) {
        // A retransmitted Allocate gets the same answer; anything else is a mismatch.
        if existing.allocate_transaction == message.transaction_id && existing.username == auth.username {
            let state = existing.state.lock().expect("allocation lock");
            let lifetime_s = state.expires_at.saturating_duration_since(now).as_secs() as u32;
            return Ok(Success::Allocated {
                relay: existing.relay_addr,
                lifetime_s,
            });
        }
        return Err(Answer::Code(437));
    }
    match message.get(attr::REQUESTED_TRANSPORT) {
        Some([17, ..]) => {}
        Some(_) => return Err(Answer::Code(442)),
        None => return Err(Answer::Code(400)),
    }
    if let Some(family) = message.get(attr::REQUESTED_ADDRESS_FAMILY) {
        let wanted_v4 = family.first() == Some(&0x01);
        if wanted_v4 != config.relay_advertised_ip().is_ipv4() {
            return Err(Answer::Code(440));
        }
    }
    if message.has(attr::RESERVATION_TOKEN) {
        // Reserved port pairs are not kept; no browser asks for them.
        return Err(Answer::Code(508));
    }
    let user_count = tables.allocations_of_user.get(auth.user).copied().unwrap_or(0);
    if user_count >= config.allocations_per_user_max {
        add(&shared.counters.allocation_quota_refusals_total, 1);
        return Err(Answer::Code(486));
    }
    if tables.allocations.len() >= config.allocations_max {
        add(&shared.counters.allocation_quota_refusals_total, 1);
        return Err(Answer::Code(508));
    }
    let lifetime_s = match requested_lifetime_s(shared, message) {
        0 => DEFAULT_LIFETIME_S,
        s => s,
    };
    let Some(relay) = bind_relay(config) else {
        tracing::warn!("no free relay port in the configured range");
        return Err(Answer::Code(508));
    };
    // The bound port under the advertised address: behind a 1:1 NAT the socket holds a local
    // address and the NAT forwards the external one to it, port for port.
    let bound = relay.local_addr().expect("bound socket has an address");
    let relay_addr = SocketAddr::new(config.relay_advertised_ip(), bound.port());
    let allocation = Arc::new(Allocation {
        five_tuple,
        username: auth.username.to_owned(),
        user: auth.user.to_owned(),
        relay,
        relay_addr,
        client: client.clone(),
        allocate_transaction: message.transaction_id,
        state: Mutex::new(AllocationState::new(
            now,
            Duration::from_secs(u64::from(lifetime_s)),
            config.permissions_per_allocation_max,
            config.channels_per_allocation_max,
            config.allocation_bandwidth_bytes_per_s,
            config.allocation_bandwidth_burst_bytes,
        )),
        relay_task: OnceLock::new(),
    });
    let task = tokio::spawn(relay_loop(shared.clone(), allocation.clone()));
    let _ = allocation.relay_task.set(task.abort_handle());
    tables.allocations.insert(five_tuple, allocation);
    *tables
        .allocations_of_user
        .entry(auth.user.to_owned())
        .or_insert(0) += 1;
    add(&shared.counters.allocations_total, 1);
    Ok(Success::Allocated {
        relay: relay_addr,
        lifetime_s,
    })
}

/// A relay socket on a port of the configured range, starting at a random one.
fn bind_relay(config: &TurnConfig) -> Option<UdpSocket> {
    let span = u32::from(config.relay_port_max - config.relay_port_min) + 1;
    let start = rand::random::<u32>() % span;
    (0..span.min(RELAY_BIND_ATTEMPTS as u32)).find_map(|i| {
        let port = config.relay_port_min + ((start + i) % span) as u16;
        bind_udp(SocketAddr::new(config.relay_ip, port)).ok()
    })
}

/// The allocation for `five_tuple`, if it was made with the same username.
fn owned_allocation(
    shared: &Shared,
    five_tuple: &FiveTuple,
    auth: &Authenticated<'_>,
) -> Result<Arc<Allocation>, Answer> {
    let allocation = shared.allocation(five_tuple).ok_or(Answer::Code(437))?;
    if allocation.username != auth.username {
        return Err(Answer::Code(441));
    }
    Ok(allocation)
}

fn refresh(
    shared: &Shared,
    five_tuple: FiveTuple,
    message: &Message<'_>,
    auth: &Authenticated<'_>,
    now: Instant,
) -> Result<Success, Answer> {
    let allocation = owned_allocation(shared, &five_tuple, auth)?;
    let lifetime_s = requested_lifetime_s(shared, message);
    if lifetime_s == 0 {
        shared.tables.lock().expect("tables lock").remove(&five_tuple);
    } else {
        allocation.state.lock().expect("allocation lock").expires_at =
            now + Duration::from_secs(u64::from(lifetime_s));
    }
    Ok(Success::Refreshed { lifetime_s })
}

fn peer_address(message: &Message<'_>, value: &[u8]) -> Result<SocketAddr, Answer> {
    message.xor_address(value).ok_or(Answer::Code(400))
}

fn check_peer(shared: &Shared, peer: SocketAddr) -> Result<(), Answer> {
    shared.policy().permits_ip(peer.ip()).map_err(|reason| {
        add(&shared.counters.denied_peers_total, 1);
        tracing::debug!(reason = reason.as_str(), "TURN peer address refused");
        Answer::Code(403)
    })
}

fn create_permission(
    shared: &Shared,
    five_tuple: FiveTuple,
    message: &Message<'_>,
    auth: &Authenticated<'_>,
    now: Instant,
) -> Result<Success, Answer> {
    let allocation = owned_allocation(shared, &five_tuple, auth)?;
    let mut peers = Vec::new();
    for value in message
        .get_all(attr::XOR_PEER_ADDRESS)
        .take(shared.config.permissions_per_allocation_max + 1)
    {
        let peer = peer_address(message, value)?;
        check_peer(shared, peer)?;
        peers.push(peer);
    }
    if peers.is_empty() {
        return Err(Answer::Code(400));
    }
    let mut state = allocation.state.lock().expect("allocation lock");
    for peer in peers {
        state.permit(peer.ip(), now).map_err(|_| Answer::Code(508))?;
    }
    Ok(Success::Empty)
}

fn channel_bind(
    shared: &Shared,
    five_tuple: FiveTuple,
    message: &Message<'_>,
    auth: &Authenticated<'_>,
    now: Instant,
) -> Result<Success, Answer> {
    let allocation = owned_allocation(shared, &five_tuple, auth)?;
    let channel = match message.get(attr::CHANNEL_NUMBER) {
        Some(&[hi, lo, _, _]) => u16::from_be_bytes([hi, lo]),
        _ => return Err(Answer::Code(400)),
    };
    if !(stun::CHANNEL_MIN..=stun::CHANNEL_MAX).contains(&channel) {
        return Err(Answer::Code(400));
    }
    let peer = peer_address(
        message,
        message.get(attr::XOR_PEER_ADDRESS).ok_or(Answer::Code(400))?,
    )?;
    check_peer(shared, peer)?;
    allocation
        .state
        .lock()
        .expect("allocation lock")
        .bind_channel(channel, peer, now)
        .map_err(|err| match err {
            BindError::Conflict => Answer::Code(400),
            _ => Answer::Code(508),
        })?;
    Ok(Success::Empty)
}

fn handle_send_indication(shared: &Shared, five_tuple: FiveTuple, message: &Message<'_>) {
    let Some(allocation) = shared.allocation(&five_tuple) else {
        return;
    };
    let (Some(peer), Some(data)) = (
        message
            .get(attr::XOR_PEER_ADDRESS)
            .and_then(|v| message.xor_address(v)),
        message.get(attr::DATA),
    ) else {
        return;
    };
    shared.relay_to_peer(&allocation, peer, data, Instant::now());
}

#[cfg(test)]
mod tests;
