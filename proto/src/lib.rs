//! The bridgemesh wire: what crosses a process boundary.
//!
//! # Layout
//! - [`ids`]: newtypes for every identifier (`RoomId`, `ParticipantId`, `BridgeId`, ...), validated at the edge.
//! - [`api`]: control HTTP API bodies (`/api/v1/...`) and the JSON error envelope with its codes.
//! - [`signaling`]: messages on the client ↔ bridge WebSocket.
//! - [`bridge_session`]: messages on the bridge ↔ control WebSocket (registration, heartbeats, moves).
//! - [`cascade`]: messages and media datagrams on the bridge ↔ bridge QUIC links.
//! - [`meeting`]: chat messages, reactions: what a meeting shares besides media.
//! - [`ticket`]: claims of the short-lived ticket control issues for one participant on one bridge.
//! - [`hosts`]: host accounts, their logins and invite links (`/api/v1/login`, `/api/v1/admin/users`).
//! - [`cidr`]: the IP network type of every configured list of networks.
//!
//! Everything here is plain serde data; there is no I/O. A change to any of these shapes is a
//! versioned change: [`PROTOCOL_VERSION`] is sent in the signaling `welcome` message.

pub mod api;
pub mod bridge_session;
pub mod cascade;
pub mod cidr;
pub mod hosts;
pub mod ids;
pub mod meeting;
pub mod signaling;
pub mod ticket;

pub use ids::{BridgeId, HostName, IdError, ParticipantId, RegionId, RoomId, Ssrc};

/// Version of the signaling protocol described in `docs/signaling.md`.
pub const PROTOCOL_VERSION: u32 = 1;
