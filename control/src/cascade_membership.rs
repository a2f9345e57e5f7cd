//! Cascade membership: which bridges share each room, and what each bridge must be told about it
//! ([`ControlToBridge::RoomBridges`]). Pure, without I/O or clocks: the bridge hub runs it on the
//! leader; the simulator can run it anywhere.
//!
//! # Layout
//! - [`room_peers`], [`cascade_peers`]: for each bridge hosting a room (a participant of the room
//!   placed or connected there), the other hosting bridges that have a cascade address.
//! - [`room_bridges_for`]: every non-empty `RoomBridges` one bridge must get when it registers.
//! - [`MembershipPush`]: remembers what each bridge was told and returns what changed since.
//!
//! # Run loop (the hub, on the leader)
//! ```text
//! every hub tick:         push.poll(state) → RoomBridges to the bridges whose peers changed
//! a session registers:    push.poll(state) → as above; registered; push.room_bridges_of(bridge)
//! leadership gained:      push = MembershipPush::default()
//! ```

use crate::state::{ControlState, RoomRecord};
use bridgemesh_proto::bridge_session::{CascadePeer, ControlToBridge};
use bridgemesh_proto::{BridgeId, RoomId};
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;

/// Each bridge hosting a room, with its peers: the room's other bridges that have a cascade
/// address, sorted.
pub type PeersByBridge = BTreeMap<BridgeId, Vec<CascadePeer>>;

/// The peers of each bridge hosting `room`. A bridge alone in the room has none; a bridge without
/// a cascade address is nobody's peer but still learns its own peers.
pub fn room_peers(state: &ControlState, room: &RoomRecord) -> PeersByBridge {
    let hosts: Vec<&BridgeId> = room.seats_per_bridge().into_keys().collect();
    // In bridge order, so each list below comes out sorted.
    let reachable: Vec<CascadePeer> = hosts
        .iter()
        .filter_map(|bridge| {
            let addr = state.bridges.get(*bridge)?.cascade_addr?;
            Some(CascadePeer {
                bridge: (*bridge).clone(),
                addr,
            })
        })
        .collect();
    hosts
        .into_iter()
        .map(|bridge| {
            let peers = reachable
                .iter()
                .filter(|peer| &peer.bridge != bridge)
                .cloned()
                .collect();
            (bridge.clone(), peers)
        })
        .collect()
}

/// [`room_peers`] of every room.
pub fn cascade_peers(state: &ControlState) -> BTreeMap<RoomId, PeersByBridge> {
    state
        .rooms
        .iter()
        .map(|(id, room)| (id.clone(), room_peers(state, room)))
        .collect()
}

/// What `bridge` must be told when its session registers: a `RoomBridges` for each room it shares
/// with another bridge, in room order. Visits every participant; the hub uses the cheaper
/// [`MembershipPush::room_bridges_of`], which gives the same after a poll.
pub fn room_bridges_for(state: &ControlState, bridge: &BridgeId) -> Vec<ControlToBridge> {
    state
        .rooms
        .iter()
        .filter_map(|(id, room)| {
            let peers = room_peers(state, room).remove(bridge)?;
            (!peers.is_empty()).then(|| ControlToBridge::RoomBridges {
                room: id.clone(),
                peers,
            })
        })
        .collect()
}

/// What each bridge was last told about the rooms it shares, and the diff to the current state.
///
/// Cost of [`poll`](Self::poll), which the hub calls every tick:
/// - when the state's [`ControlState::membership_version`] did not move since the last poll (no
///   seat taken or given back, no cascade address changed; most commits: load reports,
///   confirmations, ticks that expire nobody), one comparison;
/// - when it did and the state's local index of recent changes
///   ([`ControlState::rooms_changed_since`]) reaches back to the last poll (the usual case),
///   [`room_peers`] for the rooms it names, O(their participants), and, when a bridge
///   registered another address, one pass over the addresses (O(bridges)) and the shared rooms;
/// - otherwise (after a restore from a snapshot, or more than
///   [`crate::state::MEMBERSHIP_LOG_MAX`] changes since the last poll): one pass over the rooms
///   comparing a stamp each (O(rooms)), one over the remembered rooms beside the rooms to find
///   those that ended (O(shared rooms + rooms)), and [`room_peers`] for the rooms stamped since
///   the last poll. The first poll (after gaining leadership) computes every room once:
///   O(participants).
///
/// Memory: the rooms that two or more bridges hosted at the last poll, with their bridges' lists,
/// and the bridges' addresses. A room that ends or shrinks to one bridge is forgotten in the
/// poll that sees it.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct MembershipPush {
    /// Rooms hosted by two bridges or more at the last poll: each hosting bridge and the peers it
    /// was last told (empty when it was told nothing, or told that it shares the room with
    /// nobody reachable).
    shared: BTreeMap<RoomId, PeersByBridge>,
    /// Cascade addresses at the last poll.
    addrs: BTreeMap<BridgeId, SocketAddr>,
    /// The state's membership version at the last poll; `None` before the first.
    seen_version: Option<u64>,
    /// The state's cascade address version when the addresses were last compared.
    seen_addr_version: Option<u64>,
}

impl MembershipPush {
    /// The `RoomBridges` messages due since the last poll, each with the bridge it goes to: to
    /// every bridge whose peers in a room changed (a bridge joined or left the room, or a peer's
    /// address changed), `peers: []` once to a bridge that left a shared room or whose room
    /// ended. Nothing for a room that was never shared.
    pub fn poll(&mut self, state: &ControlState) -> Vec<(BridgeId, ControlToBridge)> {
        if self.seen_version == Some(state.membership_version) {
            return Vec::new();
        }
        let since = self.seen_version.replace(state.membership_version);
        let readdressed = self.note_addresses(state);
        let mut out = Vec::new();
        if let Some(changed) = since.and_then(|seen| state.rooms_changed_since(seen)) {
            // The state's index names the rooms whose seats changed, ended ones included.
            let mut visit: BTreeSet<&RoomId> = changed;
            if !readdressed.is_empty() {
                visit.extend(
                    self.shared
                        .iter()
                        .filter(|(_, told)| told.keys().any(|b| readdressed.contains(b)))
                        .map(|(id, _)| id),
                );
            }
            let visit: Vec<RoomId> = visit.into_iter().cloned().collect();
            for id in &visit {
                let now = state
                    .rooms
                    .get(id)
                    .map(|room| room_peers(state, room))
                    .unwrap_or_default();
                self.update(id, now, &mut out);
            }
            return out;
        }
        for (id, room) in &state.rooms {
            let stamped = since.is_none_or(|seen| room.membership_changed_at > seen);
            let peer_moved = !readdressed.is_empty()
                && self
                    .shared
                    .get(id)
                    .is_some_and(|told| told.keys().any(|b| readdressed.contains(b)));
            if stamped || peer_moved {
                self.update(id, room_peers(state, room), &mut out);
            }
        }
        // Both maps are sorted by room: one merged walk finds the shared rooms that ended, in
        // O(shared + rooms) comparisons rather than a lookup per shared room.
        let mut rooms = state.rooms.keys().peekable();
        let ended: Vec<RoomId> = self
            .shared
            .keys()
            .filter(|id| {
                while rooms.next_if(|room| room < id).is_some() {}
                rooms.peek() != Some(id)
            })
            .cloned()
            .collect();
        for id in &ended {
            self.update(id, PeersByBridge::new(), &mut out);
        }
        out
    }

    /// What `bridge` was last told, as the non-empty `RoomBridges` it must get when its session
    /// registers: right after a [`poll`](Self::poll), the same as [`room_bridges_for`] on that
    /// state, at the cost of one pass over the shared rooms.
    pub fn room_bridges_of(&self, bridge: &BridgeId) -> Vec<ControlToBridge> {
        self.shared
            .iter()
            .filter_map(|(room, told)| {
                let peers = told.get(bridge).filter(|peers| !peers.is_empty())?;
                Some(ControlToBridge::RoomBridges {
                    room: room.clone(),
                    peers: peers.clone(),
                })
            })
            .collect()
    }

    /// Remembers the bridges' cascade addresses; returns the bridges whose address changed
    /// (appeared, went, or moved).
    fn note_addresses(&mut self, state: &ControlState) -> BTreeSet<BridgeId> {
        if self.seen_addr_version.replace(state.cascade_addr_version) == Some(state.cascade_addr_version) {
            return BTreeSet::new();
        }
        let current = state
            .bridges
            .values()
            .filter_map(|b| Some((&b.id, b.cascade_addr?)));
        let mut changed: BTreeSet<BridgeId> = current
            .clone()
            .filter(|(id, addr)| self.addrs.get(*id) != Some(addr))
            .map(|(id, _)| id.clone())
            .collect();
        changed.extend(
            self.addrs
                .keys()
                .filter(|id| state.bridges.get(*id).is_none_or(|b| b.cascade_addr.is_none()))
                .cloned(),
        );
        if !changed.is_empty() {
            self.addrs = current.map(|(id, addr)| (id.clone(), addr)).collect();
        }
        changed
    }

    /// Compares what the bridges of `room` were told with `now`, queues the differences, and
    /// remembers `now` if the room is still shared.
    fn update(&mut self, room: &RoomId, now: PeersByBridge, out: &mut Vec<(BridgeId, ControlToBridge)>) {
        let told = self.shared.remove(room).unwrap_or_default();
        let bridges: BTreeSet<&BridgeId> = told.keys().chain(now.keys()).collect();
        for bridge in bridges {
            let before = told.get(bridge).map_or(&[][..], Vec::as_slice);
            let after = now.get(bridge).map_or(&[][..], Vec::as_slice);
            if before != after {
                out.push((
                    bridge.clone(),
                    ControlToBridge::RoomBridges {
                        room: room.clone(),
                        peers: after.to_vec(),
                    },
                ));
            }
        }
        if now.len() >= 2 {
            self.shared.insert(room.clone(), now);
        }
    }
}

#[cfg(test)]
mod tests;
