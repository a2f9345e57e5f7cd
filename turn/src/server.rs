//! The TURN server's driver: sockets, tasks and the tables they share.
//!
//! Tasks: one per UDP listener, one accept loop per TCP/TLS listener plus one reader and one
//! writer per stream connection, one per allocation reading its relay socket, and a sweeper that
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
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _, BufReader, BufWriter};
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::{Semaphore, mpsc};
use tokio::task::{AbortHandle, JoinHandle};

/// Frames queued toward one TCP/TLS client before new ones are dropped (media: late is useless).
const STREAM_QUEUE_FRAMES: usize = 512;
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
    Stream(mpsc::Sender<Vec<u8>>),
}

impl ClientTx {
    /// Sends without waiting; a full socket buffer or queue drops the frame, as UDP would.
    fn send(&self, to: SocketAddr, frame: &[u8]) -> bool {
        match self {
            Self::Udp(socket) => socket.try_send_to(frame, to).is_ok(),
            // One copy per frame toward TCP clients; TURN over TCP is the fallback path.
            Self::Stream(queue) => queue.try_send(frame.to_vec()).is_ok(),
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
    policy: PeerPolicy,
    counters: Counters,
    tables: Mutex<Tables>,
    stream_permits: Arc<Semaphore>,
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
        let mut nonce_key = [0u8; 32];
        rand::rng().fill_bytes(&mut nonce_key);
        let shared = Arc::new(Shared {
            nonces: NonceKey::new(nonce_key, config.nonce_lifetime_s),
            policy: PeerPolicy::new(
                config.allow_peer_addrs.iter().copied(),
                config.allow_peer_nets.clone(),
            ),
            counters: Counters::default(),
            tables: Mutex::new(Tables {
                allocations: HashMap::new(),
                allocations_of_user: HashMap::new(),
                limiter: RateLimiter::new(config.unauthenticated_limit),
            }),
            stream_permits: Arc::new(Semaphore::new(config.stream_connections_max)),
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

    /// Stops listening and closes every allocation; the server answers nothing afterwards.
    pub async fn shutdown(&self) {
        let tasks = self.stop();
        for task in tasks {
            let _ = task.await;
        }
    }

    fn stop(&self) -> Vec<JoinHandle<()>> {
        let tasks = std::mem::take(&mut *self.tasks.lock().expect("tasks lock"));
        for task in &tasks {
            task.abort();
        }
        let mut tables = self.shared.tables.lock().expect("tables lock");
        for (_, allocation) in tables.allocations.drain() {
            allocation.close();
        }
        tables.allocations_of_user.clear();
        tasks
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
        let Ok(permit) = shared.stream_permits.clone().try_acquire_owned() else {
            add(&shared.counters.stream_connections_refused_total, 1);
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let five_tuple = FiveTuple {
            client: from,
            listener: local,
            transport,
        };
        let shared = shared.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            let _permit = permit;
            match tls {
                None => serve_stream(shared, tcp, five_tuple).await,
                Some(acceptor) => {
                    match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                        Ok(Ok(stream)) => serve_stream(shared, stream, five_tuple).await,
                        _ => tracing::debug!("TURN TLS handshake failed or timed out"),
                    }
                }
            }
        });
    }
}

/// One TCP or TLS client: STUN messages and ChannelData frames back to back (RFC 5766 §2.1).
/// The allocation it creates lives as long as the connection (RFC 6062 §5.1 does the same).
async fn serve_stream<S>(shared: Arc<Shared>, stream: S, five_tuple: FiveTuple)
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (reader, writer) = tokio::io::split(stream);
    let (queue, mut frames) = mpsc::channel::<Vec<u8>>(STREAM_QUEUE_FRAMES);
    let writer_task = tokio::spawn(async move {
        let mut writer = BufWriter::new(writer);
        while let Some(frame) = frames.recv().await {
            if writer.write_all(&frame).await.is_err() {
                return;
            }
            // Coalesce what is already queued into one write, then flush.
            while let Ok(frame) = frames.try_recv() {
                if writer.write_all(&frame).await.is_err() {
                    return;
                }
            }
            if writer.flush().await.is_err() {
                return;
            }
        }
    });
    let client = ClientTx::Stream(queue);
    let mut reader = BufReader::with_capacity(64 * 1024, reader);
    let mut frame = vec![0u8; stun::MESSAGE_MAX_BYTES + 4];
    let mut out = Vec::with_capacity(1500);
    loop {
        let idle = if shared.has_allocation(&five_tuple) {
            Duration::from_secs(u64::from(shared.config.allocation_lifetime_max_s))
        } else {
            Duration::from_secs(shared.config.stream_idle_without_allocation_s)
        };
        let mut head = [0u8; 4];
        match tokio::time::timeout(idle, reader.read_exact(&mut head)).await {
            Ok(Ok(_)) => {}
            _ => break,
        }
        // Anything but STUN or ChannelData leaves no way to find the next frame.
        let Some(len) = stream_frame_len(head) else {
            break;
        };
        frame[..4].copy_from_slice(&head);
        match tokio::time::timeout(idle, reader.read_exact(&mut frame[4..len])).await {
            Ok(Ok(_)) => {}
            _ => break,
        }
        handle_client_packet(&shared, five_tuple, &client, &frame[..len], &mut out);
    }
    shared.tables.lock().expect("tables lock").remove(&five_tuple);
    drop(client);
    let _ = writer_task.await;
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
            if !state.take_bandwidth(len, now) {
                add(&shared.counters.bandwidth_dropped_total, 1);
                continue;
            }
            state.channel_of(peer, now)
        };
        // A permission names an IP; the port must be allowed too (bridge media port only, on up).
        if shared.policy.permits_addr(peer).is_err() {
            add(&shared.counters.denied_peers_total, 1);
            continue;
        }
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
            if !state.take_bandwidth(payload.len(), now) {
                add(&self.counters.bandwidth_dropped_total, 1);
                return;
            }
        }
        if self.policy.permits_addr(peer).is_err() {
            add(&self.counters.denied_peers_total, 1);
            return;
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
        if wanted_v4 != config.relay_ip.is_ipv4() {
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
    let relay_addr = relay.local_addr().expect("bound socket has an address");
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
    shared.policy.permits_ip(peer.ip()).map_err(|reason| {
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
