//! bridgemesh's TURN server (RFC 5766 relays over UDP, TCP and TLS), embedded in every node or
//! run alone with `bridgemesh turn`.
//!
//! # Layout
//! - [`stun`]: the wire format: a borrowed view of a received message, a writer for answers,
//!   ChannelData and stream framing.
//! - [`credentials`]: coturn's REST credentials (`<expiry>:<user>`, `base64(HMAC-SHA1)`);
//!   [`directory`]: what an issuer needs to put TURN servers into join responses.
//! - [`peer_policy`]: which peers may be relayed to (the cluster's bridges by default, which
//!   `TurnServer::set_bridges` keeps current; exact and network exceptions).
//! - [`allocation`]: one allocation's permissions, channels, lifetime and bandwidth, with `now`
//!   as an input. [`ended_sessions`]: credentials refused because their session ended. [`nonce`]: stateless nonces. [`rate_limit`]: per-source budgets.
//! - `server`: the driver: sockets and tasks around the above. [`TurnServer::start`] returns a
//!   handle with [`TurnServer::stats`] and [`TurnServer::shutdown`].
//!
//! # Run loop
//! Each listener reads a datagram (or a frame off a stream), then: ChannelData → look up the
//! 5-tuple's allocation and channel → policy and bandwidth checks → `send_to` on the relay
//! socket. STUN requests are authenticated (nonce, REST username, MESSAGE-INTEGRITY), served,
//! and answered signed. Each allocation's task reads its relay socket and sends to the client as
//! ChannelData (or a Data indication when no channel is bound). Nothing on the relay path
//! allocates except toward stream clients.
//!
//! Why not the `turn` crate's server: it serves UDP only, cannot refuse a peer with 403 (it has
//! no peer filter), cannot tell which user an allocation belongs to (no quotas), and keeps a
//! nonce per unauthenticated request; `webrtc` 0.21 in our tree carries `rtc-turn`, a client only.

pub mod allocation;
pub mod config;
pub mod credentials;
pub mod directory;
pub mod ended_sessions;
pub mod nonce;
pub mod peer_policy;
pub mod rate_limit;
mod server;
pub mod stats;
pub mod stun;
mod tls;

pub use bridgemesh_proto::cidr::Cidr;
pub use config::{ConfigError, TurnConfig};
pub use directory::{IceCredential, TurnDirectory, TurnEndpoint};
pub use peer_policy::{DenyReason, PeerPolicy};
pub use server::{StartError, TurnServer};
pub use stats::TurnStats;
