//! The cascade manager: which bridges this one must be linked to, and the links' lifecycle.
//!
//! Control tells the bridge, room by room, which other bridges host the room
//! ([`CascadeHandle::set_room_bridges`]). The manager keeps one link per peer bridge that shares
//! a room with this one, and tells each link which rooms to open or close on it.
//!
//! - **Who dials:** of two bridges, the one with the smaller id; the other waits to be dialed.
//!   So a pair has one connection, even when both learn of a shared room at the same instant.
//!   A newer connection from a peer replaces an older one (the peer restarted, or its old
//!   connection died without this side noticing yet).
//! - **Reconnect:** a link that fails or ends while a room is still shared is dialed again after
//!   a backoff (100 ms doubling to 2 s, with jitter).
//! - **Idle close:** a link with no room open on either side for [`CascadeManagerConfig::idle_close`]
//!   is closed.

use super::endpoint::CascadeEndpoint;
use super::link::{self, LinkContext, LinkEvent, LinkInstruction, LinkTable};
use crate::driver::ShardInboxes;
use crate::shard::LinkIndex;
use crate::splitmix::SplitMix64;
use bridgemesh_proto::bridge_session::CascadePeer;
use bridgemesh_proto::{BridgeId, RoomId};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// Rooms control may list for this bridge, and bridges per room; past these the list is cut.
pub const ROOMS_MAX: usize = 100_000;
pub const PEERS_PER_ROOM_MAX: usize = 256;
/// Control's updates queued for the manager: room by room, so up to every room twice (the set
/// after a registration, then changes).
const COMMANDS_CAPACITY: usize = 2 * ROOMS_MAX;
const EVENTS_CAPACITY: usize = 4096;
const TICK: Duration = Duration::from_millis(50);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CascadeManagerConfig {
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    /// A link with no room open on either side is closed after this long.
    pub idle_close: Duration,
    /// Both sides' `hello` must have crossed within this long of the connection.
    pub hello_timeout: Duration,
}

impl Default for CascadeManagerConfig {
    fn default() -> Self {
        Self {
            backoff_min: Duration::from_millis(100),
            backoff_max: Duration::from_secs(2),
            idle_close: Duration::from_secs(30),
            hello_timeout: Duration::from_secs(2),
        }
    }
}

enum Command {
    RoomBridges { room: RoomId, peers: Vec<CascadePeer> },
    KeepOnlyRooms(BTreeSet<RoomId>),
}

/// Drives the cascade of one bridge; cheap to clone.
#[derive(Clone)]
pub struct CascadeHandle {
    commands: mpsc::Sender<Command>,
    local_addr: SocketAddr,
    endpoint: CascadeEndpoint,
}

impl CascadeHandle {
    /// The other bridges hosting `room` now, as control says; empty when none does.
    pub fn set_room_bridges(&self, room: RoomId, peers: Vec<CascadePeer>) {
        self.command(Command::RoomBridges { room, peers });
    }

    /// After a registration, control listed every room this bridge shares: the others are
    /// shared with nobody now (a change missed while the session was down).
    pub fn keep_only_rooms(&self, rooms: BTreeSet<RoomId>) {
        self.command(Command::KeepOnlyRooms(rooms));
    }

    /// Queued in order. The queue holds every room twice over, so only a control node gone
    /// wild fills it; what does not fit then is dropped, and the next registration repairs it.
    fn command(&self, command: Command) {
        if let Err(mpsc::error::TrySendError::Full(_)) = self.commands.try_send(command) {
            tracing::warn!("cascade manager queue full; an update from control is dropped");
        }
    }

    /// Where this bridge accepts cascade links.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Closes every link (peers are told at once, rather than finding out by a timeout) and
    /// stops accepting new ones.
    pub fn close(&self) {
        self.endpoint.close();
    }
}

struct ActiveLink {
    index: LinkIndex,
    connection: quinn::Connection,
    instructions: mpsc::Sender<LinkInstruction>,
    /// Rooms this side asked the link to open.
    opened: BTreeSet<RoomId>,
    their_rooms: usize,
    unused_since: Option<Instant>,
}

struct Peer {
    addr: Option<SocketAddr>,
    /// Rooms control says this bridge shares with the peer.
    rooms: BTreeSet<RoomId>,
    link: Option<ActiveLink>,
    dialing: Option<LinkIndex>,
    retry_at: Instant,
    backoff: Duration,
}

impl Peer {
    fn new(now: Instant, backoff: Duration) -> Self {
        Peer {
            addr: None,
            rooms: BTreeSet::new(),
            link: None,
            dialing: None,
            retry_at: now,
            backoff,
        }
    }
}

struct Manager {
    me: BridgeId,
    config: CascadeManagerConfig,
    endpoint: CascadeEndpoint,
    shards: Arc<ShardInboxes>,
    table: Arc<LinkTable>,
    next_index: Arc<AtomicU32>,
    events_tx: mpsc::Sender<LinkEvent>,
    /// The other bridges of each room, as control last said.
    rooms: HashMap<RoomId, BTreeSet<BridgeId>>,
    peers: BTreeMap<BridgeId, Peer>,
    /// Jitter of reconnect delays.
    rng: SplitMix64,
}

/// Starts the manager and the accept loop on the current runtime.
pub(crate) fn start(
    endpoint: CascadeEndpoint,
    shards: Arc<ShardInboxes>,
    table: Arc<LinkTable>,
    config: CascadeManagerConfig,
) -> std::io::Result<CascadeHandle> {
    let local_addr = endpoint.local_addr()?;
    let (commands_tx, commands) = mpsc::channel(COMMANDS_CAPACITY);
    let (events_tx, events) = mpsc::channel(EVENTS_CAPACITY);
    let next_index = Arc::new(AtomicU32::new(1));
    let me = endpoint.bridge_id().clone();
    tokio::spawn(accept_loop(
        endpoint.clone(),
        LinkContextTemplate {
            me: me.clone(),
            shards: shards.clone(),
            table: table.clone(),
            events: events_tx.clone(),
            hello_timeout: config.hello_timeout,
            next_index: next_index.clone(),
        },
    ));
    let manager = Manager {
        rng: SplitMix64::new(rand::random()),
        me,
        config,
        endpoint: endpoint.clone(),
        shards,
        table: table.clone(),
        next_index,
        events_tx,
        rooms: HashMap::new(),
        peers: BTreeMap::new(),
    };
    tokio::spawn(manager.run(commands, events));
    Ok(CascadeHandle {
        commands: commands_tx,
        local_addr,
        endpoint,
    })
}

struct LinkContextTemplate {
    me: BridgeId,
    shards: Arc<ShardInboxes>,
    table: Arc<LinkTable>,
    events: mpsc::Sender<LinkEvent>,
    hello_timeout: Duration,
    next_index: Arc<AtomicU32>,
}

impl LinkContextTemplate {
    fn context(&self, dialed: bool) -> LinkContext {
        LinkContext {
            me: self.me.clone(),
            index: LinkIndex(self.next_index.fetch_add(1, Ordering::Relaxed)),
            dialed,
            shards: self.shards.clone(),
            table: self.table.clone(),
            events: self.events.clone(),
            hello_timeout: self.hello_timeout,
        }
    }
}

async fn accept_loop(endpoint: CascadeEndpoint, template: LinkContextTemplate) {
    while let Some(incoming) = endpoint.accept().await {
        match incoming {
            Ok(connection) => {
                let ctx = template.context(false);
                tokio::spawn(link::run(connection, ctx));
            }
            // A peer without a cluster certificate, or a handshake that failed: nothing to keep.
            Err(err) => tracing::info!(%err, "cascade connection refused"),
        }
    }
}

impl Manager {
    async fn run(mut self, mut commands: mpsc::Receiver<Command>, mut events: mpsc::Receiver<LinkEvent>) {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                command = commands.recv() => match command {
                    Some(Command::RoomBridges { room, peers }) => self.room_bridges(room, peers),
                    Some(Command::KeepOnlyRooms(keep)) => {
                        let stale: Vec<RoomId> =
                            self.rooms.keys().filter(|room| !keep.contains(*room)).cloned().collect();
                        for room in stale {
                            self.room_bridges(room, Vec::new());
                        }
                    }
                    None => break,
                },
                Some(event) = events.recv() => self.on_event(event),
                _ = tick.tick() => self.on_tick(Instant::now()),
            }
        }
        // Every handle is gone: the bridge is stopping.
        for peer in self.peers.values() {
            if let Some(link) = &peer.link {
                link.connection.close(0u32.into(), b"bridge stopping");
            }
        }
        self.endpoint.close();
    }

    fn room_bridges(&mut self, room: RoomId, mut peers: Vec<CascadePeer>) {
        peers.retain(|p| p.bridge != self.me);
        peers.truncate(PEERS_PER_ROOM_MAX);
        if !peers.is_empty() && !self.rooms.contains_key(&room) && self.rooms.len() >= ROOMS_MAX {
            tracing::warn!(%room, "cascade rooms at the limit; this room is not linked");
            return;
        }
        let before = self.rooms.remove(&room).unwrap_or_default();
        let after: BTreeSet<BridgeId> = peers.iter().map(|p| p.bridge.clone()).collect();
        if !after.is_empty() {
            self.rooms.insert(room.clone(), after.clone());
        }
        let now = Instant::now();
        for peer in &peers {
            let entry = self
                .peers
                .entry(peer.bridge.clone())
                .or_insert_with(|| Peer::new(now, self.config.backoff_min));
            entry.rooms.insert(room.clone());
            if entry.addr != Some(peer.addr) {
                // A new address: whatever was scheduled for the old one starts over now.
                entry.addr = Some(peer.addr);
                entry.retry_at = now;
                entry.backoff = self.config.backoff_min;
            }
        }
        for gone in before.difference(&after) {
            if let Some(peer) = self.peers.get_mut(gone) {
                peer.rooms.remove(&room);
            }
        }
        for bridge in before.union(&after) {
            self.sync_rooms(bridge);
        }
        self.on_tick(now);
    }

    /// Opens and closes rooms on the link to `bridge` to match what control says.
    fn sync_rooms(&mut self, bridge: &BridgeId) {
        let Some(peer) = self.peers.get_mut(bridge) else {
            return;
        };
        let Some(link) = peer.link.as_mut() else {
            return;
        };
        let mut healthy = true;
        for room in peer.rooms.difference(&link.opened) {
            healthy &= send_instruction(&link.instructions, LinkInstruction::Open(room.clone()));
        }
        for room in link.opened.difference(&peer.rooms) {
            healthy &= send_instruction(&link.instructions, LinkInstruction::Close(room.clone()));
        }
        link.opened = peer.rooms.clone();
        if !healthy {
            tracing::warn!(%bridge, "cascade link instructions overflow; closing the link to start over");
            link.connection.close(0u32.into(), b"instructions overflow");
        }
    }

    fn on_event(&mut self, event: LinkEvent) {
        match event {
            LinkEvent::Established {
                peer,
                index,
                connection,
                instructions,
            } => {
                let now = Instant::now();
                let min = self.config.backoff_min;
                let entry = self
                    .peers
                    .entry(peer.clone())
                    .or_insert_with(|| Peer::new(now, min));
                if entry.dialing == Some(index) {
                    entry.dialing = None;
                }
                if let Some(old) = entry.link.take() {
                    tracing::info!(%peer, "a newer cascade connection replaces the old one");
                    old.connection.close(0u32.into(), b"replaced");
                }
                entry.backoff = min;
                entry.link = Some(ActiveLink {
                    index,
                    connection,
                    instructions,
                    opened: BTreeSet::new(),
                    their_rooms: 0,
                    unused_since: None,
                });
                self.sync_rooms(&peer);
            }
            LinkEvent::TheirRooms { index, count } => {
                if let Some(link) = self
                    .peers
                    .values_mut()
                    .filter_map(|p| p.link.as_mut())
                    .find(|l| l.index == index)
                {
                    link.their_rooms = count;
                }
            }
            LinkEvent::Closed {
                peer,
                index,
                established,
                reason,
            } => {
                if established {
                    tracing::info!(%peer, %reason, "cascade link down");
                } else {
                    tracing::info!(%peer, %reason, "cascade link not established");
                }
                let now = Instant::now();
                let jitter = self.jitter();
                let max = self.config.backoff_max;
                let Some(entry) = self.peers.get_mut(&peer) else {
                    return;
                };
                let current = entry.link.as_ref().is_some_and(|l| l.index == index);
                if current {
                    entry.link = None;
                }
                if entry.dialing == Some(index) {
                    entry.dialing = None;
                }
                if current || !established {
                    entry.retry_at = now + entry.backoff.mul_f64(jitter);
                    entry.backoff = (entry.backoff * 2).min(max);
                }
            }
        }
    }

    /// A factor in [0.5, 1.5) so peers that failed together do not retry together.
    fn jitter(&mut self) -> f64 {
        0.5 + self.rng.unit()
    }

    fn on_tick(&mut self, now: Instant) {
        let mut dial = Vec::new();
        let mut forget = Vec::new();
        for (bridge, peer) in &mut self.peers {
            let wanted = !peer.rooms.is_empty();
            match &mut peer.link {
                Some(link) => {
                    if wanted || link.their_rooms > 0 {
                        link.unused_since = None;
                    } else {
                        let since = *link.unused_since.get_or_insert(now);
                        if now.duration_since(since) >= self.config.idle_close {
                            tracing::info!(%bridge, "closing a cascade link no room uses");
                            link.connection.close(0u32.into(), b"idle");
                            peer.link = None;
                        }
                    }
                }
                None if wanted => {
                    if peer.dialing.is_none()
                        && self.me < *bridge
                        && now >= peer.retry_at
                        && let Some(addr) = peer.addr
                    {
                        let index = LinkIndex(self.next_index.fetch_add(1, Ordering::Relaxed));
                        peer.dialing = Some(index);
                        dial.push((bridge.clone(), addr, index));
                    }
                }
                None => {
                    if peer.dialing.is_none() {
                        forget.push(bridge.clone());
                    }
                }
            }
        }
        for bridge in forget {
            self.peers.remove(&bridge);
        }
        for (bridge, addr, index) in dial {
            let endpoint = self.endpoint.clone();
            let ctx = LinkContext {
                me: self.me.clone(),
                index,
                dialed: true,
                shards: self.shards.clone(),
                table: self.table.clone(),
                events: self.events_tx.clone(),
                hello_timeout: self.config.hello_timeout,
            };
            tokio::spawn(async move {
                match endpoint.connect(addr, &bridge).await {
                    Ok(connection) => link::run(connection, ctx).await,
                    Err(err) => {
                        let _ = ctx
                            .events
                            .send(LinkEvent::Closed {
                                peer: bridge,
                                index,
                                established: false,
                                reason: err.to_string(),
                            })
                            .await;
                    }
                }
            });
        }
    }
}

/// Queues an instruction; `false` when the link's queue is full (its order cannot be kept).
fn send_instruction(instructions: &mpsc::Sender<LinkInstruction>, instruction: LinkInstruction) -> bool {
    !matches!(
        instructions.try_send(instruction),
        Err(mpsc::error::TrySendError::Full(_))
    )
}
