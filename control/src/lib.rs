//! The bridgemesh control node: the join API, room state, bridge tickets and the web client.
//!
//! # Layout
//! - [`state`]: the state machine — typed [`state::Command`]s applied deterministically.
//! - [`placement`]: which bridge a participant goes to, a pure function of the state.
//! - [`auth`]: join tokens (Jitsi's JWT format), the guest policy, the admin credential; pure.
//! - [`rate_limit`]: per-address token buckets for the unauthenticated join endpoint.
//! - [`client_ip`]: the address a request came from, through trusted proxies' headers.
//! - [`geo`]: where an address is (a MaxMind DB), distances, and made-up test databases.
//! - [`node`]: [`ControlNode`], the state behind a lock plus ticket issuing; `join` lives here.
//! - [`http`]: the axum driver: `/api/v1/...`, `/health`, `/metrics`, the web client.
//! - [`web`]: the browser client's files, compiled in.
//!
//! # Run loop
//! ```text
//! POST /api/v1/rooms/{room}/join → validate → placement::choose_bridge(state)
//!     → state.apply(Command::Join{..}) → sign ticket for that bridge → JSON answer
//! bridge events (joined / left) → state.apply(Confirm | Leave)
//! every few seconds → state.apply(ExpireUnconfirmed{now})
//! ```
//! This node is a single replica; the replicated control plane builds on the same commands.

pub mod auth;
pub mod cidr;
pub mod client_ip;
pub mod geo;
pub mod http;
pub mod node;
pub mod password;
pub mod placement;
pub mod raft;
pub mod rate_limit;
pub mod service;
pub mod session;
pub mod state;
pub mod web;

pub use node::{ApiError, ControlNode};
