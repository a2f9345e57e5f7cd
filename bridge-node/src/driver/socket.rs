//! A shard's media socket, read and written in batches: `recvmmsg` (with GRO where the kernel
//! offers it) through `quinn-udp`, `sendmmsg` through `rustix`, both into buffers allocated once.
//!
//! Every shard has one such socket, all bound to the same port with `SO_REUSEPORT` (see
//! [`bind_media_sockets`]): the kernel spreads peers over them by a hash of the 4-tuple, so one
//! peer's datagrams always arrive at one socket, in order.

use crate::config::MediaSocketConfig;
use quinn_udp::{RecvMeta, UdpSockRef, UdpSocketState};
use rustix::net::{MMsgHdr, SendAncillaryBuffer, SendFlags, SocketAddrAny};
use std::io::{self, IoSlice, IoSliceMut};
use std::net::SocketAddr;
use std::path::Path;

/// Datagrams (GRO trains) read per `recvmmsg`; quinn-udp reads at most 32 per call.
pub const RECV_BATCH: usize = 32;
/// Datagrams sent per `sendmmsg`.
pub const SEND_BATCH: usize = 32;
/// Largest datagram the bridge reads whole; longer ones are cut, as before batching. A GRO
/// train of up to `gro_segments` such datagrams fits in one receive slot.
pub const DATAGRAM_MAX_BYTES: usize = 1500;
/// A send slot: every datagram the shards write (RTP after rewriting, RTCP, DTLS flights cut to
/// the DTLS MTU, STUN) fits; a longer one is sent on its own.
const SEND_SLOT_BYTES: usize = 2048;

/// One shard's media socket.
pub struct MediaSocket {
    io: tokio::net::UdpSocket,
    state: UdpSocketState,
}

impl MediaSocket {
    /// Registers `socket` with the current Tokio runtime and turns on what quinn-udp offers
    /// (GRO, packet info).
    pub fn new(socket: std::net::UdpSocket) -> io::Result<Self> {
        socket.set_nonblocking(true)?;
        let state = UdpSocketState::new(UdpSockRef::from(&socket))?;
        Ok(Self {
            io: tokio::net::UdpSocket::from_std(socket)?,
            state,
        })
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.io.local_addr()
    }

    pub fn gro_segments(&self) -> usize {
        self.state.gro_segments()
    }

    pub async fn readable(&self) -> io::Result<()> {
        self.io.readable().await
    }

    /// Reads what is queued, up to [`RECV_BATCH`] datagrams or GRO trains, into `batch`;
    /// `WouldBlock` when nothing is.
    pub fn try_recv(&self, batch: &mut RecvBatch) -> io::Result<usize> {
        batch.count = 0;
        let slot = batch.slot_bytes;
        let mut chunks = batch.buf.chunks_mut(slot);
        let mut slices: [IoSliceMut<'_>; RECV_BATCH] =
            std::array::from_fn(|_| IoSliceMut::new(chunks.next().expect("RECV_BATCH slots")));
        let count = self.io.try_io(tokio::io::Interest::READABLE, || {
            self.state
                .recv(UdpSockRef::from(&self.io), &mut slices, &mut batch.meta)
        })?;
        batch.count = count;
        Ok(count)
    }

    /// Sends `data` to `to` at once (for a datagram too long for a batch slot).
    fn send_one(&self, to: SocketAddr, data: &[u8]) -> io::Result<usize> {
        // Straight to the kernel: Tokio's `try_send_to` refuses until the reactor has seen the
        // socket writable, and the batch path does not wait for that either.
        socket2::SockRef::from(&self.io).send_to(data, &to.into())
    }
}

/// The receive buffers of one shard, allocated once.
pub struct RecvBatch {
    buf: Vec<u8>,
    slot_bytes: usize,
    meta: [RecvMeta; RECV_BATCH],
    count: usize,
}

impl RecvBatch {
    /// Slots big enough for a GRO train of `gro_segments` full-size datagrams. The memory is
    /// zeroed by the allocator, so pages the kernel never writes into stay unmapped.
    pub fn new(gro_segments: usize) -> Self {
        let slot_bytes = DATAGRAM_MAX_BYTES * gro_segments.max(1);
        Self {
            buf: vec![0; slot_bytes * RECV_BATCH],
            slot_bytes,
            meta: [RecvMeta::default(); RECV_BATCH],
            count: 0,
        }
    }

    /// The datagrams read last, GRO trains cut into their datagrams: each sender as the socket
    /// saw it, and the bytes (cut at [`DATAGRAM_MAX_BYTES`]).
    pub fn datagrams(&self) -> impl Iterator<Item = (SocketAddr, &[u8])> {
        self.meta[..self.count]
            .iter()
            .zip(self.buf.chunks(self.slot_bytes))
            .flat_map(|(meta, slot)| {
                let stride = if meta.stride == 0 { meta.len } else { meta.stride };
                slot[..meta.len.min(slot.len())]
                    .chunks(stride.max(1))
                    .map(move |segment| (meta.addr, &segment[..segment.len().min(DATAGRAM_MAX_BYTES)]))
            })
    }
}

/// Datagrams waiting to be sent together, copied into slots allocated once: the shard's output
/// arena is free again as soon as a datagram is copied, whatever the batch still holds.
pub struct SendBatch {
    buf: Vec<u8>,
    lens: [usize; SEND_BATCH],
    to: [SocketAddr; SEND_BATCH],
    count: usize,
}

/// What a flush of a [`SendBatch`] did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SendOutcome {
    pub sent: u64,
    pub failed: u64,
    pub syscalls: u64,
}

impl SendOutcome {
    fn add(&mut self, other: SendOutcome) {
        self.sent += other.sent;
        self.failed += other.failed;
        self.syscalls += other.syscalls;
    }
}

impl Default for SendBatch {
    fn default() -> Self {
        Self {
            buf: vec![0; SEND_SLOT_BYTES * SEND_BATCH],
            lens: [0; SEND_BATCH],
            to: [SocketAddr::from(([0, 0, 0, 0], 0)); SEND_BATCH],
            count: 0,
        }
    }
}

impl SendBatch {
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Queues `data` for `to` (in the socket's address family), sending the batch first when it
    /// is full. A datagram longer than a slot is sent at once, after what is queued, so the
    /// order toward each peer holds.
    pub fn push(&mut self, socket: &MediaSocket, to: SocketAddr, data: &[u8]) -> SendOutcome {
        let mut outcome = SendOutcome::default();
        if data.len() > SEND_SLOT_BYTES {
            outcome.add(self.flush(socket));
            outcome.syscalls += 1;
            match socket.send_one(to, data) {
                Ok(_) => outcome.sent += 1,
                Err(_) => outcome.failed += 1,
            }
            return outcome;
        }
        if self.count == SEND_BATCH {
            outcome.add(self.flush(socket));
        }
        let start = self.count * SEND_SLOT_BYTES;
        self.buf[start..start + data.len()].copy_from_slice(data);
        self.lens[self.count] = data.len();
        self.to[self.count] = to;
        self.count += 1;
        outcome
    }

    /// Sends what is queued with as few `sendmmsg` calls as the kernel allows. A datagram the
    /// kernel refuses (a full send buffer, an unreachable peer) is dropped and counted, as the
    /// network would drop it; the rest still go.
    pub fn flush(&mut self, socket: &MediaSocket) -> SendOutcome {
        let mut outcome = SendOutcome::default();
        let count = std::mem::take(&mut self.count);
        if count == 0 {
            return outcome;
        }
        let addrs: [SocketAddrAny; SEND_BATCH] = std::array::from_fn(|i| SocketAddrAny::from(self.to[i]));
        let mut chunks = self.buf.chunks(SEND_SLOT_BYTES);
        let lens = self.lens;
        let iovs: [[IoSlice<'_>; 1]; SEND_BATCH] = std::array::from_fn(|i| {
            let chunk = chunks.next().expect("SEND_BATCH slots");
            [IoSlice::new(&chunk[..lens[i]])]
        });
        let mut controls: [SendAncillaryBuffer<'_, '_, '_>; SEND_BATCH] =
            std::array::from_fn(|_| SendAncillaryBuffer::default());
        let mut control = controls.iter_mut();
        let mut msgs: [MMsgHdr<'_>; SEND_BATCH] = std::array::from_fn(|i| {
            MMsgHdr::new_with_addr(&addrs[i], &iovs[i], control.next().expect("SEND_BATCH controls"))
        });
        let mut next = 0;
        while next < count {
            outcome.syscalls += 1;
            match rustix::net::sendmmsg(&socket.io, &mut msgs[next..count], SendFlags::DONTWAIT) {
                Ok(0) => {
                    outcome.failed += (count - next) as u64;
                    break;
                }
                Ok(sent) => {
                    outcome.sent += sent as u64;
                    next += sent;
                }
                Err(rustix::io::Errno::AGAIN) => {
                    // The send buffer is full: what is left would only wait behind newer media.
                    outcome.failed += (count - next) as u64;
                    break;
                }
                Err(rustix::io::Errno::INTR) => {}
                Err(_) => {
                    // An error concerning the first datagram left (its peer unreachable, an
                    // ICMP error reported late): drop it and send the others.
                    outcome.failed += 1;
                    next += 1;
                }
            }
        }
        outcome
    }
}

/// Attempts at an ephemeral port before giving up: one the kernel picks for a `SO_REUSEPORT`
/// socket may be shared with another process's (see [`bind_media_sockets`]).
const EPHEMERAL_BIND_ATTEMPTS: usize = 8;

/// Binds `count` sockets to one port (`bind`'s, or the one the kernel picks for the first when
/// it is 0), with `SO_REUSEPORT` so the kernel spreads peers over them, and buffers sized as
/// `config` asks. On `[::]` each is dual-stack (IPv4 peers as `::ffff:a.b.c.d`), whatever the
/// system's `bindv6only` default.
///
/// `SO_REUSEPORT` lets any socket of the same user join the port, silently taking a share of
/// its traffic: a second bridge started on the same port, or an ephemeral port the kernel
/// hands out again to another `SO_REUSEPORT` socket. So the sockets on the port are listed
/// (`/proc/net/udp{,6}`) after binding, and one that is not ours is refused as `AddrInUse` (for
/// port 0, another port is tried).
pub fn bind_media_sockets(
    bind: SocketAddr,
    dual_stack: bool,
    count: usize,
    config: &MediaSocketConfig,
) -> io::Result<Vec<std::net::UdpSocket>> {
    let attempts = if bind.port() == 0 {
        EPHEMERAL_BIND_ATTEMPTS
    } else {
        1
    };
    let mut last_err = None;
    for _ in 0..attempts {
        let sockets = bind_group(bind, dual_stack, count, config)?;
        let inodes = sockets.iter().map(inode_of).collect::<io::Result<Vec<_>>>()?;
        let port = sockets[0].local_addr()?.port();
        match foreign_socket_on_port(port, &inodes) {
            None => return Ok(sockets),
            Some(inode) => {
                last_err = Some(io::Error::new(
                    io::ErrorKind::AddrInUse,
                    format!(
                        "UDP port {port} is also bound by another SO_REUSEPORT socket (inode {inode}), e.g. another bridge"
                    ),
                ));
            }
        }
    }
    Err(last_err.expect("at least one attempt"))
}

fn bind_group(
    bind: SocketAddr,
    dual_stack: bool,
    count: usize,
    config: &MediaSocketConfig,
) -> io::Result<Vec<std::net::UdpSocket>> {
    let mut addr = bind;
    let mut sockets = Vec::with_capacity(count);
    for _ in 0..count {
        let domain = if addr.is_ipv4() {
            socket2::Domain::IPV4
        } else {
            socket2::Domain::IPV6
        };
        let socket = socket2::Socket::new(domain, socket2::Type::DGRAM, None)?;
        if dual_stack {
            socket.set_only_v6(false)?;
        }
        socket.set_reuse_port(true)?;
        size_buffers(&socket, config);
        socket.bind(&addr.into())?;
        let socket: std::net::UdpSocket = socket.into();
        // The others join the port the first one got.
        addr = socket.local_addr()?;
        sockets.push(socket);
    }
    Ok(sockets)
}

/// Asks for the configured buffer sizes, past `net.core.{r,w}mem_max` where the process may
/// (CAP_NET_ADMIN); the kernel otherwise caps them, which is logged once per socket.
fn size_buffers(socket: &socket2::Socket, config: &MediaSocketConfig) {
    use rustix::net::sockopt;
    if sockopt::set_socket_recv_buffer_size_force(socket, config.recv_buffer_bytes).is_err() {
        let _ = socket.set_recv_buffer_size(config.recv_buffer_bytes);
    }
    if sockopt::set_socket_send_buffer_size_force(socket, config.send_buffer_bytes).is_err() {
        let _ = socket.set_send_buffer_size(config.send_buffer_bytes);
    }
    // Linux reports twice what it granted (it counts its own overhead).
    let recv = socket.recv_buffer_size().unwrap_or(0) / 2;
    let send = socket.send_buffer_size().unwrap_or(0) / 2;
    if recv < config.recv_buffer_bytes || send < config.send_buffer_bytes {
        tracing::warn!(
            recv_buffer_bytes = recv,
            send_buffer_bytes = send,
            asked_recv = config.recv_buffer_bytes,
            asked_send = config.send_buffer_bytes,
            "the kernel capped the media socket's buffers; raise net.core.rmem_max / wmem_max"
        );
    }
}

/// The UDP socket tables of this thread's network namespace (a thread that entered another
/// namespace binds its sockets there; `/proc/net` follows the process's first thread).
const PROC_NET_UDP: [&str; 2] = ["/proc/thread-self/net/udp", "/proc/thread-self/net/udp6"];

/// The socket's inode, which names it in `/proc/net/udp{,6}`.
// `st_ino` is a `c_ulong` on 32-bit targets.
#[allow(clippy::useless_conversion)]
pub fn inode_of(socket: &std::net::UdpSocket) -> io::Result<u64> {
    Ok(u64::from(rustix::fs::fstat(socket)?.st_ino))
}

/// Datagrams the kernel dropped at the socket with `inode` because its receive buffer was full
/// (the `drops` column of `/proc/net/udp{,6}`), or `None` where those files do not say.
pub fn kernel_drops_of(inode: u64) -> Option<u64> {
    PROC_NET_UDP
        .iter()
        .find_map(|path| drops_in_proc_net_udp(Path::new(path), inode))
}

fn drops_in_proc_net_udp(path: &Path, inode: u64) -> Option<u64> {
    let table = std::fs::read_to_string(path).ok()?;
    parse_drops(&table, inode)
}

/// A socket other than `ours` on `port` whose local address overlaps ours (equal, or either a
/// wildcard), as `/proc/net/udp{,6}` list them.
fn foreign_socket_on_port(port: u16, ours: &[u64]) -> Option<u64> {
    let tables: Vec<String> = PROC_NET_UDP
        .iter()
        .filter_map(|path| std::fs::read_to_string(path).ok())
        .collect();
    let rows: Vec<ProcUdpRow<'_>> = tables.iter().flat_map(|table| proc_udp_rows(table)).collect();
    find_foreign(&rows, port, ours)
}

/// One socket of `/proc/net/udp{,6}`: its local address (hex, as listed), port and inode.
#[derive(Debug, Clone, Copy)]
struct ProcUdpRow<'a> {
    addr: &'a str,
    port: u16,
    inode: u64,
}

fn proc_udp_rows(table: &str) -> impl Iterator<Item = ProcUdpRow<'_>> {
    table.lines().skip(1).filter_map(|line| {
        let mut fields = line.split_whitespace();
        let local = fields.nth(1)?;
        let inode = fields.nth(7)?.parse().ok()?;
        let (addr, port) = local.split_once(':')?;
        Some(ProcUdpRow {
            addr,
            port: u16::from_str_radix(port, 16).ok()?,
            inode,
        })
    })
}

fn find_foreign(rows: &[ProcUdpRow<'_>], port: u16, ours: &[u64]) -> Option<u64> {
    let is_wildcard = |addr: &str| addr.bytes().all(|b| b == b'0');
    let our_addrs: Vec<&str> = rows
        .iter()
        .filter(|row| ours.contains(&row.inode))
        .map(|row| row.addr)
        .collect();
    rows.iter()
        .filter(|row| row.port == port && !ours.contains(&row.inode))
        .find(|row| {
            our_addrs
                .iter()
                .any(|ours| *ours == row.addr || is_wildcard(ours) || is_wildcard(row.addr))
        })
        .map(|row| row.inode)
}

/// The `drops` column of the row whose `inode` column is `inode`.
fn parse_drops(table: &str, inode: u64) -> Option<u64> {
    table.lines().skip(1).find_map(|line| {
        let fields: [&str; 13] = {
            let mut it = line.split_whitespace();
            std::array::from_fn(|_| it.next().unwrap_or(""))
        };
        (fields[9].parse::<u64>().ok()? == inode)
            .then(|| fields[12].parse().ok())
            .flatten()
    })
}

#[cfg(test)]
mod tests;
