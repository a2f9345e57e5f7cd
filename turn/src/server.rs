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
use crate::credentials::{long_term_key, rest_password, split_username};
use crate::ended_sessions::EndedSessions;
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

mod relay;
mod requests;
mod stream;

use relay::*;
use requests::*;
use stream::*;

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
    allocations_of_source: HashMap<IpAddr, usize>,
    limiter: RateLimiter,
    ended_sessions: EndedSessions,
}

impl Tables {
    fn remove(&mut self, five_tuple: &FiveTuple) -> bool {
        let Some(allocation) = self.allocations.remove(five_tuple) else {
            return false;
        };
        allocation.close();
        decrement(&mut self.allocations_of_user, &allocation.user);
        decrement(
            &mut self.allocations_of_source,
            &allocation.five_tuple.client.ip(),
        );
        true
    }
}

/// One less for `key`; the entry goes at zero, so the table holds only keys with allocations.
fn decrement<K, Q>(counts: &mut HashMap<K, usize>, key: &Q)
where
    K: std::hash::Hash + Eq + std::borrow::Borrow<Q>,
    Q: std::hash::Hash + Eq + ?Sized,
{
    if let Some(count) = counts.get_mut(key) {
        *count -= 1;
        if *count == 0 {
            counts.remove(key);
        }
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
                allocations_of_source: HashMap::new(),
                limiter: RateLimiter::new(config.unauthenticated_limit),
                ended_sessions: EndedSessions::new(config.credential_ttl_s, config.ended_sessions_max),
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

    /// `user`'s session ended (the participant left its bridge): its allocations end now, and
    /// its credentials issued before now are refused from now on (see `ended_sessions`).
    pub fn end_session(&self, user: &str) {
        let mut tables = self.shared.tables.lock().expect("tables lock");
        if !tables.ended_sessions.end(user, unix_now_s()) {
            tracing::warn!("the table of ended sessions is full; a credential lives to its expiry");
        }
        let ended: Vec<FiveTuple> = tables
            .allocations
            .iter()
            .filter(|(_, allocation)| allocation.user == user)
            .map(|(five_tuple, _)| *five_tuple)
            .collect();
        self.end_allocations(&mut tables, &ended);
    }

    /// `user`'s session ended at `ended_at_unix_s`, as control reports it to a standalone server
    /// (again at each refresh): the allocations made with credentials issued before then end,
    /// and those credentials are refused; the user's later sessions keep theirs.
    pub fn end_session_at(&self, user: &str, ended_at_unix_s: u64) {
        // Every credential issued before then has expired: nothing left to refuse.
        if ended_at_unix_s + self.shared.config.credential_ttl_s < unix_now_s() {
            return;
        }
        let mut tables = self.shared.tables.lock().expect("tables lock");
        if tables.ended_sessions.ended_at(user) >= Some(ended_at_unix_s) {
            return;
        }
        if !tables.ended_sessions.end(user, ended_at_unix_s) {
            tracing::warn!("the table of ended sessions is full; a credential lives to its expiry");
            return;
        }
        let ended: Vec<FiveTuple> = tables
            .allocations
            .iter()
            .filter(|(_, allocation)| allocation.user == user)
            .filter(|(_, allocation)| {
                crate::credentials::split_username(&allocation.username)
                    .is_ok_and(|(_, expires)| tables.ended_sessions.refuses(user, expires))
            })
            .map(|(five_tuple, _)| *five_tuple)
            .collect();
        self.end_allocations(&mut tables, &ended);
    }

    fn end_allocations(&self, tables: &mut Tables, ended: &[FiveTuple]) {
        for five_tuple in ended {
            tables.remove(five_tuple);
        }
        add(&self.shared.counters.sessions_ended_total, 1);
        add(
            &self.shared.counters.allocations_ended_with_session_total,
            ended.len() as u64,
        );
    }

    pub fn stats(&self) -> TurnStats {
        let mut stats = self.shared.counters.snapshot();
        {
            let tables = self.shared.tables.lock().expect("tables lock");
            stats.allocations_active = tables.allocations.len() as u64;
            stats.users_active = tables.allocations_of_user.len() as u64;
            stats.ended_sessions_remembered = tables.ended_sessions.len() as u64;
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

#[cfg(test)]
mod tests;
